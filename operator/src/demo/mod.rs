//! `minion demo`: the first-run demo on the embedded default — a local directory, local
//! worker processes, no cluster.
//!
//! It builds a REALTIME table of synthetic click events in many small segments, applies the
//! samples `config/mtc-segment-import.yaml` (parallel move into an OFFLINE table),
//! `config/mtc-merge-rollup.yaml` (hourly merge, daily rollup) and `config/mtc-dedup.yaml`
//! to a local-mode state directory (`<dir>/state`, configs suspended), runs each through the
//! control loop — the same one `minion local up` and the operator run — as manual TaskRuns
//! until it has nothing left to do, and proves with `count(*)`/`sum()` that no row was lost
//! or duplicated. The state directory stays: `minion --state-dir <dir>/state get tr` shows
//! every run.
//!
//! What it may touch: the demo directory only.

pub mod events;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use minion_contract::TimeWindow;

use crate::api::{self, Resource, TaskRunPhase};
use crate::catalog::{Catalog, install_crypto_provider};
use crate::clock::OffsetClock;
use crate::control::{Backend, Controller, ControllerOptions, configs, gather};
use crate::generator::DEFAULT_WATERMARK;
use crate::inspect::{self, Totals, sums_match};
use crate::local::{LocalBackend, StateLock};
use crate::model::{DAY_MS, HOUR_MS, TableDef, TaskConfig};
use crate::validate;

const SAMPLES: [(&str, &str); 5] = [
    (
        "config/table-events-realtime.yaml",
        include_str!("../../../config/table-events-realtime.yaml"),
    ),
    (
        "config/table-events-offline.yaml",
        include_str!("../../../config/table-events-offline.yaml"),
    ),
    (
        "config/mtc-segment-import.yaml",
        include_str!("../../../config/mtc-segment-import.yaml"),
    ),
    (
        "config/mtc-merge-rollup.yaml",
        include_str!("../../../config/mtc-merge-rollup.yaml"),
    ),
    (
        "config/mtc-dedup.yaml",
        include_str!("../../../config/mtc-dedup.yaml"),
    ),
];

/// Rows in a thousand the demo's stream writer writes twice (at-least-once delivery).
const DEMO_DUPLICATES_PER_MILLE: u64 = 5;

/// Settings of one demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub days: u32,
    /// Stream partitions of the REALTIME table.
    pub partitions: u32,
    /// Each partition flushes a segment this often.
    pub segment_period_ms: i64,
    pub rows_per_segment: usize,
    pub now: DateTime<Utc>,
    /// The program local jobs run as `<worker> --state-dir <state> worker run …`: the `minion`
    /// binary (by default the running one).
    pub worker: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            dir: PathBuf::from(".minion/demo"),
            days: 30,
            partitions: 2,
            segment_period_ms: HOUR_MS / 2,
            rows_per_segment: 1_000,
            now: Utc::now(),
            worker: None,
        }
    }
}

impl DemoOptions {
    /// Where the REALTIME data starts (epoch ms: `days` before `now`, aligned to the segment
    /// period) and how many segments each partition gets.
    pub fn span(&self) -> (i64, usize) {
        let now_ms = self.now.timestamp_millis();
        let end_ms = now_ms - now_ms.rem_euclid(self.segment_period_ms);
        let start_ms = end_ms - i64::from(self.days) * DAY_MS;
        (
            start_ms,
            ((end_ms - start_ms) / self.segment_period_ms) as usize,
        )
    }
}

/// What the demo measured.
#[derive(Clone, Debug, Default)]
pub struct DemoReport {
    pub realtime_before: Totals,
    pub offline_after_import: Totals,
    pub source_in_imported_range: Totals,
    pub offline_after_merge: Totals,
    pub realtime_after_dedup: Totals,
    pub imported_range: Option<TimeWindow>,
    pub runs: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Setup(String),
    #[error("run {run}: {message}")]
    Run { run: String, message: String },
    #[error("check failed: {0}")]
    Check(String),
}

