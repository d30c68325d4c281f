//! Sorted runs spilled to local disk as Arrow IPC files — ZSTD-compressed (level 1), or raw
//! when the sorter knows the input's size and the run fits well within the disk bound (see
//! [`super::ExternalSorter`]) — and the accounting of the disk they use.
//!
//! Runs live in the subtask's private spill directory; each file is deleted as soon as it has
//! been merged, and the directory itself when the subtask ends (whatever the outcome).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::ipc::CompressionType;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::SchemaRef;

use crate::error::Result;

/// ZSTD level of spilled runs.
const SPILL_ZSTD_LEVEL: i32 = 1;

/// Disk used by spill files: now, at peak, and in total.
#[derive(Debug, Default)]
pub struct SpillStats {
    current: AtomicU64,
    peak: AtomicU64,
    pub written_bytes: AtomicU64,
    pub runs: AtomicU64,
}

impl SpillStats {
    fn add(&self, bytes: u64) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        self.written_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    fn remove(&self, bytes: u64) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
    }
    /// Highest disk use at any moment, in bytes.
    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
    pub fn current_bytes(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }
}

/// Where runs are written.
#[derive(Clone, Debug)]
pub struct SpillDir {
    pub dir: PathBuf,
    pub stats: Arc<SpillStats>,
    next: Arc<AtomicU64>,
}

impl SpillDir {
    pub fn new(dir: &Path) -> Self {
        SpillDir {
            dir: dir.to_path_buf(),
            stats: Arc::default(),
            next: Arc::default(),
        }
    }

    /// Starts a new run file, ZSTD-compressed or not.
    pub fn writer(&self, schema: &SchemaRef, compress: bool) -> Result<RunWriter> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("run-{n:06}.arrow"));
        // Level 1: about twice as fast to compress as the default 3, with runs a few percent
        // larger (still far below the 2× input disk bound).
        let options = if compress {
            IpcWriteOptions::default()
                .try_with_compression(Some(CompressionType::ZSTD))?
                .try_with_compression_level(Some(SPILL_ZSTD_LEVEL))?
        } else {
            IpcWriteOptions::default()
        };
        let file = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let writer = FileWriter::try_new_with_options(file, schema, options)?;
        self.stats.runs.fetch_add(1, Ordering::Relaxed);
        Ok(RunWriter {
            path,
            writer,
            rows: 0,
            stats: self.stats.clone(),
        })
    }
}

/// A run being written.
pub struct RunWriter {
    path: PathBuf,
    writer: FileWriter<BufWriter<File>>,
    rows: u64,
    stats: Arc<SpillStats>,
}

impl RunWriter {
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch)?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<SpilledRun> {
        self.writer.finish()?;
        let bytes = std::fs::metadata(&self.path)?.len();
        self.stats.add(bytes);
        Ok(SpilledRun {
            path: self.path,
            bytes,
            rows: self.rows,
            input_rows: self.rows,
            stats: self.stats,
        })
    }
}

/// A finished run on disk; deleted when dropped.
#[derive(Debug)]
pub struct SpilledRun {
    path: PathBuf,
    pub bytes: u64,
    pub rows: u64,
    /// Rows before the combiner reduced them.
    pub input_rows: u64,
    stats: Arc<SpillStats>,
}

impl SpilledRun {
    /// Reads the run's batches in order.
    pub fn reader(&self) -> Result<FileReader<BufReader<File>>> {
        // Small buffers: a merge holds one reader per run.
        let file = BufReader::with_capacity(64 << 10, File::open(&self.path)?);
        Ok(FileReader::try_new(file, None)?)
    }
}

impl Drop for SpilledRun {
    fn drop(&mut self) {
        if std::fs::remove_file(&self.path).is_ok() {
            self.stats.remove(self.bytes);
        }
    }
}
