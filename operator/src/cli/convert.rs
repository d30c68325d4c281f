//! `minion convert pinot`: Pinot/StarTree table configs and schema in, `Table` and
//! `MinionTaskConfig` manifests out (docs/migrating-from-pinot.md, "Converting configs").
//!
//! # Contract
//! - Pure: reads the JSON it is given, returns YAML and warnings; touches no state.
//! - Every key that has a counterpart is mapped (typed: numbers and booleans unquoted, flat
//!   `<level>.<key>` and `<metric>.aggregationType` keys into structure); every key that has
//!   none is left out with a warning naming it. Nothing is dropped silently.
//! - The output is what `minion apply` takes; a value we refuse (a sketch aggregation, a
//!   date pattern out of time order) is left out with a warning rather than written.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use minion_contract::TimeFormat;

/// What to convert.
#[derive(Clone, Debug, Default)]
pub struct PinotConfigs {
    /// The OFFLINE table config (or a REALTIME one, when there is no OFFLINE table).
    pub table_config: Value,
    /// The REALTIME table config, when the table has both.
    pub realtime_config: Option<Value>,
    pub schema: Option<Value>,
    pub namespace: String,
    /// Tables are placed at `<uri_prefix><name>`.
    pub uri_prefix: String,
}

/// The manifests (multi-document YAML) and the warnings.
#[derive(Clone, Debug, Default)]
pub struct Converted {
    pub yaml: String,
    pub warnings: Vec<String>,
}

/// Converts. See the module contract.
///
/// # Errors
/// A sentence when the input is not a Pinot table config.
pub fn convert(input: &PinotConfigs) -> Result<Converted, String> {
    let mut w = Vec::new();
    let mut docs = Vec::new();
    let schema_columns = input.schema.as_ref().map(|s| schema_of(s, &mut w));
    let mut tables: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut configs = vec![("table config", &input.table_config)];
    if let Some(rt) = &input.realtime_config {
        configs.push(("realtime config", rt));
    }
    for (what, config) in &configs {
        let table_type = match config.get("tableType").and_then(Value::as_str) {
            Some(t @ ("OFFLINE" | "REALTIME")) => t,
            _ => {
                return Err(format!(
                    "the {what} has no tableType OFFLINE or REALTIME; give a Pinot table config \
                     (the JSON of GET /tables/<name>, one table type)"
                ));
            }
        };
        let name = table_name(config, table_type)?;
        if tables
            .insert(table_lower(table_type), name.clone())
            .is_some()
        {
            return Err(format!(
                "both configs are {table_type} tables; give the OFFLINE one with --table-config \
                 and the REALTIME one with --realtime-config"
            ));
        }
        docs.push(table_manifest(
            input,
            &name,
            table_type,
            config,
            schema_columns.as_ref(),
            &mut w,
        ));
    }
    let offline = tables.get("offline").cloned();
    let realtime = tables.get("realtime").cloned();
    for (_, config) in &configs {
        let Some(map) = config
            .pointer("/task/taskTypeConfigsMap")
            .and_then(Value::as_object)
        else {
            continue;
        };
        let is_realtime = config.get("tableType").and_then(Value::as_str) == Some("REALTIME");
        for (task_type, keys) in map {
            let Some(keys) = keys.as_object() else {
                w.push(format!(
                    "task.taskTypeConfigsMap.{task_type} is not an object; left out"
                ));
                continue;
            };
            let own = if is_realtime { &realtime } else { &offline };
            if let Some(doc) = task_manifest(
                input,
                task_type,
                keys,
                own.as_deref().unwrap_or_default(),
                offline.as_deref(),
                realtime.as_deref(),
                &mut w,
            ) {
                docs.push(doc);
            }
        }
    }
    let mut yaml = String::new();
    for doc in docs {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(&doc).map_err(|e| e.to_string())?);
    }
    Ok(Converted { yaml, warnings: w })
}

fn table_lower(table_type: &str) -> &'static str {
    if table_type == "REALTIME" {
        "realtime"
    } else {
        "offline"
    }
}

/// `events_OFFLINE` → `events-offline`: a Kubernetes name.
fn table_name(config: &Value, table_type: &str) -> Result<String, String> {
    let raw = config
        .get("tableName")
        .and_then(Value::as_str)
        .ok_or("the table config has no tableName")?;
    let base = raw
        .strip_suffix(&format!("_{table_type}"))
        .unwrap_or(raw)
        .to_ascii_lowercase()
        .replace(['_', '.'], "-");
    Ok(format!("{base}-{}", table_lower(table_type)))
}

