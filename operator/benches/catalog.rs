//! Catalog benchmark (a plain program, not a timed test): a Delta table of 100,000 segments on
//! local disk, then listing it (fresh open and refreshed handle) and committing replacements
//! (remove 10 / add 1) into it. Targets: list < 200 ms, commit < 300 ms (docs/benchmarks.md).
//!
//! Run: `cargo bench -p minion-operator --bench catalog` (optionally `-- <segments>`).
//! Segments are Add actions for files that are never written: the catalog reads only the log.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use minion_contract::{Column, ColumnRole, ColumnType, SegmentRef, TableSchema, TimeUnit};
use minion_operator::catalog::{AppTxn, Catalog, Replacement, app_id, install_crypto_provider};

const BATCH: usize = 10_000;
const RUNS: usize = 7;

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

fn segment(i: usize) -> SegmentRef {
    let hour = 3_600_000i64;
    SegmentRef {
        path: format!("data/seed/{:03}/events_{i}.parquet", i / 1000),
        rows: 10_000,
        bytes: 1_048_576,
        min_time_ms: Some(i as i64 * hour),
        max_time_ms: Some(i as i64 * hour + hour - 1),
        partition: Some((i % 8) as u32),
        tags: BTreeMap::from([("mergeLevel".to_string(), "1hour".to_string())]),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(name: &str, samples: &mut [f64]) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = samples[samples.len() / 2];
    println!(
        "{name:<46} median {median:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms   (n={})",
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    );
}

#[tokio::main]
async fn main() {
    install_crypto_provider();
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = format!("file://{}", dir.path().display());
    let mut catalog = Catalog::create(&uri, &schema(), HashMap::new())
        .await
        .unwrap();

    let t = Instant::now();
    let mut next = 0;
    while next < n {
        let end = (next + BATCH).min(n);
        let batch: Vec<SegmentRef> = (next..end).map(segment).collect();
        catalog.append(&batch, &[]).await.unwrap();
        next = end;
    }
    println!(
        "built {n} segments in {} commits: {:.1} s",
        n.div_ceil(BATCH),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    catalog.checkpoint().await.unwrap();
    println!(
        "checkpoint at version {}: {:.1} ms",
        catalog.version(),
        ms(t.elapsed())
    );

    let mut fresh = Vec::new();
    let mut fresh_open = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let c = Catalog::open(&uri, HashMap::new()).await.unwrap();
        let opened = t.elapsed();
        let listed = c.segments().unwrap();
        fresh.push(ms(t.elapsed()));
        fresh_open.push(ms(opened));
        assert_eq!(listed.len(), n);
    }
    summary("list from a fresh open (open + segments)", &mut fresh);
    summary("  of which open (log replay)", &mut fresh_open);

    let mut refreshed = Vec::new();
    let mut listing_only = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        catalog.refresh().await.unwrap();
        let before_list = Instant::now();
        let listed = catalog.segments().unwrap();
        refreshed.push(ms(t.elapsed()));
        listing_only.push(ms(before_list.elapsed()));
        assert_eq!(listed.len(), n);
    }
    summary(
        "list from a refreshed handle (refresh + segments)",
        &mut refreshed,
    );
    summary("  of which segments() alone", &mut listing_only);

    let mut commits = Vec::new();
    let mut lookups = Vec::new();
    for r in 0..RUNS {
        let inputs: Vec<String> = (r * 10..r * 10 + 10).map(|i| segment(i).path).collect();
        let mut output = segment(n + r);
        output.path = format!("data/run-{r}/0-1/merged.parquet");
        let run = app_id::subtask("bench", &format!("run-{r}"), 0);
        let t = Instant::now();
        let outcome = catalog
            .replace(Replacement {
                remove: inputs,
                add: vec![output],
                txns: vec![
                    AppTxn::run(&run),
                    AppTxn::watermark(app_id::watermark("bench", "merge", Some("1day")), r as i64),
                ],
                data_change: false,
                operation: "MINION MERGE ROLLUP",
            })
            .await
            .unwrap();
        commits.push(ms(t.elapsed()));
        assert!(!outcome.already_committed);
        let t = Instant::now();
        assert!(catalog.is_committed(&run, 1).await.unwrap());
        lookups.push(ms(t.elapsed()));
    }
    summary("commit one replacement (remove 10 / add 1)", &mut commits);
    summary("txn lookup (is_committed)", &mut lookups);

    let t = Instant::now();
    let c = Catalog::open(&uri, HashMap::new()).await.unwrap();
    assert_eq!(c.segments().unwrap().len(), n - RUNS * 10 + RUNS);
    println!(
        "list after the replacements (fresh open): {:.1} ms",
        ms(t.elapsed())
    );
}
