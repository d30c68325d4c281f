//! End-to-end tests of minion-operator, and their fixtures.
//!
//! - [`fake_api`]: an in-process fake of the Kubernetes API server for the `KubeBackend` tests.

pub mod fake_api;
