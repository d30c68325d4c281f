//! The validity phase of a SegmentRefresh run: the operator never computes upsert validity
//! itself (an external sort over the whole table, sized by the table, not by the operator's
//! memory). When planning finds a segment without a validity file, the run — still
//! `Planning` — launches one worker subtask of kind validity through the same backend as
//! every subtask (a Job, or a local process), waits for it, and plans from the files it
//! wrote.
//!
//! State lives in the run's `status.validity` ([`ValidityStatus`]), so a restarted loop goes
//! on where it stopped. Order of writes, each step safe to repeat:
//! - launch: the spec (`data/<ns>/<key>/validity/<attempt>/_spec.json`), then the job
//!   (idempotent by name: `<key>-validity[-a<attempt>]`), then the run's status (`Running`);
//!   a loop that dies before the status launches the same attempt again.
//! - collect: the manifest read, then the status (`Succeeded`, with the counts); the next
//!   Plan step reads the validity files.
//! - a failed attempt: its job stopped when it ran out of time, then the status (`Pending`,
//!   the next Plan step launches the next attempt) or, out of attempts, the run `Failed`
//!   (nothing was locked: lineage opens only once the run is planned).
//! - a run that ends while the subtask runs (its runTimeout, concurrencyPolicy Replace, a
//!   table not Ready past the deadline) stops its job (`stop_on_finish`).
//!
//! The validity files are derived data: an attempt rewrites them whole, and a late attempt
//! that finishes after a newer one can only leave counts the planner uses to choose
//! segments; the worker that rewrites segments decides validity itself.

use std::collections::BTreeMap;

use minion_contract::{
    CONTRACT_VERSION, DEFAULT_MAX_RECORDS_PER_SEGMENT, EXIT_BAD_INPUT, Outcome, OutputSpec,
    Processing, SegmentRef, SubtaskKind, SubtaskSpec, TaskType, validity_prefix,
};

use super::gather::Resolved;
use super::protocol;
use super::stepctx::{Run, StepCtx};
use super::subtasks::run_context;
use super::taskrun::{Facts, Step, validity_job_name};
use super::{ControlError, EventType, JobState, LaunchRequest, Reason};
use crate::api::{SubtaskState, TaskRunPhase, TaskRunStatus, ValidityStatus};

/// What the loop observed of a run's validity subtask while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidityFacts {
    /// The state of its job (`None`: the status names no job).
    pub job: Option<JobState>,
    pub max_attempts: u32,
    pub subtask_timeout_ms: i64,
}

/// The step of a Planning run whose validity subtask runs; `None` when none runs (then the
/// run plans, which launches it when files are missing).
pub fn next_step(status: &TaskRunStatus, facts: &Facts) -> Option<Step> {
    let v = status
        .validity
        .as_ref()
        .filter(|v| v.state == SubtaskState::Running)?;
    let Some(f) = &facts.validity else {
        return Some(Step::Wait);
    };
    let retry = v.attempts < f.max_attempts;
    let failed = |reason: Reason, message: String, retry: bool, kill: bool| {
        Some(Step::ValidityFailed {
            reason: reason.into(),
            message,
            retry,
            kill,
        })
    };
    match &f.job {
        Some(JobState::Succeeded { .. }) => Some(Step::CollectValidity),
        Some(JobState::Failed { exit_code, message }) => failed(
            Reason::WorkerFailed,
            message.clone(),
            retry && *exit_code != Some(EXIT_BAD_INPUT),
            false,
        ),
        Some(JobState::Stuck { reason, message }) => failed(*reason, message.clone(), false, true),
        Some(JobState::Missing) => failed(
            Reason::WorkerLost,
            format!(
                "job {} of validity attempt {} disappeared",
                v.job.as_deref().unwrap_or("?"),
                v.attempts
            ),
            retry,
            false,
        ),
        Some(JobState::Pending | JobState::Running) | None => {
            let late = v.start_time.is_some_and(|s| {
                facts.now - s > chrono::Duration::milliseconds(f.subtask_timeout_ms)
            });
            if late {
                failed(
                    Reason::SubtaskTimeout,
                    format!(
                        "validity attempt {} took longer than subtaskTimeout of {}s",
                        v.attempts,
                        f.subtask_timeout_ms / 1000
                    ),
                    retry,
                    true,
                )
            } else {
                Some(Step::Wait)
            }
        }
    }
}