/// The schema's columns, in order, with role and type; the time columns' formats.
struct SchemaColumns {
    columns: Vec<Value>,
    formats: BTreeMap<String, String>,
    primary_key: Vec<String>,
}

fn schema_of(schema: &Value, w: &mut Vec<String>) -> SchemaColumns {
    let mut out = SchemaColumns {
        columns: Vec::new(),
        formats: BTreeMap::new(),
        primary_key: Vec::new(),
    };
    for (key, role) in [
        ("dimensionFieldSpecs", "dimension"),
        ("metricFieldSpecs", "metric"),
        ("dateTimeFieldSpecs", "dateTime"),
    ] {
        for spec in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = spec.get("name").and_then(Value::as_str) else {
                continue;
            };
            let data_type = spec.get("dataType").and_then(Value::as_str).unwrap_or("");
            if spec.get("singleValueField") == Some(&Value::Bool(false)) {
                w.push(format!(
                    "schema column {name}: multi-value columns are not supported; left out"
                ));
                continue;
            }
            let data_type = match data_type {
                "INT" | "LONG" | "FLOAT" | "DOUBLE" | "BOOLEAN" | "STRING" | "BYTES"
                | "TIMESTAMP" => data_type,
                other => {
                    w.push(format!(
                        "schema column {name}: dataType {other} is not supported (INT, LONG, \
                         FLOAT, DOUBLE, BOOLEAN, STRING, BYTES, TIMESTAMP); left out"
                    ));
                    continue;
                }
            };
            if role == "metric"
                && !matches!(data_type, "INT" | "LONG" | "FLOAT" | "DOUBLE" | "BYTES")
            {
                w.push(format!(
                    "schema column {name}: a {data_type} metric is not supported (INT, LONG, \
                     FLOAT, DOUBLE, or BYTES for a sketch); left out"
                ));
                continue;
            }
            if role == "dateTime"
                && let Some(format) = spec.get("format").and_then(Value::as_str)
            {
                out.formats.insert(name.to_string(), format.to_string());
            }
            out.columns
                .push(json!({"name": name, "dataType": data_type, "role": role}));
        }
    }
    if schema.get("timeFieldSpec").is_some() {
        w.push(
            "schema.timeFieldSpec (deprecated in Pinot) is not read; declare the time column \
             in dateTimeFieldSpecs"
                .into(),
        );
    }
    out.primary_key = strings(schema.get("primaryKeyColumns"));
    out
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn table_manifest(
    input: &PinotConfigs,
    name: &str,
    table_type: &str,
    config: &Value,
    schema: Option<&SchemaColumns>,
    w: &mut Vec<String>,
) -> Value {
    let mut s = Map::new();
    let time_column = config
        .pointer("/segmentsConfig/timeColumnName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| schema.and_then(|c| c.formats.keys().next().cloned()));
    match &time_column {
        Some(t) => {
            s.insert("timeColumn".into(), json!(t));
        }
        None => w.push(format!(
            "Table {name}: no time column (segmentsConfig.timeColumnName); set \
             spec.schema.timeColumn"
        )),
    }
    if let (Some(t), Some(schema)) = (&time_column, schema)
        && let Some(format) = schema.formats.get(t)
    {
        match TimeFormat::parse(format) {
            Ok(_) => {
                s.insert("timeFormat".into(), json!(format));
            }
            Err(e) => w.push(format!(
                "Table {name}: the time column's format is not supported ({e}); left out"
            )),
        }
    }
    match schema {
        Some(schema) => {
            s.insert("columns".into(), Value::Array(schema.columns.clone()));
            if !schema.primary_key.is_empty() {
                s.insert("primaryKey".into(), json!(schema.primary_key));
            }
        }
        None => w.push(format!(
            "Table {name}: no schema given (--schema); write spec.schema.columns"
        )),
    }
    if let Some(upsert) = config.get("upsertConfig") {
        let mut cmp = strings(upsert.get("comparisonColumns"));
        if let Some(c) = upsert.get("comparisonColumn").and_then(Value::as_str) {
            cmp.insert(0, c.to_string());
        }
        if cmp.len() > 1 {
            w.push(format!(
                "Table {name}: upsertConfig has {} comparison columns; only {} is kept",
                cmp.len(),
                cmp[0]
            ));
        }
        if let Some(c) = cmp.first() {
            s.insert("comparisonColumn".into(), json!(c));
        }
        for key in upsert.as_object().into_iter().flat_map(|m| m.keys()) {
            if !matches!(
                key.as_str(),
                "mode" | "comparisonColumns" | "comparisonColumn"
            ) {
                w.push(format!(
                    "Table {name}: upsertConfig.{key} has no counterpart; left out"
                ));
            }
        }
    }
    let mut retention_period = None;
    if let Some(value) = config.pointer("/segmentsConfig/retentionTimeValue") {
        let unit = config
            .pointer("/segmentsConfig/retentionTimeUnit")
            .and_then(Value::as_str)
            .unwrap_or("DAYS");
        let value = match value {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        };
        let suffix = match unit {
            "DAYS" => Some("d"),
            "HOURS" => Some("h"),
            "MINUTES" => Some("m"),
            "SECONDS" => Some("s"),
            "MILLISECONDS" => Some("ms"),
            _ => None,
        };
        match (value.parse::<u64>(), suffix) {
            (Ok(n), Some(sfx)) if n > 0 => retention_period = Some(format!("{n}{sfx}")),
            _ => w.push(format!(
                "Table {name}: segmentsConfig retention {value} {unit} is not a period; left out"
            )),
        }
    }
    for key in ["transformConfigs", "filterConfig"] {
        if config.pointer(&format!("/ingestionConfig/{key}")).is_some() {
            w.push(format!(
                "Table {name}: ingestionConfig.{key} is not applied while processing; left out"
            ));
        }
    }
    if config.get("dedupConfig").is_some() {
        w.push(format!(
            "Table {name}: dedupConfig has no counterpart (use mergeType: dedup in a task); \
             left out"
        ));
    }
    let index = config.get("tableIndexConfig");
    if let Some(sorted) = strings(index.and_then(|i| i.get("sortedColumn"))).first() {
        s.insert("sortedColumn".into(), json!(sorted));
    }
    let bloom = strings(index.and_then(|i| i.get("bloomFilterColumns")));
    if !bloom.is_empty() {
        s.insert("bloomFilterColumns".into(), json!(bloom));
    }
    if let Some(map) = index
        .and_then(|i| i.pointer("/segmentPartitionConfig/columnPartitionMap"))
        .and_then(Value::as_object)
        && let Some((column, p)) = map.iter().next()
    {
        if map.len() > 1 {
            w.push(format!(
                "Table {name}: {} partition columns; only {column} is kept",
                map.len()
            ));
        }
        let function = p.get("functionName").and_then(Value::as_str).unwrap_or("");
        let function = match function.to_ascii_lowercase().as_str() {
            "murmur" => Some("Murmur"),
            "modulo" => Some("Modulo"),
            _ => None,
        };
        match (function, p.get("numPartitions").and_then(Value::as_u64)) {
            (Some(f), Some(n)) => {
                s.insert(
                    "partitioning".into(),
                    json!({"column": column, "function": f, "numPartitions": n}),
                );
            }
            _ => w.push(format!(
                "Table {name}: partition function of {column} is not Murmur or Modulo; left out"
            )),
        }
    }
    let uri_name = name.replace('-', "_");
    let mut spec = json!({
        "tableType": table_type,
        "uri": format!("{}{uri_name}", input.uri_prefix),
        "schema": Value::Object(s),
    });
    if let Some(period) = retention_period {
        spec["retentionTimePeriod"] = json!(period);
    }
    json!({
        "apiVersion": "minion.dev/v1alpha1",
        "kind": "Table",
        "metadata": {"name": name, "namespace": input.namespace},
        "spec": spec,
    })
}

/// How a Pinot key's string value is written in our block.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Number,
    Bool,
    /// Lower-cased enumeration (`mergeType`, `inputFormat`).
    Lower,
    /// A comma list, written as a YAML list.
    List,
}

