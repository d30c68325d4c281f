//! K-way merge of sorted runs of encoded rows: a binary heap of run cursors ordered by their
//! current row's key bytes. Output rows are copied (or decoded to Arrow) straight from the
//! runs' chunks; keys are never re-encoded.
//!
//! Memory: one chunk per run, plus the chunks referenced by the output being assembled.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_row::Row;

use super::rows::{RowChunk, RowLayout};
use crate::error::Result;

/// A source of sorted batches.
pub type SortedRun = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// A source of sorted row chunks.
pub type RowRun = Box<dyn Iterator<Item = Result<RowChunk>> + Send>;

struct Cursor {
    run: RowRun,
    /// Index of the cursor's current chunk in `Merger::chunks`.
    chunk: usize,
    pos: usize,
    len: usize,
    /// The first 32 bytes of the current row's key (big-endian, zero-padded): settles most
    /// comparisons without looking the key up.
    prefix: [u128; 2],
}

/// The first 32 bytes of a key as big-endian numbers, zero-padded.
fn key_prefix(key: &[u8]) -> [u128; 2] {
    let mut b = [0u8; 32];
    let n = key.len().min(32);
    b[..n].copy_from_slice(&key[..n]);
    let half = |i: usize| u128::from_be_bytes(b[i * 16..i * 16 + 16].try_into().expect("16 bytes"));
    [half(0), half(1)]
}

/// Merges sorted runs into one sorted stream.
pub struct Merger {
    layout: Arc<RowLayout>,
    cursors: Vec<Cursor>,
    /// Min-heap of cursor indices.
    heap: Vec<usize>,
    chunks: Vec<RowChunk>,
    out: Vec<(u32, u32)>,
    batch_rows: usize,
    /// Drop rows whose key equals the previous output row's key.
    distinct: bool,
    /// Where dropped rows go, and the rows dropped since the last report.
    on_duplicates: Option<super::DuplicateSink>,
    dropped: Vec<(u32, u32)>,
    /// Record for each output row whether its key equals the previous output row's.
    groups: bool,
    /// Per selected row: same key as the previous output row (with `groups`).
    continues: Vec<bool>,
    /// The previous row taken (chunk, position), while its chunk is held.
    prev: Option<(usize, usize)>,
    /// The key of the previous row taken, once its chunk may have been released.
    last: Option<Vec<u8>>,
}

impl Merger {
    pub fn new(
        layout: Arc<RowLayout>,
        runs: Vec<RowRun>,
        batch_rows: usize,
        distinct: bool,
        groups: bool,
    ) -> Result<Self> {
        let mut m = Merger {
            layout,
            cursors: Vec::new(),
            heap: Vec::new(),
            chunks: Vec::new(),
            out: Vec::new(),
            batch_rows: batch_rows.max(1),
            distinct,
            on_duplicates: None,
            dropped: Vec::new(),
            groups,
            continues: Vec::new(),
            prev: None,
            last: None,
        };
        for mut run in runs {
            if let Some(chunk) = next_nonempty(&mut run)? {
                let len = chunk.num_rows();
                let prefix = key_prefix(chunk.keys.row(0).data());
                m.chunks.push(chunk);
                m.cursors.push(Cursor {
                    run,
                    chunk: m.chunks.len() - 1,
                    pos: 0,
                    len,
                    prefix,
                });
                m.heap.push(m.cursors.len() - 1);
            }
        }
        for i in (0..m.heap.len()).rev() {
            m.sift_down(i);
        }
        Ok(m)
    }

    /// Hands the rows `distinct` drops to `sink`.
    pub fn on_duplicates(mut self, sink: Option<super::DuplicateSink>) -> Self {
        self.on_duplicates = sink;
        self
    }

    /// Reports the rows dropped since the last report (their chunks are still held).
    fn report_dropped(&mut self) -> Result<()> {
        if let Some(sink) = &self.on_duplicates
            && !self.dropped.is_empty()
        {
            let (keys, payload) = self.rows_at(&self.dropped);
            sink(&self.layout.decode(keys, payload)?);
        }
        self.dropped.clear();
        Ok(())
    }

