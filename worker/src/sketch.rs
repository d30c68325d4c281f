//! BYTES metrics under rollup: Apache DataSketches sketches (theta, HLL, CPC, KLL, t-digest)
//! and Pinot's average pairs. Rollup merges the values of a group into one; a derived metric
//! turns each row's raw value into a one-value sketch first, so the rollup that follows
//! erases the raw column without losing its distinct count or its quantiles.
//!
//! Merging is associative and commutative like every other aggregation, so the combiner may
//! merge before a spill and again after it. Bytes are written in DataSketches' own
//! serialization (theta: compact, version 3; HLL: HLL_8), which Java and C++ DataSketches
//! read. A group whose only non-null value is one row's keeps that value's bytes unchanged.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder};
use arrow::datatypes::{Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_schema::DataType;
use datasketches::cpc::{CpcSketch, CpcUnion};
use datasketches::hash::value::{canonical_float, raw_bytes};
use datasketches::hll::{HllSketch, HllType, HllUnion};
use datasketches::kll::{KllFloat, KllSketch};
use datasketches::tdigest::TDigestMut;
use datasketches::theta::{CompactThetaSketch, ThetaSketchBuilder, ThetaUnion, ThetaUnionBuilder};
use minion_contract::Sketch;

use crate::error::{Result, WorkerError};

/// Adds a raw value to a distinct-count sketch (or union) the way DataSketches Java and C++
/// hash it: integers as 64-bit, floats as canonical doubles, strings and bytes as raw bytes.
macro_rules! hash_into {
    ($sketch:expr, $update:ident, $raw:expr) => {
        match $raw {
            Raw::Int(v) => $sketch.$update(v),
            Raw::Float(v) => $sketch.$update(canonical_float::from_f64(v)),
            Raw::Text(v) => $sketch.$update(raw_bytes::from_str(v)),
            Raw::Bytes(v) => $sketch.$update(raw_bytes::from_slice(v)),
        }
    };
}

/// One BYTES metric's aggregation.
#[derive(Clone, Debug)]
pub struct SketchMetric {
    /// The metric column (for messages).
    pub name: String,
    pub sketch: Sketch,
}

/// The merge state of one group.
enum Acc {
    Theta(ThetaUnion),
    Hll(HllUnion),
    Cpc(CpcUnion),
    Kll(KllSketch<KllFloat<f64>>),
    TDigest(TDigestMut),
    Avg(f64, i64),
}

/// One raw value to add to a sketch.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl Raw<'_> {
    fn number(self) -> Option<f64> {
        match self {
            Raw::Int(v) => Some(v as f64),
            Raw::Float(v) => Some(v),
            Raw::Text(_) | Raw::Bytes(_) => None,
        }
    }
}

