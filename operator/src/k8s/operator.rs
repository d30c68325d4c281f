//! `minion-operator run`: the operator process (docs/kubernetes.md, "Runtime contract").
//!
//! One port serves `/metrics` (Prometheus text), `/livez` and `/readyz`. Leader election
//! (optional) publishes a flag that gates every backend write; only the leader ticks the
//! control loop. Ticks follow `minion local up`: step until every run waits, then sleep.
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

use super::backend::{KubeBackend, WriteGate};
use super::job::{JobError, WorkerDefaults};
use super::lease::{LeaderElector, LeaseConfig};
use super::metrics::Metrics;
use crate::control::{Backend, Clock, Controller, ControllerOptions, SystemClock};

/// How the process runs.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Watched namespaces; empty: all.
    pub namespaces: Vec<String>,
    pub metrics_addr: SocketAddr,
    /// `None`: leader election off (a single replica).
    pub lease: Option<LeaseConfig>,
    pub worker_defaults: PathBuf,
    pub poll_interval: Duration,
    /// Names this replica in Events (the pod name).
    pub instance: Option<String>,
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
    run_with_client(client, options, minion_worker::shutdown_signal()).await
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
    let backend = Arc::new(KubeBackend::new(
        client,
        options.namespaces.clone(),
        defaults,
        options.instance.clone(),
        WriteGate::new(leader.clone()),
    ));
    tracing::info!(namespaces = ?options.namespaces, metrics = %options.metrics_addr, leader_election = options.lease.is_some(), "minion-operator started");
    let work = control_loop(
        backend,
        clock,
        leader,
        metrics,
        probe,
        options.poll_interval,
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

async fn control_loop(
    backend: Arc<KubeBackend>,
    clock: Arc<dyn Clock>,
    leader: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    probe: Arc<Probe>,
    poll: Duration,
) {
    let mut controller = Controller::new(
        backend.clone(),
        clock,
        ControllerOptions {
            max_steps: None,
            poll_interval: poll,
        },
    );
    loop {
        let leads = leader.load(Ordering::SeqCst);
        metrics.set_leader(leads);
        let mut stepped = false;
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
                        metrics.schedule_missed(&m.table, &m.task_type, m.count);
                    }
                    stepped = report.steps > 0;
                }
                Err(e) => {
                    metrics.reconciled(false, 1, start.elapsed());
                    tracing::warn!(reason = e.reason(), error = %e, "tick failed");
                }
            }
        }
        // Gauges follow status whether or not this replica leads; a follower is ready once
        // it can read the resources (it just does not schedule or commit).
        if let (Ok(configs), Ok(runs)) = (
            backend.list_task_configs().await,
            backend.list_task_runs().await,
        ) {
            probe.ready.store(true, Ordering::SeqCst);
            metrics.observe(&configs, &runs);
        }
        if !stepped {
            tokio::time::sleep(poll).await;
        }
    }
}
