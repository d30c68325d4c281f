//! Fixtures for the catalog tests: an event table (`ts` LONG millis, `clicks` LONG metric),
//! small Parquet segments written with arrow, and totals read the way any Delta reader would
//! (deltalake's snapshot file list + the Parquet reader), independent of our listing code.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch};
use arrow::compute::concat_batches;
use minion_contract::{Column, ColumnRole, ColumnType, SegmentRef, TableSchema, TimeUnit};
use minion_operator::catalog::arrow_schema;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn event_schema() -> TableSchema {
    TableSchema {
        columns: vec![
            Column {
                name: "ts".into(),
                data_type: ColumnType::Long,
                role: ColumnRole::DateTime,
                nullable: false,
            },
            Column {
                name: "clicks".into(),
                data_type: ColumnType::Long,
                role: ColumnRole::Metric,
                nullable: true,
            },
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

pub fn uri_of(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

pub fn batch(rows: &[(i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        arrow_schema(&event_schema()),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap()
}

/// Writes `batch` to `<root>/<rel>` and returns its segment reference (no tags).
pub fn write_batch(root: &Path, rel: &str, batch: &RecordBatch) -> SegmentRef {
    let full = root.join(rel);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    let mut writer =
        ArrowWriter::try_new(File::create(&full).unwrap(), batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let (min, max) = (arrow::compute::min(ts), arrow::compute::max(ts));
    SegmentRef {
        path: rel.to_string(),
        rows: batch.num_rows() as u64,
        bytes: std::fs::metadata(&full).unwrap().len(),
        min_time_ms: min,
        max_time_ms: max,
        partition: None,
        tags: BTreeMap::new(),
    }
}

/// Writes one segment of events.
pub fn write_segment(root: &Path, rel: &str, rows: &[(i64, i64)]) -> SegmentRef {
    write_batch(root, rel, &batch(rows))
}

pub fn read_file(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    concat_batches(&arrow_schema(&event_schema()), &batches).unwrap()
}

/// Concatenates the rows of `inputs` into one new segment at `out` (what a concat subtask does).
pub fn concat_segments(root: &Path, inputs: &[SegmentRef], out: &str) -> SegmentRef {
    let batches: Vec<RecordBatch> = inputs
        .iter()
        .map(|s| read_file(&root.join(&s.path)))
        .collect();
    let all = concat_batches(&arrow_schema(&event_schema()), &batches).unwrap();
    write_batch(root, out, &all)
}

/// `(count(*), sum(clicks))` of the table's latest version, read as an independent Delta
/// reader: deltalake's snapshot file list, then every live file through the Parquet reader.
pub async fn delta_totals(uri: &str) -> (u64, i64) {
    let url = url::Url::parse(uri).unwrap();
    let table = deltalake::open_table_with_storage_options(url, HashMap::new())
        .await
        .unwrap();
    let mut count = 0u64;
    let mut sum = 0i64;
    for file_uri in table.get_file_uris().unwrap() {
        let path = url::Url::parse(&file_uri)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| file_uri.clone().into());
        let b = read_file(&path);
        count += b.num_rows() as u64;
        let clicks = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        sum += (0..clicks.len())
            .filter(|i| clicks.is_valid(*i))
            .map(|i| clicks.value(i))
            .sum::<i64>();
    }
    (count, sum)
}

pub fn paths(segments: &[SegmentRef]) -> Vec<String> {
    let mut p: Vec<String> = segments.iter().map(|s| s.path.clone()).collect();
    p.sort();
    p
}
