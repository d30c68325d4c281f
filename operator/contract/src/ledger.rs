//! The row ledger of a subtask: what the worker counted of the rows it read, dropped and
//! wrote, on a path independent of its sort, and the invariants each merge type keeps.
//!
//! The worker fills the ledger as rows pass (counts at each filter, and a digest — row count,
//! an order-independent hash of every row, per-metric totals — of the rows handed to the
//! merge and of the rows written) and checks it with [`RowLedger::verify`] before it reports
//! success; the operator checks the same ledger again, with what it knows of the inputs,
//! before it commits. A row lost or counted twice anywhere between the filters and the
//! output segments changes a count or the hash.
//!
//! The hash of a row digest is the wrapping sum of a 64-bit hash of each row: a multiset
//! hash, equal for equal multisets in any order; a row added, lost or duplicated changes it
//! except with probability about 2⁻⁶⁴.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::task::{AggregationType, MergeType};

/// A metric total: exact for integer columns, a double for floating-point columns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Total {
    Int(i128),
    Float(f64),
}

impl Total {
    fn as_f64(self) -> f64 {
        match self {
            Total::Int(v) => v as f64,
            Total::Float(v) => v,
        }
    }
}

impl fmt::Display for Total {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Total::Int(v) => write!(f, "{v}"),
            // `{:?}` keeps a decimal point (or exponent, inf, NaN): floats read back as floats.
            Total::Float(v) => write!(f, "{v:?}"),
        }
    }
}

impl std::str::FromStr for Total {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(v) = s.parse::<i128>() {
            return Ok(Total::Int(v));
        }
        s.parse::<f64>()
            .map(Total::Float)
            .map_err(|_| format!("{s:?} is not a number"))
    }
}

// Totals travel as decimal strings: exact for 128-bit integers, and readable by any JSON
// tool (jq and JavaScript read numbers as doubles).
impl Serialize for Total {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Total {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Total {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Total".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// Totals of one metric column over a set of rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricTotals {
    /// Non-null values.
    pub non_null: u64,
    /// Sum of the non-null values.
    pub sum: Total,
    /// Sum of the absolute values (floating-point columns): the scale of rounding errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abs_sum: Option<f64>,
    /// The column is single precision (its sums round at about 1e-7 of the magnitude).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_precision: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Total>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Total>,
}

/// Count, multiset hash and metric totals of a set of rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowDigest {
    pub rows: u64,
    /// Wrapping sum of each row's 64-bit hash, as 16 hexadecimal digits.
    #[serde(with = "hex_u64")]
    #[schemars(with = "String")]
    pub hash: u64,
    /// Per metric column.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, MetricTotals>,
}

mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

/// Where every row of a subtask went.
///
/// `sourceRows = outsideWindowRows + invalidatedRows + purgedRows + merged.rows`; then, by
/// merge type, concat writes `merged` exactly, dedup writes `merged` less `duplicates`, rollup
/// writes at most `merged.rows` rows with the same sum/count totals (see [`RowLedger::verify`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowLedger {
    /// Rows the inputs hold: segments by their Parquet footers (row groups skipped for the
    /// window included), files by the rows parsed. Segments left out as unreadable
    /// (`skippedSegments`) are not inputs: their rows are not counted here.
    pub source_rows: u64,
    /// Input segments left out as unreadable (`skipCorruptSegments`); the operator checks
    /// `sourceRows` against the catalog's row counts of the other inputs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_segments: u64,
    /// Rows outside the subtask's window (in skipped row groups, or filtered).
    pub outside_window_rows: u64,
    /// Rows of an upsert table superseded by a newer version of their primary key.
    pub invalidated_rows: u64,
    /// Rows matching the purge predicate (purge, a backfill's filter).
    pub purged_rows: u64,
    /// The rows handed to the merge, after the window, purge, erased dimensions and rounding.
    pub merged: RowDigest,
    /// Rows the merge dropped as copies of a row it kept (dedup).
    pub duplicates: RowDigest,
    /// The rows written to the output segments.
    pub written: RowDigest,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The invariants a ledger breaks, one message each, naming the numbers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("row ledger does not add up: {}", .0.join("; "))]