    fn key(&self, cursor: usize) -> &[u8] {
        let c = &self.cursors[cursor];
        self.chunks[c.chunk].keys.row(c.pos).data()
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let (pa, pb) = (self.cursors[a].prefix, self.cursors[b].prefix);
        if pa != pb {
            return pa < pb;
        }
        self.key(a) < self.key(b)
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                return;
            }
            let mut smallest = l;
            if l + 1 < n && self.less(self.heap[l + 1], self.heap[l]) {
                smallest = l + 1;
            }
            if self.less(self.heap[smallest], self.heap[i]) {
                self.heap.swap(i, smallest);
                i = smallest;
            } else {
                return;
            }
        }
    }

    /// Selects up to `batch_rows` next rows into `out`; false when every run is exhausted.
    fn fill(&mut self) -> Result<bool> {
        while self.out.len() < self.batch_rows && !self.heap.is_empty() {
            let top = self.heap[0];
            let (chunk, pos) = (self.cursors[top].chunk, self.cursors[top].pos);
            // Whether the key equals the previous output row's (tracked only when needed).
            let same = if self.distinct || self.groups {
                let key = self.chunks[chunk].keys.row(pos).data();
                // Skipped rows equal the last output row, so the previous row taken will do.
                let same = match self.prev {
                    Some((c, p)) => self.chunks[c].keys.row(p).data() == key,
                    None => self.last.as_deref() == Some(key),
                };
                self.prev = Some((chunk, pos));
                same
            } else {
                false
            };
            if !(self.distinct && same) {
                self.out.push((chunk as u32, pos as u32));
                if self.groups {
                    self.continues.push(same);
                }
            } else if self.on_duplicates.is_some() {
                self.dropped.push((chunk as u32, pos as u32));
                if self.dropped.len() >= self.batch_rows {
                    self.report_dropped()?;
                }
            }
            let c = &mut self.cursors[top];
            c.pos += 1;
            if c.pos < c.len {
                c.prefix = key_prefix(self.chunks[c.chunk].keys.row(c.pos).data());
            } else {
                match next_nonempty(&mut c.run)? {
                    Some(next) => {
                        c.len = next.num_rows();
                        c.pos = 0;
                        c.prefix = key_prefix(next.keys.row(0).data());
                        self.chunks.push(next);
                        c.chunk = self.chunks.len() - 1;
                    }
                    None => {
                        let last = self.heap.len() - 1;
                        self.heap.swap(0, last);
                        self.heap.pop();
                    }
                }
            }
            if !self.heap.is_empty() {
                self.sift_down(0);
            }
        }
        // Dropped rows are reported while their chunks are held.
        self.report_dropped()?;
        Ok(!self.out.is_empty())
    }

    /// Forgets the selected rows and the chunks no cursor points into any more.
    fn release(&mut self) {
        self.out.clear();
        self.continues.clear();
        // The previous row's chunk may go: keep a copy of its key for the next comparison.
        if let Some((c, p)) = self.prev.take() {
            let key = self.chunks[c].keys.row(p).data();
            let last = self.last.get_or_insert_with(Vec::new);
            last.clear();
            last.extend_from_slice(key);
        }
        let mut kept = Vec::with_capacity(self.cursors.len());
        let mut old: Vec<Option<RowChunk>> = std::mem::take(&mut self.chunks)
            .into_iter()
            .map(Some)
            .collect();
        for c in &mut self.cursors {
            if c.pos < c.len
                && let Some(chunk) = old[c.chunk].take()
            {
                kept.push(chunk);
                c.chunk = kept.len() - 1;
            }
        }
        self.chunks = kept;
    }

    /// The key rows and (if the layout has one) the payload rows at `(chunk, position)`s.
    fn rows_at(&self, at: &[(u32, u32)]) -> (Vec<Row<'_>>, Option<Vec<Row<'_>>>) {
        let keys = at
            .iter()
            .map(|&(c, p)| self.chunks[c as usize].keys.row(p as usize))
            .collect();
        let payload = self.layout.payload_conv.as_ref().map(|_| {
            at.iter()
                .map(|&(c, p)| {
                    self.chunks[c as usize]
                        .payload
                        .as_ref()
                        .expect("payload rows")
                        .row(p as usize)
                })
                .collect()
        });
        (keys, payload)
    }

    /// The next merged batch, or `None` when every run is exhausted; with `groups`, also
    /// whether each row's key equals the previous row's (across batches too).
    pub fn next_batch(&mut self) -> Result<Option<(RecordBatch, Vec<bool>)>> {
        if !self.fill()? {
            return Ok(None);
        }
        let (keys, payload) = self.rows_at(&self.out);
        let batch = self.layout.decode(keys, payload)?;
        let continues = std::mem::take(&mut self.continues);
        self.release();
        Ok(Some((batch, continues)))
    }

    /// The next merged rows, or `None` when every run is exhausted.
    pub fn next_chunk(&mut self) -> Result<Option<RowChunk>> {
        if !self.fill()? {
            return Ok(None);
        }
        let (keys, payload) = self.rows_at(&self.out);
        let key_bytes = keys.iter().map(|r| r.data().len()).sum();
        let payload_bytes = payload
            .as_ref()
            .map_or(0, |p| p.iter().map(|r| r.data().len()).sum());
        let mut chunk = self
            .layout
            .empty_chunk(keys.len(), key_bytes, payload_bytes);
        for r in keys {
            chunk.keys.push(r);
        }
        if let (Some(rows), Some(out)) = (payload, chunk.payload.as_mut()) {
            for r in rows {
                out.push(r);
            }
        }
        self.release();
        Ok(Some(chunk))
    }
}

fn next_nonempty(run: &mut RowRun) -> Result<Option<RowChunk>> {
    for chunk in run.by_ref() {
        let chunk = chunk?;
        if chunk.num_rows() > 0 {
            return Ok(Some(chunk));
        }
    }
    Ok(None)
}
