//! Bounded memory and disk: the binary processes input ten times its memory budget with peak
//! RSS within the budget plus the documented fixed overhead (64 MiB), temporary disk at most
//! twice the input, and no spill files left behind.
//!
//! RSS is the worker's own `VmHWM`, which it logs as `peak_rss_bytes` when it finishes.

mod common;

use std::process::Command;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use common::*;
use minion_contract::*;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

const MIB: u64 = 1 << 20;
const BUDGET: u64 = 16 * MIB;
/// The worker's documented overhead beyond its budget (what the operator's Jobs request).
const FIXED_OVERHEAD: u64 = minion_contract::WORKER_OVERHEAD_BYTES;
const T0: i64 = 1_700_006_400_000;

/// A cheap deterministic pseudo-random sequence (xorshift).
fn rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn write_input(dir: &std::path::Path, segments: usize, rows: usize) -> Vec<SegmentRef> {
    let schema = events_schema();
    let arrow = minion_worker::table::arrow_schema(&schema);
    // Compressed like real segments, so the disk bound is measured against realistic input.
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(65_536))
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..segments)
        .map(|s| {
            let rel = format!("in/{s}.parquet");
            let path = dir.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = std::fs::File::create(&path).unwrap();
            let mut w = ArrowWriter::try_new(file, arrow.clone(), Some(props.clone())).unwrap();
            for chunk in 0..rows / 65_536 {
                let n = 65_536;
                let mut r = || rand(&mut state);
                let d: Vec<String> = (0..n)
                    .map(|_| format!("user-{:08x}", r() % 2_000_000))
                    .collect();
                let e: Vec<String> = (0..n).map(|_| format!("e{}", r() % 1000)).collect();
                let ts: Vec<i64> = (0..n).map(|_| T0 + (r() % 86_400_000) as i64).collect();
                let m: Vec<i64> = (0..n).map(|_| (r() >> 20) as i64).collect();
                let b = RecordBatch::try_new(
                    arrow.clone(),
                    vec![
                        Arc::new(StringArray::from(d)),
                        Arc::new(StringArray::from(e)),
                        Arc::new(Int64Array::from(ts)),
                        Arc::new(Int64Array::from(m)),
                    ],
                )
                .unwrap();
                let _ = chunk;
                w.write(&b).unwrap();
            }
            w.close().unwrap();
            SegmentRef {
                path: rel,
                rows: (rows / 65_536 * 65_536) as u64,
                bytes: std::fs::metadata(&path).unwrap().len(),
                min_time_ms: None,
                max_time_ms: None,
                partition: None,
                tags: Default::default(),
            }
        })
        .collect()
}

fn logged(stdout: &str, key: &str) -> u64 {
    let at = stdout
        .rfind(&format!("{key}="))
        .unwrap_or_else(|| panic!("{key} not logged: {stdout}"));
    stdout[at + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn dedup_of_ten_times_the_budget_stays_within_memory_and_disk_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_input(dir.path(), 13, 10 * 65_536);
    let input_bytes: u64 = inputs.iter().map(|s| s.bytes).sum();
    let input_rows: u64 = inputs.iter().map(|s| s.rows).sum();
    assert!(
        input_bytes >= 10 * BUDGET,
        "input of {input_bytes} bytes is too small"
    );
    let mut p = processing(MergeType::Dedup);
    p.max_records_per_segment = 2_000_000;
    let s = spec(dir.path(), events_schema(), inputs, p);
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&s).unwrap()).unwrap();
    let spill = dir.path().join("spill");
    let out = Command::new(env!("CARGO_BIN_EXE_minion-worker"))
        .args([
            "run",
            "--spec",
            spec_path.to_str().unwrap(),
            "--memory-budget",
            "16MiB",
        ])
        .env("MINION_SPILL_DIR", &spill)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = logged(&stdout, "peak_rss_bytes");
    let disk = logged(&stdout, "peak_spill_bytes");
    println!("input {input_bytes} bytes, {input_rows} rows; peak RSS {rss}; peak spill {disk}");
    assert!(
        rss <= BUDGET + FIXED_OVERHEAD,
        "peak RSS {rss} over budget + overhead"
    );
    assert!(disk > 0, "the run did not spill");
    assert!(
        disk <= 2 * input_bytes,
        "spilled {disk} bytes for {input_bytes} input bytes"
    );
    let m: ResultManifest =
        serde_json::from_slice(&std::fs::read(dir.path().join(s.manifest_path())).unwrap())
            .unwrap();
    assert_eq!(m.input_rows, input_rows);
    assert!(m.output_rows <= input_rows && m.output_rows > input_rows * 99 / 100);
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "spill files left behind"
    );
}

