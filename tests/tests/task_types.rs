//! Every task type end to end through local mode and the `minion` binary: samples of
//! `config/` applied with their URIs moved into a temp dir, a run started (`minion run` for
//! configs, `minion execute -f` for inline TaskRuns), `minion local up --until-idle`, and the
//! result checked with `count(*)`/`sum()` and, where keys matter, the rows themselves.
//! (SegmentImportTask is covered by `local_mode.rs`.)
//!
//! Why one long file: one test per task type over the same apply-run-check helpers; each
//! test's data and checks are its own.

use minion_e2e::fixtures::{Minion, created_run, realtime_events};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use chrono::Utc;
use minion_contract::{SegmentRef, TimeWindow};
use minion_operator::api::{Resource, parse_manifests};
use minion_operator::catalog::{Catalog, app_id, install_crypto_provider};
use minion_operator::demo::{self};
use minion_operator::inspect::{self, Totals, sums_match};
use minion_operator::model::{DAY_MS, HOUR_MS, TableDef};
use minion_operator::validate;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

struct Env {
    dir: tempfile::TempDir,
    state: PathBuf,
    manifests: PathBuf,
    /// Start of the REALTIME events (aligned to 6 h), when written.
    start_ms: i64,
}

impl Env {
    fn new() -> Env {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        Env {
            dir,
            state,
            manifests,
            start_ms: 0,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `config/<file>` with `/tmp/minion/` moved under the temp dir and `edits` applied,
    /// written to the manifests directory; returns its path.
    fn manifest(&self, file: &str, edits: &[(&str, &str)]) -> PathBuf {
        let text = std::fs::read_to_string(samples().join(file)).unwrap();
        let mut text = text.replace(
            "file:///tmp/minion/",
            &format!("file://{}/", self.data().display()),
        );
        for (from, to) in edits {
            assert!(text.contains(from), "{file} has no {from:?}");
            text = text.replace(from, to);
        }
        let path = self.manifests.join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn apply(&self, file: &str, edits: &[(&str, &str)]) -> PathBuf {
        let path = self.manifest(file, edits);
        self.ok(&["apply", "-f", path.to_str().unwrap()]);
        path
    }

    fn table(&self, file: &str) -> TableDef {
        let text = std::fs::read_to_string(self.manifests.join(file)).unwrap();
        match parse_manifests(&text).unwrap().remove(0) {
            Resource::Table(t) => validate::table(&t).unwrap(),
            _ => panic!("{file} is not a Table"),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        Minion {
            state: self.state.clone(),
        }
        .ok(args)
    }

    /// `minion plan <config>`, then `minion run <config>` and the loop until idle; returns
    /// the run's final status after checking that the run did what the dry run said: skipped
    /// with the same reason, or as many subtasks; and every watermark the plan shows stored
    /// (exactly, for a run with nothing to do; at least, once windows commit past it).
    fn run(&self, config: &str) -> serde_json::Value {
        let planned = self.ok(&["plan", config, "-o", "json"]);
        let out = self.ok(&["run", config]);
        let name = created_run(&out);
        self.up();
        let tr = self.task_run(&name);
        let status = &tr["status"];
        let Ok(plan) = serde_json::from_str::<serde_json::Value>(&planned) else {
            // The dry run says that validity is computed first, and plans nothing yet.
            assert!(
                planned.contains("in a worker subtask of kind validity"),
                "{planned}"
            );
            assert_eq!(status["validity"]["state"], "Succeeded", "{tr:#}");
            return tr;
        };
        match plan.get("skip") {
            Some(skip) => {
                assert_eq!(status["phase"], "Skipped", "planned {plan:#}, ran {tr:#}");
                assert_eq!(status["reason"], skip["reason"], "{plan:#} {tr:#}");
            }
            None => assert_eq!(
                status["subtasks"].as_array().map_or(0, Vec::len),
                plan["subtasks"].as_array().map_or(0, Vec::len),
                "planned {plan:#}, ran {tr:#}"
            ),
        }
        let cfg: serde_json::Value =
            serde_json::from_str(&self.ok(&["get", "mtc", config, "-o", "json"])).unwrap();
        let stored: BTreeMap<String, i64> = cfg["status"]["watermarks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                let level = w["level"].as_str().unwrap_or("").to_string();
                (level, w["watermarkMs"].as_i64().unwrap())
            })
            .collect();
        if let Some(planned) = plan["watermarks"].as_object() {
            for (level, wm) in planned {
                let wm = wm.as_i64().unwrap();
                let got = stored.get(level).copied();
                match plan.get("skip") {
                    Some(_) => assert_eq!(got, Some(wm), "{level}: planned {plan:#}, {cfg:#}"),
                    None => assert!(
                        got.is_some_and(|g| g >= wm),
                        "{level}: planned {wm}, stored {got:?}: {cfg:#}"
                    ),
                }
            }
        }
        tr
    }

    fn up(&self) {
        self.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    }

    fn task_run(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["get", "tr", name, "-o", "json"])).unwrap()
    }

    /// The event tables and `days` of events in the REALTIME one.
    async fn events(&mut self, days: u32) {
        self.apply("table-events-realtime.yaml", &[]);
        self.apply("table-events-offline.yaml", &[]);
        let realtime = self.table("table-events-realtime.yaml");
        let (_, start_ms) = realtime_events(&realtime, &self.data(), days, 200).await;
        self.start_ms = start_ms;
    }

    /// The events moved to the OFFLINE table by the SegmentImport sample.
    async fn imported_events(&mut self, days: u32) {
        self.events(days).await;
        self.apply(
            "mtc-segment-import.yaml",
            &[(
                "maxNumRecordsPerTask: 50000000",
                "maxNumRecordsPerTask: 2000",
            )],
        );
        let tr = self.run("events-import");
        assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    }
}

async fn live(def: &TableDef) -> Vec<SegmentRef> {
    Catalog::open(&def.uri, Default::default())
        .await
        .unwrap()
        .segments()
        .unwrap()
}

async fn totals(def: &TableDef, window: Option<TimeWindow>) -> Totals {
    inspect::totals(&def.uri, &def.schema, &live(def).await, window)
        .await
        .unwrap()
}

/// Every row of the table's live segments.
async fn rows(def: &TableDef) -> Vec<RecordBatch> {
    let root = PathBuf::from(def.uri.trim_start_matches("file://"));
    let mut out = Vec::new();
    for s in live(def).await {
        let file = std::fs::File::open(root.join(&s.path)).unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            out.push(b.unwrap());
        }
    }
    out
}

fn strings(b: &RecordBatch, column: &str) -> Vec<String> {
    let c = b.column_by_name(column).unwrap();
    let c = arrow::compute::cast(c, &DataType::Utf8).unwrap();
    c.as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect()
}

