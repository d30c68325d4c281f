//! Validation of `MinionTaskConfig`s and `TaskRun`s into [`TaskConfig`]: schedule and time
//! zone, policies, execution settings, source table, and the task block (see `blocks`).

use chrono::{DateTime, Utc};
use minion_contract::TaskType;

use super::{Collector, Invalid, ResourceId, ValidationErrors, blocks};
use crate::api::{self, MinionTaskConfig, TaskBlocks, TaskRun};
use crate::model::*;
use crate::schedule::{Schedule, ScheduleError, parse_time_zone};

/// A validated `TaskRun`: the task config it runs (from its `configRef` or its inline
/// config) with the run's overrides applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedTaskRun {
    pub namespace: String,
    pub name: String,
    /// The MinionTaskConfig run (Pinot's *schedule*), or `None` for an inline config
    /// (Pinot's *execute*; then `config.name` is the run's name).
    pub config_ref: Option<String>,
    pub scheduled_time: Option<DateTime<Utc>>,
    pub config: TaskConfig,
}

impl ValidatedTaskRun {
    /// Checks the run's config against its tables, naming the TaskRun's fields for an inline
    /// config and the MinionTaskConfig's for a referenced one.
    ///
    /// # Errors
    /// As [`super::against_tables`].
    pub fn against_tables(
        &self,
        table: &TableDef,
        source: Option<&TableDef>,
    ) -> Result<(), ValidationErrors> {
        let (resource, at) = match &self.config_ref {
            Some(_) => (
                ResourceId {
                    kind: "MinionTaskConfig",
                    namespace: self.config.namespace.clone(),
                    name: self.config.name.clone(),
                },
                "spec",
            ),
            None => (
                ResourceId {
                    kind: "TaskRun",
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                },
                "spec.config",
            ),
        };
        super::cross::check(resource, at, &self.config, table, source)
    }
}

/// Validates a `MinionTaskConfig` into a [`TaskConfig`].
///
/// # Errors
/// Every problem found, each naming its field (e.g. `spec.mergeRollupTask.levels[1].name`).
pub fn task_config(cfg: &MinionTaskConfig) -> Result<TaskConfig, ValidationErrors> {
    let mut c = Collector::new(ResourceId::of("MinionTaskConfig", &cfg.metadata));
    let spec = &cfg.spec;
    let task = blocks::task_spec(&mut c, "spec", spec.task_type, &spec.blocks());
    let source_table = source_table(&mut c, spec.task_type, &spec.table, &spec.source_table);
    let schedule = schedule(&mut c, spec);
    if schedule.is_some() && spec.task_type == TaskType::SegmentBackfillTask {
        c.push(
            "spec.schedule",
            Invalid::NotAllowed {
                detail: "SegmentBackfillTask runs on demand only; create a TaskRun with configRef instead".into(),
            },
        );
    }
    let starting_deadline_ms = spec.starting_deadline_seconds.and_then(|s| {
        if s < 1 {
            c.push(
                "spec.startingDeadlineSeconds",
                Invalid::OutOfRange {
                    value: s.to_string(),
                    allowed: "use 1 or more seconds".into(),
                },
            );
            None
        } else {
            Some(s.saturating_mul(SECOND_MS))
        }
    });
    let execution = execution(
        &mut c,
        "spec",
        Overrides {
            subtask_timeout: spec.subtask_timeout.as_deref(),
            run_timeout: spec.run_timeout.as_deref(),
            max_attempts: spec.max_attempts,
            parallelism: spec.parallelism,
            memory_budget: spec.memory_budget.as_deref(),
        },
        Execution::default(),
    );
    if let Some(worker) = &spec.worker {
        worker_pod(&mut c, "spec.worker", worker, execution.memory_budget_bytes);
    }
    let degraded_after_failures = match spec.degraded_after_failures {
        Some(0) => {
            c.push(
                "spec.degradedAfterFailures",
                Invalid::OutOfRange {
                    value: "0".into(),
                    allowed: "use 1 or more failed runs".into(),
                },
            );
            defaults::DEGRADED_AFTER_FAILURES
        }
        Some(n) => n,
        None => defaults::DEGRADED_AFTER_FAILURES,
    };
    let mut run_after: Vec<String> = Vec::new();
    for (i, name) in spec.run_after.iter().enumerate() {
        let field = format!("spec.runAfter[{i}]");
        if let Err(e) = crate::local::check_name("MinionTaskConfig", name) {
            c.push(
                field,
                Invalid::NotAllowed {
                    detail: e.to_string(),
                },
            );
        } else if *name == c.resource().name {
            c.push(
                field,
                Invalid::NotAllowed {
                    detail: format!(
                        "{name:?} is this config; runs of one config never overlap already \
                         (concurrencyPolicy)"
                    ),
                },
            );
        } else if run_after.contains(name) {
            c.push(
                field,
                Invalid::Duplicate {
                    value: name.clone(),
                },
            );
        } else {
            run_after.push(name.clone());
        }
    }
    let config = TaskConfig {
        namespace: c.resource().namespace.clone(),
        name: c.resource().name.clone(),
        table: spec.table.clone(),
        source_table,
        schedule,
        suspend: spec.suspend,
        missed_run_policy: match spec.missed_run_policy {
            None | Some(api::MissedRunPolicy::RunOnce) => MissedRunPolicy::RunOnce,
            Some(api::MissedRunPolicy::Skip) => MissedRunPolicy::Skip,
        },
        starting_deadline_ms,
        concurrency_policy: match spec.concurrency_policy {
            None | Some(api::ConcurrencyPolicy::Forbid) => ConcurrencyPolicy::Forbid,
            Some(api::ConcurrencyPolicy::Replace) => ConcurrencyPolicy::Replace,
        },
        run_after,
        successful_runs_history_limit: spec
            .successful_runs_history_limit
            .unwrap_or(defaults::SUCCESSFUL_RUNS_HISTORY_LIMIT),
        failed_runs_history_limit: spec
            .failed_runs_history_limit
            .unwrap_or(defaults::FAILED_RUNS_HISTORY_LIMIT),
        degraded_after_failures,
        execution,
        task,
    };
    c.finish(config)
}

