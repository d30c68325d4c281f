//! The local backend: the whole system on one machine, driven by the same manifests users
//! `kubectl apply`.
//!
//! - Resources are files in a state directory (default `.minion/state`, see [`store`]),
//!   written by `minion apply` (spec) and by the control loop (status), atomically, so a
//!   restarted loop resumes where it stopped.
//! - Events are appended to `<state>/events.jsonl`, bounded to the newest
//!   [`MAX_EVENTS`] lines.
//! - Each subtask attempt is a child process (see [`jobs`]); `minion local up` runs the
//!   `minion` binary itself (`minion worker run`), so nothing else needs installing.
//!
//! - One control loop per state directory: the commands that run it hold its lock (see
//!   [`lock`]), so two of them never commit on one directory at once.
//!
//! What it may touch: the state directory and the processes it started.

pub mod jobs;
pub mod lock;
pub mod store;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::api::{
    MinionTaskConfig, MinionTaskConfigStatus, Table, TableStatus, TaskRun, TaskRunStatus,
};
use crate::clock::Clock;
use crate::control::configs::stamp_creation;
use crate::control::{
    Backend, BackendError, BoxFuture, Created, Event, JobState, LaunchRequest, name_of,
    namespace_of,
};

pub use jobs::{ExitRecord, Jobs, write_exit_record};
pub use lock::StateLock;
pub use store::{Applied, Store, Stored, check_name, check_namespace};

/// Events kept in `events.jsonl` (older ones are dropped when it grows past twice this).
pub const MAX_EVENTS: usize = 2_000;
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = ".minion/state";

/// Failures of the local backend.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: not readable: {message}")]
    Parse { path: String, message: String },
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// A name or namespace that is not a valid Kubernetes name, refused before it becomes
    /// part of a path in the state directory.
    #[error("{kind} {value:?}: {field}: {problem}")]
    InvalidName {
        kind: &'static str,
        field: &'static str,
        value: String,
        problem: String,
    },
    /// Another process holds the state directory's lock.
    #[error("{0}")]
    Locked(String),
}

