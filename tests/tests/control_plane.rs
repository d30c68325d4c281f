//! The end-to-end suite against the REAL control plane of `scripts/control-plane.sh` (etcd,
//! kube-apiserver and kube-controller-manager at the pinned release): the real API server
//! (CRD schemas, RBAC, admission, server-side apply, field management), the real Job
//! controller and garbage collector; Pods run on the node stand-in ([`minion_e2e::node`]).
//!
//! Every test is ignored by default. Run the suite with `bash scripts/e2e-control-plane.sh`,
//! or by hand:
//!
//! ```sh
//! eval "$(scripts/control-plane.sh start)"
//! cargo build -p minion-operator -p minion-worker --bins
//! cargo test -p minion-e2e --test control_plane -- --ignored --skip known_bug_
//! scripts/control-plane.sh stop
//! ```
//!
//! Tests named `known_bug_*` assert the correct behaviour of something that is wrong today
//! (their `ignore` reason names the bug); run one with `-- --ignored known_bug_<name>`.
//!
//! Installed as a user installs: the CRDs of `crds/` by server-side apply; the chart's RBAC,
//! ServiceAccounts and worker-defaults ConfigMap from `helm template charts/minion-operator`
//! applied with kubectl (one release per test, in the test's namespace); the operator as the
//! real `minion-operator run` binary out of cluster, with the chart Deployment's flags and
//! environment, authenticated as the chart's operator ServiceAccount
//! (`control-plane.sh sa-kubeconfig`), and the chart's worker defaults file. Tables are
//! `file://` directories under `target/tmp`, which the operator and the Pods' worker processes
//! share (the worker defaults mount it as a `hostPath`, `--set-json worker.defaults.extra*`).
//!
//! Each test has its own namespace, release, Node and lake, so tests may run in parallel; a
//! failed test keeps its directory (operator and Pod logs) and prints where it is.
//!
//! Why one long file: every test shares the control plane, the chart install and the helpers
//! below, and `scripts/e2e-control-plane.sh` runs the suite as one binary against one started
//! control plane; the node stand-in and the harness live in `minion_e2e::{node, control_plane}`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use minion_e2e::control_plane::{ControlPlane, OperatorProcess, Release, client_for, wait_for};
use minion_e2e::fixtures::{import_samples, realtime_events, workspace_binary};
use minion_e2e::node::{Image, KillAt, Node, NodeOptions, PodState, Stop};
use minion_operator::api::{self, MinionTaskConfig, Resource, Table, TaskRun};
use minion_operator::catalog::Catalog;
use minion_operator::control::configs::new_task_run;
use minion_operator::model::{TableDef, TableType};
use serde_json::{Value, json};

const CONFIG: &str = "events-import";
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// How a [`Scene`] is set up.
struct Setup {
    /// Data of the REALTIME table: days up to now, rows per 6-hour segment and partition.
    days: u32,
    rows_per_segment: usize,
    /// The chart's default install (a ClusterRole) instead of `watchNamespaces: [<ns>]`.
    cluster_wide: bool,
    /// The release (operator account, Lease) in its own namespace, not the watched one.
    separate_release_namespace: bool,
    /// Changes the rendered chart before it is applied.
    edit: fn(String) -> String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            days: 5,
            rows_per_segment: 100,
            cluster_wide: false,
            separate_release_namespace: false,
            edit: |s| s,
        }
    }
}

/// One test's world: a namespace with the import samples and a filled REALTIME table, the
/// chart's objects, a node stand-in, and the operator processes it starts.
struct Scene {
    cp: ControlPlane,
    ns: String,
    release: Release,
    dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
    lake: PathBuf,
    node: Node,
    realtime: TableDef,
    offline: TableDef,
    source: Catalog,
    start_ms: i64,
    /// The operator ServiceAccount's kubeconfig.
    op_kubeconfig: PathBuf,
    /// The chart's worker defaults, as the operator reads them.
    defaults: PathBuf,
    operators: Vec<OperatorProcess>,
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}{:04x}", std::process::id() % 0xfff, nanos % 0xffff)
}

impl Scene {
    async fn new(id: &str, setup: Setup) -> Scene {
        minion_operator::catalog::install_crypto_provider();
        let cp = ControlPlane::from_env().await;
        cp.install_crds();
        let suffix = unique_suffix();
        let ns = format!("cp-{id}-{suffix}");
        let tmp = tempfile::Builder::new()
            .prefix(&format!("cp-{id}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let lake = dir.join("lake");
        std::fs::create_dir_all(&lake).unwrap();
        let lake_str = lake.display().to_string();
        let release_ns = if setup.separate_release_namespace {
            format!("{ns}-op")
        } else {
            ns.clone()
        };
        let mut values = vec![
            "--set-json".to_string(),
            format!(
                r#"worker.defaults.extraVolumes=[{{"name":"lake","hostPath":{{"path":"{lake_str}","type":"Directory"}}}}]"#
            ),
            "--set-json".to_string(),
            format!(
                r#"worker.defaults.extraVolumeMounts=[{{"name":"lake","mountPath":"{lake_str}"}}]"#
            ),
        ];
        let release_name = if setup.cluster_wide {
            values.push("--set".into());
            values.push(format!("worker.serviceAccount.namespaces={{{ns}}}"));
            // Cluster-scoped objects (the ClusterRole) are named after the release.
            format!("minion-operator-{id}-{suffix}")
        } else {
            values.push("--set".into());
            values.push(format!("watchNamespaces={{{ns}}}"));
            "minion-operator".to_string()
        };
        cp.create_namespace(&ns).await;
        let release = cp
            .install(&release_name, &release_ns, &values, setup.edit)
            .await;
        let op_kubeconfig = dir.join("operator.kubeconfig");
        cp.sa_kubeconfig(&release.namespace, &release.operator_sa, &op_kubeconfig);
        let defaults = dir.join("worker-defaults.yaml");
        std::fs::write(&defaults, &release.worker_defaults).unwrap();

        let bin_dir = workspace_binary("minion-worker", "minion-worker")
            .parent()
            .unwrap()
            .to_path_buf();
        let node = Node::start(
            cp.client.clone(),
            NodeOptions {
                name: format!("node-{ns}"),
                namespaces: vec![ns.clone()],
                images: vec![Image::minion(&bin_dir), busybox()],
                dir: dir.join("node"),
            },
        )
        .await;

        // The import samples of config/, in our namespace, on our lake, with a schedule that
        // does not fire during the test (so NEXT shows a date).
        let lake_uri = |name: &str| format!("file://{}/{name}", lake.display());
        let samples: Vec<String> = import_samples(|text| {
            text.replace("namespace: default", &format!("namespace: {ns}"))
                .replace(
                    "file:///tmp/minion/events_realtime",
                    &lake_uri("events-realtime"),
                )
                .replace(
                    "file:///tmp/minion/events_offline",
                    &lake_uri("events-offline"),
                )
                .replace("schedule: \"0 */15 * * * ?\"", "schedule: \"0 0 0 1 1 ?\"")
        })
        .into_iter()
        .map(|(_, text)| text)
        .collect();
        let mut defs = Vec::new();
        for text in &samples {
            for r in api::parse_manifests(text).unwrap() {
                if let Resource::Table(t) = r {
                    defs.push(minion_operator::validate::table(&t).unwrap());
                }
            }
        }
        let manifest = samples.join("\n---\n");
        cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifest));
        let realtime = defs
            .iter()
            .find(|d| d.table_type == TableType::Realtime)
            .unwrap()
            .clone();
        let offline = defs
            .iter()
            .find(|d| d.table_type == TableType::Offline)
            .unwrap()
            .clone();
        let (source, start_ms) =
            realtime_events(&realtime, &lake, setup.days, setup.rows_per_segment).await;
        Scene {
            cp,
            ns,
            release,
            dir,
            tmp: Some(tmp),
            lake,
            node,
            realtime,
            offline,
            source,
            start_ms,
            op_kubeconfig,
            defaults,
            operators: Vec::new(),
        }
    }

    /// Starts a `minion-operator run` process named `identity` (its Lease identity).
    fn start_operator(&mut self, identity: &str) {
        self.start_operator_with(identity, &[]);
    }

    /// [`Self::start_operator`] with more arguments of `minion-operator run`.
    fn start_operator_with(&mut self, identity: &str, extra_args: &[String]) {
        let log = self.dir.join(format!("operator-{identity}.log"));
        self.operators.push(OperatorProcess::start(
            &self.release,
            &self.op_kubeconfig,
            &[&self.ns],
            &self.defaults,
            identity,
            &log,
            extra_args,
        ));
    }

    fn client(&self) -> kube::Client {
        self.cp.client.clone()
    }

