//! RealtimeToOfflineSegmentsTask and SegmentImportTask: move a REALTIME table into an OFFLINE
//! table window by window (docs/semantics.md, "RealtimeToOfflineSegmentsTask", "SegmentImportTask").
//!
//! # Contract
//! - Windows are `[watermark + k·bucket, … + bucket)`; a window is processed only once its end
//!   is at or before `now − buffer` (scenario 2).
//! - Empty windows are skipped, however many (scenario 4; Pinot stalls here, #6988).
//! - A window whose picked segment is the latest completed segment of its stream partition and
//!   ends inside the window is not processed: its data may still be arriving (scenario 3).
//! - Cold start: with no stored watermark, `floor(min start ÷ bucket) × bucket` (scenario 1),
//!   or SegmentImport's `initialWatermarkMs`; the plan asks to store it.
//! - Data older than the watermark is never moved (scenario 6).
//! - R2O: one window per run. SegmentImport: up to `tableMaxNumTasks` subtasks, each a run of
//!   consecutive windows closed once its rows reach `maxNumRecordsPerTask`; each subtask carries
//!   the watermark its commit allows, and [`advance_watermark`] moves the stored watermark only
//!   over the contiguous prefix of committed windows.
//! - A window with more than `MAX_SEGMENTS_PER_TASK` inputs is split over subtasks committed
//!   all or none, and planned alone.
//! - A window holding a segment locked by a lineage entry of the source waits
//!   (`InputsLocked`): the segment is being replaced and its rows will be in the replacement.
//! - Stream partitions are those seen in the source segments (field or `partition` tag); unlike
//!   Pinot, a partition that never produced a segment cannot be told apart from one that does
//!   not exist, so it does not hold the table back.

use std::collections::HashSet;

use minion_contract::{Processing, SegmentRef, TimeWindow};

use crate::model::{
    RealtimeToOfflineConfig, SegmentImportConfig, TableType, WindowProcessing, defaults,
};

use super::{
    CommitMode, DEFAULT_WATERMARK, GeneratorError, GeneratorInput, NoTaskReason, OutputNaming,
    Plan, PlannedSubtask, TableView, Timed, blocked_by_incomplete_run, floor_to, fmt_ms,
    fmt_window, latest_of_each_partition, no_task, sorted_by_time, visible,
};

/// What the walk over windows found next.
#[derive(Debug)]
enum Step<'a> {
    /// A window with data, ready to process, and the segments overlapping it.
    Ready(TimeWindow, Vec<&'a SegmentRef>),
    NotPastBuffer(TimeWindow),
    StillArriving(TimeWindow, &'a SegmentRef),
    /// A segment with rows in the window is locked by another run (it is being replaced; its
    /// rows will be in the replacement), so the window waits.
    Locked(TimeWindow, &'a SegmentRef),
    /// No segment ends at or after the window start.
    Exhausted,
}

/// Walks windows forward over segments sorted by start time.
struct WindowWalk<'a> {
    timed: Vec<Timed<'a>>,
    next: usize,
    /// Segments that started before the current window end and may overlap it.
    active: Vec<Timed<'a>>,
    latest: HashSet<&'a str>,
    locked: HashSet<&'a str>,
    bucket_ms: i64,
    /// `now − buffer`: a window ending after this is not processed yet.
    limit_ms: i64,
}

impl<'a> WindowWalk<'a> {
    /// The first window at or after `start` that has data and is not in `committed`.
    fn step(&mut self, mut start: i64, committed: &[TimeWindow]) -> Step<'a> {
        loop {
            let end = start.saturating_add(self.bucket_ms);
            while self.next < self.timed.len() && self.timed[self.next].start < end {
                self.active.push(self.timed[self.next]);
                self.next += 1;
            }
            self.active.retain(|t| t.end >= start);
            let window = TimeWindow::new(start, end);
            if self.active.is_empty() && self.next == self.timed.len() {
                return Step::Exhausted;
            }
            if end > self.limit_ms {
                return Step::NotPastBuffer(window);
            }
            if self.active.is_empty() {
                // Data gap: jump to the window holding the next segment's start.
                let gap = self.timed[self.next].start - start;
                start += gap.div_euclid(self.bucket_ms).max(1) * self.bucket_ms;
                continue;
            }
            if committed
                .iter()
                .any(|c| c.start_ms <= start && end <= c.end_ms)
            {
                start = end;
                continue;
            }
            if let Some(t) = self
                .active
                .iter()
                .find(|t| self.locked.contains(t.segment.path.as_str()))
            {
                return Step::Locked(window, t.segment);
            }
            if let Some(t) = self
                .active
                .iter()
                .find(|t| t.end < end && self.latest.contains(t.segment.path.as_str()))
            {
                return Step::StillArriving(window, t.segment);
            }
            return Step::Ready(window, self.active.iter().map(|t| t.segment).collect());
        }
    }
}

