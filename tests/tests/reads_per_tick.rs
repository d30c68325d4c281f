//! What the control loop fetches, counted on a real run in local mode (the `LocalBackend`
//! behind a wrapper that counts its reads, workers as `minion` child processes): a tick lists
//! TaskRuns once whatever it steps (and once more per run of a config it admits: the
//! concurrency policy decides on a fresh list), a step reads its config once and each of its
//! Tables once,
//! and a run's stored plan is read once by a process however many steps the run takes (a
//! restarted loop reads it once more). The run still imports every finished day exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use minion_e2e::fixtures::workspace_binary;
use minion_e2e::local_env::{Env, assert_same};
use minion_operator::api::{
    MinionTaskConfig, MinionTaskConfigStatus, SubtaskState, Table, TableStatus, TaskRun,
    TaskRunPhase, TaskRunStatus,
};
use minion_operator::clock::SystemClock;
use minion_operator::control::{
    Backend, BackendError, BoxFuture, Controller, ControllerOptions, Created, Event, JobState,
    LaunchRequest, configs, gather,
};
use minion_operator::local::LocalBackend;

type Res<'a, T> = BoxFuture<'a, Result<T, BackendError>>;

/// Reads of the backend, by kind.
#[derive(Default)]
struct Counts {
    list_task_runs: AtomicU64,
    get_task_run: AtomicU64,
    get_table: AtomicU64,
    get_task_config: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Snapshot {
    list_task_runs: u64,
    get_task_run: u64,
    get_table: u64,
    get_task_config: u64,
}

impl Counts {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            list_task_runs: self.list_task_runs.load(Ordering::SeqCst),
            get_task_run: self.get_task_run.load(Ordering::SeqCst),
            get_table: self.get_table.load(Ordering::SeqCst),
            get_task_config: self.get_task_config.load(Ordering::SeqCst),
        }
    }
}

/// The local backend, counting its reads.
struct Counting {
    inner: Arc<LocalBackend>,
    counts: Arc<Counts>,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::SeqCst);
}

impl Backend for Counting {
    fn list_tables(&self) -> Res<'_, Vec<Table>> {
        self.inner.list_tables()
    }
    fn list_task_configs(&self) -> Res<'_, Vec<MinionTaskConfig>> {
        self.inner.list_task_configs()
    }
    fn list_task_runs(&self) -> Res<'_, Vec<TaskRun>> {
        count(&self.counts.list_task_runs);
        self.inner.list_task_runs()
    }
    fn get_table<'a>(&'a self, namespace: &'a str, name: &'a str) -> Res<'a, Option<Table>> {
        count(&self.counts.get_table);
        self.inner.get_table(namespace, name)
    }
    fn get_task_config<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Res<'a, Option<MinionTaskConfig>> {
        count(&self.counts.get_task_config);
        self.inner.get_task_config(namespace, name)
    }
    fn get_task_run<'a>(&'a self, namespace: &'a str, name: &'a str) -> Res<'a, Option<TaskRun>> {
        count(&self.counts.get_task_run);
        self.inner.get_task_run(namespace, name)
    }
    fn create_task_run<'a>(&'a self, run: &'a TaskRun) -> Res<'a, Created> {
        self.inner.create_task_run(run)
    }
    fn delete_task_run<'a>(&'a self, namespace: &'a str, name: &'a str) -> Res<'a, ()> {
        self.inner.delete_task_run(namespace, name)
    }
    fn update_table_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a TableStatus,
    ) -> Res<'a, ()> {
        self.inner.update_table_status(namespace, name, status)
    }
    fn update_task_config_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a MinionTaskConfigStatus,
    ) -> Res<'a, ()> {
        self.inner
            .update_task_config_status(namespace, name, status)
    }
    fn update_task_run_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a TaskRunStatus,
    ) -> Res<'a, ()> {
        self.inner.update_task_run_status(namespace, name, status)
    }
    fn record_event<'a>(&'a self, event: &'a Event) -> Res<'a, ()> {
        self.inner.record_event(event)
    }
    fn launch_subtask<'a>(&'a self, request: &'a LaunchRequest) -> Res<'a, ()> {
        self.inner.launch_subtask(request)
    }
    fn subtask_state<'a>(&'a self, namespace: &'a str, job: &'a str) -> Res<'a, JobState> {
        self.inner.subtask_state(namespace, job)
    }
    fn delete_subtask<'a>(&'a self, namespace: &'a str, job: &'a str) -> Res<'a, ()> {
        self.inner.delete_subtask(namespace, job)
    }
    fn check_write(&self, operation: &str) -> Result<(), BackendError> {
        self.inner.check_write(operation)
    }
}

