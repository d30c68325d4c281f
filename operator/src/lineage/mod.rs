//! Segment lineage as a pure state machine (docs/semantics.md, "Segment lineage").
//!
//! A lineage entry records that a subtask replaces `segmentsFrom` by `segmentsTo`. While it is
//! IN_PROGRESS it locks its inputs against every other run; its outputs are staged under
//! `outputPrefix`, outside the catalog. The Delta commit that swaps inputs for outputs is one
//! atomic step; the entry then becomes COMPLETED. A failed or abandoned entry becomes
//! REVERTED and its staged outputs are deleted.
//!
//! An entry may also *read* segments it does not replace (`segmentsRead`, or `readsTable` for
//! a large read set): the rows that justify what its commit drops, e.g. the newer versions of
//! upsert keys a refresh drops the old versions of. While it is IN_PROGRESS those segments are
//! locked against removal — no other entry may replace or delete them — but not against
//! reading: entries that only read the same segment do not conflict.
//!
//! | an IN_PROGRESS entry … | another entry may read it | another entry may remove it |
//! |---|---|---|
//! | replaces a segment | no | no |
//! | reads a segment | yes | no |
//! | reads the table | yes | only an entry of the same run |
//!
//! Nothing here does I/O or reads the clock: transitions take `now` and a view of the live
//! catalog, and return what the caller must delete.
//!
//! # Stored form
//! The Table's status holds the entries in a bounded form (`control::tables::store_lineage`):
//! an ended entry keeps counts in place of its path lists (`segmentsFromCount`, …), and a live
//! entry whose lists are long keeps counts and `listsRef`, the object beside the table that
//! holds its lists ([`EntryLists`]). Every transition here works on *hydrated* entries, whose
//! live entries hold their lists (`control::gather::lineage`): a live entry whose lists are not
//! loaded forbids every removal rather than none.

use std::collections::{BTreeSet, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Entries kept after they end (COMPLETED or REVERTED), newest first; older ones are dropped.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;
/// IN_PROGRESS or REVERTED entries older than this are cleaned up (a day, as in Pinot).
pub const STALE_AFTER_MS: i64 = 24 * 60 * 60 * 1000;
/// Read sets of at most this many segments are stored as paths (`segmentsRead`); a larger one
/// is stored as `readsTable`, so an entry in the Table's status stays small whatever the size
/// of the table.
pub const MAX_SEGMENTS_READ: usize = 100;

mod entry;

pub use entry::{EntryLists, LineageEntry, LineageState};

/// What opening an entry needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRequest {
    pub id: String,
    pub segments_from: Vec<String>,
    /// Every segment the subtask reads without replacing it (see
    /// [`LineageEntry::segments_read`]); the entry stores it as paths or as `readsTable`.
    pub segments_read: Vec<String>,
    pub output_prefix: String,
    pub task_run: String,
    pub subtask: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineageError {
    #[error(
        "lineage entry {id}: input segment {segment} is not in the catalog (already replaced or deleted); plan the run again"
    )]
    InputMissing { id: String, segment: String },
    #[error(
        "lineage entry {id}: input segment {segment} is locked by IN_PROGRESS entry {holder} of TaskRun {holder_run}, {how}; wait for that run to end or revert it"
    )]
    InputLocked {
        id: String,
        segment: String,
        holder: String,
        holder_run: String,
        /// How the holder uses the segment.
        how: &'static str,
    },
    #[error(
        "lineage entry {id}: segment {segment}, read to decide what the commit drops, is not in the catalog (already replaced or deleted); plan the run again"
    )]
    ReadMissing { id: String, segment: String },
    #[error(
        "lineage entry {id}: segment {segment}, read to decide what the commit drops, is being replaced by IN_PROGRESS entry {holder} of TaskRun {holder_run}; plan the run again once that run ends"
    )]
    ReadLocked {
        id: String,
        segment: String,
        holder: String,
        holder_run: String,
    },
    #[error("lineage entry {id}: output {segment} already exists in the catalog")]
    OutputExists { id: String, segment: String },
    #[error("lineage entry {id} already exists with other inputs (state {state})")]
    Conflict { id: String, state: &'static str },
    #[error("lineage entry {id} does not exist")]
    NotFound { id: String },
    #[error("lineage entry {id} was REVERTED and cannot be completed; start a new run")]
    AlreadyReverted { id: String },
    #[error("lineage entry {id} is COMPLETED and cannot be reverted: its replacement is committed")]
    AlreadyCompleted { id: String },
}

