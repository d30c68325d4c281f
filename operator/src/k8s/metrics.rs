//! The operator's Prometheus metrics, registered once, and how they are fed.
//!
//! Gauges are set from status ([`Metrics::observe`]): watermarks, delay in buckets, next
//! run time per MinionTaskConfig. Counters of finished TaskRuns and the subtask-duration
//! histogram count each run once, when it is first seen finished by this process (runs
//! already finished when the process started are not counted). Reconcile counters and
//! durations come from the loop's ticks ([`Metrics::reconciled`]); missed schedule fire
//! times from [`Metrics::schedule_missed`].

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

use crate::api::{MinionTaskConfig, TaskRun};
use crate::control::{name_of, namespace_of};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    #[prometheus(flatten)]
    pub task: TaskLabels,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub r#type: String,
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LevelLabels {
    pub table: String,
    pub r#type: String,
    pub level: String,
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

/// Every metric of the operator.
pub struct Metrics {
    registry: Registry,
    task_runs: Family<RunLabels, Counter>,
    subtask_duration: Family<TaskLabels, Histogram, fn() -> Histogram>,
    delay: Family<LevelLabels, Gauge>,
    watermark: Family<LevelLabels, FloatGauge>,
    schedule_missed: Family<TaskLabels, Counter>,
    next_run: Family<TaskLabels, FloatGauge>,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    leader: Gauge,
    seen_finished: Mutex<Option<HashSet<String>>>,
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
            "TaskRuns finished, by task type, destination table and result",
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
        Metrics {
            registry,
            task_runs,
            subtask_duration,
            delay,
            watermark,
            schedule_missed,
            next_run,
            reconciles,
            reconcile_duration,
            leader,
            seen_finished: Mutex::new(None),
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

    /// `missed` fire times of a config's schedule will never get a run.
    pub fn schedule_missed(&self, table: &str, type_: &str, missed: u64) {
        self.schedule_missed
            .get_or_create(&TaskLabels {
                r#type: type_.into(),
                table: table.into(),
            })
            .inc_by(missed);
    }

    pub fn set_leader(&self, leads: bool) {
        self.leader.set(i64::from(leads));
    }

    /// Updates the gauges from config status and counts runs newly seen finished.
    pub fn observe(&self, configs: &[MinionTaskConfig], runs: &[TaskRun]) {
        for cfg in configs {
            let type_ = cfg.spec.task_type.as_str().to_string();
            let table = cfg.spec.table.clone();
            let Some(status) = &cfg.status else {
                continue;
            };
            let level = |l: &Option<String>| LevelLabels {
                table: table.clone(),
                r#type: type_.clone(),
                level: l.clone().unwrap_or_default(),
            };
            for w in &status.watermarks {
                self.watermark
                    .get_or_create(&level(&w.level))
                    .set(w.watermark_ms as f64 / 1000.0);
            }
            for d in &status.delays {
                self.delay.get_or_create(&level(&d.level)).set(d.buckets);
            }
            if let Some(next) = status.next_schedule_time {
                self.next_run
                    .get_or_create(&TaskLabels {
                        r#type: type_.clone(),
                        table: table.clone(),
                    })
                    .set(next.timestamp_millis() as f64 / 1000.0);
            }
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
            let task = TaskLabels {
                r#type: run.spec.task_type.as_str().into(),
                table: run.spec.table.clone(),
            };
            self.task_runs
                .get_or_create(&RunLabels {
                    task: task.clone(),
                    result: status.phase.as_str().into(),
                })
                .inc();
            for s in &status.subtasks {
                if let (Some(a), Some(b)) = (s.start_time, s.completion_time) {
                    let secs = (b - a).num_milliseconds().max(0) as f64 / 1000.0;
                    self.subtask_duration.get_or_create(&task).observe(secs);
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
            "spec": {"taskType": "SegmentImportTask", "table": "events-offline"},
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
            r#"minion_taskrun_total{type="SegmentImportTask",table="events-offline",result="Failed"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"minion_taskrun_total{type="SegmentImportTask",table="events-offline",result="Succeeded"} 1"#
        ), "{text}");
        assert!(text.contains("minion_subtask_duration_seconds_count{type=\"SegmentImportTask\",table=\"events-offline\"} 2"), "{text}");
    }

    #[test]
    fn every_metric_is_exposed_with_its_unit_suffix() {
        let m = Metrics::new();
        let cfg: MinionTaskConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "minion.dev/v1alpha1", "kind": "MinionTaskConfig",
            "metadata": {"name": "c", "namespace": "default"},
            "spec": {"taskType": "MergeRollupTask", "table": "events-offline"},
            "status": {
                "watermarks": [{"level": "1day", "watermarkMs": 86_400_000, "watermark": "1970-01-02T00:00:00Z"}],
                "delays": [{"level": "1day", "buckets": 3}],
                "nextScheduleTime": "1970-01-01T00:00:10Z",
            },
        }))
        .unwrap();
        m.observe(&[cfg], &[]);
        m.observe(&[], &[run("r", "Succeeded")]);
        m.reconciled(true, 0, Duration::from_millis(12));
        m.schedule_missed("events-offline", "MergeRollupTask", 2);
        let text = m.encode();
        for name in [
            "minion_taskrun_total{",
            "minion_subtask_duration_seconds_bucket{",
            r#"minion_task_delay_buckets{table="events-offline",type="MergeRollupTask",level="1day"} 3"#,
            r#"minion_watermark_timestamp_seconds{table="events-offline",type="MergeRollupTask",level="1day"} 86400.0"#,
            r#"minion_next_run_timestamp_seconds{type="MergeRollupTask",table="events-offline"} 10.0"#,
            r#"minion_schedule_missed_total{type="MergeRollupTask",table="events-offline"} 2"#,
            r#"minion_reconcile_total{result="ok"} 1"#,
            "minion_reconcile_duration_seconds_count 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
