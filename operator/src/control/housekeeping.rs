//! Housekeeping of one Table (docs/architecture.md), on a slow cadence
//! ([`HOUSEKEEPING_INTERVAL_MS`] of the loop's clock per table, and on the loop's first tick):
//!
//! 1. Stale lineage: [`Lineage::clean_up`] reverts IN_PROGRESS entries older than
//!    [`STALE_AFTER_MS`] (except those of TaskRuns still unfinished, which end them), drops old ended ones beyond [`DEFAULT_HISTORY_LIMIT`], and names the
//!    staged prefixes to delete; they are deleted ([`Catalog::delete_prefix`], which never
//!    deletes a live file) and the lineage is written back to the Table's status. It works on
//!    the hydrated lineage ([`gather::lineage`]); stored lists no entry names any more (under
//!    `_minion/lineage/`, left by a crash between a status write and a delete) are deleted,
//!    except those of TaskRuns still unfinished, which may be about to name them.
//! 2. Files: [`Catalog::clean_up`] with the Table's `replacedSegmentRetention`, protecting the
//!    output prefixes of IN_PROGRESS entries (staged outputs of runs in flight); the catalog
//!    keeps sidecars of live segments (`<segment>.validity`).
//!    Lists of ingested files (`_minion/ingested/`) no live segment names go after a day
//!    ([`crate::catalog::Catalog::clean_up_source_files`]).
//! 3. A Normal Event `CleanedUp` on the Table summarises what was deleted, when anything was.
//!
//! Between 1 and 2, data retention (`spec.retentionTimePeriod`, [`super::retention`]): the
//! expired segments every importer reading the table has moved are removed in one commit
//! (their files then go with the replaced ones in 2, after `replacedSegmentRetention`); the
//! Table is `Degraded` (`RetentionBlockedByImport`) while an importer holds some back.
//!
//! Only Ready tables are housekept. A table whose Delta log uses a feature the operator does
//! not support (deletion vectors, …) is never cleaned up: it is not Ready, and the catalog
//! refuses it again on the refresh before every clean-up (`catalog::features`), should
//! another writer enable the feature between the reconcile and this pass.
//!
//! Order: lineage first (status written before files go), so a crash leaves no IN_PROGRESS
//! entry pointing at deleted outputs.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::gather::{self, Catalogs};
use super::protocol;
use super::retention;
use super::tables::{delete_unreferenced_lists, store_lineage};
use super::{Backend, ControlError, Event, EventType, ObjectRef, Reason, name_of, namespace_of};
use crate::api::condition::{DEGRADED, set_condition};
use crate::api::{Table, TaskRun};
use crate::catalog::Replacement;
use crate::catalog::{CleanupReport, app_id};
use crate::lineage::{DEFAULT_HISTORY_LIMIT, Lineage, LineageState, STALE_AFTER_MS};
use crate::model::TaskSpec;
use crate::validate;

/// Housekeeping runs at most once per table in this much time of the loop's clock.
pub const HOUSEKEEPING_INTERVAL_MS: i64 = 10 * 60 * 1000;

/// What one housekeeping pass of a table did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Housekeeping {
    /// IN_PROGRESS lineage entries reverted as stale.
    pub stale_reverted: usize,
    /// Lineage entries dropped from status.
    pub lineage_dropped: usize,
    /// Stored lineage lists no entry names, deleted.
    pub lineage_lists: usize,
    /// Staged files deleted under reverted prefixes.
    pub staged_files: usize,
    /// Stored lists of ingested files no live segment names, deleted.
    pub ingested_lists: usize,
    /// The catalog clean-up.
    pub files: CleanupReport,
    /// Segments and rows removed by data retention.
    pub retention_segments: usize,
    pub retention_rows: u64,
}

impl Housekeeping {
    pub fn deleted_anything(&self) -> bool {
        self.staged_files > 0
            || self.files.deleted_files() > 0
            || self.lineage_dropped > 0
            || self.lineage_lists > 0
            || self.ingested_lists > 0
            || self.retention_segments > 0
    }

