//! Per-file statistics and tags: what our Add actions carry and how a listed file becomes a
//! [`SegmentRef`] (pure, no I/O).
//!
//! Our Add actions carry Delta `stats` (`numRecords`, `minValues`/`maxValues` of the time
//! column, in the column's own type and unit, so any Delta reader can skip files) and `tags`
//! (`minTimeMs`, `maxTimeMs`, `partition`, plus the segment's own tags). Listing prefers the
//! tags and falls back to the stats, so files added by other Delta writers (no tags) still list
//! with their row count and time range.
//!
//! Stats are bounds: the written minimum is at or below every value, the maximum at or above,
//! whatever unit conversion happens on the way.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat};
use minion_contract::segment::{TAG_MAX_TIME_MS, TAG_MIN_TIME_MS, TAG_PARTITION};
use minion_contract::{ColumnType, SegmentRef, TableSchema, TimeFormat};
use serde_json::{Map, Value, json};

/// Tag keys the catalog writes itself; they become [`SegmentRef`] fields, not free tags.
pub const RESERVED_TAGS: [&str; 3] = [TAG_MIN_TIME_MS, TAG_MAX_TIME_MS, TAG_PARTITION];

/// How the time column is stored, which decides how its stats convert to epoch milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeColumn {
    pub name: String,
    pub kind: TimeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeKind {
    /// An `INT`/`LONG` column: epoch values of the format's unit × size, or all-digit dates.
    Integer(TimeFormat),
    /// A Delta `timestamp` (microseconds, UTC); JSON stats hold RFC 3339 strings.
    Timestamp,
    /// A `STRING` column of dates in a pattern; stats hold the strings, which sort in time
    /// order.
    Text(TimeFormat),
}

impl TimeColumn {
    pub fn of(schema: &TableSchema) -> Self {
        let format = schema.time_format();
        let kind = match (&format, schema.time().map(|c| c.data_type)) {
            (_, Some(ColumnType::Timestamp)) => TimeKind::Timestamp,
            (TimeFormat::SimpleDate(_), Some(ColumnType::String)) => TimeKind::Text(format),
            _ => TimeKind::Integer(format),
        };
        TimeColumn {
            name: schema.time_column.clone(),
            kind,
        }
    }

    /// The stats value of the lower bound `ms`.
    fn lower_bound(&self, ms: i64) -> Value {
        match &self.kind {
            TimeKind::Integer(TimeFormat::SimpleDate(p)) => json!(p.format_integer(ms)),
            TimeKind::Integer(format) => json!(format.from_millis_floor(ms)),
            TimeKind::Timestamp => timestamp_string(ms),
            TimeKind::Text(format) => json!(format.date_pattern().and_then(|p| p.format(ms))),
        }
    }

    /// The stats value of the upper bound `ms`: every value whose time (floored to
    /// milliseconds) is `ms` is at or below it.
    fn upper_bound(&self, ms: i64) -> Value {
        match &self.kind {
            TimeKind::Integer(TimeFormat::SimpleDate(p)) => json!(p.format_integer(ms)),
            // Finer than a millisecond: the last value of that millisecond.
            TimeKind::Integer(format) if format.to_millis(1) == 0 => {
                json!(format.from_millis_ceil(ms.saturating_add(1)) - 1)
            }
            TimeKind::Integer(format) => json!(format.from_millis_ceil(ms)),
            // Delta timestamp stats have millisecond precision; readers widen a maximum by the
            // sub-millisecond remainder themselves.
            TimeKind::Timestamp => timestamp_string(ms),
            TimeKind::Text(format) => json!(format.date_pattern().and_then(|p| p.format(ms))),
        }
    }

    /// Axis milliseconds of a stats value (floored), if it has the expected shape.
    fn to_millis(&self, v: &Value) -> Option<i64> {
        match &self.kind {
            TimeKind::Integer(format) => v.as_i64().and_then(|x| format.integer_to_millis(x)),
            TimeKind::Timestamp => v
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp_millis()),
            TimeKind::Text(format) => v.as_str().and_then(|s| format.string_to_millis(s)),
        }
    }
}

fn timestamp_string(ms: i64) -> Value {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => Value::Null,
    }
}

/// The Delta `stats` JSON of a segment: `numRecords`, and the time column's bounds when the
/// segment has a time range. The time column's `nullCount` is not known here and is omitted
/// (readers then assume nothing about nulls).
pub fn stats_json(segment: &SegmentRef, time: &TimeColumn) -> String {
    let mut stats = Map::new();
    stats.insert("numRecords".into(), json!(segment.rows));
    if let (Some(min), Some(max)) = (segment.min_time_ms, segment.max_time_ms) {
        stats.insert(
            "minValues".into(),
            json!({ time.name.clone(): time.lower_bound(min) }),
        );
        stats.insert(
            "maxValues".into(),
            json!({ time.name.clone(): time.upper_bound(max) }),
        );
    }
    Value::Object(stats).to_string()
}

