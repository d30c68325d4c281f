//! Table status: the summary of the committed catalog (segments, rows, bytes, time range,
//! log version), the bounded lineage list, and the `Ready` condition.
//!
//! [`bound_lineage`] is pure: what status keeps of a lineage — every live entry and the newest
//! ended ones, ended entries with counts in place of their path lists, and live entries whose
//! lists are long (over [`MAX_INLINE_ENTRY_PATHS`] paths, or the largest ones while all inline
//! lists pass [`MAX_INLINE_PATHS`]) with counts and a reference to their lists stored beside the
//! table. [`store_lineage`] writes those lists, then fills the status; so a Table's status stays
//! far below the API server's object size limit (etcd's 1.5 MiB) whatever the size of a swap.
//! [`reconcile`] validates a Table, opens (or creates) its catalog and writes the status when
//! it changed, with a Warning Event when it becomes invalid.

use chrono::{DateTime, Utc};

use super::gather::{self, Catalogs};
use super::{
    Backend, BackendError, ControlError, Event, EventType, ObjectRef, Reason, name_of, namespace_of,
};
use crate::api::condition::{READY, set_condition};
use crate::api::table::MAX_ENDED_LINEAGE_ENTRIES;
use crate::api::{ConditionStatus, Table, TableStatus};
use crate::catalog::Catalog;
use crate::lineage::{EntryLists, Lineage, LineageEntry, LineageState};
use crate::validate;

/// Paths a live lineage entry may keep in status; one with more keeps counts and `listsRef`.
pub const MAX_INLINE_ENTRY_PATHS: usize = 100;
/// Paths all entries together may keep in status; beyond, the lists of the largest live
/// entries are stored beside the table first.
pub const MAX_INLINE_PATHS: usize = 2_000;

/// Lists of one live entry to store beside the table before the status naming them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLists {
    /// Path relative to the table: `_minion/lineage/<entry id>/<content hash>.json`.
    pub path: String,
    pub lists: EntryLists,
    /// The JSON written (the hash is over these bytes).
    pub bytes: Vec<u8>,
}

/// What status keeps of a lineage ([`bound_lineage`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BoundedLineage {
    /// The entries in their stored form: live ones first, then the newest ended ones.
    pub entries: Vec<LineageEntry>,
    /// Lists to store beside the table before the status is written.
    pub lists: Vec<StoredLists>,
    /// Entries ended since the previous status.
    pub newly_ended: u64,
}

/// Where `lists` are stored: the name is a 128-bit hash (two XXH3 seeds) of the JSON, so an
/// object is never rewritten with another content.
pub fn lists_object(lists: &EntryLists) -> StoredLists {
    let bytes = serde_json::to_vec(lists).expect("lists of strings serialize");
    let hash = format!(
        "{:016x}{:016x}",
        twox_hash::XxHash3_64::oneshot_with_seed(0, &bytes),
        twox_hash::XxHash3_64::oneshot_with_seed(0x6d69_6e69_6f6e, &bytes)
    );
    // Entry ids are `<run key>-<index>`, plain already; anything else is replaced.
    let dir: String = lists
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = dir.trim_start_matches('.');
    StoredLists {
        path: format!("{}/{dir}/{hash}.json", gather::LINEAGE_LISTS_DIR),
        lists: lists.clone(),
        bytes,
    }
}

