//! When a `MinionTaskConfig` runs: fire times due since the last schedule, the missed-run
//! policy, suspension, and deterministic TaskRun names.
//!
//! Pure: the caller passes the schedule's `next_after` function, the last schedule time from
//! status and `now`; nothing here reads the clock or touches the API.

use chrono::{DateTime, Utc};

use crate::model::MissedRunPolicy;

/// Fire times more than this behind `now` count as missed rather than on time.
pub const ON_TIME_GRACE_MS: i64 = 60_000;
/// Upper bound on fire times enumerated per decision: a seconds-level schedule after an outage
/// of more than eleven days stops there (its latest due time is then older than the true one,
/// which only makes `RunOnce` start a run that is slightly older).
pub const MAX_DUE_ENUMERATED: usize = 1_000_000;

/// What to do for one config at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleDecision {
    /// Start a run for this scheduled time.
    pub run_at: Option<DateTime<Utc>>,
    /// The value to store as `status.lastScheduleTime` (the latest due fire time handled).
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// Fire times that will never get a run (for `minion_schedule_missed_total`).
    pub missed: u64,
    /// The next fire time after `now`.
    pub next: Option<DateTime<Utc>>,
}

/// Inputs of [`decide`] besides the schedule.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleState {
    /// `status.lastScheduleTime`, or the config's creation time when it never ran.
    pub last_schedule_time: DateTime<Utc>,
    pub suspend: bool,
    pub missed_run_policy: MissedRunPolicy,
    /// `startingDeadlineSeconds` in milliseconds: a due time older than this is not started.
    pub starting_deadline_ms: Option<i64>,
}

/// Decides whether a run is due.
///
/// # Guarantees
/// - At most one run per call, for the latest due fire time; earlier due times are missed.
/// - While suspended nothing runs and `last_schedule_time` is unchanged, so on resume the
///   missed-run policy decides about the times that passed.
/// - `RunOnce` runs the latest due time unless it is older than the starting deadline;
///   `Skip` runs it only if it is on time (within [`ON_TIME_GRACE_MS`]).
/// - Deterministic: the same inputs give the same decision.
pub fn decide(
    next_after: impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>>,
    state: ScheduleState,
    now: DateTime<Utc>,
) -> ScheduleDecision {
    let next_future = |from: DateTime<Utc>| {
        let mut t = next_after(from);
        while let Some(x) = t {
            if x > now {
                break;
            }
            t = next_after(x);
        }
        t
    };
    if state.suspend {
        return ScheduleDecision {
            run_at: None,
            last_schedule_time: None,
            missed: 0,
            next: next_future(now),
        };
    }
    let mut due = 0u64;
    let mut latest = None;
    let mut cursor = state.last_schedule_time;
    while let Some(t) = next_after(cursor) {
        if t > now {
            break;
        }
        due += 1;
        latest = Some(t);
        cursor = t;
        if due as usize >= MAX_DUE_ENUMERATED {
            break;
        }
    }
    let next = next_future(cursor.max(now));
    let Some(latest) = latest else {
        return ScheduleDecision {
            run_at: None,
            last_schedule_time: None,
            missed: 0,
            next,
        };
    };
    let late_ms = (now - latest).num_milliseconds();
    let runs = match state.missed_run_policy {
        MissedRunPolicy::RunOnce => state.starting_deadline_ms.is_none_or(|d| late_ms <= d),
        MissedRunPolicy::Skip => {
            late_ms <= ON_TIME_GRACE_MS && state.starting_deadline_ms.is_none_or(|d| late_ms <= d)
        }
    };
    ScheduleDecision {
        run_at: runs.then_some(latest),
        last_schedule_time: Some(latest),
        missed: due - u64::from(runs),
        next,
    }
}

/// Longest Kubernetes object name we produce (a label value must fit in 63 characters).
pub const MAX_NAME_LEN: usize = 63;

/// Deterministic name of the TaskRun a schedule creates for `scheduled`:
/// `<config>-<yyyymmdd>-<hhmmss>` in UTC. Creating it twice (a restarted control loop) hits
/// the same name, so a fire time never gets two runs.
pub fn task_run_name(config: &str, scheduled: DateTime<Utc>) -> String {
    with_suffix(config, &scheduled.format("%Y%m%d-%H%M%S").to_string())
}

/// Name of a run started by hand (`minion run`), distinct from scheduled ones.
pub fn manual_task_run_name(config: &str, requested: DateTime<Utc>) -> String {
    with_suffix(
        config,
        &format!("manual-{}", requested.format("%Y%m%d-%H%M%S")),
    )
}

/// Name of the `attempt`-th retry of the run `run` (`minion retry`): `<run>-retry-<n>`, a
/// retry of a retry counting on from the same base (`x-retry-1` → `x-retry-2`).
pub fn retry_task_run_name(run: &str, attempt: u32) -> String {
    let base = match run.rsplit_once("-retry-") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => run,
    };
    with_suffix(base, &format!("retry-{attempt}"))
}