fn phase(run: &TaskRun) -> TaskRunPhase {
    run.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_lists_task_runs_once_and_a_run_reads_its_plan_once() {
    let env = Env::new(10, "  suspend: true\n  parallelism: 1\n").await;
    env.apply();
    let local = Arc::new(LocalBackend::with_minion_workers(
        &env.state,
        workspace_binary("minion", "minion-cli"),
        Arc::new(SystemClock),
    ));
    let counts = Arc::new(Counts::default());
    let backend = Arc::new(Counting {
        inner: local.clone(),
        counts: counts.clone(),
    });
    let cfg = local
        .get_task_config("default", "events-import")
        .await
        .unwrap()
        .unwrap();
    // Three runs of one config: the first imports, the later two are skipped by the
    // concurrency policy (Forbid) while it is in flight.
    let names = ["events-import-a", "events-import-b", "events-import-c"];
    for name in names {
        let run = configs::new_task_run(&cfg, name, None);
        assert_eq!(local.create_task_run(&run).await.unwrap(), Created::Created);
    }
    let options = ControllerOptions {
        poll_interval: std::time::Duration::from_millis(20),
        ..ControllerOptions::default()
    };
    let new_controller =
        || Controller::new(backend.clone(), Arc::new(SystemClock), options.clone());
    let mut controller = new_controller();
    let reads_before = gather::stored_reads();

    let (mut ticks, mut steps, mut step_calls, mut admissions) = (0u64, 0u64, 0u64, 0u64);
    let (mut restarted, mut first_tick) = (false, true);
    loop {
        let unfinished = local
            .list_task_runs()
            .await
            .unwrap()
            .iter()
            .filter(|r| !phase(r).is_finished())
            .count() as u64;
        let before = counts.snapshot();
        let report = controller.tick().await.unwrap();
        let after = counts.snapshot();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        eprintln!(
            "tick {}: {} steps over {unfinished} runs, {} TaskRun list(s), {} Table and {} config reads",
            ticks + 1,
            report.steps,
            after.list_task_runs - before.list_task_runs,
            after.get_table - before.get_table,
            after.get_task_config - before.get_task_config
        );
        ticks += 1;
        steps += report.steps;
        // Each unfinished run is stepped until it waits or ends: one call more than the
        // steps it takes.
        let calls = report.steps + unfinished;
        step_calls += calls;
        let admitted = report
            .log
            .iter()
            .filter(|l| l.ends_with(": admitted"))
            .count() as u64;
        admissions += admitted;
        assert_eq!(
            after.list_task_runs - before.list_task_runs,
            1 + admitted,
            "tick {ticks} ({} steps over {unfinished} runs, {admitted} admitted) listed TaskRuns more than once and once per admission",
            report.steps
        );
        // Housekeeping reads each of the two Tables on a loop's first tick, the config's
        // reconcile reads them once a tick; each step reads the run's config once and its two
        // Tables (source and destination) once.
        let housekeeping = if first_tick { 2 } else { 0 };
        first_tick = false;
        assert!(
            after.get_table - before.get_table <= 2 * calls + housekeeping + 2,
            "tick {ticks}: {} Table reads in {calls} step(s)",
            after.get_table - before.get_table
        );
        assert!(
            after.get_task_config - before.get_task_config <= calls,
            "tick {ticks}: {} config reads in {calls} step(s)",
            after.get_task_config - before.get_task_config
        );
        assert_eq!(after.get_task_run, before.get_task_run, "no schedule fires");
        let runs = local.list_task_runs().await.unwrap();
        let first = runs
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(names[0]))
            .unwrap();
        // Once the first run has committed a subtask, the loop restarts: the new one reads
        // the plan again (the kept plan is only an optimisation).
        let committed = first.status.as_ref().map_or(0, |s| {
            s.subtasks
                .iter()
                .filter(|s| s.state == SubtaskState::Committed)
                .count()
        });
        if !restarted && phase(first) == TaskRunPhase::Running && committed >= 1 {
            let planned = gather::stored_reads().plans - reads_before.plans;
            assert_eq!(planned, 1, "planning looks for a stored plan once");
            controller = new_controller();
            (restarted, first_tick) = (true, true);
        }
        if runs.iter().all(|r| phase(r).is_finished()) {
            assert_eq!(report.active_runs, 0);
            break;
        }
        assert!(ticks < 3_000, "the runs did not finish");
        if report.steps == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert!(restarted, "the first run was seen Running");
    let reads = gather::stored_reads();
    let plan_reads = reads.plans - reads_before.plans;
    let total = counts.snapshot();
    eprintln!(
        "{ticks} ticks, {steps} steps ({step_calls} step calls): {} TaskRun lists, {} Table reads, {} config reads, {plan_reads} plan reads, {} subtask-state reads",
        total.list_task_runs,
        total.get_table,
        total.get_task_config,
        reads.subtasks - reads_before.subtasks
    );
    // One look for a plan while planning, one read by the restarted loop; none by the many
    // steps between and after.
    assert!(steps >= 8, "the first run took several steps ({steps})");
    assert_eq!(plan_reads, 2);
    assert_eq!(admissions, 3);
    assert_eq!(total.list_task_runs, ticks + admissions);
    assert_eq!(
        controller.plans_kept(),
        0,
        "plans of finished runs are forgotten"
    );

    let runs = local.list_task_runs().await.unwrap();
    let phase_of = |name: &str| {
        phase(
            runs.iter()
                .find(|r| r.metadata.name.as_deref() == Some(name))
                .unwrap(),
        )
    };
    assert_eq!(phase_of(names[0]), TaskRunPhase::Succeeded);
    assert_eq!(phase_of(names[1]), TaskRunPhase::Skipped);
    assert_eq!(phase_of(names[2]), TaskRunPhase::Skipped);
    let (src, dst, _) = env.totals().await;
    assert_same(&src, &dst);
}
