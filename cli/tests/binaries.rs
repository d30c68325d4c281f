//! The `minion` and `kubectl-minion` binaries start and run their commands. (Being an
//! integration test of this crate also makes `cargo test --workspace` and `cargo nextest run
//! --workspace` build both binaries, which the end-to-end tests of `tests/` run.)

use std::process::Command;

#[test]
fn minion_runs_the_cli_and_its_worker_subcommand() {
    let out = Command::new(env!("CARGO_BIN_EXE_minion"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["get", "describe", "run", "plan", "cancel", "retry", "logs"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    // `minion worker run` is this crate's: a spec that does not exist is bad input, not a
    // crash, and says which spec.
    let dir = std::env::temp_dir().join(format!("minion-cli-test-{}", std::process::id()));
    let missing = format!("file://{}/missing-spec.json", dir.display());
    let out = Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["worker", "run", "--spec", &missing])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("minion worker:") && err.contains("missing-spec.json"),
        "{err}"
    );
}

#[test]
fn kubectl_minion_is_the_same_cli() {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-minion"))
        .args(["--state-dir", "/nonexistent-minion-state", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--cluster"));
}
