//! `minion convert pinot` on realistic Pinot/StarTree table configs: a hybrid table with
//! MergeRollupTask and RealtimeToOfflineSegmentsTask, an upsert table with
//! UpsertCompactionTask and a date-string time column, an OFFLINE table with StarTree's
//! FileIngestionTask. Each conversion is applied by `minion apply` to a fresh state directory,
//! and every key left out is named in a warning.

use std::path::{Path, PathBuf};
use std::process::Output;

use minion_e2e::fixtures::Minion;
use serde_json::Value;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/pinot")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

struct Converted {
    docs: Vec<Value>,
    warnings: String,
}

impl Converted {
    fn doc(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:#?}", self.docs))
    }
}

/// Converts, checks that `minion apply` takes the result, and returns it.
fn convert_and_apply(args: &[&str]) -> Converted {
    let dir = tempfile::tempdir().unwrap();
    let minion = Minion {
        state: dir.path().join("state"),
    };
    let out_file: PathBuf = dir.path().join("manifests.yaml");
    let mut full = vec!["convert", "pinot"];
    full.extend_from_slice(args);
    full.extend(["-o", out_file.to_str().unwrap()]);
    let out = minion.run(&full);
    let warnings = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{warnings}");
    let applied = minion.ok(&["apply", "-f", out_file.to_str().unwrap()]);
    let text = std::fs::read_to_string(&out_file).unwrap();
    let docs: Vec<Value> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    for d in &docs {
        let line = format!(
            "{}.minion.dev/{} created",
            d["kind"].as_str().unwrap().to_ascii_lowercase(),
            d["metadata"]["name"].as_str().unwrap()
        );
        assert!(applied.contains(&line), "{applied}");
    }
    Converted { docs, warnings }
}

