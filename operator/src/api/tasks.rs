//! The typed configuration block of each task type, with Pinot's key names, as users write it
//! under `MinionTaskConfig.spec.<taskType>` or `TaskRun.spec.config.<taskType>`.
//!
//! Periods (`1d`, `6h`, `15m`) and sizes (`500M`, `512Mi`) are strings here; they are parsed,
//! checked and defaulted by `crate::validate`. An absent key takes Pinot's default.

use std::collections::BTreeMap;

use minion_contract::{AggregationParameters, AggregationType, FileFormat, MergeType, TaskType};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// RealtimeToOfflineSegmentsTask: sequential windows from a REALTIME table into an OFFLINE one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RealtimeToOfflineSegmentsTaskSpec {
    /// Window length (period). Default 1d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_time_period: Option<String>,
    /// A window is processed once its end is older than now − buffer (period). Default 2d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_time_period: Option<String>,
    /// Round the time column down to this period before merging. Unset by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_bucket_time_period: Option<String>,
    /// concat (default), rollup or dedup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_type: Option<MergeType>,
    /// Aggregation per metric column under rollup (default sum).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aggregation_types: BTreeMap<String, AggregationType>,
    /// Parameters of sketch aggregations, by metric column: `nominalEntries` (theta),
    /// `lgK` (HLL, CPC), `k` (KLL), `compression` (t-digest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aggregation_parameters: BTreeMap<String, AggregationParameters>,
    /// Rows per output segment. Default 5000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_segment: Option<u64>,
    /// Output files are named `<prefix>_<min>_<max>[_<postfix>]_<seq>.parquet`; the prefix
    /// defaults to the table name. 1 to 100 characters from `A-Z a-z 0-9 . _ -`, not starting
    /// with `.` or `-`, without `..`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name_prefix: Option<String>,
    /// Inserted before the sequence number of output file names; unset by default. Same
    /// characters as `segmentNamePrefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name_postfix: Option<String>,
    /// Leave a segment that cannot be read (truncated, bad magic, bad page) in place and
    /// process the rest, reporting it in the run's status and an Event, instead of failing
    /// the run with CorruptSegment. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_corrupt_segments: Option<bool>,
}

/// Where a SegmentImportTask's first watermark comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatermarkFrom {
    /// A MinionTaskConfig (RealtimeToOfflineSegmentsTask) of the same source and destination.
    pub config: String,
}

/// SegmentImportTask: R2O with many windows processed in parallel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentImportTaskSpec {
    /// Window length (period). Default 1d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_time_period: Option<String>,
    /// A window is processed once its end is older than now − buffer (period). Default 2d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_time_period: Option<String>,
    /// Round the time column down to this period before merging. Unset by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_bucket_time_period: Option<String>,
    /// concat (default), rollup or dedup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_type: Option<MergeType>,
    /// Aggregation per metric column under rollup (default sum).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aggregation_types: BTreeMap<String, AggregationType>,
    /// Parameters of sketch aggregations, by metric column: `nominalEntries` (theta),
    /// `lgK` (HLL, CPC), `k` (KLL), `compression` (t-digest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aggregation_parameters: BTreeMap<String, AggregationParameters>,
    /// Rows per output segment. Default 5000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_segment: Option<u64>,
    /// Output files are named `<prefix>_<min>_<max>[_<postfix>]_<seq>.parquet`; the prefix
    /// defaults to the table name. 1 to 100 characters from `A-Z a-z 0-9 . _ -`, not starting
    /// with `.` or `-`, without `..`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name_prefix: Option<String>,
    /// Inserted before the sequence number of output file names; unset by default. Same
    /// characters as `segmentNamePrefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name_postfix: Option<String>,
    /// Parallel subtasks per run. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_max_num_tasks: Option<u32>,
    /// Input rows per subtask before windows spread over another subtask. Default 50000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_task: Option<u64>,
    /// Watermark (epoch ms) to start from when none is stored; −1 (default) = from the
    /// smallest source segment start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_watermark_ms: Option<i64>,
    /// Start where a RealtimeToOfflineSegmentsTask config of the same tables stopped: its
    /// committed watermark, when this config has none stored yet. That config must be
    /// suspended with no unfinished run; until it is, runs end Skipped
    /// (`WatermarkSourceActive`), naming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_watermark_from: Option<WatermarkFrom>,
    /// Target output segment size (size, e.g. 500M). Default 500M.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_segment_size: Option<String>,
    /// Leave a segment that cannot be read (truncated, bad magic, bad page) in place and
    /// process the rest, reporting it in the run's status and an Event, instead of failing
    /// the run with CorruptSegment. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_corrupt_segments: Option<bool>,
}

/// `processFromWatermark` (default) or `processAll` (ignore watermarks: late data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MergeRollupMode {
    ProcessFromWatermark,
    ProcessAll,
}

