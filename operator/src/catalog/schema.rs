//! Our column types as Delta and Arrow types (pure).
//!
//! The Arrow side is the worker's own (`minion_common::schema`); the Delta side must match it:
//!
//! | Table schema | Delta       | Arrow                          |
//! |--------------|-------------|--------------------------------|
//! | `INT`        | `integer`   | `Int32`                        |
//! | `LONG`       | `long`      | `Int64`                        |
//! | `FLOAT`      | `float`     | `Float32`                      |
//! | `DOUBLE`     | `double`    | `Float64`                      |
//! | `BOOLEAN`    | `boolean`   | `Boolean`                      |
//! | `STRING`     | `string`    | `Utf8`                         |
//! | `BYTES`      | `binary`    | `Binary`                       |
//! | `TIMESTAMP`  | `timestamp` | `Timestamp(Microsecond, "UTC")`|
//!
//! Nullability is per column. Tables are unpartitioned in Delta terms (our partitions are tags).

use deltalake::kernel::{DataType, PrimitiveType, StructField, StructType};
use minion_contract::{ColumnType, TableSchema};

/// The Delta type of a column type.
pub fn delta_type(t: ColumnType) -> DataType {
    DataType::Primitive(match t {
        ColumnType::Int => PrimitiveType::Integer,
        ColumnType::Long => PrimitiveType::Long,
        ColumnType::Float => PrimitiveType::Float,
        ColumnType::Double => PrimitiveType::Double,
        ColumnType::Boolean => PrimitiveType::Boolean,
        ColumnType::String => PrimitiveType::String,
        ColumnType::Bytes => PrimitiveType::Binary,
        ColumnType::Timestamp => PrimitiveType::Timestamp,
    })
}

/// The Arrow type of a column and a table's Arrow schema: the worker's, from `minion-common`,
/// so the mapping cannot drift.
pub use minion_common::schema::{arrow_schema, arrow_type};

/// The Delta fields of a table, in column order.
pub fn delta_fields(schema: &TableSchema) -> Vec<StructField> {
    schema
        .columns
        .iter()
        .map(|c| StructField::new(&c.name, delta_type(c.data_type), c.nullable))
        .collect()
}

/// The first difference between an existing Delta schema and a Table's schema, as
/// `(column, what differs)`; `None` when they agree.
pub fn schema_difference(existing: &StructType, schema: &TableSchema) -> Option<(String, String)> {
    for column in &schema.columns {
        let expected = delta_type(column.data_type);
        let Some(field) = existing.field(&column.name) else {
            return Some((
                column.name.clone(),
                "missing from the existing Delta table".to_string(),
            ));
        };
        if field.data_type() != &expected {
            return Some((
                column.name.clone(),
                format!(
                    "the existing Delta table has type {}, the Table schema says {}",
                    type_name(field.data_type()),
                    type_name(&expected)
                ),
            ));
        }
        if field.is_nullable() != column.nullable {
            return Some((
                column.name.clone(),
                format!(
                    "the existing Delta table has nullable={}, the Table schema says nullable={}",
                    field.is_nullable(),
                    column.nullable
                ),
            ));
        }
    }
    existing
        .fields()
        .find(|f| schema.column(f.name()).is_none())
        .map(|f| {
            (
                f.name().clone(),
                "exists in the Delta table but not in the Table schema".to_string(),
            )
        })
}

fn type_name(t: &DataType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType as ArrowType, TimeUnit as ArrowUnit};
    use minion_contract::{Column, ColumnRole, TimeUnit};

    fn col(name: &str, data_type: ColumnType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            data_type,
            role: ColumnRole::Dimension,
            nullable,
        }
    }

    fn schema(columns: Vec<Column>) -> TableSchema {
        TableSchema {
            columns,
            time_column: "ts".into(),
            time_unit: TimeUnit::Milliseconds,
            time_format: None,
            primary_key: vec![],
            comparison_column: None,
            partitioning: None,
            sorted_column: None,
            bloom_filter_columns: vec![],
        }
    }

    #[test]
    fn every_column_type_maps_to_the_agreed_delta_and_arrow_types() {
        let cases = [
            (ColumnType::Int, "integer", ArrowType::Int32),
            (ColumnType::Long, "long", ArrowType::Int64),
            (ColumnType::Float, "float", ArrowType::Float32),
            (ColumnType::Double, "double", ArrowType::Float64),
            (ColumnType::Boolean, "boolean", ArrowType::Boolean),
            (ColumnType::String, "string", ArrowType::Utf8),
            (ColumnType::Bytes, "binary", ArrowType::Binary),
            (
                ColumnType::Timestamp,
                "timestamp",
                ArrowType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into())),
            ),
        ];
        for (t, delta, arrow) in cases {
            assert_eq!(type_name(&delta_type(t)), delta, "{t:?}");
            assert_eq!(arrow_type(t), arrow, "{t:?}");
        }
    }

    #[test]
    fn arrow_schema_keeps_column_order_and_nullability() {
        let s = arrow_schema(&schema(vec![
            col("ts", ColumnType::Long, false),
            col("country", ColumnType::String, true),
        ]));
        assert_eq!(s.field(0).name(), "ts");
        assert!(!s.field(0).is_nullable());
        assert!(s.field(1).is_nullable());
    }

    #[test]
    fn schema_difference_names_the_column_that_differs() {
        let ours = schema(vec![
            col("ts", ColumnType::Long, false),
            col("clicks", ColumnType::Long, true),
        ]);
        let same = StructType::try_new(delta_fields(&ours)).unwrap();
        assert_eq!(schema_difference(&same, &ours), None);

        let other = schema(vec![
            col("ts", ColumnType::Long, false),
            col("clicks", ColumnType::Int, true),
        ]);
        let existing = StructType::try_new(delta_fields(&other)).unwrap();
        let (column, detail) = schema_difference(&existing, &ours).unwrap();
        assert_eq!(column, "clicks");
        assert!(
            detail.contains("integer") && detail.contains("long"),
            "{detail}"
        );

        let nullable = schema(vec![
            col("ts", ColumnType::Long, true),
            col("clicks", ColumnType::Long, true),
        ]);
        let existing = StructType::try_new(delta_fields(&nullable)).unwrap();
        assert_eq!(schema_difference(&existing, &ours).unwrap().0, "ts");

        let extra = schema(vec![
            col("ts", ColumnType::Long, false),
            col("clicks", ColumnType::Long, true),
            col("user", ColumnType::String, true),
        ]);
        let existing = StructType::try_new(delta_fields(&extra)).unwrap();
        assert_eq!(schema_difference(&existing, &ours).unwrap().0, "user");
    }
}
