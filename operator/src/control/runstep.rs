//! Performs one step of a TaskRun (decided by [`super::taskrun::next_step`]) and writes the
//! run's status after it, so a loop killed anywhere resumes from status and the Delta log.
//!
//! Order of writes in each step, chosen so every crash point replays safely:
//! - Plan: the full plan to object storage, then the lineage entries in the destination
//!   Table's status, then the run's status (`Running`, subtasks `Pending`).
//! - Launch: the spec, then the job (idempotent by name), then the run's status.
//! - Collect: the Delta commit (skipped on replay: its `txn` is in the log), then the Table's
//!   lineage and summary, then the committed windows, then the run's status.
//! - Revert/Abort: the lineage REVERTED in the Table's status, staged outputs deleted, then
//!   the run's status. A run that times out while Planning aborts the same way when its plan
//!   was stored (its lineage may be open), else it just ends.
//! - Validity (Planning, SegmentRefresh of an upsert table lacking validity files): the
//!   spec, then the job, then the run's status naming it; see [`super::validity`].
//! - WaitForTable (Pending, a table not Ready): only the run's status (phase `Pending`,
//!   reason `TableNotReady`) and a Warning Event, when the reason or message changed.
//! - Waiting for an earlier run of a `runAfter` config (Pending, admitted otherwise): only the
//!   run's status (reason `WaitingForRunAfter`, naming that run) and a Normal Event, when
//!   they changed.
//! - A failed Plan step: the error in the run's `lastError` (best effort), for the message of
//!   a run that times out still planning.

use super::gather::{self, Resolved};
use super::protocol;
use super::subtasks::{act, execution, run_context, run_state, save_lineage};
use super::taskrun::{self, Facts, NotReadyTable, RunSettings, Step, TableWait};
use super::{ControlError, EventType, Reason, created_at, name_of, namespace_of};
use crate::api::condition::{COMPLETE, FAILED, PROGRESSING, READY, find_condition, set_condition};
use crate::api::task_run::MAX_SUBTASK_DETAIL;
use crate::api::{PlannedUnit, SubtaskState, SubtaskStatus, TaskRun, TaskRunPhase, TaskRunStatus};
use crate::generator::{self, Plan};
use crate::lineage::LineageState;
use crate::model::ConcurrencyPolicy;
use chrono::{DateTime, Utc};

use super::stepctx::{Run, StepCtx};

fn settings_of(resolved: &Resolved, plan: &Plan) -> RunSettings {
    let e = execution(plan, resolved);
    RunSettings {
        parallelism: e.parallelism,
        max_attempts: e.max_attempts.max(1),
        subtask_timeout_ms: e.subtask_timeout_ms,
        run_timeout_ms: e.run_timeout_ms,
        commit_mode: plan.commit_mode,
        no_worker: plan
            .subtasks
            .iter()
            .filter(|s| !s.needs_worker())
            .map(|s| s.index)
            .collect(),
    }
}

fn conditions(status: &mut TaskRunStatus, generation: Option<i64>, now: DateTime<Utc>) {
    let phase = status.phase;
    let reason = status
        .reason
        .clone()
        .unwrap_or_else(|| phase.as_str().into());
    let message = status.message.clone().unwrap_or_default();
    let progressing = matches!(
        phase,
        TaskRunPhase::Planning | TaskRunPhase::Running | TaskRunPhase::Committing
    );
    // A Pending run with a reason says why it waits (e.g. TableNotReady).
    let (why, detail) = match (&status.reason, phase) {
        (Some(r), TaskRunPhase::Pending) => (r.as_str(), message.as_str()),
        _ => (phase.as_str(), ""),
    };
    let why = why.to_string();
    let detail = detail.to_string();
    let c = &mut status.conditions;
    set_condition(
        c,
        PROGRESSING,
        progressing.into(),
        &why,
        detail,
        generation,
        now,
    );
    if phase.is_finished() {
        let complete = matches!(phase, TaskRunPhase::Succeeded | TaskRunPhase::Skipped);
        set_condition(
            c,
            COMPLETE,
            complete.into(),
            &reason,
            message.clone(),
            generation,
            now,
        );
        // A cancelled run neither completed nor failed.
        let failed = !complete && phase != TaskRunPhase::Cancelled;
        set_condition(c, FAILED, failed.into(), &reason, message, generation, now);
    }
}

