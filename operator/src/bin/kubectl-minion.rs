//! `kubectl-minion`: the `minion` CLI under the name kubectl looks for, so that with this
//! binary on the PATH `kubectl minion get taskruns` works.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    minion_operator::cli::run_process().await
}
