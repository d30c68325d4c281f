//! Validation of the per-task-type blocks (`realtimeToOfflineSegmentsTask`, …) into
//! [`TaskSpec`]: exactly the block matching `taskType` may be present; an absent block means
//! all defaults (an error where a key has no default).

use std::collections::{BTreeMap, HashSet};

use minion_contract::{AggregationParameters, AggregationType, Sketch, TaskType};

use super::{Collector, Invalid, check_segment_name_part, check_uri, units};
use crate::api::tasks::*;
use crate::model::*;

/// Builds the task spec of `task_type` from `blocks`, found at `at` (`spec` for a
/// MinionTaskConfig, `spec.config` for a TaskRun). Errors go to `c`.
pub(super) fn task_spec(
    c: &mut Collector,
    at: &str,
    task_type: TaskType,
    blocks: &TaskBlocks,
) -> TaskSpec {
    let expected = block_key(task_type);
    for (key, other) in blocks.present() {
        if other != task_type {
            c.push(
                format!("{at}.{key}"),
                Invalid::BlockMismatch {
                    task_type: task_type.to_string(),
                    expected: expected.to_string(),
                },
            );
        }
    }
    let at = format!("{at}.{expected}");
    let at = at.as_str();
    match task_type {
        TaskType::RealtimeToOfflineSegmentsTask => {
            let b = blocks
                .realtime_to_offline_segments_task
                .clone()
                .unwrap_or_default();
            TaskSpec::RealtimeToOffline(RealtimeToOfflineConfig {
                window: window(
                    c,
                    at,
                    Window {
                        bucket: b.bucket_time_period.as_deref(),
                        buffer: b.buffer_time_period.as_deref(),
                        round: b.round_bucket_time_period.as_deref(),
                        merge_type: b.merge_type,
                        aggregation_types: &b.aggregation_types,
                        aggregation_parameters: &b.aggregation_parameters,
                        max_records_per_segment: b.max_num_records_per_segment,
                        prefix: &b.segment_name_prefix,
                        postfix: &b.segment_name_postfix,
                        skip_corrupt_segments: b.skip_corrupt_segments,
                    },
                ),
            })
        }
        TaskType::SegmentImportTask => {
            let b = blocks.segment_import_task.clone().unwrap_or_default();
            segment_import(c, at, &b)
        }
        TaskType::MergeRollupTask => {
            let b = blocks.merge_rollup_task.clone().unwrap_or_default();
            merge_rollup(c, at, &b)
        }
        TaskType::SegmentRefreshTask => {
            let b = blocks.segment_refresh_task.clone().unwrap_or_default();
            segment_refresh(c, at, &b)
        }
        TaskType::FileIngestionTask => {
            let b = blocks.file_ingestion_task.clone().unwrap_or_default();
            file_ingestion(c, at, &b)
        }
        TaskType::DeltaIngestionTask => {
            let b = blocks.delta_ingestion_task.clone().unwrap_or_default();
            delta_ingestion(c, at, &b)
        }
        TaskType::SegmentBackfillTask => {
            let b = blocks.segment_backfill_task.clone().unwrap_or_default();
            segment_backfill(c, at, &b)
        }
        TaskType::PurgeTask => {
            let b = blocks.purge_task.clone().unwrap_or_default();
            purge(c, at, &b)
        }
    }
}

struct Window<'a> {
    bucket: Option<&'a str>,
    buffer: Option<&'a str>,
    round: Option<&'a str>,
    merge_type: Option<minion_contract::MergeType>,
    aggregation_types: &'a BTreeMap<String, AggregationType>,
    aggregation_parameters: &'a BTreeMap<String, AggregationParameters>,
    max_records_per_segment: Option<u64>,
    prefix: &'a Option<String>,
    postfix: &'a Option<String>,
    skip_corrupt_segments: Option<bool>,
}