impl LineageError {
    /// Stable reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            LineageError::InputMissing { .. } => "LineageInputMissing",
            LineageError::InputLocked { .. } => "LineageInputLocked",
            LineageError::ReadMissing { .. } => "LineageReadMissing",
            LineageError::ReadLocked { .. } => "LineageReadLocked",
            LineageError::OutputExists { .. } => "LineageOutputExists",
            LineageError::Conflict { .. } => "LineageConflict",
            LineageError::NotFound { .. } => "LineageNotFound",
            LineageError::AlreadyReverted { .. } => "LineageAlreadyReverted",
            LineageError::AlreadyCompleted { .. } => "LineageAlreadyCompleted",
        }
    }
}

/// What a transition changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Changed,
    /// The entry was already in the target state (idempotent replay).
    Unchanged,
}

/// Staged files a revert or clean-up leaves to the caller to delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deletions {
    /// Prefixes (relative to the table URI) whose every object must be deleted.
    pub prefixes: Vec<String>,
}

/// The segments a new run may not remove, from [`Lineage::removal_locks`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemovalLocks<'a> {
    /// Segments IN_PROGRESS entries replace or read.
    pub segments: HashSet<&'a str>,
    /// An IN_PROGRESS entry that reads the whole table (or whose lists are not loaded): then no
    /// segment may be removed.
    pub table_reader: Option<&'a LineageEntry>,
}

impl RemovalLocks<'_> {
    /// Whether a new run may not remove `segment`.
    pub fn contains(&self, segment: &str) -> bool {
        self.table_reader.is_some() || self.segments.contains(segment)
    }
}

/// The lineage of one table: a bounded list of entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lineage {
    pub entries: Vec<LineageEntry>,
}

impl Lineage {
    pub fn new(entries: Vec<LineageEntry>) -> Self {
        Lineage { entries }
    }

