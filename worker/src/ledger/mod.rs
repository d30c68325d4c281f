//! The worker's side of the row ledger ([`minion_contract::ledger`]): row hashes, digests of
//! the rows handed to the merge, dropped by it and written, and the order check of the
//! written rows.
//!
//! Everything here reads Arrow batches as they pass a pipeline stage; nothing shares code or
//! state with the sorter, so a bookkeeping error of the sort, spill or merge shows up as a
//! ledger that does not add up instead of as rows counted twice.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use arrow::array::RecordBatch;
use arrow_ord::ord::{DynComparator, make_comparator};
use arrow_schema::SortOptions;
use minion_contract::ledger::RowLedger;
use minion_contract::{AggregationType, MergeType};

use crate::error::{Result, WorkerError};
use crate::plan::Plan;
use crate::stream::BatchTransform;

mod digest;
mod hash;

pub use digest::{DigestBuilder, RowSet};
pub use hash::row_hashes;

/// The ledger of one subtask, filled by the pipeline's stages (possibly several pipelines:
/// one per ingested file).
#[derive(Debug)]
pub struct Ledger {
    pub source_rows: AtomicU64,
    pub outside_window_rows: AtomicU64,
    pub invalidated_rows: AtomicU64,
    pub purged_rows: AtomicU64,
    /// Input segments left out as unreadable (their rows are in no count).
    pub skipped_segments: AtomicU64,
    merged: Mutex<DigestBuilder>,
    duplicates: Mutex<DigestBuilder>,
    written: Mutex<DigestBuilder>,
    /// An empty digest of the merge's input, and one of its output (with a row set, for
    /// dedup).
    empty: DigestBuilder,
    empty_written: DigestBuilder,
}

impl Ledger {
    /// The ledger of a subtask of `plan` with about `expected_rows` rows; dedup's row sets
    /// take at most `set_bytes` each.
    pub fn new(plan: &Plan, expected_rows: u64, set_bytes: u64) -> Self {
        let empty = DigestBuilder::new(plan);
        let empty_written = if plan.merge == MergeType::Dedup {
            empty
                .clone()
                .with_set(RowSet::new(expected_rows, set_bytes))
        } else {
            empty.clone()
        };
        Ledger {
            source_rows: AtomicU64::new(0),
            outside_window_rows: AtomicU64::new(0),
            invalidated_rows: AtomicU64::new(0),
            purged_rows: AtomicU64::new(0),
            skipped_segments: AtomicU64::new(0),
            merged: Mutex::new(empty.clone()),
            duplicates: Mutex::new(empty_written.clone()),
            written: Mutex::new(empty_written.clone()),
            empty,
            empty_written,
        }
    }

    /// A fresh digest of the merge's input, for a stage to fill and hand back.
    pub fn digest(&self) -> DigestBuilder {
        self.empty.clone()
    }

    /// A fresh digest of output rows, for a writer to fill and hand back.
    pub fn written_digest(&self) -> DigestBuilder {
        self.empty_written.clone()
    }

    pub fn add_merged(&self, d: &DigestBuilder) {
        self.merged.lock().expect("ledger lock").merge(d);
    }

    /// Counts rows the merge dropped as copies (dedup).
    pub fn add_duplicate_rows(&self, rows: &RecordBatch) {
        self.duplicates.lock().expect("ledger lock").add(rows);
    }

    pub fn set_skipped_segments(&self, n: u64) {
        self.skipped_segments.store(n, AtomicOrdering::Relaxed);
    }

    pub fn add_written(&self, d: &DigestBuilder) {
        self.written.lock().expect("ledger lock").merge(d);
    }

    pub fn snapshot(&self) -> RowLedger {
        let load = |a: &AtomicU64| a.load(AtomicOrdering::Relaxed);
        RowLedger {
            source_rows: load(&self.source_rows),
            outside_window_rows: load(&self.outside_window_rows),
            invalidated_rows: load(&self.invalidated_rows),
            purged_rows: load(&self.purged_rows),
            merged: self.merged.lock().expect("ledger lock").digest(),
            duplicates: self.duplicates.lock().expect("ledger lock").digest(),
            written: self.written.lock().expect("ledger lock").digest(),
            skipped_segments: load(&self.skipped_segments),
        }
    }

