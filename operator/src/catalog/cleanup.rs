//! Deleting data files nobody needs any more (docs/architecture.md, "What lives in object
//! storage").
//!
//! Plan, then act ([`plan_cleanup`] is pure; [`Catalog::clean_up`] lists, plans and deletes;
//! `dry_run` returns the plan without deleting):
//! - a **replaced** file (tombstoned in the log, not live) is deleted once it was removed more
//!   than `retention_ms` ago, so readers of older snapshots can finish;
//! - an **unreferenced** file (neither live nor tombstoned: staged outputs of dead runs, files
//!   whose tombstones expired) is deleted once it is older than [`UNREFERENCED_MIN_AGE_MS`];
//! - a **sidecar** of a live segment (`<segment path>.validity`, the upsert validity file the
//!   worker writes beside it) counts as referenced: it lives and dies with its segment;
//! - nothing live, nothing under a protected prefix (the output prefixes of live lineage
//!   entries), nothing in `_delta_log/` and nothing with a path component whose name starts
//!   with `_` or `.` (Delta's hidden-file rule, at every depth) is ever deleted;
//! - nothing of another table: a directory below the root that holds a `_delta_log/` is a
//!   table of its own, and nothing under it is touched;
//! - only files the operator wrote (under `data/`, where every worker output is staged and
//!   committed) or that its own commits removed (recorded in `_minion/removed/` before the
//!   commit), unless the Table opts in to cleaning up foreign files
//!   (`spec.cleanUpForeignFiles`): a stream writer's file not committed yet, or one the
//!   writer replaced itself, is the writer's to delete.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::error::{CatalogError, Result};
use super::{Catalog, relative_path, under_prefix};

/// Where a commit that removes files the operator did not write records them first: one
/// `<hash>.json` per commit, a sorted JSON list of table-relative paths.
pub const REMOVED_DIR: &str = "_minion/removed";

/// Unreferenced files younger than this are kept: they may be outputs being written.
pub const UNREFERENCED_MIN_AGE_MS: i64 = 24 * 60 * 60 * 1000;

/// What a clean-up deleted (or, for a dry run, would delete) and what it kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub dry_run: bool,
    /// Replaced files past the retention.
    pub replaced_files: usize,
    pub replaced_bytes: u64,
    /// Files never (or no longer) referenced by the log, older than a day.
    pub unreferenced_files: usize,
    pub unreferenced_bytes: u64,
    /// Replaced files still within the retention.
    pub kept_in_retention: usize,
    /// Unreferenced files kept because they are protected or too young.
    pub kept_unreferenced: usize,
    /// Files kept because another writer wrote them (outside `data/`, no opt-in).
    pub kept_foreign: usize,
    /// Files kept because they belong to a table nested below this one.
    pub kept_nested: usize,
    /// The deleted (or to-be-deleted) paths, relative to the table URI.
    pub deleted: Vec<String>,
}

impl CleanupReport {
    pub fn deleted_files(&self) -> usize {
        self.replaced_files + self.unreferenced_files
    }

    pub fn deleted_bytes(&self) -> u64 {
        self.replaced_bytes + self.unreferenced_bytes
    }
}

/// One data file under the table root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredFile {
    pub path: String,
    pub bytes: u64,
    pub last_modified_ms: i64,
}

/// What the clean-up decides, before any deletion.
pub(crate) struct CleanupInput<'a> {
    pub files: &'a [StoredFile],
    pub live: &'a HashMap<String, i64>,
    /// Tombstoned path → latest deletion timestamp (epoch ms), when recorded.
    pub tombstones: &'a HashMap<String, Option<i64>>,
    pub now_ms: i64,
    pub retention_ms: i64,
    pub protected_prefixes: &'a [String],
    /// The Table lets clean-up delete files other writers wrote.
    pub foreign_files: bool,
    /// Files other writers wrote that the operator's own commits removed.
    pub removed_by_operator: &'a HashSet<String>,
}

/// Whether `path` is a sidecar (validity file) of a live segment.
fn is_live_sidecar(path: &str, live: &HashMap<String, i64>) -> bool {
    path.strip_suffix(minion_contract::VALIDITY_SUFFIX)
        .is_some_and(|segment| live.contains_key(segment))
}

