//! The plan a generator returns: subtasks, watermarks to store, commit mode, or why nothing is
//! scheduled; the lineage entries to open; subtask specs; the dry-run view.
//!
//! Pure data and formatting: no I/O, no clock.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minion_contract::{
    CONTRACT_VERSION, InputFile, OutputSpec, Processing, SegmentRef, SubtaskSpec, TableLocation,
    TaskType, TimeWindow, staging_prefix,
};
use serde::{Deserialize, Serialize};

use crate::lineage::StartRequest;

use super::{fmt_ms, fmt_window};

/// How the subtasks of a run are committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CommitMode {
    /// Each subtask is committed (one Delta commit) as soon as it succeeds.
    #[default]
    PerSubtask,
    /// All subtasks are committed in one Delta commit once every one succeeded; any failure
    /// reverts them all (backfill, consistent push, full swap, a window split over subtasks).
    AllOrNone,
    /// Windows (R2O, SegmentImport) run in parallel but commit in window order: a window
    /// commits together with the staged windows right after it, once every earlier window of
    /// the run is committed. The watermark is then always the end of a contiguous prefix, so
    /// no window is ever committed beyond it; after a window fails for good, the later ones
    /// are reverted and planned again by a later run.
    InOrder,
}

/// Why a run schedules nothing. `as_str` is stable: it is used in conditions, Events and
/// metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NoTaskReason {
    /// The next window (or bucket) ends after `now − buffer`.
    WindowNotPastBuffer,
    /// A partition's latest completed segment ends inside the window: the rest may be consuming.
    DataStillArriving,
    /// An earlier run of the same config (or merge level) is incomplete.
    PreviousRunIncomplete,
    /// MergeRollup: no bucket qualifies at any level.
    NothingToMerge,
    /// The table has no segment with data to plan from.
    NoSegments,
    /// A REALTIME source has no completed segment.
    NoCompletedSegments,
    /// Every segment of the source ends before the watermark.
    NoDataAfterWatermark,
    /// File ingestion and backfill: no new or changed file.
    NoNewFiles,
    /// Refresh: no segment passes the thresholds and no small segments to merge.
    NothingToRefresh,
    /// Purge: every segment was purged within the threshold.
    NothingToPurge,
    /// The segments the run must replace are locked by another run's lineage entry.
    InputsLocked,
    /// SegmentImport `initialWatermarkFrom`: the config it takes over from is still active.
    WatermarkSourceActive,
}

impl NoTaskReason {
    pub fn as_str(self) -> &'static str {
        match self {
            NoTaskReason::WindowNotPastBuffer => "WindowNotPastBuffer",
            NoTaskReason::DataStillArriving => "DataStillArriving",
            NoTaskReason::PreviousRunIncomplete => "PreviousRunIncomplete",
            NoTaskReason::NothingToMerge => "NothingToMerge",
            NoTaskReason::NoSegments => "NoSegments",
            NoTaskReason::NoCompletedSegments => "NoCompletedSegments",
            NoTaskReason::NoDataAfterWatermark => "NoDataAfterWatermark",
            NoTaskReason::NoNewFiles => "NoNewFiles",
            NoTaskReason::NothingToRefresh => "NothingToRefresh",
            NoTaskReason::NothingToPurge => "NothingToPurge",
            NoTaskReason::InputsLocked => "InputsLocked",
            NoTaskReason::WatermarkSourceActive => "WatermarkSourceActive",
        }
    }
}

/// Why nothing is scheduled, for status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NoTask {
    pub reason: NoTaskReason,
    pub message: String,
}

/// Naming and tags of a subtask's outputs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputNaming {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name_postfix: Option<String>,
    /// Tags put on every output segment (`mergeLevel=1day`, `lastPurgeTimeMs=…`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// One output segment per input file (file ingestion sync mode).
    #[serde(default)]
    pub segment_per_input_file: bool,
}

/// One subtask of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedSubtask {
    pub task_type: TaskType,
    /// Index in the run (`_0 … _n`).
    pub index: u32,
    /// Segments read (paths relative to the source table; the destination for in-place tasks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<SegmentRef>,
    /// Whether the inputs are replaced by the outputs (in-place tasks) or only read (R2O,
    /// SegmentImport, whose inputs live in another table).
    pub replaces_inputs: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_files: Vec<InputFile>,
    /// Destination segments removed by this subtask's commit without being rewritten
    /// (all-invalid upsert segments, segments of changed files, a full swap, a backfilled range).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deletes: Vec<SegmentRef>,
    /// Other live destination segments whose rows justify what the subtask drops: the worker
    /// reads them only to decide upsert validity (a delete-only subtask has no worker: they
    /// are the rows that made every row of its deletes invalid). Its lineage entry locks them
    /// against removal by other runs (see [`Self::segments_read`]); no subtask of the same plan
    /// removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_segments: Vec<SegmentRef>,
    /// Rows outside this window are dropped (R2O, SegmentImport, backfill ingestion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    /// The time bucket the subtask works on, for display (MergeRollup, refresh). Rows outside it
    /// are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<TimeWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    pub processing: Processing,
    pub output: OutputNaming,
    /// The watermark this subtask's commit allows (its window end), for task types whose
    /// watermark follows commits (R2O, SegmentImport). See [`super::advance_watermark`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_watermark_ms: Option<i64>,
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
}

