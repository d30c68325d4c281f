//! Segment references: how the operator tells the worker which Parquet files to read, and how
//! the worker tells the operator which ones it wrote.
//!
//! A segment is identified by its path relative to its table's URI (unique by construction:
//! every output is written under a staging prefix unique to run, subtask and attempt). Its
//! name, shown to people, is the file stem.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Tag key for the merge level a segment was produced at (`mergeLevel=1day`).
pub const TAG_MERGE_LEVEL: &str = "mergeLevel";
/// Tag key for the value partition (or stream partition) of a segment.
pub const TAG_PARTITION: &str = "partition";
/// Tag key marking a segment that MergeRollup must leave alone.
pub const TAG_SHOULD_NOT_MERGE: &str = "shouldNotMerge";
/// Tag key naming the source file a segment was ingested from (file ingestion).
pub const TAG_SOURCE_FILE: &str = "sourceFile";
/// Tag key carrying the source file's fingerprint (size and modification time) at ingestion.
pub const TAG_SOURCE_FILE_VERSION: &str = "sourceFileVersion";
/// Tag key naming the source files of a segment ingested from several files at once (file
/// ingestion in append mode, m files → n segments): a JSON object `{"<uri>": "<version>"}`.
pub const TAG_SOURCE_FILES: &str = "sourceFiles";
/// Tag key replacing a `sourceFiles` tag too long to carry in the log: the table-relative path
/// of an immutable object (`_minion/ingested/<content hash>.json`) holding that JSON map, so a
/// segment's tags stay bounded however many files were merged into it.
pub const TAG_SOURCE_FILES_REF: &str = "sourceFilesRef";
/// Key in a `sourceFiles` map for rows that did not come from a file (a segment merged from
/// ingested and other segments), so a sync-mode re-ingestion never replaces it.
pub const UNTRACKED_SOURCE: &str = "*";
/// Tag keys carrying the segment's time range in epoch milliseconds.
pub const TAG_MIN_TIME_MS: &str = "minTimeMs";
pub const TAG_MAX_TIME_MS: &str = "maxTimeMs";
/// Tag key naming the TaskRun that produced a segment.
pub const TAG_TASK_RUN: &str = "taskRun";

/// A committed or produced segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentRef {
    /// Path relative to the table URI, e.g. `data/run-1/0-1/events_1_2_0.parquet`.
    pub path: String,
    /// Number of rows.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Smallest value of the time column, in epoch milliseconds (absent for an empty segment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_time_ms: Option<i64>,
    /// Largest value of the time column, in epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time_ms: Option<i64>,
    /// Value or stream partition, when the table is partitioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Free-form tags (`mergeLevel`, `sourceFile`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl SegmentRef {
    /// The segment's name: its file name without directory and `.parquet` extension.
    pub fn name(&self) -> &str {
        segment_name(&self.path)
    }

    pub fn merge_level(&self) -> Option<&str> {
        self.tags.get(TAG_MERGE_LEVEL).map(String::as_str)
    }
}

/// The name of the segment stored at `path`.
pub fn segment_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".parquet").unwrap_or(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_name_is_the_file_stem() {
        assert_eq!(
            segment_name("data/r/0-1/events_1_2_0.parquet"),
            "events_1_2_0"
        );
        assert_eq!(segment_name("plain"), "plain");
    }
}