/// Validates a `TaskRun`. `config` is the MinionTaskConfig named by `spec.configRef` (looked
/// up by the caller; `None` if it does not exist or the run has an inline config).
///
/// # Errors
/// Every problem of the run; for a `configRef`, also the referenced config's own errors.
pub fn task_run(
    run: &TaskRun,
    config: Option<&MinionTaskConfig>,
) -> Result<ValidatedTaskRun, ValidationErrors> {
    let mut c = Collector::new(ResourceId::of("TaskRun", &run.metadata));
    let spec = &run.spec;
    let base = match (&spec.config_ref, &spec.config) {
        (Some(_), Some(_)) => {
            c.push(
                "spec.config",
                Invalid::Conflicting {
                    other: "spec.configRef".into(),
                    hint: "refer to a MinionTaskConfig (schedule) or give an inline config (execute), not both".into(),
                },
            );
            None
        }
        (None, None) => {
            c.missing(
                "spec.configRef",
                "set configRef to a MinionTaskConfig's name, or config with the block matching taskType",
            );
            None
        }
        (Some(name), None) => referenced(&mut c, run, name, config),
        (None, Some(blocks)) => inline(&mut c, run, blocks),
    };
    let scheduled_time = spec.scheduled_time;
    let Some(mut config) = base else {
        return Err(c.finish(()).expect_err("an error was recorded"));
    };
    config.execution = execution(
        &mut c,
        "spec",
        Overrides {
            subtask_timeout: spec.subtask_timeout.as_deref(),
            run_timeout: spec.run_timeout.as_deref(),
            max_attempts: spec.max_attempts,
            parallelism: spec.parallelism,
            memory_budget: spec.memory_budget.as_deref(),
        },
        config.execution,
    );
    let validated = ValidatedTaskRun {
        namespace: c.resource().namespace.clone(),
        name: c.resource().name.clone(),
        config_ref: spec.config_ref.clone(),
        scheduled_time,
        config,
    };
    c.finish(validated)
}

