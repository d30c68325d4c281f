//! The `TaskRun` resource: one run of a task generator, created by a MinionTaskConfig's
//! schedule or by a user — referring to a config (Pinot's *schedule*) or carrying an inline
//! config (Pinot's *execute*). Status shows the phase, the plan, the subtasks and progress.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use minion_contract::TaskType;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::tasks::TaskBlocks;

/// Planned units and subtasks detailed in status; the counters cover the rest.
pub const MAX_SUBTASK_DETAIL: usize = 100;

/// One run of a task generator.
// kube's `printcolumn(...)` repeats `type_ = "…"`, which clippy takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "minion.dev",
    version = "v1alpha1",
    kind = "TaskRun",
    namespaced,
    status = "TaskRunStatus",
    shortname = "tr",
    category = "minion",
    derive = "PartialEq",
    doc = "One run of a minion task: its plan, subtasks (Jobs), progress and result.",
    printcolumn(name = "TYPE", type_ = "string", json_path = ".status.taskType"),
    printcolumn(name = "TABLE", type_ = "string", json_path = ".status.table"),
    printcolumn(name = "PHASE", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "REASON", type_ = "string", json_path = ".status.reason"),
    printcolumn(name = "PROGRESS", type_ = "string", json_path = ".status.progress"),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskRunSpec {
    /// Task type: required with an inline `config`; with `configRef`, the config's (when
    /// given, it must be the config's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<TaskType>,
    /// Destination table: required with an inline `config`; with `configRef`, the config's
    /// (when given, it must be the config's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub table: String,
    /// Source table of an inline R2O/SegmentImport run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_table: Option<String>,
    /// Name of a MinionTaskConfig in the same namespace to run (exclusive with `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_ref: Option<String>,
    /// Inline task config (exclusive with `configRef`): the block matching taskType.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<TaskBlocks>,
    /// Fire time this run was created for, when created by a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub scheduled_time: Option<DateTime<Utc>>,
    /// Overrides the config's subtaskTimeout (period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask_timeout: Option<String>,
    /// Overrides the config's runTimeout (period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_timeout: Option<String>,
    /// Overrides the config's maxAttempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Overrides the config's parallelism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Overrides the config's memoryBudget (size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<String>,
    /// Cancel the run: its jobs are stopped, what it staged and did not commit is reverted,
    /// its lineage released, and it ends `Cancelled`. A run already in its closing commit
    /// finishes; subtasks committed before stay committed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
}

/// Lifecycle of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TaskRunPhase {
    #[default]
    Pending,
    Planning,
    Running,
    Committing,
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
    /// Ended by `spec.cancel` or by the TaskRun's deletion.
    Cancelled,
}

impl TaskRunPhase {
    /// The phase as written in status (for Events and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRunPhase::Pending => "Pending",
            TaskRunPhase::Planning => "Planning",
            TaskRunPhase::Running => "Running",
            TaskRunPhase::Committing => "Committing",
            TaskRunPhase::Succeeded => "Succeeded",
            TaskRunPhase::Failed => "Failed",
            TaskRunPhase::TimedOut => "TimedOut",
            TaskRunPhase::Skipped => "Skipped",
            TaskRunPhase::Cancelled => "Cancelled",
        }
    }

    /// Succeeded, Failed, TimedOut, Skipped and Cancelled runs are finished.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskRunPhase::Succeeded
                | TaskRunPhase::Failed
                | TaskRunPhase::TimedOut
                | TaskRunPhase::Skipped
                | TaskRunPhase::Cancelled
        )
    }
}

/// One planned unit of work (one subtask).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedUnit {
    pub subtask: u32,
    /// Window or bucket start (epoch ms, inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start_ms: Option<i64>,
    /// Window or bucket end (epoch ms, exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end_ms: Option<i64>,
    /// Merge level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Input segments or files.
    pub inputs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<u64>,
}

/// State of one subtask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SubtaskState {
    #[default]
    Pending,
    Running,
    /// The worker finished; outputs staged, not yet committed.
    Succeeded,
    Failed,
    /// Outputs committed to the catalog.
    Committed,
    /// Lineage reverted, staged outputs deleted.
    Reverted,
}

impl SubtaskState {
    /// The state as written in status (for Events and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            SubtaskState::Pending => "Pending",
            SubtaskState::Running => "Running",
            SubtaskState::Succeeded => "Succeeded",
            SubtaskState::Failed => "Failed",
            SubtaskState::Committed => "Committed",
            SubtaskState::Reverted => "Reverted",
        }
    }
}

/// Detail of one subtask.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubtaskStatus {
    pub index: u32,
    pub state: SubtaskState,
    /// Name of the Job (or local process) running the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    /// Input segments or files.
    #[serde(default)]
    pub inputs: u64,
    /// Output segments.
    #[serde(default)]
    pub outputs: u64,
    #[serde(default)]
    pub input_rows: u64,
    #[serde(default)]
    pub output_rows: u64,
    /// Bytes of the output segments.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_bytes: u64,
    /// Where the subtask spec was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_uri: Option<String>,
    /// Machine-readable reason of the last failed attempt (e.g. WorkerLost, CorruptSegment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What went wrong in the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub completion_time: Option<DateTime<Utc>>,
}

