//! Executes one planned run through the commit protocol (DESIGN §3), on whatever executes
//! subtasks: the worker in this process, a local worker process, or (later) a Job.
//!
//! Steps, in order:
//! 1. open one IN_PROGRESS lineage entry per subtask (locks its inputs) — before any worker;
//! 2. write each subtask's spec next to its staged outputs and execute it, at most
//!    `parallelism` at once, retrying up to `max_attempts`;
//! 3. per finished subtask (or all together for [`CommitMode::AllOrNone`]): read the result
//!    manifest, make ONE Delta commit removing the inputs, adding the outputs and carrying the
//!    subtask's run identity (and the advanced watermark) as `txn`s, then mark the lineage
//!    entry COMPLETED and advance the watermark in the run state;
//! 4. a subtask out of attempts is reverted: lineage REVERTED, staged outputs deleted, the
//!    watermark unchanged.
//!
//! A commit whose `txn` is already in the log is not made again (crash recovery): the catalog
//! reports `already_committed` and only the state is finished.
//!
//! The steps are public on their own — [`open_lineage`], [`write_spec`], [`read_manifest`],
//! [`commit_subtasks`], [`revert_subtask`] — so the control loop (`crate::control`) runs the
//! same protocol one persisted step at a time; [`execute_run`] chains them in one call.
//!
//! What it may touch: the destination catalog, the staged prefixes of this run, and the
//! [`RunState`] it is given (the caller persists it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;

use futures::StreamExt;
use minion_contract::{
    MergeType, Outcome, ResultManifest, SegmentRef, SubtaskSpec, TableLocation, TimeWindow,
};

use crate::catalog::{AppTxn, Catalog, CatalogError, Replacement, app_id};
use crate::generator::{CommitMode, DEFAULT_WATERMARK, Plan, PlannedSubtask, advance_watermark};
use crate::lineage::{Lineage, LineageError};
use crate::model::{TableDef, TaskConfig};

/// Executes one attempt of one subtask and returns its result manifest.
pub trait SubtaskExecutor: Send + Sync {
    fn execute<'a>(
        &'a self,
        spec_uri: &'a str,
        spec: &'a SubtaskSpec,
    ) -> Pin<Box<dyn Future<Output = Result<ResultManifest, String>> + Send + 'a>>;
}

/// Runs the worker library in this process.
#[derive(Clone, Debug, Default)]
pub struct InProcessExecutor {
    pub options: minion_worker::RunOptions,
}

impl SubtaskExecutor for InProcessExecutor {
    fn execute<'a>(
        &'a self,
        _spec_uri: &'a str,
        spec: &'a SubtaskSpec,
    ) -> Pin<Box<dyn Future<Output = Result<ResultManifest, String>> + Send + 'a>> {
        Box::pin(async move {
            minion_worker::run_subtask(spec, &self.options)
                .await
                .map_err(|e| format!("{}: {e}", e.reason().as_str()))
        })
    }
}

/// What the run reads and writes besides the catalog: the destination's lineage and the
/// config's watermarks. The caller loads it from status and stores it back after each step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    pub lineage: Lineage,
    /// Watermarks by level (`""` for single-watermark task types).
    pub watermarks: BTreeMap<String, i64>,
    /// SegmentImport: windows committed beyond the watermark.
    pub committed_windows: Vec<TimeWindow>,
}

/// The tables and identity of one run.
pub struct RunContext<'a> {
    pub namespace: &'a str,
    pub task_run: &'a str,
    pub config: &'a TaskConfig,
    pub source: Option<&'a TableDef>,
    pub destination: &'a TableDef,
}

/// How each subtask ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubtaskResult {
    Committed {
        input_rows: u64,
        output_rows: u64,
        outputs: usize,
        attempts: u32,
        /// The commit was already in the log (replayed after a crash).
        already_committed: bool,
    },
    Reverted {
        attempts: u32,
        message: String,
    },
}

/// The outcome of [`execute_run`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutcome {
    pub subtasks: BTreeMap<u32, SubtaskResult>,
}

impl RunOutcome {
    pub fn succeeded(&self) -> bool {
        self.subtasks
            .values()
            .all(|r| matches!(r, SubtaskResult::Committed { .. }))
    }