fn window(c: &mut Collector, at: &str, w: Window<'_>) -> WindowProcessing {
    for (key, value) in [
        ("segmentNamePrefix", w.prefix),
        ("segmentNamePostfix", w.postfix),
    ] {
        if let Some(v) = value {
            c.check(&format!("{at}.{key}"), check_segment_name_part(v));
        }
    }
    let bucket_field = format!("{at}.bucketTimePeriod");
    let bucket_ms = c.positive_period(&bucket_field, w.bucket, defaults::R2O_BUCKET_MS);
    let round_bucket_ms = rounding(c, at, w.round, w.bucket.unwrap_or("1d"), bucket_ms);
    WindowProcessing {
        bucket_ms,
        buffer_ms: c.period(
            &format!("{at}.bufferTimePeriod"),
            w.buffer,
            defaults::R2O_BUFFER_MS,
        ),
        round_bucket_ms,
        merge_type: w.merge_type.unwrap_or_default(),
        aggregation_types: aggregation_types(c, at, w.aggregation_types),
        aggregation_parameters: aggregation_parameters(
            c,
            at,
            w.aggregation_types,
            w.aggregation_parameters,
        ),
        max_records_per_segment: c.at_least_one(
            &format!("{at}.maxNumRecordsPerSegment"),
            w.max_records_per_segment,
            defaults::MAX_RECORDS_PER_SEGMENT,
        ),
        segment_name_prefix: w.prefix.clone(),
        segment_name_postfix: w.postfix.clone(),
        skip_corrupt_segments: w.skip_corrupt_segments.unwrap_or(false),
    }
}

/// `roundBucketTimePeriod`: > 0 and ≤ the bucket.
fn rounding(
    c: &mut Collector,
    at: &str,
    round: Option<&str>,
    bucket_text: &str,
    bucket_ms: i64,
) -> Option<i64> {
    let field = format!("{at}.roundBucketTimePeriod");
    let ms = c.check(&field, units::parse_positive_period(round?))?;
    if ms > bucket_ms {
        c.push(
            field,
            Invalid::RoundingTooLong {
                value: round.unwrap_or_default().to_string(),
                bucket: bucket_text.to_string(),
            },
        );
    }
    Some(ms)
}

fn aggregation_types(
    c: &mut Collector,
    at: &str,
    types: &BTreeMap<String, AggregationType>,
) -> BTreeMap<String, AggregationType> {
    for name in types.keys().filter(|k| k.trim().is_empty()) {
        c.missing(
            &format!("{at}.aggregationTypes.{name}"),
            "key aggregation types by metric column name",
        );
    }
    types.clone()
}

/// Each metric's parameters resolve with its aggregation type (the sketch's ranges).
fn aggregation_parameters(
    c: &mut Collector,
    at: &str,
    types: &BTreeMap<String, AggregationType>,
    params: &BTreeMap<String, AggregationParameters>,
) -> BTreeMap<String, AggregationParameters> {
    for (name, p) in params {
        let agg = types.get(name).copied().unwrap_or_default();
        if let Err(message) = Sketch::resolve(agg, p) {
            c.push(
                format!("{at}.aggregationParameters.{name}"),
                Invalid::AggregationParameter { message },
            );
        }
    }
    params.clone()
}

fn segment_import(c: &mut Collector, at: &str, b: &SegmentImportTaskSpec) -> TaskSpec {
    let window = window(
        c,
        at,
        Window {
            bucket: b.bucket_time_period.as_deref(),
            buffer: b.buffer_time_period.as_deref(),
            round: b.round_bucket_time_period.as_deref(),
            merge_type: b.merge_type,
            aggregation_types: &b.aggregation_types,
            aggregation_parameters: &b.aggregation_parameters,
            max_records_per_segment: b.max_num_records_per_segment,
            prefix: &b.segment_name_prefix,
            postfix: &b.segment_name_postfix,
            skip_corrupt_segments: b.skip_corrupt_segments,
        },
    );
    let initial_watermark_ms = match b.initial_watermark_ms {
        None | Some(-1) => None,
        Some(ms) if ms >= 0 => Some(ms),
        Some(ms) => {
            c.push(
                format!("{at}.initialWatermarkMs"),
                Invalid::OutOfRange {
                    value: ms.to_string(),
                    allowed:
                        "use epoch milliseconds ≥ 0, or -1 to start from the oldest source segment"
                            .into(),
                },
            );
            None
        }
    };
    let initial_watermark_from = match &b.initial_watermark_from {
        None => None,
        Some(_) if initial_watermark_ms.is_some() => {
            c.push(
                format!("{at}.initialWatermarkFrom"),
                Invalid::Conflicting {
                    other: "initialWatermarkMs".into(),
                    hint: "start from a config's watermark or from a time, not both".into(),
                },
            );
            None
        }
        Some(from) => match crate::local::check_name("MinionTaskConfig", &from.config) {
            Ok(()) => Some(from.config.clone()),
            Err(e) => {
                c.push(
                    format!("{at}.initialWatermarkFrom.config"),
                    Invalid::NotAllowed {
                        detail: e.to_string(),
                    },
                );
                None
            }
        },
    };
    TaskSpec::SegmentImport(SegmentImportConfig {
        window,
        table_max_num_tasks: c.at_least_one(
            &format!("{at}.tableMaxNumTasks"),
            b.table_max_num_tasks,
            defaults::TABLE_MAX_NUM_TASKS,
        ),
        max_records_per_task: c.at_least_one(
            &format!("{at}.maxNumRecordsPerTask"),
            b.max_num_records_per_task,
            defaults::MAX_RECORDS_PER_TASK,
        ),
        initial_watermark_ms,
        initial_watermark_from,
        desired_segment_size_bytes: c.size(
            &format!("{at}.desiredSegmentSize"),
            b.desired_segment_size.as_deref(),
            defaults::DESIRED_SEGMENT_SIZE_BYTES,
        ),
    })
}

