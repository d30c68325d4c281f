//! The steps of a planned run that touch subtasks: launching attempts, collecting results
//! (per-subtask commits), failed attempts (retry or revert), aborting (timeout, all-or-none
//! failure, replacement) and the all-or-none commit. See [`super::runstep`] for the order of
//! writes that makes each step replay-safe.

use std::collections::BTreeSet;

use minion_contract::Outcome;

use super::gather::{self, Resolved};
use super::runstep::{Run, StepCtx, finish};
use super::tables::{store_lineage, summarize};
use super::taskrun::{Step, subtask_message};
use super::{ControlError, EventType, LaunchRequest};
use crate::api::{SubtaskState, SubtaskStatus, TaskRunPhase, TaskRunStatus};
use crate::commit_gate::{self, GateError};
use crate::generator::{CommitMode, DEFAULT_WATERMARK, Plan};
use crate::lineage::LineageState;
use crate::runner::{self, RunContext, RunState};

pub(super) fn run_context<'a>(run: &'a Run<'_>, resolved: &'a Resolved) -> RunContext<'a> {
    RunContext {
        namespace: &run.namespace,
        task_run: &run.name,
        config: &resolved.config,
        source: resolved.source.as_ref().map(|s| &s.def),
        destination: &resolved.destination.def,
    }
}

/// The run state as stored: lineage from the destination's status (fresh), watermarks from
/// the log (the plan's where the log has none yet), committed windows from storage.
pub(super) async fn run_state(
    ctx: &mut StepCtx<'_>,
    resolved: &Resolved,
    plan: &Plan,
) -> Result<RunState, ControlError> {
    let dest = &resolved.destination.def;
    let fresh = gather::table(ctx.backend, &dest.namespace, &dest.name).await?;
    let catalog = ctx.catalogs.get(dest).await?;
    let mut watermarks = gather::watermarks_from_log(catalog, &resolved.config).await?;
    for (level, wm) in &plan.watermarks {
        watermarks.entry(level.clone()).or_insert(*wm);
    }
    Ok(RunState {
        lineage: crate::lineage::Lineage::new(fresh.status.lineage),
        watermarks,
        committed_windows: gather::read_committed_windows(&dest.uri, &resolved.config).await?,
    })
}

