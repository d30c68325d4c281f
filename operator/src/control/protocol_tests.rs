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

/// The manifest of a succeeded first attempt of `subtask` that wrote `output` from `rows` rows.
fn succeeded(task_run: &str, subtask: u32, rows: u64, output: SegmentRef) -> ResultManifest {
    ResultManifest {
        api_version: minion_contract::CONTRACT_VERSION.into(),
        task_run: task_run.into(),
        subtask,
        attempt: 1,
        outcome: minion_contract::Outcome::Succeeded,
        reason: None,
        message: None,
        input_rows: rows,
        output_rows: rows,
        outputs: vec![output],
        ingested_files: Vec::new(),
        skipped_files: Vec::new(),
        skipped_segments: Vec::new(),
        ledger: None,
        validity: Vec::new(),
        peak_spill_bytes: None,
    }
}

/// The context of run `<config>-0001` of `config` into `dest`, in namespace `default`.
fn run_of<'a>(config: &'a TaskConfig, dest: &'a TableDef) -> RunContext<'a> {
    let task_run = format!("{}-0001", config.name).leak();
    RunContext {
        namespace: "default",
        task_run,
        key: format!("{task_run}-0a1b2c3d4e5f").leak(),
        config,
        source: None,
        destination: dest,
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
    let ctx = run_of(config, dest);
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
    let ctx = run_of(config, dest);
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
    let mut manifest = succeeded(
        "events-merge-0001",
        0,
        20,
        segment("data/default/k/0/1/merged.parquet"),
    );
    manifest.skipped_segments = vec![minion_contract::SkippedSegment {
        path: "seg/bad.parquet".into(),
        reason: "truncated".into(),
    }];
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

#[tokio::test]
async fn a_replayed_commit_collected_again_with_a_new_subtask_commits_only_the_new_one() {
    crate::catalog::install_crypto_provider();
    let (tables, configs) = samples();
    let config = configs.iter().find(|c| c.name == "events-merge").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut dest = tables
        .iter()
        .find(|t| t.name == config.table)
        .unwrap()
        .clone();
    dest.uri = format!("file://{}", dir.path().display());
    let ctx = run_of(config, &dest);
    let mut catalog = Catalog::create(&dest.uri, &dest.schema, Default::default())
        .await
        .unwrap();
    let inputs = ["seg/a.parquet", "seg/b.parquet", "seg/c.parquet"];
    let live: Vec<SegmentRef> = inputs.iter().map(|p| segment(p)).collect();
    catalog.append(&live, &[]).await.unwrap();
    let mut plan = Plan::new(TaskType::MergeRollupTask);
    plan.commit_mode = CommitMode::PerSubtask;
    for (i, input) in inputs.iter().enumerate() {
        let mut s = PlannedSubtask::new(TaskType::MergeRollupTask, i as u32, Processing::default());
        s.inputs = vec![segment(input)];
        s.replaces_inputs = true;
        plan.subtasks.push(s);
    }
    let finished = |i: u32| -> FinishedSubtask {
        let output = segment(&format!("data/default/k/{i}/1/out.parquet"));
        (i, Some(succeeded(ctx.task_run, i, 10, output)))
    };
    let mut state = RunState::default();
    open_lineage(&ctx, &plan, &catalog, &mut state, false, 1)
        .await
        .unwrap();
    // Subtasks 0 and 1 commit together; the loop dies before it stores anything of it.
    let stored = state.clone();
    let first = commit(
        &ctx,
        &plan,
        &mut catalog,
        &mut state,
        &[finished(0), finished(1)],
        &set(&[]),
        2,
    )
    .await
    .unwrap();
    assert!(!first.already_committed);
    // Replayed with subtask 2, which finished meanwhile: only subtask 2 is committed now.
    let mut state = stored;
    let mut reopened = Catalog::open_existing(&dest.uri, &dest.schema, Default::default())
        .await
        .unwrap();
    let done = [finished(0), finished(1), finished(2)];
    let second = commit(&ctx, &plan, &mut reopened, &mut state, &done, &set(&[]), 3)
        .await
        .unwrap();
    assert!(!second.already_committed);
    assert_eq!(second.version, first.version + 1);
    let mut paths: Vec<String> = reopened
        .segments()
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "data/default/k/0/1/out.parquet",
            "data/default/k/1/1/out.parquet",
            "data/default/k/2/1/out.parquet",
        ]
    );
    for i in 0..3 {
        let entry = state.lineage.get(&ctx.lineage_id(i)).unwrap();
        assert_eq!(entry.state, LineageState::Completed, "subtask {i}");
    }
    // And once more, all three in the log: nothing is committed.
    let third = commit(
        &ctx,
        &plan,
        &mut reopened,
        &mut state.clone(),
        &done,
        &set(&[]),
        4,
    )
    .await
    .unwrap();
    assert!(third.already_committed);
    // Planning replayed once the run ran: the committed subtasks are found in the log.
    let mut replanned = RunState::default();
    let already = open_lineage(&ctx, &plan, &reopened, &mut replanned, true, 5)
        .await
        .unwrap();
    assert_eq!(already, set(&[0, 1, 2]));
}
