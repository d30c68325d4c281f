use minion_contract::TimeWindow;

use super::*;
use crate::generator::plan;
use crate::generator::testkit::*;
use crate::model::{DAY_MS, HOUR_MS, RealtimeToOfflineConfig, SegmentImportConfig, TaskSpec};

fn r2o() -> GeneratorInput {
    input(TaskSpec::RealtimeToOffline(
        RealtimeToOfflineConfig::default(),
    ))
}

fn import(f: impl FnOnce(&mut SegmentImportConfig)) -> GeneratorInput {
    let mut c = SegmentImportConfig::default();
    f(&mut c);
    input(TaskSpec::SegmentImport(c))
}

fn windows(p: &Plan) -> Vec<TimeWindow> {
    p.subtasks.iter().map(|s| s.window.unwrap()).collect()
}

fn day(n: i64) -> i64 {
    T0 + n * DAY_MS
}

const BUFFER: i64 = 2 * DAY_MS;

#[test]
fn cold_start_watermark_is_the_earliest_row_floored_to_the_bucket() {
    // Scenario 1: earliest row 2020-08-13T12:34:59Z, bucket 1d.
    let earliest = ts("2020-08-13T12:34:59Z");
    let p = plan(
        &r2o()
            .source_segments(vec![
                seg("a", earliest, earliest + HOUR_MS, 10),
                seg("b", day(1) + 5, day(2) + 5, 10),
            ])
            .now(day(10)),
    )
    .unwrap();
    assert_eq!(p.watermarks.get(""), Some(&ts("2020-08-13T00:00:00Z")));
    assert_eq!(windows(&p), vec![TimeWindow::new(day(0), day(1))]);
    assert_eq!(inputs_of(&p), vec![vec!["a"]]);
    assert_eq!(p.subtasks[0].commit_watermark_ms, Some(day(1)));
    assert!(!p.subtasks[0].replaces_inputs);
}

#[test]
fn window_is_processed_only_once_its_end_is_a_buffer_old() {
    // Scenario 2, table-driven over `now`.
    let cases = [
        (
            "one_ms_before_end_plus_buffer_gives_no_task",
            day(1) + BUFFER - 1,
            false,
        ),
        (
            "exactly_end_plus_buffer_gives_a_task",
            day(1) + BUFFER,
            true,
        ),
    ];
    for (name, now, want_task) in cases {
        let p = plan(
            &r2o()
                .source_segments(vec![
                    seg("a", day(0), day(0) + 10, 10),
                    seg("b", day(1), day(3), 10),
                ])
                .now(now),
        )
        .unwrap();
        assert_eq!(!p.is_empty(), want_task, "{name}");
        if !want_task {
            assert_eq!(reason(&p), Some("WindowNotPastBuffer"), "{name}");
        }
    }
}

#[test]
fn window_whose_partition_may_still_be_consuming_is_not_processed() {
    // Scenario 3: partition 1's latest completed segment ends inside the window.
    let p = plan(
        &r2o()
            .source_segments(vec![
                seg("p0a", day(0), day(2), 10).partition(0),
                seg("p1a", day(0), day(0) + HOUR_MS, 10).partition(1),
            ])
            .watermark("", day(0))
            .now(day(10)),
    )
    .unwrap();
    assert!(p.is_empty());
    assert_eq!(reason(&p), Some("DataStillArriving"));
    assert!(p.watermarks.is_empty(), "watermark unchanged");
}

#[test]
fn data_gap_of_three_buckets_processes_first_bucket_with_data() {
    // Scenario 4: windows day 1..3 are empty.
    let p = plan(
        &r2o()
            .source_segments(vec![
                seg("old", day(0) - DAY_MS, day(0) - 1, 10),
                seg("after_gap", day(3) + 7, day(3) + 9, 10),
                seg("later", day(4), day(5), 10),
            ])
            .watermark("", day(0))
            .now(day(20)),
    )
    .unwrap();
    assert_eq!(windows(&p), vec![TimeWindow::new(day(3), day(4))]);
    assert_eq!(inputs_of(&p), vec![vec!["after_gap"]]);
    assert_eq!(p.subtasks[0].commit_watermark_ms, Some(day(4)));
}

#[test]
fn late_data_older_than_the_watermark_is_not_moved() {
    // Scenario 6 (R2O side).
    let p = plan(
        &r2o()
            .source_segments(vec![
                seg("late", day(0), day(0) + 5, 10),
                seg("fresh", day(5), day(5) + 5, 10),
                seg("tail", day(6), day(6) + 5, 10),
            ])
            .watermark("", day(5))
            .now(day(20)),
    )
    .unwrap();
    assert_eq!(inputs_of(&p), vec![vec!["fresh"]]);
}

