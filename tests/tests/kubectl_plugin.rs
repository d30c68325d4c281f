//! `kubectl minion` against a cluster: the `kubectl-minion` binary with a kubeconfig naming
//! the in-process API (`minion_e2e::fake_api`) and no state directory acts on the cluster's
//! objects — it lists and describes them (Events included), creates runs, retries and
//! cancels them, suspends and resumes configs, reads catalogs for `plan` and `segments`, and
//! prints a subtask Job's Pod logs. Nothing runs the control loop here: each command's effect
//! is checked on the API's objects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use minion_e2e::fake_api::FakeApi;
use minion_e2e::fixtures::{created_run, import_samples, realtime_events, workspace_binary};
use minion_operator::api::{MinionTaskConfig, Resource, Table, TaskRun, parse_manifests};
use minion_operator::validate;
use serde_json::json;

const NS: &str = "prod";

struct Plugin {
    kubeconfig: PathBuf,
    cwd: PathBuf,
}

impl Plugin {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(workspace_binary("kubectl-minion", "minion-cli"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("MINION_STATE_DIR")
            .env_remove("MINION_CLUSTER")
            // A state directory here would be a local-mode leftover: there must be none.
            .current_dir(&self.cwd)
            .output()
            .expect("kubectl-minion starts")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl minion {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Fails with `code`; its stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "kubectl minion {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: me\n\
         current-context: fake\nusers:\n- name: me\n  user: {{}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn run_object(api: &Api<TaskRun>, name: &str) -> TaskRun {
    api.get(name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_minion_acts_on_the_cluster_of_its_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let api = FakeApi::start().await;
    let client = api.client();
    let uri = |name: &str| format!("file://{}/{name}", data.display());
    let mut realtime = None;
    for (_, text) in import_samples(|text| {
        text.replace(
            "file:///tmp/minion/events_realtime",
            &uri("events-realtime"),
        )
        .replace("file:///tmp/minion/events_offline", &uri("events-offline"))
    }) {
        for r in parse_manifests(&text).unwrap() {
            let pp = PostParams::default();
            match r {
                Resource::Table(t) => {
                    if t.metadata.name.as_deref() == Some("events-realtime") {
                        realtime = Some(validate::table(&t).unwrap());
                    }
                    Api::<Table>::namespaced(client.clone(), NS)
                        .create(&pp, &t)
                        .await
                        .unwrap();
                }
                Resource::MinionTaskConfig(c) => {
                    Api::<MinionTaskConfig>::namespaced(client.clone(), NS)
                        .create(&pp, &c)
                        .await
                        .unwrap();
                }
                Resource::TaskRun(_) => unreachable!("no TaskRun sample here"),
            }
        }
    }
    let (_, _) = realtime_events(&realtime.unwrap(), &data, 5, 100).await;
    let cwd = dir.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let plugin = Plugin {
        kubeconfig: kubeconfig(dir.path(), &api.url()),
        cwd: cwd.clone(),
    };
    let runs: Api<TaskRun> = Api::namespaced(client.clone(), NS);
    let configs: Api<MinionTaskConfig> = Api::namespaced(client.clone(), NS);

    // Lists come from the cluster, per namespace.
    let out = plugin.ok(&["get", "mtc", "-n", NS]);
    assert!(out.contains("events-import"), "{out}");
    let out = plugin.ok(&["get", "tables", "-n", NS]);
    assert!(
        out.contains("events-realtime") && out.contains("events-offline"),
        "{out}"
    );
    let out = plugin.run(&["get", "tr", "-n", NS]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("No resources found in prod namespace"));
    let out = plugin.run(&["get", "mtc"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No resources found in default namespace"),
        "{out:?}"
    );

    // A dry run reads the catalog of the cluster's Tables.
    let out = plugin.ok(&["plan", "events-import", "-n", NS]);
    assert!(out.contains("SUBTASK") && out.contains("ROWS"), "{out}");
    let out = plugin.ok(&["segments", "events-realtime", "-n", NS]);
    assert!(
        out.contains(&format!("Table {NS}/events-realtime")),
        "{out}"
    );
    assert!(out.contains("segment(s)"), "{out}");

    // `run` creates a TaskRun in the cluster.
    let name = created_run(&plugin.ok(&["run", "events-import", "-n", NS]));
    let run = run_object(&runs, &name).await;
    assert_eq!(run.spec.config_ref.as_deref(), Some("events-import"));
    let out = plugin.ok(&["get", "tr", "-n", NS]);
    assert!(out.contains(&name), "{out}");

    // `describe` shows the run with its Events.
    let event: Event = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": format!("{name}.1"), "namespace": NS},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "minion.dev/operator", "reportingInstance": "test",
        "action": "Reconcile", "type": "Warning", "reason": "SubtaskFailed",
        "note": "subtask 0 failed: CorruptSegment",
        "regarding": {"apiVersion": "minion.dev/v1alpha1", "kind": "TaskRun",
                      "namespace": NS, "name": name},
    }))
    .unwrap();
    Api::<Event>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &event)
        .await
        .unwrap();
    let out = plugin.ok(&["describe", "tr", &name, "-n", NS]);
    assert!(out.contains("Name:") && out.contains(&name), "{out}");
    assert!(
        out.contains("SubtaskFailed") && out.contains("subtask 0 failed: CorruptSegment"),
        "{out}"
    );

    // `cancel` asks the operator to cancel; a finished run cannot be.
    plugin.ok(&["cancel", &name, "-n", NS]);
    assert!(run_object(&runs, &name).await.spec.cancel);

    // `retry` copies the spec of a failed run, under a new name.
    let status = json!({"status": {"phase": "Failed", "reason": "SubtaskFailed",
        "subtasks": [{"index": 0, "state": "Failed", "job": format!("{name}-0"), "attempts": 1}]}});
    runs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let err = plugin.fails(&["cancel", &name, "-n", NS], 2);
    assert!(err.contains("already ended Failed"), "{err}");
    let out = plugin.ok(&["retry", &name, "-n", NS]);
    let retry = format!("{name}-retry-1");
    assert!(
        out.contains(&format!("taskrun.minion.dev/{retry} created")),
        "{out}"
    );
    let r = run_object(&runs, &retry).await;
    assert_eq!(r.spec.config_ref.as_deref(), Some("events-import"));
    assert!(!r.spec.cancel);
    assert_eq!(
        r.metadata.annotations.unwrap()["minion.dev/retry-of"],
        name.as_str()
    );
    let out = plugin.ok(&["retry", &name, "-n", NS]);
    assert!(out.contains(&format!("{name}-retry-2")), "{out}");
    // A run still going cannot be retried.
    let err = plugin.fails(&["retry", &retry, "-n", NS], 2);
    assert!(
        err.contains("only a Failed, TimedOut or Cancelled run"),
        "{err}"
    );

    // `logs` prints the output of the failed subtask's Job, from its Pod.
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-0-abcde"), "namespace": NS,
                     "labels": {"job-name": format!("{name}-0")}},
        "spec": {"containers": [{"name": "worker", "image": "minion-worker"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    api.set_pod_log(
        NS,
        &format!("{name}-0-abcde"),
        "reading segment 3\nCorruptSegment: bad magic\n",
    );
    let out = plugin.ok(&["logs", &name, "-n", NS]);
    assert!(out.contains("CorruptSegment: bad magic"), "{out}");
    let err = plugin.fails(&["logs", &name, "--subtask", "7", "-n", NS], 3);
    assert!(err.contains("has no subtask 7"), "{err}");

    // `suspend` and `resume` set the config's spec.suspend.
    plugin.ok(&["suspend", "events-import", "-n", NS]);
    assert!(configs.get("events-import").await.unwrap().spec.suspend);
    let out = plugin.ok(&["get", "mtc", "events-import", "-n", NS]);
    assert!(out.contains("true"), "{out}");
    plugin.ok(&["resume", "events-import", "-n", NS]);
    assert!(!configs.get("events-import").await.unwrap().spec.suspend);

    // Local-only commands say so; nothing was written to a local state directory.
    let err = plugin.fails(&["apply", "-f", "x.yaml"], 2);
    assert!(
        err.contains("works on a local state directory only"),
        "{err}"
    );
    assert!(!cwd.join(".minion").exists());
}

/// Without a kubeconfig the plugin says how to reach a cluster, or to use local mode.
#[test]
fn without_a_cluster_the_plugin_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(workspace_binary("kubectl-minion", "minion-cli"))
        .args(["get", "tr"])
        .env("KUBECONFIG", dir.path().join("missing"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("MINION_STATE_DIR")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no cluster to talk to"), "{err}");
    assert!(err.contains("--state-dir"), "{err}");
}