fn setup<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> DemoError + '_ {
    move |e| DemoError::Setup(format!("{context}: {e}"))
}

/// The demo's samples (`config/table-events-*.yaml`, `mtc-segment-import.yaml`,
/// `mtc-merge-rollup.yaml`), validated, with table URIs moved under `dir`.
pub fn load_samples(dir: &Path) -> Result<(Vec<TableDef>, Vec<TaskConfig>), DemoError> {
    let mut tables = Vec::new();
    let mut configs = Vec::new();
    for (file, text) in SAMPLES {
        for resource in api::parse_manifests(text).map_err(setup(file))? {
            match resource {
                Resource::Table(t) => {
                    let mut def = validate::table(&t).map_err(setup(file))?;
                    def.uri = format!("file://{}/{}", dir.display(), def.name);
                    tables.push(def);
                }
                Resource::MinionTaskConfig(c) => {
                    configs.push(validate::task_config(&c).map_err(setup(file))?)
                }
                Resource::TaskRun(_) => {}
            }
        }
    }
    Ok((tables, configs))
}

/// Runs the demo, printing progress to stdout.
///
/// # Errors
/// Setup failures (samples, directory, catalog), a failed run, or a failed consistency check.
pub async fn run(options: &DemoOptions) -> Result<DemoReport, DemoError> {
    install_crypto_provider();
    let started = Instant::now();
    // The demo's state directory is locked like any control loop's: a demo still running in
    // `dir` refuses this one before anything is removed.
    let old_lock = if options.dir.join("state").exists() {
        Some(StateLock::acquire(&options.dir.join("state")).map_err(setup("the demo directory"))?)
    } else {
        None
    };
    if options.dir.exists() {
        std::fs::remove_dir_all(&options.dir).map_err(setup("removing the old demo directory"))?;
    }
    std::fs::create_dir_all(&options.dir).map_err(setup("creating the demo directory"))?;
    let dir = std::fs::canonicalize(&options.dir).map_err(setup("demo directory"))?;
    let _lock = StateLock::acquire(&dir.join("state")).map_err(setup("the demo directory"))?;
    drop(old_lock);
    let (tables, configs) = load_samples(&dir)?;
    let table = |name: &str| {
        tables
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| DemoError::Setup(format!("sample table {name} missing")))
    };
    let realtime = table("events-realtime")?;
    let offline = table("events-offline")?;
    let mut catalogs: HashMap<String, Catalog> = HashMap::new();
    for def in [realtime, offline] {
        let catalog = Catalog::create(&def.uri, &def.schema, HashMap::new())
            .await
            .map_err(setup(&def.name))?;
        catalogs.insert(def.name.clone(), catalog);
    }

    // 1. A REALTIME table as a stream writer leaves it: many small segments.
    let (start_ms, per_partition) = options.span();
    println!(
        "▶ writing {} segments of {} rows ({} days × {} partitions) into {}",
        per_partition * options.partitions as usize,
        options.rows_per_segment,
        options.days,
        options.partitions,
        realtime.uri
    );
    let duplicates = write_realtime_with_duplicates(
        realtime,
        catalogs.get_mut(&realtime.name).expect("created"),
        options,
        DEMO_DUPLICATES_PER_MILLE,
    )
    .await?;
    let mut report = DemoReport {
        realtime_before: table_totals(realtime, None).await?,
        ..DemoReport::default()
    };
    print_totals("events-realtime", &report.realtime_before);
    println!("  ({duplicates} of those rows were written twice by the at-least-once writer)");

    let mut watermarks: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
    // 2. The samples in a local-mode state directory, configs suspended: the demo creates
    //    the runs itself.
    let state_dir = dir.join("state");
    let worker = match &options.worker {
        Some(w) => w.clone(),
        None => std::env::current_exe().map_err(setup("the minion binary"))?,
    };
    let backend = Arc::new(LocalBackend::with_minion_workers(
        &state_dir,
        worker,
        Arc::new(OffsetClock::starting_at(options.now)),
    ));
    for resource in sample_resources(&dir)? {
        backend
            .store()
            .put_resource(&resource, options.now)
            .map_err(setup("the demo's state directory"))?;
    }

    // 3. Run each sample config until it has nothing left to do, through the control loop.
    for name in ["events-import", "events-merge", "events-realtime-dedup"] {
        let config = configs
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| DemoError::Setup(format!("sample config {name} missing")))?;
        println!("▶ {} ({})", config.name, config.task_type());
        let dest_def = table(&config.table)?;
        let mut iteration = 0u32;
        loop {
            iteration += 1;
            let run_name = format!("{}-{iteration:04}", config.name);
            let t = Instant::now();
            let run = drive_run(&backend, options, &config.namespace, name, &run_name).await?;
            let status = run.status.unwrap_or_default();
            if status.phase == TaskRunPhase::Skipped {
                println!(
                    "  caught up: {} — {}",
                    status.reason.unwrap_or_default(),
                    status.message.unwrap_or_default()
                );
                break;
            }
            if status.phase != TaskRunPhase::Succeeded {
                return Err(DemoError::Run {
                    run: run_name,
                    message: format!(
                        "{}: {} — {}",
                        status.phase.as_str(),
                        status.reason.unwrap_or_default(),
                        status.message.unwrap_or_default()
                    ),
                });
            }
            report.runs += 1;
            let mut subtasks = status.subtasks.clone();
            if status.subtasks_total as usize > subtasks.len() {
                let run_dir = format!(
                    "{}/{}",
                    config.namespace,
                    crate::control::protocol::run_key(&run_name, run.metadata.uid.as_deref())
                );
                if let Some(all) = gather::read_subtasks(&dest_def.uri, &run_dir)
                    .await
                    .map_err(setup(&run_name))?
                {
                    subtasks = all;
                }
            }
            let rows_in: u64 = subtasks.iter().map(|s| s.input_rows).sum();
            let rows_out: u64 = subtasks.iter().map(|s| s.output_rows).sum();
            let catalog = Catalog::open(&dest_def.uri, HashMap::new())
                .await
                .map_err(setup(&dest_def.name))?;
            let wms = gather::watermarks_from_log(&catalog, config)
                .await
                .map_err(setup(&config.name))?;
            println!(
                "  {run_name}: {} subtasks, {rows_in} rows in → {rows_out} rows out, {:.1}s, watermark {}",
                status.subtasks_total,
                t.elapsed().as_secs_f64(),
                fmt_watermarks(&wms),
            );
            watermarks.insert(config.name.clone(), wms);
        }
        if name == "events-import" {
            let wm = watermarks
                .get(name)
                .and_then(|w| w.get(DEFAULT_WATERMARK).copied());
            if let Some(wm) = wm {
                let range = TimeWindow::new(start_ms, wm);
                report.imported_range = Some(range);
                report.source_in_imported_range = table_totals(realtime, Some(range)).await?;
                report.offline_after_import = table_totals(offline, None).await?;
                print_totals(
                    "events-realtime (imported range)",
                    &report.source_in_imported_range,
                );
                print_totals("events-offline", &report.offline_after_import);
                check_same(
                    "SegmentImport",
                    &report.source_in_imported_range,
                    &report.offline_after_import,
                    true,
                )?;
            }
        }
    }
    report.realtime_after_dedup = table_totals(realtime, None).await?;
    print_totals("events-realtime after dedup", &report.realtime_after_dedup);
    let removed = report.realtime_before.rows - report.realtime_after_dedup.rows;
    if removed == 0 || removed > duplicates {
        return Err(DemoError::Check(format!(
            "dedup removed {removed} rows; the writer repeated {duplicates}"
        )));
    }
    println!(
        "  ✔ dedup: {removed} repeated rows removed ({} still in buckets younger than the buffer or the partitions' latest segments)",
        duplicates - removed
    );
    report.offline_after_merge = table_totals(offline, None).await?;
    print_totals(
        "events-offline after merge/rollup",
        &report.offline_after_merge,
    );
    check_same(
        "MergeRollup",
        &report.offline_after_import,
        &report.offline_after_merge,
        false,
    )?;
    println!(
        "✔ done in {:.1}s: {} runs; sums match on every step.\n\nQuery the result with DuckDB:\n  python3 -m pip install duckdb && python3 -c \"import duckdb; print(duckdb.sql(\\\"INSTALL delta; LOAD delta; SELECT count(*), sum(clicks) FROM delta_scan('{}')\\\"))\"",
        started.elapsed().as_secs_f64(),
        report.runs,
        offline.uri.trim_start_matches("file://"),
    );
    Ok(report)
}

