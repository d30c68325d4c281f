//! Upsert validity: the latest version of each primary key across segments is valid, the
//! rest invalid; validity files next to segments; refresh drops invalid rows.

mod common;

use arrow::array::{Int64Array, StringArray};
use common::*;
use minion_contract::*;
use minion_worker::{RunOptions, compute_validity, read_validity};

fn schema() -> TableSchema {
    let mut s = common::schema(
        vec![
            dim("key", ColumnType::String),
            time("ts", ColumnType::Long),
            metric("version", ColumnType::Long),
            metric("v", ColumnType::Long),
        ],
        "ts",
        TimeUnit::Milliseconds,
    );
    s.primary_key = vec!["key".into()];
    s.comparison_column = Some("version".into());
    s
}

fn seg(
    dir: &std::path::Path,
    name: &str,
    keys: Vec<&str>,
    versions: Vec<Option<i64>>,
) -> SegmentRef {
    let n = keys.len();
    let b = batch(
        &schema(),
        vec![
            arc(StringArray::from(keys)),
            arc(Int64Array::from(vec![1_000; n])),
            arc(Int64Array::from(versions)),
            arc(Int64Array::from_iter_values(0..n as i64)),
        ],
    );
    write_segment(dir, &format!("data/{name}.parquet"), &[b])
}

fn segments(dir: &std::path::Path) -> Vec<SegmentRef> {
    vec![
        seg(
            dir,
            "s0",
            vec!["k1", "k2", "k3", "k4"],
            vec![Some(1), Some(1), Some(5), None],
        ),
        seg(
            dir,
            "s1",
            vec!["k1", "k2", "k4"],
            vec![Some(3), Some(0), Some(0)],
        ),
        seg(dir, "s2", vec!["k3"], vec![Some(5)]),
    ]
}

#[tokio::test]
async fn latest_version_wins_ties_go_to_the_later_segment_and_files_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let segs = segments(dir.path());
    let t = table(dir.path(), schema());
    let counts = compute_validity(&t, &segs, &RunOptions::default())
        .await
        .unwrap();
    let got: Vec<(u64, u64)> = counts.iter().map(|c| (c.rows, c.invalid)).collect();
    // s0: k1 (older), k3 (tie, s2 later), k4 (null loses) invalid; s1: k2 (older) invalid.
    assert_eq!(got, vec![(4, 3), (3, 1), (1, 0)]);
    let v = read_validity(&t.uri, &segs[0].path).await.unwrap();
    assert_eq!(
        v.valid.iter().collect::<Vec<_>>(),
        vec![false, true, false, false]
    );
    assert!(dir.path().join("data/s1.parquet.validity").exists());
}

#[tokio::test]
async fn refresh_drops_rows_invalidated_by_newer_versions() {
    let dir = tempfile::tempdir().unwrap();
    let segs = segments(dir.path());
    let mut p = processing(MergeType::Concat);
    p.drop_invalid_upsert_rows = true;
    let mut s = spec(dir.path(), schema(), segs[..2].to_vec(), p);
    s.task_type = TaskType::SegmentRefreshTask;
    s.destination.schema.sorted_column = Some("key".into());
    s.source.schema.sorted_column = Some("key".into());
    s.context_segments = segs[2..].to_vec();
    let m = run(&s).await.unwrap();
    assert_eq!((m.input_rows, m.output_rows), (7, 3));
    let out = rows(&read_all(dir.path(), &m, &schema()));
    let kv: Vec<(String, String)> = out
        .into_iter()
        .map(|r| (r[0].clone(), r[2].clone()))
        .collect();
    assert_eq!(
        kv,
        vec![
            ("k1".into(), "3".into()),
            ("k2".into(), "1".into()),
            ("k4".into(), "0".into())
        ]
    );
}

/// A validity subtask over more rows than its memory budget holds: the sorter spills, and
/// every count and bit is still the latest-version-wins answer.
#[tokio::test]
async fn a_validity_subtask_spills_under_a_small_budget_and_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    const ROWS: usize = 120_000;
    // Three segments over overlapping keys: segment i holds keys `k{j}` for j ≡ i (mod 2) or
    // every third key, with versions that make some older rows win.
    let mut segs = Vec::new();
    let mut all: Vec<(usize, usize, String, i64)> = Vec::new();
    for si in 0..3usize {
        let keys: Vec<String> = (0..ROWS)
            .map(|j| format!("k{:07}", (j * (si + 1)) % (ROWS * 2)))
            .collect();
        let versions: Vec<Option<i64>> =
            (0..ROWS).map(|j| Some(((j * 7 + si) % 5) as i64)).collect();
        for (ri, k) in keys.iter().enumerate() {
            all.push((si, ri, k.clone(), versions[ri].unwrap()));
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        segs.push(seg(dir.path(), &format!("big{si}"), refs, versions));
    }
    // Expected: the largest version wins; ties go to the later segment, then the later row.
    let mut best: std::collections::HashMap<String, (i64, usize, usize)> = Default::default();
    for (si, ri, k, v) in &all {
        let cand = (*v, *si, *ri);
        let e = best.entry(k.clone()).or_insert(cand);
        if cand > *e {
            *e = cand;
        }
    }
    let mut invalid = [0u64; 3];
    for (si, ri, k, v) in &all {
        if best[k] != (*v, *si, *ri) {
            invalid[*si] += 1;
        }
    }
    let mut s = spec(
        dir.path(),
        schema(),
        segs.clone(),
        processing(MergeType::Concat),
    );
    s.task_type = TaskType::SegmentRefreshTask;
    s.kind = SubtaskKind::Validity;
    s.output.staging_prefix = validity_prefix("default/run-1", 1);
    s.memory_budget_bytes = 8 << 20;
    let report = minion_worker::run_subtask_report(&s, &RunOptions::default())
        .await
        .unwrap();
    assert!(report.peak_spill_bytes > 0, "the sorter never spilled");
    let m = report.manifest;
    assert_eq!(m.peak_spill_bytes, Some(report.peak_spill_bytes));
    assert!(m.outputs.is_empty() && m.ledger.is_none());
    assert_eq!(m.input_rows, 3 * ROWS as u64);
    let got: Vec<(String, u64, u64)> = m
        .validity
        .iter()
        .map(|c| (c.path.clone(), c.rows, c.invalid))
        .collect();
    let want: Vec<(String, u64, u64)> = segs
        .iter()
        .zip(invalid)
        .map(|(s, i)| (s.path.clone(), ROWS as u64, i))
        .collect();
    assert_eq!(got, want);
    for seg in &segs {
        let v = read_validity(&s.destination.uri, &seg.path).await.unwrap();
        assert_eq!(v.rows(), ROWS as u64);
    }
    // The manifest is where the operator looks for it.
    assert!(dir.path().join(s.manifest_path()).exists());
}
