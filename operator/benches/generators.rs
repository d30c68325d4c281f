//! Planning time of MergeRollup and SegmentImport over a table of 100,000 segments (the bar:
//! under a second, docs/benchmarks.md), and the runs MergeRollup needs to catch up a REALTIME
//! table of stream segments that do not line up with its buckets (each run's commits applied
//! to the table view the next run plans from). A plain `main` printing figures; run with
//! `cargo bench -p minion-operator --bench generators`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use minion_contract::segment::TAG_MERGE_LEVEL;
use minion_contract::{
    Column, ColumnRole, ColumnType, MergeType, SegmentRef, TableSchema, TimeUnit,
};
use minion_operator::generator::{GeneratorInput, TableView, plan};
use minion_operator::lineage::Lineage;
use minion_operator::model::*;

const SEGMENTS: usize = 100_000;
const SEGMENT_SPAN_MS: i64 = 10 * MINUTE_MS;
const T0: i64 = 1_577_836_800_000; // 2020-01-01T00:00:00Z
const ITERATIONS: usize = 5;

fn schema() -> TableSchema {
    let col = |name: &str, data_type, role| Column {
        name: name.into(),
        data_type,
        role,
        nullable: true,
    };
    TableSchema {
        columns: vec![
            col("id", ColumnType::String, ColumnRole::Dimension),
            col("ts", ColumnType::Long, ColumnRole::DateTime),
            col("m", ColumnType::Long, ColumnRole::Metric),
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

fn table(name: &str, table_type: TableType, segments: Vec<SegmentRef>) -> TableView {
    TableView {
        def: TableDef {
            namespace: "bench".into(),
            name: name.into(),
            table_type,
            uri: format!("file:///bench/{name}"),
            schema: schema(),
            storage_secret: None,
            retention_ms: defaults::APPEND_RETENTION_MS,
            data_retention_ms: None,
            create: true,
            clean_up_foreign_files: false,
        },
        segments,
        lineage: Lineage::default(),
    }
}

/// 100,000 ten-minute segments (about 694 days), 4 stream partitions; the first half already
/// merged hourly, so the walk crosses merged buckets before it finds work.
fn segments() -> Vec<SegmentRef> {
    (0..SEGMENTS)
        .map(|i| {
            let start = T0 + (i / 4) as i64 * SEGMENT_SPAN_MS * 4 + (i % 4) as i64;
            let mut tags = BTreeMap::new();
            if i < SEGMENTS / 2 {
                tags.insert(TAG_MERGE_LEVEL.to_string(), "1hour".to_string());
            }
            SegmentRef {
                path: format!("data/seg_{i:06}.parquet"),
                rows: 20_000,
                bytes: 2 << 20,
                min_time_ms: Some(start),
                max_time_ms: Some(start + SEGMENT_SPAN_MS - 1),
                partition: Some((i % 4) as u32),
                tags,
            }
        })
        .collect()
}

fn config(task: TaskSpec) -> TaskConfig {
    TaskConfig {
        namespace: "bench".into(),
        name: "bench".into(),
        table: "events".into(),
        source_table: Some("events_rt".into()),
        schedule: None,
        suspend: false,
        missed_run_policy: MissedRunPolicy::default(),
        starting_deadline_ms: None,
        concurrency_policy: ConcurrencyPolicy::default(),
        run_after: Vec::new(),
        successful_runs_history_limit: 3,
        failed_runs_history_limit: 3,
        degraded_after_failures: 3,
        execution: Execution::default(),
        task,
    }
}

fn input(
    task: TaskSpec,
    source: Option<TableView>,
    destination: TableView,
    now_ms: i64,
) -> GeneratorInput {
    GeneratorInput {
        config: config(task),
        source,
        destination,
        watermarks: BTreeMap::new(),
        committed_windows: vec![],
        incomplete_runs: vec![],
        files: vec![],
        invalid_rows: HashMap::new(),
        now_ms,
        watermark_source: None,
    }
}

fn level(name: &str, bucket_ms: i64, parallel: u32) -> MergeLevel {
    MergeLevel {
        name: name.into(),
        bucket_ms,
        buffer_ms: 0,
        round_bucket_ms: None,
        merge_type: MergeType::Concat,
        max_records_per_segment: defaults::MAX_RECORDS_PER_SEGMENT,
        max_records_per_task: defaults::MAX_RECORDS_PER_TASK,
        max_num_parallel_buckets: parallel,
        erase_dimension_values: vec![],
        derive_metrics: BTreeMap::new(),
    }
}

/// Runs `f` a few times; returns (min, median) and the last result's summary.
fn time<T>(
    mut f: impl FnMut() -> T,
    summary: impl Fn(&T) -> String,
) -> (Duration, Duration, String) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        let out = black_box(f());
        times.push(t.elapsed());
        last = Some(out);
    }
    times.sort();
    (
        times[0],
        times[times.len() / 2],
        summary(last.as_ref().expect("ran")),
    )
}

fn report(name: &str, (min, median, summary): (Duration, Duration, String)) {
    println!(
        "{name:<58} min {:>8.1} ms  median {:>8.1} ms  ({summary})",
        min.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
}

fn main() {
    let segs = segments();
    let end = segs
        .iter()
        .filter_map(|s| s.max_time_ms)
        .max()
        .unwrap_or(T0);
    let now = end + 3 * DAY_MS;
    println!(
        "planning over {} segments, {ITERATIONS} iterations each",
        segs.len()
    );

    let merge = |parallel: u32, mode: MergeMode| {
        input(
            TaskSpec::MergeRollup(MergeRollupConfig {
                levels: vec![
                    level("1hour", HOUR_MS, parallel),
                    level("1day", DAY_MS, parallel),
                    level("30days", 30 * DAY_MS, parallel),
                ],
                aggregation_types: BTreeMap::new(),
                aggregation_parameters: BTreeMap::new(),
                mode,
                skip_corrupt_segments: false,
            }),
            None,
            table("events", TableType::Offline, segs.clone()),
            now,
        )
    };
    let summary = |p: &Result<minion_operator::generator::Plan, _>| match p {
        Ok(p) => format!(
            "{} subtasks, {} inputs",
            p.subtasks.len(),
            p.subtasks.iter().map(|s| s.inputs.len()).sum::<usize>()
        ),
        Err(e) => format!("error {e}"),
    };
    for (name, parallel, mode) in [
        (
            "MergeRollup, 3 levels, maxNumParallelBuckets=1",
            1,
            MergeMode::ProcessFromWatermark,
        ),
        (
            "MergeRollup, 3 levels, maxNumParallelBuckets=1000 (bootstrap)",
            1000,
            MergeMode::ProcessFromWatermark,
        ),
        (
            "MergeRollup, 3 levels, processAll, maxNumParallelBuckets=1000",
            1000,
            MergeMode::ProcessAll,
        ),
    ] {
        let i = merge(parallel, mode);
        report(name, time(|| plan(&i), summary));
    }

    for (name, tasks, per_task) in [
        (
            "SegmentImport, cold start, defaults (10 tasks, 50M rows)",
            10,
            defaults::MAX_RECORDS_PER_TASK,
        ),
        ("SegmentImport, cold start, 1000 tasks of 1 day", 1000, 1),
    ] {
        let i = input(
            TaskSpec::SegmentImport(SegmentImportConfig {
                table_max_num_tasks: tasks,
                max_records_per_task: per_task,
                ..SegmentImportConfig::default()
            }),
            Some(table("events_rt", TableType::Realtime, segs.clone())),
            table("events", TableType::Offline, vec![]),
            now,
        );
        report(name, time(|| plan(&i), summary));
    }

    let i = input(
        TaskSpec::RealtimeToOffline(RealtimeToOfflineConfig::default()),
        Some(table("events_rt", TableType::Realtime, segs.clone())),
        table("events", TableType::Offline, vec![]),
        now,
    );
    report("RealtimeToOffline, cold start", time(|| plan(&i), summary));

    for parallel in [1, 4, 24] {
        catch_up(parallel);
    }
}

/// A REALTIME table of 10 days of 36-minute stream segments (2 partitions, the second 17
/// minutes behind) and the sample's hourly level (buffer 3 h) with `parallel` buckets a run:
/// plans runs until one plans nothing, each run's subtasks replacing their inputs with one
/// segment per hour they cover, as the worker writes them. Prints the runs it took and the
/// catch-up time at the sample's 10-minute schedule.
fn catch_up(parallel: u32) {
    const SEGMENT_MS: i64 = 36 * MINUTE_MS;
    const DAYS: i64 = 10;
    let mut segs: Vec<SegmentRef> = (0..2)
        .flat_map(|p: i64| {
            (0..DAYS * DAY_MS / SEGMENT_MS).map(move |i| {
                let start = T0 + p * 17 * MINUTE_MS + i * SEGMENT_MS;
                SegmentRef {
                    path: format!("stream/p{p}_{i:04}.parquet"),
                    rows: 360_000,
                    bytes: 16 << 20,
                    min_time_ms: Some(start),
                    max_time_ms: Some(start + SEGMENT_MS - 1),
                    partition: Some(p as u32),
                    tags: BTreeMap::new(),
                }
            })
        })
        .collect();
    let end = segs
        .iter()
        .filter_map(|s| s.max_time_ms)
        .max()
        .unwrap_or(T0);
    let now = end + MINUTE_MS;
    let mut hourly = level("1hour", HOUR_MS, parallel);
    hourly.buffer_ms = 3 * HOUR_MS;
    let config = MergeRollupConfig {
        levels: vec![hourly],
        aggregation_types: BTreeMap::new(),
        aggregation_parameters: BTreeMap::new(),
        mode: MergeMode::ProcessFromWatermark,
        skip_corrupt_segments: false,
    };
    let mut watermarks = BTreeMap::new();
    let (mut runs, mut subtasks, mut outputs) = (0, 0, 0);
    let started = Instant::now();
    loop {
        let mut i = input(
            TaskSpec::MergeRollup(config.clone()),
            None,
            table("events_rt", TableType::Realtime, segs.clone()),
            now,
        );
        i.watermarks = watermarks.clone();
        let p = plan(&i).expect("a plan");
        if p.subtasks.is_empty() {
            break;
        }
        runs += 1;
        subtasks += p.subtasks.len();
        watermarks.extend(p.watermarks.clone());
        for s in &p.subtasks {
            let from: HashSet<&str> = s.inputs.iter().map(|i| i.path.as_str()).collect();
            // Rows by hour: each input's rows spread evenly over its time range.
            let mut by_hour: BTreeMap<i64, (i64, i64, u64)> = BTreeMap::new();
            for seg in segs.iter().filter(|x| from.contains(x.path.as_str())) {
                let (min, max) = (seg.min_time_ms.unwrap(), seg.max_time_ms.unwrap());
                let mut h = min.div_euclid(HOUR_MS) * HOUR_MS;
                while h <= max {
                    let (lo, hi) = (min.max(h), max.min(h + HOUR_MS - 1));
                    let share = seg.rows * (hi - lo + 1) as u64 / (max - min + 1) as u64;
                    let e = by_hour.entry(h).or_insert((lo, hi, 0));
                    *e = (e.0.min(lo), e.1.max(hi), e.2 + share);
                    h += HOUR_MS;
                }
            }
            segs.retain(|x| !from.contains(x.path.as_str()));
            for (h, (lo, hi, rows)) in by_hour {
                outputs += 1;
                segs.push(SegmentRef {
                    path: format!("merged/r{runs}_s{}_{h}.parquet", s.index),
                    rows,
                    bytes: 16 << 20,
                    min_time_ms: Some(lo),
                    max_time_ms: Some(hi),
                    partition: None,
                    tags: BTreeMap::from([(TAG_MERGE_LEVEL.to_string(), "1hour".to_string())]),
                });
            }
        }
    }
    let unmerged = segs.iter().filter(|s| s.tags.is_empty()).count();
    let live = segs.len() - unmerged;
    println!(
        "MergeRollup catch-up, 10 days of 36-min segments x 2 partitions, hourly, \
         maxNumParallelBuckets={parallel}: {runs} runs ({:.1} h at one run per 10 min), \
         {subtasks} subtasks, {outputs} merged segments written, {live} live at the end, \
         {unmerged} left unmerged \
         (the latest of each partition and those within the buffer); planned in {:.1} s",
        runs as f64 / 6.0,
        started.elapsed().as_secs_f64()
    );
}
