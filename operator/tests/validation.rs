//! Validation of the samples in `config/` and one test per kind of spec error: each error
//! names the resource, the field path, the bad value and what is allowed.
//!
//! Why one long file: one short test per kind of spec error, each reading as an example of
//! the message a user gets; split by resource they would share the same sample helpers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use minion_contract::{AggregationType, TaskType};
use minion_operator::api::{
    self, MergeLevelSpec, MinionTaskConfig, Resource, Table, TaskBlocks, TaskRun,
};
use minion_operator::model::{self, TableDef, TaskSpec, defaults};
use minion_operator::validate::{self, ValidationErrors};

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn sample(file: &str) -> Resource {
    let text = std::fs::read_to_string(config_dir().join(file)).unwrap();
    let mut rs = api::parse_manifests(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(rs.len(), 1, "{file}");
    rs.remove(0)
}

fn table(file: &str) -> Table {
    match sample(file) {
        Resource::Table(t) => t,
        other => panic!("{file} is a {}", other.kind()),
    }
}

fn mtc(file: &str) -> MinionTaskConfig {
    match sample(file) {
        Resource::MinionTaskConfig(c) => c,
        other => panic!("{file} is a {}", other.kind()),
    }
}

fn run(file: &str) -> TaskRun {
    match sample(file) {
        Resource::TaskRun(r) => r,
        other => panic!("{file} is a {}", other.kind()),
    }
}

fn offline() -> TableDef {
    validate::table(&table("table-events-offline.yaml")).unwrap()
}

/// The one error of `errs`, asserting its field and reason.
fn only_error(errs: &ValidationErrors, field: &str, reason: &str) -> String {
    assert_eq!(errs.errors.len(), 1, "{errs}");
    assert!(
        errs.has(field, reason),
        "expected {reason} at {field}, got: {errs}"
    );
    errs.to_string()
}

/// The cluster sample set (`config/cluster/`): an S3-compatible store's Secret, opted in as
/// storage credentials, the Tables naming it, and a config; every resource of ours validates
/// and every Table names the Secret of the set.
#[test]
fn the_cluster_samples_validate_and_their_tables_name_the_labelled_secret() {
    let dir = config_dir().join("cluster");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut secrets = Vec::new();
    let mut tables = BTreeMap::new();
    let mut configs = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        // The Secret is not a resource of ours: read it as YAML.
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        if docs.iter().all(|d| d["kind"] == "Secret") {
            for d in docs {
                assert_eq!(
                    d["metadata"]["labels"]["minion.dev/storage-credentials"], "true",
                    "{path:?}: the Secret must opt in"
                );
                secrets.push(d["metadata"]["name"].as_str().unwrap().to_string());
            }
            continue;
        }
        for r in api::parse_manifests(&text).unwrap_or_else(|e| panic!("{path:?}: {e}")) {
            match r {
                Resource::Table(t) => {
                    let secret = t.spec.storage_secret_ref.as_ref().map(|s| s.name.clone());
                    let def = validate::table(&t).unwrap_or_else(|e| panic!("{e}"));
                    assert!(def.uri.starts_with("s3://"), "{}", def.uri);
                    tables.insert(def.name.clone(), secret);
                }
                Resource::MinionTaskConfig(c) => {
                    validate::task_config(&c).unwrap_or_else(|e| panic!("{e}"));
                    configs += 1;
                }
                Resource::TaskRun(_) => {}
            }
        }
    }
    assert_eq!(secrets, vec!["lake-s3".to_string()]);
    assert_eq!(tables.len(), 2, "{tables:?}");
    assert!(configs >= 1);
    for (table, secret) in &tables {
        assert_eq!(secret.as_deref(), Some("lake-s3"), "{table}");
    }
}

