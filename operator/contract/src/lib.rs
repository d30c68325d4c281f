//! Types both the operator and the worker need, and nothing else: the table schema, segment
//! references, the subtask spec, the result manifest and its row ledger.
//!
//! This crate has no Kubernetes or storage dependency; the CRD types embed these types, the
//! worker reads and writes them as JSON.

pub mod ledger;
pub mod manifest;
pub mod schema;
pub mod segment;
pub mod sketch;
pub mod spec;
pub mod task;
pub mod time_format;
pub mod validity;

pub use ledger::{LedgerViolation, MetricTotals, RowDigest, RowLedger, Total};
pub use manifest::{
    EXIT_BAD_INPUT, EXIT_TRANSIENT, FailureReason, Outcome, ResultManifest, SegmentValidityCount,
    SkippedFile, SkippedSegment, WORKER_OVERHEAD_BYTES,
};
pub use schema::{
    Column, ColumnRole, ColumnType, DatePattern, PartitionFunction, Partitioning, TableSchema,
    TimeFormat, TimeUnit,
};
pub use segment::{SegmentRef, segment_name};
pub use sketch::{AggregationParameters, Sketch};
pub use spec::{
    CONTRACT_VERSION, DATA_DIR, DEFAULT_MAX_RECORDS_PER_SEGMENT, DEFAULT_MEMORY_BUDGET_BYTES,
    InputFile, MANIFEST_FILE, OutputSpec, Processing, SubtaskKind, SubtaskSpec, TableLocation,
    TimeWindow, run_prefix, staging_prefix, subtask_prefix, validity_prefix,
};
pub use task::{AggregationType, FileFormat, MergeType, TaskType};
pub use validity::{VALIDITY_SUFFIX, ValidityCounts};
