//! A lineage entry as the Table's status stores it: its state, the segments it replaces, reads
//! and writes, and the bounded form of an ended or long entry (counts, `listsRef`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LineageState {
    InProgress,
    Completed,
    Reverted,
}

impl LineageState {
    pub fn as_str(self) -> &'static str {
        match self {
            LineageState::InProgress => "IN_PROGRESS",
            LineageState::Completed => "COMPLETED",
            LineageState::Reverted => "REVERTED",
        }
    }
}

/// One replacement. Segments are identified by their path relative to the table URI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineageEntry {
    /// Unique id: `<taskRun>-<subtask>` for task subtasks.
    pub id: String,
    pub state: LineageState,
    pub segments_from: Vec<String>,
    /// Outputs, known once the worker's result manifest has been read.
    #[serde(default)]
    pub segments_to: Vec<String>,
    /// Prefix under which every attempt of this entry stages its outputs.
    pub output_prefix: String,
    pub task_run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask: Option<u32>,
    /// Time of the last transition, epoch milliseconds.
    pub timestamp_ms: i64,
    /// Why the entry was reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Segments the entry reads without replacing them: the rows that justify what its commit
    /// drops (a refresh's upsert context). While the entry is IN_PROGRESS no other entry may
    /// remove them. Paths, at most 100 (`MAX_SEGMENTS_READ`; a larger read set is
    /// `readsTable`); emptied when the entry ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments_read: Vec<String>,
    /// The entry reads every segment of the table that its own run does not replace (its read
    /// set was larger than `MAX_SEGMENTS_READ`): while it is IN_PROGRESS no entry of another
    /// run may remove any segment. Reset when the entry ends.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reads_table: bool,
    /// How many segments `segmentsFrom` names when status does not hold the list: an ended
    /// entry keeps counts only, a live entry with long lists keeps them at `listsRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_from_count: Option<u64>,
    /// As `segmentsFromCount`, for `segmentsTo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_to_count: Option<u64>,
    /// As `segmentsFromCount`, for `segmentsRead`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_read_count: Option<u64>,
    /// Where the lists of a live entry too long for status are stored, relative to the table
    /// URI: `_minion/lineage/<id>/<content hash>.json`, written before the status naming it and
    /// never changed; deleted once the entry ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists_ref: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The path lists of one entry, as stored beside the table when status holds only their
/// counts (see [`LineageEntry::lists_ref`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryLists {
    /// The entry's id (checked when the lists are loaded).
    pub id: String,
    #[serde(default)]
    pub segments_from: Vec<String>,
    #[serde(default)]
    pub segments_to: Vec<String>,
    #[serde(default)]
    pub segments_read: Vec<String>,
}

impl EntryLists {
    /// Paths in all three lists.
    pub fn paths(&self) -> usize {
        self.segments_from.len() + self.segments_to.len() + self.segments_read.len()
    }
}

/// A list's length, or the count kept in its place.
fn len_or_count(list: &[String], count: Option<u64>) -> u64 {
    if list.is_empty() {
        count.unwrap_or(0)
    } else {
        list.len() as u64
    }
}

impl LineageEntry {
    /// How many segments the entry replaces (its list's length, or the count kept in its place).
    pub fn segments_from_len(&self) -> u64 {
        len_or_count(&self.segments_from, self.segments_from_count)
    }

    /// How many outputs the entry recorded.
    pub fn segments_to_len(&self) -> u64 {
        len_or_count(&self.segments_to, self.segments_to_count)
    }

    /// How many segments the entry reads without replacing them.
    pub fn segments_read_len(&self) -> u64 {
        len_or_count(&self.segments_read, self.segments_read_count)
    }

    /// Paths the entry's lists hold here.
    pub fn inline_paths(&self) -> usize {
        self.segments_from.len() + self.segments_to.len() + self.segments_read.len()
    }

    /// Whether this is a live entry whose lists are stored elsewhere and not loaded.
    pub fn lists_unloaded(&self) -> bool {
        self.state == LineageState::InProgress && self.lists_ref.is_some()
    }

    /// Takes the path lists out, leaving their counts in their place (the stored form of an
    /// ended entry, or of a live entry whose lists go to `listsRef`).
    pub fn take_lists(&mut self) -> EntryLists {
        self.segments_from_count = Some(self.segments_from_len());
        self.segments_to_count = Some(self.segments_to_len());
        self.segments_read_count = Some(self.segments_read_len()).filter(|n| *n > 0);
        EntryLists {
            id: self.id.clone(),
            segments_from: std::mem::take(&mut self.segments_from),
            segments_to: std::mem::take(&mut self.segments_to),
            segments_read: std::mem::take(&mut self.segments_read),
        }
    }

    /// Puts back lists loaded from `listsRef`, in place of the counts.
    ///
    /// # Errors
    /// The lists belong to another entry or do not match the counts (message says which).
    pub fn restore_lists(&mut self, lists: EntryLists) -> Result<(), String> {
        let counts = [
            (
                "segmentsFrom",
                self.segments_from_count,
                lists.segments_from.len(),
            ),
            (
                "segmentsTo",
                self.segments_to_count,
                lists.segments_to.len(),
            ),
            (
                "segmentsRead",
                self.segments_read_count,
                lists.segments_read.len(),
            ),
        ];
        if lists.id != self.id {
            return Err(format!(
                "the stored lists belong to entry {}, not {}",
                lists.id, self.id
            ));
        }
        for (name, count, len) in counts {
            if count.unwrap_or(0) != len as u64 {
                return Err(format!(
                    "entry {}: {name} holds {len} path(s), status counts {}",
                    self.id,
                    count.unwrap_or(0)
                ));
            }
        }
        self.segments_from = lists.segments_from;
        self.segments_to = lists.segments_to;
        self.segments_read = lists.segments_read;
        self.segments_from_count = None;
        self.segments_to_count = None;
        self.segments_read_count = None;
        self.lists_ref = None;
        Ok(())
    }

    /// Whether this entry, while IN_PROGRESS, forbids an entry of `run` to remove `segment`,
    /// and why (for messages).
    pub(super) fn forbids_removal(&self, segment: &str, run: &str) -> Option<&'static str> {
        self.forbids_removal_of(|s| s == segment, run)
    }

    /// As [`LineageEntry::forbids_removal`], for every segment `of` selects at once (one pass
    /// over the entry's lists).
    pub(super) fn forbids_removal_of(
        &self,
        of: impl Fn(&str) -> bool,
        run: &str,
    ) -> Option<&'static str> {
        if self.lists_unloaded() {
            // Its locks are unknown here: the caller did not load them (a bug); refuse.
            Some("whose segment lists are not loaded")
        } else if self.segments_from.iter().any(|s| of(s)) {
            Some("which replaces it")
        } else if self.segments_read.iter().any(|s| of(s)) {
            Some("which reads it to decide what its commit drops")
        } else if self.reads_table && self.task_run != run {
            Some("which reads every segment of the table to decide what its commit drops")
        } else {
            None
        }
    }

    /// Drops the read locks (the entry ended).
    pub(super) fn release_reads(&mut self) {
        self.segments_read = Vec::new();
        self.reads_table = false;
    }
}
