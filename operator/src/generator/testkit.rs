//! Small builders for generator tests (kueue style): segments, tables, configs and inputs.

use std::collections::{BTreeMap, HashMap};

use minion_contract::{
    Column, ColumnRole, ColumnType, FileFormat, MergeType, PartitionFunction, Partitioning,
    SegmentRef, TableSchema, TimeUnit, TimeWindow, segment::TAG_MERGE_LEVEL,
};

use crate::lineage::{Lineage, LineageEntry, LineageState};
use crate::model::*;

use super::{GeneratorInput, IncompleteRun, ListedFile, Plan, TableView};

pub const T0: i64 = 1_597_276_800_000; // 2020-08-13T00:00:00Z

/// Epoch ms of an RFC 3339 time.
pub fn ts(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("valid RFC 3339")
        .timestamp_millis()
}

/// A segment `<name>.parquet` with time range `[min, max]` and `rows` rows (1 KiB per 10 rows).
pub fn seg(name: &str, min_ms: i64, max_ms: i64, rows: u64) -> SegmentRef {
    SegmentRef {
        path: format!("data/{name}.parquet"),
        rows,
        bytes: rows * 100,
        min_time_ms: Some(min_ms),
        max_time_ms: Some(max_ms),
        partition: None,
        tags: BTreeMap::new(),
    }
}

pub trait SegExt: Sized {
    fn partition(self, p: u32) -> Self;
    fn tag(self, k: &str, v: &str) -> Self;
    fn level(self, level: &str) -> Self {
        self.tag(TAG_MERGE_LEVEL, level)
    }
    fn bytes(self, b: u64) -> Self;
}

impl SegExt for SegmentRef {
    fn partition(mut self, p: u32) -> Self {
        self.partition = Some(p);
        self
    }
    fn tag(mut self, k: &str, v: &str) -> Self {
        self.tags.insert(k.into(), v.into());
        self
    }
    fn bytes(mut self, b: u64) -> Self {
        self.bytes = b;
        self
    }
}

pub fn schema(partitions: Option<u32>, upsert: bool) -> TableSchema {
    let col = |name: &str, data_type, role| Column {
        name: name.into(),
        data_type,
        role,
        nullable: true,
    };
    TableSchema {
        columns: vec![
            col("id", ColumnType::String, ColumnRole::Dimension),
            col("ts", ColumnType::Long, ColumnRole::DateTime),
            col("m", ColumnType::Long, ColumnRole::Metric),
        ],
        time_column: "ts".into(),
        time_unit: TimeUnit::Milliseconds,
        time_format: None,
        primary_key: if upsert { vec!["id".into()] } else { vec![] },
        comparison_column: None,
        partitioning: partitions.map(|n| Partitioning {
            column: "id".into(),
            function: PartitionFunction::Modulo,
            num_partitions: n,
        }),
        sorted_column: None,
        bloom_filter_columns: vec![],
    }
}

pub fn table(name: &str, table_type: TableType, partitions: Option<u32>) -> TableView {
    TableView {
        def: TableDef {
            namespace: "ns".into(),
            name: name.into(),
            table_type,
            uri: format!("file:///tables/{name}"),
            schema: schema(partitions, false),
            storage_secret: None,
            retention_ms: defaults::APPEND_RETENTION_MS,
            data_retention_ms: None,
            create: true,
            clean_up_foreign_files: false,
        },
        segments: vec![],
        lineage: Lineage::default(),
    }
}

pub fn config(task: TaskSpec) -> TaskConfig {
    let reads_source = matches!(
        task,
        TaskSpec::RealtimeToOffline(_) | TaskSpec::SegmentImport(_)
    );
    TaskConfig {
        namespace: "ns".into(),
        name: "cfg".into(),
        table: "events".into(),
        source_table: reads_source.then(|| "events_rt".into()),
        schedule: None,
        suspend: false,
        missed_run_policy: MissedRunPolicy::default(),
        starting_deadline_ms: None,
        concurrency_policy: ConcurrencyPolicy::default(),
        run_after: Vec::new(),
        successful_runs_history_limit: 3,
        failed_runs_history_limit: 3,
        degraded_after_failures: 3,
        execution: Execution::default(),
        task,
    }
}

/// An input for `task`: destination OFFLINE `events`, source REALTIME `events_rt` for tasks
/// that read one; no segments; now = T0.
pub fn input(task: TaskSpec) -> GeneratorInput {
    let config = config(task);
    let source = config
        .source_table
        .as_ref()
        .map(|_| table("events_rt", TableType::Realtime, None));
    GeneratorInput {
        config,
        source,
        destination: table("events", TableType::Offline, None),
        watermarks: BTreeMap::new(),
        committed_windows: vec![],
        incomplete_runs: vec![],
        files: vec![],
        invalid_rows: HashMap::new(),
        now_ms: T0,
        watermark_source: None,
    }
}

pub fn merge_level(name: &str, bucket_ms: i64) -> MergeLevel {
    MergeLevel {
        name: name.into(),
        bucket_ms,
        buffer_ms: defaults::MERGE_BUFFER_MS,
        round_bucket_ms: None,
        merge_type: MergeType::Concat,
        max_records_per_segment: defaults::MAX_RECORDS_PER_SEGMENT,
        max_records_per_task: defaults::MAX_RECORDS_PER_TASK,
        max_num_parallel_buckets: defaults::MAX_NUM_PARALLEL_BUCKETS,
        erase_dimension_values: vec![],
        derive_metrics: BTreeMap::new(),
    }
}

