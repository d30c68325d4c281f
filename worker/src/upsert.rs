//! Upsert validity: which rows of each segment hold the latest version of their primary key.
//!
//! Across the given segments, the row with the largest comparison value wins its key; ties
//! go to the segment later in the list (pass segments oldest first), then to the later row.
//! Rows with a null comparison value lose to any non-null one. The computation sorts
//! `(key, comparison desc, segment desc, row desc)` with the spilling sorter, so it runs
//! under the memory budget whatever the table size.
//!
//! The validity file format (`<segment path>.validity`) is the contract's
//! ([`minion_contract::validity`]).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array, UInt64Array};
use arrow::buffer::{BooleanBuffer, MutableBuffer};
use arrow::datatypes::{UInt32Type, UInt64Type};
use arrow::util::bit_util;
use arrow_row::{OwnedRow, RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema, SortOptions};
use futures::StreamExt;
use minion_contract::{SegmentRef, SubtaskSpec, TableLocation};

use crate::error::{Result, WorkerError};
use crate::run::RunOptions;
use crate::scan::{ParquetInput, ScanConfig, open_parquet};
use crate::sort::spill::SpillDir;
use crate::sort::{ExternalSorter, SortConfig};
use crate::spilldir::PrivateSpillDir;
use crate::store::{Location, resolve};
use crate::stream::BaselineMetrics;
use crate::table::{CoerceMode, arrow_schema};
use crate::time::TimeColumn;

use minion_contract::validity::VALIDITY_MAGIC as MAGIC;
pub use minion_contract::validity::VALIDITY_SUFFIX;

/// Which rows of one segment are valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validity {
    pub valid: BooleanBuffer,
}

impl Validity {
    pub fn rows(&self) -> u64 {
        self.valid.len() as u64
    }
    pub fn invalid(&self) -> u64 {
        (self.valid.len() - self.valid.count_set_bits()) as u64
    }

    /// Encodes the validity file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.valid.len().div_ceil(8));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.rows().to_le_bytes());
        out.extend_from_slice(&self.invalid().to_le_bytes());
        let mut bits = vec![0u8; self.valid.len().div_ceil(8)];
        for i in self.valid.set_indices() {
            bit_util::set_bit(&mut bits, i);
        }
        out.extend_from_slice(&bits);
        out
    }

    /// Decodes a validity file.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err("not a validity file".into());
        }
        let rows = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let bits = &bytes[24..];
        if bits.len() != rows.div_ceil(8) {
            return Err(format!("bitmap of {} bytes for {rows} rows", bits.len()));
        }
        Ok(Validity {
            valid: BooleanBuffer::new(arrow::buffer::Buffer::from(bits.to_vec()), 0, rows),
        })
    }
}

/// Invalid-row count of one segment.
pub type SegmentValidity = minion_contract::SegmentValidityCount;

/// Computes validity across `segments` (paths relative to `table.uri`), writes
/// `<path>.validity` next to each, and returns the invalid counts in input order. The
/// operator never calls this: it runs as a worker subtask ([`minion_contract::SubtaskKind::Validity`]).
///
/// # Errors
/// `BadSpec` if the table has no primary key; read and store errors as for any input.
pub async fn compute_validity(
    table: &TableLocation,
    segments: &[SegmentRef],
    options: &RunOptions,
) -> Result<Vec<SegmentValidity>> {
    compute_validity_in(table, &resolve(&table.uri)?, segments, options).await
}

/// [`compute_validity`] through `location`, the table's store as the caller resolved it (the
/// operator: with the Table's own storage settings).
///
/// # Errors
/// As [`compute_validity`].
pub async fn compute_validity_in(
    table: &TableLocation,
    location: &crate::store::Location,
    segments: &[SegmentRef],
    options: &RunOptions,
) -> Result<Vec<SegmentValidity>> {
    let location = location.clone();
    let root = options.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    let private = PrivateSpillDir::create(&root)?;
    let budget = options
        .memory_budget_bytes
        .unwrap_or(minion_contract::DEFAULT_MEMORY_BUDGET_BYTES);
    write_validity(
        table,
        &location,
        segments,
        &SpillDir::new(private.path()),
        budget,
    )
    .await
}

/// Computes validity across `segments` with the spilling sorter under `budget`, writes each
/// segment's validity file (a rewrite of the same content when it exists: the files are
/// derived data), and returns the counts in input order.
pub(crate) async fn write_validity(
    table: &TableLocation,
    location: &Location,
    segments: &[SegmentRef],
    spill: &SpillDir,
    budget: u64,
) -> Result<Vec<SegmentValidity>> {
    let validity = validity_of(table, location, segments, spill, budget).await?;
    let mut out = Vec::with_capacity(segments.len());
    for (seg, v) in segments.iter().zip(validity) {
        let path = location.child(&format!("{}{VALIDITY_SUFFIX}", seg.path));
        location.put_bytes(&path, v.encode()).await?;
        out.push(SegmentValidity {
            path: seg.path.clone(),
            rows: v.rows(),
            invalid: v.invalid(),
        });
    }
    Ok(out)
}

/// Rows to keep of each input of an upsert subtask (validity over inputs + context).
pub(crate) async fn keep_masks(
    spec: &SubtaskSpec,
    source: &Location,
    spill: &SpillDir,
    budget: u64,
) -> Result<Vec<Arc<BooleanBuffer>>> {
    let all: Vec<SegmentRef> = spec
        .inputs
        .iter()
        .chain(&spec.context_segments)
        .cloned()
        .collect();
    let v = validity_of(&spec.source, source, &all, spill, budget).await?;
    Ok(v.into_iter()
        .take(spec.inputs.len())
        .map(|v| Arc::new(v.valid))
        .collect())
}