/// Source segments, watermark and walk shared by R2O and SegmentImport, or the plan saying
/// why there is nothing to walk.
struct Prepared<'a> {
    walk: WindowWalk<'a>,
    watermark: i64,
    plan: Plan,
}

fn prepare<'a>(
    input: &'a GeneratorInput,
    window: &WindowProcessing,
    initial_watermark_ms: Option<i64>,
) -> Result<Result<Prepared<'a>, Plan>, GeneratorError> {
    if let Some(plan) = blocked_by_incomplete_run(input) {
        return Ok(Err(plan));
    }
    let source: &TableView =
        input
            .source
            .as_ref()
            .ok_or_else(|| GeneratorError::MissingSource {
                task: input.config.task_type().as_str(),
                table: input.config.table.clone(),
            })?;
    let timed = sorted_by_time(visible(source));
    if timed.is_empty() {
        let (reason, what) = match source.def.table_type {
            TableType::Realtime => (NoTaskReason::NoCompletedSegments, "no completed segment"),
            TableType::Offline => (NoTaskReason::NoSegments, "no segment with data"),
        };
        return Ok(Err(no_task(
            input,
            reason,
            format!("source table {} has {what}", source.def.name),
        )));
    }
    let mut plan = Plan::new(input.config.task_type());
    let watermark = match input.watermarks.get(DEFAULT_WATERMARK) {
        Some(w) => *w,
        None => {
            let w =
                initial_watermark_ms.unwrap_or_else(|| floor_to(timed[0].start, window.bucket_ms));
            plan.watermarks.insert(DEFAULT_WATERMARK.to_string(), w);
            w
        }
    };
    let latest = latest_of_each_partition(source.def.table_type, &timed);
    let walk = WindowWalk {
        timed,
        next: 0,
        active: Vec::new(),
        latest,
        locked: source.lineage.locked_segments(),
        // Validation rejects non-positive periods; the guard keeps the walk finite regardless.
        bucket_ms: window.bucket_ms.max(1),
        limit_ms: input.axis_now_ms().saturating_sub(window.buffer_ms),
    };
    Ok(Ok(Prepared {
        walk,
        watermark,
        plan,
    }))
}

fn window_processing(
    input: &GeneratorInput,
    w: &WindowProcessing,
    desired_size: Option<u64>,
) -> (Processing, OutputNaming) {
    let processing = Processing {
        merge_type: w.merge_type,
        round_bucket_ms: w.round_bucket_ms,
        aggregation_types: w.aggregation_types.clone(),
        aggregation_parameters: w.aggregation_parameters.clone(),
        value_partitioning: input.destination.def.schema.partitioning.is_some(),
        desired_segment_size_bytes: desired_size,
        skip_corrupt_segments: w.skip_corrupt_segments,
        ..base_processing(w.max_records_per_segment)
    };
    let naming = OutputNaming {
        segment_name_prefix: w.segment_name_prefix.clone(),
        segment_name_postfix: w.segment_name_postfix.clone(),
        ..OutputNaming::default()
    };
    (processing, naming)
}

/// Processing defaults shared by every task type: concat, sorted output, unreadable files
/// skipped.
pub(crate) fn base_processing(max_records_per_segment: u64) -> Processing {
    Processing {
        sort: true,
        skip_file_if_fail_to_init_reader: true,
        max_records_per_segment,
        ..Processing::default()
    }
}

/// Subtasks reading `inputs` for `window`; more than one when the inputs exceed the cap.
fn window_subtasks(
    input: &GeneratorInput,
    w: &WindowProcessing,
    desired_size: Option<u64>,
    first_index: u32,
    window: TimeWindow,
    inputs: &[&SegmentRef],
) -> Vec<PlannedSubtask> {
    let (processing, naming) = window_processing(input, w, desired_size);
    inputs
        .chunks(defaults::MAX_SEGMENTS_PER_TASK)
        .enumerate()
        .map(|(i, chunk)| {
            let mut s = PlannedSubtask::new(
                input.config.task_type(),
                first_index + i as u32,
                processing.clone(),
            )
            .with_inputs(chunk.iter().copied());
            s.replaces_inputs = false;
            s.window = Some(window);
            s.output = naming.clone();
            s.commit_watermark_ms = Some(window.end_ms);
            s
        })
        .collect()
}

