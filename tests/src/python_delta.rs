//! Another Delta writer for the tests: the Python `deltalake` package (delta-rs), in a venv
//! `scripts/python-delta.sh` makes once (pinned versions, under `target/python-delta`), driven by
//! `tests/python/write_delta.py` with a JSON list of steps (write, delete, checkpoint, a
//! hand-written deletion vector; see that file). The same venv holds Apache DataSketches' C++
//! library, which `tests/python/check_sketches.py` uses to read the sketches a rollup wrote.
//!
//! The tests that use it fail, never skip, when the venv cannot be made (it needs PyPI, which
//! the CI machine reaches).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python, made on first use by `scripts/python-delta.sh`.
///
/// # Panics
/// The script failed (its output is shown).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo().join("scripts/python-delta.sh"))
                .output()
                .expect("bash starts");
            assert!(
                out.status.success(),
                "scripts/python-delta.sh could not make the Python deltalake venv (it needs python3 -m venv and PyPI):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            assert!(path.exists(), "{} is missing", path.display());
            path
        })
        .clone()
}

/// Runs `steps` (a JSON list, see `tests/python/write_delta.py`) with Python `deltalake`;
/// returns one JSON object per table it touched: `uri`, `version`, the protocol.
///
/// # Panics
/// The program failed (its output is shown).
pub fn write(steps: &serde_json::Value) -> Vec<serde_json::Value> {
    run("write_delta.py", steps)
}

/// Runs `tests/python/<script>` on `input` (given as a JSON file); returns the JSON lines it
/// printed.
///
/// # Panics
/// The program failed (its output is shown).
pub fn run(script: &str, input: &serde_json::Value) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("input.json");
    std::fs::write(&file, serde_json::to_vec(input).unwrap()).unwrap();
    let out = Command::new(python())
        .arg(repo().join("tests/python").join(script))
        .arg(&file)
        .output()
        .expect("python starts");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
