//! The catalog over a real Delta table in a temporary directory: atomic replacement seen by a
//! concurrent reader, idempotent commits, crash recovery, refusals, listing, watermarks,
//! checkpoints and clean-up.
//!
//! Why one long file: every test drives one `Catalog` over the same segment fixtures
//! (`common/`), one guarantee of the catalog each.

#[path = "common/catalog_fixtures.rs"]
mod fixtures;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fixtures::*;
use minion_contract::SegmentRef;
use minion_operator::catalog::{
    AppTxn, Catalog, CatalogError, Replacement, UNREFERENCED_MIN_AGE_MS, app_id,
    install_crypto_provider,
};

const HOUR_MS: i64 = 60 * 60 * 1000;

/// The single-file checkpoints in the table's `_delta_log/`.
fn checkpoint_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(root.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".checkpoint.parquet"))
        .collect()
}

/// `segments` in path order, to compare listings.
fn by_path(mut segments: Vec<SegmentRef>) -> Vec<SegmentRef> {
    segments.sort_by(|a, b| a.path.cmp(&b.path));
    segments
}

async fn new_table() -> (tempfile::TempDir, String, Catalog) {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let uri = uri_of(dir.path());
    let catalog = Catalog::create(&uri, &event_schema(), HashMap::new())
        .await
        .unwrap();
    (dir, uri, catalog)
}

/// Appends `groups × per_group` one-row-per-ms segments; returns them grouped.
async fn append_groups(
    root: &std::path::Path,
    catalog: &mut Catalog,
    groups: usize,
    per_group: usize,
) -> Vec<Vec<SegmentRef>> {
    let mut out = Vec::new();
    for g in 0..groups {
        out.push(append_group(root, catalog, g, per_group).await);
    }
    out
}

/// Writes group `g` of `per_group` segments of 5 rows (`data/in/g<g>_<i>.parquet`) and appends
/// it in one commit.
async fn append_group(
    root: &std::path::Path,
    catalog: &mut Catalog,
    g: usize,
    per_group: usize,
) -> Vec<SegmentRef> {
    let mut group = Vec::new();
    for i in 0..per_group {
        let base = (g * 1000 + i * 10) as i64;
        let rows: Vec<(i64, i64)> = (0..5).map(|k| (base + k, k + 1)).collect();
        group.push(write_segment(
            root,
            &format!("data/in/g{g}_{i}.parquet"),
            &rows,
        ));
    }
    catalog.append(&group, &[]).await.unwrap();
    group
}