#[test]
fn only_late_data_says_there_is_nothing_after_the_watermark() {
    let p = plan(
        &r2o()
            .source_segments(vec![seg("late", day(0), day(0) + 5, 10)])
            .watermark("", day(5))
            .now(day(20)),
    )
    .unwrap();
    assert_eq!(reason(&p), Some("NoDataAfterWatermark"));
}

#[test]
fn r2o_edge_cases() {
    struct Case {
        name: &'static str,
        input: GeneratorInput,
        reason: Option<&'static str>,
        inputs: Vec<Vec<&'static str>>,
    }
    let cases = vec![
        Case {
            name: "no_completed_segments_gives_no_task",
            input: r2o().now(day(10)),
            reason: Some("NoCompletedSegments"),
            inputs: vec![],
        },
        Case {
            name: "incomplete_earlier_run_blocks",
            input: r2o()
                .source_segments(vec![seg("a", day(0), day(0) + 1, 1)])
                .incomplete("run-1", &[])
                .now(day(10)),
            reason: Some("PreviousRunIncomplete"),
            inputs: vec![],
        },
        Case {
            name: "window_with_a_segment_locked_by_source_lineage_waits",
            input: r2o()
                .source_segments(vec![
                    seg("a", day(0), day(0) + 1, 1),
                    seg("b", day(0) + 2, day(0) + 3, 1),
                    seg("c", day(1), day(2), 1),
                ])
                .lock_source(&["a"])
                .now(day(10)),
            reason: Some("InputsLocked"),
            inputs: vec![],
        },
        Case {
            name: "segment_spanning_the_window_end_is_picked",
            input: r2o()
                .source_segments(vec![
                    seg("span", day(0) + 5, day(1) + 5, 1),
                    seg("z", day(2), day(3), 1),
                ])
                .now(day(10)),
            reason: None,
            inputs: vec![vec!["span"]],
        },
        Case {
            name: "empty_segments_are_ignored",
            input: r2o()
                .source_segments(vec![
                    seg("empty", day(0), day(0), 0),
                    seg("a", day(1), day(1) + 1, 1),
                    seg("b", day(2), day(3), 1),
                ])
                .now(day(10)),
            reason: None,
            inputs: vec![vec!["a"]],
        },
    ];
    for c in cases {
        let p = plan(&c.input).unwrap();
        assert_eq!(reason(&p), c.reason, "{}", c.name);
        assert_eq!(inputs_of(&p), c.inputs, "{}", c.name);
    }
}

#[test]
fn r2o_without_a_source_table_is_an_error() {
    let mut i = r2o();
    i.source = None;
    assert_eq!(plan(&i).unwrap_err().reason(), "MissingSourceTable");
}

/// One segment per day, then a `tail` segment: the latest completed segment of the (single)
/// stream partition, ending inside its window, so the walk stops there.
fn daily_segments(days: i64, rows: u64) -> Vec<minion_contract::SegmentRef> {
    (0..days)
        .map(|d| seg(&format!("d{d}"), day(d), day(d) + DAY_MS - 1, rows))
        .chain([seg("tail", day(days), day(days) + 1, rows)])
        .collect()
}

#[test]
fn segment_import_plans_parallel_windows_up_to_table_max_num_tasks() {
    let p = plan(
        &import(|c| c.table_max_num_tasks = 3)
            .source_segments(daily_segments(10, 100))
            .watermark("", day(0))
            .now(day(30)),
    )
    .unwrap();
    // Default maxNumRecordsPerTask (50M) would put every window into one subtask.
    assert_eq!(windows(&p), vec![TimeWindow::new(day(0), day(10))]);
    let p = plan(
        &import(|c| {
            c.table_max_num_tasks = 3;
            c.max_records_per_task = 150;
        })
        .source_segments(daily_segments(10, 100))
        .watermark("", day(0))
        .now(day(30)),
    )
    .unwrap();
    assert_eq!(
        windows(&p),
        vec![
            TimeWindow::new(day(0), day(2)),
            TimeWindow::new(day(2), day(4)),
            TimeWindow::new(day(4), day(6)),
        ]
    );
    assert_eq!(p.subtasks[2].commit_watermark_ms, Some(day(6)));
    assert_eq!(p.commit_mode, CommitMode::InOrder);
}

#[test]
fn segment_import_starts_from_initial_watermark_when_none_is_stored() {
    let p = plan(
        &import(|c| {
            c.initial_watermark_ms = Some(day(3));
            c.max_records_per_task = 1;
        })
        .source_segments(daily_segments(6, 100))
        .now(day(30)),
    )
    .unwrap();
    assert_eq!(p.watermarks.get(""), Some(&day(3)));
    assert_eq!(inputs_of(&p), vec![vec!["d3"], vec!["d4"], vec!["d5"]]);
}