    pub fn get(&self, id: &str) -> Option<&LineageEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut LineageEntry, LineageError> {
        self.entries
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| LineageError::NotFound { id: id.to_string() })
    }

    /// Entries that are IN_PROGRESS.
    pub fn live(&self) -> impl Iterator<Item = &LineageEntry> {
        self.entries
            .iter()
            .filter(|e| e.state == LineageState::InProgress)
    }

    /// Segments IN_PROGRESS entries replace: no other run may plan them, to remove them or to
    /// read them (they are about to go).
    pub fn locked_segments(&self) -> HashSet<&str> {
        self.live()
            .flat_map(|e| e.segments_from.iter().map(String::as_str))
            .collect()
    }

    /// What a new run may not remove: the segments IN_PROGRESS entries replace or read. A run
    /// may still read the segments other entries only read.
    pub fn removal_locks(&self) -> RemovalLocks<'_> {
        let mut locks = RemovalLocks::default();
        for e in self.live() {
            locks
                .segments
                .extend(e.segments_from.iter().map(String::as_str));
            locks
                .segments
                .extend(e.segments_read.iter().map(String::as_str));
            // A live entry whose lists are not loaded locks everything (see the module docs).
            if (e.reads_table || e.lists_unloaded()) && locks.table_reader.is_none() {
                locks.table_reader = Some(e);
            }
        }
        locks
    }

    /// The IN_PROGRESS entry that forbids an entry of `run` to remove `segment` (it replaces or
    /// reads it), with how it uses it.
    pub fn removal_holder(
        &self,
        segment: &str,
        run: &str,
    ) -> Option<(&LineageEntry, &'static str)> {
        self.live()
            .find_map(|e| e.forbids_removal(segment, run).map(|how| (e, how)))
    }

    /// Segments the visibility rule hides: `segmentsFrom` of COMPLETED entries and
    /// `segmentsTo` of IN_PROGRESS and REVERTED ones (see [`visible`]).
    pub fn hidden_segments(&self) -> HashSet<&str> {
        let mut hidden = HashSet::new();
        for e in &self.entries {
            match e.state {
                LineageState::Completed => {
                    hidden.extend(e.segments_from.iter().map(String::as_str))
                }
                LineageState::InProgress | LineageState::Reverted => {
                    hidden.extend(e.segments_to.iter().map(String::as_str))
                }
            }
        }
        hidden
    }

    /// Opens an IN_PROGRESS entry.
    ///
    /// # Guarantees
    /// On success every input is live in the catalog and locked by this entry alone, and every
    /// segment it reads is live, replaced by no live entry, and locked against removal by
    /// other entries until this one ends (as paths, or as `readsTable` when there are more than
    /// [`MAX_SEGMENTS_READ`]). Starting the same id again with the same inputs while
    /// IN_PROGRESS is a no-op (`Unchanged`), so a control loop restarted after this step can
    /// replay it.
    ///
    /// # Errors
    /// An input missing from the catalog, or replaced or read by another live entry
    /// (`InputLocked`, naming it; an entry reading the whole table locks only other runs'
    /// removals); a read segment missing from the catalog or replaced by a live entry; an
    /// output prefix that already holds committed segments.
    pub fn start(
        &mut self,
        req: StartRequest,
        is_live: impl Fn(&str) -> bool,
        live_paths_under: impl Fn(&str) -> Option<String>,
        now_ms: i64,
    ) -> Result<Transition, LineageError> {
        if let Some(existing) = self.get(&req.id) {
            let same_inputs = existing.segments_from.iter().collect::<BTreeSet<_>>()
                == req.segments_from.iter().collect::<BTreeSet<_>>();
            return if existing.state == LineageState::InProgress && same_inputs {
                Ok(Transition::Unchanged)
            } else {
                Err(LineageError::Conflict {
                    id: req.id,
                    state: existing.state.as_str(),
                })
            };
        }
        // One pass over the live entries says whether any of them holds an input; only then
        // is each input looked up (in order, for the message naming the first one). Checking
        // every input against every live entry costs inputs × live paths per entry opened,
        // which is quadratic in the subtasks of a run that opens them all at once.
        let inputs: HashSet<&str> = req.segments_from.iter().map(String::as_str).collect();
        let any_input_held = self.live().any(|e| {
            e.forbids_removal_of(|s| inputs.contains(s), &req.task_run)
                .is_some()
        });
        for segment in &req.segments_from {
            if !is_live(segment) {
                return Err(LineageError::InputMissing {
                    id: req.id.clone(),
                    segment: segment.clone(),
                });
            }
            if !any_input_held {
                continue;
            }
            if let Some((holder, how)) = self.removal_holder(segment, &req.task_run) {
                return Err(LineageError::InputLocked {
                    id: req.id.clone(),
                    segment: segment.clone(),
                    holder: holder.id.clone(),
                    holder_run: holder.task_run.clone(),
                    how,
                });
            }
        }
        // A segment the entry replaces needs no read lock besides.
        let own = inputs;
        // Segments live entries replace, which no other entry may read (looked up once).
        let replaced: HashSet<&str> = if req.segments_read.is_empty() {
            HashSet::new()
        } else {
            self.live()
                .flat_map(|e| e.segments_from.iter().map(String::as_str))
                .collect()
        };
        let mut segments_read: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for segment in &req.segments_read {
            if own.contains(segment.as_str()) || !seen.insert(segment.as_str()) {
                continue;
            }
            if !is_live(segment) {
                return Err(LineageError::ReadMissing {
                    id: req.id.clone(),
                    segment: segment.clone(),
                });
            }
            if let Some(holder) = replaced
                .contains(segment.as_str())
                .then(|| {
                    self.live()
                        .find(|e| e.segments_from.iter().any(|s| s == segment))
                })
                .flatten()
            {
                return Err(LineageError::ReadLocked {
                    id: req.id.clone(),
                    segment: segment.clone(),
                    holder: holder.id.clone(),
                    holder_run: holder.task_run.clone(),
                });
            }
            segments_read.push(segment.clone());
        }
        let reads_table = segments_read.len() > MAX_SEGMENTS_READ;
        if reads_table {
            segments_read = Vec::new();
        }
        if let Some(segment) = live_paths_under(&req.output_prefix) {
            return Err(LineageError::OutputExists {
                id: req.id,
                segment,
            });
        }
        self.entries.push(LineageEntry {
            id: req.id,
            state: LineageState::InProgress,
            segments_from: req.segments_from,
            segments_to: Vec::new(),
            output_prefix: req.output_prefix,
            task_run: req.task_run,
            subtask: req.subtask,
            timestamp_ms: now_ms,
            message: None,
            segments_read,
            reads_table,
            segments_from_count: None,
            segments_to_count: None,
            segments_read_count: None,
            lists_ref: None,
        });
        Ok(Transition::Changed)
    }

    /// Records the outputs a worker produced, before the commit.
    pub fn record_outputs(&mut self, id: &str, outputs: Vec<String>) -> Result<(), LineageError> {
        let entry = self.get_mut(id)?;
        match entry.state {
            LineageState::InProgress => {
                entry.segments_to = outputs;
                Ok(())
            }
            LineageState::Completed => Err(LineageError::AlreadyCompleted { id: id.into() }),
            LineageState::Reverted => Err(LineageError::AlreadyReverted { id: id.into() }),
        }
    }

    /// Takes `segments` out of an IN_PROGRESS entry's inputs: its commit leaves them in the
    /// table (the subtask skipped them as unreadable), so they are neither hidden by the
    /// entry once it completes nor locked by it meanwhile.
    ///
    /// # Errors
    /// The entry is not IN_PROGRESS, or unknown.
    pub fn keep_inputs(&mut self, id: &str, segments: &[String]) -> Result<(), LineageError> {
        let entry = self.get_mut(id)?;
        match entry.state {
            LineageState::InProgress => {
                entry.segments_from.retain(|s| !segments.contains(s));
                Ok(())
            }
            LineageState::Completed => Err(LineageError::AlreadyCompleted { id: id.into() }),
            LineageState::Reverted => Err(LineageError::AlreadyReverted { id: id.into() }),
        }
    }

    /// Marks the entry COMPLETED once its Delta commit is in the log.
    ///
    /// # Guarantees
    /// Idempotent: ending a COMPLETED entry is `Unchanged`.
    ///
    /// # Errors
    /// The entry is REVERTED or unknown.
    pub fn end(&mut self, id: &str, now_ms: i64) -> Result<Transition, LineageError> {
        let entry = self.get_mut(id)?;
        match entry.state {
            LineageState::InProgress => {
                entry.state = LineageState::Completed;
                entry.timestamp_ms = now_ms;
                entry.release_reads();
                Ok(Transition::Changed)
            }
            LineageState::Completed => Ok(Transition::Unchanged),
            LineageState::Reverted => Err(LineageError::AlreadyReverted { id: id.into() }),
        }
    }

    /// Reverts an IN_PROGRESS entry: inputs unlocked, staged outputs to be deleted.
    ///
    /// # Guarantees
    /// Idempotent: reverting a REVERTED entry returns the same deletions again (deleting an
    /// absent prefix is harmless), so a crash between this and the deletions is recovered.
    ///
    /// # Errors
    /// The entry is COMPLETED (its commit is in the log; nothing staged is left) or unknown.
    pub fn revert(
        &mut self,
        id: &str,
        message: impl Into<String>,
        now_ms: i64,
    ) -> Result<Deletions, LineageError> {
        let entry = self.get_mut(id)?;
        match entry.state {
            LineageState::InProgress => {
                entry.state = LineageState::Reverted;
                entry.timestamp_ms = now_ms;
                entry.message = Some(message.into());
                entry.release_reads();
                Ok(Deletions {
                    prefixes: vec![entry.output_prefix.clone()],
                })
            }
            LineageState::Reverted => Ok(Deletions {
                prefixes: vec![entry.output_prefix.clone()],
            }),
            LineageState::Completed => Err(LineageError::AlreadyCompleted { id: id.into() }),
        }
    }

    /// Clean-up of stale and old entries.
    ///
    /// IN_PROGRESS entries older than `stale_after_ms` are reverted (their run is long past any
    /// deadline); REVERTED entries older than that are dropped; ended entries beyond
    /// `history_limit` (oldest first) are dropped so the list stays bounded. Returns the staged
    /// prefixes to delete.
    pub fn clean_up(
        &mut self,
        now_ms: i64,
        stale_after_ms: i64,
        history_limit: usize,
    ) -> Deletions {
        let mut deletions = Deletions::default();
        for entry in &mut self.entries {
            if entry.state == LineageState::InProgress
                && now_ms - entry.timestamp_ms >= stale_after_ms
            {
                entry.state = LineageState::Reverted;
                entry.message = Some("stale: IN_PROGRESS for longer than a day".into());
                entry.timestamp_ms = now_ms;
                entry.release_reads();
                deletions.prefixes.push(entry.output_prefix.clone());
            }
        }
        self.entries.retain(|e| {
            !(e.state == LineageState::Reverted && now_ms - e.timestamp_ms >= stale_after_ms)
        });
        let mut ended: Vec<(i64, String)> = self
            .entries
            .iter()
            .filter(|e| e.state != LineageState::InProgress)
            .map(|e| (e.timestamp_ms, e.id.clone()))
            .collect();
        if ended.len() > history_limit {
            ended.sort();
            let drop: HashSet<String> = ended[..ended.len() - history_limit]
                .iter()
                .map(|(_, id)| id.clone())
                .collect();
            for e in self.entries.iter().filter(|e| drop.contains(&e.id)) {
                if e.state == LineageState::Reverted {
                    deletions.prefixes.push(e.output_prefix.clone());
                }
            }
            self.entries.retain(|e| !drop.contains(&e.id));
        }
        deletions
    }
}

