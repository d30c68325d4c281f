//! The commit protocol, in one place (docs/architecture.md, "The commit protocol"): the steps
//! the control loop takes for a run, one persisted step at a time.
//!
//! 1. [`open_lineage`]: one IN_PROGRESS lineage entry per subtask (locks its inputs) before any
//!    worker starts; subtasks whose commit is already in the log are finished instead.
//! 2. [`write_spec`] next to the attempt's staged outputs; the worker writes its result
//!    manifest there ([`read_manifest`]), which the commit gate checks.
//! 3. [`commit`]: ONE Delta commit of some finished subtasks, planned by the pure
//!    [`plan_commit`] (remove their inputs — never one the worker skipped as unreadable,
//!    which stays in the table —, add their outputs, carry each subtask's run
//!    identity and the advanced watermarks as `txn`s), then their lineage entries COMPLETED
//!    and the watermark advanced in the [`RunState`].
//! 4. [`revert_subtask`]: lineage REVERTED and every staged attempt deleted — unless the
//!    subtask's identity is in the log, in which case it was committed and is finished
//!    instead.
//!
//! # Identity
//! A run is identified by its [`RunContext::key`], `<name>-<12 hex digits of its uid>`: its
//! stored plan, staging prefixes (`data/<namespace>/<key>/…`), lineage entry ids and commit
//! `txn`s all carry it, so a TaskRun deleted and re-created under the same name is a new run.
//!
//! What it may touch: the destination catalog, the staged prefixes of this run, and the
//! [`RunState`] it is given (the caller persists it).

use std::collections::{BTreeMap, BTreeSet};

use minion_contract::{
    MergeType, ResultManifest, SegmentRef, SubtaskSpec, TableLocation, TimeWindow,
};

use crate::catalog::{AppTxn, Catalog, CatalogError, CommitOutcome, Replacement, app_id};
use crate::generator::{CommitMode, DEFAULT_WATERMARK, Plan, PlannedSubtask, advance_watermark};
use crate::lineage::{Lineage, LineageError, LineageState};
use crate::model::{TableDef, TaskConfig};

/// What a run reads and writes besides the catalog: the destination's lineage and the
/// config's watermarks. Loaded from status and the log before a step, stored back after it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    pub lineage: Lineage,
    /// Watermarks by level (`""` for single-watermark task types).
    pub watermarks: BTreeMap<String, i64>,
}

/// The tables and identity of one run.
pub struct RunContext<'a> {
    pub namespace: &'a str,
    /// The TaskRun's name (messages, lineage entries' `taskRun`).
    pub task_run: &'a str,
    /// The run's identity: see [`run_key`].
    pub key: &'a str,
    pub config: &'a TaskConfig,
    pub source: Option<&'a TableDef>,
    pub destination: &'a TableDef,
}

impl RunContext<'_> {
    /// The directory of this run's staged outputs below the destination: `<namespace>/<key>`.
    pub fn staging_run(&self) -> String {
        format!("{}/{}", self.namespace, self.key)
    }

    /// The id of a subtask's lineage entry.
    pub fn lineage_id(&self, index: u32) -> String {
        format!("{}-{index}", self.key)
    }

    /// The app id of a subtask's commit.
    pub fn subtask_app_id(&self, index: u32) -> String {
        app_id::subtask(self.namespace, self.key, index)
    }
}

