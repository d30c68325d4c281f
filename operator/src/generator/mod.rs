//! Task generators: one pure planner per task type (docs/semantics.md).
//!
//! A generator decides what a run does. It is a pure function of a [`GeneratorInput`] — the
//! validated config, the source and destination catalogs with their lineage, stored watermarks,
//! earlier runs still incomplete, listed input files, upsert invalid counts and an injected
//! `now` — and returns a [`Plan`]: subtasks, the watermarks to store, the commit mode, or the
//! machine-readable reason why nothing is scheduled.
//!
//! # Guarantees (every task type)
//! - No I/O, no clock: the same input gives the same plan.
//! - No segment replaced by an IN_PROGRESS lineage entry (of the table it is read from) is
//!   ever planned; no segment an IN_PROGRESS entry reads (e.g. a running refresh's upsert
//!   context) is planned for removal; no segment is replaced or deleted by two subtasks of one
//!   plan, nor removed by one subtask and read by another.
//! - A subtask never holds more than [`defaults::MAX_SEGMENTS_PER_TASK`] input segments.
//!
//! What it may touch: nothing but its arguments. The control loop gathers the input, records
//! [`Plan::lineage_requests`] before any Job starts, and builds specs with
//! [`PlannedSubtask::to_spec`].

use std::collections::{BTreeMap, HashMap, HashSet};

use minion_contract::segment::TAG_PARTITION;
use minion_contract::{SegmentRef, TimeWindow};

use crate::lineage::Lineage;
use crate::model::{TableDef, TableType, TaskConfig, TaskSpec, defaults};

pub mod backfill;
pub mod file_ingestion;
pub mod merge_rollup;
pub mod plan;
pub mod purge;
pub mod refresh;
pub mod windows;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod read_lock_tests;
#[cfg(test)]
pub(crate) mod testkit;

pub use plan::{CommitMode, NoTask, NoTaskReason, OutputNaming, Plan, PlannedSubtask};
pub use windows::{WatermarkProgress, advance_watermark};

/// Tag key carrying the time (epoch ms) a segment was last purged (PurgeTask).
pub const TAG_LAST_PURGE_TIME_MS: &str = "lastPurgeTimeMs";
/// Watermark key of task types with a single watermark (all but MergeRollup).
pub const DEFAULT_WATERMARK: &str = "";

/// A table as a generator sees it: its definition, its committed segments and its lineage.
#[derive(Clone, Debug, PartialEq)]
pub struct TableView {
    pub def: TableDef,
    /// Committed segments (the Delta listing).
    pub segments: Vec<SegmentRef>,
    pub lineage: Lineage,
}

/// An earlier run of the same config that is not finished (not COMPLETED, FAILED, ABORTED or
/// TIMED_OUT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncompleteRun {
    pub name: String,
    /// MergeRollup: the levels the run works on (empty = unknown, blocks every level).
    pub levels: Vec<String>,
}

/// A file listed under an input directory (file ingestion, backfill).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    /// Absolute URI.
    pub uri: String,
    pub bytes: u64,
    /// Fingerprint (size and modification time, or an ETag): a change means the file changed.
    pub version: String,
    /// The file's format when it is known by itself (a file named explicitly, by its
    /// extension); otherwise the config's `inputFormat` applies.
    pub format: Option<minion_contract::FileFormat>,
}

/// Everything a generator reads.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorInput {
    pub config: TaskConfig,
    /// The table read from when it is not the destination (R2O, SegmentImport).
    pub source: Option<TableView>,
    pub destination: TableView,
    /// Stored watermarks: level name for MergeRollup, [`DEFAULT_WATERMARK`] otherwise.
    pub watermarks: BTreeMap<String, i64>,
    /// SegmentImport: windows beyond the stored watermark already committed by earlier runs
    /// (see [`advance_watermark`]); they are never planned again.
    pub committed_windows: Vec<TimeWindow>,
    pub incomplete_runs: Vec<IncompleteRun>,
    /// Files listed under the input directory (file ingestion, backfill).
    pub files: Vec<ListedFile>,
    /// Upsert tables: rows of each segment (by path) superseded by newer versions of their key.
    pub invalid_rows: HashMap<String, u64>,
    pub now_ms: i64,
    /// SegmentImport with `initialWatermarkFrom`, before it has a watermark of its own.
    pub watermark_source: Option<WatermarkSource>,
}