    fn runs(&self) -> Api<TaskRun> {
        Api::namespaced(self.client(), &self.ns)
    }

    /// Creates a manual run of the import as `kubectl create` (what `minion run` builds:
    /// `new_task_run` of the config); its name.
    async fn create_run(&self, name: &str) -> String {
        self.create_run_with(name, |_| {}).await
    }

    /// [`Self::create_run`] with `edit` applied to the run first.
    async fn create_run_with(&self, name: &str, edit: impl FnOnce(&mut TaskRun)) -> String {
        let configs: Api<MinionTaskConfig> = Api::namespaced(self.client(), &self.ns);
        let cfg = configs.get(CONFIG).await.unwrap();
        let mut run = new_task_run(&cfg, name, None);
        edit(&mut run);
        let text = serde_json::to_string(&run).unwrap();
        self.cp
            .kubectl_ok(&["create", "-n", &self.ns, "-f", "-"], Some(&text));
        name.to_string()
    }

    async fn run_json(&self, name: &str) -> Value {
        serde_json::to_value(self.runs().get(name).await.unwrap()).unwrap()
    }

    /// Waits until run `name` is finished; its object.
    async fn wait_finished(&self, name: &str) -> Value {
        let runs = self.runs();
        wait_for(
            &format!("TaskRun {name} to finish"),
            RUN_TIMEOUT,
            Duration::from_millis(500),
            async || {
                let tr = runs.get(name).await.ok()?;
                tr.status
                    .as_ref()
                    .is_some_and(|s| s.phase.is_finished())
                    .then(|| serde_json::to_value(&tr).unwrap())
            },
            || self.diagnostics(),
        )
        .await
    }

    async fn wait_subtask(&self, run: &str, index: u64, state: &str) {
        let runs = self.runs();
        wait_for(
            &format!("subtask {index} of {run} to be {state}"),
            RUN_TIMEOUT,
            Duration::from_millis(300),
            async || {
                let tr = serde_json::to_value(runs.get(run).await.ok()?).unwrap();
                subtasks(&tr)
                    .iter()
                    .any(|s| s["index"] == index && s["state"] == state)
                    .then_some(())
            },
            || self.diagnostics(),
        )
        .await
    }

    async fn jobs(&self, run: &str) -> Vec<Job> {
        Api::<Job>::namespaced(self.client(), &self.ns)
            .list(&ListParams::default().labels(&format!("minion.dev/task-run={run}")))
            .await
            .unwrap()
            .items
    }

    async fn pods(&self) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client(), &self.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    /// The Events about `name` (events.k8s.io/v1).
    async fn events_of(&self, name: &str) -> Vec<Event> {
        Api::<Event>::namespaced(self.client(), &self.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    async fn table_json(&self, name: &str) -> Value {
        serde_json::to_value(
            Api::<Table>::namespaced(self.client(), &self.ns)
                .get(name)
                .await
                .unwrap(),
        )
        .unwrap()
    }

    async fn assert_imported_exactly(&self) {
        minion_e2e::fixtures::assert_imported_exactly(
            &self.source,
            &self.realtime,
            &self.offline,
            self.start_ms,
            &self.ns,
            CONFIG,
        )
        .await;
    }

    /// Rows in the destination (0 when it has no table yet).
    async fn destination_rows(&self) -> u64 {
        let Ok(dest) = Catalog::open(&self.offline.uri, Default::default()).await else {
            return 0;
        };
        minion_operator::inspect::totals(
            &self.offline.uri,
            &self.offline.schema,
            &dest.segments().unwrap(),
            None,
        )
        .await
        .unwrap()
        .rows
    }

    /// What a failure message shows: the objects, the node's Pods, the operators' log tails.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        let get = self.cp.kubectl(&[
            "get",
            "tr,mtc,tables,jobs,pods,leases",
            "-n",
            &self.ns,
            "-o",
            "wide",
        ]);
        out.push_str(&String::from_utf8_lossy(&get.stdout));
        out.push_str(&String::from_utf8_lossy(&get.stderr));
        let ev = self.cp.kubectl(&[
            "get",
            "events",
            "-n",
            &self.ns,
            "--sort-by=.metadata.creationTimestamp",
        ]);
        out.push_str(&String::from_utf8_lossy(&ev.stdout));
        for p in self.node.pods() {
            out.push_str(&format!("node pod {}: {:?}\n", p.name, p.state));
        }
        for op in &self.operators {
            let log = op.output();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!(
                "--- operator {} ({}), last lines:\n",
                op.identity,
                op.log.display()
            ));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out.push_str(&format!("(files: {})\n", self.dir.display()));
        out
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        for op in &mut self.operators {
            op.kill();
        }
        if std::thread::panicking() {
            if let Some(tmp) = self.tmp.take() {
                let kept = tmp.keep();
                eprintln!(
                    "kept {} (operator and Pod logs); namespace {} left in the cluster",
                    kept.display(),
                    self.ns
                );
            }
            return;
        }
        let _ = self.cp.kubectl(&[
            "delete",
            "namespace",
            &self.ns,
            "--wait=false",
            "--ignore-not-found",
        ]);
        if self.release.namespace != self.ns {
            let _ = self.cp.kubectl(&[
                "delete",
                "namespace",
                &self.release.namespace,
                "--wait=false",
                "--ignore-not-found",
            ]);
        }
        let _ = self.cp.kubectl(&[
            "delete",
            "node",
            self.node.name(),
            "--wait=false",
            "--ignore-not-found",
        ]);
        if self.release.fullname != "minion-operator" {
            let _ = self.cp.kubectl(&[
                "delete",
                "clusterrole,clusterrolebinding",
                &self.release.fullname,
                "--ignore-not-found",
            ]);
        }
    }
}

/// busybox-like commands from the machine's `/bin` (for Jobs the contract checks create).
fn busybox() -> Image {
    Image {
        repository: "busybox".into(),
        bin_dir: PathBuf::from("/bin"),
        entrypoint: vec!["sh".into()],
        cmd: Vec::new(),
    }
}

