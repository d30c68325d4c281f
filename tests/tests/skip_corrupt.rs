//! `skipCorruptSegments: true` end to end through local mode and the `minion` binary: a
//! truncated segment in the window of a SegmentImport or RealtimeToOffline run, or in a bucket
//! of a MergeRollup run, is left out: the run succeeds, the file is untouched and still a live segment, every
//! other row of the window (or bucket) arrives exactly once (row multiset: count and
//! order-independent hashes), and the run's status, `describe` and a `SegmentsSkipped` Event
//! name the file.

use minion_e2e::fixtures::{created_run, realtime_events};
use minion_e2e::local_env::Env;
use minion_e2e::rows::{Multiset, RowHasher, TableRows, parquet_batches, watermark};
use std::path::PathBuf;

use minion_contract::{SegmentRef, TimeWindow};
use minion_operator::catalog::Catalog;
use minion_operator::model::{DAY_MS, TableDef};

/// Cuts a segment file to half its size (its footer gone); returns the bytes left.
fn truncate(def: &TableDef, segment: &SegmentRef) -> (PathBuf, Vec<u8>) {
    let file = PathBuf::from(def.uri.trim_start_matches("file://")).join(&segment.path);
    let bytes = std::fs::read(&file).unwrap();
    let half = bytes[..bytes.len() / 2].to_vec();
    std::fs::write(&file, &half).unwrap();
    (file, half)
}

async fn live(def: &TableDef) -> Vec<SegmentRef> {
    Catalog::open(&def.uri, Default::default())
        .await
        .unwrap()
        .segments()
        .unwrap()
}

/// The rows of every live segment but `except` (which cannot be read).
async fn live_rows_except(def: &TableDef, except: &str) -> Multiset {
    let store = minion_operator::storage::resolve(&def.uri).unwrap();
    let hasher = RowHasher::new(&def.schema);
    let mut all = Multiset::default();
    for s in live(def).await.iter().filter(|s| s.path != except) {
        let bytes = store.get_bytes(&store.child(&s.path)).await.unwrap();
        let batches = parquet_batches(bytes::Bytes::from(bytes));
        all = all.plus(Multiset::of(&hasher.all_rows(&batches)));
    }
    all
}

