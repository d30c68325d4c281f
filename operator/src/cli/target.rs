//! Where a command acts: the local state directory, or a Kubernetes cluster through the
//! kubeconfig (`--cluster`; the default when run as `kubectl-minion`). Reads go through the
//! same [`Backend`] the control loop uses (a [`LocalBackend`] or a [`KubeBackend`] without
//! watches, scoped to the namespace asked for), so a command shows the same objects either
//! way; what the control loop never does (edit a spec, read Events back, read a Job's logs)
//! is here, once per target.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};

use super::{CliError, found};
use crate::api::{MinionTaskConfig, TaskRun};
use crate::clock::SystemClock;
use crate::control::{Backend, Event, EventType, ObjectRef};
use crate::k8s::{KubeBackend, WorkerDefaults, WriteGate};
use crate::local::{EventLog, LocalBackend, Store};

/// The local state directory or a cluster.
pub(crate) enum Target {
    Local(PathBuf),
    Cluster(kube::Client),
}

/// The field manager of the CLI's own edits (`spec.suspend`, `spec.cancel`), so
/// server-side apply users see who changed a field.
const CLI_FIELD_MANAGER: &str = "kubectl-minion";

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(CLI_FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

fn api_failed(what: String, e: kube::Error) -> CliError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => {
            CliError::NotFound(format!("{what}: {}", s.message))
        }
        kube::Error::Api(s) if s.code == 403 => CliError::Failed(format!(
            "{what}: forbidden ({}); your kubeconfig's user needs the minion-edit (or \
             minion-view, to read) role in this namespace",
            s.message
        )),
        _ => CliError::Failed(format!("{what}: {e}")),
    }
}

impl Target {
    /// The cluster of the kubeconfig (`KUBECONFIG`, `~/.kube/config`, or in-cluster).
    pub(crate) async fn cluster() -> Result<Target, CliError> {
        crate::catalog::install_crypto_provider();
        let client = kube::Client::try_default().await.map_err(|e| {
            CliError::Failed(format!(
                "no cluster to talk to: {e}; set KUBECONFIG (or use --state-dir for local mode)"
            ))
        })?;
        Ok(Target::Cluster(client))
    }

    /// The state directory, for commands that exist in local mode only.
    pub(crate) fn local_only(&self, command: &str) -> Result<&Path, CliError> {
        match self {
            Target::Local(state) => Ok(state),
            Target::Cluster(_) => Err(CliError::Invalid(vec![format!(
                "`{command}` works on a local state directory only; on a cluster use kubectl \
                 (kubectl apply -f …), or pass --state-dir to act locally"
            )])),
        }
    }

    /// A backend reading the objects of `namespace` (every namespace when `None`).
    pub(crate) fn backend(&self, namespace: Option<&str>) -> Box<dyn Backend> {
        match self {
            // These commands start no job: the worker program is never used.
            Target::Local(state) => Box::new(LocalBackend::new(
                state,
                "minion".into(),
                Vec::new(),
                Arc::new(SystemClock),
            )),
            Target::Cluster(client) => Box::new(KubeBackend::new(
                client.clone(),
                namespace.map(|ns| vec![ns.to_string()]).unwrap_or_default(),
                WorkerDefaults::default(),
                None,
                WriteGate::default(),
            )),
        }
    }

    /// The Events about one object, oldest first.
    pub(crate) async fn events(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<Event>, CliError> {
        let mut out: Vec<Event> = match self {
            Target::Local(state) => EventLog::new(state)
                .read()
                .into_iter()
                .filter(|e| {
                    e.object.kind == kind
                        && e.object.namespace == namespace
                        && e.object.name == name
                })
                .collect(),
            Target::Cluster(client) => {
                let api: Api<KubeEvent> = Api::namespaced(client.clone(), namespace);
                let list = api
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| api_failed(format!("list Events in {namespace}"), e))?;
                list.items
                    .into_iter()
                    .filter(|e| {
                        e.regarding.as_ref().is_some_and(|r| {
                            r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                        })
                    })
                    .map(|e| from_kube_event(e, kind, namespace, name))
                    .collect()
            }
        };
        out.sort_by_key(|e| e.time);
        Ok(out)
    }

