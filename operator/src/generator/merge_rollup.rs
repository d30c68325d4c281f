//! MergeRollupTask: merge (and roll up) small segments into time-aligned ones, level by level
//! (docs/semantics.md, "MergeRollupTask").
//!
//! # Contract
//! - Candidates: visible, non-empty segments not tagged `shouldNotMerge` that no IN_PROGRESS
//!   lineage entry replaces or reads (e.g. a running refresh's upsert context); for a
//!   REALTIME table, minus each stream partition's latest segment (merged segments are not
//!   stream segments). Sorted by (start, end, path).
//! - Levels are walked finest first; a level with an incomplete run is skipped.
//! - A bucket is valid while its end ≤ `now − buffer` and, for coarser levels, ≤ the finer
//!   level's (new) watermark. It qualifies when some overlapping segment is not merged at this
//!   level or coarser and every overlapping segment is merged at the finer level or coarser
//!   (scenarios 13, 14). The walk stops after `maxNumParallelBuckets` qualifying buckets or at an
//!   invalid bucket.
//! - Beyond the reference (which stops after a bucket with a segment spanning past its end,
//!   scenario 12): consecutive qualifying buckets joined by spanning segments form one group,
//!   planned as one bucket whose window covers them all, so each segment is in exactly one
//!   subtask and the buckets it touches commit together. The worker splits rows by bucket
//!   (time partition), so outputs still hold one bucket each. A group ends at a bucket that
//!   does not qualify; the spanning rows past it land in a segment of that bucket.
//! - One subtask per bucket (or group) and partition (partitioned tables), closed once its rows
//!   reach `maxNumRecordsPerTask` or it holds `MAX_SEGMENTS_PER_TASK` segments (scenario 11);
//!   each has its own lineage entry and replaces its inputs, outputs tagged
//!   `mergeLevel=<level>`.
//! - New watermark = start of the first selected bucket; all levels' watermarks are in the
//!   plan together. Beyond the reference: when a level selects nothing, its watermark moves to
//!   the first bucket that is not fully merged, so coarser levels do not wait for new data.
//! - `processAll` ignores watermarks (late data, scenario 6) and writes none.
//! - No segment is planned at two levels of one run.

use std::collections::{BTreeMap, HashMap, HashSet};

use minion_contract::segment::{TAG_MERGE_LEVEL, TAG_SHOULD_NOT_MERGE};
use minion_contract::{Processing, SegmentRef, TimeWindow};

use crate::model::{MergeLevel, MergeMode, MergeRollupConfig};

use super::windows::base_processing;
use super::{
    GeneratorInput, NoTaskReason, OutputNaming, Plan, PlannedSubtask, Timed, available, floor_to,
    fmt_ms, fmt_window, latest_of_each_partition, no_task, partition_of, sorted_by_time,
    split_by_limits,
};

/// A bucket selected at one level, or a group of consecutive ones joined by spanning segments
/// (`window` covers them all), with the segments overlapping it.
struct Selected<'a> {
    window: TimeWindow,
    segments: Vec<Timed<'a>>,
}

/// The outcome of walking one level's buckets.
struct LevelWalk<'a> {
    selected: Vec<Selected<'a>>,
    /// Start of the first bucket walked that is not fully merged (or where the walk stopped).
    first_not_done: i64,
    /// Why the walk stopped, for the skip message.
    stop: String,
}

struct LevelCtx<'c, 'a> {
    candidates: &'c [Timed<'a>],
    level_index: usize,
    level: &'c MergeLevel,
    rank: &'c HashMap<&'c str, usize>,
    planned: &'c HashSet<&'a str>,
    limit_ms: i64,
    /// Finer level's watermark (processFromWatermark, coarser levels only).
    gate_ms: Option<Option<i64>>,
}

