//! The external sorter against a plain in-memory sort: in memory, spilled (with the run
//! still being written when the input ends kept partly in memory), with `distinct` and with
//! reported group boundaries.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Float64Type, Int64Type};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use minion_worker::sort::spill::{SpillDir, SpillStats};
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
    let (out, flags, _) = sort_spilling(rows, keys, distinct, budget, expected_rows, None, None);
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
    spilling_budget_bytes: Option<usize>,
) -> (Vec<Row>, Vec<bool>, Arc<SpillStats>) {
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
        on_duplicates: None,
        expected_rows,
        disk_budget_bytes,
        spilling_budget_bytes,
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
    (out, flags, spill.stats)
}

fn written(stats: &SpillStats) -> u64 {
    stats.written_bytes.load(Ordering::Relaxed)
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
    let sort = |expected, disk| {
        let (out, flags, stats) =
            sort_spilling(&rows, vec![0, 1, 2], false, budget, expected, disk, None);
        (out, flags, written(&stats))
    };
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
    let (_, _, unknown) = sort_spilling(&rows, vec![0, 1, 2], false, budget, None, None, None);
    let (_, _, known) = sort_spilling(&rows, vec![0, 1, 2], false, budget, Some(n), None, None);
    assert_eq!(written(&known), written(&unknown));
}

#[test]
fn a_sorter_takes_its_spilling_budget_only_when_the_input_spills_anyway() {
    // 60k rows take about 1.5 budgets of 4 MiB while sorted: knowing the input size, a
    // 4 MiB sorter spills a third of them; told to work within 1 MiB when the input spills
    // anyway, it spills most of them, and the output is the same.
    let rows = input(60_000);
    let sort = |rows: &[Row], budget, smaller| {
        let n = rows.len() as u64;
        sort_spilling(rows, vec![0, 1, 2], false, budget, Some(n), None, smaller)
    };
    let (expected, _, own) = sort(&rows, 4 << 20, None);
    let (out, _, smaller) = sort(&rows, 4 << 20, Some(1 << 20));
    assert_eq!(out, expected);
    assert!(
        written(&smaller) > 2 * written(&own),
        "spilled {} bytes within 1 MiB, {} within 4 MiB",
        written(&smaller),
        written(&own)
    );
    // 25k rows fit in 4 MiB: the sorter keeps its budget and spills nothing, where a 1 MiB
    // sorter would spill.
    let few = &rows[..25_000];
    let (out, _, kept) = sort(few, 4 << 20, Some(1 << 20));
    let (_, _, small) = sort(few, 1 << 20, None);
    assert_eq!(written(&kept), 0);
    assert!(written(&small) > 0);
    let mut want = few.to_vec();
    want.sort_by(full_order);
    assert!(out == want, "the rows differ");
}

