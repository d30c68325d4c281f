//! Exactly-once where a run can be lost, replayed, re-created or edited, through the `minion`
//! binary in local mode:
//! - a window that fails for good leaves the later windows of its run uncommitted (windows
//!   commit in order), so no window is ever committed beyond the watermark and none is
//!   imported twice, whatever is lost beside the table;
//! - a TaskRun deleted and re-created under its name is a new run (keyed on its uid);
//! - editing a config does not change a run in flight (settings frozen at planning);
//! - `minion push` is a TaskRun like any other, driven by the control loop;
//! - a wide run, whose finished subtasks are collected and committed in groups, imports every
//!   row once;
//! - the demo, driven by the control loop, keeps every sum.

use std::path::{Path, PathBuf};

use chrono::Utc;
use minion_contract::TimeWindow;
use minion_e2e::fixtures::workspace_binary;
use minion_e2e::local_env::{Env, assert_same, files_under, key_of};
use minion_e2e::rows::{TableRows, watermark};
use minion_operator::catalog::{Catalog, app_id};
use minion_operator::demo::{self, DemoOptions};
use minion_operator::model::{DAY_MS, HOUR_MS};

fn local_path(uri: &str) -> PathBuf {
    PathBuf::from(uri.trim_start_matches("file://"))
}