fn skip_for(mut plan: Plan, step: &Step<'_>, watermark: i64, limit_ms: i64) -> Plan {
    // A cold-start watermark is stored with the first committed window, never by a run with
    // nothing to do: a partition whose first segment completes later may start before it.
    if plan.is_empty() {
        plan.watermarks.clear();
    }
    match step {
        Step::Ready(..) => plan,
        Step::NotPastBuffer(w) => plan.or_skip(NoTaskReason::WindowNotPastBuffer, || {
            format!(
                "next window {} ends after now − buffer ({})",
                fmt_window(w),
                fmt_ms(limit_ms)
            )
        }),
        Step::StillArriving(w, s) => plan.or_skip(NoTaskReason::DataStillArriving, || {
            format!(
                "window {}: segment {} is the latest completed segment of its partition and ends \
                 inside the window; the rest may still be consuming",
                fmt_window(w),
                s.name()
            )
        }),
        Step::Locked(w, s) => plan.or_skip(NoTaskReason::InputsLocked, || {
            format!(
                "window {}: segment {} is locked by another run's lineage entry",
                fmt_window(w),
                s.name()
            )
        }),
        Step::Exhausted => plan.or_skip(NoTaskReason::NoDataAfterWatermark, || {
            format!(
                "no source data at or after the watermark {}",
                fmt_ms(watermark)
            )
        }),
    }
}

/// RealtimeToOfflineSegmentsTask: the first window with data after the watermark.
///
/// # Errors
/// The input has no source table.
pub fn plan_realtime_to_offline(
    input: &GeneratorInput,
    config: &RealtimeToOfflineConfig,
) -> Result<Plan, GeneratorError> {
    let mut p = match prepare(input, &config.window, None)? {
        Ok(p) => p,
        Err(plan) => return Ok(plan),
    };
    let step = p.walk.step(p.watermark, &[]);
    if let Step::Ready(window, inputs) = &step {
        p.plan.subtasks = window_subtasks(input, &config.window, None, 0, *window, inputs);
        if p.plan.subtasks.len() > 1 {
            p.plan.commit_mode = CommitMode::AllOrNone;
        }
    }
    Ok(skip_for(p.plan, &step, p.watermark, p.walk.limit_ms))
}

/// Consecutive windows gathered into one SegmentImport subtask.
struct Group<'a> {
    window: TimeWindow,
    inputs: Vec<&'a SegmentRef>,
    seen: HashSet<&'a str>,
    rows: u64,
}