fn longs(b: &RecordBatch, column: &str) -> Vec<i64> {
    b.column_by_name(column)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn assert_sums(a: &Totals, b: &Totals, metrics: &[&str]) {
    for m in metrics {
        let (x, y) = (a.sums[*m], b.sums[*m]);
        assert!(sums_match(x, y), "sum({m}) differs: {x} vs {y}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_to_offline_moves_one_window_per_run_with_sums_unchanged() {
    let mut env = Env::new();
    env.events(4).await;
    env.apply(
        "mtc-realtime-to-offline.yaml",
        &[("suspend: true", "suspend: false")],
    );
    for _ in 0..2 {
        let tr = env.run("events-r2o");
        assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
        assert_eq!(tr["status"]["subtasksTotal"], 1, "{tr:#}");
    }
    let offline = env.table("table-events-offline.yaml");
    let realtime = env.table("table-events-realtime.yaml");
    let dest = Catalog::open(&offline.uri, Default::default())
        .await
        .unwrap();
    let watermark = dest
        .txn_version(&app_id::watermark("default", "events-r2o", None))
        .await
        .unwrap()
        .expect("a watermark committed");
    // Two one-day windows from the first day holding data.
    let first_day = env.start_ms - env.start_ms.rem_euclid(DAY_MS);
    assert_eq!(watermark, first_day + 2 * DAY_MS);
    let src = totals(&realtime, Some(TimeWindow::new(first_day, watermark))).await;
    let dst = totals(&offline, None).await;
    assert!(src.rows > 0);
    // Rolled up to the minute: fewer rows, the same sums.
    assert!(dst.rows <= src.rows && dst.rows > 0, "{src:?} vs {dst:?}");
    assert_sums(&src, &dst, &["clicks", "revenue"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_rollup_merges_hours_then_rolls_days_up_with_sums_unchanged() {
    let mut env = Env::new();
    env.imported_events(5).await;
    let offline = env.table("table-events-offline.yaml");
    let before = totals(&offline, None).await;
    env.apply(
        "mtc-merge-rollup.yaml",
        &[
            ("maxNumParallelBuckets: 4", "maxNumParallelBuckets: 200"),
            ("maxNumParallelBuckets: 2", "maxNumParallelBuckets: 20"),
        ],
    );
    let mut skipped = false;
    for _ in 0..8 {
        let tr = env.run("events-merge");
        let phase = tr["status"]["phase"].as_str().unwrap().to_string();
        assert!(phase == "Succeeded" || phase == "Skipped", "{tr:#}");
        let now = totals(&offline, None).await;
        assert_sums(&before, &now, &["clicks", "revenue"]);
        if phase == "Skipped" {
            skipped = true;
            break;
        }
    }
    assert!(skipped, "merge rollup never caught up");
    let after = totals(&offline, None).await;
    let segments = live(&offline).await;
    let levels: BTreeSet<&str> = segments.iter().filter_map(|s| s.merge_level()).collect();
    // Every finished day went through the hourly level and was rolled up into a day.
    assert!(levels.contains("1day"), "{levels:?}");
    assert!(after.rows < before.rows, "the daily rollup reduced nothing");
    assert_sums(&before, &after, &["clicks", "revenue"]);
}

/// MergeRollup over a REALTIME table of 6-hour stream segments with hourly buckets: every
/// segment spans six buckets, so Pinot's walk (it stops after a bucket holding a segment
/// that reaches past it) merges one segment period a run, 11 runs here. The buckets a segment
/// joins are one group instead, and a run takes `maxNumParallelBuckets` (24) buckets: 66
/// hours in 3 runs, then one that finds nothing. 720,000 rows, four subtasks a run at
/// 8 MiB each (their sorts spill); after every run the table holds the same row multiset,
/// and each merged segment holds one hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_rollup_catches_up_a_realtime_table_of_spanning_segments_24_hours_a_run() {
    use minion_e2e::rows::TableRows;
    let env = Env::new();
    env.apply("table-events-realtime.yaml", &[]);
    let realtime = env.table("table-events-realtime.yaml");
    realtime_events(&realtime, &env.data(), 3, 30_000).await;
    let before = TableRows::read(&realtime).await;
    assert_eq!(before.segments.len(), 24);
    let expected = before.multiset();
    assert_eq!(expected.rows, 720_000);
    env.apply(
        "mtc-merge-rollup.yaml",
        &[
            (
                "  table: events-offline\n",
                "  table: events-realtime\n  memoryBudget: 8Mi\n",
            ),
            ("maxNumParallelBuckets: 4", "maxNumParallelBuckets: 24"),
            (
                "      - name: 1day\n        bucketTimePeriod: 1d\n        bufferTimePeriod: 2d\n        \
                 roundBucketTimePeriod: 1h\n        mergeType: rollup\n        \
                 maxNumRecordsPerSegment: 5000000\n        maxNumParallelBuckets: 2\n        \
                 eraseDimensionValues: [user_id]\n",
                "",
            ),
        ],
    );
    let mut succeeded = 0;
    let mut spilled = 0;
    let mut hours_per_run = Vec::new();
    for _ in 0..6 {
        let tr = env.run("events-merge");
        let status = &tr["status"];
        let phase = status["phase"].as_str().unwrap().to_string();
        let after = TableRows::read(&realtime).await;
        assert_eq!(
            after.multiset(),
            expected,
            "after a run: {}",
            after.describe()
        );
        if phase == "Skipped" {
            assert_eq!(status["reason"], "NothingToMerge", "{tr:#}");
            break;
        }
        assert_eq!(phase, "Succeeded", "{tr:#}");
        succeeded += 1;
        let mut hours = 0;
        for unit in status["plan"].as_array().unwrap() {
            let (start, end) = (
                unit["windowStartMs"].as_i64().unwrap(),
                unit["windowEndMs"].as_i64().unwrap(),
            );
            hours += (end - start) / HOUR_MS;
        }
        hours_per_run.push(hours);
        for s in status["subtasks"].as_array().into_iter().flatten() {
            let spec = s["specUri"].as_str().unwrap().trim_start_matches("file://");
            let manifest = Path::new(spec).with_file_name("_manifest.json");
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
            spilled += manifest["peakSpillBytes"].as_u64().unwrap_or(0);
        }
    }
    // Four 6-hour groups a run (one subtask each), the last run three; Pinot's walk: 11 runs.
    assert_eq!(hours_per_run, vec![24, 24, 18], "{succeeded} runs");
    assert!(spilled > 0, "no subtask spilled under its 8 MiB budget");
    let after = TableRows::read(&realtime).await;
    let (merged, stream): (Vec<&SegmentRef>, Vec<&SegmentRef>) = after
        .segments
        .iter()
        .map(|s| &s.segment)
        .partition(|seg| seg.merge_level().is_some());
    assert_eq!(
        (merged.len(), stream.len()),
        (66, 2),
        "{}",
        after.describe()
    );
    for seg in &merged {
        assert_eq!(seg.merge_level(), Some("1hour"));
        let (min, max) = (seg.min_time_ms.unwrap(), seg.max_time_ms.unwrap());
        assert_eq!(min.div_euclid(HOUR_MS), max.div_euclid(HOUR_MS), "{seg:?}");
    }
    // What is left unmerged is the latest segment of each stream partition, after every
    // merged hour.
    let merged_end = merged.iter().filter_map(|s| s.max_time_ms).max().unwrap();
    let partitions: BTreeSet<Option<u32>> = stream.iter().map(|s| s.partition).collect();
    assert_eq!(partitions, BTreeSet::from([Some(0), Some(1)]));
    assert!(
        stream.iter().all(|s| s.min_time_ms.unwrap() > merged_end),
        "{}",
        after.describe()
    );
}

fn users_batch(rows: &[(String, i64, f64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, true),
        Field::new("plan", DataType::Utf8, true),
        Field::new("updated_at", DataType::Int64, false),
        Field::new("lifetime_revenue", DataType::Float64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "FR"))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "pro"))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_refresh_keeps_only_the_latest_version_of_each_primary_key() {
    let env = Env::new();
    env.apply("table-users-upsert.yaml", &[]);
    let users = env.table("table-users-upsert.yaml");
    let mut catalog = Catalog::create(&users.uri, &users.schema, Default::default())
        .await
        .unwrap();
    let day0 = Utc::now().timestamp_millis() - 30 * DAY_MS;
    let day0 = day0 - day0.rem_euclid(DAY_MS);
    // Three generations: all 400 users, then 200 of them updated, then 100 more updated
    // and 100 new users. Each a few days apart, all older than the 7-day buffer.
    let generation = |ids: std::ops::Range<u32>, day: i64, v: f64| -> Vec<(String, i64, f64)> {
        ids.map(|i| {
            (
                format!("user-{i:04}"),
                day0 + day * DAY_MS + i64::from(i),
                v,
            )
        })
        .collect()
    };
    let generations = [
        generation(0..400, 0, 1.0),
        generation(0..200, 5, 2.0),
        [generation(200..300, 9, 3.0), generation(400..500, 9, 3.0)].concat(),
    ];
    let root = PathBuf::from(users.uri.trim_start_matches("file://"));
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (g, rows) in generations.iter().enumerate() {
        let path = format!("stream/users_{g}.parquet");
        let batch = users_batch(rows);
        write_parquet(&root.join(&path), &batch);
        let min = rows.iter().map(|r| r.1).min().unwrap();
        let max = rows.iter().map(|r| r.1).max().unwrap();
        let segment = SegmentRef {
            path,
            rows: rows.len() as u64,
            bytes: std::fs::metadata(root.join(format!("stream/users_{g}.parquet")))
                .unwrap()
                .len(),
            min_time_ms: Some(min),
            max_time_ms: Some(max),
            partition: None,
            tags: Default::default(),
        };
        catalog.append(&[segment], &[]).await.unwrap();
        for r in rows {
            expected.insert(r.0.clone(), r.1);
        }
    }
    env.apply("mtc-refresh.yaml", &[]);
    let tr = env.run("users-refresh");
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut count = 0;
    for b in rows(&users).await {
        for (k, t) in strings(&b, "user_id")
            .into_iter()
            .zip(longs(&b, "updated_at"))
        {
            count += 1;
            assert!(seen.insert(k.clone(), t).is_none(), "{k} appears twice");
        }
    }
    assert_eq!(count, 500);
    assert_eq!(seen, expected, "a key lost its latest version");
}

/// The `users` upsert table with three segments of `4 × unit` users, then `2 × unit` of
/// them updated, then `unit` more updated and `unit` new ones (generations 0, 5 and 9 days
/// after a day 30 days ago), no validity file: returns the table, its directory and the
/// multiset of the latest version of each key (`5 × unit` rows; generation 0 holds `3 × unit`
/// superseded rows).
async fn upsert_users(env: &Env, unit: u32) -> (TableDef, PathBuf, minion_e2e::rows::Multiset) {
    use minion_e2e::rows::{Multiset, RowHasher};
    env.apply("table-users-upsert.yaml", &[]);
    let users = env.table("table-users-upsert.yaml");
    let mut catalog = Catalog::create(&users.uri, &users.schema, Default::default())
        .await
        .unwrap();
    let day0 = Utc::now().timestamp_millis() - 30 * DAY_MS;
    let day0 = day0 - day0.rem_euclid(DAY_MS);
    let generation = |ids: std::ops::Range<u32>, day: i64, v: f64| -> Vec<(String, i64, f64)> {
        ids.map(|i| {
            (
                format!("user-{i:07}"),
                day0 + day * DAY_MS + i64::from(i),
                v,
            )
        })
        .collect()
    };
    let generations = [
        generation(0..4 * unit, 0, 1.0),
        generation(0..2 * unit, 5, 2.0),
        [
            generation(2 * unit..3 * unit, 9, 3.0),
            generation(4 * unit..5 * unit, 9, 3.0),
        ]
        .concat(),
    ];
    let root = PathBuf::from(users.uri.trim_start_matches("file://"));
    let mut latest: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for (g, rows) in generations.iter().enumerate() {
        let path = format!("stream/users_{g}.parquet");
        write_parquet(&root.join(&path), &users_batch(rows));
        let segment = SegmentRef {
            path: path.clone(),
            rows: rows.len() as u64,
            bytes: std::fs::metadata(root.join(&path)).unwrap().len(),
            min_time_ms: rows.iter().map(|r| r.1).min(),
            max_time_ms: rows.iter().map(|r| r.1).max(),
            partition: None,
            tags: Default::default(),
        };
        catalog.append(&[segment], &[]).await.unwrap();
        for r in rows {
            latest.insert(r.0.clone(), (r.1, r.2));
        }
        assert!(!root.join(format!("{path}.validity")).exists(), "{path}");
    }
    let expected_rows: Vec<(String, i64, f64)> =
        latest.into_iter().map(|(k, (t, v))| (k, t, v)).collect();
    let hasher = RowHasher::new(&users.schema);
    let expected = Multiset::of(&hasher.rows(&users_batch(&expected_rows)));
    (users, root, expected)
}

/// The validity of an upsert table is computed by a worker, never by the operator: a table
/// whose segments have no validity file gets a first subtask of kind validity (its own
/// process, its own memory budget: here 8 MiB for 240,000 rows, so its sort spills), and the
/// run is planned from the files it wrote. The compacted table holds exactly the latest
/// version of each key (count and order-independent hash of every row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_refresh_computes_missing_validity_in_a_worker_subtask_that_spills() {
    use minion_e2e::rows::TableRows;
    let env = Env::new();
    let (users, root, expected) = upsert_users(&env, 30_000).await;
    assert_eq!(expected.rows, 150_000);
    env.apply(
        "mtc-refresh.yaml",
        &[("  table: users\n", "  table: users\n  memoryBudget: 8Mi\n")],
    );
    // A dry run computes nothing either: it says what a run would do first.
    let planned = env.ok(&["plan", "users-refresh"]);
    assert!(
        planned.contains("across 3 segment(s) in a worker subtask of kind validity"),
        "{planned}"
    );
    assert!(!root.join("stream/users_0.parquet.validity").exists());
    let out = env.ok(&["run", "users-refresh"]);
    let name = created_run(&out);
    env.up();
    let tr = env.task_run(&name);
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    // The validity subtask ran as a worker job of its own, before the numbered subtasks.
    let v = &tr["status"]["validity"];
    assert_eq!(v["state"], "Succeeded", "{tr:#}");
    let job = v["job"].as_str().unwrap();
    assert!(job.ends_with("-validity"), "{job}");
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["segments"], 3);
    assert_eq!(v["rows"], 240_000);
    // Generation 0 lost 90,000 users to newer versions; the others lost none.
    assert_eq!(v["invalidRows"], 90_000);
    assert!(
        v["spilledBytes"].as_u64().unwrap() > 0,
        "the validity worker never spilled under its 8 MiB budget: {v:#}"
    );
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(v["specUri"].as_str().unwrap().trim_start_matches("file://")).unwrap(),
    )
    .unwrap();
    assert_eq!(spec["kind"], "validity");
    assert_eq!(spec["memoryBudgetBytes"], 8 << 20);
    // The worker process wrote the files (a local job's log is that process's output).
    let log = env.state.join("jobs/default").join(format!("{job}.log"));
    assert!(log.exists(), "{}", log.display());
    let described = env.ok(&["describe", "tr", &name]);
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("  validity") && l.contains("Succeeded") && l.contains(job)),
        "{described}"
    );
    // The rewritten table: exactly the latest version of every key.
    let after = TableRows::read(&users).await;
    assert_eq!(after.multiset(), expected, "{}", after.describe());
    // The sidecars the worker wrote for the segments that stay live are still there.
    for s in ["stream/users_1.parquet", "stream/users_2.parquet"] {
        assert!(root.join(format!("{s}.validity")).exists(), "{s}");
    }
}