/// One MergeRollup level (`1hour`, `1day`, …); levels are listed finest bucket first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeLevelSpec {
    /// Level name, unique, used in the `mergeLevel` segment tag and in output file names
    /// (`merged_<name>_…`), e.g. `1hour`: characters from `A-Z a-z 0-9 . _ -`, not starting
    /// with `.` or `-`, without `..`.
    pub name: String,
    /// Bucket length (period). Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_time_period: Option<String>,
    /// A bucket is merged once its end is older than now − buffer (period). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_time_period: Option<String>,
    /// Round the time column down to this period (≤ bucketTimePeriod). Unset by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_bucket_time_period: Option<String>,
    /// concat (default), rollup or dedup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_type: Option<MergeType>,
    /// Rows per output segment. Default 5000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_segment: Option<u64>,
    /// Input rows per subtask. Default 50000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_task: Option<u64>,
    /// Buckets scheduled per run. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_parallel_buckets: Option<u32>,
    /// Dimension columns reset to their default value so rows collapse under rollup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erase_dimension_values: Vec<String>,
    /// Sketch (or avg) metrics this level builds from a column it erases, by metric:
    /// `{distinct_users: user_id}` keeps the distinct count of `user_id` in the BYTES metric
    /// `distinct_users` while the rollup drops its values. Needs mergeType rollup.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub derive_metrics: BTreeMap<String, String>,
}

/// MergeRollupTask: multi-level merge/rollup of small segments into time-aligned ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeRollupTaskSpec {
    /// Levels, finest bucket first (bucket periods strictly increasing).
    #[serde(default)]
    pub levels: Vec<MergeLevelSpec>,
    /// Aggregation per metric column under rollup (default sum).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aggregation_types: BTreeMap<String, AggregationType>,
    /// Parameters of sketch aggregations, by metric column: `nominalEntries` (theta),
    /// `lgK` (HLL, CPC), `k` (KLL), `compression` (t-digest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aggregation_parameters: BTreeMap<String, AggregationParameters>,
    /// processFromWatermark (default) or processAll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MergeRollupMode>,
    /// Leave a segment that cannot be read (truncated, bad magic, bad page) in place and
    /// process the rest, reporting it in the run's status and an Event, instead of failing
    /// the run with CorruptSegment. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_corrupt_segments: Option<bool>,
}

/// SegmentRefreshTask (covers UpsertCompactionTask): merge fragmented segments of an upsert
/// table, drop rows invalidated by newer versions of their primary key, re-sort, replace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentRefreshTaskSpec {
    /// Bucket length (period). Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_time_period: Option<String>,
    /// Segments newer than now − buffer are left alone (period). Default 7d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_time_period: Option<String>,
    /// A segment is refreshed once this percentage of its rows is invalid (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_records_threshold_percent: Option<f64>,
    /// … and at least this many rows are invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_records_threshold_count: Option<u64>,
    /// Rows per output segment. Default 5000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_segment: Option<u64>,
    /// Target output segment size (size). Default 500M.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_segment_size: Option<String>,
    /// Subtasks per run. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_max_num_tasks: Option<u32>,
    /// Input rows per subtask. Default 50000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_task: Option<u64>,
    /// Input bytes per subtask (size). Default 5G.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_data_size_per_task: Option<String>,
}

/// `append` (default: new files only, m files → n segments) or `sync` (one segment per
/// file, mirroring additions and updates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FileIngestionMode {
    Append,
    Sync,
}

/// FileIngestionTask: ingest Parquet/CSV/JSON files from an object-store prefix.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileIngestionTaskSpec {
    /// Prefix to read files from (same schemes as table URIs). Required unless `inputFiles`
    /// names the files.
    #[serde(
        rename = "inputDirURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub input_dir_uri: Option<String>,
    /// Exactly these files (URIs; `minion push` uses it), instead of listing `inputDirURI`.
    /// A file named `*.parquet`, `*.csv` or `*.json` is read in that format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_files: Vec<String>,
    /// parquet, csv or json. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_format: Option<FileFormat>,
    /// Glob on the path relative to inputDirURI (e.g. `**/*.parquet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_file_name_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_file_name_pattern: Option<String>,
    /// append (default) or sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileIngestionMode>,
    /// The batch of a run becomes visible in one commit. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_push_enabled: Option<bool>,
    /// The batch replaces the whole table in one commit. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_push_swap_enabled: Option<bool>,
    /// Subtasks per run; −1 (default) = every pending file in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_max_num_tasks: Option<i64>,
    /// Input bytes per subtask (size). Default 1G.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_max_data_size: Option<String>,
    /// Input files per subtask. Unlimited by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_max_num_files: Option<u32>,
    /// Target output segment size (size). Default 500M.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_segment_size: Option<String>,
    /// Rows per output segment. Default 5000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_segment: Option<u64>,
    /// Skip (and report) files that cannot be read instead of failing. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_file_if_fail_to_init_reader: Option<bool>,
}

