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

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_ord::ord::{DynComparator, make_comparator};
use arrow_row::{RowConverter, SortField};
use arrow_schema::SortOptions;
use minion_contract::ledger::{MetricTotals, RowDigest, RowLedger, Total};
use minion_contract::{AggregationType, MergeType};

use crate::error::{Result, WorkerError};
use crate::plan::Plan;
use crate::stream::BatchTransform;

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const NULL: u64 = 0x1319_8a2e_0370_7344;

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Folds one value (or its hash) into a row's hash: a bijection of the value for a given row
/// state, and order-dependent across columns; the row's hash is finished with [`fmix64`].
#[inline]
fn combine(row: u64, value: u64) -> u64 {
    (row ^ value)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
}

/// A hash of a byte string: short ones (most dimension values) mixed from their words and
/// length, longer ones by XXH3.
#[inline]
fn hash_bytes(b: &[u8]) -> u64 {
    let n = b.len();
    if n > 16 {
        return twox_hash::XxHash3_64::oneshot(b);
    }
    let mut buf = [0u8; 16];
    buf[..n].copy_from_slice(b);
    let lo = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(buf[8..].try_into().expect("8 bytes"));
    combine(combine(n as u64 ^ 0x5bd1_e995, lo), hi)
}

fn fold_values(hashes: &mut [u64], array: &dyn Array, value: impl Fn(usize) -> u64) {
    if array.null_count() == 0 {
        for (i, h) in hashes.iter_mut().enumerate() {
            *h = combine(*h, value(i));
        }
    } else {
        for (i, h) in hashes.iter_mut().enumerate() {
            let v = if array.is_valid(i) { value(i) } else { NULL };
            *h = combine(*h, v);
        }
    }
}

/// Folds a primitive column: without nulls, one pass over the values slice (vectorizes).
fn fold_primitive<T: Copy>(
    hashes: &mut [u64],
    array: &dyn Array,
    values: &[T],
    bits: impl Fn(T) -> u64,
) {
    if array.null_count() == 0 {
        for (h, &v) in hashes.iter_mut().zip(values) {
            *h = combine(*h, bits(v));
        }
    } else {
        fold_values(hashes, array, |i| bits(values[i]));
    }
}

/// The low `n` bytes of a little-endian word (`n` ≤ 8).
#[inline]
fn low_bytes(word: u64, n: usize) -> u64 {
    if n >= 8 {
        word
    } else {
        word & ((1u64 << (8 * n)) - 1)
    }
}

/// [`hash_bytes`] of `data[start..end]`, reading short values as two unaligned words where the
/// buffer allows (no copy): the same value as `hash_bytes` of the slice.
#[inline]
fn hash_in(data: &[u8], start: usize, end: usize) -> u64 {
    let n = end - start;
    if n <= 16 && start + 16 <= data.len() {
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let (lo, hi) = if n > 8 {
            (word(start), low_bytes(word(start + 8), n - 8))
        } else {
            (low_bytes(word(start), n), 0)
        };
        return combine(combine(n as u64 ^ 0x5bd1_e995, lo), hi);
    }
    hash_bytes(&data[start..end])
}

/// Folds a column of byte strings, reading its offsets and bytes directly.
fn fold_bytes(hashes: &mut [u64], array: &dyn Array, offsets: &[i32], data: &[u8], salt: u64) {
    let value = |i: usize| hash_in(data, offsets[i] as usize, offsets[i + 1] as usize) ^ salt;
    fold_values(hashes, array, value);
}

