//! Bounded per-segment records of ingested files. A segment's `sourceFiles` tag (the files,
//! with versions, whose rows it holds) grows with every merge of ingested segments: a merge
//! output carries the union of its inputs' lists, and the log (and each checkpoint) repeats
//! every live segment's tags. A list longer than [`MAX_INLINE_SOURCE_FILES`] is therefore
//! stored beside the table, in `_minion/ingested/<content hash>.json`, and the segment carries
//! only its path (`sourceFilesRef`).
//!
//! # Contracts
//! - The object is written before the commit that names it and never changed (its name is a
//!   128-bit hash of its content), so a replayed commit writes the same object again, and a
//!   commit that never lands leaves an object nothing names. Housekeeping deletes objects no
//!   live segment names once they are older than [`super::UNREFERENCED_MIN_AGE_MS`]
//!   ([`Catalog::clean_up_source_files`]); the general clean-up never touches `_minion/`.
//! - Readers see segments as if the list were inline: [`Catalog::expand_source_files`] puts
//!   the `sourceFiles` tag back in memory (never in the log), so file ingestion's
//!   exactly-once checks and the carrying of lists onto merge outputs work unchanged. A named
//!   object that cannot be read is an error, never an empty list (that would ingest its files
//!   again).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use minion_contract::SegmentRef;
use minion_contract::segment::{TAG_SOURCE_FILES, TAG_SOURCE_FILES_REF};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::Catalog;
use super::error::{CatalogError, Result};

/// Where long `sourceFiles` lists are stored, relative to the table root.
pub const INGESTED_DIR: &str = "_minion/ingested";

/// Lists of at most this many files stay inline in the segment's tags.
pub const MAX_INLINE_SOURCE_FILES: usize = 8;

/// Lists read or written by this process, by `<table uri>|<path>` (objects never change).
fn cache() -> &'static Mutex<HashMap<String, Arc<String>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<String>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// At most this many lists are cached; past it the cache starts over.
const MAX_CACHED: usize = 4096;

fn remember(key: String, tag: Arc<String>) {
    let mut c = cache().lock().expect("source files cache");
    if c.len() >= MAX_CACHED {
        c.clear();
    }
    c.insert(key, tag);
}

/// The object path of a `sourceFiles` tag.
pub fn object_path(tag: &str) -> String {
    let hash = format!(
        "{:016x}{:016x}",
        twox_hash::XxHash3_64::oneshot_with_seed(0, tag.as_bytes()),
        twox_hash::XxHash3_64::oneshot_with_seed(0x6d69_6e69_6f6e, tag.as_bytes())
    );
    format!("{INGESTED_DIR}/{hash}.json")
}

/// Whether a `sourceFiles` tag is too long to stay inline.
fn too_long(tag: &str) -> bool {
    serde_json::from_str::<BTreeMap<String, String>>(tag)
        .map(|m| m.len() > MAX_INLINE_SOURCE_FILES)
        .unwrap_or(false)
}

impl Catalog {
    /// Moves each `sourceFiles` tag of `adds` longer than [`MAX_INLINE_SOURCE_FILES`] files
    /// into its object (written now) and tags the segment with the object's path instead. Call
    /// before committing `adds`.
    ///
    /// # Errors
    /// `StoreUnreachable` when an object cannot be written (nothing is committed then).
    pub async fn record_source_files(&self, adds: &mut [SegmentRef]) -> Result<()> {
        for s in adds {
            let Some(tag) = s.tags.get(TAG_SOURCE_FILES).filter(|t| too_long(t)) else {
                continue;
            };
            let path = object_path(tag);
            // Written every time, even when this process wrote it before: clean-up may have
            // deleted it since, if no commit named it for a day.
            self.table
                .object_store()
                .put(&Path::from(path.as_str()), tag.clone().into_bytes().into())
                .await
                .map_err(|e| CatalogError::store(&self.uri, e))?;
            remember(format!("{}|{path}", self.uri), Arc::new(tag.clone()));
            s.tags.remove(TAG_SOURCE_FILES);
            s.tags.insert(TAG_SOURCE_FILES_REF.to_string(), path);
        }
        Ok(())
    }

    /// Puts back, in memory, the `sourceFiles` tag of each segment that names its list's
    /// object (`sourceFilesRef`).
    ///
    /// # Errors
    /// `StoreUnreachable` when a named object cannot be read; `InvalidSegment` when it is not a
    /// list of files.
    pub async fn expand_source_files(&self, segments: &mut [SegmentRef]) -> Result<()> {
        for s in segments {
            if s.tags.contains_key(TAG_SOURCE_FILES) {
                continue;
            }
            let Some(path) = s.tags.get(TAG_SOURCE_FILES_REF).cloned() else {
                continue;
            };
            let key = format!("{}|{path}", self.uri);
            let cached = cache()
                .lock()
                .expect("source files cache")
                .get(&key)
                .cloned();
            let tag = match cached {
                Some(tag) => tag,
                None => {
                    let where_ = format!("{}/{path}", self.uri.trim_end_matches('/'));
                    let bytes = self
                        .table
                        .object_store()
                        .get(&Path::from(path.as_str()))
                        .await
                        .map_err(|e| CatalogError::store(&where_, e))?
                        .bytes()
                        .await
                        .map_err(|e| CatalogError::store(&where_, e))?;
                    let tag = String::from_utf8(bytes.to_vec())
                        .ok()
                        .filter(|t| serde_json::from_str::<BTreeMap<String, String>>(t).is_ok())
                        .ok_or_else(|| CatalogError::InvalidSegment {
                            uri: self.uri.clone(),
                            path: s.path.clone(),
                            detail: format!("{where_} is not a JSON map of source files"),
                        })?;
                    let tag = Arc::new(tag);
                    remember(key, tag.clone());
                    tag
                }
            };
            s.tags
                .insert(TAG_SOURCE_FILES.to_string(), tag.as_ref().clone());
        }
        Ok(())
    }

    /// Deletes the stored lists no live segment names (at the loaded version, refreshed
    /// first) that are older than [`super::UNREFERENCED_MIN_AGE_MS`] (a list younger than that
    /// may belong to a commit about to land); returns how many were deleted.
    ///
    /// # Errors
    /// The log cannot be refreshed, or the store cannot be listed or written.
    pub async fn clean_up_source_files(&mut self, now_ms: i64) -> Result<usize> {
        use futures::TryStreamExt;
        self.refresh().await?;
        let named: std::collections::HashSet<String> = self
            .segments()?
            .into_iter()
            .filter_map(|s| s.tags.get(TAG_SOURCE_FILES_REF).cloned())
            .collect();
        let store = self.table.object_store();
        let listed: Vec<object_store::ObjectMeta> = store
            .list(Some(&Path::from(INGESTED_DIR)))
            .try_collect()
            .await
            .map_err(|e| CatalogError::store(&self.uri, e))?;
        let mut deleted = 0;
        for meta in listed {
            let path = meta.location.as_ref().to_string();
            let age = now_ms - meta.last_modified.timestamp_millis();
            if named.contains(&path) || age < super::UNREFERENCED_MIN_AGE_MS {
                continue;
            }
            match store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(CatalogError::store(&self.uri, e)),
            }
        }
        Ok(deleted)
    }
}
