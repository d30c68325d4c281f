//! The `minion-operator` binary as it runs out of cluster, through one sample import: it
//! installs the CRDs (server-side apply), starts `minion-operator run`, creates the sample
//! Tables and SegmentImport config of `config/` under unique names with `file://` URIs in a
//! data directory, fills the REALTIME table, creates a TaskRun and waits for it to succeed
//! through Jobs; then checks `count(*)`/`sum()` of the destination against the source and
//! the `Complete` condition `kubectl wait` reads.
//!
//! - Against the in-process API (`minion_e2e::fake_api`), everywhere: the Jobs run as local
//!   `minion-worker` processes (`target/<profile>/minion-worker`, built with the workspace's
//!   tests) by [`minion_e2e::fake_api::kubelet`]; also with both tables in S3 when the test
//!   server of `scripts/test.sh` runs.
//! - Against a cluster with kubelets (the kind workflow `.github/workflows/e2e-kind.yaml`):
//!   ignored by default; `MINION_E2E_KUBECONFIG` names the kubeconfig (the test fails without
//!   it), `MINION_E2E_DATA_DIR` a directory the nodes mount at the same path, and the Jobs run
//!   `MINION_E2E_IMAGE`. Needs `target/<profile>/minion-operator` and the chart's worker
//!   ServiceAccount `minion-operator-worker` in the namespace.
//!
//! The real control plane of `scripts/control-plane.sh` (no kubelet: a node stand-in) has its
//! own suite, `tests/tests/control_plane.rs`.

use minion_e2e::fixtures::{assert_imported_exactly, realtime_events, workspace_binary};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use minion_operator::api::{self, MinionTaskConfig, Resource, Table, TaskRun};
use minion_operator::catalog::install_crypto_provider;
use minion_operator::validate;

const NAMESPACE: &str = "default";

fn operator_bin() -> PathBuf {
    workspace_binary("minion-operator", "minion-operator")
}

/// Kills the operator when the test ends, passed or not.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The samples with names suffixed by `suffix`, table URIs under `root`, the Tables naming
/// the Secret `secret` when given, and no schedule (the test creates its run).
fn samples(suffix: &str, root: &str, secret: Option<&str>) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut text = String::new();
    for file in [
        "table-events-realtime.yaml",
        "table-events-offline.yaml",
        "mtc-segment-import.yaml",
    ] {
        text.push_str("---\n");
        text.push_str(&std::fs::read_to_string(dir.join(file)).unwrap());
    }
    if let Some(secret) = secret {
        text = text.replace(
            "spec:\n  tableType:",
            &format!("spec:\n  storageSecretRef: {{name: {secret}}}\n  tableType:"),
        );
    }
    text.replace(
        "file:///tmp/minion/events_realtime",
        &format!("{root}/events-realtime"),
    )
    .replace(
        "file:///tmp/minion/events_offline",
        &format!("{root}/events-offline"),
    )
    .replace(
        "name: events-realtime",
        &format!("name: events-realtime{suffix}"),
    )
    .replace(
        "name: events-offline",
        &format!("name: events-offline{suffix}"),
    )
    .replace(
        "name: events-import",
        &format!("name: events-import{suffix}"),
    )
    .replace(
        "table: events-offline",
        &format!("table: events-offline{suffix}"),
    )
    .replace(
        "sourceTable: events-realtime",
        &format!("sourceTable: events-realtime{suffix}"),
    )
    .replace("  schedule: \"0 */15 * * * ?\"\n", "")
    .replace(
        "maxNumRecordsPerTask: 50000000",
        "maxNumRecordsPerTask: 2000",
    )
}

