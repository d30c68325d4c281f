//! SegmentBackfillTask: replace the data of a time range (optionally only rows matching a
//! filter) with the rows of input files, all or none (docs/semantics.md, "SegmentBackfillTask").
//!
//! # Contract
//! - Destination segments overlapping `[start, end)` are rewritten without the rows inside the
//!   range that match the filter (a purge predicate built here); a segment wholly inside the
//!   range, with no filter, is deleted without a rewrite.
//! - Every listed input file is ingested, keeping only rows inside the range (and matching the
//!   filter), packed by the default `taskMaxDataSize`.
//! - All subtasks are committed together (`AllOrNone`): readers see the old range or the new
//!   one, never a mix. If any overlapping segment is locked by another run (replaced, or read
//!   as a refresh's upsert context), nothing is planned.
//! - An empty input listing plans nothing (it would only delete the range).
//!
//! The purge predicate uses the worker's grammar: the time column compared in its own unit
//! (RFC 3339 text for `TIMESTAMP` columns, the pattern's text for date columns). The filter, parsed when the resource was applied,
//! is combined as a tree and printed canonically; it is never pasted into predicate text.

use minion_contract::{ColumnType, Processing, SegmentRef, TableSchema, TimeFormat, TimeWindow};

use crate::model::{Expr, SegmentBackfillConfig, defaults};
use minion_common::predicate::{CmpOp, Literal};

use super::file_ingestion::{pack_files, to_input_file};
use super::windows::base_processing;
use super::{
    CommitMode, GeneratorInput, ListedFile, NoTaskReason, Plan, PlannedSubtask,
    blocked_by_incomplete_run, first_locked, fmt_window, no_task, split_by_limits, time_range,
};

/// A predicate true for rows with time in `range` (and matching `filter`), over `schema`'s
/// time column. Built as a tree — `time >= start AND time < end AND (filter)` — so the
/// filter stays one operand, whatever it contains, and can only narrow the range.
pub fn range_predicate(schema: &TableSchema, range: TimeWindow, filter: Option<&Expr>) -> Expr {
    let is_string = schema
        .time()
        .is_some_and(|c| c.data_type == ColumnType::String);
    // Values compare as their times: numbers for epoch columns, RFC 3339 text for TIMESTAMP
    // columns, the pattern's own text (which sorts in time order) for date columns. A date
    // bound is written as `> format(start − 1)` and `<= format(end − 1)`, exact even when the
    // range does not fall on the pattern's steps.
    let format = schema.time_format();
    let (lo, hi) = match &format {
        TimeFormat::Timestamp => (
            (CmpOp::Ge, Literal::Str(super::fmt_ms(range.start_ms))),
            (CmpOp::Lt, Literal::Str(super::fmt_ms(range.end_ms))),
        ),
        TimeFormat::SimpleDate(p) => {
            let text = |ms: i64| match p.format(ms) {
                Some(t) if p.is_numeric() && !is_string => Literal::Num(t),
                Some(t) => Literal::Str(t),
                None => Literal::Str(super::fmt_ms(ms)),
            };
            (
                (CmpOp::Gt, text(range.start_ms - 1)),
                (CmpOp::Le, text(range.end_ms - 1)),
            )
        }
        TimeFormat::Epoch { .. } => (
            (
                CmpOp::Ge,
                Literal::Num(format.from_millis_ceil(range.start_ms).to_string()),
            ),
            (
                CmpOp::Lt,
                Literal::Num(format.from_millis_ceil(range.end_ms).to_string()),
            ),
        ),
    };
    let bound = |(op, value): (CmpOp, Literal)| Expr::Cmp {
        column: schema.time_column.clone(),
        op,
        value,
    };
    let mut items = vec![bound(lo), bound(hi)];
    items.extend(filter.cloned());
    Expr::and(items)
}

