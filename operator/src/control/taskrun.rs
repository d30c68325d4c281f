//! The TaskRun lifecycle as a pure state machine: [`next_step`] reads a run's status and the
//! facts the loop observed (job states, settings, `now`) and names the one step to take next.
//!
//! Phases: `Pending → Planning → Running → Committing → Succeeded | Failed | TimedOut |
//! Skipped`. A run whose source or destination Table is not Ready waits in `Pending` (reason
//! [`Reason::TableNotReady`], naming the table and its Ready condition) and fails with that
//! reason once it has waited past its deadline ([`TableWait`]); nothing is planned, locked or
//! written meanwhile. A run is never stuck in a phase: `runTimeout` (from `start_time`, set when the run
//! is admitted) bounds Planning ([`Reason::PlanningTimedOut`], naming the last planning error)
//! as it bounds Running ([`Reason::RunTimeout`]). Subtasks: `Pending → Running → (Committed | Succeeded [all-or-none, staged] |
//! Reverted)`; a failed attempt with attempts left goes back to `Pending` with its attempt
//! count kept, so the next launch uses `attempts + 1`. A SegmentRefresh run may first run
//! a validity subtask while `Planning` (`status.validity`: `Running → Succeeded | Pending
//! [retry] | Failed`; the steps are decided in [`super::validity::next_step`]).
//!
//! No I/O, no clock: the same status and facts give the same step.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use minion_contract::EXIT_BAD_INPUT;

use super::{JobState, Reason};
use crate::api::{SubtaskState, SubtaskStatus, TaskRunPhase, TaskRunStatus};
use crate::generator::CommitMode;

/// How long a run waits for its tables to become Ready, from its creation, when its config
/// sets no `startingDeadlineSeconds`: 10 minutes.
pub const DEFAULT_TABLE_WAIT_MS: i64 = 10 * 60_000;

/// A Table of the run whose `Ready` condition is not `True`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReadyTable {
    /// The table's name.
    pub table: String,
    /// `False` or `Unknown`.
    pub status: String,
    /// The condition's reason (e.g. `SchemaMismatch`).
    pub reason: String,
    /// The condition's message.
    pub message: String,
}

impl NotReadyTable {
    /// `waiting for Table <name>: Ready=<status> <reason>: <message>`.
    pub fn waiting_message(&self) -> String {
        let mut m = format!(
            "waiting for Table {}: Ready={} {}",
            self.table, self.status, self.reason
        );
        if !self.message.is_empty() {
            m.push_str(": ");
            m.push_str(&self.message);
        }
        m
    }
}

/// A run (not yet planned) whose table is not Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableWait {
    pub table: NotReadyTable,
    /// Since when the run waits: its creation (else its start).
    pub since: Option<DateTime<Utc>>,
    /// How long it may wait: the config's `startingDeadlineSeconds`, else
    /// [`DEFAULT_TABLE_WAIT_MS`].
    pub limit_ms: i64,
    /// The run's plan is stored already (it was planned before the table stopped being
    /// Ready): planning goes on, bounded by runTimeout.
    pub planned: bool,
}

/// Settings of a planned run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSettings {
    pub parallelism: u32,
    pub max_attempts: u32,
    pub subtask_timeout_ms: i64,
    pub run_timeout_ms: i64,
    pub commit_mode: CommitMode,
    /// Subtasks that need no worker (they only delete segments).
    pub no_worker: BTreeSet<u32>,
}

/// What the loop observed besides status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub now: DateTime<Utc>,
    /// Known once the run is planned (read from its stored plan).
    pub settings: Option<RunSettings>,
    /// State of the job of each `Running` subtask.
    pub jobs: BTreeMap<u32, JobState>,
    /// The run's `runTimeout` (the TaskRun's, else its config's), known before it is planned:
    /// a run in Planning longer than this times out.
    pub run_timeout_ms: Option<i64>,
    /// A table of a run in Pending or Planning that is not Ready.
    pub table_wait: Option<TableWait>,
    /// The run's validity subtask, while it runs.
    pub validity: Option<super::validity::ValidityFacts>,
    /// Why the run is to end now (`spec.cancel`, or the TaskRun being deleted).
    pub cancel: Option<Cancel>,
}

/// A request to end a run before it finishes: its reason (`Cancelled`, `Deleted`) and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancel {
    pub reason: Reason,
    pub message: String,
}

