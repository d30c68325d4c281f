//! The segment writer: the sink of the pipeline. It cuts the (partition-grouped, sorted)
//! stream into segments of at most `maxRecordsPerSegment` rows and about
//! `desiredSegmentSize` bytes, one set per (time partition, value partition), writes each as
//! Parquet (zstd, dictionary, page statistics and index, bloom filters for the configured
//! columns) under the staging prefix and describes it as a [`SegmentRef`].
//!
//! A segment is written under a temporary name and renamed once its time range — part of its
//! name — is known. Names: `<prefix|table>_<minTimeMs>_<maxTimeMs>[_<postfix>]_<seq>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, UInt32Type};
use minion_contract::segment::{TAG_MAX_TIME_MS, TAG_MIN_TIME_MS, TAG_PARTITION};
use minion_contract::{OutputSpec, SegmentRef};
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Result, WorkerError};
use crate::plan::Plan;
use crate::store::Location;
use crate::time::min_max;

/// Output naming and placement shared by every writer of one subtask.
#[derive(Clone, Debug)]
pub struct OutputTarget {
    pub location: Location,
    pub output: OutputSpec,
    pub table_name: String,
    /// Sequence number of the next segment (shared so names stay unique across writers).
    pub seq: Arc<AtomicU64>,
    /// Cap on the bytes a row group buffers in memory.
    pub row_group_bytes: usize,
    /// Bytes buffered before an upload part is sent (S3 needs parts of at least 5 MiB).
    pub upload_buffer_bytes: usize,
}

struct OpenSegment {
    writer: AsyncArrowWriter<BufWriter>,
    tmp: Path,
    rows: u64,
    min_ms: Option<i64>,
    max_ms: Option<i64>,
    partition: Option<u32>,
}

/// Writes one stream of internal batches as segments.
pub struct SegmentWriter {
    plan: Arc<Plan>,
    target: OutputTarget,
    extra_tags: BTreeMap<String, String>,
    props: WriterProperties,
    open: Option<OpenSegment>,
    open_key: Option<(Option<i64>, Option<u32>)>,
    pub outputs: Vec<SegmentRef>,
}

