//! A local-mode environment for end-to-end tests through the `minion` binary: the samples of
//! `config/` (the events tables and the SegmentImport config) with URIs in a temp dir, a
//! filled REALTIME table, the CLI on a state directory, and totals of both tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use minion_contract::TimeWindow;
use minion_operator::catalog::{Catalog, app_id, install_crypto_provider};
use minion_operator::demo;
use minion_operator::inspect::{self, Totals, sums_match};
use minion_operator::model::{DAY_MS, TableDef};

use crate::fixtures::{Minion, created_run, import_samples, realtime_events};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub manifests: PathBuf,
    pub tables: Vec<TableDef>,
    pub start_ms: i64,
}

impl Env {
    /// Samples of `config/` with URIs under a temp dir (`mtc_extra` appended to the import
    /// config's spec), and `days` of events in the REALTIME table.
    pub async fn new(days: u32, mtc_extra: &str) -> Env {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let state = dir.path().join("state");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        let uri = |name: &str| format!("file://{}/{name}", data.display());
        let samples = import_samples(|text| {
            text.replace(
                "file:///tmp/minion/events_realtime",
                &uri("events-realtime"),
            )
            .replace("file:///tmp/minion/events_offline", &uri("events-offline"))
            // `mtc_extra` goes into the import config's spec.
            .replace(
                "  segmentImportTask:\n",
                &format!("{mtc_extra}  segmentImportTask:\n"),
            )
        });
        for (file, text) in samples {
            std::fs::write(manifests.join(file), text).unwrap();
        }
        let (tables, _) = demo::load_samples(&data).unwrap();
        let realtime = tables.iter().find(|t| t.name == "events-realtime").unwrap();
        let (_catalog, start_ms) = realtime_events(realtime, &data, days, 200).await;
        Env {
            dir,
            state,
            manifests,
            tables,
            start_ms,
        }
    }

    pub fn cli(&self) -> Minion {
        Minion {
            state: self.state.clone(),
        }
    }

    pub fn minion(&self, args: &[&str]) -> Output {
        self.cli().run(args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.cli().ok(args)
    }

    pub fn apply(&self) {
        let out = self.ok(&["apply", "-f", self.manifests.to_str().unwrap()]);
        assert!(
            out.contains("miniontaskconfig.minion.dev/events-import created"),
            "{out}"
        );
    }

    /// `minion run events-import`; returns the TaskRun's name.
    pub fn run_import(&self) -> String {
        let out = self.ok(&["run", "events-import"]);
        created_run(&out)
    }

    pub fn task_run(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["get", "tr", name, "-o", "json"])).unwrap()
    }

    pub fn table(&self, name: &str) -> &TableDef {
        self.tables.iter().find(|t| t.name == name).unwrap()
    }

    /// Totals of the destination and of the source before the import watermark.
    pub async fn totals(&self) -> (Totals, Totals, i64) {
        let realtime = self.table("events-realtime");
        let offline = self.table("events-offline");
        let source = Catalog::open(&realtime.uri, Default::default())
            .await
            .unwrap();
        let dest = Catalog::open(&offline.uri, Default::default())
            .await
            .unwrap();
        let watermark = dest
            .txn_version(&app_id::watermark("default", "events-import", None))
            .await
            .unwrap()
            .expect("the import committed a watermark");
        let range = TimeWindow::new(self.start_ms - DAY_MS, watermark);
        let src = inspect::totals(
            &realtime.uri,
            &realtime.schema,
            &source.segments().unwrap(),
            Some(range),
        )
        .await
        .unwrap();
        let dst = inspect::totals(
            &offline.uri,
            &offline.schema,
            &dest.segments().unwrap(),
            None,
        )
        .await
        .unwrap();
        (src, dst, watermark)
    }

    /// A tree listing (path → contents) of the state directory.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.state.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.insert(e.path(), std::fs::read(e.path()).unwrap());
                }
            }
        }
        out
    }
}

/// The identity of a TaskRun (as `minion get tr -o json` shows it): its name and uid.
pub fn key_of(tr: &serde_json::Value) -> String {
    minion_operator::control::protocol::run_key(
        tr["metadata"]["name"].as_str().unwrap(),
        tr["metadata"]["uid"].as_str(),
    )
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

pub fn assert_same(src: &Totals, dst: &Totals) {
    assert!(src.rows > 0, "the import moved nothing");
    assert_eq!(src.rows, dst.rows, "count(*) differs");
    for metric in ["clicks", "revenue"] {
        let (a, b) = (src.sums[metric], dst.sums[metric]);
        assert!(sums_match(a, b), "sum({metric}) differs: {a} vs {b}");
    }
}