/// The next step of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Pending: apply the concurrency policy, then plan.
    Admit,
    /// Planning: plan (or reuse the stored plan), open lineage, list subtasks.
    Plan,
    /// Start an attempt.
    Launch {
        index: u32,
        attempt: u32,
        job: String,
    },
    /// These attempts succeeded (or no worker is needed): read their manifests, commit in ONE
    /// commit what may commit now (per subtask, in window order) or keep it staged
    /// (all-or-none). Every subtask whose job succeeded is collected at once, so a run whose
    /// subtasks finish together commits them together rather than one commit each.
    Collect { indices: Vec<u32> },
    /// The attempt failed. `kill`: stop its job first. Without `retry` the subtask is reverted.
    AttemptFailed {
        index: u32,
        reason: String,
        message: String,
        retry: bool,
        kill: bool,
    },
    /// Stop every job, revert every subtask not committed, end in `phase`.
    Abort {
        phase: TaskRunPhase,
        reason: String,
        message: String,
    },
    /// Every subtask ended: enter `Committing`.
    Close,
    /// All-or-none: one commit of every staged subtask.
    CommitAll,
    /// End the run.
    Finish {
        phase: TaskRunPhase,
        reason: String,
        message: String,
    },
    /// Planning: the validity subtask succeeded; read its manifest (then plan).
    CollectValidity,
    /// Planning: the validity subtask's attempt failed. `kill`: stop its job first. Without
    /// `retry` the run fails (nothing is locked before it is planned).
    ValidityFailed {
        reason: String,
        message: String,
        retry: bool,
        kill: bool,
    },
    /// Pending: a table of the run is not Ready; the run waits (status says why).
    WaitForTable { reason: String, message: String },
    /// Nothing to do until a job changes state or time passes.
    Wait,
    /// Jobs finished, and others still run: wait up to [`COLLECT_DELAY_MS`] for more of them
    /// to finish before collecting them together.
    WaitToCollect,
    /// The run is finished.
    Done,
}

/// Longest object name (and label value) Kubernetes takes for a Job.
pub const MAX_JOB_NAME: usize = 63;

/// Name of the job of one attempt of the run whose key is `run_key` (`<name>-<uid hex>`):
/// `<key>-<index>`, then `<key>-<index>-a<attempt>`; at most [`MAX_JOB_NAME`] characters, the
/// name part shortened when needed (the uid part keeps names of different runs apart).
pub fn job_name(run_key: &str, index: u32, attempt: u32) -> String {
    job_name_of(run_key, &index.to_string(), attempt)
}

/// Name of the job of one attempt of the run's validity subtask: `<key>-validity`, then
/// `<key>-validity-a<attempt>`, shortened as [`job_name`] is.
pub fn validity_job_name(run_key: &str, attempt: u32) -> String {
    job_name_of(run_key, "validity", attempt)
}

fn job_name_of(run_key: &str, part: &str, attempt: u32) -> String {
    let suffix = if attempt <= 1 {
        format!("-{part}")
    } else {
        format!("-{part}-a{attempt}")
    };
    if run_key.len() + suffix.len() <= MAX_JOB_NAME {
        return format!("{run_key}{suffix}");
    }
    // `<name>-<uid hex>`: shorten the name, keep the uid part whole.
    let (name, uid) = match run_key.rsplit_once('-') {
        Some((n, u)) if !u.is_empty() && u.len() <= 16 => (n, format!("-{u}")),
        _ => (run_key, String::new()),
    };
    let room = MAX_JOB_NAME - suffix.len() - uid.len();
    let mut short: String = name.chars().take(room).collect();
    // A name ends with an alphanumeric character.
    while short.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        short.pop();
    }
    format!("{short}{uid}{suffix}")
}

/// The reason and message of a failed subtask, as `Reason: message` for runs and Events.
pub fn subtask_failure(s: &SubtaskStatus) -> (String, String) {
    let reason = s
        .reason
        .clone()
        .unwrap_or_else(|| Reason::SubtaskFailed.into());
    let message = s.message.clone().unwrap_or_default();
    let text = format!("{reason}: {message}");
    (reason, text)
}

/// Decides the next step of a run.
pub fn next_step(run: &str, status: &TaskRunStatus, facts: &Facts) -> Step {
    // Cancelled (or deleted): nothing opened yet ends at once, an open run is reverted; a run
    // in its closing commit finishes (its commit may already be in the log).
    if let Some(c) = &facts.cancel {
        let (phase, reason, message) = (
            TaskRunPhase::Cancelled,
            c.reason.as_str().to_string(),
            c.message.clone(),
        );
        match status.phase {
            TaskRunPhase::Pending => {
                return Step::Finish {
                    phase,
                    reason,
                    message,
                };
            }
            TaskRunPhase::Planning | TaskRunPhase::Running => {
                return Step::Abort {
                    phase,
                    reason,
                    message,
                };
            }
            _ => {}
        }
    }
    match status.phase {
        TaskRunPhase::Pending => match &facts.table_wait {
            Some(w) => wait_for_table(w, facts.now),
            None => Step::Admit,
        },
        TaskRunPhase::Planning => match facts.table_wait.as_ref().filter(|w| !w.planned) {
            Some(w) => wait_for_table(w, facts.now),
            None => planning(status, facts),
        },
        TaskRunPhase::Running => match &facts.settings {
            Some(settings) => running(run, status, settings, facts),
            None => Step::Plan,
        },
        TaskRunPhase::Committing => committing(status, facts.settings.as_ref()),
        TaskRunPhase::Succeeded
        | TaskRunPhase::Failed
        | TaskRunPhase::TimedOut
        | TaskRunPhase::Skipped
        | TaskRunPhase::Cancelled => Step::Done,
    }
}

