use minion_contract::TimeWindow;
use minion_contract::segment::TAG_SHOULD_NOT_MERGE;

use super::*;
use crate::generator::testkit::*;
use crate::generator::{GeneratorInput, plan};
use crate::model::{DAY_MS, HOUR_MS, MergeLevel, TableType, TaskSpec};

fn hour(n: i64) -> i64 {
    T0 + n * HOUR_MS
}

fn one_level(f: impl FnOnce(&mut MergeLevel)) -> GeneratorInput {
    let mut l = merge_level("1hour", HOUR_MS);
    f(&mut l);
    input(merge_rollup(vec![l])).now(T0 + 10 * DAY_MS)
}

fn two_levels() -> GeneratorInput {
    input(merge_rollup(vec![
        merge_level("1hour", HOUR_MS),
        merge_level("1day", DAY_MS),
    ]))
    .now(T0 + 10 * DAY_MS)
}

fn buckets(p: &Plan) -> Vec<(String, TimeWindow)> {
    p.subtasks
        .iter()
        .map(|s| (s.level.clone().unwrap(), s.bucket.unwrap()))
        .collect()
}

fn hourly(n: i64) -> TimeWindow {
    TimeWindow::new(hour(n), hour(n + 1))
}

#[test]
fn first_run_merges_the_first_bucket_and_sets_every_level_watermark() {
    let p = plan(&one_level(|_| {}).dest_segments(vec![
        seg("a", hour(0) + 1, hour(0) + 5, 10),
        seg("b", hour(0) + 6, hour(0) + 9, 10),
        seg("c", hour(1), hour(1) + 9, 10),
    ]))
    .unwrap();
    assert_eq!(inputs_of(&p), vec![vec!["a", "b"]]);
    assert_eq!(p.watermarks.get("1hour"), Some(&hour(0)));
    let s = &p.subtasks[0];
    assert_eq!(
        s.output.tags.get("mergeLevel").map(String::as_str),
        Some("1hour")
    );
    assert_eq!(s.processing.time_partition_ms, Some(HOUR_MS));
    assert!(s.replaces_inputs);
    assert_eq!(s.window, None, "rows outside the bucket are kept");
}

#[test]
fn task_split_by_max_records_gives_each_split_its_own_lineage_entry() {
    // Scenario 11: three ~10k-row segments, maxNumRecordsPerTask = 15000.
    let p = plan(
        &one_level(|l| l.max_records_per_task = 15_000).dest_segments(vec![
            seg("a", hour(0), hour(0) + 1, 10_000),
            seg("b", hour(0) + 2, hour(0) + 3, 10_000),
            seg("c", hour(0) + 4, hour(0) + 5, 9_000),
        ]),
    )
    .unwrap();
    assert_eq!(inputs_of(&p), vec![vec!["a", "b"], vec!["c"]]);
    let reqs = p.lineage_requests("run-7", "run-7", "run-7");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].id, "run-7-1");
    assert_eq!(reqs[1].segments_from, vec!["data/c.parquet".to_string()]);
    assert!(minion_contract::staging_prefix("run-7", 1, 3).starts_with(&reqs[1].output_prefix));
}

