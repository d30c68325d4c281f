//! The `minion` binary (and `kubectl-minion`): the commands of `minion_operator::cli`, plus
//! `minion worker run --spec URI [--exit-file F]`, which runs one subtask in this process as
//! the `minion-worker` binary does, so local mode needs no other binary. It lives here, not in
//! the operator crate, so the operator links no processing engine. Exit codes are the
//! worker's (`EXIT_BAD_INPUT`, `EXIT_TRANSIENT`); with `--exit-file` the code and a one-line
//! message are also written there before exiting (the local backend reads them).

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use minion_operator::cli::WorkerRun;
use minion_operator::local::{ExitRecord, write_exit_record};
use minion_worker::{RunOptions, WorkerError, read_spec, run_subtask_report, shutdown_signal};

/// The process entry point of `minion` and `kubectl-minion`.
pub async fn run_process() -> ExitCode {
    minion_operator::cli::run_process(worker).await
}

/// `minion worker run`, as [`minion_operator::cli::WorkerMain`].
fn worker(args: WorkerRun) -> Pin<Box<dyn Future<Output = ExitCode>>> {
    Box::pin(run(args))
}

async fn run(args: WorkerRun) -> ExitCode {
    let WorkerRun {
        spec: spec_uri,
        exit_file,
        memory_budget,
        spill_dir,
    } = args;
    minion_worker::keep_freed_memory();
    minion_operator::catalog::install_crypto_provider();
    let result = async {
        let spec = read_spec(&spec_uri).await?;
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
    if let Some(path) = exit_file.as_deref()
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