fn merge_rollup(c: &mut Collector, at: &str, b: &MergeRollupTaskSpec) -> TaskSpec {
    if b.levels.is_empty() {
        c.missing(
            &format!("{at}.levels"),
            "list at least one level, e.g. [{name: 1hour, bucketTimePeriod: 1h}]",
        );
    }
    let mut names = HashSet::new();
    let mut previous: Option<(i64, String)> = None;
    let mut levels = Vec::with_capacity(b.levels.len());
    for (i, l) in b.levels.iter().enumerate() {
        let at = format!("{at}.levels[{i}]");
        if l.name.trim().is_empty() {
            c.missing(&format!("{at}.name"), "name the level, e.g. 1hour or 1day");
        } else if !names.insert(l.name.as_str()) {
            c.push(
                format!("{at}.name"),
                Invalid::Duplicate {
                    value: l.name.clone(),
                },
            );
        } else {
            // Outputs of the level are named `merged_<level>_…`.
            c.check(&format!("{at}.name"), check_segment_name_part(&l.name));
        }
        let bucket_field = format!("{at}.bucketTimePeriod");
        let bucket_ms = match l.bucket_time_period.as_deref() {
            None => {
                c.missing(
                    &bucket_field,
                    "give the level's bucket length, e.g. 1h or 1d",
                );
                None
            }
            Some(v) => c.check(&bucket_field, units::parse_positive_period(v)),
        };
        if let (Some(ms), Some(text)) = (bucket_ms, l.bucket_time_period.as_deref()) {
            if let Some((prev_ms, prev_text)) = &previous
                && ms <= *prev_ms
            {
                c.push(
                    bucket_field.clone(),
                    Invalid::LevelsOutOfOrder {
                        value: text.to_string(),
                        previous: prev_text.clone(),
                    },
                );
            }
            previous = Some((ms, text.to_string()));
        }
        let bucket_ms = bucket_ms.unwrap_or(HOUR_MS);
        let round_bucket_ms = rounding(
            c,
            &at,
            l.round_bucket_time_period.as_deref(),
            l.bucket_time_period.as_deref().unwrap_or(""),
            bucket_ms,
        );
        for (j, d) in l.erase_dimension_values.iter().enumerate() {
            if d.trim().is_empty() {
                c.missing(
                    &format!("{at}.eraseDimensionValues[{j}]"),
                    "name a dimension column",
                );
            }
        }
        levels.push(MergeLevel {
            name: l.name.clone(),
            bucket_ms,
            buffer_ms: c.period(
                &format!("{at}.bufferTimePeriod"),
                l.buffer_time_period.as_deref(),
                defaults::MERGE_BUFFER_MS,
            ),
            round_bucket_ms,
            merge_type: l.merge_type.unwrap_or_default(),
            max_records_per_segment: c.at_least_one(
                &format!("{at}.maxNumRecordsPerSegment"),
                l.max_num_records_per_segment,
                defaults::MAX_RECORDS_PER_SEGMENT,
            ),
            max_records_per_task: c.at_least_one(
                &format!("{at}.maxNumRecordsPerTask"),
                l.max_num_records_per_task,
                defaults::MAX_RECORDS_PER_TASK,
            ),
            max_num_parallel_buckets: c.at_least_one(
                &format!("{at}.maxNumParallelBuckets"),
                l.max_num_parallel_buckets,
                defaults::MAX_NUM_PARALLEL_BUCKETS,
            ),
            erase_dimension_values: l.erase_dimension_values.clone(),
            derive_metrics: l.derive_metrics.clone(),
        });
    }
    TaskSpec::MergeRollup(MergeRollupConfig {
        levels,
        aggregation_types: aggregation_types(c, at, &b.aggregation_types),
        aggregation_parameters: aggregation_parameters(
            c,
            at,
            &b.aggregation_types,
            &b.aggregation_parameters,
        ),
        mode: match b.mode {
            None | Some(MergeRollupMode::ProcessFromWatermark) => MergeMode::ProcessFromWatermark,
            Some(MergeRollupMode::ProcessAll) => MergeMode::ProcessAll,
        },
        skip_corrupt_segments: b.skip_corrupt_segments.unwrap_or(false),
    })
}

