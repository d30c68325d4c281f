//! The rows of a table as any reader sees it at one moment, as an order-independent multiset:
//! the live segments of the Delta log's newest version, each segment's Parquet file read back,
//! each row hashed (every column, cast to the table schema's type and encoded by Arrow's row
//! format), and the hashes summed. Equal multisets give equal [`Multiset`]s in any order; a
//! row lost, added, repeated or changed changes them (two independent 64-bit sums).
//!
//! Also: the watermark a config committed into a destination's Delta log, and Parquet files
//! written and read by tests.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::row::{RowConverter, SortField};
use minion_contract::{SegmentRef, TableSchema, TimeWindow};
use minion_operator::catalog::{Catalog, app_id, arrow_type};
use minion_operator::inspect::{Totals, sums_match};
use minion_operator::model::TableDef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One row: its time (epoch ms) and two independent 64-bit hashes of its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub time_ms: i64,
    pub h1: u64,
    pub h2: u64,
}

/// A multiset of rows: its count and the wrapping sums of both row hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Multiset {
    pub rows: u64,
    pub h1: u64,
    pub h2: u64,
}

impl Multiset {
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Multiset {
        let mut m = Multiset::default();
        for r in rows {
            m.add(r);
        }
        m
    }

    pub fn add(&mut self, r: &Row) {
        self.rows += 1;
        self.h1 = self.h1.wrapping_add(r.h1);
        self.h2 = self.h2.wrapping_add(r.h2);
    }

    /// The union of two multisets (rows of both, each as often as in both together).
    pub fn plus(self, other: Multiset) -> Multiset {
        Multiset {
            rows: self.rows + other.rows,
            h1: self.h1.wrapping_add(other.h1),
            h2: self.h2.wrapping_add(other.h2),
        }
    }

    /// `self` less `other`, which it must contain.
    ///
    /// # Panics
    /// `other` has more rows than `self`.
    pub fn minus(self, other: Multiset) -> Multiset {
        Multiset {
            rows: self
                .rows
                .checked_sub(other.rows)
                .expect("removing more rows than the multiset holds"),
            h1: self.h1.wrapping_sub(other.h1),
            h2: self.h2.wrapping_sub(other.h2),
        }
    }
}

impl std::fmt::Display for Multiset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rows (#{:016x}{:016x})", self.rows, self.h1, self.h2)
    }
}

/// Hashes rows of batches of one table schema, whatever types the reader gave each column
/// (dictionary or view strings, narrower integers): every column is cast to the schema's type
/// first; a column a batch lacks counts as null.
pub struct RowHasher {
    schema: TableSchema,
    types: Vec<DataType>,
    converter: RowConverter,
}

impl RowHasher {
    /// # Panics
    /// The schema has a type the row format cannot encode.
    pub fn new(schema: &TableSchema) -> RowHasher {
        let types: Vec<DataType> = schema
            .columns
            .iter()
            .map(|c| arrow_type(c.data_type))
            .collect();
        let converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())
            .expect("a row converter for the table schema");
        RowHasher {
            schema: schema.clone(),
            types,
            converter,
        }
    }

    /// The rows of `batch`.
    ///
    /// # Panics
    /// A column cannot be cast to its schema type, or the time column is not an integer.
    pub fn rows(&self, batch: &RecordBatch) -> Vec<Row> {
        let n = batch.num_rows();
        let columns: Vec<ArrayRef> =
            self.schema
                .columns
                .iter()
                .zip(&self.types)
                .map(|(c, t)| match batch.column_by_name(&c.name) {
                    Some(a) if a.data_type() == t => a.clone(),
                    Some(a) => arrow::compute::cast(a, t)
                        .unwrap_or_else(|e| panic!("column {}: {e}", c.name)),
                    None => new_null_array(t, n),
                })
                .collect();
        let time_index = self
            .schema
            .columns
            .iter()
            .position(|c| c.name == self.schema.time_column)
            .expect("the schema names its time column");
        // Axis milliseconds of the time column, whatever its format (epoch, TIMESTAMP, dates).
        let format = self.schema.time_format();
        let time_ms: Vec<Option<i64>> = match columns[time_index].data_type() {
            DataType::Utf8 => columns[time_index]
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(|v| format.string_to_millis(v).expect("a date of the pattern")))
                .collect(),
            _ => arrow::compute::cast(&columns[time_index], &DataType::Int64)
                .expect("an integer time column")
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|v| format.integer_to_millis(v).expect("a time of the format")))
                .collect(),
        };
        let encoded = self
            .converter
            .convert_columns(&columns)
            .expect("rows encoded");
        encoded
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let bytes: &[u8] = row.as_ref();
                Row {
                    time_ms: time_ms[i].unwrap_or(i64::MIN),
                    h1: hash_with(1, bytes),
                    h2: hash_with(2, bytes),
                }
            })
            .collect()
    }

    /// The rows of every batch.
    pub fn all_rows<'a>(&self, batches: impl IntoIterator<Item = &'a RecordBatch>) -> Vec<Row> {
        batches.into_iter().flat_map(|b| self.rows(b)).collect()
    }
}