fn past(start: Option<DateTime<Utc>>, limit_ms: i64, now: DateTime<Utc>) -> bool {
    start.is_some_and(|s| now - s > Duration::milliseconds(limit_ms))
}

/// A table is not Ready: wait in Pending, or fail once waited past the deadline.
fn wait_for_table(w: &TableWait, now: DateTime<Utc>) -> Step {
    if past(w.since, w.limit_ms, now) {
        return Step::Finish {
            phase: TaskRunPhase::Failed,
            reason: Reason::TableNotReady.into(),
            message: format!(
                "Table {} was not Ready within {}s of the run's creation: Ready={} {}: {}",
                w.table.table,
                w.limit_ms / 1000,
                w.table.status,
                w.table.reason,
                w.table.message
            ),
        };
    }
    Step::WaitForTable {
        reason: Reason::TableNotReady.into(),
        message: w.table.waiting_message(),
    }
}

/// Planning: plan, unless the run has been planning for longer than its runTimeout (every
/// attempt failed, e.g. a status the API server refused); then it times out, reverting
/// whatever lineage it opened, its message naming the last planning error.
fn planning(status: &TaskRunStatus, facts: &Facts) -> Step {
    let validity_or_plan = || super::validity::next_step(status, facts).unwrap_or(Step::Plan);
    let Some(limit) = facts.run_timeout_ms else {
        return validity_or_plan();
    };
    if !past(status.start_time, limit, facts.now) {
        return validity_or_plan();
    }
    let last = match &status.last_error {
        Some(e) => format!("; last error: {e}"),
        None => "; no planning error was recorded".to_string(),
    };
    Step::Abort {
        phase: TaskRunPhase::TimedOut,
        reason: Reason::PlanningTimedOut.into(),
        message: format!(
            "the run was still planning after its runTimeout of {}s{last}",
            limit / 1000
        ),
    }
}

