//! `minion-operator run`: the operator process (docs/kubernetes.md, "Runtime contract").
//!
//! One port serves `/metrics` (Prometheus text), `/livez` and `/readyz`. Leader election
//! (optional) publishes a flag that gates every backend write; only the leader ticks the
//! control loop. Ticks follow `minion local up`: step until every run waits, then wait for
//! a change. The backend reads from watch-fed caches ([`super::cache`]); a change to a
//! watched Job, TaskRun, MinionTaskConfig or Table wakes the loop at once, and otherwise it
//! ticks at the next schedule fire time or after `poll_interval` (the resync period, which
//! also bounds how late a run's own deadline is noticed), whichever comes first.
//!
//! What it may touch: the API server (through [`KubeBackend`] and the Lease), object
//! storage (through the control loop), the metrics port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::backend::KubeBackend;
use super::gate::WriteGate;
use super::job::{JobError, WorkerDefaults};
use super::lease::{LeaderElector, LeaseConfig};
use super::metrics::Metrics;
use crate::clock::{Clock, SystemClock};
use crate::control::{Backend, Controller, ControllerOptions};

/// How the process runs.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Watched namespaces; empty: all.
    pub namespaces: Vec<String>,
    pub metrics_addr: SocketAddr,
    /// `None`: leader election off (a single replica).
    pub lease: Option<LeaseConfig>,
    pub worker_defaults: PathBuf,
    /// Longest pause between ticks when nothing changes (resync period).
    pub poll_interval: Duration,
    /// Names this replica in Events (the pod name).
    pub instance: Option<String>,
    /// URI prefixes Tables and task inputs must lie under (`--allowed-uri-prefixes`); empty:
    /// any.
    pub allowed_uri_prefixes: Vec<String>,
    /// How long a subtask's Job may take to start its worker before the attempt fails with
    /// the cause (`--pod-start-timeout`).
    pub pod_start_timeout: Duration,
    /// Hold runs with the finalizer that reverts a deleted run (`--finalizers`); `None`: only
    /// when every namespace is watched.
    pub finalizers: Option<bool>,
}

/// Why the operator stopped. `reason()` is stable.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no Kubernetes client configuration: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Defaults(#[from] JobError),
    #[error("metrics address {addr}: {message}")]
    Listen { addr: SocketAddr, message: String },
}

impl OperatorError {
    pub fn reason(&self) -> &'static str {
        match self {
            OperatorError::Client(_) => "NoClientConfig",
            OperatorError::Defaults(e) => e.reason(),
            OperatorError::Listen { .. } => "MetricsPortUnavailable",
        }
    }
}

struct Probe {
    metrics: Arc<Metrics>,
    ready: AtomicBool,
}