fn subtasks(tr: &Value) -> Vec<Value> {
    tr["status"]["subtasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The status of condition `type_`, as `kubectl wait` reads it.
fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["status"]
        .as_str()
}

fn job_condition(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// Label `k` of a Pod ("" when absent).
fn label(pod: &Pod, k: &str) -> String {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(k))
        .cloned()
        .unwrap_or_default()
}

fn manual_name() -> String {
    minion_operator::schedule::manual_task_run_name(CONFIG, chrono::Utc::now())
}

/// The import sample set runs through real Jobs: Succeeded, every source row exactly once,
/// `kubectl wait`, `get` and `describe` show it; status went through the status subresource
/// as the operator's ServiceAccount (managedFields), Events were accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn the_import_samples_run_through_real_jobs() {
    let mut scene = Scene::new("import", Setup::default()).await;
    scene.start_operator("op-a");
    let run = scene.create_run(&manual_name()).await;
    let t0 = Instant::now();
    let tr = scene.wait_finished(&run).await;
    eprintln!("run {run} finished in {:?}", t0.elapsed());
    assert_eq!(
        tr["status"]["phase"],
        "Succeeded",
        "{tr:#}\n{}",
        scene.diagnostics()
    );
    let total = tr["status"]["subtasksTotal"].as_u64().unwrap();
    assert!(total >= 2, "several windows expected: {tr:#}");
    assert_eq!(tr["status"]["progress"], format!("{total}/{total}"));
    scene.assert_imported_exactly().await;

    // kubectl wait reads the Complete condition.
    scene.cp.kubectl_ok(
        &[
            "wait",
            "-n",
            &scene.ns,
            "--for=condition=Complete",
            &format!("tr/{run}"),
            "--timeout=30s",
        ],
        None,
    );
    // Printer columns: real values, nothing `<invalid>`.
    let get_tr = scene.cp.kubectl_ok(&["get", "tr", "-n", &scene.ns], None);
    eprintln!("{get_tr}");
    assert!(!get_tr.contains("<invalid>"), "{get_tr}");
    let row = get_tr.lines().find(|l| l.starts_with(&run)).unwrap();
    for want in [
        "SegmentImportTask",
        "events-offline",
        "Succeeded",
        &format!("{total}/{total}"),
    ] {
        assert!(row.contains(want), "{want} missing in {row:?}");
    }
    let get_mtc = scene.cp.kubectl_ok(&["get", "mtc", "-n", &scene.ns], None);
    eprintln!("{get_mtc}");
    assert!(!get_mtc.contains("<invalid>"), "{get_mtc}");
    let row = get_mtc.lines().find(|l| l.starts_with(CONFIG)).unwrap();
    // NEXT: the fire time itself (a `date` column would print `<invalid>` for a future time).
    for want in [
        "SegmentImportTask",
        "events-offline",
        "0 0 0 1 1 ?",
        "false",
        "-01-01T00:00:00Z",
        "Succeeded",
    ] {
        assert!(row.contains(want), "{want} missing in {row:?}");
    }
    let get_tables = scene
        .cp
        .kubectl_ok(&["get", "tables", "-n", &scene.ns], None);
    eprintln!("{get_tables}");
    assert!(!get_tables.contains("<invalid>"), "{get_tables}");
    let describe = scene
        .cp
        .kubectl_ok(&["describe", "tr", "-n", &scene.ns, &run], None);
    for want in ["Subtasks:", "Committed", "Events:", "SubtaskCommitted"] {
        assert!(describe.contains(want), "{want} missing in:\n{describe}");
    }

    // Jobs: one per subtask, completed by the real Job controller, owned by the run; their
    // Pods ran on the node stand-in and succeeded.
    let jobs = scene.jobs(&run).await;
    assert_eq!(jobs.len() as u64, total, "one Job per subtask");
    for job in &jobs {
        assert_eq!(job_condition(job, "Complete").as_deref(), Some("True"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("TaskRun", run.as_str())
        );
    }
    let ran: Vec<_> = scene.node.pods();
    assert_eq!(ran.len() as u64, total, "{ran:#?}");
    for p in &ran {
        assert!(
            matches!(&p.state, PodState::Finished { exit_codes, phase, .. } if exit_codes == &[0] && phase == "Succeeded"),
            "{p:#?}\n{}",
            scene.node.log(&p.namespace, &p.name)
        );
    }

    // Status only through the status subresource, as the operator's account.
    let tr_obj = scene.runs().get(&run).await.unwrap();
    let managed = tr_obj.metadata.managed_fields.clone().unwrap_or_default();
    let ours: Vec<_> = managed
        .iter()
        .filter(|m| m.manager.as_deref() == Some("minion-operator"))
        .collect();
    assert!(!ours.is_empty(), "{managed:#?}");
    for m in &ours {
        assert_eq!(m.operation.as_deref(), Some("Apply"), "{m:#?}");
        assert_eq!(m.subresource.as_deref(), Some("status"), "{m:#?}");
    }
    for kind in ["tables", "miniontaskconfigs"] {
        let list = scene.cp.kubectl_ok(
            &[
                "get",
                kind,
                "-n",
                &scene.ns,
                "-o",
                "json",
                "--show-managed-fields",
            ],
            None,
        );
        let list: Value = serde_json::from_str(&list).unwrap();
        for item in list["items"].as_array().unwrap() {
            let ours: Vec<&Value> = item["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["manager"] == "minion-operator")
                .collect();
            assert!(
                !ours.is_empty(),
                "{kind}: the operator wrote status: {item:#}"
            );
            assert!(
                ours.iter()
                    .all(|m| m["operation"] == "Apply" && m["subresource"] == "status"),
                "{kind}: {ours:#?}"
            );
        }
    }
    let sa = format!(
        "system:serviceaccount:{}:{}",
        scene.release.namespace, scene.release.operator_sa
    );
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", &sa, "-n", &scene.ns];
        all.extend_from_slice(args);
        scene.cp.kubectl(&all).status.success()
    };
    assert!(can(&[
        "patch",
        "taskruns.minion.dev",
        "--subresource=status"
    ]));
    assert!(!can(&["update", "tables.minion.dev"]));
    assert!(!can(&["patch", "miniontaskconfigs.minion.dev"]));
    // Events were accepted from the operator (reporting controller and instance).
    let events = scene.events_of(&run).await;
    let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    for want in ["SubtaskStarted", "SubtaskCommitted"] {
        assert!(reasons.contains(&want), "{want} missing in {reasons:?}");
    }
    let e = &events[0];
    assert_eq!(e.reporting_controller.as_deref(), Some("minion-operator"));
    assert_eq!(e.reporting_instance.as_deref(), Some("op-a"));
    // No write was refused. (Not a bare "422": run names hold the time, e.g. `…-044422`.)
    let log = scene.operators[0].output();
    for bad in [
        "forbidden",
        "Forbidden",
        "is invalid",
        "code: 422",
        "Unprocessable",
    ] {
        assert!(
            !log.contains(bad),
            "the operator's log mentions {bad:?}:\n{log}"
        );
    }
}

/// A node lost mid-run, at the worst moment: a Pod's worker has written its output (staged,
/// with its result manifest) but the node goes before it reports success. Evicted (the
/// `DisruptionTarget` condition a kubelet sets), the real Job controller replaces the Pod in
/// the same Job (the chart's `podFailurePolicy` ignores disruptions), which runs the same
/// attempt again on the same staging prefix; killed (exit 137), the Job fails
/// (`backoffLimit: 0`) and the operator retries the subtask as a new Job, leaving the lost
/// attempt's staged output behind. The run still succeeds with every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn a_node_lost_mid_run_is_retried_and_every_row_lands_once() {
    let mut scene = Scene::new("kill", Setup::default()).await;
    let evicted = scene.node.arm(
        move |p| label(p, "minion.dev/subtask") == "0",
        KillAt::Exited,
        Stop::Evict,
    );
    let killed = scene.node.arm(
        move |p| label(p, "minion.dev/subtask") == "1" && label(p, "minion.dev/attempt") == "1",
        KillAt::Exited,
        Stop::Kill,
    );
    scene.start_operator("op-a");
    // maxAttempts defaults to 1 (no retry): with the chart's `backoffLimit: 0`, a killed Pod
    // would fail the run. The run allows a second attempt.
    let run = scene
        .create_run_with(&manual_name(), |run| run.spec.max_attempts = Some(2))
        .await;
    let tr = scene.wait_finished(&run).await;
    assert_eq!(
        tr["status"]["phase"],
        "Succeeded",
        "{tr:#}\n{}",
        scene.diagnostics()
    );
    let delivered = |rx: tokio::sync::oneshot::Receiver<String>| async move {
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .ok()
            .and_then(Result::ok)
    };
    let evicted = delivered(evicted).await.expect("a Pod was evicted");
    let killed = delivered(killed).await.expect("a Pod was killed");
    eprintln!("evicted {evicted}, killed {killed}");
    scene.assert_imported_exactly().await;

    let jobs = scene.jobs(&run).await;
    let pods = scene.pods().await;
    let job_of = |pod: &str| {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(pod))
            .and_then(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get("batch.kubernetes.io/job-name")
                    .cloned()
            })
            .unwrap()
    };
    // The evicted Pod's Job got a second Pod from the Job controller and completed.
    let evicted_job = job_of(&evicted);
    let job = jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(evicted_job.as_str()))
        .unwrap();
    assert_eq!(
        job_condition(job, "Complete").as_deref(),
        Some("True"),
        "{job:#?}"
    );
    let in_job = pods
        .iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("batch.kubernetes.io/job-name"))
                == Some(&evicted_job)
        })
        .count();
    assert_eq!(in_job, 2, "the Job controller replaced the evicted Pod");
    let evicted_pod = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(evicted.as_str()))
        .unwrap();
    let status = serde_json::to_value(&evicted_pod.status).unwrap();
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        condition(&json!({"status": status}), "DisruptionTarget"),
        Some("True")
    );
    // The killed Pod's Job failed; the operator retried the subtask as attempt 2.
    let killed_job = job_of(&killed);
    let job = jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(killed_job.as_str()))
        .unwrap();
    assert_eq!(
        job_condition(job, "Failed").as_deref(),
        Some("True"),
        "{job:#?}"
    );
    let reason = job
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap()
        .reason
        .clone();
    assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
    let retried = format!("{killed_job}-a2");
    assert!(
        jobs.iter()
            .any(|j| j.metadata.name.as_deref() == Some(retried.as_str())),
        "attempt 2 of the killed subtask: {:?}",
        jobs.iter()
            .map(|j| j.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    // The lost attempt's output was staged (and must not have been committed: the totals
    // above).
    let subtask = label(
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(killed.as_str()))
            .unwrap(),
        "minion.dev/subtask",
    );
    let lost = run_data_dir(&scene.lake, &run).join(&subtask).join("1");
    assert!(
        staged_files(&scene.lake, &run)
            .iter()
            .any(|f| f.starts_with(&lost) && f.extension().is_some_and(|e| e == "parquet")),
        "the lost attempt staged its output in {}",
        lost.display()
    );
    let killed_status = serde_json::to_value(
        &pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(killed.as_str()))
            .unwrap()
            .status,
    )
    .unwrap();
    assert_eq!(
        killed_status["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
}

/// A role without `create` on Jobs: the refusal is named in a Warning Event on the run, the
/// destination stays unchanged, and once the verb is granted back the run completes with
/// every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn a_missing_rbac_verb_is_named_and_nothing_is_half_committed() {
    const FULL: &str =
        "resources: [\"jobs\"]\n    verbs: [\"get\", \"list\", \"watch\", \"create\", \"delete\"]";
    const NARROW: &str =
        "resources: [\"jobs\"]\n    verbs: [\"get\", \"list\", \"watch\", \"delete\"]";
    let mut scene = Scene::new(
        "rbac",
        Setup {
            cluster_wide: true,
            edit: |text| {
                assert_eq!(text.matches(FULL).count(), 1, "the Jobs rule: {text}");
                text.replace(FULL, NARROW)
            },
            ..Setup::default()
        },
    )
    .await;
    assert!(scene.release.rendered.contains("kind: ClusterRole\n"));
    scene.start_operator("op-a");
    let run = scene.create_run(&manual_name()).await;
    let runs = scene.runs();
    let named = wait_for(
        "the refused Job create to be named in a Warning Event or a condition of the run",
        Duration::from_secs(90),
        Duration::from_millis(500),
        async || {
            let events = scene.events_of(&run).await;
            let event = events.iter().find_map(|e| {
                let note = e.note.clone().unwrap_or_default();
                (e.type_.as_deref() == Some("Warning") && note.contains("forbidden"))
                    .then(|| format!("{}: {note}", e.reason.clone().unwrap_or_default()))
            });
            let tr = serde_json::to_value(runs.get(&run).await.ok()?).unwrap();
            let cond = tr["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| {
                    c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("forbidden"))
                })
                .map(|c| c.to_string());
            event.or(cond)
        },
        || scene.diagnostics(),
    )
    .await;
    eprintln!("named: {named}");
    assert!(named.contains("jobs"), "{named}");
    assert!(scene.jobs(&run).await.is_empty());
    assert_eq!(scene.destination_rows().await, 0, "nothing committed");
    let table = scene.table_json("events-offline").await;
    assert!(
        table["status"]["lineage"]
            .as_array()
            .is_none_or(|l| l.iter().all(|e| e["state"] != "COMPLETED")),
        "{table:#}"
    );
    let tr = scene.run_json(&run).await;
    assert_ne!(tr["status"]["phase"], "Succeeded", "{tr:#}");

    // Granting the verb back lets the run finish, exactly once.
    let role = scene.release.fullname.clone();
    let fixed = scene.release.rendered.replace(NARROW, FULL);
    scene.cp.kubectl_ok(&["apply", "-f", "-"], Some(&fixed));
    eprintln!("ClusterRole {role} has `create` on Jobs again");
    let tr = scene.wait_finished(&run).await;
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    scene.assert_imported_exactly().await;
}

