//! The result manifest: what a worker hands back to the operator, written as JSON next to its
//! outputs at `<staging prefix>/_manifest.json`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ledger::RowLedger;
use crate::segment::SegmentRef;

/// How a subtask attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// Fixed reasons a worker gives for a failure (used in conditions, Events and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum FailureReason {
    /// The spec could not be read or is invalid.
    BadSpec,
    /// An input file is not valid Parquet/CSV/JSON.
    CorruptInput,
    /// A segment of the source or destination table cannot be read (truncated, bad magic,
    /// bad page): the table holds a damaged file.
    CorruptSegment,
    /// An input lacks a column of the schema, or has it with another type.
    SchemaMismatch,
    /// An input segment no longer exists.
    MissingInput,
    /// The object store could not be reached or refused access.
    StoreUnreachable,
    /// The memory budget is too small for even one batch.
    BudgetTooSmall,
    /// The purge predicate or filter does not parse.
    BadPredicate,
    /// The worker's own checks found rows lost or counted twice (a bug; nothing of the
    /// attempt may be committed).
    InvariantViolated,
    /// Anything else.
    Internal,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::BadSpec => "BadSpec",
            FailureReason::CorruptInput => "CorruptInput",
            FailureReason::CorruptSegment => "CorruptSegment",
            FailureReason::SchemaMismatch => "SchemaMismatch",
            FailureReason::MissingInput => "MissingInput",
            FailureReason::StoreUnreachable => "StoreUnreachable",
            FailureReason::BudgetTooSmall => "BudgetTooSmall",
            FailureReason::BadPredicate => "BadPredicate",
            FailureReason::InvariantViolated => "InvariantViolated",
            FailureReason::Internal => "Internal",
        }
    }

    /// Whether retrying the same spec cannot help (bad input rather than a transient fault).
    /// The worker exits with [`EXIT_BAD_INPUT`] for these.
    pub fn is_permanent(self) -> bool {
        !matches!(
            self,
            FailureReason::StoreUnreachable
                | FailureReason::Internal
                | FailureReason::InvariantViolated
        )
    }
}

/// Exit code of the worker for a permanent failure (bad input); Jobs fail fast on it.
pub const EXIT_BAD_INPUT: i32 = 3;
/// Exit code of the worker for a transient failure; Jobs may retry.
pub const EXIT_TRANSIENT: i32 = 1;
/// Memory the worker may use beyond its `--memory-budget` (runtime, I/O buffers, decoders):
/// a pod needs at least the budget plus this much (docs/benchmarks.md, "Memory bound").
pub const WORKER_OVERHEAD_BYTES: u64 = 64 << 20;

/// A file that file ingestion skipped, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedFile {
    pub uri: String,
    pub reason: String,
}

/// Rows and invalid rows of one segment, as a validity subtask computed them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentValidityCount {
    /// Segment path relative to the table URI (its validity file is `<path>.validity`).
    pub path: String,
    pub rows: u64,
    /// Rows a newer version of their primary key supersedes.
    pub invalid: u64,
}

/// An input segment the worker left out because it cannot be read (`skipCorruptSegments`):
/// its rows are neither read nor written, and the commit leaves it in the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedSegment {
    /// Path relative to the source table URI, as the spec's inputs name it.
    pub path: String,
    /// What is wrong with it (one line).
    pub reason: String,
}

/// The result of one subtask attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultManifest {
    pub api_version: String,
    pub task_run: String,
    pub subtask: u32,
    pub attempt: u32,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
    /// One line naming the cause of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub input_rows: u64,
    pub output_rows: u64,
    /// Output segments, paths relative to the destination table URI.
    #[serde(default)]
    pub outputs: Vec<SegmentRef>,
    /// Input files ingested (file ingestion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingested_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_files: Vec<SkippedFile>,
    /// Input segments left out as unreadable (`skipCorruptSegments`); the ledger's
    /// `skippedSegments` counts them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_segments: Vec<SkippedSegment>,
    /// Where every row went (a Succeeded manifest of a worker always has one): the counts
    /// and digests the worker checked and the operator checks again before committing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<RowLedger>,
    /// A validity subtask: each input segment's counts, in input order (its validity file
    /// is written next to the segment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validity: Vec<SegmentValidityCount>,
    /// The most local disk the subtask's spilled sort runs took at once (0: it fit in its
    /// memory budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_spill_bytes: Option<u64>,
}