fn fold_column(hashes: &mut [u64], column: &ArrayRef) {
    let a = column.as_ref();
    match column.data_type() {
        DataType::Int32 => {
            let v = column.as_primitive::<Int32Type>().values();
            fold_primitive(hashes, a, v, |x| x as i64 as u64);
        }
        DataType::Int64 => {
            let v = column.as_primitive::<Int64Type>().values();
            fold_primitive(hashes, a, v, |x| x as u64);
        }
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => {
            let v = column.as_primitive::<TimestampMicrosecondType>().values();
            fold_primitive(hashes, a, v, |x| x as u64);
        }
        DataType::Float32 => {
            let v = column.as_primitive::<Float32Type>().values();
            fold_primitive(hashes, a, v, |x| u64::from(x.to_bits()) ^ 0xf32);
        }
        DataType::Float64 => {
            let v = column.as_primitive::<Float64Type>().values();
            fold_primitive(hashes, a, v, |x| x.to_bits() ^ 0xf64);
        }
        DataType::Boolean => {
            let v = column.as_boolean();
            fold_values(hashes, a, |i| 2 + u64::from(v.value(i)));
        }
        DataType::Utf8 => {
            let v = column.as_string::<i32>();
            fold_bytes(hashes, a, v.value_offsets(), v.value_data(), 0);
        }
        DataType::Binary => {
            let v = column.as_binary::<i32>();
            fold_bytes(hashes, a, v.value_offsets(), v.value_data(), 0xb1);
        }
        // Tables have no other types; anything else is hashed through its row encoding.
        other => match RowConverter::new(vec![SortField::new(other.clone())])
            .and_then(|c| c.convert_columns(std::slice::from_ref(column)))
        {
            Ok(rows) => fold_values(hashes, a, |i| {
                twox_hash::XxHash3_64::oneshot(rows.row(i).as_ref())
            }),
            Err(_) => fold_values(hashes, a, |_| 0),
        },
    }
}

/// The 64-bit hash of each row of the first `columns` columns of `batch`.
pub fn row_hashes(batch: &RecordBatch, columns: usize) -> Vec<u64> {
    let mut hashes = vec![SEED; batch.num_rows()];
    for column in &batch.columns()[..columns] {
        fold_column(&mut hashes, column);
    }
    for h in &mut hashes {
        *h = fmix64(*h);
    }
    hashes
}

/// Running totals of one metric column.
#[derive(Clone, Debug)]
enum MetricAcc {
    Int {
        non_null: u64,
        sum: i128,
        min: Option<i128>,
        max: Option<i128>,
    },
    Float {
        single: bool,
        non_null: u64,
        /// Neumaier's compensated sum.
        sum: f64,
        compensation: f64,
        abs_sum: f64,
        min: Option<f64>,
        max: Option<f64>,
    },
}

impl MetricAcc {
    fn new(data_type: &DataType) -> Option<Self> {
        match data_type {
            DataType::Int32 | DataType::Int64 => Some(MetricAcc::Int {
                non_null: 0,
                sum: 0,
                min: None,
                max: None,
            }),
            DataType::Float32 | DataType::Float64 => Some(MetricAcc::Float {
                single: *data_type == DataType::Float32,
                non_null: 0,
                sum: 0.0,
                compensation: 0.0,
                abs_sum: 0.0,
                min: None,
                max: None,
            }),
            _ => None,
        }
    }

    /// Adds a column's non-null values: totals per batch first (sums and extremes over plain
    /// slices, which vectorize), then folded into the running totals once.
    fn add(&mut self, column: &ArrayRef) {
        fn ints<T: Copy + Into<i128> + Ord>(
            acc: &mut MetricAcc,
            values: &[T],
            nulls: Option<&arrow::buffer::NullBuffer>,
        ) {
            let (mut n, mut sum, mut lo, mut hi) = (0u64, 0i128, None::<T>, None::<T>);
            let mut take = |v: T| {
                n += 1;
                sum += v.into();
                lo = Some(lo.map_or(v, |m: T| m.min(v)));
                hi = Some(hi.map_or(v, |m: T| m.max(v)));
            };
            match nulls.filter(|n| n.null_count() > 0) {
                None => {
                    if let (Some(min), Some(max)) =
                        (values.iter().copied().min(), values.iter().copied().max())
                    {
                        n = values.len() as u64;
                        sum = values.iter().map(|&v| v.into()).sum();
                        lo = Some(min);
                        hi = Some(max);
                    }
                }
                Some(nulls) => nulls.valid_indices().for_each(|i| take(values[i])),
            }
            if let MetricAcc::Int {
                non_null,
                sum: total,
                min,
                max,
            } = acc
            {
                *non_null += n;
                *total += sum;
                if let (Some(l), Some(h)) = (lo, hi) {
                    let (l, h): (i128, i128) = (l.into(), h.into());
                    *min = Some(min.map_or(l, |m| m.min(l)));
                    *max = Some(max.map_or(h, |m| m.max(h)));
                }
            }
        }
        fn floats(acc: &mut MetricAcc, values: impl Iterator<Item = f64>) {
            let (mut n, mut sum, mut abs) = (0u64, 0.0f64, 0.0f64);
            let (mut lo, mut hi) = (None::<f64>, None::<f64>);
            for v in values {
                n += 1;
                sum += v;
                abs += v.abs();
                lo = Some(lo.map_or(v, |m| if v.total_cmp(&m).is_lt() { v } else { m }));
                hi = Some(hi.map_or(v, |m| if v.total_cmp(&m).is_gt() { v } else { m }));
            }
            if n == 0 {
                return;
            }
            if let MetricAcc::Float {
                non_null,
                sum: total,
                compensation,
                abs_sum,
                min,
                max,
                ..
            } = acc
            {
                *non_null += n;
                // Neumaier's compensated addition of the batch's sum.
                let t = *total + sum;
                *compensation += if total.abs() >= sum.abs() {
                    (*total - t) + sum
                } else {
                    (sum - t) + *total
                };
                *total = t;
                *abs_sum += abs;
                let (l, h) = (lo.expect("values"), hi.expect("values"));
                *min = Some(min.map_or(l, |m| if l.total_cmp(&m).is_lt() { l } else { m }));
                *max = Some(max.map_or(h, |m| if h.total_cmp(&m).is_gt() { h } else { m }));
            }
        }
        match column.data_type() {
            DataType::Int32 => {
                let a = column.as_primitive::<Int32Type>();
                ints(self, a.values(), a.nulls());
            }
            DataType::Int64 => {
                let a = column.as_primitive::<Int64Type>();
                ints(self, a.values(), a.nulls());
            }
            DataType::Float32 => {
                let a = column.as_primitive::<Float32Type>();
                floats(self, a.iter().flatten().map(f64::from));
            }
            DataType::Float64 => {
                let a = column.as_primitive::<Float64Type>();
                floats(self, a.iter().flatten());
            }
            _ => {}
        }
    }

