//! A refresh drops old versions of upsert keys because newer versions are in
//! other segments (its context). These scenarios plan a refresh, open its lineage entries as
//! the control loop does, then plan the runs that remove segments (Backfill, Purge, file
//! ingestion, MergeRollup, another refresh) against that lineage: none may remove the
//! refresh's context while it runs, and a plan made before the refresh opened is refused when
//! it opens its own entries.

use minion_contract::{FileFormat, SegmentRef};

use super::testkit::*;
use super::{GeneratorInput, Plan, plan};
use crate::lineage::{Lineage, LineageError, MAX_SEGMENTS_READ};
use crate::model::{
    DAY_MS, HOUR_MS, IngestionMode, PurgeConfig, SegmentBackfillConfig, TaskSpec, defaults,
};

const NOW: i64 = T0 + 30 * DAY_MS;

/// `old` (day 0) has 400 of its 1000 rows superseded by newer versions in `newer` (day 1);
/// `spare` (day 2) has nothing invalid.
fn segments() -> Vec<SegmentRef> {
    vec![
        seg("old", T0, T0 + 1000, 1000).bytes(1 << 40),
        seg("newer", T0 + DAY_MS, T0 + DAY_MS + 1000, 1000).bytes(1 << 40),
        seg("spare", T0 + 2 * DAY_MS, T0 + 2 * DAY_MS + 1000, 1000).bytes(1 << 40),
    ]
}

fn refresh_input(segments: Vec<SegmentRef>) -> GeneratorInput {
    input(refresh(30.0, 100))
        .now(NOW)
        .dest_segments(segments)
        .invalid("old", 400)
}

/// Opens the lineage entries of `plan` for run `run`, as the control loop does.
fn open(
    lineage: &mut Lineage,
    plan: &Plan,
    run: &str,
    live: &[SegmentRef],
) -> Result<(), LineageError> {
    for req in plan.lineage_requests(run, run, run) {
        lineage.start(req, |p| live.iter().any(|s| s.path == p), |_| None, NOW)?;
    }
    Ok(())
}

/// The lineage with refresh run `refresh-1` in progress over `segments`.
fn refreshing(segments: &[SegmentRef]) -> Lineage {
    let p = plan(&refresh_input(segments.to_vec())).unwrap();
    assert_eq!(inputs_of(&p), vec![vec!["old"]]);
    let context: Vec<&str> = p.subtasks[0]
        .context_segments
        .iter()
        .map(|s| s.name())
        .collect();
    assert_eq!(context, vec!["newer", "spare"]);
    let mut lineage = Lineage::default();
    open(&mut lineage, &p, "refresh-1", segments).unwrap();
    lineage
}

fn with_lineage(i: GeneratorInput, lineage: &Lineage) -> GeneratorInput {
    i.dest_segments(segments())
        .with(|i| i.destination.lineage = lineage.clone())
        .now(NOW)
}

fn purge() -> GeneratorInput {
    input(TaskSpec::Purge(PurgeConfig {
        purge_predicate: crate::model::Expr::parse("id = 'gdpr'").unwrap(),
        last_purge_time_threshold_ms: defaults::PURGE_LAST_PURGE_TIME_THRESHOLD_MS,
        table_max_num_tasks: 10,
        max_records_per_segment: defaults::MAX_RECORDS_PER_SEGMENT,
    }))
}

/// A backfill of day 1, the day of `newer`.
fn backfill() -> GeneratorInput {
    input(TaskSpec::SegmentBackfill(SegmentBackfillConfig {
        start_ms: T0 + DAY_MS,
        end_ms: T0 + 2 * DAY_MS,
        filter: None,
        input_dir_uri: "s3://in/events".into(),
        input_format: FileFormat::Parquet,
        max_records_per_segment: defaults::MAX_RECORDS_PER_SEGMENT,
    }))
    .files(vec![file("day1.parquet", 10, "v1")])
}

/// Every segment a plan's commits would remove.
fn removed(p: &Plan) -> Vec<String> {
    p.lineage_requests("other", "other", "other")
        .into_iter()
        .flat_map(|r| r.segments_from)
        .collect()
}

#[test]
fn backfill_planned_during_a_refresh_waits_instead_of_replacing_its_context() {
    let lineage = refreshing(&segments());
    let p = plan(&with_lineage(backfill(), &lineage)).unwrap();
    assert!(p.subtasks.is_empty(), "{}", p.render());
    assert_eq!(reason(&p), Some("InputsLocked"));
    let msg = &p.skip.as_ref().unwrap().message;
    assert!(
        msg.contains("segment newer overlapping")
            && msg.contains(
                "IN_PROGRESS lineage entry refresh-1-0 of TaskRun refresh-1, which reads it"
            ),
        "{msg}"
    );

    // Without the refresh the same backfill deletes `newer`.
    let free = plan(&with_lineage(backfill(), &Lineage::default())).unwrap();
    assert_eq!(removed(&free), vec!["data/newer.parquet".to_string()]);
}

