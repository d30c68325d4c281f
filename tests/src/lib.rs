//! End-to-end tests of minion-operator, and their fixtures.
//!
//! - [`fake_api`]: an in-process fake of the Kubernetes API server for the `KubeBackend` tests.
//! - [`fixtures`]: the workspace's binaries, the `minion` CLI, a filled REALTIME table.

pub mod fake_api;
pub mod fixtures;
