//! Finding a local table's new log files without reading all of `_delta_log/`.
//!
//! deltalake (through delta-kernel) finds the commits after a version by listing `_delta_log/`
//! from that version: every refresh, and so every commit, lists it. On S3 a listing
//! from an offset costs what it returns. The local file system's store walks the whole
//! directory and converts every name to compare it with the offset, so there a commit costs
//! time in proportion to the log's length, and a table that a stream writer appends to all day
//! keeps thousands of log files until they expire (`delta.logRetentionDuration`).
//!
//! [`LocalLogStore`] wraps the local store and answers a listing of `_delta_log/` from a
//! version by probing the names the versions from there can have, in order: the parts of the
//! checkpoint `_last_checkpoint` names, `<v>.checkpoint.parquet`, `<v>.crc` and `<v>.json`,
//! stopping at the first version that has neither a commit nor a checkpoint. A listing costs a
//! few `stat`s per version it returns, whatever the length of the log. It falls back to the
//! full listing whenever the probe cannot be sure to see what a listing would: a listing that
//! is not of `_delta_log/` from a version, a version before which the log holds nothing (a log
//! cleaned past it, or the first listing of a table). The tables the operator accepts have only
//! classic checkpoints (`v2Checkpoint` is refused, see `features`), whose names are known from
//! the version and the hint; other files (compacted logs, a checkpoint a later hint does not
//! name) are optional for a reader and never needed to see the latest version.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Width of the zero-padded version in log file names.
const VERSION_DIGITS: usize = 20;

/// The local file system store, with listings of `_delta_log/` by probing (module docs).
#[derive(Debug)]
pub(crate) struct LocalLogStore {
    inner: LocalFileSystem,
}

impl LocalLogStore {
    /// A store rooted at the file system's root, as deltalake expects a table's root store.
    pub(crate) fn new() -> Self {
        LocalLogStore {
            inner: LocalFileSystem::new(),
        }
    }

    /// A listing from an offset that the probe could not answer: the full directory walk.
    fn full_listing(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        #[cfg(test)]
        if let Some(prefix) = prefix {
            tests::record(&tests::FULL_LISTINGS, prefix);
        }
        self.inner.list_with_offset(prefix, offset)
    }
}

impl fmt::Display for LocalLogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalLogStore({})", self.inner)
    }
}

/// The version a listing starts from, when `prefix` is a `_delta_log` directory and `offset`
/// a version's name in it: `<v>` (list from `v`) or `<v>.json` (list after it, from `v + 1`).
fn log_listing_start(prefix: Option<&Path>, offset: &Path) -> Option<u64> {
    let prefix = prefix?;
    if prefix.filename() != Some("_delta_log") {
        return None;
    }
    let mut parts: Vec<_> = offset.parts().collect();
    let name = parts.pop()?;
    if Path::from_iter(parts) != *prefix {
        return None;
    }
    let name = name.as_ref();
    let (digits, next) = match name.strip_suffix(".json") {
        Some(digits) => (digits, 1),
        None => (name, 0),
    };
    if digits.len() != VERSION_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_add(next)
}

/// The checkpoint `_last_checkpoint` names: its version and, for a multi-part one, its parts.
fn checkpoint_hint(log_dir: &std::path::Path) -> Option<(u64, Option<u64>)> {
    let bytes = std::fs::read(log_dir.join("_last_checkpoint")).ok()?;
    let hint: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let version = hint.get("version")?.as_u64()?;
    Some((version, hint.get("parts").and_then(|p| p.as_u64())))
}

