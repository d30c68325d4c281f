//! The time column: reading it as raw integers in its declared format, window bounds in that
//! form, rounding written back in the column's own type, and conversion to axis milliseconds.
//!
//! TIMESTAMP columns are microseconds; INT/LONG epoch columns count the schema's unit × size;
//! date strings (and all-digit dates in INT/LONG) are read as their axis milliseconds.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::Int64Type;
use arrow_schema::{DataType, Schema};
use minion_contract::{DatePattern, TableSchema, TimeFormat, TimeWindow};

use crate::error::{Result, WorkerError};

/// Where the time column is and how to read it.
///
/// Its *raw* values are Int64: epoch values as stored, TIMESTAMPs in microseconds, date
/// strings as their axis milliseconds (see [`minion_contract::time_format`]). Windows, rounding
/// and order are computed on raw values; [`TimeColumn::to_column`] writes them back.
#[derive(Clone, Debug)]
pub struct TimeColumn {
    pub index: usize,
    pub format: TimeFormat,
    pub data_type: DataType,
    pub name: String,
}

impl TimeColumn {
    /// # Errors
    /// [`WorkerError::BadSpec`] if the time column is missing or its type cannot hold its
    /// format.
    pub fn new(table: &TableSchema, arrow: &Schema) -> Result<Self> {
        table.check_time_column().map_err(WorkerError::BadSpec)?;
        let index = arrow
            .index_of(&table.time_column)
            .map_err(WorkerError::internal)?;
        Ok(TimeColumn {
            index,
            format: table.time_format(),
            data_type: arrow.field(index).data_type().clone(),
            name: table.time_column.clone(),
        })
    }

    /// A stand-in for scans that filter no window (input files, upsert keys).
    pub fn unused() -> Self {
        TimeColumn {
            index: 0,
            format: TimeFormat::default(),
            data_type: DataType::Int64,
            name: String::new(),
        }
    }

    /// The time values as raw Int64 (nulls kept).
    ///
    /// # Errors
    /// [`WorkerError::BadSpec`] naming the value when a date string does not match its
    /// pattern.
    pub fn raw(&self, column: &ArrayRef) -> Result<Int64Array> {
        if let TimeFormat::SimpleDate(p) = &self.format {
            return self.parse_dates(p, column);
        }
        let as_i64 = if column.data_type() == &DataType::Int64 {
            column.clone()
        } else {
            cast(column, &DataType::Int64)?
        };
        Ok(as_i64.as_primitive::<Int64Type>().clone())
    }

    fn parse_dates(&self, p: &DatePattern, column: &ArrayRef) -> Result<Int64Array> {
        let bad = |e: String| {
            WorkerError::BadSpec(format!(
                "time column {:?}: {e}; fix the value or the table's timeFormat",
                self.name
            ))
        };
        if matches!(
            column.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            let strings = cast(column, &DataType::Utf8)?;
            let strings = strings.as_string::<i32>();
            let mut out = Vec::with_capacity(strings.len());
            for v in strings.iter() {
                out.push(v.map(|s| p.parse(s)).transpose().map_err(bad)?);
            }
            return Ok(Int64Array::from(out));
        }
        let ints = cast(column, &DataType::Int64)?;
        let mut out = Vec::with_capacity(ints.len());
        for v in ints.as_primitive::<Int64Type>().iter() {
            out.push(v.map(|n| p.parse_integer(n)).transpose().map_err(bad)?);
        }
        Ok(Int64Array::from(out))
    }

    /// Converts raw Int64 values back to the column's type.
    ///
    /// # Errors
    /// [`WorkerError::BadSpec`] when a date falls outside the years a pattern can write.
    pub fn to_column(&self, raw: Int64Array) -> Result<ArrayRef> {
        if let TimeFormat::SimpleDate(p) = &self.format {
            let unwritable = |ms: i64| {
                WorkerError::BadSpec(format!(
                    "time column {:?}: axis time {ms} cannot be written in the pattern {:?}",
                    self.name,
                    p.pattern()
                ))
            };
            let column: ArrayRef = if p.is_numeric() && !matches!(self.data_type, DataType::Utf8) {
                let mut out = Vec::with_capacity(raw.len());
                for v in raw.iter() {
                    out.push(
                        v.map(|ms| p.format_integer(ms).ok_or_else(|| unwritable(ms)))
                            .transpose()?,
                    );
                }
                Arc::new(Int64Array::from(out))
            } else {
                let mut out = Vec::with_capacity(raw.len());
                for v in raw.iter() {
                    out.push(
                        v.map(|ms| p.format(ms).ok_or_else(|| unwritable(ms)))
                            .transpose()?,
                    );
                }
                Arc::new(StringArray::from(out))
            };
            return if column.data_type() == &self.data_type {
                Ok(column)
            } else {
                Ok(cast(&column, &self.data_type)?)
            };
        }
        let raw: ArrayRef = Arc::new(raw);
        if self.data_type == DataType::Int64 {
            Ok(raw)
        } else {
            Ok(cast(&raw, &self.data_type)?)
        }
    }