/// The directories below the root that hold a `_delta_log/`: tables of their own.
fn nested_tables(files: &[StoredFile]) -> Vec<&str> {
    let mut roots: Vec<&str> = files
        .iter()
        .filter_map(|f| {
            f.path
                .match_indices("/_delta_log/")
                .next()
                .map(|(at, _)| &f.path[..at])
        })
        .collect();
    roots.sort_unstable();
    roots.dedup();
    roots
}

/// Whether the operator wrote `path` (every worker output lies under `data/`).
pub(crate) fn written_by_operator(path: &str) -> bool {
    under_prefix(path, minion_contract::DATA_DIR)
}

/// Decides which files to delete. The report lists them in `deleted`.
pub(crate) fn plan_cleanup(input: &CleanupInput<'_>) -> CleanupReport {
    let mut report = CleanupReport::default();
    let nested = nested_tables(input.files);
    for file in input.files {
        let path = file.path.as_str();
        if is_live_sidecar(path, input.live) {
            continue;
        }
        if nested.iter().any(|root| under_prefix(path, root)) {
            report.kept_nested += 1;
            continue;
        }
        if is_hidden(path)
            || input.live.contains_key(path)
            || input
                .protected_prefixes
                .iter()
                .any(|p| under_prefix(path, p))
        {
            if !input.live.contains_key(path) && !is_hidden(path) {
                report.kept_unreferenced += 1;
            }
            continue;
        }
        let removed_by_operator =
            input.tombstones.contains_key(path) && input.removed_by_operator.contains(path);
        if !input.foreign_files && !written_by_operator(path) && !removed_by_operator {
            report.kept_foreign += 1;
            continue;
        }
        match input.tombstones.get(path) {
            Some(removed_at) => {
                // A tombstone without a timestamp counts from the file's own age.
                let since = removed_at.unwrap_or(file.last_modified_ms);
                if since.saturating_add(input.retention_ms) <= input.now_ms {
                    report.replaced_files += 1;
                    report.replaced_bytes += file.bytes;
                    report.deleted.push(file.path.clone());
                } else {
                    report.kept_in_retention += 1;
                }
            }
            None => {
                if file
                    .last_modified_ms
                    .saturating_add(UNREFERENCED_MIN_AGE_MS)
                    <= input.now_ms
                {
                    report.unreferenced_files += 1;
                    report.unreferenced_bytes += file.bytes;
                    report.deleted.push(file.path.clone());
                } else {
                    report.kept_unreferenced += 1;
                }
            }
        }
    }
    report
}

/// Delta's hidden-file rule: a path component named `_anything` or `.anything`
/// (`_delta_log/`, `_minion/`, `.tmp`, `part/_SUCCESS`). At the top level always; below it
/// only outside `data/`, where the operator's own hidden files (a subtask's `_spec.json` and
/// `_result.json`) go with the staged outputs they describe.
fn is_hidden(path: &str) -> bool {
    let hidden = |c: &str| c.starts_with('_') || c.starts_with('.');
    hidden(path) || (!written_by_operator(path) && path.split('/').any(hidden))
}

impl Catalog {
    /// Deletes replaced files removed more than `retention_ms` before `now_ms`, and
    /// unreferenced files older than a day, except under `protected_prefixes`.
    ///
    /// # Guarantees
    /// Never deletes a file live at the loaded version (refreshed first), a file under a
    /// protected prefix, or anything in `_delta_log/`. A file that disappears meanwhile is
    /// not an error. With `dry_run` nothing is deleted and the report says what would be.
    ///
    /// # Errors
    /// `StoreUnreachable` when listing or deleting fails.
    pub async fn clean_up(
        &mut self,
        now_ms: i64,
        retention_ms: i64,
        protected_prefixes: &[String],
        foreign_files: bool,
        dry_run: bool,
    ) -> Result<CleanupReport> {
        self.refresh().await?;
        let listing = self.listing()?;
        let live = listing.sizes();
        let tombstones = self.tombstones().await?;
        let files = self.stored_files(None).await?;
        let records = self.removal_records().await?;
        let removed_by_operator: HashSet<String> = records
            .iter()
            .flat_map(|(_, paths)| paths.clone())
            .collect();
        let mut report = plan_cleanup(&CleanupInput {
            files: &files,
            live,
            tombstones: &tombstones,
            now_ms,
            retention_ms,
            protected_prefixes,
            foreign_files,
            removed_by_operator: &removed_by_operator,
        });
        report.dry_run = dry_run;
        if !dry_run {
            for path in &report.deleted {
                self.delete_file(path).await?;
            }
            // A record is done once none of its files is left.
            let deleted: HashSet<&str> = report.deleted.iter().map(String::as_str).collect();
            let left: HashSet<&str> = files
                .iter()
                .map(|f| f.path.as_str())
                .filter(|p| !deleted.contains(p))
                .collect();
            for (record, paths) in &records {
                if paths.iter().all(|p| !left.contains(p.as_str())) {
                    self.delete_file(record).await?;
                }
            }
        }
        tracing::info!(
            table = %self.uri,
            replaced = report.replaced_files,
            unreferenced = report.unreferenced_files,
            bytes = report.deleted_bytes(),
            dry_run,
            "catalog clean-up"
        );
        Ok(report)
    }

