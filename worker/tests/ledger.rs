//! The row ledger end to end: every source row accounted for (outside the window, purged,
//! merged), the written rows checked against the merged ones for each merge type, at a size
//! that spills; and a sorter that emits a row twice fails the subtask for every merge type
//! instead of reporting success.

mod common;

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::Int64Type;
use common::*;
use minion_contract::*;
use minion_worker::{Fault, RunOptions, WorkerError};

const T0: i64 = 1_700_006_400_000;
const HOUR: i64 = 3_600_000;

/// One row: (d, e, ts, m).
type Row = (Option<String>, String, i64, Option<i64>);

/// `segments` segments of `per` rows over 24 hours, with repeated rows (dedup has copies to
/// drop), repeated dimensions (rollup has groups) and, with `nulls`, null metrics.
fn write_input(
    dir: &std::path::Path,
    segments: usize,
    per: usize,
    nulls: bool,
) -> (Vec<SegmentRef>, Vec<Row>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut r = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut all = Vec::new();
    let refs = (0..segments)
        .map(|s| {
            let rows: Vec<Row> = (0..per)
                .map(|_| {
                    let k = r() % 5_000;
                    let d = (k % 97 != 0).then(|| format!("user-{k}"));
                    let e = format!("e{}", r() % 7);
                    // Minutes only: equal rows are common.
                    let ts = T0 + (r() % (24 * 60)) as i64 * 60_000;
                    let m = (!nulls || r() % 10 != 0).then(|| (r() % 100) as i64);
                    (d, e, ts, m)
                })
                .collect();
            let b = to_batch(&rows);
            all.extend(rows);
            write_segment(dir, &format!("in/{s}.parquet"), &[b])
        })
        .collect();
    (refs, all)
}

/// The events table, sorted by `d`: concat sorts (and spills) too.
fn sorted_schema() -> TableSchema {
    let mut s = events_schema();
    s.sorted_column = Some("d".into());
    s
}