#[test]
fn uncompressed_runs_leave_room_on_disk_for_the_compressed_runs_after_them() {
    // The rows take about three budgets while sorted, so the plan spills several runs. For
    // disk budgets from a little more than the compressed runs take to what uncompressed
    // runs take, whichever runs go out uncompressed, the spill files never take more than
    // the disk budget at once.
    let rows = input(120_000);
    let n = rows.len() as u64;
    let budget = 4 << 20;
    let sort = |disk| sort_spilling(&rows, vec![0, 1, 2], false, budget, Some(n), disk, None);
    let (expected, _, compressed) = sort(None);
    let (_, _, raw) = sort(Some(1 << 30));
    let (c, r) = (compressed.peak_bytes(), raw.peak_bytes());
    assert!(c * 2 < r, "compressed peak {c}, uncompressed {r}");
    for disk in [c * 3 / 2, c * 2, (c + r) / 2, r * 3 / 4, r] {
        let (out, _, stats) = sort(Some(disk));
        assert_eq!(out, expected, "disk budget {disk}");
        assert!(
            stats.peak_bytes() <= disk,
            "disk budget {disk}: spill files took {} at once (compressed {c}, raw {r})",
            stats.peak_bytes()
        );
    }
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

/// Where the input ends relative to the run spilled in the background.
#[derive(Clone, Copy, Debug)]
enum EndAt {
    /// Right after the last push.
    Now,
    /// Once the spill has written its first bytes (it is usually still writing).
    SpillWriting,
    /// Once the spill has written its whole run (not yet joined by the sorter).
    SpillDone,
}

struct Case {
    budget: usize,
    batch_size: usize,
    distinct: bool,
    keys: Vec<usize>,
    expected_rows: Option<u64>,
    disk_budget_bytes: Option<u64>,
    spilling_budget_bytes: Option<usize>,
    end_at: EndAt,
}

/// Sorts `rows` under `case`; returns the output rows, the group flags and whether the input
/// ended while a spill was in flight.
fn sort_case(rows: &[Row], case: &Case) -> (Vec<Row>, Vec<bool>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let spill = SpillDir::new(dir.path());
    let config = SortConfig {
        schema: schema(),
        keys: case.keys.clone(),
        options: vec![],
        budget_bytes: case.budget,
        batch_size: case.batch_size,
        spill: spill.clone(),
        combiner: None,
        distinct: case.distinct,
        on_duplicates: None,
        expected_rows: case.expected_rows,
        disk_budget_bytes: case.disk_budget_bytes,
        spilling_budget_bytes: case.spilling_budget_bytes,
    };
    let mut sorter = ExternalSorter::new(config, Arc::default()).unwrap();
    for b in batches(rows) {
        sorter.push(b).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let spilling = sorter.spilling();
    match case.end_at {
        EndAt::Now => {}
        EndAt::SpillWriting => {
            let before = spill.stats.written_bytes.load(Ordering::Relaxed);
            while sorter.spilling()
                && !sorter.spill_done()
                && spill.stats.written_bytes.load(Ordering::Relaxed) == before
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the spill never wrote"
                );
                std::thread::yield_now();
            }
        }
        EndAt::SpillDone => {
            while sorter.spilling() && !sorter.spill_done() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the spill never ended"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
    let mut out = Vec::new();
    let mut flags = Vec::new();
    for r in sorter.finish_grouped().unwrap() {
        let (b, f) = r.unwrap();
        assert_eq!(b.num_rows(), f.len());
        out.extend(rows_of(&b));
        flags.extend(f);
    }
    (out, flags, spilling)
}

fn full_order(a: &Row, b: &Row) -> std::cmp::Ordering {
    key2(a).cmp(&key2(b)).then(a.2.total_cmp(&b.2))
}

/// One column of a sort key, ordered as the sorter orders it (ascending, nulls first).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KeyPart {
    K(Option<String>),
    N(i64),
    /// Non-negative values: their bits order as the values do.
    V(u64),
}

fn sort_key(keys: &[usize], r: &Row) -> Vec<KeyPart> {
    keys.iter()
        .map(|&k| match k {
            0 => KeyPart::K(r.0.clone()),
            1 => KeyPart::N(r.1),
            _ => KeyPart::V(r.2.to_bits()),
        })
        .collect()
}

/// Checks the sorter's output against an in-memory sort of `rows`: the same multiset (every
/// row exactly as often as in the input, or once each with `distinct`), ascending by the
/// keys, group flags exact.
fn assert_sorted_exactly(rows: &[Row], case: &Case, out: &[Row], flags: &[bool]) {
    let what = format!(
        "budget {} (spilling {:?}), batch {}, distinct {}, keys {:?}, expected {:?}, disk {:?}, \
         end {:?}, {} rows",
        case.budget,
        case.spilling_budget_bytes,
        case.batch_size,
        case.distinct,
        case.keys,
        case.expected_rows,
        case.disk_budget_bytes,
        case.end_at,
        rows.len()
    );
    let mut want = rows.to_vec();
    want.sort_by(full_order);
    if case.distinct {
        want.dedup();
    }
    let mut got = out.to_vec();
    got.sort_by(full_order);
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} rows out, {} expected",
        got.len(),
        want.len()
    );
    assert!(got == want, "{what}: the rows differ");
    let key = |r: &Row| sort_key(&case.keys, r);
    for i in 1..out.len() {
        assert!(key(&out[i - 1]) <= key(&out[i]), "{what}: unsorted at {i}");
        assert_eq!(
            flags[i],
            key(&out[i - 1]) == key(&out[i]),
            "{what}: flag {i}"
        );
    }
}

