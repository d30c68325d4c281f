//! External sort under a memory budget: batches are encoded into rows as they arrive (the
//! key in the Arrow row format, the other columns as a payload; see [`rows`]) and buffered
//! until the sort share of the budget is reached, then sorted by key bytes, optionally
//! pre-reduced (the combiner of rollup) and spilled as a run of row bytes; at the end the
//! last buffer is sorted in memory and k-way merged with the spilled runs (several passes
//! when there are too many to merge at once within the other half of the budget). Rows go
//! back to Arrow only when they leave the sorter. With large budgets a run is written as two
//! consecutive parts (the two halves of its key range) compressed on two threads, and read
//! back one after the other.
//!
//! When the input's row count is known ([`SortConfig::expected_rows`]) and the budget is
//! large enough for the merge to read every run at once, the sorter spills only the rows that
//! cannot stay in memory and keeps the rest as sorted in-memory pieces (see
//! [`ExternalSorter::push`]); runs that fit well within the disk budget
//! ([`SortConfig::disk_budget_bytes`]) are then written uncompressed. If by the first batch
//! the input will not fit in the budget anyway, the sorter may work within a smaller one
//! ([`SortConfig::spilling_budget_bytes`]).
//!
//! With `distinct` (dedup: the key covers every column), rows whose key equals the previous
//! row's are dropped while runs are written and merged, and handed to the duplicates sink.
//!
//! Parts: `buffer` (sorted buffers and the in-memory sort), `budget` (the memory
//! arithmetic, pure), `runs` (writing runs, merges that own them), [`merge`] (the k-way
//! merge), [`rows`] (the row format), [`spill`] (run files and disk accounting).
//!
//! # Guarantees
//! Buffered input plus sort scratch stays within `budget_bytes` except for a single batch
//! larger than the whole budget (reported as `BudgetTooSmall`). Spill files live in the
//! given directory and are deleted once merged; uncompressed runs are written only while the
//! files on disk, with room for the runs still to come compressed, stay within 90 % of the
//! disk budget, and are merged in a single pass.

mod budget;
mod buffer;
pub mod merge;
pub mod rows;
mod runs;
pub mod spill;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use arrow::array::RecordBatch;
use arrow_schema::{SchemaRef, SortOptions};

use crate::error::{Result, WorkerError};
use crate::stream::{BaselineMetrics, BatchTransform};
use budget::{Budget, SCRATCH_PER_ROW, SpillPlan};
use buffer::{Dedup, Entry, SortedBatches, SortedBuffer, chunk_bytes, sort_chunks};
use merge::{Merger, RowRun, SortedRun};
use rows::{RowChunk, RowLayout};
use runs::{MergedBatches, MergedRuns, MergerOwning, Part, write_run, write_until};
use spill::{SpillDir, SpilledRun};

/// Sort budgets from which a run is written by two threads (each holds an IPC writer and
/// its buffers, which small budgets cannot afford twice).
const PARALLEL_WRITE_FROM_BUDGET: usize = 256 << 20;

/// Creates the combiner applied to each sorted run before it is spilled.
pub type CombinerFactory = Arc<dyn Fn() -> Result<Box<dyn BatchTransform>> + Send + Sync>;

/// Receives the rows that `distinct` drops, decoded (the row ledger counts them).
pub type DuplicateSink = Arc<dyn Fn(&RecordBatch) + Send + Sync>;

/// Sorted batches, each with a flag per row: same key as the previous row (always false
/// with `distinct`, whose repeated rows are dropped).
pub type GroupedRun = Box<dyn Iterator<Item = Result<(RecordBatch, Vec<bool>)>> + Send>;

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
    /// Keep one row of each run of equal keys (dedup, where the key is every column).
    pub distinct: bool,
    /// With `distinct`: where the dropped rows go, wherever they are dropped (while a run is
    /// written, or merged).
    pub on_duplicates: Option<DuplicateSink>,
    /// Rows the input will probably have (the input segments' row counts), if known. With
    /// it the sorter spills only what will not fit in memory at the end (see
    /// [`ExternalSorter::push`]); without it, every buffer but the last is spilled.
    pub expected_rows: Option<u64>,
    /// Disk the spill files may take at once (twice the input), if known. While the input
    /// size is known too, runs that fit well within it are written uncompressed: the merge
    /// then reads every run in one pass, so they never coexist with merged copies.
    pub disk_budget_bytes: Option<u64>,
    /// A smaller budget the sorter works within instead of `budget_bytes` when, by the
    /// first batch and `expected_rows`, the input will not fit in `budget_bytes` anyway and
    /// the smaller budget's runs still merge in one pass. Memory a process touches for the
    /// first time can cost more than the spill writes a larger buffer saves: at 2 GiB the
    /// benchmark's concats ran 12 s with the share of a 1 GiB budget against 15–20 s with
    /// their own (docs/benchmarks.md, "Touching less memory when the input spills anyway").
    pub spilling_budget_bytes: Option<usize>,
}