/// The identity of a TaskRun: its name and the first 12 hexadecimal digits of its uid (a
/// name alone for an object without a uid).
pub fn run_key(name: &str, uid: Option<&str>) -> String {
    let hex: String = uid
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    if hex.is_empty() {
        name.to_string()
    } else {
        format!("{name}-{}", hex.to_ascii_lowercase())
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

/// Step 1: finishes subtasks whose commit is already in the log (a replay after a crash
/// between the commit and the status update), then opens one IN_PROGRESS lineage entry per
/// other subtask and stores the plan's watermarks in `state`. Returns the indices already
/// committed.
///
/// `may_have_committed`: whether the run ever got past Planning. A run still Planning has
/// committed nothing (its subtasks commit only once it runs), so the log is not searched for
/// its subtasks' identities: each search replays the log, and a run of 1,000 subtasks would
/// replay it 1,000 times.
///
/// # Guarantees
/// Replaying it is a no-op: lineage entries already open with the same inputs are kept, and
/// subtasks already committed are never opened again.
///
/// # Errors
/// Lineage refused (inputs locked or gone, an output prefix holding live segments); catalog
/// failures.
pub async fn open_lineage(
    ctx: &RunContext<'_>,
    plan: &Plan,
    catalog: &Catalog,
    state: &mut RunState,
    may_have_committed: bool,
    now_ms: i64,
) -> Result<BTreeSet<u32>, OpenError> {
    let mut already_committed = BTreeSet::new();
    for s in plan.subtasks.iter().filter(|_| may_have_committed) {
        if catalog
            .is_committed(&ctx.subtask_app_id(s.index), 1)
            .await?
        {
            let id = ctx.lineage_id(s.index);
            if state.lineage.get(&id).is_some() {
                state.lineage.end(&id, now_ms)?;
            }
            already_committed.insert(s.index);
        }
    }
    let listing = catalog.listing()?;
    // Sorted, so the live segment under an output prefix is found without a scan.
    let live: BTreeSet<&str> = listing.segments.iter().map(|s| s.path.as_str()).collect();
    for request in plan.lineage_requests(ctx.task_run, ctx.key, &ctx.staging_run()) {
        if request
            .subtask
            .is_some_and(|i| already_committed.contains(&i))
        {
            continue;
        }
        let prefix = format!("{}/", request.output_prefix.trim_end_matches('/'));
        state.lineage.start(
            request,
            |p| live.contains(p),
            |_| {
                live.range(prefix.as_str()..)
                    .next()
                    .filter(|p| p.starts_with(&prefix))
                    .map(|p| p.to_string())
            },
            now_ms,
        )?;
    }
    for (level, wm) in &plan.watermarks {
        state.watermarks.insert(level.clone(), *wm);
    }
    Ok(already_committed)
}

/// Why lineage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Lineage(#[from] LineageError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl OpenError {
    /// Stable reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::Lineage(e) => e.reason(),
            OpenError::Catalog(e) => e.reason(),
        }
    }
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
/// Segments the worker skipped as unreadable (`skipped`) are not replaced: their files stay
/// theirs.
fn carry_source_files(subtask: &PlannedSubtask, skipped: &[String], outputs: &mut [SegmentRef]) {
    use minion_contract::segment::{TAG_SOURCE_FILE, TAG_SOURCE_FILES, UNTRACKED_SOURCE};
    if !subtask.input_files.is_empty() || outputs.is_empty() {
        return;
    }
    let replaced = subtask
        .inputs
        .iter()
        .filter(|s| subtask.replaces_inputs && !skipped.contains(&s.path))
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

/// One finished subtask to commit: its index and its manifest (none when no worker ran).
pub type FinishedSubtask = (u32, Option<ResultManifest>);

/// The Delta actions and state changes of one commit, planned without I/O.
#[derive(Clone, Debug, PartialEq)]
pub struct CommitPlan {
    pub remove: Vec<String>,
    pub add: Vec<SegmentRef>,
    pub txns: Vec<AppTxn>,
    pub data_change: bool,
    pub operation: String,
    /// Outputs recorded on each subtask's lineage entry, by lineage id.
    pub outputs: Vec<(String, Vec<String>)>,
    /// Inputs the worker skipped as unreadable, by lineage id: not removed, and taken out of
    /// the entry's inputs before it completes.
    pub kept: Vec<(String, Vec<String>)>,
    /// The window watermark after the commit (window task types).
    pub window_watermark: Option<i64>,
}

/// Plans ONE Delta commit of `done` (subtasks of `plan`): removes their inputs, adds their
/// outputs (tagged with the files they carry), and records as `txn`s each subtask's run
/// identity and the watermarks — the levels' watermarks stored at planning, and for window
/// task types the end of the contiguous prefix of committed windows. `committed_before` are
/// subtasks of this run committed by earlier commits.
///
/// # Guarantees
/// Pure: the same inputs give the same plan. A window watermark never passes a window that is
/// not committed, nor moves backwards.
pub fn plan_commit(
    ctx: &RunContext<'_>,
    plan: &Plan,
    state: &RunState,
    done: &[FinishedSubtask],
    committed_before: &BTreeSet<u32>,
) -> CommitPlan {
    let mut out = CommitPlan {
        remove: Vec::new(),
        add: Vec::new(),
        txns: Vec::new(),
        data_change: false,
        operation: format!("MINION {}", ctx.config.task_type()),
        outputs: Vec::new(),
        kept: Vec::new(),
        window_watermark: None,
    };
    for (index, manifest) in done {
        let subtask = plan
            .subtasks
            .iter()
            .find(|s| s.index == *index)
            .expect("finished subtasks come from the plan");
        let mut outputs = manifest
            .as_ref()
            .map(|m| m.outputs.clone())
            .unwrap_or_default();
        // A segment the worker skipped as unreadable stays in the table.
        let skipped: Vec<String> = manifest
            .iter()
            .flat_map(|m| &m.skipped_segments)
            .map(|s| s.path.clone())
            .collect();
        if let Some(m) = manifest {
            tag_source_files(subtask, m, &mut outputs);
        }
        carry_source_files(subtask, &skipped, &mut outputs);
        out.outputs.push((
            ctx.lineage_id(*index),
            outputs.iter().map(|s| s.path.clone()).collect(),
        ));
        out.remove.extend(
            subtask
                .segments_from()
                .into_iter()
                .filter(|p| !skipped.contains(p)),
        );
        if !skipped.is_empty() {
            out.kept.push((ctx.lineage_id(*index), skipped));
        }
        out.add.extend(outputs);
        out.data_change |= changes_data(subtask);
        out.txns.push(AppTxn::run(ctx.subtask_app_id(*index)));
    }
    // One txn per app id: the levels' watermarks stored at planning, overridden for window
    // tasks by the contiguous prefix of committed windows.
    let mut watermarks: BTreeMap<String, i64> = plan
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
    let windows: Vec<(TimeWindow, bool)> = plan
        .subtasks
        .iter()
        .filter(|s| s.commit_watermark_ms.is_some())
        .filter_map(|s| {
            let committed =
                committed_before.contains(&s.index) || done.iter().any(|(i, _)| *i == s.index);
            Some((s.window?, committed))
        })
        .collect();
    if !windows.is_empty() {
        let stored = state
            .watermarks
            .get(DEFAULT_WATERMARK)
            .copied()
            .unwrap_or(i64::MIN);
        let progress = advance_watermark(stored, &windows, &[]);
        if progress.watermark_ms != i64::MIN {
            watermarks.insert(
                app_id::watermark(ctx.namespace, &ctx.config.name, None),
                progress.watermark_ms,
            );
            out.window_watermark = Some(progress.watermark_ms);
        }
    }
    out.txns.extend(
        watermarks
            .into_iter()
            .map(|(app, wm)| AppTxn::watermark(app, wm)),
    );
    out
}

/// Step 3: ONE Delta commit of `done` ([`plan_commit`]), then their lineage entries
/// COMPLETED (outputs recorded) and the window watermark advanced in `state`.
///
/// # Guarantees
/// A subtask whose run identity is already in the log is not committed again: a replay after a
/// crash between the commit and the status update only finishes its state. When every subtask
/// of `done` is in the log nothing is committed (`already_committed`); when only some are (a
/// replayed commit collected again with subtasks that finished since), the others are
/// committed, and the replayed ones count as committed before them.
///
/// # Errors
/// Catalog failures (nothing is committed then).
pub async fn commit(
    ctx: &RunContext<'_>,
    plan: &Plan,
    catalog: &mut Catalog,
    state: &mut RunState,
    done: &[FinishedSubtask],
    committed_before: &BTreeSet<u32>,
    now_ms: i64,
) -> Result<CommitOutcome, CatalogError> {
    let mut planned = plan_commit(ctx, plan, state, done, committed_before);
    // What the state records: every subtask of `done`, however its commit lands.
    let kept = std::mem::take(&mut planned.kept);
    let outputs = std::mem::take(&mut planned.outputs);
    let window_watermark = planned.window_watermark;
    let outcome = match replace(catalog, planned).await {
        // Some of `done` may be in the log already: a replayed commit collected again with
        // subtasks that finished since (refused, as its inputs are gone and its outputs live).
        // The others commit on their own.
        Err(e) if done.len() > 1 => {
            let mut replayed = BTreeSet::new();
            for (index, _) in done {
                if catalog.is_committed(&ctx.subtask_app_id(*index), 1).await? {
                    replayed.insert(*index);
                }
            }
            if replayed.is_empty() {
                return Err(e);
            }
            let fresh: Vec<FinishedSubtask> = done
                .iter()
                .filter(|(index, _)| !replayed.contains(index))
                .cloned()
                .collect();
            let before: BTreeSet<u32> = committed_before.union(&replayed).copied().collect();
            replace(catalog, plan_commit(ctx, plan, state, &fresh, &before)).await?
        }
        outcome => outcome?,
    };
    for (id, kept) in kept {
        if let Err(e) = state.lineage.keep_inputs(&id, &kept) {
            tracing::error!(task_run = ctx.task_run, error = %e, "lineage out of step");
        }
    }
    for (id, outputs) in outputs {
        // The entries were opened by this run; recording cannot fail but for a bug.
        if let Err(e) = state.lineage.record_outputs(&id, outputs) {
            tracing::error!(task_run = ctx.task_run, error = %e, "lineage out of step");
        }
        if let Err(e) = state.lineage.end(&id, now_ms) {
            tracing::error!(task_run = ctx.task_run, error = %e, "lineage out of step");
        }
    }
    if let Some(wm) = window_watermark {
        let entry = state
            .watermarks
            .entry(DEFAULT_WATERMARK.to_string())
            .or_insert(wm);
        *entry = (*entry).max(wm);
    }
    Ok(outcome)
}

/// The Delta commit of a [`CommitPlan`]: long lists of ingested files go beside the table
/// first, then one [`Catalog::replace`].
async fn replace(
    catalog: &mut Catalog,
    mut planned: CommitPlan,
) -> Result<CommitOutcome, CatalogError> {
    catalog.record_source_files(&mut planned.add).await?;
    catalog
        .replace(Replacement {
            remove: planned.remove,
            add: planned.add,
            txns: planned.txns,
            data_change: planned.data_change,
            operation: &planned.operation,
        })
        .await
}

/// A plan with no subtask that still moves watermarks (MergeRollup walking past buckets
/// already merged at a level): ONE Delta commit of those watermarks alone, so the run stores
/// what `minion plan` shows. Only watermarks ahead of the log's are written; returns them as
/// `(level, watermark)`, empty when the log has them already (a replay commits nothing).
///
/// # Errors
/// Catalog failures (nothing is committed then).
pub async fn commit_watermarks(
    ctx: &RunContext<'_>,
    plan: &Plan,
    catalog: &mut Catalog,
    stored: &BTreeMap<String, i64>,
) -> Result<Vec<(String, i64)>, CatalogError> {
    let moved: Vec<(String, i64)> = plan
        .watermarks
        .iter()
        .filter(|(level, wm)| stored.get(*level).is_none_or(|s| s < *wm))
        .map(|(level, wm)| (level.clone(), *wm))
        .collect();
    if moved.is_empty() {
        return Ok(moved);
    }
    let txns = moved
        .iter()
        .map(|(level, wm)| {
            let level = (!level.is_empty()).then_some(level.as_str());
            AppTxn::watermark(
                app_id::watermark(ctx.namespace, &ctx.config.name, level),
                *wm,
            )
        })
        .collect();
    catalog
        .replace(Replacement {
            remove: Vec::new(),
            add: Vec::new(),
            txns,
            data_change: false,
            operation: "MINION WATERMARK",
        })
        .await?;
    Ok(moved)
}

/// What [`revert_subtask`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reverted {
    /// Lineage REVERTED, staged outputs deleted.
    Reverted,
    /// The subtask's identity is in the log: it was committed (a crash before its status was
    /// written); its lineage entry is COMPLETED instead and nothing was deleted.
    WasCommitted,
}

