//! One subtask attempt as a `batch/v1` Job: [`build`] turns a
//! [`LaunchRequest`], the chart's [`WorkerDefaults`] and the owning TaskRun into the Job
//! object; [`job_state`] reads a Job's status back as a [`JobState`]. Both are pure.
//!
//! # Contract (docs/kubernetes.md, "Runtime contract" and "Worker defaults")
//! - Name: the request's deterministic job name; namespace: the TaskRun's.
//! - Labels: only ours ([`MANAGED_BY_LABEL`], [`TASK_RUN_LABEL`], [`SUBTASK_LABEL`],
//!   [`ATTEMPT_LABEL`]) on the Job and its pod template; the TaskRun's labels and annotations
//!   (e.g. GitOps tracking labels) are never copied.
//! - One controller owner reference to the TaskRun (`blockOwnerDeletion`), so deleting the
//!   run deletes its Jobs.
//! - The pod runs `/usr/local/bin/minion-worker run --spec <URI> --memory-budget <bytes>
//!   --spill-dir /tmp` under the restricted Pod Security Standard, as the worker
//!   ServiceAccount without a token; `/tmp` is an `emptyDir`.
//! - `podFailurePolicy`: disruptions (`DisruptionTarget`) are not counted; the worker's
//!   bad-input exit code ([`EXIT_BAD_INPUT`]) fails the Job at once.
//! - Resources, node selector and tolerations: the chart's defaults with the config's
//!   `spec.worker` over them; the memory request defaults to the budget plus the worker's
//!   fixed overhead.
//! - `backoffLimit` is the defaults' (0 when unset: the control loop counts attempts itself);
//!   `activeDeadlineSeconds` is the subtask timeout (the defaults' when the request has none).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    EnvVar, LocalObjectReference, ResourceRequirements, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use minion_contract::{EXIT_BAD_INPUT, WORKER_OVERHEAD_BYTES};
use serde::Deserialize;
use serde_json::json;

use crate::api::{TaskRun, WorkerPodSpec};
use crate::control::{JobState, LaunchRequest};

/// Where the chart mounts the worker defaults.
pub const WORKER_DEFAULTS_PATH: &str = "/etc/minion/worker-defaults.yaml";
/// The worker binary inside the image (the image's entrypoint is the operator).
pub const WORKER_COMMAND: &str = "/usr/local/bin/minion-worker";
/// Name of the worker container (also used by the pod failure policy).
pub const WORKER_CONTAINER: &str = "worker";
/// Scratch and spill directory of the worker (an `emptyDir`).
pub const SPILL_DIR: &str = "/tmp";
/// User and group of the image (distroless `nonroot`).
pub const RUN_AS: i64 = 65532;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "minion-operator";
pub const TASK_RUN_LABEL: &str = "minion.dev/task-run";
pub const SUBTASK_LABEL: &str = "minion.dev/subtask";
pub const ATTEMPT_LABEL: &str = "minion.dev/attempt";

/// Image used when the defaults name none (out-of-cluster runs without the chart).
pub const DEFAULT_IMAGE: &str = concat!("minion-operator:", env!("CARGO_PKG_VERSION"));

/// Why the defaults could not be read or a Job not built. `reason()` is stable.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{path}: {message}")]
    DefaultsUnreadable { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    DefaultsInvalid {
        path: String,
        field: String,
        message: String,
    },
    #[error("TaskRun {name} has no uid; a Job cannot be owned by it")]
    OwnerWithoutUid { name: String },
    #[error("Job {name}: {message}")]
    Build { name: String, message: String },
}

impl JobError {
    pub fn reason(&self) -> &'static str {
        match self {
            JobError::DefaultsUnreadable { .. } => "WorkerDefaultsUnreadable",
            JobError::DefaultsInvalid { .. } => "WorkerDefaultsInvalid",
            JobError::OwnerWithoutUid { .. } => "OwnerWithoutUid",
            JobError::Build { .. } => crate::control::Reason::JobInvalid.as_str(),
        }
    }
}

