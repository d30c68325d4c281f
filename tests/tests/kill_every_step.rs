//! Every task that writes a table, killed after every step: a run driven one step of the local
//! control loop at a time (each step a process of its own, so stopping after each is a kill
//! between any two steps; `minion_e2e::steps`), and the destination checked before the first
//! step and after every step as any new reader of its Delta log sees it: `count(*)`, `sum()`
//! of the metrics, and the **row multiset** (every row of every live segment hashed,
//! order-independent; `minion_e2e::rows`) against what it must hold at that moment. In every
//! run, besides: one worker SIGKILLed while it runs (its subtask retried), one worker held
//! stopped until a later subtask finished (subtasks end out of order), and the loop dying
//! right after each of its Delta commits (every other write of that step undone; the next
//! step replays it).
//!
//! - SegmentImport (3 windows, parallelism 2, the first worker failing once, transiently):
//!   exactly the source's rows below the watermark committed in the destination's Delta log.
//! - MergeRollup in place (`config/mtc-merge-rollup.yaml`: hourly concat, daily rollup): each
//!   day shows all its inputs or all its outputs; concat keeps the multiset, rollup the sums
//!   (per day), and the rolled-up days hold the rollup computed here.
//! - FileIngestion with consistent push (3 subtasks): the rows of exactly the files whose
//!   ingestion committed, none or all of the run's.
//! - SegmentBackfill of one day's FR rows: the old table or the new one, never a mix, never
//!   both.
//!
//! Each ends with the exact expected rows, and a second run of the same config adds nothing.
//! Needs `target/<profile>/minion` (`cargo build -p minion-operator --bins`).
//!
//! Why one long file: one scenario per task type over the same step-by-step driver
//! (`minion_e2e::steps`); each scenario's data and expected rows are its own and read best
//! beside it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use chrono::Utc;
use minion_contract::TimeWindow;
use minion_e2e::fixtures::created_run;
use minion_e2e::local_env::Env;
use minion_e2e::rows::{
    Multiset, RowHasher, TableRows, assert_totals, take_rows, totals_of, watermark, write_parquet,
};
use minion_e2e::steps::{StepOptions, StepReport, View, step_through};
use minion_operator::demo::events::{Rng, event_batch};
use minion_operator::generator::file_ingestion::sources_of;
use minion_operator::inspect::{self, Totals, sums_match};
use minion_operator::model::{DAY_MS, HOUR_MS, TableDef};

const ALL_METRICS: [&str; 3] = ["clicks", "revenue", "latency_ms"];

fn samples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"))
}

/// `count(*)` and `sum()` of the segments `rows` read, through `inspect::totals`.
async fn visible_totals(def: &TableDef, rows: &TableRows) -> Totals {
    inspect::totals(&def.uri, &def.schema, &rows.segment_refs(), None)
        .await
        .expect("destination totals")
}

/// The harness's options for a run writing `destination`: a worker killed once, one held
/// until another finished, the loop dying right after each of its Delta commits.
fn options(destination: &TableDef) -> StepOptions {
    StepOptions {
        crash_after_commit: Some(destination.uri.trim_start_matches("file://").into()),
        ..StepOptions::default()
    }
}

/// Asserts the loop died right after a Delta commit of the run, at least `commits` times.
fn assert_crashed(report: &StepReport, commits: usize) {
    assert!(
        report.crashed_after_commit.len() >= commits,
        "{}: the loop died after the commits of steps {:?}, expected {commits}",
        report.run,
        report.crashed_after_commit
    );
}

/// Asserts a killed worker's subtask was retried: it has more attempts than the killed one.
fn assert_retried(report: &StepReport) {
    let killed = report.killed.as_ref().unwrap_or_else(|| {
        panic!(
            "{}: no worker was killed while running; held {:?}; status {:#}",
            report.run, report.held, report.tr["status"]
        )
    });
    assert!(
        report.attempts(killed.subtask) > u64::from(killed.attempt),
        "{}: subtask {} was killed in attempt {} and not retried: {:#}",
        report.run,
        killed.subtask,
        killed.attempt,
        report.tr
    );
}