impl SketchMetric {
    fn what(&self) -> &'static str {
        match self.sketch {
            Sketch::Theta { .. } => "a DataSketches theta sketch",
            Sketch::Hll { .. } => "a DataSketches HLL sketch",
            Sketch::Cpc { .. } => "a DataSketches CPC sketch",
            Sketch::Kll { .. } => "a DataSketches KLL sketch of doubles",
            Sketch::TDigest { .. } => "a DataSketches t-digest",
            Sketch::Avg => "a 16-byte (sum, count) average pair",
        }
    }

    fn corrupt(&self, message: impl std::fmt::Display) -> WorkerError {
        WorkerError::CorruptInput {
            file: format!("metric column {:?}", self.name),
            message: format!(
                "a value is not {} ({message}); write the column with DataSketches' serialize, or declare the aggregation type its bytes hold",
                self.what()
            ),
        }
    }

    fn acc(&self) -> Result<Acc> {
        let bad = |e: datasketches::error::Error| WorkerError::BadSpec(e.to_string());
        Ok(match self.sketch {
            Sketch::Theta { lg_k } => Acc::Theta(
                ThetaUnionBuilder::default()
                    .lg_k(lg_k)
                    .build()
                    .map_err(bad)?,
            ),
            Sketch::Hll { lg_k } => Acc::Hll(HllUnion::new(lg_k).map_err(bad)?),
            Sketch::Cpc { lg_k } => Acc::Cpc(CpcUnion::new(lg_k).map_err(bad)?),
            Sketch::Kll { k } => Acc::Kll(KllSketch::new(k).map_err(bad)?),
            Sketch::TDigest { compression } => {
                Acc::TDigest(TDigestMut::new(compression).map_err(bad)?)
            }
            Sketch::Avg => Acc::Avg(0.0, 0),
        })
    }

    /// Merges each group `ranges[g]` of `values` into one value (null when all are null).
    ///
    /// # Errors
    /// [`WorkerError::CorruptInput`] naming the column when a value is not a sketch of the
    /// declared kind.
    pub fn merge(&self, values: &ArrayRef, ranges: &[(usize, usize)]) -> Result<ArrayRef> {
        let values = values.as_binary_opt::<i32>().ok_or_else(|| {
            WorkerError::internal(format!("metric {:?} is not binary", self.name))
        })?;
        let mut out = BinaryBuilder::with_capacity(ranges.len(), 0);
        for &(s, e) in ranges {
            let mut present = (s..e).filter(|&i| values.is_valid(i));
            match (present.next(), present.next()) {
                (None, _) => out.append_null(),
                (Some(i), None) => out.append_value(values.value(i)),
                (Some(a), Some(b)) => {
                    let mut acc = self.acc()?;
                    for i in [a, b].into_iter().chain(present) {
                        self.add_bytes(&mut acc, values.value(i))?;
                    }
                    out.append_value(finish(acc));
                }
            }
        }
        Ok(Arc::new(out.finish()))
    }

    fn add_bytes(&self, acc: &mut Acc, bytes: &[u8]) -> Result<()> {
        match acc {
            Acc::Theta(u) => {
                let s = CompactThetaSketch::deserialize(bytes).map_err(|e| self.corrupt(e))?;
                u.update(&s).map_err(|e| self.corrupt(e))?;
            }
            Acc::Hll(u) => u.update(&HllSketch::deserialize(bytes).map_err(|e| self.corrupt(e))?),
            Acc::Cpc(u) => {
                let s = CpcSketch::deserialize(bytes).map_err(|e| self.corrupt(e))?;
                u.update(&s).map_err(|e| self.corrupt(e))?;
            }
            Acc::Kll(k) => {
                let s =
                    KllSketch::<KllFloat<f64>>::deserialize(bytes).map_err(|e| self.corrupt(e))?;
                k.merge(&s).map_err(|e| self.corrupt(e))?;
            }
            Acc::TDigest(t) => {
                t.merge(&TDigestMut::deserialize(bytes).map_err(|e| self.corrupt(e))?)
            }
            Acc::Avg(sum, count) => {
                let (s, c) = avg_pair(bytes)
                    .ok_or_else(|| self.corrupt(format!("{} bytes, not 16", bytes.len())))?;
                *sum += s;
                *count += c;
            }
        }
        Ok(())
    }

    /// The metric built from `source`'s value on each row, merged with the row's own value
    /// (`existing`) where it has one. A null (or, as DataSketches skips them, empty string or
    /// NaN) source leaves the row's value as it is.
    ///
    /// # Errors
    /// As [`Self::merge`]; [`WorkerError::BadSpec`] for a source type the sketch cannot take.
    pub fn derive(&self, source: &ArrayRef, existing: &ArrayRef) -> Result<ArrayRef> {
        let existing = existing.as_binary_opt::<i32>().ok_or_else(|| {
            WorkerError::internal(format!("metric {:?} is not binary", self.name))
        })?;
        let n = source.len();
        let mut out = BinaryBuilder::with_capacity(n, n * 16);
        for i in 0..n {
            let raw = raw_value(source, i).map_err(|t| {
                WorkerError::BadSpec(format!(
                    "processing.deriveMetrics.{}: cannot build {} from a column of type {t}",
                    self.name,
                    self.what()
                ))
            })?;
            let usable = raw.filter(|r| match r {
                Raw::Text(s) => !s.is_empty(),
                Raw::Bytes(b) => !b.is_empty(),
                Raw::Float(f) => !f.is_nan(),
                Raw::Int(_) => true,
            });
            let Some(raw) = usable else {
                match existing.is_valid(i) {
                    true => out.append_value(existing.value(i)),
                    false => out.append_null(),
                }
                continue;
            };
            if existing.is_valid(i) {
                let mut acc = self.acc()?;
                self.add_raw(&mut acc, raw)?;
                self.add_bytes(&mut acc, existing.value(i))?;
                out.append_value(finish(acc));
            } else {
                // The common case: a raw row without a sketch of its own. A sketch of the one
                // value is what the union of it would be, without building a union.
                out.append_value(self.one_value(raw)?);
            }
        }
        Ok(Arc::new(out.finish()))
    }

    /// The serialized sketch (or pair) of one value.
    fn one_value(&self, raw: Raw<'_>) -> Result<Vec<u8>> {
        let number = || {
            raw.number().ok_or_else(|| {
                WorkerError::BadSpec(format!(
                    "processing.deriveMetrics.{}: {} needs a numeric source column",
                    self.name,
                    self.what()
                ))
            })
        };
        Ok(match self.sketch {
            Sketch::Theta { lg_k } => {
                let mut s = ThetaSketchBuilder::default()
                    .lg_k(lg_k)
                    .build()
                    .map_err(WorkerError::internal)?;
                hash_into!(s, update, raw);
                s.compact(true).serialize()
            }
            Sketch::Hll { lg_k } => {
                let mut s = HllSketch::new(lg_k, HllType::Hll8).map_err(WorkerError::internal)?;
                hash_into!(s, update, raw);
                s.serialize()
            }
            Sketch::Cpc { lg_k } => {
                let mut s = CpcSketch::new(lg_k).map_err(WorkerError::internal)?;
                hash_into!(s, update, raw);
                s.serialize()
            }
            Sketch::Kll { k } => {
                let mut s = KllSketch::new(k).map_err(WorkerError::internal)?;
                s.update(KllFloat::<f64>::new(number()?).map_err(WorkerError::internal)?);
                s.serialize()
            }
            Sketch::TDigest { compression } => {
                let mut s = TDigestMut::new(compression).map_err(WorkerError::internal)?;
                s.update(number()?);
                s.serialize()
            }
            Sketch::Avg => finish(Acc::Avg(number()?, 1)),
        })
    }

    fn add_raw(&self, acc: &mut Acc, raw: Raw<'_>) -> Result<()> {
        let not_number = || {
            WorkerError::BadSpec(format!(
                "processing.deriveMetrics.{}: {} needs a numeric source column",
                self.name,
                self.what()
            ))
        };
        match acc {
            Acc::Theta(u) => {
                let mut s = ThetaSketchBuilder::default()
                    .lg_k(5)
                    .build()
                    .map_err(WorkerError::internal)?;
                hash_into!(s, update, raw);
                u.update(&s).map_err(WorkerError::internal)?;
            }
            Acc::Hll(u) => hash_into!(u, update_value, raw),
            Acc::Cpc(u) => {
                let mut s = CpcSketch::new(u.lg_k()).map_err(WorkerError::internal)?;
                hash_into!(s, update, raw);
                u.update(&s).map_err(WorkerError::internal)?;
            }
            Acc::Kll(k) => {
                let v = raw.number().ok_or_else(not_number)?;
                k.update(KllFloat::<f64>::new(v).map_err(WorkerError::internal)?);
            }
            Acc::TDigest(t) => t.update(raw.number().ok_or_else(not_number)?),
            Acc::Avg(sum, count) => {
                *sum += raw.number().ok_or_else(not_number)?;
                *count += 1;
            }
        }
        Ok(())
    }
}

