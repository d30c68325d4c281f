//! MinionTaskConfig reconcile: validation into conditions (`Ready`, `ScheduleValid`,
//! `Suspended`) with a Warning Event when a config becomes invalid, cron scheduling (a
//! TaskRun named [`task_run_name`] per due fire time), the status mirror (last/next schedule
//! times, last run and result, active runs, watermarks from the log, delays in buckets), and
//! history limits (old finished TaskRuns deleted, with their jobs and their directory
//! `<dest>/_minion/runs/<run>/`).
//!
//! Deciding is pure ([`schedule_decision`], [`runs_to_delete`], [`last_result`]); the
//! reconcile function only reads, writes status and creates or deletes TaskRuns.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::gather::{self, Catalogs};
use super::{
    Backend, ControlError, Created, Event, EventType, ObjectRef, Reason, created_at, k8s_time,
    name_of, namespace_of,
};
use crate::api::condition::{
    DEGRADED, READY, SCHEDULE_VALID, SUSPENDED, find_condition, set_condition,
};
use crate::api::task_config::{MAX_ACTIVE_RUNS, MAX_NEXT_SCHEDULE_TIMES};
use crate::api::{
    ConditionStatus, DelayStatus, MinionTaskConfig, MinionTaskConfigStatus, RunResult, Table,
    TaskRun, TaskRunPhase, TaskRunSpec, WatermarkStatus,
};
use crate::model::{TaskConfig, TaskSpec};
use crate::schedule::{
    ScheduleDecision, ScheduleState, decide, manual_task_run_name, task_run_name,
};

/// The schedule decision of a valid config at `now`, or `None` without a schedule.
pub fn schedule_decision(
    config: &TaskConfig,
    status: &MinionTaskConfigStatus,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<ScheduleDecision> {
    let schedule = config.schedule.as_ref()?;
    Some(decide(
        |t| schedule.next_after(t),
        ScheduleState {
            last_schedule_time: status.last_schedule_time.unwrap_or(created),
            suspend: config.suspend,
            missed_run_policy: config.missed_run_policy,
            starting_deadline_ms: config.starting_deadline_ms,
        },
        now,
    ))
}

/// The TaskRuns of `config` (same namespace, `configRef` = its name).
pub fn runs_of<'r>(runs: &'r [TaskRun], namespace: &str, config: &str) -> Vec<&'r TaskRun> {
    runs.iter()
        .filter(|r| namespace_of(&r.metadata) == namespace)
        .filter(|r| r.spec.config_ref.as_deref() == Some(config))
        .collect()
}

