//! Dedup and rollup over a stream sorted by the group key: adjacent rows with equal keys are
//! collapsed (dedup keeps one, rollup aggregates the metrics). Each reduced batch is held
//! back until the next one shows whether its last group continues there; only then are the
//! two boundary rows combined, so groups spanning batches are reduced exactly once and
//! batches whose groups end at their boundary pass through without a copy.
//!
//! Aggregations are associative and commutative, which lets the same reducer pre-reduce
//! each sorted run before it is spilled (the combiner) and again after the merge:
//! - `sum`: nulls skipped; null when every value is null;
//! - `min` / `max`: nulls skipped (floats by IEEE total order);
//! - `count`: the column holds counts (one per raw event); the sum of the non-null values,
//!   0 when every value is null;
//! - `firstWithTime` / `lastWithTime`: the non-null value with the smallest / largest
//!   original (unrounded) time, ties broken by the smaller / larger value;
//! - sketches and `avg` (BYTES): the union of the group's sketches, or the sum of its
//!   (sum, count) pairs ([`crate::sketch`]).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Int64Array, PrimitiveArray, RecordBatch,
    UInt32Array,
};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{ArrowNativeTypeOp, Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_row::{OwnedRow, RowConverter, Rows};
use arrow_schema::DataType;
use minion_contract::AggregationType;

use crate::error::{Result, WorkerError};
use crate::plan::{MetricAgg, Plan};
use crate::stream::BatchTransform;

/// Reduces a key-sorted stream (dedup or rollup).
pub struct Reducer {
    plan: Arc<Plan>,
    converter: RowConverter,
    /// The last reduced batch and the key of its last row (none when group boundaries are
    /// given), held back until the next batch shows whether its last group continues.
    pending: Option<(RecordBatch, Option<OwnedRow>)>,
}

impl Reducer {
    pub fn new(plan: Arc<Plan>) -> Result<Self> {
        let fields = plan
            .sort_keys
            .iter()
            .map(|&k| arrow_row::SortField::new(plan.internal.field(k).data_type().clone()))
            .collect();
        Ok(Reducer {
            converter: RowConverter::new(fields)?,
            plan,
            pending: None,
        })
    }

    fn key_rows(&self, batch: &RecordBatch) -> Result<Rows> {
        let cols: Vec<ArrayRef> = self
            .plan
            .sort_keys
            .iter()
            .map(|&k| batch.column(k).clone())
            .collect();
        Ok(self.converter.convert_columns(&cols)?)
    }

    /// Collapses adjacent rows with equal keys within one sorted batch.
    pub fn reduce_sorted(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if batch.num_rows() <= 1 {
            return Ok(batch.clone());
        }
        let rows = self.key_rows(batch)?;
        self.reduce_rows(batch, &rows)
    }

    /// [`Self::reduce_sorted`] with the batch's keys already encoded.
    fn reduce_rows(&self, batch: &RecordBatch, rows: &Rows) -> Result<RecordBatch> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(batch.clone());
        }
        let mut starts: Vec<usize> = Vec::with_capacity(n);
        starts.push(0);
        for i in 1..n {
            if rows.row(i) != rows.row(i - 1) {
                starts.push(i);
            }
        }
        self.reduce_groups(batch, &starts)
    }

    /// Aggregates each group of rows; groups start at `starts` (ascending, the first 0).
    fn reduce_groups(&self, batch: &RecordBatch, starts: &[usize]) -> Result<RecordBatch> {
        let n = batch.num_rows();
        if starts.len() == n {
            return self.zero_null_counts(batch);
        }
        let ranges: Vec<(usize, usize)> = starts
            .iter()
            .enumerate()
            .map(|(g, &s)| (s, starts.get(g + 1).copied().unwrap_or(n)))
            .collect();
        let first = UInt32Array::from(starts.iter().map(|&s| s as u32).collect::<Vec<_>>());
        let mut out: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        for c in batch.columns() {
            out.push(take(c, &first, None)?);
        }
        for m in &self.plan.metrics {
            let times = m
                .time_index
                .map(|i| batch.column(i).as_primitive::<Int64Type>());
            let (values, chosen_times) = aggregate(batch.column(m.index), times, &ranges, m)?;
            out[m.index] = values;
            if let (Some(i), Some(t)) = (m.time_index, chosen_times) {
                out[i] = t;
            }
        }
        Ok(RecordBatch::try_new(batch.schema(), out)?)
    }
}