fn segment_refresh(c: &mut Collector, at: &str, b: &SegmentRefreshTaskSpec) -> TaskSpec {
    let bucket_field = format!("{at}.bucketTimePeriod");
    let bucket_ms = match b.bucket_time_period.as_deref() {
        None => {
            c.missing(&bucket_field, "give the bucket length, e.g. 1d");
            defaults::R2O_BUCKET_MS
        }
        Some(v) => c
            .check(&bucket_field, units::parse_positive_period(v))
            .unwrap_or(defaults::R2O_BUCKET_MS),
    };
    let percent_field = format!("{at}.invalidRecordsThresholdPercent");
    if b.invalid_records_threshold_percent.is_none() && b.invalid_records_threshold_count.is_none()
    {
        c.missing(
            &percent_field,
            "set invalidRecordsThresholdPercent (0–100), invalidRecordsThresholdCount (≥ 1) or both",
        );
    }
    let percent = match b.invalid_records_threshold_percent {
        Some(p) if !(0.0..=100.0).contains(&p) => {
            c.push(
                percent_field,
                Invalid::OutOfRange {
                    value: p.to_string(),
                    allowed: "use a percentage from 0 to 100".into(),
                },
            );
            defaults::INVALID_RECORDS_THRESHOLD_PERCENT
        }
        Some(p) => p,
        None => defaults::INVALID_RECORDS_THRESHOLD_PERCENT,
    };
    TaskSpec::SegmentRefresh(SegmentRefreshConfig {
        bucket_ms,
        buffer_ms: c.period(
            &format!("{at}.bufferTimePeriod"),
            b.buffer_time_period.as_deref(),
            defaults::UPSERT_BUFFER_MS,
        ),
        invalid_records_threshold_percent: percent,
        invalid_records_threshold_count: c.at_least_one(
            &format!("{at}.invalidRecordsThresholdCount"),
            b.invalid_records_threshold_count,
            defaults::INVALID_RECORDS_THRESHOLD_COUNT,
        ),
        max_records_per_segment: c.at_least_one(
            &format!("{at}.maxNumRecordsPerSegment"),
            b.max_num_records_per_segment,
            defaults::MAX_RECORDS_PER_SEGMENT,
        ),
        desired_segment_size_bytes: c.size(
            &format!("{at}.desiredSegmentSize"),
            b.desired_segment_size.as_deref(),
            defaults::DESIRED_SEGMENT_SIZE_BYTES,
        ),
        table_max_num_tasks: c.at_least_one(
            &format!("{at}.tableMaxNumTasks"),
            b.table_max_num_tasks,
            defaults::TABLE_MAX_NUM_TASKS,
        ),
        max_records_per_task: c.at_least_one(
            &format!("{at}.maxNumRecordsPerTask"),
            b.max_num_records_per_task,
            defaults::MAX_RECORDS_PER_TASK,
        ),
        max_data_size_per_task_bytes: c.size(
            &format!("{at}.maxDataSizePerTask"),
            b.max_data_size_per_task.as_deref(),
            defaults::MAX_DATA_SIZE_PER_TASK_BYTES,
        ),
    })
}

/// A required input prefix (`inputDirURI`) with a supported scheme.
fn input_dir(c: &mut Collector, at: &str, value: &Option<String>) -> String {
    let field = format!("{at}.inputDirURI");
    match value.as_deref() {
        None | Some("") => {
            c.missing(
                &field,
                "give the prefix to read files from, e.g. s3://bucket/incoming/",
            );
            String::new()
        }
        Some(v) => {
            c.check(&field, check_uri(v));
            v.to_string()
        }
    }
}

fn input_format(
    c: &mut Collector,
    at: &str,
    value: Option<minion_contract::FileFormat>,
) -> minion_contract::FileFormat {
    value.unwrap_or_else(|| {
        c.missing(&format!("{at}.inputFormat"), "use parquet, csv or json");
        minion_contract::FileFormat::Parquet
    })
}

