//! The operator process does no data work: the control loop plans, launches, waits and
//! commits; every pass over a table's rows (subtasks, and upsert validity) runs in a worker
//! process with its own memory budget. A source-level check, since the `minion` binary still
//! links the engine for its `minion worker` subcommand (a separate process in local mode).

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
        if file == "cli/worker.rs" {
            continue;
        }
        for needle in ["run_subtask", "keep_masks", "ExternalSorter"] {
            assert!(
                !text.contains(needle),
                "{file} mentions {needle}: the operator process launches workers, it runs none"
            );
        }
    }
}

/// What of the engine the operator still links, file by file, and why; anything new needs a
/// reason here. The control loop and the catalog use none of it.
#[test]
fn the_operator_uses_the_engine_only_where_listed() {
    let allowed: &[(&str, &str)] = &[
        (
            "cli/worker.rs",
            "`minion worker run`: local mode's worker process",
        ),
        (
            "commit_gate.rs",
            "an output's row count from its Parquet footer",
        ),
        (
            "generator/backfill.rs",
            "builds the backfill filter as a predicate",
        ),
        ("k8s/operator.rs", "shutdown_signal"),
        ("model.rs", "the predicate expression type"),
        (
            "validate/cross.rs",
            "checks predicates against the schema's Arrow types",
        ),
        ("validate/mod.rs", "parses predicates"),
    ];
    let mut using: Vec<String> = operator_sources()
        .into_iter()
        .filter(|(_, text)| text.contains("minion_worker::") || text.contains("use minion_worker"))
        .map(|(file, _)| file)
        .collect();
    using.sort();
    let expected: Vec<&str> = allowed.iter().map(|(f, _)| *f).collect();
    assert_eq!(using, expected);
    for (file, text) in operator_sources() {
        if file.starts_with("control/") || file.starts_with("catalog/") {
            assert!(!text.contains("minion_worker"), "{file} uses the engine");
        }
    }
}
