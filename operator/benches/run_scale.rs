//! Scale of one run (a plain program, not a timed test): a MergeRollup run of 1,000 subtasks
//! over a table of 100,000 segments, driven by the control loop through the local backend
//! from plan to the last commit, with a stub executor in place of the worker. It measures
//! what the operator itself costs: CPU time (user + system, from `/proc/self/stat`) and peak
//! RSS (`VmHWM`), targets < 30 s and < 300 MiB (docs/benchmarks.md).
//!
//! Run: `cargo bench -p minion-operator --bench run_scale` (optionally
//! `-- <segments> <segments per subtask> <parallelism>`, defaults 100000 100 64).
//!
//! - The table is built by a child process (`<this program> build-table`), so its memory is
//!   not counted; its segments are Add actions of files that are never written: planning
//!   and committing read only the log.
//! - The stub executor is this program again (`<this program> stub-worker --spec … --exit-file
//!   …`): it reads the spec, writes one small Parquet output holding the inputs' row count
//!   (the commit gate reads its footer), a result manifest with a concat row ledger that adds
//!   up, and its exit file. Its CPU time is its own, not the operator's.
//! - Segments are 14.4 minutes long, so a day holds 100 of them; the level's bucket is a day
//!   and `maxNumParallelBuckets` is the number of days, so the run plans one subtask per day.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use chrono::{TimeZone, Utc};
use minion_contract::{
    CONTRACT_VERSION, Column, ColumnRole, ColumnType, Outcome, ResultManifest, RowDigest,
    RowLedger, SegmentRef, SubtaskSpec, TableSchema, TimeUnit,
};
use minion_operator::api::{TaskRunPhase, parse_manifests};
use minion_operator::catalog::{Catalog, install_crypto_provider};
use minion_operator::clock::SystemClock;
use minion_operator::control::{Backend, Controller, ControllerOptions, configs};
use minion_operator::local::{ExitRecord, LocalBackend, write_exit_record};

const DAY_MS: i64 = 86_400_000;
/// 2020-01-01T00:00:00Z: every bucket lies far before now, so none waits for its buffer.
const T0: i64 = 1_577_836_800_000;
const ROWS_PER_SEGMENT: u64 = 10;
const BATCH: usize = 10_000;

fn schema() -> TableSchema {
    let col = |name: &str, data_type, role| Column {
        name: name.into(),
        data_type,
        role,
        nullable: true,
    };
    TableSchema {
        columns: vec![
            col("ts", ColumnType::Long, ColumnRole::DateTime),
            col("country", ColumnType::String, ColumnRole::Dimension),
            col("clicks", ColumnType::Long, ColumnRole::Metric),
        ],
        time_column: "ts".into(),
        time_unit: TimeUnit::Milliseconds,
        time_format: None,
        primary_key: vec![],
        comparison_column: None,
        partitioning: None,
        sorted_column: None,
        bloom_filter_columns: vec![],
    }
}

fn segment(i: usize, per_day: usize) -> SegmentRef {
    let span = DAY_MS / per_day as i64;
    let start = T0 + i as i64 * span;
    SegmentRef {
        path: format!("data/seed/{:04}/events_{i}.parquet", i / per_day),
        rows: ROWS_PER_SEGMENT,
        bytes: 4096,
        min_time_ms: Some(start),
        max_time_ms: Some(start + span - 1),
        partition: None,
        tags: BTreeMap::new(),
    }
}

/// The Table and MinionTaskConfig, as a user would apply them.
fn manifests(uri: &str, days: usize, parallelism: u32) -> String {
    format!(
        r#"apiVersion: minion.dev/v1alpha1
kind: Table
metadata: {{name: events, namespace: default}}
spec:
  tableType: OFFLINE
  uri: {uri}
  schema:
    timeColumn: ts
    timeUnit: MILLISECONDS
    columns:
      - {{name: ts, dataType: LONG, role: dateTime}}
      - {{name: country, dataType: STRING, role: dimension}}
      - {{name: clicks, dataType: LONG, role: metric}}
---
apiVersion: minion.dev/v1alpha1
kind: MinionTaskConfig
metadata: {{name: events-merge, namespace: default}}
spec:
  table: events
  taskType: MergeRollupTask
  schedule: "0 0 0 1 1 ?"
  suspend: true
  parallelism: {parallelism}
  mergeRollupTask:
    levels:
      - name: 1day
        bucketTimePeriod: 1d
        bufferTimePeriod: 1d
        mergeType: concat
        maxNumParallelBuckets: {days}
"#
    )
}

