//! Tables written by another Delta writer — the Python `deltalake` package (delta-rs), through
//! `minion_e2e::python_delta` — served by the operator in local mode through the `minion`
//! binary: a partitioned table, one with deletion vectors and one with column mapping are
//! refused (`Ready=False`, reason `UnsupportedDeltaFeature`, naming the feature and the URI)
//! and never cleaned up; a plain table with several commits and a checkpoint of that writer is
//! a REALTIME source whose rows RealtimeToOffline moves, also after that writer commits again
//! and checkpoints both tables (the destination's checkpoint keeps our watermark); a table
//! that gets deletion vectors while a run is in flight gets no commit.
//!
//! Python `deltalake` deletes by rewriting files and writes no deletion vector, so the
//! deletion-vector table gets one written by hand (`deletion_vector` in
//! `tests/python/write_delta.py`: a valid file and `add.deletionVector`, which delta-rs reads
//! back as deleted rows).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DurationRound, Utc};
use minion_contract::TimeWindow;
use minion_e2e::fixtures::{Minion, created_run};
use minion_e2e::python_delta;
use minion_e2e::rows::TableRows;
use minion_operator::api::{Resource, parse_manifests};
use minion_operator::catalog::{Catalog, install_crypto_provider};
use minion_operator::model::{DAY_MS, HOUR_MS, TableDef};
use minion_operator::validate;
use serde_json::json;

const COLUMNS: &str =
    r#"[["ts", "long"], ["country", "string"], ["clicks", "long"], ["revenue", "double"]]"#;

const R2O: &str = "apiVersion: minion.dev/v1alpha1\nkind: MinionTaskConfig\nmetadata: {name: events-r2o, namespace: default}\nspec:\n  table: events-offline\n  sourceTable: events-realtime\n  taskType: RealtimeToOfflineSegmentsTask\n  timeZone: UTC\n  realtimeToOfflineSegmentsTask:\n    bucketTimePeriod: 1d\n    bufferTimePeriod: 2d\n    mergeType: concat\n";

struct Env {
    dir: tempfile::TempDir,
    minion: Minion,
}

impl Env {
    fn new() -> Env {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let minion = Minion {
            state: dir.path().join("state"),
        };
        Env { dir, minion }
    }

    fn uri(&self, name: &str) -> String {
        format!("file://{}/data/{name}", self.dir.path().display())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("data").join(name)
    }

    /// A Table `name` at `data/<name>` with the events columns; `extra` goes into its spec.
    fn table_yaml(&self, name: &str, table_type: &str, extra: &str) -> String {
        format!(
            "apiVersion: minion.dev/v1alpha1\nkind: Table\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  tableType: {table_type}\n  uri: {uri}\n{extra}  schema:\n    timeColumn: ts\n    timeUnit: MILLISECONDS\n    columns:\n      - {{name: ts, dataType: LONG, role: dateTime}}\n      - {{name: country, dataType: STRING, role: dimension}}\n      - {{name: clicks, dataType: LONG, role: metric}}\n      - {{name: revenue, dataType: DOUBLE, role: metric}}\n",
            uri = self.uri(name)
        )
    }

    fn apply(&self, name: &str, yaml: &str) -> String {
        let file = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        self.minion.ok(&["apply", "-f", file.to_str().unwrap()])
    }

    fn def(yaml: &str) -> TableDef {
        match parse_manifests(yaml).unwrap().remove(0) {
            Resource::Table(t) => validate::table(&t).unwrap(),
            _ => panic!("not a Table"),
        }
    }

    fn up(&self) -> String {
        self.minion
            .ok(&["local", "up", "--until-idle", "--poll-ms", "20"])
    }

