//! Processing options end to end: time units, nulls, every aggregation, erasing,
//! time and value partitioning, splitting by size, and the purge predicate.

mod common;

use arrow::array::{Float32Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use common::*;
use minion_contract::*;

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_700_006_400_000; // 2023-11-15T00:00:00Z

fn one_col_time_schema(t: ColumnType, unit: TimeUnit) -> TableSchema {
    schema(
        vec![
            dim("d", ColumnType::String),
            time("ts", t),
            metric("m", ColumnType::Long),
        ],
        "ts",
        unit,
    )
}

async fn window_and_round(
    t: ColumnType,
    unit: TimeUnit,
    ts: arrow::array::ArrayRef,
    expect_ts: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let schema = one_col_time_schema(t, unit);
    let b = batch(
        &schema,
        vec![
            arc(StringArray::from(vec!["a", "a", "a", "b"])),
            ts,
            arc(Int64Array::from(vec![1, 2, 4, 8])),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[b]);
    let mut p = processing(MergeType::Rollup);
    p.round_bucket_ms = Some(3_600_000);
    let mut s = spec(dir.path(), schema.clone(), vec![seg], p);
    s.window = Some(TimeWindow::new(T0, T0 + DAY_MS));
    let m = run(&s).await.unwrap();
    let out = read_all(dir.path(), &m, &schema);
    let got: Vec<Vec<String>> = rows(&out);
    let want: Vec<Vec<String>> = vec![
        vec!["a".into(), expect_ts[0].into(), "3".into()],
        vec!["b".into(), expect_ts[1].into(), "8".into()],
    ];
    assert_eq!(got, want, "{t:?} {unit:?}");
    assert_eq!(m.outputs[0].min_time_ms, Some(T0));
    assert_eq!(m.outputs[0].max_time_ms, Some(T0 + 3_600_000));
}

#[tokio::test]
async fn seconds_millis_micros_and_timestamp_columns_window_and_round_in_their_unit() {
    // Rows: two in the first hour, one before the window, one in the second hour.
    let s = T0 / 1000;
    window_and_round(
        ColumnType::Long,
        TimeUnit::Seconds,
        arc(Int64Array::from(vec![s + 5, s + 3599, s - 1, s + 3600])),
        &[&s.to_string(), &(s + 3600).to_string()],
    )
    .await;
    window_and_round(
        ColumnType::Int,
        TimeUnit::Seconds,
        arc(Int32Array::from(vec![
            (s + 5) as i32,
            (s + 3599) as i32,
            (s - 1) as i32,
            (s + 3600) as i32,
        ])),
        &[&s.to_string(), &(s + 3600).to_string()],
    )
    .await;
    window_and_round(
        ColumnType::Long,
        TimeUnit::Milliseconds,
        arc(Int64Array::from(vec![
            T0 + 5,
            T0 + 3_599_999,
            T0 - 1,
            T0 + 3_600_000,
        ])),
        &[&T0.to_string(), &(T0 + 3_600_000).to_string()],
    )
    .await;
    let us = T0 * 1000;
    window_and_round(
        ColumnType::Long,
        TimeUnit::Microseconds,
        arc(Int64Array::from(vec![
            us + 5,
            us + 3_599_999_999,
            us - 1,
            us + 3_600_000_000,
        ])),
        &[&us.to_string(), &(us + 3_600_000_000).to_string()],
    )
    .await;
    window_and_round(
        ColumnType::Timestamp,
        TimeUnit::Milliseconds,
        arc(TimestampMicrosecondArray::from(vec![
            us + 5,
            us + 3_599_999_999,
            us - 1,
            us + 3_600_000_000,
        ])
        .with_timezone("UTC")),
        &["2023-11-15T00:00:00Z", "2023-11-15T01:00:00Z"],
    )
    .await;
}

fn agg_schema() -> TableSchema {
    schema(
        vec![
            dim("d", ColumnType::String),
            time("ts", ColumnType::Long),
            metric("m", ColumnType::Long),
            metric("f", ColumnType::Float),
        ],
        "ts",
        TimeUnit::Milliseconds,
    )
}

async fn rollup_with(agg: AggregationType) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let schema = agg_schema();
    // Group a: values 5 @+30m, null @+10m, 2 @+50m, 9 @+20m. Group b: only nulls.
    let b = batch(
        &schema,
        vec![
            arc(StringArray::from(vec!["a", "a", "a", "a", "b", "b"])),
            arc(Int64Array::from(vec![
                T0 + 30 * 60_000,
                T0 + 10 * 60_000,
                T0 + 50 * 60_000,
                T0 + 20 * 60_000,
                T0,
                T0 + 1,
            ])),
            arc(Int64Array::from(vec![
                Some(5),
                None,
                Some(2),
                Some(9),
                None,
                None,
            ])),
            arc(Float32Array::from(vec![
                Some(0.5),
                Some(1.5),
                None,
                Some(-1.0),
                None,
                None,
            ])),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[b]);
    let mut p = processing(MergeType::Rollup);
    p.round_bucket_ms = Some(3_600_000);
    p.aggregation_types.insert("m".into(), agg);
    p.aggregation_types.insert("f".into(), agg);
    let m = run(&spec(dir.path(), schema.clone(), vec![seg], p))
        .await
        .unwrap();
    rows(&read_all(dir.path(), &m, &schema))
        .into_iter()
        .map(|r| vec![r[0].clone(), r[2].clone(), r[3].clone()])
        .collect()
}

#[tokio::test]
async fn every_aggregation_skips_nulls() {
    let cases: [(AggregationType, [&str; 4]); 6] = [
        (AggregationType::Sum, ["16", "1.0", "null", "null"]),
        (AggregationType::Min, ["2", "-1.0", "null", "null"]),
        (AggregationType::Max, ["9", "1.5", "null", "null"]),
        (AggregationType::Count, ["16", "1.0", "0", "0.0"]),
        (AggregationType::FirstWithTime, ["9", "1.5", "null", "null"]),
        (AggregationType::LastWithTime, ["2", "0.5", "null", "null"]),
    ];
    for (agg, [am, af, bm, bf]) in cases {
        assert_eq!(
            rollup_with(agg).await,
            strs(&[&["a", am, af], &["b", bm, bf]]),
            "{agg:?}"
        );
    }
}

#[tokio::test]
async fn null_dimensions_form_their_own_group_and_sort_first() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(
        &events_schema(),
        vec![
            arc(StringArray::from(vec![Some("a"), None, None, Some("a")])),
            arc(StringArray::from(vec![
                Some("x"),
                Some("x"),
                Some("x"),
                None,
            ])),
            arc(Int64Array::from(vec![T0, T0, T0, T0])),
            arc(Int64Array::from(vec![1, 2, 3, 4])),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[b]);
    let m = run(&spec(
        dir.path(),
        events_schema(),
        vec![seg],
        processing(MergeType::Rollup),
    ))
    .await
    .unwrap();
    let t = T0.to_string();
    assert_eq!(
        rows(&read_all(dir.path(), &m, &events_schema())),
        strs(&[
            &["null", "x", &t, "5"],
            &["a", "null", &t, "4"],
            &["a", "x", &t, "1"]
        ])
    );
}

#[tokio::test]
async fn erased_dimensions_collapse_rows_under_rollup() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(
        &events_schema(),
        vec![
            arc(StringArray::from(vec!["a", "a", "b"])),
            arc(StringArray::from(vec!["x", "y", "z"])),
            arc(Int64Array::from(vec![T0, T0, T0])),
            arc(Int64Array::from(vec![1, 2, 4])),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[b]);
    let mut p = processing(MergeType::Rollup);
    p.erase_dimension_values = vec!["e".into()];
    let m = run(&spec(dir.path(), events_schema(), vec![seg], p))
        .await
        .unwrap();
    let t = T0.to_string();
    assert_eq!(
        rows(&read_all(dir.path(), &m, &events_schema())),
        strs(&[&["a", "null", &t, "3"], &["b", "null", &t, "4"]])
    );
}

#[tokio::test]
async fn time_and_value_partitions_get_their_own_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut schema = events_schema();
    schema.columns[3].data_type = ColumnType::Long;
    schema.partitioning = Some(Partitioning {
        column: "m".into(),
        function: PartitionFunction::Modulo,
        num_partitions: 2,
    });
    let b = batch(
        &schema,
        vec![
            arc(StringArray::from(vec!["a", "b", "c", "d", "e"])),
            arc(StringArray::from(vec!["x"; 5])),
            arc(Int64Array::from(vec![
                T0,
                T0 + 1,
                T0 + DAY_MS,
                T0 + DAY_MS + 5,
                T0 + 7,
            ])),
            arc(Int64Array::from(vec![1, 2, 3, 4, 5])),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[b]);
    let mut p = processing(MergeType::Concat);
    p.time_partition_ms = Some(DAY_MS);
    p.value_partitioning = true;
    let m = run(&spec(dir.path(), schema.clone(), vec![seg], p))
        .await
        .unwrap();
    let mut got: Vec<(i64, Option<u32>, u64)> = m
        .outputs
        .iter()
        .map(|o| (o.min_time_ms.unwrap() / DAY_MS, o.partition, o.rows))
        .collect();
    got.sort();
    let d = T0 / DAY_MS;
    assert_eq!(
        got,
        vec![
            (d, Some(0), 1),
            (d, Some(1), 2),
            (d + 1, Some(0), 1),
            (d + 1, Some(1), 1)
        ]
    );
    for o in &m.outputs {
        assert_eq!(o.tags["partition"], o.partition.unwrap().to_string());
        let b = read_segment(dir.path(), o);
        let ms = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(
            ms.iter()
                .all(|v| (v.unwrap() % 2) as u32 == o.partition.unwrap())
        );
    }
}

#[tokio::test]
async fn desired_segment_size_cuts_segments_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000;
    let b = batch(
        &events_schema(),
        vec![
            arc(StringArray::from_iter_values(
                (0..n).map(|i| format!("user-{}", i * 7919 % 100_003)),
            )),
            arc(StringArray::from(vec!["x"; n])),
            arc(Int64Array::from_iter_values((0..n as i64).map(|i| T0 + i))),
            arc(Int64Array::from_iter_values(
                (0..n as i64).map(|i| i * 31 % 1000),
            )),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[b]);
    let mut p = processing(MergeType::Concat);
    p.desired_segment_size_bytes = Some(256 * 1024);
    let m = run(&spec(dir.path(), events_schema(), vec![seg], p))
        .await
        .unwrap();
    assert!(m.outputs.len() >= 3, "{} segments", m.outputs.len());
    assert_eq!(m.output_rows, n as u64);
    for o in &m.outputs[..m.outputs.len() - 1] {
        assert!(o.bytes < 3 * 256 * 1024, "{} bytes", o.bytes);
    }
}

#[tokio::test]
async fn purge_predicate_drops_matching_rows() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(
        &events_schema(),
        vec![
            arc(StringArray::from(vec![
                Some("alice"),
                Some("bob"),
                Some("carol"),
                None,
            ])),
            arc(StringArray::from(vec!["x", "y", "x", "x"])),
            arc(Int64Array::from(vec![T0, T0, T0, T0])),
            arc(Int64Array::from(vec![1, 2, 3, 4])),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[b]);
    let mut p = processing(MergeType::Concat);
    p.purge_predicate = Some("d IN ('alice', 'bob') AND NOT (e = 'y' AND m > 1) OR m >= 4".into());
    let m = run(&spec(dir.path(), events_schema(), vec![seg], p))
        .await
        .unwrap();
    let out = rows(&read_all(dir.path(), &m, &events_schema()));
    let d: Vec<&str> = out.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(d, vec!["bob", "carol"]);
}

#[tokio::test]
async fn concat_sorts_by_the_sorted_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut schema = events_schema();
    schema.sorted_column = Some("m".into());
    schema.bloom_filter_columns = vec!["d".into()];
    let mk = |m: Vec<i64>| {
        batch(
            &schema,
            vec![
                arc(StringArray::from(vec!["a"; m.len()])),
                arc(StringArray::from(vec!["x"; m.len()])),
                arc(Int64Array::from(vec![T0; m.len()])),
                arc(Int64Array::from(m)),
            ],
        )
    };
    let s1 = write_segment(dir.path(), "in/1.parquet", &[mk(vec![5, 1, 9])]);
    let s2 = write_segment(dir.path(), "in/2.parquet", &[mk(vec![3, 7])]);
    let m = run(&spec(
        dir.path(),
        schema.clone(),
        vec![s1, s2],
        processing(MergeType::Concat),
    ))
    .await
    .unwrap();
    let ms: Vec<String> = rows(&read_all(dir.path(), &m, &schema))
        .into_iter()
        .map(|r| r[3].clone())
        .collect();
    assert_eq!(ms, vec!["1", "3", "5", "7", "9"]);
    // The bloom filter is written for the configured column.
    let file = std::fs::File::open(dir.path().join(&m.outputs[0].path)).unwrap();
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    let rg = reader.metadata().row_group(0);
    assert!(rg.column(0).bloom_filter_offset().is_some());
    assert!(rg.column(1).bloom_filter_offset().is_none());
    assert!(
        reader.metadata().column_index().is_some() || rg.column(0).column_index_offset().is_some()
    );
}
