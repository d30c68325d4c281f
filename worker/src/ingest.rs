//! File ingestion: CSV (with a header row), JSON lines and Parquet files of any layout,
//! streamed from their object store and coerced to the table schema (missing nullable columns
//! become null, missing non-nullable columns and values that do not convert are errors, extra
//! columns are ignored).
//!
//! A file that fails to *initialise* — cannot be opened, has no valid header or footer, or
//! fails before its first batch — is skipped and reported when
//! `skipFileIfFailToInitReader` is set, and fails the subtask naming the file otherwise.
//! Errors later in a file always fail the subtask (its rows may already be in the output).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use arrow::array::RecordBatch;
use arrow::csv::reader::Format;
use arrow::error::ArrowError;
use arrow_schema::{Field, Schema, SchemaRef};
use futures::{Stream, StreamExt};
use minion_contract::segment::{TAG_SOURCE_FILE, TAG_SOURCE_FILE_VERSION};
use minion_contract::{FileFormat, InputFile, SegmentRef, SkippedFile, SubtaskSpec};
use object_store::ObjectStoreExt;

use crate::error::{Result, WorkerError, one_line};
use crate::run::{InputSize, Pipeline, RunOptions, progress, skipped};
use crate::scan::{ParquetInput, ScanConfig, open_parquet};
use crate::store::resolve_file;
use crate::stream::{BaselineMetrics, BatchStream};
use crate::table::{CoerceMode, Coercion};

/// What ingestion produced.
pub(crate) struct Ingested {
    pub input_rows: u64,
    pub outputs: Vec<SegmentRef>,
    pub ingested: Vec<String>,
    pub skipped: Vec<SkippedFile>,
}

/// Ingests the spec's input files through `pipeline`.
pub(crate) async fn ingest(
    spec: &SubtaskSpec,
    pipeline: &Pipeline,
    options: &RunOptions,
) -> Result<Ingested> {
    let skip = spec.processing.skip_file_if_fail_to_init_reader;
    let read = pipeline.metrics.stage("scan");
    let table = pipeline.plan.table_arrow.clone();
    let mut result = Ingested {
        input_rows: 0,
        outputs: Vec::new(),
        ingested: Vec::new(),
        skipped: Vec::new(),
    };
    if spec.output.segment_per_input_file {
        for file in &spec.input_files {
            match open_file(file, &table, options, &read).await {
                Ok(stream) => {
                    let mut tags = BTreeMap::new();
                    tags.insert(TAG_SOURCE_FILE.to_string(), file.uri.clone());
                    if let Some(v) = &file.version {
                        tags.insert(TAG_SOURCE_FILE_VERSION.to_string(), v.clone());
                    }
                    let writer = pipeline
                        .run(progress(stream), tags, InputSize::default())
                        .await?;
                    result.outputs.extend(writer.outputs);
                    result.ingested.push(file.uri.clone());
                }
                Err(e) if skip => {
                    tracing::warn!(file = %file.uri, error = %e, "skipping a file that cannot be read");
                    result.skipped.push(skipped(&file.uri, &e));
                }
                Err(e) => return Err(e),
            }
        }
    } else {
        let skipped_files = Arc::new(Mutex::new(Vec::new()));
        let ingested = Arc::new(Mutex::new(Vec::new()));
        let files = spec.input_files.clone();
        let (skipped2, ingested2, options2, read2) = (
            skipped_files.clone(),
            ingested.clone(),
            options.clone(),
            read.clone(),
        );
        // Files are opened one after another as the pipeline reaches them.
        let opened = futures::stream::iter(files).then(move |file| {
            let (table, options, read) = (table.clone(), options2.clone(), read2.clone());
            let (skipped_list, ingested) = (skipped2.clone(), ingested2.clone());
            async move {
                match open_file(&file, &table, &options, &read).await {
                    Ok(stream) => {
                        ingested.lock().expect("lock").push(file.uri.clone());
                        stream
                    }
                    Err(e) if skip => {
                        tracing::warn!(file = %file.uri, error = %e, "skipping a file that cannot be read");
                        skipped_list.lock().expect("lock").push(skipped(&file.uri, &e));
                        futures::stream::empty().boxed()
                    }
                    Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
                }
            }
        });
        let writer = pipeline
            .run(
                progress(opened.flatten().boxed()),
                BTreeMap::new(),
                InputSize::default(),
            )
            .await?;
        result.outputs = writer.outputs;
        result.ingested = std::mem::take(&mut *ingested.lock().expect("lock"));
        result.skipped = std::mem::take(&mut *skipped_files.lock().expect("lock"));
    }
    result.input_rows = read.output();
    Ok(result)
}

/// Opens a file and reads up to its first batch (its initialisation).
pub(crate) async fn open_file(
    file: &InputFile,
    table: &SchemaRef,
    options: &RunOptions,
    read: &Arc<BaselineMetrics>,
) -> Result<BatchStream> {
    let mut stream = match file.format {
        FileFormat::Parquet => {
            let (location, path) = resolve_file(&file.uri)?;
            let input = ParquetInput {
                path,
                uri: file.uri.clone(),
                size: (file.bytes > 0).then_some(file.bytes),
                keep: None,
                segment: false,
            };
            let config = ScanConfig {
                unread: Vec::new(),
                table_arrow: table.clone(),
                time: crate::time::TimeColumn::unused(),
                window: None,
                batch_size: options.batch_size,
                parallelism: 1,
                mode: CoerceMode::Lenient,
                ledger: None,
            };
            open_parquet(&location, &input, &config).await?
        }
        FileFormat::Csv | FileFormat::Json => open_text(file, table, options.batch_size).await?,
    };
    let first = stream.next().await;
    if let Some(Err(e)) = first {
        return Err(e);
    }
    let read = read.clone();
    Ok(futures::stream::iter(first)
        .chain(stream)
        .inspect(move |b| {
            if let Ok(b) = b {
                read.add_output(b.num_rows());
            }
        })
        .boxed())
}