/// Where the scenario runs: a client, the kubeconfig the operator process gets, the data
/// directory every pod sees at the same path, and the Jobs' worker defaults.
struct Cluster {
    client: kube::Client,
    kubeconfig: PathBuf,
    data_root: PathBuf,
    /// Where the tables live: `None` for `file://` under the data directory, else a URI
    /// prefix with the object-store options the Tables' Secret carries (the operator process
    /// gets no other credentials).
    store: Option<(String, std::collections::BTreeMap<String, String>)>,
    worker_defaults: String,
    /// Pause after installing the CRDs (a real API server needs a moment to serve them).
    crd_settle: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster with kubelets and the image: MINION_E2E_KUBECONFIG (see .github/workflows/e2e-kind.yaml)"]
async fn a_sample_import_runs_through_real_jobs_on_a_cluster() {
    let kubeconfig = std::env::var("MINION_E2E_KUBECONFIG").expect(
        "MINION_E2E_KUBECONFIG names the cluster's kubeconfig (and MINION_E2E_DATA_DIR, MINION_E2E_IMAGE): \
         see .github/workflows/e2e-kind.yaml; without a cluster, scripts/e2e-control-plane.sh runs the real control plane",
    );
    install_crypto_provider();
    let data_root = PathBuf::from(
        std::env::var("MINION_E2E_DATA_DIR").unwrap_or_else(|_| "/tmp/minion".into()),
    );
    let image = std::env::var("MINION_E2E_IMAGE").unwrap_or_else(|_| "minion-operator:e2e".into());
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let worker_defaults = format!(
        "image: {image}\nimagePullPolicy: IfNotPresent\nserviceAccountName: minion-operator-worker\n\
         backoffLimit: 0\nactiveDeadlineSeconds: 900\nttlSecondsAfterFinished: 3600\n\
         extraVolumes:\n  - name: data\n    hostPath: {{path: {root}, type: Directory}}\n\
         extraVolumeMounts:\n  - {{name: data, mountPath: {root}}}\n",
        root = data_root.display()
    );
    scenario(&Cluster {
        client: kube::Client::try_from(config).unwrap(),
        kubeconfig: PathBuf::from(kubeconfig),
        data_root,
        store: None,
        worker_defaults,
        crd_settle: Duration::from_secs(2),
    })
    .await;
}

/// The real-cluster scenario with the `minion-operator` binary as it runs out of cluster,
/// against the in-process API (`minion_e2e::fake_api`), and the Jobs run as local
/// `minion-worker` processes by [`minion_e2e::fake_api::kubelet`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_runs_the_operator_binary_against_the_in_process_api() {
    on_the_in_process_api(None).await;
}

/// The same with both tables in S3 (the test server of `scripts/test.sh`): the operator
/// process has no object-store settings of its own and reads them, like the Jobs, from the
/// Secret the Tables name.
#[ignore = "needs the S3 test server: eval \"$(scripts/s3-test-server.sh start)\" (scripts/test.sh runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_the_operator_and_the_jobs_take_credentials_from_the_tables_secret() {
    let endpoint = std::env::var("MINION_TEST_S3_ENDPOINT").expect(
        "MINION_TEST_S3_ENDPOINT: start the S3 test server (scripts/s3-test-server.sh start)",
    );
    let bucket = std::env::var("MINION_TEST_S3_BUCKET").unwrap_or_else(|_| "minion-test".into());
    let secret = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let root = format!("s3://{bucket}/kind-{}", std::process::id());
    on_the_in_process_api(Some((root, secret))).await;
}

/// Runs [`scenario`] against the fake API, with the operator binary and the Jobs as local
/// processes.
async fn on_the_in_process_api(
    store: Option<(String, std::collections::BTreeMap<String, String>)>,
) {
    install_crypto_provider();
    let bin_dir = operator_bin().parent().unwrap().to_path_buf();
    assert!(
        bin_dir.join("minion-worker").exists(),
        "{} is missing: cargo build -p minion-worker --bin minion-worker",
        bin_dir.join("minion-worker").display()
    );
    let dir = tempfile::tempdir().unwrap();
    let api = minion_e2e::fake_api::FakeApi::start().await;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: default}}\n\
             current-context: fake\n",
            api.url()
        ),
    )
    .unwrap();
    let kubelet = tokio::spawn(minion_e2e::fake_api::kubelet::run_jobs(
        api.client(),
        NAMESPACE.into(),
        bin_dir,
        dir.path().join("pods"),
    ));
    scenario(&Cluster {
        client: api.client(),
        kubeconfig,
        data_root: dir.path().join("data"),
        store,
        worker_defaults: "serviceAccountName: minion-operator-worker\nbackoffLimit: 0\nactiveDeadlineSeconds: 900\n".into(),
        crd_settle: Duration::ZERO,
    })
    .await;
    let jobs = api.list("batch/v1/jobs", Some(NAMESPACE));
    assert!(!jobs.is_empty(), "the run went through Jobs");
    kubelet.abort();
}