    pub fn failure_message(&self) -> Option<String> {
        self.subtasks.iter().find_map(|(i, r)| match r {
            SubtaskResult::Reverted { message, .. } => Some(format!("subtask {i}: {message}")),
            SubtaskResult::Committed { .. } => None,
        })
    }

    pub fn rows(&self) -> (u64, u64) {
        self.subtasks.values().fold((0, 0), |(i, o), r| match r {
            SubtaskResult::Committed {
                input_rows,
                output_rows,
                ..
            } => (i + input_rows, o + output_rows),
            SubtaskResult::Reverted { .. } => (i, o),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("TaskRun {task_run}: could not open its lineage: {source}")]
    Lineage {
        task_run: String,
        #[source]
        source: LineageError,
    },
    #[error("TaskRun {task_run}: catalog of table {table}: {source}")]
    Catalog {
        task_run: String,
        table: String,
        #[source]
        source: CatalogError,
    },
    #[error(
        "TaskRun {task_run}: could not write the spec of subtask {subtask} to {uri}: {message}"
    )]
    Spec {
        task_run: String,
        subtask: u32,
        uri: String,
        message: String,
    },
}

impl RunError {
    /// Stable reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            RunError::Lineage { source, .. } => source.reason(),
            RunError::Catalog { source, .. } => source.reason(),
            RunError::Spec { .. } => "SpecWriteFailed",
        }
    }
}

/// Where a table is, as a subtask spec names it.
pub fn location(def: &TableDef) -> TableLocation {
    TableLocation {
        name: def.name.clone(),
        uri: def.uri.clone(),
        schema: def.schema.clone(),
    }
}

/// Whether a subtask's commit changes data (false for a pure rearrangement of rows).
fn changes_data(s: &PlannedSubtask) -> bool {
    let p = &s.processing;
    !(s.replaces_inputs
        && s.deletes.is_empty()
        && p.merge_type == MergeType::Concat
        && p.round_bucket_ms.is_none()
        && p.erase_dimension_values.is_empty()
        && p.purge_predicate.is_none()
        && !p.drop_invalid_upsert_rows
        && s.window.is_none())
}

