//! FileIngestionTask: ingest files listed under an input directory, or named explicitly
//! (docs/semantics.md, "FileIngestionTask").
//!
//! # Contract
//! - Which files were ingested, and at which version, is read from the destination segments'
//!   `sourceFile` / `sourceFileVersion` tags, so reruns are idempotent (scenario 19): a file
//!   already ingested is not ingested again; files of a failed run were never committed and
//!   are pending again.
//! - Append mode ingests new files only (m files → n segments). Sync mode ingests new and
//!   changed files, one segment per file; a changed file's old segments are replaced in the
//!   same commit.
//! - Files are packed into subtasks in path order, each closed before it would pass
//!   `taskMaxDataSize` or `taskMaxNumFiles` (a larger file is a subtask of its own); at most
//!   `tableMaxNumTasks` subtasks per run (`None` = every pending file in this run).
//! - `consistentPushEnabled`: the run commits all or none. `consistentPushSwapEnabled`: every
//!   listed file is ingested and every live segment replaced in one all-or-none commit (so
//!   data of deleted files is dropped); it runs only when something changed, and ignores
//!   `tableMaxNumTasks` since a swap cannot be partial.
//! - Segments that other tasks merged carry the `sourceFiles` of what they replaced, so files
//!   stay ingested after a MergeRollup (a long list is stored beside the table and read back
//!   inline before planning: `catalog::sources`). In sync mode, a changed file whose old rows share a
//!   segment with other files is re-ingested together with them in one subtask
//!   ([`sync_group`]), or waits when that cannot restore every row.
//! - A segment an IN_PROGRESS lineage entry of another run replaces or reads (a running
//!   refresh's upsert context) is not replaced: the changed file waits for the next run, and a
//!   full swap plans nothing (`InputsLocked`). Appending new files removes nothing and goes on.
//! - Include/exclude patterns are globs on the path relative to `inputDirURI` (`*` within a
//!   directory, `**` across, `?` one character; an optional `glob:` prefix is ignored).

use std::collections::{BTreeMap, HashMap, HashSet};

use minion_contract::segment::{TAG_SOURCE_FILE, TAG_SOURCE_FILE_VERSION, TAG_SOURCE_FILES};
use minion_contract::{InputFile, Processing, SegmentRef};

use crate::model::{FileIngestionConfig, IngestionMode, defaults};

use super::windows::base_processing;
use super::{
    CommitMode, GeneratorInput, ListedFile, NoTaskReason, OutputNaming, Plan, PlannedSubtask,
    blocked_by_incomplete_run, first_locked, no_task,
};