fn phase(r: &TaskRun) -> TaskRunPhase {
    r.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn ended_at(r: &TaskRun) -> Option<DateTime<Utc>> {
    r.status
        .as_ref()
        .and_then(|s| s.completion_time)
        .or_else(|| created_at(&r.metadata))
}

/// Finished runs beyond the history limits, oldest first: successful (Succeeded, Skipped)
/// beyond `successful`, unsuccessful (Failed, TimedOut) beyond `failed`.
pub fn runs_to_delete(runs: &[&TaskRun], successful: u32, failed: u32) -> Vec<String> {
    let mut out = Vec::new();
    for (keep, ok) in [(successful, true), (failed, false)] {
        let mut group: Vec<&&TaskRun> = runs
            .iter()
            .filter(|r| phase(r).is_finished())
            .filter(|r| matches!(phase(r), TaskRunPhase::Succeeded | TaskRunPhase::Skipped) == ok)
            .collect();
        group.sort_by_key(|r| std::cmp::Reverse((ended_at(r), name_of(&r.metadata))));
        out.extend(
            group
                .iter()
                .skip(keep as usize)
                .map(|r| name_of(&r.metadata)),
        );
    }
    out
}

/// How many finished inline runs (no `configRef`: `minion push`, `minion execute`, a TaskRun
/// with its own config) of one table are kept, per result kind, as a config's
/// `successfulRunsHistoryLimit`/`failedRunsHistoryLimit` keep its own.
pub const INLINE_RUNS_HISTORY_LIMIT: u32 = 20;

/// Deletes a finished run: its subtask jobs, its directory beside `dest_uri` (plan, subtask
/// states), then the TaskRun.
///
/// # Errors
/// Backend or storage failures; a crash part-way leaves a finished run deleted again next
/// time.
pub async fn delete_finished_run(
    backend: &dyn Backend,
    run: &TaskRun,
    dest_uri: &str,
) -> Result<(), ControlError> {
    let namespace = namespace_of(&run.metadata);
    let name = name_of(&run.metadata);
    let run_dir = format!(
        "{namespace}/{}",
        super::protocol::run_key(&name, run.metadata.uid.as_deref())
    );
    let mut subtasks = run
        .status
        .as_ref()
        .map(|s| s.subtasks.clone())
        .unwrap_or_default();
    if run
        .status
        .as_ref()
        .is_some_and(|s| s.subtasks_total as usize > s.subtasks.len())
        && let Some(all) = gather::read_subtasks(dest_uri, &run_dir).await?
    {
        subtasks = all;
    }
    for job in subtasks.iter().filter_map(|s| s.job.as_ref()) {
        backend.delete_subtask(&namespace, job).await?;
    }
    // The run's directory before the run: a crash in between leaves a finished run that is
    // deleted again next time.
    gather::delete_run_dir(dest_uri, &run_dir).await?;
    backend.delete_task_run(&namespace, &name).await?;
    Ok(())
}

/// Deletes the finished inline runs of each table beyond [`INLINE_RUNS_HISTORY_LIMIT`];
/// returns `(namespace, name)` of each deleted run. `tables` are the Tables that exist: runs
/// of a table that is gone are left alone (their directory went with it, or is unknown).
///
/// # Errors
/// Backend or storage failures (what was deleted before stays deleted).
pub async fn prune_inline_runs(
    backend: &dyn Backend,
    runs: &[TaskRun],
    tables: &[Table],
) -> Result<Vec<(String, String)>, ControlError> {
    let mut groups: BTreeMap<(String, String), Vec<&TaskRun>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.spec.config_ref.is_none()) {
        groups
            .entry((namespace_of(&r.metadata), r.spec.table.clone()))
            .or_default()
            .push(r);
    }
    let mut deleted = Vec::new();
    for ((namespace, table), group) in groups {
        let Some(def) = tables
            .iter()
            .filter(|t| namespace_of(&t.metadata) == namespace && name_of(&t.metadata) == table)
            .find_map(|t| crate::validate::table(t).ok())
        else {
            continue;
        };
        let limit = INLINE_RUNS_HISTORY_LIMIT;
        for old in runs_to_delete(&group, limit, limit) {
            if let Some(run) = group.iter().find(|r| name_of(&r.metadata) == old) {
                delete_finished_run(backend, run, &def.uri).await?;
                deleted.push((namespace.clone(), old));
            }
        }
    }
    Ok(deleted)
}

/// The most recently finished run with its result.
pub fn last_result(runs: &[&TaskRun]) -> Option<(String, RunResult, String, String)> {
    let last = runs
        .iter()
        .filter(|r| phase(r).is_finished())
        .max_by_key(|r| (ended_at(r), name_of(&r.metadata)))?;
    let s = last.status.as_ref()?;
    let result = match s.phase {
        TaskRunPhase::Succeeded => RunResult::Succeeded,
        TaskRunPhase::TimedOut => RunResult::TimedOut,
        TaskRunPhase::Skipped => RunResult::Skipped,
        _ => RunResult::Failed,
    };
    Some((
        name_of(&last.metadata),
        result,
        s.reason.clone().unwrap_or_default(),
        s.message.clone().unwrap_or_default(),
    ))
}