#[test]
fn every_sample_in_config_parses_and_validates() {
    let mut tables = BTreeMap::new();
    let mut configs = BTreeMap::new();
    let mut runs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(config_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 11, "{files:?}");
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for r in api::parse_manifests(&text).unwrap_or_else(|e| panic!("{path:?}: {e}")) {
            match r {
                Resource::Table(t) => {
                    let def = validate::table(&t).unwrap_or_else(|e| panic!("{e}"));
                    tables.insert(def.name.clone(), def);
                }
                Resource::MinionTaskConfig(c) => {
                    validate::task_config(&c).unwrap_or_else(|e| panic!("{e}"));
                    configs.insert(c.metadata.name.clone().unwrap(), c);
                }
                Resource::TaskRun(r) => runs.push(r),
            }
        }
    }
    for c in configs.values() {
        let cfg = validate::task_config(c).unwrap();
        let source = cfg.source_table.as_ref().map(|s| &tables[s]);
        validate::against_tables(&cfg, &tables[&cfg.table], source)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for r in &runs {
        let cfg = r.spec.config_ref.as_ref().map(|n| &configs[n]);
        let v = validate::task_run(r, cfg).unwrap_or_else(|e| panic!("{e}"));
        v.against_tables(&tables[&v.config.table], None)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn samples_get_pinot_defaults_for_absent_keys() {
    let cfg = validate::task_config(&mtc("mtc-merge-rollup.yaml")).unwrap();
    let TaskSpec::MergeRollup(m) = &cfg.task else {
        panic!("{:?}", cfg.task)
    };
    assert_eq!(m.levels[0].bucket_ms, model::HOUR_MS);
    assert_eq!(m.levels[1].round_bucket_ms, Some(model::HOUR_MS));
    assert_eq!(
        m.levels[1].max_records_per_task,
        defaults::MAX_RECORDS_PER_TASK
    );
    assert_eq!(m.aggregation_types["latency_ms"], AggregationType::Max);
    assert_eq!(cfg.execution, model::Execution::default());
    assert_eq!(cfg.successful_runs_history_limit, 3);
    assert!(cfg.schedule.is_some());

    let mut c = mtc("mtc-realtime-to-offline.yaml");
    c.spec.realtime_to_offline_segments_task = None;
    let cfg = validate::task_config(&c).unwrap();
    assert_eq!(
        cfg.task,
        TaskSpec::RealtimeToOffline(model::RealtimeToOfflineConfig::default())
    );
}

#[test]
fn skip_corrupt_segments_is_off_by_default_and_read_for_r2o_import_and_merge_rollup() {
    let skips = |c: &MinionTaskConfig| match validate::task_config(c).unwrap().task {
        TaskSpec::RealtimeToOffline(t) => t.window.skip_corrupt_segments,
        TaskSpec::SegmentImport(t) => t.window.skip_corrupt_segments,
        TaskSpec::MergeRollup(t) => t.skip_corrupt_segments,
        other => panic!("{other:?}"),
    };
    let mut r2o = mtc("mtc-realtime-to-offline.yaml");
    let mut import = mtc("mtc-segment-import.yaml");
    let mut merge = mtc("mtc-merge-rollup.yaml");
    for c in [&r2o, &import, &merge] {
        assert!(!skips(c), "{}", c.metadata.name.as_deref().unwrap_or(""));
    }
    r2o.spec
        .realtime_to_offline_segments_task
        .as_mut()
        .unwrap()
        .skip_corrupt_segments = Some(true);
    import
        .spec
        .segment_import_task
        .as_mut()
        .unwrap()
        .skip_corrupt_segments = Some(true);
    merge
        .spec
        .merge_rollup_task
        .as_mut()
        .unwrap()
        .skip_corrupt_segments = Some(true);
    for c in [&r2o, &import, &merge] {
        assert!(skips(c), "{}", c.metadata.name.as_deref().unwrap_or(""));
    }
}

#[test]
fn replaced_segments_are_kept_4h_by_default_and_24h_for_upsert_tables() {
    let mut events = table("table-events-offline.yaml");
    events.spec.replaced_segment_retention = None;
    assert_eq!(
        validate::table(&events).unwrap().retention_ms,
        4 * model::HOUR_MS
    );
    let mut users = table("table-users-upsert.yaml");
    users.spec.replaced_segment_retention = None;
    assert_eq!(
        validate::table(&users).unwrap().retention_ms,
        24 * model::HOUR_MS
    );
}

#[test]
fn period_with_unknown_unit_names_the_field_and_allowed_units() {
    let mut c = mtc("mtc-merge-rollup.yaml");
    let levels = &mut c.spec.merge_rollup_task.as_mut().unwrap().levels;
    levels[1].bucket_time_period = Some("1x".into());
    let errs = validate::task_config(&c).unwrap_err();
    let msg = only_error(
        &errs,
        "spec.mergeRollupTask.levels[1].bucketTimePeriod",
        "InvalidPeriod",
    );
    assert_eq!(
        msg,
        "MinionTaskConfig default/events-merge: spec.mergeRollupTask.levels[1].bucketTimePeriod: \"1x\" is not a period; use a number followed by d, h, m, s or ms (e.g. 1d, 6h, 15m)"
    );
}

#[test]
fn zero_period_where_meaningless_is_refused() {
    let mut c = mtc("mtc-merge-rollup.yaml");
    c.spec.subtask_timeout = Some("0s".into());
    let errs = validate::task_config(&c).unwrap_err();
    let msg = only_error(&errs, "spec.subtaskTimeout", "InvalidPeriod");
    assert!(msg.contains("greater than 0"), "{msg}");
}

#[test]
fn bad_size_names_the_field_and_the_allowed_suffixes() {
    let mut c = mtc("mtc-segment-import.yaml");
    c.spec.memory_budget = Some("lots".into());
    let errs = validate::task_config(&c).unwrap_err();
    let msg = only_error(&errs, "spec.memoryBudget", "InvalidSize");
    assert!(msg.contains("\"lots\" is not a size"), "{msg}");
    assert!(msg.contains("512Mi"), "{msg}");
}

#[test]
fn worker_pod_settings_refuse_bad_quantities_small_memory_limits_and_bad_tolerations() {
    let mut c = mtc("mtc-segment-import.yaml");
    let worker = |yaml: &str| Some(serde_yaml::from_str::<api::WorkerPodSpec>(yaml).unwrap());
    c.spec.memory_budget = Some("1Gi".into());
    c.spec.worker = worker("resources: {requests: {cpu: 2 cores}}");
    let errs = validate::task_config(&c).unwrap_err();
    let msg = only_error(
        &errs,
        "spec.worker.resources.requests.cpu",
        "InvalidQuantity",
    );
    assert!(msg.contains("\"2 cores\"") && msg.contains("500m"), "{msg}");

    c.spec.worker = worker("resources: {limits: {memory: 1Gi}}");
    let errs = validate::task_config(&c).unwrap_err();
    let msg = only_error(&errs, "spec.worker.resources.limits.memory", "OutOfRange");
    assert!(msg.contains("1088 MiB") && msg.contains("OOM"), "{msg}");

    c.spec.worker = worker("tolerations: [{key: a, operator: Exist}]");
    let errs = validate::task_config(&c).unwrap_err();
    only_error(&errs, "spec.worker.tolerations[0].operator", "OutOfRange");

    c.spec.worker = worker(
        "resources: {requests: {cpu: 500m, memory: 1.5Gi}, limits: {memory: 2Gi}}\n\
         nodeSelector: {pool: batch}\n\
         tolerations: [{key: a, operator: Exists, effect: NoSchedule}]",
    );
    validate::task_config(&c).unwrap();
}

#[test]
fn bad_cron_names_the_schedule_and_both_dialects() {
    let mut c = mtc("mtc-purge.yaml");
    c.spec.schedule = Some("0 30 25 * * ?".into());
    let errs = validate::task_config(&c).unwrap_err();
    let msg = only_error(&errs, "spec.schedule", "InvalidSchedule");
    assert!(msg.contains("Quartz") && msg.contains("crontab"), "{msg}");
    c.spec.schedule = Some("every night".into());
    let errs = validate::task_config(&c).unwrap_err();
    only_error(&errs, "spec.schedule", "InvalidSchedule");
}

#[test]
fn bad_time_zone_names_the_field_and_examples() {
    let mut c = mtc("mtc-purge.yaml");
    c.spec.time_zone = Some("Europe/Pariss".into());
    let errs = validate::task_config(&c).unwrap_err();
    let msg = only_error(&errs, "spec.timeZone", "InvalidTimeZone");
    assert!(
        msg.contains("\"Europe/Pariss\" is not an IANA time zone"),
        "{msg}"
    );
}

#[test]
fn unknown_key_is_an_error_with_document_kind_name_and_path() {
    let text = std::fs::read_to_string(config_dir().join("mtc-merge-rollup.yaml")).unwrap();
    let text = text.replace("bufferTimePeriod: 3h", "bufferPeriod: 3h");
    let err = api::parse_manifests(&text).unwrap_err();
    assert_eq!(err.reason(), "UnknownField");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "document 1 (MinionTaskConfig events-merge): spec.mergeRollupTask.levels[0].bufferPeriod: unknown field; allowed: name, bucketTimePeriod, bufferTimePeriod"
        ),
        "{msg}"
    );
}