#[test]
fn purge_planned_during_a_refresh_skips_its_context_and_input() {
    let lineage = refreshing(&segments());
    let p = plan(&with_lineage(purge(), &lineage)).unwrap();
    assert!(removed(&p).is_empty(), "{}", p.render());
    assert_eq!(reason(&p), Some("InputsLocked"));
    let msg = &p.skip.as_ref().unwrap().message;
    assert!(msg.contains("refresh-1-0"), "{msg}");

    // A segment added after the refresh started is not in its context: it may be purged.
    let mut segs = segments();
    segs.push(seg("late", NOW - HOUR_MS, NOW - 1, 10));
    let p = plan(
        &purge()
            .dest_segments(segs)
            .with(|i| i.destination.lineage = lineage.clone()),
    )
    .unwrap();
    assert_eq!(inputs_of(&p), vec![vec!["late"]]);
}

#[test]
fn a_removal_planned_before_the_refresh_opened_is_refused_when_it_opens() {
    let segs = segments();
    // The purge of `newer` is planned first (nothing locked yet) …
    let purge_plan = plan(&purge().dest_segments(vec![segs[1].clone()])).unwrap();
    assert_eq!(removed(&purge_plan), vec!["data/newer.parquet".to_string()]);
    // … the refresh opens its entries, then the purge tries to open its own.
    let mut lineage = refreshing(&segs);
    let err = open(&mut lineage, &purge_plan, "purge-1", &segs).unwrap_err();
    assert_eq!(err.reason(), "LineageInputLocked");
    assert!(
        err.to_string().contains(
            "input segment data/newer.parquet is locked by IN_PROGRESS entry refresh-1-0 of TaskRun refresh-1, which reads it"
        ),
        "{err}"
    );

    // Once the refresh ended, the same purge opens.
    lineage.end("refresh-1-0", NOW).unwrap();
    let mut after = lineage.clone();
    open(&mut after, &purge_plan, "purge-1", &segs).unwrap();
}

#[test]
fn merge_and_file_sync_planned_during_a_refresh_leave_its_context_alone() {
    let lineage = refreshing(&segments());
    let merge = input(merge_rollup(vec![merge_level("1day", DAY_MS)]));
    let p = plan(&with_lineage(merge.clone(), &lineage)).unwrap();
    assert!(removed(&p).is_empty(), "{}", p.render());
    let free = plan(&with_lineage(merge, &Lineage::default())).unwrap();
    assert!(!removed(&free).is_empty(), "{}", free.render());

    // `newer` came from a file that changed: sync mode would replace it, and waits.
    let from_file = |s: SegmentRef| {
        s.tag(
            minion_contract::segment::TAG_SOURCE_FILE,
            "s3://in/events/a.parquet",
        )
        .tag(minion_contract::segment::TAG_SOURCE_FILE_VERSION, "v1")
    };
    let mut segs = segments();
    segs[1] = from_file(segs[1].clone());
    let mut sync = file_ingestion();
    sync.mode = IngestionMode::Sync;
    let sync = input(TaskSpec::FileIngestion(sync))
        .files(vec![file("a.parquet", 10, "v2")])
        .dest_segments(segs.clone())
        .now(NOW);
    let p = plan(
        &sync
            .clone()
            .with(|i| i.destination.lineage = lineage.clone()),
    )
    .unwrap();
    assert!(removed(&p).is_empty(), "{}", p.render());
    let free = plan(&sync).unwrap();
    assert_eq!(removed(&free), vec!["data/newer.parquet".to_string()]);

    // A full swap replaces every segment: it waits, naming the refresh.
    let mut swap = file_ingestion();
    swap.consistent_push_swap_enabled = true;
    let swap = input(TaskSpec::FileIngestion(swap))
        .files(vec![file("a.parquet", 10, "v2")])
        .dest_segments(segs)
        .with(|i| i.destination.lineage = lineage.clone());
    let p = plan(&swap).unwrap();
    assert_eq!(reason(&p), Some("InputsLocked"));
    assert!(p.skip.unwrap().message.contains("refresh-1-0"));
}

#[test]
fn a_second_refresh_may_read_the_same_context_but_not_rewrite_it() {
    let lineage = refreshing(&segments());
    // `spare` now passes the thresholds too; it is read by the running refresh, so the other
    // refresh config leaves it.
    let p = plan(
        &refresh_input(segments())
            .invalid("spare", 500)
            .with(|i| i.destination.lineage = lineage.clone()),
    )
    .unwrap();
    assert!(removed(&p).is_empty(), "{}", p.render());
}

