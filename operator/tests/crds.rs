//! The committed CRDs (`crds/` and the Helm chart's copy) are exactly what the Rust types
//! generate, stay small, parse as `apiextensions.k8s.io/v1` CRDs and have structural
//! schemas, the status subresource, printer columns, short names and the `minion` category.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use minion_operator::api;
use serde_json::Value;

const REGENERATE: &str = "cargo run -p minion-operator --bin minion-operator -- crds --out crds --out charts/minion-operator/files/crds";
const MAX_BYTES: usize = 256 * 1024;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_are_up_to_date() {
    let files = api::crd_files().unwrap();
    assert_eq!(
        files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "tables.minion.dev.yaml",
            "miniontaskconfigs.minion.dev.yaml",
            "taskruns.minion.dev.yaml"
        ]
    );
    for dir in ["crds", "charts/minion-operator/files/crds"] {
        for (name, yaml) in &files {
            let path = root().join(dir).join(name);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == *yaml,
                "{dir}/{name} is stale or missing; regenerate with:\n  {REGENERATE}"
            );
        }
    }
}

#[test]
fn each_crd_is_smaller_than_256_kib() {
    for (name, yaml) in api::crd_files().unwrap() {
        assert!(yaml.len() < MAX_BYTES, "{name} is {} bytes", yaml.len());
    }
}

#[test]
fn each_crd_parses_as_an_apiextensions_v1_crd() {
    for (name, yaml) in api::crd_files().unwrap() {
        let raw: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(raw["apiVersion"], "apiextensions.k8s.io/v1", "{name}");
        assert_eq!(raw["kind"], "CustomResourceDefinition", "{name}");
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(crd.spec.group, "minion.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.versions.len(), 1);
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name}: no status subresource"
        );
    }
}

/// Walks a schema node, collecting every violation of Kubernetes' structural-schema rules.
fn walk(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    if obj.contains_key("$ref") {
        problems.push(format!("{path}: $ref"));
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let typed = obj.contains_key("type")
        || int_or_string
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !typed {
        problems.push(format!("{path}: no type"));
    }
    if obj.contains_key("nullable") && !(obj.contains_key("type") || int_or_string) {
        problems.push(format!("{path}: nullable without type"));
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for (i, sub) in obj
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for banned in [
                "type",
                "properties",
                "items",
                "additionalProperties",
                "nullable",
            ] {
                if sub.get(banned).is_some() {
                    problems.push(format!("{path}.{key}[{i}]: carries {banned}"));
                }
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(v, &format!("{path}.{k}"), problems);
        }
    }
    if let Some(items) = obj.get("items") {
        walk(items, &format!("{path}[]"), problems);
    }
    if let Some(ap) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        walk(ap, &format!("{path}{{}}"), problems);
    }
}

#[test]
fn schemas_are_structural() {
    for crd in api::crds() {
        let name = crd.metadata.name.clone().unwrap();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .unwrap(),
        )
        .unwrap();
        let mut problems = Vec::new();
        walk(&schema, &name, &mut problems);
        assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
        let props = &schema["properties"];
        assert!(props["spec"]["properties"].is_object(), "{name}");
        assert!(props["status"]["properties"].is_object(), "{name}");
    }
}

fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String, String)> {
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
        .collect()
}

fn col(name: &str, ty: &str, path: &str) -> (String, String, String) {
    (name.into(), ty.into(), path.into())
}

