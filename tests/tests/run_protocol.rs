//! End-to-end runs through the commit protocol on local tables: the demo's flow, crash replay,
//! and a failing subtask. Rows are checked by reading the Delta tables back.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use chrono::{TimeZone, Utc};
use minion_contract::{ResultManifest, SubtaskSpec, TimeWindow};
use minion_operator::catalog::{Catalog, install_crypto_provider};
use minion_operator::demo::{self, DemoOptions};
use minion_operator::generator::{self, GeneratorInput, Plan, TableView};
use minion_operator::inspect::{self, Totals};
use minion_operator::lineage::LineageState;
use minion_operator::model::{HOUR_MS, TableDef, TaskConfig};
use minion_operator::runner::{
    InProcessExecutor, RunContext, RunOutcome, RunState, SubtaskExecutor, SubtaskResult,
    execute_run,
};

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    tables: Vec<TableDef>,
    configs: Vec<TaskConfig>,
    catalogs: HashMap<String, Catalog>,
    start_ms: i64,
}

impl Fixture {
    /// The demo's tables with `days` of events in the REALTIME one.
    async fn new(days: u32) -> Fixture {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (tables, configs) = demo::load_samples(dir.path()).unwrap();
        let mut catalogs = HashMap::new();
        for def in &tables {
            let c = Catalog::create(&def.uri, &def.schema, HashMap::new())
                .await
                .unwrap();
            catalogs.insert(def.name.clone(), c);
        }
        let options = DemoOptions {
            dir: dir.path().to_path_buf(),
            days,
            partitions: 2,
            segment_period_ms: 2 * HOUR_MS,
            rows_per_segment: 200,
            now: now(),
        };
        let realtime = tables.iter().find(|t| t.name == "events-realtime").unwrap();
        let start_ms = demo::write_realtime(
            realtime,
            catalogs.get_mut("events-realtime").unwrap(),
            &options,
        )
        .await
        .unwrap();
        Fixture {
            _dir: dir,
            tables,
            configs,
            catalogs,
            start_ms,
        }
    }

    fn table(&self, name: &str) -> &TableDef {
        self.tables.iter().find(|t| t.name == name).unwrap()
    }

    fn config(&self, name: &str) -> &TaskConfig {
        self.configs.iter().find(|c| c.name == name).unwrap()
    }

    fn view(&self, name: &str, state: &RunState) -> TableView {
        TableView {
            def: self.table(name).clone(),
            segments: self.catalogs[name].segments().unwrap(),
            lineage: if name == "events-offline" {
                state.lineage.clone()
            } else {
                Default::default()
            },
        }
    }

    fn plan(&self, config: &str, state: &RunState) -> Plan {
        let config = self.config(config).clone();
        let input = GeneratorInput {
            source: config.source_table.as_deref().map(|s| self.view(s, state)),
            destination: self.view(&config.table, state),
            config,
            watermarks: state.watermarks.clone(),
            committed_windows: state.committed_windows.clone(),
            incomplete_runs: vec![],
            files: vec![],
            invalid_rows: HashMap::new(),
            now_ms: now().timestamp_millis(),
        };
        generator::plan(&input).unwrap()
    }

    async fn execute(
        &mut self,
        config: &str,
        run: &str,
        plan: &Plan,
        state: &mut RunState,
        executor: &dyn SubtaskExecutor,
    ) -> RunOutcome {
        let config = self.config(config).clone();
        let source = config
            .source_table
            .as_deref()
            .map(|s| self.table(s).clone());
        let destination = self.table(&config.table).clone();
        let ctx = RunContext {
            namespace: "default",
            task_run: run,
            config: &config,
            source: source.as_ref(),
            destination: &destination,
        };
        let catalog = self.catalogs.get_mut(&destination.name).unwrap();
        catalog.refresh().await.unwrap();
        execute_run(&ctx, plan, catalog, state, executor, || {
            now().timestamp_millis()
        })
        .await
        .unwrap()
    }

    async fn totals(&mut self, table: &str, window: Option<TimeWindow>) -> Totals {
        let def = self.table(table).clone();
        let catalog = self.catalogs.get_mut(table).unwrap();
        catalog.refresh().await.unwrap();
        let segments = catalog.segments().unwrap();
        inspect::totals(&def.uri, &def.schema, &segments, window)
            .await
            .unwrap()
    }
}

/// Same rows and the same sums (up to summation order).
fn assert_same(a: &Totals, b: &Totals) {
    assert_eq!(a.rows, b.rows, "count(*)");
    assert_eq!(
        a.sums.keys().collect::<Vec<_>>(),
        b.sums.keys().collect::<Vec<_>>()
    );
    for (k, v) in &a.sums {
        assert!(
            inspect::sums_match(*v, b.sums[k]),
            "sum({k}): {v} vs {}",
            b.sums[k]
        );
    }
}

fn committed(outcome: &RunOutcome) -> usize {
    outcome
        .subtasks
        .values()
        .filter(|r| matches!(r, SubtaskResult::Committed { .. }))
        .count()
}

#[tokio::test]
async fn demo_moves_and_rolls_up_events_with_every_sum_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let report = demo::run(&DemoOptions {
        dir: dir.path().join("demo"),
        days: 5,
        partitions: 2,
        segment_period_ms: 2 * HOUR_MS,
        rows_per_segment: 300,
        now: now(),
    })
    .await
    .unwrap();
    assert!(report.source_in_imported_range.rows > 0);
    assert_eq!(
        report.source_in_imported_range.rows,
        report.offline_after_import.rows
    );
    assert!(report.offline_after_merge.rows < report.offline_after_import.rows);
    assert_eq!(
        report.offline_after_merge.sums["clicks"],
        report.offline_after_import.sums["clicks"]
    );
}

