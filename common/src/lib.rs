//! What the operator and the worker share beyond the subtask contract (`minion-contract`),
//! without the worker's processing engine, so the operator links none of it:
//! - [`schema`]: a table's schema as Arrow types;
//! - [`predicate`]: the row-predicate language — the operator parses and combines user
//!   predicates (validation, planning), the worker evaluates them over batches;
//! - [`shutdown_signal`]: SIGTERM or SIGINT, for both processes.

pub mod predicate;
pub mod schema;
mod signal;

pub use signal::shutdown_signal;
