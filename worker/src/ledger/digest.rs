//! Digests of rows as they pass a stage: count, multiset hash, per-metric totals, and for
//! dedup a row set of the rows written.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int32Type, Int64Type};
use minion_contract::ledger::{MetricTotals, RowDigest, Total};

use super::hash::row_hashes;
use crate::plan::Plan;

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

    pub(super) fn insert(&mut self, h: u64) {
        let (word, bits) = self.slot(h);
        self.words[word] |= bits;
    }

    /// Inserts many hashes, prefetching the words a few inserts ahead: the set is larger than
    /// the caches, and the loads of independent inserts then overlap instead of queueing.
    pub(super) fn insert_all(&mut self, hashes: &[u64]) {
        const AHEAD: usize = 16;
        for (i, &h) in hashes.iter().enumerate() {
            if let Some(&next) = hashes.get(i + AHEAD) {
                let (word, _) = self.slot(next);
                prefetch(&self.words[word]);
            }
            self.insert(h);
        }
    }

    pub(super) fn union(&mut self, other: &RowSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Words of `self` with a bit that `other` lacks: rows of `self` surely not in `other`.
    pub(super) fn words_missing_from(&self, other: &RowSet) -> usize {
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
    pub(super) set: Option<RowSet>,
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
    pub(super) fn with_set(mut self, set: RowSet) -> Self {
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