#[test]
fn unknown_key_in_a_later_document_names_that_document() {
    let a = std::fs::read_to_string(config_dir().join("table-events-offline.yaml")).unwrap();
    let b = std::fs::read_to_string(config_dir().join("mtc-purge.yaml")).unwrap();
    let text = format!("{a}---\n{}", b.replace("purgePredicate:", "purgeFilter:"));
    let err = api::parse_manifests(&text).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "document 2 (MinionTaskConfig events-purge): spec.purgeTask.purgeFilter: unknown field"
        ),
        "{err}"
    );
}

#[test]
fn missing_required_field_names_the_field_and_how_to_fix_it() {
    let mut r = run("taskrun-file-ingestion.yaml");
    let block = r.spec.config.as_mut().unwrap();
    block.file_ingestion_task.as_mut().unwrap().input_dir_uri = None;
    let errs = validate::task_run(&r, None).unwrap_err();
    let msg = only_error(
        &errs,
        "spec.config.fileIngestionTask.inputDirURI",
        "MissingField",
    );
    assert!(
        msg.starts_with("TaskRun default/events-ingest-2024-01: "),
        "{msg}"
    );
    assert!(msg.contains("is required"), "{msg}");

    // A key the resource type itself requires is reported while reading the manifest.
    let text = std::fs::read_to_string(config_dir().join("mtc-purge.yaml")).unwrap();
    let err = api::parse_manifests(&text.replace("  taskType: PurgeTask\n", "")).unwrap_err();
    assert_eq!(err.reason(), "MissingField");
    assert!(
        err.to_string()
            .contains("spec.taskType: required field is missing"),
        "{err}"
    );
}

#[test]
fn block_not_matching_task_type_is_refused() {
    let mut c = mtc("mtc-purge.yaml");
    c.spec.merge_rollup_task = mtc("mtc-merge-rollup.yaml").spec.merge_rollup_task;
    let errs = validate::task_config(&c).unwrap_err();
    let msg = only_error(&errs, "spec.mergeRollupTask", "TaskBlockMismatch");
    assert!(
        msg.contains("taskType is PurgeTask; only purgeTask may be present"),
        "{msg}"
    );
}

#[test]
fn merge_levels_out_of_order_are_refused() {
    let mut c = mtc("mtc-merge-rollup.yaml");
    c.spec.merge_rollup_task.as_mut().unwrap().levels.reverse();
    let errs = validate::task_config(&c).unwrap_err();
    // the daily rounding now sits on the first level and is still ≤ its bucket: one error.
    let msg = only_error(
        &errs,
        "spec.mergeRollupTask.levels[1].bucketTimePeriod",
        "MergeLevelsOutOfOrder",
    );
    assert!(
        msg.contains("\"1h\" is not longer than the previous level's \"1d\""),
        "{msg}"
    );
}

#[test]
fn merge_level_names_must_be_unique_and_non_empty() {
    let mut c = mtc("mtc-merge-rollup.yaml");
    let levels = &mut c.spec.merge_rollup_task.as_mut().unwrap().levels;
    levels[1].name = "1hour".into();
    levels.push(MergeLevelSpec {
        name: String::new(),
        bucket_time_period: Some("30d".into()),
        ..Default::default()
    });
    let errs = validate::task_config(&c).unwrap_err();
    assert!(
        errs.has("spec.mergeRollupTask.levels[1].name", "DuplicateName"),
        "{errs}"
    );
    assert!(
        errs.has("spec.mergeRollupTask.levels[2].name", "MissingField"),
        "{errs}"
    );
}

