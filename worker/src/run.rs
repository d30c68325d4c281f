//! The subtask runner: reads a spec, builds the pipeline
//! `scan → window → purge → erase → round/partition → sort (spilling) → reduce → write`,
//! runs it under the memory budget, and writes the result manifest (also on failure, when
//! the destination store is reachable).
//!
//! It touches only the source and destination stores named in the spec and a private spill
//! directory that is removed when the run ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use arrow::array::RecordBatch;
use futures::StreamExt;
use minion_contract::{
    CONTRACT_VERSION, MergeType, Outcome, ResultManifest, SkippedFile, SubtaskKind, SubtaskSpec,
};

use crate::error::{Result, WorkerError};
use crate::fault::{Fault, drop_first_row, repeat_first_row};
use crate::ledger::{DigestBuilder, DigestStage, Ledger, OrderCheck, OutputCheck};
use crate::plan::Plan;
use crate::reduce::Reducer;
use crate::scan::{ParquetInput, ScanConfig, scan};
use crate::sort::spill::SpillDir;
use crate::sort::{CombinerFactory, DuplicateSink, ExternalSorter, SortConfig};
use crate::spilldir::PrivateSpillDir;
use crate::store::{Location, resolve};
use crate::stream::{BatchStream, BatchTransform, PlanMetrics, TransformStream};
use crate::table::CoerceMode;
use crate::transform::{DeriveMetrics, EraseDimensions, PrepareKeys, PurgeFilter, WindowFilter};
use crate::write::{OutputTarget, SegmentWriter};

/// Smallest memory budget a subtask accepts.
pub const MIN_MEMORY_BUDGET_BYTES: u64 = 8 * 1024 * 1024;

/// How to run a subtask (process-level settings the spec does not carry).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Overrides the spec's memory budget.
    pub memory_budget_bytes: Option<u64>,
    /// Directory for spill files (default: the system temp directory).
    pub spill_dir: Option<PathBuf>,
    /// Rows per batch.
    pub batch_size: usize,
    /// Input files decoded concurrently.
    pub parallelism: usize,
    /// Write the result manifest (success and failure) to the staging prefix.
    pub write_manifest: bool,
    /// A fault to inject, for tests that prove the checks catch it (never set by the binary).
    #[doc(hidden)]
    pub fault: Option<Fault>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            memory_budget_bytes: None,
            spill_dir: None,
            batch_size: 8192,
            parallelism: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
            write_manifest: true,
            fault: None,
        }
    }
}

/// The manifest plus what the run measured.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub manifest: ResultManifest,
    /// Highest local disk used by spill files at any moment.
    pub peak_spill_bytes: u64,
    /// Total bytes of the input segments/files.
    pub input_bytes: u64,
    /// Per-stage rows and compute time.
    pub stages: String,
}

/// Runs one subtask and returns its manifest.
///
/// # Errors
/// The [`WorkerError`] that ended it; a Failed manifest has been written when possible.
pub async fn run_subtask(spec: &SubtaskSpec, options: &RunOptions) -> Result<ResultManifest> {
    run_subtask_report(spec, options).await.map(|r| r.manifest)
}

/// Like [`run_subtask`], returning the run's measurements too.
pub async fn run_subtask_report(spec: &SubtaskSpec, options: &RunOptions) -> Result<RunReport> {
    match execute(spec, options).await {
        Ok(report) => Ok(report),
        Err(e) => {
            if options.write_manifest
                && let Ok(dest) = resolve(&spec.destination.uri)
            {
                let mut manifest = empty_manifest(spec, Outcome::Failed);
                manifest.reason = Some(e.reason());
                manifest.message = Some(e.to_string());
                if let Err(we) = write_manifest(&dest, spec, &manifest).await {
                    tracing::warn!(error = %we, "could not write the failure manifest");
                }
            }
            Err(e)
        }
    }
}

fn empty_manifest(spec: &SubtaskSpec, outcome: Outcome) -> ResultManifest {
    ResultManifest {
        api_version: CONTRACT_VERSION.to_string(),
        task_run: spec.task_run.clone(),
        subtask: spec.subtask,
        attempt: spec.attempt,
        outcome,
        reason: None,
        message: None,
        input_rows: 0,
        output_rows: 0,
        outputs: Vec::new(),
        ingested_files: Vec::new(),
        skipped_files: Vec::new(),
        skipped_segments: Vec::new(),
        ledger: None,
        validity: Vec::new(),
        peak_spill_bytes: None,
    }
}

