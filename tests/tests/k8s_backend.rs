//! The Kubernetes backend end to end, without a cluster: the control loop runs with
//! `KubeBackend` and a real `kube::Client` against the in-process fake API
//! (`minion_e2e::fake_api`). A simulated Job controller watches Jobs, runs each Job's worker
//! in process on the spec URI from its args, and sets the Job's status Complete or Failed.
//! After every step: the Delta table holds exactly the rows of the committed subtasks; at
//! the end: TaskRun status, Events, the Jobs' owner/labels/security, lineage, watermark and
//! `count(*)`/`sum()` against the source.
//!
//! Why one long file: the tests share the fake API, the simulated Job controller and the
//! after-every-step table check set up below; each test is one scenario of the same backend.

use minion_e2e::fixtures::{import_samples, realtime_events};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use minion_contract::{SegmentRef, TimeWindow};
use minion_e2e::control_plane::wait_for;
use minion_e2e::fake_api::FakeApi;
use minion_e2e::fake_api::kubelet::finished_status;
use minion_operator::api::{MinionTaskConfig, Resource, Table, TaskRun, parse_manifests};
use minion_operator::catalog::{Catalog, app_id, install_crypto_provider};
use minion_operator::clock::SystemClock;
use minion_operator::control::{Backend, Controller, ControllerOptions, configs::new_task_run};
use minion_operator::demo::{self};
use minion_operator::inspect::{self, Totals, sums_match};
use minion_operator::k8s::{KubeBackend, Watches, WorkerDefaults, WriteGate};
use minion_operator::model::{DAY_MS, TableDef};
use serde_json::Value;

const TASK_RUNS: &str = "minion.dev/v1alpha1/taskruns";

struct Env {
    _dir: tempfile::TempDir,
    api: FakeApi,
    tables: Vec<TableDef>,
    start_ms: i64,
    _jobs: tokio::task::JoinHandle<()>,
}