#[test]
fn rounding_longer_than_the_bucket_is_refused() {
    let mut c = mtc("mtc-realtime-to-offline.yaml");
    let b = c.spec.realtime_to_offline_segments_task.as_mut().unwrap();
    b.round_bucket_time_period = Some("2d".into());
    let errs = validate::task_config(&c).unwrap_err();
    only_error(
        &errs,
        "spec.realtimeToOfflineSegmentsTask.roundBucketTimePeriod",
        "InvalidRounding",
    );
}

#[test]
fn aggregation_on_a_non_metric_column_is_refused() {
    let mut c = mtc("mtc-merge-rollup.yaml");
    let m = c.spec.merge_rollup_task.as_mut().unwrap();
    m.aggregation_types
        .insert("country".into(), AggregationType::Max);
    m.aggregation_types
        .insert("nope".into(), AggregationType::Sum);
    let cfg = validate::task_config(&c).unwrap();
    let errs = validate::against_tables(&cfg, &offline(), None).unwrap_err();
    assert_eq!(errs.errors.len(), 2, "{errs}");
    assert!(errs.has(
        "spec.mergeRollupTask.aggregationTypes.country",
        "WrongColumnRole"
    ));
    assert!(errs.has(
        "spec.mergeRollupTask.aggregationTypes.nope",
        "UnknownColumn"
    ));
    assert!(
        errs.to_string()
            .contains("column \"country\" of table events-offline is a dimension column; aggregation types apply to metric columns only"),
        "{errs}"
    );
}

fn visits() -> TableDef {
    validate::table(&table("table-visits.yaml")).unwrap()
}

/// Sketch parameters are checked against their aggregation type's ranges at apply, naming
/// the metric's parameter and what to use.
#[test]
fn sketch_parameters_out_of_range_name_the_metric_and_the_range() {
    let mut c = mtc("mtc-visits-rollup.yaml");
    let b = c.spec.merge_rollup_task.as_mut().unwrap();
    let params = &mut b.aggregation_parameters;
    params.get_mut("users_theta").unwrap().nominal_entries = Some(5000);
    params.get_mut("users_hll").unwrap().lg_k = Some(30);
    params.get_mut("latency_kll").unwrap().compression = Some(100);
    let errs = validate::task_config(&c).unwrap_err();
    assert_eq!(errs.errors.len(), 3, "{errs}");
    for (metric, says) in [
        (
            "users_theta",
            "nominalEntries 5000 is not a power of two from 32 to 67108864",
        ),
        (
            "users_hll",
            "lgK 30 is out of range for distinctCountHLL: use 4 to 21 (default 12)",
        ),
        (
            "latency_kll",
            "compression does not apply to percentileKLL, which takes only k",
        ),
    ] {
        let field = format!("spec.mergeRollupTask.aggregationParameters.{metric}");
        assert!(
            errs.has(&field, "InvalidAggregationParameter"),
            "{field}: {errs}"
        );
        assert!(errs.to_string().contains(says), "{says}: {errs}");
    }
}

/// A BYTES metric takes a sketch (or avg) aggregation and a numeric metric a numeric one;
/// under rollup a BYTES metric without one is refused rather than failing every subtask.
#[test]
fn sketch_aggregations_and_bytes_metrics_must_match() {
    let mut c = mtc("mtc-visits-rollup.yaml");
    let b = c.spec.merge_rollup_task.as_mut().unwrap();
    b.aggregation_types
        .insert("views".into(), AggregationType::DistinctCountHll);
    b.aggregation_types.remove("latency_avg");
    b.aggregation_types
        .insert("users_hll".into(), AggregationType::Max);
    b.aggregation_parameters.remove("users_hll");
    for l in &mut b.levels {
        l.derive_metrics.clear();
    }
    let cfg = validate::task_config(&c).unwrap();
    let errs = validate::against_tables(&cfg, &visits(), None).unwrap_err();
    assert_eq!(errs.errors.len(), 3, "{errs}");
    let text = errs.to_string();
    assert!(errs.has(
        "spec.mergeRollupTask.aggregationTypes.views",
        "WrongColumnType"
    ));
    assert!(text.contains("distinctCountHLL holds a sketch or an average pair: declare the column's dataType BYTES"), "{text}");
    assert!(errs.has(
        "spec.mergeRollupTask.aggregationTypes.users_hll",
        "WrongColumnType"
    ));
    assert!(
        text.contains("max aggregates numbers; a BYTES metric takes distinctCountThetaSketch"),
        "{text}"
    );
    assert!(errs.has(
        "spec.mergeRollupTask.aggregationTypes.latency_avg",
        "MissingField"
    ));
    assert!(
        text.contains("BYTES metric \"latency_avg\" cannot be summed under rollup"),
        "{text}"
    );
}

/// `deriveMetrics` builds a sketch metric from a column the same rollup level erases; a
/// kept column, a non-sketch metric, a concat level and a string for a percentile are
/// refused naming the level's field.
#[test]
fn derived_metrics_need_a_sketch_metric_and_a_column_the_level_erases() {
    let mut c = mtc("mtc-visits-rollup.yaml");
    let b = c.spec.merge_rollup_task.as_mut().unwrap();
    let hourly = &mut b.levels[0];
    hourly.erase_dimension_values = vec!["latency_ms".into()];
    hourly.derive_metrics = BTreeMap::from([
        ("users_theta".into(), "user_id".into()),
        ("views".into(), "latency_ms".into()),
    ]);
    let daily = &mut b.levels[1];
    daily.erase_dimension_values.push("user_id".into());
    daily.derive_metrics = BTreeMap::from([("latency_kll".into(), "user_id".into())]);
    let cfg = validate::task_config(&c).unwrap();
    let errs = validate::against_tables(&cfg, &visits(), None).unwrap_err();
    let text = errs.to_string();
    assert_eq!(errs.errors.len(), 3, "{errs}");
    let at = "spec.mergeRollupTask.levels";
    assert!(errs.has(
        &format!("{at}[0].deriveMetrics.users_theta"),
        "FieldNotAllowed"
    ));
    assert!(
        text.contains("\"user_id\" must be listed in this level's eraseDimensionValues"),
        "{text}"
    );
    assert!(errs.has(&format!("{at}[0].deriveMetrics.views"), "FieldNotAllowed"));
    assert!(
        text.contains("\"views\" needs a sketch or avg aggregation type"),
        "{text}"
    );
    assert!(errs.has(
        &format!("{at}[1].deriveMetrics.latency_kll"),
        "FieldNotAllowed"
    ));
    assert!(
        text.contains("percentileKLL needs a numeric column"),
        "{text}"
    );
}

