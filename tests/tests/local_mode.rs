//! Local mode end to end, through the `minion` binary: `apply` the samples of `config/` (URIs
//! moved into a temp dir), fill the REALTIME table, `run` a config, `local up --until-idle`,
//! and check the destination against the source with `count(*)`/`sum()`; a bad manifest
//! changes nothing. Runs killed after every step are in `kill_every_step.rs`.
//!
//! The binary is the one cargo builds for the workspace's tests (`target/<profile>/minion`).
//!
//! Why one long file: every scenario here shares one local-mode environment
//! (`minion_e2e::local_env`: the samples, a state directory, REALTIME events) and reads as a
//! user's session with the `minion` binary.

use minion_e2e::fixtures::{created_run, workspace_binary};
use minion_e2e::local_env::{Env, assert_same, files_under, key_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use minion_operator::catalog::Catalog;
use minion_operator::inspect::{self, sums_match};
use minion_operator::model::{DAY_MS, TableDef};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_then_local_up_imports_every_finished_day_with_identical_totals() {
    let env = Env::new(5, "").await;
    env.apply();
    let run = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let tr = env.task_run(&run);
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    let total = tr["status"]["subtasksTotal"].as_u64().unwrap();
    assert!(total >= 2, "expected several windows: {tr:#}");
    assert_eq!(tr["status"]["progress"], format!("{total}/{total}"));
    let (src, dst, watermark) = env.totals().await;
    assert_same(&src, &dst);
    assert!(watermark > env.start_ms);

    let table = env.ok(&["get", "tr"]);
    assert!(
        table.starts_with("NAME") && table.contains("Succeeded"),
        "{table}"
    );
    let mtc = env.ok(&["get", "mtc"]);
    assert!(
        mtc.contains("SegmentImportTask") && mtc.contains("Succeeded"),
        "{mtc}"
    );
    let described = env.ok(&["describe", "tr", &run]);
    for expected in [
        "Phase:",
        "Succeeded",
        "Conditions:",
        "Complete",
        "Subtasks:",
        "Committed",
        "Events:",
        "SubtaskCommitted",
    ] {
        assert!(
            described.contains(expected),
            "{expected} missing in\n{described}"
        );
    }
    let described = env.ok(&["describe", "mtc", "events-import"]);
    assert!(described.contains("Watermark"), "{described}");
    let segments = env.ok(&["segments", "events-offline"]);
    assert!(
        segments.contains("COMPLETED") && segments.contains("events-import"),
        "{segments}"
    );
    let plan = env.ok(&["plan", "events-import"]);
    assert!(
        plan.contains("no task"),
        "caught up, the next plan is empty: {plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_an_unknown_key_is_refused_naming_the_field_and_changes_nothing() {
    let env = Env::new(1, "").await;
    env.apply();
    let before = env.snapshot();
    let bad = env.manifests.join("mtc-segment-import.yaml");
    let text = std::fs::read_to_string(&bad).unwrap();
    std::fs::write(
        &bad,
        text.replace(
            "bucketTimePeriod: 1d",
            "bucketTimePeriod: 1d\n    bucketTimePeriodd: 2d",
        ),
    )
    .unwrap();
    let out = env.minion(&["apply", "-f", env.manifests.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.segmentImportTask.bucketTimePeriodd")
            && stderr.contains("unknown field"),
        "{stderr}"
    );
    assert_eq!(env.snapshot(), before, "the state directory changed");
    let out = env.minion(&["get", "tr", "nope"]);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_subtask_is_reverted_with_the_workers_reason_and_the_next_run_succeeds() {
    let env = Env::new(5, "").await;
    env.apply();
    // Corrupt the oldest source segment: the worker reading it fails with bad input.
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
    let original = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"not parquet").unwrap();

    let failed = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let tr = env.task_run(&failed);
    assert_eq!(tr["status"]["phase"], "Failed", "{tr:#}");
    assert_eq!(tr["status"]["reason"], "CorruptSegment", "{tr:#}");
    // The subtask carries its reason typed, its message without it.
    let subtasks = tr["status"]["subtasks"].as_array().unwrap();
    let failed_subtask = subtasks
        .iter()
        .find(|s| s["reason"] == "CorruptSegment")
        .unwrap_or_else(|| panic!("no subtask with reason CorruptSegment: {tr:#}"));
    let message = failed_subtask["message"].as_str().unwrap();
    assert!(
        !message.starts_with("CorruptSegment") && message.contains(".parquet"),
        "{message}"
    );
    let table: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "tbl", "events-offline", "-o", "json"])).unwrap();
    let lineage = table["status"]["lineage"].as_array().unwrap();
    let reverted: Vec<&serde_json::Value> = lineage
        .iter()
        .filter(|e| e["taskRun"] == failed.as_str() && e["state"] == "REVERTED")
        .collect();
    assert!(!reverted.is_empty(), "{lineage:#?}");
    let offline = env.table("events-offline");
    for e in reverted {
        let staged = PathBuf::from(offline.uri.trim_start_matches("file://"))
            .join(e["outputPrefix"].as_str().unwrap());
        // Object stores have no directories; empty local ones may stay behind.
        let left = files_under(&staged);
        assert!(left.is_empty(), "staged outputs left: {left:?}");
    }
    let described = env.ok(&["describe", "tr", &failed]);
    assert!(
        described.contains("CorruptSegment") && described.contains("SubtaskFailed"),
        "{described}"
    );

    std::fs::write(&file, original).unwrap();
    let next = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let tr = env.task_run(&next);
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    let (src, dst, _) = env.totals().await;
    assert_same(&src, &dst);
}