fn respond(probe: &Probe, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (code, body, ctype) = match req.uri().path() {
        "/metrics" => (
            200,
            probe.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/livez" => (200, "ok\n".into(), "text/plain"),
        "/readyz" if probe.ready.load(Ordering::SeqCst) => (200, "ok\n".into(), "text/plain"),
        "/readyz" => (503, "not ready\n".into(), "text/plain"),
        _ => (404, "not found\n".into(), "text/plain"),
    };
    Response::builder()
        .status(code)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

/// Serves `/metrics`, `/livez` and `/readyz` on `listener` until the task is dropped.
async fn serve(listener: tokio::net::TcpListener, probe: Arc<Probe>) {
    while let Ok((stream, _)) = listener.accept().await {
        let probe = probe.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let r = respond(&probe, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs the operator until SIGTERM/SIGINT.
///
/// # Errors
/// No client configuration, unreadable worker defaults, or the metrics port is taken.
pub async fn run(options: OperatorOptions) -> Result<(), OperatorError> {
    let client = kube::Client::try_default()
        .await
        .map_err(OperatorError::Client)?;
    run_with_client(client, options, minion_common::shutdown_signal()).await
}

/// [`run`] with a given client, stopping when `stop` completes (tests).
///
/// # Errors
/// As [`run`].
pub async fn run_with_client(
    client: kube::Client,
    options: OperatorOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), OperatorError> {
    let defaults = WorkerDefaults::load(&options.worker_defaults)?;
    let metrics = Arc::new(Metrics::new());
    let probe = Arc::new(Probe {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind(options.metrics_addr)
        .await
        .map_err(|e| OperatorError::Listen {
            addr: options.metrics_addr,
            message: e.to_string(),
        })?;
    let server = tokio::spawn(serve(listener, probe.clone()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (leader, elector) = match &options.lease {
        Some(cfg) => {
            let elector = LeaderElector::new(client.clone(), cfg.clone(), clock.clone());
            let flag = elector.flag();
            (flag, Some(tokio::spawn(elector.run())))
        }
        None => (Arc::new(AtomicBool::new(true)), None),
    };
    let (backend, watches) = KubeBackend::new(
        client,
        options.namespaces.clone(),
        defaults,
        options.instance.clone(),
        WriteGate::new(leader.clone()),
    )
    .with_pod_start_timeout(options.pod_start_timeout)
    .with_run_finalizers(options.finalizers.unwrap_or(options.namespaces.is_empty()))
    .with_watches();
    let backend = Arc::new(backend);
    tracing::info!(namespaces = ?options.namespaces, metrics = %options.metrics_addr, leader_election = options.lease.is_some(), "minion-operator started");
    // Ticks read from the caches; before they are filled every read would go to the API.
    let sync_deadline = Instant::now() + SYNC_TIMEOUT;
    while !backend.is_synced() && Instant::now() < sync_deadline {
        watches.changed_within(Duration::from_millis(100)).await;
    }
    if backend.is_synced() {
        tracing::info!("caches synced");
    } else {
        tracing::warn!(
            timeout_s = SYNC_TIMEOUT.as_secs(),
            "caches not synced yet; reading from the API server meanwhile"
        );
    }
    let work = control_loop(
        backend,
        &watches,
        clock,
        leader,
        metrics,
        probe,
        ControllerOptions {
            poll_interval: options.poll_interval,
            allowed_uri_prefixes: options.allowed_uri_prefixes.clone(),
            ..ControllerOptions::default()
        },
    );
    tokio::select! {
        () = work => {}
        () = stop => tracing::info!("shutting down"),
    }
    server.abort();
    if let Some(e) = elector {
        e.abort();
    }
    Ok(())
}

/// How long an idle leader may wait: until the earliest schedule fire time of an unsuspended
/// config, at most `poll`, at least a few milliseconds (a fire time already due is handled
/// by the tick that follows).
fn idle_wait(
    configs: &[crate::api::MinionTaskConfig],
    now: chrono::DateTime<chrono::Utc>,
    poll: Duration,
) -> Duration {
    configs
        .iter()
        .filter(|c| !c.spec.suspend)
        .filter_map(|c| c.status.as_ref()?.next_schedule_time)
        .map(|at| (at - now).to_std().unwrap_or_default())
        .min()
        .map_or(poll, |d| d.min(poll))
        .max(MIN_WAIT)
}

/// How long the loop waits for the watches' first lists before ticking anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest pause between idle ticks.
const MIN_WAIT: Duration = Duration::from_millis(20);
/// How often a follower checks whether it became the leader.
const FOLLOWER_WAIT: Duration = Duration::from_secs(1);

async fn control_loop(
    backend: Arc<KubeBackend>,
    watches: &super::watches::Watches,
    clock: Arc<dyn Clock>,
    leader: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    probe: Arc<Probe>,
    options: ControllerOptions,
) {
    let poll = options.poll_interval;
    let mut controller = Controller::new(backend.clone(), clock.clone(), options);
    loop {
        let leads = leader.load(Ordering::SeqCst);
        metrics.set_leader(leads);
        let mut stepped = false;
        let mut collect_soon = false;
        if leads {
            let start = Instant::now();
            match controller.tick().await {
                Ok(report) => {
                    probe.ready.store(true, Ordering::SeqCst);
                    metrics.reconciled(true, report.errors.len(), start.elapsed());
                    for line in &report.log {
                        let (run, what) = line.split_once(": ").unwrap_or(("", line));
                        tracing::info!(task_run = run, "{what}");
                    }
                    for e in &report.errors {
                        tracing::warn!(error = %e, "reconcile failed; retried next tick");
                    }
                    for m in &report.missed {
                        metrics.schedule_missed(m);
                    }
                    stepped = report.steps > 0;
                    collect_soon = report.collect_soon;
                }
                Err(e) => {
                    metrics.reconciled(false, 1, start.elapsed());
                    tracing::warn!(reason = e.reason(), error = %e, "tick failed");
                }
            }
        }
        // Gauges follow status whether or not this replica leads; a follower is ready once
        // it can read the resources (it just does not schedule or commit).
        let mut wait = if leads { poll } else { FOLLOWER_WAIT.min(poll) };
        if let (Ok(configs), Ok(runs)) = (
            backend.list_task_configs().await,
            backend.list_task_runs().await,
        ) {
            probe.ready.store(true, Ordering::SeqCst);
            metrics.observe(&configs, &runs);
            if let Ok(tables) = backend.list_tables().await {
                metrics.observe_tables(&tables);
            }
            if leads {
                wait = idle_wait(&configs, clock.now(), poll);
            }
        }
        if collect_soon {
            let delay = crate::control::taskrun::COLLECT_DELAY_MS as u64;
            wait = wait.min(Duration::from_millis(delay));
        }
        if !stepped {
            watches.changed_within(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MinionTaskConfig, MinionTaskConfigStatus};
    use chrono::{TimeZone, Utc};

    fn config(next_in_s: Option<i64>, suspend: bool) -> MinionTaskConfig {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let yaml = format!(
            "apiVersion: minion.dev/v1alpha1\nkind: MinionTaskConfig\nmetadata: {{name: c, namespace: ns}}\n\
             spec: {{table: t, taskType: SegmentImportTask, schedule: '* * * * *', suspend: {suspend}}}\n"
        );
        let mut c: MinionTaskConfig = serde_yaml::from_str(&yaml).unwrap();
        c.status = Some(MinionTaskConfigStatus {
            next_schedule_time: next_in_s.map(|s| now + chrono::Duration::seconds(s)),
            ..Default::default()
        });
        c
    }

    #[test]
    fn an_idle_leader_wakes_for_the_earliest_unsuspended_schedule_within_the_resync_period() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let poll = Duration::from_secs(30);
        assert_eq!(idle_wait(&[], now, poll), poll);
        let configs = [
            config(Some(12), false),
            config(Some(5), true),
            config(None, false),
        ];
        assert_eq!(idle_wait(&configs, now, poll), Duration::from_secs(12));
        assert_eq!(idle_wait(&[config(Some(90), false)], now, poll), poll);
        assert_eq!(idle_wait(&[config(Some(-5), false)], now, poll), MIN_WAIT);
    }
}