/// Runs `plan` to the end: every subtask committed or reverted.
///
/// # Guarantees
/// - No worker starts before every lineage entry of the run is IN_PROGRESS.
/// - Each subtask's rows reach the destination in exactly one Delta commit, whose `txn`
///   (`minion.dev/<ns>/<run>/<subtask>`) makes a replay after a crash a no-op.
/// - A failed subtask leaves nothing staged and its inputs unlocked.
///
/// # Errors
/// Lineage refused (inputs locked or gone) before anything ran; catalog failures.
pub async fn execute_run(
    ctx: &RunContext<'_>,
    plan: &Plan,
    catalog: &mut Catalog,
    state: &mut RunState,
    executor: &dyn SubtaskExecutor,
    now_ms: impl Fn() -> i64,
) -> Result<RunOutcome, RunError> {
    let catalog_err = |source| RunError::Catalog {
        task_run: ctx.task_run.to_string(),
        table: ctx.destination.name.clone(),
        source,
    };
    let already_committed: BTreeMap<u32, SubtaskResult> =
        open_lineage(ctx, plan, catalog, state, &now_ms)
            .await?
            .into_iter()
            .map(|index| {
                (
                    index,
                    SubtaskResult::Committed {
                        input_rows: 0,
                        output_rows: 0,
                        outputs: 0,
                        attempts: 0,
                        already_committed: true,
                    },
                )
            })
            .collect();

    // 2. Execute, at most `parallelism` at once.
    let source = location(ctx.source.unwrap_or(ctx.destination));
    let destination = location(ctx.destination);
    let parallelism = ctx.config.execution.parallelism.max(1) as usize;
    let max_attempts = ctx.config.execution.max_attempts.max(1);
    let budget = ctx.config.execution.memory_budget_bytes;
    let settings = Attempts {
        source: &source,
        destination: &destination,
        max_attempts,
        budget,
    };
    let skip: Vec<u32> = already_committed.keys().copied().collect();
    let mut finished = futures::stream::iter(
        plan.subtasks
            .iter()
            .filter(|s| !skip.contains(&s.index))
            .map(|s| run_attempts(ctx, &settings, executor, s)),
    )
    .buffer_unordered(parallelism);

    let mut outcome = RunOutcome {
        subtasks: already_committed,
    };
    let mut pending_all: Vec<(u32, Option<ResultManifest>, u32)> = Vec::new();
    let mut any_failed = false;
    while let Some((index, result)) = finished.next().await {
        match result {
            Ok((manifest, attempts)) => match plan.commit_mode {
                CommitMode::PerSubtask => {
                    let before = committed_before(ctx, plan, state);
                    let r = commit_subtasks(
                        ctx,
                        plan,
                        catalog,
                        state,
                        &[(index, manifest, attempts)],
                        &before,
                        &now_ms,
                    )
                    .await
                    .map_err(catalog_err)?;
                    outcome.subtasks.extend(r);
                }
                CommitMode::AllOrNone => pending_all.push((index, manifest, attempts)),
            },
            Err((message, attempts)) => {
                any_failed = true;
                revert_subtask(ctx, catalog, state, index, &message, &now_ms)
                    .await
                    .map_err(catalog_err)?;
                outcome
                    .subtasks
                    .insert(index, SubtaskResult::Reverted { attempts, message });
            }
        }
    }
    drop(finished);
    if plan.commit_mode == CommitMode::AllOrNone {
        if any_failed {
            let message = outcome
                .failure_message()
                .unwrap_or_else(|| "another subtask failed".into());
            for (index, _, attempts) in pending_all {
                revert_subtask(ctx, catalog, state, index, &message, &now_ms)
                    .await
                    .map_err(catalog_err)?;
                outcome.subtasks.insert(
                    index,
                    SubtaskResult::Reverted {
                        attempts,
                        message: format!("all-or-none run: {message}"),
                    },
                );
            }
        } else if !pending_all.is_empty() {
            pending_all.sort_by_key(|(i, _, _)| *i);
            let before = committed_before(ctx, plan, state);
            let r = commit_subtasks(ctx, plan, catalog, state, &pending_all, &before, &now_ms)
                .await
                .map_err(catalog_err)?;
            outcome.subtasks.extend(r);
        }
    }
    debug_assert_eq!(outcome.subtasks.len(), plan.subtasks.len());
    Ok(outcome)
}

/// Steps 0–1 of the protocol: finishes subtasks whose commit is already in the log (a replay
/// after a crash between the commit and the status update), then opens one IN_PROGRESS
/// lineage entry per other subtask and stores the plan's watermarks in `state`. Returns the
/// indices already committed.
///
/// # Guarantees
/// Replaying it is a no-op: lineage entries already open with the same inputs are kept, and
/// subtasks already committed are never opened again (a rerun would write over their
/// committed outputs).
///
/// # Errors
/// Lineage refused (inputs locked or gone, an output prefix holding live segments); catalog
/// failures.
pub async fn open_lineage(
    ctx: &RunContext<'_>,
    plan: &Plan,
    catalog: &Catalog,
    state: &mut RunState,
    now_ms: &impl Fn() -> i64,
) -> Result<BTreeSet<u32>, RunError> {
    let catalog_err = |source| RunError::Catalog {
        task_run: ctx.task_run.to_string(),
        table: ctx.destination.name.clone(),
        source,
    };
    let mut already_committed = BTreeSet::new();
    for s in &plan.subtasks {
        let app = app_id::subtask(ctx.namespace, ctx.task_run, s.index);
        if catalog.is_committed(&app, 1).await.map_err(catalog_err)? {
            let id = format!("{}-{}", ctx.task_run, s.index);
            if state.lineage.get(&id).is_some() {
                state
                    .lineage
                    .end(&id, now_ms())
                    .map_err(|source| RunError::Lineage {
                        task_run: ctx.task_run.to_string(),
                        source,
                    })?;
            }
            already_committed.insert(s.index);
        }
    }
    let live: HashMap<String, ()> = catalog
        .segments()
        .map_err(catalog_err)?
        .into_iter()
        .map(|s| (s.path, ()))
        .collect();
    for request in plan.lineage_requests(ctx.task_run) {
        if request
            .subtask
            .is_some_and(|i| already_committed.contains(&i))
        {
            continue;
        }
        let prefix = format!("{}/", request.output_prefix.trim_end_matches('/'));
        state
            .lineage
            .start(
                request,
                |p| live.contains_key(p),
                |_| live.keys().find(|p| p.starts_with(&prefix)).cloned(),
                now_ms(),
            )
            .map_err(|source| RunError::Lineage {
                task_run: ctx.task_run.to_string(),
                source,
            })?;
    }
    for (level, wm) in &plan.watermarks {
        state.watermarks.insert(level.clone(), *wm);
    }
    Ok(already_committed)
}