/// SegmentImportTask: up to `tableMaxNumTasks` subtasks of consecutive windows.
///
/// # Errors
/// The input has no source table.
pub fn plan_segment_import(
    input: &GeneratorInput,
    config: &SegmentImportConfig,
) -> Result<Plan, GeneratorError> {
    let mut initial = config.initial_watermark_ms;
    if let Some(from) = input
        .watermark_source
        .as_ref()
        .filter(|_| !input.watermarks.contains_key(DEFAULT_WATERMARK))
    {
        if let Some(why) = &from.blocked {
            return Ok(no_task(
                input,
                NoTaskReason::WatermarkSourceActive,
                format!(
                    "initialWatermarkFrom: {why}; the import starts where MinionTaskConfig {} \
                     stopped only once nothing can move that watermark any more",
                    from.config
                ),
            ));
        }
        // A config that never committed leaves nothing to continue from: start as without.
        initial = from.watermark_ms.or(initial);
    }
    let mut p = match prepare(input, &config.window, initial)? {
        Ok(p) => p,
        Err(plan) => return Ok(plan),
    };
    let max_tasks = config.table_max_num_tasks.max(1) as usize;
    let desired = Some(config.desired_segment_size_bytes);
    let committed = &input.committed_windows;
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut open: Option<Group<'_>> = None;
    let mut start = p.watermark;
    let last_step = loop {
        if groups.len() >= max_tasks {
            break None;
        }
        let step = p.walk.step(start, committed);
        let Step::Ready(window, inputs) = &step else {
            break Some(step);
        };
        if inputs.len() > defaults::MAX_SEGMENTS_PER_TASK {
            // Too many inputs for one subtask: plan this window alone, split, all or none.
            if groups.is_empty() && open.is_none() {
                p.plan.subtasks =
                    window_subtasks(input, &config.window, desired, 0, *window, inputs);
                p.plan.commit_mode = CommitMode::AllOrNone;
                return Ok(p.plan);
            }
            break None;
        }
        start = window.end_ms;
        if let Some(g) = open.take() {
            let skipped_committed = committed
                .iter()
                .any(|c| c.start_ms < window.start_ms && c.end_ms > g.window.end_ms);
            let new_inputs = inputs.iter().filter(|s| !g.seen.contains(s.path.as_str()));
            let too_many = g.inputs.len() + new_inputs.count() > defaults::MAX_SEGMENTS_PER_TASK;
            if skipped_committed || too_many {
                groups.push(g);
            } else {
                open = Some(g);
            }
        }
        if groups.len() >= max_tasks {
            break None;
        }
        let g = open.get_or_insert_with(|| Group {
            window: *window,
            inputs: Vec::new(),
            seen: HashSet::new(),
            rows: 0,
        });
        g.window.end_ms = window.end_ms;
        for s in inputs {
            if g.seen.insert(s.path.as_str()) {
                g.inputs.push(s);
                g.rows = g.rows.saturating_add(s.rows);
            }
        }
        let spans_on = inputs
            .iter()
            .any(|s| s.max_time_ms.is_some_and(|m| m >= window.end_ms));
        if g.rows >= config.max_records_per_task && !spans_on {
            groups.extend(open.take());
        }
    };
    groups.extend(open.take());
    groups.truncate(max_tasks);
    let (processing, naming) = window_processing(input, &config.window, desired);
    for (i, g) in groups.into_iter().enumerate() {
        let mut s = PlannedSubtask::new(input.config.task_type(), i as u32, processing.clone())
            .with_inputs(g.inputs);
        s.replaces_inputs = false;
        s.window = Some(g.window);
        s.output = naming.clone();
        s.commit_watermark_ms = Some(g.window.end_ms);
        p.plan.subtasks.push(s);
    }
    // Parallel, but committed in window order (subtask indices follow the windows).
    p.plan.commit_mode = CommitMode::InOrder;
    Ok(match last_step {
        Some(step) => skip_for(p.plan, &step, p.watermark, p.walk.limit_ms),
        None => p.plan,
    })
}

/// Where a watermark that follows commits stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkProgress {
    pub watermark_ms: i64,
    /// Committed windows beyond the watermark (an earlier window failed): store them and pass
    /// them back as [`GeneratorInput::committed_windows`] so they are not planned again.
    pub committed_beyond: Vec<TimeWindow>,
}

/// Advances a watermark over the contiguous prefix of committed windows.
///
/// `planned` are the windows of a run's subtasks with whether each is committed;
/// `earlier_committed` are committed windows beyond the watermark from earlier runs. Gaps
/// between windows held no data when they were planned, so they do not stop the prefix; the
/// first uncommitted planned window does.
///
/// # Guarantees
/// The watermark never moves backwards and never passes an uncommitted planned window.
pub fn advance_watermark(
    stored_ms: i64,
    planned: &[(TimeWindow, bool)],
    earlier_committed: &[TimeWindow],
) -> WatermarkProgress {
    let first_uncommitted = planned
        .iter()
        .filter(|(_, done)| !done)
        .map(|(w, _)| w.start_ms)
        .min()
        .unwrap_or(i64::MAX);
    let mut committed: Vec<TimeWindow> = planned
        .iter()
        .filter(|(_, done)| *done)
        .map(|(w, _)| *w)
        .chain(earlier_committed.iter().copied())
        .collect();
    committed.sort();
    committed.dedup();
    let mut watermark_ms = stored_ms;
    for w in &committed {
        if w.start_ms >= first_uncommitted {
            break;
        }
        watermark_ms = watermark_ms.max(w.end_ms);
    }
    committed.retain(|w| w.end_ms > watermark_ms);
    WatermarkProgress {
        watermark_ms,
        committed_beyond: committed,
    }
}

/// Delay metric of R2O and SegmentImport: whole buckets between the watermark and
/// `now − buffer` (0 when caught up; `None` before the first watermark).
pub fn delay_buckets(
    window: &WindowProcessing,
    watermark_ms: Option<i64>,
    now_ms: i64,
) -> Option<i64> {
    let w = watermark_ms?;
    Some(((now_ms - window.buffer_ms - w).div_euclid(window.bucket_ms)).max(0))
}

#[cfg(test)]
#[path = "windows_tests.rs"]
mod tests;