/// Defaults for every subtask Job, as the chart writes them to
/// [`WORKER_DEFAULTS_PATH`] (camelCase keys; unknown keys are refused).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkerDefaults {
    pub image: Option<String>,
    pub image_pull_policy: Option<String>,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    pub service_account_name: Option<String>,
    /// A quantity (`512Mi`); the request's budget wins when it has one.
    pub memory_budget: Option<String>,
    pub resources: Option<ResourceRequirements>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub backoff_limit: Option<i32>,
    pub active_deadline_seconds: Option<i64>,
    pub ttl_seconds_after_finished: Option<i32>,
    /// `sizeLimit` of the spill emptyDir, and the `ephemeral-storage` request unless
    /// `resources` sets one (a quantity; [`DEFAULT_SPILL_SIZE_LIMIT`] when unset).
    pub spill_size_limit: Option<String>,
    pub extra_env: Vec<EnvVar>,
    pub extra_volumes: Vec<Volume>,
    pub extra_volume_mounts: Vec<VolumeMount>,
}

impl WorkerDefaults {
    /// Parses the YAML text of the defaults file; errors name the field.
    ///
    /// # Errors
    /// Malformed YAML, an unknown key or a mistyped value.
    pub fn parse(path: &str, text: &str) -> Result<Self, JobError> {
        if text.trim().is_empty() {
            return Ok(WorkerDefaults::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| JobError::DefaultsInvalid {
            path: path.to_string(),
            field: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    /// Reads the defaults file; a missing file means no defaults (runs without the chart).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, JobError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WorkerDefaults::default()),
            Err(e) => Err(JobError::DefaultsUnreadable {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
}

/// Our labels of one subtask attempt (the Job's and its pods').
pub fn labels(request: &LaunchRequest) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (TASK_RUN_LABEL.to_string(), request.task_run.clone()),
        (
            SUBTASK_LABEL.to_string(),
            match request.kind {
                minion_contract::SubtaskKind::Process => request.subtask.to_string(),
                kind => kind.as_str().to_string(),
            },
        ),
        (ATTEMPT_LABEL.to_string(), request.attempt.to_string()),
    ])
}

/// Spill space of a subtask pod when the worker defaults name none.
pub const DEFAULT_SPILL_SIZE_LIMIT: &str = "8Gi";

/// The worker container's resources: the defaults', with the config's `requests` and
/// `limits` merged over them per resource; without a memory request, the memory budget plus
/// the worker's fixed overhead (so the scheduler places the pod where the budget fits);
/// without an `ephemeral-storage` request, the spill size limit (so it lands on a node with
/// room to spill).
fn resources(
    request: &LaunchRequest,
    defaults: &WorkerDefaults,
    overrides: Option<&WorkerPodSpec>,
) -> serde_json::Value {
    let quantities = |m: &Option<BTreeMap<String, Quantity>>| -> BTreeMap<String, String> {
        m.iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()
    };
    let base = defaults.resources.as_ref();
    let mut requests = quantities(&base.and_then(|r| r.requests.clone()));
    let mut limits = quantities(&base.and_then(|r| r.limits.clone()));
    if let Some(r) = overrides.and_then(|o| o.resources.as_ref()) {
        requests.extend(r.requests.clone());
        limits.extend(r.limits.clone());
    }
    if !requests.contains_key("memory") {
        let need = request.memory_budget_bytes + WORKER_OVERHEAD_BYTES;
        requests.insert("memory".into(), format!("{}Mi", need.div_ceil(1 << 20)));
    }
    requests
        .entry("ephemeral-storage".into())
        .or_insert_with(|| spill_size_limit(defaults).to_string());
    let mut out = json!({"requests": requests});
    if !limits.is_empty() {
        out["limits"] = json!(limits);
    }
    out
}

fn spill_size_limit(defaults: &WorkerDefaults) -> &str {
    defaults
        .spill_size_limit
        .as_deref()
        .unwrap_or(DEFAULT_SPILL_SIZE_LIMIT)
}

/// The Job of one subtask attempt, owned by `owner`, with object-store credentials from
/// `storage_secret` (the Table's `storageSecretRef`) as environment variables.
///
/// # Errors
/// The owner has no uid (it was not read from the API server), or a default does not fit
/// the Job schema.
pub fn build(
    request: &LaunchRequest,
    defaults: &WorkerDefaults,
    overrides: Option<&WorkerPodSpec>,
    owner: &TaskRun,
    storage_secret: Option<&str>,
) -> Result<Job, JobError> {
    let owner_name = owner.metadata.name.clone().unwrap_or_default();
    let uid = owner
        .metadata
        .uid
        .clone()
        .ok_or_else(|| JobError::OwnerWithoutUid {
            name: owner_name.clone(),
        })?;
    let deadline_s = if request.timeout_ms > 0 {
        Some((request.timeout_ms + 999) / 1000)
    } else {
        defaults.active_deadline_seconds
    };
    let mut env = vec![json!({"name": "TMPDIR", "value": SPILL_DIR})];
    env.extend(defaults.extra_env.iter().map(|e| json!(e)));
    let mut mounts = vec![json!({"name": "spill", "mountPath": SPILL_DIR})];
    mounts.extend(defaults.extra_volume_mounts.iter().map(|m| json!(m)));
    let mut volumes = vec![json!({
        "name": "spill",
        "emptyDir": {"sizeLimit": spill_size_limit(defaults)},
    })];
    volumes.extend(defaults.extra_volumes.iter().map(|v| json!(v)));
    let mut container = json!({
        "name": WORKER_CONTAINER,
        "image": defaults.image.as_deref().unwrap_or(DEFAULT_IMAGE),
        "command": [WORKER_COMMAND],
        "args": [
            "run",
            "--spec", request.spec_uri,
            "--memory-budget", request.memory_budget_bytes.to_string(),
            "--spill-dir", SPILL_DIR,
        ],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    if let Some(policy) = &defaults.image_pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
    container["resources"] = resources(request, defaults, overrides);
    if let Some(secret) = storage_secret {
        container["envFrom"] = json!([{"secretRef": {"name": secret}}]);
    }
    let mut pod = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    });
    if let Some(sa) = &defaults.service_account_name {
        pod["serviceAccountName"] = json!(sa);
    }
    if !defaults.image_pull_secrets.is_empty() {
        pod["imagePullSecrets"] = json!(defaults.image_pull_secrets);
    }
    let mut node_selector = defaults.node_selector.clone();
    let mut tolerations = json!(defaults.tolerations);
    if let Some(o) = overrides {
        node_selector.extend(o.node_selector.clone());
        if let Some(list) = tolerations.as_array_mut() {
            list.extend(o.tolerations.iter().map(|t| json!(t)));
        }
    }
    if !node_selector.is_empty() {
        pod["nodeSelector"] = json!(node_selector);
    }
    if tolerations.as_array().is_some_and(|l| !l.is_empty()) {
        pod["tolerations"] = tolerations;
    }
    let labels = labels(request);
    let mut spec = json!({
        "backoffLimit": defaults.backoff_limit.unwrap_or(0),
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {
                "containerName": WORKER_CONTAINER, "operator": "In", "values": [EXIT_BAD_INPUT],
            }},
        ]},
        "template": {"metadata": {"labels": labels}, "spec": pod},
    });
    if let Some(d) = deadline_s {
        spec["activeDeadlineSeconds"] = json!(d);
    }
    if let Some(ttl) = defaults.ttl_seconds_after_finished {
        spec["ttlSecondsAfterFinished"] = json!(ttl);
    }
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": request.job,
            "namespace": request.namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": crate::api::API_VERSION,
                "kind": "TaskRun",
                "name": owner_name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    });
    serde_json::from_value(job).map_err(|e| JobError::Build {
        name: request.job.clone(),
        message: e.to_string(),
    })
}