    /// The ledger, checked for `merge`.
    ///
    /// # Errors
    /// [`WorkerError::InvariantViolated`] naming every broken invariant.
    pub fn verified(
        &self,
        merge: MergeType,
        aggregations: &BTreeMap<String, AggregationType>,
    ) -> Result<RowLedger> {
        let ledger = self.snapshot();
        ledger
            .verify(merge, aggregations)
            .map_err(|e| WorkerError::InvariantViolated(e.to_string()))?;
        let duplicates = self.duplicates.lock().expect("ledger lock");
        let written = self.written.lock().expect("ledger lock");
        if let (Some(dropped), Some(kept)) = (&duplicates.set, &written.set) {
            let unmatched = dropped.words_missing_from(kept);
            if unmatched > 0 {
                return Err(WorkerError::InvariantViolated(format!(
                    "dedup dropped rows that match no written row (at least {unmatched}): they were not copies"
                )));
            }
        }
        Ok(ledger)
    }
}

/// A pass-through stage digesting the rows handed to the merge.
pub struct DigestStage {
    pub digest: DigestBuilder,
    pub ledger: std::sync::Arc<Ledger>,
}

impl BatchTransform for DigestStage {
    fn apply(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        self.digest.add(&batch);
        Ok(Some(batch))
    }

    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        self.ledger.add_merged(&self.digest);
        Ok(None)
    }
}

/// What is checked of the rows handed to the writer: their order, and their digest.
pub struct OutputCheck {
    pub digest: DigestBuilder,
    pub order: OrderCheck,
}

impl OutputCheck {
    pub fn new(digest: DigestBuilder, order: OrderCheck) -> Self {
        OutputCheck { digest, order }
    }

    /// Checks and digests one batch of output rows.
    ///
    /// # Errors
    /// [`WorkerError::InvariantViolated`] at the first row out of order.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        self.order.add(batch)?;
        self.digest.add(batch);
        Ok(())
    }
}

/// Checks that rows arrive in the order of the sort key: non-decreasing, or strictly
/// increasing when equal keys must have been merged into one row (dedup, rollup).
pub struct OrderCheck {
    keys: Vec<usize>,
    strict: bool,
    /// The previous batch's last row.
    last: Option<RecordBatch>,
    rows: u64,
}

impl OrderCheck {
    pub fn new(keys: Vec<usize>, strict: bool) -> Self {
        OrderCheck {
            keys,
            strict,
            last: None,
            rows: 0,
        }
    }

    fn comparators(&self, a: &RecordBatch, b: &RecordBatch) -> Result<Vec<DynComparator>> {
        self.keys
            .iter()
            .map(|&k| {
                make_comparator(
                    a.column(k).as_ref(),
                    b.column(k).as_ref(),
                    SortOptions::default(),
                )
                .map_err(WorkerError::from)
            })
            .collect()
    }

    fn check(&self, cmp: &[DynComparator], i: usize, j: usize, at: u64) -> Result<()> {
        let mut order = std::cmp::Ordering::Equal;
        for c in cmp {
            order = c(i, j);
            if order.is_ne() {
                break;
            }
        }
        if order.is_gt() || (self.strict && order.is_eq()) {
            let what = if order.is_eq() {
                "has the same key as the row before it (a row or group written twice)"
            } else {
                "sorts before the row before it"
            };
            return Err(WorkerError::InvariantViolated(format!(
                "output row {at} {what}"
            )));
        }
        Ok(())
    }

