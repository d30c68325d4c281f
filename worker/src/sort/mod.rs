//! External sort under a memory budget: batches are buffered until the sort share of the
//! budget is reached, sorted by their key (Arrow row format), optionally pre-reduced (the
//! combiner of dedup/rollup) and spilled as a run; at the end the last buffer is sorted in
//! memory and k-way merged with the spilled runs (several passes when there are too many to
//! merge at once within the other half of the budget). With large budgets a run is written
//! as two consecutive parts (the two halves of its key range) encoded and compressed on two
//! threads, and read back one after the other.
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

/// Fewest runs one merge pass should take at once.
const MIN_FAN_IN: usize = 16;

/// Sort budgets from which a run is written by two threads (each holds an IPC writer and
/// its buffers, which small budgets cannot afford twice).
const PARALLEL_WRITE_FROM_BUDGET: usize = 256 << 20;

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
    /// Spilled runs; a run may be written as several consecutive parts (key ranges).
    runs: Vec<Vec<SpilledRun>>,
    /// Rows and array bytes seen, to size spilled batches and the merge fan-in.
    seen_rows: usize,
    seen_bytes: usize,
    in_flight: Option<std::thread::JoinHandle<Result<Vec<SpilledRun>>>>,
    combiner_helps: bool,
    metrics: Arc<BaselineMetrics>,
}

/// A sorted buffer ready to be emitted in order.
struct SortedBuffer {
    batches: Vec<RecordBatch>,
    order: Vec<(usize, usize)>,
    at: usize,
    batch_size: usize,
}