/// The window keys RealtimeToOffline and SegmentImport share.
const WINDOW_KEYS: &[(&str, Kind)] = &[
    ("bucketTimePeriod", Kind::Text),
    ("bufferTimePeriod", Kind::Text),
    ("roundBucketTimePeriod", Kind::Text),
    ("mergeType", Kind::Lower),
    ("maxNumRecordsPerSegment", Kind::Integer),
    ("segmentNamePrefix", Kind::Text),
    ("segmentNamePostfix", Kind::Text),
];

/// The keys each block takes (besides `schedule` and `<metric>.aggregationType`), with the
/// [`WINDOW_KEYS`] for the two windowed blocks.
fn block_keys(block: &str) -> impl Iterator<Item = &'static (&'static str, Kind)> {
    let windowed = matches!(block, "realtimeToOfflineSegmentsTask" | "segmentImportTask");
    let window: &'static [(&'static str, Kind)] = if windowed { WINDOW_KEYS } else { &[] };
    window.iter().chain(own_keys(block))
}

fn own_keys(block: &str) -> &'static [(&'static str, Kind)] {
    use Kind::*;
    match block {
        "segmentImportTask" => &[
            ("tableMaxNumTasks", Integer),
            ("maxNumRecordsPerTask", Integer),
            ("initialWatermarkMs", Integer),
            ("desiredSegmentSize", Text),
        ],
        "mergeRollupTask" => &[("mode", Text)],
        "segmentRefreshTask" => &[
            ("bucketTimePeriod", Text),
            ("bufferTimePeriod", Text),
            ("invalidRecordsThresholdPercent", Number),
            ("invalidRecordsThresholdCount", Integer),
            ("maxNumRecordsPerSegment", Integer),
            ("desiredSegmentSize", Text),
            ("tableMaxNumTasks", Integer),
            ("maxNumRecordsPerTask", Integer),
            ("maxDataSizePerTask", Text),
        ],
        "fileIngestionTask" => &[
            ("inputDirURI", Text),
            ("inputFormat", Lower),
            ("includeFileNamePattern", Text),
            ("excludeFileNamePattern", Text),
            ("mode", Lower),
            ("consistentPushEnabled", Bool),
            ("consistentPushSwapEnabled", Bool),
            ("tableMaxNumTasks", Integer),
            ("taskMaxDataSize", Text),
            ("taskMaxNumFiles", Integer),
            ("desiredSegmentSize", Text),
            ("maxNumRecordsPerSegment", Integer),
            ("skipFileIfFailToInitReader", Bool),
        ],
        "purgeTask" => &[
            ("purgePredicate", Text),
            ("lastPurgeTimeThresholdPeriod", Text),
            ("tableMaxNumTasks", Integer),
            ("maxNumRecordsPerSegment", Integer),
        ],
        _ => &[],
    }
}