/// The validity phase survives a loop that dies between any two steps: the run driven one
/// step per process (each a restart from status), a worker SIGKILLed once (the validity
/// worker, the first one launched, or else the rewrite), and the loop dying right after its
/// Delta commit. After every step the table holds its rows as they were or exactly the
/// latest version of each key, never anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_refresh_with_its_validity_phase_killed_after_every_step_ends_with_the_latest_rows()
{
    use minion_e2e::rows::TableRows;
    use minion_e2e::steps::{StepOptions, View, step_through};
    let env = Env::new();
    let (users, root, expected) = upsert_users(&env, 1_000).await;
    let before = TableRows::read(&users).await.multiset();
    assert_eq!((before.rows, expected.rows), (8_000, 5_000));
    env.apply(
        "mtc-refresh.yaml",
        &[("  table: users\n", "  table: users\n  maxAttempts: 3\n")],
    );
    let name = created_run(&env.ok(&["run", "users-refresh"]));
    let cli = Minion {
        state: env.state.clone(),
    };
    let options = StepOptions {
        crash_after_commit: Some(root.clone()),
        ..StepOptions::default()
    };
    let users_check = users.clone();
    let report = step_through(&cli, &name, &options, async |v: View<'_>| {
        let now = TableRows::read(&users_check).await.multiset();
        assert!(
            now == before || now == expected,
            "{} after step {} ({}): the table holds {now}, neither {before} nor {expected}",
            v.run,
            v.step,
            v.phase()
        );
    })
    .await;
    assert_eq!(report.phase, "Succeeded", "{:#}", report.tr);
    let status = &report.tr["status"];
    assert_eq!(status["validity"]["state"], "Succeeded", "{status:#}");
    assert_eq!(status["validity"]["invalidRows"], 3_000, "{status:#}");
    let killed = report
        .killed
        .as_ref()
        .unwrap_or_else(|| panic!("no worker was killed: {status:#}"));
    if killed.job.ends_with("-validity") {
        assert!(
            status["validity"]["attempts"].as_u64().unwrap() > u64::from(killed.attempt),
            "the killed validity worker was not retried: {status:#}"
        );
    } else {
        assert!(
            report.attempts(killed.subtask) > u64::from(killed.attempt),
            "subtask {} was killed and not retried: {status:#}",
            killed.subtask
        );
    }
    assert!(!report.crashed_after_commit.is_empty(), "{status:#}");
    assert_eq!(TableRows::read(&users).await.multiset(), expected);
    println!(
        "refresh: {} steps; killed {:?}; crashed after the commits of steps {:?}; validity {:#}",
        report.steps, report.killed, report.crashed_after_commit, status["validity"]
    );
}

/// Events as CSV text (header row) and as JSON lines.
fn events_text(batch: &RecordBatch) -> (String, String) {
    let mut csv = String::from("ts,country,browser,device,user_id,clicks,revenue,latency_ms\n");
    let mut json = String::new();
    let ts = longs(batch, "ts");
    let clicks = longs(batch, "clicks");
    let country = strings(batch, "country");
    let user = strings(batch, "user_id");
    let revenue = batch
        .column_by_name("revenue")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>();
    for i in 0..batch.num_rows() {
        csv.push_str(&format!(
            "{},{},chrome,mobile,{},{},{},10.0\n",
            ts[i],
            country[i],
            user[i],
            clicks[i],
            revenue.value(i)
        ));
        json.push_str(&format!(
            "{{\"ts\":{},\"country\":\"{}\",\"user_id\":\"{}\",\"clicks\":{},\"revenue\":{},\"extra\":1}}\n",
            ts[i],
            country[i],
            user[i],
            clicks[i],
            revenue.value(i)
        ));
    }
    (csv, json)
}

