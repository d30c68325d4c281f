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
use crate::generator::{CommitMode, Plan, PlannedSubtask};
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

fn indices_in(status: &TaskRunStatus, state: SubtaskState) -> BTreeSet<u32> {
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
    let (namespace, name) = (run.namespace.clone(), run.name.clone());
    let spec_of = |index: u32, attempt: u32| -> Result<SubtaskSpec, ControlError> {
        Ok(planned(index)?.to_spec(
            &namespace,
            &name,
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
        Step::Collect { indices } => {
            // Each attempt's manifest, passed by the commit gate (protocol step 3a); an
            // attempt that failed or does not add up is handled as a failed attempt.
            let mut collected: Vec<FinishedSubtask> = Vec::new();
            for index in indices {
                if !planned(*index)?.needs_worker() {
                    collected.push((*index, None));
                    continue;
                }
                let attempts = subtask_mut(&mut run.status, *index).attempts;
                let spec = spec_of(*index, attempts)?;
                let failed = |reason: String, message: String| Step::AttemptFailed {
                    index: *index,
                    reason,
                    message,
                    retry: attempts < exec.max_attempts,
                    kill: false,
                };
                let step = match protocol::read_manifest(&spec).await {
                    Ok(m) if m.outcome == Outcome::Succeeded => {
                        match commit_gate::check(planned(*index)?, &spec, &m).await {
                            Ok(()) => {
                                collected.push((*index, Some(m)));
                                continue;
                            }
                            Err(GateError::Refused(message)) => {
                                failed(Reason::CommitRefused.into(), message)
                            }
                            Err(e @ GateError::Store(_)) => {
                                return Err(ControlError::storage(&dest.uri, e));
                            }
                        }
                    }
                    Ok(m) => {
                        let reason = m
                            .reason
                            .map_or(Reason::WorkerFailed.into(), |r| r.as_str().to_string());
                        failed(reason, m.message.unwrap_or_default())
                    }
                    Err(message) => failed(Reason::ManifestMissing.into(), message),
                };
                Box::pin(act(ctx, run, resolved, plan, &step)).await?;
            }
            if collected.is_empty() {
                return Ok(());
            }
            let mut skipped = Vec::new();
            let mut was = Vec::with_capacity(collected.len());
            for (index, manifest) in &collected {
                let (rows_in, rows_out, outputs, bytes_out) = counts(manifest.as_ref());
                let s = subtask_mut(&mut run.status, *index);
                was.push(s.state);
                s.input_rows = rows_in;
                s.output_rows = rows_out;
                s.outputs = outputs;
                s.output_bytes = bytes_out;
                s.completion_time = Some(ctx.now);
                s.state = SubtaskState::Succeeded;
                if let Some(m) = manifest {
                    let newly =
                        super::skipped::record(&mut run.status, *index, &m.skipped_segments);
                    if !newly.is_empty() {
                        skipped.push((*index, newly));
                    }
                }
            }
            // What may commit now, in ONE commit: the collected subtasks (per subtask), the
            // windows they complete (in window order), or nothing until the run's closing
            // commit (all-or-none).
            let committed = indices_in(&run.status, SubtaskState::Committed);
            let staged = indices_in(&run.status, SubtaskState::Succeeded);
            let ready: Vec<u32> = protocol::ready_to_commit(plan, &committed, &staged)
                .into_iter()
                .flatten()
                .collect();
            let mut done: Vec<FinishedSubtask> = Vec::with_capacity(ready.len());
            for i in &ready {
                let m = match collected.iter().find(|(c, _)| c == i) {
                    Some((_, m)) => m.clone(),
                    None if planned(*i)?.needs_worker() => {
                        let attempts = subtask_mut(&mut run.status, *i).attempts;
                        let m = protocol::read_manifest(&spec_of(*i, attempts)?)
                            .await
                            .map_err(|e| ControlError::storage(&dest.uri, e))?;
                        Some(m)
                    }
                    None => None,
                };
                done.push((*i, m));
            }
            let outcome = commit_each_alone_on_failure(ctx, run, resolved, plan, done).await;
            if outcome.is_err() {
                // Not committed: collected again on the next step, as if not collected yet.
                for ((index, _), was) in collected.iter().zip(was) {
                    let s = subtask_mut(&mut run.status, *index);
                    if s.state != SubtaskState::Committed && ready.contains(index) {
                        s.state = was;
                    }
                }
            }
            ctx.save(run).await?;
            for (index, manifest) in &collected {
                let (rows_in, rows_out, outputs, _) = counts(manifest.as_ref());
                let (reason, verb) = match subtask_mut(&mut run.status, *index).state {
                    SubtaskState::Committed => (Reason::SubtaskCommitted, "committed"),
                    SubtaskState::Succeeded => (Reason::SubtaskSucceeded, "staged"),
                    _ => continue,
                };
                let message = format!(
                    "subtask {index}: {rows_in} rows in, {rows_out} rows out in {outputs} segment(s), {verb}"
                );
                ctx.event(run, EventType::Normal, reason, message).await;
            }
            for (index, newly) in &skipped {
                let message = super::skipped::message(*index, &source.name, newly);
                ctx.event(run, EventType::Warning, Reason::SegmentsSkipped, message)
                    .await;
            }
            let others: Vec<u32> = ready
                .iter()
                .copied()
                .filter(|i| collected.iter().all(|(c, _)| c != i))
                .filter(|i| subtask_mut(&mut run.status, *i).state == SubtaskState::Committed)
                .collect();
            if !others.is_empty() {
                let with: Vec<u32> = collected.iter().map(|(i, _)| *i).collect();
                let message =
                    format!("staged subtask(s) {others:?} committed with subtask(s) {with:?}");
                ctx.event(run, EventType::Normal, Reason::SubtaskCommitted, message)
                    .await;
            }
            outcome?;
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

/// Rows in, rows out, segments out and bytes out of a collected subtask (zeros without a
/// worker).
fn counts(manifest: Option<&minion_contract::ResultManifest>) -> (u64, u64, u64, u64) {
    manifest.map_or((0, 0, 0, 0), |m| {
        (
            m.input_rows,
            m.output_rows,
            m.outputs.len() as u64,
            m.outputs.iter().map(|o| o.bytes).sum(),
        )
    })
}

/// Commits `done` in one commit and marks them Committed. Subtasks that commit on their own
/// (per subtask) are not held back by one that cannot: when the shared commit fails, each is
/// tried alone, and the first error is returned once the others are committed.
async fn commit_each_alone_on_failure(
    ctx: &mut StepCtx<'_>,
    run: &mut Run<'_>,
    resolved: &Resolved,
    plan: &Plan,
    done: Vec<FinishedSubtask>,
) -> Result<(), ControlError> {
    if done.is_empty() {
        return Ok(());
    }
    let alone = plan.commit_mode == CommitMode::PerSubtask && done.len() > 1;
    let first = match commit(ctx, run, resolved, plan, &done).await {
        Ok(()) => {
            for (i, _) in &done {
                subtask_mut(&mut run.status, *i).state = SubtaskState::Committed;
            }
            return Ok(());
        }
        Err(e) if alone => e,
        Err(e) => return Err(e),
    };
    tracing::warn!(task_run = %run.name, error = %first, "shared commit failed, committing each subtask alone");
    let mut error = None;
    for one in done {
        match commit(ctx, run, resolved, plan, std::slice::from_ref(&one)).await {
            Ok(()) => subtask_mut(&mut run.status, one.0).state = SubtaskState::Committed,
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    error.map_or(Ok(()), Err)
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
    let before = indices_in(&run.status, SubtaskState::Committed);
    let rctx = run_context(run, resolved);
    let now_ms = ctx.now.timestamp_millis();
    ctx.backend.check_write("commit to the catalog")?;
    let catalog = ctx.catalogs.get(dest).await?;
    protocol::commit(&rctx, plan, catalog, &mut state, done, &before, now_ms)
        .await
        .map_err(catalog_error(resolved))?;
    save_lineage(ctx, resolved, &state, true).await
}