    /// Checks the rows of `batch` against each other and the previous batch's last row.
    ///
    /// # Errors
    /// [`WorkerError::InvariantViolated`] at the first row out of order.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 || self.keys.is_empty() {
            return Ok(());
        }
        if let Some(last) = &self.last {
            let cmp = self.comparators(last, batch)?;
            self.check(&cmp, 0, 0, self.rows)?;
        }
        let cmp = self.comparators(batch, batch)?;
        for i in 1..n {
            self.check(&cmp, i - 1, i, self.rows + i as u64)?;
        }
        self.rows += n as u64;
        self.last = Some(batch.slice(n - 1, 1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::DataType;
    use arrow_schema::{Field, Schema};

    use super::hash::{fmix64, hash_bytes, hash_in};
    use super::*;

    fn batch(k: &[Option<&str>], n: &[i64], v: &[f64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("v", DataType::Float64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(k.to_vec())),
                Arc::new(Int64Array::from(n.to_vec())),
                Arc::new(Float64Array::from(v.to_vec())),
            ],
        )
        .unwrap()
    }

    fn multiset_hash(b: &RecordBatch) -> u64 {
        row_hashes(b, 3).into_iter().fold(0u64, u64::wrapping_add)
    }

    #[test]
    fn the_multiset_hash_ignores_order_but_not_copies_or_swapped_values() {
        let a = batch(&[Some("x"), None, Some("y")], &[1, 2, 3], &[0.5, 1.0, 2.0]);
        let reordered = batch(&[Some("y"), Some("x"), None], &[3, 1, 2], &[2.0, 0.5, 1.0]);
        assert_eq!(multiset_hash(&a), multiset_hash(&reordered));
        let copied = batch(
            &[Some("x"), Some("x"), Some("y")],
            &[1, 1, 3],
            &[0.5, 0.5, 2.0],
        );
        assert_ne!(multiset_hash(&a), multiset_hash(&copied));
        // The same values in other rows.
        let swapped = batch(&[Some("x"), None, Some("y")], &[2, 1, 3], &[0.5, 1.0, 2.0]);
        assert_ne!(multiset_hash(&a), multiset_hash(&swapped));
        // A null is not an empty string.
        let empty = batch(
            &[Some("x"), Some(""), Some("y")],
            &[1, 2, 3],
            &[0.5, 1.0, 2.0],
        );
        assert_ne!(multiset_hash(&a), multiset_hash(&empty));
    }

    #[test]
    fn short_strings_hash_the_same_read_in_place_or_copied() {
        let data: Vec<u8> = (0u8..64).collect();
        for start in 0..40 {
            for n in 0..=24 {
                if start + n <= data.len() {
                    assert_eq!(
                        hash_in(&data, start, start + n),
                        hash_bytes(&data[start..start + n]),
                        "start {start}, {n} bytes"
                    );
                }
            }
        }
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
    }

    #[test]
    fn a_row_set_finds_a_row_it_never_saw() {
        let mut written = RowSet::new(100_000, 1 << 20);
        let mut copies = RowSet::new(100_000, 1 << 20);
        for i in 0..100_000u64 {
            written.insert(fmix64(i));
        }
        for i in (0..100_000u64).step_by(7) {
            copies.insert(fmix64(i));
        }
        assert_eq!(
            copies.words_missing_from(&written),
            0,
            "copies of written rows"
        );
        // Rows never written: each is seen unless its bits happen to be set already.
        let found = (100_000..100_100u64)
            .filter(|&i| {
                let mut one = RowSet::new(100_000, 1 << 20);
                one.insert(fmix64(i));
                one.words_missing_from(&written) > 0
            })
            .count();
        assert!(found >= 90, "{found} of 100 unwritten rows seen");
    }

    #[test]
    fn order_check_finds_rows_out_of_order_and_repeated_keys_across_batches() {
        let first = batch(&[None, Some("a")], &[1, 1], &[0.0, 0.0]);
        let ok = batch(&[Some("a"), Some("b")], &[2, 0], &[0.0, 0.0]);
        let mut check = OrderCheck::new(vec![0, 1], true);
        check.add(&first).unwrap();
        check.add(&ok).unwrap();
        // The next batch starts with the key the previous one ended with.
        let repeated = batch(&[Some("b")], &[0], &[1.0]);
        let e = check.add(&repeated).unwrap_err();
        assert!(
            e.to_string().contains("output row 4 has the same key"),
            "{e}"
        );
        // Non-strict: equal keys are fine, a smaller one is not.
        let mut check = OrderCheck::new(vec![0], false);
        check.add(&first).unwrap();
        check.add(&ok).unwrap();
        check.add(&repeated).unwrap();
        let e = check.add(&batch(&[Some("a")], &[0], &[0.0])).unwrap_err();
        assert!(e.to_string().contains("sorts before"), "{e}");
    }
}