impl Reducer {
    /// Every row is its own group: only `count` changes (a null count is 0).
    fn zero_null_counts(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let counts =
            self.plan.metrics.iter().filter(|m| {
                m.agg == AggregationType::Count && batch.column(m.index).null_count() > 0
            });
        let mut cols: Option<Vec<ArrayRef>> = None;
        for m in counts {
            let cols = cols.get_or_insert_with(|| batch.columns().to_vec());
            let ranges: Vec<(usize, usize)> = (0..batch.num_rows()).map(|i| (i, i + 1)).collect();
            cols[m.index] = aggregate(batch.column(m.index), None, &ranges, m)?.0;
        }
        match cols {
            Some(cols) => Ok(RecordBatch::try_new(batch.schema(), cols)?),
            None => Ok(batch.clone()),
        }
    }
}

impl Reducer {
    /// Reduces the next batch of a stream whose group boundaries are known: `continues[i]`
    /// says row `i` has the same key as the row before it (for row 0, the previous batch's
    /// last row). Returns what is final so far; [`BatchTransform::finish`] returns the rest.
    pub fn apply_grouped(
        &mut self,
        batch: RecordBatch,
        continues: &[bool],
    ) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let mut starts: Vec<usize> = Vec::with_capacity(n);
        starts.push(0);
        starts.extend((1..n).filter(|&i| !continues[i]));
        let reduced = self.reduce_groups(&batch, &starts)?;
        self.settle(batch, reduced, continues[0], None)
    }

    /// Holds back `reduced` and returns the previous batch, first folding the previous
    /// batch's last group into this batch's first row when it continues there.
    fn settle(
        &mut self,
        batch: RecordBatch,
        mut reduced: RecordBatch,
        continues: bool,
        last_key: Option<OwnedRow>,
    ) -> Result<Option<RecordBatch>> {
        let Some((prev, _)) = self.pending.take() else {
            self.pending = Some((reduced, last_key));
            return Ok(None);
        };
        let p = prev.num_rows();
        if !continues {
            // The common case: no group spans the two batches, nothing is copied.
            self.pending = Some((reduced, last_key));
            return Ok(Some(prev));
        }
        // The previous batch's last group continues: fold it into this batch's first row.
        let pair = concat_batches(
            &batch.schema(),
            [&prev.slice(p - 1, 1), &reduced.slice(0, 1)],
        )?;
        let joined = self.reduce_groups(&pair, &[0])?;
        reduced = concat_batches(
            &batch.schema(),
            [&joined, &reduced.slice(1, reduced.num_rows() - 1)],
        )?;
        self.pending = Some((reduced, last_key));
        Ok((p > 1).then(|| prev.slice(0, p - 1)))
    }
}

impl BatchTransform for Reducer {
    fn apply(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let rows = self.key_rows(&batch)?;
        let reduced = self.reduce_rows(&batch, &rows)?;
        let first_key = rows.row(0);
        let last_key = rows.row(rows.num_rows() - 1).owned();
        let continues = matches!(&self.pending, Some((_, Some(k))) if k.row() == first_key);
        self.settle(batch, reduced, continues, Some(last_key))
    }

    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        Ok(self.pending.take().map(|(b, _)| b))
    }
}

