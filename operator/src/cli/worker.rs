//! `minion worker run --spec URI [--exit-file F]`: runs one subtask in this process, as the
//! `minion-worker` binary does, so local mode needs no other binary. Exit codes are the
//! worker's (`EXIT_BAD_INPUT`, `EXIT_TRANSIENT`); with `--exit-file` the code and a one-line
//! message are also written there before exiting (the local backend reads them).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use minion_worker::{RunOptions, WorkerError, read_spec, run_subtask_report, shutdown_signal};

use crate::local::{ExitRecord, write_exit_record};

/// `minion worker run`.
pub(crate) async fn run(
    spec_uri: &str,
    exit_file: Option<&Path>,
    memory_budget: Option<u64>,
    spill_dir: Option<PathBuf>,
) -> ExitCode {
    crate::catalog::install_crypto_provider();
    let result = async {
        let spec = read_spec(spec_uri).await?;
        let options = RunOptions {
            memory_budget_bytes: memory_budget,
            spill_dir,
            ..RunOptions::default()
        };
        tokio::select! {
            r = run_subtask_report(&spec, &options) => r,
            _ = shutdown_signal() => Err(WorkerError::internal("interrupted by a signal")),
        }
    }
    .await;
    let (code, message) = match &result {
        Ok(report) => (
            0,
            format!(
                "{} rows in, {} rows out, {} segment(s)",
                report.manifest.input_rows,
                report.manifest.output_rows,
                report.manifest.outputs.len()
            ),
        ),
        Err(e) => (e.exit_code(), format!("{e} ({})", e.reason().as_str())),
    };
    if code == 0 {
        println!("minion worker: {message}");
    } else {
        eprintln!("minion worker: {message}");
    }
    if let Some(path) = exit_file
        && let Err(e) = write_exit_record(
            path,
            &ExitRecord {
                code: Some(code),
                message,
            },
        )
    {
        eprintln!("minion worker: could not write the exit file: {e}");
    }
    ExitCode::from(code as u8)
}