#[test]
fn a_segment_spanning_two_buckets_joins_them_into_one_group_and_the_walk_goes_on() {
    // Scenario 12, beyond the reference (which stops after the first bucket): the spanning
    // segment and the next bucket's segments are one subtask over both buckets, and the walk
    // takes the next buckets up to maxNumParallelBuckets (the group counts as two).
    let segs = || {
        vec![
            seg("span", hour(0) + 5, hour(1) + 5, 10),
            seg("b", hour(1) + 10, hour(1) + 20, 10),
            seg("c", hour(2), hour(2) + 1, 10),
            seg("d", hour(3), hour(3) + 1, 10),
        ]
    };
    let p = plan(&one_level(|l| l.max_num_parallel_buckets = 5).dest_segments(segs())).unwrap();
    let group = TimeWindow::new(hour(0), hour(2));
    assert_eq!(
        buckets(&p),
        vec![
            ("1hour".into(), group),
            ("1hour".into(), hourly(2)),
            ("1hour".into(), hourly(3)),
        ]
    );
    assert_eq!(inputs_of(&p), vec![vec!["span", "b"], vec!["c"], vec!["d"]]);
    // The worker splits the group's rows by bucket, so each output holds one bucket.
    assert_eq!(p.subtasks[0].processing.time_partition_ms, Some(HOUR_MS));
    assert_eq!(p.watermarks.get("1hour"), Some(&hour(0)));
    // With room for one bucket only, the group stops after its first: the spanning rows land
    // in a segment of the next bucket, as in the reference.
    let p = plan(&one_level(|l| l.max_num_parallel_buckets = 1).dest_segments(segs())).unwrap();
    assert_eq!(buckets(&p), vec![("1hour".into(), hourly(0))]);
    assert_eq!(inputs_of(&p), vec![vec!["span"]]);
    // Nor does a group reach into a bucket that is not valid yet (ends after now − buffer).
    let p = plan(
        &one_level(|l| l.max_num_parallel_buckets = 5)
            .dest_segments(segs())
            .now(hour(1) + HOUR_MS / 2),
    )
    .unwrap();
    assert_eq!(buckets(&p), vec![("1hour".into(), hourly(0))]);
    assert_eq!(inputs_of(&p), vec![vec!["span"]]);
}

#[test]
fn a_chain_of_segments_shorter_than_a_bucket_but_off_its_edges_is_one_group() {
    // 36-minute stream segments over hourly buckets: most buckets hold one reaching into the
    // next. The reference merges one or two buckets per run; here a run takes all four.
    let min = 60_000;
    let segs = (0..12)
        .map(|i| {
            seg(
                &format!("s{i:02}"),
                hour(0) + i * 36 * min,
                hour(0) + (i + 1) * 36 * min - 1,
                10,
            )
        })
        .collect();
    let p = plan(&one_level(|l| l.max_num_parallel_buckets = 4).dest_segments(segs)).unwrap();
    // s04 ends at 2:59:59.999, so the chain breaks at 3:00: hours 0..3 are one group, hour 3
    // starts the next one (its s06 reaches 4:11, past the fourth bucket: rows for the next run).
    assert_eq!(
        buckets(&p),
        vec![
            ("1hour".into(), TimeWindow::new(hour(0), hour(3))),
            ("1hour".into(), hourly(3)),
        ]
    );
    assert_eq!(
        inputs_of(&p),
        vec![vec!["s00", "s01", "s02", "s03", "s04"], vec!["s05", "s06"]]
    );
}

#[test]
fn parallel_buckets_are_limited_by_max_num_parallel_buckets() {
    let segs = (0..6)
        .map(|h| seg(&format!("s{h}"), hour(h), hour(h) + 1, 10))
        .collect();
    let p = plan(&one_level(|l| l.max_num_parallel_buckets = 3).dest_segments(segs)).unwrap();
    assert_eq!(
        buckets(&p).into_iter().map(|b| b.1).collect::<Vec<_>>(),
        vec![hourly(0), hourly(1), hourly(2)]
    );
}