/// `tableMaxNumTasks` of a file task: `None` for −1 (or absent), every pending file in one run.
fn files_per_run(c: &mut Collector, at: &str, value: Option<i64>) -> Option<u32> {
    match value {
        None | Some(-1) => None,
        Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        Some(n) => {
            c.push(
                format!("{at}.tableMaxNumTasks"),
                Invalid::OutOfRange {
                    value: n.to_string(),
                    allowed: "use 1 or more, or -1 for every pending file in one run".into(),
                },
            );
            None
        }
    }
}

/// DeltaIngestionTask: a sync-mode, all-or-none ingestion of the live files of a Delta table,
/// one file per subtask (so one segment per file, unless a file passes the segment limits).
fn delta_ingestion(
    c: &mut Collector,
    at: &str,
    b: &crate::api::DeltaIngestionTaskSpec,
) -> TaskSpec {
    let source = match &b.source_table_uri {
        Some(uri) => {
            c.check(&format!("{at}.sourceTableURI"), check_uri(uri));
            uri.trim_end_matches('/').to_string()
        }
        None => {
            c.missing(
                &format!("{at}.sourceTableURI"),
                "name the Delta table to ingest (e.g. s3://bucket/tables/clicks)",
            );
            String::new()
        }
    };
    let table_max_num_tasks = files_per_run(c, at, b.table_max_num_tasks);
    TaskSpec::FileIngestion(FileIngestionConfig {
        input_dir_uri: source.clone(),
        input_files: Vec::new(),
        input_format: minion_contract::FileFormat::Parquet,
        include_file_name_pattern: None,
        exclude_file_name_pattern: None,
        mode: IngestionMode::Sync,
        consistent_push_enabled: true,
        consistent_push_swap_enabled: false,
        table_max_num_tasks,
        task_max_data_size_bytes: defaults::TASK_MAX_DATA_SIZE_BYTES,
        task_max_num_files: Some(1),
        desired_segment_size_bytes: c.size(
            &format!("{at}.desiredSegmentSize"),
            b.desired_segment_size.as_deref(),
            defaults::DESIRED_SEGMENT_SIZE_BYTES,
        ),
        max_records_per_segment: c.at_least_one(
            &format!("{at}.maxNumRecordsPerSegment"),
            b.max_num_records_per_segment,
            defaults::MAX_RECORDS_PER_SEGMENT,
        ),
        skip_file_if_fail_to_init_reader: false,
        delta_source: Some(source),
    })
}

fn file_ingestion(c: &mut Collector, at: &str, b: &FileIngestionTaskSpec) -> TaskSpec {
    let table_max_num_tasks = files_per_run(c, at, b.table_max_num_tasks);
    let swap = b.consistent_push_swap_enabled.unwrap_or(false);
    if swap && b.consistent_push_enabled == Some(false) {
        c.push(
            format!("{at}.consistentPushSwapEnabled"),
            Invalid::Conflicting {
                other: "consistentPushEnabled: false".into(),
                hint: "a full-swap push is a consistent push; remove consistentPushEnabled or set it to true".into(),
            },
        );
    }
    // Files named explicitly need no directory, nor a format when their names tell it.
    let (input_dir_uri, input_format) = if b.input_files.is_empty() {
        (
            input_dir(c, at, &b.input_dir_uri),
            input_format(c, at, b.input_format),
        )
    } else {
        for (i, f) in b.input_files.iter().enumerate() {
            c.check(&format!("{at}.inputFiles[{i}]"), check_uri(f));
        }
        let unnamed = b
            .input_files
            .iter()
            .any(|f| crate::generator::file_ingestion::format_of(f).is_none());
        let format = if unnamed {
            input_format(c, at, b.input_format)
        } else {
            b.input_format
                .unwrap_or(minion_contract::FileFormat::Parquet)
        };
        if let Some(dir) = &b.input_dir_uri {
            c.push(
                format!("{at}.inputDirURI"),
                Invalid::Conflicting {
                    other: "inputFiles".into(),
                    hint: format!(
                        "give either the directory to list or the files; remove inputDirURI {dir:?} or inputFiles"
                    ),
                },
            );
        }
        (String::new(), format)
    };
    TaskSpec::FileIngestion(FileIngestionConfig {
        input_dir_uri,
        input_files: b.input_files.clone(),
        input_format,
        include_file_name_pattern: b.include_file_name_pattern.clone(),
        exclude_file_name_pattern: b.exclude_file_name_pattern.clone(),
        mode: match b.mode {
            None | Some(FileIngestionMode::Append) => IngestionMode::Append,
            Some(FileIngestionMode::Sync) => IngestionMode::Sync,
        },
        consistent_push_enabled: b.consistent_push_enabled.unwrap_or(false) || swap,
        consistent_push_swap_enabled: swap,
        table_max_num_tasks,
        task_max_data_size_bytes: c.size(
            &format!("{at}.taskMaxDataSize"),
            b.task_max_data_size.as_deref(),
            defaults::TASK_MAX_DATA_SIZE_BYTES,
        ),
        task_max_num_files: b
            .task_max_num_files
            .map(|n| c.at_least_one(&format!("{at}.taskMaxNumFiles"), Some(n), 1)),
        desired_segment_size_bytes: c.size(
            &format!("{at}.desiredSegmentSize"),
            b.desired_segment_size.as_deref(),
            defaults::DESIRED_SEGMENT_SIZE_BYTES,
        ),
        max_records_per_segment: c.at_least_one(
            &format!("{at}.maxNumRecordsPerSegment"),
            b.max_num_records_per_segment,
            defaults::MAX_RECORDS_PER_SEGMENT,
        ),
        skip_file_if_fail_to_init_reader: b.skip_file_if_fail_to_init_reader.unwrap_or(true),
        delta_source: None,
    })
}