    /// The window `[start, end)` as a half-open range of raw values.
    pub fn window_bounds(&self, w: &TimeWindow) -> (i64, i64) {
        (
            self.format.from_millis_ceil(w.start_ms),
            self.format.from_millis_ceil(w.end_ms),
        )
    }

    /// Axis milliseconds of a raw value.
    pub fn to_ms(&self, raw: i64) -> i64 {
        self.format.to_millis(raw)
    }

    /// `floor(t ÷ round) × round` computed on the axis and written back as a raw value. For a
    /// date pattern the axis is the column's own calendar, so a date never moves to another.
    pub fn round(&self, raw: &Int64Array, round_ms: i64) -> Int64Array {
        let format = &self.format;
        raw.unary(|t| {
            let ms = format.to_millis(t);
            format.from_millis_floor(ms.div_euclid(round_ms) * round_ms)
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

    use minion_contract::TimeUnit;

    fn col(unit: TimeUnit) -> TimeColumn {
        TimeColumn {
            index: 0,
            format: TimeFormat::Epoch { unit, size: 1 },
            data_type: DataType::Int64,
            name: "ts".into(),
        }
    }

    fn date_col(format: &str, data_type: DataType) -> TimeColumn {
        TimeColumn {
            index: 0,
            format: TimeFormat::parse(format).unwrap(),
            data_type,
            name: "day".into(),
        }
    }

    #[test]
    fn a_date_column_rounds_in_its_own_calendar() {
        // The classic bug: 20240101 in Los Angeles is 08:00Z; rounding 08:00Z down to the UTC
        // day and writing it back in the zone gives 20231231. On the axis it stays 20240101.
        let day = 86_400_000;
        for dt in [DataType::Utf8, DataType::Int32] {
            let c = date_col(
                "SIMPLE_DATE_FORMAT|yyyyMMdd|America/Los_Angeles",
                dt.clone(),
            );
            let values: ArrayRef = if dt == DataType::Utf8 {
                Arc::new(StringArray::from(vec![
                    Some("20240101"),
                    None,
                    Some("20240229"),
                ]))
            } else {
                Arc::new(arrow::array::Int32Array::from(vec![
                    Some(20240101),
                    None,
                    Some(20240229),
                ]))
            };
            let raw = c.raw(&values).unwrap();
            let back = c.to_column(c.round(&raw, day)).unwrap();
            assert_eq!(back.as_ref(), values.as_ref());
            let w = TimeWindow::new(1_704_067_200_000, 1_704_067_200_000 + day);
            assert_eq!(c.window_bounds(&w), (w.start_ms, w.end_ms));
            assert_eq!(raw.value(0), w.start_ms);
        }
        let c = date_col(
            "1:SECONDS:SIMPLE_DATE_FORMAT:yyyy-MM-dd HH:mm:ss",
            DataType::Utf8,
        );
        let values: ArrayRef = Arc::new(StringArray::from(vec!["2024-03-10 02:47:13"]));
        let hour = c.round(&c.raw(&values).unwrap(), 3_600_000);
        let out = c.to_column(hour).unwrap();
        assert_eq!(out.as_string::<i32>().value(0), "2024-03-10 02:00:00");
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["2024-03-10T02:47:13"]));
        let err = c.raw(&bad).unwrap_err().to_string();
        assert!(
            err.contains("\"day\"") && err.contains("expected \" \""),
            "{err}"
        );
    }

    #[test]
    fn epoch_sizes_bound_windows_and_round() {
        let c = TimeColumn {
            index: 0,
            format: TimeFormat::parse("5:MINUTES:EPOCH").unwrap(),
            data_type: DataType::Int64,
            name: "ts".into(),
        };
        let w = TimeWindow::new(3_600_000, 7_200_000);
        assert_eq!(c.window_bounds(&w), (12, 24));
        let raw = Int64Array::from(vec![13, 23, -1]);
        let r = c.round(&raw, 3_600_000);
        assert_eq!(r.values().to_vec(), vec![12, 12, -12]);
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
