//! The steps of a planned run that touch subtasks: launching attempts, collecting results
//! (checked by the commit gate, then committed as the run's commit mode says), failed attempts
//! (retry or revert), aborting (timeout, a failure that ends the run, replacement) and the
//! all-or-none commit. The protocol itself lives in [`super::protocol`]; see
//! [`super::runstep`] for the order of writes that makes each step replay-safe.

use std::collections::BTreeSet;

use minion_contract::{Outcome, SubtaskSpec};

use super::Reason;
use super::gather::{self, Resolved};
use super::protocol::{self, FinishedSubtask, Reverted, RunContext, RunState};
use super::runstep::finish;
use super::stepctx::{Run, StepCtx};
use super::tables::{delete_unreferenced_lists, store_lineage, summarize};
use super::taskrun::Step;
use super::{ControlError, EventType, LaunchRequest};
use crate::api::{SubtaskState, SubtaskStatus, TaskRunPhase, TaskRunStatus};
use crate::commit_gate::{self, GateError};
use crate::generator::{Plan, PlannedSubtask};
use crate::lineage::LineageState;
use crate::model::Execution;

pub(super) fn run_context<'a>(run: &'a Run<'_>, resolved: &'a Resolved) -> RunContext<'a> {
    RunContext {
        namespace: &run.namespace,
        task_run: &run.name,
        key: &run.key,
        config: &resolved.config,
        source: resolved.source.as_ref().map(|s| &s.def),
        destination: &resolved.destination.def,
    }
}

/// The settings a run was planned with (a plan stored before they were frozen: the config's).
pub(super) fn execution<'a>(plan: &'a Plan, resolved: &'a Resolved) -> &'a Execution {
    plan.execution
        .as_ref()
        .unwrap_or(&resolved.config.execution)
}

/// The run state as stored: lineage from the destination's status (as this step knows it:
/// read once, with its own writes; every live entry's lists loaded), watermarks from the log (the plan's where the log has none yet).
pub(super) async fn run_state(
    ctx: &mut StepCtx<'_>,
    resolved: &Resolved,
    plan: &Plan,
) -> Result<RunState, ControlError> {
    let dest = &resolved.destination.def;
    let fresh = ctx.table(&dest.namespace, &dest.name).await?;
    let catalog = ctx.catalogs.get(dest).await?;
    let mut watermarks = gather::watermarks_from_log(catalog, &resolved.config).await?;
    for (level, wm) in &plan.watermarks {
        watermarks.entry(level.clone()).or_insert(*wm);
    }
    Ok(RunState {
        lineage: gather::lineage(&dest.uri, &fresh.status).await?,
        watermarks,
    })
}

/// Writes the lineage (and, after a commit, the catalog summary) into the destination's
/// status: long lists stored beside the table first, lists of entries that ended deleted
/// after.
pub(super) async fn save_lineage(
    ctx: &mut StepCtx<'_>,
    resolved: &Resolved,
    state: &RunState,
    committed: bool,
) -> Result<(), ControlError> {
    let dest = &resolved.destination.def;
    let fresh = ctx.table(&dest.namespace, &dest.name).await?;
    let mut status = fresh.status;
    let unreferenced = store_lineage(&dest.uri, &mut status, &state.lineage).await?;
    if committed {
        let catalog = ctx.catalogs.get(dest).await?;
        summarize(catalog, &dest.name, &mut status)?;
    }
    ctx.write_table_status(&dest.namespace, &dest.name, status)
        .await?;
    delete_unreferenced_lists(&dest.uri, &unreferenced).await;
    Ok(())
}

fn subtask_mut(status: &mut TaskRunStatus, index: u32) -> &mut SubtaskStatus {
    let pos = status
        .subtasks
        .iter()
        .position(|s| s.index == index)
        .expect("steps name subtasks of the status");
    &mut status.subtasks[pos]
}

fn indices(status: &TaskRunStatus, state: SubtaskState) -> BTreeSet<u32> {
    status
        .subtasks
        .iter()
        .filter(|s| s.state == state)
        .map(|s| s.index)
        .collect()
}

fn catalog_error(resolved: &Resolved) -> impl Fn(crate::catalog::CatalogError) -> ControlError {
    let table = resolved.destination.def.name.clone();
    move |source| ControlError::Catalog {
        table: table.clone(),
        source,
    }
}

