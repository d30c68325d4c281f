//! The external sorter against a plain in-memory sort: in memory, spilled (with the run
//! still being written when the input ends kept partly in memory), with `distinct` and with
//! reported group boundaries.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Float64Type, Int64Type};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use minion_worker::sort::spill::SpillDir;
use minion_worker::sort::{ExternalSorter, SortConfig};

type Row = (Option<String>, i64, f64);

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("n", DataType::Int64, false),
        Field::new("v", DataType::Float64, false),
    ]))
}

fn input(rows: usize) -> Vec<Row> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut r = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..rows)
        .map(|_| {
            let k = r() % 50;
            // Keys of several lengths (some past the 32-byte inline prefix) and nulls.
            let key = match k {
                0 => None,
                k if k % 3 == 0 => Some(format!("{k:0>40}")),
                k => Some(format!("key-{k}")),
            };
            (key, (r() % 20) as i64, (r() % 4) as f64)
        })
        .collect()
}

fn batches(rows: &[Row]) -> Vec<RecordBatch> {
    rows.chunks(100)
        .map(|c| {
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from(
                        c.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from(c.iter().map(|r| r.1).collect::<Vec<_>>())),
                    Arc::new(Float64Array::from(
                        c.iter().map(|r| r.2).collect::<Vec<_>>(),
                    )),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn rows_of(b: &RecordBatch) -> Vec<Row> {
    let k = b.column(0).as_string::<i32>();
    let n = b.column(1).as_primitive::<Int64Type>();
    let v = b.column(2).as_primitive::<Float64Type>();
    (0..b.num_rows())
        .map(|i| {
            (
                k.is_valid(i).then(|| k.value(i).to_string()),
                n.value(i),
                v.value(i),
            )
        })
        .collect()
}

/// Sorts `rows` by `keys` columns; returns the rows and the group flags.
fn sort(
    rows: &[Row],
    keys: Vec<usize>,
    distinct: bool,
    budget: usize,
    expected_rows: Option<u64>,
) -> (Vec<Row>, Vec<bool>) {
    let (out, flags, _) = sort_spilling(rows, keys, distinct, budget, expected_rows, None);
    (out, flags)
}

/// Like [`sort`], also returning the bytes written to spill files.
fn sort_spilling(
    rows: &[Row],
    keys: Vec<usize>,
    distinct: bool,
    budget: usize,
    expected_rows: Option<u64>,
    disk_budget_bytes: Option<u64>,
) -> (Vec<Row>, Vec<bool>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path());
    let config = SortConfig {
        schema: schema(),
        keys,
        options: vec![],
        budget_bytes: budget,
        batch_size: 64,
        spill: spill.clone(),
        combiner: None,
        distinct,
        expected_rows,
        disk_budget_bytes,
    };
    let mut sorter = ExternalSorter::new(config, Arc::default()).unwrap();
    for b in batches(rows) {
        sorter.push(b).unwrap();
    }
    let mut out = Vec::new();
    let mut flags = Vec::new();
    for r in sorter.finish_grouped().unwrap() {
        let (b, f) = r.unwrap();
        assert_eq!(b.num_rows(), f.len());
        out.extend(rows_of(&b));
        flags.extend(f);
    }
    let written = spill.stats.written_bytes.load(Ordering::Relaxed);
    (out, flags, written)
}

fn key2(r: &Row) -> (Option<String>, i64) {
    (r.0.clone(), r.1)
}

#[test]
fn a_known_input_size_spills_only_what_does_not_fit() {
    let rows = input(60_000);
    let n = rows.len() as u64;
    // The rows take about 1.5 budgets while sorted.
    let budget = 4 << 20;
    let sort = |expected, disk| sort_spilling(&rows, vec![0, 1, 2], false, budget, expected, disk);
    let (unknown, _, spilled_unknown) = sort(None, None);
    let (known, _, spilled_known) = sort(Some(n), None);
    assert_eq!(known, unknown);
    assert!(
        spilled_unknown > 0 && spilled_known > 0,
        "the input does not fit"
    );
    assert!(
        spilled_known * 2 < spilled_unknown,
        "spilled {spilled_known} bytes knowing the input size, {spilled_unknown} without"
    );
    // With room on disk the runs are written uncompressed (larger files, same rows); with
    // too little, compressed as before.
    let (raw, _, spilled_raw) = sort(Some(n), Some(1 << 30));
    assert_eq!(raw, unknown);
    assert!(
        spilled_raw > spilled_known,
        "uncompressed runs: {spilled_raw} bytes, compressed: {spilled_known}"
    );
    let (tight, _, spilled_tight) = sort(Some(n), Some(spilled_known));
    assert_eq!(tight, unknown);
    assert_eq!(spilled_tight, spilled_known);
    // Too many rows for the merge to read every run within the budget: no plan, same runs.
    let budget = 1 << 20;
    let (_, _, unknown) = sort_spilling(&rows, vec![0, 1, 2], false, budget, None, None);
    let (_, _, known) = sort_spilling(&rows, vec![0, 1, 2], false, budget, Some(n), None);
    assert_eq!(known, unknown);
}

#[test]
fn external_sort_matches_an_in_memory_sort() {
    let rows = input(60_000);
    // No spill; spilled runs with a small merge; spilled runs with the tail kept in memory.
    // The expected row count, when given, may be exact, too low or too high: spilling only
    // what will not fit, spilling the last buffer after all, spilling more than needed.
    let n = rows.len() as u64;
    let cases = [1 << 30, 400_000, 6 << 20]
        .into_iter()
        .flat_map(|b| [None, Some(n), Some(n / 3), Some(3 * n)].map(|e| (b, e)));
    for (budget, expected) in cases {
        // Sorted by (k, n): every row present, keys ascending (nulls first), flags exact.
        let (out, flags) = sort(&rows, vec![0, 1], false, budget, expected);
        let mut want = rows.clone();
        want.sort_by(|a, b| key2(a).cmp(&key2(b)).then(a.2.total_cmp(&b.2)));
        let mut got = out.clone();
        got.sort_by(|a, b| key2(a).cmp(&key2(b)).then(a.2.total_cmp(&b.2)));
        assert_eq!(
            got, want,
            "budget {budget}, expected {expected:?}: rows differ"
        );
        for i in 1..out.len() {
            assert!(
                key2(&out[i - 1]) <= key2(&out[i]),
                "budget {budget}: unsorted"
            );
            assert_eq!(flags[i], key2(&out[i - 1]) == key2(&out[i]), "flag {i}");
        }
        assert!(!flags[0]);

        // Distinct over every column: exactly the sorted distinct rows.
        let (out, flags) = sort(&rows, vec![0, 1, 2], true, budget, expected);
        let mut want = rows.clone();
        want.sort_by(|a, b| key2(a).cmp(&key2(b)).then(a.2.total_cmp(&b.2)));
        want.dedup();
        assert_eq!(
            out, want,
            "budget {budget}, expected {expected:?}: distinct rows differ"
        );
        assert!(flags.iter().all(|f| !f));
    }
}