/// A TaskRun of `config` for `scheduled` (a schedule's fire time) or a manual run.
pub fn new_task_run(
    cfg: &MinionTaskConfig,
    name: &str,
    scheduled: Option<DateTime<Utc>>,
) -> TaskRun {
    let mut run = TaskRun::new(
        name,
        TaskRunSpec {
            task_type: Some(cfg.spec.task_type),
            table: cfg.spec.table.clone(),
            source_table: cfg.spec.source_table.clone(),
            config_ref: Some(name_of(&cfg.metadata)),
            config: None,
            scheduled_time: scheduled,
            subtask_timeout: None,
            run_timeout: None,
            max_attempts: None,
            parallelism: None,
            memory_budget: None,
            cancel: false,
        },
    );
    run.metadata.namespace = Some(namespace_of(&cfg.metadata));
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("minion.dev/config".to_string(), name_of(&cfg.metadata));
    run.metadata.labels = Some(labels);
    run
}

/// What reconciling one config did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigOutcome {
    /// A TaskRun created for a due fire time.
    pub created: Option<String>,
    pub deleted: Vec<String>,
    /// Fire times of the schedule that will never get a run (`minion_schedule_missed_total`),
    /// with the config's destination table and task type.
    pub missed: Option<MissedFires>,
}

/// Missed fire times of one config's schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissedFires {
    pub namespace: String,
    pub config: String,
    pub table: String,
    pub task_type: String,
    pub count: u64,
}