/// The simulated Job controller: runs every new Job's worker in process, then sets its
/// status (Failed by the pod failure policy on the bad-input exit code).
async fn job_controller(client: kube::Client, spill: PathBuf) {
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let mut events = watcher(jobs.clone(), watcher::Config::default()).boxed();
    while let Some(Ok(event)) = events.next().await {
        let (watcher::Event::Apply(job) | watcher::Event::InitApply(job)) = event else {
            continue;
        };
        if job.status.as_ref().is_some_and(|s| s.conditions.is_some()) {
            continue;
        }
        let name = job.metadata.name.clone().unwrap();
        let args = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .args
            .clone()
            .unwrap();
        let arg = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        let options = minion_worker::RunOptions {
            memory_budget_bytes: Some(arg("--memory-budget").parse().unwrap()),
            spill_dir: Some(spill.clone()),
            ..Default::default()
        };
        let result = match minion_worker::read_spec(&arg("--spec")).await {
            Ok(spec) => minion_worker::run_subtask(&spec, &options)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        let status = match result {
            Ok(()) => finished_status(Some(0), ""),
            Err(e) => finished_status(Some(e.exit_code()), &e.to_string()),
        };
        jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
}

impl Env {
    async fn new(days: u32) -> Env {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let spill = dir.path().join("spill");
        std::fs::create_dir_all(&spill).unwrap();
        let api = FakeApi::start().await;
        let client = api.client();
        let uri = |name: &str| format!("file://{}/{name}", data.display());
        let samples = import_samples(|text| {
            text.replace(
                "file:///tmp/minion/events_realtime",
                &uri("events-realtime"),
            )
            .replace("file:///tmp/minion/events_offline", &uri("events-offline"))
        });
        for (_, text) in samples {
            for r in parse_manifests(&text).unwrap() {
                let pp = PostParams::default();
                match r {
                    Resource::Table(t) => {
                        Api::<Table>::namespaced(client.clone(), "default")
                            .create(&pp, &t)
                            .await
                            .unwrap();
                    }
                    Resource::MinionTaskConfig(c) => {
                        Api::<MinionTaskConfig>::namespaced(client.clone(), "default")
                            .create(&pp, &c)
                            .await
                            .unwrap();
                    }
                    Resource::TaskRun(_) => unreachable!("no TaskRun sample here"),
                }
            }
        }
        let (tables, _) = demo::load_samples(&data).unwrap();
        let realtime = tables.iter().find(|t| t.name == "events-realtime").unwrap();
        let (_, start_ms) = realtime_events(realtime, &data, days, 200).await;
        let jobs = tokio::spawn(job_controller(client, spill));
        Env {
            _dir: dir,
            api,
            tables,
            start_ms,
            _jobs: jobs,
        }
    }

    fn kube_backend(&self) -> KubeBackend {
        self.kube_backend_watching(vec!["default".into()])
    }

    /// A backend watching `namespaces` (empty: every namespace, as a cluster-wide install).
    fn kube_backend_watching(&self, namespaces: Vec<String>) -> KubeBackend {
        KubeBackend::new(
            self.api.client(),
            namespaces,
            WorkerDefaults::parse("defaults", "serviceAccountName: minion-operator-worker\n")
                .unwrap(),
            Some("test".into()),
            WriteGate::default(),
        )
    }

    /// A backend reading straight from the API.
    fn backend(&self) -> Arc<KubeBackend> {
        Arc::new(self.kube_backend())
    }

    /// The backend as the operator runs it: reads from watch-fed caches, once synced.
    async fn cached_backend(&self) -> (Arc<KubeBackend>, Watches) {
        let (backend, watches) = self.kube_backend().with_watches();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !backend.is_synced() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "watches never synced"
            );
            watches.changed_within(Duration::from_millis(50)).await;
        }
        (Arc::new(backend), watches)
    }

    fn table(&self, name: &str) -> &TableDef {
        self.tables.iter().find(|t| t.name == name).unwrap()
    }

    async fn dest_totals(&self) -> Totals {
        let offline = self.table("events-offline");
        let dest = Catalog::open(&offline.uri, Default::default())
            .await
            .unwrap();
        inspect::totals(
            &offline.uri,
            &offline.schema,
            &dest.segments().unwrap(),
            None,
        )
        .await
        .unwrap()
    }

    /// Creates a manual TaskRun of `events-import` and steps the loop until it ends,
    /// checking after every step that the destination holds exactly the committed rows.
    async fn run_import(&self, backend: &Arc<KubeBackend>, name: &str) -> Value {
        let cfg = backend
            .get_task_config("default", "events-import")
            .await
            .unwrap()
            .unwrap();
        backend
            .create_task_run(&new_task_run(&cfg, name, None))
            .await
            .unwrap();
        let mut controller = Controller::new(
            backend.clone(),
            Arc::new(SystemClock),
            ControllerOptions {
                max_steps: None,
                poll_interval: Duration::from_millis(20),
                only_run: None,
                allowed_uri_prefixes: Vec::new(),
            },
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            let report = controller.tick().await.unwrap();
            let run = self.api.get(TASK_RUNS, "default", name).unwrap();
            let committed: u64 = run["status"]["subtasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["state"] == "Committed")
                .map(|s| s["outputRows"].as_u64().unwrap())
                .sum();
            if report.steps > 0 && self.table_exists().await {
                assert_eq!(self.dest_totals().await.rows, committed, "{run:#}");
            }
            let phase = run["status"]["phase"].as_str().unwrap_or("Pending");
            if matches!(phase, "Succeeded" | "Failed" | "TimedOut" | "Skipped") {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stuck: {run:#} {report:?}"
            );
            if report.steps == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    async fn table_exists(&self) -> bool {
        Catalog::open(&self.table("events-offline").uri, Default::default())
            .await
            .is_ok()
    }

    fn events_of(&self, name: &str) -> Vec<Value> {
        self.api
            .list("events.k8s.io/v1/events", Some("default"))
            .into_iter()
            .filter(|e| e["regarding"]["name"] == name)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_run_on_the_kubernetes_backend_imports_every_finished_day_through_jobs() {
    let env = Env::new(5).await;
    // Every step reads the run back from the caches: a stale read would repeat a step (a
    // second Job, a double commit), which the checks below and in run_import would catch.
    let (backend, _watches) = env.cached_backend().await;
    let run = env.run_import(&backend, "events-import-manual-1").await;
    let status = &run["status"];
    assert_eq!(status["phase"], "Succeeded", "{run:#}");
    let total = status["subtasksTotal"].as_u64().unwrap();
    assert!(total >= 2, "expected several windows: {run:#}");
    assert_eq!(status["progress"], format!("{total}/{total}"));
    assert!(
        status["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "Committed"),
        "{run:#}"
    );
    assert_eq!(
        run["metadata"]["ownerReferences"][0]["kind"], "MinionTaskConfig",
        "a config owns its runs"
    );

    // Jobs: one per subtask, owned by the run, our labels only, restricted pods.
    let jobs = env.api.list("batch/v1/jobs", Some("default"));
    assert_eq!(jobs.len() as u64, total);
    for job in &jobs {
        let owner = &job["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "TaskRun");
        assert_eq!(owner["uid"], run["metadata"]["uid"]);
        assert_eq!(owner["controller"], true);
        let labels = job["metadata"]["labels"].as_object().unwrap();
        assert_eq!(labels["minion.dev/task-run"], "events-import-manual-1");
        assert!(
            labels
                .keys()
                .all(|k| k.starts_with("minion.dev/") || k == "app.kubernetes.io/managed-by")
        );
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["serviceAccountName"], "minion-operator-worker");
        assert_eq!(
            pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
            true
        );
        // The config's spec.worker, a memory request of the budget + 64 MiB overhead, and
        // the spill space.
        assert_eq!(
            pod["containers"][0]["resources"]["requests"],
            serde_json::json!({"cpu": "250m", "memory": "576Mi", "ephemeral-storage": "8Gi"}),
        );
    }

    // Events tell the story.
    let reasons: Vec<String> = env
        .events_of("events-import-manual-1")
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect();
    for expected in ["SubtaskStarted", "SubtaskCommitted"] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} missing in {reasons:?}"
        );
    }
    let event = &env.events_of("events-import-manual-1")[0];
    assert_eq!(event["reportingController"], "minion-operator");
    assert_eq!(event["regarding"]["uid"], run["metadata"]["uid"]);

    // Lineage and watermark.
    let table = env
        .api
        .get("minion.dev/v1alpha1/tables", "default", "events-offline")
        .unwrap();
    let completed = table["status"]["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["taskRun"] == "events-import-manual-1" && e["state"] == "COMPLETED")
        .count() as u64;
    assert_eq!(completed, total, "{table:#}");
    let offline = env.table("events-offline");
    let dest = Catalog::open(&offline.uri, Default::default())
        .await
        .unwrap();
    let watermark = dest
        .txn_version(&app_id::watermark("default", "events-import", None))
        .await
        .unwrap()
        .expect("a committed watermark");
    assert!(watermark > env.start_ms);
    assert_eq!(
        status["watermarkAfter"].as_i64(),
        Some(watermark),
        "{run:#}"
    );

    // The data: the destination equals the source up to the watermark.
    let realtime = env.table("events-realtime");
    let source = Catalog::open(&realtime.uri, Default::default())
        .await
        .unwrap();
    let src = inspect::totals(
        &realtime.uri,
        &realtime.schema,
        &source.segments().unwrap(),
        Some(TimeWindow::new(env.start_ms - DAY_MS, watermark)),
    )
    .await
    .unwrap();
    let dst = env.dest_totals().await;
    assert!(src.rows > 0);
    assert_eq!(src.rows, dst.rows, "count(*) differs");
    for metric in ["clicks", "revenue"] {
        assert!(
            sums_match(src.sums[metric], dst.sums[metric]),
            "sum({metric}) differs"
        );
    }

    // What `kubectl wait --for=condition=Complete tr/<name>` and
    // `kubectl wait --for=condition=Ready mtc/<name>` read.
    assert_eq!(condition(&run, "Complete"), Some("True"), "{run:#}");
    let mtc = env
        .api
        .get(
            "minion.dev/v1alpha1/miniontaskconfigs",
            "default",
            "events-import",
        )
        .unwrap();
    assert_eq!(condition(&mtc, "Ready"), Some("True"), "{mtc:#}");

    // Status went through the status subresource only: the spec is as created.
    let tr: TaskRun = serde_json::from_value(run.clone()).unwrap();
    assert_eq!(tr.spec.config_ref.as_deref(), Some("events-import"));
    assert_eq!(
        run["metadata"]["labels"]["minion.dev/config"], "events-import",
        "labels untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_fails_the_task_run_with_the_reason_a_warning_and_reverted_lineage() {
    let env = Env::new(3).await;
    corrupt_oldest_realtime_segment(&env).await;

    let backend = env.backend();
    let run = env.run_import(&backend, "events-import-manual-2").await;
    assert_eq!(run["status"]["phase"], "Failed", "{run:#}");
    assert_eq!(run["status"]["reason"], "CorruptSegment", "{run:#}");
    let warnings: Vec<Value> = env
        .events_of("events-import-manual-2")
        .into_iter()
        .filter(|e| e["type"] == "Warning")
        .collect();
    assert!(
        warnings.iter().any(|e| e["reason"] == "SubtaskFailed"),
        "{warnings:#?}"
    );
    let failed_run = env
        .api
        .get(
            "minion.dev/v1alpha1/taskruns",
            "default",
            "events-import-manual-2",
        )
        .unwrap();
    assert_eq!(
        condition(&failed_run, "Failed"),
        Some("True"),
        "{failed_run:#}"
    );
    assert_ne!(condition(&failed_run, "Complete"), Some("True"));
    let table = env
        .api
        .get("minion.dev/v1alpha1/tables", "default", "events-offline")
        .unwrap();
    let lineage = table["status"]["lineage"].as_array().unwrap();
    assert!(
        lineage
            .iter()
            .any(|e| e["taskRun"] == "events-import-manual-2" && e["state"] == "REVERTED"),
        "{lineage:#?}"
    );
    assert!(
        lineage.iter().all(|e| e["state"] != "IN_PROGRESS"),
        "{lineage:#?}"
    );
}

/// Overwrites the oldest segment of `events-realtime` with bytes that are not Parquet.
async fn corrupt_oldest_realtime_segment(env: &Env) {
    let realtime = env.table("events-realtime");
    let source = Catalog::open(&realtime.uri, Default::default())
        .await
        .unwrap();
    let oldest = source
        .segments()
        .unwrap()
        .into_iter()
        .min_by_key(|s| (s.min_time_ms, s.path.clone()))
        .unwrap();
    let file = PathBuf::from(realtime.uri.trim_start_matches("file://")).join(&oldest.path);
    std::fs::write(&file, b"not parquet").unwrap();
}

/// Ticks the loop `n` times.
async fn ticks(backend: &Arc<KubeBackend>, n: usize) {
    let mut controller = Controller::new(
        backend.clone(),
        Arc::new(SystemClock),
        ControllerOptions {
            max_steps: None,
            poll_interval: Duration::from_millis(20),
            only_run: None,
            allowed_uri_prefixes: Vec::new(),
        },
    );
    for _ in 0..n {
        controller.tick().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_whose_runs_keep_failing_is_degraded_and_the_run_now_annotation_starts_a_run() {
    let env = Env::new(3).await;
    corrupt_oldest_realtime_segment(&env).await;
    let configs = Api::<MinionTaskConfig>::namespaced(env.api.client(), "default");
    configs
        .patch(
            "events-import",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"degradedAfterFailures": 2}})),
        )
        .await
        .unwrap();

    let backend = env.backend();
    let config = |env: &Env| {
        env.api
            .get(
                "minion.dev/v1alpha1/miniontaskconfigs",
                "default",
                "events-import",
            )
            .unwrap()
    };
    let run = env.run_import(&backend, "events-import-manual-f1").await;
    assert_eq!(run["status"]["phase"], "Failed", "{run:#}");
    ticks(&backend, 2).await;
    let cfg = config(&env);
    assert_eq!(cfg["status"]["consecutiveFailures"], 1, "{cfg:#}");
    assert_eq!(condition(&cfg, "Degraded"), Some("False"), "{cfg:#}");

    let run = env.run_import(&backend, "events-import-manual-f2").await;
    assert_eq!(run["status"]["phase"], "Failed", "{run:#}");
    ticks(&backend, 2).await;
    let cfg = config(&env);
    assert_eq!(cfg["status"]["consecutiveFailures"], 2, "{cfg:#}");
    assert_eq!(condition(&cfg, "Degraded"), Some("True"), "{cfg:#}");
    let degraded = cfg["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["reason"], "RunsFailing", "{degraded:#}");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("the last 2 runs failed"),
        "{degraded:#}"
    );
    assert!(cfg["status"].get("lastSuccessfulTime").is_none(), "{cfg:#}");
    assert!(
        env.events_of("events-import")
            .iter()
            .any(|e| e["reason"] == "RunsFailing" && e["type"] == "Warning"),
        "{:#?}",
        env.events_of("events-import")
    );

    // "Run now" (ArgoCD's resource action, or kubectl annotate) creates one run per value.
    configs
        .patch(
            "events-import",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "minion.dev/run-now": "2026-12-03T10:00:00Z"}}})),
        )
        .await
        .unwrap();
    ticks(&backend, 3).await;
    let created = env
        .api
        .get(TASK_RUNS, "default", "events-import-manual-20261203-100000")
        .expect("the run-now annotation created a TaskRun");
    assert_eq!(created["spec"]["configRef"], "events-import", "{created:#}");
    let cfg = config(&env);
    assert_eq!(
        cfg["status"]["handledRunNow"], "2026-12-03T10:00:00Z",
        "{cfg:#}"
    );
    let runs_before = env.api.list(TASK_RUNS, Some("default")).len();
    ticks(&backend, 2).await;
    assert_eq!(
        env.api.list(TASK_RUNS, Some("default")).len(),
        runs_before,
        "a handled value creates no second run"
    );
}

