//! The subtask spec: everything a worker needs to run one subtask, written by the operator to
//! object storage and read by `minion-worker run --spec <URI>`.
//!
//! A spec is self-contained (table locations, schema, inputs, processing, output naming) so a
//! worker needs no Kubernetes API access. Credentials never appear here: the worker takes them
//! from its environment.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::TableSchema;
use crate::segment::SegmentRef;
use crate::sketch::AggregationParameters;
use crate::task::{AggregationType, FileFormat, MergeType, TaskType};

/// `apiVersion` of subtask specs and result manifests.
pub const CONTRACT_VERSION: &str = "minion.dev/v1alpha1";
/// Default memory budget of a subtask: 512 MiB.
pub const DEFAULT_MEMORY_BUDGET_BYTES: u64 = 512 * 1024 * 1024;
/// Pinot's default output segment size cap.
pub const DEFAULT_MAX_RECORDS_PER_SEGMENT: u64 = 5_000_000;
/// File name of the result manifest inside a subtask's staging prefix.
pub const MANIFEST_FILE: &str = "_manifest.json";

/// A table as the worker sees it: where its data lives and its schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableLocation {
    /// Table name (used as the default segment name prefix).
    pub name: String,
    /// Table root URI: `file:///…`, `s3://bucket/prefix`, `gs://…`, `az://…`.
    pub uri: String,
    pub schema: TableSchema,
}

/// Half-open time range `[startMs, endMs)` in epoch milliseconds.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeWindow {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl TimeWindow {
    pub fn new(start_ms: i64, end_ms: i64) -> Self {
        TimeWindow { start_ms, end_ms }
    }

    pub fn contains(&self, t_ms: i64) -> bool {
        self.start_ms <= t_ms && t_ms < self.end_ms
    }

    /// Whether a segment with inclusive time range `[min, max]` has rows that may fall inside.
    pub fn overlaps_inclusive(&self, min_ms: i64, max_ms: i64) -> bool {
        min_ms < self.end_ms && max_ms >= self.start_ms
    }
}

/// An input file for file ingestion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputFile {
    /// Absolute URI of the file.
    pub uri: String,
    pub format: FileFormat,
    #[serde(default)]
    pub bytes: u64,
    /// Fingerprint recorded on the produced segments so reruns can tell new from ingested files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Value partitioning of the output (from the destination schema, or overridden).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Processing {
    #[serde(default)]
    pub merge_type: MergeType,
    /// Round the time column down to a multiple of this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_bucket_ms: Option<i64>,
    /// Aggregation per metric for rollup; metrics not listed are summed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aggregation_types: BTreeMap<String, AggregationType>,
    /// Parameters of the sketch aggregations, by metric.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aggregation_parameters: BTreeMap<String, AggregationParameters>,
    /// Sketch (or average) metrics built from a raw column's values before that column is
    /// erased, by metric: each row's value is added to the row's sketch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub derive_metrics: BTreeMap<String, String>,
    /// Dimensions reset to their default value (null) before reducing, so rows collapse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erase_dimension_values: Vec<String>,
    /// Rows matching this predicate are dropped (purge; backfill's filter). The operator sends
    /// a tree it built from parsed predicates, printed canonically (quoted columns, compound
    /// operands in parentheses); the worker parses it with a bounded nesting depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_predicate: Option<String>,
    /// Cut the output into time partitions of this many milliseconds (MergeRollup buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_partition_ms: Option<i64>,
    /// Partition the output by the destination schema's value partitioning.
    #[serde(default)]
    pub value_partitioning: bool,
    /// Sort the output (by the sorted column; rollup: dimensions then time).
    #[serde(default = "default_true")]
    pub sort: bool,
    pub max_records_per_segment: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_segment_size_bytes: Option<u64>,
    /// Drop rows of an upsert table that a newer version of their primary key supersedes.
    #[serde(default)]
    pub drop_invalid_upsert_rows: bool,
    /// File ingestion: skip a file that cannot be read instead of failing the subtask.
    #[serde(default = "default_true")]
    pub skip_file_if_fail_to_init_reader: bool,
    /// Segment inputs: leave a segment that cannot be read (truncated, bad magic, bad page) out
    /// of the subtask and report it in the manifest's `skippedSegments`, instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_corrupt_segments: bool,
}

fn default_true() -> bool {
    true
}

/// Naming and placement of the outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputSpec {
    /// Prefix, relative to the destination table URI, unique to (run, subtask, attempt).
    /// Segments and the result manifest are written under it.
    pub staging_prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name_postfix: Option<String>,
    /// Tags put on every output segment (e.g. `mergeLevel=1day`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Write one output segment per input file (file ingestion sync mode).
    #[serde(default)]
    pub segment_per_input_file: bool,
}

