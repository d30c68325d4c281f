//! Synthetic click events, as a stream writer would append them to a REALTIME table: used by
//! `minion demo` and by end-to-end tests.
//!
//! Deterministic (a seeded xorshift generator), so tests can recompute what they wrote.
//! Writes Parquet files through `object_store`, so any table URI works.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};
use arrow::record_batch::RecordBatch;
use minion_contract::segment::{TAG_MAX_TIME_MS, TAG_MIN_TIME_MS, TAG_PARTITION};
use minion_contract::{Column, ColumnRole, ColumnType, SegmentRef, TableSchema, TimeUnit};
use minion_store::Location;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

const COUNTRIES: [&str; 12] = [
    "US", "DE", "FR", "IN", "BR", "JP", "GB", "CA", "ES", "IT", "MX", "KR",
];
const BROWSERS: [&str; 5] = ["chrome", "safari", "firefox", "edge", "other"];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];

/// The schema of the demo's event tables (the same as `config/table-events-*.yaml`).
pub fn event_schema() -> TableSchema {
    let col = |name: &str, data_type, role| Column {
        name: name.to_string(),
        data_type,
        role,
        nullable: true,
    };
    TableSchema {
        columns: vec![
            Column {
                nullable: false,
                ..col("ts", ColumnType::Long, ColumnRole::DateTime)
            },
            col("country", ColumnType::String, ColumnRole::Dimension),
            col("browser", ColumnType::String, ColumnRole::Dimension),
            col("device", ColumnType::String, ColumnRole::Dimension),
            col("user_id", ColumnType::String, ColumnRole::Dimension),
            col("clicks", ColumnType::Long, ColumnRole::Metric),
            col("revenue", ColumnType::Double, ColumnRole::Metric),
            col("latency_ms", ColumnType::Double, ColumnRole::Metric),
        ],
        time_column: "ts".into(),
        time_unit: TimeUnit::Milliseconds,
        time_format: None,
        primary_key: vec![],
        comparison_column: None,
        partitioning: None,
        sorted_column: None,
        bloom_filter_columns: vec![],
    }
}

/// A small deterministic random generator (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `rows` events with times spread over `[start_ms, end_ms)`, sorted by time.
pub fn event_batch(rng: &mut Rng, rows: usize, start_ms: i64, end_ms: i64) -> RecordBatch {
    event_batch_with_duplicates(rng, rows, start_ms, end_ms, 0).0
}

/// Like [`event_batch`], but about `per_mille` rows in a thousand repeat the row before them
/// exactly, as an at-least-once producer writes a row twice. Returns the batch and how many
/// rows are such repeats.
pub fn event_batch_with_duplicates(
    rng: &mut Rng,
    rows: usize,
    start_ms: i64,
    end_ms: i64,
    per_mille: u64,
) -> (RecordBatch, u64) {
    let span = (end_ms - start_ms).max(1) as u64;
    let mut times: Vec<i64> = (0..rows)
        .map(|_| start_ms + rng.below(span) as i64)
        .collect();
    times.sort_unstable();
    let mut ts = Int64Builder::with_capacity(rows);
    let mut country = StringBuilder::new();
    let mut browser = StringBuilder::new();
    let mut device = StringBuilder::new();
    let mut user = StringBuilder::new();
    let mut clicks = Int64Builder::with_capacity(rows);
    let mut revenue = Float64Builder::with_capacity(rows);
    let mut latency = Float64Builder::with_capacity(rows);
    let mut previous: Option<Event> = None;
    let mut duplicates = 0;
    for t in times {
        let repeat = per_mille > 0 && previous.is_some() && rng.below(1000) < per_mille;
        let event = match (&previous, repeat) {
            (Some(p), true) => {
                duplicates += 1;
                p.clone()
            }
            _ => {
                // Skewed choices: low indexes are more frequent, as in real traffic.
                let skew = |rng: &mut Rng, n: usize| ((rng.unit().powi(2)) * n as f64) as usize;
                Event {
                    ts: t,
                    country: COUNTRIES[skew(rng, COUNTRIES.len())],
                    browser: BROWSERS[skew(rng, BROWSERS.len())],
                    device: DEVICES[skew(rng, DEVICES.len())],
                    user: format!("u{:05}", rng.below(50_000)),
                    clicks: 1 + rng.below(5) as i64,
                    // Whole cents, so sums are exact in f64 and comparisons are meaningful.
                    revenue: (rng.below(5_000) as f64) / 100.0,
                    latency: 5.0 + rng.below(995) as f64,
                }
            }
        };
        ts.append_value(event.ts);
        country.append_value(event.country);
        browser.append_value(event.browser);
        device.append_value(event.device);
        user.append_value(&event.user);
        clicks.append_value(event.clicks);
        revenue.append_value(event.revenue);
        latency.append_value(event.latency);
        previous = Some(event);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(country.finish()),
        Arc::new(browser.finish()),
        Arc::new(device.finish()),
        Arc::new(user.finish()),
        Arc::new(clicks.finish()),
        Arc::new(revenue.finish()),
        Arc::new(latency.finish()),
    ];
    let schema = crate::catalog::arrow_schema(&event_schema());
    let batch =
        RecordBatch::try_new(schema, columns).expect("event columns match the event schema");
    (batch, duplicates)
}