/// Reconciles one MinionTaskConfig (see the module docs).
///
/// # Errors
/// Backend failures; validation problems go to conditions and Events instead.
pub async fn reconcile(
    backend: &dyn Backend,
    catalogs: &mut Catalogs,
    cfg: &MinionTaskConfig,
    runs: &[TaskRun],
    now: DateTime<Utc>,
) -> Result<ConfigOutcome, ControlError> {
    let namespace = namespace_of(&cfg.metadata);
    let name = name_of(&cfg.metadata);
    let generation = cfg.metadata.generation;
    let before = cfg.status.clone().unwrap_or_default();
    let mut status = before.clone();
    status.observed_generation = generation;
    let mut outcome = ConfigOutcome::default();
    let mine = runs_of(runs, &namespace, &name);

    let resolved = gather::resolve_config(backend, cfg).await;
    let schedule_error = crate::validate::task_config(cfg).err().and_then(|e| {
        e.errors
            .into_iter()
            .find(|e| e.field == "spec.schedule" || e.field == "spec.timeZone")
    });
    let c = &mut status.conditions;
    match &schedule_error {
        Some(e) => set_condition(
            c,
            SCHEDULE_VALID,
            ConditionStatus::False,
            e.reason(),
            e.to_string(),
            generation,
            now,
        ),
        None => {
            let (reason, message) = match &cfg.spec.schedule {
                Some(s) => (Reason::Valid, format!("schedule {s:?} parses")),
                None => (Reason::NoSchedule, "runs start only on demand".to_string()),
            };
            set_condition(
                c,
                SCHEDULE_VALID,
                ConditionStatus::True,
                reason.as_str(),
                message,
                generation,
                now,
            )
        }
    };
    let (reason, message) = if cfg.spec.suspend {
        (
            Reason::Suspended,
            "spec.suspend is true: no new scheduled runs",
        )
    } else {
        (Reason::Active, "scheduled runs start when due")
    };
    set_condition(
        c,
        SUSPENDED,
        cfg.spec.suspend.into(),
        reason.as_str(),
        message,
        generation,
        now,
    );

    match &resolved {
        Err(e) => {
            let was =
                find_condition(&before.conditions, READY).map(|c| (c.status, c.reason.clone()));
            set_condition(
                c,
                READY,
                ConditionStatus::False,
                e.reason(),
                e.to_string(),
                generation,
                now,
            );
            if was != Some((ConditionStatus::False, e.reason().to_string())) {
                backend
                    .record_event(&Event {
                        object: ObjectRef::new("MinionTaskConfig", &namespace, &name),
                        type_: EventType::Warning,
                        reason: e.reason().to_string(),
                        message: e.to_string(),
                        time: now,
                    })
                    .await?;
            }
        }
        Ok(resolved) => {
            set_condition(
                c,
                READY,
                ConditionStatus::True,
                Reason::Valid.as_str(),
                "the config is valid and its tables exist",
                generation,
                now,
            );
            let created = created_at(&cfg.metadata).unwrap_or(now);
            if let Some(d) = schedule_decision(&resolved.config, &status, created, now) {
                if d.missed > 0 {
                    backend
                        .record_event(&Event {
                            object: ObjectRef::new("MinionTaskConfig", &namespace, &name),
                            type_: EventType::Warning,
                            reason: Reason::MissedSchedule.into(),
                            message: format!(
                                "{} fire time(s) of {:?} were missed and will not run (missedRunPolicy {:?})",
                                d.missed,
                                cfg.spec.schedule.as_deref().unwrap_or_default(),
                                resolved.config.missed_run_policy
                            ),
                            time: now,
                        })
                        .await?;
                    outcome.missed = Some(MissedFires {
                        namespace: namespace.clone(),
                        config: name.clone(),
                        table: resolved.config.table.clone(),
                        task_type: resolved.config.task_type().to_string(),
                        count: d.missed,
                    });
                }
                if let Some(t) = d.run_at {
                    let run_name = task_run_name(&name, t);
                    let run = new_task_run(cfg, &run_name, Some(t));
                    if backend.create_task_run(&run).await? == Created::Created {
                        backend
                            .record_event(&Event {
                                object: ObjectRef::new("MinionTaskConfig", &namespace, &name),
                                type_: EventType::Normal,
                                reason: Reason::Scheduled.into(),
                                message: format!("created TaskRun {run_name} for {t}"),
                                time: now,
                            })
                            .await?;
                        outcome.created = Some(run_name);
                    }
                }
                if let Some(last) = d.last_schedule_time {
                    status.last_schedule_time = Some(last);
                }
                status.next_schedule_time = d.next;
                if let Some(schedule) = &resolved.config.schedule {
                    status.next_schedule_times = schedule.next_n(now, MAX_NEXT_SCHEDULE_TIMES);
                }
            } else {
                status.next_schedule_time = None;
                status.next_schedule_times.clear();
            }
            mirror_watermarks(catalogs, resolved, &mut status, now).await?;
            run_now(backend, cfg, &mut status, &mut outcome, now).await?;
        }
    }

    status.active_runs = mine
        .iter()
        .filter(|r| !phase(r).is_finished())
        .map(|r| name_of(&r.metadata))
        .take(MAX_ACTIVE_RUNS)
        .collect();
    if let Some((run, result, reason, message)) = last_result(&mine) {
        status.last_run = Some(run);
        status.last_result = Some(result);
        status.last_result_reason = Some(reason);
        status.last_result_message = Some(message);
    }
    let threshold = resolved
        .as_ref()
        .map_or(crate::model::defaults::DEGRADED_AFTER_FAILURES, |r| {
            r.config.degraded_after_failures
        });
    degraded(backend, cfg, &before, &mut status, &mine, threshold, now).await?;
    if let Ok(r) = &resolved {
        let limits = (
            r.config.successful_runs_history_limit,
            r.config.failed_runs_history_limit,
        );
        let dest_uri = r.destination.def.uri.as_str();
        for old in runs_to_delete(&mine, limits.0, limits.1) {
            let Some(run) = mine.iter().find(|r| name_of(&r.metadata) == old) else {
                continue;
            };
            delete_finished_run(backend, run, dest_uri).await?;
            outcome.deleted.push(old);
        }
    }
    if status != before {
        backend
            .update_task_config_status(&namespace, &name, &status)
            .await?;
    }
    Ok(outcome)
}