/// What a file's Delta stats say about rows and time range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub rows: Option<u64>,
    pub min_time_ms: Option<i64>,
    pub max_time_ms: Option<i64>,
}

/// Reads `numRecords` and the time column's min/max from a Delta stats JSON string. Anything
/// missing or malformed is `None` rather than an error: stats are optional in Delta.
pub fn parse_stats(stats: &str, time: &TimeColumn) -> FileStats {
    let Ok(v) = serde_json::from_str::<Value>(stats) else {
        return FileStats::default();
    };
    let bound = |key: &str| {
        v.get(key)
            .and_then(|m| m.get(&time.name))
            .and_then(|x| time.to_millis(x))
    };
    FileStats {
        rows: v.get("numRecords").and_then(Value::as_u64),
        min_time_ms: bound("minValues"),
        max_time_ms: bound("maxValues"),
    }
}

/// The Add action tags of a segment: its own tags plus the reserved time-range and partition
/// tags (which win over free tags of the same name).
pub fn segment_tags(segment: &SegmentRef) -> HashMap<String, Option<String>> {
    let mut tags: HashMap<String, Option<String>> = segment
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    if let Some(min) = segment.min_time_ms {
        tags.insert(TAG_MIN_TIME_MS.into(), Some(min.to_string()));
    }
    if let Some(max) = segment.max_time_ms {
        tags.insert(TAG_MAX_TIME_MS.into(), Some(max.to_string()));
    }
    if let Some(p) = segment.partition {
        tags.insert(TAG_PARTITION.into(), Some(p.to_string()));
    }
    tags
}