/// Performs the next step of `object`; returns the step taken.
///
/// # Errors
/// Backend, catalog or storage failures; the step is retried on the next tick.
pub(super) async fn step(ctx: &mut StepCtx<'_>, object: &TaskRun) -> Result<Step, ControlError> {
    let mut run = Run::new(object);
    if run.status.phase.is_finished() {
        return Ok(Step::Done);
    }
    super::finalize::hold(ctx, object).await?;
    let resolved = match ctx.resolve(object).await {
        Ok(r) => r,
        Err(ControlError::Invalid {
            reason, message, ..
        }) if matches!(
            run.status.phase,
            TaskRunPhase::Pending | TaskRunPhase::Planning
        ) =>
        {
            let step = Step::Finish {
                phase: TaskRunPhase::Failed,
                reason: reason.to_string(),
                message,
            };
            finish(ctx, &mut run, &step, None).await?;
            return Ok(step);
        }
        Err(e) => return Err(e),
    };
    let dest_uri = resolved.destination.def.uri.clone();
    let mut run = Run::load(object, &dest_uri).await?;
    // What a run of a config may leave out of its spec, for `kubectl get` and metrics.
    run.status.task_type = Some(resolved.config.task_type());
    run.status.table = Some(resolved.config.table.clone());
    let plan = match run.status.phase {
        TaskRunPhase::Running | TaskRunPhase::Committing => {
            ctx.plans.read(&dest_uri, &run.dir()).await?
        }
        _ => None,
    };
    let table_wait = match run.status.phase {
        TaskRunPhase::Pending | TaskRunPhase::Planning => match not_ready(&resolved) {
            Some(table) => Some(TableWait {
                table,
                since: created_at(&object.metadata).or(run.status.start_time),
                limit_ms: resolved
                    .config
                    .starting_deadline_ms
                    .unwrap_or(taskrun::DEFAULT_TABLE_WAIT_MS),
                planned: run.status.phase == TaskRunPhase::Planning
                    && gather::read_plan(&dest_uri, &run.dir()).await?.is_some(),
            }),
            None => None,
        },
        _ => None,
    };
    let mut facts = Facts {
        now: ctx.now,
        settings: plan.as_ref().map(|p| settings_of(&resolved, p)),
        jobs: Default::default(),
        run_timeout_ms: Some(match &plan {
            Some(p) => execution(p, &resolved).run_timeout_ms,
            None => resolved.config.execution.run_timeout_ms,
        }),
        table_wait,
        validity: super::validity::facts(ctx, &run, &resolved).await?,
        cancel: cancel_of(object),
    };
    for s in run
        .status
        .subtasks
        .iter()
        .filter(|s| s.state == SubtaskState::Running)
    {
        if let Some(job) = &s.job {
            let state = ctx.backend.subtask_state(&run.namespace, job).await?;
            facts.jobs.insert(s.index, state);
        }
    }
    let step = taskrun::next_step(&run.key, &run.status, &facts);
    let planning = run.status.phase == TaskRunPhase::Planning;
    match (&step, plan) {
        (Step::Admit, _) => {
            if !admit(ctx, &mut run, &resolved).await? {
                return Ok(Step::Wait);
            }
        }
        (Step::WaitForTable { reason, message }, _) => {
            if !wait_for_table(ctx, &mut run, reason, message).await? {
                return Ok(Step::Wait);
            }
        }
        (Step::Plan, _) => {
            if let Err(e) = plan_run(ctx, &mut run, &resolved).await {
                record_planning_error(ctx, object, &e).await;
                return Err(e);
            }
        }
        (Step::Abort { .. }, None) if planning => {
            // Planning past its deadline: revert what the stored plan's lineage opened, if
            // a plan was stored at all.
            match ctx.plans.read(&dest_uri, &run.dir()).await? {
                Some(plan) => act(ctx, &mut run, &resolved, &plan, &step).await?,
                None => {
                    let Step::Abort {
                        phase,
                        reason,
                        message,
                    } = &step
                    else {
                        unreachable!("matched an Abort")
                    };
                    let finish_step = Step::Finish {
                        phase: *phase,
                        reason: reason.clone(),
                        message: message.clone(),
                    };
                    finish(ctx, &mut run, &finish_step, Some(&resolved)).await?;
                }
            }
        }
        (Step::Launch { .. } | Step::Collect { .. } | Step::AttemptFailed { .. }, Some(plan))
        | (Step::Abort { .. } | Step::CommitAll, Some(plan)) => {
            act(ctx, &mut run, &resolved, &plan, &step).await?
        }
        (Step::CollectValidity, _) => super::validity::collect(ctx, &mut run, &resolved).await?,
        (
            Step::ValidityFailed {
                reason,
                message,
                retry,
                kill,
            },
            _,
        ) => {
            super::validity::failed(ctx, &mut run, &resolved, reason, message, *retry, *kill)
                .await?
        }
        (Step::Close, _) => {
            run.status.phase = TaskRunPhase::Committing;
            conditions(&mut run.status, object.metadata.generation, ctx.now);
            ctx.save(&mut run).await?;
        }
        (Step::Finish { .. }, _) => finish(ctx, &mut run, &step, Some(&resolved)).await?,
        (Step::Wait | Step::WaitToCollect | Step::Done, _) => {}
        (_, None) => {
            return Err(ControlError::storage(
                &gather::plan_uri(&dest_uri, &run.dir()),
                "the run's stored plan is missing",
            ));
        }
    }
    Ok(step)
}

