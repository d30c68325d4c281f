//! Appending segments and replacing segments in one Delta commit (the commit protocol:
//! docs/architecture.md).
//!
//! Planning is pure ([`plan`]): given the live files and the `txn` versions in the log, a
//! request becomes either "already committed" or one list of actions, or is refused. The
//! commit loop is thin: refresh, plan, commit with deltalake's own retries off, and on a
//! concurrent commit start again from the refresh, so liveness is always checked against the
//! version the commit lands on.

use std::collections::{HashMap, HashSet};

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, CommitInfo, Remove, Transaction, Version};
use deltalake::protocol::{DeltaOperation, SaveMode};
use minion_contract::SegmentRef;
use serde_json::json;

use super::error::{CatalogError, Result, is_concurrent_commit};
use super::stats::{TimeColumn, segment_tags, stats_json};
use super::{Catalog, under_prefix};

/// A Delta application transaction carried by a commit: `(appId, version)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppTxn {
    pub app_id: String,
    pub version: i64,
    /// Written with `lastUpdated = now`, so it expires after the table's
    /// `delta.setTransactionRetentionDuration`; otherwise it never expires.
    pub expires: bool,
}

impl AppTxn {
    /// A watermark: `version` is the watermark in epoch ms; never expires.
    pub fn watermark(app_id: impl Into<String>, watermark_ms: i64) -> Self {
        AppTxn {
            app_id: app_id.into(),
            version: watermark_ms,
            expires: false,
        }
    }

    /// The identity of one subtask's commit (version 1); expires with the table's txn retention.
    pub fn run(app_id: impl Into<String>) -> Self {
        AppTxn {
            app_id: app_id.into(),
            version: 1,
            expires: true,
        }
    }
}

/// One atomic replacement: remove `remove`, add `add`, record `txns`.
#[derive(Clone, Debug)]
pub struct Replacement<'a> {
    /// Paths (relative to the table URI) of the live segments to remove.
    pub remove: Vec<String>,
    /// Segments (already written under the table URI) to add.
    pub add: Vec<SegmentRef>,
    pub txns: Vec<AppTxn>,
    /// `false` for a rearrangement that keeps the rows (concat, re-sort): both the removes and
    /// the adds are written with `dataChange=false`, so streaming readers and concurrent
    /// appenders are not disturbed.
    pub data_change: bool,
    /// The operation name recorded in the commit's `commitInfo` (e.g. `MINION MERGE ROLLUP`).
    pub operation: &'a str,
}

/// What a commit call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The table version holding the commit (the loaded version when nothing was committed).
    pub version: Version,
    /// Every txn of the request was already in the log: nothing was committed.
    pub already_committed: bool,
}

/// The decision for one request against one table version.
#[derive(Debug)]
pub(crate) enum Plan {
    AlreadyCommitted,
    Commit {
        actions: Vec<Action>,
        txns: Vec<Transaction>,
    },
}

/// Characters `object_store`'s `Path::from` percent-encodes in a path part (its `INVALID`
/// set, besides controls and `/`): a file written through it under a name holding one of them
/// gets another name than the add path says.
const OBJECT_STORE_ENCODED: &[char] = &[
    '\\', '{', '^', '}', '%', '`', ']', '"', '>', '[', '~', '<', '#', '|', '*', '?',
];

