//! `minion run`, `minion plan` and `minion segments`: commands that read (and for `run`,
//! create) resources and read catalogs, without running the control loop.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use super::table_fmt::{render, time_ms};
use super::{CliError, Output};
use crate::api::{MinionTaskConfig, TaskRun};
use crate::clock::SystemClock;
use crate::control::gather::{self, Catalogs};
use crate::control::{Backend, Created, configs};
use crate::local::LocalBackend;
use crate::schedule::manual_task_run_name;

fn backend(state: &Path) -> LocalBackend {
    // These commands start no job: the worker program is never used.
    LocalBackend::new(state, "minion".into(), Vec::new(), Arc::new(SystemClock))
}

fn control(e: crate::control::ControlError) -> CliError {
    match e {
        crate::control::ControlError::Invalid { .. } => CliError::Invalid(vec![e.to_string()]),
        other => CliError::failed(other),
    }
}

async fn config(
    b: &LocalBackend,
    namespace: &str,
    name: &str,
) -> Result<MinionTaskConfig, CliError> {
    b.get_task_config(namespace, name)
        .await
        .map_err(CliError::failed)?
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "MinionTaskConfig {name:?} not found in namespace {namespace}; `minion get mtc` lists them"
            ))
        })
}

/// `minion run <config>`: a manual TaskRun, started by the next `local up` tick.
pub(crate) async fn run(state: &Path, namespace: &str, name: &str) -> Result<(), CliError> {
    let b = backend(state);
    let cfg = config(&b, namespace, name).await?;
    gather::resolve_config(&b, &cfg).await.map_err(control)?;
    // Names have one-second resolution: a second `run` within the same second waits for the
    // next one rather than being taken for the first.
    for _ in 0..3 {
        let run_name = manual_task_run_name(name, Utc::now());
        let run: TaskRun = configs::new_task_run(&cfg, &run_name, None);
        if b.create_task_run(&run).await.map_err(CliError::failed)? == Created::Created {
            println!("taskrun.minion.dev/{run_name} created");
            return Ok(());
        }
        let ms = 1_000 - Utc::now().timestamp_subsec_millis().min(999);
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(ms))).await;
    }
    Err(CliError::Failed(format!(
        "could not create a TaskRun of {name}: the names of the last seconds are taken"
    )))
}

/// `minion plan <config>`: the plan a run would make now (dry run).
pub(crate) async fn plan(
    state: &Path,
    namespace: &str,
    name: &str,
    output: Option<Output>,
) -> Result<(), CliError> {
    crate::catalog::install_crypto_provider();
    let b = backend(state);
    let cfg = config(&b, namespace, name).await?;
    let resolved = gather::resolve_config(&b, &cfg).await.map_err(control)?;
    let runs = b.list_task_runs().await.map_err(CliError::failed)?;
    let incomplete = gather::incomplete_runs(&runs, &resolved.config, None, Utc::now());
    let mut catalogs = Catalogs::default();
    let gathered = gather::generator_input(
        &mut catalogs,
        &resolved,
        incomplete,
        Utc::now().timestamp_millis(),
        false,
    )
    .await
    .map_err(control)?;
    let input = match gathered {
        gather::Gathered::Input(input) => input,
        gather::Gathered::NeedsValidity { segments } => {
            println!(
                "A run would first compute upsert validity across {} segment(s) in a worker \
                 subtask of kind validity, then plan from the validity files it writes.",
                segments.len()
            );
            return Ok(());
        }
    };
    let plan = crate::generator::plan(&input).map_err(CliError::failed)?;
    match output {
        None => print!("{}", plan.render()),
        Some(Output::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&plan).map_err(CliError::failed)?
        ),
        Some(Output::Yaml) => print!(
            "{}",
            serde_yaml::to_string(&plan).map_err(CliError::failed)?
        ),
    }
    Ok(())
}

/// `minion segments <table>`: committed segments, lineage entries, watermarks of its configs.
pub(crate) async fn segments(state: &Path, namespace: &str, name: &str) -> Result<(), CliError> {
    crate::catalog::install_crypto_provider();
    let b = backend(state);
    let table = gather::table(&b, namespace, name)
        .await
        .map_err(|e| match e {
            crate::control::ControlError::Invalid {
                reason: "NotFound", ..
            } => CliError::NotFound(e.to_string()),
            other => control(other),
        })?;
    let mut catalogs = Catalogs::default();
    let catalog = catalogs.get(&table.def).await.map_err(control)?;
    let mut segments = catalog.segments().map_err(CliError::failed)?;
    segments.sort_by(|a, b| (a.min_time_ms, &a.path).cmp(&(b.min_time_ms, &b.path)));
    println!(
        "Table {namespace}/{name} ({}), Delta version {}, {} segment(s), {} rows, {} bytes",
        table.def.uri,
        catalog.version(),
        segments.len(),
        segments.iter().map(|s| s.rows).sum::<u64>(),
        segments.iter().map(|s| s.bytes).sum::<u64>(),
    );
    let rows: Vec<Vec<String>> = segments
        .iter()
        .map(|s| {
            let tags: Vec<String> = s
                .tags
                .iter()
                .filter(|(k, _)| !k.ends_with("TimeMs"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            vec![
                s.path.clone(),
                s.rows.to_string(),
                s.bytes.to_string(),
                time_ms(s.min_time_ms),
                time_ms(s.max_time_ms),
                tags.join(","),
            ]
        })
        .collect();
    if !rows.is_empty() {
        print!(
            "{}",
            render(
                &["SEGMENT", "ROWS", "BYTES", "MIN TIME", "MAX TIME", "TAGS"],
                &rows
            )
        );
    }
    let lineage: Vec<Vec<String>> = table
        .status
        .lineage
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.state.as_str().into(),
                e.segments_from_len().to_string(),
                e.segments_to_len().to_string(),
                time_ms(Some(e.timestamp_ms)),
            ]
        })
        .collect();
    println!("\nLineage:");
    if lineage.is_empty() {
        println!("  <none>");
    } else {
        print!(
            "{}",
            render(&["ID", "STATE", "FROM", "TO", "TIME"], &lineage)
        );
    }
    println!("\nWatermarks:");
    let mut any = false;
    for cfg in b.list_task_configs().await.map_err(CliError::failed)? {
        if crate::control::namespace_of(&cfg.metadata) != namespace || cfg.spec.table != name {
            continue;
        }
        let Ok(resolved) = gather::resolve_config(&b, &cfg).await else {
            continue;
        };
        let catalog = catalogs.get(&table.def).await.map_err(control)?;
        for (level, ms) in gather::watermarks_from_log(catalog, &resolved.config)
            .await
            .map_err(control)?
        {
            any = true;
            let level = if level.is_empty() {
                String::new()
            } else {
                format!(" [{level}]")
            };
            println!("  {}{level}: {}", resolved.config.name, time_ms(Some(ms)));
        }
    }
    if !any {
        println!("  <none>");
    }
    Ok(())
}