/// What a probe found: the log files from the start version on, in name order, or `None`
/// when only a full listing can tell.
fn probe(log_dir: &std::path::Path, prefix: &Path, start: u64) -> Result<Option<Vec<ObjectMeta>>> {
    let hint = checkpoint_hint(log_dir);
    let stat = |name: &str| -> Result<Option<ObjectMeta>> {
        let file = log_dir.join(name);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                location: prefix.clone().join(name),
                last_modified: meta
                    .modified()
                    .map(chrono::DateTime::<chrono::Utc>::from)
                    .unwrap_or_default(),
                size: meta.len(),
                e_tag: None,
                version: None,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(object_store::Error::Generic {
                store: "LocalLogStore",
                source: Box::new(e),
            }),
        }
    };
    let mut found = Vec::new();
    let mut version = start;
    loop {
        let mut names = Vec::with_capacity(4);
        if let Some((hinted, Some(parts))) = hint
            && hinted == version
        {
            names
                .extend((1..=parts).map(|part| {
                    format!("{version:020}.checkpoint.{part:010}.{parts:010}.parquet")
                }));
        }
        names.push(format!("{version:020}.checkpoint.parquet"));
        names.push(format!("{version:020}.crc"));
        let commit = format!("{version:020}.json");
        let before = found.len();
        for name in &names {
            found.extend(stat(name)?);
        }
        let checkpointed = found.len() > before;
        let committed = stat(&commit)?;
        let has_commit = committed.is_some();
        found.extend(committed);
        if !has_commit && !checkpointed {
            if version == start {
                // Nothing at the start: either the log ends just before it (a refresh with no
                // new commit), or it does not reach it (cleaned past it, or empty).
                let ends_before = start > 0
                    && (stat(&format!("{:020}.json", start - 1))?.is_some()
                        || stat(&format!("{:020}.checkpoint.parquet", start - 1))?.is_some());
                return Ok(ends_before.then_some(found));
            }
            return Ok(Some(found));
        }
        version += 1;
    }
}

