//! The `MinionTaskConfig` resource: one task type on one (destination) table, with its cron
//! schedule and execution settings; status shows watermarks, schedule times and the last
//! result.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use minion_contract::TaskType;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::tasks::*;

/// At most this many upcoming fire times are shown in `status.nextScheduleTimes`.
pub const MAX_NEXT_SCHEDULE_TIMES: usize = 5;
/// At most this many runs are listed in `status.activeRuns` (with `Forbid` there is one).
pub const MAX_ACTIVE_RUNS: usize = 10;

/// What happens to fire times missed while the operator was down or the config suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MissedRunPolicy {
    /// Start one run for the most recent missed time (within startingDeadlineSeconds).
    RunOnce,
    /// Skip missed times; wait for the next one.
    Skip,
}

/// What happens when a run is due while an earlier run is incomplete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Do not start; record the run as Skipped (reason PreviousRunIncomplete).
    Forbid,
    /// Fail the incomplete run (reverting its lineage) and start the new one.
    Replace,
}

/// One task type configured on one destination table.
// kube's `printcolumn(...)` repeats `type_ = "…"`, which clippy takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "minion.dev",
    version = "v1alpha1",
    kind = "MinionTaskConfig",
    namespaced,
    status = "MinionTaskConfigStatus",
    shortname = "mtc",
    category = "minion",
    derive = "PartialEq",
    doc = "One minion task type on one destination table: schedule, settings, watermarks.",
    printcolumn(name = "TYPE", type_ = "string", json_path = ".spec.taskType"),
    printcolumn(name = "TABLE", type_ = "string", json_path = ".spec.table"),
    printcolumn(name = "SCHEDULE", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "SUSPENDED", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "LAST", type_ = "date", json_path = ".status.lastScheduleTime"),
    // A `date` column prints an age, and kubectl prints `<invalid>` for a time in the future:
    // NEXT is printed as the timestamp itself.
    printcolumn(name = "NEXT", type_ = "string", json_path = ".status.nextScheduleTime"),
    printcolumn(
        name = "LAST RESULT",
        type_ = "string",
        json_path = ".status.lastResult"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MinionTaskConfigSpec {
    /// Destination table (a Table in the same namespace).
    pub table: String,
    /// Source table, for tasks that read another table (RealtimeToOfflineSegmentsTask,
    /// SegmentImportTask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_table: Option<String>,
    pub task_type: TaskType,

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

    /// Cron expression: Quartz (6–7 fields, seconds first, day-of-week 1 = Sunday) or crontab
    /// (5 fields). Without it, runs start only on demand (TaskRuns with configRef).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// No new scheduled runs while true. Default false.
    #[serde(default)]
    pub suspend: bool,
    /// RunOnce (default) or Skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_run_policy: Option<MissedRunPolicy>,
    /// Missed fire times older than this many seconds are not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<i64>,
    /// Forbid (default) or Replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// MinionTaskConfigs of the same table whose runs come first: a run of this config waits
    /// in Pending (reason `WaitingForRunAfter`, naming the run) while a run of one of them
    /// that was created before it is unfinished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_after: Vec<String>,
    /// Succeeded TaskRuns kept. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_runs_history_limit: Option<u32>,
    /// Failed TaskRuns kept. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_runs_history_limit: Option<u32>,
    /// Consecutive failed (or timed-out) runs after which the config is `Degraded=True`
    /// (reason `RunsFailing`) until a run succeeds. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_after_failures: Option<u32>,
    /// Deadline of one subtask attempt (period). Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask_timeout: Option<String>,
    /// Deadline of a whole run (period). Default 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_timeout: Option<String>,
    /// Attempts per subtask (1 = no retry). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Subtasks running at once. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Memory budget of one subtask (size, e.g. 512Mi). Default 512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<String>,
    /// Pod settings of this config's subtask Jobs on Kubernetes, over the chart's
    /// `worker` defaults (ignored by the local backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerPodSpec>,
}

/// Pod settings of subtask Jobs: `resources` and `nodeSelector` are merged key by key over
/// the chart's defaults (these win); `tolerations` are added to the defaults'.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerPodSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<WorkerResources>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub node_selector: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<WorkerToleration>,
}

/// Container resources as Kubernetes quantities (`cpu: 500m`, `memory: 1Gi`). Without a
/// memory request, the Job requests the memory budget plus the worker's fixed overhead.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerResources {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub requests: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub limits: std::collections::BTreeMap<String, String>,
}

/// A pod toleration, as in a Pod spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerToleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Exists or Equal (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// NoSchedule, PreferNoSchedule or NoExecute; empty matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl MinionTaskConfigSpec {
    /// The task blocks of this spec, in the shape of a TaskRun's inline config.
    pub fn blocks(&self) -> TaskBlocks {
        TaskBlocks {
            realtime_to_offline_segments_task: self.realtime_to_offline_segments_task.clone(),
            segment_import_task: self.segment_import_task.clone(),
            merge_rollup_task: self.merge_rollup_task.clone(),
            segment_refresh_task: self.segment_refresh_task.clone(),
            file_ingestion_task: self.file_ingestion_task.clone(),
            delta_ingestion_task: self.delta_ingestion_task.clone(),
            segment_backfill_task: self.segment_backfill_task.clone(),
            purge_task: self.purge_task.clone(),
        }
    }
}

/// Outcome of the last run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunResult {
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
}

impl RunResult {
    /// The result as written in status (for Events and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Succeeded => "Succeeded",
            RunResult::Failed => "Failed",
            RunResult::TimedOut => "TimedOut",
            RunResult::Skipped => "Skipped",
        }
    }
}

/// Watermark of one merge level (or of the config, without level).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatermarkStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Processing is done up to this time (epoch milliseconds, exclusive).
    pub watermark_ms: i64,
    /// The same time in RFC3339.
    #[schemars(schema_with = "super::date_time_schema")]
    pub watermark: DateTime<Utc>,
}

/// How many buckets processing is behind, per merge level (or for the config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelayStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub buckets: i64,
}

/// Watermarks, schedule times and the last result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MinionTaskConfigStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One per merge level (MergeRollupTask) or one without level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watermarks: Vec<WatermarkStatus>,
    /// Fire time of the last scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub next_schedule_time: Option<DateTime<Utc>>,
    /// The next fire times (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::date_time_list_schema")]
    pub next_schedule_times: Vec<DateTime<Utc>>,
    /// Name of the last TaskRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<RunResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result_message: Option<String>,
    /// Names of incomplete TaskRuns (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_runs: Vec<String>,
    /// Delay in buckets per level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delays: Vec<DelayStatus>,
    /// When the last successful run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub last_successful_time: Option<DateTime<Utc>>,
    /// When the newest finished run counted in `consecutiveFailures` ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub last_completion_time: Option<DateTime<Utc>>,
    /// Failed or timed-out runs since the last successful one (skipped runs do not count).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    /// The value of the `minion.dev/run-now` annotation a run was last created for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_run_now: Option<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}