/// Subtasks of `plan` whose lineage entry is COMPLETED or gone (committed by an earlier pass).
fn committed_before(ctx: &RunContext<'_>, plan: &Plan, state: &RunState) -> BTreeSet<u32> {
    plan.subtasks
        .iter()
        .filter(|s| {
            state
                .lineage
                .get(&format!("{}-{}", ctx.task_run, s.index))
                .is_none_or(|e| e.state == crate::lineage::LineageState::Completed)
        })
        .map(|s| s.index)
        .collect()
}

struct Attempts<'a> {
    source: &'a TableLocation,
    destination: &'a TableLocation,
    max_attempts: u32,
    budget: u64,
}

type AttemptsResult = (u32, Result<(Option<ResultManifest>, u32), (String, u32)>);

/// Executes one subtask, retrying up to `max_attempts`; a subtask that only deletes segments
/// needs no worker.
async fn run_attempts(
    ctx: &RunContext<'_>,
    settings: &Attempts<'_>,
    executor: &dyn SubtaskExecutor,
    subtask: &PlannedSubtask,
) -> AttemptsResult {
    if !subtask.needs_worker() {
        return (subtask.index, Ok((None, 0)));
    }
    let mut last_error = String::new();
    for attempt in 1..=settings.max_attempts {
        let spec = subtask.to_spec(
            ctx.namespace,
            ctx.task_run,
            attempt,
            settings.source.clone(),
            settings.destination.clone(),
            settings.budget,
        );
        let spec_uri = match write_spec(&spec).await {
            Ok(uri) => uri,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        match executor.execute(&spec_uri, &spec).await {
            Ok(m) if m.outcome == Outcome::Succeeded => {
                // Nothing is committed that does not add up (protocol step 3a).
                match crate::commit_gate::check(subtask, &spec, &m).await {
                    Ok(()) => return (subtask.index, Ok((Some(m), attempt))),
                    Err(e) => last_error = format!("{}: {e}", crate::commit_gate::REFUSED),
                }
            }
            Ok(m) => last_error = m.message.unwrap_or_else(|| "worker failed".into()),
            Err(e) => last_error = e,
        }
        tracing::warn!(task_run = ctx.task_run, subtask = subtask.index, attempt, error = %last_error, "subtask attempt failed");
    }
    (subtask.index, Err((last_error, settings.max_attempts)))
}

/// Writes a spec as JSON into its staging prefix and returns its URI.
///
/// # Errors
/// The destination store cannot be resolved or written (message names the cause).
pub async fn write_spec(spec: &SubtaskSpec) -> Result<String, String> {
    let dest = crate::storage::resolve(&spec.destination.uri).map_err(|e| e.to_string())?;
    let relative = format!("{}/_spec.json", spec.output.staging_prefix);
    let json = serde_json::to_vec_pretty(spec).map_err(|e| e.to_string())?;
    dest.put_bytes(&dest.child(&relative), json)
        .await
        .map_err(|e| e.to_string())?;
    Ok(dest.child_uri(&relative))
}

/// Reads the result manifest of one attempt from `<staging prefix>/_manifest.json`.
///
/// # Errors
/// The manifest is missing or unreadable (message names the URI).
pub async fn read_manifest(spec: &SubtaskSpec) -> Result<ResultManifest, String> {
    let dest = crate::storage::resolve(&spec.destination.uri).map_err(|e| e.to_string())?;
    let path = spec.manifest_path();
    let bytes = dest
        .get_bytes(&dest.child(&path))
        .await
        .map_err(|e| format!("result manifest {}: {e}", dest.child_uri(&path)))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("result manifest {}: {e}", dest.child_uri(&path)))
}