fn running(run: &str, status: &TaskRunStatus, settings: &RunSettings, facts: &Facts) -> Step {
    let now = facts.now;
    let all_or_none = settings.commit_mode == CommitMode::AllOrNone;
    let in_order = settings.commit_mode == CommitMode::InOrder;
    if past(status.start_time, settings.run_timeout_ms, now) {
        return Step::Abort {
            phase: TaskRunPhase::TimedOut,
            reason: Reason::RunTimeout.into(),
            message: format!(
                "the run took longer than its runTimeout of {}s",
                settings.run_timeout_ms / 1000
            ),
        };
    }
    // Subtasks whose job succeeded, collected together: at once when enough of them finished
    // or one finished a while ago (see `collect_now`), else after the launches below, or
    // once nothing else is left to wait for.
    let mut succeeded = Vec::new();
    let mut finished_at = Vec::new();
    for s in status
        .subtasks
        .iter()
        .filter(|s| s.state == SubtaskState::Running)
    {
        if let Some(JobState::Succeeded { at }) = facts.jobs.get(&s.index) {
            succeeded.push(s.index);
            finished_at.push(*at);
        }
    }
    if collect_now(settings.parallelism, &finished_at, now) {
        return Step::Collect { indices: succeeded };
    }
    for s in status
        .subtasks
        .iter()
        .filter(|s| s.state == SubtaskState::Running)
    {
        let retry = s.attempts < settings.max_attempts;
        let failed =
            |reason: Reason, message: String, retry: bool, kill: bool| Step::AttemptFailed {
                index: s.index,
                reason: reason.into(),
                message,
                retry,
                kill,
            };
        match facts.jobs.get(&s.index) {
            // Collected together (above and below).
            Some(JobState::Succeeded { .. }) => {}
            Some(JobState::Failed { exit_code, message }) => {
                let permanent = *exit_code == Some(EXIT_BAD_INPUT);
                return failed(
                    Reason::WorkerFailed,
                    message.clone(),
                    retry && !permanent,
                    false,
                );
            }
            Some(JobState::Stuck { reason, message }) => {
                // Retrying the same Job cannot help: the cause is the cluster's setup.
                return failed(*reason, message.clone(), false, true);
            }
            Some(JobState::Missing) => {
                return failed(
                    Reason::WorkerLost,
                    format!(
                        "job {} of attempt {} disappeared",
                        s.job.as_deref().unwrap_or("?"),
                        s.attempts
                    ),
                    retry,
                    false,
                );
            }
            Some(JobState::Pending | JobState::Running) | None => {
                if past(s.start_time, settings.subtask_timeout_ms, now) {
                    return failed(
                        Reason::SubtaskTimeout,
                        format!(
                            "attempt {} took longer than subtaskTimeout of {}s",
                            s.attempts,
                            settings.subtask_timeout_ms / 1000
                        ),
                        retry,
                        true,
                    );
                }
            }
        }
    }
    if all_or_none
        && let Some(failed) = status
            .subtasks
            .iter()
            .find(|s| s.state == SubtaskState::Reverted)
    {
        let (reason, message) = subtask_failure(failed);
        return Step::Abort {
            phase: TaskRunPhase::Failed,
            reason,
            message: format!(
                "subtask {} failed, so the all-or-none run is reverted: {message}",
                failed.index
            ),
        };
    }
    // In window order, no window after one that failed for good can commit in this run: the
    // earlier windows finish, then the later ones are reverted (a later run plans them again).
    let first_reverted = status
        .subtasks
        .iter()
        .filter(|s| s.state == SubtaskState::Reverted)
        .map(|s| s.index)
        .min();
    if in_order && let Some(r) = first_reverted {
        let earlier_active = status.subtasks.iter().any(|s| {
            s.index < r && matches!(s.state, SubtaskState::Pending | SubtaskState::Running)
        });
        let later_open = status.subtasks.iter().any(|s| {
            s.index > r && !matches!(s.state, SubtaskState::Committed | SubtaskState::Reverted)
        });
        if !earlier_active && later_open {
            let failed = status
                .subtasks
                .iter()
                .find(|s| s.index == r)
                .expect("a reverted subtask");
            let (reason, message) = subtask_failure(failed);
            return Step::Abort {
                phase: TaskRunPhase::Failed,
                reason,
                message: format!(
                    "window subtask {r} failed, so the later windows are reverted (the next run plans them again): {message}"
                ),
            };
        }
    }
    let launchable = |s: &&SubtaskStatus| {
        s.state == SubtaskState::Pending
            && !(in_order && first_reverted.is_some_and(|r| s.index > r))
    };
    // A subtask whose job succeeded no longer takes a slot while it waits to be collected.
    let running = status
        .subtasks
        .iter()
        .filter(|s| s.state == SubtaskState::Running)
        .count()
        - succeeded.len();
    if running < settings.parallelism.max(1) as usize
        && let Some(s) = status.subtasks.iter().find(launchable)
    {
        if settings.no_worker.contains(&s.index) {
            return Step::Collect {
                indices: vec![s.index],
            };
        }
        let attempt = s.attempts + 1;
        return Step::Launch {
            index: s.index,
            attempt,
            job: job_name(run, s.index, attempt),
        };
    }
    if !succeeded.is_empty() {
        // Nothing else to wait for: collect what finished now. Other jobs still run: wait a
        // moment for more of them to finish, to commit them together.
        return if running == 0 {
            Step::Collect { indices: succeeded }
        } else {
            Step::WaitToCollect
        };
    }
    let ended = |s: &SubtaskStatus| match s.state {
        SubtaskState::Committed | SubtaskState::Reverted => true,
        SubtaskState::Succeeded => all_or_none,
        _ => false,
    };
    if status.subtasks.iter().all(ended) {
        Step::Close
    } else {
        Step::Wait
    }
}

/// How long a finished subtask may wait for others to finish before it is collected (and
/// committed with them).
pub const COLLECT_DELAY_MS: i64 = 2_000;

/// Subtasks whose jobs finished (`finished_at`, when each finished if known) are collected now
/// when there are at least a quarter of the run's parallelism of them (one, below a
/// parallelism of 8), or when one of them finished [`COLLECT_DELAY_MS`] ago (or at an unknown
/// time, or by a clock that far ahead of ours). Collecting them together makes one Delta commit of
/// them, where a run of many parallel subtasks finishing one by one made one commit each (a
/// commit rewrites the table's snapshot, in proportion to its files).
fn collect_now(
    parallelism: u32,
    finished_at: &[Option<DateTime<Utc>>],
    now: DateTime<Utc>,
) -> bool {
    if finished_at.is_empty() {
        return false;
    }
    let batch = (parallelism / 4).max(1) as usize;
    // A job seen finished after this step's clock reading is a moment ahead of it; one far
    // ahead is another clock's reading, not waited for.
    let delay = Duration::milliseconds(COLLECT_DELAY_MS);
    let waited = |at: &Option<DateTime<Utc>>| match at {
        None => true,
        Some(t) => now - *t >= delay || *t - now >= delay,
    };
    finished_at.len() >= batch || finished_at.iter().any(waited)
}