/// Counts finished runs into the config's health and sets `Degraded` (True once
/// `threshold` runs in a row failed), with an Event when it turns True.
async fn degraded(
    backend: &dyn Backend,
    cfg: &MinionTaskConfig,
    before: &MinionTaskConfigStatus,
    status: &mut MinionTaskConfigStatus,
    mine: &[&TaskRun],
    threshold: u32,
    now: DateTime<Utc>,
) -> Result<(), ControlError> {
    let health = super::health::count_runs(before, mine);
    status.consecutive_failures = health.consecutive_failures;
    status.last_successful_time = health.last_successful_time;
    status.last_completion_time = health.last_completion_time;
    let failing = health.consecutive_failures >= threshold;
    let (state, reason, message) = if failing {
        (
            ConditionStatus::True,
            Reason::RunsFailing,
            format!(
                "the last {} runs failed (degradedAfterFailures {threshold}); last: {} {}",
                health.consecutive_failures,
                status.last_run.as_deref().unwrap_or("?"),
                status.last_result_message.as_deref().unwrap_or_default(),
            ),
        )
    } else {
        (
            ConditionStatus::False,
            Reason::RunsSucceeding,
            format!(
                "{} failed run(s) since the last success (degraded after {threshold})",
                health.consecutive_failures
            ),
        )
    };
    let was = find_condition(&before.conditions, DEGRADED).map(|c| c.status);
    set_condition(
        &mut status.conditions,
        DEGRADED,
        state,
        reason.as_str(),
        message.trim_end().to_string(),
        cfg.metadata.generation,
        now,
    );
    if failing && was != Some(ConditionStatus::True) {
        backend
            .record_event(&Event {
                object: ObjectRef::new(
                    "MinionTaskConfig",
                    &namespace_of(&cfg.metadata),
                    &name_of(&cfg.metadata),
                ),
                type_: EventType::Warning,
                reason: Reason::RunsFailing.into(),
                message: message.trim_end().to_string(),
                time: now,
            })
            .await?;
    }
    Ok(())
}

/// Creates the run a new `minion.dev/run-now` annotation asks for (named by the
/// annotation's time, so a replayed tick creates it once) and records the value as handled.
async fn run_now(
    backend: &dyn Backend,
    cfg: &MinionTaskConfig,
    status: &mut MinionTaskConfigStatus,
    outcome: &mut ConfigOutcome,
    now: DateTime<Utc>,
) -> Result<(), ControlError> {
    let Some(request) = super::health::run_now_request(cfg.metadata.annotations.as_ref(), status)
    else {
        return Ok(());
    };
    let (namespace, name) = (namespace_of(&cfg.metadata), name_of(&cfg.metadata));
    let object = ObjectRef::new("MinionTaskConfig", &namespace, &name);
    match request {
        Ok((value, t)) => {
            let run_name = manual_task_run_name(&name, t);
            let run = new_task_run(cfg, &run_name, None);
            if backend.create_task_run(&run).await? == Created::Created {
                backend
                    .record_event(&Event {
                        object,
                        type_: EventType::Normal,
                        reason: Reason::RunNowRequested.into(),
                        message: format!(
                            "created TaskRun {run_name} for annotation {}={value}",
                            super::health::RUN_NOW_ANNOTATION
                        ),
                        time: now,
                    })
                    .await?;
                outcome.created = Some(run_name);
            }
            status.handled_run_now = Some(value);
        }
        Err(value) => {
            backend
                .record_event(&Event {
                    object,
                    type_: EventType::Warning,
                    reason: Reason::InvalidRunNow.into(),
                    message: format!(
                        "metadata.annotations[{}]: {value:?} is not an RFC3339 time; set it to the current time, e.g. kubectl annotate miniontaskconfig {name} --overwrite {}=$(date -u +%Y-%m-%dT%H:%M:%SZ)",
                        super::health::RUN_NOW_ANNOTATION,
                        super::health::RUN_NOW_ANNOTATION,
                    ),
                    time: now,
                })
                .await?;
            status.handled_run_now = Some(value);
        }
    }
    Ok(())
}

