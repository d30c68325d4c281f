//! Validated domain types: what a `Table`, `MinionTaskConfig` or `TaskRun` means once its raw
//! spec has been parsed (periods in milliseconds, sizes in bytes, defaults applied, keys
//! checked). Everything downstream of validation — generators, the control loop, builders of
//! Jobs — takes these types and never the raw specs.
//!
//! Pure data: no I/O, no Kubernetes, no clock.

use std::collections::BTreeMap;

pub use minion_common::predicate::Expr;
use minion_contract::{
    AggregationParameters, AggregationType, FileFormat, MergeType, TableSchema, TaskType,
};

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Pinot defaults (see docs/semantics.md).
pub mod defaults {
    use super::*;

    pub const R2O_BUCKET_MS: i64 = DAY_MS;
    pub const R2O_BUFFER_MS: i64 = 2 * DAY_MS;
    pub const MAX_RECORDS_PER_SEGMENT: u64 = 5_000_000;
    pub const MAX_RECORDS_PER_TASK: u64 = 50_000_000;
    pub const TABLE_MAX_NUM_TASKS: u32 = 10;
    pub const DESIRED_SEGMENT_SIZE_BYTES: u64 = 500 * 1024 * 1024;
    pub const MERGE_BUFFER_MS: i64 = 0;
    pub const MAX_NUM_PARALLEL_BUCKETS: u32 = 1;
    pub const UPSERT_BUFFER_MS: i64 = 7 * DAY_MS;
    pub const INVALID_RECORDS_THRESHOLD_PERCENT: f64 = 0.0;
    pub const INVALID_RECORDS_THRESHOLD_COUNT: u64 = 1;
    pub const MAX_DATA_SIZE_PER_TASK_BYTES: u64 = 5 * 1024 * 1024 * 1024;
    pub const TASK_MAX_DATA_SIZE_BYTES: u64 = 1024 * 1024 * 1024;
    pub const PURGE_LAST_PURGE_TIME_THRESHOLD_MS: i64 = 14 * DAY_MS;
    pub const SUBTASK_TIMEOUT_MS: i64 = HOUR_MS;
    pub const RUN_TIMEOUT_MS: i64 = 24 * HOUR_MS;
    pub const MAX_ATTEMPTS: u32 = 1;
    pub const PARALLELISM: u32 = 4;
    pub const SUCCESSFUL_RUNS_HISTORY_LIMIT: u32 = 3;
    pub const FAILED_RUNS_HISTORY_LIMIT: u32 = 3;
    /// Consecutive failed runs after which a config is `Degraded`.
    pub const DEGRADED_AFTER_FAILURES: u32 = 3;
    pub const APPEND_RETENTION_MS: i64 = 4 * HOUR_MS;
    pub const REFRESH_RETENTION_MS: i64 = 24 * HOUR_MS;
    /// Upper bound on input segments of one subtask, so a lineage entry stays small.
    pub const MAX_SEGMENTS_PER_TASK: usize = 1_000;
}

/// REALTIME tables are appended to by stream writers and `push`; OFFLINE tables are written by
/// tasks and batch pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TableType {
    Realtime,
    Offline,
}

/// A validated `Table`.
#[derive(Clone, Debug, PartialEq)]
pub struct TableDef {
    pub namespace: String,
    pub name: String,
    pub table_type: TableType,
    /// Table root URI (`file:///…`, `s3://…`, …), without a trailing slash.
    pub uri: String,
    pub schema: TableSchema,
    /// Secret holding object-store credentials, if any.
    pub storage_secret: Option<String>,
    /// How long replaced segments are kept for readers of older snapshots.
    pub retention_ms: i64,
    /// Data retention (`retentionTimePeriod`): segments whose data ends before `now − this`
    /// are removed by housekeeping, once every importer reading the table has moved them.
    pub data_retention_ms: Option<i64>,
    /// Whether the operator creates the Delta table when there is none at `uri`.
    pub create: bool,
    /// Whether clean-up may delete files other writers wrote.
    pub clean_up_foreign_files: bool,
}

/// What happens to fire times missed while the operator was down or the config suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MissedRunPolicy {
    /// Start one run for the most recent missed time (if within the starting deadline).
    #[default]
    RunOnce,
    /// Skip missed times; wait for the next one.
    Skip,
}

/// What happens when a run is due while an earlier run of the same config is incomplete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConcurrencyPolicy {
    /// Do not start; record the run as Skipped with reason `PreviousRunIncomplete` (Pinot ≥ 1.0).
    #[default]
    Forbid,
    /// Fail the incomplete run (reverting its lineage) and start the new one.
    Replace,
}

/// Execution settings common to every task type. A run keeps the settings it was planned
/// with (stored in its plan), so editing a config never changes a run in flight.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub subtask_timeout_ms: i64,
    pub run_timeout_ms: i64,
    /// Attempts per subtask (1 = no retry).
    pub max_attempts: u32,
    /// Subtasks run at once.
    pub parallelism: u32,
    pub memory_budget_bytes: u64,
}