    fn merge(&mut self, other: &MetricAcc) {
        match (self, other) {
            (
                MetricAcc::Int {
                    non_null,
                    sum,
                    min,
                    max,
                },
                MetricAcc::Int {
                    non_null: n2,
                    sum: s2,
                    min: lo2,
                    max: hi2,
                },
            ) => {
                *non_null += n2;
                *sum += s2;
                *min = min.iter().copied().chain(*lo2).min();
                *max = max.iter().copied().chain(*hi2).max();
            }
            (
                MetricAcc::Float {
                    non_null,
                    sum,
                    compensation,
                    abs_sum,
                    min,
                    max,
                    ..
                },
                MetricAcc::Float {
                    non_null: n2,
                    sum: s2,
                    compensation: c2,
                    abs_sum: a2,
                    min: lo2,
                    max: hi2,
                    ..
                },
            ) => {
                *non_null += n2;
                *sum += s2;
                *compensation += c2;
                *abs_sum += a2;
                *min = min.iter().copied().chain(*lo2).min_by(f64::total_cmp);
                *max = max.iter().copied().chain(*hi2).max_by(f64::total_cmp);
            }
            _ => {}
        }
    }

    fn totals(&self) -> MetricTotals {
        match *self {
            MetricAcc::Int {
                non_null,
                sum,
                min,
                max,
            } => MetricTotals {
                non_null,
                sum: Total::Int(sum),
                abs_sum: None,
                single_precision: false,
                min: min.map(Total::Int),
                max: max.map(Total::Int),
            },
            MetricAcc::Float {
                single,
                non_null,
                sum,
                compensation,
                abs_sum,
                min,
                max,
            } => MetricTotals {
                non_null,
                sum: Total::Float(sum + compensation),
                abs_sum: Some(abs_sum),
                single_precision: single,
                min: min.map(Total::Float),
                max: max.map(Total::Float),
            },
        }
    }
}

