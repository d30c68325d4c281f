//! `minion`: the user CLI (also installable as the kubectl plugin `kubectl-minion`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "minion",
    version,
    about = "Run minion tasks locally and inspect them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a REALTIME table of synthetic events, move it to an OFFLINE table and merge/roll
    /// it up with the samples of config/, all on this machine; then check count(*) and sum().
    Demo {
        /// Directory for the demo's tables (recreated).
        #[arg(long, default_value = ".minion/demo")]
        dir: PathBuf,
        /// Days of events.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Rows per REALTIME segment.
        #[arg(long, default_value_t = 2_000)]
        rows_per_segment: usize,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            dir,
            days,
            rows_per_segment,
        } => {
            let options = minion_operator::demo::DemoOptions {
                dir,
                days,
                rows_per_segment,
                ..Default::default()
            };
            match minion_operator::demo::run(&options).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
