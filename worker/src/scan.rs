//! Reading Parquet as streams of table-schema batches: input segments (strict coercion) and
//! Parquet files for ingestion (lenient coercion), with projection to the table's columns and
//! row-group pruning on time-column statistics.
//!
//! Segments are decoded concurrently (`parallelism` at a time) in spawned tasks feeding one
//! bounded channel, so decoding uses every core while memory holds only a few batches.

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::buffer::BooleanBuffer;
use arrow::compute::{cast, filter_record_batch};
use arrow_schema::SchemaRef;
use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use minion_contract::{SegmentRef, TimeWindow};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::ops::Range;
use tokio::sync::{Semaphore, mpsc};

use crate::error::{Result, WorkerError};
use crate::ledger::Ledger;
use crate::store::Location;
use crate::stream::{BaselineMetrics, BatchStream};
use crate::table::{CoerceMode, Coercion};
use crate::time::TimeColumn;

/// What to read and how.
#[derive(Clone)]
pub struct ScanConfig {
    pub table_arrow: SchemaRef,
    pub time: TimeColumn,
    /// Skip row groups entirely outside this window.
    pub window: Option<TimeWindow>,
    pub batch_size: usize,
    pub parallelism: usize,
    pub mode: CoerceMode,
    /// Counts the segments' rows (footers), the rows of row groups skipped for the window and
    /// the rows invalidated by upsert masks; `None` for reads that are not the subtask's input.
    pub ledger: Option<Arc<Ledger>>,
    /// Nullable table columns not read at all: they come out null (columns the subtask
    /// erases before anything looks at them).
    pub unread: Vec<String>,
}

/// One Parquet file to read, with an optional mask of rows to keep (upsert validity).
#[derive(Clone)]
pub struct ParquetInput {
    pub path: object_store::path::Path,
    pub uri: String,
    pub size: Option<u64>,
    pub keep: Option<Arc<BooleanBuffer>>,
    /// A committed segment of a table (its corruption is `CorruptSegment`), not a file being
    /// ingested (`CorruptInput`).
    pub segment: bool,
}

impl ParquetInput {
    pub fn segment(
        location: &Location,
        seg: &SegmentRef,
        keep: Option<Arc<BooleanBuffer>>,
    ) -> Self {
        ParquetInput {
            path: location.child(&seg.path),
            uri: location.child_uri(&seg.path),
            size: (seg.bytes > 0).then_some(seg.bytes),
            keep,
            segment: true,
        }
    }
}

/// Opens one Parquet file and returns its batches coerced to the table schema.
///
/// # Errors
/// `CorruptInput` (not Parquet), `MissingInput`, `StoreUnreachable`, `SchemaMismatch`.
pub async fn open_parquet(
    location: &Location,
    input: &ParquetInput,
    config: &ScanConfig,
) -> Result<BatchStream> {
    let reader = StoreReader {
        store: location.store.clone(),
        path: input.path.clone(),
        size: input.size,
    };
    let segment = input.segment;
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| WorkerError::from_parquet(&input.uri, e).of_input(segment))?;
    let file_schema = builder.schema().clone();
    let wanted: Vec<usize> = (0..file_schema.fields().len())
        .filter(|&i| {
            let name = file_schema.field(i).name();
            config.table_arrow.index_of(name).is_ok() && !config.unread.contains(name)
        })
        .collect();
    let projected = file_schema.project(&wanted)?;
    let coercion = Coercion::plan(
        &projected,
        config.table_arrow.clone(),
        config.mode,
        &input.uri,
    )?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());

    let mut row_groups: Vec<usize> = (0..builder.metadata().num_row_groups()).collect();
    if let (Some(window), None) = (&config.window, &input.keep) {
        let time_name = config.table_arrow.field(config.time.index).name();
        if file_schema.index_of(time_name).is_ok() {
            let (lo, hi) = config.time.window_bounds(window);
            let stats =
                StatisticsConverter::try_new(time_name, &file_schema, builder.parquet_schema())
                    .and_then(|conv| {
                        let groups = builder.metadata().row_groups();
                        Ok((
                            conv.row_group_mins(groups.iter())?,
                            conv.row_group_maxes(groups.iter())?,
                        ))
                    });
            if let Ok((mins, maxs)) = stats {
                // Statistics that do not read as times (a value off the pattern) prune nothing.
                let to_raw = |a: &arrow::array::ArrayRef| -> Option<arrow::array::Int64Array> {
                    config.time.raw(&cast(a, &config.time.data_type).ok()?).ok()
                };
                if let (Some(mins), Some(maxs)) = (to_raw(&mins), to_raw(&maxs)) {
                    row_groups.retain(|&g| {
                        mins.is_null(g)
                            || maxs.is_null(g)
                            || (mins.value(g) < hi && maxs.value(g) >= lo)
                    });
                }
            }
        }
    }
    if let Some(ledger) = &config.ledger {
        let groups = builder.metadata().row_groups();
        let total: i64 = groups.iter().map(|g| g.num_rows()).sum();
        let skipped: i64 = total
            - row_groups
                .iter()
                .map(|&g| groups[g].num_rows())
                .sum::<i64>();
        ledger
            .source_rows
            .fetch_add(total as u64, AtomicOrdering::Relaxed);
        ledger
            .outside_window_rows
            .fetch_add(skipped as u64, AtomicOrdering::Relaxed);
    }
    let uri = input.uri.clone();
    let stream = builder
        .with_projection(mask)
        .with_row_groups(row_groups)
        .with_batch_size(config.batch_size)
        .build()
        .map_err(|e| WorkerError::from_parquet(&uri, e).of_input(segment))?;
    let stream = stream.map(move |b| {
        let b = b.map_err(|e| WorkerError::from_parquet(&uri, e).of_input(segment))?;
        coercion.apply(&b)
    });
    Ok(stream.boxed())
}

