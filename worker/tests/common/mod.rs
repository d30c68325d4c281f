//! Small builders shared by the worker's integration tests: schemas, segments written as
//! Parquet under a temporary table directory, subtask specs, and readers of the outputs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::concat_batches;
use minion_contract::*;
use minion_worker::table::arrow_schema;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn col(name: &str, data_type: ColumnType, role: ColumnRole) -> Column {
    Column {
        name: name.into(),
        data_type,
        role,
        nullable: true,
    }
}

pub fn dim(name: &str, t: ColumnType) -> Column {
    col(name, t, ColumnRole::Dimension)
}
pub fn metric(name: &str, t: ColumnType) -> Column {
    col(name, t, ColumnRole::Metric)
}
pub fn time(name: &str, t: ColumnType) -> Column {
    col(name, t, ColumnRole::DateTime)
}

pub fn schema(columns: Vec<Column>, time_column: &str, unit: TimeUnit) -> TableSchema {
    TableSchema {
        columns,
        time_column: time_column.into(),
        time_unit: unit,
        time_format: None,
        primary_key: vec![],
        comparison_column: None,
        partitioning: None,
        sorted_column: None,
        bloom_filter_columns: vec![],
    }
}

/// The `(d, dim2, ts millis, m LONG)` table most scenarios use.
pub fn events_schema() -> TableSchema {
    schema(
        vec![
            dim("d", ColumnType::String),
            dim("e", ColumnType::String),
            time("ts", ColumnType::Long),
            metric("m", ColumnType::Long),
        ],
        "ts",
        TimeUnit::Milliseconds,
    )
}

/// Builds a batch of the table's schema from columns.
pub fn batch(schema: &TableSchema, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(arrow_schema(schema), columns).unwrap()
}

/// Writes `batches` as one Parquet segment at `<table dir>/<rel>` and describes it.
pub fn write_segment(dir: &Path, rel: &str, batches: &[RecordBatch]) -> SegmentRef {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    let mut w = ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    let mut rows = 0;
    for b in batches {
        rows += b.num_rows() as u64;
        w.write(b).unwrap();
    }
    w.close().unwrap();
    SegmentRef {
        path: rel.into(),
        rows,
        bytes: std::fs::metadata(&path).unwrap().len(),
        min_time_ms: None,
        max_time_ms: None,
        partition: None,
        tags: BTreeMap::new(),
    }
}

pub fn table(dir: &Path, schema: TableSchema) -> TableLocation {
    TableLocation {
        name: "events".into(),
        uri: format!("file://{}", dir.display()),
        schema,
    }
}

pub fn spec(
    dir: &Path,
    schema: TableSchema,
    inputs: Vec<SegmentRef>,
    processing: Processing,
) -> SubtaskSpec {
    let t = table(dir, schema);
    SubtaskSpec {
        api_version: CONTRACT_VERSION.into(),
        task_type: TaskType::MergeRollupTask,
        kind: Default::default(),
        namespace: "default".into(),
        task_run: "run-1".into(),
        subtask: 0,
        attempt: 1,
        source: t.clone(),
        destination: t,
        inputs,
        input_files: vec![],
        context_segments: vec![],
        window: None,
        processing,
        output: OutputSpec {
            staging_prefix: staging_prefix("run-1", 0, 1),
            segment_name_prefix: None,
            segment_name_postfix: None,
            tags: BTreeMap::new(),
            segment_per_input_file: false,
        },
        memory_budget_bytes: 64 << 20,
    }
}

pub fn processing(merge_type: MergeType) -> Processing {
    Processing {
        merge_type,
        sort: true,
        max_records_per_segment: DEFAULT_MAX_RECORDS_PER_SEGMENT,
        skip_file_if_fail_to_init_reader: true,
        ..Processing::default()
    }
}

/// Reads an output segment back.
pub fn read_segment(dir: &Path, seg: &SegmentRef) -> RecordBatch {
    let file = std::fs::File::open(dir.join(&seg.path)).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches.first().map(|b| b.schema()).unwrap();
    concat_batches(&schema, &batches).unwrap()
}

/// All output rows, in output order, as one batch.
pub fn read_all(dir: &Path, manifest: &ResultManifest, schema: &TableSchema) -> RecordBatch {
    let batches: Vec<RecordBatch> = manifest
        .outputs
        .iter()
        .map(|s| read_segment(dir, s))
        .collect();
    concat_batches(&arrow_schema(schema), &batches).unwrap()
}

/// Rows rendered as strings (`null` for nulls), for readable assertions.
pub fn rows(batch: &RecordBatch) -> Vec<Vec<String>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("null");
    // Offset time zones format without the chrono-tz feature.
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            arrow::datatypes::DataType::Timestamp(unit, Some(_)) => {
                let dt = arrow::datatypes::DataType::Timestamp(*unit, Some("+00:00".into()));
                arrow::compute::cast(c, &dt).unwrap()
            }
            _ => c.clone(),
        })
        .collect();
    let formatters: Vec<_> = columns
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect())
        .collect()
}

pub fn strs(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

pub async fn run(spec: &SubtaskSpec) -> Result<ResultManifest, minion_worker::WorkerError> {
    minion_worker::run_subtask(spec, &minion_worker::RunOptions::default()).await
}

pub fn arc<A: arrow::array::Array + 'static>(a: A) -> ArrayRef {
    Arc::new(a)
}