/// The source files of a segment with their versions at ingestion: its `sourceFile` tag, or
/// every file of its `sourceFiles` tag (segments of several files).
pub fn sources_of(s: &SegmentRef) -> Vec<(String, String)> {
    if let Some(f) = s.tags.get(TAG_SOURCE_FILE) {
        let version = s
            .tags
            .get(TAG_SOURCE_FILE_VERSION)
            .cloned()
            .unwrap_or_default();
        return vec![(f.clone(), version)];
    }
    s.tags
        .get(TAG_SOURCE_FILES)
        .and_then(|t| serde_json::from_str::<BTreeMap<String, String>>(t).ok())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

/// Segments of the destination per source file URI, each with the file's version at
/// ingestion.
pub fn ingested_files(segments: &[SegmentRef]) -> HashMap<String, Vec<(&SegmentRef, String)>> {
    let mut out: HashMap<String, Vec<(&SegmentRef, String)>> = HashMap::new();
    for s in segments {
        for (file, version) in sources_of(s) {
            out.entry(file).or_default().push((s, version));
        }
    }
    out
}

/// DeltaIngestionTask: the segments to delete because a file they hold rows of is no longer
/// live in the source Delta table, and the live files to re-ingest because they shared such a
/// segment (merged by MergeRollup) — transitively, with every segment of those files, so the
/// commit neither drops nor doubles a row. Segments locked by another run are left (with
/// everything they are tied to) for a later run.
pub(crate) fn gone_from_delta<'a>(
    source: &str,
    listed: &HashMap<&str, &'a ListedFile>,
    ingested: &HashMap<String, Vec<(&'a SegmentRef, String)>>,
    locked: &crate::lineage::RemovalLocks<'_>,
) -> (Vec<&'a SegmentRef>, Vec<&'a ListedFile>) {
    let mut segments: Vec<&'a SegmentRef> = Vec::new();
    let mut files: Vec<&'a ListedFile> = Vec::new();
    let mut seen_segments: HashSet<&str> = HashSet::new();
    let mut seen_files: HashSet<String> = HashSet::new();
    let mut names: Vec<&String> = ingested.keys().collect();
    names.sort();
    // Only files of the source table: rows pushed from elsewhere are not the log's to remove.
    let prefix = format!("{}/", source.trim_end_matches('/'));
    for gone in names
        .into_iter()
        .filter(|f| f.starts_with(&prefix) && !listed.contains_key(f.as_str()))
    {
        // The closure of segments and files tied to this gone file.
        let mut group_segments: Vec<&'a SegmentRef> = Vec::new();
        let mut group_files: Vec<&'a ListedFile> = Vec::new();
        let mut queue = vec![gone.clone()];
        let mut visited: HashSet<String> = HashSet::new();
        while let Some(file) = queue.pop() {
            if !visited.insert(file.clone()) {
                continue;
            }
            if let Some(l) = listed.get(file.as_str()) {
                group_files.push(l);
            }
            for (s, _) in ingested.get(&file).into_iter().flatten() {
                if group_segments.iter().any(|g| g.path == s.path) {
                    continue;
                }
                group_segments.push(s);
                queue.extend(sources_of(s).into_iter().map(|(f, _)| f));
            }
        }
        if group_segments
            .iter()
            .any(|s| locked.contains(s.path.as_str()))
        {
            continue;
        }
        for s in group_segments {
            if seen_segments.insert(s.path.as_str()) {
                segments.push(s);
            }
        }
        for f in group_files {
            if seen_files.insert(f.uri.clone()) {
                files.push(f);
            }
        }
    }
    (segments, files)
}

/// The files to re-ingest with `changed` in sync mode, and the segments they replace, when
/// its old segments also hold other files' rows (merged by MergeRollup): every file sharing a
/// replaced segment is re-ingested from its current version in the same subtask, and every
/// segment of those files is replaced, transitively — so the one commit neither drops nor
/// doubles a row. `None` (the file waits) when a replaced segment holds rows of a file no
/// longer listed, or rows that came from no file: re-ingesting could not restore them.
pub(crate) fn sync_group<'a>(
    changed: &'a ListedFile,
    listed: &HashMap<&str, &'a ListedFile>,
    ingested: &HashMap<String, Vec<(&'a SegmentRef, String)>>,
) -> Option<(Vec<&'a ListedFile>, Vec<&'a SegmentRef>)> {
    let mut files: Vec<&ListedFile> = Vec::new();
    let mut seen_files: HashSet<&str> = HashSet::new();
    let mut segments: Vec<&SegmentRef> = Vec::new();
    let mut seen_segments: HashSet<&str> = HashSet::new();
    let mut queue = vec![changed];
    while let Some(file) = queue.pop() {
        if !seen_files.insert(file.uri.as_str()) {
            continue;
        }
        files.push(file);
        for (segment, version) in ingested.get(file.uri.as_str()).into_iter().flatten() {
            if file.uri == changed.uri && *version == changed.version {
                continue;
            }
            if !seen_segments.insert(segment.path.as_str()) {
                continue;
            }
            segments.push(segment);
            for (other, _) in sources_of(segment) {
                if seen_files.contains(other.as_str()) {
                    continue;
                }
                queue.push(listed.get(other.as_str())?);
            }
        }
    }
    files[1..].sort_by(|a, b| a.uri.cmp(&b.uri));
    Some((files, segments))
}

/// Whether `text` matches the glob `pattern` (`*`, `**`, `?`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) if rest.first() == Some(&b'*') => {
                let rest = &rest[1..];
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some((b'*', rest)) => {
                let limit = t.iter().position(|c| *c == b'/').unwrap_or(t.len());
                (0..=limit).any(|i| go(rest, &t[i..]))
            }
            Some((b'?', rest)) => t.first().is_some_and(|c| *c != b'/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let pattern = pattern.strip_prefix("glob:").unwrap_or(pattern);
    go(pattern.as_bytes(), text.as_bytes())
}

/// Listed files that pass the include and exclude patterns.
pub(crate) fn selected_files<'a>(
    files: &'a [ListedFile],
    input_dir_uri: &str,
    include: Option<&str>,
    exclude: Option<&str>,
) -> Vec<&'a ListedFile> {
    let dir = input_dir_uri.trim_end_matches('/');
    let mut out: Vec<&ListedFile> = files
        .iter()
        .filter(|f| {
            let rel = f
                .uri
                .strip_prefix(dir)
                .map_or(f.uri.as_str(), |r| r.trim_start_matches('/'));
            include.is_none_or(|p| glob_match(p, rel))
                && !exclude.is_some_and(|p| glob_match(p, rel))
        })
        .collect();
    out.sort_by(|a, b| a.uri.cmp(&b.uri));
    out
}

