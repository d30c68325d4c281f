//! The operator's Prometheus metrics, registered once, and how they are fed.
//!
//! Gauges are set from status ([`Metrics::observe`]): watermarks, delay in buckets, next
//! run time, last successful run, consecutive failures and active runs per
//! MinionTaskConfig; the series of a config that no longer exists are removed. Counters of
//! finished TaskRuns and the subtask-duration histogram count each run once, when it is
//! first seen finished by this process (runs already finished when the process started are
//! not counted). Reconcile counters and durations come from the loop's ticks
//! ([`Metrics::reconciled`]); missed schedule fire times from [`Metrics::schedule_missed`].
//!
//! Every per-task series carries `namespace` and `config` (empty for a TaskRun with an
//! inline config), so alerts can name the object to look at.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::api::{MinionTaskConfig, SubtaskState, TaskRun};
use crate::control::configs::MissedFires;
use crate::control::{name_of, namespace_of};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    #[prometheus(flatten)]
    pub task: TaskLabels,
    pub result: String,
}

/// One task config (or the inline config of a TaskRun: `config` empty).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub namespace: String,
    pub config: String,
    pub r#type: String,
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LevelLabels {
    #[prometheus(flatten)]
    pub task: TaskLabels,
    pub level: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    #[prometheus(flatten)]
    pub task: TaskLabels,
    pub reason: String,
}

/// One Table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub namespace: String,
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 16))
}

fn tick_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn config_labels(cfg: &MinionTaskConfig) -> TaskLabels {
    TaskLabels {
        namespace: namespace_of(&cfg.metadata),
        config: name_of(&cfg.metadata),
        r#type: cfg.spec.task_type.as_str().to_string(),
        table: cfg.spec.table.clone(),
    }
}

fn run_labels(run: &TaskRun) -> TaskLabels {
    TaskLabels {
        namespace: namespace_of(&run.metadata),
        config: run.spec.config_ref.clone().unwrap_or_default(),
        r#type: run.task_type().map_or("", |t| t.as_str()).into(),
        table: run.table().to_string(),
    }
}