    /// Sets `spec.suspend` of a MinionTaskConfig.
    pub(crate) async fn set_suspend(
        &self,
        namespace: &str,
        name: &str,
        suspend: bool,
    ) -> Result<(), CliError> {
        match self {
            Target::Local(state) => {
                let store = Store::new(state);
                let mut cfg: MinionTaskConfig = found(store.get(namespace, name), namespace, name)?;
                cfg.spec.suspend = suspend;
                store.put(&cfg, Utc::now()).map_err(CliError::failed)?;
            }
            Target::Cluster(client) => {
                let api: Api<MinionTaskConfig> = Api::namespaced(client.clone(), namespace);
                let patch = serde_json::json!({"spec": {"suspend": suspend}});
                api.patch(name, &patch_params(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| api_failed(format!("MinionTaskConfig {namespace}/{name}"), e))?;
            }
        }
        Ok(())
    }

    /// Sets `spec.cancel` of a TaskRun: the control loop reverts what the run staged and
    /// ends it `Cancelled` (a run already past its commit finishes).
    pub(crate) async fn cancel(&self, namespace: &str, name: &str) -> Result<(), CliError> {
        match self {
            Target::Local(state) => {
                let store = Store::new(state);
                let mut run: TaskRun = found(store.get(namespace, name), namespace, name)?;
                run.spec.cancel = true;
                store.put(&run, Utc::now()).map_err(CliError::failed)?;
            }
            Target::Cluster(client) => {
                let api: Api<TaskRun> = Api::namespaced(client.clone(), namespace);
                let patch = serde_json::json!({"spec": {"cancel": true}});
                api.patch(name, &patch_params(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| api_failed(format!("TaskRun {namespace}/{name}"), e))?;
            }
        }
        Ok(())
    }

    /// The output of a subtask's Job: the worker's log file in local mode; on a cluster the
    /// logs of the Job's newest Pod (its worker container).
    pub(crate) async fn job_logs(&self, namespace: &str, job: &str) -> Result<String, CliError> {
        match self {
            Target::Local(state) => {
                let jobs = crate::local::jobs::Jobs::new(state, PathBuf::new(), Vec::new());
                let path = jobs.log_path(namespace, job);
                std::fs::read_to_string(&path).map_err(|e| {
                    CliError::NotFound(format!(
                        "no log of job {job} at {}: {e} (a job's log is kept until its run is \
                         deleted)",
                        path.display()
                    ))
                })
            }
            Target::Cluster(client) => {
                let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
                let pods = api
                    .list(&ListParams::default().labels(&format!("job-name={job}")))
                    .await
                    .map_err(|e| api_failed(format!("list Pods of Job {namespace}/{job}"), e))?;
                let Some(pod) = pods
                    .items
                    .into_iter()
                    .max_by_key(|p| p.metadata.creation_timestamp.clone())
                else {
                    return Err(CliError::NotFound(format!(
                        "Job {namespace}/{job} has no Pod (not started yet, or deleted with \
                         its run's history)"
                    )));
                };
                let pod_name = pod.metadata.name.unwrap_or_default();
                api.logs(&pod_name, &LogParams::default())
                    .await
                    .map_err(|e| api_failed(format!("logs of Pod {namespace}/{pod_name}"), e))
            }
        }
    }
}

fn from_kube_event(e: KubeEvent, kind: &str, namespace: &str, name: &str) -> Event {
    let time: Option<DateTime<Utc>> = e
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.as_millisecond()));
    Event {
        object: ObjectRef::new(kind, namespace, name),
        type_: match e.type_.as_deref() {
            Some("Warning") => EventType::Warning,
            _ => EventType::Normal,
        },
        reason: e.reason.unwrap_or_default(),
        message: e.note.unwrap_or_default(),
        time: time.unwrap_or_else(Utc::now),
    }
}
