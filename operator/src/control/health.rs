//! A config's health as alerting and GitOps tools read it: the last successful run, the
//! failed runs since, and the `Degraded` condition once they reach the config's
//! `degradedAfterFailures`; and the `minion.dev/run-now` annotation (ArgoCD's "run now"
//! action, or `kubectl annotate`), which asks for one run per distinct value.
//!
//! Deciding is pure ([`count_runs`], [`run_now_request`]); `configs::reconcile` applies it.
//!
//! # Decisions
//! - Each finished run is counted once: runs that ended after `status.lastCompletionTime`
//!   are folded in order of their end, so the count survives the history limits deleting
//!   the runs it was made from.
//! - A Skipped run (nothing to do) neither breaks nor extends a run of failures; Failed and
//!   TimedOut extend it; Succeeded ends it.

use chrono::{DateTime, Utc};

use super::{created_at, name_of};
use crate::api::{MinionTaskConfigStatus, TaskRun, TaskRunPhase};

/// The annotation asking for a run now; its value (an RFC3339 time) names the request.
pub const RUN_NOW_ANNOTATION: &str = "minion.dev/run-now";

/// What the finished runs say about a config, folded over its previous status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunHealth {
    pub consecutive_failures: u32,
    pub last_successful_time: Option<DateTime<Utc>>,
    pub last_completion_time: Option<DateTime<Utc>>,
}

/// Folds the runs that finished since `before.lastCompletionTime` into the counts.
pub fn count_runs(before: &MinionTaskConfigStatus, runs: &[&TaskRun]) -> RunHealth {
    let mut health = RunHealth {
        consecutive_failures: before.consecutive_failures,
        last_successful_time: before.last_successful_time,
        last_completion_time: before.last_completion_time,
    };
    let mut ended: Vec<(DateTime<Utc>, String, TaskRunPhase)> = runs
        .iter()
        .filter_map(|r| {
            let s = r.status.as_ref()?;
            if !s.phase.is_finished() {
                return None;
            }
            let end = s.completion_time.or_else(|| created_at(&r.metadata))?;
            Some((end, name_of(&r.metadata), s.phase))
        })
        .filter(|(end, _, _)| before.last_completion_time.is_none_or(|last| *end > last))
        .collect();
    ended.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for (end, _, phase) in ended {
        match phase {
            TaskRunPhase::Succeeded => {
                health.consecutive_failures = 0;
                health.last_successful_time = Some(end);
            }
            TaskRunPhase::Failed | TaskRunPhase::TimedOut => {
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
            }
            _ => {}
        }
        health.last_completion_time = Some(end);
    }
    health
}

/// A run-now request not handled yet: the annotation's value and, when it is an RFC3339
/// time, that time (which names the run); `Err` with the value when it is not a time.
pub fn run_now_request(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    status: &MinionTaskConfigStatus,
) -> Option<Result<(String, DateTime<Utc>), String>> {
    let value = annotations?.get(RUN_NOW_ANNOTATION)?.trim().to_string();
    if value.is_empty() || status.handled_run_now.as_deref() == Some(value.as_str()) {
        return None;
    }
    Some(match DateTime::parse_from_rfc3339(&value) {
        Ok(t) => Ok((value, t.with_timezone(&Utc))),
        Err(_) => Err(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TaskRunStatus;

    fn run(name: &str, phase: TaskRunPhase, end_min: i64) -> TaskRun {
        let mut r: TaskRun = serde_json::from_value(serde_json::json!({
            "apiVersion": "minion.dev/v1alpha1", "kind": "TaskRun",
            "metadata": {"name": name, "namespace": "default",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"taskType": "SegmentImportTask", "table": "t", "configRef": "c"},
        }))
        .unwrap();
        r.status = Some(TaskRunStatus {
            phase,
            completion_time: phase
                .is_finished()
                .then(|| DateTime::UNIX_EPOCH + chrono::Duration::minutes(end_min)),
            ..Default::default()
        });
        r
    }

    fn at(min: i64) -> Option<DateTime<Utc>> {
        Some(DateTime::UNIX_EPOCH + chrono::Duration::minutes(min))
    }

    #[test]
    fn failures_count_until_a_success_and_skips_change_nothing() {
        let runs = [
            run("a", TaskRunPhase::Succeeded, 1),
            run("b", TaskRunPhase::Failed, 2),
            run("c", TaskRunPhase::Skipped, 3),
            run("d", TaskRunPhase::TimedOut, 4),
            run("e", TaskRunPhase::Running, 5),
        ];
        let refs: Vec<&TaskRun> = runs.iter().collect();
        let h = count_runs(&MinionTaskConfigStatus::default(), &refs);
        assert_eq!(h.consecutive_failures, 2);
        assert_eq!(h.last_successful_time, at(1));
        assert_eq!(h.last_completion_time, at(4));
    }

    #[test]
    fn each_run_counts_once_even_after_history_limits_delete_it() {
        let first = [
            run("a", TaskRunPhase::Failed, 1),
            run("b", TaskRunPhase::Failed, 2),
        ];
        let refs: Vec<&TaskRun> = first.iter().collect();
        let h = count_runs(&MinionTaskConfigStatus::default(), &refs);
        let before = MinionTaskConfigStatus {
            consecutive_failures: h.consecutive_failures,
            last_completion_time: h.last_completion_time,
            ..Default::default()
        };
        // "a" was deleted by the history limit; "b" is seen again; "c" is new.
        let second = [
            run("b", TaskRunPhase::Failed, 2),
            run("c", TaskRunPhase::Failed, 3),
        ];
        let refs: Vec<&TaskRun> = second.iter().collect();
        let h = count_runs(&before, &refs);
        assert_eq!(h.consecutive_failures, 3);
        let third = [run("d", TaskRunPhase::Succeeded, 4)];
        let refs: Vec<&TaskRun> = third.iter().collect();
        let before = MinionTaskConfigStatus {
            consecutive_failures: 3,
            last_completion_time: at(3),
            ..Default::default()
        };
        let h = count_runs(&before, &refs);
        assert_eq!(h.consecutive_failures, 0);
        assert_eq!(h.last_successful_time, at(4));
    }

    #[test]
    fn a_run_now_value_is_handled_once() {
        let mut ann = std::collections::BTreeMap::new();
        let status = MinionTaskConfigStatus::default();
        assert_eq!(run_now_request(Some(&ann), &status), None);
        ann.insert(RUN_NOW_ANNOTATION.into(), "2026-12-03T10:00:00Z".into());
        let (value, t) = run_now_request(Some(&ann), &status).unwrap().unwrap();
        assert_eq!(value, "2026-12-03T10:00:00Z");
        assert_eq!(t.to_rfc3339(), "2026-12-03T10:00:00+00:00");
        let handled = MinionTaskConfigStatus {
            handled_run_now: Some(value),
            ..Default::default()
        };
        assert_eq!(run_now_request(Some(&ann), &handled), None);
        ann.insert(RUN_NOW_ANNOTATION.into(), "now please".into());
        assert_eq!(
            run_now_request(Some(&ann), &handled),
            Some(Err("now please".into()))
        );
    }
}