fn hash_with(seed: u8, bytes: &[u8]) -> u64 {
    // SipHash with fixed keys: the same for every call in this process.
    let mut h = std::hash::DefaultHasher::new();
    seed.hash(&mut h);
    bytes.hash(&mut h);
    h.finish()
}

/// One live segment of a [`TableRows`] and what it holds.
pub struct SegmentRows {
    pub segment: SegmentRef,
    pub batches: Vec<RecordBatch>,
    pub rows: Vec<Row>,
}

/// Every row of a table's live segments at the newest version of its Delta log, as a new
/// reader sees it.
pub struct TableRows {
    /// The Delta version read (`None`: the table is not created yet).
    pub version: Option<u64>,
    pub segments: Vec<SegmentRows>,
}

impl TableRows {
    /// Opens the table's Delta log at its newest version and reads every live segment; no
    /// rows when a local table has no Delta log yet.
    ///
    /// # Panics
    /// The log or a segment cannot be read.
    pub async fn read(def: &TableDef) -> TableRows {
        if !exists(def) {
            return TableRows {
                version: None,
                segments: Vec::new(),
            };
        }
        let catalog = Catalog::open(&def.uri, Default::default())
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", def.uri));
        let version = catalog.version();
        let store = minion_operator::storage::resolve(&def.uri).expect("the table's store");
        let hasher = RowHasher::new(&def.schema);
        let mut segments = Vec::new();
        for segment in catalog.segments().expect("live segments") {
            let bytes = store
                .get_bytes(&store.child(&segment.path))
                .await
                .unwrap_or_else(|e| panic!("segment {} of {}: {e}", segment.path, def.uri));
            let batches = parquet_batches(bytes::Bytes::from(bytes));
            let rows = hasher.all_rows(&batches);
            assert_eq!(
                rows.len() as u64,
                segment.rows,
                "segment {} holds another row count than its Delta add says",
                segment.path
            );
            segments.push(SegmentRows {
                segment,
                batches,
                rows,
            });
        }
        TableRows {
            version: Some(version),
            segments,
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.segments.iter().flat_map(|s| s.rows.iter())
    }

    pub fn multiset(&self) -> Multiset {
        Multiset::of(self.rows())
    }

    /// The rows whose time is in `window`.
    pub fn multiset_in(&self, window: TimeWindow) -> Multiset {
        Multiset::of(self.rows().filter(|r| window.contains(r.time_ms)))
    }

    /// The rows by bucket of `period_ms` (epoch-aligned): bucket start → multiset.
    pub fn by_bucket(&self, period_ms: i64) -> BTreeMap<i64, Multiset> {
        let mut out: BTreeMap<i64, Multiset> = BTreeMap::new();
        for r in self.rows() {
            out.entry(r.time_ms.div_euclid(period_ms) * period_ms)
                .or_default()
                .add(r);
        }
        out
    }

    pub fn batches(&self) -> impl Iterator<Item = &RecordBatch> {
        self.segments.iter().flat_map(|s| s.batches.iter())
    }

    /// The live segments read.
    pub fn segment_refs(&self) -> Vec<SegmentRef> {
        self.segments.iter().map(|s| s.segment.clone()).collect()
    }

    /// The rows for which `keep(batch, index in batch, row)` holds.
    pub fn multiset_where(&self, keep: impl Fn(&RecordBatch, usize, &Row) -> bool) -> Multiset {
        let mut m = Multiset::default();
        for s in &self.segments {
            let mut rows = s.rows.iter();
            for b in &s.batches {
                for i in 0..b.num_rows() {
                    let r = rows.next().expect("a row per batch row");
                    if keep(b, i, r) {
                        m.add(r);
                    }
                }
            }
        }
        m
    }

    /// One line per live segment (path, rows, time range, merge level), for messages.
    pub fn describe(&self) -> String {
        let mut out = format!("version {:?}:", self.version);
        for s in &self.segments {
            out.push_str(&format!(
                "\n  {} rows={} time={:?}..{:?} level={:?}",
                s.segment.path,
                s.segment.rows,
                s.segment.min_time_ms,
                s.segment.max_time_ms,
                s.segment.merge_level()
            ));
        }
        out
    }
}

/// `count(*)` and the sum of every metric column of `schema` over `batches` (integers summed
/// exactly), as [`inspect::totals`](minion_operator::inspect::totals) reports a table's.
pub fn totals_of<'a>(
    schema: &TableSchema,
    batches: impl IntoIterator<Item = &'a RecordBatch>,
) -> Totals {
    let mut out = Totals::default();
    let mut ints: BTreeMap<String, i128> = BTreeMap::new();
    let mut floats: BTreeMap<String, f64> = BTreeMap::new();
    for b in batches {
        out.rows += b.num_rows() as u64;
        for m in schema.metrics() {
            let Some(col) = b.column_by_name(&m.name) else {
                continue;
            };
            match col.data_type() {
                DataType::Float32 | DataType::Float64 => {
                    let col = arrow::compute::cast(col, &DataType::Float64).unwrap();
                    let col = col.as_primitive::<Float64Type>();
                    *floats.entry(m.name.clone()).or_default() += col.iter().flatten().sum::<f64>();
                }
                _ => {
                    let col = arrow::compute::cast(col, &DataType::Int64).unwrap();
                    let col = col.as_primitive::<Int64Type>();
                    *ints.entry(m.name.clone()).or_default() +=
                        col.iter().flatten().map(i128::from).sum::<i128>();
                }
            }
        }
    }
    for (m, s) in ints {
        out.sums.insert(m, s as f64);
    }
    out.sums.extend(floats);
    out
}