/// A listed file as a segment. Tags win over stats; files without either list with `rows = 0`
/// and no time range. `rows` is the row count deltalake already parsed from the stats, when it
/// did; the stats JSON is parsed only for what neither it nor the tags give (listing 100,000
/// of our own files parses no JSON).
pub fn segment_from_file(
    path: String,
    size: i64,
    rows: Option<u64>,
    stats: Option<&str>,
    tags: Option<HashMap<String, Option<String>>>,
    time: &TimeColumn,
) -> SegmentRef {
    let tags = tags.unwrap_or_default();
    let tag = |key: &str| {
        tags.get(key)
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let (min_tag, max_tag) = (tag(TAG_MIN_TIME_MS), tag(TAG_MAX_TIME_MS));
    let parsed = match stats {
        Some(s) if rows.is_none() || min_tag.is_none() || max_tag.is_none() => parse_stats(s, time),
        _ => FileStats::default(),
    };
    let partition = tag(TAG_PARTITION).and_then(|p| u32::try_from(p).ok());
    let free_tags: BTreeMap<String, String> = tags
        .into_iter()
        .filter(|(k, _)| !RESERVED_TAGS.contains(&k.as_str()))
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    SegmentRef {
        path,
        rows: rows.or(parsed.rows).unwrap_or(0),
        bytes: u64::try_from(size).unwrap_or(0),
        min_time_ms: min_tag.or(parsed.min_time_ms),
        max_time_ms: max_tag.or(parsed.max_time_ms),
        partition,
        tags: free_tags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minion_contract::TimeUnit;

    fn epoch(unit: TimeUnit) -> TimeFormat {
        TimeFormat::Epoch { unit, size: 1 }
    }

    #[test]
    fn stats_of_date_columns_are_the_strings_and_read_back() {
        let day = 86_400_000;
        let jan1 = 1_704_067_200_000;
        for (kind, min, max) in [
            (
                TimeKind::Text(
                    TimeFormat::parse("SIMPLE_DATE_FORMAT|yyyyMMdd|Asia/Tokyo").unwrap(),
                ),
                json!("20240101"),
                json!("20240103"),
            ),
            (
                TimeKind::Integer(TimeFormat::parse("1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd").unwrap()),
                json!(20240101),
                json!(20240103),
            ),
        ] {
            let t = time(kind);
            let s = stats_json(&segment(jan1, jan1 + 2 * day + 5), &t);
            let v: Value = serde_json::from_str(&s).unwrap();
            assert_eq!(v["minValues"]["ts"], min);
            assert_eq!(v["maxValues"]["ts"], max);
            let parsed = parse_stats(&s, &t);
            assert_eq!(parsed.min_time_ms, Some(jan1));
            assert_eq!(parsed.max_time_ms, Some(jan1 + 2 * day));
        }
        let five_min = time(TimeKind::Integer(
            TimeFormat::parse("EPOCH|MINUTES|5").unwrap(),
        ));
        let v: Value =
            serde_json::from_str(&stats_json(&segment(600_000, 900_001), &five_min)).unwrap();
        assert_eq!(
            (v["minValues"]["ts"].clone(), v["maxValues"]["ts"].clone()),
            (json!(2), json!(4))
        );
    }

    fn time(kind: TimeKind) -> TimeColumn {
        TimeColumn {
            name: "ts".into(),
            kind,
        }
    }

    fn segment(min: i64, max: i64) -> SegmentRef {
        SegmentRef {
            path: "data/a.parquet".into(),
            rows: 10,
            bytes: 100,
            min_time_ms: Some(min),
            max_time_ms: Some(max),
            partition: Some(3),
            tags: BTreeMap::from([("mergeLevel".into(), "1day".into())]),
        }
    }

    #[test]
    fn stats_of_a_millisecond_column_carry_rows_and_exact_bounds() {
        let t = time(TimeKind::Integer(TimeFormat::default()));
        let v: Value = serde_json::from_str(&stats_json(&segment(1000, 5000), &t)).unwrap();
        assert_eq!(
            v,
            json!({"numRecords": 10, "minValues": {"ts": 1000}, "maxValues": {"ts": 5000}})
        );
    }

    #[test]
    fn stats_bounds_enclose_every_value_after_unit_conversion() {
        let micros = time(TimeKind::Integer(epoch(TimeUnit::Microseconds)));
        let v: Value = serde_json::from_str(&stats_json(&segment(1, 2), &micros)).unwrap();
        assert_eq!(v["minValues"]["ts"], json!(1000));
        assert_eq!(v["maxValues"]["ts"], json!(2999));

        let seconds = time(TimeKind::Integer(epoch(TimeUnit::Seconds)));
        let v: Value = serde_json::from_str(&stats_json(&segment(1500, 2500), &seconds)).unwrap();
        assert_eq!(v["minValues"]["ts"], json!(1));
        assert_eq!(v["maxValues"]["ts"], json!(3));
    }

    #[test]
    fn timestamp_stats_are_rfc3339_strings_that_parse_back() {
        let t = time(TimeKind::Timestamp);
        let s = stats_json(&segment(1_700_000_000_123, 1_700_000_000_456), &t);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["minValues"]["ts"], json!("2023-11-14T22:13:20.123Z"));
        let parsed = parse_stats(&s, &t);
        assert_eq!(parsed.min_time_ms, Some(1_700_000_000_123));
        assert_eq!(parsed.max_time_ms, Some(1_700_000_000_456));
        assert_eq!(parsed.rows, Some(10));
    }

    #[test]
    fn empty_segment_stats_have_only_the_row_count() {
        let t = time(TimeKind::Integer(TimeFormat::default()));
        let mut s = segment(0, 0);
        s.rows = 0;
        s.min_time_ms = None;
        s.max_time_ms = None;
        assert_eq!(stats_json(&s, &t), r#"{"numRecords":0}"#);
    }

    #[test]
    fn foreign_stats_convert_by_the_column_unit() {
        let t = time(TimeKind::Integer(epoch(TimeUnit::Seconds)));
        let parsed = parse_stats(
            r#"{"numRecords":7,"minValues":{"ts":10,"x":"a"},"maxValues":{"ts":20},"nullCount":{"ts":0}}"#,
            &t,
        );
        assert_eq!(
            parsed,
            FileStats {
                rows: Some(7),
                min_time_ms: Some(10_000),
                max_time_ms: Some(20_000)
            }
        );
        assert_eq!(parse_stats("not json", &t), FileStats::default());
    }

    #[test]
    fn listed_file_prefers_tags_and_falls_back_to_stats() {
        let t = time(TimeKind::Integer(TimeFormat::default()));
        let seg = segment(1000, 5000);
        let tags = segment_tags(&seg);
        let stats = stats_json(&seg, &t);
        let listed = segment_from_file(
            seg.path.clone(),
            100,
            None,
            Some(&stats),
            Some(tags.clone()),
            &t,
        );
        assert_eq!(listed, seg, "a committed segment lists as it was committed");
        let hinted = segment_from_file(seg.path.clone(), 100, Some(10), None, Some(tags), &t);
        assert_eq!(hinted, seg, "parsed row count plus tags need no stats JSON");

        let foreign = segment_from_file(
            "part-0.parquet".into(),
            42,
            None,
            Some(r#"{"numRecords":3,"minValues":{"ts":7},"maxValues":{"ts":9}}"#),
            None,
            &t,
        );
        assert_eq!(foreign.rows, 3);
        assert_eq!(
            (foreign.min_time_ms, foreign.max_time_ms),
            (Some(7), Some(9))
        );
        assert_eq!(foreign.partition, None);
        assert!(foreign.tags.is_empty());

        let bare = segment_from_file("x.parquet".into(), 1, None, None, None, &t);
        assert_eq!((bare.rows, bare.min_time_ms), (0, None));
    }
}