impl SegmentWriter {
    pub fn new(
        plan: Arc<Plan>,
        target: OutputTarget,
        extra_tags: BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).map_err(WorkerError::internal)?,
            ))
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(1 << 20))
            .set_max_row_group_bytes(Some(target.row_group_bytes))
            // Page and dictionary buffers are per column; keep them small for small budgets.
            .set_data_page_size_limit((target.row_group_bytes / 4).clamp(64 << 10, 1 << 20))
            .set_dictionary_page_size_limit((target.row_group_bytes / 4).clamp(64 << 10, 1 << 20));
        for name in &plan.table.bloom_filter_columns {
            props = props.set_column_bloom_filter_enabled(ColumnPath::from(name.as_str()), true);
        }
        Ok(SegmentWriter {
            plan,
            target,
            extra_tags,
            props: props.build(),
            open: None,
            open_key: None,
            outputs: Vec::new(),
        })
    }

    /// Partition key of row `i`.
    fn key(&self, batch: &RecordBatch, i: usize) -> (Option<i64>, Option<u32>) {
        let t = self
            .plan
            .tpart_index
            .map(|c| batch.column(c).as_primitive::<Int64Type>().value(i));
        let v = self
            .plan
            .vpart_index
            .map(|c| batch.column(c).as_primitive::<UInt32Type>().value(i));
        (t, v)
    }

    /// Appends a batch of internal rows.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        let mut start = 0;
        while start < n {
            // The run of rows sharing the partition key of `start`.
            let key = self.key(&batch, start);
            let mut end = start + 1;
            if self.plan.tpart_index.is_some() || self.plan.vpart_index.is_some() {
                while end < n && self.key(&batch, end) == key {
                    end += 1;
                }
            } else {
                end = n;
            }
            if self.open_key != Some(key) {
                self.close().await?;
                self.open_key = Some(key);
            }
            let mut at = start;
            while at < end {
                if self.open.is_none() {
                    self.open_segment(key.1)?;
                }
                let seg = self.open.as_mut().expect("segment is open");
                let room = (self.plan.max_records - seg.rows) as usize;
                let take = room.min(end - at);
                let part = batch.slice(at, take);
                self.append(&part).await?;
                at += take;
                let seg = self.open.as_ref().expect("segment is open");
                let full_rows = seg.rows >= self.plan.max_records;
                let full_bytes = self.plan.desired_bytes.is_some_and(|d| {
                    (seg.writer.bytes_written() + seg.writer.in_progress_size()) as u64 >= d
                });
                if full_rows || full_bytes {
                    self.close().await?;
                }
            }
            start = end;
        }
        Ok(())
    }

    fn open_segment(&mut self, partition: Option<u32>) -> Result<()> {
        let seq = self.target.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.target.location.child(&format!(
            "{}/_tmp/{seq}.parquet",
            self.target.output.staging_prefix.trim_end_matches('/')
        ));
        let object = BufWriter::with_capacity(
            self.target.location.store.clone(),
            tmp.clone(),
            self.target.upload_buffer_bytes,
        )
        .with_max_concurrency(2);
        let writer = AsyncArrowWriter::try_new(
            object,
            self.plan.table_arrow.clone(),
            Some(self.props.clone()),
        )
        .map_err(WorkerError::internal)?;
        self.open = Some(OpenSegment {
            writer,
            tmp,
            rows: 0,
            min_ms: None,
            max_ms: None,
            partition,
        });
        Ok(())
    }

    async fn append(&mut self, part: &RecordBatch) -> Result<()> {
        let width = self.plan.table_width();
        let table_batch = RecordBatch::try_new(
            self.plan.table_arrow.clone(),
            part.columns()[..width].to_vec(),
        )?;
        let time = &self.plan.time;
        let raw = time.raw(part.column(time.index))?;
        let seg = self.open.as_mut().expect("segment is open");
        if let Some((lo, hi)) = min_max(&raw) {
            let (lo, hi) = (time.to_ms(lo), time.to_ms(hi));
            seg.min_ms = Some(seg.min_ms.map_or(lo, |m| m.min(lo)));
            seg.max_ms = Some(seg.max_ms.map_or(hi, |m| m.max(hi)));
        }
        seg.rows += part.num_rows() as u64;
        let uri = self.target.location.display(&seg.tmp);
        seg.writer
            .write(&table_batch)
            .await
            .map_err(|e| WorkerError::from_parquet(&uri, e))
    }

    /// Finishes the open segment, if any, and records it.
    pub async fn close(&mut self) -> Result<()> {
        let Some(seg) = self.open.take() else {
            return Ok(());
        };
        let loc = &self.target.location;
        let uri = loc.display(&seg.tmp);
        seg.writer
            .close()
            .await
            .map_err(|e| WorkerError::from_parquet(&uri, e))?;
        let out = &self.target.output;
        let prefix = out
            .segment_name_prefix
            .as_deref()
            .unwrap_or(&self.target.table_name);
        let (min, max) = (seg.min_ms.unwrap_or(0), seg.max_ms.unwrap_or(0));
        let seq = self.outputs_seq(&seg.tmp);
        let name = match &out.segment_name_postfix {
            Some(post) => format!("{prefix}_{min}_{max}_{post}_{seq}"),
            None => format!("{prefix}_{min}_{max}_{seq}"),
        };
        let rel = format!(
            "{}/{name}.parquet",
            out.staging_prefix.trim_end_matches('/')
        );
        let dest = loc.child(&rel);
        loc.store
            .rename(&seg.tmp, &dest)
            .await
            .map_err(|e| WorkerError::from_store(&uri, e))?;
        let bytes = loc
            .store
            .head(&dest)
            .await
            .map_err(|e| WorkerError::from_store(&loc.display(&dest), e))?
            .size;
        let mut tags = out.tags.clone();
        tags.extend(self.extra_tags.clone());
        if let (Some(lo), Some(hi)) = (seg.min_ms, seg.max_ms) {
            tags.insert(TAG_MIN_TIME_MS.into(), lo.to_string());
            tags.insert(TAG_MAX_TIME_MS.into(), hi.to_string());
        }
        if let Some(p) = seg.partition {
            tags.insert(TAG_PARTITION.into(), p.to_string());
        }
        tracing::info!(segment = %name, rows = seg.rows, bytes, "wrote segment");
        self.outputs.push(SegmentRef {
            path: rel,
            rows: seg.rows,
            bytes,
            min_time_ms: seg.min_ms,
            max_time_ms: seg.max_ms,
            partition: seg.partition,
            tags,
        });
        Ok(())
    }

    fn outputs_seq(&self, tmp: &Path) -> String {
        tmp.filename()
            .and_then(|f| f.strip_suffix(".parquet"))
            .unwrap_or("0")
            .to_string()
    }
}