/// Sorts a stream of batches that may be far larger than memory.
pub struct ExternalSorter {
    config: SortConfig,
    layout: Arc<RowLayout>,
    buffered: Vec<RowChunk>,
    buffered_bytes: usize,
    /// Spilled runs; a run may be written as several consecutive parts (key ranges).
    runs: Vec<Vec<SpilledRun>>,
    /// Rows and encoded bytes seen, to size spilled chunks and the merge fan-in.
    seen_rows: usize,
    seen_bytes: usize,
    buffered_rows: usize,
    /// Rows handed to spills, and the budget cost of the run being spilled now.
    spilled_rows: usize,
    in_flight_cost: usize,
    /// The rest of the input is expected to fit: buffers become sorted pieces kept in
    /// memory (`resident`, costing `resident_bytes`) instead of spilled runs.
    in_memory: bool,
    resident: Vec<SortedBuffer>,
    resident_bytes: usize,
    /// Whether the known input size is of no use (see `spill_plan`).
    plan_refused: bool,
    /// Some run was written uncompressed: the final merge must take every run at once.
    raw_runs: bool,
    /// The piece being sorted on a background thread, and its cost.
    sorting: Option<std::thread::JoinHandle<SortedBuffer>>,
    sorting_cost: usize,
    in_flight: Option<std::thread::JoinHandle<Result<Vec<Part>>>>,
    /// Tells the run being spilled to stop writing (the input has ended).
    in_flight_stop: Arc<AtomicBool>,
    combiner_helps: bool,
    metrics: Arc<BaselineMetrics>,
}

impl ExternalSorter {
    pub fn new(config: SortConfig, metrics: Arc<BaselineMetrics>) -> Result<Self> {
        let layout = Arc::new(RowLayout::new(
            config.schema.clone(),
            &config.keys,
            &config.options,
        )?);
        Ok(ExternalSorter {
            layout,
            config,
            buffered: Vec::new(),
            buffered_bytes: 0,
            runs: Vec::new(),
            seen_rows: 0,
            seen_bytes: 0,
            buffered_rows: 0,
            spilled_rows: 0,
            in_flight_cost: 0,
            in_memory: false,
            resident: Vec::new(),
            resident_bytes: 0,
            plan_refused: false,
            raw_runs: false,
            sorting: None,
            sorting_cost: 0,
            in_flight: None,
            in_flight_stop: Arc::default(),
            combiner_helps: true,
            metrics,
        })
    }

