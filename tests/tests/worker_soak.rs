//! Worker soak: the release `minion worker run` at the default 512 MiB budget on millions of
//! rows that spill, ten times over two input shapes and the three merge types; each output's
//! row multiset is compared with the input's, computed here on a path that shares nothing
//! with the worker (rows hashed one by one, sorted, compared).
//!
//! The shapes take the sorter's two ways of spilling at this budget: 3M rows in 1,500 small
//! segments are few enough for a plan (the rows that will not fit are spilled, the rest kept
//! in memory), 5M rows in 30 large segments are not (every buffer of half the sort budget is
//! spilled, and the run being written when the input ends stops early). Up to about 1.5M
//! rows now stay in memory at this budget; at such sizes, on the second way, the sorter once
//! emitted rows twice (rows doubled for concat, sums inflated for rollup) while every
//! smaller test passed.
//!
//! Needs the release build of `minion` (`cargo build --release --bin minion`), which
//! `scripts/test.sh` makes for the demo before it runs this test.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use minion_contract::*;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;

const T0: i64 = 1_700_006_400_000;
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// One row of the soak table.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    d1: String,
    d2: String,
    d3: i32,
    d4: String,
    d5: i64,
    d6: String,
    ts: i64,
    m1: i64,
    m2: f64,
    m3: Option<i64>,
}

impl Row {
    fn key_hash(&self, ts: i64) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        (&self.d1, &self.d2, self.d3, &self.d4, self.d5, &self.d6, ts).hash(&mut h);
        h.finish()
    }

    fn hash(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.key_hash(self.ts).hash(&mut h);
        (self.m1, self.m2.to_bits(), self.m3).hash(&mut h);
        h.finish()
    }
}

fn table_schema() -> TableSchema {
    let col = |name: &str, data_type, role| Column {
        name: name.into(),
        data_type,
        role,
        nullable: true,
    };
    use ColumnRole::{DateTime, Dimension, Metric};
    use ColumnType::{Double, Int, Long, String};
    TableSchema {
        columns: vec![
            col("d1", String, Dimension),
            col("d2", String, Dimension),
            col("d3", Int, Dimension),
            col("d4", String, Dimension),
            col("d5", Long, Dimension),
            col("d6", String, Dimension),
            col("ts", Long, DateTime),
            col("m1", Long, Metric),
            col("m2", Double, Metric),
            col("m3", Long, Metric),
        ],
        time_column: "ts".into(),
        time_unit: TimeUnit::Milliseconds,
        time_format: None,
        primary_key: vec![],
        comparison_column: None,
        partitioning: None,
        sorted_column: Some("d6".into()),
        bloom_filter_columns: vec![],
    }
}

fn to_batch(rows: &[Row]) -> RecordBatch {
    let schema = minion_worker::table::arrow_schema(&table_schema());
    let s = |f: fn(&Row) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(f)));
    RecordBatch::try_new(
        schema,
        vec![
            s(|r| &r.d1),
            s(|r| &r.d2),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.d3))),
            s(|r| &r.d4),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.d5))),
            s(|r| &r.d6),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.ts))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.m1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.m2))),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.m3).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn rows_of(b: &RecordBatch) -> Vec<Row> {
    let s = |i: usize| b.column(i).as_string::<i32>();
    let (d1, d2, d4, d6) = (s(0), s(1), s(3), s(5));
    let d3 = b.column(2).as_primitive::<Int32Type>();
    let i64s = |i: usize| b.column(i).as_primitive::<Int64Type>();
    let (d5, ts, m1, m3) = (i64s(4), i64s(6), i64s(7), i64s(9));
    let m2 = b.column(8).as_primitive::<Float64Type>();
    (0..b.num_rows())
        .map(|i| Row {
            d1: d1.value(i).into(),
            d2: d2.value(i).into(),
            d3: d3.value(i),
            d4: d4.value(i).into(),
            d5: d5.value(i),
            d6: d6.value(i).into(),
            ts: ts.value(i),
            m1: m1.value(i),
            m2: m2.value(i),
            m3: m3.is_valid(i).then(|| m3.value(i)),
        })
        .collect()
}

