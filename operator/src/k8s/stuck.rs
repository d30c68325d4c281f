//! A subtask Job that cannot start its worker, and why: what `kubectl describe job` and
//! `kubectl describe pod` would show a person, read from the Job, its pods and the Job's
//! `FailedCreate` Event. Pure; the backend gathers the objects (only for a Job older than the
//! grace period, so a Job that starts normally costs no extra reads).
//!
//! # Decisions
//! - Nothing is declared stuck before `grace` has passed since the Job (or the pod) was
//!   created: images take time to pull, and a Secret or a node may appear shortly after.
//! - The causes, each a reason of its own: no pod at all (`JobCreateFailed`, with the Job
//!   controller's message, e.g. a ServiceAccount that does not exist in the namespace); an
//!   image that cannot be pulled (`ImagePullFailed`); a container that cannot be created, e.g.
//!   a Secret named by `envFrom` that does not exist (`ContainerConfigInvalid`); a pod no node
//!   takes (`Unschedulable`).

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};

use crate::control::{Reason, created_at};

/// How long a Job or pod may wait to start before it counts as stuck (`--pod-start-timeout`).
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

const IMAGE_PULL: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];
const CONTAINER_CONFIG: [&str; 2] = ["CreateContainerConfigError", "CreateContainerError"];

fn older_than(created: Option<DateTime<Utc>>, now: DateTime<Utc>, grace: chrono::Duration) -> bool {
    created.is_some_and(|c| now - c >= grace)
}

/// Why `job` cannot start its worker, when it has waited longer than `grace`: `pods` are its
/// pods, `events` the Events about it (the Job controller's `FailedCreate`).
pub fn stuck(
    job: &Job,
    pods: &[Pod],
    events: &[Event],
    now: DateTime<Utc>,
    grace: std::time::Duration,
) -> Option<(Reason, String)> {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let job_created = created_at(&job.metadata);
    if !older_than(job_created, now, grace) {
        return None;
    }
    let status = job.status.as_ref();
    let started = status.is_some_and(|s| s.succeeded.unwrap_or(0) > 0 || s.failed.unwrap_or(0) > 0);
    if pods.is_empty() && !started {
        let cause = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
            .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0.as_millisecond()))
            .and_then(|e| e.message.clone());
        let message = match cause {
            Some(m) => format!("Job {job_name} creates no pod: {m}"),
            None => format!(
                "Job {job_name} has created no pod in {}s (kubectl describe job {job_name} shows why)",
                grace.num_seconds()
            ),
        };
        return Some((Reason::JobCreateFailed, message));
    }
    for pod in pods {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let pod_created = created_at(&pod.metadata);
        if !older_than(pod_created, now, grace) {
            continue;
        }
        let Some(ps) = &pod.status else { continue };
        for c in ps.container_statuses.iter().flatten() {
            let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let why = waiting.reason.as_deref().unwrap_or_default();
            let detail = waiting.message.clone().unwrap_or_default();
            if IMAGE_PULL.contains(&why) {
                return Some((
                    Reason::ImagePullFailed,
                    format!(
                        "pod {pod_name} cannot pull image {}: {why}: {detail}",
                        c.image
                    ),
                ));
            }
            if CONTAINER_CONFIG.contains(&why) {
                return Some((
                    Reason::ContainerConfigInvalid,
                    format!("pod {pod_name} cannot create its container: {why}: {detail}"),
                ));
            }
        }
        if let Some(c) = ps.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        }) {
            return Some((
                Reason::Unschedulable,
                format!(
                    "pod {pod_name} cannot be scheduled: {}",
                    c.message.clone().unwrap_or_default()
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GRACE: std::time::Duration = std::time::Duration::from_secs(120);

    fn now() -> DateTime<Utc> {
        "2026-12-03T12:10:00Z".parse().unwrap()
    }

    fn job(created: &str) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "r-0", "namespace": "ns", "creationTimestamp": created},
            "status": {"active": 0},
        }))
        .unwrap()
    }

    fn pod(created: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "r-0-abcde", "creationTimestamp": created},
            "status": status,
        }))
        .unwrap()
    }

    fn failed_create(message: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": "e"}, "involvedObject": {"kind": "Job", "name": "r-0"},
            "reason": "FailedCreate", "message": message, "type": "Warning",
            "lastTimestamp": "2026-12-03T12:08:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn a_job_without_pods_names_the_job_controllers_reason_after_the_grace() {
        let sa = "Error creating: pods \"r-0-x\" is forbidden: error looking up service account ns/minion-worker: serviceaccount \"minion-worker\" not found";
        let young = job("2026-12-03T12:09:00Z");
        assert_eq!(stuck(&young, &[], &[failed_create(sa)], now(), GRACE), None);
        let old = job("2026-12-03T12:05:00Z");
        let (reason, message) = stuck(&old, &[], &[failed_create(sa)], now(), GRACE).unwrap();
        assert_eq!(reason, Reason::JobCreateFailed);
        assert!(
            message.contains("serviceaccount \"minion-worker\" not found"),
            "{message}"
        );
        let (_, message) = stuck(&old, &[], &[], now(), GRACE).unwrap();
        assert!(message.contains("has created no pod in 120s"), "{message}");
    }

    #[test]
    fn image_pulls_missing_secrets_and_unschedulable_pods_are_named() {
        let old = job("2026-12-03T12:00:00Z");
        let waiting = |reason: &str, message: &str| {
            json!({"containerStatuses": [{"name": "worker", "image": "minion:9", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}}}]})
        };
        let cases = [
            (
                waiting("ImagePullBackOff", "Back-off pulling image"),
                Reason::ImagePullFailed,
                "cannot pull image minion:9",
            ),
            (
                waiting("CreateContainerConfigError", "secret \"s3\" not found"),
                Reason::ContainerConfigInvalid,
                "secret \"s3\" not found",
            ),
            (
                json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient memory."}]}),
                Reason::Unschedulable,
                "Insufficient memory",
            ),
        ];
        for (status, want, words) in cases {
            let p = pod("2026-12-03T12:01:00Z", status.clone());
            let (reason, message) = stuck(&old, &[p], &[], now(), GRACE).unwrap();
            assert_eq!(reason, want);
            assert!(message.contains(words), "{message}");
            let young = pod("2026-12-03T12:09:30Z", status);
            assert_eq!(
                stuck(&old, &[young], &[], now(), GRACE),
                None,
                "within the grace"
            );
        }
        let running = pod(
            "2026-12-03T12:01:00Z",
            json!({"containerStatuses": [{"name": "worker", "image": "minion:9", "imageID": "",
                "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        );
        assert_eq!(stuck(&old, &[running], &[], now(), GRACE), None);
    }
}
