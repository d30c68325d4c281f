//! minion-operator: plans, runs and atomically commits data-lifecycle tasks (moving
//! REALTIME data to OFFLINE tables, merging and rolling up segments, compacting upserts,
//! ingesting files) over tables kept as Parquet segments in a Delta log.
//!
//! Layout (docs/architecture.md, "Crates and layers"):
//! - [`api`]: the `Table`, `MinionTaskConfig` and `TaskRun` resource types (CRDs);
//! - [`validate`]: raw specs → [`model`] types, with errors naming the field;
//! - [`model`]: the validated, typed forms of tables and task configs;
//! - [`schedule`]: Quartz and crontab expressions, next fire times, what is due (pure);
//! - [`clock`]: the one injected wall clock;
//! - [`lineage`]: the lineage state machine (pure);
//! - [`catalog`]: the table catalog over `deltalake` and the atomic segment replacement;
//! - [`commit_gate`]: what a worker's result manifest must prove before it is committed;
//! - [`generator`]: one pure planner per task type;
//! - [`control`]: the backend-agnostic control loop (scheduling, TaskRun lifecycle);
//! - [`local`]: the local backend (state directory, worker child processes);
//! - [`k8s`]: the Kubernetes backend, subtask Jobs, leader election, metrics;
//! - [`storage`]: object-store URIs, credentials and the stores behind them;
//! - [`inspect`]: reading a table's segments and rows back (`minion query`, checks);
//! - [`demo`]: the self-checking `minion demo`;
//! - [`cli`]: the `minion` CLI's subcommands.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod commit_gate;
pub mod control;
pub mod demo;
pub mod generator;
pub mod inspect;
pub mod k8s;
pub mod lineage;
pub mod local;
pub mod model;
pub mod schedule;
pub mod storage;
pub mod validate;