#[tokio::test]
async fn replaying_a_run_lost_before_its_status_update_commits_nothing_twice() {
    let mut f = Fixture::new(5).await;
    let before = RunState::default();
    let plan = f.plan("events-import", &before);
    assert!(!plan.subtasks.is_empty(), "{:?}", plan.skip);

    let mut state = before.clone();
    let first = f
        .execute(
            "events-import",
            "import-1",
            &plan,
            &mut state,
            &InProcessExecutor::default(),
        )
        .await;
    assert!(first.succeeded(), "{first:?}");
    let watermark = state.watermarks[""];
    let range = TimeWindow::new(f.start_ms, watermark);
    let source = f.totals("events-realtime", Some(range)).await;
    let after_first = f.totals("events-offline", None).await;
    assert_same(&after_first, &source);

    // The control loop died after the Delta commits but before it stored status: it resumes
    // the same run from the state it had before.
    let mut replay_state = before.clone();
    let replay = f
        .execute(
            "events-import",
            "import-1",
            &plan,
            &mut replay_state,
            &InProcessExecutor::default(),
        )
        .await;
    assert_eq!(committed(&replay), plan.subtasks.len());
    assert!(replay.subtasks.values().all(|r| matches!(
        r,
        SubtaskResult::Committed {
            already_committed: true,
            ..
        }
    )));
    assert_same(&f.totals("events-offline", None).await, &after_first);
    // The watermark is recovered from the log, not only from status.
    let wm = f.catalogs["events-offline"]
        .txn_version("minion.dev/default/events-import")
        .await
        .unwrap();
    assert_eq!(wm, Some(watermark));
}

#[tokio::test]
async fn replaying_an_in_place_merge_after_its_commit_keeps_every_row_once() {
    let mut f = Fixture::new(4).await;
    let mut state = RunState::default();
    let plan = f.plan("events-import", &state);
    let out = f
        .execute(
            "events-import",
            "import-1",
            &plan,
            &mut state,
            &InProcessExecutor::default(),
        )
        .await;
    assert!(out.succeeded());
    let imported = f.totals("events-offline", None).await;

    let before_merge = state.clone();
    let merge_plan = f.plan("events-merge", &state);
    assert!(!merge_plan.subtasks.is_empty(), "{:?}", merge_plan.skip);
    let merged = f
        .execute(
            "events-merge",
            "merge-1",
            &merge_plan,
            &mut state,
            &InProcessExecutor::default(),
        )
        .await;
    assert!(merged.succeeded(), "{merged:?}");
    let after = f.totals("events-offline", None).await;
    assert_eq!(after.sums["clicks"], imported.sums["clicks"]);

    let mut replay_state = before_merge;
    let replay = f
        .execute(
            "events-merge",
            "merge-1",
            &merge_plan,
            &mut replay_state,
            &InProcessExecutor::default(),
        )
        .await;
    assert!(replay.succeeded(), "{replay:?}");
    assert_same(&f.totals("events-offline", None).await, &after);
    assert!(replay_state.lineage.locked_segments().is_empty());
}

/// Fails every subtask the way a worker reports bad input.
struct FailingExecutor;

impl SubtaskExecutor for FailingExecutor {
    fn execute<'a>(
        &'a self,
        _spec_uri: &'a str,
        spec: &'a SubtaskSpec,
    ) -> Pin<Box<dyn Future<Output = Result<ResultManifest, String>> + Send + 'a>> {
        Box::pin(async move {
            // Stage some output first, as a worker that dies late would.
            let mut staged = spec.clone();
            staged.processing.max_records_per_segment = 10;
            let _ = minion_worker::run_subtask(&staged, &Default::default()).await;
            Err(format!(
                "CorruptInput: segment {} is not Parquet",
                spec.inputs.first().map_or("?", |s| s.path.as_str())
            ))
        })
    }
}

#[tokio::test]
async fn a_failing_subtask_is_reverted_leaves_nothing_staged_and_the_next_run_succeeds() {
    let mut f = Fixture::new(4).await;
    let mut state = RunState::default();
    let plan = f.plan("events-import", &state);
    let failed = f
        .execute(
            "events-import",
            "import-1",
            &plan,
            &mut state,
            &FailingExecutor,
        )
        .await;
    assert!(!failed.succeeded());
    assert!(failed.failure_message().unwrap().contains("CorruptInput"));
    assert!(
        state
            .lineage
            .entries
            .iter()
            .all(|e| e.state == LineageState::Reverted)
    );
    assert_eq!(f.totals("events-offline", None).await.rows, 0);
    let offline_dir = f
        .table("events-offline")
        .uri
        .trim_start_matches("file://")
        .to_string();
    let staged = std::path::Path::new(&offline_dir).join("data/import-1");
    let leftovers: Vec<_> = walk(&staged);
    assert!(leftovers.is_empty(), "staged files left: {leftovers:?}");
    // The watermark did not move past the failed windows.
    let wm_before = state.watermarks.get("").copied();

    let retry_plan = f.plan("events-import", &state);
    let ok = f
        .execute(
            "events-import",
            "import-2",
            &retry_plan,
            &mut state,
            &InProcessExecutor::default(),
        )
        .await;
    assert!(ok.succeeded(), "{ok:?}");
    let range = TimeWindow::new(f.start_ms, state.watermarks[""]);
    assert!(Some(state.watermarks[""]) > wm_before);
    let source = f.totals("events-realtime", Some(range)).await;
    let dest = f.totals("events-offline", None).await;
    assert_same(&dest, &source);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