    /// Adds a batch, spilling a sorted run first if the budget would be exceeded.
    ///
    /// Buffers of half the budget are sorted and spilled in the background while the next
    /// one fills. When the expected input size is known, only what cannot stay in memory is
    /// spilled, in equal buffers of at most three eighths of the budget; once the rest of
    /// the input is expected to fit, it is kept in memory as sorted pieces of a quarter of
    /// the budget each (a sorted piece keeps 8 bytes of order per row instead of the whole sort
    /// scratch), merged with the spilled runs at the end. If more rows come than expected,
    /// the pieces are spilled after all.
    ///
    /// # Errors
    /// [`WorkerError::BudgetTooSmall`] if one batch alone exceeds the budget.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let n = batch.num_rows();
        self.metrics.add_input(n);
        let chunk = self.layout.encode(&batch)?;
        drop(batch);
        let cost = chunk.size() + n * SCRATCH_PER_ROW;
        self.seen_rows += n;
        self.seen_bytes += chunk.size();
        if let Some(smaller) = self.config.spilling_budget_bytes.take() {
            self.settle_budget(smaller);
        }
        if cost > self.config.budget_bytes / 2 {
            return Err(WorkerError::BudgetTooSmall {
                budget: self.config.budget_bytes as u64,
                message: format!("one batch of {n} rows needs {cost} bytes to sort"),
            });
        }
        self.make_room(cost)?;
        self.buffered_bytes += cost;
        self.buffered_rows += n;
        self.buffered.push(chunk);
        Ok(())
    }

    /// On the first batch: works within `smaller` bytes instead of the budget if the input
    /// will spill anyway ([`Budget::yields_to`]).
    fn settle_budget(&mut self, smaller: usize) {
        let Some(expected) = self.config.expected_rows else {
            return;
        };
        if self.budget().yields_to(smaller, expected as usize) {
            tracing::debug!(
                budget = self.config.budget_bytes,
                smaller,
                expected,
                "the input spills anyway: sorting within the smaller budget"
            );
            self.config.budget_bytes = smaller;
        }
    }

    /// Spills, sorts a piece or waits for a spill so that `cost` more bytes may be buffered.
    fn make_room(&mut self, cost: usize) -> Result<()> {
        let half = self.config.budget_bytes / 2;
        let Some(plan) = self.spill_plan() else {
            // Half the budget per buffer: one may be sorting and spilling while the next fills.
            if self.buffered_bytes + cost > half {
                self.spill()?;
            }
            return Ok(());
        };
        if !self.in_memory && self.spilled_rows >= plan.must_spill_rows {
            self.in_memory = true;
            tracing::debug!(
                spilled_rows = self.spilled_rows,
                "the rest of the input is expected to fit in memory"
            );
        }
        if !self.in_memory {
            // The rows that must still go to disk, in as few buffers of at most three
            // quarters of half the budget as possible, of equal sizes: a small buffer right
            // after a large one would wait for the large one's spill.
            let remaining = plan.must_spill_rows - self.spilled_rows;
            let per_buffer = self.spill_buffer_rows();
            let limit = remaining.div_ceil(remaining.div_ceil(per_buffer).max(1));
            if self.buffered_rows >= limit || self.buffered_bytes + cost > half {
                self.spill()?;
            }
            return Ok(());
        }
        if !self.buffered.is_empty() && self.buffered_bytes + cost > plan.piece {
            self.keep_sorted_piece()?;
        }
        let held = |s: &Self| {
            s.resident_bytes + s.sorting_cost + s.buffered_bytes + cost + s.in_flight_cost
        };
        if held(self) > plan.capacity && self.in_flight.is_some() {
            self.join_spill()?;
        }
        if held(self) > plan.capacity {
            self.join_piece()?;
        }
        if held(self) > plan.capacity {
            tracing::debug!("more input than expected: spilling the sorted pieces");
            self.spill_resident()?;
            self.in_memory = false;
            if self.buffered_bytes + cost > half {
                self.spill()?;
            }
        }
        Ok(())
    }

    /// Sorts the buffer on a background thread and keeps it in memory as a sorted piece.
    fn keep_sorted_piece(&mut self) -> Result<()> {
        self.join_piece()?;
        // The whole sort scratch is held while it sorts.
        self.sorting_cost = self.buffered_bytes;
        let chunks = self.take_buffer();
        let layout = self.layout.clone();
        let batch_rows = self.spill_batch_rows();
        let dedup = self.dedup();
        self.sorting = Some(std::thread::spawn(move || {
            sort_chunks(&layout, chunks, batch_rows, dedup)
        }));
        Ok(())
    }

    /// Waits for the piece being sorted, if any, and keeps it.
    fn join_piece(&mut self) -> Result<()> {
        if let Some(handle) = self.sorting.take() {
            let sorted = handle
                .join()
                .map_err(|_| WorkerError::internal("the sort thread panicked"))?;
            self.sorting_cost = 0;
            self.resident_bytes += sorted.bytes() + sorted.order.len() * size_of::<Entry>();
            self.resident.push(sorted);
        }
        Ok(())
    }

    /// Writes the sorted pieces as runs (when more input came than expected).
    fn spill_resident(&mut self) -> Result<()> {
        self.join_piece()?;
        let combiner = self.combiner();
        for mut piece in std::mem::take(&mut self.resident) {
            self.spilled_rows += piece.order.len();
            let compress = self.compress_run(piece.bytes(), piece.order.len());
            let run = write_run(
                &self.config.spill,
                &self.layout,
                &combiner,
                &mut piece,
                None,
                compress,
                self.chunk_bytes(),
            )?;
            self.runs.push(vec![run]);
        }
        self.resident_bytes = 0;
        Ok(())
    }

    fn budget(&self) -> Budget {
        Budget {
            budget_bytes: self.config.budget_bytes,
            batch_size: self.config.batch_size,
            seen_rows: self.seen_rows,
            seen_bytes: self.seen_bytes,
        }
    }

    /// With a known input size: how many rows to spill so that the rest fits in memory at
    /// the end ([`Budget::spill_plan`]). `None` when the size is unknown or, as decided on the
    /// first batch, the merge would need too much of the budget to read the runs the plan
    /// makes at once.
    fn spill_plan(&mut self) -> Option<SpillPlan> {
        let expected = self.config.expected_rows? as usize;
        if self.plan_refused {
            return None;
        }
        let first = self.spilled_rows == 0 && self.runs.is_empty() && self.in_flight.is_none();
        let plan = self.budget().spill_plan(expected, first);
        self.plan_refused = plan.is_none();
        plan
    }

    fn spill_buffer_rows(&self) -> usize {
        self.budget().spill_buffer_rows()
    }

    fn merge_bytes_per_run(&self) -> usize {
        self.budget().merge_bytes_per_run()
    }

    fn spill_batch_rows(&self) -> usize {
        self.budget().spill_batch_rows()
    }

    /// Encoded bytes of a spilled chunk of [`Self::spill_batch_rows`] average rows: what the
    /// merge plans to hold of each run, a few at a time.
    fn chunk_bytes(&self) -> usize {
        self.spill_batch_rows() * self.budget().row_bytes()
    }

    fn take_buffer(&mut self) -> Vec<RowChunk> {
        self.buffered_bytes = 0;
        self.buffered_rows = 0;
        std::mem::take(&mut self.buffered)
    }

    /// Whether a run of `rows` rows and `raw_bytes` row bytes is to be compressed: always,
    /// unless the input size is known (single-pass merge) and the run fits in 90% of the
    /// disk budget beside the runs on disk and the rows the plan will still spill after it,
    /// counted compressed at a third of their raw size (ZSTD takes row bytes to a quarter
    /// to a sixth on the benchmark's shapes). Without that room for the rest, a first raw
    /// run of wide rows took most of the disk budget and the compressed runs after it went
    /// past it.
    fn compress_run(&mut self, raw_bytes: usize, rows: usize) -> bool {
        let Some(disk) = self.config.disk_budget_bytes else {
            return true;
        };
        let Some(plan) = self.spill_plan() else {
            return true;
        };
        let after = plan.must_spill_rows.saturating_sub(self.spilled_rows);
        let after_bytes = (after as u64) * (raw_bytes / rows.max(1)) as u64 / 3;
        let used = self.config.spill.stats.current_bytes();
        let compress = (used + raw_bytes as u64 + after_bytes) * 10 > disk * 9;
        self.raw_runs |= !compress;
        compress
    }

    /// Waits for the run being spilled in the background, if any.
    fn join_spill(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.take() {
            self.in_flight_cost = 0;
            let parts: Vec<SpilledRun> = handle
                .join()
                .map_err(|_| WorkerError::internal("the spill thread panicked"))??
                .into_iter()
                .map(|(run, _)| run)
                .collect();
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

    fn dedup(&self) -> Dedup {
        Dedup {
            distinct: self.config.distinct,
            on_duplicates: self
                .config
                .on_duplicates
                .clone()
                .filter(|_| self.config.distinct),
        }
    }

    /// The combiner for the next run, while it still pays.
    fn combiner(&self) -> Option<CombinerFactory> {
        self.config.combiner.clone().filter(|_| self.combiner_helps)
    }

    /// Sorts and writes the buffer as a run on a background thread, so that reading the
    /// next buffer overlaps with it. At most one spill is in flight.
    fn spill(&mut self) -> Result<()> {
        self.join_spill()?;
        if self.buffered.is_empty() {
            return Ok(());
        }
        self.in_flight_cost = self.buffered_bytes;
        self.spilled_rows += self.buffered_rows;
        let rows = self.buffered_rows;
        let chunks = self.take_buffer();
        let compress = self.compress_run(chunk_bytes(&chunks), rows);
        let batch_rows = self.spill_batch_rows();
        let max_chunk = self.chunk_bytes();
        let spill = self.config.spill.clone();
        let layout = self.layout.clone();
        let combiner = self.combiner();
        let parallel = self.config.budget_bytes >= PARALLEL_WRITE_FROM_BUDGET;
        let dedup = self.dedup();
        let stop = Arc::new(AtomicBool::new(false));
        self.in_flight_stop = stop.clone();
        self.in_flight = Some(std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let sorted = sort_chunks(&layout, chunks, batch_rows, dedup);
            tracing::debug!(
                rows = sorted.order.len(),
                duplicates = sorted.duplicates,
                ms = started.elapsed().as_millis() as u64,
                "sorted a buffer"
            );
            // Pre-reducing pays only when at least 1% of the rows repeat a key.
            let combiner = combiner.filter(|_| sorted.duplicates * 100 >= sorted.order.len());
            let write =
                |half| write_until(&spill, &layout, &combiner, half, &stop, compress, max_chunk);
            if !parallel {
                return Ok(vec![write(sorted)?]);
            }
            // Two halves of the sorted order, compressed on two threads, read back one
            // after the other as one run.
            let (first, second) = sorted.split();
            std::thread::scope(|scope| {
                let other = scope.spawn(|| write(second));
                let a = write(first);
                let b = other
                    .join()
                    .map_err(|_| WorkerError::internal("the spill thread panicked"))?;
                Ok(vec![a?, b?])
            })
        }));
        Ok(())
    }

    /// Whether a run is being spilled in the background (not yet joined).
    #[doc(hidden)]
    pub fn spilling(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether the run spilled in the background has been written completely but not yet
    /// joined. With [`Self::spilling`] and the spill statistics, tests end the input at a
    /// chosen point of a spill: still writing, or done.
    #[doc(hidden)]
    pub fn spill_done(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|h| h.is_finished())
    }

    /// Ends the input and returns the sorted output.
    pub fn finish(self) -> Result<SortedRun> {
        Ok(Box::new(
            self.finish_inner(false)?.map(|r| r.map(|(batch, _)| batch)),
        ))
    }

    /// Ends the input and returns the sorted output with, per row, whether its key equals
    /// the previous row's (the group boundaries a reducer needs).
    pub fn finish_grouped(self) -> Result<GroupedRun> {
        self.finish_inner(true)
    }

    fn finish_inner(mut self, groups: bool) -> Result<GroupedRun> {
        self.join_piece()?;
        if self.runs.is_empty() && self.in_flight.is_none() && self.resident.is_empty() {
            let chunks = self.take_buffer();
            let sorted = sort_chunks(&self.layout, chunks, self.config.batch_size, self.dedup());
            return Ok(Box::new(SortedBatches(sorted)));
        }
        // The last buffer is not spilled: it is sorted in memory and merged with the spilled
        // runs.
        let per_run = self.merge_bytes_per_run();
        // The run still being written holds its whole buffer until it is written. When the
        // merge's read buffers are small next to the budget, it stops now and the rows it
        // has not written yet are merged from memory instead of being spilled and read back.
        let mut tail = Vec::new();
        if (self.runs.len() + 3) * per_run <= self.config.budget_bytes / 8 {
            self.in_flight_stop.store(true, AtomicOrdering::Relaxed);
            if let Some(handle) = self.in_flight.take() {
                tail = handle
                    .join()
                    .map_err(|_| WorkerError::internal("the spill thread panicked"))??;
                let kept: usize = tail
                    .iter()
                    .filter_map(|(_, rest)| rest.as_ref())
                    .map(|r| r.order.len() - r.at)
                    .sum();
                tracing::debug!(rows = kept, "the last spilled run stopped early");
            }
        }
        self.join_spill()?;
        let last = self.take_buffer();
        let last = sort_chunks(&self.layout, last, self.spill_batch_rows(), self.dedup());
        // The runs' read buffers share what the last buffer leaves: half the budget, or the
        // sixteenth that `spill_plan` reserved when sorted pieces stay in memory.
        let merge_share = if self.in_memory {
            self.config.budget_bytes / 16
        } else {
            self.config.budget_bytes / 2
        };
        let mut fan_in = (merge_share / per_run.max(1)).max(3);
        if self.raw_runs {
            // Merged copies of uncompressed runs could exceed the disk budget: one pass.
            fan_in = fan_in.max(self.runs.len() + 2);
        }
        let mut runs = std::mem::take(&mut self.runs);
        let extra = 1 + usize::from(!tail.is_empty());
        while runs.len() + extra > fan_in {
            let rest = runs.split_off((fan_in - extra + 1).min(runs.len()));
            let group = std::mem::replace(&mut runs, rest);
            let merged = MergedRuns(self.merge(group, Vec::new(), Vec::new(), false)?);
            let run = write_run(
                &self.config.spill,
                &self.layout,
                &self.combiner(),
                &mut { merged },
                None,
                true,
                self.chunk_bytes(),
            )?;
            runs.push(vec![run]);
        }
        let mut in_memory: Vec<RowRun> = std::mem::take(&mut self.resident)
            .into_iter()
            .map(|piece| Box::new(piece) as RowRun)
            .collect();
        in_memory.push(Box::new(last));
        Ok(Box::new(MergedBatches(
            self.merge(runs, tail, in_memory, groups)?,
        )))
    }

    /// Merges spilled runs, the run whose writing stopped (each part: its file, then the
    /// rows still in memory) and in-memory sources.
    fn merge(
        &self,
        mut runs: Vec<Vec<SpilledRun>>,
        tail: Vec<Part>,
        extra: Vec<RowRun>,
        groups: bool,
    ) -> Result<MergerOwning> {
        let mut sources: Vec<RowRun> = Vec::with_capacity(runs.len() + 2);
        // The stopped run's files are read once, as part of its own source (file first,
        // then the rows it kept in memory); they join `runs` only after the loop below has
        // opened a reader for each of the other runs, so that nothing is read twice.
        let mut tail_files = Vec::new();
        if !tail.is_empty() {
            let mut parts: Vec<RowRun> = Vec::new();
            for (run, rest) in tail {
                let layout = self.layout.clone();
                let reader = run.reader()?;
                parts.push(Box::new(reader.map(move |b| layout.from_spill(b?))));
                parts.extend(rest.map(|r| Box::new(r) as RowRun));
                tail_files.push(run);
            }
            sources.push(Box::new(parts.into_iter().flatten()));
        }
        for parts in &runs {
            let mut readers = Vec::with_capacity(parts.len());
            for part in parts {
                readers.push(part.reader()?);
            }
            let layout = self.layout.clone();
            sources.push(Box::new(
                readers
                    .into_iter()
                    .flatten()
                    .map(move |b| layout.from_spill(b?)),
            ));
        }
        sources.extend(extra);
        if !tail_files.is_empty() {
            // Kept until the merge is dropped, like the other runs.
            runs.push(tail_files);
        }
        let dedup = self.dedup();
        // Rows the combiner grew (sketches of many rows) are merged in smaller batches, so a
        // batch of them holds about what a batch of input rows would.
        let (bytes, rows) = runs
            .iter()
            .flatten()
            .fold((0u64, 0u64), |(b, r), run| (b + run.bytes, r + run.rows));
        let spilled_row = (bytes / rows.max(1)) as usize;
        let input_row = self.budget().row_bytes() / 2;
        let batch_rows = if spilled_row > 2 * input_row.max(1) {
            (self.config.batch_size * input_row / spilled_row).max(16)
        } else {
            self.config.batch_size
        };
        let merger = Merger::new(
            self.layout.clone(),
            sources,
            batch_rows,
            dedup.distinct,
            groups,
        )?
        .on_duplicates(dedup.on_duplicates);
        Ok(MergerOwning {
            merger,
            _runs: runs,
        })
    }
}