fn segment_backfill(c: &mut Collector, at: &str, b: &SegmentBackfillTaskSpec) -> TaskSpec {
    let mut time = |key: &str, value: &Option<String>| {
        let field = format!("{at}.{key}");
        match value.as_deref() {
            None => {
                c.missing(
                    &field,
                    "give RFC3339 (e.g. 2024-01-31T00:00:00Z) or epoch milliseconds",
                );
                None
            }
            Some(v) => c.check(&field, units::parse_time(v)),
        }
    };
    let start = time("startTime", &b.start_time);
    let end = time("endTime", &b.end_time);
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        c.push(
            format!("{at}.startTime"),
            Invalid::EmptyTimeRange {
                start: b.start_time.clone().unwrap_or_default(),
                end: b.end_time.clone().unwrap_or_default(),
            },
        );
    }
    let filter = b
        .filter
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .and_then(|f| c.predicate(&format!("{at}.filter"), f));
    TaskSpec::SegmentBackfill(SegmentBackfillConfig {
        start_ms: start.unwrap_or(0),
        end_ms: end.unwrap_or(0),
        filter,
        input_dir_uri: input_dir(c, at, &b.input_dir_uri),
        input_format: input_format(c, at, b.input_format),
        max_records_per_segment: c.at_least_one(
            &format!("{at}.maxNumRecordsPerSegment"),
            b.max_num_records_per_segment,
            defaults::MAX_RECORDS_PER_SEGMENT,
        ),
    })
}

fn purge(c: &mut Collector, at: &str, b: &PurgeTaskSpec) -> TaskSpec {
    let purge_predicate = match b.purge_predicate.as_deref().map(str::trim) {
        None | Some("") => {
            c.missing(
                &format!("{at}.purgePredicate"),
                "give the rows to remove, e.g. user_id = 'u-42'",
            );
            None
        }
        Some(p) => c.predicate(&format!("{at}.purgePredicate"), p),
    };
    // An absent or unparsable predicate is an error above: the config is refused, and this
    // placeholder (matching no row) is never planned.
    let purge_predicate = purge_predicate.unwrap_or(Expr::Or(vec![]));
    TaskSpec::Purge(PurgeConfig {
        purge_predicate,
        last_purge_time_threshold_ms: c.period(
            &format!("{at}.lastPurgeTimeThresholdPeriod"),
            b.last_purge_time_threshold_period.as_deref(),
            defaults::PURGE_LAST_PURGE_TIME_THRESHOLD_MS,
        ),
        table_max_num_tasks: c.at_least_one(
            &format!("{at}.tableMaxNumTasks"),
            b.table_max_num_tasks,
            defaults::TABLE_MAX_NUM_TASKS,
        ),
        max_records_per_segment: c.at_least_one(
            &format!("{at}.maxNumRecordsPerSegment"),
            b.max_num_records_per_segment,
            defaults::MAX_RECORDS_PER_SEGMENT,
        ),
    })
}