/// A namespace without the worker ServiceAccount: the Job controller cannot create the
/// subtask's pod. The attempt fails once the pod start timeout passes, with reason
/// `JobCreateFailed` and the Job controller's message (naming the ServiceAccount) in the run's
/// status and a Warning Event, instead of waiting for the run's deadline; nothing is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn a_job_that_cannot_create_its_pod_fails_the_subtask_quickly_naming_why() {
    let mut scene = Scene::new("nosa", Setup::default()).await;
    let worker_sa = scene.release.worker_sa.clone();
    scene.cp.kubectl_ok(
        &["delete", "serviceaccount", &worker_sa, "-n", &scene.ns],
        None,
    );
    scene.start_operator_with("op-a", &["--pod-start-timeout=5".to_string()]);
    let run = scene.create_run(&manual_name()).await;
    let tr = scene.wait_finished(&run).await;
    assert_eq!(tr["status"]["phase"], "Failed", "{tr:#}");
    let failed = subtasks(&tr)
        .into_iter()
        .find(|s| s["reason"] == "JobCreateFailed")
        .unwrap_or_else(|| panic!("no subtask failed with JobCreateFailed: {tr:#}"));
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&worker_sa) && message.contains("creates no pod"),
        "{message}"
    );
    eprintln!("subtask failed: JobCreateFailed: {message}");
    assert!(
        scene.events_of(&run).await.iter().any(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("JobCreateFailed"))
        }),
        "no Warning Event names JobCreateFailed"
    );
    assert_eq!(scene.destination_rows().await, 0, "nothing committed");
}

/// `kubectl apply` of specs the operator would refuse is refused at admission by the CRDs'
/// CEL rules, each message naming the field; a valid spec is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn specs_the_operator_would_refuse_are_refused_at_kubectl_apply_naming_the_field() {
    let cp = ControlPlane::from_env().await;
    cp.install_crds();
    let ns = format!("admission-{}", unique_suffix());
    cp.create_namespace(&ns).await;
    let apply = |yaml: &str| {
        let out = cp.kubectl_as(None, &["apply", "-n", &ns, "-f", "-"], Some(yaml));
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let config = |extra: &str| {
        format!(
            "apiVersion: minion.dev/v1alpha1\nkind: MinionTaskConfig\nmetadata:\n  name: merge\nspec:\n  taskType: MergeRollupTask\n  table: events-offline\n{extra}"
        )
    };
    for (extra, field, words) in [
        (
            "  runTimeout: soon\n",
            "spec.runTimeout",
            "must be a period",
        ),
        (
            "  memoryBudget: lots\n",
            "spec.memoryBudget",
            "must be a size",
        ),
        (
            "  schedule: every day\n",
            "spec.schedule",
            "must be a cron expression",
        ),
        (
            "  mergeRollupTask:\n    levels:\n      - {name: 1day, bucketTimePeriod: a day}\n",
            "spec.mergeRollupTask.levels[*].bucketTimePeriod",
            "must be a period",
        ),
        (
            "  purgeTask: {}\n",
            "spec.purgeTask",
            "is the block of PurgeTask",
        ),
    ] {
        let (ok, out) = apply(&config(extra));
        assert!(!ok, "accepted {extra:?}: {out}");
        assert!(
            out.contains(field) && out.contains(words),
            "{extra:?}: the refusal names neither {field} nor {words:?}: {out}"
        );
    }
    let (ok, out) = apply(&config(
        "  schedule: \"0 */10 * * * ?\"\n  runTimeout: 1d12h\n  memoryBudget: 512Mi\n  mergeRollupTask:\n    levels:\n      - {name: 1day, bucketTimePeriod: 1d, bufferTimePeriod: 2d}\n",
    ));
    assert!(ok, "a valid config was refused: {out}");

    let run = |spec: &str| {
        format!(
            "apiVersion: minion.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: r\nspec:\n  taskType: MergeRollupTask\n  table: events-offline\n{spec}"
        )
    };
    let (ok, out) = apply(&run(
        "  configRef: merge\n  config:\n    mergeRollupTask:\n      levels: []\n",
    ));
    assert!(
        !ok && out.contains("set exactly one of spec.configRef"),
        "{out}"
    );
    let (ok, out) = apply(&run("  runTimeout: forever\n"));
    assert!(
        !ok && out.contains("spec.runTimeout") && out.contains("must be a period"),
        "{out}"
    );
    let (ok, out) = apply(&run("  configRef: merge\n"));
    assert!(ok, "a valid run was refused: {out}");
    // With configRef, taskType and table come from the config; an inline config needs both.
    let (ok, out) = apply(
        "apiVersion: minion.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: r2\nspec:\n  configRef: merge\n",
    );
    assert!(ok, "a run naming only its config was refused: {out}");
    let (ok, out) = apply(
        "apiVersion: minion.dev/v1alpha1\nkind: TaskRun\nmetadata:\n  name: r3\nspec:\n  table: events-offline\n  config:\n    purgeTask: {}\n",
    );
    assert!(
        !ok && out.contains("an inline spec.config needs spec.taskType and spec.table"),
        "{out}"
    );
    cp.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Two operator processes with the chart's leader election (one Lease in the release
/// namespace): the leader commits the first subtask and is killed (SIGKILL: the Lease is not
/// released) while the other subtasks' Pods wait on the node; the Job controller finishes
/// the Jobs without any operator, the second process takes the Lease when it expires and
/// commits the rest. No row is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn the_other_replica_takes_over_when_the_leader_is_killed() {
    let mut scene = Scene::new("leader", Setup::default()).await;
    let leases: Api<Lease> = Api::namespaced(scene.client(), &scene.release.namespace);
    let lease_name = scene.release.lease_name.clone();
    let holder = async || -> Option<String> {
        leases
            .get_opt(&lease_name)
            .await
            .ok()??
            .spec?
            .holder_identity
    };
    scene.start_operator("op-a");
    wait_for(
        "op-a to hold the Lease",
        Duration::from_secs(60),
        Duration::from_millis(300),
        async || (holder().await.as_deref() == Some("op-a")).then_some(()),
        || scene.diagnostics(),
    )
    .await;
    scene.start_operator("op-b");
    scene
        .node
        .hold(move |p| label(p, "minion.dev/subtask") != "0");
    let run = scene.create_run(&manual_name()).await;
    scene.wait_subtask(&run, 0, "Committed").await;
    let tr = scene.run_json(&run).await;
    let total = tr["status"]["subtasksTotal"].as_u64().unwrap();
    assert!(total >= 2, "{tr:#}");
    // Every other subtask has its Job (created by op-a) before the kill.
    wait_for(
        "op-a to create every Job",
        Duration::from_secs(60),
        Duration::from_millis(300),
        async || (scene.jobs(&run).await.len() as u64 == total).then_some(()),
        || scene.diagnostics(),
    )
    .await;
    assert_eq!(holder().await.as_deref(), Some("op-a"));
    scene.operators[0].kill();
    let killed_at = Instant::now();
    eprintln!("op-a killed; releasing the held Pods");
    scene.node.release();
    let tr = scene.wait_finished(&run).await;
    eprintln!("finished {:?} after the kill", killed_at.elapsed());
    assert_eq!(
        tr["status"]["phase"],
        "Succeeded",
        "{tr:#}\n{}",
        scene.diagnostics()
    );
    scene.assert_imported_exactly().await;
    assert_eq!(holder().await.as_deref(), Some("op-b"));
    let lease = leases.get(&lease_name).await.unwrap();
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);
    assert!(scene.operators[1].output().contains("became leader"));
    // Both replicas committed: the Events name each instance.
    let instances: std::collections::BTreeSet<String> = scene
        .events_of(&run)
        .await
        .iter()
        .filter(|e| e.reason.as_deref() == Some("SubtaskCommitted"))
        .filter_map(|e| e.reporting_instance.clone())
        .collect();
    assert_eq!(
        instances,
        ["op-a", "op-b"].map(String::from).into_iter().collect(),
        "SubtaskCommitted Events by instance"
    );
    // One Job per subtask: op-b resumed op-a's Jobs rather than starting them again.
    assert_eq!(scene.jobs(&run).await.len() as u64, total);
}