#[test]
fn refresh_context_leaves_out_what_its_own_run_or_another_run_removes() {
    // `old` and `spare` are both rewritten by this run: neither is the other's context, so the
    // run's entries open together (no entry reads what a sibling replaces).
    let mut segs = segments();
    segs.push(seg("recent", NOW - HOUR_MS, NOW - 1, 10));
    let i = refresh_input(segs.clone()).invalid("spare", 500);
    let p = plan(&i).unwrap();
    assert_eq!(inputs_of(&p), vec![vec!["spare"], vec!["old"]]);
    for s in &p.subtasks {
        let context: Vec<&str> = s.context_segments.iter().map(|c| c.name()).collect();
        assert_eq!(context, vec!["newer", "recent"]);
    }
    let mut lineage = Lineage::default();
    open(&mut lineage, &p, "refresh-2", &segs).unwrap();
    assert_eq!(lineage.live().count(), 2);

    // `newer` is being replaced by another run: it is not context …
    let locked = i.clone().lock_dest(&["newer"]);
    let p = plan(&locked).unwrap();
    for s in &p.subtasks {
        let context: Vec<&str> = s.context_segments.iter().map(|c| c.name()).collect();
        assert_eq!(context, vec!["recent"]);
    }
    // … and a refresh planned before that run opened is refused when it opens its entries.
    let stale = plan(&i).unwrap();
    let mut other = locked.destination.lineage.clone();
    let err = open(&mut other, &stale, "refresh-3", &segs).unwrap_err();
    assert_eq!(err.reason(), "LineageReadLocked");
    assert!(
        err.to_string().contains("segment data/newer.parquet"),
        "{err}"
    );
}

#[test]
fn all_invalid_segments_are_deleted_with_a_read_lock_and_wait_while_another_run_replaces_one() {
    let mut segs = segments();
    segs.push(seg("dead", T0 + 3 * DAY_MS, T0 + 3 * DAY_MS + 10, 10).bytes(1 << 40));
    let i = refresh_input(segs.clone()).invalid("dead", 10);
    let p = plan(&i).unwrap();
    assert_eq!(deletes_of(&p), vec![vec![], vec!["dead"]]);
    let context: Vec<&str> = p.subtasks[1]
        .context_segments
        .iter()
        .map(|s| s.name())
        .collect();
    assert_eq!(context, vec!["newer", "spare"]);
    let mut lineage = Lineage::default();
    open(&mut lineage, &p, "refresh-1", &segs).unwrap();
    assert!(lineage.removal_locks().contains("data/spare.parquet"));

    // While a merge replaces `spare`, the delete waits (its condemning rows may be there); the
    // rewrite of `old` goes on without `spare` in its context.
    let p = plan(&i.clone().lock_dest(&["spare"])).unwrap();
    assert_eq!(deletes_of(&p), vec![Vec::<String>::new()]);
    assert_eq!(inputs_of(&p), vec![vec!["old"]]);
    let only_delete = plan(&i.invalid("old", 0).lock_dest(&["spare"])).unwrap();
    assert_eq!(reason(&only_delete), Some("InputsLocked"));
    let msg = only_delete.skip.unwrap().message;
    assert!(msg.contains("segment spare is being replaced"), "{msg}");
}

#[test]
fn a_large_context_is_one_table_read_lock() {
    let mut segs = segments();
    for k in 0..MAX_SEGMENTS_READ {
        segs.push(seg(&format!("x{k}"), T0 + 5 * DAY_MS, T0 + 5 * DAY_MS + 1, 1).bytes(1 << 40));
    }
    let p = plan(&refresh_input(segs.clone())).unwrap();
    assert_eq!(inputs_of(&p)[0], vec!["old"]);
    let mut lineage = Lineage::default();
    open(&mut lineage, &p, "refresh-1", &segs).unwrap();
    let entry = lineage.get("refresh-1-0").unwrap();
    assert!(entry.reads_table && entry.segments_read.is_empty());
    let json = serde_json::to_string(entry).unwrap();
    assert!(json.len() < 400, "{json}");

    // No other run may remove anything, not even a segment added after the refresh started.
    segs.push(seg("late", NOW - HOUR_MS, NOW - 1, 10));
    let p = plan(
        &purge()
            .dest_segments(segs)
            .now(NOW)
            .with(|i| i.destination.lineage = lineage.clone()),
    )
    .unwrap();
    assert!(removed(&p).is_empty(), "{}", p.render());
    assert_eq!(reason(&p), Some("InputsLocked"));
    let msg = p.skip.unwrap().message;
    assert!(msg.contains("refresh-1-0"), "{msg}");
}
