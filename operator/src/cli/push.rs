//! `minion push <table> <files…>`: adds Parquet/CSV/JSON files to a table as segments. The push
//! is a TaskRun like any other — an inline FileIngestionTask naming the files (append mode,
//! consistent push) — created in the state directory and driven through the control loop,
//! with workers as child processes, so the files are coerced to the table's schema, split and
//! sorted like any ingested file, and committed by the one commit protocol.
//!
//! # Guarantees
//! - All or nothing per push: its subtasks are committed together.
//! - It holds the state directory's lock, like `minion local up`: refused while another loop
//!   runs there.
//! - A file already in the table at the same version (ETag or size and modification time) is
//!   not added again, so repeating a push adds nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::CliError;
use crate::api::{TaskRun, TaskRunPhase};
use crate::clock::SystemClock;
use crate::control::{Backend, Controller, ControllerOptions, Created, gather};
use crate::generator::file_ingestion::format_of;
use crate::local::{LocalBackend, StateLock};

/// A local path or URI as an absolute URI.
fn to_uri(file: &str) -> Result<String, CliError> {
    if file.contains("://") {
        return Ok(file.to_string());
    }
    let path =
        std::fs::canonicalize(file).map_err(|e| CliError::Invalid(vec![format!("{file}: {e}")]))?;
    Ok(format!("file://{}", path.display()))
}

/// `minion push`.
pub(crate) async fn push(
    state: &Path,
    namespace: &str,
    table: &str,
    files: &[String],
) -> Result<(), CliError> {
    crate::catalog::install_crypto_provider();
    let state = std::path::absolute(state).map_err(CliError::failed)?;
    // The push runs the control loop: one loop per state directory.
    let _lock = StateLock::acquire(&state).map_err(CliError::failed)?;
    let program = std::env::current_exe().map_err(CliError::failed)?;
    let backend = Arc::new(LocalBackend::with_minion_workers(
        &state,
        program,
        Arc::new(SystemClock),
    ));
    let mut uris = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        let uri = to_uri(f)?;
        if format_of(&uri).is_none() {
            problems.push(format!(
                "{f}: unknown format; name files *.parquet, *.csv or *.json (JSON lines)"
            ));
        }
        uris.push(uri);
    }
    if !problems.is_empty() {
        return Err(CliError::Invalid(problems));
    }
    // The inline TaskRun this push amounts to, validated like any other.
    let now = Utc::now();
    let run_name = format!("push-{}", now.format("%Y%m%d-%H%M%S-%3f"));
    let manifest = serde_json::json!({
        "apiVersion": "minion.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": run_name, "namespace": namespace},
        "spec": {
            "taskType": "FileIngestionTask",
            "table": table,
            "config": {"fileIngestionTask": {
                "inputFiles": uris,
                "mode": "append",
                "consistentPushEnabled": true,
                "tableMaxNumTasks": -1,
            }},
        },
    });
    let run: TaskRun = serde_json::from_value(manifest).map_err(CliError::failed)?;
    let resolved = gather::table(backend.as_ref(), namespace, table)
        .await
        .map_err(|e| CliError::Invalid(vec![e.to_string()]))?;
    let validated = crate::validate::task_run(&run, None)
        .map_err(|e| CliError::Invalid(e.errors.iter().map(|e| e.to_string()).collect()))?;
    validated
        .against_tables(&resolved.def, None)
        .map_err(|e| CliError::Invalid(e.errors.iter().map(|e| e.to_string()).collect()))?;
    if backend
        .create_task_run(&run)
        .await
        .map_err(CliError::failed)?
        != Created::Created
    {
        return Err(CliError::Failed(format!(
            "TaskRun {run_name} exists already; push again"
        )));
    }
    let mut controller = Controller::new(
        backend.clone(),
        Arc::new(SystemClock),
        ControllerOptions {
            poll_interval: Duration::from_millis(20),
            only_run: Some((namespace.to_string(), run_name.clone())),
            ..ControllerOptions::default()
        },
    );
    let done = controller
        .drive(namespace, &run_name)
        .await
        .map_err(CliError::failed)?;
    let status = done.status.unwrap_or_default();
    match status.phase {
        TaskRunPhase::Succeeded => {
            let rows: u64 = status.subtasks.iter().map(|s| s.output_rows).sum();
            let segments: u64 = status.subtasks.iter().map(|s| s.outputs).sum();
            println!(
                "{table}: {segments} segment(s) and {rows} row(s) added from {} file(s) (taskrun.minion.dev/{run_name})",
                uris.len()
            );
            Ok(())
        }
        TaskRunPhase::Skipped => {
            println!("nothing to push: every file is in {table} already, at its current version");
            Ok(())
        }
        TaskRunPhase::Pending => Err(CliError::Failed(format!(
            "push into {table} is waiting, nothing was added yet: {} {}; `minion local up` runs taskrun.minion.dev/{run_name} once the Table is Ready, or fails it after its deadline",
            status.reason.unwrap_or_default(),
            status.message.unwrap_or_default()
        ))),
        phase => Err(CliError::Failed(format!(
            "push into {table} failed, nothing was added: {} {}: {} (minion describe tr {run_name})",
            phase.as_str(),
            status.reason.unwrap_or_default(),
            status.message.unwrap_or_default()
        ))),
    }
}
