//! `minion`: the user CLI (also built as the kubectl plugin `kubectl-minion`). The commands
//! live in `minion_operator::cli`; `minion worker run` in this crate.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    minion_cli::run_process().await
}