#[derive(Clone)]
struct Event {
    ts: i64,
    country: &'static str,
    browser: &'static str,
    device: &'static str,
    user: String,
    clicks: i64,
    revenue: f64,
    latency: f64,
}

/// Writes `batch` as one Parquet segment at `path` (relative to the table URI) and describes
/// it.
pub async fn write_segment(
    table: &Location,
    path: &str,
    batch: &RecordBatch,
    time_column: &str,
    partition: Option<u32>,
) -> Result<SegmentRef, Box<dyn std::error::Error + Send + Sync>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .build();
    let mut buf = Vec::with_capacity(64 * 1024);
    {
        let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
        writer.write(batch)?;
        writer.close()?;
    }
    let bytes = buf.len() as u64;
    table.put_bytes(&table.child(path), buf).await?;
    let times = batch
        .column_by_name(time_column)
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int64Array>())
        .ok_or("time column is not LONG")?;
    let min = arrow::compute::min(times);
    let max = arrow::compute::max(times);
    let mut tags = BTreeMap::new();
    if let (Some(min), Some(max)) = (min, max) {
        tags.insert(TAG_MIN_TIME_MS.to_string(), min.to_string());
        tags.insert(TAG_MAX_TIME_MS.to_string(), max.to_string());
    }
    if let Some(p) = partition {
        tags.insert(TAG_PARTITION.to_string(), p.to_string());
    }
    Ok(SegmentRef {
        path: path.to_string(),
        rows: batch.num_rows() as u64,
        bytes,
        min_time_ms: min,
        max_time_ms: max,
        partition,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicated_events_repeat_the_row_before_them_exactly() {
        let (batch, dups) = event_batch_with_duplicates(&mut Rng::new(3), 5_000, 0, 1_000_000, 50);
        assert!(dups > 100 && dups < 500, "{dups}");
        let rows: Vec<String> = (0..batch.num_rows())
            .map(|i| {
                batch
                    .columns()
                    .iter()
                    .map(|c| arrow::util::display::array_value_to_string(c, i).unwrap())
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        let repeats = rows.windows(2).filter(|w| w[0] == w[1]).count() as u64;
        assert_eq!(repeats, dups);
    }

    #[test]
    fn generated_events_are_sorted_within_range_and_deterministic() {
        let a = event_batch(&mut Rng::new(7), 500, 1_000, 2_000);
        let b = event_batch(&mut Rng::new(7), 500, 1_000, 2_000);
        assert_eq!(a, b);
        let ts = a
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert!(ts.values().windows(2).all(|w| w[0] <= w[1]));
        assert!(ts.values().iter().all(|t| (1_000..2_000).contains(t)));
    }
}
