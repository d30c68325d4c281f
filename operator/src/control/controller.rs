//! The loop itself: each tick reconciles Tables (and housekeeps each Ready one at most once
//! per [`super::housekeeping::HOUSEKEEPING_INTERVAL_MS`], always on the first tick), then steps every unfinished TaskRun (oldest
//! first) until it waits on a job or ends, then reconciles MinionTaskConfigs (status from the
//! runs just stepped; scheduling — a run created here is stepped from the next tick on).
//!
//! A step that fails (a backend, catalog or storage error) is reported and retried on the
//! next tick; it never stops the loop or other runs.
//!
//! # Reads
//! A tick lists TaskRuns once. The rest of the tick (which runs to step, each run as it is
//! stepped, the earlier runs a plan waits for, housekeeping's unfinished runs, each config's
//! status and history, the count of active runs) works on that list, kept up to date with
//! what the tick itself writes: every TaskRun status a step writes replaces the listed one,
//! runs a schedule creates are looked up by name and added, runs deleted by history limits
//! are removed. Only this process writes TaskRun status while it leads, so the list differs
//! from a fresh one only by runs others created or deleted since; those are stepped from the
//! next tick on, as before. Two decisions list afresh: admitting a run of a config (its
//! concurrency policy must see a run created since the tick's list that sorts before it, or
//! both could be active at once), once per run; and `run`, before it stops idle.
//!
//! A run's stored plan is kept in memory ([`Plans`]) from the step that plans it (or the first
//! that reads it) until the run is finished or gone; subtask states stored beside a large run
//! and the Tables a step works on are read once per step.

use std::sync::Arc;
use std::time::Duration;

use super::gather::{Catalogs, Plans};
use super::runstep;
use super::stepctx::StepCtx;
use super::taskrun::Step;
use super::{
    Backend, Clock, ControlError, configs, created_at, finalize, housekeeping, name_of,
    namespace_of, protocol, tables,
};
use crate::api::TaskRun;

/// With `until_idle`, the loop gives up after this many ticks in a row that failed and made
/// no progress.
pub const STUCK_TICKS: u32 = 40;

/// How the loop runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Stop after this many run steps (tests use it to kill the loop between steps).
    pub max_steps: Option<u64>,
    /// Pause between ticks.
    pub poll_interval: Duration,
    /// Step only this TaskRun (`namespace`, `name`): no Table or config reconcile, no
    /// housekeeping, no schedule (`minion push` and the demo drive their own runs).
    pub only_run: Option<(String, String)>,
    /// URI prefixes Tables and task inputs must lie under (`--allowed-uri-prefixes`); empty:
    /// any.
    pub allowed_uri_prefixes: Vec<String>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            max_steps: None,
            poll_interval: Duration::from_millis(250),
            only_run: None,
            allowed_uri_prefixes: Vec::new(),
        }
    }
}

/// What one tick did.
#[derive(Clone, Debug, Default)]
pub struct TickReport {
    /// Run steps taken (waiting and finished runs take none).
    pub steps: u64,
    /// TaskRuns created by schedules.
    pub created_runs: Vec<String>,
    /// TaskRuns not finished after the tick.
    pub active_runs: usize,
    /// Of those, the runs waiting in Pending for a table to become Ready (reason
    /// `TableNotReady`) or behind a `runAfter` run (`WaitingForRunAfter`): `--until-idle` does
    /// not wait for them.
    pub waiting_runs: usize,
    /// Steps or reconciles that failed (retried next tick).
    pub errors: Vec<String>,
    /// `max_steps` was reached.
    pub limit_reached: bool,
    /// One line per step taken, for progress output.
    pub log: Vec<String>,
    /// Missed schedule fire times found this tick, per config.
    pub missed: Vec<super::configs::MissedFires>,
    /// A run waits for more of its jobs to finish before it collects the finished ones: tick
    /// again within [`super::taskrun::COLLECT_DELAY_MS`].
    pub collect_soon: bool,
}