/// The facts of a run's validity subtask while it runs (its job's state), else `None`.
///
/// # Errors
/// The backend cannot tell the job's state.
pub(super) async fn facts(
    ctx: &StepCtx<'_>,
    run: &Run<'_>,
    resolved: &Resolved,
) -> Result<Option<ValidityFacts>, ControlError> {
    let Some(v) = run
        .status
        .validity
        .as_ref()
        .filter(|v| v.state == SubtaskState::Running)
    else {
        return Ok(None);
    };
    let job = match &v.job {
        Some(j) => Some(ctx.backend.subtask_state(&run.namespace, j).await?),
        None => None,
    };
    let e = &resolved.config.execution;
    Ok(Some(ValidityFacts {
        job,
        max_attempts: e.max_attempts.max(1),
        subtask_timeout_ms: e.subtask_timeout_ms,
    }))
}

/// The spec of one attempt: every visible segment of the destination, oldest first.
fn spec(
    run: &Run<'_>,
    resolved: &Resolved,
    segments: Vec<SegmentRef>,
    attempt: u32,
) -> SubtaskSpec {
    let dest = protocol::location(&resolved.destination.def);
    let staging_run = run_context(run, resolved).staging_run();
    SubtaskSpec {
        api_version: CONTRACT_VERSION.to_string(),
        task_type: TaskType::SegmentRefreshTask,
        kind: SubtaskKind::Validity,
        namespace: run.namespace.clone(),
        task_run: run.name.clone(),
        subtask: 0,
        attempt,
        source: dest.clone(),
        destination: dest,
        inputs: segments,
        input_files: Vec::new(),
        context_segments: Vec::new(),
        window: None,
        processing: Processing {
            max_records_per_segment: DEFAULT_MAX_RECORDS_PER_SEGMENT,
            ..Processing::default()
        },
        output: OutputSpec {
            staging_prefix: validity_prefix(&staging_run, attempt),
            segment_name_prefix: None,
            segment_name_postfix: None,
            tags: BTreeMap::new(),
            segment_per_input_file: false,
        },
        memory_budget_bytes: resolved.config.execution.memory_budget_bytes,
    }
}

/// Launches the next attempt of the run's validity subtask over `segments`.
///
/// # Errors
/// The spec cannot be written, the job cannot be created, or the status cannot be saved.
pub(super) async fn launch(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    resolved: &Resolved,
    segments: Vec<SegmentRef>,
) -> Result<(), ControlError> {
    let previous = run.status.validity.clone().unwrap_or_default();
    let attempt = previous.attempts + 1;
    let job = validity_job_name(&run.key, attempt);
    let count = segments.len() as u64;
    let spec = spec(run, resolved, segments, attempt);
    let dest_uri = &resolved.destination.def.uri;
    let spec_uri = protocol::write_spec(&spec)
        .await
        .map_err(|e| ControlError::storage(dest_uri, e))?;
    let exec = &resolved.config.execution;
    let request = LaunchRequest {
        namespace: run.namespace.clone(),
        task_run: run.name.clone(),
        subtask: 0,
        kind: SubtaskKind::Validity,
        attempt,
        job: job.clone(),
        spec_uri: spec_uri.clone(),
        memory_budget_bytes: exec.memory_budget_bytes,
        timeout_ms: exec.subtask_timeout_ms,
    };
    ctx.backend.launch_subtask(&request).await?;
    run.status.validity = Some(ValidityStatus {
        state: SubtaskState::Running,
        job: Some(job.clone()),
        attempts: attempt,
        segments: count,
        spec_uri: Some(spec_uri),
        start_time: Some(ctx.now),
        ..ValidityStatus::default()
    });
    ctx.save(run).await?;
    let message = format!(
        "validity subtask attempt {attempt}: started job {job} over {count} segment(s); the run is planned from the validity files it writes"
    );
    ctx.event(run, EventType::Normal, Reason::SubtaskStarted, message)
        .await;
    Ok(())
}

