//! Task-level vocabulary shared by resources, plans and subtask specs: task types, merge
//! types and aggregation types, with the names Pinot users write.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a task does and how it commits (see docs/semantics.md in the project).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum TaskType {
    RealtimeToOfflineSegmentsTask,
    SegmentImportTask,
    MergeRollupTask,
    SegmentRefreshTask,
    FileIngestionTask,
    SegmentBackfillTask,
    PurgeTask,
    DeltaIngestionTask,
}

impl TaskType {
    pub const ALL: [TaskType; 8] = [
        TaskType::RealtimeToOfflineSegmentsTask,
        TaskType::SegmentImportTask,
        TaskType::MergeRollupTask,
        TaskType::SegmentRefreshTask,
        TaskType::FileIngestionTask,
        TaskType::SegmentBackfillTask,
        TaskType::PurgeTask,
        TaskType::DeltaIngestionTask,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::RealtimeToOfflineSegmentsTask => "RealtimeToOfflineSegmentsTask",
            TaskType::SegmentImportTask => "SegmentImportTask",
            TaskType::MergeRollupTask => "MergeRollupTask",
            TaskType::SegmentRefreshTask => "SegmentRefreshTask",
            TaskType::FileIngestionTask => "FileIngestionTask",
            TaskType::SegmentBackfillTask => "SegmentBackfillTask",
            TaskType::PurgeTask => "PurgeTask",
            TaskType::DeltaIngestionTask => "DeltaIngestionTask",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How rows of a bucket or window are reduced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MergeType {
    /// Keep every row.
    #[default]
    Concat,
    /// Group by all non-metric columns (after rounding) and aggregate the metrics.
    Rollup,
    /// Collapse rows identical in every column.
    Dedup,
}

/// Aggregation of one metric under rollup. Nulls are skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AggregationType {
    #[default]
    Sum,
    Min,
    Max,
    /// Number of non-null values (a rollup of counts sums them).
    Count,
    /// The value of the row with the smallest time.
    FirstWithTime,
    /// The value of the row with the largest time.
    LastWithTime,
    /// BYTES metric: an Apache DataSketches theta sketch (compact, serialization version 3);
    /// rollup unions the sketches. Parameter `nominalEntries`.
    DistinctCountThetaSketch,
    /// BYTES metric: an Apache DataSketches HLL sketch (HLL_8); rollup unions them.
    /// Parameter `lgK`.
    #[serde(rename = "distinctCountHLL")]
    DistinctCountHll,
    /// Pinot's HyperLogLogPlus name, written as a DataSketches HLL sketch like
    /// `distinctCountHLL`. Parameter `lgK`.
    #[serde(rename = "distinctCountHLLPlus")]
    DistinctCountHllPlus,
    /// BYTES metric: an Apache DataSketches CPC sketch; rollup unions them. Parameter `lgK`.
    #[serde(rename = "distinctCountCPCSketch")]
    DistinctCountCpcSketch,
    /// BYTES metric: an Apache DataSketches t-digest of doubles; rollup merges them.
    /// Parameter `compression`.
    PercentileTDigest,
    /// BYTES metric: an Apache DataSketches KLL sketch of doubles; rollup merges them.
    /// Parameter `k`.
    #[serde(rename = "percentileKLL")]
    PercentileKll,
    /// BYTES metric: a (sum, count) pair as Pinot's `AvgPair` writes it (16 bytes, big
    /// endian: the f64 sum, then the i64 count); rollup adds both.
    Avg,
}

impl AggregationType {
    /// Whether the metric holds bytes (a sketch or an average pair) rather than a number.
    pub fn is_bytes(self) -> bool {
        matches!(
            self,
            AggregationType::DistinctCountThetaSketch
                | AggregationType::DistinctCountHll
                | AggregationType::DistinctCountHllPlus
                | AggregationType::DistinctCountCpcSketch
                | AggregationType::PercentileTDigest
                | AggregationType::PercentileKll
                | AggregationType::Avg
        )
    }

    /// The name users write (`distinctCountHLL`).
    pub fn name(self) -> &'static str {
        match self {
            AggregationType::Sum => "sum",
            AggregationType::Min => "min",
            AggregationType::Max => "max",
            AggregationType::Count => "count",
            AggregationType::FirstWithTime => "firstWithTime",
            AggregationType::LastWithTime => "lastWithTime",
            AggregationType::DistinctCountThetaSketch => "distinctCountThetaSketch",
            AggregationType::DistinctCountHll => "distinctCountHLL",
            AggregationType::DistinctCountHllPlus => "distinctCountHLLPlus",
            AggregationType::DistinctCountCpcSketch => "distinctCountCPCSketch",
            AggregationType::PercentileTDigest => "percentileTDigest",
            AggregationType::PercentileKll => "percentileKLL",
            AggregationType::Avg => "avg",
        }
    }
}

/// Input file formats for file ingestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Parquet,
    Csv,
    Json,
}