/// The directory of `run`'s staged outputs under the destination:
/// `<table>/data/<namespace>/<run>-<12 hex digits of its uid>` (the run's key).
fn run_data_dir(lake: &Path, run: &str) -> PathBuf {
    let data = lake.join("events-offline/data");
    for ns in std::fs::read_dir(&data).into_iter().flatten().flatten() {
        for dir in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let name = dir.file_name().to_string_lossy().to_string();
            let of_run = name
                .strip_prefix(run)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|uid| uid.len() == 12 && uid.chars().all(|c| c.is_ascii_hexdigit()));
            if of_run {
                return dir.path();
            }
        }
    }
    data.join("none").join(run)
}

/// Staged (uncommitted) output of `run` under the destination: files below
/// `<table>/data/<namespace>/<run key>/<subtask>/` of subtasks that were not committed.
fn staged_files(lake: &Path, run: &str) -> Vec<PathBuf> {
    let root = run_data_dir(lake, run);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A TaskRun deleted mid-run (subtask 0 committed; the other subtasks' workers done, their
/// output staged, their Pods' results not yet reported), with a cluster-wide operator: its
/// finalizer holds it until the run is reverted, so no IN_PROGRESS lineage entry of the
/// deleted run is left on the Table and its staged, uncommitted output
/// (`data/<run>/<subtask>/<attempt>/`: spec, Parquet files, result manifest) is deleted; then
/// it goes (the next test checks the Jobs and a new run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn a_task_run_deleted_mid_run_leaves_nothing_behind() {
    let (scene, run) = deleted_mid_run().await;
    let table = scene.table_json("events-offline").await;
    let live: Vec<&Value> = table["status"]["lineage"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["taskRun"] == run.as_str() && e["state"] == "IN_PROGRESS")
        .collect();
    assert!(
        live.is_empty(),
        "IN_PROGRESS lineage of the deleted run: {live:#?}"
    );
    let staged = staged_files(&scene.lake, &run);
    let uncommitted: Vec<_> = staged
        .iter()
        .filter(|p| !p.starts_with(run_data_dir(&scene.lake, &run).join("0")))
        .collect();
    assert!(
        uncommitted.is_empty(),
        "staged output left: {uncommitted:#?}"
    );
}

/// What does hold today when a TaskRun is deleted mid-run (see
/// [`a_task_run_deleted_mid_run_leaves_nothing_behind`] for what does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn a_task_run_deleted_mid_run_loses_its_jobs_and_a_new_run_imports_the_rest_once() {
    let (scene, run) = deleted_mid_run().await;
    let table = scene.table_json("events-offline").await;
    eprintln!(
        "today: lineage of the deleted run: {}",
        serde_json::to_string_pretty(
            &table["status"]["lineage"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["taskRun"] == run.as_str())
                .collect::<Vec<_>>()
        )
        .unwrap()
    );
    eprintln!(
        "today: files under data/<ns>/{run}-<uid>: {:#?}",
        staged_files(&scene.lake, &run)
    );
    // A new run imports the rest.
    let second = scene.create_run(&format!("{CONFIG}-after-delete")).await;
    let tr = scene.wait_finished(&second).await;
    assert_eq!(
        tr["status"]["phase"],
        "Succeeded",
        "{tr:#}\n{}",
        scene.diagnostics()
    );
    scene.assert_imported_exactly().await;
}

/// Waits until the run is half done: subtask 0 committed, every other subtask's worker done
/// (its output staged) with its Pod's result held on the node.
async fn mid_run(scene: &Scene, run: &str) {
    scene.wait_subtask(run, 0, "Committed").await;
    let tr = scene.run_json(run).await;
    let total = tr["status"]["subtasksTotal"].as_u64().unwrap();
    assert!(total >= 2, "{tr:#}");
    wait_for(
        "every other subtask's worker to be done, its result held",
        Duration::from_secs(60),
        Duration::from_millis(300),
        async || {
            let exited = scene
                .node
                .pods()
                .iter()
                .filter(|p| matches!(p.state, PodState::Exited { .. }))
                .count() as u64;
            (exited == total - 1).then_some(())
        },
        || scene.diagnostics(),
    )
    .await;
}

/// Runs the import until it is half done ([`mid_run`]), deletes the run and checks what the
/// API does: the run, its Jobs and its Pods are gone.
async fn deleted_mid_run() -> (Scene, String) {
    // Cluster-wide RBAC, as the operator holds runs with its finalizer by default only then.
    let mut scene = Scene::new(
        "delrun",
        Setup {
            cluster_wide: true,
            ..Setup::default()
        },
    )
    .await;
    scene
        .node
        .hold_result(move |p| label(p, "minion.dev/subtask") != "0");
    // The test's operator watches its namespace only (tests share the control plane), as
    // cluster-wide installs do not; it holds runs as they do.
    scene.start_operator_with("op-a", &["--finalizers=true".to_string()]);
    let run = scene.create_run(&manual_name()).await;
    mid_run(&scene, &run).await;
    let rows_before = scene.destination_rows().await;
    assert!(rows_before > 0);
    scene.cp.kubectl_ok(
        &[
            "delete",
            "tr",
            "-n",
            &scene.ns,
            &run,
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );
    wait_for(
        "the garbage collector to delete the run's Jobs and Pods",
        Duration::from_secs(90),
        Duration::from_millis(500),
        async || (scene.jobs(&run).await.is_empty() && scene.pods().await.is_empty()).then_some(()),
        || scene.diagnostics(),
    )
    .await;
    assert_eq!(
        scene.destination_rows().await,
        rows_before,
        "committed rows stay"
    );
    scene.node.release();
    (scene, run)
}

/// A watched namespace deleted mid-run (the operator's release lives in another one): the
/// namespace goes away completely (nothing blocks it: the node finishes the Pods' deletion),
/// the operator keeps running, and the lake keeps only committed data: the staged output of
/// the unfinished subtasks is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known bug: a namespace deleted mid-run leaves the run's staged output in the lake (its Tables go with the namespace, so nothing tells which staged files were committed)"]
async fn known_bug_a_namespace_deleted_mid_run_leaves_no_staged_output() {
    let (scene, run) = namespace_deleted_mid_run().await;
    let staged = staged_files(&scene.lake, &run);
    let uncommitted: Vec<_> = staged
        .iter()
        .filter(|p| !p.starts_with(run_data_dir(&scene.lake, &run).join("0")))
        .collect();
    assert!(
        uncommitted.is_empty(),
        "staged output left: {uncommitted:#?}"
    );
}

/// What does hold today when a watched namespace is deleted mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn a_namespace_deleted_mid_run_goes_away_and_the_operator_keeps_running() {
    let (mut scene, run) = namespace_deleted_mid_run().await;
    eprintln!(
        "today: files under data/<ns>/{run}-<uid>: {:#?}",
        staged_files(&scene.lake, &run)
    );
    assert!(
        scene.operators[0].running(),
        "{}",
        scene.operators[0].output()
    );
}