/// Keeps only the rows `keep` marks (upsert validity), counting rows by position, and the
/// rows dropped in the ledger.
fn apply_keep(
    stream: BatchStream,
    keep: Option<Arc<BooleanBuffer>>,
    uri: String,
    ledger: Option<Arc<Ledger>>,
) -> BatchStream {
    let Some(mask) = keep else {
        return stream;
    };
    let mut offset = 0usize;
    stream
        .map(move |b| {
            let b = b?;
            let n = b.num_rows();
            if offset + n > mask.len() {
                return Err(WorkerError::internal(format!(
                    "validity of {uri} covers fewer rows than the segment has"
                )));
            }
            let slice = mask.slice(offset, n);
            offset += n;
            let kept = filter_record_batch(&b, &BooleanArray::new(slice, None))?;
            if let Some(ledger) = &ledger {
                ledger
                    .invalidated_rows
                    .fetch_add((n - kept.num_rows()) as u64, AtomicOrdering::Relaxed);
            }
            Ok(kept)
        })
        .boxed()
}

/// Reads many Parquet inputs concurrently into one stream of table batches.
pub fn scan(
    location: Location,
    inputs: Vec<ParquetInput>,
    config: ScanConfig,
    metrics: Arc<BaselineMetrics>,
) -> BatchStream {
    let (tx, rx) = mpsc::channel::<Result<RecordBatch>>(config.parallelism.max(1) * 2);
    let permits = Arc::new(Semaphore::new(config.parallelism.max(1)));
    tokio::spawn(async move {
        for input in inputs {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            if tx.is_closed() {
                return;
            }
            let (tx, location, config, metrics) = (
                tx.clone(),
                location.clone(),
                config.clone(),
                metrics.clone(),
            );
            tokio::spawn(async move {
                let _permit = permit;
                tracing::debug!(segment = %input.uri, "reading");
                match open_parquet(&location, &input, &config).await {
                    Ok(stream) => {
                        let counted = stream.inspect(move |b| {
                            if let Ok(b) = b {
                                metrics.add_output(b.num_rows());
                            }
                        });
                        let mut stream = apply_keep(
                            counted.boxed(),
                            input.keep.clone(),
                            input.uri.clone(),
                            config.ledger.clone(),
                        );
                        while let Some(b) = stream.next().await {
                            let failed = b.is_err();
                            if tx.send(b).await.is_err() || failed {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                    }
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }).boxed()
}

/// The rows a Parquet file's footer says it holds (reads only the footer).
///
/// # Errors
/// The file cannot be read or is not Parquet (naming `uri`).
pub async fn footer_rows(
    location: &Location,
    path: &object_store::path::Path,
    size: u64,
    uri: &str,
) -> Result<u64> {
    let mut reader = StoreReader {
        store: location.store.clone(),
        path: path.clone(),
        size: Some(size),
    };
    let metadata = reader
        .get_metadata(None)
        .await
        .map_err(|e| WorkerError::from_parquet(uri, e))?;
    Ok(metadata.file_metadata().num_rows().max(0) as u64)
}

/// Reads an input's Parquet footer (its metadata) without decoding any row.
///
/// # Errors
/// `CorruptSegment` or `CorruptInput` when the footer cannot be read as Parquet (truncated
/// file, bad magic, a footer reaching past the end), `MissingInput`, `StoreUnreachable`.
pub async fn check_footer(location: &Location, input: &ParquetInput) -> Result<()> {
    let mut reader = StoreReader {
        store: location.store.clone(),
        path: input.path.clone(),
        size: input.size,
    };
    reader
        .get_metadata(None)
        .await
        .map_err(|e| WorkerError::from_parquet(&input.uri, e).of_input(input.segment))?;
    Ok(())
}

/// Reads a Parquet file's byte ranges and footer from an object store.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    size: Option<u64>,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl StoreReader {
    /// A failed read that asked for bytes up to `end`: when the file is shorter than that (the
    /// footer or a page points past its end, or the catalog's size is larger than the file),
    /// the file is truncated or corrupt — not the store unreachable. Otherwise the store's
    /// own error.
    async fn range_error(&self, e: object_store::Error, end: u64) -> ParquetError {
        if matches!(e, object_store::Error::NotFound { .. }) {
            return external(e);
        }
        match self.store.head(&self.path).await {
            Ok(meta) if end > meta.size => {
                let expected = self
                    .size
                    .filter(|&s| s != meta.size)
                    .map(|s| format!(" (the catalog says {s} bytes)"))
                    .unwrap_or_default();
                ParquetError::General(format!(
                    "truncated or corrupt: bytes up to {end} were needed, the file holds {}{expected}",
                    meta.size
                ))
            }
            _ => external(e),
        }
    }
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        async move {
            match self.store.get_range(&self.path, range.clone()).await {
                Ok(b) => Ok(b),
                Err(e) => Err(self.range_error(e, range.end).await),
            }
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        async move {
            match self.store.get_ranges(&self.path, &ranges).await {
                Ok(b) => Ok(b),
                Err(e) => {
                    let end = ranges.iter().map(|r| r.end).max().unwrap_or(0);
                    Err(self.range_error(e, end).await)
                }
            }
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = match self.size {
                Some(size) => size,
                None => self.store.head(&self.path).await.map_err(external)?.size,
            };
            let reader = ParquetMetaDataReader::new()
                .with_metadata_options(options.map(|o| o.metadata_options().clone()))
                .with_prefetch_hint(Some(64 * 1024));
            Ok(Arc::new(reader.load_and_finish(self, size).await?))
        }
        .boxed()
    }
}
