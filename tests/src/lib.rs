//! End-to-end tests of minion-operator, and their fixtures.
//!
//! - [`fake_api`]: an in-process fake of the Kubernetes API server for the `KubeBackend` tests.
//! - [`fixtures`]: the workspace's binaries, the `minion` CLI, a filled REALTIME table.
//! - [`local_env`]: a local-mode environment: the import samples, a filled REALTIME table, the
//!   CLI on a state directory, totals of both tables.
//! - [`python_delta`]: another Delta writer (Python `deltalake`) writing fixture tables.
//! - [`rows`]: a table's rows as any reader sees them, as an order-independent multiset; the
//!   watermark a config committed.
//! - [`steps`]: a run driven one control-loop step at a time, a check after every step, a
//!   worker killed once, its first workers failing once.
//! - [`node`]: a node stand-in for the real control plane (`scripts/control-plane.sh`): binds
//!   Pods and runs them as local processes.
//! - [`control_plane`]: the real control plane as the `control_plane` suite uses it: kubectl,
//!   the chart installed with helm, the operator run out of cluster as a ServiceAccount.

pub mod control_plane;
pub mod fake_api;
pub mod fixtures;
pub mod local_env;
pub mod node;
pub mod python_delta;
pub mod rows;
pub mod steps;
