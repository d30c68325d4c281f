//! Streaming operators: a pipeline stage is an immutable description (a [`BatchTransform`])
//! driven by a stateful [`TransformStream`], each recording baseline metrics (rows in, rows
//! out, compute time) in the subtask's [`PlanMetrics`].
//!
//! Batches flow as `Stream<Item = Result<RecordBatch>>`; nothing here buffers more than the
//! batch in hand plus what a transform chooses to carry.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::array::RecordBatch;
use futures::Stream;
use futures::stream::BoxStream;

use crate::error::Result;

/// A stream of record batches.
pub type BatchStream = BoxStream<'static, Result<RecordBatch>>;

/// Rows and compute time of one stage.
#[derive(Debug, Default)]
pub struct BaselineMetrics {
    pub name: String,
    pub input_rows: AtomicU64,
    pub output_rows: AtomicU64,
    pub elapsed_compute_nanos: AtomicU64,
}

impl BaselineMetrics {
    pub fn add_input(&self, rows: usize) {
        self.input_rows.fetch_add(rows as u64, Ordering::Relaxed);
    }
    pub fn add_output(&self, rows: usize) {
        self.output_rows.fetch_add(rows as u64, Ordering::Relaxed);
    }
    pub fn add_elapsed(&self, since: Instant) {
        self.elapsed_compute_nanos
            .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
    pub fn output(&self) -> u64 {
        self.output_rows.load(Ordering::Relaxed)
    }
}

/// The metrics of every stage of one subtask, in pipeline order.
#[derive(Clone, Debug, Default)]
pub struct PlanMetrics {
    stages: Arc<Mutex<Vec<Arc<BaselineMetrics>>>>,
}

impl PlanMetrics {
    /// Registers a stage and returns its metrics.
    pub fn stage(&self, name: &str) -> Arc<BaselineMetrics> {
        let m = Arc::new(BaselineMetrics {
            name: name.to_string(),
            ..BaselineMetrics::default()
        });
        self.stages.lock().expect("metrics lock").push(m.clone());
        m
    }

    /// `name: in → out rows, ms` for each stage, for the log.
    pub fn summary(&self) -> String {
        self.stages
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|m| {
                format!(
                    "{}: {}→{} rows {}ms",
                    m.name,
                    m.input_rows.load(Ordering::Relaxed),
                    m.output_rows.load(Ordering::Relaxed),
                    m.elapsed_compute_nanos.load(Ordering::Relaxed) / 1_000_000
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A per-batch stage. It may drop a batch (return `None`) and may carry state to emit at
/// the end of the input.
pub trait BatchTransform: Send {
    fn apply(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>>;

    /// Called once after the last input batch.
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        Ok(None)
    }
}

/// Drives a [`BatchTransform`] over an input stream.
pub struct TransformStream {
    input: BatchStream,
    node: Box<dyn BatchTransform>,
    metrics: Arc<BaselineMetrics>,
    finished: bool,
}

impl TransformStream {
    pub fn boxed(
        input: BatchStream,
        node: impl BatchTransform + 'static,
        metrics: Arc<BaselineMetrics>,
    ) -> BatchStream {
        Box::pin(TransformStream {
            input,
            node: Box::new(node),
            metrics,
            finished: false,
        })
    }
}

impl Stream for TransformStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            match this.input.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(batch))) => {
                    let start = Instant::now();
                    this.metrics.add_input(batch.num_rows());
                    let out = this.node.apply(batch);
                    this.metrics.add_elapsed(start);
                    match out {
                        Ok(Some(b)) if b.num_rows() > 0 => {
                            this.metrics.add_output(b.num_rows());
                            return Poll::Ready(Some(Ok(b)));
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            this.finished = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    let start = Instant::now();
                    let out = this.node.finish();
                    this.metrics.add_elapsed(start);
                    return match out {
                        Ok(Some(b)) if b.num_rows() > 0 => {
                            this.metrics.add_output(b.num_rows());
                            Poll::Ready(Some(Ok(b)))
                        }
                        Ok(_) => Poll::Ready(None),
                        Err(e) => Poll::Ready(Some(Err(e))),
                    };
                }
            }
        }
    }
}
