//! Spilled runs: writing a sorted source to a run file (through the rollup combiner when
//! there is one, stopping early when told), and merges that own their input runs (deleted
//! when the merge is dropped).

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use arrow::array::RecordBatch;

use super::CombinerFactory;
use super::buffer::SortedBuffer;
use super::merge::Merger;
use super::rows::{RowChunk, RowLayout};
use super::spill::{SpillDir, SpilledRun};
use crate::error::Result;

/// One part of a spilled run, and the rows it left in memory when told to stop.
pub(super) type Part = (SpilledRun, Option<SortedBuffer>);

/// Writes a sorted buffer as a run until it is done or `stop` is set.
pub(super) fn write_until(
    spill: &SpillDir,
    layout: &RowLayout,
    combiner: &Option<CombinerFactory>,
    mut sorted: SortedBuffer,
    stop: &AtomicBool,
    compress: bool,
    max_chunk_bytes: usize,
) -> Result<Part> {
    let run = write_run(
        spill,
        layout,
        combiner,
        &mut sorted,
        Some(stop),
        compress,
        max_chunk_bytes,
    )?;
    let rest = (sorted.at < sorted.order.len()).then_some(sorted);
    Ok((run, rest))
}

/// Writes sorted rows as a run, through the combiner if there is one, stopping early (after
/// a whole chunk) when `stop` is set. The combiner's output is cut into chunks of at most
/// about `max_chunk_bytes` (rows that aggregate sketches grow as they combine, and the merge
/// holds a few chunks of every run).
pub(super) fn write_run(
    spill: &SpillDir,
    layout: &RowLayout,
    combiner: &Option<CombinerFactory>,
    input: &mut dyn Iterator<Item = Result<RowChunk>>,
    stop: Option<&AtomicBool>,
    compress: bool,
    max_chunk_bytes: usize,
) -> Result<SpilledRun> {
    let mut writer = spill.writer(&layout.spill_schema, compress)?;
    let mut input_rows = 0u64;
    let mut combiner = match combiner {
        Some(f) => Some(f()?),
        None => None,
    };
    loop {
        if stop.is_some_and(|s| s.load(AtomicOrdering::Relaxed)) {
            break;
        }
        let Some(chunk) = input.next() else {
            break;
        };
        let chunk = chunk?;
        input_rows += chunk.num_rows() as u64;
        match combiner.as_mut() {
            Some(c) => {
                let batch = layout.decode_chunk(&chunk)?;
                drop(chunk);
                if let Some(b) = c.apply(batch)?.filter(|b| b.num_rows() > 0) {
                    write_cut(&mut writer, layout, &b, max_chunk_bytes)?;
                }
            }
            None => writer.write(&layout.to_spill(chunk)?)?,
        }
    }
    if let Some(b) = combiner.as_mut().map(|c| c.finish()).transpose()?.flatten()
        && b.num_rows() > 0
    {
        write_cut(&mut writer, layout, &b, max_chunk_bytes)?;
    }
    let mut run = writer.finish()?;
    run.input_rows = input_rows;
    Ok(run)
}

/// Writes `batch` in chunks of at most about `max_bytes` of encoded rows.
fn write_cut(
    writer: &mut super::spill::RunWriter,
    layout: &RowLayout,
    batch: &RecordBatch,
    max_bytes: usize,
) -> Result<()> {
    let chunk = layout.encode(batch)?;
    let n = batch.num_rows();
    let pieces = chunk.size().div_ceil(max_bytes.max(1)).clamp(1, n);
    if pieces == 1 {
        return writer.write(&layout.to_spill(chunk)?);
    }
    drop(chunk);
    let rows = n.div_ceil(pieces);
    for start in (0..n).step_by(rows) {
        let piece = batch.slice(start, rows.min(n - start));
        writer.write(&layout.to_spill(layout.encode(&piece)?)?)?;
    }
    Ok(())
}

/// A merge that owns its input runs, so they are deleted once it is dropped.
pub(super) struct MergerOwning {
    pub(super) merger: Merger,
    pub(super) _runs: Vec<Vec<SpilledRun>>,
}

/// A merge emitted as row chunks (an intermediate pass).
pub(super) struct MergedRuns(pub(super) MergerOwning);

impl Iterator for MergedRuns {
    type Item = Result<RowChunk>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.merger.next_chunk().transpose()
    }
}

/// A merge emitted as batches (the output).
pub(super) struct MergedBatches(pub(super) MergerOwning);

impl Iterator for MergedBatches {
    type Item = Result<(RecordBatch, Vec<bool>)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.merger.next_batch().transpose()
    }
}