    fn get(&self, kind: &str, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.minion.ok(&["get", kind, name, "-o", "json"])).unwrap()
    }

    /// The Table's Ready condition after a pass of the loop.
    fn ready(&self, name: &str) -> serde_json::Value {
        let table = self.get("table", name);
        table["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .cloned()
            .unwrap_or_else(|| panic!("no Ready condition: {table:#}"))
    }

    /// Asserts the Table is refused for `feature`, in its condition, its Event and `describe`.
    fn assert_refused(&self, name: &str, feature: &str) {
        let ready = self.ready(name);
        assert_eq!(ready["status"], "False", "{ready:#}");
        assert_eq!(ready["reason"], "UnsupportedDeltaFeature", "{ready:#}");
        let message = ready["message"].as_str().unwrap();
        assert!(
            message.contains(feature) && message.contains(&self.uri(name)),
            "the message names {feature:?} and the URI: {message}"
        );
        let described = self.minion.ok(&["describe", "table", name]);
        for expected in ["UnsupportedDeltaFeature", feature] {
            assert!(
                described.contains(expected),
                "{expected} missing in\n{described}"
            );
        }
    }
}

fn columns() -> serde_json::Value {
    serde_json::from_str(COLUMNS).unwrap()
}

/// `n` rows from `start_ms`, one a minute, with values derived from `seed`.
fn rows(start_ms: i64, n: i64, seed: i64) -> serde_json::Value {
    rows_every(start_ms, n, 60_000, seed)
}

/// `n` rows from `start_ms`, one every `step_ms`, with values derived from `seed`.
fn rows_every(start_ms: i64, n: i64, step_ms: i64, seed: i64) -> serde_json::Value {
    let countries = ["FR", "DE", "US", "JP"];
    json!(
        (0..n)
            .map(|i| json!([
                start_ms + i * step_ms,
                countries[((i + seed) % 4) as usize],
                (i * 7 + seed) % 13,
                ((i + seed) as f64) * 0.25
            ]))
            .collect::<Vec<_>>()
    )
}

fn write_step(uri: &str, rows: serde_json::Value) -> serde_json::Value {
    json!({"op": "write", "uri": uri, "columns": columns(), "rows": rows})
}

/// Every file under `dir` with its contents.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    minion_e2e::local_env::files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

