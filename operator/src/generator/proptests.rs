//! Property tests over random catalogs: no planned input is locked or planned twice, nor read
//! by one subtask and removed by another (a refresh's entries open together); planned
//! windows and buckets never reach behind the stored watermarks; every source row inside the
//! processed range is covered by exactly one subtask.

use std::collections::{BTreeSet, HashSet};

use minion_contract::SegmentRef;
use proptest::prelude::*;

use super::testkit::*;
use super::{GeneratorInput, Plan, TableView, plan, time_range};
use crate::model::{
    HOUR_MS, MergeMode, RealtimeToOfflineConfig, SegmentImportConfig, TaskSpec, WindowProcessing,
};

/// A random segment: (start in quarter hours, length in quarter hours, rows, partition,
/// locked, merge level 0 = none / 1 = 1hour / 2 = 1day).
type SegSpec = (i64, i64, u64, u32, bool, u8);

fn seg_specs() -> impl Strategy<Value = Vec<SegSpec>> {
    prop::collection::vec(
        (
            0i64..400,
            0i64..12,
            1u64..100,
            0u32..3,
            prop::bool::weighted(0.15),
            0u8..3,
        ),
        0..60,
    )
}

const Q: i64 = HOUR_MS / 4;

fn build(specs: &[SegSpec], with_levels: bool) -> (Vec<SegmentRef>, Vec<String>) {
    let mut segs = Vec::new();
    let mut locked = Vec::new();
    for (i, (start, len, rows, partition, is_locked, level)) in specs.iter().enumerate() {
        let name = format!("s{i}");
        let mut s = seg(&name, T0 + start * Q, T0 + (start + len) * Q, *rows).partition(*partition);
        if with_levels && *level > 0 {
            s = s.level(if *level == 1 { "1hour" } else { "1day" });
        }
        if *is_locked {
            locked.push(name);
        }
        segs.push(s);
    }
    (segs, locked)
}

fn locked_paths(view: &TableView) -> HashSet<&str> {
    view.lineage.locked_segments()
}

/// No input is locked or replaced twice; returns the replaced/deleted paths.
fn assert_no_lock_no_twice(p: &Plan, view: &TableView) -> Result<(), TestCaseError> {
    let locked = locked_paths(view);
    let mut seen = HashSet::new();
    for req in p.lineage_requests("run", "run", "run") {
        for s in req.segments_from {
            prop_assert!(!locked.contains(s.as_str()), "locked {s} planned");
            prop_assert!(seen.insert(s.clone()), "{s} planned twice");
        }
    }
    Ok(())
}

fn window_input(
    task: TaskSpec,
    specs: &[SegSpec],
    watermark: Option<i64>,
    now_q: i64,
) -> GeneratorInput {
    let (segs, locked) = build(specs, false);
    let refs: Vec<&str> = locked.iter().map(String::as_str).collect();
    let mut i = input(task).source_segments(segs).now(T0 + now_q * Q);
    if !refs.is_empty() {
        i = i.lock_source(&refs);
    }
    if let Some(w) = watermark {
        i = i.watermark("", T0 + w * HOUR_MS);
    }
    i
}