async fn validity_of(
    table: &TableLocation,
    location: &Location,
    segments: &[SegmentRef],
    spill: &SpillDir,
    budget: u64,
) -> Result<Vec<Validity>> {
    let schema = &table.schema;
    if !schema.is_upsert() {
        return Err(WorkerError::BadSpec(format!(
            "table {:?} has no primary key",
            table.name
        )));
    }
    let full = arrow_schema(schema);
    let mut names: Vec<&str> = schema.primary_key.iter().map(String::as_str).collect();
    names.push(schema.comparison());
    let indices = names
        .iter()
        .map(|n| {
            full.index_of(n)
                .map_err(|_| WorkerError::BadSpec(format!("upsert column {n:?} is not a column")))
        })
        .collect::<Result<Vec<_>>>()?;
    let key_schema = Arc::new(full.project(&indices)?);
    let mut fields: Vec<Field> = key_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("__minion_seg", DataType::UInt32, false));
    fields.push(Field::new("__minion_row", DataType::UInt64, false));
    let internal = Arc::new(Schema::new(fields));
    let pk = schema.primary_key.len();
    let desc_last = SortOptions {
        descending: true,
        nulls_first: false,
    };
    let mut options = vec![SortOptions::default(); pk];
    options.extend([desc_last; 3]);
    let config = SortConfig {
        schema: internal.clone(),
        keys: (0..pk + 3).collect(),
        options,
        budget_bytes: (budget / 2) as usize,
        batch_size: 8192,
        spill: spill.clone(),
        combiner: None,
        distinct: false,
        on_duplicates: None,
        expected_rows: None,
        disk_budget_bytes: None,
        spilling_budget_bytes: None,
    };
    let metrics = Arc::new(BaselineMetrics::default());
    let mut sorter = ExternalSorter::new(config, metrics)?;
    let scan_config = ScanConfig {
        unread: Vec::new(),
        table_arrow: key_schema.clone(),
        time: TimeColumn::unused(),
        window: None,
        batch_size: 8192,
        parallelism: 1,
        mode: CoerceMode::Strict,
        ledger: None,
    };
    let mut rows_per_segment = Vec::with_capacity(segments.len());
    for (si, seg) in segments.iter().enumerate() {
        let input = ParquetInput::segment(location, seg, None);
        let mut stream = open_parquet(location, &input, &scan_config).await?;
        let mut offset = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let n = batch.num_rows();
            let mut cols = batch.columns().to_vec();
            cols.push(Arc::new(UInt32Array::from(vec![si as u32; n])) as ArrayRef);
            cols.push(Arc::new(UInt64Array::from_iter_values(
                offset..offset + n as u64,
            )));
            offset += n as u64;
            sorter.push(RecordBatch::try_new(internal.clone(), cols)?)?;
        }
        rows_per_segment.push(offset as usize);
    }
    let mut bits: Vec<MutableBuffer> = rows_per_segment
        .iter()
        .map(|&n| MutableBuffer::from_len_zeroed(n.div_ceil(8)))
        .collect();
    let key_converter = RowConverter::new(
        internal.fields()[..pk]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )?;
    let mut previous: Option<OwnedRow> = None;
    for batch in sorter.finish()? {
        let batch = batch?;
        let rows = key_converter.convert_columns(&batch.columns()[..pk])?;
        let segs = batch.column(pk + 1).as_primitive::<UInt32Type>();
        let offsets = batch.column(pk + 2).as_primitive::<UInt64Type>();
        for i in 0..batch.num_rows() {
            let row = rows.row(i);
            if previous.as_ref().is_some_and(|p| p.row() == row) {
                continue;
            }
            previous = Some(row.owned());
            let (s, r) = (segs.value(i) as usize, offsets.value(i) as usize);
            bit_util::set_bit(bits[s].as_slice_mut(), r);
        }
    }
    Ok(bits
        .into_iter()
        .zip(rows_per_segment)
        .map(|(b, n)| Validity {
            valid: BooleanBuffer::new(b.into(), 0, n),
        })
        .collect())
}

/// Reads the validity file of a segment.
pub async fn read_validity(table_uri: &str, segment_path: &str) -> Result<Validity> {
    read_validity_in(&resolve(table_uri)?, segment_path).await
}

/// [`read_validity`] through `location`, the table's store as the caller resolved it.
///
/// # Errors
/// As [`read_validity`].
pub async fn read_validity_in(
    location: &crate::store::Location,
    segment_path: &str,
) -> Result<Validity> {
    let path = location.child(&format!("{segment_path}{VALIDITY_SUFFIX}"));
    let bytes = location.get_bytes(&path).await?;
    Validity::decode(&bytes).map_err(|message| WorkerError::CorruptInput {
        file: location.display(&path),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_file_round_trips_and_counts_invalid_rows() {
        let valid = BooleanBuffer::from_iter([
            true, false, true, true, false, true, true, true, false, true,
        ]);
        let v = Validity { valid };
        let bytes = v.encode();
        assert_eq!(&bytes[..8], b"MNVALID1");
        assert_eq!(bytes.len(), 24 + 2);
        let back = Validity::decode(&bytes).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.invalid(), 3);
        assert!(Validity::decode(b"nonsense").is_err());
    }
}