fn finish(acc: Acc) -> Vec<u8> {
    match acc {
        Acc::Theta(u) => u.to_sketch(true).serialize(),
        Acc::Hll(u) => u.to_sketch(HllType::Hll8).serialize(),
        Acc::Cpc(u) => u.to_sketch().serialize(),
        Acc::Kll(k) => k.serialize(),
        Acc::TDigest(mut t) => t.serialize(),
        Acc::Avg(sum, count) => {
            let mut b = Vec::with_capacity(16);
            b.extend_from_slice(&sum.to_be_bytes());
            b.extend_from_slice(&count.to_be_bytes());
            b
        }
    }
}

/// A (sum, count) average pair as Pinot's `AvgPair` serializes it.
pub fn avg_pair(bytes: &[u8]) -> Option<(f64, i64)> {
    let (sum, count) = bytes.split_at_checked(8)?;
    Some((
        f64::from_be_bytes(sum.try_into().ok()?),
        i64::from_be_bytes(count.try_into().ok()?),
    ))
}

/// Row `i` of `a` as a raw sketch input; `Err(type)` for a type no sketch takes.
fn raw_value(a: &ArrayRef, i: usize) -> std::result::Result<Option<Raw<'_>>, DataType> {
    if a.is_null(i) {
        return Ok(None);
    }
    Ok(Some(match a.data_type() {
        DataType::Int32 => Raw::Int(i64::from(a.as_primitive::<Int32Type>().value(i))),
        DataType::Int64 => Raw::Int(a.as_primitive::<Int64Type>().value(i)),
        DataType::Timestamp(_, _) => {
            Raw::Int(a.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        DataType::Float32 => Raw::Float(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => Raw::Float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => Raw::Int(i64::from(a.as_boolean().value(i))),
        DataType::Utf8 => Raw::Text(a.as_string::<i32>().value(i)),
        DataType::Binary => Raw::Bytes(a.as_binary::<i32>().value(i)),
        other => return Err(other.clone()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryArray, Int64Array, StringArray};
    use datasketches::common::NumStdDev;

    fn metric(sketch: Sketch) -> SketchMetric {
        SketchMetric {
            name: "m".into(),
            sketch,
        }
    }

    fn nulls(n: usize) -> ArrayRef {
        Arc::new(BinaryArray::from(vec![None::<&[u8]>; n]))
    }

    /// Derives one-value sketches from `source`, merges them in two uneven groups and in one,
    /// and checks the two-step merge equals the one-step one (and so the union of the rows).
    fn merged(m: &SketchMetric, source: ArrayRef) -> Vec<u8> {
        let n = source.len();
        let rows = m.derive(&source, &nulls(n)).unwrap();
        let cut = n / 3;
        let halves = m.merge(&rows, &[(0, cut), (cut, n)]).unwrap();
        let twice = m.merge(&halves, &[(0, 2)]).unwrap();
        let once = m.merge(&rows, &[(0, n)]).unwrap();
        let (a, b) = (twice.as_binary::<i32>(), once.as_binary::<i32>());
        match m.sketch {
            // The union of the same values is the same sketch, however they were grouped.
            Sketch::Theta { .. } | Sketch::Cpc { .. } => {
                assert!(a.value(0) == b.value(0), "merge is deterministic");
            }
            // HLL registers are too; the bytes also carry the HIP estimator's state, which
            // depends on the order, and a union does not use it.
            Sketch::Hll { .. } => {
                let (x, y) = (
                    HllSketch::deserialize(a.value(0)),
                    HllSketch::deserialize(b.value(0)),
                );
                assert_eq!(
                    x.unwrap().composite_estimate(),
                    y.unwrap().composite_estimate()
                );
            }
            _ => {}
        }
        b.value(0).to_vec()
    }

    #[test]
    fn distinct_counts_merge_within_their_error() {
        let n = 40_000;
        let users: Vec<String> = (0..n).map(|i| format!("user-{}", i % 25_000)).collect();
        let source: ArrayRef = Arc::new(StringArray::from(users));
        let truth = 25_000.0;
        let hll =
            HllSketch::deserialize(&merged(&metric(Sketch::Hll { lg_k: 12 }), source.clone()))
                .unwrap();
        assert!(
            hll.lower_bound(NumStdDev::Three) <= truth
                && truth <= hll.upper_bound(NumStdDev::Three)
        );
        let theta = CompactThetaSketch::deserialize(&merged(
            &metric(Sketch::Theta { lg_k: 12 }),
            source.clone(),
        ))
        .unwrap();
        assert!(
            (theta.estimate() - truth).abs() / truth < 0.05,
            "{}",
            theta.estimate()
        );
        let cpc =
            CpcSketch::deserialize(&merged(&metric(Sketch::Cpc { lg_k: 11 }), source)).unwrap();
        assert!(
            (cpc.estimate() - truth).abs() / truth < 0.05,
            "{}",
            cpc.estimate()
        );
    }

    #[test]
    fn quantiles_and_averages_merge() {
        let source: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_001));
        let kll = KllSketch::<KllFloat<f64>>::deserialize(&merged(
            &metric(Sketch::Kll { k: 200 }),
            source.clone(),
        ))
        .unwrap();
        assert_eq!(kll.n(), 10_001);
        let median = *kll
            .quantile(0.5, datasketches::common::SearchCriteria::Inclusive)
            .unwrap()
            .unwrap();
        assert!((median - 5000.0).abs() < 10_001.0 * 0.02, "{median}");
        let mut td = TDigestMut::deserialize(&merged(
            &metric(Sketch::TDigest { compression: 100 }),
            source.clone(),
        ))
        .unwrap();
        assert_eq!(td.total_weight(), 10_001);
        let p = td.quantile(0.5).unwrap().unwrap();
        assert!((p - 5000.0).abs() < 10_001.0 * 0.02, "{p}");
        let avg = merged(&metric(Sketch::Avg), source);
        assert_eq!(avg_pair(&avg), Some((50_005_000.0, 10_001)));
    }

    #[test]
    fn nulls_pass_and_one_value_keeps_its_bytes() {
        let m = metric(Sketch::Hll { lg_k: 10 });
        let source: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("")]));
        let rows = m.derive(&source, &nulls(3)).unwrap();
        assert_eq!(rows.null_count(), 2, "null and empty strings add nothing");
        let out = m.merge(&rows, &[(0, 2), (2, 3)]).unwrap();
        let (r, o) = (rows.as_binary::<i32>(), out.as_binary::<i32>());
        assert_eq!(o.value(0), r.value(0));
        assert!(o.is_null(1));
    }

    #[test]
    fn garbage_bytes_name_the_column() {
        let m = metric(Sketch::Theta { lg_k: 12 });
        let values: ArrayRef = Arc::new(BinaryArray::from(vec![&b"nope"[..], &b"nope"[..]]));
        let e = m.merge(&values, &[(0, 2)]).unwrap_err();
        assert!(
            e.to_string().contains("metric column \"m\"")
                && e.to_string().contains("not a DataSketches theta sketch"),
            "{e}"
        );
    }
}