fn check_windows(i: &GeneratorInput, p: &Plan) -> Result<(), TestCaseError> {
    let source = i.source.as_ref().unwrap();
    let locked = locked_paths(source);
    let wm = i.watermarks.get("").or(p.watermarks.get("")).copied();
    let windows: Vec<_> = p.subtasks.iter().map(|s| s.window.unwrap()).collect();
    for (a, w) in windows.iter().enumerate() {
        if let Some(wm) = wm {
            prop_assert!(w.start_ms >= wm, "window {w:?} behind watermark {wm}");
        }
        prop_assert!(w.end_ms <= i.now_ms, "window past now");
        for v in &windows[a + 1..] {
            prop_assert!(
                w.end_ms <= v.start_ms || v.end_ms <= w.start_ms,
                "overlap {w:?} {v:?}"
            );
        }
    }
    for s in &p.subtasks {
        let mut names = HashSet::new();
        for input in &s.inputs {
            prop_assert!(!locked.contains(input.path.as_str()));
            prop_assert!(names.insert(&input.path), "input twice in one subtask");
        }
    }
    // Coverage: each row (modelled by a segment's min and max) inside a planned window is read
    // by exactly one subtask, the one whose window holds it.
    for seg in &source.segments {
        let Some((min, max)) = time_range(seg) else {
            continue;
        };
        for t in [min, max] {
            let readers = p
                .subtasks
                .iter()
                .filter(|s| {
                    s.window.unwrap().contains(t) && s.inputs.iter().any(|x| x.path == seg.path)
                })
                .count();
            let in_range = windows.iter().any(|w| w.contains(t));
            prop_assert_eq!(
                readers,
                usize::from(in_range),
                "row at {} of {}",
                t,
                seg.path
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn r2o_windows_cover_each_row_once_and_never_go_behind_the_watermark(
        specs in seg_specs(), wm in prop::option::of(0i64..120), now_q in 0i64..600,
    ) {
        let task = TaskSpec::RealtimeToOffline(RealtimeToOfflineConfig {
            window: WindowProcessing { bucket_ms: HOUR_MS, buffer_ms: 2 * HOUR_MS, ..WindowProcessing::default() },
        });
        let i = window_input(task, &specs, wm, now_q);
        let p = plan(&i).unwrap();
        prop_assert!(p.subtasks.len() <= 1);
        check_windows(&i, &p)?;
    }

    #[test]
    fn segment_import_windows_cover_each_row_once_and_never_overlap(
        specs in seg_specs(), wm in prop::option::of(0i64..120), now_q in 0i64..600,
        max_tasks in 1u32..6, max_records in 1u64..400,
    ) {
        let task = TaskSpec::SegmentImport(SegmentImportConfig {
            window: WindowProcessing { bucket_ms: HOUR_MS, buffer_ms: HOUR_MS, ..WindowProcessing::default() },
            table_max_num_tasks: max_tasks,
            max_records_per_task: max_records,
            ..SegmentImportConfig::default()
        });
        let i = window_input(task, &specs, wm, now_q);
        let p = plan(&i).unwrap();
        prop_assert!(p.subtasks.len() <= max_tasks as usize);
        check_windows(&i, &p)?;
    }

    #[test]
    fn merge_rollup_never_plans_locked_or_twice_and_covers_each_bucket(
        specs in seg_specs(),
        hour_wm in prop::option::of(0i64..100), day_wm in prop::option::of(0i64..4),
        process_all in any::<bool>(), parallel in 1u32..4, max_records in 10u64..400,
    ) {
        let mut hour = merge_level("1hour", HOUR_MS);
        hour.max_num_parallel_buckets = parallel;
        hour.max_records_per_task = max_records;
        let mut day = merge_level("1day", 24 * HOUR_MS);
        day.max_num_parallel_buckets = parallel;
        let mut task = merge_rollup(vec![hour, day]);
        if let (true, TaskSpec::MergeRollup(c)) = (process_all, &mut task) {
            c.mode = MergeMode::ProcessAll;
        }
        let (segs, locked) = build(&specs, true);
        let refs: Vec<&str> = locked.iter().map(String::as_str).collect();
        let mut i = input(task).dest_segments(segs).now(T0 + 200 * HOUR_MS);
        if !refs.is_empty() { i = i.lock_dest(&refs); }
        if let Some(w) = hour_wm { i = i.watermark("1hour", T0 + w * HOUR_MS); }
        if let Some(w) = day_wm { i = i.watermark("1day", T0 + w * 24 * HOUR_MS); }
        let p = plan(&i).unwrap();
        assert_no_lock_no_twice(&p, &i.destination)?;
        // A bucket, or a group of buckets joined by spanning segments, is whole buckets of its
        // level, the groups do not overlap, and a level takes at most `parallel` buckets.
        for (level, bucket_ms) in [("1hour", HOUR_MS), ("1day", 24 * HOUR_MS)] {
            let windows: BTreeSet<(i64, i64)> = p.subtasks.iter()
                .filter(|s| s.level.as_deref() == Some(level))
                .map(|s| { let b = s.bucket.unwrap(); (b.start_ms, b.end_ms) })
                .collect();
            let mut taken = 0;
            let mut end_before = i64::MIN;
            for (start, end) in windows {
                prop_assert!(start >= end_before, "{level} groups overlap at {start}");
                prop_assert_eq!((start - T0).rem_euclid(bucket_ms), 0);
                prop_assert_eq!((end - start) % bucket_ms, 0);
                taken += (end - start) / bucket_ms;
                end_before = end;
            }
            prop_assert!(taken <= i64::from(parallel), "{level} took {taken} buckets");
        }
        let locked = locked_paths(&i.destination);
        for s in &p.subtasks {
            let level = s.level.clone().unwrap();
            let bucket = s.bucket.unwrap();
            if let (false, Some(w)) = (process_all, i.watermarks.get(&level)) {
                prop_assert!(bucket.start_ms >= *w, "bucket {bucket:?} behind {level} watermark");
            }
            prop_assert!(s.inputs.len() <= crate::model::defaults::MAX_SEGMENTS_PER_TASK);
            // Every unlocked segment overlapping the bucket is merged by a subtask of it.
            for seg in &i.destination.segments {
                let Some((min, max)) = time_range(seg) else { continue };
                if locked.contains(seg.path.as_str()) || !bucket.overlaps_inclusive(min, max) {
                    continue;
                }
                let holders = p.subtasks.iter().filter(|x| {
                    x.level.as_deref() == Some(level.as_str())
                        && x.bucket == Some(bucket)
                        && x.inputs.iter().any(|y| y.path == seg.path)
                }).count();
                prop_assert_eq!(holders, 1, "{} in bucket {:?} at {}", seg.path, bucket, level);
            }
        }
    }

    #[test]
    fn refresh_never_plans_locked_or_twice(
        specs in seg_specs(), invalid in prop::collection::vec(0u64..120, 60), max_tasks in 1u32..5,
    ) {
        let (segs, locked) = build(&specs, false);
        let refs: Vec<&str> = locked.iter().map(String::as_str).collect();
        let mut task = refresh(20.0, 5);
        if let TaskSpec::SegmentRefresh(c) = &mut task {
            c.table_max_num_tasks = max_tasks;
            c.buffer_ms = HOUR_MS;
            c.max_records_per_task = 150;
        }
        let mut i = input(task).dest_segments(segs).now(T0 + 200 * HOUR_MS);
        if !refs.is_empty() { i = i.lock_dest(&refs); }
        for (n, inv) in invalid.iter().enumerate().take(specs.len()) {
            i = i.invalid(&format!("s{n}"), *inv);
        }
        let p = plan(&i).unwrap();
        assert_no_lock_no_twice(&p, &i.destination)?;
        prop_assert!(p.subtasks.iter().filter(|s| s.needs_worker()).count() <= max_tasks as usize);
        // The run's entries open against the live lineage: no subtask reads what this run or
        // another one replaces, and each read set is the same.
        let mut lineage = i.destination.lineage.clone();
        let live: HashSet<&str> = i.destination.segments.iter().map(|s| s.path.as_str()).collect();
        for req in p.lineage_requests("run", "run", "run") {
            lineage
                .start(req, |s| live.contains(s), |_| None, 0)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let removed: HashSet<String> =
            p.subtasks.iter().flat_map(|s| s.segments_from()).collect();
        for s in &p.subtasks {
            for c in s.segments_read() {
                prop_assert!(!removed.contains(&c), "{c} read and removed by one plan");
            }
        }
    }
}