async fn namespace_deleted_mid_run() -> (Scene, String) {
    let mut scene = Scene::new(
        "delns",
        Setup {
            separate_release_namespace: true,
            ..Setup::default()
        },
    )
    .await;
    scene
        .node
        .hold_result(move |p| label(p, "minion.dev/subtask") != "0");
    scene.start_operator("op-a");
    let run = scene.create_run(&manual_name()).await;
    mid_run(&scene, &run).await;
    let namespaces: Api<Namespace> = Api::all(scene.client());
    namespaces
        .delete(&scene.ns, &DeleteParams::default())
        .await
        .unwrap();
    let ns = scene.ns.clone();
    wait_for(
        "the namespace to be gone",
        Duration::from_secs(120),
        Duration::from_millis(500),
        async || namespaces.get_opt(&ns).await.ok()?.is_none().then_some(()),
        || scene.diagnostics(),
    )
    .await;
    // Give the operator a few ticks to notice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    (scene, run)
}

/// A run of a config whose name is long gets Jobs: the operator keeps TaskRun names within
/// 63 characters (`schedule::MAX_NAME_LEN`), and a Job name must fit the 63 bytes of the
/// `batch.kubernetes.io/job-name` label the Job controller puts on its Pods: `job_name`
/// shortens the name part of `<run>-<uid>-<index>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start (scripts/e2e-control-plane.sh runs it)"]
async fn a_run_with_a_63_character_name_gets_its_jobs() {
    let mut scene = Scene::new("longname", Setup::default()).await;
    scene.start_operator("op-a");
    // The name a schedule gives a run of a config named with 47 characters or more.
    let name = minion_operator::schedule::task_run_name(
        &format!("{CONFIG}-{}", "x".repeat(60)),
        chrono::Utc::now(),
    );
    assert_eq!(name.len(), minion_operator::schedule::MAX_NAME_LEN);
    let run = scene.create_run(&name).await;
    // Finished, or the refusal named (today: a JobInvalid Warning Event, then retried forever).
    let runs = scene.runs();
    let refused = wait_for(
        "the run to finish or a Job to be refused",
        RUN_TIMEOUT,
        Duration::from_millis(500),
        async || {
            let tr = runs.get(&run).await.ok()?;
            if tr.status.as_ref().is_some_and(|s| s.phase.is_finished()) {
                return Some(None);
            }
            scene
                .events_of(&run)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("JobInvalid"))
                .map(|e| e.note)
        },
        || scene.diagnostics(),
    )
    .await;
    assert_eq!(refused, None, "a Job was refused");
    let tr = scene.wait_finished(&run).await;
    assert_eq!(
        tr["status"]["phase"],
        "Succeeded",
        "{tr:#}\n{}",
        scene.diagnostics()
    );
    scene.assert_imported_exactly().await;
}