/// Longest CSV header line read: a file without a newline in its first 1 MiB has no header
/// row a person wrote, and is refused rather than read whole into memory.
pub const MAX_CSV_HEADER_BYTES: usize = 1 << 20;

enum TextDecoder {
    Csv(Box<arrow::csv::reader::Decoder>),
    Json(arrow::json::reader::Decoder),
}

async fn open_text(file: &InputFile, table: &SchemaRef, batch_size: usize) -> Result<BatchStream> {
    let uri = file.uri.clone();
    let (location, path) = resolve_file(&uri)?;
    let got = location
        .store
        .get(&path)
        .await
        .map_err(|e| WorkerError::from_store(&uri, e))?;
    let mut bytes = got.into_stream();
    let corrupt = |uri: &str, e: ArrowError| WorkerError::CorruptInput {
        file: uri.to_string(),
        message: one_line(&e.to_string()),
    };
    let mut pending = Vec::new();
    let (decoder, coercion) = match file.format {
        FileFormat::Csv => {
            // The header line names the columns.
            while !pending.contains(&b'\n') {
                if pending.len() > MAX_CSV_HEADER_BYTES {
                    return Err(WorkerError::CorruptInput {
                        file: uri,
                        message: format!(
                            "no end of the header row in the first {} bytes (is this a CSV file with a header row?)",
                            MAX_CSV_HEADER_BYTES
                        ),
                    });
                }
                match bytes.next().await {
                    Some(chunk) => pending
                        .extend_from_slice(&chunk.map_err(|e| WorkerError::from_store(&uri, e))?),
                    None => break,
                }
            }
            let header_end = pending
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(pending.len());
            if header_end == 0 {
                return Err(WorkerError::CorruptInput {
                    file: uri,
                    message: "no header row".into(),
                });
            }
            let (header, _) = Format::default()
                .with_header(true)
                .infer_schema(&pending[..header_end], Some(0))
                .map_err(|e| corrupt(&uri, e))?;
            let read_schema = Arc::new(Schema::new(
                header
                    .fields()
                    .iter()
                    .map(|f| match table.field_with_name(f.name()) {
                        Ok(t) => Field::new(f.name(), t.data_type().clone(), true),
                        Err(_) => Field::new(f.name(), arrow_schema::DataType::Utf8, true),
                    })
                    .collect::<Vec<_>>(),
            ));
            let coercion = Coercion::plan(&read_schema, table.clone(), CoerceMode::Lenient, &uri)?;
            let decoder = arrow::csv::ReaderBuilder::new(read_schema)
                .with_header(true)
                .with_batch_size(batch_size)
                .build_decoder();
            (TextDecoder::Csv(Box::new(decoder)), coercion)
        }
        _ => {
            let read_schema = Arc::new(Schema::new(
                table
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            ));
            let coercion = Coercion::plan(&read_schema, table.clone(), CoerceMode::Lenient, &uri)?;
            let decoder = arrow::json::ReaderBuilder::new(read_schema)
                .with_batch_size(batch_size)
                .with_coerce_primitive(true)
                .build_decoder()
                .map_err(|e| corrupt(&uri, e))?;
            (TextDecoder::Json(decoder), coercion)
        }
    };
    let mut decoder = decoder;
    let mut buffered: Vec<u8> = pending;
    let mut at = 0usize;
    let mut eof = false;
    let stream = futures::stream::poll_fn(move |cx| -> Poll<Option<Result<RecordBatch>>> {
        loop {
            if at >= buffered.len() && !eof {
                match bytes.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(chunk))) => {
                        buffered.clear();
                        buffered.extend_from_slice(&chunk);
                        at = 0;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(Some(Err(WorkerError::from_store(&uri, e))));
                    }
                    Poll::Ready(None) => eof = true,
                }
            }
            let rest = &buffered[at.min(buffered.len())..];
            let rest = if eof && at >= buffered.len() {
                &[][..]
            } else {
                rest
            };
            let decoded = match &mut decoder {
                TextDecoder::Csv(d) => d.decode(rest),
                TextDecoder::Json(d) => d.decode(rest),
            };
            let decoded = match decoded {
                Ok(n) => n,
                Err(e) => return Poll::Ready(Some(Err(corrupt(&uri, e)))),
            };
            at += decoded;
            let full = decoded < rest.len() || rest.is_empty();
            if full || decoded == 0 {
                break;
            }
        }
        let flushed = match &mut decoder {
            TextDecoder::Csv(d) => d.flush(),
            TextDecoder::Json(d) => d.flush(),
        };
        match flushed {
            Ok(Some(b)) => Poll::Ready(Some(coercion.apply(&b))),
            Ok(None) if eof => Poll::Ready(None),
            Ok(None) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Err(e) => Poll::Ready(Some(Err(corrupt(&uri, e)))),
        }
    });
    Ok(boxed(stream))
}

fn boxed(s: impl Stream<Item = Result<RecordBatch>> + Send + 'static) -> BatchStream {
    s.boxed()
}