fn referenced(
    c: &mut Collector,
    run: &TaskRun,
    name: &str,
    config: Option<&MinionTaskConfig>,
) -> Option<TaskConfig> {
    let Some(cfg) = config.filter(|cfg| cfg.metadata.name.as_deref() == Some(name)) else {
        let namespace = c.resource().namespace.clone();
        c.push(
            "spec.configRef",
            Invalid::ConfigNotFound {
                value: name.to_string(),
                namespace,
            },
        );
        return None;
    };
    let spec = &run.spec;
    if let Some(task_type) = spec.task_type
        && task_type != cfg.spec.task_type
    {
        c.push(
            "spec.taskType",
            Invalid::Mismatch {
                value: task_type.to_string(),
                expected: cfg.spec.task_type.to_string(),
            },
        );
    }
    if !spec.table.is_empty() && spec.table != cfg.spec.table {
        c.push(
            "spec.table",
            Invalid::Mismatch {
                value: spec.table.clone(),
                expected: cfg.spec.table.clone(),
            },
        );
    }
    if spec.source_table.is_some() && spec.source_table != cfg.spec.source_table {
        c.push(
            "spec.sourceTable",
            Invalid::Mismatch {
                value: spec.source_table.clone().unwrap_or_default(),
                expected: cfg.spec.source_table.clone().unwrap_or_default(),
            },
        );
    }
    match task_config(cfg) {
        Ok(tc) => Some(tc),
        Err(e) => {
            c.absorb(e);
            None
        }
    }
}

fn inline(c: &mut Collector, run: &TaskRun, blocks: &TaskBlocks) -> Option<TaskConfig> {
    let spec = &run.spec;
    let Some(task_type) = spec.task_type else {
        c.missing(
            "spec.taskType",
            "an inline config needs its task type (the one of its block); with spec.configRef it is taken from the config",
        );
        return None;
    };
    let task = blocks::task_spec(c, "spec.config", task_type, blocks);
    let source_table = source_table(c, task_type, &spec.table, &spec.source_table);
    Some(TaskConfig {
        namespace: c.resource().namespace.clone(),
        name: c.resource().name.clone(),
        table: spec.table.clone(),
        source_table,
        schedule: None,
        suspend: false,
        missed_run_policy: MissedRunPolicy::default(),
        starting_deadline_ms: None,
        concurrency_policy: ConcurrencyPolicy::default(),
        run_after: Vec::new(),
        successful_runs_history_limit: defaults::SUCCESSFUL_RUNS_HISTORY_LIMIT,
        failed_runs_history_limit: defaults::FAILED_RUNS_HISTORY_LIMIT,
        degraded_after_failures: defaults::DEGRADED_AFTER_FAILURES,
        execution: Execution::default(),
        task,
    })
}

/// R2O and SegmentImport read a source table; other task types must not name one.
fn source_table(
    c: &mut Collector,
    task_type: TaskType,
    table: &str,
    source: &Option<String>,
) -> Option<String> {
    if table.trim().is_empty() {
        c.missing("spec.table", "name the destination Table");
    }
    let needs_source = matches!(
        task_type,
        TaskType::RealtimeToOfflineSegmentsTask | TaskType::SegmentImportTask
    );
    match source.as_deref().map(str::trim) {
        None | Some("") if needs_source => {
            c.missing(
                "spec.sourceTable",
                &format!("{task_type} reads a REALTIME source Table; name it"),
            );
            None
        }
        None | Some("") => None,
        Some(s) if !needs_source => {
            c.push(
                "spec.sourceTable",
                Invalid::NotAllowed {
                    detail: format!(
                        "{task_type} reads no source table (only RealtimeToOfflineSegmentsTask and SegmentImportTask do); remove {s:?}"
                    ),
                },
            );
            None
        }
        Some(s) if s == table => {
            c.push(
                "spec.sourceTable",
                Invalid::NotAllowed {
                    detail: format!(
                        "{s:?} is also the destination table; name the REALTIME source"
                    ),
                },
            );
            None
        }
        Some(s) => Some(s.to_string()),
    }
}