impl<'a> LevelCtx<'_, 'a> {
    /// Merge level index of a segment (`None` = not merged by any configured level).
    fn rank_of(&self, s: &SegmentRef) -> Option<usize> {
        s.tags
            .get(TAG_MERGE_LEVEL)
            .and_then(|l| self.rank.get(l.as_str()).copied())
    }

    fn walk(&self, start_ms: i64) -> LevelWalk<'a> {
        // Validation rejects non-positive periods; the guard keeps the walk finite regardless.
        let bucket = self.level.bucket_ms.max(1);
        let c = self.candidates;
        let mut next = c.partition_point(|t| t.start < start_ms);
        let mut active: Vec<Timed<'a>> = c[..next]
            .iter()
            .filter(|t| t.end >= start_ms)
            .copied()
            .collect();
        let mut selected: Vec<Selected<'a>> = Vec::new();
        let mut buckets_taken = 0usize;
        // The last selected bucket holds a segment reaching into the next bucket: if that one
        // qualifies, it joins the same group (one subtask set, one commit per subtask), so the
        // segment is read once and its rows land in the bucket of each.
        let mut spans_on = false;
        let mut in_group: HashSet<&'a str> = HashSet::new();
        let mut first_not_done: Option<i64> = None;
        let mut bs = start_ms;
        let max_parallel = self.level.max_num_parallel_buckets.max(1) as usize;
        let stop = loop {
            let end = bs.saturating_add(bucket);
            let window = TimeWindow::new(bs, end);
            if end > self.limit_ms {
                break format!(
                    "next bucket {} ends after now − buffer",
                    fmt_window(&window)
                );
            }
            match self.gate_ms {
                Some(None) => break "waits for the finer level's first watermark".to_string(),
                Some(Some(g)) if end > g => {
                    break format!(
                        "bucket {} waits for the finer level's watermark ({})",
                        fmt_window(&window),
                        fmt_ms(g)
                    );
                }
                _ => {}
            }
            while next < c.len() && c[next].start < end {
                active.push(c[next]);
                next += 1;
            }
            active.retain(|t| t.end >= bs);
            if active.is_empty() {
                if next == c.len() {
                    break "no more segments".to_string();
                }
                bs += (c[next].start - bs).div_euclid(bucket).max(1) * bucket;
                continue;
            }
            let li = self.level_index;
            let has_unmerged = active
                .iter()
                .any(|t| self.rank_of(t.segment).is_none_or(|r| r < li));
            let ready = li == 0
                || active
                    .iter()
                    .all(|t| self.rank_of(t.segment).is_some_and(|r| r + 1 >= li));
            let free = !active
                .iter()
                .any(|t| self.planned.contains(t.segment.path.as_str()));
            if has_unmerged {
                first_not_done.get_or_insert(bs);
            }
            if has_unmerged && ready && free {
                match selected.last_mut() {
                    Some(group) if spans_on => {
                        group.window = TimeWindow::new(group.window.start_ms, end);
                        for t in &active {
                            if in_group.insert(t.segment.path.as_str()) {
                                group.segments.push(*t);
                            }
                        }
                    }
                    _ => {
                        in_group = active.iter().map(|t| t.segment.path.as_str()).collect();
                        selected.push(Selected {
                            window,
                            segments: active.clone(),
                        });
                    }
                }
                buckets_taken += 1;
                spans_on = active.iter().any(|t| t.end >= end);
                if buckets_taken >= max_parallel {
                    break "maxNumParallelBuckets reached".to_string();
                }
            } else if spans_on {
                // The spanning segment is merged with the group before; its rows in this
                // bucket land in a segment of this bucket (Pinot's rule, at the group's end).
                break format!(
                    "bucket {} holds a segment of the group before it and does not qualify",
                    fmt_window(&window)
                );
            }
            bs = end;
        };
        LevelWalk {
            selected,
            first_not_done: first_not_done.unwrap_or(bs),
            stop,
        }
    }
}

fn level_processing(
    input: &GeneratorInput,
    config: &MergeRollupConfig,
    level: &MergeLevel,
) -> Processing {
    Processing {
        merge_type: level.merge_type,
        round_bucket_ms: level.round_bucket_ms,
        aggregation_types: config.aggregation_types.clone(),
        aggregation_parameters: config.aggregation_parameters.clone(),
        derive_metrics: level.derive_metrics.clone(),
        erase_dimension_values: level.erase_dimension_values.clone(),
        time_partition_ms: Some(level.bucket_ms),
        value_partitioning: input.destination.def.schema.partitioning.is_some(),
        skip_corrupt_segments: config.skip_corrupt_segments,
        ..base_processing(level.max_records_per_segment)
    }
}

