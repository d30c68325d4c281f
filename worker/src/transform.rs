//! Per-row stages, each a [`BatchTransform`]: the window filter, the purge predicate,
//! dimension erasing, and the stage that rounds the time column and adds the hidden
//! partition/time columns of the internal schema.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, new_empty_array, new_null_array,
};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp;
use arrow_schema::DataType;

use crate::error::{Result, WorkerError};
use crate::partition::partitions;
use crate::plan::Plan;
use crate::predicate::Predicate;
use crate::stream::BatchTransform;
use crate::time::TimeColumn;

/// Keeps rows whose time lies in `[lo, hi)` (raw units); drops rows with a null time.
pub struct WindowFilter {
    pub time: TimeColumn,
    pub lo: i64,
    pub hi: i64,
}

impl BatchTransform for WindowFilter {
    fn apply(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let raw = self.time.raw(batch.column(self.time.index))?;
        let lo = Int64Array::new_scalar(self.lo);
        let hi = Int64Array::new_scalar(self.hi);
        let mask = arrow::compute::and(&cmp::gt_eq(&raw, &lo)?, &cmp::lt(&raw, &hi)?)?;
        keep(batch, &mask)
    }
}

/// Drops rows for which the purge predicate is true.
pub struct PurgeFilter {
    pub predicate: Predicate,
}

impl BatchTransform for PurgeFilter {
    fn apply(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let mask = self.predicate.keep_mask(&batch)?;
        keep(batch, &mask)
    }
}

fn keep(batch: RecordBatch, mask: &BooleanArray) -> Result<Option<RecordBatch>> {
    if mask.true_count() == batch.num_rows() {
        return Ok(Some(batch));
    }
    Ok(Some(filter_record_batch(&batch, mask)?))
}

/// Builds each derived metric from its raw column's value on the row (before that column is
/// erased), merged with the row's own value of the metric.
pub struct DeriveMetrics {
    pub derive: Vec<crate::plan::DerivedMetric>,
}

impl BatchTransform for DeriveMetrics {
    fn apply(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let mut cols = batch.columns().to_vec();
        for d in &self.derive {
            cols[d.index] = d.sketch.derive(batch.column(d.source), &cols[d.index])?;
        }
        Ok(Some(RecordBatch::try_new(batch.schema(), cols)?))
    }
}

/// Resets the listed dimensions: null if nullable, else the type's default (0, "", false).
pub struct EraseDimensions {
    pub columns: Vec<usize>,
}

impl BatchTransform for EraseDimensions {
    fn apply(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let schema = batch.schema();
        let mut cols = batch.columns().to_vec();
        for &i in &self.columns {
            let field = schema.field(i);
            cols[i] = if field.is_nullable() {
                new_null_array(field.data_type(), batch.num_rows())
            } else {
                default_array(field.data_type(), batch.num_rows())?
            };
        }
        Ok(Some(RecordBatch::try_new(schema, cols)?))
    }
}

fn default_array(dt: &DataType, len: usize) -> Result<ArrayRef> {
    let zero: ArrayRef = match dt {
        DataType::Utf8 => Arc::new(arrow::array::StringArray::from(vec![""])),
        DataType::Binary => Arc::new(arrow::array::BinaryArray::from(vec![&b""[..]])),
        DataType::Boolean => Arc::new(BooleanArray::from(vec![false])),
        _ => arrow::compute::cast(&(Arc::new(Int64Array::from(vec![0])) as ArrayRef), dt)?,
    };
    if len == 0 {
        return Ok(new_empty_array(dt));
    }
    let indices = arrow::array::UInt32Array::from(vec![0u32; len]);
    Ok(arrow::compute::take(&zero, &indices, None)?)
}

/// Widens a table batch to the internal schema: remembers the original time for
/// first/last-with-time metrics, rounds the time column, adds the partition columns.
pub struct PrepareKeys {
    pub plan: Arc<Plan>,
}

impl BatchTransform for PrepareKeys {
    fn apply(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let plan = &self.plan;
        let n = batch.num_rows();
        let mut cols = batch.columns().to_vec();
        let time = &plan.time;
        let original = time.raw(batch.column(time.index))?;
        let rounded = match plan.round_ms {
            Some(r) => {
                let rounded = time.round(&original, r);
                cols[time.index] = time.to_column(rounded.clone())?;
                rounded
            }
            None => original.clone(),
        };
        let width = plan.internal.fields().len();
        cols.resize_with(width, || new_null_array(&DataType::Null, 0));
        if let Some(i) = plan.tpart_index {
            let p = plan.time_partition_ms.unwrap_or(1);
            let format = &time.format;
            cols[i] =
                Arc::new(rounded.unary::<_, arrow::datatypes::Int64Type>(|t| {
                    format.to_millis(t).div_euclid(p)
                }));
        }
        if let (Some(i), Some(vp)) = (plan.vpart_index, &plan.value_partition) {
            cols[i] = Arc::new(partitions(
                batch.column(vp.column),
                vp.function,
                vp.num_partitions,
            )?);
        }
        for m in &plan.metrics {
            if let Some(i) = m.time_index {
                cols[i] = Arc::new(original.clone());
            }
        }
        if cols.iter().any(|c| c.len() != n) {
            return Err(WorkerError::internal("hidden column of wrong length"));
        }
        Ok(Some(RecordBatch::try_new(plan.internal.clone(), cols)?))
    }
}