/// The keys of one MergeRollup level.
const LEVEL_KEYS: &[(&str, Kind)] = &[
    ("bucketTimePeriod", Kind::Text),
    ("bufferTimePeriod", Kind::Text),
    ("roundBucketTimePeriod", Kind::Text),
    ("mergeType", Kind::Lower),
    ("maxNumRecordsPerSegment", Kind::Integer),
    ("maxNumRecordsPerTask", Kind::Integer),
    ("maxNumParallelBuckets", Kind::Integer),
    ("eraseDimensionValues", Kind::List),
];

/// Aggregations we have, by Pinot's name (case-insensitive).
fn aggregation(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "sum" => Some("sum"),
        "min" => Some("min"),
        "max" => Some("max"),
        "count" => Some("count"),
        "firstwithtime" => Some("firstWithTime"),
        "lastwithtime" => Some("lastWithTime"),
        "distinctcountthetasketch" => Some("distinctCountThetaSketch"),
        "distinctcounthll" => Some("distinctCountHLL"),
        "distinctcounthllplus" => Some("distinctCountHLLPlus"),
        "distinctcountcpcsketch" => Some("distinctCountCPCSketch"),
        "percentiletdigest" => Some("percentileTDigest"),
        "percentilekll" => Some("percentileKLL"),
        "avg" => Some("avg"),
        _ => None,
    }
}

/// Our name of a Pinot aggregation function parameter (`log2m` and HLLPlus's `p` are `lgK`).
fn aggregation_parameter(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "nominalentries" => Some("nominalEntries"),
        "lgk" | "log2m" | "p" => Some("lgK"),
        "k" => Some("k"),
        "compressionfactor" | "compression" => Some("compression"),
        _ => None,
    }
}

/// `[<level>.]aggregationFunctionParameters.<metric>.<param>` as (metric, param).
fn aggregation_parameter_key(key: &str) -> Option<(&str, &str)> {
    const PREFIX: &str = "aggregationFunctionParameters.";
    let at = key.find(PREFIX)?;
    if at > 0 && !key[..at].ends_with('.') {
        return None;
    }
    key[at + PREFIX.len()..].rsplit_once('.')
}