/// The demo's samples as resources for its state directory: table URIs under `dir`, configs
/// suspended (the demo creates their runs).
fn sample_resources(dir: &Path) -> Result<Vec<Resource>, DemoError> {
    let mut out = Vec::new();
    for (file, text) in SAMPLES {
        for resource in api::parse_manifests(text).map_err(setup(file))? {
            out.push(match resource {
                Resource::Table(mut t) => {
                    let name = t.metadata.name.clone().unwrap_or_default();
                    t.spec.uri = format!("file://{}/{name}", dir.display());
                    Resource::Table(t)
                }
                Resource::MinionTaskConfig(mut c) => {
                    c.spec.suspend = true;
                    Resource::MinionTaskConfig(c)
                }
                other => other,
            });
        }
    }
    Ok(out)
}

/// Creates the TaskRun `run_name` of `config` and drives it through the control loop until it
/// ends.
async fn drive_run(
    backend: &Arc<LocalBackend>,
    options: &DemoOptions,
    namespace: &str,
    config: &str,
    run_name: &str,
) -> Result<crate::api::TaskRun, DemoError> {
    let cfg = backend
        .get_task_config(namespace, config)
        .await
        .map_err(setup(config))?
        .ok_or_else(|| DemoError::Setup(format!("sample config {config} missing")))?;
    let run = configs::new_task_run(&cfg, run_name, None);
    backend
        .create_task_run(&run)
        .await
        .map_err(setup(run_name))?;
    let mut controller = Controller::new(
        backend.clone(),
        Arc::new(OffsetClock::starting_at(options.now)),
        ControllerOptions {
            poll_interval: std::time::Duration::from_millis(10),
            only_run: Some((namespace.to_string(), run_name.to_string())),
            ..ControllerOptions::default()
        },
    );
    controller
        .drive(namespace, run_name)
        .await
        .map_err(|e| DemoError::Run {
            run: run_name.to_string(),
            message: e.to_string(),
        })
}