#[test]
fn erased_values_must_be_dimensions() {
    let mut c = mtc("mtc-merge-rollup.yaml");
    let levels = &mut c.spec.merge_rollup_task.as_mut().unwrap().levels;
    levels[1].erase_dimension_values = vec!["clicks".into()];
    let cfg = validate::task_config(&c).unwrap();
    let errs = validate::against_tables(&cfg, &offline(), None).unwrap_err();
    only_error(
        &errs,
        "spec.mergeRollupTask.levels[1].eraseDimensionValues[0]",
        "WrongColumnRole",
    );
}

#[test]
fn missing_time_column_is_refused_with_the_column_list() {
    let mut t = table("table-events-offline.yaml");
    t.spec.schema.time_column = "timestamp".into();
    let errs = validate::table(&t).unwrap_err();
    let msg = only_error(&errs, "spec.schema.timeColumn", "UnknownColumn");
    assert!(
        msg.starts_with("Table default/events-offline: spec.schema.timeColumn: \"timestamp\" is not a column of table events-offline; columns: ts, country"),
        "{msg}"
    );
}

#[test]
fn time_column_must_be_a_date_time_integer_or_timestamp() {
    let mut t = table("table-events-offline.yaml");
    t.spec.schema.time_column = "country".into();
    let errs = validate::table(&t).unwrap_err();
    assert!(
        errs.has("spec.schema.timeColumn", "WrongColumnRole"),
        "{errs}"
    );
    assert!(
        errs.has("spec.schema.timeColumn", "WrongColumnType"),
        "{errs}"
    );
}

#[test]
fn key_and_index_columns_must_exist() {
    let mut t = table("table-users-upsert.yaml");
    t.spec.schema.primary_key = vec!["id".into()];
    t.spec.schema.sorted_column = Some("plan_name".into());
    t.spec.schema.bloom_filter_columns = vec!["email".into()];
    t.spec.schema.partitioning.as_mut().unwrap().column = "uid".into();
    let errs = validate::table(&t).unwrap_err();
    for field in [
        "spec.schema.primaryKey[0]",
        "spec.schema.sortedColumn",
        "spec.schema.bloomFilterColumns[0]",
        "spec.schema.partitioning.column",
    ] {
        assert!(errs.has(field, "UnknownColumn"), "{field}: {errs}");
    }
}

#[test]
fn unsupported_uri_scheme_is_refused_with_the_supported_ones() {
    let mut t = table("table-events-offline.yaml");
    t.spec.uri = "hdfs://namenode/events".into();
    let errs = validate::table(&t).unwrap_err();
    let msg = only_error(&errs, "spec.uri", "UnsupportedUriScheme");
    assert!(
        msg.contains("use file, s3, s3a, gs, az, abfs or memory"),
        "{msg}"
    );
    for uri in ["/tmp/events", "s3:///no-bucket", "gs:bucket/events"] {
        t.spec.uri = uri.into();
        only_error(&validate::table(&t).unwrap_err(), "spec.uri", "InvalidUri");
    }
    for uri in [
        "s3a://bucket/events",
        "memory:///events",
        "abfs://c@acct.dfs.core.windows.net/t",
    ] {
        t.spec.uri = uri.into();
        validate::table(&t).unwrap_or_else(|e| panic!("{uri}: {e}"));
    }
}

#[test]
fn bad_rfc3339_time_is_refused() {
    let mut r = run("taskrun-backfill.yaml");
    let b = r
        .spec
        .config
        .as_mut()
        .unwrap()
        .segment_backfill_task
        .as_mut()
        .unwrap();
    b.start_time = Some("2024-01-32T00:00:00Z".into());
    let errs = validate::task_run(&r, None).unwrap_err();
    let msg = only_error(
        &errs,
        "spec.config.segmentBackfillTask.startTime",
        "InvalidTime",
    );
    assert!(msg.contains("RFC3339"), "{msg}");
}

#[test]
fn backfill_range_must_not_be_empty() {
    let mut r = run("taskrun-backfill.yaml");
    let b = r
        .spec
        .config
        .as_mut()
        .unwrap()
        .segment_backfill_task
        .as_mut()
        .unwrap();
    b.end_time = b.start_time.clone();
    let errs = validate::task_run(&r, None).unwrap_err();
    only_error(
        &errs,
        "spec.config.segmentBackfillTask.startTime",
        "InvalidTimeRange",
    );
}