/// Why an added path (relative to the table URI) would not name the file the worker wrote
/// under the table, or `None` when it is safe.
///
/// Refused: a `.` or `..` segment (readers resolve it, `..` even outside the table, while
/// `object_store` writes it as a `%2E`/`%2E%2E` directory), an empty segment (`a//b`: `object_store` drops it, so the file is at `a/b`), a
/// backslash (a separator on Windows paths), control characters (`Path::parse` rejects them,
/// `Path::from` percent-encodes them), the other characters `Path::from` percent-encodes and
/// every non-ASCII character (it percent-encodes all of them), and a space (a Delta add path
/// is a URI, in which a space must be percent-encoded).
pub(crate) fn unsafe_add_path(path: &str) -> Option<String> {
    for segment in path.split('/') {
        match segment {
            "" => return Some("path has an empty segment (\"//\" or a trailing \"/\")".into()),
            "." | ".." => {
                return Some(format!(
                    "path has a {segment:?} segment: readers resolve it to another file, and object_store writes it as a directory named %2E"
                ));
            }
            _ => {}
        }
    }
    let c = path.chars().find(|c| {
        c.is_control() || !c.is_ascii() || *c == ' ' || OBJECT_STORE_ENCODED.contains(c)
    })?;
    Some(match c {
        '\\' => "path contains a backslash, a path separator on some stores".into(),
        ' ' => "path contains a space, which a Delta add path (a URI) must percent-encode".into(),
        c if c.is_control() => format!(
            "path contains the control character U+{:04X}, which object_store rejects or percent-encodes",
            c as u32
        ),
        c => format!(
            "path contains {c:?}, which object_store percent-encodes: the file written is not the one the add path names"
        ),
    })
}

