//! A table's schema in Arrow terms: the type each column type is read and written as.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit as ArrowTimeUnit};
use minion_contract::{ColumnType, TableSchema};

/// The Arrow type of a column type.
pub fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::Int => DataType::Int32,
        ColumnType::Long => DataType::Int64,
        ColumnType::Float => DataType::Float32,
        ColumnType::Double => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::String => DataType::Utf8,
        ColumnType::Bytes => DataType::Binary,
        ColumnType::Timestamp => {
            DataType::Timestamp(ArrowTimeUnit::Microsecond, Some(Arc::from("UTC")))
        }
    }
}

/// The Arrow schema of a table, columns in schema order.
pub fn arrow_schema(schema: &TableSchema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.data_type), c.nullable))
            .collect::<Vec<_>>(),
    ))
}