/// What status keeps of `lineage` (hydrated: live entries hold their lists), given the
/// entries status held `before`: every IN_PROGRESS entry plus the newest
/// [`MAX_ENDED_LINEAGE_ENTRIES`] ended ones.
///
/// # Guarantees
/// - An ended entry keeps counts in place of its lists, and no `listsRef`.
/// - A live entry keeps at most [`MAX_INLINE_ENTRY_PATHS`] paths; a longer one keeps counts and
///   `listsRef`, and its lists are in `lists`. While the live entries' inline lists pass
///   [`MAX_INLINE_PATHS`] in all, the largest go to `lists` first.
/// - A live entry whose lists were not loaded keeps its stored form unchanged.
/// - Pure: the same lineage gives the same entries and the same object names.
pub fn bound_lineage(before: &[LineageEntry], lineage: &Lineage) -> BoundedLineage {
    let ended_before: std::collections::HashSet<&str> = before
        .iter()
        .filter(|e| e.state != LineageState::InProgress)
        .map(|e| e.id.as_str())
        .collect();
    let newly_ended = lineage
        .entries
        .iter()
        .filter(|e| e.state != LineageState::InProgress && !ended_before.contains(e.id.as_str()))
        .count() as u64;
    let mut ended: Vec<_> = lineage
        .entries
        .iter()
        .filter(|e| e.state != LineageState::InProgress)
        .cloned()
        .collect();
    ended.sort_by(|a, b| b.timestamp_ms.cmp(&a.timestamp_ms).then(a.id.cmp(&b.id)));
    ended.truncate(MAX_ENDED_LINEAGE_ENTRIES);
    for e in &mut ended {
        e.take_lists();
        e.lists_ref = None;
    }
    let mut live: Vec<LineageEntry> = lineage.live().cloned().collect();
    let mut lists = Vec::new();
    let mut externalize = |e: &mut LineageEntry| {
        let stored = lists_object(&e.take_lists());
        e.lists_ref = Some(stored.path.clone());
        lists.push(stored);
    };
    for e in live.iter_mut() {
        if !e.lists_unloaded() && e.inline_paths() > MAX_INLINE_ENTRY_PATHS {
            externalize(e);
        }
    }
    let mut inline: usize = live.iter().map(LineageEntry::inline_paths).sum();
    if inline > MAX_INLINE_PATHS {
        let mut largest: Vec<usize> = (0..live.len())
            .filter(|&i| live[i].inline_paths() > 0)
            .collect();
        largest.sort_by(|&a, &b| {
            live[b]
                .inline_paths()
                .cmp(&live[a].inline_paths())
                .then(live[a].id.cmp(&live[b].id))
        });
        for i in largest {
            if inline <= MAX_INLINE_PATHS {
                break;
            }
            inline -= live[i].inline_paths();
            externalize(&mut live[i]);
        }
    }
    live.extend(ended);
    BoundedLineage {
        entries: live,
        lists,
        newly_ended,
    }
}

/// Writes `lineage` (hydrated) into `status` in its bounded form ([`bound_lineage`]), after
/// storing the lists of long live entries beside the table at `uri`; `lineageEndedTotal`
/// counts entries that ended since the previous status. Returns the stored lists the previous
/// status named and this one does not: delete them ([`delete_unreferenced_lists`]) once the
/// status is written.
///
/// # Errors
/// The lists cannot be stored (the status is then unchanged).
pub async fn store_lineage(
    uri: &str,
    status: &mut TableStatus,
    lineage: &Lineage,
) -> Result<Vec<String>, ControlError> {
    let bounded = bound_lineage(&status.lineage, lineage);
    for stored in bounded.lists {
        gather::write_lineage_lists(uri, &stored.path, &stored.lists, stored.bytes).await?;
    }
    let named: std::collections::HashSet<&str> = bounded
        .entries
        .iter()
        .filter_map(|e| e.lists_ref.as_deref())
        .collect();
    let unreferenced: Vec<String> = status
        .lineage
        .iter()
        .filter_map(|e| e.lists_ref.as_deref())
        .filter(|p| !named.contains(p))
        .map(str::to_string)
        .collect();
    status.lineage = bounded.entries;
    status.lineage_ended_total += bounded.newly_ended;
    Ok(unreferenced)
}

/// Deletes stored lists no status names any more (what [`store_lineage`] returned, once the
/// status is written). A failure is only logged: housekeeping deletes what is left.
pub async fn delete_unreferenced_lists(uri: &str, paths: &[String]) {
    if paths.is_empty() {
        return;
    }
    if let Err(e) = gather::delete_lineage_lists(uri, paths).await {
        tracing::warn!(table = uri, error = %e, "could not delete stored lineage lists");
    }
}

