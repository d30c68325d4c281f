//! The `Table` resource: a named table whose data are Parquet segments under a URI, with its
//! schema; status summarises the committed catalog and the lineage entries in flight.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use minion_contract::TableSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use crate::lineage::LineageEntry;

/// Lineage entries kept in `status.lineage`: every IN_PROGRESS entry (at most one per running
/// subtask, themselves bounded by runs × `parallelism`) plus at most this many ended
/// (COMPLETED or REVERTED) entries, newest first. Older ended entries are only counted in
/// `status.lineageEndedTotal`.
pub const MAX_ENDED_LINEAGE_ENTRIES: usize = crate::lineage::DEFAULT_HISTORY_LIMIT;

/// REALTIME tables are appended to by stream writers and `push`; OFFLINE tables are written
/// by tasks and batch pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TableType {
    Realtime,
    Offline,
}

/// Reference to a Secret in the Table's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub name: String,
}

/// A table of Parquet segments kept in a Delta log at `uri`.
// kube's `printcolumn(...)` repeats `type_ = "…"`, which clippy takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "minion.dev",
    version = "v1alpha1",
    kind = "Table",
    namespaced,
    status = "TableStatus",
    shortname = "tbl",
    category = "minion",
    derive = "PartialEq",
    doc = "A table of Parquet segments under a URI, committed through a Delta log.",
    printcolumn(name = "TYPE", type_ = "string", json_path = ".spec.tableType"),
    printcolumn(name = "SEGMENTS", type_ = "integer", json_path = ".status.segments"),
    printcolumn(name = "ROWS", type_ = "integer", json_path = ".status.rows"),
    printcolumn(name = "MIN TIME", type_ = "string", json_path = ".status.minTime"),
    printcolumn(name = "MAX TIME", type_ = "string", json_path = ".status.maxTime"),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableSpec {
    /// REALTIME or OFFLINE.
    pub table_type: TableType,
    /// Table root: `file:///…`, `s3://bucket/prefix`, `s3a://…`, `gs://…`, `az://…`,
    /// `abfs://…` or `memory:///…`.
    pub uri: String,
    /// Columns, their roles, the time column and upsert/partitioning/sorting settings.
    pub schema: TableSchema,
    /// Secret (in the Table's namespace) holding the object-store credentials; it must carry
    /// the label `minion.dev/storage-credentials: "true"`. Used for this Table only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_secret_ref: Option<SecretRef>,
    /// How long replaced segments stay on storage for readers of older snapshots (period,
    /// e.g. `4h`). Default 4h, and 24h for upsert tables (a primary key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_segment_retention: Option<String>,
    /// Data retention (period, e.g. `7d`; Pinot's retentionTimeValue/Unit): housekeeping
    /// removes, in one commit, the segments whose data all lies before `now − period` —
    /// except those a RealtimeToOffline or SegmentImport config reading this table (not
    /// suspended) has not moved yet; then the Table is `Degraded`
    /// (`RetentionBlockedByImport`, naming the config and its lag). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_time_period: Option<String>,
    /// Whether the operator creates an empty Delta table at `uri` when there is none. Default:
    /// true for OFFLINE tables, false for REALTIME tables, whose writer creates them (a wrong
    /// `uri` then shows as `Ready=False/TableNotFound`, not as an empty table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<bool>,
    /// Whether clean-up may delete files other writers put under `uri` (unreferenced, or
    /// replaced past the retention). Default false: only files the operator wrote (under
    /// `data/`) are deleted, so a stream writer's files not committed yet are never lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_up_foreign_files: Option<bool>,
}

/// Summary of the committed catalog and the lineage entries in flight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Committed (visible) segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<u64>,
    /// Rows in committed segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Bytes of committed segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Smallest time-column value of committed segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub min_time: Option<DateTime<Utc>>,
    /// Largest time-column value of committed segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub max_time: Option<DateTime<Utc>>,
    /// Delta log version the summary was read at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_version: Option<i64>,
    /// Lineage entries: all IN_PROGRESS ones and the newest ended ones (see
    /// `MAX_ENDED_LINEAGE_ENTRIES`, 20). Ended entries keep counts in place of their path lists;
    /// a live entry with more than 100 paths (or the largest ones, while all together pass
    /// 2,000) keeps counts and `listsRef`, its lists stored beside the table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<LineageEntry>,
    /// Lineage entries ended (COMPLETED or REVERTED) since the table was created, including
    /// those dropped from `lineage`.
    #[serde(default)]
    pub lineage_ended_total: u64,
    /// Segments past `retentionTimePeriod` kept because an importer has not moved them yet
    /// (the metric `minion_table_retention_blocked_segments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_blocked_segments: Option<u64>,
    /// For hybrid queries: rows older than this are read from the OFFLINE table, newer ones
    /// from the REALTIME table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_date_time_schema")]
    pub time_boundary: Option<DateTime<Utc>>,
}
