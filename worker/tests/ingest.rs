//! File ingestion: CSV, JSON lines and Parquet files of arbitrary layout coerced to the table
//! schema; bad files skipped or failing the subtask as configured; one segment per file in
//! sync mode.

mod common;

use std::path::Path;

use arrow::array::{Float64Array, Int32Array, StringArray};
use common::*;
use minion_contract::*;

fn schema() -> TableSchema {
    let mut s = common::schema(
        vec![
            dim("user", ColumnType::String),
            dim("country", ColumnType::String),
            time("ts", ColumnType::Long),
            metric("clicks", ColumnType::Long),
        ],
        "ts",
        TimeUnit::Milliseconds,
    );
    s.sorted_column = Some("ts".into());
    s
}

fn file(dir: &Path, name: &str, body: &[u8], format: FileFormat) -> InputFile {
    let path = dir.join("incoming").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, body).unwrap();
    InputFile {
        uri: format!("file://{}", path.display()),
        format,
        bytes: body.len() as u64,
        version: Some(format!("{}-1", body.len())),
    }
}

fn ingest_spec(dir: &Path, files: Vec<InputFile>) -> SubtaskSpec {
    let mut s = spec(
        &dir.join("table"),
        schema(),
        vec![],
        processing(MergeType::Concat),
    );
    s.task_type = TaskType::FileIngestionTask;
    s.input_files = files;
    s
}

fn parquet_file(dir: &Path) -> InputFile {
    // Another layout: columns reordered, `clicks` as DOUBLE, an extra column, no `country`.
    let s = common::schema(
        vec![
            metric("clicks", ColumnType::Double),
            dim("extra", ColumnType::String),
            time("ts", ColumnType::Int),
            dim("user", ColumnType::String),
        ],
        "ts",
        TimeUnit::Milliseconds,
    );
    let b = batch(
        &s,
        vec![
            arc(Float64Array::from(vec![7.0])),
            arc(StringArray::from(vec!["ignored"])),
            arc(Int32Array::from(vec![3000])),
            arc(StringArray::from(vec!["pq"])),
        ],
    );
    let seg = write_segment(&dir.join("incoming"), "c.parquet", &[b]);
    InputFile {
        uri: format!("file://{}/incoming/{}", dir.display(), seg.path),
        format: FileFormat::Parquet,
        bytes: seg.bytes,
        version: None,
    }
}

#[tokio::test]
async fn csv_json_and_parquet_files_are_coerced_to_the_table_schema() {
    let dir = tempfile::tempdir().unwrap();
    let csv = file(
        dir.path(),
        "a.csv",
        b"ts,user,clicks,unused\n1000,alice,3,zz\n2000,bob,,zz\n",
        FileFormat::Csv,
    );
    let json = file(
        dir.path(),
        "b.json",
        b"{\"user\":\"carol\",\"ts\":2500,\"clicks\":\"4\",\"country\":\"FR\",\"other\":1}\n{\"user\":\"dave\",\"ts\":4000}\n",
        FileFormat::Json,
    );
    let pq = parquet_file(dir.path());
    let s = ingest_spec(dir.path(), vec![csv.clone(), json.clone(), pq.clone()]);
    let m = run(&s).await.unwrap();
    assert_eq!(m.ingested_files, vec![csv.uri, json.uri, pq.uri]);
    assert!(m.skipped_files.is_empty());
    assert_eq!((m.input_rows, m.output_rows), (5, 5));
    assert_eq!(
        rows(&read_all(&dir.path().join("table"), &m, &schema())),
        strs(&[
            &["alice", "null", "1000", "3"],
            &["bob", "null", "2000", "null"],
            &["carol", "FR", "2500", "4"],
            &["pq", "null", "3000", "7"],
            &["dave", "null", "4000", "null"],
        ])
    );
}