/// About 140 bytes per row once encoded, dimensions of cardinality 10 to 1M, one copy of a
/// row in fifty (dedup drops something), a tenth of `m3` null.
fn generate(n: usize, seed: u64) -> Vec<Row> {
    let mut state = seed;
    let mut r = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut rows: Vec<Row> = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 && r() % 50 == 0 {
            let copy = rows[(r() % i as u64) as usize].clone();
            rows.push(copy);
            continue;
        }
        rows.push(Row {
            d1: format!("c{}", r() % 10),
            d2: format!("region-{}", r() % 100),
            d3: (r() % 1000) as i32,
            d4: format!("/page/{}", r() % 10_000),
            d5: (r() % 100_000) as i64,
            d6: format!("user-{:08x}", r() % 1_000_000),
            ts: T0 + (r() % DAY as u64) as i64,
            m1: (r() % 100) as i64,
            m2: (r() % 10_000) as f64 / 100.0,
            m3: (r() % 10 != 0).then(|| (r() % 1000) as i64),
        });
    }
    rows
}

/// Writes `rows` as `segments` segments under `<dir>/in-<tag>/`.
fn write_segments(dir: &Path, tag: &str, rows: &[Row], segments: usize) -> Vec<SegmentRef> {
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    rows.chunks(rows.len().div_ceil(segments))
        .enumerate()
        .map(|(i, chunk)| {
            let rel = format!("in-{tag}/{i:05}.parquet");
            let path = dir.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let batch = to_batch(chunk);
            let file = std::fs::File::create(&path).unwrap();
            let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props.clone())).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            SegmentRef {
                path: rel,
                rows: chunk.len() as u64,
                bytes: std::fs::metadata(&path).unwrap().len(),
                min_time_ms: chunk.iter().map(|r| r.ts).min(),
                max_time_ms: chunk.iter().map(|r| r.ts).max(),
                partition: None,
                tags: BTreeMap::new(),
            }
        })
        .collect()
}

/// The log without its colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn release_minion() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("release/minion");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --release --bin minion` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Sums of one rollup group.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Sums {
    m1: i64,
    m2: f64,
    m3: Option<i64>,
}

impl Sums {
    fn add(&mut self, m1: i64, m2: f64, m3: Option<i64>) {
        self.m1 += m1;
        self.m2 += m2;
        if let Some(v) = m3 {
            self.m3 = Some(self.m3.unwrap_or(0) + v);
        }
    }

    fn close_to(&self, other: &Sums) -> bool {
        self.m1 == other.m1
            && self.m3 == other.m3
            && (self.m2 - other.m2).abs() <= 1e-6 * self.m2.abs().max(1.0)
    }
}

/// Groups of a 1-hour rollup, by the hash of their key.
fn rollup(rows: &[Row]) -> HashMap<u64, Sums> {
    let mut groups: HashMap<u64, Sums> = HashMap::new();
    for r in rows {
        let bucket = r.ts - r.ts.rem_euclid(HOUR);
        groups
            .entry(r.key_hash(bucket))
            .or_default()
            .add(r.m1, r.m2, r.m3);
    }
    groups
}

/// Row hashes sorted: equal vectors are equal multisets (but for 64-bit collisions).
fn multiset(rows: &[Row]) -> Vec<u64> {
    let mut h: Vec<u64> = rows.iter().map(Row::hash).collect();
    h.sort_unstable();
    h
}

struct Expected {
    concat: Vec<u64>,
    dedup: Vec<u64>,
    rollup: HashMap<u64, Sums>,
}