fn typed(value: &Value, kind: Kind) -> Result<Value, String> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    };
    let bad = |what: &str| format!("{text:?} is not {what}");
    Ok(match kind {
        Kind::Text => json!(text),
        Kind::Lower => json!(text.to_ascii_lowercase()),
        Kind::Integer => json!(text.parse::<i64>().map_err(|_| bad("an integer"))?),
        Kind::Number => json!(text.parse::<f64>().map_err(|_| bad("a number"))?),
        Kind::Bool => json!(text.parse::<bool>().map_err(|_| bad("true or false"))?),
        Kind::List => json!(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        ),
    })
}

#[allow(clippy::too_many_arguments)]
fn task_manifest(
    input: &PinotConfigs,
    task_type: &str,
    keys: &Map<String, Value>,
    own_table: &str,
    offline: Option<&str>,
    realtime: Option<&str>,
    w: &mut Vec<String>,
) -> Option<Value> {
    let (our_type, block, table, source) = match task_type {
        "RealtimeToOfflineSegmentsTask" => (
            task_type,
            "realtimeToOfflineSegmentsTask",
            offline,
            realtime,
        ),
        "SegmentImportTask" => (task_type, "segmentImportTask", offline, realtime),
        "MergeRollupTask" => (task_type, "mergeRollupTask", Some(own_table), None),
        "SegmentRefreshTask" | "UpsertCompactionTask" => (
            "SegmentRefreshTask",
            "segmentRefreshTask",
            Some(own_table),
            None,
        ),
        "FileIngestionTask" => (task_type, "fileIngestionTask", Some(own_table), None),
        "PurgeTask" => (task_type, "purgeTask", Some(own_table), None),
        other => {
            w.push(format!(
                "task type {other} has no counterpart (RealtimeToOfflineSegmentsTask, \
                 SegmentImportTask, MergeRollupTask, UpsertCompactionTask, SegmentRefreshTask, \
                 FileIngestionTask, PurgeTask); left out"
            ));
            return None;
        }
    };
    let Some(table) = table else {
        w.push(format!(
            "{task_type} moves data into an OFFLINE table, and no OFFLINE table config was \
             given (--table-config); left out"
        ));
        return None;
    };
    let name = format!(
        "{}-{}",
        table
            .trim_end_matches("-offline")
            .trim_end_matches("-realtime"),
        short_name(our_type)
    );
    let at = task_type;
    let mut spec = Map::new();
    spec.insert("table".into(), json!(table));
    if matches!(block, "realtimeToOfflineSegmentsTask" | "segmentImportTask") {
        match source {
            Some(s) => {
                spec.insert("sourceTable".into(), json!(s));
            }
            None => {
                w.push(format!(
                    "{at} reads the REALTIME table, and no REALTIME table config was given \
                     (--realtime-config); left out"
                ));
                return None;
            }
        }
    }
    spec.insert("taskType".into(), json!(our_type));
    let mut b = Map::new();
    let mut aggregations = Map::new();
    let mut parameters: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut levels: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (key, value) in keys {
        if key == "schedule" {
            spec.insert("schedule".into(), json!(value.as_str().unwrap_or_default()));
            continue;
        }
        if let Some(metric) = key.strip_suffix(".aggregationType") {
            let v = value.as_str().unwrap_or_default();
            match aggregation(v) {
                Some(a) => {
                    if a.starts_with("distinctCountHLL") {
                        w.push(format!(
                            "{at}.{key}: {a} writes Apache DataSketches HLL sketches; the \
                             HyperLogLog bytes Pinot wrote (clearspring) cannot be merged \
                             with them (docs/migrating-from-pinot.md)"
                        ));
                    }
                    aggregations.insert(metric.to_string(), json!(a));
                }
                None => w.push(format!(
                    "{at}.{key}: aggregation {v} is not supported (sum, min, max, count, \
                     firstWithTime, lastWithTime, avg, distinctCountThetaSketch, \
                     distinctCountHLL, distinctCountHLLPlus, distinctCountCPCSketch, \
                     percentileTDigest, percentileKLL); left out"
                )),
            }
            continue;
        }
        if let Some((metric, param)) = aggregation_parameter_key(key) {
            let ours = aggregation_parameter(param);
            let value = typed(value, Kind::Integer);
            match (ours, value) {
                (None, _) => w.push(format!(
                    "{at}.{key}: parameter {param} has no counterpart (nominalEntries, \
                     log2m/lgK/p, K, compressionFactor); left out"
                )),
                (_, Err(e)) => w.push(format!("{at}.{key}: {e}; left out")),
                (Some(p), Ok(v)) => {
                    let kept = parameters.entry(metric.to_string()).or_default();
                    match kept.get(p) {
                        Some(first) if *first != v => w.push(format!(
                            "{at}.{key}: {v} differs from another level's {first}; one value \
                             applies to every level here, {first} is kept"
                        )),
                        _ => {
                            kept.insert(p.to_string(), v);
                        }
                    }
                }
            }
            continue;
        }
        if block == "mergeRollupTask"
            && let Some((level, level_key)) = key.split_once('.')
        {
            match LEVEL_KEYS.iter().find(|(k, _)| *k == level_key) {
                Some((k, kind)) => match typed(value, *kind) {
                    Ok(v) => {
                        levels
                            .entry(level.to_string())
                            .or_default()
                            .insert((*k).to_string(), v);
                    }
                    Err(e) => w.push(format!("{at}.{key}: {e}; left out")),
                },
                None => w.push(format!("{at}.{key} has no counterpart; left out")),
            }
            continue;
        }
        if key.starts_with("input.fs.") || key.starts_with("output.fs.") {
            w.push(format!(
                "{at}.{key}: file system settings are not task keys here; give the Table a \
                 storageSecretRef (docs/security.md); left out"
            ));
            continue;
        }
        match block_keys(block).find(|(k, _)| k == key) {
            Some((k, _)) if k.ends_with("FileNamePattern") => {
                // Pinot writes `glob:<pattern>` or `regex:<pattern>`; ours are globs.
                let v = value.as_str().unwrap_or_default();
                match v.strip_prefix("regex:") {
                    Some(_) => w.push(format!(
                        "{at}.{key}: regex patterns are not supported, only globs; left out"
                    )),
                    None => {
                        b.insert(
                            (*k).to_string(),
                            json!(v.strip_prefix("glob:").unwrap_or(v)),
                        );
                    }
                }
            }
            Some((k, kind)) => match typed(value, *kind) {
                Ok(v) => {
                    b.insert((*k).to_string(), v);
                }
                Err(e) => w.push(format!("{at}.{key}: {e}; left out")),
            },
            None => w.push(format!("{at}.{key} has no counterpart; left out")),
        }
    }
    if !aggregations.is_empty() {
        b.insert("aggregationTypes".into(), Value::Object(aggregations));
    }
    if !parameters.is_empty() {
        let parameters = parameters
            .into_iter()
            .map(|(m, p)| (m, Value::Object(p)))
            .collect();
        b.insert("aggregationParameters".into(), Value::Object(parameters));
    }
    if block == "mergeRollupTask" {
        // Finest bucket first, as the levels must be listed.
        let mut list: Vec<(i64, String, Map<String, Value>)> = levels
            .into_iter()
            .map(|(name, keys)| {
                let ms = keys
                    .get("bucketTimePeriod")
                    .and_then(Value::as_str)
                    .and_then(|p| crate::validate::units::parse_period(p).ok())
                    .unwrap_or(i64::MAX);
                (ms, name, keys)
            })
            .collect();
        list.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let levels: Vec<Value> = list
            .into_iter()
            .map(|(_, name, keys)| {
                let mut level = Map::new();
                level.insert("name".into(), json!(name));
                level.extend(keys);
                Value::Object(level)
            })
            .collect();
        b.insert("levels".into(), Value::Array(levels));
    }
    if our_type == "SegmentRefreshTask" && !b.contains_key("bucketTimePeriod") {
        w.push(format!(
            "{at}: bucketTimePeriod is required here (UpsertCompactionTask has none); 1d is \
             written, change it to suit the table"
        ));
        b.insert("bucketTimePeriod".into(), json!("1d"));
    }
    spec.insert(block.into(), Value::Object(b));
    Some(json!({
        "apiVersion": "minion.dev/v1alpha1",
        "kind": "MinionTaskConfig",
        "metadata": {"name": name, "namespace": input.namespace},
        "spec": Value::Object(spec),
    }))
}

fn short_name(task_type: &str) -> &'static str {
    match task_type {
        "RealtimeToOfflineSegmentsTask" => "r2o",
        "SegmentImportTask" => "import",
        "MergeRollupTask" => "merge",
        "SegmentRefreshTask" => "refresh",
        "FileIngestionTask" => "ingest",
        "PurgeTask" => "purge",
        _ => "task",
    }
}