/// Fills the catalog summary of `status` from the loaded snapshot of `catalog`.
///
/// # Errors
/// The snapshot cannot be listed.
pub fn summarize(
    catalog: &Catalog,
    table: &str,
    status: &mut TableStatus,
) -> Result<(), ControlError> {
    let ms = |v: Option<i64>| v.and_then(DateTime::<Utc>::from_timestamp_millis);
    catalog
        .with_segments(|segments| {
            status.segments = Some(segments.len() as u64);
            status.rows = Some(segments.iter().map(|s| s.rows).sum());
            status.bytes = Some(segments.iter().map(|s| s.bytes).sum());
            status.min_time = ms(segments.iter().filter_map(|s| s.min_time_ms).min());
            status.max_time = ms(segments.iter().filter_map(|s| s.max_time_ms).max());
        })
        .map_err(|source| ControlError::Catalog {
            table: table.to_string(),
            source,
        })?;
    status.catalog_version = Some(catalog.version() as i64);
    Ok(())
}

/// The older Table (by creation, then namespace/name) whose location `table`'s overlaps, with
/// the message refusing `table`: the first Table at a location keeps it.
fn claimed_by(table: &Table, def: &crate::model::TableDef, all: &[Table]) -> Option<String> {
    let order = |t: &Table| {
        (
            super::created_at(&t.metadata),
            namespace_of(&t.metadata),
            name_of(&t.metadata),
        )
    };
    let mine = order(table);
    all.iter()
        .filter(|o| order(o) < mine)
        .filter_map(|o| {
            let other = validate::table(o).ok()?;
            let how = validate::uri_overlap(&def.uri, &other.uri)?;
            Some(validate::overlap_message(
                (&def.namespace, &def.name, &def.uri),
                (&other.namespace, &other.name, &other.uri),
                how,
            ))
        })
        .next()
}

