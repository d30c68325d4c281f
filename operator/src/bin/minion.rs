//! `minion`: the user CLI (also installable as the kubectl plugin `kubectl-minion`). The
//! commands live in `minion_operator::cli`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    minion_operator::cli::main(minion_operator::cli::Cli::parse()).await
}