/// Why `object` is to end now: deleted (its finalizer holds it until the run is reverted),
/// or `spec.cancel`.
fn cancel_of(object: &TaskRun) -> Option<taskrun::Cancel> {
    if object.metadata.deletion_timestamp.is_some() {
        Some(taskrun::Cancel {
            reason: Reason::Deleted,
            message: "the TaskRun was deleted: its jobs are stopped and what it staged and did not commit is reverted".into(),
        })
    } else if object.spec.cancel {
        Some(taskrun::Cancel {
            reason: Reason::Cancelled,
            message: "spec.cancel is true: the jobs are stopped and what the run staged and did not commit is reverted".into(),
        })
    } else {
        None
    }
}

/// The first table of the run (source, then destination) whose `Ready` condition is there
/// and not `True`. A table not reconciled yet (no condition) counts as Ready: planning reads
/// its catalog and reports what fails.
fn not_ready(resolved: &Resolved) -> Option<NotReadyTable> {
    resolved
        .source
        .iter()
        .chain(std::iter::once(&resolved.destination))
        .find_map(|t| {
            let c = find_condition(&t.status.conditions, READY)?;
            (c.status != crate::api::ConditionStatus::True).then(|| NotReadyTable {
                table: t.def.name.clone(),
                status: c.status.as_str().to_string(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
        })
}

/// A table of the run is not Ready: the run is (again) `Pending` with `reason` and
/// `message`, with a Warning Event. Writes only when the phase, reason or message changes;
/// returns whether it wrote.
async fn wait_for_table(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    reason: &str,
    message: &str,
) -> Result<bool, ControlError> {
    wait_pending(ctx, run, reason, message, EventType::Warning).await
}

/// Keeps `run` Pending with `reason` and `message` and records an Event, when either changed;
/// whether anything was written.
async fn wait_pending(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    reason: &str,
    message: &str,
    event: EventType,
) -> Result<bool, ControlError> {
    if run.status.phase == TaskRunPhase::Pending
        && run.status.reason.as_deref() == Some(reason)
        && run.status.message.as_deref() == Some(message)
    {
        return Ok(false);
    }
    run.status.phase = TaskRunPhase::Pending;
    run.status.reason = Some(reason.to_string());
    run.status.message = Some(message.to_string());
    conditions(&mut run.status, run.object.metadata.generation, ctx.now);
    ctx.save(run).await?;
    ctx.event_passing(run, event, reason, message.to_string())
        .await;
    Ok(true)
}

/// Keeps why planning failed in the run's status (`lastError`), for the message of a run
/// that times out still planning. Best effort: the status as read, written only when the
/// error is new (a failing write is left to the next attempt).
async fn record_planning_error(ctx: &mut StepCtx<'_>, object: &TaskRun, e: &ControlError) {
    let mut status = object.status.clone().unwrap_or_default();
    let text = format!("{}: {e}", e.reason());
    if status.phase != TaskRunPhase::Planning || status.last_error.as_deref() == Some(text.as_str())
    {
        return;
    }
    status.last_error = Some(text);
    let namespace = namespace_of(&object.metadata);
    let name = name_of(&object.metadata);
    if let Err(e) = ctx.write_run_status(&namespace, &name, status).await {
        tracing::warn!(task_run = %name, error = %e, "could not record the planning error");
    }
}

/// The first unfinished run, created before `run`, of a config that `run`'s config names in
/// `runAfter` and that writes the same table; with that config's name.
fn first_to_follow<'a>(
    runs: &'a [TaskRun],
    run: &Run<'_>,
    resolved: &Resolved,
    mine: &(Option<DateTime<Utc>>, String),
) -> Option<(&'a TaskRun, String)> {
    let names = &resolved.config.run_after;
    if names.is_empty() {
        return None;
    }
    let mut candidates: Vec<(&TaskRun, String)> = runs
        .iter()
        .filter(|r| namespace_of(&r.metadata) == run.namespace)
        .filter(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_finished()))
        .filter(|r| (created_at(&r.metadata), name_of(&r.metadata)) < *mine)
        .filter_map(|r| {
            let config = r.spec.config_ref.as_ref()?;
            // Only runs of the same table: a run's table is in its status once it is stepped,
            // in its spec when it names it.
            let table = r
                .status
                .as_ref()
                .and_then(|s| s.table.clone())
                .or_else(|| (!r.spec.table.is_empty()).then(|| r.spec.table.clone()));
            let same_table = table.is_none_or(|t| t == resolved.config.table);
            (names.contains(config) && same_table).then(|| (r, config.clone()))
        })
        .collect();
    candidates.sort_by_key(|(r, _)| (created_at(&r.metadata), name_of(&r.metadata)));
    candidates.into_iter().next()
}

/// Pending → Planning, or Skipped by the concurrency policy, or still Pending behind a
/// `runAfter` run; whether anything changed.
async fn admit(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    resolved: &Resolved,
) -> Result<bool, ControlError> {
    let mine = (created_at(&run.object.metadata), run.name.clone());
    // The policy decides on a fresh list, not the tick's: a run someone created since the
    // tick listed (within the same second, on an API server) may come before this one, and
    // both must never be active at once. Once per run, only for runs of a config.
    let fresh = match (
        &run.object.spec.config_ref,
        resolved.config.run_after.is_empty(),
    ) {
        (None, true) => Vec::new(),
        _ => ctx.backend.list_task_runs().await?,
    };
    let earlier: Vec<&TaskRun> = match &run.object.spec.config_ref {
        Some(config) => fresh
            .iter()
            .filter(|r| namespace_of(&r.metadata) == run.namespace)
            .filter(|r| r.spec.config_ref.as_deref() == Some(config.as_str()))
            .filter(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_finished()))
            .filter(|r| (created_at(&r.metadata), name_of(&r.metadata)) < mine)
            .collect(),
        None => Vec::new(),
    };
    if let Some(first) = earlier.first() {
        match resolved.config.concurrency_policy {
            ConcurrencyPolicy::Forbid => {
                let step = Step::Finish {
                    phase: TaskRunPhase::Skipped,
                    reason: generator::NoTaskReason::PreviousRunIncomplete
                        .as_str()
                        .into(),
                    message: format!(
                        "earlier run {} of {} is still incomplete (concurrencyPolicy Forbid)",
                        name_of(&first.metadata),
                        resolved.config.name
                    ),
                };
                finish(ctx, run, &step, Some(resolved)).await?;
                return Ok(true);
            }
            ConcurrencyPolicy::Replace => {
                for other in earlier {
                    replace(ctx, other, &run.name).await?;
                }
            }
        }
    }
    // `runAfter`: an earlier unfinished run of a named config of the same table comes first.
    if let Some((other, config)) = first_to_follow(&fresh, run, resolved, &mine) {
        let phase = other
            .status
            .as_ref()
            .map_or("Pending", |s| s.phase.as_str());
        let message = format!(
            "waiting for TaskRun {} of MinionTaskConfig {config} to finish ({phase}): \
             spec.runAfter of {} names it",
            name_of(&other.metadata),
            resolved.config.name
        );
        return wait_pending(
            ctx,
            run,
            Reason::WaitingForRunAfter.as_str(),
            &message,
            EventType::Normal,
        )
        .await;
    }
    run.status.phase = TaskRunPhase::Planning;
    run.status.start_time = Some(ctx.now);
    // No longer waiting (e.g. for a table).
    run.status.reason = None;
    run.status.message = None;
    conditions(&mut run.status, run.object.metadata.generation, ctx.now);
    ctx.save(run).await?;
    ctx.event(
        run,
        EventType::Normal,
        Reason::Planning,
        "planning the run".into(),
    )
    .await;
    Ok(true)
}