/// The control loop over one backend.
pub struct Controller {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    catalogs: Catalogs,
    options: ControllerOptions,
    steps: u64,
    /// Last housekeeping time of each table (`namespace/name`).
    housekept: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// Stored plans of unfinished runs.
    plans: Plans,
}

impl Controller {
    /// What one step works with: the tick's runs and this loop's catalogs and plans.
    fn step_ctx<'a>(&'a mut self, backend: &'a dyn Backend, runs: &'a [TaskRun]) -> StepCtx<'a> {
        StepCtx {
            backend,
            catalogs: &mut self.catalogs,
            now: self.clock.now(),
            runs,
            plans: &mut self.plans,
            written: Vec::new(),
            tables: Default::default(),
            allowed_uri_prefixes: &self.options.allowed_uri_prefixes,
        }
    }
}

fn unfinished(run: &TaskRun) -> bool {
    !run.status.as_ref().is_some_and(|s| s.phase.is_finished())
}

/// The run's directory (`<namespace>/<run key>`), as plans are kept by.
fn run_dir(run: &TaskRun) -> String {
    let name = name_of(&run.metadata);
    format!(
        "{}/{}",
        namespace_of(&run.metadata),
        protocol::run_key(&name, run.metadata.uid.as_deref())
    )
}

fn position(runs: &[TaskRun], namespace: &str, name: &str) -> Option<usize> {
    runs.iter()
        .position(|r| namespace_of(&r.metadata) == namespace && name_of(&r.metadata) == name)
}

fn describe(step: &Step) -> Option<String> {
    Some(match step {
        Step::Wait | Step::WaitToCollect | Step::Done => return None,
        Step::Admit => "admitted".into(),
        Step::WaitForTable { reason, message } => format!("Pending ({reason}: {message})"),
        Step::Plan => "planned".into(),
        Step::Launch {
            index,
            attempt,
            job,
        } => {
            format!("subtask {index} attempt {attempt} started as {job}")
        }
        Step::Collect { indices } => match indices.as_slice() {
            [index] => format!("subtask {index} finished"),
            many => format!("subtasks {many:?} finished"),
        },
        Step::AttemptFailed { index, reason, .. } => format!("subtask {index} failed: {reason}"),
        Step::Abort { phase, reason, .. } => format!("aborted ({}: {reason})", phase.as_str()),
        Step::CollectValidity => "validity subtask finished".into(),
        Step::ValidityFailed { reason, .. } => format!("validity subtask failed: {reason}"),
        Step::Close => "committing".into(),
        Step::CommitAll => "committed all subtasks".into(),
        Step::Finish { phase, reason, .. } => format!("{} ({reason})", phase.as_str()),
    })
}

/// Whether `run` waits in Pending for a table to become Ready, or for an earlier run of a
/// `runAfter` config (which, if it can move, keeps the loop up itself).
fn waiting_for_table(run: &TaskRun) -> bool {
    run.status.as_ref().is_some_and(|s| {
        s.phase == crate::api::TaskRunPhase::Pending
            && [
                super::Reason::TableNotReady,
                super::Reason::WaitingForRunAfter,
            ]
            .iter()
            .any(|r| s.reason.as_deref() == Some(r.as_str()))
    })
}

/// Caps the process's glibc malloc arenas at two, once, before the loop's threads allocate.
///
/// glibc gives every thread that allocates under contention an arena of its own (up to 8 per
/// core), and what a thread frees stays in its arena: the catalog's listing threads and
/// tokio's workers left a large run's loop at twice its working set. With two arenas a run of
/// 1,000 subtasks over 100,000 segments peaked at half the memory and used less CPU
/// (docs/benchmarks.md, "Scale of one run"). `MALLOC_ARENA_MAX` in the environment still
/// decides when set. Nothing to do on other allocators.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                // SAFETY: mallopt only sets an allocator parameter; it may be called at any
                // time from any thread.
                unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
            }
        });
    }
}