fn with_suffix(base: &str, suffix: &str) -> String {
    let room = MAX_NAME_LEN - suffix.len() - 1;
    let base = if base.len() > room {
        base[..room].trim_end_matches('-')
    } else {
        base
    };
    format!("{base}-{suffix}")
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    #[test]
    fn retry_names_fit_and_count_on_from_the_same_base() {
        assert_eq!(
            retry_task_run_name("cfg-20260101-000000", 1),
            "cfg-20260101-000000-retry-1"
        );
        assert_eq!(retry_task_run_name("cfg-x-retry-1", 2), "cfg-x-retry-2");
        assert_eq!(retry_task_run_name("cfg-retry-", 1), "cfg-retry--retry-1");
        let long = "a".repeat(63);
        let name = retry_task_run_name(&long, 12);
        assert_eq!(name.len(), MAX_NAME_LEN);
        assert!(name.ends_with("-retry-12"), "{name}");
    }

    fn every_15_min(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let step = 15 * 60;
        let secs = t.timestamp();
        Some(Utc.timestamp_opt((secs / step + 1) * step, 0).unwrap())
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, h, m, s).unwrap()
    }

    fn state(last: DateTime<Utc>, policy: MissedRunPolicy) -> ScheduleState {
        ScheduleState {
            last_schedule_time: last,
            suspend: false,
            missed_run_policy: policy,
            starting_deadline_ms: None,
        }
    }

    #[test]
    fn nothing_due_before_the_next_fire_time() {
        let d = decide(
            every_15_min,
            state(at(10, 0, 0), MissedRunPolicy::RunOnce),
            at(10, 14, 59),
        );
        assert_eq!(d.run_at, None);
        assert_eq!(d.last_schedule_time, None);
        assert_eq!(d.next, Some(at(10, 15, 0)));
    }

    #[test]
    fn an_on_time_fire_runs_once_and_names_the_next() {
        let d = decide(
            every_15_min,
            state(at(10, 0, 0), MissedRunPolicy::Skip),
            at(10, 15, 3),
        );
        assert_eq!(d.run_at, Some(at(10, 15, 0)));
        assert_eq!(d.last_schedule_time, Some(at(10, 15, 0)));
        assert_eq!(d.missed, 0);
        assert_eq!(d.next, Some(at(10, 30, 0)));
    }

    #[test]
    fn run_once_policy_runs_only_the_latest_missed_time() {
        let d = decide(
            every_15_min,
            state(at(8, 0, 0), MissedRunPolicy::RunOnce),
            at(10, 20, 0),
        );
        assert_eq!(d.run_at, Some(at(10, 15, 0)));
        assert_eq!(d.missed, 8); // 8:15 … 10:00
    }

    #[test]
    fn skip_policy_runs_nothing_after_an_outage() {
        let d = decide(
            every_15_min,
            state(at(8, 0, 0), MissedRunPolicy::Skip),
            at(10, 20, 0),
        );
        assert_eq!(d.run_at, None);
        assert_eq!(d.last_schedule_time, Some(at(10, 15, 0)));
        assert_eq!(d.missed, 9);
    }

    #[test]
    fn starting_deadline_drops_a_run_that_is_too_late() {
        let mut s = state(at(10, 0, 0), MissedRunPolicy::RunOnce);
        s.starting_deadline_ms = Some(Duration::minutes(2).num_milliseconds());
        let d = decide(every_15_min, s, at(10, 18, 0));
        assert_eq!(d.run_at, None);
        assert_eq!(d.missed, 1);
        let d = decide(every_15_min, s, at(10, 16, 0));
        assert_eq!(d.run_at, Some(at(10, 15, 0)));
    }

    #[test]
    fn suspended_config_runs_nothing_and_keeps_its_last_schedule_time() {
        let mut s = state(at(8, 0, 0), MissedRunPolicy::RunOnce);
        s.suspend = true;
        let d = decide(every_15_min, s, at(10, 20, 0));
        assert_eq!(d.run_at, None);
        assert_eq!(d.last_schedule_time, None);
        assert_eq!(d.next, Some(at(10, 30, 0)));
    }

    #[test]
    fn task_run_names_are_deterministic_and_fit_in_a_label() {
        let t = at(14, 0, 0);
        assert_eq!(
            task_run_name("events-merge", t),
            "events-merge-20261121-140000"
        );
        assert_eq!(
            task_run_name("events-merge", t),
            task_run_name("events-merge", t)
        );
        assert_ne!(
            task_run_name("events-merge", t),
            manual_task_run_name("events-merge", t)
        );
        let long = "x".repeat(80);
        assert!(task_run_name(&long, t).len() <= MAX_NAME_LEN);
    }
}