pub struct LedgerViolation(pub Vec<String>);

impl RowLedger {
    /// Checks the ledger for `merge` (rollup aggregations in `aggregations`, metrics not
    /// listed being summed).
    ///
    /// # Errors
    /// Every broken invariant, each message naming the numbers.
    pub fn verify(
        &self,
        merge: MergeType,
        aggregations: &BTreeMap<String, AggregationType>,
    ) -> Result<(), LedgerViolation> {
        let mut broken = Vec::new();
        let accounted = self.outside_window_rows as u128
            + self.invalidated_rows as u128
            + self.purged_rows as u128
            + self.merged.rows as u128;
        if accounted != self.source_rows as u128 {
            broken.push(format!(
                "{} source rows but {} accounted for ({} outside the window, {} invalidated, {} purged, {} merged)",
                self.source_rows,
                accounted,
                self.outside_window_rows,
                self.invalidated_rows,
                self.purged_rows,
                self.merged.rows
            ));
        }
        let (merged, written, dups) = (&self.merged, &self.written, &self.duplicates);
        match merge {
            MergeType::Concat => {
                if written.rows != merged.rows || written.hash != merged.hash {
                    broken.push(format!(
                        "concat wrote {} rows (hash {:016x}) of {} merged (hash {:016x})",
                        written.rows, written.hash, merged.rows, merged.hash
                    ));
                }
                check_no_duplicates(dups, &mut broken);
                for (name, m_in) in &merged.metrics {
                    let m_out = written.metrics.get(name);
                    check_totals(name, m_in, m_out, Keep::Everything, &mut broken);
                }
            }
            MergeType::Dedup => {
                let rows = written.rows as u128 + dups.rows as u128;
                let hash = written.hash.wrapping_add(dups.hash);
                if rows != merged.rows as u128 || hash != merged.hash {
                    broken.push(format!(
                        "dedup wrote {} rows and dropped {} copies (hash {:016x}) of {} merged (hash {:016x})",
                        written.rows, dups.rows, hash, merged.rows, merged.hash
                    ));
                }
            }
            MergeType::Rollup => {
                if written.rows > merged.rows || (written.rows == 0) != (merged.rows == 0) {
                    broken.push(format!(
                        "rollup wrote {} rows from {} merged",
                        written.rows, merged.rows
                    ));
                }
                check_no_duplicates(dups, &mut broken);
                for (name, m_in) in &merged.metrics {
                    let keep = match aggregations.get(name).copied().unwrap_or_default() {
                        AggregationType::Sum => Keep::Sum,
                        AggregationType::Count => Keep::CountSum,
                        AggregationType::Min => Keep::Min,
                        AggregationType::Max => Keep::Max,
                        // Sketches and average pairs are bytes: the ledger keeps no totals
                        // of them, so this is not reached; nothing numeric is promised.
                        _ => Keep::Range,
                    };
                    check_totals(name, m_in, written.metrics.get(name), keep, &mut broken);
                }
            }
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(LedgerViolation(broken))
        }
    }
}

fn check_no_duplicates(dups: &RowDigest, broken: &mut Vec<String>) {
    if dups.rows != 0 {
        broken.push(format!(
            "{} rows dropped as duplicates outside dedup",
            dups.rows
        ));
    }
}

/// What a merge keeps of a metric's totals.
#[derive(Clone, Copy, PartialEq)]
enum Keep {
    /// Concat: every total.
    Everything,
    /// Rollup by sum: the sum; at most as many non-null values.
    Sum,
    /// Rollup by count (a null count is 0): the sum.
    CountSum,
    /// Rollup by min: the minimum; every value within the input's range.
    Min,
    /// Rollup by max: the maximum; every value within the input's range.
    Max,
    /// First/last with time: every value is one of the input's, so within its range.
    Range,
}

