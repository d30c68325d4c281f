//! The `minion-worker` binary: exit codes, the one stderr line naming the cause, and the
//! Failed manifest, for each kind of failure.

mod common;

use std::path::Path;
use std::process::Command;

use arrow::array::{Int64Array, StringArray};
use common::*;
use minion_contract::*;

const T0: i64 = 1_700_006_400_000;

fn good_batch() -> arrow::array::RecordBatch {
    batch(
        &events_schema(),
        vec![
            arc(StringArray::from(vec!["a"])),
            arc(StringArray::from(vec!["x"])),
            arc(Int64Array::from(vec![T0])),
            arc(Int64Array::from(vec![1])),
        ],
    )
}

struct Outcome {
    code: i32,
    stderr: String,
    stdout: String,
}

fn run_binary(dir: &Path, spec: &SubtaskSpec, extra: &[&str], env: &[(&str, &str)]) -> Outcome {
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(spec).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_minion-worker"))
        .args(["run", "--spec", &format!("file://{}", spec_path.display())])
        .args(extra)
        .envs(env.iter().copied())
        .env("MINION_SPILL_DIR", dir.join("spill"))
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

fn failed_manifest(dir: &Path, spec: &SubtaskSpec) -> ResultManifest {
    let m: ResultManifest =
        serde_json::from_slice(&std::fs::read(dir.join(spec.manifest_path())).unwrap()).unwrap();
    assert_eq!(m.outcome, minion_contract::Outcome::Failed);
    m
}

fn assert_one_line(o: &Outcome, code: i32, contains: &[&str]) {
    assert_eq!(o.code, code, "stderr: {}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "stderr: {}", o.stderr);
    for c in contains {
        assert!(o.stderr.contains(c), "{c:?} not in {}", o.stderr);
    }
}

#[test]
fn success_exits_zero_and_logs_progress_phases() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_segment(dir.path(), "in/a.parquet", &[good_batch()]);
    let s = spec(
        dir.path(),
        events_schema(),
        vec![seg],
        processing(MergeType::Rollup),
    );
    let o = run_binary(dir.path(), &s, &["--memory-budget", "64MiB"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("starting subtask") && o.stdout.contains("subtask succeeded"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("phase=\"sort\"") || o.stdout.contains("phase=sort"),
        "{}",
        o.stdout
    );
    assert!(dir.path().join(s.manifest_path()).exists());
    // The spill directory is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("spill"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn corrupt_parquet_names_the_file_and_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = write_segment(dir.path(), "in/a.parquet", &[good_batch()]);
    std::fs::write(
        dir.path().join("in/a.parquet"),
        b"this is not parquet at all",
    )
    .unwrap();
    seg.bytes = 26;
    let s = spec(
        dir.path(),
        events_schema(),
        vec![seg],
        processing(MergeType::Concat),
    );
    let o = run_binary(dir.path(), &s, &[], &[]);
    assert_one_line(
        &o,
        EXIT_BAD_INPUT,
        &["corrupt segment", "in/a.parquet", "(CorruptSegment)"],
    );
    let m = failed_manifest(dir.path(), &s);
    assert_eq!(m.reason, Some(FailureReason::CorruptSegment));
    assert!(m.message.unwrap().contains("in/a.parquet"));
    // The failed run removed its spill directory.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("spill"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_truncated_segment_is_corrupt_not_an_unreachable_store() {
    // The catalog's size is the file's original one; the file lost its second half (its
    // footer): the reader asks for bytes past the end. The store is fine, the file is not.
    let dir = tempfile::tempdir().unwrap();
    // Larger than the reader's 64 KiB footer prefetch, as real segments are.
    let n = 40_000;
    let big = batch(
        &events_schema(),
        vec![
            arc(StringArray::from_iter_values(
                (0..n).map(|i| format!("user-{i}")),
            )),
            arc(StringArray::from_iter_values(
                (0..n).map(|i| format!("e{}", i % 7)),
            )),
            arc(Int64Array::from_iter_values((0..n).map(|i| T0 + i))),
            arc(Int64Array::from_iter_values(0..n)),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[big]);
    assert!(seg.bytes > 3 * 64 * 1024, "{}", seg.bytes);
    let path = dir.path().join("in/a.parquet");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let s = spec(
        dir.path(),
        events_schema(),
        vec![seg.clone()],
        processing(MergeType::Concat),
    );
    let o = run_binary(dir.path(), &s, &[], &[]);
    assert_one_line(
        &o,
        EXIT_BAD_INPUT,
        &[
            "corrupt segment",
            "in/a.parquet",
            "truncated or corrupt",
            "(CorruptSegment)",
        ],
    );
    let m = failed_manifest(dir.path(), &s);
    assert_eq!(m.reason, Some(FailureReason::CorruptSegment));
    let message = m.message.unwrap();
    assert!(
        message.contains(&format!("the catalog says {} bytes", seg.bytes)),
        "{message}"
    );
}

#[test]
fn mistyped_column_is_a_schema_mismatch_naming_column_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = events_schema();
    wrong.columns[3].data_type = ColumnType::String;
    let b = batch(
        &wrong,
        vec![
            arc(StringArray::from(vec!["a"])),
            arc(StringArray::from(vec!["x"])),
            arc(Int64Array::from(vec![T0])),
            arc(StringArray::from(vec!["1"])),
        ],
    );
    let seg = write_segment(dir.path(), "in/a.parquet", &[b]);
    let s = spec(
        dir.path(),
        events_schema(),
        vec![seg],
        processing(MergeType::Concat),
    );
    let o = run_binary(dir.path(), &s, &[], &[]);
    assert_one_line(
        &o,
        EXIT_BAD_INPUT,
        &[
            "schema mismatch in",
            "in/a.parquet",
            r#"column "m" has type Utf8, expected Int64"#,
            "(SchemaMismatch)",
        ],
    );
    assert_eq!(
        failed_manifest(dir.path(), &s).reason,
        Some(FailureReason::SchemaMismatch)
    );
}

#[test]
fn missing_non_nullable_column_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_segment(dir.path(), "in/a.parquet", &[good_batch()]);
    let mut schema = events_schema();
    schema.columns.push(Column {
        name: "region".into(),
        data_type: ColumnType::String,
        role: ColumnRole::Dimension,
        nullable: false,
    });
    let s = spec(dir.path(), schema, vec![seg], processing(MergeType::Concat));
    let o = run_binary(dir.path(), &s, &[], &[]);
    assert_one_line(
        &o,
        EXIT_BAD_INPUT,
        &[r#"missing non-nullable column "region""#, "in/a.parquet"],
    );
}

#[test]
fn missing_input_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = write_segment(dir.path(), "in/a.parquet", &[good_batch()]);
    seg.path = "in/gone.parquet".into();
    let s = spec(
        dir.path(),
        events_schema(),
        vec![seg],
        processing(MergeType::Concat),
    );
    let o = run_binary(dir.path(), &s, &[], &[]);
    assert_one_line(
        &o,
        EXIT_BAD_INPUT,
        &["missing input", "in/gone.parquet", "(MissingInput)"],
    );
}

#[test]
fn unreachable_store_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_segment(dir.path(), "in/a.parquet", &[good_batch()]);
    let mut s = spec(
        dir.path(),
        events_schema(),
        vec![seg],
        processing(MergeType::Concat),
    );
    s.source.uri = "s3://nowhere/table".into();
    let env = [
        ("AWS_ENDPOINT", "http://127.0.0.1:9"),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let o = run_binary(dir.path(), &s, &[], &env);
    assert_one_line(
        &o,
        EXIT_TRANSIENT,
        &[
            "object store unreachable",
            "s3://nowhere/table/in/a.parquet",
            "(StoreUnreachable)",
        ],
    );
    assert_eq!(
        failed_manifest(dir.path(), &s).reason,
        Some(FailureReason::StoreUnreachable)
    );
}

#[test]
fn too_small_budget_and_bad_predicate_are_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_segment(dir.path(), "in/a.parquet", &[good_batch()]);
    let s = spec(
        dir.path(),
        events_schema(),
        vec![seg.clone()],
        processing(MergeType::Concat),
    );
    let o = run_binary(dir.path(), &s, &["--memory-budget", "1MiB"], &[]);
    assert_one_line(
        &o,
        EXIT_BAD_INPUT,
        &[
            "memory budget of 1048576 bytes is too small",
            "(BudgetTooSmall)",
        ],
    );

    let mut p = processing(MergeType::Concat);
    p.purge_predicate = Some("d = 'a' AND".into());
    let s = spec(dir.path(), events_schema(), vec![seg], p);
    let o = run_binary(dir.path(), &s, &[], &[]);
    assert_one_line(
        &o,
        EXIT_BAD_INPUT,
        &[
            "bad purge predicate: at position 11 (end of input)",
            "(BadPredicate)",
        ],
    );
}

#[test]
fn a_predicate_nested_10000_deep_is_bad_input_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_segment(dir.path(), "in/a.parquet", &[good_batch()]);
    let mut p = processing(MergeType::Concat);
    p.purge_predicate = Some(format!(
        "{}d = 'a'{}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    ));
    let s = spec(dir.path(), events_schema(), vec![seg], p);
    let o = run_binary(dir.path(), &s, &[], &[]);
    assert_one_line(
        &o,
        EXIT_BAD_INPUT,
        &[
            "bad purge predicate",
            "nested deeper than",
            "(BadPredicate)",
        ],
    );
    let m = failed_manifest(dir.path(), &s);
    assert_eq!(m.reason, Some(FailureReason::BadPredicate));
    assert!(FailureReason::BadPredicate.is_permanent());
}

#[test]
fn unreadable_spec_is_a_bad_spec() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_minion-worker"))
        .args([
            "run",
            "--spec",
            &format!("{}/nope.json", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_BAD_INPUT));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad subtask spec") && err.contains("nope.json"),
        "{err}"
    );
}
