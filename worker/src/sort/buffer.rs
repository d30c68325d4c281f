//! Sorted buffers: rows buffered in the sorter's format, sorted by their key (a 32-byte
//! inline prefix settles most comparisons; two threads for large buffers), and emitted in
//! order — as row chunks to spill or merge, or as Arrow batches with group flags. With
//! `distinct`, rows whose key repeats the previous row's are skipped and handed to the
//! duplicates sink (the row ledger).

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_row::Row;

use super::DuplicateSink;
use super::rows::{RowChunk, RowLayout};
use crate::error::Result;

/// A buffered row while sorting: the first 32 bytes of its key (big-endian words,
/// zero-padded) settle nearly every comparison without touching the key, whose bytes sit
/// elsewhere in memory; the key itself breaks ties.
#[derive(Clone, Copy)]
pub(super) struct SortEntry<'a> {
    prefix: [u64; 4],
    key: &'a [u8],
    chunk: u32,
    row: u32,
}

impl<'a> SortEntry<'a> {
    pub(super) fn new(key: &'a [u8], chunk: u32, row: u32) -> Self {
        let mut b = [0u8; 32];
        let n = key.len().min(32);
        b[..n].copy_from_slice(&key[..n]);
        let word = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        SortEntry {
            prefix: [word(0), word(1), word(2), word(3)],
            key,
            chunk,
            row,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        self.prefix.cmp(&other.prefix).then_with(|| {
            let (a, b) = (self.key.len(), other.key.len());
            if a <= 32 && b <= 32 {
                // Both keys lie within their equal prefixes: the shorter one (zero-padded)
                // is a prefix of the other, so lengths decide without reading the keys.
                a.cmp(&b)
            } else {
                self.key.cmp(other.key)
            }
        })
    }
}

/// Hints the CPU to load a row's bytes into cache (a no-op elsewhere than x86-64).
#[inline]
pub(super) fn prefetch(data: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = data.as_ptr().cast::<i8>();
        // SAFETY: SSE is part of the x86-64 baseline, and a prefetch never dereferences its
        // address (it cannot fault); both addresses lie within or just past `data`.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            if data.len() > 64 {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Position of a sorted row; the top bit of `chunk` marks a row whose key equals the
/// previous row's (dropped when `distinct`).
#[derive(Clone, Copy)]
pub(super) struct Entry {
    pub(super) chunk: u32,
    pub(super) row: u32,
}

pub(super) const DUPLICATE: u32 = 1 << 31;

impl Entry {
    pub(super) fn chunk(self) -> usize {
        (self.chunk & !DUPLICATE) as usize
    }
    pub(super) fn row(self) -> usize {
        self.row as usize
    }
    pub(super) fn duplicate(self) -> bool {
        self.chunk & DUPLICATE != 0
    }
}

/// A sorted buffer ready to be emitted in order.
pub(super) struct SortedBuffer {
    pub(super) layout: Arc<RowLayout>,
    pub(super) chunks: Arc<Vec<RowChunk>>,
    pub(super) order: Vec<Entry>,
    pub(super) at: usize,
    pub(super) batch_rows: usize,
    pub(super) distinct: bool,
    pub(super) on_duplicates: Option<DuplicateSink>,
    /// Rows whose key equals the previous row's.
    pub(super) duplicates: usize,
}

impl SortedBuffer {
    /// Splits into the first and second half of the order (two sorted key ranges).
    pub(super) fn split(self) -> (SortedBuffer, SortedBuffer) {
        let mut first = self.order;
        let second = first.split_off(first.len() / 2);
        let half = |order| SortedBuffer {
            layout: self.layout.clone(),
            chunks: self.chunks.clone(),
            order,
            at: 0,
            batch_rows: self.batch_rows,
            distinct: self.distinct,
            on_duplicates: self.on_duplicates.clone(),
            duplicates: 0,
        };
        (half(first), half(second))
    }

    /// The next rows to emit, in order; with `distinct`, the rows skipped go to the
    /// duplicates sink.
    pub(super) fn select(&mut self) -> Result<Vec<Entry>> {
        let mut out = Vec::with_capacity(self.batch_rows.min(self.order.len() - self.at));
        let mut dropped = Vec::new();
        while out.len() < self.batch_rows && self.at < self.order.len() {
            let e = self.order[self.at];
            self.at += 1;
            if !(self.distinct && e.duplicate()) {
                out.push(e);
            } else if self.on_duplicates.is_some() {
                dropped.push(e);
                if dropped.len() >= self.batch_rows {
                    self.report_dropped(&std::mem::take(&mut dropped))?;
                }
            }
        }
        self.report_dropped(&dropped)?;
        Ok(out)
    }

    pub(super) fn report_dropped(&self, dropped: &[Entry]) -> Result<()> {
        if let Some(sink) = &self.on_duplicates
            && !dropped.is_empty()
        {
            let (keys, payload) = self.rows(dropped);
            sink(&self.layout.decode(keys, payload)?);
        }
        Ok(())
    }

    /// The key rows and (if the layout has one) the payload rows of `selected`.
    pub(super) fn rows(&self, selected: &[Entry]) -> (Vec<Row<'_>>, Option<Vec<Row<'_>>>) {
        let chunks = &self.chunks;
        let keys = selected
            .iter()
            .map(|&e| chunks[e.chunk()].keys.row(e.row()))
            .collect();
        let payload = self.layout.payload_conv.as_ref().map(|_| {
            selected
                .iter()
                .map(|&e| {
                    chunks[e.chunk()]
                        .payload
                        .as_ref()
                        .expect("payload rows")
                        .row(e.row())
                })
                .collect()
        });
        (keys, payload)
    }

    /// Bytes of row data the buffer holds.
    pub(super) fn bytes(&self) -> usize {
        chunk_bytes(&self.chunks)
    }

    pub(super) fn next_chunk(&mut self) -> Option<Result<RowChunk>> {
        let selected = match self.select() {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        if selected.is_empty() {
            self.chunks = Arc::default();
            return None;
        }
        // The rows sit at random places of the buffer: find them all first, then copy them
        // while prefetching the ones a few rows ahead.
        let (keys, payload) = self.rows(&selected);
        let bytes = |rows: &[Row<'_>]| rows.iter().map(|r| r.data().len()).sum::<usize>();
        let mut out = self.layout.empty_chunk(
            keys.len(),
            bytes(&keys),
            payload.as_deref().map_or(0, bytes),
        );
        const AHEAD: usize = 16;
        for (i, &key) in keys.iter().enumerate() {
            if let Some(r) = keys.get(i + AHEAD) {
                prefetch(r.data());
            }
            out.keys.push(key);
            if let (Some(rows), Some(p)) = (payload.as_ref(), out.payload.as_mut()) {
                if let Some(r) = rows.get(i + AHEAD) {
                    prefetch(r.data());
                }
                p.push(rows[i]);
            }
        }
        Some(Ok(out))
    }

    /// The next batch, and for each row whether its key equals the previous row's.
    pub(super) fn next_batch(&mut self) -> Option<Result<(RecordBatch, Vec<bool>)>> {
        let selected = match self.select() {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        if selected.is_empty() {
            self.chunks = Arc::default();
            return None;
        }
        let (keys, payload) = self.rows(&selected);
        let continues = selected.iter().map(|e| e.duplicate()).collect();
        Some(self.layout.decode(keys, payload).map(|b| (b, continues)))
    }
}

impl Iterator for SortedBuffer {
    type Item = Result<RowChunk>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk()
    }
}

/// A sorted buffer emitted as batches.
pub(super) struct SortedBatches(pub(super) SortedBuffer);

impl Iterator for SortedBatches {
    type Item = Result<(RecordBatch, Vec<bool>)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_batch()
    }
}

/// Bytes of row data in `chunks`.
pub(super) fn chunk_bytes(chunks: &[RowChunk]) -> usize {
    chunks.iter().map(RowChunk::size).sum()
}

/// Sorts buffered rows by their key.
pub(super) fn sort_chunks(
    layout: &Arc<RowLayout>,
    chunks: Vec<RowChunk>,
    batch_rows: usize,
    dedup: Dedup,
) -> SortedBuffer {
    let n: usize = chunks.iter().map(RowChunk::num_rows).sum();
    let mut keyed = Vec::with_capacity(n);
    for (ci, c) in chunks.iter().enumerate() {
        keyed.extend(
            c.keys
                .iter()
                .enumerate()
                .map(|(r, key)| SortEntry::new(key.data(), ci as u32, r as u32)),
        );
    }
    let order = parallel_sort(keyed);
    let duplicates = order.iter().filter(|e| e.duplicate()).count();
    SortedBuffer {
        layout: layout.clone(),
        chunks: Arc::new(chunks),
        order,
        at: 0,
        batch_rows,
        distinct: dedup.distinct,
        on_duplicates: dedup.on_duplicates,
        duplicates,
    }
}

/// Whether equal rows are dropped, and where they go.
#[derive(Clone)]
pub(super) struct Dedup {
    pub(super) distinct: bool,
    pub(super) on_duplicates: Option<DuplicateSink>,
}

/// Sorts entries by key, in two halves on two threads for large inputs, merging the halves
/// straight into the row positions (marking rows whose key repeats the previous one).
pub(super) fn parallel_sort<'a>(mut keyed: Vec<SortEntry<'a>>) -> Vec<Entry> {
    const PARALLEL_FROM: usize = 64 * 1024;
    let mut order = Vec::with_capacity(keyed.len());
    let mut prev: Option<SortEntry<'a>> = None;
    let mut emit = |e: &SortEntry<'a>| {
        let dup = prev.is_some_and(|p| p.cmp(e).is_eq());
        prev = Some(*e);
        order.push(Entry {
            chunk: e.chunk | if dup { DUPLICATE } else { 0 },
            row: e.row,
        });
    };
    if keyed.len() < PARALLEL_FROM {
        keyed.sort_unstable_by(SortEntry::cmp);
        keyed.iter().for_each(emit);
        return order;
    }
    let mid = keyed.len() / 2;
    let (left, right) = keyed.split_at_mut(mid);
    std::thread::scope(|scope| {
        scope.spawn(|| left.sort_unstable_by(SortEntry::cmp));
        right.sort_unstable_by(SortEntry::cmp);
    });
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if right[j].cmp(&left[i]).is_lt() {
            emit(&right[j]);
            j += 1;
        } else {
            emit(&left[i]);
            i += 1;
        }
    }
    left[i..].iter().for_each(&mut emit);
    right[j..].iter().for_each(&mut emit);
    order
}
