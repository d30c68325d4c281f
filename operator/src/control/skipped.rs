//! Segments a subtask left out as unreadable (`skipCorruptSegments`): recorded in the
//! TaskRun's status (bounded) and named in a `SegmentsSkipped` Event. They stay in the table:
//! the commit never removes them (see [`super::protocol::plan_commit`]).

use minion_contract::SkippedSegment;

use crate::api::{MAX_SKIPPED_SEGMENTS_SHOWN, SkippedSegmentStatus, TaskRunStatus};

/// Paths named in one Event message.
const NAMED_IN_EVENT: usize = 10;

/// Records the segments `subtask` skipped in `status`; returns those not recorded before (a
/// replayed step records nothing twice).
pub(super) fn record(
    status: &mut TaskRunStatus,
    subtask: u32,
    skipped: &[SkippedSegment],
) -> Vec<SkippedSegment> {
    let known = |status: &TaskRunStatus, path: &str| {
        status
            .skipped_segments
            .iter()
            .any(|s| s.subtask == subtask && s.path == path)
    };
    let mut new = Vec::new();
    for s in skipped {
        if known(status, &s.path) {
            continue;
        }
        // Past the bound, a replay cannot be told from a new skip: count only once shown.
        if status.skipped_segments.len() < MAX_SKIPPED_SEGMENTS_SHOWN {
            status.skipped_segments.push(SkippedSegmentStatus {
                subtask,
                path: s.path.clone(),
                reason: s.reason.clone(),
            });
        }
        status.skipped_segments_total += 1;
        new.push(s.clone());
    }
    new
}

/// The Event's message: the table, the files (the first few) and what is wrong with the first.
pub(super) fn message(subtask: u32, table: &str, skipped: &[SkippedSegment]) -> String {
    let names: Vec<&str> = skipped
        .iter()
        .take(NAMED_IN_EVENT)
        .map(|s| s.path.as_str())
        .collect();
    let more = skipped.len().saturating_sub(NAMED_IN_EVENT);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let why = skipped
        .first()
        .map(|s| format!(" ({}: {})", s.path, s.reason))
        .unwrap_or_default();
    format!(
        "subtask {subtask}: skipped {} unreadable segment(s) of table {table}, left in place: {}{more}{why}",
        skipped.len(),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(path: &str) -> SkippedSegment {
        SkippedSegment {
            path: path.into(),
            reason: "truncated".into(),
        }
    }

    #[test]
    fn a_replayed_record_adds_nothing_and_the_list_is_bounded() {
        let mut status = TaskRunStatus::default();
        assert_eq!(record(&mut status, 1, &[seg("a"), seg("b")]).len(), 2);
        assert!(record(&mut status, 1, &[seg("a")]).is_empty());
        assert_eq!(status.skipped_segments_total, 2);
        let many: Vec<_> = (0..80).map(|i| seg(&format!("s{i}"))).collect();
        record(&mut status, 2, &many);
        assert_eq!(status.skipped_segments.len(), MAX_SKIPPED_SEGMENTS_SHOWN);
        assert_eq!(status.skipped_segments_total, 82);
    }

    #[test]
    fn the_message_names_the_table_and_the_files() {
        let m = message(3, "events", &[seg("a.parquet"), seg("b.parquet")]);
        assert_eq!(
            m,
            "subtask 3: skipped 2 unreadable segment(s) of table events, left in place: a.parquet, b.parquet (a.parquet: truncated)"
        );
    }
}