impl SortedBuffer {
    /// Splits into the first and second half of the order (two sorted key ranges).
    fn split(self) -> (SortedBuffer, SortedBuffer) {
        let mut first = self.order;
        let second = first.split_off(first.len() / 2);
        let half = |order| SortedBuffer {
            batches: self.batches.clone(),
            order,
            at: 0,
            batch_size: self.batch_size,
        };
        (half(first), half(second))
    }
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
            seen_rows: 0,
            seen_bytes: 0,
            in_flight: None,
            combiner_helps: true,
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
        // Sort scratch per row: key slice + index (24 bytes, twice while merging halves) and
        // the (batch, row) origin (16 bytes).
        arrays + keys + batch.num_rows() * 64
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
        if cost > self.config.budget_bytes / 2 {
            return Err(WorkerError::BudgetTooSmall {
                budget: self.config.budget_bytes as u64,
                message: format!(
                    "one batch of {} rows needs {cost} bytes to sort",
                    batch.num_rows()
                ),
            });
        }
        self.seen_rows += batch.num_rows();
        self.seen_bytes += batch.get_array_memory_size();
        // Half the budget per buffer: one may be sorting and spilling while the next fills.
        if self.buffered_bytes + cost > self.config.budget_bytes / 2 {
            self.spill()?;
        }
        self.buffered_bytes += cost;
        self.buffered.push(batch);
        Ok(())
    }

    /// Bytes one row takes in memory, on average (arrays and encoded keys).
    fn row_bytes(&self) -> usize {
        (2 * self.seen_bytes / self.seen_rows.max(1)).max(16)
    }

    /// Rows per spilled batch: small enough that a merge of [`MIN_FAN_IN`] runs, each
    /// holding about three batches, fits the budget.
    fn spill_batch_rows(&self) -> usize {
        (self.config.budget_bytes / (3 * MIN_FAN_IN * self.row_bytes()))
            .clamp(256.min(self.config.batch_size), self.config.batch_size)
    }

    fn take_buffer(&mut self) -> Vec<RecordBatch> {
        self.buffered_bytes = 0;
        std::mem::take(&mut self.buffered)
    }

    /// Waits for the run being spilled in the background, if any.
    fn join_spill(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.take() {
            let parts = handle
                .join()
                .map_err(|_| WorkerError::internal("the spill thread panicked"))??;
            let rows: u64 = parts.iter().map(|p| p.rows).sum();
            let input_rows: u64 = parts.iter().map(|p| p.input_rows).sum();
            let bytes: u64 = parts.iter().map(|p| p.bytes).sum();
            // Pre-reducing runs pays only when it removes rows; stop when it hardly does.
            if rows * 100 > input_rows * 99 {
                self.combiner_helps = false;
            }
            tracing::debug!(rows, bytes, parts = parts.len(), "spilled a sorted run");
            self.runs.push(parts);
        }
        Ok(())
    }

    /// Sorts and writes the buffer as a run on a background thread, so that reading the
    /// next buffer overlaps with it. At most one spill is in flight.
    fn spill(&mut self) -> Result<()> {
        self.join_spill()?;
        if self.buffered.is_empty() {
            return Ok(());
        }
        let batches = self.take_buffer();
        let batch_size = self.spill_batch_rows();
        let mut config = self.config.clone();
        if !self.combiner_helps {
            config.combiner = None;
        }
        self.in_flight = Some(std::thread::spawn(move || {
            let converter = config.converter()?;
            let sorted = sort_batches(&converter, &config.keys, batches, batch_size)?;
            if config.budget_bytes < PARALLEL_WRITE_FROM_BUDGET {
                return Ok(vec![write_run(&config, Box::new(sorted))?]);
            }
            // Two halves of the sorted order, encoded and compressed on two threads, read
            // back one after the other as one run.
            let (first, second) = sorted.split();
            std::thread::scope(|scope| {
                let other = scope.spawn(|| write_run(&config, Box::new(second)));
                let a = write_run(&config, Box::new(first));
                let b = other
                    .join()
                    .map_err(|_| WorkerError::internal("the spill thread panicked"))?;
                Ok(vec![a?, b?])
            })
        }));
        Ok(())
    }

    /// Ends the input and returns the sorted output.
    pub fn finish(mut self) -> Result<SortedRun> {
        if self.runs.is_empty() && self.in_flight.is_none() {
            let batches = self.take_buffer();
            let sorted = sort_batches(
                &self.converter,
                &self.config.keys,
                batches,
                self.config.batch_size,
            )?;
            return Ok(Box::new(sorted));
        }
        // The last buffer is not spilled: it is sorted in memory (at most half the sort
        // budget) and merged with the spilled runs, which share the other half.
        self.join_spill()?;
        let last = self.take_buffer();
        let in_memory = sort_batches(
            &self.converter,
            &self.config.keys,
            last,
            self.spill_batch_rows(),
        )?;
        let per_run = 3 * self.spill_batch_rows() * self.row_bytes();
        let fan_in = (self.config.budget_bytes / 2 / per_run.max(1)).max(2);
        let mut runs = std::mem::take(&mut self.runs);
        while runs.len() + 1 > fan_in {
            let rest = runs.split_off(fan_in.min(runs.len()));
            let group = std::mem::replace(&mut runs, rest);
            let merged = self.merge(group, None)?;
            let run = write_run(&self.config, Box::new(merged))?;
            runs.push(vec![run]);
        }
        Ok(Box::new(self.merge(runs, Some(Box::new(in_memory)))?))
    }

    fn merge(&self, runs: Vec<Vec<SpilledRun>>, extra: Option<SortedRun>) -> Result<MergedRuns> {
        let mut sources: Vec<SortedRun> = Vec::with_capacity(runs.len() + 1);
        for parts in &runs {
            let mut readers = Vec::with_capacity(parts.len());
            for part in parts {
                readers.push(part.reader()?);
            }
            sources.push(Box::new(
                readers.into_iter().flatten().map(|b| b.map_err(Into::into)),
            ));
        }
        sources.extend(extra);
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

/// Sorts buffered batches by their key.
fn sort_batches(
    converter: &RowConverter,
    keys: &[usize],
    batches: Vec<RecordBatch>,
    batch_size: usize,
) -> Result<SortedBuffer> {
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut rows = converter.empty_rows(n, n * 16);
    let mut origin = Vec::with_capacity(n);
    for (bi, b) in batches.iter().enumerate() {
        let cols: Vec<ArrayRef> = keys.iter().map(|&k| b.column(k).clone()).collect();
        converter.append(&mut rows, &cols)?;
        origin.extend((0..b.num_rows()).map(|r| (bi, r)));
    }
    let mut keyed: Vec<(&[u8], u32)> = (0..n).map(|i| (rows.row(i).data(), i as u32)).collect();
    parallel_sort(&mut keyed);
    let order = keyed.into_iter().map(|(_, i)| origin[i as usize]).collect();
    drop(rows);
    Ok(SortedBuffer {
        batches,
        order,
        at: 0,
        batch_size,
    })
}

/// Writes a sorted stream as a run, through the combiner if there is one.
fn write_run(config: &SortConfig, input: SortedRun) -> Result<SpilledRun> {
    let mut writer = config.spill.writer(&config.schema)?;
    let mut input_rows = 0u64;
    let mut combiner = match &config.combiner {
        Some(f) => Some(f()?),
        None => None,
    };
    for batch in input {
        let batch = batch?;
        input_rows += batch.num_rows() as u64;
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
    let mut run = writer.finish()?;
    run.input_rows = input_rows;
    Ok(run)
}

/// Sorts by key bytes, in two halves on two threads for large inputs, then merges them.
fn parallel_sort(keyed: &mut Vec<(&[u8], u32)>) {
    const PARALLEL_FROM: usize = 64 * 1024;
    if keyed.len() < PARALLEL_FROM {
        keyed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        return;
    }
    let mid = keyed.len() / 2;
    {
        let (left, right) = keyed.split_at_mut(mid);
        std::thread::scope(|scope| {
            scope.spawn(|| left.sort_unstable_by(|a, b| a.0.cmp(b.0)));
            right.sort_unstable_by(|a, b| a.0.cmp(b.0));
        });
    }
    let mut merged = Vec::with_capacity(keyed.len());
    let (left, right) = keyed.split_at(mid);
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if right[j].0 < left[i].0 {
            merged.push(right[j]);
            j += 1;
        } else {
            merged.push(left[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&left[i..]);
    merged.extend_from_slice(&right[j..]);
    *keyed = merged;
}

/// A merge that owns its input runs, so they are deleted once it is dropped.
struct MergedRuns {
    merger: Merger,
    _runs: Vec<Vec<SpilledRun>>,
}

impl Iterator for MergedRuns {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.merger.next()
    }
}
