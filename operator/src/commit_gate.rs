//! The commit gate: what the operator checks of a worker's Succeeded result manifest before
//! any of it is committed. The worker checks its own row ledger before it reports success;
//! the gate does not take its word for it:
//!
//! - the manifest is this attempt's (run, subtask, attempt) and carries a row ledger;
//! - the ledger adds up for the subtask's merge type (the same invariants the worker checks:
//!   concat keeps the multiset, dedup writes the rows less the copies it dropped, rollup keeps
//!   every sum/count total and never adds rows);
//! - the rows the worker read are the rows the plan gave it: the sum of the input segments'
//!   row counts in the catalog equals the ledger's source rows — less the segments the worker
//!   left out as unreadable (`skipCorruptSegments`), which must be inputs of the subtask,
//!   listed once, counted by the ledger, and skipped only when the spec allows it;
//! - the output rows listed add up to the rows the ledger says were written;
//! - every output lies under this attempt's staging prefix, exists with its listed size, and
//!   its Parquet footer holds its listed rows.
//!
//! [`check_manifest`] is the pure part; [`check`] adds the reads of the outputs. A refusal
//! fails the attempt (retried, then reverted) with reason [`Reason::CommitRefused`](crate::control::Reason::CommitRefused); nothing is committed.

use std::collections::BTreeSet;

use minion_contract::{Outcome, ResultManifest, SubtaskSpec};
use object_store::ObjectStoreExt;

use crate::generator::PlannedSubtask;

/// Why the gate did not let a manifest through.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The manifest or its outputs break a promise: the attempt must not be committed.
    #[error("commit refused: {0}")]
    Refused(String),
    /// The outputs could not be read to check them (the store); try again later.
    #[error("could not check the outputs: {0}")]
    Store(String),
}

/// Checks `manifest` against the attempt's `spec` and its planned `subtask`, without I/O.
///
/// # Errors
/// [`GateError::Refused`] naming every broken promise with its numbers.
pub fn check_manifest(
    subtask: &PlannedSubtask,
    spec: &SubtaskSpec,
    manifest: &ResultManifest,
) -> Result<(), GateError> {
    let mut broken = Vec::new();
    if (
        manifest.task_run.as_str(),
        manifest.subtask,
        manifest.attempt,
    ) != (spec.task_run.as_str(), spec.subtask, spec.attempt)
    {
        broken.push(format!(
            "the manifest is of {} subtask {} attempt {}, not of {} subtask {} attempt {}",
            manifest.task_run,
            manifest.subtask,
            manifest.attempt,
            spec.task_run,
            spec.subtask,
            spec.attempt
        ));
    }
    if manifest.outcome != Outcome::Succeeded {
        broken.push("the attempt did not succeed".to_string());
    }
    let Some(ledger) = &manifest.ledger else {
        broken.push("the manifest has no row ledger (a worker older than the operator?)".into());
        return Err(GateError::Refused(broken.join("; ")));
    };
    if let Err(e) = ledger.verify(
        spec.processing.merge_type,
        &spec.processing.aggregation_types,
    ) {
        broken.push(e.to_string());
    }
    let skipped = skipped_inputs(
        subtask,
        spec,
        manifest,
        ledger.skipped_segments,
        &mut broken,
    );
    // The catalog's row counts of the planned inputs read, where it knows them all.
    let read: Vec<_> = subtask
        .inputs
        .iter()
        .filter(|s| !skipped.contains(s.path.as_str()))
        .collect();
    if subtask.input_files.is_empty() && !read.is_empty() && read.iter().all(|s| s.rows > 0) {
        let planned: u64 = read.iter().map(|s| s.rows).sum();
        if planned != ledger.source_rows {
            let left_out = if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} skipped as unreadable)", skipped.len())
            };
            broken.push(format!(
                "the worker read {} rows from {} input segment(s){left_out} the catalog says hold {}",
                ledger.source_rows,
                read.len(),
                planned
            ));
        }
    }
    let listed: u64 = manifest.outputs.iter().map(|o| o.rows).sum();
    if listed != manifest.output_rows || listed != ledger.written.rows {
        broken.push(format!(
            "the outputs list {listed} rows, the manifest says {} and the ledger {} written",
            manifest.output_rows, ledger.written.rows
        ));
    }
    let prefix = format!("{}/", spec.output.staging_prefix.trim_end_matches('/'));
    let mut seen = BTreeSet::new();
    for o in &manifest.outputs {
        let inside = o
            .path
            .strip_prefix(&prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.split('/').all(plain_segment));
        if !inside {
            broken.push(format!(
                "output {} is not a file under this attempt's staging prefix {prefix}",
                o.path
            ));
        }
        if !seen.insert(o.path.as_str()) {
            broken.push(format!("output {} is listed twice", o.path));
        }
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(GateError::Refused(broken.join("; ")))
    }
}