fn aggregate(
    values: &ArrayRef,
    times: Option<&Int64Array>,
    ranges: &[(usize, usize)],
    m: &MetricAgg,
) -> Result<(ArrayRef, Option<ArrayRef>)> {
    if let Some(sketch) = &m.sketch {
        return Ok((sketch.merge(values, ranges)?, None));
    }
    match values.data_type() {
        DataType::Int32 => Ok(aggregate_typed(
            values.as_primitive::<Int32Type>(),
            times,
            ranges,
            m.agg,
        )),
        DataType::Int64 => Ok(aggregate_typed(
            values.as_primitive::<Int64Type>(),
            times,
            ranges,
            m.agg,
        )),
        DataType::Float32 => Ok(aggregate_typed(
            values.as_primitive::<Float32Type>(),
            times,
            ranges,
            m.agg,
        )),
        DataType::Float64 => Ok(aggregate_typed(
            values.as_primitive::<Float64Type>(),
            times,
            ranges,
            m.agg,
        )),
        other => Err(WorkerError::internal(format!("cannot aggregate {other}"))),
    }
}

fn aggregate_typed<T: ArrowPrimitiveType>(
    values: &PrimitiveArray<T>,
    times: Option<&Int64Array>,
    ranges: &[(usize, usize)],
    agg: AggregationType,
) -> (ArrayRef, Option<ArrayRef>) {
    let mut out: Vec<Option<T::Native>> = Vec::with_capacity(ranges.len());
    let mut out_times: Vec<Option<i64>> = Vec::new();
    let present = |i: usize| values.is_valid(i);
    for &(s, e) in ranges {
        let v = match agg {
            AggregationType::Sum | AggregationType::Count => {
                let mut acc: Option<T::Native> = None;
                for i in (s..e).filter(|&i| present(i)) {
                    let x = values.value(i);
                    acc = Some(match acc {
                        Some(a) => a.add_wrapping(x),
                        None => x,
                    });
                }
                if agg == AggregationType::Count {
                    Some(acc.unwrap_or(T::Native::ZERO))
                } else {
                    acc
                }
            }
            AggregationType::Min | AggregationType::Max => {
                let mut acc: Option<T::Native> = None;
                for i in (s..e).filter(|&i| present(i)) {
                    let x = values.value(i);
                    acc = Some(match acc {
                        None => x,
                        Some(a) if agg == AggregationType::Min && x.is_lt(a) => x,
                        Some(a) if agg == AggregationType::Max && x.is_gt(a) => x,
                        Some(a) => a,
                    });
                }
                acc
            }
            AggregationType::FirstWithTime | AggregationType::LastWithTime => {
                let first = agg == AggregationType::FirstWithTime;
                let time_of = |i: usize| match times {
                    Some(t) if t.is_valid(i) => t.value(i),
                    _ if first => i64::MAX,
                    _ => i64::MIN,
                };
                let mut best: Option<usize> = None;
                for i in (s..e).filter(|&i| present(i)) {
                    best = Some(match best {
                        None => i,
                        Some(b) => {
                            let ord = time_of(i)
                                .cmp(&time_of(b))
                                .then(values.value(i).compare(values.value(b)));
                            let better = if first { ord.is_lt() } else { ord.is_gt() };
                            if better { i } else { b }
                        }
                    });
                }
                out_times
                    .push(best.and_then(|b| times.filter(|t| t.is_valid(b)).map(|t| t.value(b))));
                best.map(|b| values.value(b))
            }
            // BYTES metrics merge in `crate::sketch`; the plan gives them no numeric column.
            _ => None,
        };
        out.push(v);
    }
    let array: PrimitiveArray<T> =
        PrimitiveArray::from_iter(out).with_data_type(values.data_type().clone());
    let times = matches!(
        agg,
        AggregationType::FirstWithTime | AggregationType::LastWithTime
    )
    .then(|| Arc::new(Int64Array::from(out_times)) as ArrayRef);
    (Arc::new(array), times)
}