#[test]
fn task_specific_required_keys_are_checked() {
    let mut c = mtc("mtc-purge.yaml");
    c.spec.purge_task.as_mut().unwrap().purge_predicate = None;
    only_error(
        &validate::task_config(&c).unwrap_err(),
        "spec.purgeTask.purgePredicate",
        "MissingField",
    );

    let mut c = mtc("mtc-refresh.yaml");
    let b = c.spec.segment_refresh_task.as_mut().unwrap();
    b.invalid_records_threshold_percent = None;
    b.invalid_records_threshold_count = None;
    b.bucket_time_period = None;
    let errs = validate::task_config(&c).unwrap_err();
    assert!(errs.has("spec.segmentRefreshTask.bucketTimePeriod", "MissingField"));
    assert!(errs.has(
        "spec.segmentRefreshTask.invalidRecordsThresholdPercent",
        "MissingField"
    ));

    let mut c = mtc("mtc-segment-import.yaml");
    c.spec.source_table = None;
    only_error(
        &validate::task_config(&c).unwrap_err(),
        "spec.sourceTable",
        "MissingField",
    );
}

#[test]
fn all_errors_of_a_resource_are_collected() {
    let mut c = mtc("mtc-segment-import.yaml");
    c.spec.schedule = Some("bad".into());
    c.spec.parallelism = Some(0);
    let b = c.spec.segment_import_task.as_mut().unwrap();
    b.bucket_time_period = Some("1 day".into());
    b.desired_segment_size = Some("big".into());
    let errs = validate::task_config(&c).unwrap_err();
    assert_eq!(errs.errors.len(), 4, "{errs}");
    assert_eq!(errs.reason(), "InvalidPeriod");
}

#[test]
fn task_run_with_config_ref_takes_the_config_and_its_overrides() {
    let cfg = mtc("mtc-merge-rollup.yaml");
    let mut r = run("taskrun-file-ingestion.yaml");
    r.spec.task_type = Some(TaskType::MergeRollupTask);
    r.spec.config = None;
    r.spec.config_ref = Some("events-merge".into());
    r.spec.parallelism = Some(8);
    let v = validate::task_run(&r, Some(&cfg)).unwrap();
    assert_eq!(v.config.name, "events-merge");
    assert_eq!(v.config.execution.parallelism, 8);
    assert_eq!(v.config.execution.run_timeout_ms, 6 * model::HOUR_MS);
    assert_eq!(v.config_ref.as_deref(), Some("events-merge"));

    // a config of another task type or table is a mismatch, a missing one is reported
    r.spec.task_type = Some(TaskType::PurgeTask);
    only_error(
        &validate::task_run(&r, Some(&cfg)).unwrap_err(),
        "spec.taskType",
        "ConfigMismatch",
    );
    only_error(
        &validate::task_run(&r, None).unwrap_err(),
        "spec.configRef",
        "ConfigNotFound",
    );

    // with configRef, taskType and table may be left out: the config's are taken
    r.spec.task_type = None;
    r.spec.table = String::new();
    let v = validate::task_run(&r, Some(&cfg)).unwrap();
    assert_eq!(v.config.table, cfg.spec.table);
    assert_eq!(v.config.task_type(), TaskType::MergeRollupTask);
}

#[test]
fn an_inline_task_run_names_its_task_type_and_table() {
    let mut r = run("taskrun-file-ingestion.yaml");
    r.spec.task_type = None;
    only_error(
        &validate::task_run(&r, None).unwrap_err(),
        "spec.taskType",
        "MissingField",
    );
    let mut r = run("taskrun-file-ingestion.yaml");
    r.spec.table = String::new();
    only_error(
        &validate::task_run(&r, None).unwrap_err(),
        "spec.table",
        "MissingField",
    );
}

#[test]
fn task_run_needs_exactly_one_of_config_ref_and_config() {
    let mut r = run("taskrun-backfill.yaml");
    r.spec.config_ref = Some("events-merge".into());
    only_error(
        &validate::task_run(&r, None).unwrap_err(),
        "spec.config",
        "ConflictingFields",
    );
    r.spec.config_ref = None;
    r.spec.config = None;
    only_error(
        &validate::task_run(&r, None).unwrap_err(),
        "spec.configRef",
        "MissingField",
    );
    r.spec.config = Some(TaskBlocks::default());
    // an empty inline config means defaults; backfill has required keys
    let errs = validate::task_run(&r, None).unwrap_err();
    assert!(
        errs.has("spec.config.segmentBackfillTask.startTime", "MissingField"),
        "{errs}"
    );
}

#[test]
fn backfill_cannot_be_scheduled() {
    let r = run("taskrun-backfill.yaml");
    let c = MinionTaskConfig::new(
        "backfill",
        api::MinionTaskConfigSpec {
            table: r.spec.table.clone(),
            task_type: TaskType::SegmentBackfillTask,
            segment_backfill_task: r.spec.config.clone().unwrap().segment_backfill_task,
            schedule: Some("@daily".into()),
            ..mtc("mtc-purge.yaml").spec
        },
    );
    let mut c = c;
    c.spec.purge_task = None;
    only_error(
        &validate::task_config(&c).unwrap_err(),
        "spec.schedule",
        "FieldNotAllowed",
    );
}

#[test]
fn refresh_needs_an_upsert_table_and_r2o_a_realtime_source() {
    let cfg = validate::task_config(&mtc("mtc-refresh.yaml")).unwrap();
    let mut users = validate::table(&table("table-users-upsert.yaml")).unwrap();
    validate::against_tables(&cfg, &users, None).unwrap();
    users.schema.primary_key.clear();
    only_error(
        &validate::against_tables(&cfg, &users, None).unwrap_err(),
        "spec.table",
        "WrongTableType",
    );

    let cfg = validate::task_config(&mtc("mtc-realtime-to-offline.yaml")).unwrap();
    let mut source = offline();
    source.name = "events-realtime".into();
    only_error(
        &validate::against_tables(&cfg, &offline(), Some(&source)).unwrap_err(),
        "spec.sourceTable",
        "WrongTableType",
    );

    // An upsert REALTIME table cannot be moved by RealtimeToOffline, as in Pinot.
    let mut upsert = validate::table(&table("table-events-realtime.yaml")).unwrap();
    validate::against_tables(&cfg, &offline(), Some(&upsert)).unwrap();
    upsert.schema.primary_key = vec!["user_id".into()];
    let err = validate::against_tables(&cfg, &offline(), Some(&upsert)).unwrap_err();
    only_error(&err, "spec.sourceTable", "WrongTableType");
    assert!(err.to_string().contains("Pinot refuses it too"), "{err}");
}

