//! `minion-worker run --spec <URI>`: runs one subtask and exits 0 on success. On failure it
//! prints one line naming the cause on stderr and exits with `EXIT_BAD_INPUT` (permanent:
//! bad input, retrying cannot help) or `EXIT_TRANSIENT`. SIGTERM/SIGINT stop the run and
//! remove its spill files before exiting.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use minion_worker::{RunOptions, WorkerError, read_spec, run_subtask_report, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "minion-worker", version, about = "Runs one minion subtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the subtask described by a spec.
    Run {
        /// URI of the subtask spec (file://, s3://, gs://, az:// or a path).
        #[arg(long)]
        spec: String,
        /// Memory budget, e.g. 512MiB, 2GiB, 300MB (overrides the spec).
        #[arg(long, value_parser = parse_size)]
        memory_budget: Option<u64>,
        /// Directory for spill files (default: the system temp directory).
        #[arg(long, env = "MINION_SPILL_DIR")]
        spill_dir: Option<PathBuf>,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
}

/// Parses `512MiB`, `2GiB`, `300MB`, `1024` (bytes).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" | "ki" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" | "mi" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" | "gi" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

fn main() -> ExitCode {
    minion_worker::keep_freed_memory();
    let cli = Cli::parse();
    let Command::Run {
        spec,
        memory_budget,
        spill_dir,
        log_json,
    } = cli.command;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // No colour codes unless a person watches a terminal (`kubectl logs` is not one).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    if log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&WorkerError::internal(e)),
    };
    let result = runtime.block_on(async {
        let spec = read_spec(&spec).await?;
        let options = RunOptions {
            memory_budget_bytes: memory_budget,
            spill_dir,
            ..RunOptions::default()
        };
        let run = run_subtask_report(&spec, &options);
        tokio::select! {
            r = run => r,
            _ = shutdown_signal() => Err(WorkerError::internal("interrupted by a signal")),
        }
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &WorkerError) -> ExitCode {
    eprintln!("minion-worker: {} ({})", e, e.reason().as_str());
    ExitCode::from(e.exit_code() as u8)
}
