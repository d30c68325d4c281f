//! The table catalog: the set of committed segments of one table, kept as a Delta Lake log
//! (`_delta_log/` beside the data) and written through `deltalake` (docs/architecture.md).
//!
//! What it may touch: the table's `_delta_log/` (commits and checkpoints, only through
//! deltalake) and, for [`Catalog::clean_up`] and [`Catalog::delete_prefix`], data files under
//! the table URI. It never reads data files and never talks to Kubernetes.
//!
//! # Contracts
//! - A segment is a live Delta file; its path is relative to the table URI, URL-decoded.
//! - [`Catalog::append`] and [`Catalog::replace`] each make exactly one Delta commit (or none),
//!   so every Delta reader sees all of a replacement or none of it.
//! - A commit carries the run's identity as Delta application transactions (`txn`). The
//!   operator uses two kinds of app ids (see [`app_id`]):
//!   - `minion.dev/<namespace>/<config>[/<mergeLevel>]` with version = the watermark in epoch
//!     ms, written without `lastUpdated` so it never expires: the watermark is recovered from
//!     the log with [`Catalog::txn_version`];
//!   - `minion.dev/<namespace>/<taskRun>/<subtask>` with version 1: the identity of one
//!     subtask's commit, written with `lastUpdated` so it expires after the table's
//!     `delta.setTransactionRetentionDuration` ([`TXN_RETENTION`]).
//! - deltalake does not skip an already-applied `txn` version by itself; the commit functions
//!   check it, and never write a txn version lower than the one in the log.
//! - Checkpoints are written every [`CHECKPOINT_INTERVAL`] commits (deltalake's post-commit
//!   hook honours `delta.checkpointInterval`) and on demand with [`Catalog::checkpoint`], with
//!   the files' stats both as JSON and as a struct (`delta.checkpoint.writeStatsAsStruct`).
//! - Finding new commits costs the same whatever the log's length: object stores list
//!   `_delta_log/` from an offset; on the local file system, whose listing walks the whole
//!   directory, `log_listing` probes the version names instead.
//!
//! deltalake quirks handled here: `max_retries(0)` plus our own retry loop that re-checks
//! liveness; the rustls `ring` provider installed explicitly ([`install_crypto_provider`]);
//! per-file tags read through the (deprecated but only) public `add_action().tags`.

mod cleanup;
mod commit;
mod error;
mod features;
mod log_listing;
mod schema;
mod sources;
mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once, OnceLock};

use deltalake::kernel::{LogicalFileView, StructType, Version};
use deltalake::protocol::SaveMode;
use deltalake::table::builder::parse_table_uri;
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableBuilder, TableProperty};
use minion_contract::{ColumnType, SegmentRef, TableSchema, TimeFormat, TimeUnit};
use url::Url;

use crate::clock::{Clock, SystemClock};

pub use cleanup::{CleanupReport, UNREFERENCED_MIN_AGE_MS};
pub use commit::{AppTxn, CommitOutcome, Replacement};
pub use error::{CatalogError, Result};
pub use features::{TableFeatures, Unsupported};
pub use schema::{arrow_schema, arrow_type, delta_type};
pub use sources::{INGESTED_DIR, MAX_INLINE_SOURCE_FILES};
pub use stats::{FileStats, TimeColumn, TimeKind, parse_stats, stats_json};

/// `delta.checkpointInterval` of tables we create: a checkpoint every this many commits.
pub const CHECKPOINT_INTERVAL: u64 = 100;
/// `delta.setTransactionRetentionDuration` of tables we create. deltalake 1.1 honours it:
/// `txn` actions with a `lastUpdated` older than this are ignored by version lookups and
/// dropped from checkpoints; `txn`s without `lastUpdated` never expire.
pub const TXN_RETENTION: &str = "interval 30 days";
/// `delta.deletedFileRetentionDuration` of tables we create: tombstones stay in checkpoints at
/// least this long, longer than any clean-up retention, so replaced files are found by it.
pub const DELETED_FILE_RETENTION: &str = "interval 7 days";
/// Table property recording the time column, so [`Catalog::open`] can read time stats.
pub const PROP_TIME_COLUMN: &str = "minion.timeColumn";
/// Table property recording the unit of an integer time column.
pub const PROP_TIME_UNIT: &str = "minion.timeUnit";
/// Table property recording the time column's format (new spelling), when the schema gives
/// one; tables written before it have only [`PROP_TIME_UNIT`].
pub const PROP_TIME_FORMAT: &str = "minion.timeFormat";

