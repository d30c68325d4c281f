//! K-way merge of sorted runs: a binary heap of run cursors ordered by their current row's
//! key (Arrow row format), emitting output batches with `interleave`.
//!
//! Memory: one batch (plus its encoded keys) per run, plus the batches referenced by the
//! output batch being assembled.

use arrow::array::{ArrayRef, RecordBatch};
use arrow_row::{RowConverter, Rows};
use arrow_schema::SchemaRef;
use arrow_select::interleave::interleave_record_batch;

use crate::error::Result;

/// A source of sorted batches.
pub type SortedRun = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

struct Cursor {
    run: SortedRun,
    rows: Rows,
    /// Index of the cursor's current batch in `Merger::batches`.
    batch: usize,
    pos: usize,
    len: usize,
}

/// Merges sorted runs into one sorted stream of batches.
pub struct Merger {
    converter: RowConverter,
    keys: Vec<usize>,
    cursors: Vec<Cursor>,
    /// Min-heap of cursor indices.
    heap: Vec<usize>,
    batches: Vec<RecordBatch>,
    out: Vec<(usize, usize)>,
    batch_size: usize,
    schema: SchemaRef,
}

impl Merger {
    pub fn new(
        converter: RowConverter,
        keys: Vec<usize>,
        schema: SchemaRef,
        runs: Vec<SortedRun>,
        batch_size: usize,
    ) -> Result<Self> {
        let mut m = Merger {
            converter,
            keys,
            cursors: Vec::new(),
            heap: Vec::new(),
            batches: Vec::new(),
            out: Vec::new(),
            batch_size,
            schema,
        };
        for mut run in runs {
            if let Some((batch, rows)) = m.next_nonempty(&mut run)? {
                let len = batch.num_rows();
                m.batches.push(batch);
                m.cursors.push(Cursor {
                    run,
                    rows,
                    batch: m.batches.len() - 1,
                    pos: 0,
                    len,
                });
                m.heap.push(m.cursors.len() - 1);
            }
        }
        for i in (0..m.heap.len()).rev() {
            m.sift_down(i);
        }
        Ok(m)
    }

    fn next_nonempty(&self, run: &mut SortedRun) -> Result<Option<(RecordBatch, Rows)>> {
        for batch in run.by_ref() {
            let batch = batch?;
            if batch.num_rows() > 0 {
                let cols: Vec<ArrayRef> =
                    self.keys.iter().map(|&k| batch.column(k).clone()).collect();
                let rows = self.converter.convert_columns(&cols)?;
                return Ok(Some((batch, rows)));
            }
        }
        Ok(None)
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let (ca, cb) = (&self.cursors[a], &self.cursors[b]);
        ca.rows.row(ca.pos) < cb.rows.row(cb.pos)
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

    fn flush(&mut self) -> Result<RecordBatch> {
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        let out = interleave_record_batch(&refs, &self.out)?;
        self.out.clear();
        // Keep only the batches cursors still point into.
        let mut kept = Vec::with_capacity(self.cursors.len());
        for c in &mut self.cursors {
            if c.pos < c.len {
                kept.push(self.batches[c.batch].clone());
                c.batch = kept.len() - 1;
            }
        }
        self.batches = kept;
        Ok(out)
    }

    /// The next merged batch, or `None` when every run is exhausted.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while self.out.len() < self.batch_size && !self.heap.is_empty() {
            let top = self.heap[0];
            let c = &mut self.cursors[top];
            self.out.push((c.batch, c.pos));
            c.pos += 1;
            if c.pos == c.len {
                let mut run = std::mem::replace(&mut c.run, Box::new(std::iter::empty()));
                let next = self.next_nonempty(&mut run)?;
                let c = &mut self.cursors[top];
                c.run = run;
                match next {
                    Some((batch, rows)) => {
                        c.len = batch.num_rows();
                        c.rows = rows;
                        c.pos = 0;
                        self.batches.push(batch);
                        c.batch = self.batches.len() - 1;
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
        if self.out.is_empty() {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl Iterator for Merger {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}