/// Validates one Table (also against the locations of the older Tables in `all`), creates or
/// opens its catalog, and writes its status if it changed. Returns whether the table is Ready.
///
/// # Errors
/// Backend failures; catalog failures are reported in the `Ready` condition instead.
pub async fn reconcile(
    backend: &dyn Backend,
    catalogs: &mut Catalogs,
    table: &Table,
    all: &[Table],
    allowed_uri_prefixes: &[String],
    now: DateTime<Utc>,
) -> Result<bool, ControlError> {
    let namespace = namespace_of(&table.metadata);
    let name = name_of(&table.metadata);
    let generation = table.metadata.generation;
    let before = table.status.clone().unwrap_or_default();
    let mut status = before.clone();
    status.observed_generation = generation;
    let ready = match validate::table(table) {
        Err(e) => Err((e.reason(), e.to_string())),
        Ok(def) if !validate::uri_allowed(&def.uri, allowed_uri_prefixes) => Err((
            Reason::UriNotAllowed.as_str(),
            validate::uri_refused(
                &format!("Table {namespace}/{name}"),
                "spec.uri",
                &def.uri,
                allowed_uri_prefixes,
            ),
        )),
        Ok(def) if let Some(message) = claimed_by(table, &def, all) => {
            Err((Reason::UriOverlaps.as_str(), message))
        }
        Ok(def) => match backend.storage_options(table).await {
            Err(e @ BackendError::NotAllowed { .. }) => {
                // Refused settings are dropped, not kept from an earlier read.
                if crate::storage::unregister(&crate::storage::table_key(&namespace, &name)) {
                    catalogs.forget(&def.uri);
                }
                Err((e.reason(), e.to_string()))
            }
            Err(e) => Err((Reason::StorageSecretUnavailable.as_str(), e.to_string())),
            Ok(options) => {
                // This Table's settings only: another Table's (on the same bucket or not) are
                // neither replaced nor used.
                let key = crate::storage::table_key(&namespace, &name);
                let changed = match options {
                    Some(options) => crate::storage::register(&key, &def.uri, &options),
                    None => crate::storage::unregister(&key),
                };
                if changed {
                    catalogs.forget(&def.uri);
                }
                match catalogs.get(&def).await {
                    Ok(catalog) => {
                        summarize(catalog, &name, &mut status)?;
                        Ok(())
                    }
                    Err(e) => Err((e.reason(), e.to_string())),
                }
            }
        },
    };
    let was_ready = crate::api::condition::is_true(&before.conditions, READY);
    match &ready {
        Ok(()) => set_condition(
            &mut status.conditions,
            READY,
            ConditionStatus::True,
            Reason::CatalogReady.as_str(),
            "the catalog is readable",
            generation,
            now,
        ),
        Err((reason, message)) => set_condition(
            &mut status.conditions,
            READY,
            ConditionStatus::False,
            reason,
            message.clone(),
            generation,
            now,
        ),
    };
    let reason_changed = crate::api::condition::find_condition(&before.conditions, READY)
        .map(|c| c.reason.as_str())
        != crate::api::condition::find_condition(&status.conditions, READY)
            .map(|c| c.reason.as_str());
    if let Err((reason, message)) = &ready
        && (was_ready || reason_changed)
    {
        backend
            .record_event(&Event {
                object: ObjectRef::new("Table", &namespace, &name),
                type_: EventType::Warning,
                reason: (*reason).to_string(),
                message: message.clone(),
                time: now,
            })
            .await?;
    }
    if status != before {
        backend
            .update_table_status(&namespace, &name, &status)
            .await?;
    }
    Ok(ready.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::LineageEntry;

    fn table_at(namespace: &str, name: &str, uri: &str, created: &str) -> Table {
        let yaml = format!(
            "apiVersion: minion.dev/v1alpha1\nkind: Table\nmetadata: {{name: {name}, namespace: {namespace}, creationTimestamp: \"{created}\"}}\nspec:\n  tableType: OFFLINE\n  uri: {uri}\n  schema:\n    timeColumn: ts\n    timeUnit: MILLISECONDS\n    columns:\n      - {{name: ts, dataType: LONG, role: dateTime}}\n"
        );
        match crate::api::parse_manifests(&yaml).unwrap().remove(0) {
            crate::api::Resource::Table(t) => t,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_older_table_keeps_a_location_and_a_newer_nested_or_equal_one_is_refused() {
        let outer = table_at("a", "events", "s3://lake/events", "2026-01-01T00:00:00Z");
        let inner = table_at(
            "b",
            "offline",
            "s3://lake/events/offline/",
            "2026-02-01T00:00:00Z",
        );
        let twin = table_at("c", "copy", "s3a://lake/events", "2026-03-01T00:00:00Z");
        let apart = table_at("d", "other", "s3://lake/events2", "2026-04-01T00:00:00Z");
        let all = vec![outer.clone(), inner.clone(), twin.clone(), apart.clone()];
        let def = |t: &Table| validate::table(t).unwrap();
        assert_eq!(claimed_by(&outer, &def(&outer), &all), None);
        let m = claimed_by(&inner, &def(&inner), &all).unwrap();
        assert!(
            m.contains("Table b/offline") && m.contains("lies inside Table a/events"),
            "{m}"
        );
        let m = claimed_by(&twin, &def(&twin), &all).unwrap();
        assert!(m.contains("is the location of Table a/events"), "{m}");
        assert_eq!(claimed_by(&apart, &def(&apart), &all), None);
    }

    fn entry(id: &str, state: LineageState, t: i64) -> LineageEntry {
        LineageEntry {
            id: id.into(),
            state,
            segments_from: vec![],
            segments_to: vec![],
            output_prefix: format!("data/{id}"),
            task_run: "r".into(),
            subtask: None,
            timestamp_ms: t,
            message: None,
            segments_read: vec![],
            reads_table: false,
            segments_from_count: None,
            segments_to_count: None,
            segments_read_count: None,
            lists_ref: None,
        }
    }

    /// A live entry replacing `from` segments and reading `read` ones, with long paths.
    fn live(id: &str, from: usize, read: usize) -> LineageEntry {
        let path = |kind: &str, i: usize| {
            format!(
                "data/default/swap-0123456789ab/{id}/{kind}_segment_{i:06}_of_a_long_swap.parquet"
            )
        };
        LineageEntry {
            segments_from: (0..from).map(|i| path("from", i)).collect(),
            segments_read: (0..read).map(|i| path("read", i)).collect(),
            ..entry(id, LineageState::InProgress, 1)
        }
    }

    fn status_bytes(status: &TableStatus) -> usize {
        serde_json::to_vec(status).unwrap().len()
    }

    #[test]
    fn stored_lineage_keeps_live_entries_and_the_newest_ended_ones_and_counts_endings() {
        let mut entries = vec![entry("live", LineageState::InProgress, 0)];
        for i in 0..(MAX_ENDED_LINEAGE_ENTRIES as i64 + 5) {
            entries.push(entry(&format!("e{i}"), LineageState::Completed, i));
        }
        let stored = bound_lineage(&[], &Lineage::new(entries.clone()));
        assert_eq!(stored.entries.len(), 1 + MAX_ENDED_LINEAGE_ENTRIES);
        assert_eq!(stored.entries[0].id, "live");
        assert_eq!(
            stored.entries[1].id,
            format!("e{}", MAX_ENDED_LINEAGE_ENTRIES + 4)
        );
        assert_eq!(stored.newly_ended, MAX_ENDED_LINEAGE_ENTRIES as u64 + 5);
        // Storing the same lineage again counts nothing new.
        let again = bound_lineage(&stored.entries, &Lineage::new(stored.entries.clone()));
        assert_eq!(again.newly_ended, 0);
        assert_eq!(again.entries, stored.entries);
    }

    #[test]
    fn ended_entries_keep_counts_in_place_of_their_lists() {
        let mut done = live("done", 3_000, 0);
        done.segments_to = vec!["data/out/0.parquet".into(), "data/out/1.parquet".into()];
        done.state = LineageState::Completed;
        let mut reverted = live("reverted", 40, 0);
        reverted.state = LineageState::Reverted;
        let stored = bound_lineage(&[], &Lineage::new(vec![done, reverted]));
        assert!(stored.lists.is_empty(), "ended entries store no lists");
        for e in &stored.entries {
            assert_eq!(e.inline_paths(), 0, "{e:?}");
            assert_eq!(e.lists_ref, None);
        }
        let done = &stored.entries[0];
        assert_eq!(
            (done.segments_from_len(), done.segments_to_len()),
            (3_000, 2)
        );
        let json = serde_json::to_value(done).unwrap();
        assert_eq!(json["segmentsFromCount"], 3_000, "{json}");
        assert_eq!(json["segmentsToCount"], 2, "{json}");
        assert_eq!(json["segmentsFrom"], serde_json::json!([]), "{json}");
        assert!(json.get("listsRef").is_none() && json.get("segmentsReadCount").is_none());
        assert_eq!(stored.entries[1].segments_from_len(), 40);
        // Stored again (read back from status), nothing changes.
        let again = bound_lineage(&stored.entries, &Lineage::new(stored.entries.clone()));
        assert_eq!(again.entries, stored.entries);
    }

    #[test]
    fn the_largest_live_entries_leave_status_first_while_inline_lists_pass_the_total_bound() {
        // 40 live entries, each under the per-entry bound, 3,800 paths in all.
        let entries: Vec<LineageEntry> = (0..40)
            .map(|i| live(&format!("run-{i}"), 60 + (i % 5) * 8, 0))
            .collect();
        let total: usize = entries.iter().map(LineageEntry::inline_paths).sum();
        assert!(
            total > MAX_INLINE_PATHS
                && entries
                    .iter()
                    .all(|e| e.inline_paths() <= MAX_INLINE_ENTRY_PATHS)
        );
        let stored = bound_lineage(&[], &Lineage::new(entries.clone()));
        let inline: usize = stored.entries.iter().map(LineageEntry::inline_paths).sum();
        assert!(inline <= MAX_INLINE_PATHS, "{inline}");
        assert!(
            inline > MAX_INLINE_PATHS - MAX_INLINE_ENTRY_PATHS,
            "no more than needed: {inline}"
        );
        let (out, kept): (Vec<&LineageEntry>, Vec<&LineageEntry>) =
            stored.entries.iter().partition(|e| e.lists_ref.is_some());
        assert_eq!(out.len(), stored.lists.len());
        let smallest_out = out.iter().map(|e| e.segments_from_len()).min().unwrap();
        let largest_kept = kept.iter().map(|e| e.segments_from_len()).max().unwrap();
        assert!(
            smallest_out >= largest_kept,
            "{smallest_out} < {largest_kept}"
        );
        // Every entry is still there, in order, with its counts.
        let ids: Vec<&str> = stored.entries.iter().map(|e| e.id.as_str()).collect();
        let want: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, want);
        // Pure: the same lineage names the same objects.
        assert_eq!(
            bound_lineage(&[], &Lineage::new(entries)).lists,
            stored.lists
        );
    }

    #[tokio::test]
    async fn long_live_entries_are_stored_beside_the_table_and_hydrate_to_the_same_lineage() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("file://{}/events", dir.path().display());
        let mut ended = live("old-0", 500, 0);
        ended.state = LineageState::Completed;
        ended.timestamp_ms = 0;
        let lineage = Lineage::new(vec![
            // a full swap's entry: 25,000 paths would be ~2.3 MB in status
            live("swap-0", 25_000, 0),
            live("refresh-0", 3, 100),
            live("small-0", 5, 0),
            ended.clone(),
        ]);
        let mut status = TableStatus::default();
        let unreferenced = store_lineage(&uri, &mut status, &lineage).await.unwrap();
        assert!(unreferenced.is_empty());
        assert!(
            status_bytes(&status) < 8 * 1024,
            "{} bytes",
            status_bytes(&status)
        );
        let refs: Vec<&str> = status
            .lineage
            .iter()
            .filter_map(|e| e.lists_ref.as_deref())
            .collect();
        assert_eq!(
            refs.len(),
            2,
            "the two long live entries: {:#?}",
            status.lineage
        );
        for r in &refs {
            assert!(
                r.starts_with("_minion/lineage/") && r.ends_with(".json"),
                "{r}"
            );
            assert!(dir.path().join("events").join(r).is_file(), "{r} written");
        }
        assert_eq!(status.lineage[0].segments_from_len(), 25_000);
        assert_eq!(
            status.lineage[2].segments_from.len(),
            5,
            "a short entry stays inline"
        );

        // Hydrated: the live entries as they were, the ended one with counts only.
        let hydrated = gather::lineage(&uri, &status).await.unwrap();
        let mut want = lineage.clone();
        want.entries[3].take_lists();
        assert_eq!(hydrated, want);
        // From another process (nothing cached): the same.
        gather::forget_cached_lists();
        let json = serde_json::to_string(&status).unwrap();
        let read_back: TableStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(gather::lineage(&uri, &read_back).await.unwrap(), want);

        // Stored again unchanged: same objects, nothing to delete.
        let mut again = status.clone();
        assert!(
            store_lineage(&uri, &mut again, &hydrated)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(again.lineage, status.lineage);

        // The swap ends: its lists are no longer named, and deleted once the status is written.
        let mut next = hydrated.clone();
        next.end("swap-0", 2).unwrap();
        let swap_ref = status.lineage[0].lists_ref.clone().unwrap();
        let unreferenced = store_lineage(&uri, &mut again, &next).await.unwrap();
        assert_eq!(unreferenced, vec![swap_ref.clone()]);
        let done = again.lineage.iter().find(|e| e.id == "swap-0").unwrap();
        assert_eq!((done.inline_paths(), done.segments_from_len()), (0, 25_000));
        assert_eq!(again.lineage_ended_total, 2, "old-0, then swap-0");
        delete_unreferenced_lists(&uri, &unreferenced).await;
        assert!(!dir.path().join("events").join(&swap_ref).exists());
        assert_eq!(gather::list_lineage_lists(&uri).await.unwrap().len(), 1);

        // A status naming lists that are gone cannot be hydrated (its locks are unknown).
        let err = gather::lineage(&uri, &status).await.unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn only_lineage_lists_paths_are_read_or_deleted_as_lists() {
        assert!(gather::is_lineage_lists_path(
            "_minion/lineage/r-0123456789ab-0/00ff.json"
        ));
        for bad in [
            "data/x.parquet",
            "_minion/lineage/../data/x.json",
            "_minion/lineage/r-0/a/b.json",
            "_minion/lineage/r-0/x.parquet",
            "_minion/lineage/.hidden/x.json",
            "_minion/lineagex/r/x.json",
        ] {
            assert!(!gather::is_lineage_lists_path(bad), "{bad}");
        }
        let stored = lists_object(&live("a/../b", 1, 0).take_lists());
        assert!(
            gather::is_lineage_lists_path(&stored.path),
            "{}",
            stored.path
        );
    }
}
