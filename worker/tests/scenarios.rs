//! Scenarios 5, 7, 8, 9 and 15 of docs/semantics.md, run end to end
//! through `run_subtask` on a local table.

mod common;

use arrow::array::{Int64Array, StringArray};
use common::*;
use minion_contract::*;

const H10: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000 + 10 * 3_600_000;
const MIN: i64 = 60_000;

fn events(
    d: Vec<&str>,
    e: Vec<&str>,
    ts: Vec<i64>,
    m: Vec<Option<i64>>,
) -> arrow::array::RecordBatch {
    batch(
        &events_schema(),
        vec![
            arc(StringArray::from(d)),
            arc(StringArray::from(e)),
            arc(Int64Array::from(ts)),
            arc(Int64Array::from(m)),
        ],
    )
}

#[tokio::test]
async fn window_keeps_rows_at_start_and_end_minus_one_but_not_at_end() {
    let dir = tempfile::tempdir().unwrap();
    let (start, end) = (H10, H10 + 3_600_000);
    let seg = write_segment(
        dir.path(),
        "in/a.parquet",
        &[events(
            vec!["a", "b", "c"],
            vec!["x", "x", "x"],
            vec![start, end - 1, end],
            vec![Some(1), Some(2), Some(3)],
        )],
    );
    let mut s = spec(
        dir.path(),
        events_schema(),
        vec![seg],
        processing(MergeType::Concat),
    );
    s.window = Some(TimeWindow::new(start, end));
    let m = run(&s).await.unwrap();
    assert_eq!((m.input_rows, m.output_rows), (3, 2));
    let out = read_all(dir.path(), &m, &events_schema());
    let ts: Vec<String> = rows(&out).into_iter().map(|r| r[2].clone()).collect();
    assert_eq!(ts, vec![start.to_string(), (end - 1).to_string()]);
    assert_eq!(m.outputs[0].min_time_ms, Some(start));
    assert_eq!(m.outputs[0].max_time_ms, Some(end - 1));
}

#[tokio::test]
async fn rollup_with_one_hour_rounding_sums_per_dimension_and_hour() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_segment(
        dir.path(),
        "in/a.parquet",
        &[events(
            vec!["a", "a", "a"],
            vec!["x", "x", "y"],
            vec![H10 + 5 * MIN, H10 + 40 * MIN, H10 + 10 * MIN],
            vec![Some(1), Some(2), Some(5)],
        )],
    );
    let mut p = processing(MergeType::Rollup);
    p.round_bucket_ms = Some(3_600_000);
    let m = run(&spec(dir.path(), events_schema(), vec![seg], p))
        .await
        .unwrap();
    let out = read_all(dir.path(), &m, &events_schema());
    let h = H10.to_string();
    assert_eq!(
        rows(&out),
        strs(&[&["a", "x", &h, "3"], &["a", "y", &h, "5"]])
    );
    assert_eq!((m.input_rows, m.output_rows), (3, 2));
}

#[tokio::test]
async fn dedup_collapses_identical_rows_and_keeps_a_row_differing_in_a_metric() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_segment(
        dir.path(),
        "in/a.parquet",
        &[events(
            vec!["a", "a", "a"],
            vec!["x", "x", "x"],
            vec![H10, H10, H10],
            vec![Some(1), Some(1), Some(2)],
        )],
    );
    let m = run(&spec(
        dir.path(),
        events_schema(),
        vec![seg],
        processing(MergeType::Dedup),
    ))
    .await
    .unwrap();
    assert_eq!(m.output_rows, 2);
    let out = read_all(dir.path(), &m, &events_schema());
    let h = H10.to_string();
    assert_eq!(
        rows(&out),
        strs(&[&["a", "x", &h, "1"], &["a", "x", &h, "2"]])
    );
}

#[tokio::test]
async fn output_is_split_by_max_records_like_twelve_million_into_five_five_two() {
    let dir = tempfile::tempdir().unwrap();
    let n = 120_000i64;
    let segs: Vec<SegmentRef> = (0..3)
        .map(|part| {
            let ids: Vec<i64> = (part * n / 3..(part + 1) * n / 3).collect();
            let b = events(
                ids.iter().map(|_| "a").collect(),
                ids.iter().map(|_| "x").collect(),
                ids.iter().map(|i| H10 + i).collect(),
                ids.iter().map(|&i| Some(i)).collect(),
            );
            write_segment(dir.path(), &format!("in/{part}.parquet"), &[b])
        })
        .collect();
    let mut p = processing(MergeType::Concat);
    p.max_records_per_segment = 50_000;
    let mut schema = events_schema();
    schema.sorted_column = Some("ts".into());
    let mut s = spec(dir.path(), schema, segs, p);
    s.output.segment_name_prefix = Some("pre".into());
    s.output.segment_name_postfix = Some("post".into());
    s.output.tags.insert("mergeLevel".into(), "1hour".into());
    let m = run(&s).await.unwrap();
    let sizes: Vec<u64> = m.outputs.iter().map(|o| o.rows).collect();
    assert_eq!(sizes, vec![50_000, 50_000, 20_000]);
    let first = &m.outputs[0];
    assert_eq!(
        first.path,
        format!(
            "{}/pre_{}_{}_post_0.parquet",
            s.output.staging_prefix,
            H10,
            H10 + 49_999
        )
    );
    assert_eq!(first.tags["mergeLevel"], "1hour");
    assert_eq!(first.tags["minTimeMs"], H10.to_string());
    assert_eq!(first.tags["maxTimeMs"], (H10 + 49_999).to_string());
    assert!(first.bytes > 0);
    assert_eq!(read_segment(dir.path(), first).num_rows(), 50_000);
    // The manifest sits next to the outputs and says the same.
    let manifest: ResultManifest =
        serde_json::from_slice(&std::fs::read(dir.path().join(s.manifest_path())).unwrap())
            .unwrap();
    assert_eq!(manifest, m);
    assert_eq!(manifest.outcome, Outcome::Succeeded);
}

#[tokio::test]
async fn rollup_with_min_aggregation_takes_the_minimum_and_sums_unconfigured_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema(
        vec![
            dim("d", ColumnType::String),
            time("ts", ColumnType::Long),
            metric("m", ColumnType::Long),
            metric("n", ColumnType::Double),
        ],
        "ts",
        TimeUnit::Milliseconds,
    );
    let b = batch(
        &schema,
        vec![
            arc(StringArray::from(vec!["a", "a", "a"])),
            arc(Int64Array::from(vec![H10, H10, H10])),
            arc(Int64Array::from(vec![7, 3, 5])),
            arc(arrow::array::Float64Array::from(vec![1.5, 2.0, 0.25])),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[b]);
    let mut p = processing(MergeType::Rollup);
    p.aggregation_types.insert("m".into(), AggregationType::Min);
    let m = run(&spec(dir.path(), schema.clone(), vec![seg], p))
        .await
        .unwrap();
    let out = read_all(dir.path(), &m, &schema);
    assert_eq!(rows(&out), strs(&[&["a", &H10.to_string(), "3", "3.75"]]));
}