#[test]
fn daily_bucket_waits_for_hourly_watermark_and_hourly_merges() {
    // Scenario 13, table-driven.
    let day0 = TimeWindow::new(T0, T0 + DAY_MS);
    let merged_hourly = |n: i64| seg(&format!("h{n}"), hour(n), hour(n) + 1, 10).level("1hour");
    type Case = (&'static str, GeneratorInput, Vec<(String, TimeWindow)>);
    let cases: Vec<Case> = vec![
        (
            "hourly_watermark_inside_the_day_holds_the_daily_bucket",
            two_levels()
                .dest_segments(vec![merged_hourly(0), seg("raw", hour(5), hour(5) + 1, 10)])
                .watermark("1hour", hour(5)),
            vec![("1hour".into(), hourly(5))],
        ),
        (
            "unmerged_segment_in_the_day_holds_the_daily_bucket",
            two_levels()
                .dest_segments(vec![
                    merged_hourly(0),
                    seg("raw", hour(3), hour(3) + 1, 10),
                    seg("next", hour(30), hour(30) + 1, 10),
                ])
                .watermark("1hour", hour(30)),
            vec![("1hour".into(), hourly(30))],
        ),
        (
            "daily_bucket_runs_once_hourly_is_past_and_all_merged",
            two_levels()
                .dest_segments(vec![
                    merged_hourly(0),
                    merged_hourly(1),
                    seg("next", hour(30), hour(30) + 1, 10),
                ])
                .watermark("1hour", hour(24)),
            vec![("1hour".into(), hourly(30)), ("1day".into(), day0)],
        ),
    ];
    for (name, input, want) in cases {
        let p = plan(&input).unwrap();
        assert_eq!(buckets(&p), want, "{name}");
    }
}

#[test]
fn bucket_whose_segments_are_all_merged_at_this_level_is_skipped() {
    // Scenario 14.
    let p = plan(&one_level(|_| {}).dest_segments(vec![
        seg("m0", hour(0), hour(0) + 1, 10).level("1hour"),
        seg("m0b", hour(0) + 2, hour(0) + 3, 10).level("1hour"),
        seg("raw", hour(1), hour(1) + 1, 10),
    ]))
    .unwrap();
    assert_eq!(buckets(&p), vec![("1hour".into(), hourly(1))]);
}

#[test]
fn process_all_merges_late_data_behind_the_watermark() {
    // Scenario 6: late data older than the watermark.
    let late = |i: &mut GeneratorInput| {
        if let TaskSpec::MergeRollup(c) = &mut i.config.task {
            c.mode = MergeMode::ProcessAll;
        }
    };
    let segs = vec![
        seg("m0", hour(0), hour(0) + 1, 10).level("1hour"),
        seg("late", hour(0) + 2, hour(0) + 3, 10),
        seg("m5", hour(5), hour(5) + 1, 10).level("1hour"),
    ];
    let from_wm = plan(
        &one_level(|_| {})
            .dest_segments(segs.clone())
            .watermark("1hour", hour(5)),
    )
    .unwrap();
    assert_eq!(reason(&from_wm), Some("NothingToMerge"));
    let all = plan(
        &one_level(|_| {})
            .dest_segments(segs)
            .watermark("1hour", hour(5))
            .with(late),
    )
    .unwrap();
    assert_eq!(inputs_of(&all), vec![vec!["m0", "late"]]);
    assert!(all.watermarks.is_empty(), "processAll writes no watermark");
}

#[test]
fn merge_rollup_edge_cases() {
    struct Case {
        name: &'static str,
        input: GeneratorInput,
        reason: Option<&'static str>,
        inputs: Vec<Vec<&'static str>>,
    }
    let two = |n: &str, h: i64| seg(n, hour(h), hour(h) + 1, 10);
    let cases = vec![
        Case {
            name: "empty_table_has_no_segments",
            input: one_level(|_| {}),
            reason: Some("NoSegments"),
            inputs: vec![],
        },
        Case {
            name: "should_not_merge_segments_are_left_alone",
            input: one_level(|_| {}).dest_segments(vec![
                two("keep", 0).tag(TAG_SHOULD_NOT_MERGE, "true"),
                two("a", 0),
            ]),
            reason: None,
            inputs: vec![vec!["a"]],
        },
        Case {
            name: "locked_segment_is_never_planned",
            input: one_level(|_| {})
                .dest_segments(vec![two("a", 0), two("b", 0)])
                .lock_dest(&["a"]),
            reason: None,
            inputs: vec![vec!["b"]],
        },
        Case {
            name: "bucket_inside_the_buffer_is_not_merged",
            input: one_level(|l| l.buffer_ms = DAY_MS)
                .dest_segments(vec![two("a", 0)])
                .now(hour(1) + DAY_MS - 1),
            reason: Some("NothingToMerge"),
            inputs: vec![],
        },
        Case {
            name: "incomplete_run_of_the_level_blocks_it",
            input: one_level(|_| {})
                .dest_segments(vec![two("a", 0)])
                .incomplete("run-1", &["1hour"]),
            reason: Some("PreviousRunIncomplete"),
            inputs: vec![],
        },
        Case {
            name: "realtime_table_keeps_each_partitions_latest_segment",
            input: one_level(|_| {})
                .with(|i| i.destination.def.table_type = TableType::Realtime)
                .dest_segments(vec![
                    two("p0a", 0).partition(0),
                    two("p0b", 1).partition(0),
                    two("p1a", 0).partition(1),
                ]),
            reason: None,
            inputs: vec![vec!["p0a"]],
        },
        Case {
            // A merged segment is not a stream segment: the newest one is merged again with
            // the stream segments that came after it into its bucket.
            name: "realtime_table_merges_its_newest_merged_segment_again",
            input: one_level(|_| {})
                .with(|i| i.destination.def.table_type = TableType::Realtime)
                .dest_segments(vec![
                    two("m", 0).level("1hour"),
                    two("p0a", 0).partition(0),
                    two("p0b", 1).partition(0),
                ]),
            reason: None,
            inputs: vec![vec!["m", "p0a"]],
        },
        Case {
            name: "partitioned_table_gets_a_subtask_per_partition",
            input: one_level(|_| {})
                .with(|i| i.destination = table("events", TableType::Offline, Some(2)))
                .dest_segments(vec![
                    two("p0", 0).partition(0),
                    two("p1", 0).partition(1),
                    two("p1b", 0).partition(1),
                ]),
            reason: None,
            inputs: vec![vec!["p0"], vec!["p1", "p1b"]],
        },
    ];
    for c in cases {
        let p = plan(&c.input).unwrap();
        assert_eq!(reason(&p), c.reason, "{}", c.name);
        assert_eq!(inputs_of(&p), c.inputs, "{}", c.name);
    }
}

#[test]
fn segments_planned_at_a_finer_level_are_not_planned_again_coarser() {
    // An hourly-merged segment spanning the day boundary is in the hourly bucket this run.
    let p = plan(
        &two_levels()
            .dest_segments(vec![
                seg("m", hour(23), hour(24) + 5, 10).level("1hour"),
                seg("raw", hour(24), hour(24) + 1, 10),
            ])
            .watermark("1hour", hour(24)),
    )
    .unwrap();
    let all: Vec<String> = inputs_of(&p).concat();
    let mut dedup = all.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(all.len(), dedup.len(), "{all:?}");
}

#[test]
fn delay_is_buckets_between_watermark_and_the_finer_bound() {
    let c = match merge_rollup(vec![
        merge_level("1hour", HOUR_MS),
        merge_level("1day", DAY_MS),
    ]) {
        TaskSpec::MergeRollup(c) => c,
        _ => unreachable!(),
    };
    let wm = BTreeMap::from([("1hour".to_string(), hour(48)), ("1day".to_string(), T0)]);
    assert_eq!(
        delay_buckets(&c, &wm, hour(50) + 1),
        vec![("1hour".to_string(), 2), ("1day".to_string(), 2)]
    );
}

#[test]
fn skip_corrupt_segments_reaches_every_subtask_spec() {
    for skip in [false, true] {
        let mut task = merge_rollup(vec![merge_level("1hour", HOUR_MS)]);
        if let TaskSpec::MergeRollup(c) = &mut task {
            c.skip_corrupt_segments = skip;
        }
        let p = plan(&input(task).now(T0 + 10 * DAY_MS).dest_segments(vec![
            seg("a", hour(0) + 1, hour(0) + 5, 10),
            seg("b", hour(0) + 6, hour(0) + 9, 10),
            seg("c", hour(1), hour(1) + 9, 10),
        ]))
        .unwrap();
        assert!(!p.subtasks.is_empty());
        for s in &p.subtasks {
            assert_eq!(s.processing.skip_corrupt_segments, skip);
        }
    }
}