/// Aborts an earlier run in favour of `by` (concurrencyPolicy Replace).
async fn replace(ctx: &mut StepCtx<'_>, other: &TaskRun, by: &str) -> Result<(), ControlError> {
    let abort = Step::Abort {
        phase: TaskRunPhase::Failed,
        reason: Reason::ReplacedByNewerRun.into(),
        message: format!("replaced by {by} (concurrencyPolicy Replace)"),
    };
    let resolved = ctx.resolve(other).await?;
    let dest_uri = resolved.destination.def.uri.clone();
    let mut run = Run::load(other, &dest_uri).await?;
    match ctx.plans.read(&dest_uri, &run.dir()).await? {
        Some(plan) => act(ctx, &mut run, &resolved, &plan, &abort).await,
        None => finish(ctx, &mut run, &abort, Some(&resolved)).await,
    }
}

/// The watermarks of a plan with nothing to do, committed to the destination's log (see
/// [`protocol::commit_watermarks`]); those moved, by level.
async fn store_watermarks(
    ctx: &mut StepCtx<'_>,
    run: &Run<'_>,
    resolved: &Resolved,
    plan: &Plan,
) -> Result<Vec<(String, i64)>, ControlError> {
    if plan.watermarks.is_empty() {
        return Ok(Vec::new());
    }
    let dest = &resolved.destination.def;
    let stored = {
        let catalog = ctx.catalogs.get(dest).await?;
        gather::watermarks_from_log(catalog, &resolved.config).await?
    };
    let ahead = plan
        .watermarks
        .iter()
        .any(|(level, wm)| stored.get(level).is_none_or(|s| s < wm));
    if !ahead {
        return Ok(Vec::new());
    }
    ctx.backend
        .check_write("commit watermarks to the catalog")?;
    let catalog = ctx.catalogs.get(dest).await?;
    let rctx = run_context(run, resolved);
    protocol::commit_watermarks(&rctx, plan, catalog, &stored)
        .await
        .map_err(|source| ControlError::Catalog {
            table: dest.name.clone(),
            source,
        })
}