/// Installs the CRDs, creates the samples, fills the REALTIME table, starts the operator
/// process, creates a run and waits for it, then checks count/sum and the conditions.
async fn scenario(cluster: &Cluster) {
    let client = cluster.client.clone();
    let suffix = format!("-e2e{}", std::process::id());
    let data = cluster.data_root.join(format!("suite{suffix}"));
    std::fs::create_dir_all(&data).unwrap();

    // CRDs, as `kubectl apply --server-side -f crds/` would.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ssa = PatchParams::apply("minion-e2e").force();
    for crd in api::crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &ssa, &Patch::Apply(&crd)).await.unwrap();
    }
    tokio::time::sleep(cluster.crd_settle).await;

    // The resources (and the Tables' Secret), and the REALTIME table's data.
    let root = match &cluster.store {
        None => format!("file://{}", data.display()),
        Some((root, options)) => {
            let secret: Secret = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": format!("s3-credentials{suffix}"),
                    "namespace": NAMESPACE,
                    "labels": {"minion.dev/storage-credentials": "true"},
                },
                "stringData": options,
            }))
            .unwrap();
            Api::<Secret>::namespaced(client.clone(), NAMESPACE)
                .create(&PostParams::default(), &secret)
                .await
                .unwrap();
            root.clone()
        }
    };
    let secret_name = format!("s3-credentials{suffix}");
    let secret = cluster.store.as_ref().map(|_| secret_name.as_str());
    let resources = api::parse_manifests(&samples(&suffix, &root, secret)).unwrap();
    let tables: Api<Table> = Api::namespaced(client.clone(), NAMESPACE);
    let configs: Api<MinionTaskConfig> = Api::namespaced(client.clone(), NAMESPACE);
    let mut defs = Vec::new();
    for r in resources {
        match r {
            Resource::Table(t) => {
                let def = validate::table(&t).unwrap();
                if let Some((_, options)) = &cluster.store {
                    // This process reaches each table with the settings its Secret carries.
                    let options = options.clone().into_iter().collect();
                    minion_operator::storage::register(
                        &minion_operator::storage::table_key(NAMESPACE, &def.name),
                        &def.uri,
                        &options,
                    );
                }
                defs.push(def);
                tables.create(&PostParams::default(), &t).await.unwrap();
            }
            Resource::MinionTaskConfig(c) => {
                configs.create(&PostParams::default(), &c).await.unwrap();
            }
            Resource::TaskRun(_) => {}
        }
    }
    let realtime = defs
        .iter()
        .find(|d| d.table_type == minion_operator::model::TableType::Realtime)
        .unwrap()
        .clone();
    let offline = defs
        .iter()
        .find(|d| d.table_type == minion_operator::model::TableType::Offline)
        .unwrap()
        .clone();
    let (source, start_ms) = realtime_events(&realtime, &data, 4, 500).await;

    // Subtask Jobs: the image, the worker account, the shared data directory.
    let defaults = data.join("worker-defaults.yaml");
    std::fs::write(&defaults, &cluster.worker_defaults).unwrap();
    let _operator = Operator(
        Command::new(operator_bin())
            .env("KUBECONFIG", &cluster.kubeconfig)
            // Object-store settings come from the Tables' Secret only.
            .env_remove("AWS_ENDPOINT")
            .env_remove("AWS_ALLOW_HTTP")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_REGION")
            .args(["run", "--namespaces", NAMESPACE, "--log-format", "text"])
            .args(["--leader-election-namespace", NAMESPACE])
            .args(["--lease-name", &format!("minion-operator{suffix}")])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .arg("--worker-defaults")
            .arg(&defaults)
            .spawn()
            .unwrap(),
    );

    // A manual run of the import (Pinot's schedule API), naming only its config: the task
    // type and the tables (and with them the storage Secret its Jobs get) are the config's.
    let run_name = format!("events-import{suffix}-1");
    let run: TaskRun = serde_json::from_value(serde_json::json!({
        "apiVersion": "minion.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": run_name, "namespace": NAMESPACE},
        "spec": {"configRef": format!("events-import{suffix}")}
    }))
    .unwrap();
    let runs: Api<TaskRun> = Api::namespaced(client.clone(), NAMESPACE);
    runs.create(&PostParams::default(), &run).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(600);
    let finished = loop {
        let tr = runs.get(&run_name).await.unwrap();
        let phase = tr.status.as_ref().map(|s| s.phase.as_str().to_string());
        println!("TaskRun {run_name}: {phase:?}");
        if matches!(
            phase.as_deref(),
            Some("Succeeded" | "Failed" | "TimedOut" | "Skipped")
        ) {
            break tr;
        }
        assert!(
            Instant::now() < deadline,
            "TaskRun {run_name} did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    let status = finished.status.clone().unwrap();
    assert_eq!(status.phase.as_str(), "Succeeded", "{status:#?}");
    // kubectl get's TYPE and TABLE columns read them from the status.
    assert_eq!(status.table.as_deref(), Some(offline.name.as_str()));
    assert_eq!(
        status.task_type.map(|t| t.as_str()),
        Some("SegmentImportTask")
    );
    let complete = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Complete")
        .map(|c| c.status);
    assert_eq!(
        serde_json::to_value(complete).unwrap(),
        serde_json::json!("True"),
        "kubectl wait --for=condition=Complete reads this"
    );

    assert_imported_exactly(
        &source,
        &realtime,
        &offline,
        start_ms,
        NAMESPACE,
        &format!("events-import{suffix}"),
    )
    .await;
}
