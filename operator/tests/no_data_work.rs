//! The operator process does no data work: the control loop plans, launches, waits and
//! commits; every pass over a table's rows (subtasks, and upsert validity) runs in a worker
//! process with its own memory budget. The operator crate does not even link the engine:
//! what it shares with the worker (a table's Arrow schema, the predicate language, the
//! shutdown signal) is in `minion-common`, and `minion worker run` (local mode's worker
//! process) is in the `minion` binary's crate, `minion-cli`.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn operator_sources() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(
        files.len() > 50,
        "operator sources not found under {root:?}"
    );
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn the_operator_never_computes_upsert_validity_itself() {
    for (file, text) in operator_sources() {
        assert!(
            !text.contains("compute_validity"),
            "{file} calls compute_validity: validity is a worker subtask (SubtaskKind::Validity)"
        );
    }
}

#[test]
fn only_the_worker_subcommand_runs_subtasks_in_process() {
    for (file, text) in operator_sources() {
        for needle in ["run_subtask", "keep_masks", "ExternalSorter"] {
            assert!(
                !text.contains(needle),
                "{file} mentions {needle}: the operator process launches workers, it runs none"
            );
        }
    }
}

/// Neither a dependency on `minion-worker` nor a use of it anywhere in the operator crate.
#[test]
fn the_operator_crate_does_not_link_the_engine() {
    let manifest =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap();
    assert!(
        !manifest.contains("minion-worker"),
        "operator/Cargo.toml depends on minion-worker"
    );
    for (file, text) in operator_sources() {
        assert!(
            !text.contains("minion_worker::") && !text.contains("use minion_worker"),
            "{file} uses the engine"
        );
    }
}
