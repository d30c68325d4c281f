//! `minion`: the user CLI (also built as the kubectl plugin `kubectl-minion`). The commands
//! live in `minion_operator::cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    minion_operator::cli::run_process().await
}