/// Plans one backfill. See the module contract.
pub fn plan_backfill(input: &GeneratorInput, config: &SegmentBackfillConfig) -> Plan {
    if let Some(plan) = blocked_by_incomplete_run(input) {
        return plan;
    }
    let dest = &input.destination;
    let range = TimeWindow::new(config.start_ms, config.end_ms);
    let mut files: Vec<&ListedFile> = input.files.iter().collect();
    files.sort_by(|a, b| a.uri.cmp(&b.uri));
    if files.is_empty() {
        return no_task(
            input,
            NoTaskReason::NoNewFiles,
            format!(
                "no input file under {}; the range is left as it is",
                config.input_dir_uri
            ),
        );
    }
    let overlapping: Vec<&SegmentRef> = super::available(dest)
        .into_iter()
        .filter(|s| time_range(s).is_some_and(|(min, max)| range.overlaps_inclusive(min, max)))
        .collect();
    let locked_overlapping = dest
        .segments
        .iter()
        .filter(|s| time_range(s).is_some_and(|(min, max)| range.overlaps_inclusive(min, max)));
    if let Some((s, holder)) = first_locked(dest, locked_overlapping) {
        return no_task(
            input,
            NoTaskReason::InputsLocked,
            format!(
                "segment {} overlapping {} is locked by {holder}; the range is replaced once that run ends",
                s.name(),
                fmt_window(&range)
            ),
        );
    }
    let (deletes, rewrites): (Vec<&SegmentRef>, Vec<&SegmentRef>) =
        overlapping.into_iter().partition(|s| {
            config.filter.is_none()
                && time_range(s)
                    .is_some_and(|(min, max)| min >= range.start_ms && max < range.end_ms)
        });
    let task_type = input.config.task_type();
    let schema = &dest.def.schema;
    let base = Processing {
        value_partitioning: schema.partitioning.is_some(),
        ..base_processing(config.max_records_per_segment)
    };
    let mut plan = Plan::new(task_type);
    plan.commit_mode = CommitMode::AllOrNone;
    let rewrite = Processing {
        purge_predicate: Some(range_predicate(schema, range, config.filter.as_ref()).to_string()),
        ..base.clone()
    };
    for chunk in split_by_limits(
        rewrites,
        defaults::MAX_RECORDS_PER_TASK,
        defaults::MAX_DATA_SIZE_PER_TASK_BYTES,
    ) {
        let s = PlannedSubtask::new(task_type, plan.subtasks.len() as u32, rewrite.clone())
            .with_inputs(chunk);
        plan.subtasks.push(s);
    }
    let ingest = Processing {
        purge_predicate: config
            .filter
            .as_ref()
            .map(|f| Expr::not(f.clone()).to_string()),
        ..base
    };
    let mut delete_chunks = deletes.chunks(defaults::MAX_SEGMENTS_PER_TASK);
    for batch in pack_files(&files, defaults::TASK_MAX_DATA_SIZE_BYTES, None) {
        let mut s = PlannedSubtask::new(task_type, plan.subtasks.len() as u32, ingest.clone());
        s.window = Some(range);
        for f in batch {
            s.estimated_bytes += f.bytes;
            s.input_files.push(to_input_file(f, config.input_format));
        }
        if let Some(chunk) = delete_chunks.next() {
            s.deletes = chunk.iter().map(|d| (*d).clone()).collect();
        }
        plan.subtasks.push(s);
    }
    for chunk in delete_chunks {
        let mut s = PlannedSubtask::new(task_type, plan.subtasks.len() as u32, ingest.clone());
        s.deletes = chunk.iter().map(|d| (*d).clone()).collect();
        plan.subtasks.push(s);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::plan;
    use crate::generator::testkit::*;
    use crate::model::{DAY_MS, TaskSpec};
    use minion_contract::FileFormat;

    fn backfill(filter: Option<&str>) -> GeneratorInput {
        input(TaskSpec::SegmentBackfill(SegmentBackfillConfig {
            start_ms: T0 + DAY_MS,
            end_ms: T0 + 2 * DAY_MS,
            filter: filter.map(|f| Expr::parse(f).unwrap()),
            input_dir_uri: "s3://in/events".into(),
            input_format: FileFormat::Parquet,
            max_records_per_segment: defaults::MAX_RECORDS_PER_SEGMENT,
        }))
        .files(vec![file("new.parquet", 10, "v1")])
        .dest_segments(vec![
            seg("before", T0, T0 + 5, 10),
            seg("inside", T0 + DAY_MS + 5, T0 + DAY_MS + 9, 10),
            seg("edge", T0 + 2 * DAY_MS - 1, T0 + 3 * DAY_MS, 10),
            seg("after", T0 + 2 * DAY_MS, T0 + 3 * DAY_MS, 10),
        ])
    }

    #[test]
    fn backfill_rewrites_overlapping_segments_deletes_covered_ones_and_ingests_all_or_none() {
        let p = plan(&backfill(None)).unwrap();
        assert_eq!(p.commit_mode, CommitMode::AllOrNone);
        assert_eq!(inputs_of(&p), vec![vec!["edge"], vec![]]);
        assert_eq!(deletes_of(&p), vec![vec![], vec!["inside"]]);
        let rewrite = &p.subtasks[0];
        assert_eq!(
            rewrite.processing.purge_predicate.as_deref(),
            Some(format!("\"ts\" >= {} AND \"ts\" < {}", T0 + DAY_MS, T0 + 2 * DAY_MS).as_str())
        );
        assert_eq!(rewrite.window, None);
        let ingest = &p.subtasks[1];
        assert_eq!(
            ingest.window,
            Some(TimeWindow::new(T0 + DAY_MS, T0 + 2 * DAY_MS))
        );
        assert_eq!(ingest.input_files.len(), 1);
        assert_eq!(ingest.processing.purge_predicate, None);
    }

    #[test]
    fn filtered_backfill_rewrites_instead_of_deleting_and_ingests_only_matching_rows() {
        let p = plan(&backfill(Some("id = 'x'"))).unwrap();
        assert_eq!(inputs_of(&p), vec![vec!["inside", "edge"], vec![]]);
        assert!(
            p.subtasks[0]
                .processing
                .purge_predicate
                .as_deref()
                .unwrap()
                .ends_with("AND \"id\" = 'x'")
        );
        assert_eq!(
            p.subtasks[1].processing.purge_predicate.as_deref(),
            Some("NOT \"id\" = 'x'")
        );
    }

    /// Which rows of (id, ts) the worker purges with the predicate of `text`.
    fn purged_rows(text: &str, rows: &[(&str, i64)]) -> Vec<bool> {
        use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
        use minion_common::predicate::Predicate;
        use std::sync::Arc;
        let arrow = minion_common::schema::arrow_schema(&schema(None, false));
        let ids: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
        let ts: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)));
        let m: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|_| 1)));
        let batch = RecordBatch::try_new(arrow.clone(), vec![ids, ts, m]).unwrap();
        let p = Predicate::parse(text, &arrow).unwrap();
        p.keep_mask(&batch)
            .unwrap()
            .iter()
            .map(|k| !k.unwrap())
            .collect()
    }

    #[test]
    fn a_filter_with_its_own_or_cannot_widen_the_range_it_purges() {
        // Pasted as text, `id = 'x') OR ("ts" >= 0` closed the generated parenthesis and
        // purged every row with ts >= 0. As a tree it cannot: the text does not parse alone,
        // and a filter that does parse with a top-level OR stays one operand of the AND.
        assert!(Expr::parse("id = 'x') OR (\"ts\" >= 0").is_err());
        let p = plan(&backfill(Some("id = 'x' OR \"ts\" >= 0"))).unwrap();
        let rewrite = p.subtasks[0].processing.purge_predicate.clone().unwrap();
        assert_eq!(
            rewrite,
            format!(
                "\"ts\" >= {} AND \"ts\" < {} AND (\"id\" = 'x' OR \"ts\" >= 0)",
                T0 + DAY_MS,
                T0 + 2 * DAY_MS
            )
        );
        let rows = [
            ("y", T0),              // before the range: survives
            ("y", T0 + DAY_MS + 5), // inside, matches the filter's OR: purged
            ("x", T0 + 2 * DAY_MS), // after the range, even with id = 'x': survives
            ("x", T0 + DAY_MS),     // inside: purged
            ("y", T0 + 3 * DAY_MS), // after: survives
        ];
        assert_eq!(
            purged_rows(&rewrite, &rows),
            [false, true, false, true, false]
        );
        // The ingest side keeps exactly the complement of the filter, confined likewise.
        let ingest = p.subtasks[1].processing.purge_predicate.clone().unwrap();
        assert_eq!(ingest, "NOT (\"id\" = 'x' OR \"ts\" >= 0)");
        assert_eq!(
            purged_rows(&ingest, &[("y", T0 + DAY_MS), ("x", -5), ("y", -5)]),
            [false, false, true]
        );
    }

    #[test]
    fn a_filter_at_the_depth_limit_still_fits_the_workers_limit_once_combined() {
        use minion_common::predicate::MAX_DEPTH;
        let nots = format!("{}id = 'x'", "NOT ".repeat(MAX_DEPTH));
        let parens = format!("{}id = 'x'{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        for filter in [nots, parens] {
            let p = plan(&backfill(Some(&filter))).unwrap();
            for s in &p.subtasks {
                let text = s.processing.purge_predicate.as_deref().unwrap();
                purged_rows(text, &[("x", T0 + DAY_MS)]);
            }
        }
    }

    #[test]
    fn backfill_over_a_locked_segment_plans_nothing() {
        let p = plan(&backfill(None).lock_dest(&["edge"])).unwrap();
        assert_eq!(reason(&p), Some("InputsLocked"));
    }

    #[test]
    fn backfill_without_input_files_plans_nothing() {
        let p = plan(&backfill(None).files(vec![])).unwrap();
        assert_eq!(reason(&p), Some("NoNewFiles"));
    }

    #[test]
    fn range_predicate_uses_the_time_columns_unit() {
        let mut s = schema(None, false);
        s.time_unit = minion_contract::TimeUnit::Seconds;
        let r = TimeWindow::new(1500, 3000);
        assert_eq!(
            range_predicate(&s, r, None).to_string(),
            "\"ts\" >= 2 AND \"ts\" < 3"
        );
        s.columns[1].data_type = ColumnType::Timestamp;
        assert_eq!(
            range_predicate(&s, TimeWindow::new(T0, T0 + DAY_MS), None).to_string(),
            "\"ts\" >= '2020-08-13T00:00:00Z' AND \"ts\" < '2020-08-14T00:00:00Z'"
        );
    }
}