/// Records on each output of a subtask that packed several input files into shared segments
/// (append-mode file ingestion) which files, at which version, it ingested — so a rerun knows
/// them (scenario 19). The tag lands in the same Delta commit as the segments. Files the worker
/// skipped are not recorded, so a later run tries them again.
fn tag_source_files(
    subtask: &PlannedSubtask,
    manifest: &ResultManifest,
    outputs: &mut [SegmentRef],
) {
    if subtask.input_files.is_empty() || subtask.output.segment_per_input_file {
        return;
    }
    let ingested: BTreeMap<&str, &str> = subtask
        .input_files
        .iter()
        .filter(|f| manifest.ingested_files.contains(&f.uri))
        .map(|f| (f.uri.as_str(), f.version.as_deref().unwrap_or("")))
        .collect();
    if ingested.is_empty() {
        return;
    }
    let tag = serde_json::to_string(&ingested).expect("a map of strings serializes");
    for s in outputs {
        s.tags
            .entry(minion_contract::segment::TAG_SOURCE_FILES.to_string())
            .or_insert_with(|| tag.clone());
    }
}

/// Carries the source files of the segments a subtask replaces (a merge, rollup, refresh or
/// purge of ingested segments) onto its outputs, so file ingestion still knows those files
/// were ingested and never ingests them twice. Rows of replaced segments that came from no
/// file are marked [`minion_contract::segment::UNTRACKED_SOURCE`]. Ingestion subtasks tag
/// their own outputs ([`tag_source_files`]).
fn carry_source_files(subtask: &PlannedSubtask, outputs: &mut [SegmentRef]) {
    use minion_contract::segment::{TAG_SOURCE_FILE, TAG_SOURCE_FILES, UNTRACKED_SOURCE};
    if !subtask.input_files.is_empty() || outputs.is_empty() {
        return;
    }
    let replaced = subtask
        .inputs
        .iter()
        .filter(|_| subtask.replaces_inputs)
        .chain(subtask.deletes.iter());
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut untracked = false;
    for segment in replaced {
        let sources = crate::generator::file_ingestion::sources_of(segment);
        untracked |= sources.is_empty();
        files.extend(sources);
    }
    if files.is_empty() {
        return;
    }
    if untracked {
        files.insert(UNTRACKED_SOURCE.into(), String::new());
    }
    let tag = serde_json::to_string(&files).expect("a map of strings serializes");
    for s in outputs {
        if !s.tags.contains_key(TAG_SOURCE_FILE) {
            s.tags
                .entry(TAG_SOURCE_FILES.to_string())
                .or_insert_with(|| tag.clone());
        }
    }
}

/// One finished subtask handed to [`commit_subtasks`]: index, manifest (none when no worker
/// ran), attempts used.
pub type FinishedSubtask = (u32, Option<ResultManifest>, u32);