/// Planning → Running (plan stored, lineage open), or Skipped with the generator's reason.
async fn plan_run(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    resolved: &Resolved,
) -> Result<(), ControlError> {
    let dest = &resolved.destination.def;
    let plan = match ctx.plans.read(&dest.uri, &run.dir()).await? {
        Some(plan) => plan,
        None => {
            let incomplete =
                gather::incomplete_runs(ctx.runs, &resolved.config, Some(run.object), ctx.now);
            // Once the run's validity subtask has run, it plans from the files it wrote.
            let computed = run
                .status
                .validity
                .as_ref()
                .is_some_and(|v| v.state == SubtaskState::Succeeded);
            let source = gather::watermark_source(ctx.backend, &resolved.config, ctx.runs).await?;
            let gathered = gather::generator_input(
                ctx.catalogs,
                resolved,
                incomplete,
                ctx.now.timestamp_millis(),
                computed,
                source,
            )
            .await?;
            let input = match gathered {
                gather::Gathered::Input(input) => input,
                gather::Gathered::NeedsValidity { segments } => {
                    return super::validity::launch(ctx, run, resolved, segments).await;
                }
            };
            let mut plan = match generator::plan(&input) {
                Ok(p) => p,
                Err(e) => {
                    let step = Step::Finish {
                        phase: TaskRunPhase::Failed,
                        reason: e.reason().into(),
                        message: e.to_string(),
                    };
                    return finish(ctx, run, &step, Some(resolved)).await;
                }
            };
            if let Some(skip) = plan.skip.as_ref().filter(|_| plan.is_empty()) {
                let mut message = skip.message.clone();
                let moved = store_watermarks(ctx, run, resolved, &plan).await?;
                if !moved.is_empty() {
                    let moved: Vec<String> = moved
                        .iter()
                        .map(|(level, wm)| {
                            let level = if level.is_empty() { "watermark" } else { level };
                            format!("{level} = {}", generator::fmt_ms(*wm))
                        })
                        .collect();
                    message.push_str(&format!("; stored {}", moved.join(", ")));
                }
                let step = Step::Finish {
                    phase: TaskRunPhase::Skipped,
                    reason: skip.reason.as_str().into(),
                    message,
                };
                return finish(ctx, run, &step, Some(resolved)).await;
            }
            // The run keeps the settings it is planned with.
            plan.execution = Some(resolved.config.execution.clone());
            ctx.plans.write(&dest.uri, &run.dir(), plan).await?
        }
    };
    let mut state = run_state(ctx, resolved, &plan).await?;
    let now_ms = ctx.now.timestamp_millis();
    let rctx = run_context(run, resolved);
    let catalog = ctx.catalogs.get(dest).await?;
    // Subtasks commit only once the run is Running: a run still Planning has committed none.
    let may_have_committed = matches!(
        run.status.phase,
        TaskRunPhase::Running | TaskRunPhase::Committing
    );
    let opened = protocol::open_lineage(
        &rctx,
        &plan,
        catalog,
        &mut state,
        may_have_committed,
        now_ms,
    )
    .await;
    let already = match opened {
        Ok(already) => already,
        Err(e) => {
            // Undo what this run opened before the refusal, then fail it.
            for s in &plan.subtasks {
                let id = rctx.lineage_id(s.index);
                if state
                    .lineage
                    .get(&id)
                    .is_some_and(|e| e.state == LineageState::InProgress)
                {
                    let _ = state.lineage.revert(&id, e.to_string(), now_ms);
                }
            }
            save_lineage(ctx, resolved, &state, false).await?;
            let step = Step::Finish {
                phase: TaskRunPhase::Failed,
                reason: e.reason().into(),
                message: e.to_string(),
            };
            return finish(ctx, run, &step, Some(resolved)).await;
        }
    };
    save_lineage(ctx, resolved, &state, false).await?;
    run.status.plan = plan
        .subtasks
        .iter()
        .take(MAX_SUBTASK_DETAIL)
        .map(|s| {
            let w = s.window.or(s.bucket);
            PlannedUnit {
                subtask: s.index,
                window_start_ms: w.map(|w| w.start_ms),
                window_end_ms: w.map(|w| w.end_ms),
                level: s.level.clone(),
                partition: s.partition,
                inputs: (s.inputs.len() + s.input_files.len()) as u64,
                estimated_rows: Some(s.estimated_rows),
            }
        })
        .collect();
    run.status.subtasks = plan
        .subtasks
        .iter()
        .map(|s| SubtaskStatus {
            index: s.index,
            state: if already.contains(&s.index) {
                SubtaskState::Committed
            } else {
                SubtaskState::Pending
            },
            inputs: (s.inputs.len() + s.input_files.len()) as u64,
            ..Default::default()
        })
        .collect();
    run.status.watermark_before = state.watermarks.values().copied().min();
    run.status.phase = TaskRunPhase::Running;
    run.status.last_error = None;
    conditions(&mut run.status, run.object.metadata.generation, ctx.now);
    ctx.save(run).await?;
    let message = format!(
        "planned {} subtask(s), ~{} rows; plan at {}",
        plan.subtasks.len(),
        plan.estimated_rows(),
        gather::plan_uri(&dest.uri, &run.dir())
    );
    ctx.event(run, EventType::Normal, Reason::Running, message)
        .await;
    Ok(())
}

