//! PurgeTask: rewrite segments without the rows matching a purge predicate, scheduled by each
//! segment's last purge time.
//!
//! # Contract
//! - Eligible: visible, non-empty segments that no IN_PROGRESS lineage entry replaces or reads
//!   (e.g. a running refresh's upsert context), never purged or whose `lastPurgeTimeMs` tag is
//!   at least `lastPurgeTimeThreshold` old. When every due segment is locked, the run plans
//!   nothing with `InputsLocked`, naming a holder.
//! - Never-purged segments first, then the longest since their purge, then by path; one
//!   subtask per segment (as Pinot), at most `tableMaxNumTasks`.
//! - Outputs are tagged `lastPurgeTimeMs=<now>` and keep the input's `mergeLevel`, so
//!   MergeRollup does not see purged segments as unmerged.

use std::collections::BTreeMap;

use minion_contract::segment::TAG_MERGE_LEVEL;
use minion_contract::{Processing, SegmentRef};

use crate::model::PurgeConfig;

use super::windows::base_processing;
use super::{
    GeneratorInput, NoTaskReason, OutputNaming, Plan, PlannedSubtask, TAG_LAST_PURGE_TIME_MS,
    blocked_by_incomplete_run, visible,
};

/// A segment's last purge time, from its tag.
pub fn last_purge_time_ms(s: &SegmentRef) -> Option<i64> {
    s.tags.get(TAG_LAST_PURGE_TIME_MS)?.parse().ok()
}

/// Plans one purge run. See the module contract.
pub fn plan_purge(input: &GeneratorInput, config: &PurgeConfig) -> Plan {
    if let Some(plan) = blocked_by_incomplete_run(input) {
        return plan;
    }
    let due_before = input
        .now_ms
        .saturating_sub(config.last_purge_time_threshold_ms);
    let dest = &input.destination;
    let locks = dest.lineage.removal_locks();
    let (mut due, locked): (Vec<(Option<i64>, &SegmentRef)>, Vec<_>) = visible(dest)
        .into_iter()
        .filter(|s| s.rows > 0)
        .map(|s| (last_purge_time_ms(s), s))
        .filter(|(last, _)| last.is_none_or(|t| t <= due_before))
        .partition(|(_, s)| !locks.contains(s.path.as_str()));
    due.sort_by(|(a, x), (b, y)| (a, x.path.as_str()).cmp(&(b, y.path.as_str())));
    due.truncate(config.table_max_num_tasks.max(1) as usize);
    let processing = Processing {
        purge_predicate: Some(config.purge_predicate.to_string()),
        value_partitioning: input.destination.def.schema.partitioning.is_some(),
        ..base_processing(config.max_records_per_segment)
    };
    let mut plan = Plan::new(input.config.task_type());
    for (i, (_, segment)) in due.into_iter().enumerate() {
        let mut s = PlannedSubtask::new(input.config.task_type(), i as u32, processing.clone())
            .with_inputs([segment]);
        let mut tags =
            BTreeMap::from([(TAG_LAST_PURGE_TIME_MS.to_string(), input.now_ms.to_string())]);
        if let Some(level) = segment.tags.get(TAG_MERGE_LEVEL) {
            tags.insert(TAG_MERGE_LEVEL.to_string(), level.clone());
        }
        s.output = OutputNaming {
            tags,
            ..OutputNaming::default()
        };
        s.partition = super::partition_of(segment);
        plan.subtasks.push(s);
    }
    if let Some((_, s)) = locked.first() {
        plan = plan.or_skip(NoTaskReason::InputsLocked, || {
            let holder = dest
                .lineage
                .removal_holder(&s.path, "")
                .map_or_else(String::new, |(e, how)| {
                    format!(" by IN_PROGRESS entry {} of TaskRun {}, {how}", e.id, e.task_run)
                });
            format!(
                "{} due segment(s) are locked by other runs (segment {} is locked{holder}); they are purged once those runs end",
                locked.len(),
                s.name()
            )
        });
    }
    plan.or_skip(NoTaskReason::NothingToPurge, || {
        "every segment was purged within the last purge time threshold".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::plan;
    use crate::generator::testkit::*;
    use crate::model::{DAY_MS, TaskSpec, defaults};

    fn purge(max_tasks: u32) -> GeneratorInput {
        input(TaskSpec::Purge(PurgeConfig {
            purge_predicate: crate::model::Expr::parse("id = 'gdpr'").unwrap(),
            last_purge_time_threshold_ms: defaults::PURGE_LAST_PURGE_TIME_THRESHOLD_MS,
            table_max_num_tasks: max_tasks,
            max_records_per_segment: defaults::MAX_RECORDS_PER_SEGMENT,
        }))
        .now(T0 + 100 * DAY_MS)
    }

    fn purged(name: &str, days_ago: i64) -> SegmentRef {
        let at = T0 + (100 - days_ago) * DAY_MS;
        seg(name, T0, T0 + 1, 10).tag(TAG_LAST_PURGE_TIME_MS, &at.to_string())
    }

    #[test]
    fn purge_schedules_never_purged_then_oldest_purged_segments() {
        let p = plan(&purge(3).dest_segments(vec![
            purged("recent", 1),
            purged("old", 30),
            purged("older", 60),
            seg("never", T0, T0 + 1, 10).level("1day"),
            purged("exactly_threshold", 14),
        ]))
        .unwrap();
        assert_eq!(
            inputs_of(&p),
            vec![vec!["never"], vec!["older"], vec!["old"]]
        );
        let out = &p.subtasks[0].output.tags;
        assert_eq!(
            out.get(TAG_LAST_PURGE_TIME_MS),
            Some(&(T0 + 100 * DAY_MS).to_string())
        );
        assert_eq!(out.get(TAG_MERGE_LEVEL).map(String::as_str), Some("1day"));
        assert_eq!(
            p.subtasks[0].processing.purge_predicate.as_deref(),
            Some("\"id\" = 'gdpr'")
        );
    }

    #[test]
    fn recently_purged_or_locked_segments_are_not_purged() {
        let p = plan(
            &purge(10)
                .dest_segments(vec![purged("recent", 1), seg("locked", T0, T0 + 1, 10)])
                .lock_dest(&["locked"]),
        )
        .unwrap();
        assert_eq!(reason(&p), Some("InputsLocked"));
        assert!(
            p.skip
                .unwrap()
                .message
                .contains("segment locked is locked by IN_PROGRESS entry"),
        );
        let p = plan(&purge(10).dest_segments(vec![purged("recent", 1)])).unwrap();
        assert_eq!(reason(&p), Some("NothingToPurge"));
    }
}