/// Steps the loop until `until` holds of the run `name` (`None` once it is gone), at most 200
/// ticks; returns the run's last state.
async fn tick_until(
    env: &Env,
    backend: &Arc<KubeBackend>,
    name: &str,
    until: impl Fn(Option<&Value>) -> bool,
) -> Option<Value> {
    let mut controller = Controller::new(
        backend.clone(),
        Arc::new(SystemClock),
        ControllerOptions {
            max_steps: None,
            poll_interval: Duration::from_millis(20),
            only_run: None,
            allowed_uri_prefixes: Vec::new(),
        },
    );
    for _ in 0..200 {
        let run = env.api.get(TASK_RUNS, "default", name);
        if until(run.as_ref()) {
            return run;
        }
        let report = controller.tick().await.unwrap();
        if report.steps == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!(
        "run {name} never reached the state: {:#?}",
        env.api.get(TASK_RUNS, "default", name)
    );
}

fn running_subtasks(run: Option<&Value>) -> usize {
    run.and_then(|r| r["status"]["subtasks"].as_array())
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "Running")
        .count()
}

fn in_progress_lineage(env: &Env, run: &str) -> Vec<Value> {
    let table = env
        .api
        .get("minion.dev/v1alpha1/tables", "default", "events-offline")
        .unwrap();
    table["status"]["lineage"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["taskRun"] == run && e["state"] == "IN_PROGRESS")
        .cloned()
        .collect()
}

/// Files a run staged and did not commit: below its `data/default/<key>/` prefix, not among
/// the destination's live segments.
async fn uncommitted_files(env: &Env, run_key: &str) -> Vec<PathBuf> {
    let offline = env.table("events-offline");
    let root = PathBuf::from(offline.uri.trim_start_matches("file://"));
    let live: std::collections::HashSet<PathBuf> =
        match Catalog::open(&offline.uri, Default::default()).await {
            Ok(c) => c
                .segments()
                .unwrap()
                .into_iter()
                .map(|s| root.join(&s.path))
                .collect(),
            Err(_) => Default::default(),
        };
    walk(&root.join("data/default").join(run_key))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet") && !live.contains(p))
        .collect()
}