/// Ends a run in `Step::Finish`'s phase; `resolved` is the run as this step resolved it (a
/// succeeded run's watermark is read through it; without it the run is resolved again).
pub(super) async fn finish(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    step: &Step,
    resolved: Option<&Resolved>,
) -> Result<(), ControlError> {
    let Step::Finish {
        phase,
        reason,
        message,
    } = step
    else {
        return Ok(());
    };
    super::validity::stop_on_finish(ctx, run, reason, message).await?;
    run.status.phase = *phase;
    run.status.reason = Some(reason.clone());
    run.status.message = Some(message.clone());
    run.status.completion_time = Some(ctx.now);
    run.status.start_time.get_or_insert(ctx.now);
    run.status.last_error = None;
    let again;
    let resolved = match resolved {
        Some(r) => Some(r),
        None if *phase == TaskRunPhase::Succeeded => {
            again = ctx.resolve(run.object).await.ok();
            again.as_ref()
        }
        None => None,
    };
    if *phase == TaskRunPhase::Succeeded
        && let Some(resolved) = resolved
    {
        let catalog = ctx.catalogs.get(&resolved.destination.def).await?;
        let wms = gather::watermarks_from_log(catalog, &resolved.config).await?;
        run.status.watermark_after = wms.values().copied().min();
    }
    conditions(&mut run.status, run.object.metadata.generation, ctx.now);
    ctx.save(run).await?;
    let type_ = match phase {
        TaskRunPhase::Succeeded | TaskRunPhase::Skipped => EventType::Normal,
        _ => EventType::Warning,
    };
    let reason_text = match phase {
        TaskRunPhase::Succeeded => Reason::Succeeded.into(),
        _ => reason.clone(),
    };
    ctx.event_passing(
        run,
        type_,
        &reason_text,
        format!("{}: {message}", phase.as_str()),
    )
    .await;
    Ok(())
}