    /// Deletes every file under the directory `prefix` (the staged outputs of a reverted
    /// lineage entry) and returns how many were deleted.
    ///
    /// # Guarantees
    /// Never deletes a live file (a live file under the prefix is kept and logged: its commit
    /// happened after all), anything in a hidden top-level directory such as `_delta_log/`,
    /// nor anything of a table nested under the prefix.
    ///
    /// # Errors
    /// `InvalidSegment` for an empty or hidden prefix; `StoreUnreachable` on storage failure.
    pub async fn delete_prefix(&mut self, prefix: &str) -> Result<usize> {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() || is_hidden(trimmed) {
            return Err(CatalogError::InvalidSegment {
                uri: self.uri.clone(),
                path: prefix.to_string(),
                detail: "refusing to delete the table root or a hidden directory".into(),
            });
        }
        self.refresh().await?;
        let listing = self.listing()?;
        let live = listing.sizes();
        let files = self.stored_files(Some(trimmed)).await?;
        let nested = nested_tables(&files);
        let mut deleted = 0;
        for file in &files {
            if !under_prefix(&file.path, trimmed)
                || nested.iter().any(|root| under_prefix(&file.path, root))
            {
                continue;
            }
            if live.contains_key(&file.path) {
                tracing::warn!(table = %self.uri, path = %file.path, "not deleting a live segment under a reverted prefix");
                continue;
            }
            self.delete_file(&file.path).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Records the files of `paths` the operator did not write, before a commit removes them,
    /// so clean-up may delete them once they are past the retention. Writing the same record
    /// again (a replayed commit) is harmless; a record of a commit that never landed names
    /// live files, which clean-up never deletes.
    ///
    /// # Errors
    /// `StoreUnreachable` when the record cannot be written.
    pub(crate) async fn record_removals(&self, paths: &[String]) -> Result<()> {
        let foreign: BTreeSet<&str> = paths
            .iter()
            .map(String::as_str)
            .filter(|p| !written_by_operator(p))
            .collect();
        if foreign.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&foreign).expect("a list of strings serializes");
        let hash = format!(
            "{:016x}{:016x}",
            twox_hash::XxHash3_64::oneshot_with_seed(0, &body),
            twox_hash::XxHash3_64::oneshot_with_seed(0x6d69_6e69_6f6e, &body)
        );
        let path = Path::from(format!("{REMOVED_DIR}/{hash}.json"));
        self.table
            .object_store()
            .put(&path, body.into())
            .await
            .map_err(|e| CatalogError::store(&self.uri, e))?;
        Ok(())
    }

    /// Every removal record: its path and the files it names.
    async fn removal_records(&self) -> Result<Vec<(String, Vec<String>)>> {
        let store = self.table.object_store();
        let records: Vec<_> = store
            .list(Some(&Path::from(REMOVED_DIR)))
            .try_collect()
            .await
            .map_err(|e| CatalogError::store(&self.uri, e))?;
        let mut out = Vec::new();
        for meta in records {
            let body = store
                .get(&meta.location)
                .await
                .map_err(|e| CatalogError::store(&self.uri, e))?
                .bytes()
                .await
                .map_err(|e| CatalogError::store(&self.uri, e))?;
            // A record that cannot be read frees nothing (its files stay).
            match serde_json::from_slice::<Vec<String>>(&body) {
                Ok(paths) => out.push((meta.location.to_string(), paths)),
                Err(e) => {
                    tracing::warn!(table = %self.uri, record = %meta.location, error = %e, "unreadable removal record");
                }
            }
        }
        Ok(out)
    }

    /// Tombstoned paths at the loaded version with their latest deletion timestamp.
    async fn tombstones(&self) -> Result<HashMap<String, Option<i64>>> {
        let state = self.state()?;
        let log_store = self.table.log_store();
        let root = self.table.table_url().clone();
        let mut out: HashMap<String, Option<i64>> = HashMap::new();
        let mut stream = state.all_tombstones(log_store.as_ref());
        while let Some(t) = stream
            .try_next()
            .await
            .map_err(|e| CatalogError::delta(&self.uri, e))?
        {
            let entry = out.entry(relative_path(&root, &t.path())).or_default();
            *entry = (*entry).max(t.deletion_timestamp());
        }
        Ok(out)
    }

    /// Files under the table root (or under `prefix`), outside `_delta_log/`.
    async fn stored_files(&self, prefix: Option<&str>) -> Result<Vec<StoredFile>> {
        let store = self.table.object_store();
        let prefix = prefix.map(Path::from);
        store
            .list(prefix.as_ref())
            .map_ok(|meta| StoredFile {
                path: meta.location.to_string(),
                bytes: meta.size,
                last_modified_ms: meta.last_modified.timestamp_millis(),
            })
            .try_filter(|f| futures::future::ready(!f.path.starts_with("_delta_log/")))
            .try_collect()
            .await
            .map_err(|e| CatalogError::store(&self.uri, e))
    }

    async fn delete_file(&self, path: &str) -> Result<()> {
        match self.table.object_store().delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(CatalogError::store(&self.uri, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 60 * 60 * 1000;
    const NOW: i64 = 100 * 24 * HOUR;

    fn file(path: &str, age_ms: i64) -> StoredFile {
        StoredFile {
            path: path.into(),
            bytes: 10,
            last_modified_ms: NOW - age_ms,
        }
    }

    /// A clean-up of a Table that lets it delete foreign files.
    fn run(
        files: &[StoredFile],
        live: &[&str],
        tombstones: &[(&str, i64)],
        protected: &[&str],
    ) -> CleanupReport {
        run_as(files, live, tombstones, protected, true)
    }

    fn run_as(
        files: &[StoredFile],
        live: &[&str],
        tombstones: &[(&str, i64)],
        protected: &[&str],
        foreign_files: bool,
    ) -> CleanupReport {
        let live: HashMap<String, i64> = live.iter().map(|p| (p.to_string(), 10)).collect();
        let tombstones: HashMap<String, Option<i64>> = tombstones
            .iter()
            .map(|(p, age)| (p.to_string(), Some(NOW - age)))
            .collect();
        let protected: Vec<String> = protected.iter().map(|p| p.to_string()).collect();
        plan_cleanup(&CleanupInput {
            files,
            live: &live,
            tombstones: &tombstones,
            now_ms: NOW,
            retention_ms: 4 * HOUR,
            protected_prefixes: &protected,
            foreign_files,
            removed_by_operator: &HashSet::new(),
        })
    }

    #[test]
    fn a_table_nested_below_the_root_is_never_touched() {
        // A Table at `…/events` and another at `…/events/offline`: the outer one's clean-up
        // lists the inner one's files, none of them in its log.
        let files = [
            file("data/ns/run/0/1/old.parquet", 30 * HOUR),
            file("offline/_delta_log/00000000000000000000.json", 30 * HOUR),
            file("offline/data/ns/run/0/1/part.parquet", 30 * HOUR),
            file("offline/part-0001.parquet", 30 * HOUR),
            file("deep/er/_delta_log/00000000000000000003.json", 30 * HOUR),
            file("deep/er/x.parquet", 30 * HOUR),
        ];
        for foreign in [false, true] {
            let r = run_as(&files, &[], &[], &[], foreign);
            assert_eq!(r.deleted, vec!["data/ns/run/0/1/old.parquet"], "{r:?}");
            assert_eq!(r.kept_nested, 5, "{r:?}");
        }
    }

    #[test]
    fn foreign_files_are_kept_unless_the_table_opts_in() {
        let files = [
            file("data/ns/run/0/1/_spec.json", 30 * HOUR),
            file("data/ns/run/0/1/staged.parquet", 30 * HOUR),
            file("data/ns/run/0/2/replaced.parquet", 30 * HOUR),
            file("part-0001-writer-uncommitted.parquet", 30 * HOUR),
            file("part-0000-writer-replaced.parquet", 30 * HOUR),
            file("date=2024-01-01/_SUCCESS", 30 * HOUR),
            file("date=2024-01-01/.part.crc", 30 * HOUR),
        ];
        let tombstones = [
            ("data/ns/run/0/2/replaced.parquet", 5 * HOUR),
            ("part-0000-writer-replaced.parquet", 5 * HOUR),
        ];
        let r = run_as(&files, &[], &tombstones, &[], false);
        assert_eq!(
            r.deleted,
            vec![
                "data/ns/run/0/1/_spec.json",
                "data/ns/run/0/1/staged.parquet",
                "data/ns/run/0/2/replaced.parquet",
            ],
            "{r:?}"
        );
        assert_eq!(r.kept_foreign, 2, "{r:?}");
        let r = run_as(&files, &[], &tombstones, &[], true);
        assert_eq!(r.deleted.len(), 5, "hidden files stay: {r:?}");
        assert!(
            r.deleted
                .contains(&"part-0001-writer-uncommitted.parquet".to_string())
        );
    }

    #[test]
    fn replaced_files_are_deleted_only_after_the_retention() {
        let files = [
            file("old.parquet", 30 * HOUR),
            file("recent.parquet", 30 * HOUR),
        ];
        let r = run(
            &files,
            &[],
            &[("old.parquet", 5 * HOUR), ("recent.parquet", HOUR)],
            &[],
        );
        assert_eq!(r.deleted, vec!["old.parquet"]);
        assert_eq!(
            (r.replaced_files, r.replaced_bytes, r.kept_in_retention),
            (1, 10, 1)
        );
    }

    #[test]
    fn live_protected_and_hidden_files_are_never_deleted() {
        let files = [
            file("live.parquet", 90 * 24 * HOUR),
            file("data/run/0-1/out.parquet", 90 * 24 * HOUR),
            file("_delta_log/00000000000000000000.json", 90 * 24 * HOUR),
            file("_minion/spec.json", 90 * 24 * HOUR),
        ];
        let r = run(&files, &["live.parquet"], &[], &["data/run/0-1"]);
        assert!(r.deleted.is_empty(), "{r:?}");
        assert_eq!(r.kept_unreferenced, 1);
    }

    #[test]
    fn validity_sidecars_of_live_segments_are_kept_and_those_of_dead_ones_are_not() {
        let files = [
            file("seg-live.parquet", 90 * 24 * HOUR),
            file("seg-live.parquet.validity", 90 * 24 * HOUR),
            file("seg-gone.parquet", 90 * 24 * HOUR),
            file("seg-gone.parquet.validity", 90 * 24 * HOUR),
        ];
        let r = run(
            &files,
            &["seg-live.parquet"],
            &[("seg-gone.parquet", 5 * HOUR)],
            &[],
        );
        assert_eq!(
            r.deleted,
            vec!["seg-gone.parquet", "seg-gone.parquet.validity"]
        );
        assert_eq!((r.replaced_files, r.unreferenced_files), (1, 1));
        assert_eq!(r.kept_unreferenced, 0);
    }

    #[test]
    fn unreferenced_files_are_deleted_after_a_day() {
        let files = [
            file("data/dead/0-1/out.parquet", 25 * HOUR),
            file("data/dead/0-1/_manifest.json", 25 * HOUR),
            file("data/new/0-1/out.parquet", HOUR),
        ];
        let r = run(&files, &[], &[], &[]);
        assert_eq!(r.unreferenced_files, 2);
        assert_eq!(r.unreferenced_bytes, 20);
        assert_eq!(r.kept_unreferenced, 1);
        assert!(!r.deleted.contains(&"data/new/0-1/out.parquet".to_string()));
    }
}
