//! The logical schema of a table: columns, their roles, the time column and its unit,
//! upsert keys, partitioning and sort order.
//!
//! This is what a user writes under `Table.spec.schema` and what every subtask spec carries,
//! so the worker and the operator agree on it without the worker reading any Kubernetes
//! object. It touches nothing; it only describes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::time_format::{DatePattern, TimeFormat, TimeUnit};

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
    /// Unit of an integer time column; ignored for `TIMESTAMP` columns. `timeFormat` says
    /// more (a size, date strings) and replaces it.
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// The time column's format as Pinot's `dateTimeFieldSpecs` write it, in either spelling:
    /// `EPOCH|MINUTES|5` or `5:MINUTES:EPOCH`, `SIMPLE_DATE_FORMAT|yyyyMMdd|America/Los_Angeles`
    /// or `1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd tz(America/Los_Angeles)`, `TIMESTAMP`.
    // Kept as written; `check_time_column` parses it when the Table is applied, so a bad
    // value is a condition on the Table, not an unreadable resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_format: Option<String>,
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

    /// How values of the time column map onto the time axis: `timeFormat`, else `TIMESTAMP`
    /// for a TIMESTAMP column, else epoch values in `timeUnit`.
    /// A `timeFormat` that does not parse reads as the default here; every path from a
    /// user's resource runs [`TableSchema::check_time_column`] first.
    pub fn time_format(&self) -> TimeFormat {
        self.parse_time_format().unwrap_or_default()
    }

    fn parse_time_format(&self) -> Result<TimeFormat, String> {
        match (&self.time_format, self.time().map(|c| c.data_type)) {
            (Some(f), _) => TimeFormat::parse(f),
            (None, Some(ColumnType::Timestamp)) => Ok(TimeFormat::Timestamp),
            (None, _) => Ok(TimeFormat::Epoch {
                unit: self.time_unit,
                size: 1,
            }),
        }
    }

    /// Whether the time column's type can hold its format.
    ///
    /// # Errors
    /// A sentence naming the column, its type, the format and the fix.
    pub fn check_time_column(&self) -> Result<(), String> {
        let Some(col) = self.time() else {
            return Err(format!(
                "timeColumn {:?} is not one of the columns",
                self.time_column
            ));
        };
        if self.time_format.is_some() && self.time_unit != TimeUnit::default() {
            return Err(
                "timeUnit and timeFormat are both set; keep timeFormat (it says the unit)"
                    .to_string(),
            );
        }
        self.parse_time_format()?;
        match self.time_type_mismatch() {
            None => Ok(()),
            Some(needs) => Err(format!(
                "time column {:?} has type {:?} but {needs}",
                col.name, col.data_type
            )),
        }
    }

    /// `Some("its format … needs …")` when the time column's type cannot hold its format (a
    /// format that does not parse is not judged here).
    pub fn time_type_mismatch(&self) -> Option<String> {
        let col = self.time()?;
        let format = self.parse_time_format().ok()?;
        let fits = match (&format, col.data_type) {
            (TimeFormat::Epoch { .. }, ColumnType::Int | ColumnType::Long) => true,
            (TimeFormat::Timestamp, ColumnType::Timestamp) => true,
            (TimeFormat::SimpleDate(_), ColumnType::String) => true,
            (TimeFormat::SimpleDate(p), ColumnType::Int | ColumnType::Long) => p.is_numeric(),
            _ => false,
        };
        if fits {
            return None;
        }
        let expected = match &format {
            TimeFormat::Epoch { .. } => "INT or LONG",
            TimeFormat::Timestamp => "TIMESTAMP",
            TimeFormat::SimpleDate(p) if p.is_numeric() => "STRING, INT or LONG",
            TimeFormat::SimpleDate(_) => {
                "STRING (only an all-digit pattern such as yyyyMMdd fits INT or LONG)"
            }
        };
        let written = match &self.time_format {
            Some(_) => format!("its timeFormat {format}"),
            None => format!("its timeUnit {}", self.time_unit.name()),
        };
        Some(format!("{written} needs {expected}"))
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
    fn schema_rejects_unknown_keys() {
        let err = serde_json::from_str::<TableSchema>(
            r#"{"columns":[],"timeColumn":"ts","timeUnits":"SECONDS"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("timeUnits"), "{err}");
    }
}