#[tokio::test]
async fn bad_files_are_skipped_with_reasons_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let good = file(
        dir.path(),
        "a.csv",
        b"ts,user\n1000,alice\n",
        FileFormat::Csv,
    );
    let broken = file(dir.path(), "b.parquet", b"garbage", FileFormat::Parquet);
    let mistyped = file(
        dir.path(),
        "c.json",
        b"{\"ts\":\"yesterday\"}\n",
        FileFormat::Json,
    );
    let s = ingest_spec(
        dir.path(),
        vec![good.clone(), broken.clone(), mistyped.clone()],
    );
    let m = run(&s).await.unwrap();
    assert_eq!(m.ingested_files, vec![good.uri]);
    let skipped: Vec<&str> = m.skipped_files.iter().map(|f| f.uri.as_str()).collect();
    assert_eq!(skipped, vec![broken.uri.as_str(), mistyped.uri.as_str()]);
    assert!(
        m.skipped_files[0].reason.contains("corrupt input"),
        "{:?}",
        m.skipped_files
    );
    assert!(
        m.skipped_files[1].reason.contains("c.json"),
        "{:?}",
        m.skipped_files
    );
    assert_eq!(m.output_rows, 1);
}

#[tokio::test]
async fn a_bad_file_fails_the_subtask_naming_it_when_not_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let good = file(
        dir.path(),
        "a.csv",
        b"ts,user\n1000,alice\n",
        FileFormat::Csv,
    );
    let broken = file(dir.path(), "b.parquet", b"garbage", FileFormat::Parquet);
    let mut s = ingest_spec(dir.path(), vec![good, broken.clone()]);
    s.processing.skip_file_if_fail_to_init_reader = false;
    let err = run(&s).await.unwrap_err();
    assert_eq!(err.reason(), FailureReason::CorruptInput);
    assert!(err.to_string().contains(&broken.uri), "{err}");
}

#[tokio::test]
async fn a_csv_file_without_a_header_line_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let huge = vec![b'x'; 3 * minion_worker::ingest::MAX_CSV_HEADER_BYTES];
    let f = file(dir.path(), "one-line.csv", &huge, FileFormat::Csv);
    let mut s = ingest_spec(dir.path(), vec![f.clone()]);
    s.processing.skip_file_if_fail_to_init_reader = false;
    let err = run(&s).await.unwrap_err();
    assert_eq!(err.reason(), FailureReason::CorruptInput);
    assert!(
        err.to_string().contains("no end of the header row") && err.to_string().contains(&f.uri),
        "{err}"
    );
}

#[tokio::test]
async fn csv_missing_a_non_nullable_column_is_a_schema_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(dir.path(), "a.csv", b"user\nalice\n", FileFormat::Csv);
    let mut s = ingest_spec(dir.path(), vec![f]);
    s.destination.schema.columns[2].nullable = false;
    s.processing.skip_file_if_fail_to_init_reader = false;
    let err = run(&s).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"missing non-nullable column "ts""#),
        "{err}"
    );
}

#[tokio::test]
async fn sync_mode_writes_one_segment_per_file_tagged_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let a = file(
        dir.path(),
        "a.csv",
        b"ts,user\n1000,alice\n1001,ann\n",
        FileFormat::Csv,
    );
    let b = file(
        dir.path(),
        "b.json",
        b"{\"ts\":2000,\"user\":\"bob\"}\n",
        FileFormat::Json,
    );
    let mut s = ingest_spec(dir.path(), vec![a.clone(), b.clone()]);
    s.output.segment_per_input_file = true;
    let m = run(&s).await.unwrap();
    assert_eq!(m.outputs.len(), 2);
    assert_eq!(m.outputs[0].rows, 2);
    assert_eq!(m.outputs[0].tags["sourceFile"], a.uri);
    assert_eq!(m.outputs[0].tags["sourceFileVersion"], a.version.unwrap());
    assert_eq!(m.outputs[1].tags["sourceFile"], b.uri);
    assert_eq!(m.ingested_files, vec![a.uri, b.uri]);
}