/// Step 4: reverts one subtask — lineage REVERTED, every attempt's staged outputs deleted —
/// unless its commit is in the log. Idempotent.
///
/// # Guarantees
/// Never reverts (nor deletes the outputs of) a subtask whose `txn` is in the log.
///
/// # Errors
/// Reading the log or deleting the staged prefix failed.
pub async fn revert_subtask(
    ctx: &RunContext<'_>,
    catalog: &mut Catalog,
    state: &mut RunState,
    index: u32,
    message: &str,
    now_ms: i64,
) -> Result<Reverted, CatalogError> {
    let id = ctx.lineage_id(index);
    catalog.refresh().await?;
    if catalog.is_committed(&ctx.subtask_app_id(index), 1).await? {
        if state
            .lineage
            .get(&id)
            .is_some_and(|e| e.state == LineageState::InProgress)
            && let Err(e) = state.lineage.end(&id, now_ms)
        {
            tracing::error!(task_run = ctx.task_run, error = %e, "lineage out of step");
        }
        return Ok(Reverted::WasCommitted);
    }
    match state.lineage.revert(&id, message, now_ms) {
        Ok(deletions) => {
            for prefix in deletions.prefixes {
                catalog.delete_prefix(&prefix).await?;
            }
        }
        Err(e) => tracing::error!(task_run = ctx.task_run, error = %e, "lineage out of step"),
    }
    Ok(Reverted::Reverted)
}

