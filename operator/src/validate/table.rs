//! Validation of a `Table`: URI scheme, schema consistency (time column, key, partitioning,
//! sorting and bloom-filter columns), retention.

use std::collections::HashSet;

use minion_contract::{ColumnRole, ColumnType, TableSchema};

use super::{Collector, Invalid, ResourceId, ValidationErrors, check_uri};
use crate::api::{Table, TableType};
use crate::model::{self, TableDef, defaults};

/// Validates a `Table` into a [`TableDef`].
///
/// # Errors
/// Every problem found, each naming the field (e.g. `spec.schema.timeColumn`).
pub fn table(t: &Table) -> Result<TableDef, ValidationErrors> {
    let mut c = Collector::new(ResourceId::of("Table", &t.metadata));
    let spec = &t.spec;
    c.check("spec.uri", check_uri(&spec.uri));
    check_schema(&mut c, "spec.schema", &spec.schema);
    // Readers of an upsert table hold older snapshots longer (refreshes replace whole segments).
    let default_retention = if spec.schema.is_upsert() {
        defaults::REFRESH_RETENTION_MS
    } else {
        defaults::APPEND_RETENTION_MS
    };
    let retention_ms = c.period(
        "spec.replacedSegmentRetention",
        spec.replaced_segment_retention.as_deref(),
        default_retention,
    );
    let data_retention_ms = spec.retention_time_period.as_deref().and_then(|v| {
        c.check(
            "spec.retentionTimePeriod",
            super::units::parse_positive_period(v),
        )
    });
    let storage_secret = spec.storage_secret_ref.as_ref().map(|r| r.name.clone());
    if storage_secret.as_deref() == Some("") {
        c.missing(
            "spec.storageSecretRef.name",
            "name a Secret in the Table's namespace",
        );
    }
    let def = TableDef {
        namespace: c.resource().namespace.clone(),
        name: c.resource().name.clone(),
        table_type: match spec.table_type {
            TableType::Realtime => model::TableType::Realtime,
            TableType::Offline => model::TableType::Offline,
        },
        uri: spec.uri.trim_end_matches('/').to_string(),
        schema: spec.schema.clone(),
        storage_secret,
        retention_ms,
        data_retention_ms,
        create: spec.create.unwrap_or(spec.table_type == TableType::Offline),
        clean_up_foreign_files: spec.clean_up_foreign_files.unwrap_or(false),
    };
    c.finish(def)
}

/// How two Tables' locations overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriOverlap {
    /// Both point at the same location.
    Same,
    /// The first lies inside the second.
    Inside,
    /// The second lies inside the first.
    Contains,
}

/// A table URI compared by location: no trailing slash, `s3a://` as `s3://`.
fn location(uri: &str) -> String {
    let uri = uri.trim_end_matches('/');
    match uri.strip_prefix("s3a://") {
        Some(rest) => format!("s3://{rest}"),
        None => uri.to_string(),
    }
}

/// Whether the Table at `a` and the Table at `b` overlap: the same location, or one inside
/// the other (one Table's clean-up and commits would reach the other's files).
pub fn uri_overlap(a: &str, b: &str) -> Option<UriOverlap> {
    let (a, b) = (location(a), location(b));
    let inside = |x: &str, y: &str| x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    if a == b {
        Some(UriOverlap::Same)
    } else if inside(&a, &b) {
        Some(UriOverlap::Inside)
    } else if inside(&b, &a) {
        Some(UriOverlap::Contains)
    } else {
        None
    }
}

/// The message of a Table refused because its `spec.uri` overlaps `other`'s.
pub fn overlap_message(
    table: (&str, &str, &str),
    other: (&str, &str, &str),
    how: UriOverlap,
) -> String {
    let (ns, name, uri) = table;
    let (other_ns, other_name, other_uri) = other;
    let relation = match how {
        UriOverlap::Same => "is the location of",
        UriOverlap::Inside => "lies inside",
        UriOverlap::Contains => "contains",
    };
    format!(
        "Table {ns}/{name}: spec.uri {uri} {relation} Table {other_ns}/{other_name} ({other_uri}); \
         each Table needs a location of its own, not nested in another's: change spec.uri"
    )
}

pub(super) fn type_name(t: ColumnType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

pub(super) fn role_name(r: ColumnRole) -> &'static str {
    match r {
        ColumnRole::Dimension => "dimension",
        ColumnRole::Metric => "metric",
        ColumnRole::DateTime => "dateTime",
    }
}