impl PlannedSubtask {
    /// An empty subtask; generators fill the rest.
    pub(crate) fn new(task_type: TaskType, index: u32, processing: Processing) -> Self {
        PlannedSubtask {
            task_type,
            index,
            inputs: Vec::new(),
            replaces_inputs: true,
            input_files: Vec::new(),
            deletes: Vec::new(),
            context_segments: Vec::new(),
            window: None,
            bucket: None,
            level: None,
            partition: None,
            processing,
            output: OutputNaming::default(),
            commit_watermark_ms: None,
            estimated_rows: 0,
            estimated_bytes: 0,
        }
    }

    /// Sets the inputs and the estimates from them.
    pub(crate) fn with_inputs<'a>(
        mut self,
        inputs: impl IntoIterator<Item = &'a SegmentRef>,
    ) -> Self {
        for s in inputs {
            self.estimated_rows = self.estimated_rows.saturating_add(s.rows);
            self.estimated_bytes = self.estimated_bytes.saturating_add(s.bytes);
            self.inputs.push(s.clone());
        }
        self
    }

    /// Whether a worker must run: false for a subtask that only deletes segments, which the
    /// control loop commits directly.
    pub fn needs_worker(&self) -> bool {
        !self.inputs.is_empty() || !self.input_files.is_empty()
    }

    /// Segments of the destination this subtask's commit removes (what its lineage entry locks).
    pub fn segments_from(&self) -> Vec<String> {
        let replaced = self.inputs.iter().filter(|_| self.replaces_inputs);
        replaced
            .chain(self.deletes.iter())
            .map(|s| s.path.clone())
            .collect()
    }

    /// Segments of the destination this subtask reads without removing them (its context):
    /// what its lineage entry locks against removal by other runs.
    pub fn segments_read(&self) -> Vec<String> {
        self.context_segments
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    /// The spec of one attempt of this subtask of the run `task_run`, whose outputs are staged
    /// under `data/<staging_run>/` (`<namespace>/<run key>`).
    #[allow(clippy::too_many_arguments)]
    pub fn to_spec(
        &self,
        namespace: &str,
        task_run: &str,
        staging_run: &str,
        attempt: u32,
        source: TableLocation,
        destination: TableLocation,
        memory_budget_bytes: u64,
    ) -> SubtaskSpec {
        SubtaskSpec {
            api_version: CONTRACT_VERSION.to_string(),
            task_type: self.task_type,
            kind: Default::default(),
            namespace: namespace.to_string(),
            task_run: task_run.to_string(),
            subtask: self.index,
            attempt,
            source,
            destination,
            inputs: self.inputs.clone(),
            input_files: self.input_files.clone(),
            context_segments: self.context_segments.clone(),
            window: self.window,
            processing: self.processing.clone(),
            output: OutputSpec {
                staging_prefix: staging_prefix(staging_run, self.index, attempt),
                segment_name_prefix: self.output.segment_name_prefix.clone(),
                segment_name_postfix: self.output.segment_name_postfix.clone(),
                tags: self.output.tags.clone(),
                segment_per_input_file: self.output.segment_per_input_file,
            },
            memory_budget_bytes,
        }
    }
}

/// What one run does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub task_type: TaskType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtasks: Vec<PlannedSubtask>,
    /// Watermarks to store when the plan is accepted (cold start, MergeRollup's levels), all
    /// together. Watermarks that follow commits are carried per subtask instead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub watermarks: BTreeMap<String, i64>,
    pub commit_mode: CommitMode,
    /// Set when there is no subtask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<NoTask>,
    /// The run's execution settings, frozen when the control loop stores the plan (absent
    /// from a generator's own output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<crate::model::Execution>,
}

impl Plan {
    pub(crate) fn new(task_type: TaskType) -> Self {
        Plan {
            task_type,
            subtasks: Vec::new(),
            watermarks: BTreeMap::new(),
            commit_mode: CommitMode::PerSubtask,
            skip: None,
            execution: None,
        }
    }