/// Writes the REALTIME table's segments: one per partition every `segment_period_ms`, over
/// the `days` before `now` (see [`DemoOptions::span`]). Returns where the data starts, in
/// epoch milliseconds.
pub async fn write_realtime(
    def: &TableDef,
    catalog: &mut Catalog,
    options: &DemoOptions,
) -> Result<i64, DemoError> {
    write_realtime_with_duplicates(def, catalog, options, 0).await?;
    Ok(options.span().0)
}

/// Like [`write_realtime`], with about `per_mille` rows in a thousand written twice; returns
/// how many rows are such repeats.
async fn write_realtime_with_duplicates(
    def: &TableDef,
    catalog: &mut Catalog,
    options: &DemoOptions,
    per_mille: u64,
) -> Result<u64, DemoError> {
    let (start_ms, per_partition) = options.span();
    let mut duplicates = 0;
    // Drawn on stderr, and only when it is a terminal.
    let bar = indicatif::ProgressBar::new((per_partition * options.partitions as usize) as u64)
        .with_style(
            indicatif::ProgressStyle::with_template(
                "  {bar:40} {pos}/{len} segments written, eta {eta}",
            )
            .expect("valid template"),
        );
    let location = crate::storage::resolve(&def.uri).map_err(setup(&def.name))?;
    let mut rng = events::Rng::new(42);
    let mut batch_of_segments = Vec::new();
    for i in 0..per_partition {
        let from = start_ms + i as i64 * options.segment_period_ms;
        for p in 0..options.partitions {
            let (batch, repeats) = events::event_batch_with_duplicates(
                &mut rng,
                options.rows_per_segment,
                from,
                from + options.segment_period_ms,
                per_mille,
            );
            duplicates += repeats;
            bar.inc(1);
            let path = format!("stream/p{p}/events_{from}_{p}.parquet");
            let segment =
                events::write_segment(&location, &path, &batch, &def.schema.time_column, Some(p))
                    .await
                    .map_err(setup(&path))?;
            batch_of_segments.push(segment);
        }
        // One commit per simulated day of flushes, as a stream writer commits regularly.
        if batch_of_segments.len() >= 48 * options.partitions as usize || i + 1 == per_partition {
            catalog
                .append(&batch_of_segments, &[])
                .await
                .map_err(setup(&def.name))?;
            batch_of_segments.clear();
        }
    }
    bar.finish_and_clear();
    catalog.checkpoint().await.map_err(setup(&def.name))?;
    Ok(duplicates)
}