/// Output file names are `<prefix>_<min>_<max>[_<postfix>]_<seq>.parquet`,
/// so a prefix or postfix that is not a plain file name (a path, a character object stores
/// percent-escape) would make the catalog point at the wrong file.
#[test]
fn segment_name_prefix_and_postfix_are_refused_per_bad_character_class() {
    let cases = [
        ("", "\"\" is empty"),
        ("a/b", "\"a/b\" contains '/', a path separator"),
        ("a\\b", "\"a\\\\b\" contains '\\\\', a path separator"),
        ("a..b", "\"a..b\" contains \"..\""),
        ("..", "\"..\" starts with '.'"),
        (".hidden", "\".hidden\" starts with '.'"),
        ("-x", "\"-x\" starts with '-'"),
        ("a\nb", "\"a\\nb\" contains the control character U+000A"),
        ("a\tb", "\"a\\tb\" contains the control character U+0009"),
        ("100%", "\"100%\" contains '%'"),
        ("a#b", "\"a#b\" contains '#'"),
        ("my events", "\"my events\" contains a space"),
        (
            "événements",
            "\"événements\" contains 'é', which is not ASCII",
        ),
    ];
    let long = "x".repeat(101);
    let long_msg = format!("{long:?} is 101 characters long, more than 100");
    let cases = cases
        .iter()
        .map(|(v, m)| (v.to_string(), m.to_string()))
        .chain([(long, long_msg)]);
    for (value, problem) in cases {
        let mut c = mtc("mtc-segment-import.yaml");
        c.spec
            .segment_import_task
            .as_mut()
            .unwrap()
            .segment_name_prefix = Some(value.clone());
        let errs = validate::task_config(&c).unwrap_err();
        let msg = only_error(
            &errs,
            "spec.segmentImportTask.segmentNamePrefix",
            "InvalidSegmentName",
        );
        assert!(
            msg.starts_with(&format!(
                "MinionTaskConfig default/events-import: spec.segmentImportTask.segmentNamePrefix: {problem}; "
            )),
            "{value:?}: {msg}"
        );
        assert!(
            msg.ends_with("it becomes part of output file names, so use 1 to 100 characters from A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.' or '-' and without \"..\" (e.g. events_v2)"),
            "{msg}"
        );
    }
    // The postfix, and RealtimeToOffline's block, get the same check.
    let mut c = mtc("mtc-realtime-to-offline.yaml");
    c.spec
        .realtime_to_offline_segments_task
        .as_mut()
        .unwrap()
        .segment_name_postfix = Some("../x".into());
    only_error(
        &validate::task_config(&c).unwrap_err(),
        "spec.realtimeToOfflineSegmentsTask.segmentNamePostfix",
        "InvalidSegmentName",
    );
}

#[test]
fn plain_segment_names_are_accepted() {
    for value in ["events", "events_2024-01.v2", "E1", &"x".repeat(100)] {
        let mut c = mtc("mtc-segment-import.yaml");
        let b = c.spec.segment_import_task.as_mut().unwrap();
        b.segment_name_prefix = Some(value.to_string());
        b.segment_name_postfix = Some(value.to_string());
        validate::task_config(&c).unwrap_or_else(|e| panic!("{value}: {e}"));
    }
}

#[test]
fn inline_task_run_configs_and_merge_level_names_get_the_segment_name_check() {
    let mut r = run("taskrun-backfill.yaml");
    let mut block = mtc("mtc-segment-import.yaml").spec.segment_import_task;
    block.as_mut().unwrap().segment_name_prefix = Some("../../escape".into());
    r.spec.task_type = Some(TaskType::SegmentImportTask);
    r.spec.source_table = Some("events-realtime".into());
    r.spec.config = Some(TaskBlocks {
        segment_import_task: block,
        ..TaskBlocks::default()
    });
    let errs = validate::task_run(&r, None).unwrap_err();
    let msg = only_error(
        &errs,
        "spec.config.segmentImportTask.segmentNamePrefix",
        "InvalidSegmentName",
    );
    assert!(
        msg.contains("\"../../escape\" contains '/', a path separator"),
        "{msg}"
    );

    // A TaskRun referencing a config with a bad name reports the config's field.
    let mut cfg = mtc("mtc-segment-import.yaml");
    cfg.spec
        .segment_import_task
        .as_mut()
        .unwrap()
        .segment_name_postfix = Some("a b".into());
    r.spec.config = None;
    r.spec.config_ref = Some("events-import".into());
    let errs = validate::task_run(&r, Some(&cfg)).unwrap_err();
    assert!(
        errs.has(
            "spec.segmentImportTask.segmentNamePostfix",
            "InvalidSegmentName"
        ),
        "{errs}"
    );

    // MergeRollup names its outputs `merged_<level>_…`.
    let mut c = mtc("mtc-merge-rollup.yaml");
    c.spec.merge_rollup_task.as_mut().unwrap().levels[0].name = "1h/../../x".into();
    only_error(
        &validate::task_config(&c).unwrap_err(),
        "spec.mergeRollupTask.levels[0].name",
        "InvalidSegmentName",
    );
}