/// The validity job succeeded: its manifest's counts into status (`Succeeded`), or — no
/// manifest, or a failed one — a failed attempt.
///
/// # Errors
/// The status cannot be saved.
pub(super) async fn collect(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    resolved: &Resolved,
) -> Result<(), ControlError> {
    let Some(v) = run.status.validity.clone() else {
        return Ok(());
    };
    let retry = v.attempts < resolved.config.execution.max_attempts.max(1);
    let manifest = protocol::read_manifest(&spec(run, resolved, Vec::new(), v.attempts)).await;
    let m = match manifest {
        Ok(m) if m.outcome == Outcome::Succeeded => m,
        Ok(m) => {
            let reason = m
                .reason
                .map_or(Reason::WorkerFailed.into(), |r| r.as_str().to_string());
            let retry = retry && !m.reason.is_some_and(|r| r.is_permanent());
            return failed(
                ctx,
                run,
                resolved,
                &reason,
                &m.message.unwrap_or_default(),
                retry,
                false,
            )
            .await;
        }
        Err(message) => {
            let reason: String = Reason::ManifestMissing.into();
            return failed(ctx, run, resolved, &reason, &message, retry, false).await;
        }
    };
    let invalid: u64 = m.validity.iter().map(|c| c.invalid).sum();
    let status = run.status.validity.get_or_insert_with(Default::default);
    status.state = SubtaskState::Succeeded;
    status.rows = m.input_rows;
    status.invalid_rows = invalid;
    status.spilled_bytes = m.peak_spill_bytes.unwrap_or(0);
    status.segments = m.validity.len() as u64;
    status.completion_time = Some(ctx.now);
    status.reason = None;
    status.message = None;
    ctx.save(run).await?;
    let message = format!(
        "validity subtask: {} rows of {} segment(s) read, {invalid} invalid, {} bytes spilled; planning from the validity files",
        m.input_rows,
        m.validity.len(),
        m.peak_spill_bytes.unwrap_or(0)
    );
    ctx.event(run, EventType::Normal, Reason::SubtaskSucceeded, message)
        .await;
    Ok(())
}

/// A failed attempt of the validity subtask: retried (the next Plan step launches the next
/// attempt) or, without `retry`, the run fails with the worker's reason.
///
/// # Errors
/// The job cannot be stopped or the status cannot be saved.
pub(super) async fn failed(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    resolved: &Resolved,
    reason: &str,
    message: &str,
    retry: bool,
    kill: bool,
) -> Result<(), ControlError> {
    let Some(v) = run.status.validity.clone() else {
        return Ok(());
    };
    if kill && let Some(job) = &v.job {
        ctx.backend.delete_subtask(&run.namespace, job).await?;
    }
    // The worker's own reason and message, when its manifest says more.
    let (mut reason, mut message) = (reason.to_string(), message.to_string());
    if let Ok(m) = protocol::read_manifest(&spec(run, resolved, Vec::new(), v.attempts)).await
        && m.outcome == Outcome::Failed
    {
        if let Some(r) = m.reason {
            reason = r.as_str().to_string();
        }
        if let Some(msg) = m.message {
            message = msg;
        }
    }
    let text = format!("{reason}: {message}");
    let status = run.status.validity.get_or_insert_with(Default::default);
    status.reason = Some(reason.clone());
    status.message = Some(message.clone());
    if retry {
        status.state = SubtaskState::Pending;
        ctx.save(run).await?;
        let m = format!(
            "validity subtask attempt {} failed, retrying: {text}",
            v.attempts
        );
        ctx.event(run, EventType::Warning, Reason::SubtaskRetrying, m)
            .await;
        return Ok(());
    }
    status.state = SubtaskState::Failed;
    status.completion_time = Some(ctx.now);
    let step = Step::Finish {
        phase: TaskRunPhase::Failed,
        reason,
        message: format!(
            "the validity subtask failed after {} attempt(s): {text}",
            v.attempts
        ),
    };
    super::runstep::finish(ctx, run, &step, Some(resolved)).await
}