/// The input segments the worker says it left out as unreadable, after checking that the
/// spec allows it, that each is an input of the subtask listed once, and that the ledger
/// counts them (`ledger_count`).
fn skipped_inputs<'a>(
    subtask: &PlannedSubtask,
    spec: &SubtaskSpec,
    manifest: &'a ResultManifest,
    ledger_count: u64,
    broken: &mut Vec<String>,
) -> BTreeSet<&'a str> {
    let mut skipped = BTreeSet::new();
    if !manifest.skipped_segments.is_empty() && !spec.processing.skip_corrupt_segments {
        broken.push(format!(
            "the worker skipped {} segment(s) but skipCorruptSegments is off",
            manifest.skipped_segments.len()
        ));
    }
    for s in &manifest.skipped_segments {
        if !subtask.inputs.iter().any(|i| i.path == s.path) {
            broken.push(format!(
                "skipped segment {} is not an input of the subtask",
                s.path
            ));
        }
        if !skipped.insert(s.path.as_str()) {
            broken.push(format!("skipped segment {} is listed twice", s.path));
        }
    }
    if ledger_count != manifest.skipped_segments.len() as u64 {
        broken.push(format!(
            "the manifest lists {} skipped segment(s), the ledger counts {ledger_count}",
            manifest.skipped_segments.len()
        ));
    }
    skipped
}

/// A path segment that names a file or directory, not a relative step.
fn plain_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".."
}

/// [`check_manifest`], then each output read back: it exists with its listed size and its
/// Parquet footer holds its listed rows.
///
/// # Errors
/// [`GateError::Refused`] for a broken promise; [`GateError::Store`] when the outputs cannot
/// be read.
pub async fn check(
    subtask: &PlannedSubtask,
    spec: &SubtaskSpec,
    manifest: &ResultManifest,
) -> Result<(), GateError> {
    check_manifest(subtask, spec, manifest)?;
    let dest = crate::storage::resolve(&spec.destination.uri)
        .map_err(|e| GateError::Store(e.to_string()))?;
    for o in &manifest.outputs {
        let path = dest.child(&o.path);
        let uri = dest.child_uri(&o.path);
        let meta = match dest.store.head(&path).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(GateError::Refused(format!("output {uri} does not exist")));
            }
            Err(e) => return Err(GateError::Store(format!("{uri}: {e}"))),
        };
        if meta.size != o.bytes {
            return Err(GateError::Refused(format!(
                "output {uri} holds {} bytes, the manifest lists {}",
                meta.size, o.bytes
            )));
        }
        let rows = footer_rows(&dest, &path, meta.size)
            .await
            .map_err(|e| match e {
                FooterError::Store(e) => GateError::Store(format!("{uri}: {e}")),
                FooterError::Corrupt(e) => {
                    GateError::Refused(format!("output {uri} is not readable Parquet: {e}"))
                }
            })?;
        if rows != o.rows {
            return Err(GateError::Refused(format!(
                "output {uri} holds {rows} rows, the manifest lists {}",
                o.rows
            )));
        }
    }
    Ok(())
}

/// Why an output's footer could not be read.
enum FooterError {
    /// The store failed: try again later.
    Store(String),
    /// The file is not readable Parquet.
    Corrupt(String),
}