    pub(crate) fn skipped(task_type: TaskType, reason: NoTaskReason, message: String) -> Self {
        Plan {
            skip: Some(NoTask { reason, message }),
            ..Plan::new(task_type)
        }
    }

    /// Sets `skip` when there is no subtask (keeping watermarks to store).
    pub(crate) fn or_skip(
        mut self,
        reason: NoTaskReason,
        message: impl FnOnce() -> String,
    ) -> Self {
        if self.subtasks.is_empty() && self.skip.is_none() {
            self.skip = Some(NoTask {
                reason,
                message: message(),
            });
        }
        self
    }

    /// Whether the run has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.subtasks.is_empty()
    }

    /// The lineage entries to open before any Job starts, one per subtask of the run
    /// `task_run` whose identity is `key`: id `<key>-<index>`, output prefix
    /// `data/<staging_run>/<index>` (every attempt's [`staging_prefix`] starts with it), the
    /// segments it removes and those it reads.
    pub fn lineage_requests(
        &self,
        task_run: &str,
        key: &str,
        staging_run: &str,
    ) -> Vec<StartRequest> {
        self.subtasks
            .iter()
            .map(|s| StartRequest {
                id: format!("{key}-{}", s.index),
                segments_from: s.segments_from(),
                segments_read: s.segments_read(),
                output_prefix: minion_contract::subtask_prefix(staging_run, s.index),
                task_run: task_run.to_string(),
                subtask: Some(s.index),
            })
            .collect()
    }

    /// Total estimated rows over all subtasks.
    pub fn estimated_rows(&self) -> u64 {
        self.subtasks.iter().map(|s| s.estimated_rows).sum()
    }

    /// A human table of the plan (`kubectl minion plan`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mode = match self.commit_mode {
            CommitMode::PerSubtask => "per subtask",
            CommitMode::AllOrNone => "all or none",
            CommitMode::InOrder => "in window order",
        };
        let _ = writeln!(
            out,
            "{}: {} subtask(s), commit {mode}",
            self.task_type,
            self.subtasks.len()
        );
        if let Some(skip) = &self.skip {
            let _ = writeln!(out, "no task: {} — {}", skip.reason.as_str(), skip.message);
        }
        if !self.subtasks.is_empty() {
            let rows: Vec<[String; 9]> = self
                .subtasks
                .iter()
                .map(|s| {
                    let range = s
                        .window
                        .or(s.bucket)
                        .map(|w| fmt_window(&w))
                        .unwrap_or_else(|| "-".into());
                    [
                        s.index.to_string(),
                        s.level.clone().unwrap_or_else(|| "-".into()),
                        s.partition.map_or_else(|| "-".into(), |p| p.to_string()),
                        range,
                        s.inputs.len().to_string(),
                        s.input_files.len().to_string(),
                        s.deletes.len().to_string(),
                        s.estimated_rows.to_string(),
                        s.estimated_bytes.to_string(),
                    ]
                })
                .collect();
            let header = [
                "SUBTASK",
                "LEVEL",
                "PARTITION",
                "WINDOW/BUCKET",
                "INPUTS",
                "FILES",
                "DELETES",
                "ROWS",
                "BYTES",
            ];
            let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: Vec<&str>| {
                let mut l = String::new();
                for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                    if i > 0 {
                        l.push_str("  ");
                    }
                    let _ = write!(l, "{c:<w$}");
                }
                l.trim_end().to_string()
            };
            let _ = writeln!(out, "{}", line(header.to_vec()));
            for r in &rows {
                let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
            }
        }
        for (level, ms) in &self.watermarks {
            let name = if level.is_empty() { "watermark" } else { level };
            let _ = writeln!(out, "set {name} = {}", fmt_ms(*ms));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use minion_contract::{TableLocation, staging_prefix};

    use super::*;
    use crate::generator::testkit::*;
    use crate::generator::{GeneratorInput, plan};
    use crate::lineage::{LineageEntry, LineageState};
    use crate::model::{HOUR_MS, TaskSpec};

    fn merge_input() -> GeneratorInput {
        input(merge_rollup(vec![merge_level("1hour", HOUR_MS)]))
            .now(T0 + 10 * HOUR_MS)
            .dest_segments(vec![seg("a", T0, T0 + 5, 10), seg("b", T0 + 6, T0 + 9, 20)])
    }

    fn location(name: &str) -> TableLocation {
        TableLocation {
            name: name.into(),
            uri: format!("file:///tables/{name}"),
            schema: schema(None, false),
        }
    }

    #[test]
    fn no_task_reasons_have_stable_camel_case_names_equal_to_their_serde_names() {
        let all = [
            NoTaskReason::WindowNotPastBuffer,
            NoTaskReason::DataStillArriving,
            NoTaskReason::PreviousRunIncomplete,
            NoTaskReason::NothingToMerge,
            NoTaskReason::NoSegments,
            NoTaskReason::NoCompletedSegments,
            NoTaskReason::NoDataAfterWatermark,
            NoTaskReason::NoNewFiles,
            NoTaskReason::NothingToRefresh,
            NoTaskReason::NothingToPurge,
            NoTaskReason::InputsLocked,
        ];
        for r in all {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
            assert!(r.as_str().chars().next().unwrap().is_ascii_uppercase());
        }
    }

    #[test]
    fn dry_run_plan_round_trips_through_json_and_yaml_and_renders_a_table() {
        let p = plan(&merge_input()).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), p);
        let yaml = serde_yaml::to_string(&p).unwrap();
        assert_eq!(serde_yaml::from_str::<Plan>(&yaml).unwrap(), p);
        assert!(json.contains("\"commitMode\":\"perSubtask\""), "{json}");
        let text = p.render();
        assert!(
            text.starts_with("MergeRollupTask: 1 subtask(s), commit per subtask"),
            "{text}"
        );
        assert!(text.contains("SUBTASK  LEVEL"), "{text}");
        assert!(
            text.contains("[2020-08-13T00:00:00Z, 2020-08-13T01:00:00Z)"),
            "{text}"
        );
        assert!(text.contains("set 1hour = 2020-08-13T00:00:00Z"), "{text}");
    }

    #[test]
    fn skipped_plan_renders_its_reason() {
        let p = plan(&merge_input().incomplete("run-1", &[])).unwrap();
        assert!(
            p.render().contains("no task: PreviousRunIncomplete"),
            "{}",
            p.render()
        );
    }

    #[test]
    fn subtask_spec_carries_inputs_processing_and_a_staging_prefix_under_the_lineage_prefix() {
        let p = plan(&merge_input()).unwrap();
        let req = &p.lineage_requests(
            "events-merge-1",
            "events-merge-1-0a1b",
            "ns/events-merge-1-0a1b",
        )[0];
        assert_eq!(req.id, "events-merge-1-0a1b-0");
        assert_eq!(req.task_run, "events-merge-1");
        assert_eq!(req.output_prefix, "data/ns/events-merge-1-0a1b/0");
        let spec = p.subtasks[0].to_spec(
            "ns",
            "events-merge-1",
            "ns/events-merge-1-0a1b",
            2,
            location("events"),
            location("events"),
            1 << 20,
        );
        assert_eq!(
            spec.output.staging_prefix,
            staging_prefix("ns/events-merge-1-0a1b", 0, 2)
        );
        assert!(spec.output.staging_prefix.starts_with(&req.output_prefix));
        assert_eq!(spec.inputs.len(), 2);
        assert_eq!(spec.attempt, 2);
        assert_eq!(spec.task_type, minion_contract::TaskType::MergeRollupTask);
        assert_eq!(
            spec.output.tags.get("mergeLevel").map(String::as_str),
            Some("1hour")
        );
        assert_eq!(spec.memory_budget_bytes, 1 << 20);
        assert_eq!(p.subtasks[0].estimated_rows, 30);
    }

    #[test]
    fn run_timed_out_and_reverted_unblocks_the_next_run() {
        // Scenario 20: the stuck run held `a`; once it is TimedOut its entry is REVERTED and it
        // is no longer an incomplete run, so the next run plans `a` again.
        let stuck = merge_input().incomplete("stuck", &[]).lock_dest(&["a"]);
        assert_eq!(
            reason(&plan(&stuck).unwrap()),
            Some("PreviousRunIncomplete")
        );
        let mut next = merge_input().lock_dest(&["a"]);
        let entry: &mut LineageEntry = &mut next.destination.lineage.entries[0];
        entry.state = LineageState::Reverted;
        assert_eq!(inputs_of(&plan(&next).unwrap()), vec![vec!["a", "b"]]);
    }

    #[test]
    fn window_tasks_lock_nothing_in_the_destination() {
        let i = input(TaskSpec::RealtimeToOffline(Default::default()))
            .source_segments(vec![
                seg("a", T0, T0 + 5, 10),
                seg("tail", T0 + 30 * HOUR_MS, T0 + 50 * HOUR_MS, 10),
            ])
            .now(T0 + 100 * HOUR_MS);
        let p = plan(&i).unwrap();
        assert_eq!(inputs_of(&p), vec![vec!["a"]]);
        assert!(
            p.lineage_requests("r", "r", "r")[0]
                .segments_from
                .is_empty()
        );
    }
}