impl Controller {
    /// A control loop over `backend`. Also caps the process's malloc arenas
    /// ([`cap_malloc_arenas`]): a process that runs the loop is the operator's.
    pub fn new(
        backend: Arc<dyn Backend>,
        clock: Arc<dyn Clock>,
        options: ControllerOptions,
    ) -> Self {
        cap_malloc_arenas();
        Controller {
            backend,
            clock,
            catalogs: Catalogs::allowed_under(options.allowed_uri_prefixes.clone()),
            options,
            steps: 0,
            housekept: Default::default(),
            plans: Plans::default(),
        }
    }

    /// Stored plans kept in memory (runs in flight).
    pub fn plans_kept(&self) -> usize {
        self.plans.len()
    }

    /// Forgets the plans of runs `runs` does not list as unfinished.
    fn forget_plans(&mut self, runs: &[TaskRun]) {
        let live: std::collections::HashSet<String> =
            runs.iter().filter(|r| unfinished(r)).map(run_dir).collect();
        self.plans.retain(|dir| live.contains(dir));
    }

    fn mine(&self, run: &TaskRun) -> bool {
        self.options.only_run.as_ref().is_none_or(|(n, name)| {
            namespace_of(&run.metadata) == *n && name_of(&run.metadata) == *name
        })
    }

