//! The time column: reading it as raw integers in its declared unit, window bounds in that
//! unit, rounding written back in the column's own type, and conversion to epoch ms.
//!
//! TIMESTAMP columns are microseconds; INT/LONG columns use the schema's `timeUnit`.

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::Int64Type;
use arrow_schema::{DataType, Schema};
use minion_contract::{ColumnType, TableSchema, TimeUnit, TimeWindow};

use crate::error::{Result, WorkerError};

/// Where the time column is and how to read it.
#[derive(Clone, Debug)]
pub struct TimeColumn {
    pub index: usize,
    pub unit: TimeUnit,
    pub data_type: DataType,
}

impl TimeColumn {
    /// # Errors
    /// [`WorkerError::BadSpec`] if the time column is missing or not INT, LONG or TIMESTAMP.
    pub fn new(table: &TableSchema, arrow: &Schema) -> Result<Self> {
        let col = table.time().ok_or_else(|| {
            WorkerError::BadSpec(format!(
                "time column {:?} is not a column of the schema",
                table.time_column
            ))
        })?;
        if !matches!(
            col.data_type,
            ColumnType::Int | ColumnType::Long | ColumnType::Timestamp
        ) {
            return Err(WorkerError::BadSpec(format!(
                "time column {:?} has type {:?}; expected INT, LONG or TIMESTAMP",
                col.name, col.data_type
            )));
        }
        let index = arrow.index_of(&col.name).map_err(WorkerError::internal)?;
        Ok(TimeColumn {
            index,
            unit: table.effective_time_unit(),
            data_type: arrow.field(index).data_type().clone(),
        })
    }

    /// The time values as Int64 in the column's unit (nulls kept).
    pub fn raw(&self, column: &ArrayRef) -> Result<Int64Array> {
        let as_i64 = if column.data_type() == &DataType::Int64 {
            column.clone()
        } else {
            cast(column, &DataType::Int64)?
        };
        Ok(as_i64.as_primitive::<Int64Type>().clone())
    }

    /// Converts raw Int64 values back to the column's type.
    pub fn to_column(&self, raw: Int64Array) -> Result<ArrayRef> {
        let raw: ArrayRef = std::sync::Arc::new(raw);
        if self.data_type == DataType::Int64 {
            Ok(raw)
        } else {
            Ok(cast(&raw, &self.data_type)?)
        }
    }

    /// The window `[start, end)` as a half-open range of raw values.
    pub fn window_bounds(&self, w: &TimeWindow) -> (i64, i64) {
        (
            self.unit.from_millis_ceil(w.start_ms),
            self.unit.from_millis_ceil(w.end_ms),
        )
    }

    /// Epoch milliseconds of a raw value.
    pub fn to_ms(&self, raw: i64) -> i64 {
        self.unit.to_millis(raw)
    }

    /// `floor(t ÷ round) × round` computed in milliseconds and written back in the unit.
    pub fn round(&self, raw: &Int64Array, round_ms: i64) -> Int64Array {
        let unit = self.unit;
        raw.unary(|t| {
            let ms = unit.to_millis(t);
            unit.from_millis_floor(ms.div_euclid(round_ms) * round_ms)
        })
    }
}

/// Minimum and maximum of the non-null values of `raw`.
pub fn min_max(raw: &Int64Array) -> Option<(i64, i64)> {
    Some((arrow::compute::min(raw)?, arrow::compute::max(raw)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(unit: TimeUnit) -> TimeColumn {
        TimeColumn {
            index: 0,
            unit,
            data_type: DataType::Int64,
        }
    }

    #[test]
    fn window_bounds_follow_the_unit() {
        let w = TimeWindow::new(10_500, 20_000);
        assert_eq!(col(TimeUnit::Seconds).window_bounds(&w), (11, 20));
        assert_eq!(
            col(TimeUnit::Milliseconds).window_bounds(&w),
            (10_500, 20_000)
        );
        assert_eq!(
            col(TimeUnit::Microseconds).window_bounds(&w),
            (10_500_000, 20_000_000)
        );
    }

    #[test]
    fn rounding_is_written_back_in_the_unit() {
        let hour = 3_600_000;
        let raw = Int64Array::from(vec![Some(3_700), Some(-1), None]);
        let r = col(TimeUnit::Seconds).round(&raw, hour);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![Some(3_600), Some(-3_600), None]
        );
        let raw = Int64Array::from(vec![3_700_000_123]);
        let r = col(TimeUnit::Microseconds).round(&raw, hour);
        assert_eq!(r.value(0), 3_600_000_000);
    }
}
