//! `kubectl-minion`: the `minion` CLI under the name kubectl looks for, so that with this
//! binary on the PATH `kubectl minion get taskruns` works (on the cluster of the kubeconfig).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    minion_cli::run_process().await
}
