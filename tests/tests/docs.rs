//! The documentation runs as written: every shell block of `README.md` and `docs/*.md` marked
//! ```` ```sh local ```` runs with bash (`set -euo pipefail`), in order per file, in a fresh
//! directory holding a copy of `config/`, with the workspace's `minion` first on the `PATH`;
//! it fails when a command fails or when the block's output lacks a line the document says it
//! prints (`<!-- output: TEXT -->` right after the block).

use std::path::{Path, PathBuf};
use std::process::Command;

use minion_e2e::fixtures::workspace_binary;

/// A fenced block: its info string, its text, and the outputs the document promises.
#[derive(Debug)]
struct Block {
    file: String,
    line: usize,
    info: String,
    text: String,
    outputs: Vec<String>,
}

fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let info = info.trim().to_string();
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].starts_with("```") {
            body.push(lines[i]);
            i += 1;
        }
        i += 1;
        let mut outputs = Vec::new();
        while let Some(o) = lines
            .get(i)
            .and_then(|l| l.strip_prefix("<!-- output: "))
            .and_then(|l| l.strip_suffix(" -->"))
        {
            outputs.push(o.to_string());
            i += 1;
        }
        out.push(Block {
            file: file.display().to_string(),
            line: start + 1,
            info,
            text: body.join("\n"),
            outputs,
        });
    }
    out
}

fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut docs = vec![root.join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn the_local_shell_blocks_of_the_docs_run_and_print_what_they_say() {
    let minion = workspace_binary("minion", "minion-cli");
    let bin_dir = minion.parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for doc in documents() {
        let local: Vec<Block> = blocks(&doc)
            .into_iter()
            .filter(|b| b.info == "sh local")
            .collect();
        if local.is_empty() {
            continue;
        }
        // One fresh directory per document: its blocks build on each other.
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../config"),
            &dir.path().join("config"),
        );
        for block in local {
            let out = Command::new("bash")
                .arg("-c")
                .arg(format!("set -euo pipefail\n{}", block.text))
                .current_dir(dir.path())
                .env("PATH", &path)
                .env_remove("MINION_STATE_DIR")
                .output()
                .unwrap();
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "{}:{}: the block failed ({}):\n{}\n--- output ---\n{printed}",
                block.file,
                block.line,
                out.status,
                block.text
            );
            for expected in &block.outputs {
                assert!(
                    printed.contains(expected.as_str()),
                    "{}:{}: the output lacks {expected:?}:\n{printed}",
                    block.file,
                    block.line
                );
            }
            ran += 1;
        }
    }
    assert!(ran >= 3, "only {ran} local blocks found");
}
