//! The control loop, once for every backend: cron scheduling of `MinionTaskConfig`s, the
//! `TaskRun` lifecycle as a state machine persisted in status after every step, and the commit
//! protocol ([`protocol`]). It is the only driver of runs: the operator, `minion local up`,
//! `minion push` and the demo all run it.
//!
//! The loop talks to its environment through two narrow interfaces:
//! - [`Backend`]: the resources (`Table`, `MinionTaskConfig`, `TaskRun` with their status),
//!   Events and subtask executions ("jobs"). The local backend (`crate::local`) keeps them in a
//!   state directory and runs child processes; a Kubernetes backend maps them onto the API
//!   server (status subresource with server-side apply, Events, one `Job` per subtask attempt,
//!   owner references from TaskRun to its Jobs).
//! - object storage, reached directly (never through the backend): catalogs, subtask specs,
//!   result manifests and the full plan of a run (`<dest>/_minion/runs/<ns>/<run key>/plan.json`).
//!
//! Deciding is pure where it can be: [`taskrun::next_step`] picks the next step of a run from
//! its status and observed facts, [`configs::schedule_decision`] wraps
//! [`crate::schedule::decide`]. The acting code ([`Controller`]) is thin: it gathers facts,
//! performs one step, writes status, and records Events.
//!
//! # Decisions
//! - One step per call, status written after each, so a loop killed anywhere resumes from
//!   status (and the Delta log, which is authoritative for commits and watermarks).
//! - Subtask attempts are separate jobs: attempt 1 is `<run>-<index>`, attempt n > 1 is
//!   `<run>-<index>-a<n>` (a Kubernetes Job cannot be recreated under its name until its
//!   deletion completes); a run's validity subtask is `<run>-validity[-a<n>]`. A job is launched before the status naming it is written; launching
//!   is idempotent, so a crash in between relaunches the same job name.
//! - Per-subtask commits happen while the run is `Running` (outputs become visible as soon as
//!   they are ready); `Committing` is the closing phase (the all-or-none commit, final status).

pub mod configs;
mod controller;
pub mod finalize;
pub mod gather;
pub mod health;
pub mod housekeeping;
pub mod inputs;
pub mod protocol;
pub mod reason;
pub mod retention;
mod runstep;
mod skipped;
mod stepctx;
mod subtasks;
pub mod tables;
pub mod taskrun;
pub mod validity;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{
    MinionTaskConfig, MinionTaskConfigStatus, Table, TableStatus, TaskRun, TaskRunStatus,
};

use crate::clock::Clock;
pub use controller::{Controller, ControllerOptions, TickReport};
pub use reason::Reason;

/// A boxed future, so [`Backend`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The resource an Event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// `Normal` or `Warning`, as Kubernetes Events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// One Event: what happened to which object, with a stable CamelCase reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub object: ObjectRef,
    #[serde(rename = "type")]
    pub type_: EventType,
    pub reason: String,
    pub message: String,
    pub time: DateTime<Utc>,
}

/// What a backend needs to start one subtask attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchRequest {
    pub namespace: String,
    pub task_run: String,
    pub subtask: u32,
    /// What the worker does (a validity subtask is not one of the numbered subtasks: its
    /// `subtask` is 0 and its Job is labelled `validity`).
    pub kind: minion_contract::SubtaskKind,
    pub attempt: u32,
    /// Deterministic job name (see the module docs).
    pub job: String,
    /// URI of the subtask spec the worker reads (`minion-worker run --spec <URI>`).
    pub spec_uri: String,
    pub memory_budget_bytes: u64,
    /// Deadline of the attempt (a Job's `activeDeadlineSeconds`); the loop enforces it too.
    pub timeout_ms: i64,
}

/// What a backend observes of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    /// `at`: when it finished, when the backend knows (the control loop may wait a moment for
    /// others to finish, to commit them together).
    Succeeded {
        at: Option<DateTime<Utc>>,
    },
    /// `exit_code` is `None` when the process was killed or vanished without one.
    Failed {
        exit_code: Option<i32>,
        message: String,
    },
    /// No such job (never launched, deleted, or lost with its backend state).
    Missing,
    /// The job cannot start its worker and will not by itself: no pod created
    /// (`JobCreateFailed`), an image that cannot be pulled (`ImagePullFailed`), a container
    /// that cannot be configured (`ContainerConfigInvalid`), a pod no node takes
    /// (`Unschedulable`). The attempt fails at once with that reason, without a retry.
    Stuck {
        reason: Reason,
        message: String,
    },
}

/// How a backend call failed. `reason` is stable for conditions and Events.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name}: stored object is unreadable: {message}")]
    Corrupt {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("{operation}: {message}")]
    Io { operation: String, message: String },
    /// An object the request names may not be used for it (a Secret without the storage
    /// opt-in label): `reason` is the condition reason, `message` names the field and the fix.
    #[error("{message}")]
    NotAllowed {
        reason: &'static str,
        message: String,
    },
}

impl BackendError {
    pub fn reason(&self) -> &'static str {
        match self {
            BackendError::NotFound { .. } => "NotFound",
            BackendError::Corrupt { .. } => "CorruptObject",
            BackendError::Io { .. } => "BackendUnavailable",
            BackendError::NotAllowed { reason, .. } => reason,
        }
    }

    pub fn io(operation: impl Into<String>, e: impl std::fmt::Display) -> Self {
        BackendError::Io {
            operation: operation.into(),
            message: e.to_string(),
        }
    }
}

/// Whether [`Backend::create_task_run`] made the object or found it (deterministic names make
/// a repeated create harmless).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExists,
}