/// Peak RSS (`VmHWM`) of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time (user + system, every thread) of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (USER_HZ, 100
    // on Linux).
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Child process: writes the table's 100,000 segments (Add actions only) and a checkpoint.
async fn build_table(uri: &str, n: usize, per_day: usize) {
    let mut catalog = Catalog::create(uri, &schema(), HashMap::new())
        .await
        .expect("create the table");
    let mut next = 0;
    while next < n {
        let end = (next + BATCH).min(n);
        let batch: Vec<SegmentRef> = (next..end).map(|i| segment(i, per_day)).collect();
        catalog.append(&batch, &[]).await.expect("append segments");
        next = end;
    }
    catalog.checkpoint().await.expect("checkpoint");
}

/// Child process: the stub executor (see the module docs).
async fn stub_worker(spec_uri: &str, exit_file: &Path) {
    let (loc, path) = minion_store::resolve_file(spec_uri).expect("spec URI");
    let spec: SubtaskSpec =
        serde_json::from_slice(&loc.get_bytes(&path).await.expect("read spec")).expect("spec");
    let rows: u64 = spec.inputs.iter().map(|s| s.rows).sum();
    let min = spec.inputs.iter().filter_map(|s| s.min_time_ms).min();
    let max = spec.inputs.iter().filter_map(|s| s.max_time_ms).max();
    let n = rows as usize;
    let batch = RecordBatch::try_from_iter([
        (
            "ts",
            Arc::new(Int64Array::from(vec![min.unwrap_or(T0); n])) as ArrayRef,
        ),
        ("country", Arc::new(StringArray::new_null(n)) as ArrayRef),
        (
            "clicks",
            Arc::new(Int64Array::from(vec![1i64; n])) as ArrayRef,
        ),
    ])
    .expect("batch");
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    let dest = minion_store::resolve(&spec.destination.uri).expect("destination URI");
    let staging = spec.output.staging_prefix.trim_end_matches('/');
    let output = format!("{staging}/stub-0.parquet");
    let size = bytes.len() as u64;
    dest.put_bytes(&dest.child(&output), bytes)
        .await
        .expect("write output");
    let digest = RowDigest {
        rows,
        hash: 0,
        metrics: BTreeMap::new(),
    };
    let manifest = ResultManifest {
        api_version: CONTRACT_VERSION.to_string(),
        task_run: spec.task_run.clone(),
        subtask: spec.subtask,
        attempt: spec.attempt,
        outcome: Outcome::Succeeded,
        reason: None,
        message: None,
        input_rows: rows,
        output_rows: rows,
        outputs: vec![SegmentRef {
            path: output,
            rows,
            bytes: size,
            min_time_ms: min,
            max_time_ms: max,
            partition: None,
            tags: spec.output.tags.clone(),
        }],
        ingested_files: vec![],
        skipped_files: vec![],
        skipped_segments: vec![],
        ledger: Some(RowLedger {
            source_rows: rows,
            merged: digest.clone(),
            written: digest,
            ..RowLedger::default()
        }),
        validity: vec![],
        peak_spill_bytes: None,
    };
    dest.put_bytes(
        &dest.child(&spec.manifest_path()),
        serde_json::to_vec(&manifest).expect("manifest"),
    )
    .await
    .expect("write manifest");
    write_exit_record(
        exit_file,
        &ExitRecord {
            code: Some(0),
            message: String::new(),
        },
    )
    .expect("exit file");
}

fn flag(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("{name} missing"))
        .clone()
}

