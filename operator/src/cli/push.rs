//! `minion push <table> <files…>`: adds Parquet/CSV/JSON files to a table as segments, in
//! this process. The files go through a FileIngestion plan (append mode) and the worker
//! library, so they are coerced to the table's schema, split and sorted like any ingested
//! file, and committed with the protocol of [`crate::runner`] (lineage, one Delta commit).
//!
//! # Guarantees
//! - All or nothing per push: one subtask per packed batch, committed together.
//! - A file already in the table at the same version (ETag or size and modification time) is
//!   not added again, so repeating a push adds nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use minion_contract::FileFormat;
use object_store::ObjectStoreExt;

use super::CliError;
use crate::api::TaskRun;
use crate::control::gather::{self, Catalogs};
use crate::control::{Backend, SystemClock, tables};
use crate::generator::{self, GeneratorInput, ListedFile, TableView};
use crate::lineage::Lineage;
use crate::local::LocalBackend;
use crate::runner::{InProcessExecutor, RunContext, RunState, execute_run};

fn format_of(uri: &str) -> Option<FileFormat> {
    let lower = uri.to_ascii_lowercase();
    let ext = lower.rsplit('.').next()?;
    match ext {
        "parquet" | "pq" => Some(FileFormat::Parquet),
        "csv" => Some(FileFormat::Csv),
        "json" | "jsonl" | "ndjson" => Some(FileFormat::Json),
        _ => None,
    }
}

/// A local path or URI as an absolute URI.
fn to_uri(file: &str) -> Result<String, CliError> {
    if file.contains("://") {
        return Ok(file.to_string());
    }
    let path =
        std::fs::canonicalize(file).map_err(|e| CliError::Invalid(vec![format!("{file}: {e}")]))?;
    Ok(format!("file://{}", path.display()))
}

async fn listed(uri: &str) -> Result<ListedFile, CliError> {
    let (loc, path) = minion_worker::store::resolve_file(uri)
        .map_err(|e| CliError::Invalid(vec![format!("{uri}: {e}")]))?;
    let meta = loc
        .store
        .head(&path)
        .await
        .map_err(|e| CliError::Invalid(vec![format!("{uri}: {e}")]))?;
    Ok(ListedFile {
        uri: uri.to_string(),
        bytes: meta.size,
        version: meta
            .e_tag
            .unwrap_or_else(|| format!("{}@{}", meta.size, meta.last_modified.timestamp_millis())),
    })
}

/// `minion push`.
pub(crate) async fn push(
    state: &Path,
    namespace: &str,
    table: &str,
    files: &[String],
) -> Result<(), CliError> {
    crate::catalog::install_crypto_provider();
    let backend = LocalBackend::new(state, "minion".into(), Vec::new(), Arc::new(SystemClock));
    let resolved = gather::table(&backend, namespace, table)
        .await
        .map_err(|e| CliError::Invalid(vec![e.to_string()]))?;
    let mut formats = HashMap::new();
    let mut listing = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        let uri = to_uri(f)?;
        match format_of(&uri) {
            Some(format) => {
                formats.insert(uri.clone(), format);
                listing.push(listed(&uri).await?);
            }
            None => problems.push(format!(
                "{f}: unknown format; name files *.parquet, *.csv or *.json (JSON lines)"
            )),
        }
    }
    if !problems.is_empty() {
        return Err(CliError::Invalid(problems));
    }
    let now = Utc::now();
    let run_name = format!("push-{}", now.format("%Y%m%d-%H%M%S-%3f"));
    // The inline TaskRun this push amounts to, validated like any other.
    let manifest = serde_json::json!({
        "apiVersion": "minion.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": run_name, "namespace": namespace},
        "spec": {
            "taskType": "FileIngestionTask",
            "table": table,
            "config": {"fileIngestionTask": {
                "inputDirURI": "file:///",
                "inputFormat": "parquet",
                "mode": "append",
                "consistentPushEnabled": true,
                "tableMaxNumTasks": -1,
            }},
        },
    });
    let run: TaskRun = serde_json::from_value(manifest).map_err(CliError::failed)?;
    let validated = crate::validate::task_run(&run, None)
        .map_err(|e| CliError::Invalid(e.errors.iter().map(|e| e.to_string()).collect()))?;
    validated
        .against_tables(&resolved.def, None)
        .map_err(|e| CliError::Invalid(e.errors.iter().map(|e| e.to_string()).collect()))?;
    let config = validated.config;
    let def = &resolved.def;
    let mut catalogs = Catalogs::default();
    let catalog = catalogs.get(def).await.map_err(CliError::failed)?;
    let input = GeneratorInput {
        config: config.clone(),
        source: None,
        destination: TableView {
            def: def.clone(),
            segments: catalog.segments().map_err(CliError::failed)?,
            lineage: Lineage::new(resolved.status.lineage.clone()),
        },
        watermarks: Default::default(),
        committed_windows: Vec::new(),
        incomplete_runs: Vec::new(),
        files: listing,
        invalid_rows: HashMap::new(),
        now_ms: now.timestamp_millis(),
    };
    let mut plan = generator::plan(&input).map_err(CliError::failed)?;
    if plan.is_empty() {
        println!("nothing to push: every file is in {table} already, at its current version");
        return Ok(());
    }
    for s in &mut plan.subtasks {
        for f in &mut s.input_files {
            f.format = formats[&f.uri];
        }
    }
    let ctx = RunContext {
        namespace,
        task_run: &run_name,
        config: &config,
        source: None,
        destination: def,
    };
    let mut run_state = RunState {
        lineage: Lineage::new(resolved.status.lineage.clone()),
        ..RunState::default()
    };
    let before = catalog.segments().map_err(CliError::failed)?.len();
    let outcome = execute_run(
        &ctx,
        &plan,
        catalog,
        &mut run_state,
        &InProcessExecutor::default(),
        || Utc::now().timestamp_millis(),
    )
    .await
    .map_err(CliError::failed)?;
    // The table's status mirrors the lineage and the catalog, as after a loop's commit.
    let mut status = gather::table(&backend, namespace, table)
        .await
        .map_err(CliError::failed)?
        .status;
    tables::store_lineage(&mut status, &run_state.lineage);
    catalog.refresh().await.map_err(CliError::failed)?;
    tables::summarize(catalog, table, &mut status).map_err(CliError::failed)?;
    backend
        .update_table_status(namespace, table, &status)
        .await
        .map_err(CliError::failed)?;
    if let Some(message) = outcome.failure_message() {
        return Err(CliError::Failed(format!(
            "push into {table} failed, nothing was added: {message}"
        )));
    }
    let after = catalog.segments().map_err(CliError::failed)?.len();
    let (_, rows) = outcome.rows();
    println!(
        "{table}: {} segment(s) and {rows} row(s) added from {} file(s)",
        after.saturating_sub(before),
        plan.subtasks
            .iter()
            .map(|s| s.input_files.len())
            .sum::<usize>()
    );
    Ok(())
}