/// Hints the CPU to load `word` into cache (a no-op elsewhere than x86-64).
#[inline]
fn prefetch(word: &u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of the x86-64 baseline, and a prefetch never dereferences its
        // address (it cannot fault).
        unsafe { _mm_prefetch::<_MM_HINT_T0>((word as *const u64).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}

/// A Bloom filter of row hashes, blocked (the four bits of a row lie in one word, so an
/// insert touches one cache line). Dedup keeps one of the rows it writes and one of the rows
/// it drops as copies: a dropped row that matches no written row was not a copy.
#[derive(Clone, Debug)]
pub struct RowSet {
    words: Vec<u64>,
}

impl RowSet {
    /// About eight bits per expected row, in at most `max_bytes`.
    pub fn new(expected_rows: u64, max_bytes: u64) -> Self {
        let max_words = (max_bytes / 8).max(1024).next_power_of_two() as usize;
        let words = ((expected_rows / 8).max(1024) as usize)
            .next_power_of_two()
            .min(max_words);
        RowSet {
            words: vec![0; words],
        }
    }

    #[inline]
    fn slot(&self, h: u64) -> (usize, u64) {
        let word = (h as usize) & (self.words.len() - 1);
        let bits = (1u64 << ((h >> 40) & 63))
            | (1u64 << ((h >> 46) & 63))
            | (1u64 << ((h >> 52) & 63))
            | (1u64 << ((h >> 58) & 63));
        (word, bits)
    }

    fn insert(&mut self, h: u64) {
        let (word, bits) = self.slot(h);
        self.words[word] |= bits;
    }

    /// Inserts many hashes, prefetching the words a few inserts ahead: the set is larger than
    /// the caches, and the loads of independent inserts then overlap instead of queueing.
    fn insert_all(&mut self, hashes: &[u64]) {
        const AHEAD: usize = 16;
        for (i, &h) in hashes.iter().enumerate() {
            if let Some(&next) = hashes.get(i + AHEAD) {
                let (word, _) = self.slot(next);
                prefetch(&self.words[word]);
            }
            self.insert(h);
        }
    }

    fn union(&mut self, other: &RowSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Words of `self` with a bit that `other` lacks: rows of `self` surely not in `other`.
    fn words_missing_from(&self, other: &RowSet) -> usize {
        self.words
            .iter()
            .zip(&other.words)
            .filter(|(a, b)| *a & !*b != 0)
            .count()
    }
}

/// Count, multiset hash and metric totals of the rows seen so far (and, for dedup's written
/// and dropped rows, a [`RowSet`] of them).
#[derive(Clone, Debug)]
pub struct DigestBuilder {
    /// Table columns: the first columns of every batch digested.
    columns: usize,
    rows: u64,
    hash: u64,
    metrics: Vec<(usize, String, MetricAcc)>,
    set: Option<RowSet>,
}

impl DigestBuilder {
    /// A digest of rows of `plan`'s table (its columns, then any hidden columns).
    pub fn new(plan: &Plan) -> Self {
        let metrics = plan
            .table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.role == minion_contract::ColumnRole::Metric)
            .filter_map(|(i, c)| {
                let acc = MetricAcc::new(plan.table_arrow.field(i).data_type())?;
                Some((i, c.name.clone(), acc))
            })
            .collect();
        DigestBuilder {
            columns: plan.table_arrow.fields().len(),
            rows: 0,
            hash: 0,
            metrics,
            set: None,
        }
    }

    /// The same digest, also keeping a [`RowSet`] of the rows.
    fn with_set(mut self, set: RowSet) -> Self {
        self.set = Some(set);
        self
    }

    /// Adds the rows of `batch`.
    pub fn add(&mut self, batch: &RecordBatch) {
        self.rows += batch.num_rows() as u64;
        let hashes = row_hashes(batch, self.columns);
        self.hash = hashes.iter().fold(self.hash, |a, &h| a.wrapping_add(h));
        if let Some(set) = &mut self.set {
            set.insert_all(&hashes);
        }
        for (i, _, acc) in &mut self.metrics {
            acc.add(batch.column(*i));
        }
    }

    /// Adds another digest of the same table's rows.
    pub fn merge(&mut self, other: &DigestBuilder) {
        self.rows += other.rows;
        self.hash = self.hash.wrapping_add(other.hash);
        for ((_, _, a), (_, _, b)) in self.metrics.iter_mut().zip(&other.metrics) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.set, &other.set) {
            a.union(b);
        }
    }

    pub fn digest(&self) -> RowDigest {
        RowDigest {
            rows: self.rows,
            hash: self.hash,
            metrics: self
                .metrics
                .iter()
                .map(|(_, name, acc)| (name.clone(), acc.totals()))
                .collect(),
        }
    }
}

/// The ledger of one subtask, filled by the pipeline's stages (possibly several pipelines:
/// one per ingested file).
#[derive(Debug)]
pub struct Ledger {
    pub source_rows: AtomicU64,
    pub outside_window_rows: AtomicU64,
    pub invalidated_rows: AtomicU64,
    pub purged_rows: AtomicU64,
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
    use arrow_schema::{Field, Schema};

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
