//! SegmentRefreshTask, with UpsertCompactionTask's thresholds (reference "Upsert compaction /
//! Segment Refresh").
//!
//! # Contract
//! - Eligible: visible, non-empty segments whose end is older than `now − buffer` (newer ones
//!   are ignored) and that no IN_PROGRESS lineage entry replaces or reads.
//! - A segment whose rows are all invalid is deleted without a rewrite (delete-only subtasks,
//!   no worker). Other segments are selected when invalid% ≥ `invalidRecordsThresholdPercent`
//!   **and** invalid count ≥ the count threshold (scenario 18).
//! - Selected segments are rewritten with only their valid rows, together with the small
//!   segments (fewer rows than `maxNumRecordsPerSegment` and smaller than
//!   `desiredSegmentSize`) of the same time bucket, so fragmented buckets are merged. A bucket
//!   with no selected segment is merged only when it has at least two small segments.
//! - Subtasks are cut at `maxNumRecordsPerTask`, `maxDataSizePerTask` and
//!   `MAX_SEGMENTS_PER_TASK`, ordered most invalid rows first, at most `tableMaxNumTasks`.
//! - Context: every subtask (rewrite or delete-only) carries as `context_segments` the visible
//!   segments that no subtask of the plan removes and no other run is replacing. Rewrites read
//!   them to decide upsert validity; for a delete, they (with the rewrites' inputs, whose
//!   newest rows their rewrite keeps) hold the newer rows that condemn it. The lineage entry
//!   of each subtask read-locks its context, so no other run removes a newer version of a key
//!   while an older one is being dropped ; see [`crate::lineage`].
//! - A segment another subtask of the run replaces is not context: the worker breaks ties of
//!   equal comparison values by the order of its inputs and context, so two subtasks reading
//!   each other's input could each drop their copy of a key.
//! - The invalid counts come from every visible segment. While another run is replacing one
//!   of them, all-invalid segments are not deleted (their condemning rows may be going): they
//!   wait for the next run. Rewrites need no such wait: the worker decides validity over the
//!   context it is given.

use std::collections::{BTreeMap, HashSet};

use minion_contract::{Processing, SegmentRef, TimeWindow};

use crate::model::{SegmentRefreshConfig, defaults};

use super::windows::base_processing;
use super::{
    GeneratorInput, NoTaskReason, Plan, PlannedSubtask, available, blocked_by_incomplete_run,
    floor_to, readable, split_by_limits, time_range, visible,
};

fn invalid_of(input: &GeneratorInput, s: &SegmentRef) -> u64 {
    input
        .invalid_rows
        .get(&s.path)
        .copied()
        .unwrap_or(0)
        .min(s.rows)
}

/// Whether a segment passes both thresholds.
pub fn passes_thresholds(config: &SegmentRefreshConfig, rows: u64, invalid: u64) -> bool {
    if rows == 0 || invalid == 0 {
        return false;
    }
    let percent = invalid as f64 * 100.0 / rows as f64;
    percent >= config.invalid_records_threshold_percent
        && invalid >= config.invalid_records_threshold_count
}