#[test]
fn a_hybrid_table_with_merge_rollup_and_realtime_to_offline() {
    let c = convert_and_apply(&[
        "--table-config",
        &fixture("events_offline.json"),
        "--realtime-config",
        &fixture("events_realtime.json"),
        "--schema",
        &fixture("events_schema.json"),
    ]);
    let offline = c.doc("Table", "events-offline");
    assert_eq!(offline["spec"]["tableType"], "OFFLINE");
    let schema = &offline["spec"]["schema"];
    assert_eq!(schema["timeColumn"], "ts");
    assert_eq!(schema["timeFormat"], "1:MILLISECONDS:EPOCH");
    assert_eq!(schema["sortedColumn"], "ts");
    assert_eq!(schema["bloomFilterColumns"][0], "user_id");
    assert_eq!(schema["columns"].as_array().unwrap().len(), 9);
    assert!(
        schema["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "users_hll" && c["dataType"] == "BYTES" && c["role"] == "metric")
    );
    // segmentsConfig retention: 365 DAYS offline, 7 DAYS realtime.
    assert_eq!(offline["spec"]["retentionTimePeriod"], "365d");
    let realtime = c.doc("Table", "events-realtime");
    assert_eq!(realtime["spec"]["tableType"], "REALTIME");
    assert_eq!(realtime["spec"]["retentionTimePeriod"], "7d");

    let merge = &c.doc("MinionTaskConfig", "events-merge")["spec"];
    assert_eq!(merge["table"], "events-offline");
    assert_eq!(merge["schedule"], "0 */10 * * * ?");
    let m = &merge["mergeRollupTask"];
    assert_eq!(m["aggregationTypes"]["latency_ms"], "max");
    // Levels finest first, whatever the key order in Pinot's map; values typed.
    assert_eq!(m["levels"][0]["name"], "1hour");
    assert_eq!(m["levels"][0]["maxNumParallelBuckets"], 4);
    assert_eq!(m["levels"][1]["name"], "1day");
    assert_eq!(m["levels"][1]["mergeType"], "rollup");
    assert_eq!(m["levels"][1]["eraseDimensionValues"][0], "user_id");

    // RealtimeToOffline is configured on the REALTIME table in Pinot, on the OFFLINE
    // destination here.
    let r2o = &c.doc("MinionTaskConfig", "events-r2o")["spec"];
    assert_eq!(r2o["table"], "events-offline");
    assert_eq!(r2o["sourceTable"], "events-realtime");
    let r = &r2o["realtimeToOfflineSegmentsTask"];
    assert_eq!(r["roundBucketTimePeriod"], "1m");
    assert_eq!(r["maxNumRecordsPerSegment"], 5_000_000);

    // Sketch metrics: BYTES columns, their aggregations and Pinot's per-level parameters.
    assert_eq!(m["aggregationTypes"]["users_hll"], "distinctCountHLL");
    assert_eq!(
        m["aggregationTypes"]["users_theta"],
        "distinctCountThetaSketch"
    );
    assert_eq!(m["aggregationParameters"]["users_hll"]["lgK"], 12);
    assert_eq!(
        m["aggregationParameters"]["users_theta"]["nominalEntries"],
        16384
    );
    assert_eq!(
        r["aggregationTypes"]["users_theta"],
        "distinctCountThetaSketch"
    );

    for warned in [
        "schema column tags: multi-value columns are not supported",
        "users_hll.aggregationType: distinctCountHLL writes Apache DataSketches HLL sketches",
    ] {
        assert!(c.warnings.contains(warned), "{warned}: {}", c.warnings);
    }
    assert!(!c.warnings.contains("users_theta"), "{}", c.warnings);
}

#[test]
fn an_upsert_table_with_upsert_compaction_and_a_date_string_time_column() {
    let c = convert_and_apply(&[
        "--table-config",
        &fixture("users_realtime.json"),
        "--schema",
        &fixture("users_schema.json"),
        "--uri-prefix",
        "s3://lake/tables/",
    ]);
    let users = &c.doc("Table", "users-realtime")["spec"];
    assert_eq!(users["uri"], "s3://lake/tables/users_realtime");
    let schema = &users["schema"];
    assert_eq!(schema["timeColumn"], "day");
    assert_eq!(
        schema["timeFormat"],
        "1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd tz(America/Los_Angeles)"
    );
    assert_eq!(schema["primaryKey"][0], "user_id");
    assert_eq!(schema["comparisonColumn"], "updated_at");
    assert_eq!(schema["partitioning"]["function"], "Murmur");
    assert_eq!(schema["partitioning"]["numPartitions"], 4);

    let refresh = &c.doc("MinionTaskConfig", "users-refresh")["spec"];
    assert_eq!(refresh["taskType"], "SegmentRefreshTask");
    let r = &refresh["segmentRefreshTask"];
    assert_eq!(r["invalidRecordsThresholdPercent"], 30.0);
    assert_eq!(r["invalidRecordsThresholdCount"], 100_000);
    assert_eq!(r["bucketTimePeriod"], "1d");
    for left_out in [
        "upsertConfig.enableSnapshot has no counterpart",
        "UpsertCompactionTask.validDocIdsType has no counterpart",
        "bucketTimePeriod is required here",
    ] {
        assert!(c.warnings.contains(left_out), "{left_out}: {}", c.warnings);
    }
}

#[test]
fn an_offline_table_with_startree_file_ingestion() {
    let c = convert_and_apply(&[
        "--table-config",
        &fixture("orders_offline.json"),
        "--schema",
        &fixture("orders_schema.json"),
    ]);
    let schema = &c.doc("Table", "orders-offline")["spec"]["schema"];
    assert_eq!(schema["timeFormat"], "5:MINUTES:EPOCH");
    let f = &c.doc("MinionTaskConfig", "orders-ingest")["spec"]["fileIngestionTask"];
    assert_eq!(f["inputFormat"], "parquet");
    assert_eq!(f["includeFileNamePattern"], "**/*.parquet");
    assert_eq!(f["consistentPushEnabled"], true);
    assert_eq!(f["tableMaxNumTasks"], 20);
    assert!(
        !c.docs
            .iter()
            .any(|d| d["metadata"]["name"] == "orders-import"),
        "SegmentImportTask without a REALTIME table is left out"
    );
    for left_out in [
        "schema column attrs: dataType JSON is not supported",
        "FileIngestionTask.input.fs.prop.region: file system settings are not task keys",
        "SegmentImportTask reads the REALTIME table",
    ] {
        assert!(c.warnings.contains(left_out), "{left_out}: {}", c.warnings);
    }
}

#[test]
fn input_that_is_not_a_pinot_table_config_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let minion = Minion {
        state: dir.path().join("state"),
    };
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, "{\"schemaName\": \"x\"}").unwrap();
    let run = |args: &[&str]| -> Output {
        let mut full = vec!["convert", "pinot"];
        full.extend_from_slice(args);
        minion.run(&full)
    };
    let out = run(&["--table-config", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.json: not JSON"), "{stderr}");
    // A schema given as the table config.
    let out = run(&["--table-config", schema.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no tableType OFFLINE or REALTIME"),
        "{stderr}"
    );
}