async fn refused_on_open(def: &TableDef, feature: &str) {
    let err = Catalog::open_existing(&def.uri, &def.schema, Default::default())
        .await
        .expect_err("the catalog refuses the table");
    assert_eq!(err.reason(), "UnsupportedDeltaFeature", "{err}");
    let message = err.to_string();
    assert!(
        message.contains(feature) && message.contains(&def.uri),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_table_is_refused_naming_its_partition_columns() {
    let env = Env::new();
    let uri = env.uri("events-realtime");
    let mut write = write_step(&uri, rows(0, 20, 1));
    write["partition_by"] = json!(["country"]);
    python_delta::write(&json!([write]));
    let yaml = env.table_yaml("events-realtime", "REALTIME", "");
    env.apply("events-realtime", &yaml);
    env.up();
    env.assert_refused("events-realtime", "partitioned by [country]");
    refused_on_open(&Env::def(&yaml), "partitioned by [country]").await;

    // A run reading it waits for it, as for any Table that is not Ready.
    env.apply(
        "events-offline",
        &env.table_yaml("events-offline", "OFFLINE", ""),
    );
    env.apply("r2o", R2O);
    let run = created_run(&env.minion.ok(&["run", "events-r2o"]));
    let out = env.up();
    let tr = env.get("tr", &run);
    assert_eq!(tr["status"]["phase"], "Pending", "{out}\n{tr:#}");
    assert_eq!(tr["status"]["reason"], "TableNotReady", "{tr:#}");
    let message = tr["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("events-realtime") && message.contains("partitioned by [country]"),
        "the run says which table it waits for and why: {tr:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_mapped_table_is_refused_naming_the_mode() {
    let env = Env::new();
    let uri = env.uri("events-realtime");
    let mut write = write_step(&uri, rows(0, 20, 2));
    write["configuration"] = json!({"delta.columnMapping.mode": "name"});
    let written = python_delta::write(&json!([write]));
    assert!(
        written[0]["minReaderVersion"].as_i64().unwrap() >= 2,
        "Python deltalake wrote a column-mapped table: {written:?}"
    );
    let yaml = env.table_yaml("events-realtime", "REALTIME", "");
    env.apply("events-realtime", &yaml);
    env.up();
    env.assert_refused(
        "events-realtime",
        "column mapping (delta.columnMapping.mode=name)",
    );
    refused_on_open(&Env::def(&yaml), "column mapping").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_deletion_vectors_is_refused_and_housekeeping_deletes_none_of_its_files() {
    let env = Env::new();
    let name = "events-offline";
    let uri = env.uri(name);
    let mut write = write_step(&uri, rows(0, 20, 3));
    write["configuration"] = json!({"delta.enableDeletionVectors": "true"});
    python_delta::write(&json!([
        write,
        {"op": "delete", "uri": uri, "predicate": "clicks = 3"},
        {"op": "deletion_vector", "uri": uri, "rows": [0, 2]},
    ]));
    let dir = env.path(name);
    let dv_files: Vec<_> = files(&dir)
        .into_keys()
        .filter(|p| p.to_string_lossy().contains("deletion_vector_"))
        .collect();
    assert_eq!(dv_files.len(), 1, "{dv_files:?}");
    // Every file two days old: past the clean-up's minimum age for unreferenced files.
    for path in files(&dir).keys() {
        let status = std::process::Command::new("touch")
            .args(["-d", "2 days ago"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let before = files(&dir);
    // A Table whose clean-up may delete files it did not write, the most it ever deletes.
    let yaml = env.table_yaml(
        name,
        "OFFLINE",
        "  replacedSegmentRetention: 1m\n  cleanUpForeignFiles: true\n",
    );
    env.apply(name, &yaml);
    let out = env.up();
    assert_eq!(
        files(&dir).into_keys().collect::<Vec<_>>(),
        before.keys().cloned().collect::<Vec<_>>(),
        "housekeeping deleted files of a refused table: {out}"
    );
    assert_eq!(files(&dir), before, "no file changed");
    env.assert_refused(name, "deletion vectors");
    refused_on_open(&Env::def(&yaml), "deletion vectors").await;

    // The catalog's own clean-up refuses too, whoever calls it.
    let err = Catalog::open(&uri, Default::default())
        .await
        .expect_err("refused");
    assert_eq!(err.reason(), "UnsupportedDeltaFeature", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_vectors_enabled_after_the_catalog_opened_stop_its_commits_and_clean_ups() {
    let env = Env::new();
    let uri = env.uri("events-offline");
    python_delta::write(&json!([write_step(&uri, rows(0, 10, 4))]));
    let yaml = env.table_yaml("events-offline", "OFFLINE", "");
    let def = Env::def(&yaml);
    let mut catalog = Catalog::open_existing(&def.uri, &def.schema, Default::default())
        .await
        .expect("a plain table of another writer opens");
    python_delta::write(&json!([
        {"op": "set_properties", "uri": uri, "properties": {"delta.enableDeletionVectors": "true"}},
    ]));
    let err = catalog.refresh().await.expect_err("refused on refresh");
    assert_eq!(err.reason(), "UnsupportedDeltaFeature", "{err}");
    let err = catalog
        .clean_up(Utc::now().timestamp_millis(), 0, &[], true, false)
        .await
        .expect_err("no clean-up of a refused table");
    assert!(err.to_string().contains("deletion vectors"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_table_with_a_checkpoint_of_another_writer_is_a_realtime_source_run_after_run() {
    let env = Env::new();
    let realtime_uri = env.uri("events-realtime");
    let day0 = (Utc::now() - chrono::TimeDelta::days(10))
        .duration_trunc(chrono::TimeDelta::days(1))
        .unwrap()
        .timestamp_millis();
    // Three commits and a checkpoint, then a fourth commit after it that runs into day 1 (so
    // the window of day 0 is complete: the latest segment ends after it).
    let written = python_delta::write(&json!([
        write_step(&realtime_uri, rows(day0, 120, 0)),
        write_step(&realtime_uri, rows(day0 + 3 * HOUR_MS, 90, 1)),
        write_step(&realtime_uri, rows(day0 + 9 * HOUR_MS, 60, 2)),
        {"op": "checkpoint", "uri": realtime_uri},
        write_step(&realtime_uri, rows(day0 + 23 * HOUR_MS, 120, 3)),
    ]));
    assert_eq!(written[0]["version"], 3, "{written:?}");
    assert!(
        env.path("events-realtime")
            .join("_delta_log/00000000000000000002.checkpoint.parquet")
            .exists(),
        "Python deltalake wrote the checkpoint"
    );
    let realtime_yaml = env.table_yaml("events-realtime", "REALTIME", "");
    let offline_yaml = env.table_yaml("events-offline", "OFFLINE", "");
    env.apply("events-realtime", &realtime_yaml);
    env.apply("events-offline", &offline_yaml);
    env.apply("r2o", R2O);
    env.up();
    let ready = env.ready("events-realtime");
    assert_eq!(ready["status"], "True", "{ready:#}");
    let realtime = Env::def(&realtime_yaml);
    let offline = Env::def(&offline_yaml);

    let run = |env: &Env| {
        let name = created_run(&env.minion.ok(&["run", "events-r2o"]));
        env.up();
        let tr = env.get("tr", &name);
        assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
        assert_eq!(tr["status"]["subtasksTotal"], 1, "{tr:#}");
    };
    let day = |d: i64| TimeWindow {
        start_ms: day0 + d * DAY_MS,
        end_ms: day0 + (d + 1) * DAY_MS,
    };

    // Run 1 moves day 0: the same rows, as a multiset.
    run(&env);
    let source = TableRows::read(&realtime).await;
    let moved = TableRows::read(&offline).await;
    assert_eq!(source.multiset().rows, 390, "{}", source.describe());
    assert_eq!(
        moved.multiset(),
        source.multiset_in(day(0)),
        "{}",
        moved.describe()
    );

    // The other writer commits again, after our commits and its checkpoint: to the source,
    // from noon of day 1 into day 2, one row an hour, and a checkpoint; to the destination,
    // ten rows of its own on top of our commit, and a checkpoint of it (which must keep our
    // watermark, a `txn` of the log, or day 0 would be moved again).
    let offline_uri = env.uri("events-offline");
    python_delta::write(&json!([
        {"op": "write", "uri": realtime_uri, "columns": columns(),
         "rows": rows_every(day0 + DAY_MS + 12 * HOUR_MS, 30, HOUR_MS, 4)},
        {"op": "checkpoint", "uri": realtime_uri},
        write_step(&offline_uri, rows(day0 + 5 * DAY_MS, 10, 9)),
        {"op": "checkpoint", "uri": offline_uri},
    ]));
    assert!(
        env.path("events-offline")
            .join("_delta_log/_last_checkpoint")
            .exists(),
        "Python deltalake checkpointed the destination"
    );
    let before = TableRows::read(&offline).await;
    let theirs = before.multiset().minus(moved.multiset());
    assert_eq!(theirs.rows, 10, "{}", before.describe());
    run(&env);
    let source = TableRows::read(&realtime).await;
    let after = TableRows::read(&offline).await;
    let new_rows = source.multiset_in(day(1));
    // Day 1: the hour of the fourth commit past midnight and the twelve first appended rows.
    assert_eq!(new_rows.rows, 60 + 12, "{}", source.describe());
    assert_eq!(
        after.multiset().minus(before.multiset()),
        new_rows,
        "the second run moved exactly the new rows: {}",
        after.describe()
    );
    assert_eq!(
        after.multiset(),
        source
            .multiset_in(TimeWindow {
                start_ms: day0,
                end_ms: day0 + 2 * DAY_MS
            })
            .plus(theirs),
        "every row moved once, and the other writer's rows kept"
    );
}

/// Appends a commit holding only `protocol` to the log of the local table at `dir`.
fn commit_protocol(dir: &Path, protocol: serde_json::Value) {
    let log = dir.join("_delta_log");
    let next = std::fs::read_dir(&log)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
        .unwrap()
        + 1;
    let commit = json!({"commitInfo": {"timestamp": Utc::now().timestamp_millis(), "operation": "SET TBLPROPERTIES"}});
    std::fs::write(
        log.join(format!("{next:020}.json")),
        format!("{commit}\n{}\n", json!({ "protocol": protocol })),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_features_the_operator_does_not_implement_are_refused_by_name() {
    let env = Env::new();
    for (i, feature) in ["v2Checkpoint", "typeWidening", "someFutureFeature"]
        .into_iter()
        .enumerate()
    {
        let name = format!("t{i}");
        let uri = env.uri(&name);
        python_delta::write(&json!([write_step(&uri, rows(0, 5, 5))]));
        // Written by hand: a protocol upgrade as another writer would commit it.
        commit_protocol(
            &env.path(&name),
            json!({"minReaderVersion": 3, "minWriterVersion": 7,
                   "readerFeatures": [feature], "writerFeatures": [feature]}),
        );
        let def = Env::def(&env.table_yaml(&name, "OFFLINE", ""));
        // Refused by name: by the operator's check, or by the Delta library for a feature it
        // does not know.
        refused_on_open(&def, &format!("feature {feature}")).await;
    }
}

/// The `add` actions in the JSON commits of the local table at `dir`.
fn adds_in_log(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("_delta_log"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("{\"add\""))
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_in_flight_commits_nothing_once_another_writer_enables_deletion_vectors_on_its_destination()
 {
    let env = Env::new();
    let realtime_uri = env.uri("events-realtime");
    let day0 = (Utc::now() - chrono::TimeDelta::days(10))
        .duration_trunc(chrono::TimeDelta::days(1))
        .unwrap()
        .timestamp_millis();
    python_delta::write(&json!([
        write_step(&realtime_uri, rows(day0, 60, 0)),
        write_step(&realtime_uri, rows(day0 + 23 * HOUR_MS, 120, 1)),
    ]));
    env.apply(
        "events-realtime",
        &env.table_yaml("events-realtime", "REALTIME", ""),
    );
    let offline_yaml = env.table_yaml("events-offline", "OFFLINE", "");
    env.apply("events-offline", &offline_yaml);
    env.apply("r2o", R2O);
    let run = created_run(&env.minion.ok(&["run", "events-r2o"]));
    // Step until the run's worker was started (the destination is Ready and was created).
    let mut phase = String::new();
    for _ in 0..20 {
        env.minion.step();
        phase = env.get("tr", &run)["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if phase == "Running" {
            break;
        }
    }
    assert_eq!(phase, "Running", "{:#}", env.get("tr", &run));
    let offline_dir = env.path("events-offline");
    assert_eq!(adds_in_log(&offline_dir), 0, "nothing committed yet");

    // Another writer enables deletion vectors on the destination while the run is in flight.
    let offline_uri = env.uri("events-offline");
    python_delta::write(&json!([
        {"op": "set_properties", "uri": offline_uri, "properties": {"delta.enableDeletionVectors": "true"}},
    ]));
    // Its commit is refused at every tick: the run waits, committing nothing.
    let out = env
        .minion
        .run(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let tr = env.get("tr", &run);
    assert_eq!(tr["status"]["phase"], "Running", "{tr:#}");
    assert_eq!(
        adds_in_log(&offline_dir),
        0,
        "the run committed to a table with deletion vectors: {tr:#}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unsupported Delta table feature: deletion vectors"),
        "the loop says why it cannot go on"
    );
    env.assert_refused("events-offline", "deletion vectors");

    // It stays so: Python deltalake upgraded the protocol to writer features (`invariants`)
    // the Delta library the operator commits with cannot write, so turning the property off
    // again does not make the table usable; the run keeps waiting and committing nothing.
    python_delta::write(&json!([
        {"op": "set_properties", "uri": offline_uri, "properties": {"delta.enableDeletionVectors": "false"}},
    ]));
    env.minion
        .run(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    assert_eq!(env.get("tr", &run)["status"]["phase"], "Running");
    assert_eq!(adds_in_log(&offline_dir), 0);
    env.assert_refused("events-offline", "writer feature invariants");
}

/// DeltaIngestionTask: a Delta table of another writer ingested one segment per data file,
/// following its log. Appends are ingested; a delete upstream (which rewrites files) and an
/// overwrite (a compaction) replace the segments of the files they removed in the same
/// commit; at every step the destination holds exactly the source's rows (as a multiset), and
/// a run with nothing new is Skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_ingestion_follows_an_external_table_file_for_file() {
    let env = Env::new();
    let source_uri = env.uri("clicks-source");
    let t0 = Utc::now().timestamp_millis() - 3 * DAY_MS;
    python_delta::write(&json!([
        write_step(&source_uri, rows(t0, 300, 1)),
        write_step(&source_uri, rows(t0 + HOUR_MS * 6, 300, 2)),
    ]));
    let source = Env::def(&env.table_yaml("clicks-source", "REALTIME", ""));
    let dest_yaml = env.table_yaml("clicks", "OFFLINE", "");
    env.apply("clicks", &dest_yaml);
    let dest = Env::def(&dest_yaml);
    env.apply(
        "clicks-ingest",
        &format!(
            "apiVersion: minion.dev/v1alpha1\nkind: MinionTaskConfig\nmetadata: {{name: clicks-ingest, namespace: default}}\nspec:\n  table: clicks\n  taskType: DeltaIngestionTask\n  deltaIngestionTask:\n    sourceTableURI: {source_uri}\n"
        ),
    );
    let run = |expect: &str| {
        let name = created_run(&env.minion.ok(&["run", "clicks-ingest"]));
        env.up();
        let tr = env.get("tr", &name);
        assert_eq!(tr["status"]["phase"], expect, "{tr:#}");
        tr
    };
    let same = || async {
        let (src, dst) = (TableRows::read(&source).await, TableRows::read(&dest).await);
        assert_eq!(dst.multiset(), src.multiset(), "{}", dst.describe());
        let files = Catalog::open(&source.uri, Default::default())
            .await
            .unwrap()
            .segments()
            .unwrap()
            .len();
        let segments = Catalog::open(&dest.uri, Default::default())
            .await
            .unwrap()
            .segments()
            .unwrap()
            .len();
        assert_eq!(segments, files, "one segment per source file");
        src.multiset().rows
    };

    let tr = run("Succeeded");
    assert_eq!(tr["status"]["subtasksTotal"], 2, "{tr:#}");
    assert_eq!(same().await, 600);
    run("Skipped");

    // Upstream: a delete rewrites the files holding matching rows, and an append adds one.
    python_delta::write(&json!([
        {"op": "delete", "uri": source_uri, "predicate": "clicks = 3"},
        write_step(&source_uri, rows(t0 + HOUR_MS * 12, 100, 3)),
    ]));
    run("Succeeded");
    let rows = same().await;
    assert!(rows < 700 && rows > 600, "{rows}");

    // Upstream compaction: every file replaced by one.
    python_delta::write(&json!([{
        "op": "write", "uri": source_uri, "columns": columns(), "mode": "overwrite",
        "rows": rows_every(t0, 50, 60_000, 4),
    }]));
    run("Succeeded");
    assert_eq!(same().await, 50);
    run("Skipped");
}