/// Listing spreads over threads from this many files on.
const PARALLEL_LISTING_MIN_FILES: usize = 20_000;
/// At most this many listing threads.
const MAX_LISTING_THREADS: usize = 4;

/// Versions a handle applies to its loaded snapshot one update at a time before it loads the
/// snapshot whole again, from the latest checkpoint.
///
/// deltalake carries a snapshot's file list forward from one update to the next, and a
/// snapshot updated in place gets slower to update with every update it went through: on a
/// table of 1,000 files, a one-file append from a handle that had followed 1,000 commits took
/// 77 ms, from a handle loaded whole 15 ms (`benches/catalog_log.rs`). A whole load reads the
/// last checkpoint and the commits after it, about what a fresh open costs; once per
/// checkpoint interval, it keeps an update's cost independent of how long the handle lived.
const RELOAD_AFTER_VERSIONS: u64 = CHECKPOINT_INTERVAL;

/// Commit attempts (refresh, re-check, commit) before giving up with `CommitConflict`.
pub const DEFAULT_COMMIT_ATTEMPTS: usize = 5;

/// Installs rustls's `ring` crypto provider as the process default, once. kube and deltalake
/// otherwise pull in different providers and rustls refuses to pick one. Safe to call many
/// times and from any thread.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means a provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// deltalake's default log store (commits written with `PutMode::Create`, which S3, GCS and
/// Azure honour as a conditional write), for the cloud schemes deltalake registers only with
/// its cloud features. The store itself is ours (see [`builder`]).
#[derive(Debug)]
struct CloudLogStores;

impl deltalake::logstore::LogStoreFactory for CloudLogStores {
    fn with_options(
        &self,
        prefixed_store: deltalake::logstore::ObjectStoreRef,
        root_store: deltalake::logstore::ObjectStoreRef,
        location: &Url,
        options: &deltalake::logstore::StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn deltalake::logstore::LogStore>> {
        Ok(deltalake::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Registers [`CloudLogStores`] for `s3`, `s3a`, `gs`, `az`, `abfs`, `abfss` and `azure`, once.
fn register_cloud_log_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let registry = deltalake::logstore::logstore_factories();
        for scheme in ["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"] {
            let url = Url::parse(&format!("{scheme}://")).expect("a scheme URL");
            if !registry.contains_key(&url) {
                registry.insert(url, Arc::new(CloudLogStores));
            }
        }
    });
}

/// The application ids the operator commits under (see the module docs).
pub mod app_id {
    /// The watermark app id of a task config, per merge level where the task has levels.
    pub fn watermark(namespace: &str, config: &str, level: Option<&str>) -> String {
        match level {
            Some(level) => format!("minion.dev/{namespace}/{config}/{level}"),
            None => format!("minion.dev/{namespace}/{config}"),
        }
    }

    /// The run identity of one subtask's commit (committed with version 1).
    pub fn subtask(namespace: &str, task_run: &str, subtask: u32) -> String {
        format!("minion.dev/{namespace}/{task_run}/{subtask}")
    }
}

/// A handle on one table's Delta log, at a loaded version.
pub struct Catalog {
    uri: String,
    table: DeltaTable,
    time: TimeColumn,
    clock: Arc<dyn Clock>,
    commit_attempts: usize,
    /// The live segments of the last version listed (see [`Listing`]).
    listing: Mutex<Option<Arc<Listing>>>,
    /// Versions applied to the snapshot one update at a time since it was loaded whole (see
    /// [`RELOAD_AFTER_VERSIONS`]).
    updated_versions: u64,
}

/// The live segments of one loaded version, listed once and shared until the version changes.
///
/// Listing reads every file of the snapshot (about a microsecond and a half each), and a run's
/// steps need the list several times per commit (the commit's liveness check, the Table's
/// summary, the next plan): at 100,000 segments that was most of what the operator did. A
/// version's live set never changes, so the list is kept with its version; an own commit
/// derives the next version's list from the previous one and the commit's actions instead of
/// listing again (`Catalog::replace`).
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) version: Version,
    pub(crate) segments: Vec<SegmentRef>,
    /// Size of every live file, by path: built on first use (a commit's or a clean-up's
    /// liveness check), not by every listing.
    sizes: OnceLock<HashMap<String, i64>>,
}

