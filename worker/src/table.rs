//! The table schema as Arrow sees it, and coercion of what an input file holds to it.
//!
//! The Arrow types match the catalog's Delta schema exactly (INT→Int32, LONG→Int64,
//! FLOAT→Float32, DOUBLE→Float64, BOOLEAN→Boolean, STRING→Utf8, BYTES→Binary,
//! TIMESTAMP→Timestamp(µs, "UTC")). Segments are coerced strictly (only lossless widening and
//! encoding changes); ingested files leniently (any Arrow cast, failing on values that do not
//! convert).

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use arrow_schema::{DataType, Schema, SchemaRef};
pub use minion_common::schema::{arrow_schema, arrow_type};

use crate::error::{Result, WorkerError};

/// How strictly input types are matched to the table's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoerceMode {
    /// Segments: only lossless widening and encoding changes.
    Strict,
    /// Ingested files: any Arrow cast; values that do not convert fail the file.
    Lenient,
}

/// A plan turning batches with an input schema into batches with the table's schema.
#[derive(Clone, Debug)]
pub struct Coercion {
    target: SchemaRef,
    /// For each target column, its index in the input, if present.
    sources: Vec<Option<usize>>,
    file: String,
}

impl Coercion {
    /// Plans the coercion of `input` to `target`.
    ///
    /// # Errors
    /// [`WorkerError::SchemaMismatch`] naming the file and column when a non-nullable column
    /// is missing or a column's type cannot be converted.
    pub fn plan(input: &Schema, target: SchemaRef, mode: CoerceMode, file: &str) -> Result<Self> {
        let mut sources = Vec::with_capacity(target.fields().len());
        for field in target.fields() {
            match input.index_of(field.name()) {
                Ok(i) => {
                    let from = input.field(i).data_type();
                    let ok = match mode {
                        CoerceMode::Strict => strictly_compatible(from, field.data_type()),
                        CoerceMode::Lenient => can_cast_types(from, field.data_type()),
                    };
                    if !ok {
                        return Err(WorkerError::SchemaMismatch {
                            file: file.to_string(),
                            message: format!(
                                "column {:?} has type {from}, expected {}",
                                field.name(),
                                field.data_type()
                            ),
                        });
                    }
                    sources.push(Some(i));
                }
                Err(_) if field.is_nullable() => sources.push(None),
                Err(_) => {
                    return Err(WorkerError::SchemaMismatch {
                        file: file.to_string(),
                        message: format!("missing non-nullable column {:?}", field.name()),
                    });
                }
            }
        }
        Ok(Coercion {
            target,
            sources,
            file: file.to_string(),
        })
    }

    /// Names of the input columns the plan reads.
    pub fn input_columns<'a>(&self, input: &'a Schema) -> Vec<&'a str> {
        self.sources
            .iter()
            .flatten()
            .map(|&i| input.field(i).name().as_str())
            .collect()
    }

    /// Converts one batch.
    ///
    /// # Errors
    /// [`WorkerError::SchemaMismatch`] when a value does not convert or a non-nullable
    /// column holds nulls.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.sources.len());
        for (field, source) in self.target.fields().iter().zip(&self.sources) {
            let array = match source {
                Some(i) => {
                    let col = batch.column(*i);
                    if col.data_type() == field.data_type() {
                        col.clone()
                    } else {
                        cast_with_options(col, field.data_type(), &options).map_err(|e| {
                            WorkerError::SchemaMismatch {
                                file: self.file.clone(),
                                message: format!(
                                    "column {:?}: cannot convert {} to {}: {e}",
                                    field.name(),
                                    col.data_type(),
                                    field.data_type()
                                ),
                            }
                        })?
                    }
                }
                None => new_null_array(field.data_type(), batch.num_rows()),
            };
            if !field.is_nullable() && array.null_count() > 0 {
                return Err(WorkerError::SchemaMismatch {
                    file: self.file.clone(),
                    message: format!("column {:?} is not nullable but holds nulls", field.name()),
                });
            }
            columns.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.target.clone(),
            columns,
            &options,
        )?)
    }
}

/// Whether a segment column of type `from` may be read as `to` without loss.
fn strictly_compatible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to {
        return true;
    }
    match (from, to) {
        (Dictionary(_, value), _) => strictly_compatible(value, to),
        (Int8 | Int16 | UInt8 | UInt16, Int32) => true,
        (Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32, Int64) => true,
        (Float16, Float32) | (Float16 | Float32, Float64) => true,
        (LargeUtf8 | Utf8View, Utf8) => true,
        (LargeBinary | BinaryView | FixedSizeBinary(_), Binary) => true,
        (Timestamp(_, _), Timestamp(_, _)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringArray};
    use arrow_schema::Field;
    use minion_contract::{Column, ColumnRole, ColumnType, TableSchema};

    fn schema() -> TableSchema {
        TableSchema {
            columns: vec![
                Column {
                    name: "d".into(),
                    data_type: ColumnType::String,
                    role: ColumnRole::Dimension,
                    nullable: true,
                },
                Column {
                    name: "ts".into(),
                    data_type: ColumnType::Long,
                    role: ColumnRole::DateTime,
                    nullable: false,
                },
            ],
            time_column: "ts".into(),
            time_unit: Default::default(),
            time_format: None,
            primary_key: vec![],
            comparison_column: None,
            partitioning: None,
            sorted_column: None,
            bloom_filter_columns: vec![],
        }
    }

    #[test]
    fn timestamp_columns_are_utc_microseconds() {
        assert_eq!(
            arrow_type(ColumnType::Timestamp).to_string(),
            r#"Timestamp(µs, "UTC")"#
        );
    }

    #[test]
    fn missing_nullable_column_reads_as_nulls_and_int_widens() {
        let input = Schema::new(vec![Field::new("ts", DataType::Int32, false)]);
        let c = Coercion::plan(&input, arrow_schema(&schema()), CoerceMode::Strict, "f").unwrap();
        let batch = RecordBatch::try_new(
            Arc::new(input),
            vec![Arc::new(Int32Array::from(vec![1, 2]))],
        )
        .unwrap();
        let out = c.apply(&batch).unwrap();
        assert_eq!(out.column(0).null_count(), 2);
        assert_eq!(
            out.column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(1),
            2
        );
    }

    #[test]
    fn mistyped_column_is_a_schema_mismatch_naming_it() {
        let input = Schema::new(vec![Field::new("ts", DataType::Utf8, false)]);
        let err = Coercion::plan(
            &input,
            arrow_schema(&schema()),
            CoerceMode::Strict,
            "seg.parquet",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"schema mismatch in seg.parquet: column "ts" has type Utf8, expected Int64"#
        );
        let lenient = Coercion::plan(
            &input,
            arrow_schema(&schema()),
            CoerceMode::Lenient,
            "f.csv",
        )
        .unwrap();
        let batch = RecordBatch::try_new(
            Arc::new(input),
            vec![Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        assert!(
            lenient
                .apply(&batch)
                .unwrap_err()
                .to_string()
                .contains("\"ts\"")
        );
    }

    #[test]
    fn missing_non_nullable_column_is_named() {
        let input = Schema::new(vec![Field::new("d", DataType::Utf8, true)]);
        let err =
            Coercion::plan(&input, arrow_schema(&schema()), CoerceMode::Strict, "f").unwrap_err();
        assert!(
            err.to_string()
                .contains(r#"missing non-nullable column "ts""#),
            "{err}"
        );
    }
}
