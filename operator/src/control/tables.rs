//! Table status: the summary of the committed catalog (segments, rows, bytes, time range,
//! log version), the bounded lineage list, and the `Ready` condition.
//!
//! [`store_lineage`] is pure; [`reconcile`] validates a Table, opens (or creates) its catalog
//! and writes the status when it changed, with a Warning Event when it becomes invalid.

use chrono::{DateTime, Utc};

use super::gather::Catalogs;
use super::{Backend, ControlError, Event, EventType, ObjectRef, name_of, namespace_of};
use crate::api::condition::{READY, set_condition};
use crate::api::table::MAX_ENDED_LINEAGE_ENTRIES;
use crate::api::{ConditionStatus, Table, TableStatus};
use crate::catalog::Catalog;
use crate::lineage::{Lineage, LineageState};
use crate::validate;

/// Writes `lineage` into `status`: every IN_PROGRESS entry plus the newest
/// [`MAX_ENDED_LINEAGE_ENTRIES`] ended ones; `lineageEndedTotal` counts entries that ended
/// since the previous status.
pub fn store_lineage(status: &mut TableStatus, lineage: &Lineage) {
    let ended_before: std::collections::HashSet<&str> = status
        .lineage
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
    let mut entries: Vec<_> = lineage.live().cloned().collect();
    entries.extend(ended);
    status.lineage = entries;
    status.lineage_ended_total += newly_ended;
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
    let segments = catalog.segments().map_err(|source| ControlError::Catalog {
        table: table.to_string(),
        source,
    })?;
    status.segments = Some(segments.len() as u64);
    status.rows = Some(segments.iter().map(|s| s.rows).sum());
    status.bytes = Some(segments.iter().map(|s| s.bytes).sum());
    let ms = |v: Option<i64>| v.and_then(DateTime::<Utc>::from_timestamp_millis);
    status.min_time = ms(segments.iter().filter_map(|s| s.min_time_ms).min());
    status.max_time = ms(segments.iter().filter_map(|s| s.max_time_ms).max());
    status.catalog_version = Some(catalog.version() as i64);
    Ok(())
}

/// Validates one Table, creates or opens its catalog, and writes its status if it changed.
///
/// # Errors
/// Backend failures; catalog failures are reported in the `Ready` condition instead.
pub async fn reconcile(
    backend: &dyn Backend,
    catalogs: &mut Catalogs,
    table: &Table,
    now: DateTime<Utc>,
) -> Result<(), ControlError> {
    let namespace = namespace_of(&table.metadata);
    let name = name_of(&table.metadata);
    let generation = table.metadata.generation;
    let before = table.status.clone().unwrap_or_default();
    let mut status = before.clone();
    status.observed_generation = generation;
    let ready = match validate::table(table) {
        Err(e) => Err((e.reason(), e.to_string())),
        Ok(def) => match backend.storage_options(table).await {
            Err(e) => Err(("StorageSecretUnavailable", e.to_string())),
            Ok(options) => {
                if let Some(options) = options
                    && crate::storage::register(&def.uri, &options)
                {
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
            "CatalogReady",
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::LineageEntry;

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
        }
    }

    #[test]
    fn stored_lineage_keeps_live_entries_and_the_newest_ended_ones_and_counts_endings() {
        let mut entries = vec![entry("live", LineageState::InProgress, 0)];
        for i in 0..(MAX_ENDED_LINEAGE_ENTRIES as i64 + 5) {
            entries.push(entry(&format!("e{i}"), LineageState::Completed, i));
        }
        let mut status = TableStatus::default();
        store_lineage(&mut status, &Lineage::new(entries.clone()));
        assert_eq!(status.lineage.len(), 1 + MAX_ENDED_LINEAGE_ENTRIES);
        assert_eq!(status.lineage[0].id, "live");
        assert_eq!(
            status.lineage[1].id,
            format!("e{}", MAX_ENDED_LINEAGE_ENTRIES + 4)
        );
        assert_eq!(
            status.lineage_ended_total,
            MAX_ENDED_LINEAGE_ENTRIES as u64 + 5
        );
        // Storing the same lineage again counts nothing new.
        let again = Lineage::new(status.lineage.clone());
        store_lineage(&mut status, &again);
        assert_eq!(
            status.lineage_ended_total,
            MAX_ENDED_LINEAGE_ENTRIES as u64 + 5
        );
    }
}