fn check_totals(
    name: &str,
    m_in: &MetricTotals,
    m_out: Option<&MetricTotals>,
    keep: Keep,
    broken: &mut Vec<String>,
) {
    let Some(m_out) = m_out else {
        broken.push(format!("metric {name}: no totals of the written rows"));
        return;
    };
    if matches!(keep, Keep::Everything | Keep::Sum | Keep::CountSum) && !sums_agree(m_in, m_out) {
        broken.push(format!(
            "metric {name}: sum {} in, {} written",
            m_in.sum, m_out.sum
        ));
    }
    match keep {
        Keep::Everything if m_out.non_null != m_in.non_null => broken.push(format!(
            "metric {name}: {} values in, {} written",
            m_in.non_null, m_out.non_null
        )),
        Keep::Sum | Keep::Min | Keep::Max | Keep::Range if m_out.non_null > m_in.non_null => broken
            .push(format!(
                "metric {name}: {} values written from {} non-null values",
                m_out.non_null, m_in.non_null
            )),
        _ => {}
    }
    let exact_min = matches!(keep, Keep::Everything | Keep::Min);
    let exact_max = matches!(keep, Keep::Everything | Keep::Max);
    if exact_min && !same(m_in.min, m_out.min) {
        broken.push(format!(
            "metric {name}: minimum {} in, {} written",
            show(m_in.min),
            show(m_out.min)
        ));
    }
    if exact_max && !same(m_in.max, m_out.max) {
        broken.push(format!(
            "metric {name}: maximum {} in, {} written",
            show(m_in.max),
            show(m_out.max)
        ));
    }
    if matches!(keep, Keep::Sum | Keep::Min | Keep::Max | Keep::Range) {
        // Every written value lies within the input's range (a sum may leave it).
        let below = |a: Option<Total>, b: Option<Total>| match (a, b) {
            (Some(a), Some(b)) => a.as_f64() < b.as_f64(),
            _ => false,
        };
        if keep != Keep::Sum && (below(m_out.min, m_in.min) || below(m_in.max, m_out.max)) {
            broken.push(format!(
                "metric {name}: written range [{}, {}] outside the input's [{}, {}]",
                show(m_out.min),
                show(m_out.max),
                show(m_in.min),
                show(m_in.max)
            ));
        }
    }
}

fn show(t: Option<Total>) -> String {
    t.map_or_else(|| "none".to_string(), |t| t.to_string())
}

fn same(a: Option<Total>, b: Option<Total>) -> bool {
    match (a, b) {
        (Some(Total::Float(x)), Some(Total::Float(y))) => x == y || (x.is_nan() && y.is_nan()),
        (a, b) => a == b,
    }
}