impl Listing {
    fn new(version: Version, segments: Vec<SegmentRef>) -> Listing {
        Listing {
            version,
            segments,
            sizes: OnceLock::new(),
        }
    }

    /// Size of every live file, by path.
    pub(crate) fn sizes(&self) -> &HashMap<String, i64> {
        self.sizes.get_or_init(|| {
            self.segments
                .iter()
                .map(|s| (s.path.clone(), i64::try_from(s.bytes).unwrap_or(i64::MAX)))
                .collect()
        })
    }
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("uri", &self.uri)
            .field("version", &self.table.version())
            .field("time", &self.time)
            .finish()
    }
}

impl Catalog {
    /// Creates the Delta table for `schema` at `uri`, or opens the one already there.
    ///
    /// # Errors
    /// `SchemaMismatch` naming the first differing column when a table exists with another
    /// schema; `InvalidSchema` when the time column is missing or not INT/LONG/TIMESTAMP;
    /// `StoreUnreachable`/`Delta` for storage and library failures.
    pub async fn create(
        uri: &str,
        schema: &TableSchema,
        storage_options: HashMap<String, String>,
    ) -> Result<Catalog> {
        Self::open_as(uri, schema, storage_options, true).await
    }

    /// Opens the existing Delta table at `uri` and checks it against `schema`, as
    /// [`Catalog::create`] does, but never creates one.
    ///
    /// # Errors
    /// `TableNotFound` when there is no Delta table at `uri`; otherwise as [`Catalog::create`].
    pub async fn open_existing(
        uri: &str,
        schema: &TableSchema,
        storage_options: HashMap<String, String>,
    ) -> Result<Catalog> {
        Self::open_as(uri, schema, storage_options, false).await
    }

    async fn open_as(
        uri: &str,
        schema: &TableSchema,
        storage_options: HashMap<String, String>,
        may_create: bool,
    ) -> Result<Catalog> {
        install_crypto_provider();
        let time = time_column_of(uri, schema)?;
        let url = table_url(uri, true)?;
        let mut table = builder(uri, &url, &storage_options)?
            .build()
            .map_err(|e| CatalogError::delta(uri, e))?;
        let exists = table
            .verify_deltatable_existence()
            .await
            .map_err(|e| CatalogError::delta(uri, e))?;
        if !exists && !may_create {
            return Err(CatalogError::TableNotFound {
                uri: uri.to_string(),
            });
        }
        if !exists {
            let created = table
                .create()
                .with_columns(schema::delta_fields(schema))
                .with_save_mode(SaveMode::ErrorIfExists)
                .with_raise_if_key_not_exists(false)
                .with_configuration(table_properties(schema))
                .with_commit_properties(
                    deltalake::kernel::transaction::CommitProperties::default().with_max_retries(0),
                )
                .await;
            match created {
                Ok(t) => table = t,
                // Another creator won the race: fall through and compare schemas.
                Err(_) if table.verify_deltatable_existence().await.unwrap_or(false) => {}
                Err(e) => return Err(CatalogError::delta(uri, e)),
            }
        }
        if table.version().is_none() {
            table
                .load()
                .await
                .map_err(|e| CatalogError::delta(uri, e))?;
        }
        features::check(uri, &table)?;
        let existing = snapshot_schema(uri, &table)?;
        if let Some((column, detail)) = schema::schema_difference(&existing, schema) {
            return Err(CatalogError::SchemaMismatch {
                uri: uri.to_string(),
                column,
                detail,
            });
        }
        Ok(Catalog::with_table(uri, table, time))
    }