/// Launch, Collect, AttemptFailed, Abort and CommitAll: the steps that need the stored plan.
pub(super) async fn act(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    resolved: &Resolved,
    plan: &Plan,
    step: &Step,
) -> Result<(), ControlError> {
    let dest = &resolved.destination.def;
    let source = protocol::location(resolved.source.as_ref().map_or(dest, |s| &s.def));
    let destination = protocol::location(dest);
    let exec = execution(plan, resolved);
    let staging_run = run_context(run, resolved).staging_run();
    let planned = |index: u32| -> Result<&PlannedSubtask, ControlError> {
        plan.subtasks
            .iter()
            .find(|s| s.index == index)
            .ok_or_else(|| ControlError::storage(&dest.uri, format!("subtask {index} not in plan")))
    };
    let spec_of = |index: u32, attempt: u32| -> Result<SubtaskSpec, ControlError> {
        Ok(planned(index)?.to_spec(
            &run.namespace,
            &run.name,
            &staging_run,
            attempt,
            source.clone(),
            destination.clone(),
            exec.memory_budget_bytes,
        ))
    };
    let now_ms = ctx.now.timestamp_millis();
    match step {
        Step::Launch {
            index,
            attempt,
            job,
        } => {
            let spec = spec_of(*index, *attempt)?;
            let spec_uri = protocol::write_spec(&spec)
                .await
                .map_err(|e| ControlError::storage(&dest.uri, e))?;
            let request = LaunchRequest {
                namespace: run.namespace.clone(),
                task_run: run.name.clone(),
                subtask: *index,
                kind: minion_contract::SubtaskKind::Process,
                attempt: *attempt,
                job: job.clone(),
                spec_uri: spec_uri.clone(),
                memory_budget_bytes: exec.memory_budget_bytes,
                timeout_ms: exec.subtask_timeout_ms,
            };
            match ctx.backend.launch_subtask(&request).await {
                Ok(()) => {}
                // A refusal (the Tables' storage Secret may not be used) does not go away by
                // retrying: the subtask fails now, with the refusal's reason and message.
                Err(super::BackendError::NotAllowed { reason, message }) => {
                    let step = Step::AttemptFailed {
                        index: *index,
                        reason: reason.to_string(),
                        message,
                        retry: false,
                        kill: false,
                    };
                    return Box::pin(act(ctx, run, resolved, plan, &step)).await;
                }
                Err(e) => return Err(e.into()),
            }
            let s = subtask_mut(&mut run.status, *index);
            s.state = SubtaskState::Running;
            s.attempts = *attempt;
            s.job = Some(job.clone());
            s.spec_uri = Some(spec_uri);
            s.start_time = Some(ctx.now);
            s.reason = None;
            s.message = None;
            ctx.save(run).await?;
            let message = format!("subtask {index} attempt {attempt}: started job {job}");
            ctx.event(run, EventType::Normal, Reason::SubtaskStarted, message)
                .await;
        }
        Step::Collect { index } => {
            let attempts = subtask_mut(&mut run.status, *index).attempts;
            let manifest = if planned(*index)?.needs_worker() {
                let spec = spec_of(*index, attempts)?;
                let failed = |reason: String, message: String| Step::AttemptFailed {
                    index: *index,
                    reason,
                    message,
                    retry: attempts < exec.max_attempts,
                    kill: false,
                };
                let m = match protocol::read_manifest(&spec).await {
                    Ok(m) if m.outcome == Outcome::Succeeded => m,
                    Ok(m) => {
                        let reason = m
                            .reason
                            .map_or(Reason::WorkerFailed.into(), |r| r.as_str().to_string());
                        let step = failed(reason, m.message.unwrap_or_default());
                        return Box::pin(act(ctx, run, resolved, plan, &step)).await;
                    }
                    Err(message) => {
                        let step = failed(Reason::ManifestMissing.into(), message);
                        return Box::pin(act(ctx, run, resolved, plan, &step)).await;
                    }
                };
                // Nothing is committed that does not add up (protocol step 3a).
                match commit_gate::check(planned(*index)?, &spec, &m).await {
                    Ok(()) => Some(m),
                    Err(GateError::Refused(message)) => {
                        let step = failed(Reason::CommitRefused.into(), message);
                        return Box::pin(act(ctx, run, resolved, plan, &step)).await;
                    }
                    Err(e @ GateError::Store(_)) => {
                        return Err(ControlError::storage(&dest.uri, e));
                    }
                }
            } else {
                None
            };
            let (rows_in, rows_out, outputs, bytes_out) =
                manifest.as_ref().map_or((0, 0, 0, 0), |m| {
                    (
                        m.input_rows,
                        m.output_rows,
                        m.outputs.len() as u64,
                        m.outputs.iter().map(|o| o.bytes).sum(),
                    )
                });
            let s = subtask_mut(&mut run.status, *index);
            s.input_rows = rows_in;
            s.output_rows = rows_out;
            s.outputs = outputs;
            s.output_bytes = bytes_out;
            s.completion_time = Some(ctx.now);
            s.state = SubtaskState::Succeeded;
            let newly_skipped = manifest.as_ref().map_or_else(Vec::new, |m| {
                super::skipped::record(&mut run.status, *index, &m.skipped_segments)
            });
            // What may commit now: this subtask alone, the windows it completes, or nothing
            // until the run's closing commit.
            let committed = indices(&run.status, SubtaskState::Committed);
            let staged = indices(&run.status, SubtaskState::Succeeded);
            let batches = protocol::ready_to_commit(plan, &committed, &staged);
            let mut now_committed = Vec::new();
            for batch in batches {
                let mut done: Vec<FinishedSubtask> = Vec::new();
                for i in &batch {
                    let m = if *i == *index {
                        manifest.clone()
                    } else if planned(*i)?.needs_worker() {
                        let attempts = subtask_mut(&mut run.status, *i).attempts;
                        let m = protocol::read_manifest(&spec_of(*i, attempts)?)
                            .await
                            .map_err(|e| ControlError::storage(&dest.uri, e))?;
                        Some(m)
                    } else {
                        None
                    };
                    done.push((*i, m));
                }
                commit(ctx, run, resolved, plan, &done).await?;
                for i in &batch {
                    subtask_mut(&mut run.status, *i).state = SubtaskState::Committed;
                }
                now_committed.extend(batch);
            }
            ctx.save(run).await?;
            let (reason, verb) = if now_committed.contains(index) {
                (Reason::SubtaskCommitted, "committed".to_string())
            } else {
                (Reason::SubtaskSucceeded, "staged".to_string())
            };
            let message = format!(
                "subtask {index}: {rows_in} rows in, {rows_out} rows out in {outputs} segment(s), {verb}"
            );
            ctx.event(run, EventType::Normal, reason, message).await;
            if !newly_skipped.is_empty() {
                let message = super::skipped::message(*index, &source.name, &newly_skipped);
                ctx.event(run, EventType::Warning, Reason::SegmentsSkipped, message)
                    .await;
            }
            let others: Vec<u32> = now_committed.into_iter().filter(|i| i != index).collect();
            if !others.is_empty() {
                let message =
                    format!("staged subtask(s) {others:?} committed after subtask {index}");
                ctx.event(run, EventType::Normal, Reason::SubtaskCommitted, message)
                    .await;
            }
        }
        Step::AttemptFailed {
            index,
            reason,
            message,
            retry,
            kill,
        } => {
            let s = subtask_mut(&mut run.status, *index).clone();
            if *kill && let Some(job) = &s.job {
                ctx.backend.delete_subtask(&run.namespace, job).await?;
            }
            // The worker's own reason and message, when its manifest says more.
            let (mut reason, mut message) = (reason.clone(), message.clone());
            if planned(*index)?.needs_worker()
                && let Ok(m) = protocol::read_manifest(&spec_of(*index, s.attempts.max(1))?).await
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
            if *retry {
                let st = subtask_mut(&mut run.status, *index);
                st.state = SubtaskState::Pending;
                st.reason = Some(reason.clone());
                st.message = Some(message.clone());
                ctx.save(run).await?;
                let m = format!(
                    "subtask {index} attempt {} failed, retrying: {text}",
                    s.attempts
                );
                ctx.event(run, EventType::Warning, Reason::SubtaskRetrying, m)
                    .await;
            } else {
                let mut state = run_state(ctx, resolved, plan).await?;
                let rctx = run_context(run, resolved);
                ctx.backend.check_write("revert a subtask")?;
                let catalog = ctx.catalogs.get(dest).await?;
                let outcome =
                    protocol::revert_subtask(&rctx, catalog, &mut state, *index, &text, now_ms)
                        .await
                        .map_err(catalog_error(resolved))?;
                save_lineage(ctx, resolved, &state, false).await?;
                let st = subtask_mut(&mut run.status, *index);
                st.completion_time = Some(ctx.now);
                if outcome == Reverted::WasCommitted {
                    st.state = SubtaskState::Committed;
                    ctx.save(run).await?;
                    let m = format!("subtask {index}: its commit is in the log, kept");
                    ctx.event(run, EventType::Normal, Reason::SubtaskCommitted, m)
                        .await;
                    return Ok(());
                }
                st.state = SubtaskState::Reverted;
                st.reason = Some(reason.clone());
                st.message = Some(message.clone());
                ctx.save(run).await?;
                let m = format!(
                    "subtask {index} failed after {} attempt(s), reverted: {text}",
                    s.attempts
                );
                ctx.event(run, EventType::Warning, Reason::SubtaskFailed, m)
                    .await;
            }
        }
        Step::Abort {
            phase,
            reason,
            message,
        } => {
            let mut state = run_state(ctx, resolved, plan).await?;
            let before = state.lineage.clone();
            let rctx = run_context(run, resolved);
            ctx.backend.check_write("abort a run")?;
            let catalog = ctx.catalogs.get(dest).await?;
            let text = format!("{reason}: {message}");
            let mut kept = BTreeSet::new();
            // Every subtask of the plan: a run aborted while Planning has none in its status
            // yet, but may have opened their lineage.
            for p in &plan.subtasks {
                let s = run.status.subtasks.iter().find(|s| s.index == p.index);
                if let Some(s) = s
                    && s.state == SubtaskState::Running
                    && let Some(job) = &s.job
                {
                    ctx.backend.delete_subtask(&run.namespace, job).await?;
                }
                let committed = s.is_some_and(|s| s.state == SubtaskState::Committed);
                let open = state
                    .lineage
                    .get(&rctx.lineage_id(p.index))
                    .is_some_and(|e| e.state != LineageState::Completed);
                if !committed && open {
                    let outcome = protocol::revert_subtask(
                        &rctx, catalog, &mut state, p.index, &text, now_ms,
                    )
                    .await
                    .map_err(catalog_error(resolved))?;
                    if outcome == Reverted::WasCommitted {
                        kept.insert(p.index);
                    }
                }
            }
            // Nothing to write when nothing changed (the write may be what keeps failing).
            if state.lineage != before {
                save_lineage(ctx, resolved, &state, false).await?;
            }
            for s in &mut run.status.subtasks {
                if kept.contains(&s.index) {
                    s.state = SubtaskState::Committed;
                } else if s.state != SubtaskState::Committed && s.state != SubtaskState::Reverted {
                    s.state = SubtaskState::Reverted;
                    s.reason = Some(reason.clone());
                    s.message = Some(message.clone());
                    s.completion_time = Some(ctx.now);
                }
            }
            let finish_step = Step::Finish {
                phase: *phase,
                reason: reason.clone(),
                message: message.clone(),
            };
            finish(ctx, run, &finish_step, Some(resolved)).await?;
        }
        Step::CommitAll => {
            let mut done = Vec::new();
            let mut refused = None;
            for s in run
                .status
                .subtasks
                .iter()
                .filter(|s| s.state == SubtaskState::Succeeded)
            {
                let manifest = if planned(s.index)?.needs_worker() {
                    let spec = spec_of(s.index, s.attempts)?;
                    let m = protocol::read_manifest(&spec)
                        .await
                        .map_err(|e| ControlError::storage(&dest.uri, e))?;
                    // Checked when collected; checked again now that it is about to commit
                    // (its outputs could have gone since).
                    match commit_gate::check(planned(s.index)?, &spec, &m).await {
                        Ok(()) => {}
                        Err(GateError::Refused(message)) => refused = Some((s.index, message)),
                        Err(e @ GateError::Store(_)) => {
                            return Err(ControlError::storage(&dest.uri, e));
                        }
                    }
                    Some(m)
                } else {
                    None
                };
                done.push((s.index, manifest));
            }
            if let Some((index, message)) = refused {
                let abort = Step::Abort {
                    phase: TaskRunPhase::Failed,
                    reason: Reason::CommitRefused.into(),
                    message: format!("subtask {index}: {message}"),
                };
                return Box::pin(act(ctx, run, resolved, plan, &abort)).await;
            }
            commit(ctx, run, resolved, plan, &done).await?;
            for s in &mut run.status.subtasks {
                if s.state == SubtaskState::Succeeded {
                    s.state = SubtaskState::Committed;
                }
            }
            ctx.save(run).await?;
            let message = format!(
                "{} subtask(s) committed in one commit",
                run.status.subtasks.len()
            );
            ctx.event(run, EventType::Normal, Reason::Committed, message)
                .await;
        }
        _ => {}
    }
    Ok(())
}

/// One Delta commit of `done`, then lineage and the table summary stored.
async fn commit(
    ctx: &mut StepCtx<'_>,
    run: &Run<'_>,
    resolved: &Resolved,
    plan: &Plan,
    done: &[FinishedSubtask],
) -> Result<(), ControlError> {
    let dest = &resolved.destination.def;
    let mut state = run_state(ctx, resolved, plan).await?;
    let before = indices(&run.status, SubtaskState::Committed);
    let rctx = run_context(run, resolved);
    let now_ms = ctx.now.timestamp_millis();
    ctx.backend.check_write("commit to the catalog")?;
    let catalog = ctx.catalogs.get(dest).await?;
    protocol::commit(&rctx, plan, catalog, &mut state, done, &before, now_ms)
        .await
        .map_err(catalog_error(resolved))?;
    save_lineage(ctx, resolved, &state, true).await
}