/// Asserts a worker was held while a later one finished: subtasks ended out of order.
fn assert_overtaken(report: &StepReport) {
    assert!(
        report
            .held
            .as_ref()
            .is_some_and(|h| h.overtaken_by.is_some()),
        "{}: no subtask finished while another was held: {:?}; status {:#}",
        report.run,
        report.held,
        report.tr["status"]
    );
}

/// Runs `config` with the whole loop (`local up --until-idle`) until a run is Skipped.
fn run_until_caught_up(env: &Env, config: &str) {
    for _ in 0..30 {
        let run = created_run(&env.ok(&["run", config]));
        env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
        let tr = env.task_run(&run);
        match tr["status"]["phase"].as_str() {
            Some("Succeeded") => continue,
            Some("Skipped") => return,
            other => panic!("{config}: run {run} ended {other:?}: {tr:#}"),
        }
    }
    panic!("{config} did not catch up in 30 runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_after_every_step_holds_exactly_the_source_rows_below_its_watermark() {
    let env = Env::new(5, "  maxAttempts: 3\n  parallelism: 2\n").await;
    env.apply();
    let realtime = env.table("events-realtime").clone();
    let offline = env.table("events-offline").clone();
    // The import only reads the source: its rows, read once, are what the destination copies.
    let source = TableRows::read(&realtime).await;
    let first_day = env.start_ms.div_euclid(DAY_MS) * DAY_MS;
    let watermarks: RefCell<Vec<i64>> = RefCell::new(Vec::new());
    let mut check = async |v: View<'_>| {
        let wm = watermark(&offline, "default", "events-import", None).await;
        let dest = TableRows::read(&offline).await;
        let below = |w: i64| TimeWindow::new(first_day, w);
        let expected = wm.map_or(Multiset::default(), |w| source.multiset_in(below(w)));
        assert_eq!(
            dest.multiset(),
            expected,
            "{} after step {} ({}): watermark {wm:?}; the destination holds {}, the source below \
             the watermark {}\n{}",
            v.run,
            v.step,
            v.phase(),
            dest.multiset(),
            expected,
            dest.describe()
        );
        let dst = visible_totals(&offline, &dest).await;
        let src = match wm {
            Some(w) => inspect::totals(
                &realtime.uri,
                &realtime.schema,
                &source.segment_refs(),
                Some(below(w)),
            )
            .await
            .unwrap(),
            None => Totals::default(),
        };
        assert_totals(
            &dst,
            &src,
            &ALL_METRICS,
            &format!("{} after step {}", v.run, v.step),
        );
        if let Some(w) = wm {
            let mut watermarks = watermarks.borrow_mut();
            assert!(
                watermarks.last().is_none_or(|last| *last <= w),
                "the watermark went back: {watermarks:?} then {w}"
            );
            if watermarks.last() != Some(&w) {
                watermarks.push(w);
            }
        }
    };
    let run = env.run_import();
    let report = step_through(
        &env.cli(),
        &run,
        &StepOptions {
            fail_first_launch: true,
            ..options(&offline)
        },
        &mut check,
    )
    .await;
    assert_eq!(report.phase, "Succeeded", "{:#}", report.tr);
    let watermarks = watermarks.borrow().clone();
    let wm = *watermarks.last().expect("a committed watermark");
    let windows = (wm - first_day) / DAY_MS;
    assert!(
        windows >= 3,
        "{windows} windows imported (watermarks {watermarks:?}): {:#}",
        report.tr
    );
    // The first workers failed once, transiently, and were retried; so was the killed one.
    assert!(
        !report.failed_at_launch.is_empty(),
        "no worker was launched into the fault"
    );
    for j in &report.failed_at_launch {
        assert!(
            report.attempts(j.subtask) > u64::from(j.attempt),
            "subtask {} failed in attempt {} and was not retried: {:#}",
            j.subtask,
            j.attempt,
            report.tr
        );
    }
    assert_retried(&report);
    assert_overtaken(&report);
    assert_crashed(&report, 2);
    let described = env.ok(&["describe", "tr", &run]);
    assert!(described.contains("Internal"), "{described}");
    let imported = TableRows::read(&offline).await.multiset();
    assert_eq!(imported, source.multiset_in(TimeWindow::new(first_day, wm)));
    assert!(imported.rows > 0);
    println!(
        "import {run}: {} steps, {} subtasks, {windows} windows (watermarks {watermarks:?}), \
         {} rows; killed {:?}; failed at launch {:?}; held {:?}; crashed after the commits of \
         steps {:?}",
        report.steps,
        report.tr["status"]["subtasksTotal"],
        imported.rows,
        report.killed,
        report.failed_at_launch,
        report.held,
        report.crashed_after_commit
    );

    // Caught up: a second run imports nothing, step by step too.
    let again = env.run_import();
    let report = step_through(&env.cli(), &again, &options(&offline), &mut check).await;
    assert_eq!(report.phase, "Skipped", "{:#}", report.tr);
    assert_eq!(TableRows::read(&offline).await.multiset(), imported);
}