pub(super) fn column_list(schema: &TableSchema) -> String {
    schema
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_schema(c: &mut Collector, at: &str, schema: &TableSchema) {
    let table = c.resource().name.clone();
    let mut seen = HashSet::new();
    for (i, col) in schema.columns.iter().enumerate() {
        let field = format!("{at}.columns[{i}].name");
        if col.name.trim().is_empty() {
            c.missing(&field, "give every column a name");
        } else if !seen.insert(col.name.as_str()) {
            c.push(
                field,
                Invalid::Duplicate {
                    value: col.name.clone(),
                },
            );
        }
        // BYTES metrics hold sketches or average pairs (their aggregation type says which).
        let numeric = matches!(
            col.data_type,
            ColumnType::Int
                | ColumnType::Long
                | ColumnType::Float
                | ColumnType::Double
                | ColumnType::Bytes
        );
        if col.role == ColumnRole::Metric && !numeric {
            c.push(
                format!("{at}.columns[{i}].dataType"),
                Invalid::WrongColumnType {
                    value: col.name.clone(),
                    data_type: type_name(col.data_type),
                    expected: "metric columns must be INT, LONG, FLOAT, DOUBLE or BYTES (a sketch)"
                        .into(),
                },
            );
        }
    }
    if schema.columns.is_empty() {
        c.missing(
            &format!("{at}.columns"),
            "list the table's columns (name, dataType, role)",
        );
    }

    let unknown = |value: &str| Invalid::UnknownColumn {
        value: value.to_string(),
        table: table.clone(),
        columns: column_list(schema),
    };
    let time_field = format!("{at}.timeColumn");
    match schema.time() {
        None => c.push(time_field, unknown(&schema.time_column)),
        Some(col) => {
            if col.role != ColumnRole::DateTime {
                c.push(
                    time_field.clone(),
                    Invalid::WrongColumnRole {
                        value: col.name.clone(),
                        table: table.clone(),
                        role: role_name(col.role).into(),
                        expected: "the time column must have role dateTime".into(),
                    },
                );
            }
            if let Some(needs) = schema.time_type_mismatch() {
                c.push(
                    time_field,
                    Invalid::WrongColumnType {
                        value: col.name.clone(),
                        data_type: type_name(col.data_type),
                        expected: format!("the time column's {}", needs.trim_start_matches("its ")),
                    },
                );
            } else if let Err(message) = schema.check_time_column() {
                c.push(format!("{at}.timeFormat"), Invalid::TimeFormat { message });
            }
        }
    }

    let mut must_exist = |field: String, name: &str| {
        if schema.column(name).is_none() {
            c.push(field, unknown(name));
        }
    };
    for (i, key) in schema.primary_key.iter().enumerate() {
        must_exist(format!("{at}.primaryKey[{i}]"), key);
    }
    if let Some(col) = &schema.comparison_column {
        must_exist(format!("{at}.comparisonColumn"), col);
    }
    if let Some(col) = &schema.sorted_column {
        must_exist(format!("{at}.sortedColumn"), col);
    }
    for (i, col) in schema.bloom_filter_columns.iter().enumerate() {
        must_exist(format!("{at}.bloomFilterColumns[{i}]"), col);
    }
    if let Some(p) = &schema.partitioning {
        must_exist(format!("{at}.partitioning.column"), &p.column);
        if p.num_partitions == 0 {
            c.push(
                format!("{at}.partitioning.numPartitions"),
                Invalid::OutOfRange {
                    value: "0".into(),
                    allowed: "use 1 or more".into(),
                },
            );
        }
    }
    if schema.comparison_column.is_some() && schema.primary_key.is_empty() {
        c.push(
            format!("{at}.comparisonColumn"),
            Invalid::NotAllowed {
                detail: "a comparison column needs a primaryKey (upsert table)".into(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_locations_are_found_whatever_the_trailing_slash_or_s3a() {
        assert_eq!(
            uri_overlap("s3://lake/events/", "s3a://lake/events"),
            Some(UriOverlap::Same)
        );
        assert_eq!(
            uri_overlap("s3://lake/events/offline", "s3://lake/events"),
            Some(UriOverlap::Inside)
        );
        assert_eq!(
            uri_overlap("s3://lake/events", "s3://lake/events/offline"),
            Some(UriOverlap::Contains)
        );
        assert_eq!(uri_overlap("s3://lake/events", "s3://lake/events2"), None);
        assert_eq!(uri_overlap("file:///a/b", "s3://a/b"), None);
    }
}