/// Writes the lineage (and, after a commit, the catalog summary) into the destination's
/// status; after a commit of a window task also the committed windows.
pub(super) async fn save_lineage(
    ctx: &mut StepCtx<'_>,
    resolved: &Resolved,
    state: &RunState,
    committed: bool,
) -> Result<(), ControlError> {
    let dest = &resolved.destination.def;
    let fresh = gather::table(ctx.backend, &dest.namespace, &dest.name).await?;
    let mut status = fresh.status;
    store_lineage(&mut status, &state.lineage);
    if committed {
        let catalog = ctx.catalogs.get(dest).await?;
        summarize(catalog, &dest.name, &mut status)?;
        if state.watermarks.contains_key(DEFAULT_WATERMARK) {
            gather::write_committed_windows(&dest.uri, &resolved.config, &state.committed_windows)
                .await?;
        }
    }
    ctx.backend
        .update_table_status(&dest.namespace, &dest.name, &status)
        .await?;
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

/// Launch, Collect, AttemptFailed, Abort and CommitAll: the steps that need the stored plan.
pub(super) async fn act(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    resolved: &Resolved,
    plan: &Plan,
    step: &Step,
) -> Result<(), ControlError> {
    let dest = &resolved.destination.def;
    let source = runner::location(resolved.source.as_ref().map_or(dest, |s| &s.def));
    let destination = runner::location(dest);
    let budget = resolved.config.execution.memory_budget_bytes;
    let planned = |index: u32| {
        plan.subtasks
            .iter()
            .find(|s| s.index == index)
            .ok_or_else(|| ControlError::storage(&dest.uri, format!("subtask {index} not in plan")))
    };
    let spec_of = |index: u32, attempt: u32| -> Result<_, ControlError> {
        Ok(planned(index)?.to_spec(
            &run.namespace,
            &run.name,
            attempt,
            source.clone(),
            destination.clone(),
            budget,
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
            let spec_uri = runner::write_spec(&spec)
                .await
                .map_err(|e| ControlError::storage(&dest.uri, e))?;
            let request = LaunchRequest {
                namespace: run.namespace.clone(),
                task_run: run.name.clone(),
                subtask: *index,
                attempt: *attempt,
                job: job.clone(),
                spec_uri: spec_uri.clone(),
                memory_budget_bytes: budget,
                timeout_ms: resolved.config.execution.subtask_timeout_ms,
            };
            ctx.backend.launch_subtask(&request).await?;
            let s = subtask_mut(&mut run.status, *index);
            s.state = SubtaskState::Running;
            s.attempts = *attempt;
            s.job = Some(job.clone());
            s.spec_uri = Some(spec_uri);
            s.start_time = Some(ctx.now);
            s.message = None;
            ctx.save(run).await?;
            let message = format!("subtask {index} attempt {attempt}: started job {job}");
            ctx.event(run, EventType::Normal, "SubtaskStarted", message)
                .await;
        }
        Step::Collect { index } => {
            let attempts = subtask_mut(&mut run.status, *index).attempts;
            let manifest = if planned(*index)?.needs_worker() {
                let spec = spec_of(*index, attempts)?;
                match runner::read_manifest(&spec).await {
                    Ok(m) if m.outcome == Outcome::Succeeded => {
                        // Nothing is committed that does not add up (protocol step 3a).
                        match commit_gate::check(planned(*index)?, &spec, &m).await {
                            Ok(()) => Some(m),
                            Err(GateError::Refused(message)) => {
                                let failed = Step::AttemptFailed {
                                    index: *index,
                                    reason: commit_gate::REFUSED.into(),
                                    message,
                                    retry: attempts < resolved.config.execution.max_attempts,
                                    kill: false,
                                };
                                return Box::pin(act(ctx, run, resolved, plan, &failed)).await;
                            }
                            Err(e @ GateError::Store(_)) => {
                                return Err(ControlError::storage(&dest.uri, e));
                            }
                        }
                    }
                    Ok(m) => {
                        let failed = Step::AttemptFailed {
                            index: *index,
                            reason: m.reason.map_or("WorkerFailed", |r| r.as_str()).into(),
                            message: m.message.unwrap_or_default(),
                            retry: attempts < resolved.config.execution.max_attempts,
                            kill: false,
                        };
                        return Box::pin(act(ctx, run, resolved, plan, &failed)).await;
                    }
                    Err(message) => {
                        let failed = Step::AttemptFailed {
                            index: *index,
                            reason: "ManifestMissing".into(),
                            message,
                            retry: attempts < resolved.config.execution.max_attempts,
                            kill: false,
                        };
                        return Box::pin(act(ctx, run, resolved, plan, &failed)).await;
                    }
                }
            } else {
                None
            };
            let (rows_in, rows_out, outputs) = manifest.as_ref().map_or((0, 0, 0), |m| {
                (m.input_rows, m.output_rows, m.outputs.len() as u64)
            });
            let committed = plan.commit_mode == CommitMode::PerSubtask;
            if committed {
                commit(ctx, run, resolved, plan, vec![(*index, manifest, attempts)]).await?;
            }
            let s = subtask_mut(&mut run.status, *index);
            s.state = if committed {
                SubtaskState::Committed
            } else {
                SubtaskState::Succeeded
            };
            s.input_rows = rows_in;
            s.output_rows = rows_out;
            s.outputs = outputs;
            s.completion_time = Some(ctx.now);
            ctx.save(run).await?;
            let verb = if committed { "committed" } else { "staged" };
            let message = format!(
                "subtask {index}: {rows_in} rows in, {rows_out} rows out in {outputs} segment(s), {verb}"
            );
            let reason = if committed {
                "SubtaskCommitted"
            } else {
                "SubtaskSucceeded"
            };
            ctx.event(run, EventType::Normal, reason, message).await;
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
                && let Ok(m) = runner::read_manifest(&spec_of(*index, s.attempts.max(1))?).await
                && m.outcome == Outcome::Failed
            {
                if let Some(r) = m.reason {
                    reason = r.as_str().to_string();
                }
                if let Some(msg) = m.message {
                    message = msg;
                }
            }
            let text = subtask_message(&reason, &message);
            if *retry {
                let st = subtask_mut(&mut run.status, *index);
                st.state = SubtaskState::Pending;
                st.message = Some(text.clone());
                ctx.save(run).await?;
                let m = format!(
                    "subtask {index} attempt {} failed, retrying: {text}",
                    s.attempts
                );
                ctx.event(run, EventType::Warning, "SubtaskRetrying", m)
                    .await;
            } else {
                let mut state = run_state(ctx, resolved, plan).await?;
                let rctx = run_context(run, resolved);
                let catalog = ctx.catalogs.get(dest).await?;
                runner::revert_subtask(&rctx, catalog, &mut state, *index, &text, &|| now_ms)
                    .await
                    .map_err(|source| ControlError::Catalog {
                        table: dest.name.clone(),
                        source,
                    })?;
                save_lineage(ctx, resolved, &state, false).await?;
                let st = subtask_mut(&mut run.status, *index);
                st.state = SubtaskState::Reverted;
                st.message = Some(text.clone());
                st.completion_time = Some(ctx.now);
                ctx.save(run).await?;
                let m = format!(
                    "subtask {index} failed after {} attempt(s), reverted: {text}",
                    s.attempts
                );
                ctx.event(run, EventType::Warning, "SubtaskFailed", m).await;
            }
        }
        Step::Abort {
            phase,
            reason,
            message,
        } => {
            let mut state = run_state(ctx, resolved, plan).await?;
            let rctx = run_context(run, resolved);
            let catalog = ctx.catalogs.get(dest).await?;
            let text = subtask_message(reason, message);
            for s in &run.status.subtasks {
                if s.state == SubtaskState::Running
                    && let Some(job) = &s.job
                {
                    ctx.backend.delete_subtask(&run.namespace, job).await?;
                }
                let id = format!("{}-{}", run.name, s.index);
                let open = state
                    .lineage
                    .get(&id)
                    .is_some_and(|e| e.state != LineageState::Completed);
                if s.state != SubtaskState::Committed && open {
                    runner::revert_subtask(&rctx, catalog, &mut state, s.index, &text, &|| now_ms)
                        .await
                        .map_err(|source| ControlError::Catalog {
                            table: dest.name.clone(),
                            source,
                        })?;
                }
            }
            save_lineage(ctx, resolved, &state, false).await?;
            for s in &mut run.status.subtasks {
                if s.state != SubtaskState::Committed && s.state != SubtaskState::Reverted {
                    s.state = SubtaskState::Reverted;
                    s.message = Some(text.clone());
                    s.completion_time = Some(ctx.now);
                }
            }
            let finish_step = Step::Finish {
                phase: *phase,
                reason: reason.clone(),
                message: message.clone(),
            };
            finish(ctx, run, &finish_step).await?;
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
                    let m = runner::read_manifest(&spec)
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
                done.push((s.index, manifest, s.attempts));
            }
            if let Some((index, message)) = refused {
                let abort = Step::Abort {
                    phase: TaskRunPhase::Failed,
                    reason: commit_gate::REFUSED.into(),
                    message: format!("subtask {index}: {message}"),
                };
                return Box::pin(act(ctx, run, resolved, plan, &abort)).await;
            }
            commit(ctx, run, resolved, plan, done).await?;
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
            ctx.event(run, EventType::Normal, "Committed", message)
                .await;
        }
        _ => {}
    }
    Ok(())
}

/// One Delta commit of `done`, then lineage, summary and committed windows stored.
async fn commit(
    ctx: &mut StepCtx<'_>,
    run: &Run<'_>,
    resolved: &Resolved,
    plan: &Plan,
    done: Vec<runner::FinishedSubtask>,
) -> Result<(), ControlError> {
    let dest = &resolved.destination.def;
    let mut state = run_state(ctx, resolved, plan).await?;
    let before: BTreeSet<u32> = run
        .status
        .subtasks
        .iter()
        .filter(|s| s.state == SubtaskState::Committed)
        .map(|s| s.index)
        .collect();
    let rctx = run_context(run, resolved);
    let now_ms = ctx.now.timestamp_millis();
    let catalog = ctx.catalogs.get(dest).await?;
    runner::commit_subtasks(&rctx, plan, catalog, &mut state, &done, &before, &|| now_ms)
        .await
        .map_err(|source| ControlError::Catalog {
            table: dest.name.clone(),
            source,
        })?;
    save_lineage(ctx, resolved, &state, true).await
}