/// Decides a request against the live files (`path → size`) and the log's txn versions.
///
/// # Errors
/// `SegmentNotLive` for the first removed path that is not live; `InvalidSegment` for an
/// added path that is empty, absolute, inside `_delta_log/`, not safe as a file name (see
/// [`unsafe_add_path`]), duplicated, also removed, or already live.
pub(crate) fn plan(
    uri: &str,
    request: &Replacement<'_>,
    live: &HashMap<String, i64>,
    txn_versions: &HashMap<String, Option<i64>>,
    time: &TimeColumn,
    now_ms: i64,
    read_version: Version,
) -> Result<Plan> {
    let applied = |t: &AppTxn| {
        txn_versions
            .get(&t.app_id)
            .copied()
            .flatten()
            .is_some_and(|v| v >= t.version)
    };
    // A commit is recognised by its run identities alone (the txns that expire): on a replay
    // its watermarks may differ from what it committed (another window advanced them since),
    // and it must still be seen as done. Without identities, by every txn.
    let identities: Vec<&AppTxn> = request.txns.iter().filter(|t| t.expires).collect();
    let recognised = if identities.is_empty() {
        !request.txns.is_empty() && request.txns.iter().all(applied)
    } else {
        identities.iter().all(|t| applied(t))
    };
    if recognised {
        return Ok(Plan::AlreadyCommitted);
    }

    let invalid = |path: &str, detail: &str| CatalogError::InvalidSegment {
        uri: uri.to_string(),
        path: path.to_string(),
        detail: detail.to_string(),
    };
    let removed: HashSet<&str> = request.remove.iter().map(String::as_str).collect();
    let mut added = HashSet::new();
    for segment in &request.add {
        let path = segment.path.as_str();
        if path.is_empty() || path.starts_with('/') || path.contains("://") {
            return Err(invalid(path, "path must be relative to the table URI"));
        }
        if path == "_delta_log" || under_prefix(path, "_delta_log") {
            return Err(invalid(path, "path is inside _delta_log/"));
        }
        if let Some(why) = unsafe_add_path(path) {
            return Err(invalid(path, &why));
        }
        if !added.insert(path) {
            return Err(invalid(path, "added twice in one commit"));
        }
        if removed.contains(path) {
            return Err(invalid(path, "both removed and added in one commit"));
        }
        if live.contains_key(path) {
            return Err(invalid(path, "already live in the catalog"));
        }
    }

    let mut actions = Vec::with_capacity(1 + removed.len() + request.add.len());
    actions.push(Action::CommitInfo(CommitInfo {
        timestamp: Some(now_ms),
        operation: Some(request.operation.to_string()),
        operation_parameters: Some(HashMap::from([
            ("removed".to_string(), json!(removed.len().to_string())),
            ("added".to_string(), json!(request.add.len().to_string())),
            (
                "dataChange".to_string(),
                json!(request.data_change.to_string()),
            ),
        ])),
        read_version: Some(read_version),
        is_blind_append: Some(removed.is_empty()),
        engine_info: Some(format!("minion-operator/{}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    }));
    let mut seen = HashSet::new();
    for path in &request.remove {
        if !seen.insert(path.as_str()) {
            continue;
        }
        let Some(size) = live.get(path) else {
            return Err(CatalogError::SegmentNotLive {
                uri: uri.to_string(),
                path: path.clone(),
            });
        };
        actions.push(Action::Remove(Remove {
            path: path.clone(),
            data_change: request.data_change,
            deletion_timestamp: Some(now_ms),
            extended_file_metadata: Some(true),
            partition_values: Some(HashMap::new()),
            size: Some(*size),
            ..Default::default()
        }));
    }
    for segment in &request.add {
        let tags = segment_tags(segment);
        actions.push(Action::Add(Add {
            path: segment.path.clone(),
            partition_values: HashMap::new(),
            size: i64::try_from(segment.bytes).unwrap_or(i64::MAX),
            modification_time: now_ms,
            data_change: request.data_change,
            stats: Some(stats_json(segment, time)),
            tags: (!tags.is_empty()).then_some(tags),
            ..Default::default()
        }));
    }
    // A txn already applied at or above its version is left out, so a version in the log never
    // goes backwards (e.g. a watermark another subtask already advanced).
    let txns = request
        .txns
        .iter()
        .filter(|t| !applied(t))
        .map(|t| {
            Transaction::new_with_last_update(&t.app_id, t.version, t.expires.then_some(now_ms))
        })
        .collect();
    Ok(Plan::Commit { actions, txns })
}

impl Catalog {
    /// Adds segments (Parquet files already written under the table URI) in one commit, with
    /// Delta stats and tags, `dataChange=true`.
    ///
    /// # Guarantees
    /// As [`Catalog::replace`] with nothing removed: one commit or none; a request whose txns
    /// are all in the log already commits nothing and reports `already_committed`.
    ///
    /// # Errors
    /// As [`Catalog::replace`].
    pub async fn append(
        &mut self,
        segments: &[SegmentRef],
        txns: &[AppTxn],
    ) -> Result<CommitOutcome> {
        self.replace(Replacement {
            remove: Vec::new(),
            add: segments.to_vec(),
            txns: txns.to_vec(),
            data_change: true,
            operation: "MINION APPEND",
        })
        .await
    }

    /// Removes `request.remove` and adds `request.add` in ONE Delta commit carrying
    /// `request.txns`.
    ///
    /// # Guarantees
    /// - Readers see all inputs or all outputs, never a mix (one Delta commit).
    /// - Idempotent per run: when every txn of the request is already in the log at or above
    ///   its version, nothing is committed and `already_committed` is true (deltalake does not
    ///   check this itself). So a crash between this commit and the status update is recovered
    ///   by calling it again.
    /// - Never removes a segment that is not live at the version the commit lands on: each
    ///   attempt refreshes, re-checks, and commits with deltalake retries off; a concurrent
    ///   commit sends it back to the refresh.
    /// - A txn version in the log never decreases.
    ///
    /// # Errors
    /// `SegmentNotLive` naming the first removed segment that was already replaced or deleted
    /// (the table is unchanged); `InvalidSegment` for a bad added path; `CommitConflict` when
    /// the table kept changing for every attempt; `StoreUnreachable`/`Delta` otherwise.
    pub async fn replace(&mut self, request: Replacement<'_>) -> Result<CommitOutcome> {
        // Files of other writers this commit removes: recorded first, so clean-up may delete
        // them later (it deletes only what the operator wrote or removed).
        self.record_removals(&request.remove).await?;
        let mut attempt = 0;
        while attempt < self.commit_attempts {
            self.refresh().await?;
            let read_version = self.version();
            // Every watermark's version (one never goes backwards); the run identities only up
            // to the first one not in the log, which already says the request is not committed
            // (each lookup replays the log since its checkpoint). Those not looked up are
            // taken as not applied.
            let mut txn_versions = HashMap::new();
            let mut identity_missing = false;
            for txn in &request.txns {
                if txn.expires && identity_missing {
                    continue;
                }
                let v = self.txn_version(&txn.app_id).await?;
                if txn.expires && v.is_none_or(|v| v < txn.version) {
                    identity_missing = true;
                }
                txn_versions.insert(txn.app_id.clone(), v);
            }
            let live = self.listing()?;
            let now = self.now_ms();
            let planned = plan(
                &self.uri,
                &request,
                live.sizes(),
                &txn_versions,
                &self.time,
                now,
                read_version,
            );
            // Released before the commit, so the listing can be advanced in place after it.
            drop(live);
            let (actions, txns) = match planned? {
                Plan::AlreadyCommitted => {
                    return Ok(CommitOutcome {
                        version: read_version,
                        already_committed: true,
                    });
                }
                Plan::Commit { actions, txns } => (actions, txns),
            };
            let operation = if request.data_change {
                DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                }
            } else {
                DeltaOperation::Optimize {
                    predicate: None,
                    target_size: 0,
                }
            };
            // deltalake's post-commit hook writes a checkpoint every `delta.checkpointInterval`
            // commits; its expired-log clean-up would list `_delta_log/` after every commit,
            // so it runs only after a checkpoint instead (below).
            let added: Vec<Add> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Add(add) => Some(add.clone()),
                    _ => None,
                })
                .collect();
            let properties = CommitProperties::default()
                .with_max_retries(0)
                .with_cleanup_expired_logs(Some(false))
                .with_application_transactions(txns);
            let committed = CommitBuilder::from(properties)
                .with_actions(actions)
                .build(Some(self.state()?), self.table.log_store(), operation)
                .await;
            match committed {
                Ok(done) => {
                    let version = done.version();
                    let checkpointed = done.metrics.new_checkpoint_created;
                    self.table.state = Some(done.snapshot());
                    self.count_updated_versions(read_version);
                    // The commit applied exactly these actions to `read_version` (no retries
                    // inside deltalake), so the next listing follows from this one.
                    self.advance_listing(read_version, version, &request.remove, &added);
                    if checkpointed {
                        self.clean_up_expired_logs().await;
                    }
                    tracing::info!(
                        table = %self.uri,
                        version,
                        removed = request.remove.len(),
                        added = request.add.len(),
                        operation = request.operation,
                        "catalog commit"
                    );
                    return Ok(CommitOutcome {
                        version,
                        already_committed: false,
                    });
                }
                Err(e) if is_concurrent_commit(&e) => {
                    tracing::debug!(table = %self.uri, error = %e, "concurrent commit, retrying");
                    attempt += 1;
                    if attempt < self.commit_attempts {
                        tokio::time::sleep(retry_delay(attempt)).await;
                    }
                }
                Err(e) => return Err(CatalogError::delta(&self.uri, e)),
            }
        }
        Err(CatalogError::CommitConflict {
            uri: self.uri.clone(),
            attempts: self.commit_attempts,
        })
    }
}

/// How long to wait before commit attempt `attempt + 1` after `attempt` lost to concurrent
/// commits: exponential from 20 ms, capped at 1 s, with full jitter, so a fast external
/// appender cannot starve a replacement that keeps re-checking its inputs.
fn retry_delay(attempt: usize) -> std::time::Duration {
    let cap_ms = (20u64 << attempt.min(6)).min(1_000);
    // Jitter from the clock's nanoseconds and the attempt: no shared random state needed.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let jitter = twox_hash::XxHash3_64::oneshot_with_seed(attempt as u64, &seed.to_le_bytes());
    std::time::Duration::from_millis(jitter % (cap_ms + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::stats::TimeKind;
    use minion_contract::TimeFormat;

    #[test]
    fn retry_delays_grow_then_stay_under_a_second() {
        for attempt in 1..20 {
            let cap = (20u64 << attempt.min(6)).min(1_000);
            assert!(retry_delay(attempt).as_millis() as u64 <= cap, "{attempt}");
        }
    }

    fn time() -> TimeColumn {
        TimeColumn {
            name: "ts".into(),
            kind: TimeKind::Integer(TimeFormat::default()),
        }
    }

    fn seg(path: &str) -> SegmentRef {
        SegmentRef {
            path: path.into(),
            rows: 5,
            bytes: 50,
            min_time_ms: Some(1),
            max_time_ms: Some(2),
            partition: None,
            tags: Default::default(),
        }
    }

    fn live(paths: &[&str]) -> HashMap<String, i64> {
        paths.iter().map(|p| (p.to_string(), 10)).collect()
    }

    fn request(remove: &[&str], add: &[&str], txns: Vec<AppTxn>) -> Replacement<'static> {
        Replacement {
            remove: remove.iter().map(|p| p.to_string()).collect(),
            add: add.iter().map(|p| seg(p)).collect(),
            txns,
            data_change: false,
            operation: "TEST",
        }
    }

    fn commit_actions(plan: Plan) -> (Vec<Action>, Vec<Transaction>) {
        match plan {
            Plan::Commit { actions, txns } => (actions, txns),
            Plan::AlreadyCommitted => panic!("expected a commit"),
        }
    }

    #[test]
    fn replacement_becomes_removes_adds_and_txns_with_its_data_change_flag() {
        let req = request(&["a", "b"], &["c"], vec![AppTxn::run("minion.dev/ns/r/0")]);
        let (actions, txns) = commit_actions(
            plan(
                "u",
                &req,
                &live(&["a", "b"]),
                &HashMap::new(),
                &time(),
                7,
                3,
            )
            .unwrap(),
        );
        let removes: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove(r) => Some((r.path.as_str(), r.data_change, r.deletion_timestamp)),
                _ => None,
            })
            .collect();
        assert_eq!(removes, vec![("a", false, Some(7)), ("b", false, Some(7))]);
        let add = actions
            .iter()
            .find_map(|a| match a {
                Action::Add(a) => Some(a),
                _ => None,
            })
            .unwrap();
        assert!(!add.data_change);
        assert!(add.stats.as_deref().unwrap().contains("\"numRecords\":5"));
        assert_eq!(
            txns,
            vec![Transaction::new_with_last_update(
                "minion.dev/ns/r/0",
                1,
                Some(7)
            )]
        );
    }

    #[test]
    fn request_whose_txns_are_all_in_the_log_is_already_committed() {
        let req = request(
            &["gone"],
            &["c"],
            vec![AppTxn::run("r"), AppTxn::watermark("w", 100)],
        );
        let versions = HashMap::from([("r".to_string(), Some(1)), ("w".to_string(), Some(200))]);
        let p = plan("u", &req, &live(&[]), &versions, &time(), 0, 0).unwrap();
        assert!(matches!(p, Plan::AlreadyCommitted));
    }

    #[test]
    fn a_replayed_commit_is_recognised_by_its_run_identity_whatever_its_watermark() {
        // Subtask k committed (its identity is in the log) and the watermark has moved since:
        // the replay of k carries a watermark the log does not hold, and is still done.
        let req = request(
            &["gone"],
            &["c"],
            vec![AppTxn::run("k"), AppTxn::watermark("w", 300)],
        );
        let versions = HashMap::from([("k".to_string(), Some(1)), ("w".to_string(), Some(200))]);
        let p = plan("u", &req, &live(&[]), &versions, &time(), 0, 0).unwrap();
        assert!(matches!(p, Plan::AlreadyCommitted));
        // Another run's identity missing: not done, whatever the watermark says.
        let req = request(
            &[],
            &["c"],
            vec![AppTxn::run("k2"), AppTxn::watermark("w", 100)],
        );
        let p = plan("u", &req, &live(&[]), &versions, &time(), 0, 0).unwrap();
        assert!(matches!(p, Plan::Commit { .. }));
    }

    #[test]
    fn removing_a_segment_that_is_not_live_is_refused_naming_it() {
        let req = request(&["a", "gone"], &["c"], vec![AppTxn::run("r")]);
        let err = plan("u", &req, &live(&["a"]), &HashMap::new(), &time(), 0, 0).unwrap_err();
        assert_eq!(err.reason(), "SegmentNotLive");
        let msg = err.to_string();
        assert!(
            msg.contains("gone") && msg.contains("already replaced or deleted"),
            "{msg}"
        );
    }

    #[test]
    fn a_watermark_already_further_in_the_log_is_not_written_back() {
        let req = request(
            &["a"],
            &["c"],
            vec![AppTxn::run("r"), AppTxn::watermark("w", 100)],
        );
        let versions = HashMap::from([("w".to_string(), Some(200))]);
        let (_, txns) =
            commit_actions(plan("u", &req, &live(&["a"]), &versions, &time(), 0, 0).unwrap());
        assert_eq!(txns.len(), 1);
        assert_eq!(txns[0].app_id, "r");
    }

    #[test]
    fn added_paths_that_would_not_name_the_written_file_are_refused_saying_why() {
        let cases = [
            ("data/r/0/../../../x.parquet", "\"..\" segment"),
            ("data/./x.parquet", "\".\" segment"),
            ("data/r//x.parquet", "empty segment"),
            ("data/r/", "empty segment"),
            ("data/r\\x.parquet", "backslash"),
            ("data/r/x\n.parquet", "control character U+000A"),
            ("data/r/x\u{7f}.parquet", "control character U+007F"),
            (
                "data/r/100%.parquet",
                "'%', which object_store percent-encodes",
            ),
            (
                "data/r/a#b.parquet",
                "'#', which object_store percent-encodes",
            ),
            (
                "data/r/a?b.parquet",
                "'?', which object_store percent-encodes",
            ),
            (
                "data/r/événement.parquet",
                "'é', which object_store percent-encodes",
            ),
            ("data/r/my events.parquet", "space"),
        ];
        for (path, why) in cases {
            let req = request(&[], &[path], vec![]);
            let err = plan("u", &req, &live(&[]), &HashMap::new(), &time(), 0, 0).unwrap_err();
            assert_eq!(err.reason(), "InvalidSegment", "{path}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(why), "{path}: {msg}");
            assert!(msg.contains(path), "{path}: {msg}");
        }
        for path in [
            "data/events-import-0001/0/0/events_1597276800000_1597363199999_0.parquet",
            "data/r/merged_1day_-5_7_v2.1_0.parquet",
            "part-0000.snappy.parquet",
        ] {
            let req = request(&[], &[path], vec![]);
            plan("u", &req, &live(&[]), &HashMap::new(), &time(), 0, 0)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn bad_added_paths_are_refused() {
        for (add, remove, live_paths) in [
            ("/abs.parquet", "", vec![]),
            ("_delta_log/x.json", "", vec![]),
            ("a", "a", vec!["a"]),
            ("b", "", vec!["b"]),
        ] {
            let remove: Vec<&str> = if remove.is_empty() {
                vec![]
            } else {
                vec![remove]
            };
            let req = request(&remove, &[add], vec![]);
            let err = plan(
                "u",
                &req,
                &live(&live_paths),
                &HashMap::new(),
                &time(),
                0,
                0,
            )
            .unwrap_err();
            assert_eq!(err.reason(), "InvalidSegment", "{add}: {err}");
        }
    }
}