fn concat_replacement<'a>(inputs: &[SegmentRef], output: SegmentRef, run: &str) -> Replacement<'a> {
    Replacement {
        remove: inputs.iter().map(|s| s.path.clone()).collect(),
        add: vec![output],
        txns: vec![AppTxn::run(run)],
        data_change: false,
        operation: "MINION CONCAT",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reader_sees_all_inputs_or_all_outputs_and_totals_never_change() {
    let (dir, uri, mut catalog) = new_table().await;
    let groups = append_groups(dir.path(), &mut catalog, 4, 4).await;
    let before = delta_totals(&uri).await;
    assert_eq!(before.0, 4 * 4 * 5);

    let outputs: Vec<String> = (0..groups.len())
        .map(|g| format!("data/out/g{g}.parquet"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (uri, groups, outputs, stop) =
            (uri.clone(), groups.clone(), outputs.clone(), stop.clone());
        tokio::spawn(async move {
            let mut listings = 0usize;
            let mut handle = Catalog::open(&uri, HashMap::new()).await.unwrap();
            while !stop.load(Ordering::SeqCst) {
                // Alternate a refreshed handle and a fresh open.
                if listings.is_multiple_of(2) {
                    handle.refresh().await.unwrap();
                } else {
                    handle = Catalog::open(&uri, HashMap::new()).await.unwrap();
                }
                let live: Vec<String> = handle
                    .segments()
                    .unwrap()
                    .into_iter()
                    .map(|s| s.path)
                    .collect();
                for (g, group) in groups.iter().enumerate() {
                    let inputs_live = group.iter().filter(|s| live.contains(&s.path)).count();
                    let output_live = live.contains(&outputs[g]);
                    assert!(
                        (inputs_live == group.len() && !output_live)
                            || (inputs_live == 0 && output_live),
                        "version {}: group {g} is mixed: {inputs_live} inputs live, output live = {output_live}",
                        handle.version()
                    );
                }
                if listings.is_multiple_of(5) {
                    assert_eq!(
                        delta_totals(&uri).await,
                        before,
                        "totals changed mid-replacement"
                    );
                }
                listings += 1;
            }
            listings
        })
    };

    for (g, group) in groups.iter().enumerate() {
        let out = concat_segments(dir.path(), group, &outputs[g]);
        let run = app_id::subtask("ns", "concat-run", g as u32);
        let outcome = catalog
            .replace(concat_replacement(group, out, &run))
            .await
            .unwrap();
        assert!(!outcome.already_committed);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let listings = reader.await.unwrap();
    assert!(listings > 3, "the reader listed only {listings} times");

    assert_eq!(delta_totals(&uri).await, before);
    assert_eq!(paths(&catalog.segments().unwrap()), {
        let mut o = outputs.clone();
        o.sort();
        o
    });
}

#[tokio::test]
async fn committing_the_same_run_twice_changes_nothing_the_second_time() {
    let (dir, uri, mut catalog) = new_table().await;
    let groups = append_groups(dir.path(), &mut catalog, 1, 3).await;
    let out = concat_segments(dir.path(), &groups[0], "data/out/a.parquet");
    let run = app_id::subtask("ns", "run-1", 0);

    let first = catalog
        .replace(concat_replacement(&groups[0], out.clone(), &run))
        .await
        .unwrap();
    let totals = delta_totals(&uri).await;
    let second = catalog
        .replace(concat_replacement(&groups[0], out, &run))
        .await
        .unwrap();
    assert!(!first.already_committed);
    assert!(second.already_committed);
    assert_eq!(second.version, first.version);
    assert_eq!(catalog.version(), first.version);
    assert_eq!(delta_totals(&uri).await, totals);
}

#[tokio::test]
async fn crash_between_commit_and_status_update_is_recovered_without_loss_or_duplicate() {
    let (dir, uri, mut catalog) = new_table().await;
    let groups = append_groups(dir.path(), &mut catalog, 1, 4).await;
    let before = delta_totals(&uri).await;
    let out = concat_segments(dir.path(), &groups[0], "data/run-2/0-1/out.parquet");
    let run = app_id::subtask("ns", "run-2", 0);
    let watermark = app_id::watermark("ns", "merge", Some("1day"));
    let request = |out: SegmentRef| {
        let mut r = concat_replacement(&groups[0], out, &run);
        r.txns.push(AppTxn::watermark(&watermark, 86_400_000));
        r
    };
    let committed = catalog.replace(request(out.clone())).await.unwrap();
    drop(catalog); // the operator dies before marking the lineage entry COMPLETED

    let mut reopened = Catalog::open(&uri, HashMap::new()).await.unwrap();
    assert!(reopened.is_committed(&run, 1).await.unwrap());
    assert_eq!(
        reopened.txn_version(&watermark).await.unwrap(),
        Some(86_400_000)
    );
    let replay = reopened.replace(request(out)).await.unwrap();
    assert!(replay.already_committed);
    assert_eq!(replay.version, committed.version);
    assert_eq!(delta_totals(&uri).await, before);
    assert_eq!(reopened.segments().unwrap().len(), 1);
}

#[tokio::test]
async fn an_add_path_that_would_not_name_the_written_file_is_refused_and_nothing_is_committed() {
    let (dir, _uri, mut catalog) = new_table().await;
    let good = write_segment(dir.path(), "data/in/good.parquet", &[(1, 1)]);
    let version = catalog.version();
    for (path, why) in [
        ("data/in/../../../outside.parquet", "\"..\" segment"),
        ("data/in//good.parquet", "empty segment"),
        ("data/in/100%.parquet", "percent-encodes"),
        ("data/in/my file.parquet", "space"),
    ] {
        let bad = SegmentRef {
            path: path.into(),
            ..good.clone()
        };
        let err = catalog
            .append(&[good.clone(), bad], &[AppTxn::run("minion.dev/ns/r/0")])
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidSegment", "{path}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(path) && msg.contains(why), "{path}: {msg}");
    }
    catalog.refresh().await.unwrap();
    assert_eq!(
        catalog.version(),
        version,
        "a refused commit changed the table"
    );
    assert!(catalog.segments().unwrap().is_empty());
}

#[tokio::test]
async fn replacement_of_inputs_already_replaced_is_refused_naming_the_segment() {
    let (dir, uri, mut catalog) = new_table().await;
    let groups = append_groups(dir.path(), &mut catalog, 1, 2).await;
    // A second handle, loaded before the first replacement, stands for a stale planner.
    let mut stale = Catalog::open(&uri, HashMap::new()).await.unwrap();

    let out = concat_segments(dir.path(), &groups[0], "data/out/first.parquet");
    catalog
        .replace(concat_replacement(&groups[0], out, "minion.dev/ns/run-a/0"))
        .await
        .unwrap();
    let version = catalog.version();
    let listing = paths(&catalog.segments().unwrap());

    let out2 = concat_segments(dir.path(), &groups[0], "data/out/second.parquet");
    let err = stale
        .replace(concat_replacement(
            &groups[0],
            out2,
            "minion.dev/ns/run-b/0",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CatalogError::SegmentNotLive { ref path, .. } if path == &groups[0][0].path)
    );
    assert_eq!(err.reason(), "SegmentNotLive");
    let msg = err.to_string();
    assert!(
        msg.contains(&groups[0][0].path) && msg.contains("already replaced or deleted"),
        "{msg}"
    );
    assert!(msg.contains(&uri), "{msg}");

    catalog.refresh().await.unwrap();
    assert_eq!(
        catalog.version(),
        version,
        "the refused commit changed the table"
    );
    assert_eq!(paths(&catalog.segments().unwrap()), listing);
}

#[tokio::test]
async fn listing_returns_our_tags_and_stats_and_foreign_files_from_delta_stats() {
    let (dir, uri, mut catalog) = new_table().await;
    let mut ours = write_segment(dir.path(), "data/ours.parquet", &[(100, 1), (250, 2)]);
    ours.partition = Some(3);
    ours.tags = BTreeMap::from([("mergeLevel".to_string(), "1day".to_string())]);
    catalog
        .append(std::slice::from_ref(&ours), &[])
        .await
        .unwrap();

    // Another Delta writer appends a file with stats and no tags.
    let mut table = deltalake::open_table(url::Url::parse(&uri).unwrap())
        .await
        .unwrap();
    let mut writer = deltalake::writer::RecordBatchWriter::for_table(&table).unwrap();
    use deltalake::writer::DeltaWriter;
    writer
        .write(batch(&[(7_000, 5), (9_000, 6), (8_000, 7)]))
        .await
        .unwrap();
    writer.flush_and_commit(&mut table).await.unwrap();

    catalog.refresh().await.unwrap();
    let listed = catalog.segments().unwrap();
    assert_eq!(listed.len(), 2);
    let mine = listed.iter().find(|s| s.path == ours.path).unwrap();
    assert_eq!(mine, &ours);
    let foreign = listed.iter().find(|s| s.path != ours.path).unwrap();
    assert_eq!(foreign.rows, 3);
    assert_eq!(
        (foreign.min_time_ms, foreign.max_time_ms),
        (Some(7_000), Some(9_000))
    );
    assert!(foreign.bytes > 0);
    assert!(foreign.tags.is_empty() && foreign.partition.is_none());

    // The checkpoint carries the stats as a struct beside the JSON (what a fresh open reads
    // without parsing JSON); the listing from it is the same, foreign file included.
    catalog.checkpoint().await.unwrap();
    let checkpoint = checkpoint_files(dir.path()).remove(0);
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&checkpoint).unwrap())
            .unwrap();
    let columns: Vec<String> = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.path().string())
        .collect();
    for column in ["add.stats", "add.stats_parsed.numRecords"] {
        assert!(columns.iter().any(|c| c == column), "{column}: {columns:?}");
    }
    let reopened = Catalog::open(&uri, HashMap::new()).await.unwrap();
    assert_eq!(by_path(reopened.segments().unwrap()), by_path(listed));
}