#[test]
fn a_run_spilled_completely_before_the_input_ends_is_merged_once() {
    // The last run spilled in the background has finished writing when the input ends:
    // its file must be one source of the merge, not two (rows were emitted twice).
    let rows = input(60_000);
    for (distinct, keys) in [(false, vec![0, 1]), (true, vec![0, 1, 2])] {
        for end_at in [EndAt::SpillDone, EndAt::SpillWriting] {
            let case = Case {
                budget: 4 << 20,
                batch_size: 64,
                distinct,
                keys: keys.clone(),
                expected_rows: None,
                disk_budget_bytes: None,
                spilling_budget_bytes: None,
                end_at,
            };
            let (out, flags, spilling) = sort_case(&rows, &case);
            assert!(spilling, "the input ends while a run is being spilled");
            assert_sorted_exactly(&rows, &case, &out, &flags);
        }
    }
}

/// Rows whose keys follow one of several distributions.
fn random_rows(rng: &mut impl FnMut() -> u64, n: usize) -> Vec<Row> {
    let shape = rng() % 5;
    let cardinality = [1, 3, 50, 5_000, u64::MAX][(rng() % 5) as usize];
    (0..n)
        .map(|i| {
            let k = rng() % cardinality;
            let key = match shape {
                // All null or all equal keys.
                0 => None,
                1 => Some("same".to_string()),
                // Long keys past the inline prefix, some null.
                2 if k.is_multiple_of(7) => None,
                2 => Some(format!("{k:0>48}")),
                // Already sorted input.
                3 => Some(format!("{i:0>12}")),
                _ => Some(format!("k{k}")),
            };
            (key, (rng() % 16) as i64, (rng() % 3) as f64)
        })
        .collect()
}

#[test]
fn random_budgets_sizes_and_timings_keep_every_row_exactly_once() {
    // Hundreds of sorts with random budgets, batch sizes, row counts, key distributions,
    // expected row counts (none, exact, low, high), disk budgets and points at which the
    // input ends relative to a background spill; each output is compared with an in-memory
    // sort. Seeded: a failure names its case and repeats. MINION_SORT_SOAK_ITERATIONS
    // raises the count.
    let iterations: usize = std::env::var("MINION_SORT_SOAK_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rng = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut spilled = 0;
    for _ in 0..iterations {
        let n = 500 + (rng() % 12_000) as usize;
        let rows = random_rows(&mut rng, n);
        let n64 = n as u64;
        let distinct = rng() % 3 == 0;
        let keys = if distinct {
            vec![0, 1, 2]
        } else {
            [vec![0], vec![0, 1], vec![1, 0]][(rng() % 3) as usize].clone()
        };
        let case = Case {
            budget: [96 << 10, 256 << 10, 512 << 10, 1 << 20, 3 << 20][(rng() % 5) as usize],
            batch_size: [16, 64, 256][(rng() % 3) as usize],
            distinct,
            keys,
            expected_rows: [None, Some(n64), Some(n64 / 2), Some(n64 * 2)][(rng() % 4) as usize],
            disk_budget_bytes: [None, Some(1 << 30), Some(64 << 10)][(rng() % 3) as usize],
            spilling_budget_bytes: [None, Some(256 << 10), Some(1 << 20)][(rng() % 3) as usize],
            end_at: [EndAt::Now, EndAt::SpillWriting, EndAt::SpillDone][(rng() % 3) as usize],
        };
        let (out, flags, spilling) = sort_case(&rows, &case);
        spilled += usize::from(spilling);
        assert_sorted_exactly(&rows, &case, &out, &flags);
    }
    assert!(
        spilled * 4 > iterations,
        "only {spilled} of {iterations} sorts ended while a run was being spilled"
    );
}
