//! The Kubernetes backend: the shared control loop ([`crate::control`]) on the
//! API server.
//!
//! - [`job`]: one `batch/v1` Job per subtask attempt (pure builder, status reader);
//! - [`lease`]: Lease-based leader election (pure decision, thin acting loop);
//! - [`metrics`]: the Prometheus metrics, registered once;
//! - [`operator`]: the `minion-operator run` process (metrics/health port, election, loop);
//! - [`backend`]: [`KubeBackend`], the control loop's [`crate::control::Backend`] on `kube::Api`;
//! - [`cache`]: watch-fed caches (kube-runtime `watcher`) that serve the backend's reads and
//!   wake the loop when a Job, TaskRun, config or Table changes; `watches` keeps one per kind
//!   and scope;
//! - [`rbac`]: the RBAC rules the calls above need (the chart's rules are generated from it);
//! - [`WriteGate`]: whether this replica may write; `secrets`: the Tables' storage Secrets;
//!
//! What it may touch: the `minion.dev` resources (status only through the status
//! subresource), Jobs it owns (and lists their Pods), Events, its Lease, and the Secrets Tables name (read
//! only). Subtask pods never call the API.

pub mod backend;
pub mod cache;
mod gate;
pub mod job;
pub mod lease;
pub mod metrics;
pub mod operator;
pub mod rbac;
mod secrets;
pub mod stuck;
mod watches;

pub use backend::{FIELD_MANAGER, KubeBackend};
pub use gate::WriteGate;
pub use job::{JobError, WorkerDefaults};
pub use watches::Watches;