/// What a user sees of the skip: status, `describe` (which shows the Events).
fn assert_reported(env: &Env, run: &str, tr: &serde_json::Value, table: &str, path: &str) {
    assert_eq!(tr["status"]["phase"], "Succeeded", "{tr:#}");
    let skipped = tr["status"]["skippedSegments"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{tr:#}");
    assert_eq!(skipped[0]["path"], path, "{tr:#}");
    assert!(!skipped[0]["reason"].as_str().unwrap().is_empty(), "{tr:#}");
    assert_eq!(tr["status"]["skippedSegmentsTotal"], 1, "{tr:#}");
    let described = env.ok(&["describe", "tr", run]);
    assert!(
        described.contains("Skipped Segments") && described.contains(path),
        "{described}"
    );
    let event = described
        .lines()
        .find(|l| l.contains("SegmentsSkipped"))
        .unwrap_or_else(|| panic!("no SegmentsSkipped Event in\n{described}"));
    assert!(
        event.contains(path) && event.contains(table),
        "the Event names the file and the table: {event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_import_skips_a_truncated_source_segment_and_imports_every_other_row() {
    let env = Env::new(4, "").await;
    let mtc = env.manifests.join("mtc-segment-import.yaml");
    let text = std::fs::read_to_string(&mtc).unwrap();
    std::fs::write(
        &mtc,
        text.replace(
            "  segmentImportTask:\n",
            "  segmentImportTask:\n    skipCorruptSegments: true\n",
        ),
    )
    .unwrap();
    env.apply();
    let realtime = env.table("events-realtime").clone();
    let offline = env.table("events-offline").clone();
    let source = TableRows::read(&realtime).await;
    // The oldest segment: in the first window imported.
    let bad = source
        .segments
        .iter()
        .min_by_key(|s| (s.segment.min_time_ms, s.segment.path.clone()))
        .unwrap();
    let bad_path = bad.segment.path.clone();
    let (file, left) = truncate(&realtime, &bad.segment);

    let run = env.run_import();
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let tr = env.task_run(&run);
    assert_reported(&env, &run, &tr, "events-realtime", &bad_path);

    // The file is untouched and still a live segment of the source.
    assert_eq!(std::fs::read(&file).unwrap(), left);
    assert!(live(&realtime).await.iter().any(|s| s.path == bad_path));
    // Every other row of the windows imported, exactly once; none of the skipped segment's.
    let wm = watermark(&offline, "default", "events-import", None)
        .await
        .expect("the watermark advanced");
    let window = TimeWindow::new(env.start_ms - DAY_MS, wm);
    assert!(bad.rows.iter().any(|r| window.contains(r.time_ms)));
    let expected = Multiset::of(
        source
            .segments
            .iter()
            .filter(|s| s.segment.path != bad_path)
            .flat_map(|s| s.rows.iter())
            .filter(|r| window.contains(r.time_ms)),
    );
    assert!(expected.rows > 0);
    assert_eq!(TableRows::read(&offline).await.multiset(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_to_offline_skips_a_truncated_segment_and_moves_the_rest_of_its_window() {
    let env = Env::new(4, "").await;
    std::fs::write(
        env.manifests.join("mtc-r2o-skip.yaml"),
        "apiVersion: minion.dev/v1alpha1
kind: MinionTaskConfig
metadata:
  name: events-r2o
  namespace: default
spec:
  table: events-offline
  sourceTable: events-realtime
  taskType: RealtimeToOfflineSegmentsTask
  realtimeToOfflineSegmentsTask:
    bucketTimePeriod: 1d
    bufferTimePeriod: 2d
    mergeType: concat
    skipCorruptSegments: true
",
    )
    .unwrap();
    env.apply();
    let realtime = env.table("events-realtime").clone();
    let offline = env.table("events-offline").clone();
    let source = TableRows::read(&realtime).await;
    let bad = source
        .segments
        .iter()
        .min_by_key(|s| (s.segment.min_time_ms, s.segment.path.clone()))
        .unwrap();
    let bad_path = bad.segment.path.clone();
    let (file, left) = truncate(&realtime, &bad.segment);

    let run = created_run(&env.ok(&["run", "events-r2o"]));
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let tr = env.task_run(&run);
    assert_reported(&env, &run, &tr, "events-realtime", &bad_path);
    assert_eq!(std::fs::read(&file).unwrap(), left);
    assert!(live(&realtime).await.iter().any(|s| s.path == bad_path));
    // One window moved: the watermark passed it, and it holds every other row of the window.
    let wm = watermark(&offline, "default", "events-r2o", None)
        .await
        .expect("the watermark advanced");
    let window = TimeWindow::new(wm - DAY_MS, wm);
    assert!(bad.rows.iter().any(|r| window.contains(r.time_ms)));
    let expected = Multiset::of(
        source
            .segments
            .iter()
            .filter(|s| s.segment.path != bad_path)
            .flat_map(|s| s.rows.iter())
            .filter(|r| window.contains(r.time_ms)),
    );
    assert!(expected.rows > 0);
    assert_eq!(TableRows::read(&offline).await.multiset(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_rollup_leaves_a_truncated_segment_in_place_and_merges_the_rest_of_its_bucket() {
    let env = Env::new(1, "").await;
    let offline = env.table("events-offline").clone();
    // Four days of small segments (every 6 h, two partitions) in the OFFLINE table.
    realtime_events(&offline, &env.dir.path().join("data"), 4, 50).await;
    let merge = env.manifests.join("mtc-merge-skip.yaml");
    std::fs::write(
        &merge,
        "apiVersion: minion.dev/v1alpha1
kind: MinionTaskConfig
metadata:
  name: events-merge
  namespace: default
spec:
  table: events-offline
  taskType: MergeRollupTask
  mergeRollupTask:
    skipCorruptSegments: true
    levels:
      - name: 1day
        bucketTimePeriod: 1d
        mergeType: concat
        maxNumParallelBuckets: 100
",
    )
    .unwrap();
    env.apply();
    let before = TableRows::read(&offline).await;
    let bad = before
        .segments
        .iter()
        .min_by_key(|s| (s.segment.min_time_ms, s.segment.path.clone()))
        .unwrap();
    let bad_path = bad.segment.path.clone();
    let bucket = TimeWindow::new(
        bad.segment.min_time_ms.unwrap().div_euclid(DAY_MS) * DAY_MS,
        bad.segment.min_time_ms.unwrap().div_euclid(DAY_MS) * DAY_MS + DAY_MS,
    );
    let others_in_bucket: Vec<String> = before
        .segments
        .iter()
        .filter(|s| s.segment.path != bad_path)
        .filter(|s| s.segment.min_time_ms.is_some_and(|t| bucket.contains(t)))
        .map(|s| s.segment.path.clone())
        .collect();
    assert!(!others_in_bucket.is_empty(), "{}", before.describe());
    let expected = Multiset::of(
        before
            .segments
            .iter()
            .filter(|s| s.segment.path != bad_path)
            .flat_map(|s| s.rows.iter()),
    );
    let (file, left) = truncate(&offline, &bad.segment);

    let run = created_run(&env.ok(&["run", "events-merge"]));
    env.ok(&["local", "up", "--until-idle", "--poll-ms", "50"]);
    let tr = env.task_run(&run);
    assert_reported(&env, &run, &tr, "events-offline", &bad_path);

    // Never deleted: the file is as it was and still a live segment.
    assert_eq!(std::fs::read(&file).unwrap(), left);
    let now = live(&offline).await;
    assert!(now.iter().any(|s| s.path == bad_path), "{now:#?}");
    // The rest of its bucket was merged (replaced by the level's outputs) …
    for p in &others_in_bucket {
        assert!(!now.iter().any(|s| &s.path == p), "{p} was not merged");
    }
    assert!(
        now.iter().any(|s| s.merge_level() == Some("1day")
            && s.min_time_ms.is_some_and(|t| bucket.contains(t))),
        "{now:#?}"
    );
    // … and every other row is still there exactly once.
    assert_eq!(live_rows_except(&offline, &bad_path).await, expected);

    // The run's lineage entries record as replaced exactly the segments that went: the
    // skipped one is not among them (an entry's replaced segments are hidden once it
    // completes).
    let removed = before
        .segments
        .iter()
        .filter(|s| !now.iter().any(|n| n.path == s.segment.path))
        .count() as u64;
    let table: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "tbl", "events-offline", "-o", "json"])).unwrap();
    let recorded: u64 = table["status"]["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["taskRun"] == run.as_str())
        .map(|e| {
            e["segmentsFromCount"]
                .as_u64()
                .unwrap_or_else(|| e["segmentsFrom"].as_array().map_or(0, |l| l.len() as u64))
        })
        .sum();
    assert_eq!(recorded, removed, "{table:#}");
}