/// Asserts `count(*)` and the sums of `metrics` agree (sums up to summation order).
///
/// # Panics
/// They differ; `what` names the comparison.
pub fn assert_totals(actual: &Totals, expected: &Totals, metrics: &[&str], what: &str) {
    assert_eq!(actual.rows, expected.rows, "{what}: count(*)");
    for m in metrics {
        let a = actual.sums.get(*m).copied().unwrap_or(0.0);
        let e = expected.sums.get(*m).copied().unwrap_or(0.0);
        assert!(sums_match(a, e), "{what}: sum({m}) {a} vs {e}");
    }
}

/// The watermark `config` (in `namespace`, of `level` for multi-level configs) committed
/// into the Delta log of `destination`, if any.
///
/// # Panics
/// The log cannot be read.
pub async fn watermark(
    destination: &TableDef,
    namespace: &str,
    config: &str,
    level: Option<&str>,
) -> Option<i64> {
    if !exists(destination) {
        return None;
    }
    Catalog::open(&destination.uri, Default::default())
        .await
        .expect("open the destination")
        .txn_version(&app_id::watermark(namespace, config, level))
        .await
        .expect("read the watermark")
}

/// Whether the table has a Delta log (always true for a table not in a local directory).
fn exists(def: &TableDef) -> bool {
    match def.uri.strip_prefix("file://") {
        Some(path) => Path::new(path).join("_delta_log").exists(),
        None => true,
    }
}

/// Every batch of a Parquet file's bytes.
///
/// # Panics
/// The bytes are not Parquet.
pub fn parquet_batches(bytes: bytes::Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .expect("a Parquet file")
        .map(|b| b.expect("a Parquet batch"))
        .collect()
}

/// Writes `batch` as a Parquet file at `path`, creating its directory.
///
/// # Panics
/// The file cannot be written.
pub fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().expect("a file in a directory")).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// The rows of `batch` at `indices`.
///
/// # Panics
/// An index is out of range.
pub fn take_rows(batch: &RecordBatch, indices: &[usize]) -> RecordBatch {
    let indices = arrow::array::UInt32Array::from_iter_values(indices.iter().map(|&i| i as u32));
    arrow::compute::take_record_batch(batch, &indices).unwrap()
}