/// Per day: the sum of clicks (exact), of revenue, and the largest latency.
#[derive(Clone, Debug, Default)]
struct DayMetrics {
    clicks: i128,
    revenue: f64,
    latency_max: f64,
}

fn long_values(b: &RecordBatch, column: &str) -> Vec<Option<i64>> {
    let c = arrow::compute::cast(b.column_by_name(column).unwrap(), &DataType::Int64).unwrap();
    c.as_primitive::<Int64Type>().iter().collect()
}

fn double_values(b: &RecordBatch, column: &str) -> Vec<Option<f64>> {
    let c = arrow::compute::cast(b.column_by_name(column).unwrap(), &DataType::Float64).unwrap();
    c.as_primitive::<Float64Type>().iter().collect()
}

fn string_values(b: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let c = arrow::compute::cast(b.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
    c.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn day_metrics<'a>(
    batches: impl IntoIterator<Item = &'a RecordBatch>,
) -> BTreeMap<i64, DayMetrics> {
    let mut out: BTreeMap<i64, DayMetrics> = BTreeMap::new();
    for b in batches {
        let ts = long_values(b, "ts");
        let clicks = long_values(b, "clicks");
        let revenue = double_values(b, "revenue");
        let latency = double_values(b, "latency_ms");
        for i in 0..b.num_rows() {
            let day = ts[i].unwrap().div_euclid(DAY_MS) * DAY_MS;
            let d = out.entry(day).or_default();
            d.clicks += i128::from(clicks[i].unwrap_or(0));
            d.revenue += revenue[i].unwrap_or(0.0);
            d.latency_max = d.latency_max.max(latency[i].unwrap_or(0.0));
        }
    }
    out
}

/// A rolled-up group: (hour, country, browser, device) → (clicks, revenue, max latency).
type Groups = BTreeMap<(i64, String, String, String), (i128, f64, f64)>;

/// The daily rollup of `mtc-merge-rollup.yaml` computed here, for the rows of `day`: time
/// rounded down to the hour, user_id erased, clicks and revenue summed, latency maxed.
fn rollup_of<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>, day: i64) -> Groups {
    let mut out = Groups::new();
    for b in batches {
        let ts = long_values(b, "ts");
        let country = string_values(b, "country");
        let browser = string_values(b, "browser");
        let device = string_values(b, "device");
        let clicks = long_values(b, "clicks");
        let revenue = double_values(b, "revenue");
        let latency = double_values(b, "latency_ms");
        for i in 0..b.num_rows() {
            let t = ts[i].unwrap();
            if t.div_euclid(DAY_MS) * DAY_MS != day {
                continue;
            }
            let key = (
                t.div_euclid(HOUR_MS) * HOUR_MS,
                country[i].clone().unwrap_or_default(),
                browser[i].clone().unwrap_or_default(),
                device[i].clone().unwrap_or_default(),
            );
            let g = out.entry(key).or_insert((0, 0.0, f64::MIN));
            g.0 += i128::from(clicks[i].unwrap_or(0));
            g.1 += revenue[i].unwrap_or(0.0);
            g.2 = g.2.max(latency[i].unwrap_or(f64::MIN));
        }
    }
    out
}