/// Replaces the oldest segment of the REALTIME table by bytes that are not Parquet; returns
/// its path and original bytes.
async fn corrupt_oldest_source_segment(env: &Env) -> (PathBuf, Vec<u8>) {
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
    let file = local_path(&realtime.uri).join(&oldest.path);
    let original = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"not parquet").unwrap();
    (file, original)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_fails_for_good_leaves_the_later_ones_uncommitted_and_none_is_imported_twice()
{
    let env = Env::new(5, "  maxAttempts: 1\n").await;
    env.apply();
    // The first window's input is corrupt: it fails for good; the later windows succeed.
    let (file, original) = corrupt_oldest_source_segment(&env).await;
    let failed = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let tr = env.task_run(&failed);
    assert_eq!(tr["status"]["phase"], "Failed", "{tr:#}");
    assert!(
        tr["status"]["subtasksTotal"].as_u64().unwrap() > 1,
        "several windows: {tr:#}"
    );
    // No later window was committed beyond the (absent) watermark, and nothing is kept
    // beside the table that a crash could lose.
    let offline = env.table("events-offline");
    let dest = Catalog::open(&offline.uri, Default::default())
        .await
        .unwrap();
    assert!(
        dest.segments().unwrap().is_empty(),
        "a later window was committed"
    );
    assert_eq!(
        dest.txn_version(&app_id::watermark("default", "events-import", None))
            .await
            .unwrap(),
        None
    );
    let side_files = files_under(&local_path(&offline.uri).join("_minion/configs"));
    assert!(side_files.is_empty(), "{side_files:?}");
    // Nothing staged is left of the reverted windows.
    let staged = files_under(
        &local_path(&offline.uri)
            .join("data/default")
            .join(key_of(&tr)),
    );
    assert!(
        staged
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "parquet")),
        "{staged:?}"
    );

    std::fs::write(&file, original).unwrap();
    let next = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    assert_eq!(env.task_run(&next)["status"]["phase"], "Succeeded");
    let (src, dst, _) = env.totals().await;
    assert_same(&src, &dst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_run_commits_its_finished_windows_in_groups_and_imports_every_row_once() {
    // Parallelism 8: finished windows wait (up to the collect delay) for a second one, and
    // commit together with the staged windows they complete.
    let env = Env::new(12, "  parallelism: 8\n").await;
    env.apply();
    let run = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let tr = env.task_run(&run);
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    assert!(
        tr["status"]["subtasksTotal"].as_u64().unwrap() > 8,
        "more windows than slots: {tr:#}"
    );
    let offline = env.table("events-offline");
    let wm = watermark(offline, "default", "events-import", None)
        .await
        .expect("the import committed a watermark");
    let moved = TimeWindow::new(env.start_ms - DAY_MS, wm);
    let source = TableRows::read(env.table("events-realtime"))
        .await
        .multiset_in(moved);
    let destination = TableRows::read(offline).await.multiset();
    assert!(source.rows > 0, "the import moved nothing");
    assert_eq!(
        destination, source,
        "the offline rows are not the source's, once"
    );
}

/// Writes `rows` CSV events (two per file) under `dir` as `<prefix>-<i>.csv`, 10 days ago.
fn write_csv_events(dir: &Path, prefix: &str, files: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let day = Utc::now().timestamp_millis() - 10 * DAY_MS;
    for i in 0..files {
        let ts = day + i64::from(i) * 1000;
        let csv = format!(
            "ts,country,browser,device,user_id,clicks,revenue,latency_ms\n\
             {ts},US,chrome,mobile,{prefix}{i},1,1.5,10.0\n\
             {},DE,firefox,desktop,{prefix}v{i},2,2.5,20.0\n",
            ts + 1
        );
        std::fs::write(dir.join(format!("{prefix}-{i:03}.csv")), csv).unwrap();
    }
}

/// An inline FileIngestion TaskRun named `name` over `dir`'s CSV files (the sample
/// `config/taskrun-file-ingestion.yaml`).
fn ingestion_run(env: &Env, name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/taskrun-file-ingestion.yaml"),
    )
    .unwrap()
    .replace(
        "file:///tmp/minion/incoming/events/",
        &format!("file://{}/", dir.display()),
    )
    .replace("name: events-ingest-2024-01", &format!("name: {name}"))
    .replace("inputFormat: parquet", "inputFormat: csv")
    .replace("\"**/*.parquet\"", "\"*.csv\"");
    let path = env.manifests.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

async fn offline_rows(env: &Env) -> u64 {
    let offline = env.table("events-offline");
    let dest = Catalog::open(&offline.uri, Default::default())
        .await
        .unwrap();
    dest.segments().unwrap().iter().map(|s| s.rows).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_run_recreated_under_its_name_is_a_new_run() {
    let env = Env::new(1, "").await;
    env.apply();
    let input = env.dir.path().join("data/incoming/batch");
    write_csv_events(&input, "a", 3);
    let manifest = ingestion_run(&env, "ingest-batch", &input);
    env.ok(&["execute", "-f", manifest.to_str().unwrap()]);
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let first = env.task_run("ingest-batch");
    assert_eq!(first["status"]["phase"], "Succeeded", "{first:#}");
    assert_eq!(offline_rows(&env).await, 6);

    // Deleted (what `kubectl delete tr` does to a local state directory) and created again
    // under the same name, after new files arrived: a new run, that ingests the new files.
    for ext in ["yaml", "status.yaml"] {
        let _ = std::fs::remove_file(
            env.state
                .join(format!("resources/taskruns/default/ingest-batch.{ext}")),
        );
    }
    write_csv_events(&input, "b", 2);
    env.ok(&["execute", "-f", manifest.to_str().unwrap()]);
    let second = env.task_run("ingest-batch");
    assert_ne!(key_of(&first), key_of(&second), "a new uid, a new key");
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let second = env.task_run("ingest-batch");
    assert_eq!(second["status"]["phase"], "Succeeded", "{second:#}");
    assert_eq!(
        offline_rows(&env).await,
        10,
        "the new files are ingested, the old ones once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_config_does_not_change_a_run_in_flight() {
    let env = Env::new(5, "  memoryBudget: 96Mi\n  parallelism: 1\n").await;
    env.apply();
    let run = env.run_import();
    // Step until the run is planned.
    for _ in 0..20 {
        env.cli().step();
        if env.task_run(&run)["status"]["phase"] == "Running" {
            break;
        }
    }
    assert_eq!(env.task_run(&run)["status"]["phase"], "Running");
    // The config changes while the run is in flight.
    let mtc = env.manifests.join("mtc-segment-import.yaml");
    let text = std::fs::read_to_string(&mtc)
        .unwrap()
        .replace("memoryBudget: 96Mi", "memoryBudget: 48Mi");
    std::fs::write(&mtc, text).unwrap();
    let out = env.ok(&["apply", "-f", env.manifests.to_str().unwrap()]);
    assert!(out.contains("events-import configured"), "{out}");
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let tr = env.task_run(&run);
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    // Every attempt of the run, launched before or after the edit, got the planned budget.
    let offline = env.table("events-offline");
    let specs: Vec<PathBuf> = files_under(
        &local_path(&offline.uri)
            .join("data/default")
            .join(key_of(&tr)),
    )
    .into_iter()
    .filter(|p| p.file_name().is_some_and(|n| n == "_spec.json"))
    .collect();
    assert!(specs.len() > 1, "{specs:?}");
    for spec in specs {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&spec).unwrap()).unwrap();
        assert_eq!(json["memoryBudgetBytes"], 96 << 20, "{}", spec.display());
    }
    // A run created after the edit takes the new setting.
    let plan: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            local_path(&offline.uri)
                .join("_minion/runs/default")
                .join(key_of(&tr))
                .join("plan.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(plan["execution"]["memoryBudgetBytes"], 96 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_is_a_task_run_of_the_control_loop_and_adds_nothing_twice() {
    let env = Env::new(1, "").await;
    env.apply();
    let input = env.dir.path().join("data/pushed");
    write_csv_events(&input, "p", 2);
    let files: Vec<String> = (0..2)
        .map(|i| input.join(format!("p-{i:03}.csv")).display().to_string())
        .collect();
    let mut args = vec!["push", "events-offline"];
    args.extend(files.iter().map(String::as_str));
    let out = env.ok(&args);
    assert!(out.contains("4 row(s) added from 2 file(s)"), "{out}");
    // The push is a TaskRun: listed, described, succeeded.
    let runs = env.ok(&["get", "tr"]);
    let push_run = runs
        .lines()
        .find(|l| l.starts_with("push-"))
        .unwrap_or_else(|| panic!("no push run: {runs}"));
    assert!(push_run.contains("Succeeded"), "{push_run}");
    // Pushing the same files again adds nothing.
    let again = env.ok(&args);
    assert!(again.contains("nothing to push"), "{again}");
    assert_eq!(offline_rows(&env).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_through_the_control_loop_keeps_every_sum() {
    let dir = tempfile::tempdir().unwrap();
    let report = demo::run(&DemoOptions {
        dir: dir.path().join("demo"),
        days: 5,
        partitions: 2,
        segment_period_ms: 2 * HOUR_MS,
        rows_per_segment: 300,
        now: Utc::now(),
        worker: Some(workspace_binary("minion", "minion-cli")),
    })
    .await
    .unwrap();
    assert!(report.source_in_imported_range.rows > 0);
    assert_eq!(
        report.source_in_imported_range.rows,
        report.offline_after_import.rows
    );
    assert!(report.offline_after_merge.rows < report.offline_after_import.rows);
    // The demo's state directory stays, with every run.
    assert!(
        dir.path()
            .join("demo/state/resources/taskruns/default")
            .exists()
    );
}
