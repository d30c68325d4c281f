//! The generator inputs that come from object storage rather than from catalogs: files listed
//! under an input directory (FileIngestion, SegmentBackfill) and upsert invalid-row counts
//! (SegmentRefresh).
//!
//! What it may touch: it lists input directories and reads `<segment>.validity` files. It
//! never computes validity: when a file is missing, the run's first phase is a worker
//! subtask of kind validity that writes them (`super::validity`).
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
//! - Once per run: a segment committed after the run's validity subtask counts no invalid
//!   rows in this run (the counts only choose which segments to rewrite; the rewriting
//!   worker decides validity itself), so a table a stream keeps writing still gets planned.

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
            minion_store::resolve_file(uri).map_err(|e| ControlError::storage(uri, e))?;
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

/// The live data files of the Delta table at `uri` (any writer), at its latest version, read
/// with `options` (the destination Table's storage settings, as the worker reads the files).
/// A Delta data file never changes once written, so its version is its size.
///
/// # Errors
/// The table cannot be opened (no `_delta_log`, a feature we do not read, the store).
pub async fn list_delta_files(
    uri: &str,
    options: Option<&crate::storage::Options>,
) -> Result<Vec<ListedFile>, ControlError> {
    let catalog = crate::catalog::Catalog::open(uri, options.cloned().unwrap_or_default())
        .await
        .map_err(|source| ControlError::Catalog {
            table: uri.to_string(),
            source,
        })?;
    let segments = catalog.segments().map_err(|source| ControlError::Catalog {
        table: uri.to_string(),
        source,
    })?;
    let root = uri.trim_end_matches('/');
    let mut out: Vec<ListedFile> = segments
        .into_iter()
        .map(|s| ListedFile {
            uri: format!("{root}/{}", s.path),
            bytes: s.bytes,
            version: s.bytes.to_string(),
            format: Some(minion_contract::FileFormat::Parquet),
        })
        .collect();
    out.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(out)
}

/// What the validity files of an upsert table say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidRows {
    /// Invalid rows of each segment that has a validity file, by segment path (a segment
    /// without one counts none).
    Known(HashMap<String, u64>),
    /// Some segment has no validity file: a worker computes validity across `segments`
    /// (every visible segment, oldest first) before the run is planned.
    Missing { segments: Vec<SegmentRef> },
}

/// Every visible segment of an upsert table in the order validity is computed across them:
/// segments without a time range first (by path), then by time range, then path.
pub fn validity_order(view: &TableView) -> Vec<SegmentRef> {
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
    segments
}

/// Invalid rows (superseded by a newer version of their primary key) of each visible segment
/// of an upsert table, by segment path, from the validity files. See the module decisions.
/// `computed`: this run's validity subtask has run, so missing files are not computed again
/// (a segment committed since counts no invalid rows until the next run).
///
/// # Errors
/// A validity file is unreadable.
pub async fn invalid_rows(view: &TableView, computed: bool) -> Result<InvalidRows, ControlError> {
    let def: &TableDef = &view.def;
    let segments = validity_order(view);
    let mut out = HashMap::new();
    let mut missing = false;
    let loc = crate::storage::resolve(&def.uri).map_err(|e| ControlError::storage(&def.uri, e))?;
    for s in &segments {
        let path = loc.child(&format!("{}{}", s.path, minion_contract::VALIDITY_SUFFIX));
        match loc.get_bytes(&path).await {
            Ok(bytes) => {
                let counts = minion_contract::ValidityCounts::decode(&bytes)
                    .map_err(|m| ControlError::storage(&loc.display(&path), m))?;
                out.insert(s.path.clone(), counts.invalid);
            }
            Err(e) if e.is_not_found() => {
                missing = true;
                if !computed {
                    break;
                }
            }
            Err(e) => return Err(ControlError::storage(&loc.display(&path), e)),
        }
    }
    if missing && !computed {
        return Ok(InvalidRows::Missing { segments });
    }
    Ok(InvalidRows::Known(out))
}
