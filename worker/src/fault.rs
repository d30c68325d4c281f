//! Faults injected by tests (`RunOptions::fault`) into the sorted stream, to prove that the
//! worker's row ledger catches a sorter that emits a row twice or a dedup that drops a row
//! that is not a copy. Never set outside tests.

use arrow::array::RecordBatch;

use crate::error::Result;

/// Faults tests inject into a run to prove that the worker's checks catch them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The sorter emits its first row twice (with the group flags of a true repeat).
    RepeatSortedRow,
    /// Dedup drops its first row as a copy although it is not one.
    DropRowAsCopy,
}

/// The sorted run with its first row emitted twice ([`Fault::RepeatSortedRow`]).
pub(crate) fn repeat_first_row(
    mut sorted: crate::sort::GroupedRun,
) -> impl Iterator<Item = Result<(RecordBatch, Vec<bool>)>> {
    let first = sorted.next().map(|r| {
        let (batch, mut continues) = r?;
        if batch.num_rows() == 0 {
            return Ok((batch, continues));
        }
        let doubled =
            arrow::compute::concat_batches(&batch.schema(), &[batch.slice(0, 1), batch.clone()])?;
        continues.insert(1, true);
        Ok((doubled, continues))
    });
    first.into_iter().chain(sorted)
}

/// The sorted run without its first row, reported dropped as a copy ([`Fault::DropRowAsCopy`]).
pub(crate) fn drop_first_row(
    mut sorted: crate::sort::GroupedRun,
    report: impl Fn(&RecordBatch),
) -> impl Iterator<Item = Result<(RecordBatch, Vec<bool>)>> {
    let first = sorted.next().map(|r| {
        let (batch, mut continues) = r?;
        if batch.num_rows() == 0 {
            return Ok((batch, continues));
        }
        report(&batch.slice(0, 1));
        continues.remove(0);
        Ok((batch.slice(1, batch.num_rows() - 1), continues))
    });
    first.into_iter().chain(sorted)
}