#[test]
fn segment_import_skips_windows_committed_beyond_the_watermark() {
    let p = plan(
        &import(|c| c.max_records_per_task = 1)
            .source_segments(daily_segments(4, 100))
            .watermark("", day(0))
            .committed_window(TimeWindow::new(day(1), day(2)))
            .now(day(30)),
    )
    .unwrap();
    assert_eq!(inputs_of(&p), vec![vec!["d0"], vec!["d2"], vec!["d3"]]);
    // Even when windows are grouped, a committed window splits the group.
    let p = plan(
        &import(|_| {})
            .source_segments(daily_segments(4, 100))
            .watermark("", day(0))
            .committed_window(TimeWindow::new(day(1), day(2)))
            .now(day(30)),
    )
    .unwrap();
    assert_eq!(
        windows(&p),
        vec![
            TimeWindow::new(day(0), day(1)),
            TimeWindow::new(day(2), day(4))
        ]
    );
}

#[test]
fn segment_import_stops_at_data_still_arriving_but_keeps_earlier_windows() {
    let p = plan(
        &import(|c| c.max_records_per_task = 1)
            .source_segments(vec![
                seg("a", day(0), day(0) + 5, 10).partition(0),
                seg("b", day(1), day(1) + 5, 10).partition(0),
                seg("c", day(0), day(3), 10).partition(1),
            ])
            .watermark("", day(0))
            .now(day(30)),
    )
    .unwrap();
    // Window day 1 holds partition 0's latest segment ending inside it.
    assert_eq!(windows(&p), vec![TimeWindow::new(day(0), day(1))]);
    assert!(p.skip.is_none());
}

#[test]
fn watermark_advances_only_over_the_contiguous_prefix_of_committed_windows() {
    let w = |a, b| TimeWindow::new(day(a), day(b));
    let cases = [
        (
            "all_committed",
            vec![(w(0, 1), true), (w(2, 3), true)],
            vec![],
            day(3),
            vec![],
        ),
        (
            "first_failed_holds_everything",
            vec![(w(0, 1), false), (w(1, 2), true)],
            vec![],
            day(0),
            vec![w(1, 2)],
        ),
        (
            "middle_failed_stops_there",
            vec![(w(0, 1), true), (w(1, 2), false), (w(2, 3), true)],
            vec![],
            day(1),
            vec![w(2, 3)],
        ),
        (
            "earlier_committed_window_joins_the_prefix",
            vec![(w(0, 1), true)],
            vec![w(1, 2)],
            day(2),
            vec![],
        ),
    ];
    for (name, planned, earlier, want, beyond) in cases {
        let got = advance_watermark(day(0), &planned, &earlier);
        assert_eq!(got.watermark_ms, want, "{name}");
        assert_eq!(got.committed_beyond, beyond, "{name}");
    }
}

#[test]
fn delay_counts_whole_buckets_behind_now_minus_buffer() {
    let w = crate::model::WindowProcessing::default();
    assert_eq!(delay_buckets(&w, Some(day(0)), day(5)), Some(3));
    assert_eq!(delay_buckets(&w, Some(day(0)), day(1)), Some(0));
    assert_eq!(delay_buckets(&w, None, day(5)), None);
}

#[test]
fn window_with_more_segments_than_the_cap_is_split_all_or_none() {
    let n = crate::model::defaults::MAX_SEGMENTS_PER_TASK + 5;
    let segs = (0..n)
        .map(|i| seg(&format!("s{i:05}"), day(0) + i as i64, day(0) + i as i64, 1))
        .chain([seg("next", day(1), day(2), 1)])
        .collect();
    let p = plan(&r2o().source_segments(segs).now(day(10))).unwrap();
    assert_eq!(p.subtasks.len(), 2);
    assert_eq!(p.commit_mode, CommitMode::AllOrNone);
    assert!(
        p.subtasks
            .iter()
            .all(|s| s.window == Some(TimeWindow::new(day(0), day(1))))
    );
}

#[test]
fn skip_corrupt_segments_reaches_every_subtask_spec() {
    let segments = || {
        vec![
            seg("a", day(0), day(0) + HOUR_MS, 10),
            seg("b", day(1), day(1) + HOUR_MS, 10),
        ]
    };
    for skip in [false, true] {
        let mut r2o = RealtimeToOfflineConfig::default();
        r2o.window.skip_corrupt_segments = skip;
        let r2o = input(TaskSpec::RealtimeToOffline(r2o));
        let import = import(|c| c.window.skip_corrupt_segments = skip);
        for input in [r2o, import] {
            let p = plan(&input.source_segments(segments()).now(day(10))).unwrap();
            assert!(!p.subtasks.is_empty());
            for s in &p.subtasks {
                assert_eq!(s.processing.skip_corrupt_segments, skip);
            }
        }
    }
}