/// The behaviours of the in-process fake API (`minion_e2e::fake_api`) that the other suites
/// rely on, checked against the real server: what agrees is asserted; where the real server
/// differs the assertion states the real behaviour and the fake's is named in a comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn the_real_api_server_does_what_the_fake_api_emulates() {
    let scene = Scene::new(
        "contract",
        Setup {
            days: 1,
            ..Setup::default()
        },
    )
    .await;
    let client = scene.client();
    let ns = scene.ns.as_str();
    let runs: Api<TaskRun> = Api::namespaced(client.clone(), ns);
    let tr_yaml = |name: &str| -> TaskRun {
        serde_json::from_value(json!({
            "apiVersion": "minion.dev/v1alpha1", "kind": "TaskRun",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"taskType": "SegmentImportTask", "table": "events-offline", "configRef": CONFIG},
        }))
        .unwrap()
    };

    // 1. Status subresource: create drops status; a write to the main resource keeps the
    //    stored status; a write to /status keeps spec; only spec changes bump generation.
    //    (fake: the same.)
    let mut with_status = tr_yaml("contract-status");
    with_status.status = Some(serde_json::from_value(json!({"phase": "Running"})).unwrap());
    let created = runs
        .create(&PostParams::default(), &with_status)
        .await
        .unwrap();
    assert!(created.status.is_none(), "create drops status: {created:?}");
    let gen1 = created.metadata.generation;
    runs.patch_status(
        "contract-status",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": "Running"}, "spec": {"table": "changed-by-status"}}),
        ),
    )
    .await
    .unwrap();
    let after = runs.get("contract-status").await.unwrap();
    assert_eq!(after.spec.table, "events-offline", "/status keeps spec");
    assert_eq!(after.status.as_ref().unwrap().phase.as_str(), "Running");
    assert_eq!(
        after.metadata.generation, gen1,
        "status writes keep generation"
    );
    runs.patch(
        "contract-status",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed"}, "spec": {"parallelism": 2}})),
    )
    .await
    .unwrap();
    let after = runs.get("contract-status").await.unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().phase.as_str(),
        "Running",
        "main resource keeps status"
    );
    assert_eq!(
        after.metadata.generation,
        gen1.map(|g| g + 1),
        "spec changes bump generation"
    );

    // 2. Server-side apply of the status by one forced field manager: fields it no longer
    //    applies are removed (fake: the applied status replaces the stored one).
    let pp = PatchParams::apply("minion-operator").force();
    let apply = |status: Value| json!({"apiVersion": "minion.dev/v1alpha1", "kind": "TaskRun", "status": status});
    runs.patch_status(
        "contract-status",
        &pp,
        &Patch::Apply(apply(
            json!({"phase": "Running", "progress": "1/2", "message": "m"}),
        )),
    )
    .await
    .unwrap();
    let applied = runs
        .patch_status(
            "contract-status",
            &pp,
            &Patch::Apply(apply(json!({"phase": "Succeeded"}))),
        )
        .await
        .unwrap();
    let status = serde_json::to_value(applied.status.unwrap()).unwrap();
    assert_eq!(status["phase"], "Succeeded");
    assert!(
        status.get("progress").is_none() && status.get("message").is_none(),
        "{status:#}"
    );
    //    Server-side apply to the main resource creates an absent object (fake: the same).
    let absent = tr_yaml("contract-applied");
    runs.patch(
        "contract-applied",
        &PatchParams::apply("minion-e2e"),
        &Patch::Apply(&absent),
    )
    .await
    .unwrap();
    assert!(runs.get_opt("contract-applied").await.unwrap().is_some());
    //    A stale resourceVersion is refused with 409 Conflict (fake: the same).
    let mut stale = runs.get("contract-applied").await.unwrap();
    runs.patch(
        "contract-applied",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    stale.spec.parallelism = Some(3);
    match runs
        .replace("contract-applied", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("a stale PUT succeeded: {other:?}"),
    }

    // 3. Names: a TaskRun name may be 63 characters and more (a DNS subdomain, 253), but a
    //    Job's name must fit a label value (63 bytes): the Job controller labels its Pods
    //    with it. The operator's job names fit (`job_name` shortens them); a longer one is
    //    refused. (fake: the same, word for word.)
    let long = "r".repeat(62);
    runs.create(&PostParams::default(), &tr_yaml(&long))
        .await
        .unwrap();
    let owner = runs.get(&long).await.unwrap();
    let request = minion_operator::control::LaunchRequest {
        namespace: ns.into(),
        task_run: long.clone(),
        subtask: 0,
        kind: Default::default(),
        attempt: 1,
        job: minion_operator::control::taskrun::job_name(&long, 0, 1),
        spec_uri: "file:///nonexistent/_spec.json".into(),
        memory_budget_bytes: 64 << 20,
        timeout_ms: 60_000,
    };
    assert!(request.job.len() <= 63, "{}", request.job);
    let defaults =
        minion_operator::k8s::WorkerDefaults::parse("defaults", &scene.release.worker_defaults)
            .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let fake = minion_e2e::fake_api::FakeApi::start().await;
    let fake_jobs: Api<Job> = Api::namespaced(fake.client(), ns);
    let too_long = minion_operator::control::LaunchRequest {
        job: format!("{long}-0-a"),
        ..request.clone()
    };
    // A dry run: validated as a create, nothing stored (no Pods left for section 6).
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    for r in [&request, &too_long] {
        let job = minion_operator::k8s::job::build(r, &defaults, None, &owner, None).unwrap();
        match (
            jobs.create(&dry_run, &job).await,
            fake_jobs.create(&PostParams::default(), &job).await,
        ) {
            (Ok(_), Ok(_)) if r.job.len() <= 63 => {}
            (Err(kube::Error::Api(s)), Err(kube::Error::Api(f))) if r.job.len() > 63 => {
                eprintln!(
                    "real server on a {}-character Job name: {}",
                    r.job.len(),
                    s.message
                );
                assert_eq!(s.code, 422);
                assert!(
                    s.message.contains("must be no more than 63"),
                    "{}",
                    s.message
                );
                assert_eq!(
                    (f.code, &f.reason, &f.message),
                    (s.code, &s.reason, &s.message)
                );
            }
            other => panic!("a {}-character Job name: {other:?}", r.job.len()),
        }
    }

    // 3b. Size: the server stores an object only as large as etcd takes (1.5 MiB by default):
    //     a larger one is refused by etcd, and past 2 MiB by the etcd client, each passed on as
    //     a 500 without a reason; a request body over 3 MiB is refused with a 413
    //     RequestEntityTooLarge. (fake: the same codes and messages; the client's byte count
    //     differs.)
    let status_of = |bytes: usize| {
        json!({"status": {"lineage": [{
            "id": "contract-0", "state": "IN_PROGRESS", "outputPrefix": "data/contract/0",
            "taskRun": "contract", "timestampMs": 1,
            "segmentsFrom": (0..bytes / 100)
                .map(|i| format!("data/{i:08}-{}.parquet", "s".repeat(79)))
                .collect::<Vec<_>>(),
        }]}})
    };
    let real_tables: Api<Table> = Api::namespaced(client.clone(), ns);
    let fake_tables: Api<Table> = Api::namespaced(fake.client(), ns);
    let mut copy = real_tables.get("events-offline").await.unwrap();
    copy.metadata = kube::api::ObjectMeta {
        name: Some("events-offline".into()),
        ..Default::default()
    };
    fake_tables
        .create(&PostParams::default(), &copy)
        .await
        .unwrap();
    for (tenths_of_mib, code, message) in [
        (18, 500, "etcdserver: request is too large"),
        (
            25,
            500,
            "rpc error: code = ResourceExhausted desc = trying to send message larger than max (",
        ),
        (40, 413, "Request entity too large: limit is 3145728"),
    ] {
        let patch = Patch::Merge(status_of(tenths_of_mib * 1024 * 1024 / 10));
        let pp = PatchParams::default();
        match (
            real_tables
                .patch_status("events-offline", &pp, &patch)
                .await,
            fake_tables
                .patch_status("events-offline", &pp, &patch)
                .await,
        ) {
            (Err(kube::Error::Api(s)), Err(kube::Error::Api(f))) => {
                eprintln!(
                    "real server on a status of {tenths_of_mib}/10 MiB: {} {:?} {}",
                    s.code, s.reason, s.message
                );
                assert_eq!(
                    (s.code, s.message.starts_with(message)),
                    (code, true),
                    "{s:?}"
                );
                assert_eq!((f.code, &f.reason), (s.code, &s.reason), "{f:?}");
                assert!(f.message.starts_with(message), "{f:?}");
            }
            other => panic!("a status of {tenths_of_mib}/10 MiB was accepted: {other:?}"),
        }
    }

    // 4. Defaulting and pruning by the CRD schema: unknown fields are dropped (with a
    //    warning), schema defaults are filled in. (fake: stores what it is sent, no
    //    defaults, no pruning.)
    let tables: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("minion.dev", "v1alpha1", "Table"),
            "tables",
        ),
    );
    let mut raw = scene.table_json("events-realtime").await;
    raw["metadata"] = json!({"name": "contract-pruned", "namespace": ns});
    raw.as_object_mut().unwrap().remove("status");
    raw["spec"]["notInTheSchema"] = json!("x");
    for c in raw["spec"]["schema"]["columns"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("role");
    }
    let raw: kube::api::DynamicObject = serde_json::from_value(raw).unwrap();
    let stored =
        serde_json::to_value(tables.create(&PostParams::default(), &raw).await.unwrap()).unwrap();
    assert!(
        stored["spec"].get("notInTheSchema").is_none(),
        "pruned: {stored:#}"
    );
    assert_eq!(
        stored["spec"]["schema"]["columns"][1]["role"], "dimension",
        "defaulted"
    );
    //    kubectl asks for strict field validation: it refuses the unknown field instead.
    let strict = scene.cp.kubectl_as(
        None,
        &["create", "-n", ns, "-f", "-"],
        Some(
            "apiVersion: minion.dev/v1alpha1\nkind: TaskRun\nmetadata: {name: contract-strict}\n\
             spec: {taskType: SegmentImportTask, table: t, notInTheSchema: x}\n",
        ),
    );
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(
        !strict.status.success(),
        "kubectl create accepted an unknown field"
    );
    assert!(
        stderr.contains("strict decoding error: unknown field \"spec.notInTheSchema\""),
        "{stderr}"
    );
    //    The operator's types read what the server stored (deny_unknown_fields holds).
    let _: Table = serde_json::from_value(stored).unwrap();

    // 5. Job controller semantics (fake kubelet: `finished_status`): exit 0 completes the
    //    Job; the worker's bad-input exit code fails it at once by the pod failure policy;
    //    any other exit code fails it by the backoff limit (0). `job_state` reads each as
    //    the fake's status would be read.
    use minion_operator::control::JobState;
    use minion_operator::k8s::job::{job_state, pod_exit_code};
    let owner = runs.get("contract-status").await.unwrap();
    // A Job as the operator builds it for a run, running `script` with the machine's sh.
    let contract_job = |name: &str, script: &str| -> Job {
        let request = minion_operator::control::LaunchRequest {
            job: name.to_string(),
            task_run: "contract-status".into(),
            ..request.clone()
        };
        let mut job =
            minion_operator::k8s::job::build(&request, &defaults, None, &owner, None).unwrap();
        let c = &mut job
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0];
        c.image = Some("busybox".into());
        c.command = Some(vec!["sh".into(), "-c".into(), script.into()]);
        c.args = None;
        job
    };
    let mut names = Vec::new();
    for (code, name) in [
        (0, "exit-ok"),
        (minion_contract::EXIT_BAD_INPUT, "exit-bad-input"),
        (1, "exit-transient"),
    ] {
        let name = format!("contract-{name}");
        let job = contract_job(&name, &format!("exit {code}"));
        jobs.create(&PostParams::default(), &job).await.unwrap();
        names.push((code, name));
    }
    for (code, name) in &names {
        let job = wait_for(
            &format!("Job {name} to finish"),
            Duration::from_secs(60),
            Duration::from_millis(300),
            async || {
                let j = jobs.get(name).await.ok()?;
                (job_condition(&j, "Complete").as_deref() == Some("True")
                    || job_condition(&j, "Failed").as_deref() == Some("True"))
                .then_some(j)
            },
            || scene.diagnostics(),
        )
        .await;
        let conditions: Vec<(String, String, Option<String>)> = job
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect();
        eprintln!("real Job {name}: conditions {conditions:?}");
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
            .await
            .unwrap()
            .items;
        let exit = pods.iter().find_map(pod_exit_code);
        assert_eq!(exit, Some(*code), "the Pod's exit code");
        let fake: Job = {
            let mut j = job.clone();
            let patch = minion_e2e::fake_api::kubelet::finished_status(Some(*code), "");
            j.status = Some(serde_json::from_value(patch["status"].clone()).unwrap());
            j
        };
        let real_state = job_state(&job, exit);
        let fake_state = job_state(&fake, None);
        match (*code, &real_state) {
            (0, JobState::Succeeded { .. }) => {}
            (c, JobState::Failed { exit_code, .. }) if c != 0 => assert_eq!(*exit_code, Some(c)),
            _ => panic!("exit {code}: {real_state:?}"),
        }
        assert_eq!(
            std::mem::discriminant(&real_state),
            std::mem::discriminant(&fake_state),
            "exit {code}: real {real_state:?}, fake {fake_state:?}"
        );
        let reason = |t: &str| {
            conditions
                .iter()
                .find(|c| c.0 == t && c.1 == "True")
                .and_then(|c| c.2.clone())
        };
        match *code {
            0 => assert!(
                reason("Complete").is_some()
                    || job_condition(&job, "Complete").as_deref() == Some("True")
            ),
            c if c == minion_contract::EXIT_BAD_INPUT => {
                assert_eq!(reason("Failed").as_deref(), Some("PodFailurePolicy"))
            }
            _ => assert_eq!(reason("Failed").as_deref(), Some("BackoffLimitExceeded")),
        }
    }

    // The node stand-in gives a Pod what the kubelet would: a Secret as `envFrom`, as a
    //    `secretKeyRef` and as a volume (a mounted path in an env value is rewritten), the
    //    spill `emptyDir` as TMPDIR, `$(VAR)` references, the Pod's name in HOSTNAME.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "contract-secret"},
                "stringData": {"AWS_REGION": "eu-west-3"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut env_job = contract_job(
        "contract-env",
        r#"test "$AWS_REGION" = eu-west-3 && test "$REGION" = eu-west-3 && test "$(cat "$CREDS")" = eu-west-3 && test "$EXPANDED" = "r=eu-west-3" && test -d "$TMPDIR" && test "$TMPDIR" != /tmp && case "$HOSTNAME" in contract-env-*) true;; *) false;; esac"#,
    );
    let pod = env_job
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap();
    let c = &mut pod.containers[0];
    c.env_from = Some(vec![
        serde_json::from_value(json!({"secretRef": {"name": "contract-secret"}})).unwrap(),
    ]);
    c.env.get_or_insert_default().extend([
        serde_json::from_value(json!({"name": "REGION", "valueFrom": {"secretKeyRef": {"name": "contract-secret", "key": "AWS_REGION"}}})).unwrap(),
        serde_json::from_value(json!({"name": "CREDS", "value": "/etc/creds/AWS_REGION"})).unwrap(),
        serde_json::from_value(json!({"name": "EXPANDED", "value": "r=$(REGION)"})).unwrap(),
    ]);
    c.volume_mounts.get_or_insert_default().push(
        serde_json::from_value(
            json!({"name": "creds", "mountPath": "/etc/creds", "readOnly": true}),
        )
        .unwrap(),
    );
    pod.volumes.get_or_insert_default().push(
        serde_json::from_value(
            json!({"name": "creds", "secret": {"secretName": "contract-secret"}}),
        )
        .unwrap(),
    );
    jobs.create(&PostParams::default(), &env_job).await.unwrap();
    let env_job = wait_for(
        "Job contract-env to finish",
        Duration::from_secs(60),
        Duration::from_millis(300),
        async || {
            let j = jobs.get("contract-env").await.ok()?;
            (job_condition(&j, "Complete").as_deref() == Some("True")
                || job_condition(&j, "Failed").as_deref() == Some("True"))
            .then_some(j)
        },
        || scene.diagnostics(),
    )
    .await;
    assert_eq!(
        job_condition(&env_job, "Complete").as_deref(),
        Some("True"),
        "the Pod's environment and volumes: {env_job:#?}"
    );

    // 6. Deleting an owner deletes what it owns (background garbage collection), down to
    //    the Pods, and the node ends a deleted Pod's process. (fake: deletes owned objects
    //    at once, recursively; it has no Pods.)
    let sleeper = contract_job("contract-sleeper", "exec sleep 300");
    jobs.create(&PostParams::default(), &sleeper).await.unwrap();
    let sleeping = wait_for(
        "the sleeper to run",
        Duration::from_secs(60),
        Duration::from_millis(300),
        async || {
            scene.node.pods().into_iter().find(|p| {
                p.labels
                    .get("batch.kubernetes.io/job-name")
                    .map(String::as_str)
                    == Some("contract-sleeper")
                    && p.state == PodState::Running
            })
        },
        || scene.diagnostics(),
    )
    .await;
    runs.delete("contract-status", &DeleteParams::background())
        .await
        .unwrap();
    wait_for(
        "the owned Jobs and Pods to be deleted",
        Duration::from_secs(90),
        Duration::from_millis(500),
        async || {
            let jobs = jobs.list(&ListParams::default()).await.ok()?.items;
            let left: Vec<_> = jobs
                .iter()
                .filter(|j| {
                    j.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("contract-"))
                })
                .collect();
            let pods = scene.pods().await;
            (left.is_empty() && pods.is_empty()).then_some(())
        },
        || scene.diagnostics(),
    )
    .await;
    let ended = scene
        .node
        .pods()
        .into_iter()
        .find(|p| p.uid == sleeping.uid)
        .unwrap();
    assert!(
        matches!(&ended.state, PodState::Finished { stopped: Some(s), .. } if s.starts_with("Terminate")),
        "{ended:#?}"
    );
    // The operator ServiceAccount's client works as a client of its own (sa-kubeconfig), with
    // the verbs the code uses and no others: it patches TaskRuns (their finalizer) but never
    // writes a config's spec, nor replaces a TaskRun with an update.
    let sa_client = client_for(&scene.op_kubeconfig).await;
    let as_sa: Api<TaskRun> = Api::namespaced(sa_client.clone(), ns);
    assert!(as_sa.list(&ListParams::default()).await.is_ok());
    let mut run = as_sa.get("contract-applied").await.unwrap();
    run.spec.parallelism = Some(1);
    let replaced = as_sa
        .replace("contract-applied", &PostParams::default(), &run)
        .await;
    assert!(
        matches!(&replaced, Err(kube::Error::Api(s)) if s.code == 403),
        "taskruns: update is not granted: {replaced:?}"
    );
    let configs: Api<MinionTaskConfig> = Api::namespaced(sa_client, ns);
    let patched = configs
        .patch(
            CONFIG,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await;
    assert!(
        matches!(&patched, Err(kube::Error::Api(s)) if s.code == 403),
        "miniontaskconfigs: patch is not granted: {patched:?}"
    );
}