/// Integer sums must be equal; floating-point sums equal up to the rounding that summing in
/// another order (and, for rollup, in the column's own precision) may bring.
fn sums_agree(a: &MetricTotals, b: &MetricTotals) -> bool {
    match (a.sum, b.sum) {
        (Total::Int(x), Total::Int(y)) => x == y,
        (x, y) => {
            let (x, y) = (x.as_f64(), y.as_f64());
            if !x.is_finite() || !y.is_finite() {
                return x == y || (x.is_nan() && y.is_nan());
            }
            let scale = a.abs_sum.unwrap_or(0.0).max(b.abs_sum.unwrap_or(0.0));
            let relative = if a.single_precision || b.single_precision {
                1e-4
            } else {
                1e-9
            };
            (x - y).abs() <= scale * relative + f64::MIN_POSITIVE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(rows: u64, hash: u64, sum: i128) -> RowDigest {
        let mut metrics = BTreeMap::new();
        metrics.insert(
            "clicks".to_string(),
            MetricTotals {
                non_null: rows,
                sum: Total::Int(sum),
                abs_sum: None,
                single_precision: false,
                min: Some(Total::Int(1)),
                max: Some(Total::Int(9)),
            },
        );
        RowDigest {
            rows,
            hash,
            metrics,
        }
    }

    fn ledger(merged: RowDigest, written: RowDigest) -> RowLedger {
        RowLedger {
            source_rows: 100,
            outside_window_rows: 100 - merged.rows,
            merged,
            written,
            ..RowLedger::default()
        }
    }

    #[test]
    fn concat_keeps_the_multiset() {
        let ok = ledger(digest(80, 7, 400), digest(80, 7, 400));
        assert!(ok.verify(MergeType::Concat, &BTreeMap::new()).is_ok());
        // A row written twice: one more row, another hash, a larger sum.
        let twice = ledger(digest(80, 7, 400), digest(81, 12, 405));
        let e = twice
            .verify(MergeType::Concat, &BTreeMap::new())
            .unwrap_err();
        assert!(e.to_string().contains("concat wrote 81 rows"), "{e}");
        assert!(e.to_string().contains("sum 400 in, 405 written"), "{e}");
        // Same count, another row in place of one: the hash differs.
        let swapped = ledger(digest(80, 7, 400), digest(80, 8, 400));
        assert!(swapped.verify(MergeType::Concat, &BTreeMap::new()).is_err());
    }

    #[test]
    fn every_source_row_is_accounted_for() {
        let mut l = ledger(digest(80, 7, 400), digest(80, 7, 400));
        l.purged_rows = 3;
        let e = l.verify(MergeType::Concat, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("100 source rows but 103"), "{e}");
    }

    #[test]
    fn dedup_writes_the_merged_rows_less_the_dropped_copies() {
        let mut l = ledger(digest(80, 7, 400), digest(70, 3, 0));
        l.duplicates = digest(10, 4, 0);
        assert!(l.verify(MergeType::Dedup, &BTreeMap::new()).is_ok());
        // A copy both written and dropped: the counts no longer add up.
        l.duplicates = digest(11, 4, 0);
        assert!(l.verify(MergeType::Dedup, &BTreeMap::new()).is_err());
        // A row dropped that was not a copy: same counts, another hash.
        l.duplicates = digest(10, 5, 0);
        assert!(l.verify(MergeType::Dedup, &BTreeMap::new()).is_err());
    }

    #[test]
    fn rollup_keeps_sums_and_never_adds_rows() {
        let aggs = BTreeMap::new();
        let ok = ledger(digest(80, 7, 400), digest(20, 99, 400));
        assert!(ok.verify(MergeType::Rollup, &aggs).is_ok());
        let inflated = ledger(digest(80, 7, 400), digest(20, 99, 484));
        let e = inflated.verify(MergeType::Rollup, &aggs).unwrap_err();
        assert!(e.to_string().contains("sum 400 in, 484 written"), "{e}");
        let more = ledger(digest(80, 7, 400), digest(81, 99, 400));
        assert!(more.verify(MergeType::Rollup, &aggs).is_err());
        // A max metric keeps its maximum, not its sum.
        let mut aggs = BTreeMap::new();
        aggs.insert("clicks".to_string(), AggregationType::Max);
        let max = ledger(digest(80, 7, 400), digest(20, 99, 150));
        assert!(max.verify(MergeType::Rollup, &aggs).is_ok());
        let mut lost_max = digest(20, 99, 150);
        lost_max.metrics.get_mut("clicks").unwrap().max = Some(Total::Int(8));
        let e = ledger(digest(80, 7, 400), lost_max)
            .verify(MergeType::Rollup, &aggs)
            .unwrap_err();
        assert!(e.to_string().contains("maximum 9 in, 8 written"), "{e}");
    }

    #[test]
    fn float_sums_agree_up_to_rounding() {
        let float = |sum: f64| MetricTotals {
            non_null: 3,
            sum: Total::Float(sum),
            abs_sum: Some(3e12),
            single_precision: false,
            min: None,
            max: None,
        };
        assert!(sums_agree(&float(1.0), &float(1.0 + 1e-3)));
        assert!(!sums_agree(&float(1.0), &float(1.0 + 1e4)));
    }

    #[test]
    fn totals_and_hashes_round_trip_through_json() {
        let mut d = digest(3, u64::MAX - 1, i128::MAX);
        d.metrics.get_mut("clicks").unwrap().min = Some(Total::Float(0.5));
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"hash\":\"fffffffffffffffe\""), "{json}");
        assert!(
            json.contains(&format!("\"sum\":\"{}\"", i128::MAX)),
            "{json}"
        );
        assert!(json.contains("\"min\":\"0.5\""), "{json}");
        let back: RowDigest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }
}