/// Step 3 of the protocol: ONE Delta commit for the given finished subtasks (removing their
/// inputs, adding their outputs, carrying each subtask's run identity and the advanced
/// watermarks as `txn`s), then their lineage entries COMPLETED and the watermark advanced in
/// `state`. `committed_before` are subtasks of this run committed by earlier calls.
///
/// # Guarantees
/// A commit whose `txn` is already in the log is not made again (`already_committed`).
///
/// # Errors
/// Catalog failures (nothing is committed then).
pub async fn commit_subtasks(
    ctx: &RunContext<'_>,
    plan: &Plan,
    catalog: &mut Catalog,
    state: &mut RunState,
    done: &[FinishedSubtask],
    committed_before: &BTreeSet<u32>,
    now_ms: &impl Fn() -> i64,
) -> Result<BTreeMap<u32, SubtaskResult>, CatalogError> {
    let mut remove = Vec::new();
    let mut add: Vec<SegmentRef> = Vec::new();
    let mut txns = Vec::new();
    let mut data_change = false;
    for (index, manifest, _) in done {
        let subtask = plan
            .subtasks
            .iter()
            .find(|s| s.index == *index)
            .expect("finished subtasks come from the plan");
        let mut outputs = manifest
            .as_ref()
            .map(|m| m.outputs.clone())
            .unwrap_or_default();
        if let Some(m) = manifest {
            tag_source_files(subtask, m, &mut outputs);
        }
        carry_source_files(subtask, &mut outputs);
        let id = format!("{}-{index}", ctx.task_run);
        // The entry was opened by this run; recording outputs cannot fail but for a bug.
        if let Err(e) = state
            .lineage
            .record_outputs(&id, outputs.iter().map(|s| s.path.clone()).collect())
        {
            tracing::error!(task_run = ctx.task_run, error = %e, "lineage out of step");
        }
        remove.extend(subtask.segments_from());
        add.extend(outputs);
        data_change |= changes_data(subtask);
        txns.push(AppTxn::run(app_id::subtask(
            ctx.namespace,
            ctx.task_run,
            *index,
        )));
    }
    // Watermarks: levels stored at planning, and for window tasks the contiguous prefix of
    // committed windows.
    let committed_now: Vec<u32> = done.iter().map(|(i, _, _)| *i).collect();
    let windows: Vec<(TimeWindow, bool)> = plan
        .subtasks
        .iter()
        .filter(|s| s.commit_watermark_ms.is_some())
        .filter_map(|s| {
            let w = s.window?;
            let done_before = committed_before.contains(&s.index);
            Some((w, done_before || committed_now.contains(&s.index)))
        })
        .collect();
    // One txn per app id: the levels' watermarks stored at planning, overridden for window
    // tasks by the contiguous prefix of committed windows.
    let mut watermark_txns: BTreeMap<String, i64> = plan
        .watermarks
        .iter()
        .map(|(level, wm)| {
            let level = (!level.is_empty()).then_some(level.as_str());
            (
                app_id::watermark(ctx.namespace, &ctx.config.name, level),
                *wm,
            )
        })
        .collect();
    let mut new_window_watermark = None;
    if !windows.is_empty() {
        let stored = state
            .watermarks
            .get(DEFAULT_WATERMARK)
            .copied()
            .unwrap_or(i64::MIN);
        let progress = advance_watermark(stored, &windows, &state.committed_windows);
        if progress.watermark_ms != i64::MIN {
            watermark_txns.insert(
                app_id::watermark(ctx.namespace, &ctx.config.name, None),
                progress.watermark_ms,
            );
        }
        new_window_watermark = Some(progress);
    }
    txns.extend(
        watermark_txns
            .into_iter()
            .map(|(app, wm)| AppTxn::watermark(app, wm)),
    );
    let operation = format!("MINION {}", ctx.config.task_type());
    let committed = catalog
        .replace(Replacement {
            remove,
            add,
            txns,
            data_change,
            operation: &operation,
        })
        .await?;
    let mut results = BTreeMap::new();
    for (index, manifest, attempts) in done {
        let id = format!("{}-{index}", ctx.task_run);
        if let Err(e) = state.lineage.end(&id, now_ms()) {
            tracing::error!(task_run = ctx.task_run, error = %e, "lineage out of step");
        }
        results.insert(
            *index,
            SubtaskResult::Committed {
                input_rows: manifest.as_ref().map_or(0, |m| m.input_rows),
                output_rows: manifest.as_ref().map_or(0, |m| m.output_rows),
                outputs: manifest.as_ref().map_or(0, |m| m.outputs.len()),
                attempts: *attempts,
                already_committed: committed.already_committed,
            },
        );
    }
    if let Some(progress) = new_window_watermark {
        state
            .watermarks
            .insert(DEFAULT_WATERMARK.to_string(), progress.watermark_ms);
        state.committed_windows = progress.committed_beyond;
    }
    Ok(results)
}

/// Step 4 of the protocol: reverts one subtask — lineage REVERTED, every attempt's staged
/// outputs deleted. Idempotent.
///
/// # Errors
/// Deleting the staged prefix failed (the lineage is REVERTED in `state` already).
pub async fn revert_subtask(
    ctx: &RunContext<'_>,
    catalog: &mut Catalog,
    state: &mut RunState,
    index: u32,
    message: &str,
    now_ms: &impl Fn() -> i64,
) -> Result<(), CatalogError> {
    let id = format!("{}-{index}", ctx.task_run);
    match state.lineage.revert(&id, message, now_ms()) {
        Ok(deletions) => {
            for prefix in deletions.prefixes {
                catalog.delete_prefix(&prefix).await?;
            }
        }
        Err(e) => tracing::error!(task_run = ctx.task_run, error = %e, "lineage out of step"),
    }
    Ok(())
}