impl Default for Execution {
    fn default() -> Self {
        Execution {
            subtask_timeout_ms: defaults::SUBTASK_TIMEOUT_MS,
            run_timeout_ms: defaults::RUN_TIMEOUT_MS,
            max_attempts: defaults::MAX_ATTEMPTS,
            parallelism: defaults::PARALLELISM,
            memory_budget_bytes: minion_contract::DEFAULT_MEMORY_BUDGET_BYTES,
        }
    }
}

/// Shared by R2O and SegmentImport: how one window is processed.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowProcessing {
    pub bucket_ms: i64,
    pub buffer_ms: i64,
    pub round_bucket_ms: Option<i64>,
    pub merge_type: MergeType,
    pub aggregation_types: BTreeMap<String, AggregationType>,
    pub aggregation_parameters: BTreeMap<String, AggregationParameters>,
    pub max_records_per_segment: u64,
    pub segment_name_prefix: Option<String>,
    pub segment_name_postfix: Option<String>,
    /// Leave unreadable source segments out (reported) instead of failing.
    pub skip_corrupt_segments: bool,
}

impl Default for WindowProcessing {
    fn default() -> Self {
        WindowProcessing {
            bucket_ms: defaults::R2O_BUCKET_MS,
            buffer_ms: defaults::R2O_BUFFER_MS,
            round_bucket_ms: None,
            merge_type: MergeType::Concat,
            aggregation_types: BTreeMap::new(),
            aggregation_parameters: BTreeMap::new(),
            max_records_per_segment: defaults::MAX_RECORDS_PER_SEGMENT,
            segment_name_prefix: None,
            segment_name_postfix: None,
            skip_corrupt_segments: false,
        }
    }
}

/// RealtimeToOfflineSegmentsTask: sequential windows, one subtask per run.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RealtimeToOfflineConfig {
    pub window: WindowProcessing,
}

/// SegmentImportTask: R2O with many windows in parallel.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentImportConfig {
    pub window: WindowProcessing,
    pub table_max_num_tasks: u32,
    pub max_records_per_task: u64,
    /// Watermark to start from when none is stored (`initialWatermarkMs`, −1 = unset).
    pub initial_watermark_ms: Option<i64>,
    /// The R2O config whose committed watermark to start from (`initialWatermarkFrom`).
    pub initial_watermark_from: Option<String>,
    pub desired_segment_size_bytes: u64,
}

impl Default for SegmentImportConfig {
    fn default() -> Self {
        SegmentImportConfig {
            window: WindowProcessing::default(),
            table_max_num_tasks: defaults::TABLE_MAX_NUM_TASKS,
            max_records_per_task: defaults::MAX_RECORDS_PER_TASK,
            initial_watermark_ms: None,
            initial_watermark_from: None,
            desired_segment_size_bytes: defaults::DESIRED_SEGMENT_SIZE_BYTES,
        }
    }
}