/// The row count in the Parquet footer of `path` (`size` bytes), reading the footer only: the
/// last 8 bytes (footer length and magic `PAR1`), then the footer.
async fn footer_rows(
    dest: &minion_store::Location,
    path: &object_store::path::Path,
    size: u64,
) -> Result<u64, FooterError> {
    use parquet::file::metadata::ParquetMetaDataReader;
    if size < 12 {
        return Err(FooterError::Corrupt(format!(
            "{size} bytes, shorter than a Parquet file"
        )));
    }
    let get = |range: std::ops::Range<u64>| async move {
        dest.store
            .get_range(path, range)
            .await
            .map_err(|e| FooterError::Store(e.to_string()))
    };
    let tail = get(size - 8..size).await?;
    if &tail[4..8] != b"PAR1" {
        return Err(FooterError::Corrupt("no Parquet magic at its end".into()));
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len + 12 > size {
        return Err(FooterError::Corrupt(format!(
            "its footer of {len} bytes reaches past the start of the file"
        )));
    }
    let footer = get(size - 8 - len..size - 8).await?;
    let metadata = ParquetMetaDataReader::decode_metadata(&footer)
        .map_err(|e| FooterError::Corrupt(e.to_string()))?;
    Ok(metadata.file_metadata().num_rows().max(0) as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use minion_contract::ledger::{RowDigest, RowLedger};
    use minion_contract::{
        MergeType, OutputSpec, Processing, SegmentRef, TableLocation, TableSchema, TaskType,
    };

    use super::*;

    fn table() -> TableLocation {
        TableLocation {
            name: "t".into(),
            uri: "file:///tmp/t".into(),
            schema: TableSchema {
                columns: Vec::new(),
                time_column: "ts".into(),
                time_unit: Default::default(),
                time_format: None,
                primary_key: Vec::new(),
                comparison_column: None,
                partitioning: None,
                sorted_column: None,
                bloom_filter_columns: Vec::new(),
            },
        }
    }

    fn spec(merge: MergeType) -> SubtaskSpec {
        SubtaskSpec {
            api_version: minion_contract::CONTRACT_VERSION.into(),
            task_type: TaskType::MergeRollupTask,
            kind: Default::default(),
            namespace: "ns".into(),
            task_run: "run".into(),
            subtask: 2,
            attempt: 1,
            source: table(),
            destination: table(),
            inputs: Vec::new(),
            input_files: Vec::new(),
            context_segments: Vec::new(),
            window: None,
            processing: Processing {
                merge_type: merge,
                max_records_per_segment: 10,
                ..Processing::default()
            },
            output: OutputSpec {
                staging_prefix: "data/run/2/1".into(),
                segment_name_prefix: None,
                segment_name_postfix: None,
                tags: BTreeMap::new(),
                segment_per_input_file: false,
            },
            memory_budget_bytes: 1 << 20,
        }
    }

    fn segment(path: &str, rows: u64) -> SegmentRef {
        SegmentRef {
            path: path.into(),
            rows,
            bytes: 100,
            min_time_ms: None,
            max_time_ms: None,
            partition: None,
            tags: BTreeMap::new(),
        }
    }

    fn subtask(inputs: &[u64]) -> PlannedSubtask {
        let mut s = PlannedSubtask::new(TaskType::MergeRollupTask, 2, Processing::default());
        s.inputs = inputs
            .iter()
            .enumerate()
            .map(|(i, &r)| segment(&format!("in-{i}.parquet"), r))
            .collect();
        s
    }

    /// A manifest of `source` rows read and merged, `written` rows written in one output.
    fn manifest(source: u64, written: u64) -> ResultManifest {
        let digest = |rows| RowDigest {
            rows,
            hash: rows * 7,
            metrics: BTreeMap::new(),
        };
        ResultManifest {
            api_version: minion_contract::CONTRACT_VERSION.into(),
            task_run: "run".into(),
            subtask: 2,
            attempt: 1,
            outcome: Outcome::Succeeded,
            reason: None,
            message: None,
            input_rows: source,
            output_rows: written,
            outputs: vec![segment("data/run/2/1/t_0_1_0.parquet", written)],
            ingested_files: Vec::new(),
            skipped_files: Vec::new(),
            skipped_segments: Vec::new(),
            ledger: Some(RowLedger {
                source_rows: source,
                merged: digest(source),
                written: digest(written),
                ..RowLedger::default()
            }),
            validity: Vec::new(),
            peak_spill_bytes: None,
        }
    }

    fn refusal(r: Result<(), GateError>) -> String {
        match r {
            Err(GateError::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_consistent_manifest_passes() {
        let ok = check_manifest(
            &subtask(&[60, 40]),
            &spec(MergeType::Concat),
            &manifest(100, 100),
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn rows_written_twice_are_refused_whatever_the_worker_claims() {
        // A worker whose sorter emitted rows twice and did not check: 100 rows in, 148 out.
        let m = refusal(check_manifest(
            &subtask(&[60, 40]),
            &spec(MergeType::Concat),
            &manifest(100, 148),
        ));
        assert!(m.contains("concat wrote 148 rows"), "{m}");
    }

    #[test]
    fn rows_read_must_be_the_rows_the_catalog_planned() {
        let m = refusal(check_manifest(
            &subtask(&[60, 40, 10]),
            &spec(MergeType::Concat),
            &manifest(100, 100),
        ));
        assert!(
            m.contains("read 100 rows from 3 input segment(s) the catalog says hold 110"),
            "{m}"
        );
        // Unknown row counts (an external writer without statistics) are not compared.
        assert!(
            check_manifest(
                &subtask(&[60, 0, 10]),
                &spec(MergeType::Concat),
                &manifest(100, 100)
            )
            .is_ok()
        );
    }

    #[test]
    fn skipped_segments_are_left_out_of_the_planned_rows_and_must_be_inputs() {
        let skip = |m: &mut ResultManifest, path: &str| {
            m.skipped_segments.push(minion_contract::SkippedSegment {
                path: path.into(),
                reason: "truncated".into(),
            });
            m.ledger.as_mut().unwrap().skipped_segments += 1;
        };
        let mut allowed = spec(MergeType::Concat);
        allowed.processing.skip_corrupt_segments = true;
        // 60 + 40 read, the 10-row segment skipped: its rows are not expected.
        let mut m = manifest(100, 100);
        skip(&mut m, "in-2.parquet");
        let ok = check_manifest(&subtask(&[60, 40, 10]), &allowed, &m);
        assert!(ok.is_ok(), "{ok:?}");
        // A skipped segment does not excuse rows lost from the others.
        let mut lost = manifest(90, 90);
        skip(&mut lost, "in-2.parquet");
        let why = refusal(check_manifest(&subtask(&[60, 40, 10]), &allowed, &lost));
        assert!(
            why.contains("read 90 rows from 2 input segment(s) (1 skipped as unreadable) the catalog says hold 100"),
            "{why}"
        );
        // Only inputs may be skipped, each once, counted by the ledger, and only when allowed.
        let mut other = manifest(100, 100);
        skip(&mut other, "elsewhere.parquet");
        let why = refusal(check_manifest(&subtask(&[60, 40]), &allowed, &other));
        assert!(why.contains("elsewhere.parquet is not an input"), "{why}");
        let mut uncounted = manifest(100, 100);
        skip(&mut uncounted, "in-2.parquet");
        uncounted.ledger.as_mut().unwrap().skipped_segments = 0;
        let why = refusal(check_manifest(
            &subtask(&[60, 40, 10]),
            &allowed,
            &uncounted,
        ));
        assert!(
            why.contains("lists 1 skipped segment(s), the ledger counts 0"),
            "{why}"
        );
        let why = refusal(check_manifest(
            &subtask(&[60, 40, 10]),
            &spec(MergeType::Concat),
            &m,
        ));
        assert!(why.contains("skipCorruptSegments is off"), "{why}");
    }

    #[test]
    fn outputs_outside_the_attempts_staging_prefix_are_refused() {
        for path in [
            "data/run/2/2/t.parquet",
            "data/run/2/1/../../3/1/t.parquet",
            "data/run/2/1/",
            "t.parquet",
        ] {
            let mut m = manifest(100, 100);
            m.outputs[0].path = path.into();
            let why = refusal(check_manifest(
                &subtask(&[100]),
                &spec(MergeType::Concat),
                &m,
            ));
            assert!(
                why.contains("not a file under this attempt's staging prefix"),
                "{path}: {why}"
            );
        }
    }

    #[test]
    fn another_attempts_manifest_or_one_without_a_ledger_is_refused() {
        let mut m = manifest(100, 100);
        m.attempt = 2;
        let why = refusal(check_manifest(
            &subtask(&[100]),
            &spec(MergeType::Concat),
            &m,
        ));
        assert!(
            why.contains("attempt 2, not of run subtask 2 attempt 1"),
            "{why}"
        );
        let mut m = manifest(100, 100);
        m.ledger = None;
        let why = refusal(check_manifest(
            &subtask(&[100]),
            &spec(MergeType::Concat),
            &m,
        ));
        assert!(why.contains("no row ledger"), "{why}");
    }

    #[test]
    fn listed_output_rows_must_match_the_ledger() {
        let mut m = manifest(100, 100);
        m.outputs.push(segment("data/run/2/1/t_0_1_1.parquet", 5));
        let why = refusal(check_manifest(
            &subtask(&[100]),
            &spec(MergeType::Concat),
            &m,
        ));
        assert!(why.contains("the outputs list 105 rows"), "{why}");
    }
}
