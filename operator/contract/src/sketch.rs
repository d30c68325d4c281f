//! Parameters of the sketch aggregations (`aggregationParameters.<metric>`), checked once and
//! resolved with their defaults into a [`Sketch`]: what the worker builds and merges.
//!
//! The ranges are those of Apache DataSketches, so a value accepted at apply is one the
//! sketch library takes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::task::AggregationType;

/// Theta sketch: default nominal entries (2^12), and the accepted range (powers of two).
pub const DEFAULT_THETA_NOMINAL_ENTRIES: u32 = 4096;
const THETA_LG_K: (u8, u8) = (5, 26);
/// HLL: default log2 of the number of registers, and the accepted range.
pub const DEFAULT_HLL_LG_K: u8 = 12;
const HLL_LG_K: (u8, u8) = (4, 21);
/// CPC: default log2 of K, and the accepted range.
pub const DEFAULT_CPC_LG_K: u8 = 11;
const CPC_LG_K: (u8, u8) = (4, 26);
/// KLL: default k, and the smallest accepted.
pub const DEFAULT_KLL_K: u16 = 200;
const KLL_MIN_K: u16 = 8;
/// t-digest: default compression (Pinot's), and the smallest accepted.
pub const DEFAULT_TDIGEST_COMPRESSION: u16 = 100;
const TDIGEST_MIN_COMPRESSION: u16 = 10;

/// Parameters of one metric's sketch aggregation. Each applies to one aggregation type;
/// an absent one takes its default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AggregationParameters {
    /// distinctCountThetaSketch: nominal entries, a power of two from 32 to 67108864.
    /// Default 4096 (relative error about 1.6 % at two standard deviations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal_entries: Option<u32>,
    /// distinctCountHLL / distinctCountHLLPlus (4 to 21, default 12) and
    /// distinctCountCPCSketch (4 to 26, default 11): log2 of the sketch's K.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lg_k: Option<u8>,
    /// percentileKLL: k, from 8 to 65535. Default 200 (rank error about 1.65 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u16>,
    /// percentileTDigest: compression, from 10 to 65535. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<u16>,
}

/// A metric's byte aggregation with its parameters resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sketch {
    Theta { lg_k: u8 },
    Hll { lg_k: u8 },
    Cpc { lg_k: u8 },
    Kll { k: u16 },
    TDigest { compression: u16 },
    Avg,
}

impl Sketch {
    /// Resolves `agg`'s parameters. `Ok(None)` for a numeric aggregation without parameters.
    ///
    /// # Errors
    /// A sentence naming the parameter (`lgK`), its value and the accepted values.
    pub fn resolve(
        agg: AggregationType,
        params: &AggregationParameters,
    ) -> Result<Option<Sketch>, String> {
        let allowed: &[&str] = match agg {
            AggregationType::DistinctCountThetaSketch => &["nominalEntries"],
            AggregationType::DistinctCountHll
            | AggregationType::DistinctCountHllPlus
            | AggregationType::DistinctCountCpcSketch => &["lgK"],
            AggregationType::PercentileKll => &["k"],
            AggregationType::PercentileTDigest => &["compression"],
            _ => &[],
        };
        for (name, set) in [
            ("nominalEntries", params.nominal_entries.is_some()),
            ("lgK", params.lg_k.is_some()),
            ("k", params.k.is_some()),
            ("compression", params.compression.is_some()),
        ] {
            if set && !allowed.contains(&name) {
                let takes = match allowed {
                    [] => "takes no parameters".to_string(),
                    [one] => format!("takes only {one}"),
                    _ => unreachable!("one parameter per sketch"),
                };
                return Err(format!(
                    "{name} does not apply to {}, which {takes}",
                    agg.name()
                ));
            }
        }
        let lg_k = |(lo, hi): (u8, u8), default: u8| match params.lg_k.unwrap_or(default) {
            v if (lo..=hi).contains(&v) => Ok(v),
            v => Err(format!(
                "lgK {v} is out of range for {}: use {lo} to {hi} (default {default})",
                agg.name()
            )),
        };
        Ok(Some(match agg {
            AggregationType::DistinctCountThetaSketch => {
                let n = params
                    .nominal_entries
                    .unwrap_or(DEFAULT_THETA_NOMINAL_ENTRIES);
                let (lo, hi) = THETA_LG_K;
                if !n.is_power_of_two() || !(lo..=hi).contains(&(n.trailing_zeros() as u8)) {
                    return Err(format!(
                        "nominalEntries {n} is not a power of two from {} to {}: use for example {DEFAULT_THETA_NOMINAL_ENTRIES}",
                        1u32 << lo,
                        1u32 << hi
                    ));
                }
                Sketch::Theta {
                    lg_k: n.trailing_zeros() as u8,
                }
            }
            AggregationType::DistinctCountHll | AggregationType::DistinctCountHllPlus => {
                Sketch::Hll {
                    lg_k: lg_k(HLL_LG_K, DEFAULT_HLL_LG_K)?,
                }
            }
            AggregationType::DistinctCountCpcSketch => Sketch::Cpc {
                lg_k: lg_k(CPC_LG_K, DEFAULT_CPC_LG_K)?,
            },
            AggregationType::PercentileKll => match params.k.unwrap_or(DEFAULT_KLL_K) {
                k if k >= KLL_MIN_K => Sketch::Kll { k },
                k => {
                    return Err(format!(
                        "k {k} is too small for percentileKLL: use {KLL_MIN_K} to 65535 (default {DEFAULT_KLL_K})"
                    ));
                }
            },
            AggregationType::PercentileTDigest => {
                match params.compression.unwrap_or(DEFAULT_TDIGEST_COMPRESSION) {
                    c if c >= TDIGEST_MIN_COMPRESSION => Sketch::TDigest { compression: c },
                    c => {
                        return Err(format!(
                            "compression {c} is too small for percentileTDigest: use {TDIGEST_MIN_COMPRESSION} to 65535 (default {DEFAULT_TDIGEST_COMPRESSION})"
                        ));
                    }
                }
            }
            AggregationType::Avg => Sketch::Avg,
            _ => return Ok(None),
        }))
    }