/// Packs files into batches closed before they would pass `max_bytes` or `max_files`.
pub(crate) fn pack_files<'a>(
    files: &[&'a ListedFile],
    max_bytes: u64,
    max_files: Option<u32>,
) -> Vec<Vec<&'a ListedFile>> {
    let max_files = max_files.map_or(usize::MAX, |n| n.max(1) as usize);
    let mut out: Vec<Vec<&ListedFile>> = Vec::new();
    let mut cur: Vec<&ListedFile> = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        if !cur.is_empty() && (cur.len() >= max_files || bytes.saturating_add(f.bytes) > max_bytes)
        {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(f);
        bytes = bytes.saturating_add(f.bytes);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The format a file's name tells (`*.parquet`/`*.pq`, `*.csv`, `*.json`/`*.jsonl`/
/// `*.ndjson`), if any.
pub fn format_of(uri: &str) -> Option<minion_contract::FileFormat> {
    use minion_contract::FileFormat;
    let lower = uri.to_ascii_lowercase();
    let ext = lower.rsplit_once('.')?.1;
    match ext {
        "parquet" | "pq" => Some(FileFormat::Parquet),
        "csv" => Some(FileFormat::Csv),
        "json" | "jsonl" | "ndjson" => Some(FileFormat::Json),
        _ => None,
    }
}

pub(crate) fn to_input_file(f: &ListedFile, format: minion_contract::FileFormat) -> InputFile {
    InputFile {
        uri: f.uri.clone(),
        format: f.format.unwrap_or(format),
        bytes: f.bytes,
        version: Some(f.version.clone()),
    }
}

/// Plans one file ingestion run. See the module contract.
pub fn plan_file_ingestion(input: &GeneratorInput, config: &FileIngestionConfig) -> Plan {
    if let Some(plan) = blocked_by_incomplete_run(input) {
        return plan;
    }
    let dest = &input.destination;
    let files = selected_files(
        &input.files,
        &config.input_dir_uri,
        config.include_file_name_pattern.as_deref(),
        config.exclude_file_name_pattern.as_deref(),
    );
    let ingested = ingested_files(&dest.segments);
    let at_version = |f: &ListedFile| {
        ingested
            .get(f.uri.as_str())
            .is_some_and(|segs| segs.iter().all(|(_, v)| *v == f.version))
    };
    let swap = config.consistent_push_swap_enabled;
    // Files to ingest, and per file the old segments its commit replaces.
    let mut pending: Vec<&ListedFile> = Vec::new();
    let mut replaces: HashMap<&str, Vec<&SegmentRef>> = HashMap::new();
    let mut deletes_all: Vec<&SegmentRef> = Vec::new();
    // Sync mode: files re-ingested together (one subtask) with the segments they replace.
    let mut groups: Vec<(Vec<&ListedFile>, Vec<&SegmentRef>)> = Vec::new();
    // Sync mode: changed files whose old rows share a segment that re-ingestion cannot rebuild.
    let mut unrebuildable: Vec<&str> = Vec::new();
    if swap && files.is_empty() {
        return no_task(
            input,
            NoTaskReason::NoNewFiles,
            format!(
                "no file under {}; a full swap would empty the table, so nothing is done",
                config.input_dir_uri
            ),
        );
    }
    if swap {
        let listed: HashMap<&str, &str> = files
            .iter()
            .map(|f| (f.uri.as_str(), f.version.as_str()))
            .collect();
        let stale_segment = dest.segments.iter().any(|s| {
            let sources = sources_of(s);
            sources.is_empty()
                || sources
                    .iter()
                    .any(|(f, v)| listed.get(f.as_str()) != Some(&v.as_str()))
        });
        if !stale_segment && files.iter().all(|f| at_version(f)) {
            return no_task(
                input,
                NoTaskReason::NoNewFiles,
                format!(
                    "every file under {} is ingested at its current version",
                    config.input_dir_uri
                ),
            );
        }
        if let Some((s, holder)) = first_locked(dest, &dest.segments) {
            return no_task(
                input,
                NoTaskReason::InputsLocked,
                format!(
                    "a full swap replaces every segment, and {} is locked by {holder}",
                    s.name()
                ),
            );
        }
        pending = files.clone();
        deletes_all = dest.segments.iter().collect();
    } else {
        // Segments other runs replace or read: this run may not replace them.
        let locked = dest.lineage.removal_locks();
        let listed: HashMap<&str, &ListedFile> =
            files.iter().map(|f| (f.uri.as_str(), *f)).collect();
        let mut grouped: HashSet<&str> = HashSet::new();
        for f in &files {
            if grouped.contains(f.uri.as_str()) {
                continue;
            }
            let old = ingested.get(f.uri.as_str());
            if config.mode == IngestionMode::Sync
                && !at_version(f)
                && old.is_some_and(|segs| segs.iter().any(|(s, _)| sources_of(s).len() > 1))
            {
                // Its old rows share segments with other files (merged by MergeRollup): see
                // `sync_group`.
                match sync_group(f, &listed, &ingested) {
                    Some((group, old)) if !old.iter().any(|s| locked.contains(s.path.as_str())) => {
                        grouped.extend(group.iter().map(|g| g.uri.as_str()));
                        groups.push((group, old));
                    }
                    Some(_) => {}
                    None => unrebuildable.push(f.uri.as_str()),
                }
                continue;
            }
            let ingest = match config.mode {
                IngestionMode::Append => old.is_none(),
                IngestionMode::Sync => !at_version(f),
            };
            if !ingest {
                continue;
            }
            let old: Vec<&SegmentRef> = old
                .map(|segs| {
                    segs.iter()
                        .filter(|(_, v)| *v != f.version)
                        .map(|(s, _)| *s)
                        .collect()
                })
                .unwrap_or_default();
            if old.iter().any(|s| locked.contains(s.path.as_str())) {
                continue;
            }
            replaces.insert(f.uri.as_str(), old);
            pending.push(f);
        }
        // A Delta source: segments of files no longer live upstream (compacted, deleted) go
        // in this run's commit, with the files that replaced them.
        if let Some(source) = &config.delta_source {
            let (gone, again) = gone_from_delta(source, &listed, &ingested, &locked);
            for f in again {
                if !pending.iter().any(|p| p.uri == f.uri) {
                    replaces.entry(f.uri.as_str()).or_default();
                    pending.push(f);
                }
            }
            deletes_all.extend(gone);
        }
    }
    if pending.is_empty() && deletes_all.is_empty() && groups.is_empty() {
        if !unrebuildable.is_empty() {
            return no_task(
                input,
                NoTaskReason::NoNewFiles,
                format!(
                    "{} changed, but its old rows share a merged segment with rows of a file no longer listed or not from a file; re-ingesting it would lose those rows, so its old version stays",
                    unrebuildable.join(", ")
                ),
            );
        }
        return no_task(
            input,
            NoTaskReason::NoNewFiles,
            format!("no new or changed file under {}", config.input_dir_uri),
        );
    }
    let mut batches: Vec<Vec<&ListedFile>> = Vec::new();
    for (group, old) in &groups {
        replaces.insert(group[0].uri.as_str(), old.clone());
        batches.push(group.clone());
    }
    batches.extend(pack_files(
        &pending,
        config.task_max_data_size_bytes,
        config.task_max_num_files,
    ));
    if let (false, Some(n)) = (swap, config.table_max_num_tasks) {
        batches.truncate(n.max(1) as usize);
    }
    let processing = Processing {
        value_partitioning: dest.def.schema.partitioning.is_some(),
        desired_segment_size_bytes: Some(config.desired_segment_size_bytes),
        skip_file_if_fail_to_init_reader: config.skip_file_if_fail_to_init_reader,
        ..base_processing(config.max_records_per_segment)
    };
    let mut plan = Plan::new(input.config.task_type());
    let mut delete_chunks = deletes_all.chunks(defaults::MAX_SEGMENTS_PER_TASK);
    let mut seen: HashSet<&str> = HashSet::new();
    for batch in batches {
        let mut s = PlannedSubtask::new(
            input.config.task_type(),
            plan.subtasks.len() as u32,
            processing.clone(),
        );
        for f in batch {
            s.estimated_bytes += f.bytes;
            s.input_files.push(to_input_file(f, config.input_format));
            for old in replaces.get(f.uri.as_str()).into_iter().flatten() {
                if seen.insert(old.path.as_str()) {
                    s.deletes.push((*old).clone());
                }
            }
        }
        if let Some(chunk) = delete_chunks.next() {
            s.deletes.extend(chunk.iter().map(|d| (*d).clone()));
        }
        s.output = OutputNaming {
            segment_per_input_file: config.mode == IngestionMode::Sync,
            ..OutputNaming::default()
        };
        plan.subtasks.push(s);
    }
    for chunk in delete_chunks {
        let mut s = PlannedSubtask::new(
            input.config.task_type(),
            plan.subtasks.len() as u32,
            processing.clone(),
        );
        s.deletes = chunk.iter().map(|d| (*d).clone()).collect();
        plan.subtasks.push(s);
    }
    if swap || config.consistent_push_enabled {
        plan.commit_mode = CommitMode::AllOrNone;
    }
    plan
}

#[cfg(test)]
#[path = "file_ingestion_tests.rs"]
mod tests;