#[test]
#[ignore = "needs the release build of minion: scripts/test.sh runs it after the demo"]
fn ten_spilling_runs_at_the_default_budget_keep_every_row_exactly_once() {
    let minion = release_minion();
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let shapes: Vec<(Vec<SegmentRef>, Expected)> = [
        ("small", 3_000_000, 1_500, 1u64),
        ("large", 5_000_000, 30, 2),
    ]
    .into_iter()
    .map(|(tag, n, segments, seed)| {
        let rows = generate(n, 0x9e37_79b9_7f4a_7c15 ^ seed);
        let refs = write_segments(dir.path(), tag, &rows, segments);
        let concat = multiset(&rows);
        let mut dedup = concat.clone();
        dedup.dedup();
        (
            refs,
            Expected {
                concat,
                dedup,
                rollup: rollup(&rows),
            },
        )
    })
    .collect();
    let merges = [MergeType::Concat, MergeType::Rollup, MergeType::Dedup];
    for run in 0..10u32 {
        let merge = merges[run as usize % 3];
        let (inputs, expected) = &shapes[run as usize % 2];
        let table = TableLocation {
            name: "soak".into(),
            uri: uri.clone(),
            schema: table_schema(),
        };
        let task_run = format!("soak-{run}");
        let spec = SubtaskSpec {
            api_version: CONTRACT_VERSION.into(),
            task_type: TaskType::SegmentImportTask,
            kind: Default::default(),
            namespace: "default".into(),
            task_run: task_run.clone(),
            subtask: 0,
            attempt: 1,
            source: table.clone(),
            destination: table,
            inputs: inputs.clone(),
            input_files: vec![],
            context_segments: vec![],
            // The window of an import: every row is inside it.
            window: Some(TimeWindow::new(T0, T0 + DAY)),
            processing: Processing {
                merge_type: merge,
                round_bucket_ms: (merge == MergeType::Rollup).then_some(HOUR),
                sort: true,
                max_records_per_segment: DEFAULT_MAX_RECORDS_PER_SEGMENT,
                skip_file_if_fail_to_init_reader: true,
                ..Processing::default()
            },
            output: OutputSpec {
                staging_prefix: staging_prefix(&task_run, 0, 1),
                segment_name_prefix: None,
                segment_name_postfix: None,
                tags: BTreeMap::new(),
                segment_per_input_file: false,
            },
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_BYTES,
        };
        let spec_path = dir.path().join(format!("{task_run}.json"));
        std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
        let out = Command::new(&minion)
            .args(["worker", "run", "--spec"])
            .arg(format!("file://{}", spec_path.display()))
            // The sorter says at debug level when a plan has spilled what will not fit.
            .env("RUST_LOG", "info,minion_worker::sort=debug")
            .output()
            .unwrap();
        let log = strip_ansi(&String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "run {run} ({merge:?}) failed: {}\n{log}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            log.contains("spilled_runs=") && !log.contains("spilled_runs=0 "),
            "run {run} ({merge:?}) did not spill:\n{log}"
        );
        let planned = log.contains("the rest of the input is expected to fit in memory");
        assert_eq!(
            planned,
            run % 2 == 0,
            "run {run} ({merge:?}): the small shape is spilled by plan, the large one is not\n{log}"
        );
        let manifest: ResultManifest =
            serde_json::from_slice(&std::fs::read(dir.path().join(spec.manifest_path())).unwrap())
                .unwrap();
        let mut written = Vec::new();
        for o in &manifest.outputs {
            let file = std::fs::File::open(dir.path().join(&o.path)).unwrap();
            for b in ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
            {
                written.extend(rows_of(&b.unwrap()));
            }
        }
        assert_eq!(manifest.output_rows, written.len() as u64, "run {run}");
        match merge {
            MergeType::Concat | MergeType::Dedup => {
                let want = if merge == MergeType::Concat {
                    &expected.concat
                } else {
                    &expected.dedup
                };
                let got = multiset(&written);
                assert_eq!(
                    got.len(),
                    want.len(),
                    "run {run} ({merge:?}): {} rows written, {} expected",
                    got.len(),
                    want.len()
                );
                assert!(&got == want, "run {run} ({merge:?}): the rows differ");
            }
            MergeType::Rollup => {
                let got = rollup(&written);
                assert_eq!(written.len(), got.len(), "run {run}: a group written twice");
                assert_eq!(got.len(), expected.rollup.len(), "run {run}: groups");
                for (key, sums) in &expected.rollup {
                    let g = got
                        .get(key)
                        .unwrap_or_else(|| panic!("run {run}: a group lost"));
                    assert!(g.close_to(sums), "run {run}: sums {g:?}, expected {sums:?}");
                }
            }
        }
        std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    }
}