/// Deleting a running TaskRun: its finalizer holds it until its jobs are stopped and what it
/// staged is reverted (no IN_PROGRESS lineage, no uncommitted file); then it goes. A run with
/// `spec.cancel: true` ends `Cancelled` the same way, nothing committed after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_cancelled_run_reverts_what_it_staged_and_releases_its_lineage() {
    let env = Env::new(3).await;
    // Watching every namespace, as a cluster-wide install: only then does the operator hold
    // runs with its finalizer.
    let backend = Arc::new(env.kube_backend_watching(Vec::new()));
    let cfg = backend
        .get_task_config("default", "events-import")
        .await
        .unwrap()
        .unwrap();

    // Delete mid-run.
    let name = "events-import-manual-del";
    backend
        .create_task_run(&new_task_run(&cfg, name, None))
        .await
        .unwrap();
    let run = tick_until(&env, &backend, name, |r| running_subtasks(r) > 0)
        .await
        .unwrap();
    let finalizers = run["metadata"]["finalizers"].clone();
    assert_eq!(
        finalizers,
        serde_json::json!(["minion.dev/revert-uncommitted"]),
        "{run:#}"
    );
    assert!(
        !in_progress_lineage(&env, name).is_empty(),
        "the run opened its lineage"
    );
    let key = format!("{name}-{}", &run_uid(&env, name).replace('-', "")[..12]);
    // The workers stage their outputs before the run is deleted.
    let staged = wait_for(
        "a worker of the run to stage its output",
        Duration::from_secs(60),
        Duration::from_millis(50),
        async || {
            let files = uncommitted_files(&env, &key).await;
            (!files.is_empty()).then_some(files)
        },
        || format!("{:#?}", env.api.get(TASK_RUNS, "default", name)),
    )
    .await;
    eprintln!("staged before the delete: {staged:#?}");
    Api::<TaskRun>::namespaced(env.api.client(), "default")
        .delete(name, &Default::default())
        .await
        .unwrap();
    let held = env
        .api
        .get(TASK_RUNS, "default", name)
        .expect("held by its finalizer");
    assert!(
        held["metadata"]["deletionTimestamp"].is_string(),
        "{held:#}"
    );
    tick_until(&env, &backend, name, |r| r.is_none()).await;
    assert_eq!(in_progress_lineage(&env, name), Vec::<Value>::new());
    assert_eq!(uncommitted_files(&env, &key).await, Vec::<PathBuf>::new());
    let jobs = env.api.list("batch/v1/jobs", Some("default"));
    assert!(
        jobs.iter().all(|j| !j["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .starts_with(&key)),
        "jobs of the deleted run remain: {jobs:#?}"
    );

    // Cancel mid-run.
    let name = "events-import-manual-cancel";
    backend
        .create_task_run(&new_task_run(&cfg, name, None))
        .await
        .unwrap();
    tick_until(&env, &backend, name, |r| running_subtasks(r) > 0).await;
    let key = format!("{name}-{}", &run_uid(&env, name).replace('-', "")[..12]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed_before = env.dest_totals().await;
    Api::<TaskRun>::namespaced(env.api.client(), "default")
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"cancel": true}})),
        )
        .await
        .unwrap();
    let run = tick_until(&env, &backend, name, |r| {
        r.is_some_and(|r| r["status"]["phase"] == "Cancelled")
    })
    .await
    .unwrap();
    assert_eq!(run["status"]["reason"], "Cancelled", "{run:#}");
    assert_eq!(condition(&run, "Failed"), Some("False"), "{run:#}");
    assert_eq!(in_progress_lineage(&env, name), Vec::<Value>::new());
    assert_eq!(uncommitted_files(&env, &key).await, Vec::<PathBuf>::new());
    assert_eq!(
        env.dest_totals().await.rows,
        committed_before.rows,
        "nothing committed after the cancel"
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_takes_the_lease_serves_probes_and_metrics_and_runs_the_loop() {
    use minion_operator::k8s::lease::LeaseConfig;
    use minion_operator::k8s::operator::{OperatorOptions, run_with_client};
    let env = Env::new(4).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let options = OperatorOptions {
        namespaces: vec!["default".into()],
        metrics_addr: port,
        lease: Some(LeaseConfig::new("default", "minion-operator", "pod-a")),
        worker_defaults: PathBuf::from("/nonexistent/worker-defaults.yaml"),
        // Far beyond the test's deadline: progress must come from watch events alone.
        poll_interval: Duration::from_secs(3600),
        instance: Some("pod-a".into()),
        allowed_uri_prefixes: Vec::new(),
        pod_start_timeout: minion_operator::k8s::stuck::DEFAULT_GRACE,
        finalizers: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(run_with_client(env.api.client(), options, async {
        let _ = stop_rx.await;
    }));
    // Ready once the caches are filled; once the loop has reconciled (and found nothing to
    // do), the run created after that reaches the idle loop only through the TaskRun watch.
    let every = Duration::from_millis(50);
    wait_for(
        "/readyz to answer 200",
        Duration::from_secs(60),
        every,
        async || {
            http_get(port, "/readyz")
                .await
                .starts_with("HTTP/1.1 200")
                .then_some(())
        },
        || "never ready".to_string(),
    )
    .await;
    wait_for(
        "a first reconcile",
        Duration::from_secs(60),
        every,
        async || {
            http_get(port, "/metrics")
                .await
                .contains("minion_reconcile_total{result=\"ok\"}")
                .then_some(())
        },
        || "the loop never reconciled".to_string(),
    )
    .await;
    let backend = env.backend();
    let cfg = backend
        .get_task_config("default", "events-import")
        .await
        .unwrap()
        .unwrap();
    backend
        .create_task_run(&new_task_run(&cfg, "events-import-manual-3", None))
        .await
        .unwrap();
    let run = wait_for(
        "the run to end",
        Duration::from_secs(120),
        every,
        async || {
            let run = env
                .api
                .get(TASK_RUNS, "default", "events-import-manual-3")
                .unwrap();
            let phase = run["status"]["phase"].as_str().unwrap_or("Pending");
            matches!(phase, "Succeeded" | "Failed" | "TimedOut" | "Skipped").then_some(run)
        },
        || {
            let run = env.api.get(TASK_RUNS, "default", "events-import-manual-3");
            format!("{run:#?}")
        },
    )
    .await;
    assert_eq!(run["status"]["phase"], "Succeeded", "{run:#}");
    let lease = env
        .api
        .get(
            "coordination.k8s.io/v1/leases",
            "default",
            "minion-operator",
        )
        .expect("the Lease was created");
    assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
    assert!(http_get(port, "/livez").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(port, "/readyz").await.starts_with("HTTP/1.1 200"));
    let metrics = wait_for(
        "minion_taskrun_total in /metrics",
        Duration::from_secs(5),
        every,
        async || {
            let metrics = http_get(port, "/metrics").await;
            metrics.contains("minion_taskrun_total{").then_some(metrics)
        },
        || "no minion_taskrun_total".to_string(),
    )
    .await;
    assert!(
        metrics.contains(r#"minion_taskrun_total{namespace="default",config="events-import",type="SegmentImportTask",table="events-offline",result="Succeeded"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("minion_leader 1"), "{metrics}");
    assert!(
        metrics.contains("minion_reconcile_total{result=\"ok\"}"),
        "{metrics}"
    );
    // Reads come from the watches' caches: one list per kind to start each watch (and one
    // more after a watch restart), never a list per tick or per step.
    for resource in [
        TASK_RUNS,
        "batch/v1/jobs",
        "minion.dev/v1alpha1/miniontaskconfigs",
    ] {
        assert!(
            env.api.reads("watch", resource) >= 1,
            "{resource} is watched"
        );
        let lists = env.api.reads("list", resource);
        assert!(lists <= 3, "{resource} listed {lists} times");
    }
    stop_tx.send(()).unwrap();
    op.await.unwrap().unwrap();
}

/// The status of condition `type_` in an object's `status.conditions`, as `kubectl wait` reads it.
fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["status"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tables_storage_secret_gives_the_operator_its_store_options_and_a_missing_one_is_named() {
    let api = FakeApi::start().await;
    let backend = KubeBackend::new(
        api.client(),
        vec!["default".into()],
        WorkerDefaults::default(),
        None,
        WriteGate::default(),
    );
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/table-events-offline.yaml"),
    )
    .unwrap()
    .replace(
        "spec:\n  tableType:",
        "spec:\n  storageSecretRef: {name: s3-credentials}\n  tableType:",
    );
    let Resource::Table(mut table) = parse_manifests(&text).unwrap().remove(0) else {
        panic!("not a Table");
    };
    table.metadata.namespace = Some("default".into());
    let err = backend.storage_options(&table).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("default/s3-credentials") && msg.contains("storageSecretRef"),
        "{msg}"
    );
    api.create(
        "core/v1/secrets",
        "default",
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s3-credentials", "labels": {"minion.dev/storage-credentials": "true"}},
            // "http://127.0.0.1:9" and "us-east-1", base64-encoded as the API server stores them.
            "data": {"AWS_ENDPOINT": "aHR0cDovLzEyNy4wLjAuMTo5", "AWS_REGION": "dXMtZWFzdC0x"},
        }),
    )
    .unwrap();
    let options = backend.storage_options(&table).await.unwrap().unwrap();
    assert_eq!(options["AWS_ENDPOINT"], "http://127.0.0.1:9");
    assert_eq!(options["AWS_REGION"], "us-east-1");
    table.spec.storage_secret_ref = None;
    assert_eq!(backend.storage_options(&table).await.unwrap(), None);
}

/// A full-swap FileIngestion over a destination whose catalog holds 25,000 segments: the run's
/// lineage names every one of them (25 subtasks of 1,000), about 2 MB of paths — more than the
/// API server stores in one object (etcd's 1.5 MiB, which the in-process API enforces). The
/// run succeeds all the same: status keeps counts and a reference for each long entry, the
/// lists live beside the table until the entries end, and the Table stays writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_swap_of_25000_segments_succeeds_with_the_tables_status_under_the_size_limit() {
    const SEGMENTS: usize = 25_000;
    const TABLES: &str = "minion.dev/v1alpha1/tables";
    let env = Env::new(1).await;
    let offline = env.table("events-offline").clone();
    let day = chrono::Utc::now().timestamp_millis() - 10 * DAY_MS;
    // The destination's catalog: segments appended without their files (a swap only removes
    // them), with no source file, so the swap replaces them all.
    let mut catalog = Catalog::create(&offline.uri, &offline.schema, Default::default())
        .await
        .unwrap();
    let segments: Vec<SegmentRef> = (0..SEGMENTS)
        .map(|i| SegmentRef {
            path: format!(
                "data/backfill-2024/events_offline_backfill_{i:06}_of_{SEGMENTS:06}.parquet"
            ),
            rows: 10,
            bytes: 4096,
            min_time_ms: Some(day),
            max_time_ms: Some(day + 1000),
            partition: None,
            tags: Default::default(),
        })
        .collect();
    catalog.append(&segments, &[]).await.unwrap();
    catalog.checkpoint().await.unwrap();

    // What status would hold with the paths inline: the API refuses it, as etcd would.
    let backend = env.backend();
    let mut inline =
        serde_json::from_value::<Table>(env.api.get(TABLES, "default", "events-offline").unwrap())
            .unwrap()
            .status
            .unwrap_or_default();
    inline.lineage = vec![
        serde_json::from_value(serde_json::json!({
            "id": "swap-0", "state": "IN_PROGRESS", "outputPrefix": "data/default/swap/0",
            "taskRun": "swap", "timestampMs": 1,
            "segmentsFrom": segments.iter().map(|s| s.path.clone()).collect::<Vec<_>>(),
        }))
        .unwrap(),
    ];
    let err = backend
        .update_table_status("default", "events-offline", &inline)
        .await
        .unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains("etcdserver: request is too large")
            || err.contains("trying to send message larger than max"),
        "{err}"
    );

    // Four CSV files to ingest, and an inline full-swap run over them (the sample's, with the
    // swap on).
    let input = env._dir.path().join("incoming");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..4 {
        let ts = day + i * 1000;
        let csv = format!(
            "ts,country,browser,device,user_id,clicks,revenue,latency_ms\n\
             {ts},US,chrome,mobile,u{i},1,1.5,10.0\n{},DE,firefox,desktop,v{i},2,2.5,20.0\n",
            ts + 1
        );
        std::fs::write(input.join(format!("part-{i}.csv")), csv).unwrap();
    }
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/taskrun-file-ingestion.yaml"),
    )
    .unwrap()
    .replace(
        "file:///tmp/minion/incoming/events/",
        &format!("file://{}/", input.display()),
    )
    .replace("name: events-ingest-2024-01", "name: events-swap")
    .replace("inputFormat: parquet", "inputFormat: csv")
    .replace("\"**/*.parquet\"", "\"*.csv\"")
    .replace(
        "consistentPushEnabled: true",
        "consistentPushEnabled: true\n      consistentPushSwapEnabled: true",
    )
    // The swap takes seconds; a run stuck in Planning ends after this.
    .replace("runTimeout: 6h", "runTimeout: 1m");
    let Resource::TaskRun(run) = parse_manifests(&text).unwrap().remove(0) else {
        panic!("not a TaskRun");
    };
    Api::<TaskRun>::namespaced(env.api.client(), "default")
        .create(&PostParams::default(), &run)
        .await
        .unwrap();

    let mut controller = Controller::new(
        backend.clone(),
        Arc::new(SystemClock),
        ControllerOptions {
            max_steps: None,
            poll_interval: Duration::from_millis(20),
            only_run: None,
            allowed_uri_prefixes: Vec::new(),
        },
    );
    let table_now = || env.api.get(TABLES, "default", "events-offline").unwrap();
    // Stored lists no entry names, as a crash between a status write and a delete leaves
    // them: housekeeping (on the loop's first tick) deletes them, but those of unfinished
    // runs (whose entry ids start with the run's key), which may be about to name them.
    let lists = PathBuf::from(offline.uri.trim_start_matches("file://")).join("_minion/lineage");
    let uid = run_uid(&env, "events-swap");
    let key = minion_operator::control::protocol::run_key("events-swap", Some(&uid));
    let orphan = lists.join("gone-0123456789ab-3/00ff.json");
    let pending = lists.join(format!("{key}-99/00ff.json"));
    for f in [&orphan, &pending] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, br#"{"id":"x"}"#).unwrap();
    }
    let mut log = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let run = loop {
        let report = controller.tick().await.unwrap();
        log.extend(report.log.clone());
        let run = env.api.get(TASK_RUNS, "default", "events-swap").unwrap();
        let phase = run["status"]["phase"].as_str().unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed" | "TimedOut" | "Skipped") {
            break run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck: {run:#} {report:?}"
        );
        if report.steps == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(run["status"]["phase"], "Succeeded", "{run:#}");
    let total = run["status"]["subtasksTotal"].as_u64().unwrap();
    assert_eq!(total, (SEGMENTS / 1000) as u64, "{run:#}");
    // Every version of the Table the API stored: the largest, and the most live entries
    // holding a reference to their lists at once.
    let (mut largest, mut stored_lists, mut locked) = (0, 0, 0);
    for change in env.api.history().iter().filter(|c| c.resource == TABLES) {
        largest = largest.max(serde_json::to_vec(&change.object).unwrap().len());
        let live: Vec<&Value> = change.object["status"]["lineage"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["state"] == "IN_PROGRESS")
            .collect();
        stored_lists = stored_lists.max(live.iter().filter(|e| e["listsRef"].is_string()).count());
        locked = locked.max(
            live.iter()
                .map(|e| e["segmentsFromCount"].as_u64().unwrap_or(0))
                .sum::<u64>(),
        );
    }
    assert_eq!(
        locked, SEGMENTS as u64,
        "the live entries counted every segment"
    );
    eprintln!(
        "largest Table object: {largest} bytes; at most {stored_lists} live entries with stored lists"
    );
    assert_eq!(
        stored_lists, total as usize,
        "every live entry kept its lists beside the table"
    );
    assert!(
        largest < 64 * 1024,
        "the Table object reached {largest} bytes"
    );

    // The swap is committed: only the ingested rows are left.
    let dest = Catalog::open(&offline.uri, Default::default())
        .await
        .unwrap();
    let left = dest.segments().unwrap();
    assert_eq!(left.iter().map(|s| s.rows).sum::<u64>(), 8);
    assert!(
        left.iter()
            .all(|s| !s.path.starts_with("data/backfill-2024/"))
    );

    // Ended entries keep counts only, and their stored lists are gone.
    let table = table_now();
    let entries: Vec<&Value> = table["status"]["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["taskRun"] == "events-swap")
        .collect();
    // (status keeps the newest 20 ended entries; lineageEndedTotal counts them all)
    assert_eq!(entries.len(), 20, "{table:#}");
    assert_eq!(table["status"]["lineageEndedTotal"], total, "{table:#}");
    assert!(entries.iter().all(|e| e["state"] == "COMPLETED"));
    assert!(
        entries.iter().all(|e| e["segmentsFromCount"] == 1000),
        "{entries:#?}"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["segmentsFrom"].as_array().is_none_or(Vec::is_empty)
                && e.get("listsRef").is_none()),
        "{entries:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains(", 1 stored lineage list(s) no entry names")),
        "{log:#?}"
    );
    assert_eq!(
        walk(&lists),
        vec![pending],
        "only the unfinished run's is left"
    );

    // The Table stays writable: the loop's next tick reconciles (and housekeeps) it without
    // an error, and its status can be written back.
    let report = controller.tick().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let table = table_now();
    let status: minion_operator::api::TableStatus =
        serde_json::from_value(table["status"].clone()).unwrap();
    backend
        .update_table_status("default", "events-offline", &status)
        .await
        .unwrap();
}