/// Plans one MergeRollup run. See the module contract.
pub fn plan_merge_rollup(input: &GeneratorInput, config: &MergeRollupConfig) -> Plan {
    let view = &input.destination;
    let timed = sorted_by_time(
        available(view)
            .into_iter()
            .filter(|s| s.tags.get(TAG_SHOULD_NOT_MERGE).is_none_or(|v| v != "true")),
    );
    // The latest segment of each stream partition may still be growing; a merged segment is
    // never a stream segment (this run's outputs carry no stream partition).
    let stream: Vec<Timed<'_>> = timed
        .iter()
        .filter(|t| t.segment.merge_level().is_none())
        .copied()
        .collect();
    let latest = latest_of_each_partition(view.def.table_type, &stream);
    let candidates: Vec<Timed<'_>> = timed
        .into_iter()
        .filter(|t| !latest.contains(t.segment.path.as_str()))
        .collect();
    if candidates.is_empty() {
        return no_task(
            input,
            NoTaskReason::NoSegments,
            format!("table {} has no segment to merge", view.def.name),
        );
    }
    let rank: HashMap<&str, usize> = config
        .levels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    let partitioned = view.def.schema.partitioning.is_some();
    let mut plan = Plan::new(input.config.task_type());
    let mut planned: HashSet<&str> = HashSet::new();
    let mut finer_watermark: Option<i64> = None;
    let mut notes: Vec<String> = Vec::new();
    let mut blocked = 0usize;
    for (li, level) in config.levels.iter().enumerate() {
        let stored = input.watermarks.get(&level.name).copied();
        if let Some(run) = input
            .incomplete_runs
            .iter()
            .find(|r| r.levels.is_empty() || r.levels.contains(&level.name))
        {
            notes.push(format!("{}: run {} is incomplete", level.name, run.name));
            blocked += 1;
            finer_watermark = stored;
            continue;
        }
        let initial = floor_to(candidates[0].start, level.bucket_ms);
        let from_watermark = config.mode == MergeMode::ProcessFromWatermark;
        let start = if from_watermark {
            stored.unwrap_or(initial)
        } else {
            initial
        };
        let ctx = LevelCtx {
            candidates: &candidates,
            level_index: li,
            level,
            rank: &rank,
            planned: &planned,
            limit_ms: input.axis_now_ms().saturating_sub(level.buffer_ms),
            gate_ms: (li > 0 && from_watermark).then_some(finer_watermark),
        };
        let walk = ctx.walk(start);
        if from_watermark {
            let wm = walk
                .selected
                .first()
                .map_or(walk.first_not_done, |b| b.window.start_ms);
            plan.watermarks.insert(level.name.clone(), wm);
            finer_watermark = Some(wm);
        }
        if walk.selected.is_empty() {
            notes.push(format!("{}: {}", level.name, walk.stop));
        }
        let processing = level_processing(input, config, level);
        for bucket in walk.selected {
            let mut by_partition: BTreeMap<Option<u32>, Vec<&SegmentRef>> = BTreeMap::new();
            for t in &bucket.segments {
                planned.insert(t.segment.path.as_str());
                let p = if partitioned {
                    partition_of(t.segment)
                } else {
                    None
                };
                by_partition.entry(p).or_default().push(t.segment);
            }
            for (partition, segments) in by_partition {
                for chunk in split_by_limits(segments, level.max_records_per_task, u64::MAX) {
                    let index = plan.subtasks.len() as u32;
                    let mut s =
                        PlannedSubtask::new(input.config.task_type(), index, processing.clone())
                            .with_inputs(chunk);
                    s.bucket = Some(bucket.window);
                    s.level = Some(level.name.clone());
                    s.partition = partition;
                    s.output = OutputNaming {
                        segment_name_prefix: Some(format!("merged_{}", level.name)),
                        tags: BTreeMap::from([(TAG_MERGE_LEVEL.to_string(), level.name.clone())]),
                        ..OutputNaming::default()
                    };
                    plan.subtasks.push(s);
                }
            }
        }
    }
    if blocked == config.levels.len() {
        return plan.or_skip(NoTaskReason::PreviousRunIncomplete, || notes.join("; "));
    }
    plan.or_skip(NoTaskReason::NothingToMerge, || notes.join("; "))
}

/// Delay metric per level, in whole buckets: `(min(now − buffer, finer watermark) − watermark)
/// ÷ bucket`, at least 0. Levels without a stored watermark are left out.
pub fn delay_buckets(
    config: &MergeRollupConfig,
    watermarks: &BTreeMap<String, i64>,
    now_ms: i64,
) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut finer: Option<i64> = None;
    for level in &config.levels {
        let wm = watermarks.get(&level.name).copied();
        if let Some(w) = wm {
            let mut bound = now_ms - level.buffer_ms;
            if let Some(f) = finer {
                bound = bound.min(f);
            }
            out.push((
                level.name.clone(),
                (bound - w).div_euclid(level.bucket_ms).max(0),
            ));
        }
        finer = wm;
    }
    out
}

#[cfg(test)]
#[path = "merge_rollup_tests.rs"]
mod tests;