    /// Run steps taken since the controller was created.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn limit_reached(&self) -> bool {
        self.options.max_steps.is_some_and(|m| self.steps >= m)
    }

    /// One pass over every resource.
    ///
    /// # Errors
    /// Listing resources failed; failures of single objects are in the report instead.
    pub async fn tick(&mut self) -> Result<TickReport, ControlError> {
        let mut report = TickReport::default();
        let backend = self.backend.clone();
        let now = self.clock.now();
        let everything = self.options.only_run.is_none();
        // The one list of the tick (see the module docs).
        let mut runs: Vec<TaskRun> = backend.list_task_runs().await?;
        self.forget_plans(&runs);
        let tables = if everything {
            backend.list_tables().await?
        } else {
            Vec::new()
        };
        if everything {
            // Catalogs of deleted Tables are dropped.
            let uris: Vec<String> = tables
                .iter()
                .filter_map(|t| crate::validate::table(t).ok().map(|d| d.uri))
                .collect();
            self.catalogs.retain(uris.iter().map(String::as_str));
            // So are their storage settings: nothing of a deleted Table reaches the next
            // Table at its location.
            let keys: std::collections::HashSet<String> = tables
                .iter()
                .map(|t| {
                    crate::storage::table_key(
                        &super::namespace_of(&t.metadata),
                        &super::name_of(&t.metadata),
                    )
                })
                .collect();
            for root in crate::storage::retain(|k| keys.contains(k)) {
                self.catalogs.forget(&root);
            }
        }
        for table in &tables {
            let allowed = &self.options.allowed_uri_prefixes;
            match tables::reconcile(
                backend.as_ref(),
                &mut self.catalogs,
                table,
                &tables,
                allowed,
                now,
            )
            .await
            {
                Ok(true) => {}
                // Its Ready condition says why; housekeeping waits until it is Ready.
                Ok(false) => continue,
                Err(e) => {
                    report
                        .errors
                        .push(format!("Table {}: {e}", name_of(&table.metadata)));
                    continue;
                }
            }
            let key = format!(
                "{}/{}",
                namespace_of(&table.metadata),
                name_of(&table.metadata)
            );
            let due = self.housekept.get(&key).is_none_or(|last| {
                (now - *last).num_milliseconds() >= housekeeping::HOUSEKEEPING_INTERVAL_MS
            });
            if due {
                // Attempted counts: a failing clean-up is retried at the next interval.
                self.housekept.insert(key, now);
                match housekeeping::housekeep(
                    backend.as_ref(),
                    &mut self.catalogs,
                    table,
                    &runs,
                    now,
                )
                .await
                {
                    Ok(done) => {
                        if let Some(done) = done.filter(|d| d.deleted_anything()) {
                            report.log.push(format!(
                                "{}: {}",
                                name_of(&table.metadata),
                                done.summary()
                            ));
                        }
                    }
                    Err(e) => report.errors.push(format!(
                        "Table {} housekeeping: {e}",
                        name_of(&table.metadata)
                    )),
                }
            }
        }
        let mut order: Vec<(Option<chrono::DateTime<chrono::Utc>>, String, String)> = runs
            .iter()
            .filter(|r| unfinished(r))
            .map(|r| {
                (
                    created_at(&r.metadata),
                    namespace_of(&r.metadata),
                    name_of(&r.metadata),
                )
            })
            .filter(|(_, ns, name)| {
                self.options
                    .only_run
                    .as_ref()
                    .is_none_or(|(n, r)| n == ns && r == name)
            })
            .collect();
        order.sort();
        for (_, namespace, name) in order {
            loop {
                if self.limit_reached() {
                    report.limit_reached = true;
                    return Ok(report);
                }
                let Some(at) = position(&runs, &namespace, &name) else {
                    break;
                };
                let run = runs[at].clone();
                let mut ctx = self.step_ctx(backend.as_ref(), &runs);
                let stepped = runstep::step(&mut ctx, &run).await;
                // What the step wrote is what a new list would show.
                for (ns, n, status) in std::mem::take(&mut ctx.written) {
                    if let Some(at) = position(&runs, &ns, &n) {
                        runs[at].status = Some(status);
                    }
                }
                if matches!(stepped, Ok(Step::WaitToCollect)) {
                    report.collect_soon = true;
                }
                match stepped {
                    Ok(step) => match describe(&step) {
                        Some(line) => {
                            self.steps += 1;
                            report.steps += 1;
                            report.log.push(format!("{name}: {line}"));
                        }
                        None => break,
                    },
                    Err(e) => {
                        tracing::warn!(task_run = %name, reason = e.reason(), error = %e, "step failed");
                        report.errors.push(format!("TaskRun {name}: {e}"));
                        break;
                    }
                }
            }
        }
        // Deleted runs reverted by their `Deleted` abort, or that cannot be: let them go.
        let deleted: Vec<TaskRun> = runs
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_some() && finalize::holds(r))
            .cloned()
            .collect();
        for run in &deleted {
            let mut ctx = self.step_ctx(backend.as_ref(), &runs);
            let name = name_of(&run.metadata);
            match finalize::release(&mut ctx, run).await {
                Ok(true) => report
                    .log
                    .push(format!("{name}: deleted; its finalizer is removed")),
                Ok(false) => {}
                Err(e) => report.errors.push(format!("TaskRun {name}: {e}")),
            }
        }
        self.forget_plans(&runs);
        let configs = if everything {
            backend.list_task_configs().await?
        } else {
            Vec::new()
        };
        for cfg in configs {
            let reconciled =
                configs::reconcile(backend.as_ref(), &mut self.catalogs, &cfg, &runs, now).await;
            let ns = namespace_of(&cfg.metadata);
            if let Ok(o) = &reconciled {
                runs.retain(|r| {
                    namespace_of(&r.metadata) != ns || !o.deleted.contains(&name_of(&r.metadata))
                });
                if let Some(created) = &o.created
                    && position(&runs, &ns, created).is_none()
                    && let Ok(Some(run)) = backend.get_task_run(&ns, created).await
                {
                    runs.push(run);
                }
            }
            match reconciled {
                Ok(o) => {
                    if let Some(r) = &o.created {
                        report.log.push(format!("{r}: created by the schedule"));
                    }
                    report.created_runs.extend(o.created);
                    report.missed.extend(o.missed);
                }
                Err(e) => report
                    .errors
                    .push(format!("MinionTaskConfig {}: {e}", name_of(&cfg.metadata))),
            }
        }
        if everything {
            match configs::prune_inline_runs(backend.as_ref(), &runs, &tables).await {
                Ok(deleted) => runs.retain(|r| {
                    !deleted.contains(&(namespace_of(&r.metadata), name_of(&r.metadata)))
                }),
                Err(e) => report.errors.push(format!("inline TaskRuns: {e}")),
            }
        }
        let active: Vec<&TaskRun> = runs
            .iter()
            .filter(|r| unfinished(r) && self.mine(r))
            .collect();
        report.active_runs = active.len();
        report.waiting_runs = active.iter().filter(|r| waiting_for_table(r)).count();
        Ok(report)
    }

    /// Ticks until the TaskRun `namespace/name` is finished and returns it.
    ///
    /// # Errors
    /// Listing resources failed; the run is gone; [`ControlError::Stuck`] after
    /// [`STUCK_TICKS`] ticks in a row that failed and made no progress.
    pub async fn drive(&mut self, namespace: &str, name: &str) -> Result<TaskRun, ControlError> {
        let mut stuck = 0u32;
        loop {
            let report = self.tick().await?;
            let run = self
                .backend
                .get_task_run(namespace, name)
                .await?
                .ok_or_else(|| ControlError::Invalid {
                    kind: "TaskRun",
                    name: format!("{namespace}/{name}"),
                    reason: "NotFound",
                    message: format!("TaskRun {namespace}/{name} was deleted while it ran"),
                })?;
            // A run waiting for a table is returned as it is (Pending, TableNotReady): this
            // loop reconciles no Table, so nothing here would make it Ready.
            if run.status.as_ref().is_some_and(|s| s.phase.is_finished()) || waiting_for_table(&run)
            {
                return Ok(run);
            }
            stuck = if report.steps == 0 && !report.errors.is_empty() {
                stuck + 1
            } else {
                0
            };
            if stuck >= STUCK_TICKS {
                return Err(ControlError::Stuck {
                    ticks: stuck,
                    errors: report.errors.join("; "),
                });
            }
            if report.steps == 0 {
                tokio::time::sleep(self.options.poll_interval).await;
            }
        }
    }

    /// Ticks until `max_steps` is reached, or — with `until_idle` — until no run is unfinished
    /// (but those waiting for a table to become Ready) and no schedule came due in the last
    /// tick. `on_tick` sees every report.
    ///
    /// # Errors
    /// Listing resources failed.
    pub async fn run(
        &mut self,
        until_idle: bool,
        mut on_tick: impl FnMut(&TickReport),
    ) -> Result<(), ControlError> {
        let mut stuck = 0u32;
        loop {
            let report = self.tick().await?;
            on_tick(&report);
            if report.limit_reached {
                return Ok(());
            }
            // Runs waiting for a table do not keep the loop up: only a change of the Table
            // (or their deadline) moves them on.
            if until_idle
                && report.active_runs == report.waiting_runs
                && report.created_runs.is_empty()
            {
                // A run created by someone else during the tick is not in its list.
                let runs = self.backend.list_task_runs().await?;
                let active: Vec<&TaskRun> = runs
                    .iter()
                    .filter(|r| unfinished(r) && self.mine(r))
                    .collect();
                if active.iter().all(|r| waiting_for_table(r)) {
                    return Ok(());
                }
            }
            // With --until-idle, a run that fails every step would keep the loop up forever.
            stuck = if report.steps == 0 && !report.errors.is_empty() {
                stuck + 1
            } else {
                0
            };
            if until_idle && stuck >= STUCK_TICKS {
                return Err(ControlError::Stuck {
                    ticks: stuck,
                    errors: report.errors.join("; "),
                });
            }
            if report.steps == 0 {
                tokio::time::sleep(self.options.poll_interval).await;
            }
        }
    }
}