#[async_trait]
impl ObjectStore for LocalLogStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let (Some(start), Some(prefix_path)) = (log_listing_start(prefix, offset), prefix) else {
            return self.inner.list_with_offset(prefix, offset);
        };
        let log_dir: PathBuf = match self.inner.path_to_filesystem(prefix_path) {
            Ok(dir) => dir,
            Err(_) => return self.full_listing(prefix, offset),
        };
        match probe(&log_dir, prefix_path, start) {
            Ok(Some(found)) => {
                #[cfg(test)]
                tests::record(&tests::PROBED_LISTINGS, prefix_path);
                stream::iter(found.into_iter().map(Ok)).boxed()
            }
            Ok(None) => self.full_listing(prefix, offset),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// The store for a `file://` table's root (see [`LocalLogStore`]).
pub(crate) fn local_store() -> Arc<dyn ObjectStore> {
    Arc::new(LocalLogStore::new())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use futures::TryStreamExt;

    use minion_contract::{Column, ColumnRole, ColumnType, SegmentRef, TableSchema, TimeUnit};

    use super::*;
    use crate::catalog::Catalog;

    fn schema() -> TableSchema {
        TableSchema {
            columns: vec![Column {
                name: "ts".into(),
                data_type: ColumnType::Long,
                role: ColumnRole::DateTime,
                nullable: false,
            }],
            time_column: "ts".into(),
            time_unit: TimeUnit::Milliseconds,
            time_format: None,
            primary_key: vec![],
            comparison_column: None,
            partitioning: None,
            sorted_column: None,
            bloom_filter_columns: vec![],
        }
    }

    fn segment(i: usize) -> SegmentRef {
        SegmentRef {
            path: format!("data/s/{i}.parquet"),
            rows: 10,
            bytes: 1_000,
            min_time_ms: Some(i as i64 * 1_000),
            max_time_ms: Some(i as i64 * 1_000 + 999),
            partition: None,
            tags: Default::default(),
        }
    }

    /// The `_delta_log` prefixes of listings that went to the full walk, in any test.
    pub(crate) static FULL_LISTINGS: Mutex<Vec<Path>> = Mutex::new(Vec::new());
    /// The `_delta_log` prefixes of listings the probe answered, in any test.
    pub(crate) static PROBED_LISTINGS: Mutex<Vec<Path>> = Mutex::new(Vec::new());

    pub(crate) fn record(listings: &Mutex<Vec<Path>>, log: &Path) {
        listings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(log.clone());
    }

    fn listings_of(listings: &Mutex<Vec<Path>>, log: &Path) -> usize {
        listings
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == log)
            .count()
    }

    /// The names a listing returns, the probe's and the full walk's, restricted to the files
    /// the probe knows (commits, checkpoints, checksums).
    async fn names(store: &dyn ObjectStore, prefix: &Path, offset: &Path) -> Vec<String> {
        let mut names: Vec<String> = store
            .list_with_offset(Some(prefix), offset)
            .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
            .try_collect()
            .await
            .unwrap();
        names.retain(|n| n.ends_with(".json") || n.ends_with(".crc") || n.contains(".checkpoint."));
        names.sort();
        names
    }

    #[test]
    fn only_listings_of_the_log_from_a_version_are_probed() {
        let log = Path::from("t/a/_delta_log");
        let at = |name: &str| log.clone().join(name);
        assert_eq!(
            log_listing_start(Some(&log), &at("00000000000000000042")),
            Some(42)
        );
        assert_eq!(
            log_listing_start(Some(&log), &at("00000000000000000042.json")),
            Some(43)
        );
        assert_eq!(
            log_listing_start(Some(&log), &at("00000000000000000042.crc")),
            None
        );
        assert_eq!(log_listing_start(Some(&log), &at("42")), None);
        assert_eq!(log_listing_start(None, &at("00000000000000000042")), None);
        let data = Path::from("t/a/data");
        assert_eq!(
            log_listing_start(Some(&data), &data.clone().join("00000000000000000042")),
            None
        );
        let other = Path::from("t/b/_delta_log");
        assert_eq!(
            log_listing_start(Some(&other), &at("00000000000000000042")),
            None
        );
    }

    #[tokio::test]
    async fn a_probed_listing_returns_what_the_full_walk_returns() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("file://{}", dir.path().display());
        let mut catalog = Catalog::create(&uri, &schema(), HashMap::new())
            .await
            .unwrap();
        // 230 commits: checkpoints at versions 99 and 199 (every 100th commit), commits after.
        for i in 0..230 {
            catalog.append(&[segment(i)], &[]).await.unwrap();
        }
        let log_dir = dir.path().join("_delta_log");
        let log = Path::from_absolute_path(&log_dir).unwrap();
        let probing = LocalLogStore::new();
        let walking = LocalFileSystem::new();
        let check = |from: String| {
            let offset = log.clone().join(from.as_str());
            let (probing, walking, log) = (&probing, &walking, &log);
            async move {
                assert_eq!(
                    names(probing, log, &offset).await,
                    names(walking, log, &offset).await,
                    "listing from {from}"
                );
            }
        };
        for version in [0u64, 1, 98, 99, 100, 199, 200, 229, 230, 231, 500] {
            check(format!("{version:020}")).await;
            check(format!("{version:020}.json")).await;
        }
        // A multi-part checkpoint the hint names (another writer's), and a log cleaned up to
        // the checkpoint: the probe still returns what the walk does.
        let single = log_dir.join(format!("{:020}.checkpoint.parquet", 199));
        let bytes = std::fs::read(&single).unwrap();
        std::fs::remove_file(&single).unwrap();
        for part in 1..=2 {
            std::fs::write(
                log_dir.join(format!(
                    "{:020}.checkpoint.{part:010}.{:010}.parquet",
                    199, 2
                )),
                &bytes,
            )
            .unwrap();
        }
        std::fs::write(
            log_dir.join("_last_checkpoint"),
            r#"{"version":199,"size":200,"parts":2}"#,
        )
        .unwrap();
        for version in 0..150u64 {
            let _ = std::fs::remove_file(log_dir.join(format!("{version:020}.json")));
        }
        for version in [0u64, 150, 198, 199, 200, 230, 231] {
            check(format!("{version:020}")).await;
        }
    }

    #[tokio::test]
    async fn commits_and_refreshes_never_walk_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("file://{}", dir.path().display());
        let mut writer = Catalog::create(&uri, &schema(), HashMap::new())
            .await
            .unwrap();
        let mut reader = Catalog::open(&uri, HashMap::new()).await.unwrap();
        let log = Path::from_absolute_path(dir.path().join("_delta_log")).unwrap();
        let before = listings_of(&FULL_LISTINGS, &log);
        let probed_before = listings_of(&PROBED_LISTINGS, &log);
        for i in 0..150 {
            writer.append(&[segment(i)], &[]).await.unwrap();
            if i % 10 == 0 {
                reader.refresh().await.unwrap();
                assert_eq!(reader.version(), writer.version());
            }
        }
        let opened = Catalog::open(&uri, HashMap::new()).await.unwrap();
        assert_eq!(opened.segments().unwrap().len(), 150);
        assert_eq!(
            listings_of(&FULL_LISTINGS, &log),
            before,
            "a listing of {log} walked the directory"
        );
        // The catalog's store is the probing one: its refreshes were answered by the probe.
        assert!(
            listings_of(&PROBED_LISTINGS, &log) >= probed_before + 150,
            "the catalog's refreshes of {log} did not go through the probe"
        );
    }
}
