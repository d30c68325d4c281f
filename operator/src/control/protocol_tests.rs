use std::collections::BTreeSet;

use minion_contract::{Processing, SegmentRef, TaskType, TimeWindow};

use super::*;
use crate::generator::{CommitMode, Plan, PlannedSubtask};
use crate::model::DAY_MS;

const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS;

fn samples() -> (Vec<TableDef>, Vec<TaskConfig>) {
    crate::demo::load_samples(std::path::Path::new("/tmp/minion-protocol-tests")).unwrap()
}

fn segment(path: &str) -> SegmentRef {
    SegmentRef {
        path: path.into(),
        rows: 10,
        bytes: 100,
        min_time_ms: None,
        max_time_ms: None,
        partition: None,
        tags: Default::default(),
    }
}

/// An import of `days` daily windows, committed in window order.
fn import_plan(days: usize) -> Plan {
    let mut plan = Plan::new(TaskType::SegmentImportTask);
    plan.commit_mode = CommitMode::InOrder;
    for d in 0..days {
        let mut s =
            PlannedSubtask::new(TaskType::SegmentImportTask, d as u32, Processing::default());
        s.inputs = vec![segment(&format!("rt/{d}.parquet"))];
        s.replaces_inputs = false;
        let w = TimeWindow::new(T0 + d as i64 * DAY_MS, T0 + (d as i64 + 1) * DAY_MS);
        s.window = Some(w);
        s.commit_watermark_ms = Some(w.end_ms);
        plan.subtasks.push(s);
    }
    plan
}

fn set(indices: &[u32]) -> BTreeSet<u32> {
    indices.iter().copied().collect()
}

#[test]
fn the_run_key_carries_the_uid_so_a_recreated_run_is_a_new_run() {
    let a = run_key(
        "events-import-manual",
        Some("8e182943-374d-4863-a1a9-1e21e3b8b4f7"),
    );
    let b = run_key(
        "events-import-manual",
        Some("01234567-89ab-4863-a1a9-1e21e3b8b4f7"),
    );
    assert_eq!(a, "events-import-manual-8e182943374d");
    assert_ne!(a, b);
    assert_eq!(run_key("r", None), "r");
}

#[test]
fn windows_commit_in_order_with_the_staged_windows_that_follow() {
    let plan = import_plan(4);
    // Window 2 finished first: it waits for windows 0 and 1.
    assert!(ready_to_commit(&plan, &set(&[]), &set(&[2])).is_empty());
    // Window 0 finishes: it commits alone (window 1 is still running).
    assert_eq!(
        ready_to_commit(&plan, &set(&[]), &set(&[0, 2])),
        vec![vec![0]]
    );
    // Window 1 finishes: 1 and the staged 2 commit together.
    assert_eq!(
        ready_to_commit(&plan, &set(&[0]), &set(&[1, 2])),
        vec![vec![1, 2]]
    );
    // Per subtask: each on its own; all or none: nothing before the closing commit.
    let mut per = plan.clone();
    per.commit_mode = CommitMode::PerSubtask;
    assert_eq!(ready_to_commit(&per, &set(&[]), &set(&[2])), vec![vec![2]]);
    let mut all = plan;
    all.commit_mode = CommitMode::AllOrNone;
    assert!(ready_to_commit(&all, &set(&[]), &set(&[0, 1, 2, 3])).is_empty());
}