async fn write_manifest(
    dest: &Location,
    spec: &SubtaskSpec,
    manifest: &ResultManifest,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(manifest).map_err(WorkerError::internal)?;
    Ok(dest
        .put_bytes(&dest.child(&spec.manifest_path()), json)
        .await?)
}

/// What is known of a pipeline's input size before it is read.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InputSize {
    /// Rows (the segments' row counts as the catalog knows them).
    pub rows: Option<u64>,
    /// Bytes of the input files.
    pub bytes: Option<u64>,
}

/// Everything one pipeline needs.
pub(crate) struct Pipeline {
    pub plan: Arc<Plan>,
    /// Filled by every run of the pipeline (file ingestion runs one per file).
    pub ledger: Arc<Ledger>,
    pub budget: u64,
    pub spill: SpillDir,
    pub target: OutputTarget,
    pub metrics: PlanMetrics,
    pub batch_size: usize,
    pub fault: Option<Fault>,
}

impl Pipeline {
    /// The same pipeline counting into `ledger` and `metrics` (a fresh read of the inputs).
    fn with(&self, ledger: Arc<Ledger>, metrics: PlanMetrics) -> Pipeline {
        Pipeline {
            plan: self.plan.clone(),
            ledger,
            budget: self.budget,
            spill: self.spill.clone(),
            target: self.target.clone(),
            metrics,
            batch_size: self.batch_size,
            fault: self.fault,
        }
    }

