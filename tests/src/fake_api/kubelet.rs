//! What the Job controller and a kubelet do for the subtask Jobs, with local processes: every
//! new Job's worker container runs as a child process (its command mapped from the image's
//! `/usr/local/bin/<name>` to the binary of that name in `bin_dir`, its args, its `envFrom`
//! Secrets and `env` values as written, `TMPDIR` and `--spill-dir` moved to a scratch
//! directory), and the Job's
//! status then says what the Job controller would: `Complete`, or `Failed` with reason
//! `PodFailurePolicy` for the worker's bad-input exit code and `BackoffLimitExceeded`
//! otherwise. No pods are created.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use minion_contract::EXIT_BAD_INPUT;

/// The binary the container's command names, found in `bin_dir`.
fn local_binary(command: &str, bin_dir: &Path) -> PathBuf {
    let name = Path::new(command)
        .file_name()
        .expect("a command with a file name");
    bin_dir.join(name)
}

/// The environment a container's `envFrom` Secrets give it.
async fn env_from_secrets(
    secrets: &Api<Secret>,
    container: &k8s_openapi::api::core::v1::Container,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for source in container.env_from.iter().flatten() {
        let Some(name) = source.secret_ref.as_ref().map(|r| r.name.clone()) else {
            continue;
        };
        let secret = secrets.get(&name).await.expect("the envFrom Secret exists");
        for (k, v) in secret.data.unwrap_or_default() {
            out.push((k, String::from_utf8_lossy(&v.0).into_owned()));
        }
        out.extend(secret.string_data.unwrap_or_default());
    }
    out
}

/// Runs one Job's worker container to completion; the exit code and the stderr tail.
async fn run_container(
    job: &Job,
    secrets: &Api<Secret>,
    bin_dir: &Path,
    scratch: &Path,
) -> (Option<i32>, String) {
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template");
    let container = &pod.containers[0];
    let command = container.command.clone().unwrap_or_default();
    let mut args = container.args.clone().unwrap_or_default();
    if let Some(i) = args.iter().position(|a| a == "--spill-dir") {
        args[i + 1] = scratch.display().to_string();
    }
    let mut cmd = tokio::process::Command::new(local_binary(&command[0], bin_dir));
    cmd.args(&command[1..]).args(&args);
    cmd.envs(env_from_secrets(secrets, container).await);
    for e in container.env.iter().flatten() {
        if let Some(v) = &e.value {
            cmd.env(&e.name, v);
        }
    }
    cmd.env("TMPDIR", scratch);
    cmd.stdout(std::process::Stdio::null());
    cmd.stderr(std::process::Stdio::piped());
    match cmd.output().await {
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            (
                out.status.code(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            )
        }
        Err(e) => (None, format!("cannot start {}: {e}", command[0])),
    }
}

/// The status patch the Job controller writes when the worker exited with `exit_code`:
/// `Complete` on 0; else `Failed` with reason `PodFailurePolicy` for the bad-input exit code
/// (the Job's pod failure policy) and `BackoffLimitExceeded` otherwise, and `message`.
pub fn finished_status(exit_code: Option<i32>, message: &str) -> serde_json::Value {
    if exit_code == Some(0) {
        return serde_json::json!({"status": {"active": 0, "succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True"}]}});
    }
    let reason = if exit_code == Some(EXIT_BAD_INPUT) {
        "PodFailurePolicy"
    } else {
        "BackoffLimitExceeded"
    };
    serde_json::json!({"status": {"active": 0, "failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": reason, "message": message}]}})
}

/// Runs the Jobs of `namespace` as local processes until the task is aborted. Binaries come
/// from `bin_dir`; each Job gets its own scratch directory under `scratch`.
pub async fn run_jobs(client: kube::Client, namespace: String, bin_dir: PathBuf, scratch: PathBuf) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let mut events = watcher::watcher(jobs.clone(), watcher::Config::default()).boxed();
    let mut started = std::collections::HashSet::new();
    while let Some(Ok(event)) = events.next().await {
        let (watcher::Event::Apply(job) | watcher::Event::InitApply(job)) = event else {
            continue;
        };
        let name = job.metadata.name.clone().unwrap_or_default();
        if job.status.as_ref().is_some_and(|s| s.conditions.is_some())
            || !started.insert(name.clone())
        {
            continue;
        }
        let jobs = jobs.clone();
        let secrets = secrets.clone();
        let bin_dir = bin_dir.clone();
        let dir = scratch.join(&name);
        tokio::spawn(async move {
            std::fs::create_dir_all(&dir).expect("scratch directory");
            let _ = jobs
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&serde_json::json!({"status": {"active": 1}})),
                )
                .await;
            let (code, stderr) = run_container(&job, &secrets, &bin_dir, &dir).await;
            let status = finished_status(code, &stderr);
            jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("Job status");
        });
    }
}