#[test]
fn a_commit_carries_each_subtasks_identity_and_the_watermark_of_the_committed_prefix() {
    let (tables, configs) = samples();
    let config = configs.iter().find(|c| c.name == "events-import").unwrap();
    let dest = tables.iter().find(|t| t.name == config.table).unwrap();
    let ctx = RunContext {
        namespace: "default",
        task_run: "events-import-0001",
        key: "events-import-0001-0a1b2c3d4e5f",
        config,
        source: None,
        destination: dest,
    };
    let plan = import_plan(3);
    let state = RunState {
        watermarks: [(DEFAULT_WATERMARK.to_string(), T0)].into_iter().collect(),
        ..RunState::default()
    };
    let planned = plan_commit(&ctx, &plan, &state, &[(1, None), (2, None)], &set(&[0]));
    let apps: Vec<&str> = planned.txns.iter().map(|t| t.app_id.as_str()).collect();
    assert_eq!(
        apps,
        vec![
            "minion.dev/default/events-import-0001-0a1b2c3d4e5f/1",
            "minion.dev/default/events-import-0001-0a1b2c3d4e5f/2",
            "minion.dev/default/events-import",
        ]
    );
    assert!(planned.txns[0].expires && !planned.txns[2].expires);
    assert_eq!(planned.txns[2].version, T0 + 3 * DAY_MS);
    assert_eq!(planned.window_watermark, Some(T0 + 3 * DAY_MS));
    // Inputs of an import are only read: nothing removed.
    assert!(planned.remove.is_empty());
    assert_eq!(
        planned
            .outputs
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        vec![
            "events-import-0001-0a1b2c3d4e5f-1",
            "events-import-0001-0a1b2c3d4e5f-2"
        ]
    );

    // A window whose predecessor is not committed never moves the watermark past it.
    let planned = plan_commit(&ctx, &plan, &state, &[(2, None)], &set(&[0]));
    assert_eq!(planned.window_watermark, Some(T0 + DAY_MS));
}

#[test]
fn a_segment_the_worker_skipped_as_unreadable_is_never_removed_nor_its_files_carried() {
    let (tables, configs) = samples();
    let config = configs.iter().find(|c| c.name == "events-merge").unwrap();
    let dest = tables.iter().find(|t| t.name == config.table).unwrap();
    let ctx = RunContext {
        namespace: "default",
        task_run: "events-merge-0001",
        key: "events-merge-0001-0a1b2c3d4e5f",
        config,
        source: None,
        destination: dest,
    };
    let mut plan = Plan::new(TaskType::MergeRollupTask);
    plan.commit_mode = CommitMode::PerSubtask;
    let mut s = PlannedSubtask::new(TaskType::MergeRollupTask, 0, Processing::default());
    let mut bad = segment("seg/bad.parquet");
    bad.tags.insert(
        minion_contract::segment::TAG_SOURCE_FILES.into(),
        r#"{"s3://in/bad.csv":"v1"}"#.into(),
    );
    let mut good = segment("seg/good.parquet");
    good.tags.insert(
        minion_contract::segment::TAG_SOURCE_FILES.into(),
        r#"{"s3://in/good.csv":"v1"}"#.into(),
    );
    s.inputs = vec![good, bad, segment("seg/other.parquet")];
    s.replaces_inputs = true;
    plan.subtasks.push(s);
    let manifest = ResultManifest {
        api_version: minion_contract::CONTRACT_VERSION.into(),
        task_run: "events-merge-0001".into(),
        subtask: 0,
        attempt: 1,
        outcome: minion_contract::Outcome::Succeeded,
        reason: None,
        message: None,
        input_rows: 20,
        output_rows: 20,
        outputs: vec![segment("data/default/k/0/1/merged.parquet")],
        ingested_files: Vec::new(),
        skipped_files: Vec::new(),
        skipped_segments: vec![minion_contract::SkippedSegment {
            path: "seg/bad.parquet".into(),
            reason: "truncated".into(),
        }],
        ledger: None,
        validity: Vec::new(),
        peak_spill_bytes: None,
    };
    let planned = plan_commit(
        &ctx,
        &plan,
        &RunState::default(),
        &[(0, Some(manifest))],
        &set(&[]),
    );
    assert_eq!(
        planned.remove,
        vec!["seg/good.parquet", "seg/other.parquet"]
    );
    assert_eq!(
        planned.kept,
        vec![(
            "events-merge-0001-0a1b2c3d4e5f-0".to_string(),
            vec!["seg/bad.parquet".to_string()]
        )]
    );
    let carried = &planned.add[0].tags[minion_contract::segment::TAG_SOURCE_FILES];
    assert!(
        carried.contains("good.csv") && !carried.contains("bad.csv"),
        "{carried}"
    );
}
