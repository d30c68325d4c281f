//! Fixtures the end-to-end tests share: the workspace's binaries, the `minion` CLI on a
//! state directory, and a REALTIME events table filled by the demo's generator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DurationRound, Utc};
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
        Command::new(workspace_binary("minion", "minion-cli"))
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

    /// Runs one step of the local control loop (`local up --until-idle --max-steps 1`).
    pub fn step(&self) -> String {
        self.ok(&[
            "local",
            "up",
            "--until-idle",
            "--max-steps",
            "1",
            "--poll-ms",
            "20",
        ])
    }
}

/// The sample files of an import (`config/`: the REALTIME and OFFLINE tables and the
/// SegmentImport config) as (file name, text), with about one day of test data per subtask
/// and `edit` applied to each text.
///
/// # Panics
/// A sample cannot be read.
pub fn import_samples(edit: impl Fn(String) -> String) -> Vec<(&'static str, String)> {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    [
        "table-events-realtime.yaml",
        "table-events-offline.yaml",
        "mtc-segment-import.yaml",
    ]
    .into_iter()
    .map(|file| {
        let text = std::fs::read_to_string(samples.join(file))
            .expect("read a sample")
            .replace(
                "maxNumRecordsPerTask: 50000000",
                "maxNumRecordsPerTask: 1000",
            );
        (file, edit(text))
    })
    .collect()
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
        // The data ends at the last midnight (UTC), so the windows, segments and subtasks
        // the tests see do not depend on the time of day they run at.
        now: Utc::now()
            .duration_trunc(chrono::TimeDelta::days(1))
            .unwrap(),
        worker: None,
    };
    let start_ms = demo::write_realtime(def, &mut catalog, &options)
        .await
        .expect("write the REALTIME events");
    (catalog, start_ms)
}

/// The TaskRun name in `minion run`'s output (`taskrun.minion.dev/<name> created`).
///
/// # Panics
/// The output has another shape.
pub fn created_run(out: &str) -> String {
    out.trim()
        .strip_prefix("taskrun.minion.dev/")
        .and_then(|s| s.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("unexpected `minion run` output {out:?}"))
        .to_string()
}

/// Asserts that the destination of an import holds exactly the source's rows up to the
/// import's watermark (`config`'s in `namespace`): same `count(*)`, same sums of `clicks`
/// and `revenue`.
///
/// # Panics
/// The totals differ, nothing was imported, or a table cannot be read.
pub async fn assert_imported_exactly(
    source: &Catalog,
    realtime: &TableDef,
    offline: &TableDef,
    start_ms: i64,
    namespace: &str,
    config: &str,
) {
    use minion_contract::TimeWindow;
    use minion_operator::catalog::app_id;
    use minion_operator::inspect::{self, sums_match};
    use minion_operator::model::DAY_MS;
    let dest = Catalog::open(&offline.uri, Default::default())
        .await
        .expect("open the destination");
    let watermark = dest
        .txn_version(&app_id::watermark(namespace, config, None))
        .await
        .expect("read the watermark")
        .expect("a committed watermark");
    let src = inspect::totals(
        &realtime.uri,
        &realtime.schema,
        &source.segments().expect("source segments"),
        Some(TimeWindow::new(start_ms - DAY_MS, watermark)),
    )
    .await
    .expect("source totals");
    let dst = inspect::totals(
        &offline.uri,
        &offline.schema,
        &dest.segments().expect("destination segments"),
        None,
    )
    .await
    .expect("destination totals");
    assert!(src.rows > 0, "nothing was imported");
    assert_eq!(src.rows, dst.rows, "count(*)");
    for metric in ["clicks", "revenue"] {
        assert!(
            sums_match(src.sums[metric], dst.sums[metric]),
            "sum({metric}): {} vs {}",
            src.sums[metric],
            dst.sums[metric]
        );
    }
}
