//! The Kubernetes backend (issue 5): the shared control loop ([`crate::control`]) on the
//! API server.
//!
//! - [`job`]: one `batch/v1` Job per subtask attempt (pure builder, status reader);
//!
//! What it may touch: the `minion.dev` resources (status only through the status
//! subresource), Jobs and Pods it owns, Events, its Lease, and the Secrets Tables name (read
//! only). Subtask pods never call the API.

pub mod job;

pub use job::{JobError, WorkerDefaults};