/// A run ending while its validity subtask runs: the job is stopped and the subtask marked
/// `Failed` with the run's reason (called by the run's finish, before its status is saved).
///
/// # Errors
/// The job cannot be stopped.
pub(super) async fn stop_on_finish(
    ctx: &StepCtx<'_>,
    run: &mut Run<'_>,
    reason: &str,
    message: &str,
) -> Result<(), ControlError> {
    let Some(v) = run
        .status
        .validity
        .as_mut()
        .filter(|v| matches!(v.state, SubtaskState::Running | SubtaskState::Pending))
    else {
        return Ok(());
    };
    if v.state == SubtaskState::Running
        && let Some(job) = &v.job
    {
        ctx.backend.delete_subtask(&run.namespace, job).await?;
    }
    v.state = SubtaskState::Failed;
    v.reason = Some(reason.to_string());
    v.message = Some(message.to_string());
    v.completion_time = Some(ctx.now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone, Utc};

    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn planning(state: SubtaskState, attempts: u32) -> TaskRunStatus {
        TaskRunStatus {
            phase: TaskRunPhase::Planning,
            start_time: Some(t(0)),
            validity: Some(ValidityStatus {
                state,
                attempts,
                job: Some(validity_job_name("r", attempts)),
                start_time: Some(t(0)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn facts(now: i64, job: Option<JobState>) -> Facts {
        Facts {
            now: t(now),
            settings: None,
            jobs: BTreeMap::new(),
            run_timeout_ms: Some(60 * 60_000),
            table_wait: None,
            validity: Some(ValidityFacts {
                job,
                max_attempts: 2,
                subtask_timeout_ms: 10 * 60_000,
            }),
            cancel: None,
        }
    }

    fn step(status: &TaskRunStatus, facts: &Facts) -> Step {
        super::super::taskrun::next_step("r", status, facts)
    }

    #[test]
    fn a_planning_run_without_a_running_validity_subtask_plans() {
        let f = facts(1, None);
        assert_eq!(step(&planning(SubtaskState::Succeeded, 1), &f), Step::Plan);
        assert_eq!(step(&planning(SubtaskState::Pending, 1), &f), Step::Plan);
        let none = TaskRunStatus {
            phase: TaskRunPhase::Planning,
            ..Default::default()
        };
        assert_eq!(step(&none, &f), Step::Plan);
    }

    #[test]
    fn a_running_validity_subtask_is_waited_for_then_collected() {
        let s = planning(SubtaskState::Running, 1);
        assert_eq!(step(&s, &facts(1, Some(JobState::Running))), Step::Wait);
        assert_eq!(
            step(&s, &facts(1, Some(JobState::Succeeded { at: None }))),
            Step::CollectValidity
        );
    }

    #[test]
    fn a_failed_validity_attempt_retries_until_max_attempts_and_bad_input_never_retries() {
        let failed = |code| {
            Some(JobState::Failed {
                exit_code: Some(code),
                message: "boom".into(),
            })
        };
        let s = planning(SubtaskState::Running, 1);
        assert!(matches!(
            step(&s, &facts(1, failed(1))),
            Step::ValidityFailed {
                retry: true,
                kill: false,
                ..
            }
        ));
        assert!(matches!(
            step(&s, &facts(1, failed(EXIT_BAD_INPUT))),
            Step::ValidityFailed { retry: false, .. }
        ));
        let last = planning(SubtaskState::Running, 2);
        assert!(matches!(
            step(&last, &facts(1, failed(1))),
            Step::ValidityFailed { retry: false, .. }
        ));
        let lost = step(&s, &facts(1, Some(JobState::Missing)));
        assert!(
            matches!(&lost, Step::ValidityFailed { reason, retry: true, .. } if *reason == Reason::WorkerLost),
            "{lost:?}"
        );
    }

    #[test]
    fn a_validity_subtask_past_its_deadline_is_stopped_and_the_run_past_its_own_times_out() {
        let s = planning(SubtaskState::Running, 1);
        let late = step(&s, &facts(11, Some(JobState::Running)));
        assert!(
            matches!(&late, Step::ValidityFailed { reason, kill: true, retry: true, .. } if *reason == Reason::SubtaskTimeout),
            "{late:?}"
        );
        let timed_out = step(&s, &facts(61, Some(JobState::Running)));
        assert!(
            matches!(
                timed_out,
                Step::Abort {
                    phase: TaskRunPhase::TimedOut,
                    ..
                }
            ),
            "{timed_out:?}"
        );
    }

    #[test]
    fn validity_job_names_are_per_attempt_and_never_a_numbered_subtasks() {
        assert_eq!(validity_job_name("r-0a1b", 1), "r-0a1b-validity");
        assert_eq!(validity_job_name("r-0a1b", 2), "r-0a1b-validity-a2");
        let long = format!("{}-0123456789ab", "x".repeat(80));
        let name = validity_job_name(&long, 3);
        assert!(name.len() <= super::super::taskrun::MAX_JOB_NAME, "{name}");
        assert!(name.ends_with("-0123456789ab-validity-a3"), "{name}");
    }
}