    /// Opens the Delta table at `uri` at its latest version. The time column is read from the
    /// table properties we write at creation; for a table created by another writer, use
    /// [`Catalog::create`] with the Table's schema instead (it opens and checks).
    ///
    /// # Errors
    /// `NotATable` when there is no `_delta_log` at `uri`.
    pub async fn open(uri: &str, storage_options: HashMap<String, String>) -> Result<Catalog> {
        install_crypto_provider();
        let url = table_url(uri, false)?;
        let table = builder(uri, &url, &storage_options)?
            .load()
            .await
            .map_err(|e| CatalogError::delta(uri, e))?;
        features::check(uri, &table)?;
        let time = time_column_from_properties(uri, &table)?;
        Ok(Catalog::with_table(uri, table, time))
    }

    fn with_table(uri: &str, table: DeltaTable, time: TimeColumn) -> Catalog {
        Catalog {
            uri: uri.to_string(),
            table,
            time,
            clock: Arc::new(SystemClock),
            commit_attempts: DEFAULT_COMMIT_ATTEMPTS,
            listing: Mutex::new(None),
            updated_versions: 0,
        }
    }

    /// Replaces the clock used for deletion timestamps, `modificationTime` and `txn.lastUpdated`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how many times a commit is attempted when other writers commit concurrently.
    pub fn with_commit_attempts(mut self, attempts: usize) -> Self {
        self.commit_attempts = attempts.max(1);
        self
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The time column used to read Delta stats.
    pub fn time_column(&self) -> &TimeColumn {
        &self.time
    }

    /// The protocol and table properties of the loaded snapshot, as the feature check reads
    /// them (see `features`).
    pub fn features(&self) -> Result<TableFeatures> {
        TableFeatures::of(&self.uri, &self.table)
    }

    /// The loaded table version.
    pub fn version(&self) -> Version {
        self.table.version().unwrap_or_default()
    }

    /// Loads the latest version of the log (incrementally from the loaded one, or whole from
    /// the last checkpoint once the handle has moved [`RELOAD_AFTER_VERSIONS`] by updates), and
    /// checks it again for features the operator does not support: another writer may have
    /// enabled one since the last load. Every commit, clean-up and (through `Catalogs`) plan
    /// refreshes first.
    ///
    /// # Errors
    /// `UnsupportedDeltaFeature` (see `features`); storage and library failures.
    pub async fn refresh(&mut self) -> Result<Version> {
        if self.updated_versions >= RELOAD_AFTER_VERSIONS {
            let state = DeltaTableState::try_new(self.table.log_store().as_ref(), None)
                .await
                .map_err(|e| CatalogError::delta(&self.uri, e))?;
            self.table.state = Some(state);
            self.updated_versions = 0;
        } else {
            let before = self.version();
            self.table
                .update_state()
                .await
                .map_err(|e| CatalogError::delta(&self.uri, e))?;
            self.count_updated_versions(before);
        }
        features::check(&self.uri, &self.table)?;
        Ok(self.version())
    }

    /// Counts the versions the snapshot moved since `before` by updating it in place.
    pub(crate) fn count_updated_versions(&mut self, before: Version) {
        self.updated_versions += self.version().saturating_sub(before);
    }

    /// The committed, live segments at the loaded version, with rows, bytes, time range,
    /// partition and tags (from our tags, else from Delta stats).
    ///
    /// Reads only the loaded snapshot (no I/O), once per version (see [`Listing`]); the order
    /// is unspecified.
    pub fn segments(&self) -> Result<Vec<SegmentRef>> {
        Ok(self.listing()?.segments.clone())
    }

    /// Calls `f` with the live segments at the loaded version, without copying them (see
    /// [`Catalog::segments`]).
    pub fn with_segments<R>(&self, f: impl FnOnce(&[SegmentRef]) -> R) -> Result<R> {
        Ok(f(&self.listing()?.segments))
    }

    /// The listing of the loaded version: the kept one, or a new one.
    pub(crate) fn listing(&self) -> Result<Arc<Listing>> {
        let version = self.version();
        if let Some(kept) = self.kept_listing().as_ref()
            && kept.version == version
        {
            return Ok(kept.clone());
        }
        let listing = Arc::new(Listing::new(version, self.list_segments()?));
        *self.kept_listing() = Some(listing.clone());
        Ok(listing)
    }

    fn kept_listing(&self) -> std::sync::MutexGuard<'_, Option<Arc<Listing>>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot leave it half made.
        self.listing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the kept listing from version `from` to `to` by an own commit's removed paths and
    /// added files; a listing of another version is dropped (the next caller lists again).
    pub(crate) fn advance_listing(
        &self,
        from: Version,
        to: Version,
        removed: &[String],
        added: &[deltalake::kernel::Add],
    ) {
        let mut kept = self.kept_listing();
        let Some(old) = kept.take() else {
            return;
        };
        if old.version != from {
            return;
        }
        let mut listing = Arc::try_unwrap(old).unwrap_or_else(|shared| Listing {
            version: shared.version,
            segments: shared.segments.clone(),
            sizes: shared.sizes.clone(),
        });
        // The sizes move along only if someone has built them; else they are built from the
        // segments when first asked for.
        let mut sizes = listing.sizes.take();
        if !removed.is_empty() {
            let removed: std::collections::HashSet<&str> =
                removed.iter().map(String::as_str).collect();
            listing
                .segments
                .retain(|s| !removed.contains(s.path.as_str()));
            if let Some(sizes) = sizes.as_mut() {
                for path in removed {
                    sizes.remove(path);
                }
            }
        }
        for add in added {
            // As `list_segments` reads it back from the log (add paths are never percent-encoded:
            // `commit::unsafe_add_path` refuses any that would be).
            let segment = stats::segment_from_file(
                add.path.clone(),
                add.size,
                None,
                add.stats.as_deref(),
                add.tags.clone(),
                &self.time,
            );
            if let Some(sizes) = sizes.as_mut() {
                sizes.insert(segment.path.clone(), add.size);
            }
            listing.segments.push(segment);
        }
        if let Some(sizes) = sizes {
            listing.sizes = OnceLock::from(sizes);
        }
        listing.version = to;
        *kept = Some(Arc::new(listing));
    }

    /// Lists the live segments of the loaded snapshot. deltalake 1.1 exposes per-file tags only
    /// through `add_action()` (about 1.5 µs a file), so large tables are listed on a few threads.
    fn list_segments(&self) -> Result<Vec<SegmentRef>> {
        let state = self.state()?;
        let log_data = state
            .snapshot()
            .try_log_data()
            .map_err(|e| CatalogError::delta(&self.uri, e))?;
        let root = self.table.table_url().clone();
        let time = &self.time;
        let to_segment = |file: &LogicalFileView| {
            #[allow(deprecated)] // the only public way to the per-file tags in deltalake 1.1
            let add = file.add_action();
            let path = if add.path.contains("://") {
                relative_path(&root, &add.path)
            } else {
                add.path
            };
            stats::segment_from_file(
                path,
                add.size,
                file.num_records().map(|n| n as u64),
                add.stats.as_deref(),
                add.tags,
                time,
            )
        };
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_LISTING_THREADS);
        if threads < 2 || log_data.num_files() < PARALLEL_LISTING_MIN_FILES {
            return Ok(log_data.iter().map(|f| to_segment(&f)).collect());
        }
        let files: Vec<LogicalFileView> = log_data.iter().collect();
        let chunk = files.len().div_ceil(threads);
        Ok(std::thread::scope(|scope| {
            let parts: Vec<_> = files
                .chunks(chunk)
                .map(|part| scope.spawn(|| part.iter().map(to_segment).collect::<Vec<_>>()))
                .collect();
            let mut out = Vec::with_capacity(files.len());
            for part in parts {
                out.extend(
                    part.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            out
        }))
    }

    /// Whether `path` is a live segment at the loaded version.
    pub fn is_live(&self, path: &str) -> Result<bool> {
        Ok(self.listing()?.sizes().contains_key(path))
    }

    /// The latest `txn` version recorded for `app_id` at the loaded version (expired
    /// transactions excluded). For a watermark app id this is the watermark.
    pub async fn txn_version(&self, app_id: &str) -> Result<Option<i64>> {
        let state = self.state()?;
        state
            .transaction_version(self.table.log_store().as_ref(), app_id)
            .await
            .map_err(|e| CatalogError::delta(&self.uri, e))
    }

    /// Whether a commit carrying `txn (app_id, version)` (or a later version) is in the log at
    /// the loaded version. Call [`Catalog::refresh`] first to see other writers' commits.
    pub async fn is_committed(&self, app_id: &str, version: i64) -> Result<bool> {
        Ok(self
            .txn_version(app_id)
            .await?
            .is_some_and(|v| v >= version))
    }

    /// Writes a checkpoint at the loaded version now, then deletes log files older than the
    /// table's `delta.logRetentionDuration` (30 days by default) that the checkpoint covers.
    pub async fn checkpoint(&self) -> Result<()> {
        deltalake::checkpoints::create_checkpoint(&self.table, None)
            .await
            .map_err(|e| CatalogError::delta(&self.uri, e))?;
        self.clean_up_expired_logs().await;
        Ok(())
    }

    /// Best-effort removal of expired log files; a failure only delays it to the next checkpoint.
    pub(crate) async fn clean_up_expired_logs(&self) {
        if let Err(e) = deltalake::checkpoints::cleanup_metadata(&self.table, None).await {
            tracing::warn!(table = %self.uri, error = %e, "expired log clean-up failed");
        }
    }

    fn state(&self) -> Result<&DeltaTableState> {
        self.table
            .snapshot()
            .map_err(|e| CatalogError::delta(&self.uri, e))
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The table properties we set on creation.
fn table_properties(schema: &TableSchema) -> Vec<(String, Option<String>)> {
    let mut props = vec![
        (
            TableProperty::CheckpointInterval.as_ref().to_string(),
            Some(CHECKPOINT_INTERVAL.to_string()),
        ),
        (
            TableProperty::SetTransactionRetentionDuration
                .as_ref()
                .to_string(),
            Some(TXN_RETENTION.to_string()),
        ),
        (
            TableProperty::DeletedFileRetentionDuration
                .as_ref()
                .to_string(),
            Some(DELETED_FILE_RETENTION.to_string()),
        ),
        // Checkpoints carry each file's stats as a struct beside the JSON: a fresh open reads
        // them as they are instead of parsing 100,000 JSON strings (its replay of a 100k-file
        // checkpoint took 95 → 79 ms); other Delta readers still find the JSON.
        (
            TableProperty::CheckpointWriteStatsAsStruct
                .as_ref()
                .to_string(),
            Some("true".to_string()),
        ),
        (
            PROP_TIME_COLUMN.to_string(),
            Some(schema.time_column.clone()),
        ),
    ];
    props.push((
        PROP_TIME_UNIT.to_string(),
        Some(schema.time_unit.name().to_string()),
    ));
    if schema.time_format.is_some() {
        props.push((
            PROP_TIME_FORMAT.to_string(),
            Some(schema.time_format().to_string()),
        ));
    }
    props
}

fn time_column_of(uri: &str, schema: &TableSchema) -> Result<TimeColumn> {
    schema
        .check_time_column()
        .map_err(|detail| CatalogError::InvalidSchema {
            uri: uri.to_string(),
            detail,
        })?;
    Ok(TimeColumn::of(schema))
}

/// The time column recorded in the table properties; a table without them (created by another
/// writer) gets its first `timestamp` column, or none (time stats are then not read).
fn time_column_from_properties(uri: &str, table: &DeltaTable) -> Result<TimeColumn> {
    let state = table.snapshot().map_err(|e| CatalogError::delta(uri, e))?;
    let config = state.metadata().configuration();
    let delta_schema = state.schema();
    let timestamp_field = |name: &str| {
        delta_schema
            .field(name)
            .is_some_and(|f| f.data_type() == &delta_type(ColumnType::Timestamp))
    };
    if let Some(name) = config.get(PROP_TIME_COLUMN) {
        let format = match config.get(PROP_TIME_FORMAT) {
            Some(f) => TimeFormat::parse(f).map_err(|detail| CatalogError::InvalidSchema {
                uri: uri.to_string(),
                detail: format!("table property {PROP_TIME_FORMAT}: {detail}"),
            })?,
            None => TimeFormat::Epoch {
                unit: config
                    .get(PROP_TIME_UNIT)
                    .and_then(|u| TimeUnit::parse(u))
                    .unwrap_or_default(),
                size: 1,
            },
        };
        let string_field = delta_schema
            .field(name)
            .is_some_and(|f| f.data_type() == &delta_type(ColumnType::String));
        let kind = if timestamp_field(name) {
            TimeKind::Timestamp
        } else if string_field && format.date_pattern().is_some() {
            TimeKind::Text(format)
        } else {
            TimeKind::Integer(format)
        };
        return Ok(TimeColumn {
            name: name.clone(),
            kind,
        });
    }
    let name = delta_schema
        .fields()
        .find(|f| timestamp_field(f.name()))
        .map(|f| f.name().clone())
        .unwrap_or_default();
    Ok(TimeColumn {
        name,
        kind: TimeKind::Timestamp,
    })
}

fn snapshot_schema(uri: &str, table: &DeltaTable) -> Result<StructType> {
    let state = table.snapshot().map_err(|e| CatalogError::delta(uri, e))?;
    Ok(state.schema().as_ref().clone())
}

/// The table URL. Local paths and `file://` URIs are canonicalised (and created when
/// `create`); other schemes are taken as they are and served by `object_store`.
fn table_url(uri: &str, create: bool) -> Result<Url> {
    let invalid = |detail: String| CatalogError::InvalidUri {
        uri: uri.to_string(),
        detail,
    };
    match Url::parse(uri) {
        Ok(url) if url.scheme() != "file" && url.scheme().len() > 1 => Ok(url),
        _ if create => deltalake::ensure_table_uri(uri).map_err(|e| invalid(e.to_string())),
        _ => parse_table_uri(uri).map_err(|e| invalid(e.to_string())),
    }
}

/// A table builder for `url`. deltalake registers only `file://` and `memory://` without its
/// cloud features, so other schemes get the object store of the bucket the rest of the
/// operator and the worker use: endpoint and credentials from the environment, with
/// `storage_options` — or, without them, the options registered for the bucket
/// ([`crate::storage`]) — over them, and a bounded retry policy.
fn builder(
    uri: &str,
    url: &Url,
    storage_options: &HashMap<String, String>,
) -> Result<DeltaTableBuilder> {
    let mut b = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| CatalogError::delta(uri, e))?
        .with_storage_options(storage_options.clone());
    if !matches!(url.scheme(), "file" | "memory") {
        register_cloud_log_stores();
        let location = if storage_options.is_empty() {
            crate::storage::resolve(uri)
        } else {
            minion_store::resolve_with_options(uri, storage_options)
        }
        .map_err(|e| CatalogError::InvalidUri {
            uri: uri.to_string(),
            detail: e.to_string(),
        })?;
        b = b.with_storage_backend(location.store, url.clone());
    } else if url.scheme() == "file" {
        b = b.with_storage_backend(log_listing::local_store(), url.clone());
    }
    Ok(b)
}

/// A file path from the log, relative to the table root. Add paths are relative already
/// (deltalake decodes them); absolute URIs inside the table are made relative.
fn relative_path(root: &Url, path: &str) -> String {
    if path.contains("://") {
        let root = root.as_str().trim_end_matches('/');
        if let Some(rest) = path.strip_prefix(root) {
            return rest.trim_start_matches('/').to_string();
        }
    }
    path.to_string()
}

/// Whether `path` lies under the directory `prefix` (`data/r/1-1` covers `data/r/1-1/x`, not
/// `data/r/1-11/x`).
pub(crate) fn under_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    !prefix.is_empty()
        && path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_directories_only() {
        assert!(under_prefix("data/r/1-1/a.parquet", "data/r/1-1"));
        assert!(under_prefix("data/r/1-1/a.parquet", "data/r/1-1/"));
        assert!(!under_prefix("data/r/1-11/a.parquet", "data/r/1-1"));
        assert!(!under_prefix("data/r/1-1", "data/r/1-1"));
        assert!(!under_prefix("anything", ""));
    }

    #[test]
    fn absolute_paths_inside_the_table_become_relative() {
        let root = Url::parse("file:///tmp/t/").unwrap();
        assert_eq!(
            relative_path(&root, "file:///tmp/t/data/a.parquet"),
            "data/a.parquet"
        );
        assert_eq!(relative_path(&root, "data/a b.parquet"), "data/a b.parquet");
        assert_eq!(
            relative_path(&root, "s3://other/x.parquet"),
            "s3://other/x.parquet"
        );
    }

    /// A handle that lives through many commits (its own and another writer's) loads its
    /// snapshot whole again every `RELOAD_AFTER_VERSIONS`, and still sees what a fresh open
    /// sees: the same version, live segments and watermark.
    #[tokio::test]
    async fn a_long_lived_handle_reloads_its_snapshot_whole_and_sees_what_a_fresh_open_sees() {
        use crate::generator::testkit::{schema, seg};
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("file://{}", dir.path().display());
        let mut operator = Catalog::create(&uri, &schema(None, false), HashMap::new())
            .await
            .unwrap();
        let mut writer = Catalog::open(&uri, HashMap::new()).await.unwrap();
        let watermark = app_id::watermark("ns", "merge", None);
        let sorted_paths = |c: &Catalog| {
            let mut paths: Vec<String> =
                c.segments().unwrap().into_iter().map(|s| s.path).collect();
            paths.sort();
            paths
        };
        let mut reloads = 0;
        let mut next = 0i64;
        let mut last_watermark = None;
        // This handle moves by 1.5 versions a step: two reloads.
        let steps = 3 * RELOAD_AFTER_VERSIONS as i64 / 2;
        for step in 0..steps {
            // The other writer appends a segment; every other step, this handle replaces it
            // with a merged segment, moving its watermark.
            let s = seg(&format!("in/{next}"), next * 1_000, next * 1_000 + 999, 10);
            writer.append(&[s], &[]).await.unwrap();
            next += 1;
            let before = operator.updated_versions;
            if step % 2 == 0 {
                let input = format!("data/in/{}.parquet", next - 1);
                let output = seg(&format!("out/{step}"), 0, 999, 10);
                operator
                    .replace(Replacement {
                        remove: vec![input],
                        add: vec![output],
                        txns: vec![
                            AppTxn::run(app_id::subtask("ns", &format!("run-{step}"), 0)),
                            AppTxn::watermark(watermark.clone(), step),
                        ],
                        data_change: false,
                        operation: "MINION MERGE ROLLUP",
                    })
                    .await
                    .unwrap();
                last_watermark = Some(step);
            } else {
                operator.refresh().await.unwrap();
            }
            if operator.updated_versions < before {
                reloads += 1;
            }
            assert!(operator.updated_versions <= RELOAD_AFTER_VERSIONS + 3);
            if step % 25 == 0 || step == steps - 1 {
                let fresh = Catalog::open(&uri, HashMap::new()).await.unwrap();
                assert_eq!(operator.version(), fresh.version(), "step {step}");
                assert_eq!(sorted_paths(&operator), sorted_paths(&fresh), "step {step}");
                assert_eq!(
                    operator.txn_version(&watermark).await.unwrap(),
                    fresh.txn_version(&watermark).await.unwrap(),
                    "step {step}"
                );
            }
        }
        assert!(reloads >= 2, "the handle reloaded {reloads} times");
        assert_eq!(operator.segments().unwrap().len() as i64, steps);
        assert_eq!(
            operator.txn_version(&watermark).await.unwrap(),
            last_watermark
        );
    }

    #[test]
    fn app_ids_follow_the_documented_shapes() {
        assert_eq!(app_id::watermark("ns", "cfg", None), "minion.dev/ns/cfg");
        assert_eq!(
            app_id::watermark("ns", "cfg", Some("1day")),
            "minion.dev/ns/cfg/1day"
        );
        assert_eq!(app_id::subtask("ns", "run-1", 3), "minion.dev/ns/run-1/3");
    }
}
