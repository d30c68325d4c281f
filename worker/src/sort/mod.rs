//! External sort under a memory budget: batches are buffered until the sort share of the
//! budget is reached, sorted by their key (Arrow row format), optionally pre-reduced (the
//! combiner of dedup/rollup) and spilled as a run; at the end the runs are k-way merged,
//! in several passes when there are too many to merge at once within the budget.
//!
//! # Guarantees
//! Buffered input plus sort scratch stays within `budget_bytes` except for a single batch
//! larger than the whole budget (reported as `BudgetTooSmall`). Spill files live in the
//! given directory and are deleted once merged.

pub mod merge;
pub mod spill;

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{SchemaRef, SortOptions};
use arrow_select::interleave::interleave_record_batch;

use crate::error::{Result, WorkerError};
use crate::stream::{BaselineMetrics, BatchTransform};
use merge::{Merger, SortedRun};
use spill::{SpillDir, SpilledRun};

/// Creates the combiner applied to each sorted run before it is spilled.
pub type CombinerFactory = Arc<dyn Fn() -> Result<Box<dyn BatchTransform>> + Send + Sync>;

/// Sorter settings.
#[derive(Clone)]
pub struct SortConfig {
    pub schema: SchemaRef,
    pub keys: Vec<usize>,
    /// Per-key options (ascending, nulls first when empty).
    pub options: Vec<SortOptions>,
    pub budget_bytes: usize,
    pub batch_size: usize,
    pub spill: SpillDir,
    pub combiner: Option<CombinerFactory>,
}

impl SortConfig {
    pub fn converter(&self) -> Result<RowConverter> {
        let fields = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let dt = self.schema.field(k).data_type().clone();
                SortField::new_with_options(dt, self.options.get(i).copied().unwrap_or_default())
            })
            .collect();
        Ok(RowConverter::new(fields)?)
    }
}

/// Sorts a stream of batches that may be far larger than memory.
pub struct ExternalSorter {
    config: SortConfig,
    converter: RowConverter,
    buffered: Vec<RecordBatch>,
    buffered_bytes: usize,
    runs: Vec<SpilledRun>,
    /// Largest batch plus keys seen, to size the merge fan-in.
    max_batch_bytes: usize,
    metrics: Arc<BaselineMetrics>,
}

/// A sorted buffer ready to be emitted in order.
struct SortedBuffer {
    batches: Vec<RecordBatch>,
    order: Vec<(usize, usize)>,
    at: usize,
    batch_size: usize,
}

impl Iterator for SortedBuffer {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.order.len() {
            self.batches.clear();
            return None;
        }
        let end = (self.at + self.batch_size).min(self.order.len());
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        let out = interleave_record_batch(&refs, &self.order[self.at..end]);
        self.at = end;
        Some(out.map_err(Into::into))
    }
}

impl ExternalSorter {
    pub fn new(config: SortConfig, metrics: Arc<BaselineMetrics>) -> Result<Self> {
        Ok(ExternalSorter {
            converter: config.converter()?,
            config,
            buffered: Vec::new(),
            buffered_bytes: 0,
            runs: Vec::new(),
            max_batch_bytes: 0,
            metrics,
        })
    }

    /// Bytes a buffered batch costs: its arrays plus its encoded keys and order entries.
    fn cost(&self, batch: &RecordBatch) -> usize {
        let arrays = batch.get_array_memory_size();
        let keys: usize = self
            .config
            .keys
            .iter()
            .map(|&k| batch.column(k).get_array_memory_size())
            .sum();
        arrays + keys + batch.num_rows() * 24
    }

