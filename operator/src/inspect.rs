//! Reading a table's committed rows back: `count(*)` and `sum(metric)` over the live segments
//! of a Delta listing, optionally restricted to a time window. Used by `minion demo` to prove
//! source and destination agree, and by end-to-end tests.
//!
//! Streams each segment batch by batch; holds one batch at a time.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use bytes::Bytes;
use minion_contract::{SegmentRef, TableSchema, TimeWindow};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Row count and metric sums of a set of segments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub rows: u64,
    /// Sum per metric column (integers summed exactly, then shown as f64).
    pub sums: BTreeMap<String, f64>,
    pub segments: usize,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("segment {path} of {uri}: {message}")]
    Segment {
        uri: String,
        path: String,
        message: String,
    },
}

/// Totals over `segments` of the table at `uri`, counting only rows whose time is in
/// `window` when given.
///
/// # Errors
/// A segment that cannot be read or decoded, named with its path.
pub async fn totals(
    uri: &str,
    schema: &TableSchema,
    segments: &[SegmentRef],
    window: Option<TimeWindow>,
) -> Result<Totals, InspectError> {
    let err = |path: &str, message: String| InspectError::Segment {
        uri: uri.to_string(),
        path: path.to_string(),
        message,
    };
    let table = crate::storage::resolve(uri).map_err(|e| err("", e.to_string()))?;
    let format = schema.time_format();
    let mut out = Totals::default();
    let metrics: Vec<&str> = schema.metrics().map(|c| c.name.as_str()).collect();
    let mut int_sums: BTreeMap<String, i128> = BTreeMap::new();
    for segment in segments {
        out.segments += 1;
        out.bytes += segment.bytes;
        let bytes = table
            .get_bytes(&table.child(&segment.path))
            .await
            .map_err(|e| err(&segment.path, e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .and_then(|b| b.build())
            .map_err(|e| err(&segment.path, e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| err(&segment.path, e.to_string()))?;
            let keep: Option<Vec<bool>> = match window {
                None => None,
                Some(w) => {
                    let col = batch
                        .column_by_name(&schema.time_column)
                        .ok_or_else(|| err(&segment.path, "time column missing".into()))?;
                    let in_window = |ms: Option<i64>| ms.is_some_and(|ms| w.contains(ms));
                    let mask: Vec<bool> = match col.data_type() {
                        DataType::Int64 => col
                            .as_primitive::<Int64Type>()
                            .iter()
                            .map(|v| in_window(v.and_then(|v| format.integer_to_millis(v))))
                            .collect(),
                        DataType::Int32 => col
                            .as_primitive::<Int32Type>()
                            .iter()
                            .map(|v| in_window(v.and_then(|v| format.integer_to_millis(v.into()))))
                            .collect(),
                        DataType::Utf8 => col
                            .as_string::<i32>()
                            .iter()
                            .map(|v| in_window(v.and_then(|v| format.string_to_millis(v))))
                            .collect(),
                        DataType::Timestamp(_, _) => col
                            .as_primitive::<TimestampMicrosecondType>()
                            .iter()
                            .map(|v| v.is_some_and(|v| w.contains(v.div_euclid(1000))))
                            .collect(),
                        other => {
                            return Err(err(
                                &segment.path,
                                format!("time column has type {other}"),
                            ));
                        }
                    };
                    Some(mask)
                }
            };
            let selected = |i: usize| keep.as_ref().is_none_or(|k| k[i]);
            out.rows += (0..batch.num_rows()).filter(|&i| selected(i)).count() as u64;
            for m in &metrics {
                let Some(col) = batch.column_by_name(m) else {
                    continue;
                };
                match col.data_type() {
                    DataType::Int64 => {
                        let a = col.as_primitive::<Int64Type>();
                        let s: i128 = (0..a.len())
                            .filter(|&i| selected(i) && a.is_valid(i))
                            .map(|i| i128::from(a.value(i)))
                            .sum();
                        *int_sums.entry(m.to_string()).or_default() += s;
                    }
                    DataType::Int32 => {
                        let a = col.as_primitive::<Int32Type>();
                        let s: i128 = (0..a.len())
                            .filter(|&i| selected(i) && a.is_valid(i))
                            .map(|i| i128::from(a.value(i)))
                            .sum();
                        *int_sums.entry(m.to_string()).or_default() += s;
                    }
                    DataType::Float64 => {
                        let a = col.as_primitive::<Float64Type>();
                        let s: f64 = (0..a.len())
                            .filter(|&i| selected(i) && a.is_valid(i))
                            .map(|i| a.value(i))
                            .sum();
                        *out.sums.entry(m.to_string()).or_default() += s;
                    }
                    _ => {}
                }
            }
        }
    }
    for (m, s) in int_sums {
        out.sums.insert(m, s as f64);
    }
    Ok(out)
}

/// Whether two sums agree up to floating-point summation order.
pub fn sums_match(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}