#[tokio::main]
async fn main() {
    install_crypto_provider();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("stub-worker") => {
            let exit = PathBuf::from(flag(&args, "--exit-file"));
            return stub_worker(&flag(&args, "--spec"), &exit).await;
        }
        Some("build-table") => {
            let n = args[2].parse().expect("segments");
            let per_day = args[3].parse().expect("segments per subtask");
            return build_table(&args[1], n, per_day).await;
        }
        _ => {}
    }
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = numbers.first().copied().unwrap_or(100_000);
    let per_day = numbers.get(1).copied().unwrap_or(100);
    let parallelism = numbers.get(2).copied().unwrap_or(64) as u32;
    let days = n.div_ceil(per_day);
    assert!(
        DAY_MS % per_day as i64 == 0,
        "segments per subtask must divide a day's milliseconds"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let uri = format!("file://{}/events", dir.path().display());
    let me = std::env::current_exe().expect("this program");
    let t = Instant::now();
    let built = std::process::Command::new(&me)
        .args(["build-table", &uri, &n.to_string(), &per_day.to_string()])
        .status()
        .expect("start build-table");
    assert!(built.success(), "build-table failed");
    println!(
        "table of {n} segments ({days} days of {per_day}) built in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let state = dir.path().join("state");
    let clock = Arc::new(SystemClock);
    let backend = Arc::new(LocalBackend::new(
        &state,
        me.clone(),
        vec!["stub-worker".into()],
        clock.clone(),
    ));
    let now = Utc.timestamp_millis_opt(T0).single().expect("time") + chrono::Duration::days(3650);
    for resource in parse_manifests(&manifests(&uri, days, parallelism)).expect("manifests") {
        backend.store().put_resource(&resource, now).expect("apply");
    }

    let cpu0 = cpu_time();
    let wall = Instant::now();
    let mut controller = Controller::new(
        backend.clone(),
        clock,
        ControllerOptions {
            poll_interval: Duration::from_millis(20),
            ..ControllerOptions::default()
        },
    );
    // The Table becomes Ready on the first tick; the run is created as `kubectl create` would.
    controller.tick().await.expect("first tick");
    let cfg = backend
        .get_task_config("default", "events-merge")
        .await
        .expect("config")
        .expect("config exists");
    let run = configs::new_task_run(&cfg, "events-merge-scale", None);
    backend.create_task_run(&run).await.expect("create run");
    let mut ticks = 0u64;
    let mut steps = 0u64;
    let mut first_commit = None;
    let done = loop {
        let report = controller.tick().await.expect("tick");
        ticks += 1;
        steps += report.steps;
        let run = backend
            .get_task_run("default", "events-merge-scale")
            .await
            .expect("get run")
            .expect("run exists");
        let status = run.status.clone().unwrap_or_default();
        if first_commit.is_none() && status.subtasks_committed > 0 {
            first_commit = Some(wall.elapsed());
        }
        if status.phase.is_finished() {
            break run;
        }
        if report.steps == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let elapsed = wall.elapsed();
    let cpu = cpu_time() - cpu0;
    let status = done.status.unwrap_or_default();
    assert_eq!(
        status.phase,
        TaskRunPhase::Succeeded,
        "{:?}: {:?}",
        status.reason,
        status.message
    );
    assert_eq!(status.subtasks_total as usize, days);
    let catalog = Catalog::open(&uri, HashMap::new()).await.expect("open");
    let segments = catalog.segments().expect("segments");
    assert_eq!(segments.len(), days, "one merged segment per day");
    let rows: u64 = segments.iter().map(|s| s.rows).sum();
    assert_eq!(rows, n as u64 * ROWS_PER_SEGMENT, "no row lost or doubled");

    println!(
        "run of {} subtasks over {n} segments: {:.1} s wall, {ticks} ticks, {steps} steps, first commit after {:.1} s",
        status.subtasks_total,
        elapsed.as_secs_f64(),
        first_commit.unwrap_or_default().as_secs_f64()
    );
    println!(
        "operator CPU time {:.1} s (target < 30 s), peak RSS {:.0} MiB (target < 300 MiB), {} Delta commits",
        cpu.as_secs_f64(),
        peak_rss_mib(),
        catalog.version()
    );
}
