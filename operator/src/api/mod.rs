//! Resource types (CRDs) of group `minion.dev`, version `v1alpha1`: [`Table`],
//! [`MinionTaskConfig`] and [`TaskRun`], their status types and conditions, the generated
//! `CustomResourceDefinition`s ([`crds`]) and a multi-document manifest reader
//! ([`parse_manifests`]).
//!
//! These are the raw shapes users write; `crate::validate` turns them into `crate::model`
//! types. Nothing here talks to a cluster.

pub mod admission;
pub mod condition;
mod manifest;
pub mod table;
pub mod task_config;
pub mod task_run;
pub mod tasks;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::{Schema, SchemaGenerator, json_schema};

pub use condition::{Condition, ConditionStatus, set_condition};
pub use manifest::{ManifestError, parse_manifests};
pub use table::{SecretRef, Table, TableSpec, TableStatus, TableType};
pub use task_config::{
    ConcurrencyPolicy, DelayStatus, MinionTaskConfig, MinionTaskConfigSpec, MinionTaskConfigStatus,
    MissedRunPolicy, RunResult, WatermarkStatus, WorkerPodSpec, WorkerResources, WorkerToleration,
};
pub use task_run::{
    MAX_SKIPPED_SEGMENTS_SHOWN, PlannedUnit, SkippedSegmentStatus, SubtaskState, SubtaskStatus,
    TaskRun, TaskRunPhase, TaskRunSpec, TaskRunStatus, ValidityStatus,
};
pub use tasks::{
    DeltaIngestionTaskSpec, FileIngestionMode, FileIngestionTaskSpec, MergeLevelSpec,
    MergeRollupMode, MergeRollupTaskSpec, PurgeTaskSpec, RealtimeToOfflineSegmentsTaskSpec,
    SegmentBackfillTaskSpec, SegmentImportTaskSpec, SegmentRefreshTaskSpec, TaskBlocks, block_key,
};

pub const GROUP: &str = "minion.dev";
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every resource of this crate.
pub const API_VERSION: &str = "minion.dev/v1alpha1";

/// Any of the three resource kinds, as read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Table(Table),
    MinionTaskConfig(MinionTaskConfig),
    TaskRun(TaskRun),
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Table(_) => "Table",
            Resource::MinionTaskConfig(_) => "MinionTaskConfig",
            Resource::TaskRun(_) => "TaskRun",
        }
    }

    pub fn metadata(&self) -> &kube::api::ObjectMeta {
        match self {
            Resource::Table(r) => &r.metadata,
            Resource::MinionTaskConfig(r) => &r.metadata,
            Resource::TaskRun(r) => &r.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// `metadata.namespace`, if the manifest sets one.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
}

/// The three CRDs, in the order `tables`, `miniontaskconfigs`, `taskruns`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![Table::crd(), MinionTaskConfig::crd(), TaskRun::crd()];
    crds.iter_mut().for_each(admission::add_rules);
    crds
}

/// The CRDs as `(file name, YAML)` pairs, e.g. `("tables.minion.dev.yaml", …)`: what
/// `minion-operator crds --out DIR` writes and what the staleness test compares.
///
/// # Errors
/// Serialization failure (not expected for these types).
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("crd"));
            serde_yaml::to_string(&crd).map(|yaml| (name, yaml))
        })
        .collect()
}

/// Schema of a `DateTime<Utc>` (RFC3339 string) field.
pub(crate) fn date_time_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time" })
}

/// Schema of an `Option<DateTime<Utc>>` field.
pub(crate) fn optional_date_time_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time", "nullable": true })
}

/// Schema of a list of `DateTime<Utc>`.
pub(crate) fn date_time_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": { "type": "string", "format": "date-time" } })
}

/// Schema of a field accepting an integer or a string (times as epoch ms or RFC3339).
pub(crate) fn int_or_string_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-int-or-string": true })
}