#[tokio::test]
async fn create_is_idempotent_and_refuses_a_different_schema_naming_the_column() {
    let (_dir, uri, catalog) = new_table().await;
    let again = Catalog::create(&uri, &event_schema(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(again.version(), catalog.version());

    let mut other = event_schema();
    other.columns[1].data_type = minion_contract::ColumnType::Double;
    let err = Catalog::create(&uri, &other, HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "SchemaMismatch");
    assert!(err.to_string().contains("clicks"), "{err}");

    let missing = tempfile::tempdir().unwrap();
    let err = Catalog::open(&uri_of(missing.path()), HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "NotATable", "{err}");
}

#[tokio::test]
async fn watermark_is_recovered_from_the_log_and_never_goes_backwards() {
    let (dir, uri, mut catalog) = new_table().await;
    let wm = app_id::watermark("ns", "r2o", None);
    assert_eq!(catalog.txn_version(&wm).await.unwrap(), None);
    let a = write_segment(dir.path(), "data/a.parquet", &[(1, 1)]);
    let b = write_segment(dir.path(), "data/b.parquet", &[(2, 1)]);
    catalog
        .append(
            &[a],
            &[
                AppTxn::run("minion.dev/ns/run-1/0"),
                AppTxn::watermark(&wm, 2_000),
            ],
        )
        .await
        .unwrap();
    // A later subtask carrying an older watermark must not move it back.
    catalog
        .append(
            &[b],
            &[
                AppTxn::run("minion.dev/ns/run-0/0"),
                AppTxn::watermark(&wm, 1_000),
            ],
        )
        .await
        .unwrap();
    let reopened = Catalog::open(&uri, HashMap::new()).await.unwrap();
    assert_eq!(reopened.txn_version(&wm).await.unwrap(), Some(2_000));
    assert!(
        reopened
            .is_committed("minion.dev/ns/run-0/0", 1)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn checkpoint_then_reopen_lists_the_same_segments_and_txns() {
    let (dir, uri, mut catalog) = new_table().await;
    let groups = append_groups(dir.path(), &mut catalog, 3, 3).await;
    let out = concat_segments(dir.path(), &groups[1], "data/out/g1.parquet");
    catalog
        .replace(concat_replacement(&groups[1], out, "minion.dev/ns/run/1"))
        .await
        .unwrap();
    let wm = app_id::watermark("ns", "cfg", None);
    let seg = write_segment(dir.path(), "data/late.parquet", &[(5, 5)]);
    catalog
        .append(&[seg], &[AppTxn::watermark(&wm, 42)])
        .await
        .unwrap();
    let before = catalog.segments().unwrap();

    catalog.checkpoint().await.unwrap();
    assert!(!checkpoint_files(dir.path()).is_empty());
    let reopened = Catalog::open(&uri, HashMap::new()).await.unwrap();
    assert_eq!(by_path(reopened.segments().unwrap()), by_path(before));
    assert_eq!(reopened.txn_version(&wm).await.unwrap(), Some(42));
    assert!(
        reopened
            .is_committed("minion.dev/ns/run/1", 1)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn clean_up_deletes_replaced_files_after_retention_and_never_live_or_protected_ones() {
    let (dir, uri, mut catalog) = new_table().await;
    let groups = append_groups(dir.path(), &mut catalog, 1, 3).await;
    let out = concat_segments(dir.path(), &groups[0], "data/out/g0.parquet");
    catalog
        .replace(concat_replacement(
            &groups[0],
            out.clone(),
            "minion.dev/ns/run/0",
        ))
        .await
        .unwrap();
    let staged_live_run = write_segment(dir.path(), "data/run-live/0-1/x.parquet", &[(1, 1)]);
    let staged_dead_run = write_segment(dir.path(), "data/run-dead/0-1/x.parquet", &[(1, 1)]);
    let protected = vec!["data/run-live/0-1".to_string()];
    let now = chrono::Utc::now().timestamp_millis();
    let retention = 4 * HOUR_MS;
    let exists = |p: &str| dir.path().join(p).exists();

    let early = catalog
        .clean_up(now, retention, &protected, false, false)
        .await
        .unwrap();
    assert_eq!(early.deleted_files(), 0, "{early:?}");
    assert_eq!(early.kept_in_retention, 3);

    let dry = catalog
        .clean_up(now + 5 * HOUR_MS, retention, &protected, false, true)
        .await
        .unwrap();
    assert_eq!(dry.replaced_files, 3);
    assert!(
        groups[0].iter().all(|s| exists(&s.path)),
        "a dry run deleted files"
    );

    let later = catalog
        .clean_up(now + 5 * HOUR_MS, retention, &protected, false, false)
        .await
        .unwrap();
    assert_eq!(later.replaced_files, 3);
    assert_eq!(
        later.replaced_bytes,
        groups[0].iter().map(|s| s.bytes).sum::<u64>()
    );
    assert_eq!(
        later.unreferenced_files, 0,
        "unreferenced files younger than a day are kept"
    );
    assert!(groups[0].iter().all(|s| !exists(&s.path)));

    let day_later = catalog
        .clean_up(
            now + UNREFERENCED_MIN_AGE_MS + HOUR_MS,
            retention,
            &protected,
            false,
            false,
        )
        .await
        .unwrap();
    assert_eq!(day_later.unreferenced_files, 1, "{day_later:?}");
    assert_eq!(day_later.deleted, vec![staged_dead_run.path.clone()]);
    assert!(!exists(&staged_dead_run.path));
    assert!(
        exists(&staged_live_run.path),
        "a protected staged output was deleted"
    );
    assert!(exists(&out.path), "a live segment was deleted");
    assert!(dir.path().join("_delta_log").read_dir().unwrap().count() > 0);
    assert_eq!(delta_totals(&uri).await.0, 15);
}

#[tokio::test]
async fn clean_up_never_touches_a_table_nested_below_nor_a_foreign_writers_files() {
    let (dir, uri, mut outer) = new_table().await;
    // A second table inside the first one's directory, with a replaced file of its own, and a
    // stream writer's file not committed yet at the outer root.
    let inner_dir = dir.path().join("offline");
    std::fs::create_dir_all(&inner_dir).unwrap();
    let inner_uri = uri_of(&inner_dir);
    let mut inner = Catalog::create(&inner_uri, &event_schema(), HashMap::new())
        .await
        .unwrap();
    let groups = append_groups(&inner_dir, &mut inner, 1, 2).await;
    let out = concat_segments(&inner_dir, &groups[0], "data/out/g0.parquet");
    inner
        .replace(concat_replacement(
            &groups[0],
            out.clone(),
            "minion.dev/ns/run/0",
        ))
        .await
        .unwrap();
    let uncommitted = write_segment(dir.path(), "part-0001-writer.parquet", &[(1, 1)]);
    let dead_staged = write_segment(dir.path(), "data/run-dead/0-1/x.parquet", &[(1, 1)]);
    let much_later = chrono::Utc::now().timestamp_millis() + 30 * UNREFERENCED_MIN_AGE_MS;

    let r = outer
        .clean_up(much_later, 4 * HOUR_MS, &[], false, false)
        .await
        .unwrap();
    assert_eq!(r.deleted, vec![dead_staged.path.clone()], "{r:?}");
    assert_eq!(r.kept_foreign, 1, "{r:?}");
    assert!(r.kept_nested >= 4, "{r:?}");
    assert!(dir.path().join(&uncommitted.path).exists());
    assert!(inner_dir.join("_delta_log").read_dir().unwrap().count() > 0);
    for s in groups[0].iter().chain([&out]) {
        assert!(
            inner_dir.join(&s.path).exists(),
            "{} of the inner table deleted",
            s.path
        );
    }
    assert_eq!(delta_totals(&inner_uri).await.0, 10);
    assert_eq!(delta_totals(&uri).await.0, 0);

    // A Table that opts in cleans up the foreign file, still never the nested table.
    let r = outer
        .clean_up(much_later, 4 * HOUR_MS, &[], true, false)
        .await
        .unwrap();
    assert_eq!(r.deleted, vec![uncommitted.path.clone()], "{r:?}");
    assert_eq!(delta_totals(&inner_uri).await.0, 10);
}

#[tokio::test]
async fn a_writers_files_replaced_by_an_operator_commit_are_cleaned_up_after_the_retention() {
    let (dir, uri, mut catalog) = new_table().await;
    // Two files a stream writer committed (outside data/), then merged by the operator.
    let writer = [
        write_segment(dir.path(), "part-0000-writer.parquet", &[(1, 1), (2, 2)]),
        write_segment(dir.path(), "part-0001-writer.parquet", &[(3, 3)]),
    ];
    catalog.append(&writer, &[]).await.unwrap();
    let out = concat_segments(dir.path(), &writer, "data/ns/run/0/1/merged.parquet");
    catalog
        .replace(concat_replacement(
            &writer,
            out.clone(),
            "minion.dev/ns/run/0",
        ))
        .await
        .unwrap();
    // A file the writer has not committed.
    let pending = write_segment(dir.path(), "part-0002-writer.parquet", &[(4, 4)]);
    let records = || {
        std::fs::read_dir(dir.path().join("_minion/removed"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(
        records(),
        1,
        "the commit recorded the writer's files it removed"
    );
    let much_later = chrono::Utc::now().timestamp_millis() + 30 * UNREFERENCED_MIN_AGE_MS;
    let r = catalog
        .clean_up(much_later, 4 * HOUR_MS, &[], false, false)
        .await
        .unwrap();
    let mut deleted = r.deleted.clone();
    deleted.sort();
    assert_eq!(
        deleted,
        vec!["part-0000-writer.parquet", "part-0001-writer.parquet"],
        "{r:?}"
    );
    assert!(
        dir.path().join(&pending.path).exists(),
        "an uncommitted file was deleted"
    );
    assert!(dir.path().join(&out.path).exists());
    assert_eq!(records(), 0, "a record whose files are gone is deleted");
    assert_eq!(delta_totals(&uri).await.0, 3);
}

#[tokio::test]
async fn delete_prefix_removes_only_the_reverted_entrys_staged_outputs() {
    let (dir, _uri, mut catalog) = new_table().await;
    let live = write_segment(dir.path(), "data/r/1-1/live.parquet", &[(1, 1)]);
    catalog
        .append(std::slice::from_ref(&live), &[])
        .await
        .unwrap();
    write_segment(dir.path(), "data/r/1-1/staged.parquet", &[(1, 1)]);
    std::fs::write(dir.path().join("data/r/1-1/_manifest.json"), "{}").unwrap();
    let neighbour = write_segment(dir.path(), "data/r/1-11/other.parquet", &[(1, 1)]);

    assert_eq!(catalog.delete_prefix("data/r/1-1").await.unwrap(), 2);
    assert_eq!(
        catalog
            .delete_prefix("data/never-written/0-1")
            .await
            .unwrap(),
        0
    );
    assert!(dir.path().join(&live.path).exists());
    assert!(dir.path().join(&neighbour.path).exists());
    assert_eq!(
        catalog
            .delete_prefix("_delta_log")
            .await
            .unwrap_err()
            .reason(),
        "InvalidSegment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_appends_during_compaction_commit_without_loss() {
    let (dir, uri, mut catalog) = new_table().await;
    let groups = append_groups(dir.path(), &mut catalog, 3, 3).await;
    let root = dir.path().to_path_buf();
    let appender = {
        let uri = uri.clone();
        tokio::spawn(async move {
            let mut other = Catalog::open(&uri, HashMap::new())
                .await
                .unwrap()
                .with_commit_attempts(50);
            for i in 0..10 {
                let s = write_segment(&root, &format!("data/stream/{i}.parquet"), &[(i, 1)]);
                other.append(&[s], &[]).await.unwrap();
            }
        })
    };
    let mut catalog = catalog.with_commit_attempts(50);
    for (g, group) in groups.iter().enumerate() {
        let out = concat_segments(dir.path(), group, &format!("data/out/{g}.parquet"));
        catalog
            .replace(concat_replacement(
                group,
                out,
                &format!("minion.dev/ns/c/{g}"),
            ))
            .await
            .unwrap();
    }
    appender.await.unwrap();
    assert_eq!(delta_totals(&uri).await, (3 * 3 * 5 + 10, 3 * 3 * 15 + 10));
}

#[tokio::test]
async fn a_checkpoint_is_written_automatically_every_checkpoint_interval_commits() {
    let (dir, uri, mut catalog) = new_table().await;
    let checkpoints = || checkpoint_files(dir.path()).len();
    let interval = minion_operator::catalog::CHECKPOINT_INTERVAL as usize;
    // Version 0 is the creation; the commit landing on version `interval - 1` checkpoints.
    for i in 0..interval - 1 {
        assert_eq!(checkpoints(), 0, "checkpoint before commit {i}");
        let segment = SegmentRef {
            path: format!("data/{i}.parquet"),
            rows: 1,
            bytes: 1,
            min_time_ms: Some(i as i64),
            max_time_ms: Some(i as i64),
            partition: None,
            tags: BTreeMap::new(),
        };
        catalog.append(&[segment], &[]).await.unwrap();
    }
    assert_eq!(catalog.version() as usize, interval - 1);
    assert_eq!(checkpoints(), 1);
    let reopened = Catalog::open(&uri, HashMap::new()).await.unwrap();
    assert_eq!(reopened.segments().unwrap().len(), interval - 1);
}

#[tokio::test]
async fn tables_the_operator_creates_pass_its_own_delta_feature_check() {
    let (_dir, _uri, mut catalog) = new_table().await;
    let features = catalog.features().unwrap();
    assert_eq!(features.unsupported(), None, "{features:?}");
    assert!(features.partition_columns.is_empty() && features.min_reader_version <= 1);
    catalog.checkpoint().await.unwrap();
    catalog.refresh().await.unwrap();
}

#[tokio::test]
async fn a_long_source_files_list_is_stored_beside_the_table_and_read_back_inline() {
    use minion_contract::segment::{TAG_SOURCE_FILES, TAG_SOURCE_FILES_REF};
    use minion_operator::catalog::{INGESTED_DIR, MAX_INLINE_SOURCE_FILES};
    let (dir, _uri, mut catalog) = new_table().await;
    let list = |n: usize| {
        let m: BTreeMap<String, String> = (0..n)
            .map(|i| (format!("s3://in/f{i:04}.csv"), format!("v{i}")))
            .collect();
        serde_json::to_string(&m).unwrap()
    };
    let mut long = write_segment(dir.path(), "data/long.parquet", &[(100, 1)]);
    long.tags
        .insert(TAG_SOURCE_FILES.into(), list(MAX_INLINE_SOURCE_FILES * 50));
    let mut short = write_segment(dir.path(), "data/short.parquet", &[(200, 1)]);
    short
        .tags
        .insert(TAG_SOURCE_FILES.into(), list(MAX_INLINE_SOURCE_FILES));
    let mut adds = vec![long.clone(), short.clone()];
    catalog.record_source_files(&mut adds).await.unwrap();
    // Recording twice (a replayed commit) writes the same object and tags the same way.
    let mut again = vec![long.clone(), short.clone()];
    catalog.record_source_files(&mut again).await.unwrap();
    assert_eq!(again, adds);
    catalog.append(&adds, &[]).await.unwrap();

    let listed = by_path(catalog.segments().unwrap());
    let (in_log_long, in_log_short) = (&listed[0], &listed[1]);
    assert_eq!(in_log_short, &short, "a short list stays inline");
    assert!(!in_log_long.tags.contains_key(TAG_SOURCE_FILES));
    let reference = &in_log_long.tags[TAG_SOURCE_FILES_REF];
    assert!(reference.starts_with(INGESTED_DIR), "{reference}");
    assert!(
        in_log_long.tags.values().map(String::len).sum::<usize>() < 200,
        "bounded tags: {:?}",
        in_log_long.tags
    );
    assert!(dir.path().join(reference).is_file());

    // Read back: the list is inline again, in memory.
    let mut fresh = Catalog::open(&uri_of(dir.path()), HashMap::new())
        .await
        .unwrap();
    fresh.refresh().await.unwrap();
    let mut expanded = by_path(fresh.segments().unwrap());
    fresh.expand_source_files(&mut expanded).await.unwrap();
    assert_eq!(
        expanded[0].tags[TAG_SOURCE_FILES],
        long.tags[TAG_SOURCE_FILES]
    );
    assert_eq!(expanded[1], short);

    // Clean-up: a list no live segment names goes once a day old; a named one stays.
    let orphan = dir
        .path()
        .join(INGESTED_DIR)
        .join("00000000000000000000000000000000.json");
    std::fs::write(&orphan, "{}").unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        fresh.clean_up_source_files(now).await.unwrap(),
        0,
        "too young"
    );
    assert_eq!(
        fresh
            .clean_up_source_files(now + UNREFERENCED_MIN_AGE_MS + 60_000)
            .await
            .unwrap(),
        1
    );
    assert!(!orphan.exists());
    assert!(dir.path().join(reference).is_file());

    // A named list that is gone is an error, never an empty list.
    std::fs::remove_file(dir.path().join(reference)).unwrap();
    let mut other = expanded.clone();
    other[0].tags.remove(TAG_SOURCE_FILES);
    other[0].tags.insert(
        TAG_SOURCE_FILES_REF.into(),
        format!("{INGESTED_DIR}/0000000000000000ffffffffffffffff.json"),
    );
    assert!(fresh.expand_source_files(&mut other).await.is_err());
}

/// A handle keeps its listing per version and derives the next one from its own commits
/// instead of listing the log again: what it lists must be what a fresh open lists, after
/// appends, replacements (with tags, partitions and a retried commit), and another writer's
/// commit in between.
#[tokio::test]
async fn a_handles_listing_after_its_own_commits_is_what_a_fresh_open_lists() {
    let (dir, uri, mut catalog) = new_table().await;
    let fresh = || async {
        by_path(
            Catalog::open(&uri, HashMap::new())
                .await
                .unwrap()
                .segments()
                .unwrap(),
        )
    };
    let mut groups = append_groups(dir.path(), &mut catalog, 2, 4).await;
    // Listed once here, so the commits below advance a kept listing.
    assert_eq!(by_path(catalog.segments().unwrap()), fresh().await);
    // An append advances it; its index of live paths (built on first use, not by a listing)
    // knows the appended files and the earlier ones.
    let third = append_group(dir.path(), &mut catalog, 2, 4).await;
    assert!(catalog.is_live(&third[3].path).unwrap());
    assert!(catalog.is_live(&groups[0][0].path).unwrap());
    assert!(!catalog.is_live("data/in/never-written.parquet").unwrap());
    groups.push(third);
    assert_eq!(by_path(catalog.segments().unwrap()), fresh().await);

    let mut merged = write_segment(dir.path(), "data/out/m0.parquet", &[(1, 1), (2, 2)]);
    merged.partition = Some(2);
    merged.tags = BTreeMap::from([("mergeLevel".to_string(), "1hour".to_string())]);
    catalog
        .replace(concat_replacement(
            &groups[0],
            merged.clone(),
            "listing-run-0",
        ))
        .await
        .unwrap();
    assert_eq!(by_path(catalog.segments().unwrap()), fresh().await);
    assert!(catalog.is_live(&merged.path).unwrap());
    assert!(!catalog.is_live(&groups[0][0].path).unwrap());
    // Replaying the same commit changes nothing.
    let again = catalog
        .replace(concat_replacement(&groups[0], merged, "listing-run-0"))
        .await
        .unwrap();
    assert!(again.already_committed);
    assert_eq!(by_path(catalog.segments().unwrap()), fresh().await);

    // Another writer commits; this handle's next commit starts from the refreshed version.
    let mut other = Catalog::open(&uri, HashMap::new()).await.unwrap();
    other
        .replace(concat_replacement(
            &groups[1],
            write_segment(dir.path(), "data/out/m1.parquet", &[(3, 1)]),
            "listing-run-1",
        ))
        .await
        .unwrap();
    catalog
        .replace(concat_replacement(
            &groups[2],
            write_segment(dir.path(), "data/out/m2.parquet", &[(4, 1)]),
            "listing-run-2",
        ))
        .await
        .unwrap();
    let listed = by_path(catalog.segments().unwrap());
    assert_eq!(listed, fresh().await);
    assert_eq!(listed.len(), 3);
    let total: u64 = listed.iter().map(|s| s.rows).sum();
    assert_eq!(total, 4);
}
