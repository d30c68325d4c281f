//! The generator inputs that come from object storage rather than from catalogs: files listed
//! under an input directory (FileIngestion, SegmentBackfill) and upsert invalid-row counts
//! (SegmentRefresh).
//!
//! What it may touch: it lists input directories, reads `<segment>.validity` files, and
//! writes them (through [`minion_worker::compute_validity`]) when any is missing.
//!
//! # Decisions
//! - A file's version is its ETag when the store gives one (S3, GCS, Azure, and the local
//!   store's inode-mtime-size tag), else `<size>@<last-modified ms>`: a rewrite changes it.
//! - Files whose name starts with `.` (editors' and uploaders' temporary files) are never
//!   listed; include/exclude patterns are the generator's business.
//! - A missing input directory lists as empty (a prefix with no object in an object store).
//! - Validity is computed across every visible segment at once, oldest first (by time range,
//!   then path), whenever one segment has no validity file: a new segment may hold newer
//!   versions of keys in every older one, so stored counts of the others are stale too.

use std::collections::HashMap;

use futures::TryStreamExt;
use minion_contract::SegmentRef;

use super::ControlError;
use crate::generator::{ListedFile, TableView, sorted_by_time, visible};
use crate::model::TableDef;

/// Every file under `dir_uri` (recursively), sorted by URI, read with `options` — the storage
/// options of the Table the config writes to (`None`: the environment's settings), never those
/// of whichever Table's location the directory may lie in.
///
/// # Errors
/// The URI does not resolve or the listing fails.
pub async fn list_files(
    dir_uri: &str,
    options: Option<&crate::storage::Options>,
) -> Result<Vec<ListedFile>, ControlError> {
    let loc = crate::storage::resolve_with(dir_uri, options)
        .map_err(|e| ControlError::storage(dir_uri, e))?;
    let prefix = (!loc.base.as_ref().is_empty()).then_some(&loc.base);
    let listed: Vec<object_store::ObjectMeta> = match loc.store.list(prefix).try_collect().await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(ControlError::storage(dir_uri, e)),
    };
    let base = loc.base.as_ref();
    let mut out: Vec<ListedFile> = listed
        .into_iter()
        .filter(|m| m.location.filename().is_some_and(|f| !f.starts_with('.')))
        .map(|m| {
            let full = m.location.as_ref();
            let rel = full
                .strip_prefix(base)
                .unwrap_or(full)
                .trim_start_matches('/');
            let version = m
                .e_tag
                .clone()
                .unwrap_or_else(|| format!("{}@{}", m.size, m.last_modified.timestamp_millis()));
            ListedFile {
                format: None,
                uri: loc.child_uri(rel),
                bytes: m.size,
                version,
            }
        })
        .collect();
    out.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(out)
}

/// The files named explicitly (a FileIngestion's `inputFiles`), each with its size, version
/// and — by its name — format, sorted by URI, read with `options` as [`list_files`] is.
///
/// # Errors
/// A URI does not resolve, or a file cannot be read (its URI named).
pub async fn list_named_files(
    uris: &[String],
    options: Option<&crate::storage::Options>,
) -> Result<Vec<ListedFile>, ControlError> {
    use object_store::ObjectStoreExt;
    let mut out = Vec::with_capacity(uris.len());
    for uri in uris {
        let (loc, path) =
            minion_worker::store::resolve_file(uri).map_err(|e| ControlError::storage(uri, e))?;
        let loc = match options {
            Some(_) => crate::storage::resolve_with(&loc.uri, options)
                .map_err(|e| ControlError::storage(uri, e))?,
            None => loc,
        };
        let meta = loc
            .store
            .head(&path)
            .await
            .map_err(|e| ControlError::storage(uri, e))?;
        out.push(ListedFile {
            uri: uri.clone(),
            bytes: meta.size,
            version: meta.e_tag.unwrap_or_else(|| {
                format!("{}@{}", meta.size, meta.last_modified.timestamp_millis())
            }),
            format: crate::generator::file_ingestion::format_of(uri),
        });
    }
    out.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(out)
}

/// Invalid rows (superseded by a newer version of their primary key) of each visible segment
/// of an upsert table, by segment path. See the module decisions.
///
/// # Errors
/// A validity file is unreadable, or computing validity fails.
pub async fn invalid_rows(
    def: &TableDef,
    view: &TableView,
) -> Result<HashMap<String, u64>, ControlError> {
    let mut segments: Vec<SegmentRef> = Vec::new();
    let mut untimed: Vec<SegmentRef> = Vec::new();
    let live = visible(view);
    let timed = sorted_by_time(live.iter().copied());
    for s in &live {
        if crate::generator::time_range(s).is_none() && s.rows > 0 {
            untimed.push((*s).clone());
        }
    }
    untimed.sort_by(|a, b| a.path.cmp(&b.path));
    segments.extend(untimed);
    segments.extend(timed.iter().map(|t| t.segment.clone()));
    // The table's store with the Table's own storage settings.
    let loc = crate::storage::resolve(&def.uri).map_err(|e| ControlError::storage(&def.uri, e))?;
    let mut out = HashMap::new();
    for s in &segments {
        match minion_worker::read_validity_in(&loc, &s.path).await {
            Ok(v) => {
                out.insert(s.path.clone(), v.invalid());
            }
            Err(minion_worker::WorkerError::MissingInput { .. }) => {
                out.clear();
                break;
            }
            Err(e) => return Err(ControlError::storage(&def.uri, e)),
        }
    }
    if out.len() == segments.len() || segments.is_empty() {
        return Ok(out);
    }
    let table = super::protocol::location(def);
    let counts = minion_worker::compute_validity_in(
        &table,
        &loc,
        &segments,
        &minion_worker::RunOptions::default(),
    )
    .await
    .map_err(|e| ControlError::storage(&def.uri, e))?;
    Ok(counts.into_iter().map(|c| (c.path, c.invalid)).collect())
}
