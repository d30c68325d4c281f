//! The minion segment processing engine: what each subtask Job runs.
//!
//! [`run_subtask`] executes one [`SubtaskSpec`]: it reads input segments (or files) from
//! object storage as streams of Arrow batches, filters, rounds, reduces (concat, dedup,
//! rollup), partitions, sorts and splits them under a memory budget — spilling sorted runs
//! to local disk when needed — writes Parquet segments under the spec's staging prefix and a
//! [`ResultManifest`] next to them. A spec of kind `Validity` computes upsert validity
//! instead (the first phase of a SegmentRefresh run): the refresh generator plans from the
//! validity files it writes. The `minion-worker` binary wraps [`run_subtask`].
//!
//! The worker needs only object-store access; it never talks to Kubernetes.

pub mod alloc;
pub mod error;
pub mod fault;
pub mod ingest;
pub mod ledger;
pub mod partition;
pub mod plan;
pub mod reduce;
pub mod run;
pub mod scan;
pub mod sketch;
pub(crate) mod skip;
pub mod sort;
pub mod spilldir;
pub mod store;
pub mod stream;
pub mod table;
pub mod time;
pub mod transform;
pub mod upsert;
pub mod write;

pub use alloc::keep_freed_memory;
pub use error::WorkerError;
pub use fault::Fault;
pub use minion_common::{predicate, shutdown_signal};
pub use minion_contract::{ResultManifest, SubtaskSpec};
pub use run::{RunOptions, RunReport, run_subtask, run_subtask_report};
pub use upsert::{
    SegmentValidity, Validity, compute_validity, compute_validity_in, read_validity,
    read_validity_in,
};

/// Reads a subtask spec from any supported URI.
///
/// # Errors
/// `BadSpec` when it is not a valid spec, store errors when it cannot be read.
pub async fn read_spec(uri: &str) -> Result<SubtaskSpec, WorkerError> {
    let (location, path) = store::resolve_file(uri)?;
    let bytes = location.get_bytes(&path).await.map_err(|e| match e {
        minion_store::StoreError::NotFound { .. } => {
            WorkerError::BadSpec(format!("spec {uri} not found"))
        }
        other => other.into(),
    })?;
    let spec: SubtaskSpec = serde_json::from_slice(&bytes)
        .map_err(|e| WorkerError::BadSpec(format!("spec {uri}: {e}")))?;
    if spec.api_version != minion_contract::CONTRACT_VERSION {
        return Err(WorkerError::BadSpec(format!(
            "spec {uri}: apiVersion {:?}, expected {:?}",
            spec.api_version,
            minion_contract::CONTRACT_VERSION
        )));
    }
    Ok(spec)
}