/// The uid of TaskRun `name`.
fn run_uid(env: &Env, name: &str) -> String {
    env.api.get(TASK_RUNS, "default", name).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Files below `dir` (none when it does not exist).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

/// A run that opened its lineage but is still in Planning past its runTimeout (say its own
/// status write kept failing) times out, and reverts what it opened: no entry stays
/// IN_PROGRESS, nothing it staged is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_still_planning_past_its_run_timeout_times_out_and_reverts_what_it_opened() {
    const TABLES: &str = "minion.dev/v1alpha1/tables";
    let env = Env::new(3).await;
    let backend = env.backend();
    let cfg = backend
        .get_task_config("default", "events-import")
        .await
        .unwrap()
        .unwrap();
    let name = "events-import-manual-4";
    backend
        .create_task_run(&new_task_run(&cfg, name, None))
        .await
        .unwrap();
    // Admit and plan: the plan is stored, the lineage open, the run Running.
    let options = |max_steps| ControllerOptions {
        max_steps,
        poll_interval: Duration::from_millis(20),
        only_run: Some(("default".into(), name.into())),
        allowed_uri_prefixes: Vec::new(),
    };
    let mut controller = Controller::new(backend.clone(), Arc::new(SystemClock), options(Some(2)));
    controller.tick().await.unwrap();
    let live = |table: &Value| -> usize {
        table["status"]["lineage"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["taskRun"] == name && e["state"] == "IN_PROGRESS")
            .count()
    };
    let opened = live(&env.api.get(TABLES, "default", "events-offline").unwrap());
    assert!(opened >= 1, "the plan opened its lineage");
    // As if the run's own status write had failed since, two days ago.
    let runs: Api<TaskRun> = Api::namespaced(env.api.client(), "default");
    let start = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    runs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {
            "phase": "Planning", "startTime": start, "subtasks": null,
            "lastError": "BackendUnavailable: apply status of TaskRun default/x: etcdserver: request is too large",
        }})),
    )
    .await
    .unwrap();
    let mut controller = Controller::new(backend.clone(), Arc::new(SystemClock), options(None));
    let run = controller.drive("default", name).await.unwrap();
    let status = run.status.unwrap();
    assert_eq!(status.phase.as_str(), "TimedOut", "{status:?}");
    assert_eq!(status.reason.as_deref(), Some("PlanningTimedOut"));
    let message = status.message.unwrap();
    assert!(
        message.starts_with("the run was still planning after its runTimeout")
            && message.ends_with("last error: BackendUnavailable: apply status of TaskRun default/x: etcdserver: request is too large"),
        "{message}"
    );
    let table = env.api.get(TABLES, "default", "events-offline").unwrap();
    assert_eq!(live(&table), 0, "{table:#}");
    let reverted = table["status"]["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["taskRun"] == name && e["state"] == "REVERTED")
        .count();
    assert_eq!(reverted, opened, "{table:#}");
    assert!(
        env.api.list("batch/v1/jobs", Some("default")).is_empty(),
        "no job was started"
    );
    if env.table_exists().await {
        assert_eq!(env.dest_totals().await.rows, 0, "nothing committed");
    }
}