fn committing(status: &TaskRunStatus, settings: Option<&RunSettings>) -> Step {
    let all_or_none = settings.is_some_and(|s| s.commit_mode == CommitMode::AllOrNone);
    let reverted = status
        .subtasks
        .iter()
        .find(|s| s.state == SubtaskState::Reverted);
    let staged = status
        .subtasks
        .iter()
        .any(|s| s.state == SubtaskState::Succeeded);
    if all_or_none && staged && reverted.is_none() {
        return Step::CommitAll;
    }
    match reverted {
        None => Step::Finish {
            phase: TaskRunPhase::Succeeded,
            reason: Reason::Completed.into(),
            message: format!("{} subtask(s) committed", status.subtasks.len()),
        },
        Some(s) => {
            let (reason, message) = subtask_failure(s);
            let failed = status
                .subtasks
                .iter()
                .filter(|s| s.state == SubtaskState::Reverted)
                .count();
            Step::Finish {
                phase: TaskRunPhase::Failed,
                reason,
                message: format!(
                    "{failed} of {} subtask(s) failed and were reverted; subtask {}: {message}",
                    status.subtasks.len(),
                    s.index
                ),
            }
        }
    }
}

/// Recomputes the counters and `progress` (`ended/total`) from `status.subtasks`.
pub fn recount(status: &mut TaskRunStatus) {
    let count = |st: SubtaskState| status.subtasks.iter().filter(|s| s.state == st).count() as u32;
    status.subtasks_total = status.subtasks.len() as u32;
    status.subtasks_pending = count(SubtaskState::Pending);
    status.subtasks_running = count(SubtaskState::Running);
    status.subtasks_succeeded = count(SubtaskState::Succeeded);
    status.subtasks_failed = count(SubtaskState::Reverted) + count(SubtaskState::Failed);
    status.subtasks_committed = count(SubtaskState::Committed);
    let ended = status.subtasks_committed + status.subtasks_failed;
    status.progress = Some(format!("{ended}/{}", status.subtasks_total));
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn settings(mode: CommitMode) -> RunSettings {
        RunSettings {
            parallelism: 2,
            max_attempts: 2,
            subtask_timeout_ms: 10 * 60_000,
            run_timeout_ms: 60 * 60_000,
            commit_mode: mode,
            no_worker: BTreeSet::new(),
        }
    }

    fn sub(index: u32, state: SubtaskState, attempts: u32) -> SubtaskStatus {
        SubtaskStatus {
            index,
            state,
            attempts,
            job: (attempts > 0).then(|| job_name("r", index, attempts)),
            start_time: (state == SubtaskState::Running).then(|| t(0)),
            ..Default::default()
        }
    }

    fn running(subtasks: Vec<SubtaskStatus>) -> TaskRunStatus {
        TaskRunStatus {
            phase: TaskRunPhase::Running,
            start_time: Some(t(0)),
            subtasks,
            ..Default::default()
        }
    }

    fn facts(now: i64, mode: CommitMode, jobs: &[(u32, JobState)]) -> Facts {
        Facts {
            now: t(now),
            settings: Some(settings(mode)),
            jobs: jobs.iter().cloned().collect(),
            run_timeout_ms: Some(settings(mode).run_timeout_ms),
            table_wait: None,
            validity: None,
            cancel: None,
        }
    }

    #[test]
    fn pending_and_planning_runs_admit_then_plan() {
        let f = facts(0, CommitMode::PerSubtask, &[]);
        assert_eq!(next_step("r", &TaskRunStatus::default(), &f), Step::Admit);
        let planning = TaskRunStatus {
            phase: TaskRunPhase::Planning,
            ..Default::default()
        };
        assert_eq!(next_step("r", &planning, &f), Step::Plan);
    }

    #[test]
    fn a_run_planning_past_its_run_timeout_times_out_naming_the_last_error() {
        let mut planning = TaskRunStatus {
            phase: TaskRunPhase::Planning,
            start_time: Some(t(0)),
            ..Default::default()
        };
        // Before the deadline (an hour), planning goes on, failing or not.
        let f = |now| Facts {
            now: t(now),
            settings: None,
            jobs: BTreeMap::new(),
            run_timeout_ms: Some(60 * 60_000),
            table_wait: None,
            validity: None,
            cancel: None,
        };
        assert_eq!(next_step("r", &planning, &f(60)), Step::Plan);
        planning.last_error = Some(
            "BackendUnavailable: apply status of Table default/t: etcdserver: request is too large"
                .into(),
        );
        assert_eq!(next_step("r", &planning, &f(60)), Step::Plan);
        // Past it, the run times out, naming the last error.
        let step = next_step("r", &planning, &f(61));
        let Step::Abort {
            phase,
            reason,
            message,
        } = &step
        else {
            panic!("{step:?}");
        };
        assert_eq!(*phase, TaskRunPhase::TimedOut);
        assert_eq!(*reason, Reason::PlanningTimedOut);
        assert!(message.contains("runTimeout of 3600s"), "{message}");
        assert!(
            message.ends_with("last error: BackendUnavailable: apply status of Table default/t: etcdserver: request is too large"),
            "{message}"
        );
        planning.last_error = None;
        let step = next_step("r", &planning, &f(61));
        assert!(
            matches!(&step, Step::Abort { message, .. } if message.contains("no planning error was recorded")),
            "{step:?}"
        );
        // Without a known limit (the config could not be read), it keeps planning.
        let unknown = Facts {
            run_timeout_ms: None,
            ..f(61)
        };
        assert_eq!(next_step("r", &planning, &unknown), Step::Plan);
    }

    #[test]
    fn a_run_whose_table_is_not_ready_waits_in_pending_then_fails_past_its_deadline() {
        let wait = |planned| TableWait {
            table: NotReadyTable {
                table: "events-realtime".into(),
                status: "False".into(),
                reason: "SchemaMismatch".into(),
                message: "column session: missing in the Delta table".into(),
            },
            since: Some(t(0)),
            limit_ms: DEFAULT_TABLE_WAIT_MS,
            planned,
        };
        let f = |now, w: Option<TableWait>| Facts {
            now: t(now),
            settings: None,
            jobs: BTreeMap::new(),
            run_timeout_ms: Some(60 * 60_000),
            table_wait: w,
            validity: None,
            cancel: None,
        };
        let waiting = Step::WaitForTable {
            reason: Reason::TableNotReady.into(),
            message: "waiting for Table events-realtime: Ready=False SchemaMismatch: column session: missing in the Delta table".into(),
        };
        let pending = TaskRunStatus::default();
        assert_eq!(next_step("r", &pending, &f(10, Some(wait(false)))), waiting);
        // A run already admitted (not planned) goes back to waiting too.
        let planning = TaskRunStatus {
            phase: TaskRunPhase::Planning,
            start_time: Some(t(0)),
            ..Default::default()
        };
        assert_eq!(next_step("r", &planning, &f(5, Some(wait(false)))), waiting);
        // A run planned already keeps planning (its lineage may be open).
        assert_eq!(
            next_step("r", &planning, &f(5, Some(wait(true)))),
            Step::Plan
        );
        // Past the deadline, it fails naming the table and its condition.
        let step = next_step("r", &pending, &f(11, Some(wait(false))));
        let Step::Finish {
            phase,
            reason,
            message,
        } = &step
        else {
            panic!("{step:?}");
        };
        assert_eq!(*phase, TaskRunPhase::Failed);
        assert_eq!(*reason, Reason::TableNotReady);
        assert!(
            message.starts_with("Table events-realtime was not Ready within 600s")
                && message.contains("Ready=False SchemaMismatch: column session"),
            "{message}"
        );
        // Once the table is Ready, the run is admitted.
        assert_eq!(next_step("r", &pending, &f(5, None)), Step::Admit);
        let no_message = NotReadyTable {
            message: String::new(),
            ..wait(false).table
        };
        assert_eq!(
            no_message.waiting_message(),
            "waiting for Table events-realtime: Ready=False SchemaMismatch"
        );
    }

    #[test]
    fn launches_at_most_parallelism_subtasks_with_deterministic_job_names() {
        let s = running(vec![
            sub(0, SubtaskState::Running, 1),
            sub(1, SubtaskState::Pending, 0),
            sub(2, SubtaskState::Pending, 0),
        ]);
        let f = facts(1, CommitMode::PerSubtask, &[(0, JobState::Running)]);
        assert_eq!(
            next_step("r", &s, &f),
            Step::Launch {
                index: 1,
                attempt: 1,
                job: "r-1".into()
            }
        );
        let s = running(vec![
            sub(0, SubtaskState::Running, 1),
            sub(1, SubtaskState::Running, 1),
            sub(2, SubtaskState::Pending, 0),
        ]);
        let f = facts(
            1,
            CommitMode::PerSubtask,
            &[(0, JobState::Running), (1, JobState::Running)],
        );
        assert_eq!(next_step("r", &s, &f), Step::Wait);
    }

    #[test]
    fn job_names_fit_63_characters_and_keep_the_run_identity() {
        let key = format!(
            "{}-0123456789ab",
            "events-import-with-a-very-long-config-name-".repeat(2)
        );
        for (index, attempt) in [(0, 1), (7, 2), (1234, 11)] {
            let name = job_name(&key, index, attempt);
            assert!(name.len() <= MAX_JOB_NAME, "{name}");
            assert!(name.contains("-0123456789ab-"), "{name}");
            assert!(
                name.ends_with(&format!("-{index}")) || name.ends_with(&format!("-a{attempt}"))
            );
            assert!(name.chars().next().unwrap().is_ascii_alphanumeric());
        }
        assert_eq!(job_name("r-0a1b", 3, 1), "r-0a1b-3");
    }

    #[test]
    fn a_retried_subtask_launches_its_next_attempt_under_a_new_job_name() {
        let s = running(vec![sub(0, SubtaskState::Pending, 1)]);
        let f = facts(1, CommitMode::PerSubtask, &[]);
        assert_eq!(
            next_step("r", &s, &f),
            Step::Launch {
                index: 0,
                attempt: 2,
                job: "r-0-a2".into()
            }
        );
    }

    #[test]
    fn failed_attempt_retries_until_max_attempts_and_bad_input_never_retries() {
        let failed = |code| JobState::Failed {
            exit_code: Some(code),
            message: "boom".into(),
        };
        let s = running(vec![sub(0, SubtaskState::Running, 1)]);
        let step = next_step(
            "r",
            &s,
            &facts(1, CommitMode::PerSubtask, &[(0, failed(1))]),
        );
        assert!(
            matches!(step, Step::AttemptFailed { retry: true, .. }),
            "{step:?}"
        );
        let step = next_step(
            "r",
            &s,
            &facts(1, CommitMode::PerSubtask, &[(0, failed(EXIT_BAD_INPUT))]),
        );
        assert!(
            matches!(step, Step::AttemptFailed { retry: false, .. }),
            "{step:?}"
        );
        let s = running(vec![sub(0, SubtaskState::Running, 2)]);
        let step = next_step(
            "r",
            &s,
            &facts(1, CommitMode::PerSubtask, &[(0, failed(1))]),
        );
        assert!(
            matches!(step, Step::AttemptFailed { retry: false, .. }),
            "{step:?}"
        );
    }

    #[test]
    fn a_vanished_job_counts_as_a_lost_attempt() {
        let s = running(vec![sub(0, SubtaskState::Running, 1)]);
        let step = next_step(
            "r",
            &s,
            &facts(1, CommitMode::PerSubtask, &[(0, JobState::Missing)]),
        );
        assert!(
            matches!(&step, Step::AttemptFailed { reason, retry: true, kill: false, .. } if *reason == Reason::WorkerLost),
            "{step:?}"
        );
    }

    #[test]
    fn subtask_past_its_deadline_is_killed_and_run_past_its_deadline_times_out() {
        let s = running(vec![sub(0, SubtaskState::Running, 1)]);
        let step = next_step(
            "r",
            &s,
            &facts(11, CommitMode::PerSubtask, &[(0, JobState::Running)]),
        );
        assert!(
            matches!(&step, Step::AttemptFailed { reason, kill: true, .. } if *reason == Reason::SubtaskTimeout),
            "{step:?}"
        );
        let step = next_step(
            "r",
            &s,
            &facts(61, CommitMode::PerSubtask, &[(0, JobState::Running)]),
        );
        assert!(
            matches!(
                step,
                Step::Abort {
                    phase: TaskRunPhase::TimedOut,
                    ..
                }
            ),
            "{step:?}"
        );
    }

    #[test]
    fn succeeded_job_is_collected_and_subtasks_without_worker_skip_the_launch() {
        let s = running(vec![sub(0, SubtaskState::Running, 1)]);
        let f = facts(
            1,
            CommitMode::PerSubtask,
            &[(0, JobState::Succeeded { at: None })],
        );
        assert_eq!(next_step("r", &s, &f), Step::Collect { indices: vec![0] });
        let s = running(vec![sub(3, SubtaskState::Pending, 0)]);
        let mut f = facts(1, CommitMode::PerSubtask, &[]);
        f.settings.as_mut().unwrap().no_worker.insert(3);
        assert_eq!(next_step("r", &s, &f), Step::Collect { indices: vec![3] });
    }

    #[test]
    fn a_job_that_just_finished_waits_a_moment_for_others_of_a_wide_run_then_all_are_collected() {
        let mut f = facts(10, CommitMode::PerSubtask, &[]);
        f.settings.as_mut().unwrap().parallelism = 16;
        let finished = |secs_ago: i64| JobState::Succeeded {
            at: Some(t(10) - Duration::seconds(secs_ago)),
        };
        let mut subtasks: Vec<SubtaskStatus> =
            (0..16).map(|i| sub(i, SubtaskState::Running, 1)).collect();
        subtasks.push(sub(16, SubtaskState::Pending, 0));
        let s = running(subtasks);
        for i in 0..16 {
            f.jobs.insert(i, JobState::Running);
        }
        // One finished just now: its slot goes to the next subtask, and it waits.
        f.jobs.insert(0, finished(0));
        assert!(
            matches!(next_step("r", &s, &f), Step::Launch { index: 16, .. }),
            "{:?}",
            next_step("r", &s, &f)
        );
        let mut s = s;
        s.subtasks[16].state = SubtaskState::Running;
        s.subtasks[16].attempts = 1;
        f.jobs.insert(16, JobState::Running);
        assert_eq!(next_step("r", &s, &f), Step::WaitToCollect);
        // Seen finished a moment after this step read the clock: still waits.
        f.jobs.insert(0, finished(-1));
        assert_eq!(next_step("r", &s, &f), Step::WaitToCollect);
        // A quarter of the parallelism finished: collected together at once.
        for i in 1..4 {
            f.jobs.insert(i, finished(0));
        }
        assert_eq!(
            next_step("r", &s, &f),
            Step::Collect {
                indices: vec![0, 1, 2, 3]
            }
        );
        // Fewer, but one finished the collect delay ago: collected.
        f.jobs.insert(3, JobState::Running);
        f.jobs.insert(2, finished(COLLECT_DELAY_MS / 1000));
        assert_eq!(
            next_step("r", &s, &f),
            Step::Collect {
                indices: vec![0, 1, 2]
            }
        );
        // Nothing else running: what finished is collected at once.
        for i in 0..17 {
            f.jobs.insert(i, finished(0));
        }
        let all: Vec<u32> = (0..17).collect();
        assert_eq!(next_step("r", &s, &f), Step::Collect { indices: all });
        f.jobs.clear();
        f.jobs.insert(5, finished(0));
        for st in &mut s.subtasks {
            if st.index != 5 {
                st.state = SubtaskState::Committed;
            }
        }
        assert_eq!(next_step("r", &s, &f), Step::Collect { indices: vec![5] });
    }

    #[test]
    fn every_succeeded_job_is_collected_in_one_step_before_a_failure_is_handled() {
        let s = running(vec![
            sub(0, SubtaskState::Running, 1),
            sub(1, SubtaskState::Running, 1),
            sub(2, SubtaskState::Running, 1),
            sub(3, SubtaskState::Running, 1),
        ]);
        let failed = JobState::Failed {
            exit_code: Some(1),
            message: "boom".into(),
        };
        let jobs = [
            (0, failed),
            (1, JobState::Succeeded { at: None }),
            (2, JobState::Running),
            (3, JobState::Succeeded { at: None }),
        ];
        let f = facts(1, CommitMode::PerSubtask, &jobs);
        assert_eq!(
            next_step("r", &s, &f),
            Step::Collect {
                indices: vec![1, 3]
            }
        );
        // Once those are collected, the failure is next.
        let s = running(vec![
            sub(0, SubtaskState::Running, 1),
            sub(1, SubtaskState::Committed, 1),
            sub(2, SubtaskState::Running, 1),
            sub(3, SubtaskState::Committed, 1),
        ]);
        assert!(
            matches!(next_step("r", &s, &f), Step::AttemptFailed { index: 0, .. }),
            "{:?}",
            next_step("r", &s, &f)
        );
    }

    #[test]
    fn all_or_none_run_aborts_on_the_first_reverted_subtask_and_commits_once_all_staged() {
        let mut failed = sub(1, SubtaskState::Reverted, 1);
        failed.reason = Some("CorruptSegment".into());
        failed.message = Some("bad file".into());
        let s = running(vec![sub(0, SubtaskState::Succeeded, 1), failed]);
        let step = next_step("r", &s, &facts(1, CommitMode::AllOrNone, &[]));
        assert!(
            matches!(&step, Step::Abort { phase: TaskRunPhase::Failed, reason, .. } if reason == "CorruptSegment"),
            "{step:?}"
        );
        let s = running(vec![
            sub(0, SubtaskState::Succeeded, 1),
            sub(1, SubtaskState::Succeeded, 1),
        ]);
        let f = facts(1, CommitMode::AllOrNone, &[]);
        assert_eq!(next_step("r", &s, &f), Step::Close);
        let mut c = s.clone();
        c.phase = TaskRunPhase::Committing;
        assert_eq!(next_step("r", &c, &f), Step::CommitAll);
    }

    #[test]
    fn committing_run_finishes_failed_with_the_workers_reason_when_a_subtask_was_reverted() {
        let mut failed = sub(1, SubtaskState::Reverted, 2);
        failed.reason = Some("SchemaMismatch".into());
        failed.message = Some("column x".into());
        let mut s = running(vec![sub(0, SubtaskState::Committed, 1), failed]);
        s.phase = TaskRunPhase::Committing;
        let step = next_step("r", &s, &facts(1, CommitMode::PerSubtask, &[]));
        assert!(
            matches!(&step, Step::Finish { phase: TaskRunPhase::Failed, reason, message } if reason == "SchemaMismatch" && message.contains("column x")),
            "{step:?}"
        );
        s.subtasks.pop();
        let step = next_step("r", &s, &facts(1, CommitMode::PerSubtask, &[]));
        assert!(
            matches!(
                step,
                Step::Finish {
                    phase: TaskRunPhase::Succeeded,
                    ..
                }
            ),
            "{step:?}"
        );
    }

    #[test]
    fn progress_counts_ended_subtasks_over_all() {
        let mut s = running(vec![
            sub(0, SubtaskState::Committed, 1),
            sub(1, SubtaskState::Reverted, 1),
            sub(2, SubtaskState::Running, 1),
        ]);
        recount(&mut s);
        assert_eq!(s.progress.as_deref(), Some("2/3"));
        assert_eq!(
            (s.subtasks_committed, s.subtasks_failed, s.subtasks_running),
            (1, 1, 1)
        );
        let mut unexplained = sub(1, SubtaskState::Reverted, 1);
        unexplained.message = Some("no reason here".into());
        assert_eq!(
            subtask_failure(&unexplained),
            (
                "SubtaskFailed".to_string(),
                "SubtaskFailed: no reason here".to_string()
            )
        );
    }
}
