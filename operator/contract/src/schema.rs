//! The logical schema of a table: columns, their roles, the time column and its unit,
//! upsert keys, partitioning and sort order.
//!
//! This is what a user writes under `Table.spec.schema` and what every subtask spec carries,
//! so the worker and the operator agree on it without the worker reading any Kubernetes
//! object. It touches nothing; it only describes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Data type of a column, as users write it (Pinot's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ColumnType {
    Int,
    Long,
    Float,
    Double,
    Boolean,
    String,
    Bytes,
    /// Microsecond-precision UTC timestamp (Delta's `timestamp`).
    Timestamp,
}

/// What a column is for: dimensions are grouped by, metrics aggregated, the date-time column
/// windows and buckets the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ColumnRole {
    #[default]
    Dimension,
    Metric,
    DateTime,
}

/// Unit of an integer time column. A `TIMESTAMP` column is always microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeUnit {
    Seconds,
    #[default]
    Milliseconds,
    Microseconds,
}

impl TimeUnit {
    /// How many units of this kind make one millisecond, as a (numerator, denominator) pair:
    /// `value_ms = value * num / den`.
    pub fn per_millisecond(self) -> (i64, i64) {
        match self {
            TimeUnit::Seconds => (1000, 1),
            TimeUnit::Milliseconds => (1, 1),
            TimeUnit::Microseconds => (1, 1000),
        }
    }

    /// Converts a value in this unit to epoch milliseconds, rounding towards negative infinity.
    pub fn to_millis(self, value: i64) -> i64 {
        match self {
            TimeUnit::Seconds => value.saturating_mul(1000),
            TimeUnit::Milliseconds => value,
            TimeUnit::Microseconds => value.div_euclid(1000),
        }
    }

    /// The smallest value in this unit whose time is at or after `ms`.
    pub fn from_millis_ceil(self, ms: i64) -> i64 {
        match self {
            TimeUnit::Seconds => ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0),
            TimeUnit::Milliseconds => ms,
            TimeUnit::Microseconds => ms.saturating_mul(1000),
        }
    }

    /// The largest value in this unit whose time is at or before `ms`.
    pub fn from_millis_floor(self, ms: i64) -> i64 {
        match self {
            TimeUnit::Seconds => ms.div_euclid(1000),
            TimeUnit::Milliseconds => ms,
            TimeUnit::Microseconds => ms.saturating_mul(1000),
        }
    }
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Column {
    pub name: String,
    pub data_type: ColumnType,
    #[serde(default)]
    pub role: ColumnRole,
    /// Whether the column may hold nulls. Defaults to true.
    #[serde(default = "default_true")]
    pub nullable: bool,
}

fn default_true() -> bool {
    true
}

/// How rows are spread over value partitions (Pinot's `segmentPartitionConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Partitioning {
    pub column: String,
    #[serde(default)]
    pub function: PartitionFunction,
    pub num_partitions: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub enum PartitionFunction {
    /// `value mod numPartitions` of an integer column.
    Modulo,
    /// Murmur2 of the value's UTF-8 bytes (Pinot's default), masked positive, mod numPartitions.
    #[default]
    Murmur,
}

/// The schema of a table: columns and the roles that drive processing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableSchema {
    pub columns: Vec<Column>,
    /// Name of the date-time column used for windows, buckets and rounding.
    pub time_column: String,
    /// Unit of an integer time column; ignored for `TIMESTAMP` columns.
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// Primary key columns of an upsert table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// Comparison column of an upsert table: the row with the largest value wins. Defaults to
    /// the time column when a primary key is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning: Option<Partitioning>,
    /// Output segments are sorted by this column (rollup sorts by all dimensions and time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorted_column: Option<String>,
    /// Columns that get a Parquet bloom filter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bloom_filter_columns: Vec<String>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn time(&self) -> Option<&Column> {
        self.column(&self.time_column)
    }

    /// The unit values of the time column are stored in.
    pub fn effective_time_unit(&self) -> TimeUnit {
        match self.time().map(|c| c.data_type) {
            Some(ColumnType::Timestamp) => TimeUnit::Microseconds,
            _ => self.time_unit,
        }
    }

    pub fn metrics(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.role == ColumnRole::Metric)
    }

    pub fn is_upsert(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// The comparison column of an upsert table (the time column unless set).
    pub fn comparison(&self) -> &str {
        self.comparison_column
            .as_deref()
            .unwrap_or(self.time_column.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_unit_conversions_round_towards_the_window() {
        assert_eq!(TimeUnit::Seconds.to_millis(2), 2000);
        assert_eq!(TimeUnit::Microseconds.to_millis(-1), -1);
        assert_eq!(TimeUnit::Seconds.from_millis_ceil(1001), 2);
        assert_eq!(TimeUnit::Seconds.from_millis_ceil(1000), 1);
        assert_eq!(TimeUnit::Seconds.from_millis_floor(1999), 1);
        assert_eq!(TimeUnit::Microseconds.from_millis_ceil(3), 3000);
    }

    #[test]
    fn schema_rejects_unknown_keys() {
        let err = serde_json::from_str::<TableSchema>(
            r#"{"columns":[],"timeColumn":"ts","timeUnits":"SECONDS"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("timeUnits"), "{err}");
    }
}