/// `kubectl minion` (the `kubectl-minion` binary, the admin's kubeconfig) as a user walks it
/// on a real API server: `run` creates a TaskRun, `cancel` stops it mid-run (subtask 0
/// committed, the others' results held on the node) and it ends `Cancelled`; `retry` starts
/// `<run>-retry-1`, which imports the rest: every source row lands exactly once. `get` and
/// `describe` show the runs and their Events, `logs` the worker's output of a subtask through
/// the API server. Each command and its output is printed (the session in
/// docs/kubernetes.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real control plane: scripts/control-plane.sh start"]
async fn kubectl_minion_runs_cancels_and_retries_against_the_real_api_server() {
    let mut scene = Scene::new("plugin", Setup::default()).await;
    scene
        .node
        .hold_result(move |p| label(p, "minion.dev/subtask") != "0");
    scene.start_operator("op-a");
    let plugin = |args: &[&str]| -> String {
        let out = std::process::Command::new(workspace_binary("kubectl-minion", "minion-cli"))
            .args(args)
            .args(["-n", &scene.ns])
            .env("KUBECONFIG", &scene.cp.kubeconfig)
            .env_remove("MINION_STATE_DIR")
            .env_remove("MINION_CLUSTER")
            .current_dir(&scene.dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl minion {args:?} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "$ kubectl minion {} -n {}\n{stdout}",
            args.join(" "),
            scene.ns
        );
        stdout
    };
    let run = minion_e2e::fixtures::created_run(&plugin(&["run", CONFIG]));
    scene.wait_subtask(&run, 0, "Committed").await;
    let out = plugin(&["cancel", &run]);
    assert!(out.contains("cancel requested"), "{out}");
    let tr = scene.wait_finished(&run).await;
    assert_eq!(tr["status"]["phase"], "Cancelled", "{tr:#}");
    // The TYPE and TABLE columns come from the status the operator wrote.
    let out = plugin(&["get", "tr"]);
    assert!(
        out.contains("Cancelled")
            && out.contains("SegmentImportTask")
            && out.contains("events-offline"),
        "{out}"
    );
    let kubectl = scene.cp.kubectl_ok(&["get", "tr", "-n", &scene.ns], None);
    assert!(kubectl.contains("SegmentImportTask"), "{kubectl}");

    scene.node.release();
    let out = plugin(&["retry", &run]);
    let retry = format!("{run}-retry-1");
    assert!(
        out.contains(&format!("taskrun.minion.dev/{retry} created")),
        "{out}"
    );
    let tr = scene.wait_finished(&retry).await;
    assert_eq!(
        tr["status"]["phase"],
        "Succeeded",
        "{tr:#}\n{}",
        scene.diagnostics()
    );
    scene.assert_imported_exactly().await;
    plugin(&["get", "tr"]);
    let out = plugin(&["describe", "tr", &retry]);
    assert!(
        out.contains("Events:") && out.contains("Succeeded"),
        "{out}"
    );
    let out = plugin(&["describe", "tr", &run]);
    assert!(out.contains("Cancelled"), "{out}");
    let out = plugin(&["get", "mtc"]);
    assert!(out.contains(CONFIG), "{out}");
    // The worker's output, through the API server from the node (the kubelet's log endpoint).
    let out = plugin(&["logs", &retry, "--subtask", "0"]);
    assert!(out.contains("subtask succeeded"), "{out}");
}