fn batch_totals(batches: &[RecordBatch]) -> (u64, i64, f64) {
    let mut out = (0u64, 0i64, 0f64);
    for b in batches {
        out.0 += b.num_rows() as u64;
        out.1 += longs(b, "clicks").iter().sum::<i64>();
        out.2 += b
            .column_by_name("revenue")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>()
            .values()
            .iter()
            .sum::<f64>();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_ingestion_ingests_csv_json_and_parquet_once_and_a_rerun_ingests_nothing() {
    let env = Env::new();
    env.apply("table-events-offline.yaml", &[]);
    let offline = env.table("table-events-offline.yaml");
    let input = env.data().join("incoming/events");
    let day = Utc::now().timestamp_millis() - 10 * DAY_MS;
    let mut rng = demo::events::Rng::new(9);
    let mut written = Vec::new();
    // More files than a segment's tags carry inline: their list is stored beside the table.
    for i in 0..24 {
        let b = demo::events::event_batch(&mut rng, 60, day + i * HOUR_MS, day + (i + 1) * HOUR_MS);
        write_parquet(&input.join(format!("2024/part-{i}.parquet")), &b);
        written.push(b);
    }
    let b = demo::events::event_batch(&mut rng, 250, day, day + DAY_MS);
    let (csv, _) = events_text(&b);
    std::fs::write(input.join("batch.csv"), csv).unwrap();
    written.push(b);
    let b = demo::events::event_batch(&mut rng, 150, day, day + DAY_MS);
    let (_, json) = events_text(&b);
    std::fs::write(input.join("batch.json"), json).unwrap();
    written.push(b);
    // Not matched by any run's pattern, and hidden: never ingested.
    std::fs::write(input.join(".batch.csv.tmp"), "garbage").unwrap();
    let expected = batch_totals(&written);

    let runs = [
        ("ingest-parquet", "parquet", "**/*.parquet"),
        ("ingest-csv", "csv", "*.csv"),
        ("ingest-json", "json", "*.json"),
    ];
    for (name, format, pattern) in runs {
        let path = env.manifest(
            "taskrun-file-ingestion.yaml",
            &[
                ("name: events-ingest-2024-01", &format!("name: {name}")),
                ("inputFormat: parquet", &format!("inputFormat: {format}")),
                ("\"**/*.parquet\"", &format!("\"{pattern}\"")),
            ],
        );
        env.ok(&["execute", "-f", path.to_str().unwrap()]);
    }
    env.up();
    for (name, _, _) in runs {
        let tr = env.task_run(name);
        assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    }
    let t = totals(&offline, None).await;
    assert_eq!(t.rows, expected.0);
    assert_eq!(t.sums["clicks"], expected.1 as f64);
    assert!(sums_match(t.sums["revenue"], expected.2));

    // Scenario 19: a rerun after success ingests nothing new.
    let path = env.manifest(
        "taskrun-file-ingestion.yaml",
        &[("name: events-ingest-2024-01", "name: ingest-parquet-again")],
    );
    env.ok(&["execute", "-f", path.to_str().unwrap()]);
    env.up();
    let tr = env.task_run("ingest-parquet-again");
    assert_eq!(tr["status"]["phase"], "Skipped", "{tr:#}");
    assert_eq!(tr["status"]["reason"], "NoNewFiles", "{tr:#}");
    assert_eq!(totals(&offline, None).await, t);

    // MergeRollup merges the ingested segments; the merged ones still name their files, so
    // ingesting again still finds nothing new and counts no row twice.
    env.apply("mtc-merge-rollup.yaml", &[]);
    let mut merged = false;
    for _ in 0..6 {
        let tr = env.run("events-merge");
        let phase = tr["status"]["phase"].as_str().unwrap().to_string();
        assert!(phase == "Succeeded" || phase == "Skipped", "{tr:#}");
        merged |= phase == "Succeeded";
        if phase == "Skipped" {
            break;
        }
    }
    assert!(merged, "the ingested segments were never merged");
    assert!(
        live(&offline)
            .await
            .iter()
            .any(|s| s.merge_level().is_some()),
        "no merged segment"
    );
    let merged_totals = totals(&offline, None).await;
    assert_eq!(merged_totals.sums["clicks"], expected.1 as f64);
    let path = env.manifest(
        "taskrun-file-ingestion.yaml",
        &[(
            "name: events-ingest-2024-01",
            "name: ingest-parquet-after-merge",
        )],
    );
    env.ok(&["execute", "-f", path.to_str().unwrap()]);
    env.up();
    let tr = env.task_run("ingest-parquet-after-merge");
    assert_eq!(tr["status"]["phase"], "Skipped", "{tr:#}");
    assert_eq!(tr["status"]["reason"], "NoNewFiles", "{tr:#}");
    assert_eq!(totals(&offline, None).await, merged_totals);
    // Every segment's tags stay bounded, however many files were merged into it: long lists
    // of ingested files are named by reference.
    let segments = live(&offline).await;
    for s in &segments {
        let size: usize = s.tags.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(size < 1024, "{} carries {size} bytes of tags", s.path);
    }
    assert!(
        segments.iter().any(|s| s
            .tags
            .contains_key(minion_contract::segment::TAG_SOURCE_FILES_REF)),
        "no list stored by reference"
    );

    // A new file is ingested, alone: the merged segments' files are not ingested again.
    let b = demo::events::event_batch(&mut rng, 70, day, day + HOUR_MS);
    write_parquet(&input.join("2024/part-new.parquet"), &b);
    let path = env.manifest(
        "taskrun-file-ingestion.yaml",
        &[("name: events-ingest-2024-01", "name: ingest-parquet-new")],
    );
    env.ok(&["execute", "-f", path.to_str().unwrap()]);
    env.up();
    let tr = env.task_run("ingest-parquet-new");
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    let after = totals(&offline, None).await;
    let new = batch_totals(std::slice::from_ref(&b));
    assert_eq!(after.rows, merged_totals.rows + new.0);
    assert_eq!(
        after.sums["clicks"],
        merged_totals.sums["clicks"] + new.1 as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_backfill_replaces_one_day_all_or_none_and_leaves_other_days_alone() {
    let mut env = Env::new();
    env.imported_events(5).await;
    backfill_one_day(&env, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_filter_cannot_widen_the_range_it_replaces() {
    let mut env = Env::new();
    env.imported_events(5).await;
    // Text that would close the generated parenthesis is refused at apply, with the position.
    let injected = env.manifest(
        "taskrun-backfill.yaml",
        &[("country = 'FR'", "country = 'FR') OR (ts >= 0")],
    );
    let out = Minion {
        state: env.state.clone(),
    }
    .run(&["execute", "-f", injected.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("TaskRun default/events-backfill-fr-2024-01")
            && stderr.contains("spec.config.segmentBackfillTask.filter")
            && stderr.contains("at character 14 (\")\")"),
        "{stderr}"
    );
    // A filter whose own OR matches every row stays inside the range: every row of the day is
    // replaced, every other day is left alone.
    backfill_one_day(&env, Some("country = 'XX' OR ts >= 0")).await;
}

/// Backfills the first whole day of the imported events with 400 rows spilling over it
/// (`filter` `None`, or one matching every row), and checks the day holds exactly the input's
/// rows inside it and the other days are unchanged.
async fn backfill_one_day(env: &Env, filter: Option<&str>) {
    let offline = env.table("table-events-offline.yaml");
    let first_day = env.start_ms - env.start_ms.rem_euclid(DAY_MS) + DAY_MS;
    let range = TimeWindow::new(first_day, first_day + DAY_MS);
    let before = totals(&offline, None).await;
    let inside_before = totals(&offline, Some(range)).await;
    assert!(inside_before.rows > 0);

    let input = env.data().join("backfill/day");
    let mut rng = demo::events::Rng::new(5);
    // Rows spill over the range on both sides: only those inside are kept.
    let b = demo::events::event_batch(
        &mut rng,
        400,
        range.start_ms - HOUR_MS,
        range.end_ms + HOUR_MS,
    );
    write_parquet(&input.join("corrected.parquet"), &b);
    let inside: Vec<usize> = longs(&b, "ts")
        .iter()
        .enumerate()
        .filter(|(_, t)| range.contains(**t))
        .map(|(i, _)| i)
        .collect();
    let kept = arrow::compute::take_record_batch(
        &b,
        &arrow::array::UInt32Array::from_iter_values(inside.iter().map(|i| *i as u32)),
    )
    .unwrap();
    let expected_inside = batch_totals(&[kept]);

    let start = chrono::DateTime::from_timestamp_millis(range.start_ms).unwrap();
    let path = env.manifest(
        "taskrun-backfill.yaml",
        &[
            (
                "startTime: \"2024-01-01T00:00:00Z\"",
                &format!("startTime: \"{}\"", start.to_rfc3339()),
            ),
            (
                "endTime: 1706745600000",
                &format!("endTime: {}", range.end_ms),
            ),
            match filter {
                None => ("      filter: \"country = 'FR'\"\n", ""),
                Some(f) => ("country = 'FR'", f),
            },
            ("backfill/events_fr_2024_01/", "backfill/day/"),
        ],
    );
    env.ok(&["execute", "-f", path.to_str().unwrap()]);
    env.up();
    let tr = env.task_run("events-backfill-fr-2024-01");
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");

    let inside_after = totals(&offline, Some(range)).await;
    assert_eq!(inside_after.rows, expected_inside.0);
    assert_eq!(inside_after.sums["clicks"], expected_inside.1 as f64);
    assert!(sums_match(inside_after.sums["revenue"], expected_inside.2));
    let after = totals(&offline, None).await;
    // Outside the range: unchanged.
    assert_eq!(
        after.rows - inside_after.rows,
        before.rows - inside_before.rows
    );
    for m in ["clicks", "revenue"] {
        let a = after.sums[m] - inside_after.sums[m];
        let b = before.sums[m] - inside_before.sums[m];
        assert!(sums_match(a, b), "sum({m}) outside the range: {a} vs {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_matching_rows_and_keeps_every_other_row() {
    let mut env = Env::new();
    env.imported_events(4).await;
    let offline = env.table("table-events-offline.yaml");
    let keep = |batches: &[RecordBatch]| -> (u64, BTreeMap<String, u64>) {
        let mut fr = 0;
        let mut others: BTreeMap<String, u64> = BTreeMap::new();
        for b in batches {
            for (c, u) in strings(b, "country").into_iter().zip(strings(b, "user_id")) {
                if c == "FR" {
                    fr += 1;
                } else {
                    *others.entry(format!("{c}/{u}")).or_default() += 1;
                }
            }
        }
        (fr, others)
    };
    let (fr_before, others_before) = keep(&rows(&offline).await);
    assert!(fr_before > 0);
    let before = totals(&offline, None).await;
    env.apply(
        "mtc-purge.yaml",
        &[
            ("user_id = 'u-42'", "country = 'FR'"),
            ("tableMaxNumTasks: 4", "tableMaxNumTasks: 100"),
        ],
    );
    let tr = env.run("events-purge");
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    let (fr_after, others_after) = keep(&rows(&offline).await);
    assert_eq!(fr_after, 0);
    assert_eq!(
        others_after, others_before,
        "rows not matching the predicate changed"
    );
    let after = totals(&offline, None).await;
    assert_eq!(after.rows, before.rows - fr_before);
    // Purged again only after lastPurgeTimeThresholdPeriod: the next run has nothing to do.
    let tr = env.run("events-purge");
    assert_eq!(tr["status"]["phase"], "Skipped", "{tr:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_adds_parquet_csv_and_json_files_as_segments_once() {
    let env = Env::new();
    // A REALTIME table is created by its writer; here `push` is the writer.
    env.apply("table-events-realtime.yaml", &[CREATE]);
    let realtime = env.table("table-events-realtime.yaml");
    let input = env.dir.path().join("push");
    std::fs::create_dir_all(&input).unwrap();
    let day = Utc::now().timestamp_millis() - DAY_MS;
    let mut rng = demo::events::Rng::new(3);
    let a = demo::events::event_batch(&mut rng, 120, day, day + HOUR_MS);
    write_parquet(&input.join("a.parquet"), &a);
    let b = demo::events::event_batch(&mut rng, 80, day, day + HOUR_MS);
    std::fs::write(input.join("b.csv"), events_text(&b).0).unwrap();
    let c = demo::events::event_batch(&mut rng, 40, day, day + HOUR_MS);
    std::fs::write(input.join("c.json"), events_text(&c).1).unwrap();
    let expected = batch_totals(&[a, b, c]);
    let files: Vec<String> = ["a.parquet", "b.csv", "c.json"]
        .iter()
        .map(|f| input.join(f).to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["push", "events-realtime"];
    args.extend(files.iter().map(String::as_str));
    let out = env.ok(&args);
    assert!(out.contains("240 row(s) added from 3 file(s)"), "{out}");
    let t = totals(&realtime, None).await;
    assert_eq!(t.rows, expected.0);
    assert_eq!(t.sums["clicks"], expected.1 as f64);
    assert!(sums_match(t.sums["revenue"], expected.2));
    let out = env.ok(&args);
    assert!(out.contains("nothing to push"), "{out}");
    assert_eq!(totals(&realtime, None).await, t);
}

/// The edit that lets the operator create a REALTIME table (`spec.create: true`).
const CREATE: (&str, &str) = (
    "  tableType: REALTIME\n",
    "  tableType: REALTIME\n  create: true\n",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_table_where_there_is_none_is_not_found_and_not_created() {
    let env = Env::new();
    env.apply("table-events-realtime.yaml", &[]);
    let realtime = env.table("table-events-realtime.yaml");
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let table: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "tbl", "events-realtime", "-o", "json"])).unwrap();
    let ready = table["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .unwrap_or_else(|| panic!("no Ready condition: {table:#}"));
    assert_eq!(ready["status"], "False", "{table:#}");
    assert_eq!(ready["reason"], "TableNotFound", "{table:#}");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains(&realtime.uri) && message.contains("spec.create: true"),
        "{message}"
    );
    // Nothing was written where the Table points.
    let root = PathBuf::from(realtime.uri.trim_start_matches("file://"));
    assert!(
        !root.join("_delta_log").exists(),
        "a table was created at {root:?}"
    );

    // With `create: true` the operator creates it, empty.
    env.apply("table-events-realtime.yaml", &[CREATE]);
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let table: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "tbl", "events-realtime", "-o", "json"])).unwrap();
    let ready = table["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .unwrap();
    assert_eq!(ready["status"], "True", "{table:#}");
    assert!(root.join("_delta_log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_nested_in_another_tables_location_is_refused_naming_both() {
    let env = Env::new();
    env.apply("table-events-offline.yaml", &[]);
    // A second Table inside the first one's directory.
    let nested = env.manifest(
        "table-events-realtime.yaml",
        &[("/events_realtime", "/events_offline/realtime")],
    );
    let out = Minion {
        state: env.state.clone(),
    }
    .run(&["apply", "-f", nested.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Table default/events-realtime")
            && stderr.contains("lies inside Table default/events-offline")
            && stderr.contains("spec.uri"),
        "{stderr}"
    );
    // Nothing was stored.
    let tables = env.ok(&["get", "tbl"]);
    assert!(!tables.contains("events-realtime"), "{tables}");
}

/// As Pinot: RealtimeToOffline from an upsert REALTIME table is refused at apply (the OFFLINE
/// table would keep superseded versions), naming the field and the way out; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_to_offline_from_an_upsert_table_is_refused_at_apply() {
    let env = Env::new();
    env.apply(
        "table-events-realtime.yaml",
        &[
            CREATE,
            (
                "    sortedColumn: ts",
                "    sortedColumn: ts\n    primaryKey: [user_id]\n    comparisonColumn: ts",
            ),
        ],
    );
    env.apply("table-events-offline.yaml", &[]);
    let cfg = env.manifest("mtc-realtime-to-offline.yaml", &[]);
    let out = Minion {
        state: env.state.clone(),
    }
    .run(&["apply", "-f", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("spec.sourceTable")
            && stderr.contains("is an upsert table")
            && stderr.contains("SegmentRefreshTask"),
        "{stderr}"
    );
    let configs = env.ok(&["get", "mtc"]);
    assert!(!configs.contains("events-r2o"), "{configs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_inline_runs_beyond_the_history_limit_are_deleted_with_their_directories() {
    let env = Env::new();
    env.apply("table-events-realtime.yaml", &[CREATE]);
    let realtime = env.table("table-events-realtime.yaml");
    let input = env.dir.path().join("push");
    std::fs::create_dir_all(&input).unwrap();
    let day = Utc::now().timestamp_millis() - DAY_MS;
    let mut rng = demo::events::Rng::new(5);
    let limit = minion_operator::control::configs::INLINE_RUNS_HISTORY_LIMIT as usize;
    for i in 0..limit + 3 {
        let file = input.join(format!("f{i}.csv"));
        let batch = demo::events::event_batch(&mut rng, 2, day, day + HOUR_MS);
        std::fs::write(&file, events_text(&batch).0).unwrap();
        env.ok(&["push", "events-realtime", file.to_str().unwrap()]);
    }
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
    let runs = env.ok(&["get", "tr"]);
    let pushes = runs.lines().filter(|l| l.starts_with("push-")).count();
    assert_eq!(pushes, limit, "{runs}");
    let dirs = std::fs::read_dir(
        PathBuf::from(realtime.uri.trim_start_matches("file://")).join("_minion/runs/default"),
    )
    .map(|d| d.count())
    .unwrap_or(0);
    assert_eq!(dirs, limit, "one run directory per kept run");
    // Every pushed row is still there.
    assert_eq!(totals(&realtime, None).await.rows, 2 * (limit as u64 + 3));
}

/// The run commands of local mode: `suspend`/`resume` set the config's `spec.suspend`;
/// `cancel` ends a run `Cancelled` with nothing committed; `retry` starts a new run with the
/// cancelled run's spec, which imports every row; `logs` prints a subtask Job's worker output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_retry_suspend_resume_and_logs_in_local_mode() {
    let mut env = Env::new();
    env.events(5).await;
    env.apply("mtc-segment-import.yaml", &[]);
    let offline = env.table("table-events-offline.yaml");
    let suspended = |env: &Env| -> bool {
        let cfg: serde_json::Value =
            serde_json::from_str(&env.ok(&["get", "mtc", "events-import", "-o", "json"])).unwrap();
        cfg["spec"]["suspend"].as_bool().unwrap_or(false)
    };
    assert!(!suspended(&env));
    assert!(env.ok(&["suspend", "events-import"]).contains("suspended"));
    assert!(suspended(&env));
    assert!(env.ok(&["resume", "events-import"]).contains("resumed"));
    assert!(!suspended(&env));

    let name = created_run(&env.ok(&["run", "events-import"]));
    env.ok(&["cancel", &name]);
    env.up();
    let tr = env.task_run(&name);
    assert_eq!(tr["status"]["phase"], "Cancelled", "{tr:#}");
    assert!(live(&offline).await.is_empty(), "a cancelled run committed");

    let out = env.ok(&["retry", &name]);
    let retry = format!("{name}-retry-1");
    assert!(
        out.contains(&format!("taskrun.minion.dev/{retry} created")),
        "{out}"
    );
    env.up();
    let tr = env.task_run(&retry);
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    assert!(!live(&offline).await.is_empty());
    let logs = env.ok(&["logs", &retry, "--subtask", "0"]);
    assert!(logs.contains("minion worker: "), "{logs}");
    let out = Minion {
        state: env.state.clone(),
    }
    .run(&["retry", &retry]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is Succeeded"),
        "{out:?}"
    );
}

// ---- Time columns as Pinot declares them ----------------------------------------------------

impl Env {
    /// Writes `text` (URIs under `file:///tmp/minion/` moved into the temp dir) as manifest
    /// `file` and applies it.
    fn apply_text(&self, file: &str, text: &str) -> PathBuf {
        let path = self.manifests.join(file);
        let text = text.replace(
            "file:///tmp/minion/",
            &format!("file://{}/", self.data().display()),
        );
        std::fs::write(&path, text).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()]);
        path
    }

    /// `minion apply` of `config/<file>` with `edits`, which must be refused; its stderr.
    fn apply_refused(&self, file: &str, edits: &[(&str, &str)]) -> String {
        let path = self.manifest(file, edits);
        let out = Minion {
            state: self.state.clone(),
        }
        .run(&["apply", "-f", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{file} with {edits:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Pushes `batch` into `table` as a Parquet file named `file`.
    fn push(&self, table: &str, file: &str, batch: &RecordBatch) {
        let dir = self.dir.path().join("push");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        write_parquet(&path, batch);
        self.ok(&["push", table, path.to_str().unwrap()]);
    }
}

/// A visits table whose time column `day` is a `yyyyMMdd` string of Los Angeles dates.
fn visits_table(name: &str, table_type: &str, time_format: &str) -> String {
    format!(
        "apiVersion: minion.dev/v1alpha1
kind: Table
metadata: {{name: {name}, namespace: default}}
spec:
  tableType: {table_type}
  create: true
  uri: file:///tmp/minion/{name}
  schema:
    timeColumn: day
    timeFormat: \"{time_format}\"
    columns:
      - {{name: day, dataType: STRING, role: dateTime}}
      - {{name: country, dataType: STRING, role: dimension}}
      - {{name: user_id, dataType: STRING, role: dimension}}
      - {{name: clicks, dataType: LONG, role: metric}}
"
    )
}

fn visits_batch(rows: &[(String, String, String, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("day", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("clicks", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.2))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ],
    )
    .unwrap()
}

/// Per date: rows, groups of (country, user) and the sum of clicks.
type ByDay = BTreeMap<String, (u64, BTreeSet<(String, String)>, i64)>;

/// [`ByDay`] of every live segment, and the set of dates of each segment.
async fn visits_by_day(def: &TableDef) -> (ByDay, Vec<BTreeSet<String>>) {
    let root = PathBuf::from(def.uri.trim_start_matches("file://"));
    let mut by_day = ByDay::new();
    let mut per_segment = Vec::new();
    for s in live(def).await {
        let file = std::fs::File::open(root.join(&s.path)).unwrap();
        let mut days = BTreeSet::new();
        for b in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            let (d, c, u, k) = (
                strings(&b, "day"),
                strings(&b, "country"),
                strings(&b, "user_id"),
                longs(&b, "clicks"),
            );
            for i in 0..b.num_rows() {
                let e = by_day.entry(d[i].clone()).or_default();
                e.0 += 1;
                e.1.insert((c[i].clone(), u[i].clone()));
                e.2 += k[i];
                days.insert(d[i].clone());
            }
        }
        per_segment.push(days);
    }
    (by_day, per_segment)
}

/// The classic bug of date strings in a zone: 20240101 in Los Angeles is 08:00Z, and rounding
/// 08:00Z down to the UTC day writes 20231231 back. Here the dates around the start of
/// daylight saving time (2024-03-10) move from REALTIME to OFFLINE one day per run, every
/// segment spanning all of them, rolled up by day: each date lands whole in its own window
/// with its own date, and the watermark is the calendar day after the last one moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_to_offline_moves_los_angeles_dates_one_calendar_day_at_a_time() {
    let env = Env::new();
    // The two spellings of one format: Pinot's old one on the source, the new one on the
    // destination.
    env.apply_text(
        "visits-realtime.yaml",
        &visits_table(
            "visits-realtime",
            "REALTIME",
            "1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd tz(America/Los_Angeles)",
        ),
    );
    env.apply_text(
        "visits-offline.yaml",
        &visits_table(
            "visits-offline",
            "OFFLINE",
            "SIMPLE_DATE_FORMAT|yyyyMMdd|America/Los_Angeles",
        ),
    );
    let days: Vec<String> = (8..=13).map(|d| format!("202403{d:02}")).collect();
    let mut rng = demo::events::Rng::new(11);
    for f in 0..3 {
        let rows: Vec<(String, String, String, i64)> = (0..60_000)
            .map(|i| {
                let day = days[(i + f) % days.len()].clone();
                let country = ["US", "MX", "CA", "JP"][rng.below(4) as usize].to_string();
                let user = format!("u{}", rng.below(5_000));
                (day, country, user, 1 + rng.below(9) as i64)
            })
            .collect();
        env.push(
            "visits-realtime",
            &format!("visits-{f}.parquet"),
            &visits_batch(&rows),
        );
    }
    // The latest segment holds the day after; the moved days end before it.
    env.push(
        "visits-realtime",
        "visits-latest.parquet",
        &visits_batch(&[("20240314".into(), "US".into(), "u1".into(), 1)]),
    );
    let realtime = env.table("visits-realtime.yaml");
    let offline = env.table("visits-offline.yaml");
    env.apply_text(
        "visits-r2o.yaml",
        "apiVersion: minion.dev/v1alpha1
kind: MinionTaskConfig
metadata: {name: visits-r2o, namespace: default}
spec:
  table: visits-offline
  sourceTable: visits-realtime
  taskType: RealtimeToOfflineSegmentsTask
  schedule: \"0 0 * * * ?\"
  realtimeToOfflineSegmentsTask:
    bucketTimePeriod: 1d
    bufferTimePeriod: 1d
    roundBucketTimePeriod: 1d
    mergeType: rollup
    aggregationTypes: {clicks: sum}
",
    );
    for _ in &days {
        let tr = env.run("visits-r2o");
        assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    }
    let (source, _) = visits_by_day(&realtime).await;
    let (moved, segments) = visits_by_day(&offline).await;
    assert_eq!(
        moved.keys().collect::<Vec<_>>(),
        days.iter().collect::<Vec<_>>()
    );
    for day in &days {
        let (src_rows, src_groups, src_clicks) = &source[day];
        let (rows, groups, clicks) = &moved[day];
        assert!(*src_rows > *rows, "{day}: nothing rolled up");
        assert_eq!(*rows as usize, groups.len(), "{day}: one row per group");
        assert_eq!(groups, src_groups, "{day}: groups differ");
        assert_eq!(clicks, src_clicks, "{day}: sum(clicks) differs");
    }
    for s in &segments {
        assert_eq!(s.len(), 1, "a segment holds one date: {s:?}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "mtc", "visits-r2o", "-o", "json"])).unwrap();
    // 2024-03-14 on the column's calendar: the day after the last moved date.
    assert_eq!(
        cfg["status"]["watermarks"][0]["watermarkMs"], 1_710_374_400_000_i64,
        "{cfg:#}"
    );
}

/// An epoch column counting 5-minute steps (`5:MINUTES:EPOCH`) rolled up to hours by
/// MergeRollup: every value written back is a whole hour in 5-minute steps, every hour keeps
/// its sum, and each merged segment stays inside its day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_rollup_rounds_a_five_minute_epoch_column_to_hours_exactly() {
    let env = Env::new();
    env.apply_text(
        "taps.yaml",
        "apiVersion: minion.dev/v1alpha1
kind: Table
metadata: {name: taps, namespace: default}
spec:
  tableType: OFFLINE
  uri: file:///tmp/minion/taps
  schema:
    timeColumn: slot
    timeFormat: \"5:MINUTES:EPOCH\"
    columns:
      - {name: slot, dataType: LONG, role: dateTime}
      - {name: country, dataType: STRING, role: dimension}
      - {name: taps, dataType: LONG, role: metric}
",
    );
    // Two days ending three days ago, in 5-minute steps.
    let start_slot = (Utc::now().timestamp_millis() - 5 * DAY_MS).div_euclid(DAY_MS) * 288;
    let schema = Arc::new(Schema::new(vec![
        Field::new("slot", DataType::Int64, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("taps", DataType::Int64, true),
    ]));
    let mut rng = demo::events::Rng::new(5);
    let mut per_hour: BTreeMap<i64, i64> = BTreeMap::new();
    for f in 0..2 {
        let mut slots = Vec::new();
        let mut countries = Vec::new();
        let mut taps = Vec::new();
        for _ in 0..100_000 {
            let slot = start_slot + rng.below(2 * 288) as i64;
            let t = 1 + rng.below(5) as i64;
            *per_hour.entry(slot.div_euclid(12)).or_default() += t;
            slots.push(slot);
            countries.push(["US", "MX", "CA"][rng.below(3) as usize]);
            taps.push(t);
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(slots)),
                Arc::new(StringArray::from(countries)),
                Arc::new(Int64Array::from(taps)),
            ],
        )
        .unwrap();
        env.push("taps", &format!("taps-{f}.parquet"), &batch);
    }
    env.apply_text(
        "taps-merge.yaml",
        "apiVersion: minion.dev/v1alpha1
kind: MinionTaskConfig
metadata: {name: taps-merge, namespace: default}
spec:
  table: taps
  taskType: MergeRollupTask
  schedule: \"0 0 * * * ?\"
  mergeRollupTask:
    aggregationTypes: {taps: sum}
    levels:
      - name: 1day
        bucketTimePeriod: 1d
        bufferTimePeriod: 1d
        roundBucketTimePeriod: 1h
        mergeType: rollup
        maxNumParallelBuckets: 4
",
    );
    let mut skipped = false;
    for _ in 0..4 {
        let tr = env.run("taps-merge");
        let phase = tr["status"]["phase"].as_str().unwrap().to_string();
        assert!(phase == "Succeeded" || phase == "Skipped", "{tr:#}");
        if phase == "Skipped" {
            skipped = true;
            break;
        }
    }
    assert!(skipped, "merge rollup never caught up");
    let taps = env.table("taps.yaml");
    let mut merged: BTreeMap<i64, i64> = BTreeMap::new();
    for b in rows(&taps).await {
        for (slot, t) in longs(&b, "slot").into_iter().zip(longs(&b, "taps")) {
            assert_eq!(slot.rem_euclid(12), 0, "slot {slot} is not a whole hour");
            *merged.entry(slot / 12).or_default() += t;
        }
    }
    assert_eq!(merged, per_hour);
    for s in live(&taps).await {
        let (lo, hi) = (s.min_time_ms.unwrap(), s.max_time_ms.unwrap());
        assert_eq!(s.merge_level(), Some("1day"), "{s:?}");
        assert_eq!(
            lo.div_euclid(DAY_MS),
            hi.div_euclid(DAY_MS),
            "{s:?} spans days"
        );
        assert_eq!(lo.rem_euclid(HOUR_MS), 0, "{s:?}");
    }
}

/// A rollup keeps distinct counts and quantiles instead of losing them: the hourly level of
/// `config/mtc-visits-rollup.yaml` builds theta, HLL, KLL and avg metrics from `user_id` and
/// `latency_ms` before it erases them (300,000 rows over 2,000 pages under an 8 MiB budget, so the
/// sort spills), and the daily level erases the page and merges those sketches. Per country
/// and day, each sketch equals
/// the union of its rows' one-value sketches (the same bytes for theta; the same registers
/// for HLL), its estimate lies within three standard deviations of the true distinct count,
/// the KLL sketch counts every row with the exact minimum and maximum and a median within
/// its rank error, and the avg pair is the exact sum and count. DataSketches' C++ library
/// (Python `datasketches`) reads every sketch and builds the same ones from the raw values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_derives_sketches_from_the_columns_it_erases_and_merges_them_exactly() {
    use datasketches::common::{NumStdDev, SearchCriteria};
    use datasketches::hash::value::raw_bytes;
    use datasketches::hll::{HllSketch, HllUnion};
    use datasketches::kll::{KllFloat, KllSketch};
    use datasketches::theta::{CompactThetaSketch, ThetaSketchBuilder, ThetaUnionBuilder};

    let env = Env::new();
    env.apply("table-visits.yaml", &[]);
    env.apply(
        "mtc-visits-rollup.yaml",
        &[(
            "  table: visits\n",
            "  table: visits\n  memoryBudget: 8Mi\n",
        )],
    );
    let visits = env.table("table-visits.yaml");
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("page", DataType::Utf8, true),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("latency_ms", DataType::Int64, true),
        Field::new("views", DataType::Int64, true),
        Field::new("users_theta", DataType::Binary, true),
        Field::new("users_hll", DataType::Binary, true),
        Field::new("latency_kll", DataType::Binary, true),
        Field::new("latency_avg", DataType::Binary, true),
    ]));
    // Two whole days ending three days ago.
    let day0 = (Utc::now().timestamp_millis() - 5 * DAY_MS).div_euclid(DAY_MS) * DAY_MS;
    type Group = (String, i64);
    let mut raw: BTreeMap<Group, (Vec<String>, Vec<i64>)> = BTreeMap::new();
    let mut rng = demo::events::Rng::new(22);
    for f in 0..3 {
        let (mut ts, mut country, mut page) = (vec![], vec![], vec![]);
        let (mut user, mut latency) = (vec![], vec![]);
        for _ in 0..100_000 {
            let t = day0 + rng.below(2 * DAY_MS as u64) as i64;
            let c = ["US", "MX", "CA"][rng.below(3) as usize];
            let p = format!("/page/{}", rng.below(2_000));
            let u = format!("user-{}", rng.below(40_000));
            let l = 1 + rng.below(2_000) as i64;
            let g = raw
                .entry((c.to_string(), t.div_euclid(DAY_MS)))
                .or_default();
            g.0.push(u.clone());
            g.1.push(l);
            ts.push(t);
            country.push(c);
            page.push(p);
            user.push(u);
            latency.push(l);
        }
        let n = ts.len();
        let none = || Arc::new(arrow::array::BinaryArray::from(vec![None::<&[u8]>; n]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ts)),
                Arc::new(StringArray::from(country)),
                Arc::new(StringArray::from(page)),
                Arc::new(StringArray::from(user)),
                Arc::new(Int64Array::from(latency)),
                Arc::new(Int64Array::from(vec![1; n])),
                none(),
                none(),
                none(),
                none(),
            ],
        )
        .unwrap();
        env.push("visits", &format!("visits-{f}.parquet"), &batch);
    }
    let mut spilled = 0;
    let mut caught_up = false;
    let mut runs = Vec::new();
    for _ in 0..8 {
        let tr = env.run("visits-rollup");
        runs.push(tr["status"].clone());
        let phase = tr["status"]["phase"].as_str().unwrap().to_string();
        assert!(phase == "Succeeded" || phase == "Skipped", "{tr:#}");
        for s in tr["status"]["subtasks"].as_array().into_iter().flatten() {
            // The worker's result manifest, beside its spec, says how much it spilled.
            let spec = s["specUri"].as_str().unwrap().trim_start_matches("file://");
            let manifest = Path::new(spec).with_file_name("_manifest.json");
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
            spilled += manifest["peakSpillBytes"].as_u64().unwrap_or(0);
        }
        if phase == "Skipped" {
            caught_up = true;
            break;
        }
    }
    assert!(caught_up, "the rollup never caught up");
    assert!(
        spilled > 0,
        "no subtask spilled under its 8 MiB budget: {runs:#?}"
    );

    let mut seen = BTreeSet::new();
    let mut estimated = 0;
    let mut rust_read: BTreeMap<Group, (f64, f64)> = BTreeMap::new();
    for b in rows(&visits).await {
        let (ts, views) = (longs(&b, "ts"), longs(&b, "views"));
        let country = strings(&b, "country");
        let bytes = |c: &str| b.column_by_name(c).unwrap().as_binary::<i32>().clone();
        let (theta, hll, kll, avg) = (
            bytes("users_theta"),
            bytes("users_hll"),
            bytes("latency_kll"),
            bytes("latency_avg"),
        );
        for erased in ["page", "user_id", "latency_ms"] {
            assert_eq!(b.column_by_name(erased).unwrap().null_count(), b.num_rows());
        }
        for i in 0..b.num_rows() {
            let group = (country[i].clone(), ts[i].div_euclid(DAY_MS));
            assert_eq!(ts[i], group.1 * DAY_MS, "not a daily row");
            assert!(seen.insert(group.clone()), "{group:?} has two rows");
            let (users, latencies) = &raw[&group];
            assert_eq!(views[i], users.len() as i64, "{group:?}");
            let distinct = users.iter().collect::<BTreeSet<_>>().len() as f64;

            let mut union = ThetaUnionBuilder::default().lg_k(12).build().unwrap();
            let mut hll_union = HllUnion::new(12).unwrap();
            for u in users {
                let mut one = ThetaSketchBuilder::default().lg_k(5).build().unwrap();
                one.update(raw_bytes::from_str(u));
                union.update(&one).unwrap();
                hll_union.update_value(raw_bytes::from_str(u));
            }
            let expected = union.to_sketch(true).serialize();
            assert!(
                theta.value(i) == expected.as_slice(),
                "{group:?}: theta differs from the union of its rows"
            );
            let t = CompactThetaSketch::deserialize(theta.value(i)).unwrap();
            estimated += usize::from(t.is_estimation_mode());
            let (avg_sum, _) = minion_worker::sketch::avg_pair(avg.value(i)).unwrap();
            rust_read.insert(group.clone(), (t.estimate(), avg_sum));
            assert!(
                t.lower_bound(NumStdDev::Three) <= distinct
                    && distinct <= t.upper_bound(NumStdDev::Three),
                "{group:?}: theta {} for {distinct}",
                t.estimate()
            );
            let h = HllSketch::deserialize(hll.value(i)).unwrap();
            let expected = hll_union.to_sketch(datasketches::hll::HllType::Hll8);
            assert_eq!(
                h.composite_estimate(),
                expected.composite_estimate(),
                "{group:?}"
            );
            assert!(
                h.lower_bound(NumStdDev::Three) <= distinct
                    && distinct <= h.upper_bound(NumStdDev::Three),
                "{group:?}: HLL {} for {distinct}",
                h.estimate()
            );

            let k = KllSketch::<KllFloat<f64>>::deserialize(kll.value(i)).unwrap();
            assert_eq!(k.n(), latencies.len() as u64, "{group:?}");
            let (lo, hi) = (
                latencies.iter().min().unwrap(),
                latencies.iter().max().unwrap(),
            );
            assert_eq!(**k.min_item().unwrap(), *lo as f64);
            assert_eq!(**k.max_item().unwrap(), *hi as f64);
            let median = *k.quantile(0.5, SearchCriteria::Inclusive).unwrap().unwrap();
            let rank = latencies.iter().filter(|&&l| l as f64 <= median).count() as f64
                / latencies.len() as f64;
            let err = 3.0 * k.normalized_rank_error();
            assert!(
                (rank - 0.5).abs() <= err,
                "{group:?}: median {median} has rank {rank}"
            );

            let (sum, count) = minion_worker::sketch::avg_pair(avg.value(i)).unwrap();
            assert_eq!(count, latencies.len() as i64);
            assert_eq!(sum, latencies.iter().sum::<i64>() as f64);
        }
    }
    assert_eq!(seen.len(), raw.len(), "some country-day has no row");
    assert_eq!(
        estimated,
        raw.len(),
        "every theta sketch is past its exact mode"
    );

    // DataSketches' C++ library reads the same bytes, and values hash as it hashes them: its
    // theta sketch of a group's raw users estimates what ours does, and its HLL sketch of them
    // adds no register to ours.
    let root = PathBuf::from(visits.uri.trim_start_matches("file://"));
    let segments: Vec<String> = live(&visits)
        .await
        .iter()
        .map(|s| root.join(&s.path).display().to_string())
        .collect();
    let key = |g: &Group| format!("{}|{}", g.0, g.1 * DAY_MS);
    let raw_users: serde_json::Map<String, serde_json::Value> = raw
        .iter()
        .map(|(g, (users, _))| (key(g), serde_json::json!(users)))
        .collect();
    let checked = minion_e2e::python_delta::run(
        "check_sketches.py",
        &serde_json::json!({
            "segments": segments,
            "group_by": ["country", "ts"],
            "lg_k": {"theta": 12, "hll": 12},
            "raw": raw_users,
        }),
    );
    assert_eq!(checked.len(), raw.len());
    for c in &checked {
        let (country, ms) = c["key"].as_str().unwrap().split_once('|').unwrap();
        let g = (country.to_string(), ms.parse::<i64>().unwrap() / DAY_MS);
        let (users, latencies) = &raw[&g];
        let ours = &rust_read[&g];
        // The same sketch; the two libraries' float arithmetic may differ in the last bit.
        let cpp = c["theta"].as_f64().unwrap();
        assert!(
            (cpp - ours.0).abs() <= 1e-9 * ours.0,
            "{c}: Rust reads {}",
            ours.0
        );
        assert_eq!(
            c["theta_from_raw"], c["theta"],
            "{c}: C++ hashes the users otherwise"
        );
        assert_eq!(c["hll_registers_equal"], true, "{c}");
        assert_eq!(c["kll_n"].as_u64().unwrap(), users.len() as u64, "{c}");
        assert_eq!(
            c["kll_min"].as_f64().unwrap(),
            *latencies.iter().min().unwrap() as f64
        );
        assert_eq!(
            c["kll_max"].as_f64().unwrap(),
            *latencies.iter().max().unwrap() as f64
        );
        assert_eq!(c["avg_count"].as_i64().unwrap(), latencies.len() as i64);
        assert_eq!(c["avg_sum"].as_f64().unwrap(), ours.1);
    }
}

/// RealtimeToOffline rolls up a BYTES metric holding sketches, as Pinot does: REALTIME rows
/// each carry an HLL sketch of a few users, and the OFFLINE row of each country and day holds
/// their union (the same registers as the test's own union of the same sketches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_to_offline_unions_the_sketches_of_each_group() {
    use datasketches::hll::{HllSketch, HllType, HllUnion};

    let env = Env::new();
    let table = |name: &str, table_type: &str| {
        format!(
            "apiVersion: minion.dev/v1alpha1
kind: Table
metadata: {{name: {name}, namespace: default}}
spec:
  tableType: {table_type}
  create: true
  uri: file:///tmp/minion/{name}
  schema:
    timeColumn: ts
    timeUnit: MILLISECONDS
    columns:
      - {{name: ts, dataType: LONG, role: dateTime}}
      - {{name: country, dataType: STRING, role: dimension}}
      - {{name: views, dataType: LONG, role: metric}}
      - {{name: users_hll, dataType: BYTES, role: metric}}
"
        )
    };
    env.apply_text("hits-realtime.yaml", &table("hits-realtime", "REALTIME"));
    env.apply_text("hits-offline.yaml", &table("hits-offline", "OFFLINE"));
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("views", DataType::Int64, true),
        Field::new("users_hll", DataType::Binary, true),
    ]));
    let day0 = (Utc::now().timestamp_millis() - 6 * DAY_MS).div_euclid(DAY_MS) * DAY_MS;
    let mut rng = demo::events::Rng::new(23);
    let mut expected: BTreeMap<(String, i64), HllUnion> = BTreeMap::new();
    let mut batch = |n: usize, days: i64, day_offset: i64| {
        let (mut ts, mut country, mut sketches) = (vec![], vec![], vec![]);
        for _ in 0..n {
            let t = day0
                + (day_offset + rng.below(days as u64) as i64) * DAY_MS
                + rng.below(DAY_MS as u64) as i64;
            let c = ["US", "MX", "CA"][rng.below(3) as usize];
            let mut h = HllSketch::new(12, HllType::Hll8).unwrap();
            for _ in 0..1 + rng.below(3) {
                h.update(format!("user-{}", rng.below(30_000)).as_str());
            }
            expected
                .entry((c.to_string(), t.div_euclid(DAY_MS)))
                .or_insert_with(|| HllUnion::new(12).unwrap())
                .update(&h);
            ts.push(t);
            country.push(c);
            sketches.push(h.serialize());
        }
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ts)),
                Arc::new(StringArray::from(country)),
                Arc::new(Int64Array::from(vec![1; n])),
                Arc::new(arrow::array::BinaryArray::from_iter_values(sketches)),
            ],
        )
        .unwrap()
    };
    let batches = [batch(40_000, 2, 0), batch(40_000, 2, 0)];
    // The latest segment holds the day after; the moved days end before it.
    let latest = batch(1, 1, 2);
    for (f, b) in batches.iter().enumerate() {
        env.push("hits-realtime", &format!("hits-{f}.parquet"), b);
    }
    env.push("hits-realtime", "hits-latest.parquet", &latest);
    env.apply_text(
        "hits-r2o.yaml",
        "apiVersion: minion.dev/v1alpha1
kind: MinionTaskConfig
metadata: {name: hits-r2o, namespace: default}
spec:
  table: hits-offline
  sourceTable: hits-realtime
  taskType: RealtimeToOfflineSegmentsTask
  schedule: \"0 0 * * * ?\"
  realtimeToOfflineSegmentsTask:
    bucketTimePeriod: 1d
    bufferTimePeriod: 1d
    roundBucketTimePeriod: 1d
    mergeType: rollup
    aggregationTypes: {views: sum, users_hll: distinctCountHLL}
",
    );
    for _ in 0..2 {
        let tr = env.run("hits-r2o");
        assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    }
    let offline = env.table("hits-offline.yaml");
    let mut seen = 0;
    for b in rows(&offline).await {
        let (ts, country, views) = (longs(&b, "ts"), strings(&b, "country"), longs(&b, "views"));
        let hll = b
            .column_by_name("users_hll")
            .unwrap()
            .as_binary::<i32>()
            .clone();
        for i in 0..b.num_rows() {
            let group = (country[i].clone(), ts[i].div_euclid(DAY_MS));
            let Some(union) = expected.get(&group) else {
                panic!("{group:?} was not in the source's moved days");
            };
            let ours = HllSketch::deserialize(hll.value(i)).unwrap();
            let theirs = union.to_sketch(HllType::Hll8);
            assert_eq!(
                ours.composite_estimate(),
                theirs.composite_estimate(),
                "{group:?}"
            );
            assert!(views[i] > 1, "{group:?} was not rolled up");
            seen += 1;
        }
    }
    // Three countries on each of the two moved days; the latest day stays REALTIME.
    assert_eq!(seen, 6);
}