#[test]
fn names_short_names_categories_and_printer_columns() {
    let crds = api::crds();
    let expected = [
        ("tables", "Table", "tbl"),
        ("miniontaskconfigs", "MinionTaskConfig", "mtc"),
        ("taskruns", "TaskRun", "tr"),
    ];
    for (crd, (plural, kind, short)) in crds.iter().zip(expected) {
        let names = &crd.spec.names;
        assert_eq!(names.plural, plural);
        assert_eq!(names.kind, kind);
        assert_eq!(names.short_names.as_deref(), Some(&[short.to_string()][..]));
        assert_eq!(
            names.categories.as_deref(),
            Some(&["minion".to_string()][..])
        );
    }
    let age = col("AGE", "date", ".metadata.creationTimestamp");
    assert_eq!(
        columns(&crds[0]),
        [
            col("TYPE", "string", ".spec.tableType"),
            col("SEGMENTS", "integer", ".status.segments"),
            col("ROWS", "integer", ".status.rows"),
            col("MIN TIME", "string", ".status.minTime"),
            col("MAX TIME", "string", ".status.maxTime"),
            age.clone(),
        ]
    );
    assert_eq!(
        columns(&crds[1]),
        [
            col("TYPE", "string", ".spec.taskType"),
            col("TABLE", "string", ".spec.table"),
            col("SCHEDULE", "string", ".spec.schedule"),
            col("SUSPENDED", "boolean", ".spec.suspend"),
            col("LAST", "date", ".status.lastScheduleTime"),
            // A future time: a `date` column would print `<invalid>`.
            col("NEXT", "string", ".status.nextScheduleTime"),
            col("LAST RESULT", "string", ".status.lastResult"),
            age.clone(),
        ]
    );
    assert_eq!(
        columns(&crds[2]),
        [
            col("TYPE", "string", ".status.taskType"),
            col("TABLE", "string", ".status.table"),
            col("PHASE", "string", ".status.phase"),
            col("REASON", "string", ".status.reason"),
            col("PROGRESS", "string", ".status.progress"),
            age,
        ]
    );
}

#[test]
fn printer_column_paths_exist_in_the_schemas() {
    for crd in api::crds() {
        let v = &crd.spec.versions[0];
        let schema =
            serde_json::to_value(v.schema.as_ref().unwrap().open_api_v3_schema.as_ref()).unwrap();
        for c in v.additional_printer_columns.iter().flatten() {
            if c.json_path.starts_with(".metadata") {
                continue;
            }
            let mut node = &schema;
            for part in c.json_path.trim_start_matches('.').split('.') {
                node = &node["properties"][part];
            }
            assert!(
                node.is_object(),
                "{}: {} not in schema",
                c.name,
                c.json_path
            );
        }
    }
}

/// Checks `value` against a structural schema the way the API server would: types, enums,
/// required keys, and keys the server would silently prune (unknown to the schema).
fn check_value(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            problems.push(format!("{path}: null but not nullable"));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            problems.push(format!("{path}: neither integer nor string"));
        }
        return;
    }
    let ok = match schema.get("type").and_then(Value::as_str) {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        _ => true,
    };
    if !ok {
        problems.push(format!("{path}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} not in {allowed:?}"));
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            check_value(&schema["items"], item, &format!("{path}[{i}]"), problems);
        }
    }
    if let Some(map) = value.as_object() {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !map.contains_key(key.as_str().unwrap()) {
                problems.push(format!("{path}.{}: required", key.as_str().unwrap()));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in map {
            let root_meta =
                path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&k.as_str());
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                _ if root_meta => {}
                (Some(sub), _) => check_value(sub, v, &format!("{path}.{k}"), problems),
                (None, Some(ap)) if ap.is_object() => {
                    check_value(ap, v, &format!("{path}.{k}"), problems)
                }
                _ => problems.push(format!(
                    "{path}.{k}: unknown to the schema (would be pruned)"
                )),
            }
        }
    }
}

fn crd_schema(kind: &str) -> Value {
    let crd = api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref(),
    )
    .unwrap()
}

fn check_manifest(yaml: &str) -> Vec<String> {
    let value: Value = serde_yaml::from_str(yaml).unwrap();
    let mut problems = Vec::new();
    check_value(
        &crd_schema(value["kind"].as_str().unwrap()),
        &value,
        "",
        &mut problems,
    );
    problems
}

#[test]
fn every_sample_fits_its_crd_schema_without_pruning() {
    let dir = root().join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let problems = check_manifest(&text);
        assert!(
            problems.is_empty(),
            "{}:\n{}",
            path.display(),
            problems.join("\n")
        );
        checked += 1;
    }
    assert!(checked >= 11);
}

#[test]
fn schema_check_catches_unknown_keys_and_wrong_types() {
    let text = std::fs::read_to_string(root().join("config/mtc-merge-rollup.yaml")).unwrap();
    let problems = check_manifest(
        &text
            .replace("bufferTimePeriod: 3h", "bufferPeriod: 3h")
            .replace("maxNumParallelBuckets: 4", "maxNumParallelBuckets: four"),
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}