    /// Whether a value of any type can be added (distinct counts) or only a number
    /// (percentiles and averages).
    pub fn counts_distinct(self) -> bool {
        matches!(
            self,
            Sketch::Theta { .. } | Sketch::Hll { .. } | Sketch::Cpc { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        let none = AggregationParameters::default();
        let r = |agg, p: &AggregationParameters| Sketch::resolve(agg, p);
        assert_eq!(
            r(AggregationType::DistinctCountThetaSketch, &none),
            Ok(Some(Sketch::Theta { lg_k: 12 }))
        );
        assert_eq!(
            r(AggregationType::DistinctCountHll, &none),
            Ok(Some(Sketch::Hll { lg_k: 12 }))
        );
        assert_eq!(
            r(AggregationType::DistinctCountCpcSketch, &none),
            Ok(Some(Sketch::Cpc { lg_k: 11 }))
        );
        assert_eq!(
            r(AggregationType::PercentileKll, &none),
            Ok(Some(Sketch::Kll { k: 200 }))
        );
        assert_eq!(
            r(AggregationType::PercentileTDigest, &none),
            Ok(Some(Sketch::TDigest { compression: 100 }))
        );
        assert_eq!(r(AggregationType::Sum, &none), Ok(None));
        let theta = |n| AggregationParameters {
            nominal_entries: Some(n),
            ..Default::default()
        };
        assert_eq!(
            r(AggregationType::DistinctCountThetaSketch, &theta(65536)),
            Ok(Some(Sketch::Theta { lg_k: 16 }))
        );
        for bad in [1000, 16, 1 << 27] {
            let e = r(AggregationType::DistinctCountThetaSketch, &theta(bad)).unwrap_err();
            assert!(
                e.contains("nominalEntries") && e.contains("power of two"),
                "{e}"
            );
        }
        let lg = AggregationParameters {
            lg_k: Some(22),
            ..Default::default()
        };
        assert!(
            r(AggregationType::DistinctCountHll, &lg)
                .unwrap_err()
                .contains("use 4 to 21")
        );
        assert_eq!(
            r(AggregationType::DistinctCountCpcSketch, &lg),
            Ok(Some(Sketch::Cpc { lg_k: 22 }))
        );
        let e = r(AggregationType::PercentileKll, &lg).unwrap_err();
        assert!(e.contains("lgK does not apply to percentileKLL, which takes only k"));
        let e = r(AggregationType::Sum, &lg).unwrap_err();
        assert!(e.contains("takes no parameters"), "{e}");
    }

    #[test]
    fn names_round_trip_through_serde() {
        for agg in [
            AggregationType::DistinctCountHll,
            AggregationType::DistinctCountHllPlus,
            AggregationType::DistinctCountCpcSketch,
            AggregationType::DistinctCountThetaSketch,
            AggregationType::PercentileKll,
            AggregationType::PercentileTDigest,
            AggregationType::Avg,
            AggregationType::FirstWithTime,
        ] {
            let json = serde_json::to_string(&agg).unwrap();
            assert_eq!(json, format!("\"{}\"", agg.name()));
            assert!(agg.is_bytes() || agg == AggregationType::FirstWithTime);
        }
    }
}