/// The visibility rule: of `segments` (everything a catalog holds, committed or staged), hide
/// the `segmentsFrom` of COMPLETED entries and the `segmentsTo` of IN_PROGRESS and REVERTED
/// ones.
///
/// With the Delta catalog the swap is one commit, so its listing already is the visible set;
/// this rule matters for views that merge the catalog with staged outputs (and for readers of
/// a catalog without atomic commits).
pub fn visible<'a>(segments: &'a [String], lineage: &Lineage) -> Vec<&'a str> {
    let hidden = lineage.hidden_segments();
    segments
        .iter()
        .map(String::as_str)
        .filter(|s| !hidden.contains(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, from: &[&str]) -> StartRequest {
        StartRequest {
            id: id.into(),
            segments_from: from.iter().map(|s| s.to_string()).collect(),
            segments_read: Vec::new(),
            output_prefix: format!("data/run/{id}"),
            task_run: "run".into(),
            subtask: Some(0),
        }
    }

    /// An entry `<run>-0` of `run` replacing `from` and reading `read`.
    fn run_req(run: &str, from: &[&str], read: &[&str]) -> StartRequest {
        StartRequest {
            task_run: run.into(),
            segments_read: read.iter().map(|s| s.to_string()).collect(),
            ..req(&format!("{run}-0"), from)
        }
    }

    fn catalog<'a>(live: &'a [&'a str]) -> impl Fn(&str) -> bool + 'a {
        move |s| live.contains(&s)
    }

    fn no_outputs(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn start_locks_inputs_against_other_entries() {
        let mut l = Lineage::default();
        let live = ["a", "b", "c"];
        assert_eq!(
            l.start(req("e1", &["a", "b"]), catalog(&live), no_outputs, 1),
            Ok(Transition::Changed)
        );
        let err = l
            .start(req("e2", &["b", "c"]), catalog(&live), no_outputs, 2)
            .unwrap_err();
        assert_eq!(err.reason(), "LineageInputLocked");
        assert!(err.to_string().contains("segment b"), "{err}");
        assert_eq!(l.locked_segments(), HashSet::from(["a", "b"]));
    }

    #[test]
    fn start_refuses_inputs_missing_from_the_catalog() {
        let mut l = Lineage::default();
        let err = l
            .start(req("e1", &["gone"]), catalog(&["a"]), no_outputs, 1)
            .unwrap_err();
        assert!(matches!(err, LineageError::InputMissing { .. }));
        assert!(l.entries.is_empty());
    }

    #[test]
    fn start_refuses_outputs_that_already_exist() {
        let mut l = Lineage::default();
        let err = l
            .start(req("e1", &["a"]), catalog(&["a"]), |_| Some("x".into()), 1)
            .unwrap_err();
        assert!(matches!(err, LineageError::OutputExists { .. }));
    }

    #[test]
    fn start_replayed_after_a_crash_is_a_no_op() {
        let mut l = Lineage::default();
        l.start(req("e1", &["a"]), catalog(&["a"]), no_outputs, 1)
            .unwrap();
        assert_eq!(
            l.start(req("e1", &["a"]), catalog(&["a"]), no_outputs, 2),
            Ok(Transition::Unchanged)
        );
        assert!(matches!(
            l.start(req("e1", &["b"]), catalog(&["a", "b"]), no_outputs, 2),
            Err(LineageError::Conflict { .. })
        ));
    }

    #[test]
    fn end_is_idempotent_and_unlocks_inputs() {
        let mut l = Lineage::default();
        l.start(req("e1", &["a"]), catalog(&["a"]), no_outputs, 1)
            .unwrap();
        assert_eq!(l.end("e1", 5), Ok(Transition::Changed));
        assert_eq!(l.end("e1", 6), Ok(Transition::Unchanged));
        assert!(l.locked_segments().is_empty());
        assert_eq!(l.get("e1").unwrap().timestamp_ms, 5);
    }

    #[test]
    fn revert_returns_the_staged_prefix_and_blocks_completion() {
        let mut l = Lineage::default();
        l.start(req("e1", &["a"]), catalog(&["a"]), no_outputs, 1)
            .unwrap();
        let d = l.revert("e1", "worker failed", 2).unwrap();
        assert_eq!(d.prefixes, vec!["data/run/e1".to_string()]);
        assert_eq!(l.revert("e1", "again", 3).unwrap(), d);
        assert_eq!(
            l.end("e1", 4),
            Err(LineageError::AlreadyReverted { id: "e1".into() })
        );
        assert!(l.locked_segments().is_empty());
    }

    #[test]
    fn completed_entries_cannot_be_reverted() {
        let mut l = Lineage::default();
        l.start(req("e1", &["a"]), catalog(&["a"]), no_outputs, 1)
            .unwrap();
        l.end("e1", 2).unwrap();
        assert!(matches!(
            l.revert("e1", "x", 3),
            Err(LineageError::AlreadyCompleted { .. })
        ));
    }

    #[test]
    fn visibility_hides_replaced_inputs_and_unfinished_outputs() {
        let mut l = Lineage::default();
        let live = ["a", "b", "c"];
        l.start(req("done", &["a"]), catalog(&live), no_outputs, 1)
            .unwrap();
        l.record_outputs("done", vec!["a2".into()]).unwrap();
        l.end("done", 2).unwrap();
        l.start(req("running", &["b"]), catalog(&live), no_outputs, 1)
            .unwrap();
        l.record_outputs("running", vec!["b2".into()]).unwrap();
        let all: Vec<String> = ["a", "a2", "b", "b2", "c"].map(String::from).into();
        assert_eq!(visible(&all, &l), vec!["a2", "b", "c"]);
    }

    #[test]
    fn clean_up_reverts_stale_entries_and_bounds_history() {
        let mut l = Lineage::default();
        let live: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
        let is_live = |s: &str| live.iter().any(|x| x == s);
        for i in 0..25 {
            let seg = format!("s{i}");
            l.start(req(&format!("e{i}"), &[&seg]), is_live, no_outputs, i)
                .unwrap();
            l.end(&format!("e{i}"), 100 + i).unwrap();
        }
        l.start(req("stuck", &["s29"]), is_live, no_outputs, 0)
            .unwrap();
        let d = l.clean_up(STALE_AFTER_MS + 1, STALE_AFTER_MS, 20);
        // the stuck entry was reverted (its outputs deleted) …
        assert!(d.prefixes.contains(&"data/run/stuck".to_string()));
        assert_eq!(l.get("stuck").unwrap().state, LineageState::Reverted);
        // … and history holds at most 20 ended entries, the newest ones.
        assert!(l.entries.len() <= 20);
        assert!(l.get("e24").is_some());
        assert!(l.get("e0").is_none());
        assert!(l.locked_segments().is_empty());
    }

    #[test]
    fn removing_a_segment_another_run_reads_is_refused_naming_the_holder() {
        let mut l = Lineage::default();
        let live = ["a", "ctx", "b"];
        l.start(
            run_req("refresh", &["a"], &["ctx"]),
            catalog(&live),
            no_outputs,
            1,
        )
        .unwrap();
        let err = l
            .start(
                run_req("purge", &["ctx"], &[]),
                catalog(&live),
                no_outputs,
                2,
            )
            .unwrap_err();
        assert_eq!(err.reason(), "LineageInputLocked");
        let msg = err.to_string();
        assert!(
            msg.contains("input segment ctx is locked by IN_PROGRESS entry refresh-0 of TaskRun refresh, which reads it"),
            "{msg}"
        );
        assert!(l.get("purge-0").is_none());
        // A read lock is not an input lock: the segment is still plannable for reading …
        assert!(!l.locked_segments().contains("ctx"));
        // … but not for removal.
        assert!(l.removal_locks().contains("ctx"));
        assert!(!l.removal_locks().contains("b"));
        l.start(run_req("merge", &["b"], &[]), catalog(&live), no_outputs, 3)
            .unwrap();
    }

    #[test]
    fn entries_that_only_read_a_segment_coexist() {
        let mut l = Lineage::default();
        let live = ["a", "b", "ctx"];
        l.start(
            run_req("r1", &["a"], &["ctx"]),
            catalog(&live),
            no_outputs,
            1,
        )
        .unwrap();
        // another run reads the same segment, and so does a sibling of the same run
        l.start(
            run_req("r2", &["b"], &["ctx"]),
            catalog(&live),
            no_outputs,
            2,
        )
        .unwrap();
        let sibling = StartRequest {
            id: "r1-1".into(),
            output_prefix: "data/r1/1".into(),
            ..run_req("r1", &[], &["ctx"])
        };
        l.start(sibling, catalog(&live), no_outputs, 3).unwrap();
        assert_eq!(l.live().count(), 3);
        for e in l.live() {
            assert_eq!(e.segments_read, vec!["ctx".to_string()]);
        }
    }

    #[test]
    fn reading_a_segment_a_live_entry_replaces_or_the_catalog_lacks_is_refused() {
        let mut l = Lineage::default();
        let live = ["a", "b"];
        l.start(run_req("merge", &["a"], &[]), catalog(&live), no_outputs, 1)
            .unwrap();
        let err = l
            .start(
                run_req("refresh", &["b"], &["a"]),
                catalog(&live),
                no_outputs,
                2,
            )
            .unwrap_err();
        assert_eq!(err.reason(), "LineageReadLocked");
        assert!(err.to_string().contains("merge-0"), "{err}");
        let err = l
            .start(
                run_req("refresh", &["b"], &["gone"]),
                catalog(&live),
                no_outputs,
                2,
            )
            .unwrap_err();
        assert_eq!(err.reason(), "LineageReadMissing");
        assert!(l.get("refresh-0").is_none());
        // a segment the entry itself replaces needs no read lock
        l.start(
            run_req("refresh", &["b"], &["b"]),
            catalog(&live),
            no_outputs,
            3,
        )
        .unwrap();
        assert!(l.get("refresh-0").unwrap().segments_read.is_empty());
    }

    #[test]
    fn ended_entries_release_their_read_locks() {
        let live = ["a", "b", "ctx"];
        for ending in ["completed", "reverted", "stale"] {
            let mut l = Lineage::default();
            l.start(
                run_req("refresh", &["a"], &["ctx"]),
                catalog(&live),
                no_outputs,
                1,
            )
            .unwrap();
            match ending {
                "completed" => {
                    l.end("refresh-0", 2).unwrap();
                }
                "reverted" => {
                    l.revert("refresh-0", "worker failed", 2).unwrap();
                }
                _ => {
                    l.clean_up(STALE_AFTER_MS + 1, STALE_AFTER_MS, 20);
                }
            }
            assert!(l.removal_locks().segments.is_empty(), "{ending}");
            assert!(l.get("refresh-0").unwrap().segments_read.is_empty());
            l.start(
                run_req("purge", &["ctx"], &[]),
                catalog(&live),
                no_outputs,
                3,
            )
            .unwrap_or_else(|e| panic!("{ending}: {e}"));
        }
    }

    #[test]
    fn a_large_read_set_is_stored_as_a_table_read_lock_that_spares_its_own_run() {
        let names: Vec<String> = (0..=MAX_SEGMENTS_READ + 2)
            .map(|i| format!("s{i}"))
            .collect();
        let is_live = |s: &str| names.iter().any(|n| n == s) || s == "new";
        let reads: Vec<&str> = names[2..].iter().map(String::as_str).collect();
        let mut l = Lineage::default();
        l.start(run_req("refresh", &["s0"], &reads), is_live, no_outputs, 1)
            .unwrap();
        let e = l.get("refresh-0").unwrap();
        assert!(e.reads_table && e.segments_read.is_empty());
        // Another run may remove nothing, not even a segment outside the read set …
        for s in ["s2", "new"] {
            let err = l
                .start(run_req("purge", &[s], &[]), is_live, no_outputs, 2)
                .unwrap_err();
            assert_eq!(err.reason(), "LineageInputLocked");
            assert!(err.to_string().contains("reads every segment"), "{err}");
        }
        // … but may read; a sibling of the same run may remove its own input.
        l.start(run_req("other", &[], &["s2"]), is_live, no_outputs, 2)
            .unwrap();
        let sibling = StartRequest {
            id: "refresh-1".into(),
            output_prefix: "data/refresh/1".into(),
            ..run_req("refresh", &["s1"], &[])
        };
        l.start(sibling, is_live, no_outputs, 2).unwrap();
        l.end("refresh-0", 3).unwrap();
        assert!(!l.get("refresh-0").unwrap().reads_table);
        l.start(run_req("purge", &["new"], &[]), is_live, no_outputs, 4)
            .unwrap();
    }

    #[test]
    fn entries_without_reads_serialize_as_before_and_old_entries_deserialize() {
        let old = r#"{"id":"r-0","state":"IN_PROGRESS","segmentsFrom":["a"],"outputPrefix":"data/r/0","taskRun":"r","subtask":0,"timestampMs":1}"#;
        let e: LineageEntry = serde_json::from_str(old).unwrap();
        assert!(e.segments_read.is_empty() && !e.reads_table);
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            !json.contains("segmentsRead") && !json.contains("readsTable"),
            "{json}"
        );

        let mut l = Lineage::default();
        l.start(
            run_req("r", &["a"], &["b"]),
            catalog(&["a", "b"]),
            no_outputs,
            1,
        )
        .unwrap();
        let json = serde_json::to_string(l.get("r-0").unwrap()).unwrap();
        assert!(json.contains(r#""segmentsRead":["b"]"#), "{json}");
        assert_eq!(
            serde_json::from_str::<LineageEntry>(&json).unwrap(),
            *l.get("r-0").unwrap()
        );
    }

    #[test]
    fn lists_taken_out_leave_counts_and_come_back_only_to_their_entry() {
        let mut l = Lineage::default();
        l.start(
            run_req("r", &["a", "b"], &["c"]),
            catalog(&["a", "b", "c"]),
            no_outputs,
            1,
        )
        .unwrap();
        let full = l.get("r-0").unwrap().clone();
        let mut stored = full.clone();
        let lists = stored.take_lists();
        assert_eq!(lists.paths(), 3);
        assert_eq!(stored.inline_paths(), 0);
        assert_eq!(
            (
                stored.segments_from_len(),
                stored.segments_to_len(),
                stored.segments_read_len()
            ),
            (2, 0, 1)
        );
        let json = serde_json::to_string(&stored).unwrap();
        assert!(
            json.contains(r#""segmentsFromCount":2"#) && json.contains(r#""segmentsReadCount":1"#),
            "{json}"
        );
        // Lists of another entry, or not matching the counts, are refused.
        let mut other = lists.clone();
        other.id = "x-0".into();
        assert!(stored.clone().restore_lists(other).is_err());
        let mut short = lists.clone();
        short.segments_from.pop();
        let err = stored.clone().restore_lists(short).unwrap_err();
        assert!(
            err.contains("segmentsFrom holds 1 path(s), status counts 2"),
            "{err}"
        );
        stored.lists_ref = Some("_minion/lineage/r-0/x.json".into());
        stored.restore_lists(lists).unwrap();
        assert_eq!(stored, full);
    }

    #[test]
    fn a_live_entry_whose_lists_are_not_loaded_forbids_every_removal() {
        let mut l = Lineage::default();
        l.start(
            run_req("swap", &["a"], &[]),
            catalog(&["a", "b"]),
            no_outputs,
            1,
        )
        .unwrap();
        let entry = &mut l.entries[0];
        entry.take_lists();
        entry.lists_ref = Some("_minion/lineage/swap-0/x.json".into());
        assert!(l.removal_locks().contains("b"));
        let err = l
            .start(
                run_req("purge", &["b"], &[]),
                catalog(&["a", "b"]),
                no_outputs,
                2,
            )
            .unwrap_err();
        assert!(err.to_string().contains("not loaded"), "{err}");
    }
}