/// A run whose source Table is `Ready=False` (its schema names a column its Delta table lacks)
/// waits in Pending with reason TableNotReady and a Warning Event naming the table and its
/// condition, starts no Job and writes nothing; past its deadline it fails with that reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_source_table_is_not_ready_waits_in_pending_then_fails_with_table_not_ready() {
    const TABLES: &str = "minion.dev/v1alpha1/tables";
    let env = Env::new(1).await;
    let mut table = env.api.get(TABLES, "default", "events-realtime").unwrap();
    let columns = table["spec"]["schema"]["columns"].as_array_mut().unwrap();
    columns.push(serde_json::json!({"name": "session", "dataType": "STRING", "role": "dimension"}));
    let columns = columns.clone();
    Api::<Table>::namespaced(env.api.client(), "default")
        .patch(
            "events-realtime",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"schema": {"columns": columns}}})),
        )
        .await
        .unwrap();
    let backend = env.backend();
    let cfg = backend
        .get_task_config("default", "events-import")
        .await
        .unwrap()
        .unwrap();
    let name = "events-import-manual-5";
    backend
        .create_task_run(&new_task_run(&cfg, name, None))
        .await
        .unwrap();
    let options = ControllerOptions {
        max_steps: None,
        poll_interval: Duration::from_millis(20),
        only_run: None,
        allowed_uri_prefixes: Vec::new(),
    };
    let mut controller = Controller::new(backend.clone(), Arc::new(SystemClock), options.clone());
    for _ in 0..3 {
        // Nothing fails: the run waits, the table is not housekept until it is Ready.
        let report = controller.tick().await.unwrap();
        assert!(report.errors.is_empty(), "{report:?}");
        assert_eq!(
            (report.active_runs, report.waiting_runs),
            (1, 1),
            "{report:?}"
        );
    }
    let run = env.api.get(TASK_RUNS, "default", name).unwrap();
    assert_eq!(run["status"]["phase"], "Pending", "{run:#}");
    assert_eq!(run["status"]["reason"], "TableNotReady", "{run:#}");
    let message = run["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("waiting for Table events-realtime: Ready=False SchemaMismatch: ")
            && message.contains("session"),
        "{message}"
    );
    let events: Vec<Value> = env
        .events_of(name)
        .into_iter()
        .filter(|e| e["reason"] == "TableNotReady")
        .collect();
    assert_eq!(events.len(), 1, "one Event, not one per tick: {events:#?}");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["note"].as_str(), Some(message), "{:#}", events[0]);
    assert!(env.api.list("batch/v1/jobs", Some("default")).is_empty());
    let offline = env.api.get(TABLES, "default", "events-offline").unwrap();
    assert!(
        offline["status"]["lineage"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{offline:#}"
    );
    if env.table_exists().await {
        assert_eq!(env.dest_totals().await.rows, 0, "nothing committed");
    }

    // Past its deadline (10 minutes by default), it fails with the reason.
    let later = chrono::Utc::now() + chrono::Duration::minutes(11);
    let mut controller = Controller::new(
        backend.clone(),
        Arc::new(minion_operator::clock::OffsetClock::starting_at(later)),
        options,
    );
    controller.tick().await.unwrap();
    let run = env.api.get(TASK_RUNS, "default", name).unwrap();
    assert_eq!(run["status"]["phase"], "Failed", "{run:#}");
    assert_eq!(run["status"]["reason"], "TableNotReady", "{run:#}");
    assert!(
        run["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Table events-realtime was not Ready within 600s"),
        "{run:#}"
    );
    assert!(env.api.list("batch/v1/jobs", Some("default")).is_empty());
}

/// An operator restricted to object stores (`--allowed-uri-prefixes`, the chart's default)
/// refuses Tables on its own filesystem, naming the field and the allowed prefixes, and
/// touches nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_outside_the_allowed_uri_prefixes_is_not_ready_and_untouched() {
    const TABLES: &str = "minion.dev/v1alpha1/tables";
    let env = Env::new(1).await;
    let offline = env.table("events-offline").clone();
    let root = PathBuf::from(offline.uri.trim_start_matches("file://"));
    let files = || minion_e2e::local_env::files_under(&root);
    let before = files();
    let backend = env.backend();
    let mut controller = Controller::new(
        backend.clone(),
        Arc::new(SystemClock),
        ControllerOptions {
            poll_interval: Duration::from_millis(20),
            allowed_uri_prefixes: vec!["s3://".into(), "gs://".into()],
            ..ControllerOptions::default()
        },
    );
    controller.tick().await.unwrap();
    let table = env.api.get(TABLES, "default", "events-offline").unwrap();
    let ready = table["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .unwrap_or_else(|| panic!("no Ready condition: {table:#}"))
        .clone();
    assert_eq!(ready["status"], "False", "{table:#}");
    assert_eq!(ready["reason"], "UriNotAllowed", "{table:#}");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("spec.uri")
            && message.contains(&offline.uri)
            && message.contains("s3://, gs://"),
        "{message}"
    );
    assert_eq!(files(), before, "the operator wrote under {root:?}");
}

/// On the Kubernetes backend the validity of an upsert table is computed in a Job of its
/// own (labelled `minion.dev/subtask: validity`, owned by the run, with the run's memory
/// budget), never by the operator: the run stays Planning until that Job completed, then
/// rewrites the table to exactly the latest version of each key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_on_the_kubernetes_backend_computes_validity_in_a_job_of_its_own() {
    use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
    let env = Env::new(1).await;
    let data = PathBuf::from(
        env.table("events-offline")
            .uri
            .trim_start_matches("file://"),
    )
    .parent()
    .unwrap()
    .to_path_buf();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let client = env.api.client();
    let mut users = None;
    for file in ["table-users-upsert.yaml", "mtc-refresh.yaml"] {
        let text = std::fs::read_to_string(samples.join(file))
            .unwrap()
            .replace(
                "file:///tmp/minion/",
                &format!("file://{}/", data.display()),
            )
            .replace("  table: users\n", "  table: users\n  memoryBudget: 16Mi\n");
        for r in parse_manifests(&text).unwrap() {
            let pp = PostParams::default();
            match r {
                Resource::Table(t) => {
                    users = Some(minion_operator::validate::table(&t).unwrap());
                    Api::<Table>::namespaced(client.clone(), "default")
                        .create(&pp, &t)
                        .await
                        .unwrap();
                }
                Resource::MinionTaskConfig(c) => {
                    Api::<MinionTaskConfig>::namespaced(client.clone(), "default")
                        .create(&pp, &c)
                        .await
                        .unwrap();
                }
                Resource::TaskRun(_) => unreachable!("no TaskRun sample here"),
            }
        }
    }
    let users = users.unwrap();
    // Two generations: 200 users, then 100 of them updated (no validity file anywhere).
    let mut catalog = Catalog::create(&users.uri, &users.schema, Default::default())
        .await
        .unwrap();
    let day0 = chrono::Utc::now().timestamp_millis() - 30 * DAY_MS;
    let day0 = day0 - day0.rem_euclid(DAY_MS);
    let root = PathBuf::from(users.uri.trim_start_matches("file://"));
    for (g, (n, day)) in [(200i64, 0i64), (100, 5)].into_iter().enumerate() {
        let ts: Vec<i64> = (0..n).map(|i| day0 + day * DAY_MS + i).collect();
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("user_id", arrow::datatypes::DataType::Utf8, false),
            arrow::datatypes::Field::new("country", arrow::datatypes::DataType::Utf8, true),
            arrow::datatypes::Field::new("plan", arrow::datatypes::DataType::Utf8, true),
            arrow::datatypes::Field::new("updated_at", arrow::datatypes::DataType::Int64, false),
            arrow::datatypes::Field::new(
                "lifetime_revenue",
                arrow::datatypes::DataType::Float64,
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("user-{i:04}")),
                )),
                Arc::new(StringArray::from(vec![Some("FR"); n as usize])),
                Arc::new(StringArray::from(vec![Some("pro"); n as usize])),
                Arc::new(Int64Array::from(ts.clone())),
                Arc::new(Float64Array::from(vec![g as f64; n as usize])),
            ],
        )
        .unwrap();
        let path = format!("stream/users_{g}.parquet");
        minion_e2e::rows::write_parquet(&root.join(&path), &batch);
        let segment = SegmentRef {
            path: path.clone(),
            rows: n as u64,
            bytes: std::fs::metadata(root.join(&path)).unwrap().len(),
            min_time_ms: ts.first().copied(),
            max_time_ms: ts.last().copied(),
            partition: None,
            tags: Default::default(),
        };
        catalog.append(&[segment], &[]).await.unwrap();
    }

    let backend = env.backend();
    let cfg = backend
        .get_task_config("default", "users-refresh")
        .await
        .unwrap()
        .unwrap();
    let name = "users-refresh-manual-1";
    backend
        .create_task_run(&new_task_run(&cfg, name, None))
        .await
        .unwrap();
    // One step per tick, so the status after every step is seen (a fast validity Job
    // would otherwise be collected within the tick that launched it).
    let one_step = || {
        Controller::new(
            backend.clone(),
            Arc::new(SystemClock),
            ControllerOptions {
                max_steps: Some(1),
                poll_interval: Duration::from_millis(20),
                only_run: None,
                allowed_uri_prefixes: Vec::new(),
            },
        )
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut saw_planning_with_validity = false;
    let run = loop {
        let report = one_step().tick().await.unwrap();
        let run = env.api.get(TASK_RUNS, "default", name).unwrap();
        let phase = run["status"]["phase"]
            .as_str()
            .unwrap_or("Pending")
            .to_string();
        if phase == "Planning" && run["status"]["validity"]["state"] == "Running" {
            saw_planning_with_validity = true;
            // Nothing is locked while validity is computed.
            let table = env
                .api
                .get("minion.dev/v1alpha1/tables", "default", "users")
                .unwrap();
            assert!(
                table["status"]["lineage"]
                    .as_array()
                    .is_none_or(|l| l.is_empty()),
                "{table:#}"
            );
        }
        if matches!(
            phase.as_str(),
            "Succeeded" | "Failed" | "TimedOut" | "Skipped"
        ) {
            break run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck: {run:#} {report:?}"
        );
        if report.steps == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(run["status"]["phase"], "Succeeded", "{run:#}");
    assert!(saw_planning_with_validity, "{run:#}");
    let validity = &run["status"]["validity"];
    assert_eq!(validity["state"], "Succeeded", "{run:#}");
    assert_eq!(validity["invalidRows"], 100, "{run:#}");
    let job_name = validity["job"].as_str().unwrap();
    let jobs = env.api.list("batch/v1/jobs", Some("default"));
    let job = jobs
        .iter()
        .find(|j| j["metadata"]["name"] == job_name)
        .unwrap_or_else(|| panic!("no Job {job_name}: {jobs:#?}"));
    assert_eq!(job["metadata"]["labels"]["minion.dev/subtask"], "validity");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "TaskRun");
    assert_eq!(
        job["metadata"]["ownerReferences"][0]["uid"],
        run["metadata"]["uid"]
    );
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let budget = args.iter().position(|a| a == "--memory-budget").unwrap() + 1;
    assert_eq!(args[budget], (16u64 << 20).to_string());
    // Both sidecars were written by the Job, and the table holds each user once.
    for g in 0..2 {
        assert!(
            root.join(format!("stream/users_{g}.parquet.validity"))
                .exists()
        );
    }
    let live = Catalog::open(&users.uri, Default::default())
        .await
        .unwrap()
        .segments()
        .unwrap();
    let totals = inspect::totals(&users.uri, &users.schema, &live, None)
        .await
        .unwrap();
    assert_eq!(totals.rows, 200, "{live:#?}");
}

/// A run's worker has one set of storage credentials: an import whose source Table names
/// another Secret than its destination is refused at launch — the subtask fails at once with
/// `SecretNotAllowed` naming `spec.sourceTable` and both Secrets, and no Job is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_source_and_destination_name_different_secrets_fails_without_a_job() {
    let env = Env::new(3).await;
    let tables: Api<Table> = Api::namespaced(env.api.client(), "default");
    for (table, secret) in [
        ("events-realtime", "store-rt"),
        ("events-offline", "store-off"),
    ] {
        env.api
            .create(
                "core/v1/secrets",
                "default",
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": secret, "labels": {"minion.dev/storage-credentials": "true"}},
                    "stringData": {"AWS_REGION": "us-east-1"},
                }),
            )
            .unwrap();
        tables
            .patch(
                table,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"storageSecretRef": {"name": secret}}})),
            )
            .await
            .unwrap();
    }
    let backend = env.backend();
    let run = env.run_import(&backend, "events-import-two-secrets").await;
    assert_eq!(run["status"]["phase"], "Failed", "{run:#}");
    let failed: Vec<&Value> = run["status"]["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "SecretNotAllowed")
        .collect();
    assert!(!failed.is_empty(), "{run:#}");
    let message = failed[0]["message"].as_str().unwrap();
    for needle in ["spec.sourceTable", "store-rt", "store-off"] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert!(env.api.list("batch/v1/jobs", Some("default")).is_empty());
}
