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
//!   entries), nothing in `_delta_log/` and nothing under another top-level directory whose
//!   name starts with `_` or `.` (Delta's hidden-file rule) is ever deleted.

use std::collections::HashMap;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::error::{CatalogError, Result};
use super::{Catalog, relative_path, under_prefix};

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
}

/// Whether `path` is a sidecar (validity file) of a live segment.
fn is_live_sidecar(path: &str, live: &HashMap<String, i64>) -> bool {
    path.strip_suffix(minion_worker::upsert::VALIDITY_SUFFIX)
        .is_some_and(|segment| live.contains_key(segment))
}

/// Decides which files to delete. The report lists them in `deleted`.
pub(crate) fn plan_cleanup(input: &CleanupInput<'_>) -> CleanupReport {
    let mut report = CleanupReport::default();
    for file in input.files {
        let path = file.path.as_str();
        if is_live_sidecar(path, input.live) {
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

/// Delta's hidden-file rule at the top level: `_delta_log/`, `_anything/`, `.anything`.
fn is_hidden(path: &str) -> bool {
    path.starts_with('_') || path.starts_with('.')
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
        dry_run: bool,
    ) -> Result<CleanupReport> {
        self.refresh().await?;
        let live = self.live_files()?;
        let tombstones = self.tombstones().await?;
        let files = self.stored_files(None).await?;
        let mut report = plan_cleanup(&CleanupInput {
            files: &files,
            live: &live,
            tombstones: &tombstones,
            now_ms,
            retention_ms,
            protected_prefixes,
        });
        report.dry_run = dry_run;
        if !dry_run {
            for path in &report.deleted {
                self.delete_file(path).await?;
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
    /// happened after all) nor anything in a hidden top-level directory such as `_delta_log/`.
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
        let live = self.live_files()?;
        let mut deleted = 0;
        for file in self.stored_files(Some(trimmed)).await? {
            if !under_prefix(&file.path, trimmed) {
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

    fn run(
        files: &[StoredFile],
        live: &[&str],
        tombstones: &[(&str, i64)],
        protected: &[&str],
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
        })
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