/// Plans one refresh run. See the module contract.
pub fn plan_refresh(input: &GeneratorInput, config: &SegmentRefreshConfig) -> Plan {
    if let Some(plan) = blocked_by_incomplete_run(input) {
        return plan;
    }
    let task_type = input.config.task_type();
    let limit = input.axis_now_ms().saturating_sub(config.buffer_ms);
    let live = available(&input.destination);
    let eligible: Vec<&SegmentRef> = live
        .iter()
        .copied()
        .filter(|s| time_range(s).is_some_and(|(_, max)| max < limit))
        .collect();
    let mut deletes: Vec<&SegmentRef> = Vec::new();
    // bucket start → (selected, small unselected)
    let mut buckets: BTreeMap<i64, (Vec<&SegmentRef>, Vec<&SegmentRef>)> = BTreeMap::new();
    for s in eligible {
        let invalid = invalid_of(input, s);
        let (min, _) = time_range(s).expect("eligible segments have time");
        let bucket = floor_to(min, config.bucket_ms);
        if invalid == s.rows {
            deletes.push(s);
        } else if passes_thresholds(config, s.rows, invalid) {
            buckets.entry(bucket).or_default().0.push(s);
        } else if s.rows < config.max_records_per_segment
            && s.bytes < config.desired_segment_size_bytes
        {
            buckets.entry(bucket).or_default().1.push(s);
        }
    }
    // Chunks of rewrites: (invalid rows, bucket, segments).
    let mut chunks: Vec<(u64, i64, Vec<&SegmentRef>)> = Vec::new();
    for (bucket, (mut selected, small)) in buckets {
        if selected.is_empty() && small.len() < 2 {
            continue;
        }
        selected.sort_by_key(|s| (std::cmp::Reverse(invalid_of(input, s)), s.path.as_str()));
        let merge_alone = selected.is_empty();
        let group = selected.into_iter().chain(small);
        for chunk in split_by_limits(
            group,
            config.max_records_per_task,
            config.max_data_size_per_task_bytes,
        ) {
            let invalid: u64 = chunk.iter().map(|s| invalid_of(input, s)).sum();
            // A lone segment with nothing invalid gains nothing from a rewrite.
            if chunk.len() < 2 && (invalid == 0 || merge_alone) {
                continue;
            }
            chunks.push((invalid, bucket, chunk));
        }
    }
    chunks.sort_by_key(|(invalid, bucket, _)| (std::cmp::Reverse(*invalid), *bucket));
    chunks.truncate(config.table_max_num_tasks.max(1) as usize);

    let mut plan = Plan::new(task_type);
    // All-invalid segments are deleted on the strength of the invalid counts, which rest on
    // every visible segment: not while another run is replacing one of them.
    let being_replaced = input.destination.lineage.locked_segments();
    let withheld = if deletes.is_empty() {
        None
    } else {
        visible(&input.destination)
            .into_iter()
            .find(|s| being_replaced.contains(s.path.as_str()))
    };
    if withheld.is_some() {
        deletes.clear();
    }
    let mut removed: HashSet<&str> = deletes.iter().map(|s| s.path.as_str()).collect();
    for (_, _, chunk) in &chunks {
        removed.extend(chunk.iter().map(|s| s.path.as_str()));
    }
    let context: Vec<SegmentRef> = readable(&input.destination)
        .into_iter()
        .filter(|c| !removed.contains(c.path.as_str()))
        .cloned()
        .collect();
    let processing = Processing {
        drop_invalid_upsert_rows: true,
        time_partition_ms: Some(config.bucket_ms),
        value_partitioning: input.destination.def.schema.partitioning.is_some(),
        desired_segment_size_bytes: Some(config.desired_segment_size_bytes),
        ..base_processing(config.max_records_per_segment)
    };
    for (_, bucket, chunk) in chunks {
        let index = plan.subtasks.len() as u32;
        let mut s = PlannedSubtask::new(task_type, index, processing.clone()).with_inputs(chunk);
        s.bucket = Some(TimeWindow::new(
            bucket,
            bucket.saturating_add(config.bucket_ms),
        ));
        s.context_segments = context.clone();
        plan.subtasks.push(s);
    }
    deletes.sort_by_key(|s| s.path.as_str());
    for chunk in deletes.chunks(defaults::MAX_SEGMENTS_PER_TASK) {
        let index = plan.subtasks.len() as u32;
        let mut s = PlannedSubtask::new(task_type, index, processing.clone());
        s.deletes = chunk.iter().map(|s| (*s).clone()).collect();
        s.context_segments = context.clone();
        plan.subtasks.push(s);
    }
    if let Some(locked) = withheld {
        let holder = input
            .destination
            .lineage
            .removal_holder(&locked.path, "")
            .map_or_else(String::new, |(e, _)| {
                format!(" by IN_PROGRESS entry {} of TaskRun {}", e.id, e.task_run)
            });
        plan = plan.or_skip(NoTaskReason::InputsLocked, || {
            format!(
                "all-invalid segments wait: segment {} is being replaced{holder}, and the newer rows that make them invalid may be in it",
                locked.name()
            )
        });
    }
    plan.or_skip(NoTaskReason::NothingToRefresh, || {
        format!(
            "no segment older than the buffer passes invalid% ≥ {} and invalid count ≥ {}, and \
             no bucket has small segments to merge",
            config.invalid_records_threshold_percent, config.invalid_records_threshold_count
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::plan;
    use crate::generator::testkit::*;
    use crate::model::{DAY_MS, TaskSpec};

    fn old(name: &str, rows: u64) -> SegmentRef {
        seg(name, T0, T0 + 1000, rows).bytes(1 << 40)
    }

    fn upsert(p: f64, c: u64) -> GeneratorInput {
        input(refresh(p, c)).now(T0 + 30 * DAY_MS)
    }

    #[test]
    fn upsert_thresholds_select_compact_skip_delete_and_ignore_new_segments() {
        // Scenario 18: 1000 rows, P = 30, C = 100.
        let cases = [
            (
                "300_invalid_is_compacted",
                300,
                false,
                vec![vec!["s"]],
                vec![vec![]],
            ),
            ("299_invalid_is_skipped", 299, false, vec![], vec![]),
            (
                "all_invalid_segment_is_deleted",
                1000,
                false,
                vec![vec![]],
                vec![vec!["s"]],
            ),
            (
                "segment_newer_than_buffer_is_ignored",
                300,
                true,
                vec![],
                vec![],
            ),
        ];
        for (name, invalid, recent, want_inputs, want_deletes) in cases {
            let s = if recent {
                seg("s", T0 + 29 * DAY_MS, T0 + 29 * DAY_MS, 1000)
            } else {
                old("s", 1000)
            };
            let p = plan(
                &upsert(30.0, 100)
                    .dest_segments(vec![s])
                    .invalid("s", invalid),
            )
            .unwrap();
            assert_eq!(inputs_of(&p), want_inputs, "{name}");
            assert_eq!(deletes_of(&p), want_deletes, "{name}");
            if want_inputs.is_empty() {
                assert_eq!(reason(&p), Some("NothingToRefresh"), "{name}");
            }
        }
    }

    #[test]
    fn deleted_segments_are_in_the_lineage_entry_and_need_no_worker() {
        let p = plan(
            &upsert(30.0, 100)
                .dest_segments(vec![old("s", 1000)])
                .invalid("s", 1000),
        )
        .unwrap();
        assert!(!p.subtasks[0].needs_worker());
        assert_eq!(
            p.lineage_requests("r", "r", "r")[0].segments_from,
            vec!["data/s.parquet".to_string()]
        );
    }

    #[test]
    fn most_invalid_segments_come_first_and_table_max_num_tasks_caps() {
        let mut i = upsert(0.0, 1).dest_segments(vec![
            seg("a", T0, T0 + 1, 1000).bytes(1 << 40),
            seg("b", T0 + DAY_MS, T0 + DAY_MS + 1, 1000).bytes(1 << 40),
            seg("c", T0 + 2 * DAY_MS, T0 + 2 * DAY_MS + 1, 1000).bytes(1 << 40),
        ]);
        i = i.invalid("a", 10).invalid("b", 500).invalid("c", 50);
        if let TaskSpec::SegmentRefresh(c) = &mut i.config.task {
            c.table_max_num_tasks = 2;
        }
        let p = plan(&i).unwrap();
        assert_eq!(inputs_of(&p), vec![vec!["b"], vec!["c"]]);
        assert!(p.subtasks[0].processing.drop_invalid_upsert_rows);
        // context: what no subtask of the run removes (`c` is rewritten by the second one)
        let context: Vec<&str> = p.subtasks[0]
            .context_segments
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(context, vec!["a"]);
    }

    #[test]
    fn small_segments_of_a_bucket_are_merged_with_the_selected_ones() {
        let p = plan(
            &upsert(30.0, 100)
                .dest_segments(vec![
                    seg("sel", T0, T0 + 1, 1000),
                    seg("small1", T0 + 5, T0 + 6, 10),
                    seg("small2", T0 + 7, T0 + 8, 10),
                    seg("lone_small_other_day", T0 + DAY_MS, T0 + DAY_MS + 1, 10),
                ])
                .invalid("sel", 400),
        )
        .unwrap();
        assert_eq!(inputs_of(&p), vec![vec!["sel", "small1", "small2"]]);
    }

    #[test]
    fn defaults_count_threshold_of_one_selects_any_invalid_row() {
        let c = crate::model::SegmentRefreshConfig {
            invalid_records_threshold_percent: defaults::INVALID_RECORDS_THRESHOLD_PERCENT,
            invalid_records_threshold_count: defaults::INVALID_RECORDS_THRESHOLD_COUNT,
            ..match refresh(0.0, 0) {
                TaskSpec::SegmentRefresh(c) => c,
                _ => unreachable!(),
            }
        };
        assert!(passes_thresholds(&c, 1000, 1));
        assert!(!passes_thresholds(&c, 1000, 0));
    }

    #[test]
    fn locked_segments_are_neither_rewritten_nor_deleted() {
        let p = plan(
            &upsert(0.0, 1)
                .dest_segments(vec![old("a", 100), old("b", 100)])
                .invalid("a", 100)
                .invalid("b", 50)
                .lock_dest(&["a", "b"]),
        )
        .unwrap();
        assert_eq!(reason(&p), Some("NothingToRefresh"));
    }
}
