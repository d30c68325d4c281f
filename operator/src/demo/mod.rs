//! `minion demo`: the first-run demo on the embedded default — a local directory, the worker
//! in this process, no cluster.
//!
//! It builds a REALTIME table of synthetic click events in many small segments, applies the
//! samples `config/mtc-segment-import.yaml` (parallel move into an OFFLINE table) and
//! `config/mtc-merge-rollup.yaml` (hourly merge, daily rollup), runs each until it has
//! nothing left to do, and proves with `count(*)`/`sum()` that no row was lost or
//! duplicated.
//!
//! What it may touch: the demo directory only.

pub mod events;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use minion_contract::TimeWindow;

use crate::api::{self, Resource};
use crate::catalog::{Catalog, install_crypto_provider};
use crate::generator::{self, DEFAULT_WATERMARK, GeneratorInput, TableView};
use crate::inspect::{self, Totals, sums_match};
use crate::lineage::Lineage;
use crate::model::{DAY_MS, HOUR_MS, TableDef, TaskConfig};
use crate::runner::{InProcessExecutor, RunContext, RunState, execute_run};
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
    if options.dir.exists() {
        std::fs::remove_dir_all(&options.dir).map_err(setup("removing the old demo directory"))?;
    }
    std::fs::create_dir_all(&options.dir).map_err(setup("creating the demo directory"))?;
    let dir = std::fs::canonicalize(&options.dir).map_err(setup("demo directory"))?;
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
    let now_ms = options.now.timestamp_millis();
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
        realtime_before: table_totals(&catalogs[&realtime.name], realtime, None).await?,
        ..DemoReport::default()
    };
    print_totals("events-realtime", &report.realtime_before);
    println!("  ({duplicates} of those rows were written twice by the at-least-once writer)");

    // 2. Run each sample config until it has nothing left to do.
    let mut lineage: HashMap<String, Lineage> = HashMap::new();
    let mut watermarks: HashMap<String, (BTreeMap<String, i64>, Vec<TimeWindow>)> = HashMap::new();
    for name in ["events-import", "events-merge", "events-realtime-dedup"] {
        let config = configs
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| DemoError::Setup(format!("sample config {name} missing")))?;
        println!("▶ {} ({})", config.name, config.task_type());
        let mut iteration = 0u32;
        loop {
            iteration += 1;
            let source_def = config.source_table.as_deref().map(table).transpose()?;
            let dest_def = table(&config.table)?;
            let view = |def: &TableDef| -> Result<TableView, DemoError> {
                Ok(TableView {
                    def: def.clone(),
                    segments: catalogs[&def.name].segments().map_err(setup(&def.name))?,
                    lineage: lineage.get(&def.name).cloned().unwrap_or_default(),
                })
            };
            let (stored, committed_windows) =
                watermarks.get(&config.name).cloned().unwrap_or_default();
            let input = GeneratorInput {
                config: config.clone(),
                source: source_def.map(&view).transpose()?,
                destination: view(dest_def)?,
                watermarks: stored.clone(),
                committed_windows: committed_windows.clone(),
                incomplete_runs: vec![],
                files: vec![],
                invalid_rows: HashMap::new(),
                now_ms,
            };
            let plan = generator::plan(&input).map_err(setup(&config.name))?;
            if let Some(skip) = &plan.skip {
                println!("  caught up: {} — {}", skip.reason.as_str(), skip.message);
                break;
            }
            let run_name = format!("{}-{iteration:04}", config.name);
            let mut state = RunState {
                lineage: lineage.remove(&dest_def.name).unwrap_or_default(),
                watermarks: stored,
                committed_windows,
            };
            let ctx = RunContext {
                namespace: &config.namespace,
                task_run: &run_name,
                config,
                source: source_def,
                destination: dest_def,
            };
            let t = Instant::now();
            let spinner = indicatif::ProgressBar::new_spinner().with_message(format!(
                "{run_name}: {} subtasks, about {} rows…",
                plan.subtasks.len(),
                plan.estimated_rows()
            ));
            spinner.enable_steady_tick(std::time::Duration::from_millis(120));
            let outcome = execute_run(
                &ctx,
                &plan,
                catalogs.get_mut(&dest_def.name).expect("created"),
                &mut state,
                &InProcessExecutor::default(),
                || Utc::now().timestamp_millis(),
            )
            .await
            .map_err(|e| DemoError::Run {
                run: run_name.clone(),
                message: e.to_string(),
            })?;
            spinner.finish_and_clear();
            lineage.insert(dest_def.name.clone(), state.lineage);
            watermarks.insert(
                config.name.clone(),
                (state.watermarks.clone(), state.committed_windows),
            );
            report.runs += 1;
            let (rows_in, rows_out) = outcome.rows();
            println!(
                "  {run_name}: {} subtasks, {rows_in} rows in → {rows_out} rows out, {:.1}s, watermark {}",
                plan.subtasks.len(),
                t.elapsed().as_secs_f64(),
                fmt_watermarks(&state.watermarks),
            );
            if let Some(message) = outcome.failure_message() {
                return Err(DemoError::Run {
                    run: run_name,
                    message,
                });
            }
        }
        if name == "events-import" {
            let wm = watermarks
                .get(name)
                .and_then(|(w, _)| w.get(DEFAULT_WATERMARK).copied());
            if let Some(wm) = wm {
                let range = TimeWindow::new(start_ms, wm);
                report.imported_range = Some(range);
                report.source_in_imported_range =
                    table_totals(&catalogs[&realtime.name], realtime, Some(range)).await?;
                report.offline_after_import =
                    table_totals(&catalogs[&offline.name], offline, None).await?;
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
    report.realtime_after_dedup = table_totals(&catalogs[&realtime.name], realtime, None).await?;
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
    report.offline_after_merge = table_totals(&catalogs[&offline.name], offline, None).await?;
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

async fn table_totals(
    catalog: &Catalog,
    def: &TableDef,
    window: Option<TimeWindow>,
) -> Result<Totals, DemoError> {
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