impl LocalError {
    pub fn reason(&self) -> &'static str {
        match self {
            LocalError::Io { .. } => "StateDirUnavailable",
            LocalError::Parse { .. } => "CorruptState",
            LocalError::NotFound { .. } => "NotFound",
            LocalError::InvalidName { .. } => "InvalidName",
            LocalError::Locked(_) => "StateDirLocked",
        }
    }

    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        LocalError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub(crate) fn parse(path: &Path, e: impl std::fmt::Display) -> Self {
        LocalError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<LocalError> for BackendError {
    fn from(e: LocalError) -> Self {
        match e {
            LocalError::NotFound {
                kind,
                namespace,
                name,
            } => BackendError::NotFound {
                kind,
                namespace,
                name,
            },
            other => BackendError::io("local state", other),
        }
    }
}

/// The event log of a state directory.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl EventLog {
    pub fn new(state_dir: &Path) -> Self {
        EventLog {
            path: state_dir.join("events.jsonl"),
            lock: Mutex::new(()),
        }
    }

    /// Appends one event; trims the file to the newest [`MAX_EVENTS`] when it doubled.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn append(&self, event: &Event) -> Result<(), LocalError> {
        let _guard = self.lock.lock().expect("event log lock");
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LocalError::io(dir, e))?;
        }
        let line = serde_json::to_string(event).map_err(|e| LocalError::parse(&self.path, e))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| LocalError::io(&self.path, e))?;
        writeln!(f, "{line}").map_err(|e| LocalError::io(&self.path, e))?;
        drop(f);
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        // Cheap check first: only count lines once the file is big enough to hold many.
        if size > (MAX_EVENTS as u64) * 200 {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() > 2 * MAX_EVENTS {
                let keep = lines[lines.len() - MAX_EVENTS..].join("\n") + "\n";
                store::write_atomic(&self.path, keep.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Every kept event, oldest first (unreadable lines are skipped).
    pub fn read(&self) -> Vec<Event> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The local backend over one state directory.
pub struct LocalBackend {
    store: Store,
    events: EventLog,
    jobs: Jobs,
    clock: Arc<dyn Clock>,
}

impl LocalBackend {
    /// A backend over `state_dir`, running subtasks as `worker_program worker_args… --spec …`.
    pub fn new(
        state_dir: &Path,
        worker_program: PathBuf,
        worker_args: Vec<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        LocalBackend {
            store: Store::new(state_dir),
            events: EventLog::new(state_dir),
            jobs: Jobs::new(state_dir, worker_program, worker_args),
            clock,
        }
    }

    /// A backend over `state_dir` whose jobs run `minion --state-dir <state_dir> worker run`
    /// with `minion` the program `minion` (the running `minion` binary, normally).
    pub fn with_minion_workers(state_dir: &Path, minion: PathBuf, clock: Arc<dyn Clock>) -> Self {
        let args = vec![
            "--state-dir".into(),
            state_dir.display().to_string(),
            "worker".into(),
            "run".into(),
        ];
        LocalBackend::new(state_dir, minion, args, clock)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn events(&self) -> &EventLog {
        &self.events
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }
}

fn ready<'a, T: Send + 'a>(v: Result<T, LocalError>) -> BoxFuture<'a, Result<T, BackendError>> {
    Box::pin(std::future::ready(v.map_err(BackendError::from)))
}

impl Backend for LocalBackend {
    fn list_tables(&self) -> BoxFuture<'_, Result<Vec<Table>, BackendError>> {
        ready(self.store.list())
    }

    fn list_task_configs(&self) -> BoxFuture<'_, Result<Vec<MinionTaskConfig>, BackendError>> {
        ready(self.store.list())
    }

    fn list_task_runs(&self) -> BoxFuture<'_, Result<Vec<TaskRun>, BackendError>> {
        ready(self.store.list())
    }

    fn get_table<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Table>, BackendError>> {
        ready(self.store.get(namespace, name))
    }

    fn get_task_config<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<MinionTaskConfig>, BackendError>> {
        ready(self.store.get(namespace, name))
    }

    fn get_task_run<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<TaskRun>, BackendError>> {
        ready(self.store.get(namespace, name))
    }

    fn create_task_run<'a>(
        &'a self,
        run: &'a TaskRun,
    ) -> BoxFuture<'a, Result<Created, BackendError>> {
        let namespace = namespace_of(&run.metadata);
        let name = name_of(&run.metadata);
        let result =
            self.store
                .get::<TaskRun>(&namespace, &name)
                .and_then(|existing| match existing {
                    Some(_) => Ok(Created::AlreadyExists),
                    None => {
                        let mut run = run.clone();
                        stamp_creation(&mut run.metadata, self.clock.now());
                        self.store
                            .put(&run, self.clock.now())
                            .map(|_| Created::Created)
                    }
                });
        ready(result)
    }

    fn delete_task_run<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        ready(self.store.delete::<TaskRun>(namespace, name))
    }

    fn update_table_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a TableStatus,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        ready(self.store.put_status::<Table>(namespace, name, status))
    }

    fn update_task_config_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a MinionTaskConfigStatus,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        ready(
            self.store
                .put_status::<MinionTaskConfig>(namespace, name, status),
        )
    }

    fn update_task_run_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a TaskRunStatus,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        ready(self.store.put_status::<TaskRun>(namespace, name, status))
    }

    fn record_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BackendError>> {
        ready(self.events.append(event))
    }

    fn launch_subtask<'a>(
        &'a self,
        request: &'a LaunchRequest,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        ready(self.jobs.launch(request))
    }

    fn subtask_state<'a>(
        &'a self,
        namespace: &'a str,
        job: &'a str,
    ) -> BoxFuture<'a, Result<JobState, BackendError>> {
        ready(self.jobs.state(namespace, job))
    }

    fn delete_subtask<'a>(
        &'a self,
        namespace: &'a str,
        job: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        ready(self.jobs.delete(namespace, job))
    }
}