/// SegmentBackfillTask: replace the data of `[startTime, endTime)` (optionally only rows
/// matching `filter`) with the rows of the input files, all or none. On demand only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentBackfillTaskSpec {
    /// Start of the range (inclusive): RFC3339 or epoch milliseconds. Required.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "int_or_string::deserialize"
    )]
    #[schemars(schema_with = "super::int_or_string_schema")]
    pub start_time: Option<String>,
    /// End of the range (exclusive): RFC3339 or epoch milliseconds. Required.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "int_or_string::deserialize"
    )]
    #[schemars(schema_with = "super::int_or_string_schema")]
    pub end_time: Option<String>,
    /// Only rows matching this predicate are replaced (e.g. `country = 'FR'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Prefix holding the replacement files. Required.
    #[serde(
        rename = "inputDirURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub input_dir_uri: Option<String>,
    /// parquet, csv or json. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_format: Option<FileFormat>,
    /// Rows per output segment. Default 5000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_segment: Option<u64>,
}

/// PurgeTask: rewrite segments without the rows matching a purge predicate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurgeTaskSpec {
    /// Rows matching this predicate are removed (e.g. `user_id = 'u-42'`). Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_predicate: Option<String>,
    /// A segment is purged again only once its last purge is older than this (period).
    /// Default 14d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_purge_time_threshold_period: Option<String>,
    /// Subtasks per run. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_max_num_tasks: Option<u32>,
    /// Rows per output segment. Default 5000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_segment: Option<u64>,
}

/// DeltaIngestionTask: ingest an external Delta table (any writer), one segment per data file,
/// following its log: files added upstream are ingested, files removed upstream (a
/// compaction, a delete) take their segments with them, in one commit per run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeltaIngestionTaskSpec {
    /// The Delta table to read (same schemes as table URIs). Required.
    #[serde(
        rename = "sourceTableURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub source_table_uri: Option<String>,
    /// Subtasks (files) per run; −1 (default) = every pending file in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_max_num_tasks: Option<i64>,
    /// Rows per output segment before a large file is split. Default 5000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_records_per_segment: Option<u64>,
    /// Output segment size before a large file is split (size). Default 500M.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_segment_size: Option<String>,
}

/// The task blocks of a TaskRun's inline config (Pinot's "execute"): exactly the one matching
/// `spec.taskType` may be present.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskBlocks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realtime_to_offline_segments_task: Option<RealtimeToOfflineSegmentsTaskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_import_task: Option<SegmentImportTaskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_rollup_task: Option<MergeRollupTaskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_refresh_task: Option<SegmentRefreshTaskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_ingestion_task: Option<FileIngestionTaskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_backfill_task: Option<SegmentBackfillTaskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_task: Option<PurgeTaskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_ingestion_task: Option<DeltaIngestionTaskSpec>,
}

impl TaskBlocks {
    /// The spec key of each block present, with its task type.
    pub fn present(&self) -> Vec<(&'static str, TaskType)> {
        let mut out = Vec::new();
        let mut add = |present: bool, t: TaskType| {
            if present {
                out.push((block_key(t), t));
            }
        };
        add(
            self.realtime_to_offline_segments_task.is_some(),
            TaskType::RealtimeToOfflineSegmentsTask,
        );
        add(
            self.segment_import_task.is_some(),
            TaskType::SegmentImportTask,
        );
        add(self.merge_rollup_task.is_some(), TaskType::MergeRollupTask);
        add(
            self.segment_refresh_task.is_some(),
            TaskType::SegmentRefreshTask,
        );
        add(
            self.file_ingestion_task.is_some(),
            TaskType::FileIngestionTask,
        );
        add(
            self.segment_backfill_task.is_some(),
            TaskType::SegmentBackfillTask,
        );
        add(self.purge_task.is_some(), TaskType::PurgeTask);
        add(
            self.delta_ingestion_task.is_some(),
            TaskType::DeltaIngestionTask,
        );
        out
    }
}

/// The spec key of a task type's block (`mergeRollupTask`, …).
pub fn block_key(task_type: TaskType) -> &'static str {
    match task_type {
        TaskType::RealtimeToOfflineSegmentsTask => "realtimeToOfflineSegmentsTask",
        TaskType::SegmentImportTask => "segmentImportTask",
        TaskType::MergeRollupTask => "mergeRollupTask",
        TaskType::SegmentRefreshTask => "segmentRefreshTask",
        TaskType::FileIngestionTask => "fileIngestionTask",
        TaskType::SegmentBackfillTask => "segmentBackfillTask",
        TaskType::PurgeTask => "purgeTask",
        TaskType::DeltaIngestionTask => "deltaIngestionTask",
    }
}

/// Accepts a YAML/JSON integer or string and keeps it as a string (times given as epoch
/// milliseconds or RFC3339).
mod int_or_string {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(i64),
        Str(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<IntOrString>::deserialize(d)?.map(|v| match v {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::Str(s) => s,
        }))
    }
}