/// What a worker does with a spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SubtaskKind {
    /// Process the inputs into output segments (every task type).
    #[default]
    Process,
    /// Compute upsert validity across `inputs` (every visible segment of the destination,
    /// oldest first) and write `<segment path>.validity` next to each; no output segments.
    /// The first phase of a SegmentRefresh run whose table lacks validity files: the operator
    /// plans from the files it writes.
    Validity,
}

impl SubtaskKind {
    pub fn is_process(&self) -> bool {
        *self == SubtaskKind::Process
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubtaskKind::Process => "process",
            SubtaskKind::Validity => "validity",
        }
    }
}

/// One subtask of a TaskRun.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubtaskSpec {
    pub api_version: String,
    pub task_type: TaskType,
    /// What to do with the inputs (absent: process them).
    #[serde(default, skip_serializing_if = "SubtaskKind::is_process")]
    pub kind: SubtaskKind,
    /// Namespace and name of the TaskRun.
    pub namespace: String,
    pub task_run: String,
    /// Index of the subtask in its run (`_0 … _n`).
    pub subtask: u32,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Where inputs are read from (equal to `destination` for in-place tasks).
    pub source: TableLocation,
    pub destination: TableLocation,
    /// Input segments, paths relative to `source.uri`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<SegmentRef>,
    /// Input files (file ingestion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_files: Vec<InputFile>,
    /// Other live segments of the destination read only to decide upsert validity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_segments: Vec<SegmentRef>,
    /// Rows outside this window are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    pub processing: Processing,
    pub output: OutputSpec,
    #[serde(default = "default_budget")]
    pub memory_budget_bytes: u64,
}

fn default_budget() -> u64 {
    DEFAULT_MEMORY_BUDGET_BYTES
}

impl SubtaskSpec {
    /// Path of the result manifest relative to the destination URI.
    pub fn manifest_path(&self) -> String {
        format!(
            "{}/{}",
            self.output.staging_prefix.trim_end_matches('/'),
            MANIFEST_FILE
        )
    }
}

/// The top-level directory of every file the operator's workers write into a table
/// (`data/<namespace>/<run key>/…`); clean-up deletes files outside it only when a Table
/// opts in.
pub const DATA_DIR: &str = "data";

/// The staging prefix of one attempt of one subtask: `data/<run>/<subtask>/<attempt>`, where
/// `run` is `<namespace>/<run key>` (the run key carries the TaskRun's uid, so a re-created
/// TaskRun of the same name stages elsewhere).
///
/// Prefixes are directories (object stores list by whole path segments), so every attempt
/// of a subtask lies under [`subtask_prefix`] and every subtask under [`run_prefix`].
///
/// # Guarantees
/// Distinct (run, subtask, attempt) triples give distinct, non-nested prefixes.
pub fn staging_prefix(run: &str, subtask: u32, attempt: u32) -> String {
    format!("{}/{attempt}", subtask_prefix(run, subtask))
}

/// The staging prefix of one attempt of a run's validity phase: `data/<run>/validity/<attempt>`
/// (beside the numbered subtasks, never one of them). It holds the spec and the manifest; the
/// validity files themselves lie next to their segments.
pub fn validity_prefix(run: &str, attempt: u32) -> String {
    format!("{DATA_DIR}/{run}/validity/{attempt}")
}

/// The directory holding every attempt of one subtask: `data/<run>/<subtask>`.
pub fn subtask_prefix(run: &str, subtask: u32) -> String {
    format!("{DATA_DIR}/{run}/{subtask}")
}

/// The prefix holding every attempt of every subtask of a run.
pub fn run_prefix(run: &str) -> String {
    format!("{DATA_DIR}/{run}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_prefixes_are_unique_per_attempt() {
        assert_ne!(staging_prefix("r", 1, 1), staging_prefix("r", 1, 2));
        assert_ne!(staging_prefix("r", 1, 11), staging_prefix("r", 11, 1));
        assert!(staging_prefix("r", 0, 1).starts_with(&run_prefix("r")));
        assert!(staging_prefix("r", 1, 2).starts_with(&format!("{}/", subtask_prefix("r", 1))));
        assert!(!staging_prefix("r", 11, 2).starts_with(&format!("{}/", subtask_prefix("r", 1))));
        assert!(validity_prefix("r", 1).starts_with(&run_prefix("r")));
        assert_ne!(validity_prefix("r", 1), validity_prefix("r", 2));
    }

    #[test]
    fn window_is_half_open() {
        let w = TimeWindow::new(10, 20);
        assert!(w.contains(10) && w.contains(19) && !w.contains(20));
        assert!(w.overlaps_inclusive(19, 30));
        assert!(!w.overlaps_inclusive(20, 30));
        assert!(w.overlaps_inclusive(0, 10));
    }
}