/// The validity phase of a SegmentRefresh run over an upsert table some of whose segments
/// have no validity file: one worker subtask of kind `validity` (not one of the numbered
/// subtasks) computes and writes them before the run is planned from them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidityStatus {
    /// `Running`, `Succeeded`, `Pending` (an attempt failed, the next one starts) or `Failed`.
    pub state: SubtaskState,
    /// Name of the Job (or local process) running the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    /// Segments whose validity it computes (every visible segment of the table).
    #[serde(default)]
    pub segments: u64,
    /// Rows the worker read.
    #[serde(default)]
    pub rows: u64,
    /// Rows a newer version of their primary key supersedes.
    #[serde(default)]
    pub invalid_rows: u64,
    /// The most local disk the worker's spilled sort runs took at once (0: the table fit in
    /// the subtask's memory budget).
    #[serde(default)]
    pub spilled_bytes: u64,
    /// Where the spec was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_uri: Option<String>,
    /// Machine-readable reason of the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub completion_time: Option<DateTime<Utc>>,
}

/// An input segment a subtask left out as unreadable (`skipCorruptSegments`); it is still in
/// the table, untouched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedSegmentStatus {
    pub subtask: u32,
    /// Path relative to the table the subtask read.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Entries kept in `status.skippedSegments` (`skippedSegmentsTotal` counts all).
pub const MAX_SKIPPED_SEGMENTS_SHOWN: usize = 50;

impl TaskRun {
    /// The run's task type: as the operator resolved it (status), else as its spec says
    /// (`None` for a run of a config not yet seen by the operator that omits it).
    pub fn task_type(&self) -> Option<TaskType> {
        self.status
            .as_ref()
            .and_then(|s| s.task_type)
            .or(self.spec.task_type)
    }

    /// The run's destination Table, resolved as [`TaskRun::task_type`]; empty when unknown.
    pub fn table(&self) -> &str {
        match self.status.as_ref().and_then(|s| s.table.as_deref()) {
            Some(t) => t,
            None => &self.spec.table,
        }
    }
}

/// Phase, plan, subtasks and progress of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskRunStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The run's task type, from its spec or its config (`kubectl get`'s TYPE column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<TaskType>,
    /// The run's destination Table, from its spec or its config (`kubectl get`'s TABLE
    /// column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default)]
    pub phase: TaskRunPhase,
    /// Machine-readable reason of the phase (e.g. PreviousRunIncomplete, SubtaskFailed; while
    /// Pending, TableNotReady: the message names the table and its Ready condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// While the run is Planning: why the last attempt to plan it failed (it is retried until
    /// runTimeout, when the run times out naming this error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Committed (or ended) subtasks over all subtasks, `N/M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub completion_time: Option<DateTime<Utc>>,
    /// The validity subtask that ran before planning (SegmentRefresh of an upsert table
    /// whose validity files were missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<ValidityStatus>,
    /// Planned units (at most 100; subtasksTotal counts all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedUnit>,
    /// Subtask detail (at most 100; the counters count all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtasks: Vec<SubtaskStatus>,
    #[serde(default)]
    pub subtasks_total: u32,
    #[serde(default)]
    pub subtasks_pending: u32,
    #[serde(default)]
    pub subtasks_running: u32,
    #[serde(default)]
    pub subtasks_succeeded: u32,
    #[serde(default)]
    pub subtasks_failed: u32,
    #[serde(default)]
    pub subtasks_committed: u32,
    /// Watermark (epoch ms) when the run was planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_before: Option<i64>,
    /// Watermark (epoch ms) after the run committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_after: Option<i64>,
    /// Input segments left out as unreadable and left in place (`skipCorruptSegments`; at
    /// most 50, `skippedSegmentsTotal` counts all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_segments: Vec<SkippedSegmentStatus>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub skipped_segments_total: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_match_the_serialized_status_values() {
        for p in [
            TaskRunPhase::Pending,
            TaskRunPhase::Planning,
            TaskRunPhase::Running,
            TaskRunPhase::Committing,
            TaskRunPhase::Succeeded,
            TaskRunPhase::Failed,
            TaskRunPhase::TimedOut,
            TaskRunPhase::Skipped,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for s in [
            SubtaskState::Pending,
            SubtaskState::Running,
            SubtaskState::Succeeded,
            SubtaskState::Failed,
            SubtaskState::Committed,
            SubtaskState::Reverted,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        use crate::api::RunResult;
        for r in [
            RunResult::Succeeded,
            RunResult::Failed,
            RunResult::TimedOut,
            RunResult::Skipped,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