    pub fn summary(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let retention = if self.retention_segments > 0 {
            format!(
                "removed {} segment(s) ({} rows) past the retention time; ",
                self.retention_segments, self.retention_rows
            )
        } else {
            String::new()
        };
        format!(
            "{retention}deleted {} replaced file(s) ({:.1} MiB) past the retention, {} unreferenced file(s) ({:.1} MiB), {} staged file(s) of reverted runs; {} stale lineage entr(ies) reverted, {} old entr(ies) dropped, {} stored lineage list(s) no entry names, {} stored ingested-file list(s) no segment names",
            self.files.replaced_files,
            mib(self.files.replaced_bytes),
            self.files.unreferenced_files,
            mib(self.files.unreferenced_bytes),
            self.staged_files,
            self.stale_reverted,
            self.lineage_dropped,
            self.lineage_lists,
            self.ingested_lists,
        )
    }
}

/// `3d 4h`, `25m`: a lag for people.
fn fmt_lag(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    let (d, h, m) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The RealtimeToOffline and SegmentImport configs (not suspended) that read `def`, with the
/// watermarks they committed in their destinations' logs.
async fn importers_of(
    backend: &dyn Backend,
    catalogs: &mut Catalogs,
    def: &crate::model::TableDef,
) -> Result<Vec<retention::Importer>, ControlError> {
    let mut out = Vec::new();
    for cfg in backend.list_task_configs().await? {
        if namespace_of(&cfg.metadata) != def.namespace {
            continue;
        }
        let Ok(config) = validate::task_config(&cfg) else {
            continue;
        };
        let imports = matches!(
            config.task,
            TaskSpec::RealtimeToOffline(_) | TaskSpec::SegmentImport(_)
        );
        if !imports || config.suspend || config.source_table.as_deref() != Some(def.name.as_str()) {
            continue;
        }
        // A destination that cannot be read holds nothing moved: the data stays.
        let watermark_ms = match gather::table(backend, &def.namespace, &config.table).await {
            Ok(dest) => {
                let catalog = catalogs.get(&dest.def).await?;
                catalog
                    .txn_version(&app_id::watermark(&def.namespace, &config.name, None))
                    .await
                    .map_err(|source| ControlError::Catalog {
                        table: config.table.clone(),
                        source,
                    })?
            }
            Err(_) => None,
        };
        out.push(retention::Importer {
            config: config.name,
            watermark_ms,
        });
    }
    out.sort_by(|a, b| a.config.cmp(&b.config));
    Ok(out)
}

/// Applies data retention to `def` ([`retention::decide`]): removes what may go in one
/// commit, and sets the Table's `Degraded` condition (with a Warning Event when it turns
/// true) and `retentionBlockedSegments`.
#[allow(clippy::too_many_arguments)]
async fn retain(
    backend: &dyn Backend,
    catalogs: &mut Catalogs,
    def: &crate::model::TableDef,
    lineage: &Lineage,
    status: &mut crate::api::TableStatus,
    done: &mut Housekeeping,
    period_ms: i64,
    now: DateTime<Utc>,
) -> Result<(), ControlError> {
    let importers = importers_of(backend, catalogs, def).await?;
    let catalog_err = |source| ControlError::Catalog {
        table: def.name.clone(),
        source,
    };
    let catalog = catalogs.get(def).await?;
    let segments = catalog.segments().map_err(catalog_err)?;
    let locks = lineage.removal_locks();
    let cutoff = def.schema.time_format().axis_now(now.timestamp_millis()) - period_ms;
    let decision = retention::decide(&segments, cutoff, &importers, |p| locks.contains(p));
    if !decision.remove.is_empty() {
        backend.check_write("housekeeping: remove segments past the retention time")?;
        catalog
            .replace(Replacement {
                remove: decision.remove.iter().map(|s| s.path.clone()).collect(),
                add: Vec::new(),
                txns: Vec::new(),
                data_change: true,
                operation: "MINION RETENTION",
            })
            .await
            .map_err(catalog_err)?;
        done.retention_segments = decision.remove.len();
        done.retention_rows = decision.remove.iter().map(|s| s.rows).sum();
    }
    let blocked = decision.blocked.len() as u64;
    let (degraded, reason, message) = match decision.blocking {
        Some(i) => {
            let rows: u64 = decision.blocked.iter().map(|s| s.rows).sum();
            let oldest = decision
                .blocked
                .iter()
                .filter_map(|s| s.min_time_ms)
                .min()
                .unwrap_or(cutoff);
            let moved = match i.watermark_ms {
                Some(w) => format!(
                    "has moved data only up to {} ({} behind the retention cut-off)",
                    crate::generator::fmt_ms(w),
                    fmt_lag(cutoff - w)
                ),
                None => "has not moved any data yet".to_string(),
            };
            (
                true,
                Reason::RetentionBlockedByImport,
                format!(
                    "{blocked} segment(s) ({rows} rows, from {}) are past retentionTimePeriod \
                     but kept: MinionTaskConfig {} {moved}; they go once it has moved them",
                    crate::generator::fmt_ms(oldest),
                    i.config
                ),
            )
        }
        None => (
            false,
            Reason::RetentionApplied,
            format!(
                "no segment past retentionTimePeriod is waiting for an importer (cut-off {})",
                crate::generator::fmt_ms(cutoff)
            ),
        ),
    };
    let changed = set_condition(
        &mut status.conditions,
        DEGRADED,
        degraded.into(),
        reason.as_str(),
        message.clone(),
        None,
        now,
    );
    let count_changed = status.retention_blocked_segments != Some(blocked);
    status.retention_blocked_segments = Some(blocked);
    if changed || count_changed {
        backend
            .update_table_status(&def.namespace, &def.name, status)
            .await?;
    }
    if changed && degraded {
        let event = Event {
            object: ObjectRef::new("Table", &def.namespace, &def.name),
            type_: EventType::Warning,
            reason: reason.into(),
            message,
            time: now,
        };
        if let Err(e) = backend.record_event(&event).await {
            tracing::warn!(table = %def.name, error = %e, "could not record an event");
        }
    }
    Ok(())
}

/// Cleans up one valid Table (see the module docs). Invalid tables are skipped. `runs` is
/// every TaskRun (the tick's list): those unfinished keep their lineage entries and lists.
///
/// # Errors
/// Backend, catalog or storage failures (retried at the next pass).
pub async fn housekeep(
    backend: &dyn Backend,
    catalogs: &mut Catalogs,
    table: &Table,
    runs: &[TaskRun],
    now: DateTime<Utc>,
) -> Result<Option<Housekeeping>, ControlError> {
    let Ok(def) = validate::table(table) else {
        return Ok(None);
    };
    let namespace = namespace_of(&table.metadata);
    let name = name_of(&table.metadata);
    let now_ms = now.timestamp_millis();
    let catalog_err = |source| ControlError::Catalog {
        table: name.clone(),
        source,
    };
    let mut done = Housekeeping::default();

    // 1. Lineage.
    let fresh = gather::table(backend, &namespace, &name).await?;
    let mut status = fresh.status.clone();
    let hydrated = gather::lineage(&def.uri, &status).await?;
    let unfinished: Vec<&TaskRun> = runs
        .iter()
        .filter(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_finished()))
        .collect();
    // Entries of runs still unfinished are theirs to end (a run may outlive STALE_AFTER_MS
    // with a long runTimeout): they are never reverted here.
    let active: HashSet<String> = unfinished
        .iter()
        .filter(|r| namespace_of(&r.metadata) == namespace)
        .map(|r| name_of(&r.metadata))
        .collect();
    let (kept, rest): (Vec<_>, Vec<_>) = hydrated
        .entries
        .iter()
        .cloned()
        .partition(|e| e.state == LineageState::InProgress && active.contains(&e.task_run));
    let mut lineage = Lineage::new(rest);
    // A stale entry whose subtask's commit is in the log was committed (the run died before
    // its status): it is completed, never reverted (its staged outputs are live segments).
    let catalog = catalogs.get(&def).await?;
    let stale: Vec<(String, String)> = lineage
        .live()
        .filter(|e| now_ms - e.timestamp_ms > STALE_AFTER_MS)
        .filter_map(|e| {
            let (key, index) = e.id.rsplit_once('-')?;
            let index: u32 = index.parse().ok()?;
            Some((e.id.clone(), app_id::subtask(&namespace, key, index)))
        })
        .collect();
    for (id, app) in stale {
        if catalog.is_committed(&app, 1).await.map_err(catalog_err)? {
            let _ = lineage.end(&id, now_ms);
        }
    }
    let live_before = lineage.live().count();
    let entries_before = lineage.entries.len();
    let deletions = lineage.clean_up(now_ms, STALE_AFTER_MS, DEFAULT_HISTORY_LIMIT);
    done.stale_reverted = live_before - lineage.live().count();
    done.lineage_dropped = entries_before - lineage.entries.len();
    let mut entries = kept;
    entries.append(&mut lineage.entries);
    let lineage = Lineage::new(entries);
    let by_id = |l: &Lineage| {
        let mut entries = l.entries.clone();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries
    };
    if by_id(&lineage) != by_id(&hydrated) {
        let unreferenced = store_lineage(&def.uri, &mut status, &lineage).await?;
        backend
            .update_table_status(&namespace, &name, &status)
            .await?;
        delete_unreferenced_lists(&def.uri, &unreferenced).await;
    }
    // Stored lists no entry names, but those of unfinished runs (named `<run key>-<index>`).
    let named: HashSet<&str> = status
        .lineage
        .iter()
        .filter_map(|e| e.lists_ref.as_deref())
        .collect();
    let unfinished_keys: Vec<String> = unfinished
        .iter()
        .map(|r| {
            let key = protocol::run_key(&name_of(&r.metadata), r.metadata.uid.as_deref());
            format!("{key}-")
        })
        .collect();
    let orphans: Vec<String> = gather::list_lineage_lists(&def.uri)
        .await?
        .into_iter()
        .filter(|p| !named.contains(p.as_str()))
        .filter(|p| {
            let entry = p
                .strip_prefix(gather::LINEAGE_LISTS_DIR)
                .and_then(|r| r.trim_start_matches('/').split('/').next())
                .unwrap_or_default();
            !unfinished_keys
                .iter()
                .any(|k| entry.starts_with(k.as_str()))
        })
        .collect();
    if !orphans.is_empty() {
        backend.check_write("housekeeping: delete stored lineage lists")?;
        done.lineage_lists = gather::delete_lineage_lists(&def.uri, &orphans).await?;
    }
    // 2a. Data retention: expired segments every importer has moved, in one commit.
    if let Some(period) = def.data_retention_ms {
        retain(
            backend,
            catalogs,
            &def,
            &lineage,
            &mut status,
            &mut done,
            period,
            now,
        )
        .await?;
    }
    let catalog = catalogs.get(&def).await?;
    backend.check_write("housekeeping: delete staged and replaced files")?;
    for prefix in &deletions.prefixes {
        done.staged_files += catalog.delete_prefix(prefix).await.map_err(catalog_err)?;
    }

    // 2. Files.
    let protected: Vec<String> = lineage.live().map(|e| e.output_prefix.clone()).collect();
    done.files = catalog
        .clean_up(
            now_ms,
            def.retention_ms,
            &protected,
            def.clean_up_foreign_files,
            false,
        )
        .await
        .map_err(catalog_err)?;

    // Stored lists of ingested files that no live segment names any more.
    done.ingested_lists = catalog
        .clean_up_source_files(now_ms)
        .await
        .map_err(catalog_err)?;

    // 3. Event.
    if done.deleted_anything() {
        let event = Event {
            object: ObjectRef::new("Table", &namespace, &name),
            type_: EventType::Normal,
            reason: Reason::CleanedUp.into(),
            message: done.summary(),
            time: now,
        };
        if let Err(e) = backend.record_event(&event).await {
            tracing::warn!(table = %name, error = %e, "could not record an event");
        }
    }
    Ok(Some(done))
}