/// The config a SegmentImport takes its first watermark from, as the control loop found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkSource {
    pub config: String,
    /// Its committed watermark in the destination's log (`None`: it never committed).
    pub watermark_ms: Option<i64>,
    /// Why it cannot be taken over now (not suspended, an unfinished run, another table).
    pub blocked: Option<String>,
}

impl GeneratorInput {
    /// The present on the time axis of the table whose times are windowed (the source when
    /// there is one): for a date column in a zone, that zone's wall-clock time (see
    /// [`minion_contract::time_format`]). Buffers are measured back from it.
    pub fn axis_now_ms(&self) -> i64 {
        let table = self.source.as_ref().unwrap_or(&self.destination);
        table.def.schema.time_format().axis_now(self.now_ms)
    }
}

/// Inputs a generator cannot plan from; the control loop's assembly is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GeneratorError {
    #[error("{task} on {table} reads a source table, but no source table was given")]
    MissingSource { task: &'static str, table: String },
}

impl GeneratorError {
    /// Stable reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            GeneratorError::MissingSource { .. } => "MissingSourceTable",
        }
    }
}

/// Plans one run of `input.config`.
///
/// # Errors
/// [`GeneratorError::MissingSource`] when R2O or SegmentImport is given no source table.
pub fn plan(input: &GeneratorInput) -> Result<Plan, GeneratorError> {
    match &input.config.task {
        TaskSpec::RealtimeToOffline(c) => windows::plan_realtime_to_offline(input, c),
        TaskSpec::SegmentImport(c) => windows::plan_segment_import(input, c),
        TaskSpec::MergeRollup(c) => Ok(merge_rollup::plan_merge_rollup(input, c)),
        TaskSpec::SegmentRefresh(c) => Ok(refresh::plan_refresh(input, c)),
        TaskSpec::FileIngestion(c) => Ok(file_ingestion::plan_file_ingestion(input, c)),
        TaskSpec::SegmentBackfill(c) => Ok(backfill::plan_backfill(input, c)),
        TaskSpec::Purge(c) => Ok(purge::plan_purge(input, c)),
    }
}

/// A plan with no subtask, for `input`'s task type.
pub(crate) fn no_task(input: &GeneratorInput, reason: NoTaskReason, message: String) -> Plan {
    Plan::skipped(input.config.task_type(), reason, message)
}

/// `Some(plan)` saying `PreviousRunIncomplete` if any earlier run is incomplete.
pub(crate) fn blocked_by_incomplete_run(input: &GeneratorInput) -> Option<Plan> {
    let run = input.incomplete_runs.first()?;
    Some(no_task(
        input,
        NoTaskReason::PreviousRunIncomplete,
        format!(
            "earlier run {} of {} is still incomplete",
            run.name, input.config.name
        ),
    ))
}

/// Segments of `view` that are visible under the lineage rule: committed, not replaced by a
/// COMPLETED entry, not staged outputs. Locked segments are included. Order is the catalog's.
pub(crate) fn visible(view: &TableView) -> Vec<&SegmentRef> {
    let hidden = view.lineage.hidden_segments();
    view.segments
        .iter()
        .filter(|s| !hidden.contains(s.path.as_str()))
        .collect()
}

/// Segments of `view` a generator may plan to remove (replace or delete): visible, and
/// neither replaced nor read by an IN_PROGRESS entry (see [`Lineage::removal_locks`]).
pub(crate) fn available(view: &TableView) -> Vec<&SegmentRef> {
    let locked = view.lineage.removal_locks();
    visible(view)
        .into_iter()
        .filter(|s| !locked.contains(s.path.as_str()))
        .collect()
}

/// Segments of `view` a generator may plan to read without removing them: visible and not
/// replaced by an IN_PROGRESS entry (segments other entries only read are readable).
pub(crate) fn readable(view: &TableView) -> Vec<&SegmentRef> {
    let locked = view.lineage.locked_segments();
    visible(view)
        .into_iter()
        .filter(|s| !locked.contains(s.path.as_str()))
        .collect()
}

