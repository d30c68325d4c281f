//! Data retention of a Table (`spec.retentionTimePeriod`), decided purely: which segments
//! are past the retention, and which of those may go.
//!
//! # Contract
//! - A segment is expired when all its data lies before `cutoff` (its maximum time is
//!   earlier). A segment without a time range never expires.
//! - An expired segment goes only once every importer reading the table (a RealtimeToOffline
//!   or SegmentImport config that is not suspended) has moved it: its maximum time is before
//!   that importer's committed watermark. An importer with no watermark has moved nothing.
//! - A segment a live lineage entry replaces or reads is kept this time (its run is in flight).
//! - The importer blocking the most data (the lowest watermark among those that block) is
//!   named, so the Table's `Degraded` condition says whom to look at.

use minion_contract::SegmentRef;

/// A config that reads the table and the watermark it has committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Importer {
    pub config: String,
    pub watermark_ms: Option<i64>,
}

/// What retention does to a table now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Expired segments every importer has moved: removed in one commit.
    pub remove: Vec<&'a SegmentRef>,
    /// Expired segments some importer has not moved yet: kept.
    pub blocked: Vec<&'a SegmentRef>,
    /// The importer that blocks, with the lowest watermark.
    pub blocking: Option<&'a Importer>,
}

/// Decides. See the module contract.
pub fn decide<'a>(
    segments: &'a [SegmentRef],
    cutoff_ms: i64,
    importers: &'a [Importer],
    locked: impl Fn(&str) -> bool,
) -> Decision<'a> {
    let mut d = Decision::default();
    for s in segments {
        let Some(max) = s.max_time_ms else { continue };
        if max >= cutoff_ms || locked(&s.path) {
            continue;
        }
        let behind: Vec<&Importer> = importers
            .iter()
            .filter(|i| i.watermark_ms.is_none_or(|w| max >= w))
            .collect();
        if behind.is_empty() {
            d.remove.push(s);
            continue;
        }
        d.blocked.push(s);
        for i in behind {
            let lower = d.blocking.is_none_or(|b| {
                i.watermark_ms.unwrap_or(i64::MIN) < b.watermark_ms.unwrap_or(i64::MIN)
            });
            if lower {
                d.blocking = Some(i);
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn seg(path: &str, day: i64) -> SegmentRef {
        SegmentRef {
            path: path.into(),
            rows: 10,
            bytes: 100,
            min_time_ms: Some(day * DAY),
            max_time_ms: Some((day + 1) * DAY - 1),
            partition: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn expired_segments_go_only_once_every_importer_moved_them() {
        let segments: Vec<SegmentRef> = (0..6).map(|d| seg(&format!("d{d}"), d)).collect();
        let cutoff = 3 * DAY; // days 0, 1, 2 are expired
        let none: &[Importer] = &[];
        let d = decide(&segments, cutoff, none, |_| false);
        assert_eq!(d.remove.len(), 3);
        assert!(d.blocked.is_empty() && d.blocking.is_none());

        let importers = vec![
            Importer {
                config: "import".into(),
                watermark_ms: Some(2 * DAY),
            },
            Importer {
                config: "r2o".into(),
                watermark_ms: Some(DAY),
            },
        ];
        let d = decide(&segments, cutoff, &importers, |_| false);
        let paths = |v: &[&SegmentRef]| v.iter().map(|s| s.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&d.remove), vec!["d0"]);
        assert_eq!(paths(&d.blocked), vec!["d1", "d2"]);
        assert_eq!(d.blocking.unwrap().config, "r2o");

        let cold = vec![Importer {
            config: "import".into(),
            watermark_ms: None,
        }];
        let d = decide(&segments, cutoff, &cold, |p| p == "d1");
        assert!(d.remove.is_empty());
        assert_eq!(
            paths(&d.blocked),
            vec!["d0", "d2"],
            "a locked segment is left alone"
        );
    }
}