/// Totals of a table's latest version (optionally of the rows in `window`).
async fn table_totals(def: &TableDef, window: Option<TimeWindow>) -> Result<Totals, DemoError> {
    let catalog = Catalog::open(&def.uri, HashMap::new())
        .await
        .map_err(setup(&def.name))?;
    let segments = catalog.segments().map_err(setup(&def.name))?;
    inspect::totals(&def.uri, &def.schema, &segments, window)
        .await
        .map_err(setup(&def.name))
}

fn print_totals(label: &str, t: &Totals) {
    let sums: Vec<String> = t
        .sums
        .iter()
        .map(|(k, v)| format!("sum({k})={v:.2}"))
        .collect();
    println!(
        "  {label:<36} {:>6} segments {:>10} rows {:>8.1} MiB  {}",
        t.segments,
        t.rows,
        t.bytes as f64 / (1024.0 * 1024.0),
        sums.join(" ")
    );
}

fn fmt_watermarks(w: &BTreeMap<String, i64>) -> String {
    let fmt = |ms: i64| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .map_or(ms.to_string(), |t| t.format("%Y-%m-%dT%H:%MZ").to_string())
    };
    w.iter()
        .map(|(level, ms)| {
            if level.is_empty() {
                fmt(*ms)
            } else {
                format!("{level}={}", fmt(*ms))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `after` against `before`: rows equal when `same_rows`, and every additive metric
/// sum equal (max-aggregated metrics are skipped: a rollup changes them by design).
fn check_same(
    step: &str,
    before: &Totals,
    after: &Totals,
    same_rows: bool,
) -> Result<(), DemoError> {
    if same_rows && before.rows != after.rows {
        return Err(DemoError::Check(format!(
            "{step}: count(*) {} before, {} after",
            before.rows, after.rows
        )));
    }
    for metric in ["clicks", "revenue"] {
        let (b, a) = (
            before.sums.get(metric).copied().unwrap_or_default(),
            after.sums.get(metric).copied().unwrap_or_default(),
        );
        if !sums_match(b, a) {
            return Err(DemoError::Check(format!(
                "{step}: sum({metric}) {b} before, {a} after"
            )));
        }
    }
    println!(
        "  ✔ {step}: {}sum(clicks) and sum(revenue) identical",
        if same_rows { "count(*), " } else { "" }
    );
    Ok(())
}