/// The first of `segments` a new run may not remove — replaced or read by a live lineage
/// entry of `view` — with the holder, for messages (`IN_PROGRESS entry <id> of TaskRun <run>,
/// which replaces it`).
pub(crate) fn first_locked<'a>(
    view: &TableView,
    segments: impl IntoIterator<Item = &'a SegmentRef>,
) -> Option<(&'a SegmentRef, String)> {
    let locked = view.lineage.removal_locks();
    segments.into_iter().find_map(|s| {
        if !locked.contains(s.path.as_str()) {
            return None;
        }
        // A run being planned has no entry yet: every live entry belongs to another run.
        let holder = match view.lineage.removal_holder(&s.path, "") {
            Some((e, how)) => format!(
                "IN_PROGRESS lineage entry {} of TaskRun {}, {how}",
                e.id, e.task_run
            ),
            None => "another run".to_string(),
        };
        Some((s, holder))
    })
}

/// The stream or value partition of a segment: its field, else its `partition` tag.
pub fn partition_of(segment: &SegmentRef) -> Option<u32> {
    segment
        .partition
        .or_else(|| segment.tags.get(TAG_PARTITION)?.parse().ok())
}

/// A segment's inclusive time range, when it has rows with time.
pub(crate) fn time_range(segment: &SegmentRef) -> Option<(i64, i64)> {
    match (segment.min_time_ms, segment.max_time_ms) {
        (Some(min), Some(max)) if segment.rows > 0 => Some((min, max)),
        _ => None,
    }
}

/// A segment with its inclusive time range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timed<'a> {
    pub start: i64,
    pub end: i64,
    pub segment: &'a SegmentRef,
}

/// Segments with time, sorted by (start, end, path) — the order Pinot walks them in.
pub(crate) fn sorted_by_time<'a>(
    segments: impl IntoIterator<Item = &'a SegmentRef>,
) -> Vec<Timed<'a>> {
    let mut timed: Vec<Timed<'a>> = segments
        .into_iter()
        .filter_map(|s| {
            time_range(s).map(|(start, end)| Timed {
                start,
                end,
                segment: s,
            })
        })
        .collect();
    timed.sort_by(|a, b| {
        (a.start, a.end, a.segment.path.as_str()).cmp(&(b.start, b.end, b.segment.path.as_str()))
    });
    timed
}

/// For a REALTIME table, the latest completed segment of each stream partition (largest end
/// time, then start, then path): the data after it may still be consuming.
pub(crate) fn latest_of_each_partition<'a>(
    table_type: TableType,
    timed: &[Timed<'a>],
) -> HashSet<&'a str> {
    if table_type != TableType::Realtime {
        return HashSet::new();
    }
    let mut latest: HashMap<Option<u32>, Timed<'a>> = HashMap::new();
    for t in timed {
        let p = partition_of(t.segment);
        let replace = match latest.get(&p) {
            None => true,
            Some(cur) => {
                (t.end, t.start, t.segment.path.as_str())
                    > (cur.end, cur.start, cur.segment.path.as_str())
            }
        };
        if replace {
            latest.insert(p, *t);
        }
    }
    latest.values().map(|t| t.segment.path.as_str()).collect()
}

/// `floor(t ÷ bucket) × bucket`.
pub(crate) fn floor_to(t: i64, bucket: i64) -> i64 {
    t.div_euclid(bucket) * bucket
}

/// Splits `segments` (already ordered) into chunks that close once their rows reach
/// `max_rows`, their bytes reach `max_bytes`, or they hold [`defaults::MAX_SEGMENTS_PER_TASK`]
/// segments.
pub(crate) fn split_by_limits<'a>(
    segments: impl IntoIterator<Item = &'a SegmentRef>,
    max_rows: u64,
    max_bytes: u64,
) -> Vec<Vec<&'a SegmentRef>> {
    let mut chunks = Vec::new();
    let mut cur: Vec<&SegmentRef> = Vec::new();
    let (mut rows, mut bytes) = (0u64, 0u64);
    for s in segments {
        cur.push(s);
        rows = rows.saturating_add(s.rows);
        bytes = bytes.saturating_add(s.bytes);
        if rows >= max_rows || bytes >= max_bytes || cur.len() >= defaults::MAX_SEGMENTS_PER_TASK {
            chunks.push(std::mem::take(&mut cur));
            rows = 0;
            bytes = 0;
        }
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    chunks
}

/// Formats epoch milliseconds for messages (RFC 3339, UTC).
pub(crate) fn fmt_ms(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => format!("{ms}ms"),
    }
}

/// Formats a window for messages.
pub(crate) fn fmt_window(w: &TimeWindow) -> String {
    format!("[{}, {})", fmt_ms(w.start_ms), fmt_ms(w.end_ms))
}