/// Exit code of the worker container in a pod's status, if it terminated.
pub fn pod_exit_code(pod: &k8s_openapi::api::core::v1::Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == WORKER_CONTAINER)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

/// What a Job's status says about its attempt. `exit_code` is the worker's, when a pod
/// reported one; without it, a Job failed by the pod failure policy (reason
/// `PodFailurePolicy`) is taken as the bad-input exit code, the only `FailJob` rule.
pub fn job_state(job: &Job, exit_code: Option<i32>) -> JobState {
    let Some(status) = &job.status else {
        return JobState::Pending;
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let is_true = |c: &&k8s_openapi::api::batch::v1::JobCondition| c.status == "True";
    if conditions
        .iter()
        .filter(is_true)
        .any(|c| c.type_ == "Complete")
    {
        let at = status
            .completion_time
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp_millis(t.0.as_millisecond()));
        return JobState::Succeeded { at };
    }
    if let Some(c) = conditions
        .iter()
        .filter(is_true)
        .find(|c| c.type_ == "Failed")
    {
        let reason = c.reason.clone().unwrap_or_else(|| "Failed".into());
        let exit_code = exit_code.or((reason == "PodFailurePolicy").then_some(EXIT_BAD_INPUT));
        let message = match &c.message {
            Some(m) if !m.is_empty() => format!("Job failed ({reason}): {m}"),
            _ => format!("Job failed ({reason})"),
        };
        return JobState::Failed { exit_code, message };
    }
    if status.active.unwrap_or(0) > 0 {
        JobState::Running
    } else {
        JobState::Pending
    }
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