/// A time format that does not parse, or does not fit its column, is refused at apply naming
/// the field and what to write instead.
#[test]
fn a_bad_time_format_is_refused_at_apply_naming_the_field() {
    let env = Env::new();
    for (format, says) in [
        (
            "SIMPLE_DATE_FORMAT|MM/dd/yyyy",
            "must run from the year down",
        ),
        ("1:WEEKS:EPOCH", "unknown time unit \"WEEKS\""),
        ("EPOCH|HOURS|1", "needs INT or LONG"),
        ("TIMESTAMP", "needs TIMESTAMP"),
        (
            "SIMPLE_DATE_FORMAT|yyyyMMdd|Pacific/Atlantis",
            "unknown time zone",
        ),
    ] {
        let path = env.manifests.join("bad.yaml");
        std::fs::write(&path, visits_table("bad", "OFFLINE", format)).unwrap();
        let out = Minion {
            state: env.state.clone(),
        }
        .run(&["apply", "-f", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{format} was accepted");
        // A format that does not parse is the timeFormat's fault; one that does not fit the
        // column names the time column.
        let field = if says.starts_with("needs") {
            "spec.schema.timeColumn"
        } else {
            "spec.schema.timeFormat"
        };
        assert!(
            stderr.contains(field) && stderr.contains(says),
            "{format}: {stderr}"
        );
    }
}

/// `runAfter`: a purge run created while an import run into the same table is unfinished
/// waits in Pending, naming that run, and goes on once it has finished. The import is held
/// deterministically: its REALTIME source does not exist, so it waits for its table.
/// `--until-idle` stops when runs wait only on each other and on tables. A config naming
/// itself is refused at apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_after_another_config_waits_for_its_earlier_run_to_finish() {
    let env = Env::new();
    env.apply("table-events-offline.yaml", &[]);
    // No REALTIME Delta table here, and not `create: true`: Ready=False, TableNotFound.
    env.apply("table-events-realtime.yaml", &[]);
    let day = Utc::now().timestamp_millis() - 3 * DAY_MS;
    let mut rng = demo::events::Rng::new(8);
    let batch = demo::events::event_batch(&mut rng, 2_000, day, day + DAY_MS);
    env.push("events-offline", "events.parquet", &batch);
    let offline = env.table("table-events-offline.yaml");
    let before = totals(&offline, None).await;
    env.apply("mtc-segment-import.yaml", &[]);
    let import_run = created_run(&env.ok(&["run", "events-import"]));
    env.apply(
        "mtc-purge.yaml",
        &[
            (
                "  taskType: PurgeTask\n",
                "  taskType: PurgeTask\n  runAfter: [events-import]\n",
            ),
            ("user_id = 'u-42'", "country = 'FR'"),
            ("tableMaxNumTasks: 4", "tableMaxNumTasks: 100"),
        ],
    );
    let purge_run = created_run(&env.ok(&["run", "events-purge"]));
    env.up();
    let import = env.task_run(&import_run);
    assert_eq!(import["status"]["reason"], "TableNotReady", "{import:#}");
    let purge = env.task_run(&purge_run);
    assert_eq!(purge["status"]["phase"], "Pending", "{purge:#}");
    assert_eq!(purge["status"]["reason"], "WaitingForRunAfter", "{purge:#}");
    let message = purge["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(&import_run) && message.contains("MinionTaskConfig events-import"),
        "{message}"
    );
    assert_eq!(totals(&offline, None).await, before, "nothing purged yet");
    let described = env.ok(&["describe", "tr", &purge_run]);
    assert!(described.contains("WaitingForRunAfter"), "{described}");

    // Once the earlier run has finished, the purge is admitted and runs.
    env.ok(&["cancel", &import_run]);
    env.up();
    let import = env.task_run(&import_run);
    assert_eq!(import["status"]["phase"], "Cancelled", "{import:#}");
    let purge = env.task_run(&purge_run);
    assert_eq!(purge["status"]["phase"], "Succeeded", "{purge:#}");
    let after = totals(&offline, None).await;
    assert!(after.rows < before.rows, "nothing was purged");

    let stderr = env.apply_refused(
        "mtc-purge.yaml",
        &[(
            "  taskType: PurgeTask\n",
            "  taskType: PurgeTask\n  runAfter: [events-purge]\n",
        )],
    );
    assert!(
        stderr.contains("spec.runAfter[0]") && stderr.contains("is this config"),
        "{stderr}"
    );
}

/// Migration from RealtimeToOffline to SegmentImport without a gap or an overlap: the import
/// names the R2O config in `initialWatermarkFrom`, is refused while that config can still
/// move its watermark (not suspended), and once it is suspended starts exactly where it
/// stopped: the OFFLINE table then holds every REALTIME row before the import's watermark
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_import_takes_over_from_realtime_to_offline_without_a_gap_or_an_overlap() {
    let mut env = Env::new();
    env.events(6).await;
    env.apply(
        "mtc-realtime-to-offline.yaml",
        &[
            ("suspend: true", "suspend: false"),
            ("mergeType: rollup", "mergeType: concat"),
        ],
    );
    for _ in 0..2 {
        let tr = env.run("events-r2o");
        assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    }
    let offline = env.table("table-events-offline.yaml");
    let realtime = env.table("table-events-realtime.yaml");
    let r2o_watermark = Catalog::open(&offline.uri, Default::default())
        .await
        .unwrap()
        .txn_version(&app_id::watermark("default", "events-r2o", None))
        .await
        .unwrap()
        .expect("R2O committed a watermark");
    env.apply(
        "mtc-segment-import.yaml",
        &[
            (
                "    desiredSegmentSize: 500M\n",
                "    desiredSegmentSize: 500M\n    initialWatermarkFrom: {config: events-r2o}\n",
            ),
            (
                "maxNumRecordsPerTask: 50000000",
                "maxNumRecordsPerTask: 2000",
            ),
        ],
    );
    // The R2O config may still move its watermark: the import does not start.
    let tr = env.run("events-import");
    assert_eq!(tr["status"]["phase"], "Skipped", "{tr:#}");
    assert_eq!(tr["status"]["reason"], "WatermarkSourceActive", "{tr:#}");
    let message = tr["status"]["message"].as_str().unwrap();
    assert!(message.contains("events-r2o is not suspended"), "{message}");

    env.ok(&["suspend", "events-r2o"]);
    let tr = env.run("events-import");
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    let described = env.ok(&["describe", "mtc", "events-import"]);
    assert!(described.contains("Watermark"), "{described}");
    let dest = Catalog::open(&offline.uri, Default::default())
        .await
        .unwrap();
    let import_watermark = dest
        .txn_version(&app_id::watermark("default", "events-import", None))
        .await
        .unwrap()
        .expect("the import committed a watermark");
    assert!(import_watermark > r2o_watermark);
    // Every source row before the import's watermark, once: R2O's windows then the import's.
    let src = totals(
        &realtime,
        Some(TimeWindow::new(i64::MIN / 2, import_watermark)),
    )
    .await;
    let dst = totals(&offline, None).await;
    assert_eq!(src.rows, dst.rows, "count(*)");
    assert_sums(&src, &dst, &["clicks", "revenue"]);
    // The import's first window began at R2O's watermark.
    assert_eq!(tr["status"]["watermarkBefore"], r2o_watermark, "{tr:#}");
}

/// `initialWatermarkFrom` together with `initialWatermarkMs` is refused at apply.
#[test]
fn initial_watermark_from_and_initial_watermark_ms_conflict() {
    let env = Env::new();
    let stderr = env.apply_refused(
        "mtc-segment-import.yaml",
        &[(
            "    desiredSegmentSize: 500M\n",
            "    desiredSegmentSize: 500M\n    initialWatermarkFrom: {config: events-r2o}\n    initialWatermarkMs: 0\n",
        )],
    );
    assert!(
        stderr.contains("spec.segmentImportTask.initialWatermarkFrom")
            && stderr.contains("initialWatermarkMs"),
        "{stderr}"
    );
}

/// Data retention that never outruns the importer: a REALTIME table keeps 3 days; the
/// expired days the import has not moved yet stay (the Table is Degraded,
/// RetentionBlockedByImport, naming the import), the ones it has moved go in one commit, and
/// every row is at all times in the REALTIME table or the OFFLINE one, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_what_the_import_has_moved() {
    let env = Env::new();
    env.apply(
        "table-events-realtime.yaml",
        &[(
            "  tableType: REALTIME\n",
            "  tableType: REALTIME\n  create: true\n  retentionTimePeriod: 3d\n",
        )],
    );
    env.apply("table-events-offline.yaml", &[]);
    let today = Utc::now().timestamp_millis().div_euclid(DAY_MS) * DAY_MS;
    let mut rng = demo::events::Rng::new(21);
    let mut all = Vec::new();
    for d in (1..=6).rev() {
        let start = today - d * DAY_MS;
        let batch = demo::events::event_batch(&mut rng, 3_000, start, start + DAY_MS);
        env.push("events-realtime", &format!("day-{d}.parquet"), &batch);
        all.push(batch);
    }
    let expected = batch_totals(&all);
    let realtime = env.table("table-events-realtime.yaml");
    let offline = env.table("table-events-offline.yaml");
    // Both tables together hold every row once.
    let check_union = || async {
        let (rt, off) = (totals(&realtime, None).await, totals(&offline, None).await);
        assert_eq!(rt.rows + off.rows, expected.0, "rows lost or doubled");
        assert_eq!(rt.sums["clicks"] + off.sums["clicks"], expected.1 as f64);
        rt
    };
    env.apply(
        "mtc-segment-import.yaml",
        &[
            ("tableMaxNumTasks: 10", "tableMaxNumTasks: 1"),
            (
                "maxNumRecordsPerTask: 50000000",
                "maxNumRecordsPerTask: 2000",
            ),
        ],
    );
    let table_status = || -> serde_json::Value {
        let t: serde_json::Value =
            serde_json::from_str(&env.ok(&["get", "table", "events-realtime", "-o", "json"]))
                .unwrap();
        t["status"].clone()
    };
    let degraded = |status: &serde_json::Value| -> serde_json::Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Degraded")
            .cloned()
            .unwrap_or_default()
    };

    // One day moved: the oldest expired day goes; the two other expired days wait.
    let tr = env.run("events-import");
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    env.up();
    let rt = check_union().await;
    assert_eq!(rt.rows, 5 * 3_000, "only the moved expired day is gone");
    let status = table_status();
    let c = degraded(&status);
    assert_eq!(c["status"], "True", "{status:#}");
    assert_eq!(c["reason"], "RetentionBlockedByImport", "{status:#}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("2 segment(s)") && message.contains("MinionTaskConfig events-import"),
        "{message}"
    );
    assert_eq!(status["retentionBlockedSegments"], 2, "{status:#}");

    // The import catches up: the rest of the expired days go, and the Table is healthy.
    for _ in 0..2 {
        let tr = env.run("events-import");
        assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    }
    env.up();
    let rt = check_union().await;
    assert_eq!(
        rt.rows,
        3 * 3_000,
        "the three days inside the retention stay"
    );
    let status = table_status();
    let c = degraded(&status);
    assert_eq!(c["status"], "False", "{status:#}");
    assert_eq!(c["reason"], "RetentionApplied", "{status:#}");
    assert_eq!(status["retentionBlockedSegments"], 0, "{status:#}");
}

/// A retention period that is not a positive period is refused at apply, naming the field.
#[test]
fn a_bad_retention_time_period_is_refused_at_apply() {
    let env = Env::new();
    let stderr = env.apply_refused(
        "table-events-realtime.yaml",
        &[(
            "  tableType: REALTIME\n",
            "  tableType: REALTIME\n  retentionTimePeriod: 0d\n",
        )],
    );
    assert!(stderr.contains("spec.retentionTimePeriod"), "{stderr}");
}
