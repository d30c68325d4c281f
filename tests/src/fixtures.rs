//! Fixtures the end-to-end tests share: the workspace's binaries, the `minion` CLI on a
//! state directory, and a REALTIME events table filled by the demo's generator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::Utc;
use minion_operator::catalog::Catalog;
use minion_operator::demo::{self, DemoOptions};
use minion_operator::model::{HOUR_MS, TableDef};

/// `target/<profile>/<name>` next to the running test, which must exist (`cargo test
/// --workspace` and `cargo nextest run --workspace` build every binary of the workspace).
///
/// # Panics
/// The binary is missing; the message says how to build it.
pub fn workspace_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p {package} --bin {name}` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// The `minion` CLI on one local-mode state directory.
pub struct Minion {
    pub state: PathBuf,
}

impl Minion {
    /// Runs `minion --state-dir <state> <args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(workspace_binary("minion", "minion-operator"))
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .output()
            .expect("minion starts")
    }

    /// [`Self::run`], asserting success; its stdout.
    ///
    /// # Panics
    /// The command failed (stdout and stderr are shown).
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "minion {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

/// Creates the REALTIME table `def` and fills it with `days` of events up to now (two
/// stream partitions, a segment every 6 h of `rows_per_segment` rows, data files under
/// `dir`); its catalog and the start of the events (epoch ms).
///
/// # Panics
/// The table cannot be created or written.
pub async fn realtime_events(
    def: &TableDef,
    dir: &Path,
    days: u32,
    rows_per_segment: usize,
) -> (Catalog, i64) {
    let mut catalog = Catalog::create(&def.uri, &def.schema, Default::default())
        .await
        .expect("create the REALTIME table");
    let options = DemoOptions {
        dir: dir.to_path_buf(),
        days,
        partitions: 2,
        segment_period_ms: 6 * HOUR_MS,
        rows_per_segment,
        now: Utc::now(),
    };
    let start_ms = demo::write_realtime(def, &mut catalog, &options)
        .await
        .expect("write the REALTIME events");
    (catalog, start_ms)
}