/// The rows of `day` as written by a rollup: each group once, user_id erased.
fn groups_written<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>, day: i64) -> Groups {
    let mut out = Groups::new();
    for b in batches {
        let ts = long_values(b, "ts");
        let country = string_values(b, "country");
        let browser = string_values(b, "browser");
        let device = string_values(b, "device");
        let user = string_values(b, "user_id");
        let clicks = long_values(b, "clicks");
        let revenue = double_values(b, "revenue");
        let latency = double_values(b, "latency_ms");
        for i in 0..b.num_rows() {
            let t = ts[i].unwrap();
            if t.div_euclid(DAY_MS) * DAY_MS != day {
                continue;
            }
            assert!(
                user[i].as_deref().is_none_or(str::is_empty),
                "user_id not erased: {:?}",
                user[i]
            );
            let key = (
                t,
                country[i].clone().unwrap_or_default(),
                browser[i].clone().unwrap_or_default(),
                device[i].clone().unwrap_or_default(),
            );
            let value = (
                i128::from(clicks[i].unwrap_or(0)),
                revenue[i].unwrap_or(0.0),
                latency[i].unwrap_or(f64::MIN),
            );
            assert!(
                out.insert(key.clone(), value).is_none(),
                "group {key:?} written twice"
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_merge_rollup_killed_after_every_step_shows_each_day_all_inputs_or_all_outputs()
{
    let env = Env::new(4, "").await;
    let merge = std::fs::read_to_string(samples().join("mtc-merge-rollup.yaml"))
        .unwrap()
        .replace("spec:\n", "spec:\n  maxAttempts: 3\n  parallelism: 2\n");
    std::fs::write(env.manifests.join("mtc-merge-rollup.yaml"), merge).unwrap();
    env.ok(&["apply", "-f", env.manifests.to_str().unwrap()]);
    run_until_caught_up(&env, "events-import");
    let offline = env.table("events-offline").clone();
    let before = TableRows::read(&offline).await;
    let before_days = before.by_bucket(DAY_MS);
    let before_metrics = day_metrics(before.batches());
    let before_totals = visible_totals(&offline, &before).await;
    assert!(before_days.len() >= 2, "{}", before.describe());

    // Every multiset each day showed, and the merge levels seen.
    let seen: RefCell<BTreeMap<i64, HashSet<Multiset>>> = RefCell::default();
    let levels: RefCell<BTreeSet<String>> = RefCell::default();
    let mut check = async |v: View<'_>| {
        let now = TableRows::read(&offline).await;
        let at = format!("{} after step {} ({})", v.run, v.step, v.phase());
        let totals = visible_totals(&offline, &now).await;
        assert!(totals.rows <= before_totals.rows, "{at}: rows added");
        assert_totals(
            &Totals {
                rows: before_totals.rows,
                ..totals.clone()
            },
            &before_totals,
            &["clicks", "revenue"],
            &at,
        );
        let days = now.by_bucket(DAY_MS);
        assert_eq!(
            days.keys().collect::<Vec<_>>(),
            before_days.keys().collect::<Vec<_>>(),
            "{at}: days appeared or vanished\n{}",
            now.describe()
        );
        if !now
            .segments
            .iter()
            .any(|s| s.segment.merge_level() == Some("1day"))
        {
            // Nothing rolled up yet: concat keeps every row.
            assert_eq!(
                now.multiset(),
                before.multiset(),
                "{at}: the concat level changed the rows\n{}",
                now.describe()
            );
        }
        let metrics = day_metrics(now.batches());
        for (day, m) in &days {
            // All inputs (the imported rows; concat keeps them) or all outputs (rolled up):
            // a day whose rows changed shows no row outside a 1day segment.
            if *m != before_days[day] {
                for s in &now.segments {
                    if s.rows
                        .iter()
                        .any(|r| r.time_ms.div_euclid(DAY_MS) * DAY_MS == *day)
                    {
                        assert_eq!(
                            s.segment.merge_level(),
                            Some("1day"),
                            "{at}: day {day} changed ({m} vs {} before) but segment {} is not \
                             a rollup output: a half swap\n{}",
                            before_days[day],
                            s.segment.path,
                            now.describe()
                        );
                    }
                }
            }
            let (a, b) = (&metrics[day], &before_metrics[day]);
            assert_eq!(a.clicks, b.clicks, "{at}: sum(clicks) of day {day}");
            assert!(
                sums_match(a.revenue, b.revenue),
                "{at}: sum(revenue) of day {day}: {} vs {}",
                a.revenue,
                b.revenue
            );
            assert_eq!(
                a.latency_max, b.latency_max,
                "{at}: max(latency_ms) of day {day}"
            );
            seen.borrow_mut().entry(*day).or_default().insert(*m);
        }
        levels.borrow_mut().extend(
            now.segments
                .iter()
                .filter_map(|s| s.segment.merge_level().map(str::to_string)),
        );
    };

    let mut killed = None;
    let mut overtaken = None;
    let mut crashes = 0;
    let mut runs = Vec::new();
    // Hourly concat runs, then daily rollups, until the config has nothing left to do.
    for _ in 0..20 {
        let run = created_run(&env.ok(&["run", "events-merge"]));
        let report = step_through(
            &env.cli(),
            &run,
            &StepOptions {
                kill_a_worker: killed.is_none(),
                ..options(&offline)
            },
            &mut check,
        )
        .await;
        if report.killed.is_some() {
            assert_retried(&report);
            killed = report.killed.clone();
        }
        crashes += report.crashed_after_commit.len();
        if report
            .held
            .as_ref()
            .is_some_and(|h| h.overtaken_by.is_some())
        {
            overtaken = report.held.clone();
        }
        runs.push((
            run,
            report.phase.clone(),
            report.steps,
            report.tr["status"]["subtasksTotal"].as_u64().unwrap_or(0),
        ));
        match report.phase.as_str() {
            "Succeeded" => continue,
            "Skipped" => break,
            _ => panic!("{:#}", report.tr),
        }
    }
    assert_eq!(runs.last().unwrap().1, "Skipped", "{runs:?}");
    assert!(
        killed.is_some(),
        "no worker was killed while running: {runs:?}"
    );
    assert!(
        overtaken.is_some(),
        "no subtask finished while another was held: {runs:?}"
    );
    assert!(
        crashes >= 3,
        "the loop died after {crashes} commits: {runs:?}"
    );
    let levels = levels.borrow().clone();
    assert!(
        levels.contains("1hour") && levels.contains("1day"),
        "{levels:?} {runs:?}"
    );

    let after = TableRows::read(&offline).await;
    let after_days = after.by_bucket(DAY_MS);
    let mut rolled = 0;
    let shown_by_day = seen.borrow().clone();
    for (day, shown) in &shown_by_day {
        let (b, a) = (before_days[day], after_days[day]);
        for m in shown {
            assert!(
                *m == b || *m == a,
                "day {day} showed {m}: neither its inputs {b} nor its outputs {a}"
            );
        }
        if a != b {
            // The rolled-up day holds exactly the rollup of its rows, computed here.
            rolled += 1;
            let expected = rollup_of(before.batches(), *day);
            let written = groups_written(after.batches(), *day);
            assert_eq!(
                written.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "day {day}: the groups"
            );
            for (k, (c, r, l)) in &written {
                let (ec, er, el) = &expected[k];
                assert_eq!(c, ec, "{k:?} clicks");
                assert!(sums_match(*r, *er), "{k:?} revenue {r} vs {er}");
                assert_eq!(l, el, "{k:?} latency");
            }
        }
    }
    assert!(rolled >= 1, "no day was rolled up: {runs:?}");
    assert!(after.multiset().rows < before.multiset().rows);

    // A second run of the config adds nothing.
    let again = created_run(&env.ok(&["run", "events-merge"]));
    let report = step_through(&env.cli(), &again, &options(&offline), &mut check).await;
    assert_eq!(report.phase, "Skipped", "{:#}", report.tr);
    assert_eq!(TableRows::read(&offline).await.multiset(), after.multiset());
    println!(
        "merge: {rolled} day(s) rolled up; runs {runs:?}; killed {killed:?}; held {overtaken:?}; \
         {crashes} crashes after a commit"
    );
}

/// An inline FileIngestion TaskRun named `name` over every Parquet file below `dir` (the
/// sample `config/taskrun-file-ingestion.yaml`: consistent push, so all or none), two files
/// per subtask.
fn ingestion_run(env: &Env, name: &str, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(samples().join("taskrun-file-ingestion.yaml"))
        .unwrap()
        .replace(
            "file:///tmp/minion/incoming/events/",
            &format!("file://{}/", dir.display()),
        )
        .replace("name: events-ingest-2024-01", &format!("name: {name}"))
        .replace(
            "tableMaxNumTasks: -1",
            "tableMaxNumTasks: -1\n      taskMaxNumFiles: 2",
        )
        .replace("parallelism: 2", "parallelism: 2\n  maxAttempts: 3");
    assert!(text.contains("consistentPushEnabled: true"), "{text}");
    let path = env.manifests.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_push_killed_after_every_step_shows_none_or_all_of_its_files() {
    let env = Env::new(1, "").await;
    env.apply();
    let offline = env.table("events-offline").clone();
    let hasher = RowHasher::new(&offline.schema);
    let input = env.dir.path().join("data/incoming/events");
    let day = (Utc::now().timestamp_millis() - 10 * DAY_MS).div_euclid(DAY_MS) * DAY_MS;
    let mut rng = Rng::new(11);
    // File name → (its rows, its batch).
    let mut files: BTreeMap<String, (Multiset, RecordBatch)> = BTreeMap::new();
    let mut write = |name: &str, rows: usize| {
        let b = event_batch(&mut rng, rows, day, day + DAY_MS);
        write_parquet(&input.join(name), &b);
        files.insert(name.to_string(), (Multiset::of(&hasher.rows(&b)), b));
    };
    // One file ingested by an earlier run: the destination's rows before the push.
    write("early/part-0.parquet", 120);
    let early = ingestion_run(&env, "ingest-early", &input);
    env.ok(&["execute", "-f", early.to_str().unwrap()]);
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    assert_eq!(env.task_run("ingest-early")["status"]["phase"], "Succeeded");
    let pushed: Vec<String> = (0..6).map(|i| format!("batch/part-{i}.parquet")).collect();
    for (i, name) in pushed.iter().enumerate() {
        write(name, 100 + 20 * i);
    }
    let file_of = |uri: &str| -> String {
        let name = files
            .keys()
            .find(|f| uri.ends_with(&format!("/{f}")))
            .unwrap_or_else(|| panic!("a segment of an unknown file {uri}"));
        name.clone()
    };
    let expected_for = |names: &BTreeSet<String>| -> (Multiset, Totals) {
        let m = names
            .iter()
            .fold(Multiset::default(), |m, f| m.plus(files[f].0));
        let t = totals_of(&offline.schema, names.iter().map(|f| &files[f].1));
        (m, t)
    };
    let early_only: BTreeSet<String> = ["early/part-0.parquet".to_string()].into();
    let everything: BTreeSet<String> = files.keys().cloned().collect();

    let mut check = async |v: View<'_>| {
        let now = TableRows::read(&offline).await;
        let at = format!("{} after step {} ({})", v.run, v.step, v.phase());
        // The files whose ingestion committed, by the segments' source tags.
        let committed: BTreeSet<String> = now
            .segments
            .iter()
            .flat_map(|s| sources_of(&s.segment))
            .map(|(uri, _)| file_of(&uri))
            .collect();
        assert!(
            committed == early_only || committed == everything,
            "{at}: a part of the push is visible: {committed:?}\n{}",
            now.describe()
        );
        let (expected, totals) = expected_for(&committed);
        assert_eq!(
            now.multiset(),
            expected,
            "{at}: the destination holds {}, the committed files {committed:?} {expected}\n{}",
            now.multiset(),
            now.describe()
        );
        assert_totals(
            &visible_totals(&offline, &now).await,
            &totals,
            &ALL_METRICS,
            &at,
        );
    };

    let manifest = ingestion_run(&env, "ingest-batch", &input);
    env.ok(&["execute", "-f", manifest.to_str().unwrap()]);
    let report = step_through(&env.cli(), "ingest-batch", &options(&offline), &mut check).await;
    assert_eq!(report.phase, "Succeeded", "{:#}", report.tr);
    assert_eq!(report.tr["status"]["subtasksTotal"], 3, "{:#}", report.tr);
    assert_retried(&report);
    assert_overtaken(&report);
    assert_crashed(&report, 1);
    let all = TableRows::read(&offline).await.multiset();
    assert_eq!(all, expected_for(&everything).0);
    println!(
        "ingestion: {} steps, {} subtasks, {all}; killed {:?}; held {:?}; crashed after the \
         commits of steps {:?}",
        report.steps,
        report.tr["status"]["subtasksTotal"],
        report.killed,
        report.held,
        report.crashed_after_commit
    );

    // The same push again: nothing new to ingest.
    let again = ingestion_run(&env, "ingest-batch-again", &input);
    env.ok(&["execute", "-f", again.to_str().unwrap()]);
    let report = step_through(
        &env.cli(),
        "ingest-batch-again",
        &options(&offline),
        &mut check,
    )
    .await;
    assert_eq!(report.phase, "Skipped", "{:#}", report.tr);
    assert_eq!(
        report.tr["status"]["reason"], "NoNewFiles",
        "{:#}",
        report.tr
    );
    assert_eq!(TableRows::read(&offline).await.multiset(), all);
}

/// The sample `config/taskrun-backfill.yaml` as the TaskRun `name`: `range` of events-offline
/// for country FR replaced by the Parquet files under `dir`, all or none.
fn backfill_run(env: &Env, name: &str, range: TimeWindow, dir: &Path) -> std::path::PathBuf {
    let start = chrono::DateTime::from_timestamp_millis(range.start_ms).unwrap();
    let mut text = std::fs::read_to_string(samples().join("taskrun-backfill.yaml")).unwrap();
    for (from, to) in [
        (
            "name: events-backfill-fr-2024-01".to_string(),
            format!("name: {name}"),
        ),
        (
            "startTime: \"2024-01-01T00:00:00Z\"".to_string(),
            format!("startTime: \"{}\"", start.to_rfc3339()),
        ),
        (
            "endTime: 1706745600000".to_string(),
            format!("endTime: {}", range.end_ms),
        ),
        (
            "file:///tmp/minion/backfill/events_fr_2024_01/".to_string(),
            format!("file://{}/", dir.display()),
        ),
        (
            "  table: events-offline\n".to_string(),
            "  table: events-offline\n  parallelism: 2\n  maxAttempts: 3\n".to_string(),
        ),
    ] {
        assert!(text.contains(&from), "the backfill sample has no {from:?}");
        text = text.replace(&from, &to);
    }
    assert!(text.contains("filter: \"country = 'FR'\""), "{text}");
    let path = env.manifests.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_after_every_step_shows_the_old_rows_or_the_new_never_a_mix() {
    let env = Env::new(4, "").await;
    env.apply();
    run_until_caught_up(&env, "events-import");
    let offline = env.table("events-offline").clone();
    let hasher = RowHasher::new(&offline.schema);
    let old = TableRows::read(&offline).await;
    // The first whole imported day, FR rows only (the sample's filter).
    let first_day = env.start_ms.div_euclid(DAY_MS) * DAY_MS + DAY_MS;
    let range = TimeWindow::new(first_day, first_day + DAY_MS);
    let fr = |b: &RecordBatch, i: usize| {
        let c = b.column_by_name("country").unwrap();
        let c = arrow::compute::cast(c, &DataType::Utf8).unwrap();
        let c = c.as_string::<i32>();
        c.is_valid(i) && c.value(i) == "FR"
    };
    let replaced = old.multiset_where(|b, i, r| range.contains(r.time_ms) && fr(b, i));
    assert!(replaced.rows > 0, "no FR row in the range");
    // Corrected files whose rows spill over the range on both sides: only FR rows inside it
    // replace the old ones.
    let input = env.dir.path().join("data/backfill/fr");
    let mut rng = Rng::new(23);
    let mut kept = Vec::new();
    for i in 0..3 {
        let b = event_batch(
            &mut rng,
            300,
            range.start_ms - HOUR_MS,
            range.end_ms + HOUR_MS,
        );
        write_parquet(&input.join(format!("corrected-{i}.parquet")), &b);
        let ts = b
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let inside: Vec<usize> = (0..b.num_rows())
            .filter(|&i| range.contains(ts.value(i)) && fr(&b, i))
            .collect();
        kept.push(take_rows(&b, &inside));
    }
    let added = Multiset::of(&hasher.all_rows(&kept));
    assert!(added.rows > 0);
    let old_rows = old.multiset();
    let new_rows = old_rows.minus(replaced).plus(added);
    assert_ne!(old_rows, new_rows);
    let old_totals = visible_totals(&offline, &old).await;
    let kept_totals = totals_of(&offline.schema, &kept);
    let replaced_batches: Vec<RecordBatch> = old
        .batches()
        .map(|b| {
            let ts = b
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            let inside: Vec<usize> = (0..b.num_rows())
                .filter(|&i| range.contains(ts.value(i)) && fr(b, i))
                .collect();
            take_rows(b, &inside)
        })
        .collect();
    let replaced_totals = totals_of(&offline.schema, &replaced_batches);
    let mut new_totals = old_totals.clone();
    new_totals.rows = old_totals.rows - replaced_totals.rows + kept_totals.rows;
    for m in ALL_METRICS {
        *new_totals.sums.get_mut(m).unwrap() += kept_totals.sums[m] - replaced_totals.sums[m];
    }

    // What each step may show: the old table or the new one (after the first run, the new).
    let check = async |allowed: &[(Multiset, &Totals)], v: View<'_>| {
        let now = TableRows::read(&offline).await;
        let at = format!("{} after step {} ({})", v.run, v.step, v.phase());
        let m = now.multiset();
        let Some((_, totals)) = allowed.iter().find(|(a, _)| *a == m) else {
            let mixed = if m.rows > old_rows.rows {
                "both"
            } else {
                "a mix"
            };
            panic!(
                "{at}: the table holds {m}, neither the old rows {old_rows} nor the new \
                 {new_rows} (in the range: {}; {mixed}?)\n{}",
                now.multiset_in(range),
                now.describe()
            );
        };
        assert_totals(
            &visible_totals(&offline, &now).await,
            totals,
            &ALL_METRICS,
            &at,
        );
    };
    let manifest = backfill_run(&env, "backfill-fr", range, &input);
    env.ok(&["execute", "-f", manifest.to_str().unwrap()]);
    let both = [(old_rows, &old_totals), (new_rows, &new_totals)];
    let report = step_through(
        &env.cli(),
        "backfill-fr",
        &options(&offline),
        async |v: View<'_>| check(&both, v).await,
    )
    .await;
    assert_eq!(report.phase, "Succeeded", "{:#}", report.tr);
    assert!(
        report.tr["status"]["subtasksTotal"].as_u64().unwrap() >= 2,
        "{:#}",
        report.tr
    );
    assert_retried(&report);
    assert_overtaken(&report);
    assert_crashed(&report, 1);
    assert_eq!(TableRows::read(&offline).await.multiset(), new_rows);
    println!(
        "backfill: {} steps, {} subtasks, {replaced} replaced by {added}; killed {:?}; held \
         {:?}; crashed after the commits of steps {:?}",
        report.steps,
        report.tr["status"]["subtasksTotal"],
        report.killed,
        report.held,
        report.crashed_after_commit
    );

    // The same backfill again replaces the range by the same rows: nothing added.
    let manifest = backfill_run(&env, "backfill-fr-again", range, &input);
    env.ok(&["execute", "-f", manifest.to_str().unwrap()]);
    let only_new = [(new_rows, &new_totals)];
    let report = step_through(
        &env.cli(),
        "backfill-fr-again",
        &options(&offline),
        async |v: View<'_>| check(&only_new, v).await,
    )
    .await;
    assert!(
        matches!(report.phase.as_str(), "Succeeded" | "Skipped"),
        "{:#}",
        report.tr
    );
    assert_eq!(TableRows::read(&offline).await.multiset(), new_rows);
    println!("backfill again: {} in {} steps", report.phase, report.steps);
}