fn to_batch(rows: &[Row]) -> RecordBatch {
    batch(
        &events_schema(),
        vec![
            arc(StringArray::from(
                rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            )),
            arc(StringArray::from(
                rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            )),
            arc(Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            arc(Int64Array::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
        ],
    )
}

fn rows_of(b: &RecordBatch) -> Vec<Row> {
    let d = b.column(0).as_string::<i32>();
    let e = b.column(1).as_string::<i32>();
    let ts = b.column(2).as_primitive::<Int64Type>();
    let m = b.column(3).as_primitive::<Int64Type>();
    (0..b.num_rows())
        .map(|i| {
            (
                d.is_valid(i).then(|| d.value(i).to_string()),
                e.value(i).to_string(),
                ts.value(i),
                m.is_valid(i).then(|| m.value(i)),
            )
        })
        .collect()
}

fn options(budget: u64) -> RunOptions {
    RunOptions {
        memory_budget_bytes: Some(budget),
        ..RunOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_is_accounted_for_and_written_as_the_merge_type_says_while_spilling() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, all) = write_input(dir.path(), 12, 25_000, true);
    let window = TimeWindow::new(T0 + 2 * HOUR, T0 + 20 * HOUR);
    let in_window: Vec<&Row> = all.iter().filter(|r| window.contains(r.2)).collect();
    let purged = |r: &Row| r.1 == "e3";
    let merged: Vec<Row> = in_window
        .iter()
        .filter(|r| !purged(r))
        .map(|r| (*r).clone())
        .collect();
    let sum = |rows: &[Row]| rows.iter().filter_map(|r| r.3).sum::<i64>();

    for merge in [MergeType::Concat, MergeType::Dedup, MergeType::Rollup] {
        let mut p = processing(merge);
        p.purge_predicate = Some("e = 'e3'".into());
        let mut s = spec(dir.path(), sorted_schema(), inputs.clone(), p);
        s.window = Some(window);
        s.output.staging_prefix = staging_prefix(&format!("run-{merge:?}"), 0, 1);
        // 8 MiB: the 300,000 rows spill.
        let report = minion_worker::run_subtask_report(&s, &options(8 << 20))
            .await
            .unwrap();
        assert!(report.peak_spill_bytes > 0, "{merge:?}: the sort spilled");
        let m = report.manifest;
        let ledger = m.ledger.clone().expect("a Succeeded manifest has a ledger");
        assert_eq!(ledger.source_rows, all.len() as u64, "{merge:?}");
        assert_eq!(
            ledger.outside_window_rows,
            (all.len() - in_window.len()) as u64,
            "{merge:?}"
        );
        assert_eq!(
            ledger.purged_rows,
            (in_window.len() - merged.len()) as u64,
            "{merge:?}"
        );
        assert_eq!(ledger.merged.rows, merged.len() as u64, "{merge:?}");
        let totals = &ledger.merged.metrics["m"];
        assert_eq!(
            totals.sum,
            Total::Int(i128::from(sum(&merged))),
            "{merge:?}"
        );

        let mut out: Vec<Row> = m
            .outputs
            .iter()
            .flat_map(|o| rows_of(&read_segment(dir.path(), o)))
            .collect();
        assert_eq!(ledger.written.rows, out.len() as u64, "{merge:?}");
        out.sort();
        match merge {
            MergeType::Concat => {
                let mut want = merged.clone();
                want.sort();
                assert!(out == want, "concat: the rows differ");
                assert_eq!(ledger.written.hash, ledger.merged.hash);
            }
            MergeType::Dedup => {
                let mut want = merged.clone();
                want.sort();
                want.dedup();
                assert!(out == want, "dedup: the rows differ");
                assert!(ledger.duplicates.rows > 0, "the input has copies");
                assert_eq!(
                    ledger.written.rows + ledger.duplicates.rows,
                    ledger.merged.rows
                );
            }
            MergeType::Rollup => {
                let mut groups: BTreeMap<(Option<String>, String, i64), Option<i64>> =
                    BTreeMap::new();
                for r in &merged {
                    let g = groups.entry((r.0.clone(), r.1.clone(), r.2)).or_default();
                    if let Some(v) = r.3 {
                        *g = Some(g.unwrap_or(0) + v);
                    }
                }
                let want: Vec<Row> = groups
                    .into_iter()
                    .map(|((d, e, ts), m)| (d, e, ts, m))
                    .collect();
                assert!(out == want, "rollup: the groups differ");
                assert_eq!(ledger.written.metrics["m"].sum, totals.sum);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sorter_emitting_a_row_twice_fails_the_subtask_for_every_merge_type() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, _) = write_input(dir.path(), 4, 20_000, false);
    for (merge, what) in [
        (MergeType::Concat, "concat wrote 80001 rows"),
        (MergeType::Dedup, "has the same key as the row before it"),
        (MergeType::Rollup, "metric m: sum"),
    ] {
        let mut s = spec(
            dir.path(),
            sorted_schema(),
            inputs.clone(),
            processing(merge),
        );
        s.output.staging_prefix = staging_prefix(&format!("faulty-{merge:?}"), 0, 1);
        let faulty = RunOptions {
            fault: Some(Fault::RepeatSortedRow),
            ..options(8 << 20)
        };
        let err = minion_worker::run_subtask(&s, &faulty).await.unwrap_err();
        assert!(
            matches!(err, WorkerError::InvariantViolated(_)),
            "{merge:?}: {err}"
        );
        assert!(err.to_string().contains(what), "{merge:?}: {err}");
        assert_eq!(
            err.exit_code(),
            EXIT_TRANSIENT,
            "a bug may not repeat: retried"
        );
        // The failure manifest says why; nothing claims success.
        let manifest: ResultManifest =
            serde_json::from_slice(&std::fs::read(dir.path().join(s.manifest_path())).unwrap())
                .unwrap();
        assert_eq!(manifest.outcome, Outcome::Failed);
        assert_eq!(manifest.reason, Some(FailureReason::InvariantViolated));
        assert!(manifest.ledger.is_none());

        // The same subtask without the fault succeeds.
        s.output.staging_prefix = staging_prefix(&format!("sound-{merge:?}"), 0, 1);
        let m = minion_worker::run_subtask(&s, &options(8 << 20))
            .await
            .unwrap();
        assert!(m.ledger.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_dropping_a_row_that_is_not_a_copy_fails_the_subtask() {
    // The counts and hashes balance (the row is reported as dropped), the output is still
    // strictly increasing: only the check that every dropped row matches a written one sees it.
    let dir = tempfile::tempdir().unwrap();
    let (inputs, _) = write_input(dir.path(), 4, 20_000, false);
    let s = spec(
        dir.path(),
        sorted_schema(),
        inputs,
        processing(MergeType::Dedup),
    );
    let faulty = RunOptions {
        fault: Some(Fault::DropRowAsCopy),
        ..options(8 << 20)
    };
    let err = minion_worker::run_subtask(&s, &faulty).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("dedup dropped rows that match no written row"),
        "{err}"
    );
}
