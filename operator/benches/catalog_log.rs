//! Catalog cost as the Delta log grows (a plain program, not a timed test): one small commit
//! at a time, as a stream writer appends, and at each mark (1k, 10k and 50k commits by
//! default) the latency of an append, of the operator's replacement commit, of refreshing a
//! handle that is one commit behind, and of a fresh open plus listing.
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
    append: f64,
    replace: f64,
    refresh: f64,
    open_list: f64,
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
    let mut writer = Catalog::create(&uri, &schema(), HashMap::new())
        .await
        .unwrap();
    let mut operator = Catalog::open(&uri, HashMap::new()).await.unwrap();
    let log_dir = dir.path().join("_delta_log");

    let mut next = 0usize;
    let mut replaced = 0usize;
    let mut results = Vec::new();
    let started = Instant::now();
    for &mark in &marks {
        while (writer.version() as usize) + RUNS + RUNS / 3 < mark {
            writer.append(&[segment(next)], &[]).await.unwrap();
            next += 1;
        }
        let mut appends = Vec::new();
        let mut refreshes = Vec::new();
        let mut replaces = Vec::new();
        for r in 0..RUNS {
            // The stream writer appends one segment…
            let t = Instant::now();
            writer.append(&[segment(next)], &[]).await.unwrap();
            appends.push(ms(t.elapsed()));
            next += 1;
            // …the operator's handle, one commit behind, catches up…
            let t = Instant::now();
            operator.refresh().await.unwrap();
            refreshes.push(ms(t.elapsed()));
            // …and the operator replaces one segment (an every-other-append cadence would
            // only change the count of commits, not their cost).
            if r % 3 == 0 {
                let input = segment(replaced * 7);
                let mut output = segment(replaced * 7);
                output.path = format!("data/run-{replaced}/0-1/merged.parquet");
                let run = app_id::subtask("bench", &format!("run-{replaced}"), 0);
                let t = Instant::now();
                operator
                    .replace(Replacement {
                        remove: vec![input.path],
                        add: vec![output],
                        txns: vec![
                            AppTxn::run(&run),
                            AppTxn::watermark(
                                app_id::watermark("bench", "merge", None),
                                replaced as i64,
                            ),
                        ],
                        data_change: false,
                        operation: "MINION MERGE ROLLUP",
                    })
                    .await
                    .unwrap();
                replaces.push(ms(t.elapsed()));
                replaced += 1;
            }
        }
        let mut opens = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            let c = Catalog::open(&uri, HashMap::new()).await.unwrap();
            let listed = c.segments().unwrap();
            opens.push(ms(t.elapsed()));
            assert!(!listed.is_empty());
        }
        let log_files = std::fs::read_dir(&log_dir).unwrap().count();
        let m = Mark {
            commits: writer.version() as usize,
            log_files,
            append: median(&mut appends),
            replace: median(&mut replaces),
            refresh: median(&mut refreshes),
            open_list: median(&mut opens),
        };
        println!(
            "{:>7} commits ({:>6} files in _delta_log, {:>6.0} s so far): append {:>6.1} ms   \
             replace {:>6.1} ms   refresh {:>6.1} ms   fresh open + list {:>6.1} ms",
            m.commits,
            m.log_files,
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
            "growth {} → {} commits: append {:.2}×, replace {:.2}×, refresh {:.2}×, \
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