/// Makes the first finished attempt-1 manifest of `run` claim its first output twice, as a
/// worker whose sorter emitted rows twice and did not check would: a copy of the segment
/// listed beside it, the output rows and the ledger's written rows raised to match.
fn forge_rows_written_twice(dest: &Path, tr: &serde_json::Value) -> bool {
    let Some(subtasks) = tr["status"]["subtasks"].as_array() else {
        return false;
    };
    for s in subtasks
        .iter()
        .filter(|s| s["state"] == "Running" && s["attempts"] == 1)
    {
        let index = s["index"].as_u64().unwrap();
        let path = dest.join(format!(
            "data/default/{}/{index}/1/_manifest.json",
            key_of(tr)
        ));
        // The worker runs on; no step of the loop collects it before this returns.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let mut m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if m["outcome"] != "Succeeded" {
            continue;
        }
        let mut copy = m["outputs"][0].clone();
        let rows = copy["rows"].as_u64().unwrap();
        let original = copy["path"].as_str().unwrap().to_string();
        let copied = original.replace(".parquet", "_copy.parquet");
        std::fs::copy(dest.join(&original), dest.join(&copied)).unwrap();
        copy["path"] = copied.into();
        m["outputs"].as_array_mut().unwrap().push(copy);
        m["outputRows"] = (m["outputRows"].as_u64().unwrap() + rows).into();
        let written = &mut m["ledger"]["written"]["rows"];
        *written = (written.as_u64().unwrap() + rows).into();
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        return true;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_claiming_rows_twice_is_refused_and_the_retry_commits_every_row_once() {
    let env = Env::new(5, "  maxAttempts: 2\n").await;
    env.apply();
    let run = env.run_import();
    let dest = PathBuf::from(
        env.table("events-offline")
            .uri
            .trim_start_matches("file://"),
    );
    let mut forged = false;
    let mut phase = String::new();
    for _ in 0..300 {
        env.cli().step();
        let tr = env.task_run(&run);
        phase = tr["status"]["phase"]
            .as_str()
            .unwrap_or("Pending")
            .to_string();
        if matches!(
            phase.as_str(),
            "Succeeded" | "Failed" | "TimedOut" | "Skipped"
        ) {
            break;
        }
        if !forged {
            forged = forge_rows_written_twice(&dest, &tr);
        }
    }
    assert!(forged, "no finished manifest was seen before its commit");
    assert_eq!(phase, "Succeeded", "{:#}", env.task_run(&run));
    // The refusal names its reason and the numbers, and the copy was never committed.
    let described = env.ok(&["describe", "tr", &run]);
    assert!(
        described.contains("CommitRefused") && described.contains("concat wrote"),
        "{described}"
    );
    let segments = env.ok(&["segments", "events-offline"]);
    assert!(!segments.contains("_copy"), "{segments}");
    let (src, dst, _) = env.totals().await;
    assert_same(&src, &dst);
}

fn up_at(env: &Env, now: chrono::DateTime<Utc>) {
    env.ok(&[
        "local",
        "up",
        "--until-idle",
        "--poll-ms",
        "50",
        "--now",
        &now.to_rfc3339(),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_deletes_replaced_segments_after_the_retention_and_dead_staged_files_after_a_day()
 {
    use minion_operator::catalog::Replacement;
    let env = Env::new(4, "").await;
    env.apply();
    let run = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    assert_eq!(env.task_run(&run)["status"]["phase"], "Succeeded");
    let offline = env.table("events-offline");
    let root = PathBuf::from(offline.uri.trim_start_matches("file://"));
    // Replace one segment by a copy of it: the original becomes a replaced (tombstoned) file.
    let mut dest = Catalog::open(&offline.uri, Default::default())
        .await
        .unwrap();
    let old = dest.segments().unwrap().into_iter().next().unwrap();
    let mut copy = old.clone();
    copy.path = format!(
        "data/replaced-by-test/{}",
        Path::new(&old.path).file_name().unwrap().to_str().unwrap()
    );
    std::fs::create_dir_all(root.join("data/replaced-by-test")).unwrap();
    std::fs::copy(root.join(&old.path), root.join(&copy.path)).unwrap();
    dest.replace(Replacement {
        remove: vec![old.path.clone()],
        add: vec![copy.clone()],
        txns: vec![],
        data_change: false,
        operation: "TEST REPLACE",
    })
    .await
    .unwrap();
    // Staged outputs of a dead run: neither in the log nor in any lineage entry.
    let dead = root.join("data/dead-run/0-1/out.parquet");
    std::fs::create_dir_all(dead.parent().unwrap()).unwrap();
    std::fs::write(&dead, b"staged by a run that died").unwrap();
    // A validity sidecar of a live segment stays as long as its segment.
    let sidecar = root.join(format!("{}.validity", copy.path));
    std::fs::write(&sidecar, b"sidecar").unwrap();

    let now = Utc::now();
    // Within the table's replacedSegmentRetention (4h): nothing goes.
    up_at(&env, now + chrono::Duration::hours(1));
    assert!(root.join(&old.path).exists(), "replaced too early");
    assert!(dead.exists());
    // Past the retention: the replaced file goes, the young dead file stays.
    up_at(&env, now + chrono::Duration::hours(5));
    assert!(!root.join(&old.path).exists(), "replaced file kept");
    assert!(dead.exists(), "unreferenced file deleted before a day");
    let events = std::fs::read_to_string(env.state.join("events.jsonl")).unwrap();
    assert!(
        events.contains("CleanedUp") && events.contains("1 replaced file(s)"),
        "{events}"
    );
    // Past a day: the dead run's staged file goes too.
    up_at(&env, now + chrono::Duration::hours(30));
    assert!(!dead.exists(), "staged file of a dead run kept");
    // Nothing live was touched, nor the sidecar of a live segment.
    dest.refresh().await.unwrap();
    for s in dest.segments().unwrap() {
        assert!(
            root.join(&s.path).exists(),
            "live segment {} deleted",
            s.path
        );
    }
    assert!(
        sidecar.exists(),
        "validity sidecar of a live segment deleted"
    );
    let (src, dst, _) = env.totals().await;
    assert_same(&src, &dst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_beyond_the_history_limit_are_deleted_with_their_run_directory() {
    let env = Env::new(4, "  successfulRunsHistoryLimit: 1\n").await;
    env.apply();
    let offline = env.table("events-offline");
    let runs_dir = PathBuf::from(offline.uri.trim_start_matches("file://")).join("_minion/runs");
    let first = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    assert_eq!(env.task_run(&first)["status"]["phase"], "Succeeded");
    let first_dir = runs_dir.join("default").join(key_of(&env.task_run(&first)));
    assert!(first_dir.join("plan.json").exists());
    let second = env.run_import();
    assert_ne!(first, second);
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let out = env.minion(&["get", "tr", &first]);
    assert!(!out.status.success(), "{first} still exists");
    assert!(!first_dir.exists(), "{} left behind", first_dir.display());
    let tr = env.task_run(&second);
    assert!(
        matches!(
            tr["status"]["phase"].as_str(),
            Some("Succeeded" | "Skipped")
        ),
        "{tr:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_150_subtasks_succeeds_with_bounded_status_detail() {
    use minion_operator::api::task_run::MAX_SUBTASK_DETAIL;
    let env = Env::new(1, "").await;
    env.apply();
    let data = env.dir.path().join("data");
    let input = data.join("incoming/many");
    std::fs::create_dir_all(&input).unwrap();
    let day = Utc::now().timestamp_millis() - 10 * DAY_MS;
    let files = 150;
    for i in 0..files {
        let ts = day + i64::from(i) * 1000;
        let csv = format!(
            "ts,country,browser,device,user_id,clicks,revenue,latency_ms\n\
             {ts},US,chrome,mobile,u{i},1,1.5,10.0\n\
             {},DE,firefox,desktop,v{i},2,2.5,20.0\n",
            ts + 1
        );
        std::fs::write(input.join(format!("part-{i:03}.csv")), csv).unwrap();
    }
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/taskrun-file-ingestion.yaml"),
    )
    .unwrap()
    .replace(
        "file:///tmp/minion/incoming/events/",
        &format!("file://{}/", input.display()),
    )
    .replace("name: events-ingest-2024-01", "name: ingest-many")
    .replace("inputFormat: parquet", "inputFormat: csv")
    .replace("\"**/*.parquet\"", "\"*.csv\"")
    .replace(
        "tableMaxNumTasks: -1",
        "tableMaxNumTasks: -1\n      taskMaxNumFiles: 1",
    )
    .replace("parallelism: 2", "parallelism: 4");
    let path = env.manifests.join("taskrun-many.yaml");
    std::fs::write(&path, text).unwrap();
    env.ok(&["execute", "-f", path.to_str().unwrap()]);
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let tr = env.task_run("ingest-many");
    let status = &tr["status"];
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    assert_eq!(status["subtasksTotal"], files, "{status:#}");
    assert_eq!(status["subtasksCommitted"], files, "{status:#}");
    assert_eq!(status["progress"], format!("{files}/{files}"));
    let detail = status["subtasks"].as_array().unwrap();
    assert_eq!(detail.len(), MAX_SUBTASK_DETAIL);
    assert!(status["plan"].as_array().unwrap().len() <= MAX_SUBTASK_DETAIL);
    // Every subtask's state is kept beside the run's plan.
    let offline = env.table("events-offline");
    let stored: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(offline.uri.trim_start_matches("file://"))
                .join("_minion/runs/default")
                .join(key_of(&env.task_run("ingest-many")))
                .join("subtasks.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(stored.len(), files as usize);
    assert!(stored.iter().all(|s| s["state"] == "Committed"));
    let dest = Catalog::open(&offline.uri, Default::default())
        .await
        .unwrap();
    let rows: u64 = dest.segments().unwrap().iter().map(|s| s.rows).sum();
    assert_eq!(rows, 2 * files as u64);
}

#[tokio::test]
async fn local_up_with_a_manifest_directory_applies_it_and_reapplies_changes() {
    let env = Env::new(2, "").await;
    let mut up = Command::new(workspace_binary("minion", "minion-cli"))
        .arg("--state-dir")
        .arg(&env.state)
        .args(["local", "up", "--poll-ms", "50", "-f"])
        .arg(&env.manifests)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let suspended = |env: &Env| -> Option<bool> {
        let out = env.minion(&["get", "mtc", "events-import", "-o", "json"]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v["spec"]["suspend"].as_bool().unwrap_or(false))
    };
    let wait_for = |want: bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if suspended(&env) == Some(want) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    let applied = wait_for(false);
    // Edit the config in place, as a GitOps sync or an editor would.
    let file = env.manifests.join("mtc-segment-import.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "  segmentImportTask:\n",
            "  suspend: true\n  segmentImportTask:\n",
        ),
    )
    .unwrap();
    let reapplied = applied && wait_for(true);
    // A broken edit is reported and changes nothing.
    std::fs::write(&file, "kind: MinionTaskConfig\napiVersion: minion.dev/v1alpha1\nmetadata: {name: events-import}\nspec: {bogus: 1}\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let still = suspended(&env);
    up.kill().unwrap();
    let out = up.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(applied, "the directory was not applied at start: {stderr}");
    assert!(
        reapplied,
        "the edited manifest was not re-applied: {stderr}"
    );
    assert_eq!(still, Some(true), "a broken edit changed the stored config");
    assert!(stderr.contains("manifests not applied"), "{stderr}");
}

/// Runs `config` through `minion run` + `local up --until-idle` until its run is Skipped
/// (caught up); returns the number of runs that did work.
fn run_until_caught_up(env: &Env, config: &str) -> usize {
    for done in 0..30 {
        let out = env.ok(&["run", config]);
        let run = created_run(&out);
        env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
        let tr = env.task_run(&run);
        match tr["status"]["phase"].as_str() {
            Some("Succeeded") => continue,
            Some("Skipped") => return done,
            other => panic!("{config}: run {run} ended {other:?}: {tr:#}"),
        }
    }
    panic!("{config} did not catch up in 30 runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_flow_import_merge_and_dedup_through_local_mode_keeps_every_sum() {
    let env = Env::new(4, "").await;
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for file in ["mtc-merge-rollup.yaml", "mtc-dedup.yaml"] {
        std::fs::copy(samples.join(file), env.manifests.join(file)).unwrap();
    }
    env.ok(&["apply", "-f", env.manifests.to_str().unwrap()]);
    let realtime = env.table("events-realtime").clone();
    let offline = env.table("events-offline").clone();
    let all = |def: TableDef| async move {
        let c = Catalog::open(&def.uri, Default::default()).await.unwrap();
        inspect::totals(&def.uri, &def.schema, &c.segments().unwrap(), None)
            .await
            .unwrap()
    };
    let realtime_before = all(realtime.clone()).await;

    assert!(run_until_caught_up(&env, "events-import") >= 1);
    let (src, imported, _) = env.totals().await;
    assert_same(&src, &imported);

    assert!(run_until_caught_up(&env, "events-merge") >= 1);
    let merged = all(offline.clone()).await;
    assert!(
        merged.rows < imported.rows,
        "the daily rollup collapses rows"
    );
    assert!(merged.segments < imported.segments || merged.rows < imported.rows);
    for metric in ["clicks", "revenue"] {
        assert!(
            sums_match(merged.sums[metric], imported.sums[metric]),
            "sum({metric}) changed by the merge"
        );
    }

    assert!(run_until_caught_up(&env, "events-realtime-dedup") >= 1);
    let deduped = all(realtime.clone()).await;
    // The generated events hold no repeated rows: dedup rewrites the segments (here cut into
    // hourly buckets) and keeps every row.
    assert_eq!(deduped.rows, realtime_before.rows);
    for (metric, sum) in &realtime_before.sums {
        assert!(sums_match(deduped.sums[metric], *sum), "sum({metric})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_times_missed_while_the_loop_was_down_are_reported_and_skipped() {
    let env = Env::new(2, "").await;
    let file = env.manifests.join("mtc-segment-import.yaml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "schedule: \"0 */15 * * * ?\"",
        "schedule: \"0 * * * * ?\"\n  missedRunPolicy: Skip",
    );
    std::fs::write(&file, text).unwrap();
    env.apply();
    // The loop comes up ten minutes after the config was applied.
    let later = (Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    env.ok(&[
        "local",
        "up",
        "--until-idle",
        "--poll-ms",
        "50",
        "--now",
        &later,
    ]);
    let described = env.ok(&["describe", "mtc", "events-import"]);
    assert!(described.contains("MissedSchedule"), "{described}");
    assert!(described.contains("missedRunPolicy Skip"), "{described}");
}

/// The segments, row count and lineage of `table` (as `minion get tbl -o json` shows them).
fn table_data(env: &Env, table: &str) -> (serde_json::Value, serde_json::Value, usize) {
    let t: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "tbl", table, "-o", "json"])).unwrap();
    let lineage = t["status"]["lineage"].as_array().map_or(0, Vec::len);
    (
        t["status"]["segments"].clone(),
        t["status"]["rows"].clone(),
        lineage,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_source_table_is_not_ready_waits_in_pending_then_fails_after_its_deadline() {
    let env = Env::new(3, "  suspend: true\n").await;
    // The REALTIME table names a column its Delta table lacks: Ready=False/SchemaMismatch.
    let file = env.manifests.join("table-events-realtime.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    let bad = good.replace(
        "      - {name: latency_ms, dataType: DOUBLE, role: metric}\n",
        "      - {name: latency_ms, dataType: DOUBLE, role: metric}\n      - {name: session, dataType: STRING, role: dimension}\n",
    );
    assert_ne!(bad, good);
    std::fs::write(&file, &bad).unwrap();
    env.apply();
    let realtime = env.table("events-realtime").uri.clone();
    let source_segments = || async {
        let c = Catalog::open(&realtime, Default::default()).await.unwrap();
        (c.version(), c.segments().unwrap().len())
    };
    let realtime_before = source_segments().await;
    let empty = (0.into(), 0.into(), 0);

    // The loop waits for the table instead of failing every tick, and ends idle.
    let first = env.run_import();
    let up = env.minion(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let (out, err) = (
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr),
    );
    assert!(up.status.success(), "{out}\n{err}");
    assert!(
        out.contains(&format!("{first}: Pending (TableNotReady: waiting for Table events-realtime: Ready=False SchemaMismatch")),
        "{out}"
    );
    assert!(
        err.contains("idle: 1 run(s) wait in Pending for a Table to become Ready")
            && !err.contains("no progress"),
        "{err}"
    );
    let tr = env.task_run(&first);
    assert_eq!(tr["status"]["phase"], "Pending", "{tr:#}");
    assert_eq!(tr["status"]["reason"], "TableNotReady", "{tr:#}");
    let message = tr["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("waiting for Table events-realtime: Ready=False SchemaMismatch: ")
            && message.contains("session"),
        "{message}"
    );
    let described = env.ok(&["describe", "tr", &first]);
    assert!(
        described.contains("TableNotReady")
            && described.contains("waiting for Table events-realtime"),
        "{described}"
    );
    // Nothing was planned, locked or written.
    assert_eq!(table_data(&env, "events-offline"), empty);
    assert_eq!(source_segments().await, realtime_before);
    let offline = PathBuf::from(
        env.table("events-offline")
            .uri
            .trim_start_matches("file://"),
    );
    assert!(files_under(&offline.join("_minion")).is_empty());
    assert!(files_under(&offline.join("data")).is_empty());

    // Past its deadline (10 minutes by default), it fails with the reason.
    let later = (Utc::now() + chrono::Duration::minutes(11)).to_rfc3339();
    env.ok(&[
        "local",
        "up",
        "--until-idle",
        "--poll-ms",
        "50",
        "--now",
        &later,
    ]);
    let tr = env.task_run(&first);
    assert_eq!(tr["status"]["phase"], "Failed", "{tr:#}");
    assert_eq!(tr["status"]["reason"], "TableNotReady", "{tr:#}");
    let message = tr["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Table events-realtime was not Ready within 600s")
            && message.contains("SchemaMismatch"),
        "{message}"
    );
    assert_eq!(table_data(&env, "events-offline"), empty);
    assert_eq!(source_segments().await, realtime_before);

    // A run that waits proceeds once the table is Ready again.
    let second = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    assert_eq!(env.task_run(&second)["status"]["phase"], "Pending");
    std::fs::write(&file, &good).unwrap();
    env.ok(&["apply", "-f", env.manifests.to_str().unwrap()]);
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let tr = env.task_run(&second);
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    let (src, dst, _) = env.totals().await;
    assert_same(&src, &dst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_run_shows_the_generators_reason_in_get_and_describe_with_aligned_labels() {
    let env = Env::new(3, "  suspend: true\n").await;
    env.apply();
    let first = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    assert_eq!(env.task_run(&first)["status"]["phase"], "Succeeded");
    let offline = env.table("events-offline").uri.clone();
    let dest = || async {
        let c = Catalog::open(&offline, Default::default()).await.unwrap();
        (c.version(), c.segments().unwrap())
    };
    let before = dest().await;
    let data_before = table_data(&env, "events-offline");

    // Caught up: the next run plans nothing and says why.
    let skipped = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let tr = env.task_run(&skipped);
    assert_eq!(tr["status"]["phase"], "Skipped", "{tr:#}");
    let reason = tr["status"]["reason"].as_str().unwrap().to_string();
    let message = tr["status"]["message"].as_str().unwrap().to_string();
    assert!(!reason.is_empty() && !message.is_empty(), "{tr:#}");
    assert_eq!(
        dest().await,
        before,
        "a skipped run changed the destination"
    );
    assert_eq!(table_data(&env, "events-offline"), data_before);

    // `get tr`: a REASON column, the reason on the skipped run's row.
    let table = env.ok(&["get", "tr"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "TYPE", "TABLE", "PHASE", "REASON", "PROGRESS", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with(&skipped))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!((row[3], row[4]), ("Skipped", reason.as_str()), "{table}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with(&first))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!((row[3], row[4]), ("Succeeded", "Completed"), "{table}");

    // `describe tr`: Reason and Message, every value of the Status block in one column, one
    // space at least after the longest label.
    let described = env.ok(&["describe", "tr", &skipped]);
    let status: Vec<&str> = described
        .lines()
        .skip_while(|l| *l != "Status:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    let value_of = |label: &str| {
        let line = status
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{label}:")))
            .unwrap_or_else(|| panic!("{label} missing in\n{described}"));
        let after = line.find(':').unwrap() + 1;
        let value = line[after..].trim_start();
        (line.len() - value.len(), value.to_string())
    };
    let (column, phase) = value_of("Phase");
    assert_eq!(phase, "Skipped");
    assert_eq!(value_of("Reason"), (column, reason.clone()), "{described}");
    assert_eq!(
        value_of("Message"),
        (column, message.clone()),
        "{described}"
    );
    let (c, completion) = value_of("Completion Time");
    assert_eq!(c, column, "{described}");
    assert!(completion.starts_with("20"), "{described}");
    assert!(
        described.contains("  Watermark Before:  ") && described.contains("  Completion Time:   "),
        "{described}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_into_a_table_that_is_not_ready_says_it_waits_and_adds_nothing() {
    let env = Env::new(1, "  suspend: true\n").await;
    let file = env.manifests.join("table-events-realtime.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        good.replace(
            "      - {name: latency_ms, dataType: DOUBLE, role: metric}\n",
            "      - {name: latency_ms, dataType: DOUBLE, role: metric}\n      - {name: session, dataType: STRING, role: dimension}\n",
        ),
    )
    .unwrap();
    env.apply();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let realtime = env.table("events-realtime").uri.clone();
    let version = || async {
        Catalog::open(&realtime, Default::default())
            .await
            .unwrap()
            .version()
    };
    let before = version().await;
    let csv = env.dir.path().join("clicks.csv");
    let now = Utc::now().timestamp_millis();
    std::fs::write(
        &csv,
        format!("ts,country,browser,device,user_id,clicks,revenue,latency_ms\n{now},DE,firefox,desktop,u1,2,2.5,20\n"),
    )
    .unwrap();
    let out = env.minion(&["push", "events-realtime", csv.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("push into events-realtime is waiting, nothing was added yet: TableNotReady waiting for Table events-realtime: Ready=False SchemaMismatch"),
        "{err}"
    );
    assert_eq!(version().await, before, "the push wrote to the table");
}

/// Names and namespaces become paths in the state directory: `apply` refuses any that is not
/// a Kubernetes name, naming the object and the field, and writes nothing anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_whose_name_is_a_path_is_refused_and_nothing_is_written_anywhere() {
    let env = Env::new(1, "").await;
    env.apply();
    let before = files_under(env.dir.path());
    let snapshot = env.snapshot();
    let text = std::fs::read_to_string(env.manifests.join("table-events-offline.yaml")).unwrap();
    let bad_dir = env.dir.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    for (name, namespace, field) in [
        ("../../etc", "default", "metadata.name"),
        ("../../../../escaped", "default", "metadata.name"),
        ("a/b", "default", "metadata.name"),
        ("Events", "default", "metadata.name"),
        ("events-x", "../..", "metadata.namespace"),
    ] {
        let manifest = text
            .replace("name: events-offline", &format!("name: {name:?}"))
            .replace("namespace: default", &format!("namespace: {namespace:?}"))
            .replace("events_offline", "events_offline_other");
        let file = bad_dir.join("table.yaml");
        std::fs::write(&file, manifest).unwrap();
        let out = env.minion(&["apply", "-f", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("Table") && stderr.contains(field) && stderr.contains("DNS-1123"),
            "{name}: {stderr}"
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(files_under(env.dir.path()), before, "{name}: files written");
        assert_eq!(
            env.snapshot(),
            snapshot,
            "{name}: the state directory changed"
        );
    }
    // Names from the command line are checked the same way.
    let out = env.minion(&["get", "table", "../../etc"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("metadata.name"), "{stderr}");
}

fn lock_holder(state: &Path) -> Option<u32> {
    std::fs::read_to_string(state.join("lock"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Two control loops on one state directory: the second `local up` (and a `push`) is refused
/// at once naming the directory and the first one's pid; the first commits every row once;
/// once it is gone the directory can be used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_control_loop_on_one_state_directory_is_refused_and_nothing_is_committed_twice() {
    let env = Env::new(3, "").await;
    env.apply();
    let run = env.run_import();
    let mut first = Command::new(workspace_binary("minion", "minion-cli"))
        .arg("--state-dir")
        .arg(&env.state)
        .args(["local", "up", "--poll-ms", "50"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while lock_holder(&env.state) != Some(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first loop never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for args in [
        vec!["local", "up", "--until-idle", "--poll-ms", "50"],
        vec![
            "push",
            "events-offline",
            env.manifests
                .join("table-events-offline.yaml")
                .to_str()
                .unwrap(),
        ],
    ] {
        let started = std::time::Instant::now();
        let out = env.minion(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&env.state.display().to_string())
                && stderr.contains(&format!("pid {pid}")),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} did something");
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        let tr = env.task_run(&run);
        if tr["status"]["phase"] == "Succeeded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{tr:#}");
        assert!(first.try_wait().unwrap().is_none(), "the first loop ended");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let (src, dst, _) = env.totals().await;
    assert_same(&src, &dst);
    // The lock went with the process: the next loop runs, and finds nothing left to do.
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let (src, dst, _) = env.totals().await;
    assert_same(&src, &dst);
}