/// Sketches grow as rows combine: a rollup that derives a theta and an HLL sketch of the
/// erased user column writes more sketch bytes than its budget, and stays within the same
/// memory and disk bounds (combined rows are spilled and merged in chunks of bytes, not rows).
#[test]
fn rollup_deriving_sketches_larger_than_the_budget_stays_within_memory_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_input(dir.path(), 4, 10 * 65_536);
    let input_bytes: u64 = inputs.iter().map(|s| s.bytes).sum();
    let input_rows: u64 = inputs.iter().map(|s| s.rows).sum();
    let mut table = events_schema();
    table.columns.push(metric("users_theta", ColumnType::Bytes));
    table.columns.push(metric("users_hll", ColumnType::Bytes));
    let mut p = processing(MergeType::Rollup);
    p.max_records_per_segment = 2_000_000;
    p.round_bucket_ms = Some(3_600_000);
    p.erase_dimension_values = vec!["d".into()];
    p.aggregation_types = [
        (
            "users_theta".into(),
            AggregationType::DistinctCountThetaSketch,
        ),
        ("users_hll".into(), AggregationType::DistinctCountHll),
    ]
    .into();
    p.derive_metrics = [
        ("users_theta".into(), "d".into()),
        ("users_hll".into(), "d".into()),
    ]
    .into();
    let s = spec(dir.path(), table, inputs, p);
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&s).unwrap()).unwrap();
    let spill = dir.path().join("spill");
    let out = Command::new(env!("CARGO_BIN_EXE_minion-worker"))
        .args([
            "run",
            "--spec",
            spec_path.to_str().unwrap(),
            "--memory-budget",
            "16MiB",
        ])
        .env("MINION_SPILL_DIR", &spill)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = logged(&stdout, "peak_rss_bytes");
    let disk = logged(&stdout, "peak_spill_bytes");
    let m: ResultManifest =
        serde_json::from_slice(&std::fs::read(dir.path().join(s.manifest_path())).unwrap())
            .unwrap();
    let written: u64 = m.outputs.iter().map(|o| o.bytes).sum();
    println!(
        "input {input_bytes} bytes, {input_rows} rows; {} rows, {written} bytes out; peak RSS {rss}; peak spill {disk}",
        m.output_rows
    );
    assert!(
        written > BUDGET,
        "the sketches ({written} bytes) fit the budget"
    );
    assert!(
        rss <= BUDGET + FIXED_OVERHEAD,
        "peak RSS {rss} over budget + overhead"
    );
    assert!(disk > 0, "the run did not spill");
    assert!(
        disk <= 2 * input_bytes,
        "spilled {disk} bytes for {input_bytes} input bytes"
    );
    assert_eq!(m.input_rows, input_rows);
    // One row per (e, hour): 1,000 values over 24 hours.
    assert_eq!(m.output_rows, 24_000);
}

#[test]
fn sigterm_during_a_spilling_sort_removes_the_spill_files() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_input(dir.path(), 3, 10 * 65_536);
    let s = spec(
        dir.path(),
        events_schema(),
        inputs,
        processing(MergeType::Dedup),
    );
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&s).unwrap()).unwrap();
    let spill = dir.path().join("spill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_minion-worker"))
        .args([
            "run",
            "--spec",
            spec_path.to_str().unwrap(),
            "--memory-budget",
            "16MiB",
        ])
        .env("MINION_SPILL_DIR", &spill)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a run has been spilled.
    let spilled = || {
        std::fs::read_dir(&spill)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| {
                std::fs::read_dir(d.path())
                    .map(|mut f| f.next().is_some())
                    .unwrap_or(false)
            })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !spilled() {
        assert!(
            std::time::Instant::now() < deadline,
            "no spill file appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker ended before spilling"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_TRANSIENT));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted by a signal"));
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "spill files left behind"
    );
}