    /// Adds a batch, spilling a sorted run first if the budget would be exceeded.
    ///
    /// # Errors
    /// [`WorkerError::BudgetTooSmall`] if one batch alone exceeds the budget.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.metrics.add_input(batch.num_rows());
        let cost = self.cost(&batch);
        if cost > self.config.budget_bytes {
            return Err(WorkerError::BudgetTooSmall {
                budget: self.config.budget_bytes as u64,
                message: format!(
                    "one batch of {} rows needs {cost} bytes to sort",
                    batch.num_rows()
                ),
            });
        }
        self.max_batch_bytes = self.max_batch_bytes.max(cost);
        if self.buffered_bytes + cost > self.config.budget_bytes {
            self.spill()?;
        }
        self.buffered_bytes += cost;
        self.buffered.push(batch);
        Ok(())
    }

    fn sort_buffer(&mut self) -> Result<SortedBuffer> {
        let batches = std::mem::take(&mut self.buffered);
        self.buffered_bytes = 0;
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        let mut rows = self.converter.empty_rows(n, n * 16);
        let mut origin = Vec::with_capacity(n);
        for (bi, b) in batches.iter().enumerate() {
            let cols: Vec<ArrayRef> = self
                .config
                .keys
                .iter()
                .map(|&k| b.column(k).clone())
                .collect();
            self.converter.append(&mut rows, &cols)?;
            origin.extend((0..b.num_rows()).map(|r| (bi, r)));
        }
        let mut idx: Vec<u32> = (0..n as u32).collect();
        idx.sort_unstable_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
        drop(rows);
        let order = idx.into_iter().map(|i| origin[i as usize]).collect();
        Ok(SortedBuffer {
            batches,
            order,
            at: 0,
            batch_size: self.config.batch_size,
        })
    }

    /// Writes a sorted stream as a run, through the combiner if there is one.
    fn write_run(&self, input: SortedRun) -> Result<SpilledRun> {
        let mut writer = self.config.spill.writer(&self.config.schema)?;
        let mut combiner = match &self.config.combiner {
            Some(f) => Some(f()?),
            None => None,
        };
        for batch in input {
            let batch = batch?;
            let out = match combiner.as_mut() {
                Some(c) => c.apply(batch)?,
                None => Some(batch),
            };
            if let Some(b) = out.filter(|b| b.num_rows() > 0) {
                writer.write(&b)?;
            }
        }
        if let Some(b) = combiner.as_mut().map(|c| c.finish()).transpose()?.flatten() {
            writer.write(&b)?;
        }
        writer.finish()
    }

    fn spill(&mut self) -> Result<()> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let sorted = self.sort_buffer()?;
        let run = self.write_run(Box::new(sorted))?;
        tracing::debug!(rows = run.rows, bytes = run.bytes, "spilled a sorted run");
        self.runs.push(run);
        Ok(())
    }

    /// Ends the input and returns the sorted output.
    pub fn finish(mut self) -> Result<SortedRun> {
        if self.runs.is_empty() {
            let sorted = self.sort_buffer()?;
            return Ok(Box::new(sorted));
        }
        self.spill()?;
        let fan_in = (self.config.budget_bytes / (2 * self.max_batch_bytes.max(1))).max(2);
        let mut runs = std::mem::take(&mut self.runs);
        while runs.len() > fan_in {
            let rest = runs.split_off(fan_in);
            let group = std::mem::replace(&mut runs, rest);
            let merged = self.merge(group)?;
            let run = self.write_run(Box::new(merged))?;
            runs.push(run);
        }
        Ok(Box::new(self.merge(runs)?))
    }

    fn merge(&self, runs: Vec<SpilledRun>) -> Result<MergedRuns> {
        let mut sources: Vec<SortedRun> = Vec::with_capacity(runs.len());
        for run in &runs {
            let reader = run.reader()?;
            sources.push(Box::new(reader.map(|b| b.map_err(Into::into))));
        }
        let merger = Merger::new(
            self.config.converter()?,
            self.config.keys.clone(),
            self.config.schema.clone(),
            sources,
            self.config.batch_size,
        )?;
        Ok(MergedRuns {
            merger,
            _runs: runs,
        })
    }
}

/// A merge that owns its input runs, so they are deleted once it is dropped.
struct MergedRuns {
    merger: Merger,
    _runs: Vec<SpilledRun>,
}

impl Iterator for MergedRuns {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.merger.next()
    }
}
