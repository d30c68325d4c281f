//! Catalog cost as the Delta log grows (a plain program, not a timed test): a stream writer
//! appends one segment per commit and the operator merges them (see [`Stream`]), so the log
//! grows while the table's live files stay under `MERGE_EVERY + ROLL_UP_EVERY`; at each mark
//! (1k, 10k and 50k commits by default) the latency of an append, of the operator's merge
//! commit, of refreshing the operator's handle one commit behind, and of a fresh open plus
//! listing.
//! Target: each within 2× of its figure at the first mark (docs/benchmarks.md).
//!
//! Run: `cargo bench -p minion-operator --bench catalog_log` (optionally `-- <marks…>`, e.g.
//! `-- 1000 5000`). Segments are Add actions for files that are never written.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use minion_contract::{Column, ColumnRole, ColumnType, SegmentRef, TableSchema, TimeUnit};
use minion_operator::catalog::{AppTxn, Catalog, Replacement, app_id, install_crypto_provider};

/// Samples per measurement at each mark.
const RUNS: usize = 21;

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

fn segment(i: usize) -> SegmentRef {
    let minute = 60_000i64;
    SegmentRef {
        path: format!("data/stream/{:04}/events_{i}.parquet", i / 1000),
        rows: 1_000,
        bytes: 65_536,
        min_time_ms: Some(i as i64 * minute),
        max_time_ms: Some(i as i64 * minute + minute - 1),
        partition: Some((i % 4) as u32),
        tags: BTreeMap::new(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

struct Mark {
    commits: usize,
    log_files: usize,
    live: usize,
    append: f64,
    replace: f64,
    refresh: f64,
    open_list: f64,
}

/// The table as a stream writer and the operator keep it: the writer appends one segment per
/// commit, the operator merges every `MERGE_EVERY` of them into one and rolls every
/// `ROLL_UP_EVERY` merged segments up together with the previous roll-up into one. So the log
/// grows by about 1.25 commits per append while the live files stay between 1 and
/// `MERGE_EVERY + ROLL_UP_EVERY`, whatever the log's length: what grows is the log, not the
/// table.
struct Stream {
    writer: Catalog,
    operator: Catalog,
    next: usize,
    /// Stream segments appended and not merged yet.
    appended: Vec<SegmentRef>,
    /// Merged segments not rolled up yet.
    merged: Vec<SegmentRef>,
    /// The segment every roll-up so far went into.
    rolled: Option<SegmentRef>,
    runs: usize,
}

const MERGE_EVERY: usize = 4;
const ROLL_UP_EVERY: usize = 100;

impl Stream {
    async fn append(&mut self) -> Duration {
        let s = segment(self.next);
        self.next += 1;
        let t = Instant::now();
        self.writer
            .append(std::slice::from_ref(&s), &[])
            .await
            .unwrap();
        let took = t.elapsed();
        self.appended.push(s);
        took
    }

    /// The operator's merge when one is due: its duration.
    async fn merge_if_due(&mut self) -> Option<Duration> {
        if self.appended.len() < MERGE_EVERY {
            return None;
        }
        let inputs = std::mem::take(&mut self.appended);
        let (merged, took) = self.replace(inputs, "merge").await;
        self.merged.push(merged);
        if self.merged.len() >= ROLL_UP_EVERY {
            let mut inputs = std::mem::take(&mut self.merged);
            inputs.extend(self.rolled.take());
            let (rolled, _) = self.replace(inputs, "rollup").await;
            self.rolled = Some(rolled);
        }
        Some(took)
    }

    /// Replaces `inputs` by one segment in one commit with a run txn and the `level`'s
    /// watermark: the output, and how long the commit took.
    async fn replace(&mut self, inputs: Vec<SegmentRef>, level: &str) -> (SegmentRef, Duration) {
        let run = format!("run-{}", self.runs);
        self.runs += 1;
        let mut output = inputs[0].clone();
        output.path = format!("data/{run}/0-1/merged.parquet");
        output.rows = inputs.iter().map(|s| s.rows).sum();
        output.min_time_ms = inputs.iter().filter_map(|s| s.min_time_ms).min();
        output.max_time_ms = inputs.iter().filter_map(|s| s.max_time_ms).max();
        let watermark = output.max_time_ms.unwrap_or_default();
        let t = Instant::now();
        self.operator
            .replace(Replacement {
                remove: inputs.iter().map(|s| s.path.clone()).collect(),
                add: vec![output.clone()],
                txns: vec![
                    AppTxn::run(app_id::subtask("bench", &run, 0)),
                    AppTxn::watermark(app_id::watermark("bench", "merge", Some(level)), watermark),
                ],
                data_change: false,
                operation: "MINION MERGE ROLLUP",
            })
            .await
            .unwrap();
        (output, t.elapsed())
    }

    async fn step(&mut self) {
        self.append().await;
        self.merge_if_due().await;
    }
}

#[tokio::main]
async fn main() {
    install_crypto_provider();
    let mut marks: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if marks.is_empty() {
        marks = vec![1_000, 10_000, 50_000];
    }
    marks.sort_unstable();
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = format!("file://{}", dir.path().display());
    let writer = Catalog::create(&uri, &schema(), HashMap::new())
        .await
        .unwrap();
    let operator = Catalog::open(&uri, HashMap::new()).await.unwrap();
    let mut stream = Stream {
        writer,
        operator,
        next: 0,
        appended: Vec::new(),
        merged: Vec::new(),
        rolled: None,
        runs: 0,
    };
    let log_dir = dir.path().join("_delta_log");

    let mut results = Vec::new();
    let started = Instant::now();
    for &mark in &marks {
        while (stream.writer.version() as usize) + 2 * RUNS < mark {
            stream.step().await;
        }
        let mut appends = Vec::new();
        let mut refreshes = Vec::new();
        let mut replaces = Vec::new();
        while appends.len() < RUNS || replaces.len() < RUNS / 3 {
            // The stream writer appends one segment…
            appends.push(ms(stream.append().await));
            // …the operator's handle, one commit behind, catches up…
            let t = Instant::now();
            stream.operator.refresh().await.unwrap();
            refreshes.push(ms(t.elapsed()));
            // …and merges the stream's segments when enough are in.
            if let Some(took) = stream.merge_if_due().await {
                replaces.push(ms(took));
            }
        }
        let mut opens = Vec::new();
        let mut live = 0;
        for _ in 0..7 {
            let t = Instant::now();
            let c = Catalog::open(&uri, HashMap::new()).await.unwrap();
            let listed = c.segments().unwrap();
            opens.push(ms(t.elapsed()));
            live = listed.len();
            assert_eq!(
                listed.iter().map(|s| s.rows).sum::<u64>(),
                stream.next as u64 * 1_000,
                "every appended row is live exactly once"
            );
        }
        let log_files = std::fs::read_dir(&log_dir).unwrap().count();
        let m = Mark {
            commits: stream.operator.version() as usize,
            log_files,
            live,
            append: median(&mut appends),
            replace: median(&mut replaces),
            refresh: median(&mut refreshes),
            open_list: median(&mut opens),
        };
        println!(
            "{:>7} commits ({:>6} files in _delta_log, {:>4} live segments, {:>6.0} s so far): \
             append {:>6.1} ms   merge {:>6.1} ms   refresh {:>6.1} ms   fresh open + list {:>6.1} ms",
            m.commits,
            m.log_files,
            m.live,
            started.elapsed().as_secs_f64(),
            m.append,
            m.replace,
            m.refresh,
            m.open_list
        );
        results.push(m);
    }
    if let (Some(first), Some(last)) = (results.first(), results.last()) {
        println!(
            "growth {} → {} commits: append {:.2}×, merge {:.2}×, refresh {:.2}×, \
             fresh open + list {:.2}×",
            first.commits,
            last.commits,
            last.append / first.append,
            last.replace / first.replace,
            last.refresh / first.refresh,
            last.open_list / first.open_list
        );
    }
}
