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