/// One level of MergeRollupTask (`1hour`, `1day`, …).
#[derive(Clone, Debug, PartialEq)]
pub struct MergeLevel {
    pub name: String,
    pub bucket_ms: i64,
    pub buffer_ms: i64,
    pub round_bucket_ms: Option<i64>,
    pub merge_type: MergeType,
    pub max_records_per_segment: u64,
    pub max_records_per_task: u64,
    pub max_num_parallel_buckets: u32,
    pub erase_dimension_values: Vec<String>,
    /// Sketch metrics built from an erased column, by metric.
    pub derive_metrics: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MergeMode {
    #[default]
    ProcessFromWatermark,
    /// Ignore watermarks and merge any bucket with unmerged segments (late data).
    ProcessAll,
}

/// MergeRollupTask. `levels` are ordered finest bucket first (validation guarantees it).
#[derive(Clone, Debug, PartialEq)]
pub struct MergeRollupConfig {
    pub levels: Vec<MergeLevel>,
    pub aggregation_types: BTreeMap<String, AggregationType>,
    pub aggregation_parameters: BTreeMap<String, AggregationParameters>,
    pub mode: MergeMode,
    /// Leave unreadable segments in place (reported) instead of failing.
    pub skip_corrupt_segments: bool,
}

/// SegmentRefreshTask, including UpsertCompactionTask's thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentRefreshConfig {
    pub bucket_ms: i64,
    pub buffer_ms: i64,
    pub invalid_records_threshold_percent: f64,
    pub invalid_records_threshold_count: u64,
    pub max_records_per_segment: u64,
    pub desired_segment_size_bytes: u64,
    pub table_max_num_tasks: u32,
    pub max_records_per_task: u64,
    pub max_data_size_per_task_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IngestionMode {
    /// m new files → n segments; files already ingested are not read again.
    #[default]
    Append,
    /// One segment per file, mirroring additions and updates (and deletions with swap).
    Sync,
}

/// FileIngestionTask.
#[derive(Clone, Debug, PartialEq)]
pub struct FileIngestionConfig {
    /// Where files are listed; empty when `input_files` names them.
    pub input_dir_uri: String,
    /// Files named explicitly (absolute URIs), listed instead of `input_dir_uri`.
    pub input_files: Vec<String>,
    pub input_format: FileFormat,
    /// Glob patterns on the path relative to `input_dir_uri`.
    pub include_file_name_pattern: Option<String>,
    pub exclude_file_name_pattern: Option<String>,
    pub mode: IngestionMode,
    /// The whole batch of a run becomes visible in one commit.
    pub consistent_push_enabled: bool,
    /// The batch replaces the whole table in one commit (full refresh).
    pub consistent_push_swap_enabled: bool,
    /// Maximum subtasks per run; `None` (−1) = every pending file in one run.
    pub table_max_num_tasks: Option<u32>,
    pub task_max_data_size_bytes: u64,
    pub task_max_num_files: Option<u32>,
    pub desired_segment_size_bytes: u64,
    pub max_records_per_segment: u64,
    pub skip_file_if_fail_to_init_reader: bool,
    /// DeltaIngestionTask: the files are the live data files of this Delta table (its URI),
    /// and a segment whose file is no longer live goes in the same commit.
    pub delta_source: Option<String>,
}

/// SegmentBackfillTask: replace the data of `[start, end)` (optionally only rows matching
/// `filter`) with the rows of the input files, all or none.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentBackfillConfig {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Parsed when the resource is applied; combined with the range as a tree.
    pub filter: Option<Expr>,
    pub input_dir_uri: String,
    pub input_format: FileFormat,
    pub max_records_per_segment: u64,
}

/// PurgeTask: rewrite segments without the rows matching `purge_predicate`.
#[derive(Clone, Debug, PartialEq)]
pub struct PurgeConfig {
    /// Parsed when the resource is applied.
    pub purge_predicate: Expr,
    /// A segment is purged again only once its last purge is older than this.
    pub last_purge_time_threshold_ms: i64,
    pub table_max_num_tasks: u32,
    pub max_records_per_segment: u64,
}

/// The typed configuration of one task type.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskSpec {
    RealtimeToOffline(RealtimeToOfflineConfig),
    SegmentImport(SegmentImportConfig),
    MergeRollup(MergeRollupConfig),
    SegmentRefresh(SegmentRefreshConfig),
    FileIngestion(FileIngestionConfig),
    SegmentBackfill(SegmentBackfillConfig),
    Purge(PurgeConfig),
}

impl TaskSpec {
    pub fn task_type(&self) -> TaskType {
        match self {
            TaskSpec::RealtimeToOffline(_) => TaskType::RealtimeToOfflineSegmentsTask,
            TaskSpec::SegmentImport(_) => TaskType::SegmentImportTask,
            TaskSpec::MergeRollup(_) => TaskType::MergeRollupTask,
            TaskSpec::SegmentRefresh(_) => TaskType::SegmentRefreshTask,
            TaskSpec::FileIngestion(c) if c.delta_source.is_some() => TaskType::DeltaIngestionTask,
            TaskSpec::FileIngestion(_) => TaskType::FileIngestionTask,
            TaskSpec::SegmentBackfill(_) => TaskType::SegmentBackfillTask,
            TaskSpec::Purge(_) => TaskType::PurgeTask,
        }
    }
}

/// A validated `MinionTaskConfig` (or the inline config of a `TaskRun`).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskConfig {
    pub namespace: String,
    pub name: String,
    /// The destination table (where the config lives, in Pinot terms the table it is set on —
    /// except R2O, which Pinot sets on the REALTIME source).
    pub table: String,
    /// The source table, for tasks that read another table (R2O, SegmentImport).
    pub source_table: Option<String>,
    pub schedule: Option<crate::schedule::Schedule>,
    pub suspend: bool,
    pub missed_run_policy: MissedRunPolicy,
    /// Missed fire times older than this are not run (`startingDeadlineSeconds`).
    pub starting_deadline_ms: Option<i64>,
    pub concurrency_policy: ConcurrencyPolicy,
    /// Configs of the same table whose earlier runs this config's runs wait for (`runAfter`).
    pub run_after: Vec<String>,
    pub successful_runs_history_limit: u32,
    pub failed_runs_history_limit: u32,
    /// Consecutive failed runs after which the config is `Degraded` (`degradedAfterFailures`).
    pub degraded_after_failures: u32,
    pub execution: Execution,
    pub task: TaskSpec,
}

impl TaskConfig {
    pub fn task_type(&self) -> TaskType {
        self.task.task_type()
    }
}