fn schedule(c: &mut Collector, spec: &api::MinionTaskConfigSpec) -> Option<Schedule> {
    let tz = spec.time_zone.as_deref().unwrap_or("UTC");
    let tz_ok = c
        .check(
            "spec.timeZone",
            parse_time_zone(tz).map_err(Invalid::Schedule),
        )
        .is_some();
    let expr = spec.schedule.as_deref()?;
    match Schedule::parse(expr, if tz_ok { tz } else { "UTC" }) {
        Ok(s) if tz_ok => Some(s),
        Ok(_) => None,
        Err(e @ ScheduleError::TimeZone { .. }) => {
            c.push("spec.timeZone", Invalid::Schedule(e));
            None
        }
        Err(e) => {
            c.push("spec.schedule", Invalid::Schedule(e));
            None
        }
    }
}

/// Checks a config's Job pod settings: quantities parse, tolerations are well formed, and a
/// memory limit leaves room for the budget plus the worker's fixed overhead.
fn worker_pod(c: &mut Collector, at: &str, worker: &api::WorkerPodSpec, budget_bytes: u64) {
    let Some(resources) = &worker.resources else {
        return check_tolerations(c, at, &worker.tolerations);
    };
    for (kind, map) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        for (name, value) in map {
            c.check(
                &format!("{at}.resources.{kind}.{name}"),
                super::units::parse_quantity(value),
            );
        }
    }
    let need = budget_bytes + minion_contract::WORKER_OVERHEAD_BYTES;
    if let Some(limit) = resources.limits.get("memory")
        && let Ok(bytes) = super::units::parse_quantity(limit)
        && bytes < need as f64
    {
        c.push(
            format!("{at}.resources.limits.memory"),
            Invalid::OutOfRange {
                value: limit.clone(),
                allowed: format!(
                    "use at least the memory budget ({} MiB) plus the worker's {} MiB overhead = {} MiB, or lower spec.memoryBudget; below it the pod is OOM-killed",
                    budget_bytes >> 20,
                    minion_contract::WORKER_OVERHEAD_BYTES >> 20,
                    need.div_ceil(1 << 20)
                ),
            },
        );
    }
    check_tolerations(c, at, &worker.tolerations);
}

fn check_tolerations(c: &mut Collector, at: &str, tolerations: &[api::WorkerToleration]) {
    for (i, t) in tolerations.iter().enumerate() {
        let field = format!("{at}.tolerations[{i}]");
        match t.operator.as_deref() {
            None | Some("Equal") => {}
            Some("Exists") if t.value.is_some() => c.push(
                format!("{field}.value"),
                Invalid::NotAllowed {
                    detail: "operator Exists takes no value; remove it or use operator Equal"
                        .into(),
                },
            ),
            Some("Exists") => {}
            Some(other) => c.push(
                format!("{field}.operator"),
                Invalid::OutOfRange {
                    value: other.into(),
                    allowed: "use Equal or Exists".into(),
                },
            ),
        }
        if let Some(effect) = t.effect.as_deref()
            && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            c.push(
                format!("{field}.effect"),
                Invalid::OutOfRange {
                    value: effect.into(),
                    allowed: "use NoSchedule, PreferNoSchedule or NoExecute (or omit it)".into(),
                },
            );
        }
    }
}

struct Overrides<'a> {
    subtask_timeout: Option<&'a str>,
    run_timeout: Option<&'a str>,
    max_attempts: Option<u32>,
    parallelism: Option<u32>,
    memory_budget: Option<&'a str>,
}

/// `base` with the settings given in `o` parsed and applied.
fn execution(c: &mut Collector, at: &str, o: Overrides<'_>, base: Execution) -> Execution {
    Execution {
        subtask_timeout_ms: c.positive_period(
            &format!("{at}.subtaskTimeout"),
            o.subtask_timeout,
            base.subtask_timeout_ms,
        ),
        run_timeout_ms: c.positive_period(
            &format!("{at}.runTimeout"),
            o.run_timeout,
            base.run_timeout_ms,
        ),
        max_attempts: c.at_least_one(
            &format!("{at}.maxAttempts"),
            o.max_attempts,
            base.max_attempts,
        ),
        parallelism: c.at_least_one(
            &format!("{at}.parallelism"),
            o.parallelism,
            base.parallelism,
        ),
        memory_budget_bytes: c.size(
            &format!("{at}.memoryBudget"),
            o.memory_budget,
            base.memory_budget_bytes,
        ),
    }
}