pub fn merge_rollup(levels: Vec<MergeLevel>) -> TaskSpec {
    TaskSpec::MergeRollup(MergeRollupConfig {
        levels,
        aggregation_types: BTreeMap::new(),
        aggregation_parameters: BTreeMap::new(),
        mode: MergeMode::ProcessFromWatermark,
        skip_corrupt_segments: false,
    })
}

pub fn refresh(percent: f64, count: u64) -> TaskSpec {
    TaskSpec::SegmentRefresh(SegmentRefreshConfig {
        bucket_ms: DAY_MS,
        buffer_ms: defaults::UPSERT_BUFFER_MS,
        invalid_records_threshold_percent: percent,
        invalid_records_threshold_count: count,
        max_records_per_segment: defaults::MAX_RECORDS_PER_SEGMENT,
        desired_segment_size_bytes: defaults::DESIRED_SEGMENT_SIZE_BYTES,
        table_max_num_tasks: defaults::TABLE_MAX_NUM_TASKS,
        max_records_per_task: defaults::MAX_RECORDS_PER_TASK,
        max_data_size_per_task_bytes: defaults::MAX_DATA_SIZE_PER_TASK_BYTES,
    })
}

pub fn file_ingestion() -> FileIngestionConfig {
    FileIngestionConfig {
        input_dir_uri: "s3://in/events".into(),
        input_files: Vec::new(),
        input_format: FileFormat::Parquet,
        include_file_name_pattern: None,
        exclude_file_name_pattern: None,
        mode: IngestionMode::Append,
        consistent_push_enabled: false,
        consistent_push_swap_enabled: false,
        table_max_num_tasks: None,
        task_max_data_size_bytes: defaults::TASK_MAX_DATA_SIZE_BYTES,
        task_max_num_files: None,
        desired_segment_size_bytes: defaults::DESIRED_SEGMENT_SIZE_BYTES,
        max_records_per_segment: defaults::MAX_RECORDS_PER_SEGMENT,
        skip_file_if_fail_to_init_reader: true,
        delta_source: None,
    }
}

pub fn file(name: &str, bytes: u64, version: &str) -> ListedFile {
    ListedFile {
        format: None,
        uri: format!("s3://in/events/{name}"),
        bytes,
        version: version.into(),
    }
}

pub trait InputExt: Sized {
    fn with(self, f: impl FnOnce(&mut GeneratorInput)) -> Self;
    fn now(self, ms: i64) -> Self {
        self.with(|i| i.now_ms = ms)
    }
    fn source_segments(self, segs: Vec<SegmentRef>) -> Self {
        self.with(|i| i.source.as_mut().expect("source table").segments = segs)
    }
    fn dest_segments(self, segs: Vec<SegmentRef>) -> Self {
        self.with(|i| i.destination.segments = segs)
    }
    fn watermark(self, level: &str, ms: i64) -> Self {
        self.with(|i| {
            i.watermarks.insert(level.into(), ms);
        })
    }
    /// An IN_PROGRESS lineage entry of another run on the destination locking `names`.
    fn lock_dest(self, names: &[&str]) -> Self {
        self.with(|i| i.destination.lineage.entries.push(live_entry(names)))
    }
    fn lock_source(self, names: &[&str]) -> Self {
        self.with(|i| {
            i.source
                .as_mut()
                .expect("source table")
                .lineage
                .entries
                .push(live_entry(names))
        })
    }
    fn incomplete(self, name: &str, levels: &[&str]) -> Self {
        self.with(|i| {
            i.incomplete_runs.push(IncompleteRun {
                name: name.into(),
                levels: levels.iter().map(|l| l.to_string()).collect(),
            })
        })
    }
    fn committed_window(self, w: TimeWindow) -> Self {
        self.with(|i| i.committed_windows.push(w))
    }
    fn files(self, files: Vec<ListedFile>) -> Self {
        self.with(|i| i.files = files)
    }
    fn invalid(self, name: &str, rows: u64) -> Self {
        self.with(|i| {
            i.invalid_rows.insert(format!("data/{name}.parquet"), rows);
        })
    }
}

impl InputExt for GeneratorInput {
    fn with(mut self, f: impl FnOnce(&mut GeneratorInput)) -> Self {
        f(&mut self);
        self
    }
}

fn live_entry(names: &[&str]) -> LineageEntry {
    LineageEntry {
        id: format!("other-{}", names.join("-")),
        state: LineageState::InProgress,
        segments_from: names.iter().map(|n| format!("data/{n}.parquet")).collect(),
        segments_to: vec![],
        output_prefix: "data/other/0-".into(),
        task_run: "other".into(),
        subtask: Some(0),
        timestamp_ms: 0,
        message: None,
        segments_read: vec![],
        reads_table: false,
        segments_from_count: None,
        segments_to_count: None,
        segments_read_count: None,
        lists_ref: None,
    }
}

/// Names of the input segments of each subtask.
pub fn inputs_of(plan: &Plan) -> Vec<Vec<String>> {
    plan.subtasks
        .iter()
        .map(|s| s.inputs.iter().map(|i| i.name().to_string()).collect())
        .collect()
}

/// Names of the segments each subtask deletes without rewriting.
pub fn deletes_of(plan: &Plan) -> Vec<Vec<String>> {
    plan.subtasks
        .iter()
        .map(|s| s.deletes.iter().map(|i| i.name().to_string()).collect())
        .collect()
}

pub fn reason(plan: &Plan) -> Option<&'static str> {
    plan.skip.as_ref().map(|s| s.reason.as_str())
}