fn backfill_with_filter(filter: &str) -> TaskRun {
    let mut r = run("taskrun-backfill.yaml");
    let b = r
        .spec
        .config
        .as_mut()
        .unwrap()
        .segment_backfill_task
        .as_mut()
        .unwrap();
    b.filter = Some(filter.into());
    r
}

fn purge_with(predicate: &str) -> MinionTaskConfig {
    let mut c = mtc("mtc-purge.yaml");
    c.spec.purge_task.as_mut().unwrap().purge_predicate = Some(predicate.into());
    c
}

#[test]
fn a_filter_that_breaks_out_of_its_parentheses_is_refused_with_the_position() {
    let r = backfill_with_filter("country = 'FR') OR (\"ts\" >= 0");
    let errs = validate::task_run(&r, None).unwrap_err();
    let msg = only_error(
        &errs,
        "spec.config.segmentBackfillTask.filter",
        "InvalidPredicate",
    );
    assert!(
        msg.contains(
            "TaskRun default/events-backfill-fr-2024-01: spec.config.segmentBackfillTask.filter:"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("at character 14 (\")\"): unexpected token after the expression"),
        "{msg}"
    );
}

#[test]
fn a_purge_predicate_with_a_syntax_error_is_refused_with_the_position() {
    let errs = validate::task_config(&purge_with("user_id = 'u-42' AND")).unwrap_err();
    let msg = only_error(&errs, "spec.purgeTask.purgePredicate", "InvalidPredicate");
    assert!(
        msg.contains("MinionTaskConfig default/events-purge: spec.purgeTask.purgePredicate:"),
        "{msg}"
    );
    assert!(
        msg.contains("at character 20 (\"end of input\"): expected a column name"),
        "{msg}"
    );
    let errs = validate::task_config(&purge_with("user_id = 'u-42")).unwrap_err();
    let msg = only_error(&errs, "spec.purgeTask.purgePredicate", "InvalidPredicate");
    assert!(msg.contains("at character 10"), "{msg}");
    assert!(msg.contains("unterminated quoted text"), "{msg}");
}

#[test]
fn a_predicate_nested_too_deep_is_refused_without_overflowing_the_stack() {
    let deep = format!(
        "{}user_id = 'u-42'{}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    let errs = validate::task_config(&purge_with(&deep)).unwrap_err();
    let msg = only_error(&errs, "spec.purgeTask.purgePredicate", "PredicateTooDeep");
    assert!(
        msg.contains("deeper than 64 levels (at character 64)"),
        "{msg}"
    );
    // The message quotes only the start of the text.
    assert!(msg.len() < 600, "{}", msg.len());
    let nots = format!("{}country = 'FR'", "NOT ".repeat(10_000));
    let errs = validate::task_run(&backfill_with_filter(&nots), None).unwrap_err();
    only_error(
        &errs,
        "spec.config.segmentBackfillTask.filter",
        "PredicateTooDeep",
    );
    // 64 levels are fine.
    let ok = format!("{}user_id = 'u-42'{}", "(".repeat(64), ")".repeat(64));
    validate::task_config(&purge_with(&ok)).unwrap();
}

#[test]
fn a_predicate_naming_an_unknown_column_is_refused_against_the_table() {
    let cfg = validate::task_config(&purge_with("user_id = 'u-42' OR userid = 'u-42'")).unwrap();
    let errs = validate::against_tables(&cfg, &offline(), None).unwrap_err();
    let msg = only_error(&errs, "spec.purgeTask.purgePredicate", "UnknownColumn");
    assert!(
        msg.contains("\"userid\" is not a column of table events-offline"),
        "{msg}"
    );
    let v = validate::task_run(&backfill_with_filter("contry = 'FR'"), None).unwrap();
    let errs = v.against_tables(&offline(), None).unwrap_err();
    only_error(
        &errs,
        "spec.config.segmentBackfillTask.filter",
        "UnknownColumn",
    );
}

#[test]
fn a_predicate_literal_of_the_wrong_type_is_refused_against_the_table() {
    let cfg = validate::task_config(&purge_with("clicks IN (1, 'many')")).unwrap();
    let errs = validate::against_tables(&cfg, &offline(), None).unwrap_err();
    let msg = only_error(
        &errs,
        "spec.purgeTask.purgePredicate",
        "InvalidPredicateLiteral",
    );
    assert!(
        msg.contains("'many' is not a valid LONG for column \"clicks\" of table events-offline"),
        "{msg}"
    );
}

#[test]
fn delta_ingestion_needs_its_source_table_uri_and_takes_a_uri() {
    let mut c = mtc("mtc-delta-ingestion.yaml");
    let block = c.spec.delta_ingestion_task.as_mut().unwrap();
    block.source_table_uri = None;
    let errs = validate::task_config(&c).unwrap_err();
    let message = only_error(
        &errs,
        "spec.deltaIngestionTask.sourceTableURI",
        "MissingField",
    );
    assert!(message.contains("name the Delta table"), "{message}");
    c.spec
        .delta_ingestion_task
        .as_mut()
        .unwrap()
        .source_table_uri = Some("clicks".into());
    let errs = validate::task_config(&c).unwrap_err();
    assert!(
        errs.errors
            .iter()
            .any(|e| e.field == "spec.deltaIngestionTask.sourceTableURI"),
        "{errs}"
    );
    let ok = validate::task_config(&mtc("mtc-delta-ingestion.yaml")).unwrap();
    assert_eq!(ok.task_type().as_str(), "DeltaIngestionTask");
}