/// Watermarks from the destination's log into status, with delays in buckets.
async fn mirror_watermarks(
    catalogs: &mut Catalogs,
    resolved: &gather::Resolved,
    status: &mut MinionTaskConfigStatus,
    now: DateTime<Utc>,
) -> Result<(), ControlError> {
    let catalog = catalogs.get(&resolved.destination.def).await?;
    let wms = gather::watermarks_from_log(catalog, &resolved.config).await?;
    status.watermarks = wms
        .iter()
        .filter_map(|(level, ms)| {
            Some(WatermarkStatus {
                level: (!level.is_empty()).then(|| level.clone()),
                watermark_ms: *ms,
                watermark: DateTime::<Utc>::from_timestamp_millis(*ms)?,
            })
        })
        .collect();
    // Delays are measured on the time axis of the windowed table (a zone's wall clock for a
    // date column).
    let windowed = resolved.source.as_ref().unwrap_or(&resolved.destination);
    let now_ms = windowed
        .def
        .schema
        .time_format()
        .axis_now(now.timestamp_millis());
    let default = wms.get(crate::generator::DEFAULT_WATERMARK).copied();
    status.delays = match &resolved.config.task {
        TaskSpec::RealtimeToOffline(c) => window_delay(&c.window, default, now_ms),
        TaskSpec::SegmentImport(c) => window_delay(&c.window, default, now_ms),
        TaskSpec::MergeRollup(c) => crate::generator::merge_rollup::delay_buckets(c, &wms, now_ms)
            .into_iter()
            .map(|(level, buckets)| DelayStatus {
                level: Some(level),
                buckets,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(())
}

fn window_delay(
    w: &crate::model::WindowProcessing,
    watermark: Option<i64>,
    now_ms: i64,
) -> Vec<DelayStatus> {
    crate::generator::windows::delay_buckets(w, watermark, now_ms)
        .map(|buckets| DelayStatus {
            level: None,
            buckets,
        })
        .into_iter()
        .collect()
}

/// `metadata.creationTimestamp` for a new object (used by backends on create).
pub fn stamp_creation(meta: &mut kube::api::ObjectMeta, now: DateTime<Utc>) {
    if meta.creation_timestamp.is_none() {
        meta.creation_timestamp = Some(k8s_time(now));
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::api::TaskRunStatus;

    fn run(name: &str, phase: TaskRunPhase, ended_min: i64) -> TaskRun {
        let cfg: MinionTaskConfig = serde_yaml::from_str(
            "apiVersion: minion.dev/v1alpha1\nkind: MinionTaskConfig\nmetadata: {name: c, namespace: default}\nspec: {table: t, taskType: MergeRollupTask}\n",
        )
        .unwrap();
        let mut r = new_task_run(&cfg, name, None);
        r.status = Some(TaskRunStatus {
            phase,
            completion_time: Some(
                Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                    + chrono::Duration::minutes(ended_min),
            ),
            ..Default::default()
        });
        r
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_runs_of_each_kind() {
        let runs = [
            run("s1", TaskRunPhase::Succeeded, 1),
            run("s2", TaskRunPhase::Skipped, 2),
            run("s3", TaskRunPhase::Succeeded, 3),
            run("f1", TaskRunPhase::Failed, 4),
            run("f2", TaskRunPhase::TimedOut, 5),
            run("active", TaskRunPhase::Running, 6),
        ];
        let refs: Vec<&TaskRun> = runs.iter().collect();
        assert_eq!(runs_to_delete(&refs, 2, 1), vec!["s1", "f1"]);
        assert!(runs_to_delete(&refs, 5, 5).is_empty());
    }

    #[test]
    fn last_result_is_the_most_recently_finished_run() {
        let runs = [
            run("a", TaskRunPhase::Succeeded, 1),
            run("b", TaskRunPhase::TimedOut, 2),
            run("c", TaskRunPhase::Running, 3),
        ];
        let refs: Vec<&TaskRun> = runs.iter().collect();
        let (name, result, ..) = last_result(&refs).unwrap();
        assert_eq!((name.as_str(), result), ("b", RunResult::TimedOut));
    }
}