/// Which finished subtasks of `plan` may commit now, given the subtasks already committed
/// (`committed`) and those staged (`staged`, succeeded and not yet committed).
///
/// - Per subtask: every staged subtask, each on its own.
/// - In window order (window task types): the staged windows that directly follow the
///   committed ones, together — a window never commits before an earlier window of the run,
///   so the watermark is always the end of a contiguous prefix and no window is ever
///   committed beyond it.
/// - All or none: nothing here (the run's closing commit takes them all).
pub fn ready_to_commit(
    plan: &Plan,
    committed: &BTreeSet<u32>,
    staged: &BTreeSet<u32>,
) -> Vec<Vec<u32>> {
    match plan.commit_mode {
        CommitMode::PerSubtask => staged.iter().map(|&i| vec![i]).collect(),
        CommitMode::AllOrNone => Vec::new(),
        CommitMode::InOrder => {
            let mut order: Vec<&PlannedSubtask> = plan.subtasks.iter().collect();
            order.sort_by_key(|s| (s.window.map(|w| w.start_ms), s.index));
            let mut batch = Vec::new();
            for s in order {
                if committed.contains(&s.index) {
                    continue;
                }
                if staged.contains(&s.index) {
                    batch.push(s.index);
                } else {
                    break;
                }
            }
            if batch.is_empty() {
                Vec::new()
            } else {
                vec![batch]
            }
        }
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