    /// Runs `input` (table-schema batches) through processing into segments; `size` is
    /// what is known of the input's size (it lets the sorter keep in memory what fits, and
    /// leave runs uncompressed while the disk bound allows).
    pub async fn run(
        &self,
        input: BatchStream,
        tags: BTreeMap<String, String>,
        size: InputSize,
    ) -> Result<SegmentWriter> {
        let plan = &self.plan;
        let mut stream = input;
        // Rows the filters drop, for the ledger.
        let mut dropped_by = Vec::new();
        if let Some(w) = &plan.window {
            let (lo, hi) = plan.time.window_bounds(w);
            let node = WindowFilter {
                time: plan.time.clone(),
                lo,
                hi,
            };
            let metrics = self.metrics.stage("window");
            dropped_by.push((metrics.clone(), &self.ledger.outside_window_rows));
            stream = TransformStream::boxed(stream, node, metrics);
        }
        if let Some(p) = &plan.predicate {
            let node = PurgeFilter {
                predicate: p.clone(),
            };
            let metrics = self.metrics.stage("purge");
            dropped_by.push((metrics.clone(), &self.ledger.purged_rows));
            stream = TransformStream::boxed(stream, node, metrics);
        }
        if !plan.derive.is_empty() {
            let node = DeriveMetrics {
                derive: plan.derive.clone(),
            };
            stream = TransformStream::boxed(stream, node, self.metrics.stage("derive"));
        }
        if !plan.erase.is_empty() {
            let node = EraseDimensions {
                columns: plan.erase.clone(),
            };
            stream = TransformStream::boxed(stream, node, self.metrics.stage("erase"));
        }
        let node = PrepareKeys { plan: plan.clone() };
        stream = TransformStream::boxed(stream, node, self.metrics.stage("round+partition"));
        // What the merge is handed, digested before the sort sees it.
        let node = DigestStage {
            digest: self.ledger.digest(),
            ledger: self.ledger.clone(),
        };
        stream = TransformStream::boxed(stream, node, self.metrics.stage("ledger"));

        let writer = SegmentWriter::new(plan.clone(), self.target.clone(), tags)?;
        let check = OutputCheck::new(
            self.ledger.written_digest(),
            OrderCheck::new(plan.sort_keys.clone(), plan.reduces()),
        );
        let (writer, written) = self.merge_and_write(stream, writer, size, check).await?;
        self.ledger.add_written(&written);
        for (metrics, counter) in dropped_by {
            let dropped = metrics
                .input_rows
                .load(std::sync::atomic::Ordering::Relaxed)
                - metrics.output();
            counter.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(writer)
    }

    /// Sorts and reduces as the plan says, and writes.
    async fn merge_and_write(
        &self,
        mut stream: BatchStream,
        writer: SegmentWriter,
        size: InputSize,
        check: OutputCheck,
    ) -> Result<(SegmentWriter, DigestBuilder)> {
        let plan = &self.plan;
        if plan.sort_keys.is_empty() {
            return write_all(writer, stream, check).await;
        }
        // Dedup keys cover every column: the sorter drops equal rows itself. Rollup
        // pre-reduces spilled runs with the reducer and reduces the sorted output.
        let distinct = plan.merge == MergeType::Dedup;
        let rollup = plan.reduces() && !distinct;
        let combiner: Option<CombinerFactory> = rollup.then(|| {
            let plan = plan.clone();
            Arc::new(move || Ok(Box::new(Reducer::new(plan.clone())?) as Box<dyn BatchTransform>))
                as CombinerFactory
        });
        let ledger = self.ledger.clone();
        let on_duplicates: DuplicateSink =
            Arc::new(move |rows: &RecordBatch| ledger.add_duplicate_rows(rows));
        let config = SortConfig {
            schema: plan.internal.clone(),
            keys: plan.sort_keys.clone(),
            options: Vec::new(),
            budget_bytes: sort_share(self.budget),
            batch_size: self.batch_size,
            spill: self.spill.clone(),
            combiner,
            distinct,
            on_duplicates: distinct.then_some(on_duplicates),
            expected_rows: size.rows,
            // Spill files stay within twice the input.
            disk_budget_bytes: size.bytes.map(|b| 2 * b),
            spilling_budget_bytes: Some(sort_share(self.budget.min(SPILLING_BUDGET))),
        };
        let sort_metrics = self.metrics.stage("sort");
        let mut sorter = ExternalSorter::new(config, sort_metrics.clone())?;
        tracing::info!(phase = "sort", "reading and sorting input");
        while let Some(batch) = stream.next().await {
            let start = Instant::now();
            sorter.push(batch?)?;
            sort_metrics.add_elapsed(start);
        }
        let start = Instant::now();
        let mut sorted = sorter.finish_grouped()?;
        match self.fault {
            Some(Fault::RepeatSortedRow) => sorted = Box::new(repeat_first_row(sorted)),
            Some(Fault::DropRowAsCopy) => {
                let ledger = self.ledger.clone();
                sorted = Box::new(drop_first_row(sorted, move |row| {
                    ledger.add_duplicate_rows(row)
                }));
            }
            None => {}
        }
        sort_metrics.add_elapsed(start);
        tracing::info!(
            phase = "merge",
            spilled_bytes = self.spill.stats.peak_bytes(),
            spilled_runs = self
                .spill
                .stats
                .runs
                .load(std::sync::atomic::Ordering::Relaxed),
            rss_bytes = status_bytes("VmRSS:").unwrap_or(0),
            peak_rss_bytes = peak_rss_bytes().unwrap_or(0),
            "input read; writing sorted output"
        );
        let metrics = sort_metrics.clone();
        let sorted = sorted.inspect(move |b| {
            if let Ok((b, _)) = b {
                metrics.add_output(b.num_rows());
            }
        });
        let out: BatchStream = if rollup {
            // The sorter tells where groups start: the reducer need not re-encode keys.
            let reduce = GroupedReduce {
                input: Box::new(sorted),
                reducer: Reducer::new(plan.clone())?,
                metrics: self.metrics.stage("reduce"),
                done: false,
            };
            futures::stream::iter(reduce).boxed()
        } else {
            futures::stream::iter(sorted.map(|r| r.map(|(b, _)| b))).boxed()
        };
        write_all(writer, out, check).await
    }
}

/// The part of the memory budget the sorter may fill: half of it, and for budgets of 1 GiB
/// and more everything but 256 MiB (which covers the readers, the writer's row group and
/// the runtime: the rest of the pipeline uses under 200 MiB at any budget; the 20M-row
/// benchmark peaks at 1.7 GB of RSS with a 2 GiB budget when it fits in memory).
fn sort_share(budget: u64) -> usize {
    const RESERVE: u64 = 256 << 20;
    if budget >= 4 * RESERVE {
        (budget - RESERVE) as usize
    } else {
        (budget / 2) as usize
    }
}

/// Above this budget, an input that spills anyway is sorted within this budget's share: the
/// larger share would keep more of it in memory and spill less, but faulting in the extra
/// memory took longer than the spill writes it saved (2 GiB benchmark concats: 12 s against
/// 15–20 s, peak RSS 0.9 against 1.8 GB). Input that fits in the whole share still uses it.
const SPILLING_BUDGET: u64 = 1 << 30;

/// Rollup of sorted batches whose group boundaries the sorter reported.
struct GroupedReduce {
    input: crate::sort::GroupedRun,
    reducer: Reducer,
    metrics: Arc<crate::stream::BaselineMetrics>,
    done: bool,
}

impl Iterator for GroupedReduce {
    type Item = Result<arrow::array::RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let next = self.input.next();
            let start = Instant::now();
            let out = match next {
                Some(Ok((batch, continues))) => {
                    self.metrics.add_input(batch.num_rows());
                    self.reducer.apply_grouped(batch, &continues)
                }
                Some(Err(e)) => Err(e),
                None => {
                    self.done = true;
                    self.reducer.finish()
                }
            };
            self.metrics.add_elapsed(start);
            match out {
                Ok(Some(b)) if b.num_rows() > 0 => {
                    self.metrics.add_output(b.num_rows());
                    return Some(Ok(b));
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Writes a stream into segments, encoding on another task so that Parquet encoding
/// overlaps with sorting, merging and reducing. Each batch is checked (order) and digested
/// here, on the producing side, as it is handed to the writer: the writer is the slower of
/// the two.
async fn write_all(
    writer: SegmentWriter,
    mut stream: BatchStream,
    mut check: OutputCheck,
) -> Result<(SegmentWriter, DigestBuilder)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<arrow::array::RecordBatch>(16);
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = failed.clone();
    let mut task = tokio::spawn(async move {
        let mut writer = writer;
        let stopped = || stop.load(std::sync::atomic::Ordering::Acquire);
        while let Some(batch) = rx.recv().await {
            if stopped() {
                break;
            }
            writer.write(batch).await?;
        }
        if stopped() {
            // The open segment is dropped unfinished; nothing more is written.
            return Err(WorkerError::internal("writer stopped: the input failed"));
        }
        writer.close().await?;
        Ok::<_, WorkerError>(writer)
    });
    while let Some(batch) = stream.next().await {
        let batch = match batch.and_then(|b| check.add(&b).map(|()| b)) {
            Ok(b) => b,
            Err(e) => {
                // Never finish a segment from a failed stream, and wait until the writer has
                // stopped, so nothing is written after the caller may clean up. The writer is
                // told to stop, not aborted: an abort could cut a segment's close between its
                // upload (which a blocking file write finishes regardless) and its rename,
                // leaving a temporary file behind the caller's clean-up.
                failed.store(true, std::sync::atomic::Ordering::Release);
                drop(tx);
                let _ = task.await;
                return Err(e);
            }
        };
        if tx.send(batch).await.is_err() {
            break;
        }
    }
    drop(tx);
    let writer = (&mut task).await.map_err(WorkerError::internal)??;
    Ok((writer, check.digest))
}

/// The memory budget of a run: the option's, else the spec's, at least the minimum.
fn budget_of(spec: &SubtaskSpec, options: &RunOptions) -> Result<u64> {
    let budget = options
        .memory_budget_bytes
        .unwrap_or(spec.memory_budget_bytes);
    if budget < MIN_MEMORY_BUDGET_BYTES {
        return Err(WorkerError::BudgetTooSmall {
            budget,
            message: format!("the minimum is {MIN_MEMORY_BUDGET_BYTES} bytes"),
        });
    }
    Ok(budget)
}

/// A validity subtask: upsert validity across the spec's inputs (every visible segment,
/// oldest first), each segment's `<path>.validity` written next to it, the counts in the
/// manifest. No output segments, no row ledger: nothing of it is committed.
async fn execute_validity(spec: &SubtaskSpec, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let budget = budget_of(spec, options)?;
    let spill_root = options.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    let private = PrivateSpillDir::create(&spill_root)?;
    let spill = SpillDir::new(private.path());
    let dest = resolve(&spec.destination.uri)?;
    tracing::info!(
        task_run = %spec.task_run, attempt = spec.attempt, segments = spec.inputs.len(),
        budget, phase = "validity", "starting validity subtask"
    );
    let counts =
        crate::upsert::write_validity(&spec.destination, &dest, &spec.inputs, &spill, budget)
            .await?;
    let mut manifest = empty_manifest(spec, Outcome::Succeeded);
    manifest.input_rows = counts.iter().map(|c| c.rows).sum();
    manifest.validity = counts;
    manifest.peak_spill_bytes = Some(spill.stats.peak_bytes());
    if options.write_manifest {
        write_manifest(&dest, spec, &manifest).await?;
    }
    let report = RunReport {
        peak_spill_bytes: spill.stats.peak_bytes(),
        input_bytes: spec.inputs.iter().map(|s| s.bytes).sum(),
        stages: String::new(),
        manifest,
    };
    tracing::info!(
        phase = "done",
        input_rows = report.manifest.input_rows,
        invalid_rows = report
            .manifest
            .validity
            .iter()
            .map(|c| c.invalid)
            .sum::<u64>(),
        segments = report.manifest.validity.len(),
        peak_spill_bytes = report.peak_spill_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        peak_rss_bytes = peak_rss_bytes().unwrap_or(0),
        "validity subtask succeeded"
    );
    drop(private);
    Ok(report)
}

async fn execute(spec: &SubtaskSpec, options: &RunOptions) -> Result<RunReport> {
    if spec.kind == SubtaskKind::Validity {
        return execute_validity(spec, options).await;
    }
    let started = Instant::now();
    let plan = Arc::new(Plan::new(spec)?);
    let budget = budget_of(spec, options)?;
    let spill_root = options.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    let private = PrivateSpillDir::create(&spill_root)?;
    let spill = SpillDir::new(private.path());
    let source = resolve(&spec.source.uri)?;
    let dest = resolve(&spec.destination.uri)?;
    let mut metrics = PlanMetrics::default();
    // Dedup's row sets: about a byte per row, at most a sixty-fourth of the budget each.
    let expected_rows = spec.inputs.iter().map(|s| s.rows).sum::<u64>().max(1 << 20);
    let mut ledger = Arc::new(Ledger::new(&plan, expected_rows, budget / 64));
    let pipeline = Pipeline {
        plan: plan.clone(),
        ledger: ledger.clone(),
        budget,
        spill: spill.clone(),
        target: OutputTarget {
            location: dest.clone(),
            output: spec.output.clone(),
            table_name: spec.destination.name.clone(),
            seq: Arc::new(AtomicU64::new(0)),
            row_group_bytes: (budget / 8).clamp(1 << 20, 64 << 20) as usize,
            upload_buffer_bytes: if dest.uri.starts_with("s3")
                || dest.uri.starts_with("gs")
                || dest.uri.starts_with("az")
            {
                5 << 20
            } else {
                1 << 20
            },
        },
        metrics: metrics.clone(),
        batch_size: options.batch_size,
        fault: options.fault,
    };
    tracing::info!(
        task_run = %spec.task_run, subtask = spec.subtask, attempt = spec.attempt,
        task_type = %spec.task_type, inputs = spec.inputs.len(), input_files = spec.input_files.len(),
        merge = ?spec.processing.merge_type, budget, "starting subtask"
    );
    let mut manifest = empty_manifest(spec, Outcome::Succeeded);
    let input_bytes;
    if !spec.input_files.is_empty() {
        let ingested = crate::ingest::ingest(spec, &pipeline, options).await?;
        input_bytes = spec.input_files.iter().map(|f| f.bytes).sum();
        // Files have no footer to count by (CSV, JSON): their rows are the rows parsed.
        ledger
            .source_rows
            .store(ingested.input_rows, std::sync::atomic::Ordering::Relaxed);
        manifest.input_rows = ingested.input_rows;
        manifest.outputs = ingested.outputs;
        manifest.ingested_files = ingested.ingested;
        manifest.skipped_files = ingested.skipped;
    } else {
        input_bytes = spec.inputs.iter().map(|s| s.bytes).sum();
        // Inputs left out as unreadable: footers first, then any a page of which is bad
        // (each found restarts the read without it, from scratch).
        let mut skipped = if spec.processing.skip_corrupt_segments {
            crate::skip::unreadable_footers(spec, &source).await?
        } else {
            Vec::new()
        };
        loop {
            let kept = crate::skip::without(spec, &skipped);
            let expected_rows = kept.inputs.iter().map(|s| s.rows).sum::<u64>().max(1 << 20);
            ledger = Arc::new(Ledger::new(&plan, expected_rows, budget / 64));
            metrics = PlanMetrics::default();
            let pass = pipeline.with(ledger.clone(), metrics.clone());
            match read_segments(&kept, &pass, &source, options).await {
                Ok((input_rows, outputs)) => {
                    manifest.input_rows = input_rows;
                    manifest.outputs = outputs;
                    break;
                }
                Err(e) if spec.processing.skip_corrupt_segments => {
                    let Some(bad) = crate::skip::corrupt_input(&kept, &source, &e) else {
                        return Err(e);
                    };
                    crate::skip::discard_outputs(&dest, spec).await?;
                    skipped.push(bad);
                }
                Err(e) => return Err(e),
            }
        }
        ledger.set_skipped_segments(skipped.len() as u64);
        manifest.skipped_segments = skipped;
    }
    manifest.output_rows = manifest.outputs.iter().map(|o| o.rows).sum();
    // Nothing is reported as done unless every row is accounted for.
    let checked = ledger.verified(
        spec.processing.merge_type,
        &spec.processing.aggregation_types,
    )?;
    if checked.written.rows != manifest.output_rows {
        return Err(WorkerError::InvariantViolated(format!(
            "{} rows written but the output segments list {}",
            checked.written.rows, manifest.output_rows
        )));
    }
    tracing::info!(
        phase = "verify",
        source_rows = checked.source_rows,
        merged_rows = checked.merged.rows,
        written_rows = checked.written.rows,
        "row ledger adds up"
    );
    manifest.ledger = Some(checked);
    manifest.peak_spill_bytes = Some(spill.stats.peak_bytes());
    if options.write_manifest {
        write_manifest(&dest, spec, &manifest).await?;
    }
    let report = RunReport {
        peak_spill_bytes: spill.stats.peak_bytes(),
        input_bytes,
        stages: metrics.summary(),
        manifest,
    };
    tracing::info!(
        phase = "done",
        input_rows = report.manifest.input_rows,
        output_rows = report.manifest.output_rows,
        segments = report.manifest.outputs.len(),
        peak_spill_bytes = report.peak_spill_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        peak_rss_bytes = peak_rss_bytes().unwrap_or(0),
        stages = %report.stages,
        "subtask succeeded"
    );
    drop(private);
    Ok(report)
}

/// Reads the input segments of `spec` through `pipeline`; returns the rows read and the
/// outputs.
async fn read_segments(
    spec: &SubtaskSpec,
    pipeline: &Pipeline,
    source: &Location,
    options: &RunOptions,
) -> Result<(u64, Vec<minion_contract::SegmentRef>)> {
    let plan = &pipeline.plan;
    let budget = pipeline.budget;
    let masks = if spec.processing.drop_invalid_upsert_rows && plan.table.is_upsert() {
        tracing::info!(phase = "validity", "computing upsert validity");
        Some(crate::upsert::keep_masks(spec, source, &pipeline.spill, budget).await?)
    } else {
        None
    };
    let inputs: Vec<ParquetInput> = spec
        .inputs
        .iter()
        .enumerate()
        .map(|(i, s)| ParquetInput::segment(source, s, masks.as_ref().map(|m| m[i].clone())))
        .collect();
    let scan_metrics = pipeline.metrics.stage("scan");
    let config = ScanConfig {
        table_arrow: plan.table_arrow.clone(),
        time: plan.time.clone(),
        window: plan.window,
        batch_size: options.batch_size,
        // Each concurrent reader holds a row group; small budgets read one at a time.
        parallelism: options
            .parallelism
            .min((budget / (128 << 20)).max(1) as usize),
        mode: CoerceMode::Strict,
        ledger: Some(pipeline.ledger.clone()),
        unread: plan.unread_columns(),
    };
    let stream = progress(scan(source.clone(), inputs, config, scan_metrics.clone()));
    // The segments' row counts as the catalog knows them (0 where a spec leaves them out).
    let input_bytes: u64 = spec.inputs.iter().map(|s| s.bytes).sum();
    let size = InputSize {
        rows: Some(spec.inputs.iter().map(|s| s.rows).sum()).filter(|&n| n > 0),
        bytes: Some(input_bytes).filter(|&n| n > 0),
    };
    let writer = pipeline.run(stream, BTreeMap::new(), size).await?;
    Ok((scan_metrics.output(), writer.outputs))
}

/// Logs rows read every million rows, so `kubectl logs` shows progress.
pub(crate) fn progress(input: BatchStream) -> BatchStream {
    let mut rows = 0u64;
    let mut next_log = 1_000_000u64;
    input
        .inspect(move |b| {
            if let Ok(b) = b {
                rows += b.num_rows() as u64;
                if rows >= next_log {
                    tracing::info!(phase = "read", rows_read = rows, "progress");
                    next_log += 1_000_000;
                }
            }
        })
        .boxed()
}

/// Records a skipped file.
pub(crate) fn skipped(uri: &str, e: &WorkerError) -> SkippedFile {
    SkippedFile {
        uri: uri.to_string(),
        reason: e.to_string(),
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), for the log and the memory tests.
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

fn status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