type Res<'a, T> = BoxFuture<'a, Result<T, BackendError>>;

/// The resources, Events and jobs the control loop works on.
///
/// # Contract
/// - Lists return every object of the kind (all namespaces the backend watches), with status.
/// - `update_*_status` replaces the whole status of an existing object and never touches its
///   metadata or spec (Kubernetes: server-side apply on `/status` with a fixed field manager).
/// - `create_task_run` and `launch_subtask` are idempotent by name.
/// - `delete_subtask` of a missing job succeeds; it stops a running one.
pub trait Backend: Send + Sync {
    fn list_tables(&self) -> Res<'_, Vec<Table>>;
    fn list_task_configs(&self) -> Res<'_, Vec<MinionTaskConfig>>;
    fn list_task_runs(&self) -> Res<'_, Vec<TaskRun>>;
    fn get_table<'a>(&'a self, namespace: &'a str, name: &'a str) -> Res<'a, Option<Table>>;
    fn get_task_config<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Res<'a, Option<MinionTaskConfig>>;
    fn get_task_run<'a>(&'a self, namespace: &'a str, name: &'a str) -> Res<'a, Option<TaskRun>>;
    /// Creates a TaskRun (its status, if any, is ignored); sets `creationTimestamp`.
    fn create_task_run<'a>(&'a self, run: &'a TaskRun) -> Res<'a, Created>;
    /// Deletes a TaskRun (history limits); the caller deletes its jobs first.
    fn delete_task_run<'a>(&'a self, namespace: &'a str, name: &'a str) -> Res<'a, ()>;
    fn update_table_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a TableStatus,
    ) -> Res<'a, ()>;
    fn update_task_config_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a MinionTaskConfigStatus,
    ) -> Res<'a, ()>;
    fn update_task_run_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a TaskRunStatus,
    ) -> Res<'a, ()>;
    fn record_event<'a>(&'a self, event: &'a Event) -> Res<'a, ()>;
    /// Adds (`hold`) or removes the operator's finalizer ([`finalize::FINALIZER`]) on a
    /// TaskRun, so a deleted run stays until its uncommitted work is reverted. Backends that
    /// delete nothing behind the loop's back (local mode) hold nothing.
    fn set_run_finalizer<'a>(&'a self, run: &'a TaskRun, hold: bool) -> Res<'a, ()> {
        let _ = (run, hold);
        Box::pin(async { Ok(()) })
    }
    /// Whether [`Backend::set_run_finalizer`] does anything here.
    fn holds_runs(&self) -> bool {
        false
    }
    /// Starts one subtask attempt as a job named `request.job`; a job of that name that
    /// already exists is left as it is.
    fn launch_subtask<'a>(&'a self, request: &'a LaunchRequest) -> Res<'a, ()>;
    fn subtask_state<'a>(&'a self, namespace: &'a str, job: &'a str) -> Res<'a, JobState>;
    fn delete_subtask<'a>(&'a self, namespace: &'a str, job: &'a str) -> Res<'a, ()>;
    /// Whether this process may write now: every catalog commit and every delete of staged
    /// or replaced data asks first, as status writes do (Kubernetes: the replica holds the
    /// leader Lease; local mode: always).
    fn check_write(&self, operation: &str) -> Result<(), BackendError> {
        let _ = operation;
        Ok(())
    }
    /// Object-store options for `table`'s bucket (credentials, endpoint) from the Secret it
    /// names in `spec.storageSecretRef`; `None` when the environment is to be used (the
    /// default, and always for local mode).
    fn storage_options<'a>(
        &'a self,
        table: &'a Table,
    ) -> Res<'a, Option<std::collections::HashMap<String, String>>> {
        let _ = table;
        Box::pin(async { Ok(None) })
    }
}

/// Why a control-loop step failed (the step is retried on the next tick).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("catalog of table {table}: {source}")]
    Catalog {
        table: String,
        #[source]
        source: crate::catalog::CatalogError,
    },
    #[error("no progress in {ticks} ticks, every one failing: {errors}")]
    Stuck { ticks: u32, errors: String },
    #[error("object storage {uri}: {message}")]
    Storage { uri: String, message: String },
    #[error("{kind} {name}: {message}")]
    Invalid {
        kind: &'static str,
        name: String,
        reason: &'static str,
        message: String,
    },
}

impl ControlError {
    pub fn reason(&self) -> &'static str {
        match self {
            ControlError::Backend(e) => e.reason(),
            ControlError::Catalog { source, .. } => source.reason(),
            ControlError::Storage { .. } => "StorageUnavailable",
            ControlError::Stuck { .. } => "NoProgress",
            ControlError::Invalid { reason, .. } => reason,
        }
    }

    pub(crate) fn storage(uri: &str, e: impl std::fmt::Display) -> Self {
        ControlError::Storage {
            uri: uri.to_string(),
            message: e.to_string(),
        }
    }
}

/// Namespace of an object (`default` when unset).
pub fn namespace_of(meta: &kube::api::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

/// Name of an object.
pub fn name_of(meta: &kube::api::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// `metadata.creationTimestamp` as a chrono time.
pub fn created_at(meta: &kube::api::ObjectMeta) -> Option<DateTime<Utc>> {
    let t = meta.creation_timestamp.as_ref()?;
    DateTime::<Utc>::from_timestamp_millis(t.0.as_millisecond())
}

/// A chrono time as a Kubernetes `Time`.
pub fn k8s_time(t: DateTime<Utc>) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_millisecond(t.timestamp_millis())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}