/// Every metric of the operator.
pub struct Metrics {
    registry: Registry,
    task_runs: Family<RunLabels, Counter>,
    subtask_duration: Family<TaskLabels, Histogram, fn() -> Histogram>,
    delay: Family<LevelLabels, Gauge>,
    watermark: Family<LevelLabels, FloatGauge>,
    schedule_missed: Family<TaskLabels, Counter>,
    next_run: Family<TaskLabels, FloatGauge>,
    last_success: Family<TaskLabels, FloatGauge>,
    consecutive_failures: Family<TaskLabels, Gauge>,
    active_runs: Family<TaskLabels, Gauge>,
    degraded: Family<TaskLabels, Gauge>,
    schedule_interval: Family<TaskLabels, FloatGauge>,
    rows_read: Family<TaskLabels, Counter>,
    rows_written: Family<TaskLabels, Counter>,
    bytes_written: Family<TaskLabels, Counter>,
    segments_written: Family<TaskLabels, Counter>,
    subtask_failures: Family<ReasonLabels, Counter>,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    leader: Gauge,
    retention_blocked: Family<TableLabels, Gauge>,
    seen_finished: Mutex<Option<HashSet<String>>>,
    /// The config and level series set by the last [`Metrics::observe`], to remove those of
    /// configs that are gone.
    series: Mutex<(HashSet<TaskLabels>, HashSet<LevelLabels>)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("minion");
        let task_runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "taskrun",
            "TaskRuns finished, by config, task type, destination table and result",
            task_runs.clone(),
        );
        let subtask_duration =
            Family::<TaskLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register_with_unit(
            "subtask_duration",
            "Duration of committed subtasks, from start to completion",
            Unit::Seconds,
            subtask_duration.clone(),
        );
        let delay = Family::<LevelLabels, Gauge>::default();
        registry.register(
            "task_delay_buckets",
            "How many buckets processing is behind, per merge level",
            delay.clone(),
        );
        let watermark = Family::<LevelLabels, FloatGauge>::default();
        registry.register(
            "watermark_timestamp_seconds",
            "Watermark of a task config (per merge level), as a Unix time",
            watermark.clone(),
        );
        let schedule_missed = Family::<TaskLabels, Counter>::default();
        registry.register(
            "schedule_missed",
            "Schedule fire times that never got a run",
            schedule_missed.clone(),
        );
        let next_run = Family::<TaskLabels, FloatGauge>::default();
        registry.register(
            "next_run_timestamp_seconds",
            "Next schedule fire time of a task config, as a Unix time",
            next_run.clone(),
        );
        let last_success = Family::<TaskLabels, FloatGauge>::default();
        registry.register(
            "config_last_success_timestamp_seconds",
            "When the last successful run of a task config ended, as a Unix time",
            last_success.clone(),
        );
        let consecutive_failures = Family::<TaskLabels, Gauge>::default();
        registry.register(
            "config_consecutive_failures",
            "Failed or timed-out runs of a task config since its last successful one",
            consecutive_failures.clone(),
        );
        let active_runs = Family::<TaskLabels, Gauge>::default();
        registry.register(
            "config_active_runs",
            "TaskRuns of a task config not finished yet",
            active_runs.clone(),
        );
        let degraded = Family::<TaskLabels, Gauge>::default();
        registry.register(
            "config_degraded",
            "1 while a task config is Degraded (degradedAfterFailures runs in a row failed)",
            degraded.clone(),
        );
        let schedule_interval = Family::<TaskLabels, FloatGauge>::default();
        registry.register_with_unit(
            "config_schedule_interval",
            "Time between the next two fire times of a task config's schedule",
            Unit::Seconds,
            schedule_interval.clone(),
        );
        let rows_read = Family::<TaskLabels, Counter>::default();
        registry.register(
            "rows_read",
            "Rows read by committed subtasks of finished runs",
            rows_read.clone(),
        );
        let rows_written = Family::<TaskLabels, Counter>::default();
        registry.register(
            "rows_written",
            "Rows written by committed subtasks of finished runs",
            rows_written.clone(),
        );
        let bytes_written = Family::<TaskLabels, Counter>::default();
        registry.register_with_unit(
            "written",
            "Bytes of the segments committed by finished runs",
            Unit::Bytes,
            bytes_written.clone(),
        );
        let segments_written = Family::<TaskLabels, Counter>::default();
        registry.register(
            "segments_written",
            "Segments committed by finished runs",
            segments_written.clone(),
        );
        let subtask_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "subtask_failures",
            "Failed subtasks of finished runs, by reason (the last failed attempt's)",
            subtask_failures.clone(),
        );
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconcile",
            "Control-loop ticks, by result (ok, error)",
            reconciles.clone(),
        );
        let reconcile_duration = tick_histogram();
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of one control-loop tick",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let retention_blocked = Family::<TableLabels, Gauge>::default();
        registry.register(
            "table_retention_blocked_segments",
            "Segments past a Table's retentionTimePeriod kept because an importer has not moved them yet (alert when above 0)",
            retention_blocked.clone(),
        );
        Metrics {
            registry,
            task_runs,
            subtask_duration,
            delay,
            watermark,
            schedule_missed,
            next_run,
            last_success,
            consecutive_failures,
            active_runs,
            degraded,
            schedule_interval,
            rows_read,
            rows_written,
            bytes_written,
            segments_written,
            subtask_failures,
            reconciles,
            reconcile_duration,
            leader,
            retention_blocked,
            seen_finished: Mutex::new(None),
            series: Mutex::default(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One tick of the control loop ended (`errors`: steps that failed within it).
    pub fn reconciled(&self, ok: bool, errors: usize, took: Duration) {
        let result = if ok && errors == 0 { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Fire times of a config's schedule that will never get a run.
    pub fn schedule_missed(&self, missed: &MissedFires) {
        self.schedule_missed
            .get_or_create(&TaskLabels {
                namespace: missed.namespace.clone(),
                config: missed.config.clone(),
                r#type: missed.task_type.clone(),
                table: missed.table.clone(),
            })
            .inc_by(missed.count);
    }

    pub fn set_leader(&self, leads: bool) {
        self.leader.set(i64::from(leads));
    }

    /// Updates the Table gauges from Table status (series of Tables no longer there go).
    pub fn observe_tables(&self, tables: &[crate::api::Table]) {
        self.retention_blocked.clear();
        for t in tables {
            if let Some(n) = t.status.as_ref().and_then(|s| s.retention_blocked_segments) {
                let labels = TableLabels {
                    namespace: namespace_of(&t.metadata),
                    table: name_of(&t.metadata),
                };
                self.retention_blocked
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Updates the gauges from config status (removing the series of configs and levels no
    /// longer there) and counts runs newly seen finished.
    pub fn observe(&self, configs: &[MinionTaskConfig], runs: &[TaskRun]) {
        let mut tasks = HashSet::new();
        let mut levels = HashSet::new();
        for cfg in configs {
            let task = config_labels(cfg);
            tasks.insert(task.clone());
            let active = runs
                .iter()
                .filter(|r| {
                    namespace_of(&r.metadata) == task.namespace
                        && r.spec.config_ref.as_deref() == Some(task.config.as_str())
                        && !r.status.as_ref().is_some_and(|s| s.phase.is_finished())
                })
                .count();
            self.active_runs
                .get_or_create(&task)
                .set(i64::try_from(active).unwrap_or(i64::MAX));
            let Some(status) = &cfg.status else {
                continue;
            };
            let level = |l: &Option<String>| LevelLabels {
                task: task.clone(),
                level: l.clone().unwrap_or_default(),
            };
            for w in &status.watermarks {
                levels.insert(level(&w.level));
                self.watermark
                    .get_or_create(&level(&w.level))
                    .set(w.watermark_ms as f64 / 1000.0);
            }
            for d in &status.delays {
                levels.insert(level(&d.level));
                self.delay.get_or_create(&level(&d.level)).set(d.buckets);
            }
            if let Some(next) = status.next_schedule_time {
                self.next_run
                    .get_or_create(&task)
                    .set(next.timestamp_millis() as f64 / 1000.0);
            } else {
                self.next_run.remove(&task);
            }
            if let [a, b, ..] = status.next_schedule_times.as_slice() {
                self.schedule_interval
                    .get_or_create(&task)
                    .set((*b - *a).num_milliseconds() as f64 / 1000.0);
            } else {
                self.schedule_interval.remove(&task);
            }
            if let Some(t) = status.last_successful_time {
                self.last_success
                    .get_or_create(&task)
                    .set(t.timestamp_millis() as f64 / 1000.0);
            }
            self.consecutive_failures
                .get_or_create(&task)
                .set(i64::from(status.consecutive_failures));
            let degraded = crate::api::condition::find_condition(
                &status.conditions,
                crate::api::condition::DEGRADED,
            )
            .is_some_and(|c| c.status == crate::api::ConditionStatus::True);
            self.degraded.get_or_create(&task).set(i64::from(degraded));
        }
        {
            let mut series = self.series.lock().expect("metrics lock");
            for gone in series.0.difference(&tasks) {
                self.next_run.remove(gone);
                self.last_success.remove(gone);
                self.consecutive_failures.remove(gone);
                self.active_runs.remove(gone);
                self.degraded.remove(gone);
                self.schedule_missed.remove(gone);
                self.subtask_duration.remove(gone);
                self.schedule_interval.remove(gone);
                self.rows_read.remove(gone);
                self.rows_written.remove(gone);
                self.bytes_written.remove(gone);
                self.segments_written.remove(gone);
                for result in ["Succeeded", "Failed", "TimedOut", "Skipped"] {
                    self.task_runs.remove(&RunLabels {
                        task: gone.clone(),
                        result: result.into(),
                    });
                }
            }
            for gone in series.1.difference(&levels) {
                self.watermark.remove(gone);
                self.delay.remove(gone);
            }
            *series = (tasks, levels);
        }
        let mut seen = self.seen_finished.lock().expect("metrics lock");
        let first = seen.is_none();
        let seen = seen.get_or_insert_with(HashSet::new);
        for run in runs {
            let Some(status) = run.status.as_ref().filter(|s| s.phase.is_finished()) else {
                continue;
            };
            let key = format!(
                "{}/{}/{}",
                namespace_of(&run.metadata),
                name_of(&run.metadata),
                run.metadata.uid.as_deref().unwrap_or("")
            );
            if !seen.insert(key) || first {
                continue;
            }
            let task = run_labels(run);
            self.task_runs
                .get_or_create(&RunLabels {
                    task: task.clone(),
                    result: status.phase.as_str().into(),
                })
                .inc();
            for s in &status.subtasks {
                if s.state == SubtaskState::Committed {
                    if let (Some(a), Some(b)) = (s.start_time, s.completion_time) {
                        let secs = (b - a).num_milliseconds().max(0) as f64 / 1000.0;
                        self.subtask_duration.get_or_create(&task).observe(secs);
                    }
                    self.rows_read.get_or_create(&task).inc_by(s.input_rows);
                    self.rows_written.get_or_create(&task).inc_by(s.output_rows);
                    self.bytes_written
                        .get_or_create(&task)
                        .inc_by(s.output_bytes);
                    self.segments_written.get_or_create(&task).inc_by(s.outputs);
                }
                if let Some(reason) = s
                    .reason
                    .as_ref()
                    .filter(|_| matches!(s.state, SubtaskState::Failed | SubtaskState::Reverted))
                {
                    self.subtask_failures
                        .get_or_create(&ReasonLabels {
                            task: task.clone(),
                            reason: reason.clone(),
                        })
                        .inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, phase: &str) -> TaskRun {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "minion.dev/v1alpha1", "kind": "TaskRun",
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"taskType": "SegmentImportTask", "table": "events-offline", "configRef": "import"},
            "status": {"phase": phase, "subtasks": [{"index": 0, "state": "Committed",
                "startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:00:03Z"}]},
        }))
        .unwrap()
    }

    #[test]
    fn finished_runs_are_counted_once_and_not_those_finished_before_start() {
        let m = Metrics::new();
        m.observe(&[], &[run("old", "Succeeded")]);
        m.observe(&[], &[run("old", "Succeeded"), run("r1", "Running")]);
        m.observe(&[], &[run("r1", "Failed"), run("r2", "Succeeded")]);
        m.observe(&[], &[run("r1", "Failed"), run("r2", "Succeeded")]);
        let text = m.encode();
        assert!(text.contains(
            r#"minion_taskrun_total{namespace="default",config="import",type="SegmentImportTask",table="events-offline",result="Failed"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"minion_taskrun_total{namespace="default",config="import",type="SegmentImportTask",table="events-offline",result="Succeeded"} 1"#
        ), "{text}");
        assert!(text.contains(r#"minion_subtask_duration_seconds_count{namespace="default",config="import",type="SegmentImportTask",table="events-offline"} 2"#), "{text}");
    }

    fn config(name: &str) -> MinionTaskConfig {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "minion.dev/v1alpha1", "kind": "MinionTaskConfig",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"taskType": "MergeRollupTask", "table": "events-offline"},
            "status": {
                "watermarks": [{"level": "1day", "watermarkMs": 86_400_000, "watermark": "1970-01-02T00:00:00Z"}],
                "delays": [{"level": "1day", "buckets": 3}],
                "nextScheduleTime": "1970-01-01T00:00:10Z",
                "nextScheduleTimes": ["1970-01-01T00:00:10Z", "1970-01-01T00:01:10Z"],
                "lastSuccessfulTime": "1970-01-01T00:00:05Z",
                "consecutiveFailures": 2,
            },
        }))
        .unwrap()
    }

    #[test]
    fn every_metric_is_exposed_with_its_unit_suffix() {
        let m = Metrics::new();
        let mut active = run("r0", "Running");
        active.spec.config_ref = Some("c".into());
        m.observe(&[config("c")], &[active]);
        let mut failed = run("f", "Failed");
        failed.status.as_mut().unwrap().subtasks[0].state = SubtaskState::Failed;
        failed.status.as_mut().unwrap().subtasks[0].reason = Some("CorruptSegment".into());
        let mut ok = run("r", "Succeeded");
        let sub = &mut ok.status.as_mut().unwrap().subtasks[0];
        (
            sub.input_rows,
            sub.output_rows,
            sub.output_bytes,
            sub.outputs,
        ) = (10, 8, 4096, 1);
        m.observe(&[config("c")], &[ok, failed]);
        m.reconciled(true, 0, Duration::from_millis(12));
        m.schedule_missed(&MissedFires {
            namespace: "default".into(),
            config: "c".into(),
            table: "events-offline".into(),
            task_type: "MergeRollupTask".into(),
            count: 2,
        });
        let text = m.encode();
        let c = r#"namespace="default",config="c",type="MergeRollupTask",table="events-offline""#;
        let i = r#"namespace="default",config="import",type="SegmentImportTask",table="events-offline""#;
        for name in [
            "minion_taskrun_total{".to_string(),
            "minion_subtask_duration_seconds_bucket{".to_string(),
            format!(r#"minion_task_delay_buckets{{{c},level="1day"}} 3"#),
            format!(r#"minion_watermark_timestamp_seconds{{{c},level="1day"}} 86400.0"#),
            format!(r#"minion_next_run_timestamp_seconds{{{c}}} 10.0"#),
            format!(r#"minion_config_last_success_timestamp_seconds{{{c}}} 5.0"#),
            format!(r#"minion_config_consecutive_failures{{{c}}} 2"#),
            format!(r#"minion_config_active_runs{{{c}}} 0"#),
            format!(r#"minion_config_degraded{{{c}}} 0"#),
            format!(r#"minion_schedule_missed_total{{{c}}} 2"#),
            format!(r#"minion_config_schedule_interval_seconds{{{c}}} 60.0"#),
            format!(r#"minion_rows_read_total{{{i}}} 10"#),
            format!(r#"minion_rows_written_total{{{i}}} 8"#),
            format!(r#"minion_written_bytes_total{{{i}}} 4096"#),
            format!(r#"minion_segments_written_total{{{i}}} 1"#),
            format!(r#"minion_subtask_failures_total{{{i},reason="CorruptSegment"}} 1"#),
            r#"minion_reconcile_total{result="ok"} 1"#.to_string(),
            "minion_reconcile_duration_seconds_count 1".to_string(),
        ] {
            assert!(text.contains(&name), "{name} missing in\n{text}");
        }
    }

    #[test]
    fn tables_whose_retention_is_blocked_are_a_gauge_and_deleted_tables_go() {
        let table = |name: &str, blocked: Option<u64>| -> crate::api::Table {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "minion.dev/v1alpha1", "kind": "Table",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"tableType": "REALTIME", "uri": "file:///t",
                         "schema": {"timeColumn": "ts", "columns": [{"name": "ts", "dataType": "LONG", "role": "dateTime"}]}},
                "status": {"retentionBlockedSegments": blocked},
            }))
            .unwrap()
        };
        let m = Metrics::new();
        m.observe_tables(&[table("rt", Some(3)), table("other", None)]);
        let text = m.encode();
        assert!(
            text.contains(
                r#"minion_table_retention_blocked_segments{namespace="default",table="rt"} 3"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"table="other""#), "{text}");
        m.observe_tables(&[]);
        assert!(!m.encode().contains(r#"table="rt""#));
    }

    #[test]
    fn active_runs_are_counted_and_series_of_deleted_configs_go() {
        let m = Metrics::new();
        let mut active = run("r0", "Running");
        active.spec.config_ref = Some("c".into());
        m.observe(&[config("c"), config("d")], &[active]);
        let text = m.encode();
        assert!(
            text.contains(r#"minion_config_active_runs{namespace="default",config="c",type="MergeRollupTask",table="events-offline"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"config="d""#), "{text}");
        m.observe(&[config("c")], &[]);
        let text = m.encode();
        assert!(
            !text.contains(r#"config="d""#),
            "series of d remain:\n{text}"
        );
        assert!(
            text.contains(r#"minion_config_active_runs{namespace="default",config="c",type="MergeRollupTask",table="events-offline"} 0"#),
            "{text}"
        );
    }
}
