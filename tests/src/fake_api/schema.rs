//! What the real API server does with a custom resource's body before it stores it, for the
//! fake API's three CRDs (generated from the operator's types, as `crds/` is): validation
//! against the structural OpenAPI schema, pruning of unknown fields, and defaulting.
//!
//! Kept, in the order the server applies them (apiextensions-apiserver): fields the schema
//! does not declare are dropped (unless `x-kubernetes-preserve-unknown-fields`); `null` in a
//! field that is not `nullable` is dropped too; `default`s fill missing fields; then the
//! result is validated: types (`x-kubernetes-int-or-string` takes either), `enum`,
//! `required`, `minimum`/`maximum`, and the `date-time`, `int32`/`int64` formats. A refusal is
//! the server's 422 `Invalid`, each error worded as `field.ErrorList` words it, e.g.
//! `spec.taskType: Unsupported value: "Foo": supported values: "A", "B"`.
//!
//! Not kept: CEL rules (`x-kubernetes-validations`) and formats the server ignores.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// The schemas of the CRDs the fake API serves, by resource key (`minion.dev/v1alpha1/tables`).
pub struct Schemas {
    by_resource: HashMap<String, Value>,
}

impl Default for Schemas {
    fn default() -> Self {
        let mut by_resource = HashMap::new();
        for crd in minion_operator::api::crds() {
            let crd = serde_json::to_value(&crd).expect("a CRD serializes");
            let group = crd["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let plural = crd["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
                let version = v["name"].as_str().unwrap_or_default();
                by_resource.insert(
                    format!("{group}/{version}/{plural}"),
                    v["schema"]["openAPIV3Schema"].clone(),
                );
            }
        }
        Schemas { by_resource }
    }
}

impl Schemas {
    /// Prunes, defaults and validates `object` (a resource without a schema passes as is);
    /// the errors found, worded as the server words them, when it is invalid.
    pub fn admit(&self, resource: &str, object: &mut Value) -> Result<(), Vec<String>> {
        let Some(schema) = self.by_resource.get(resource) else {
            return Ok(());
        };
        let mut errors = Vec::new();
        let Some(fields) = object.as_object_mut() else {
            return Err(vec!["Invalid value: the body is not an object".into()]);
        };
        let properties = schema.get("properties").and_then(Value::as_object);
        // apiVersion, kind and metadata are the server's own business.
        fields.retain(|k, v| {
            matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                || (properties.is_some_and(|p| p.contains_key(k)) && !v.is_null())
        });
        for (key, sub) in properties.into_iter().flatten() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(v) = fields.get_mut(key) {
                walk(sub, v, key, &mut errors);
            } else if let Some(d) = sub.get("default") {
                fields.insert(key.clone(), d.clone());
            }
        }
        for r in required(schema) {
            if !fields.contains_key(r) {
                errors.push(format!("{r}: Required value"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

/// `v` as the server quotes a bad value in a message.
fn quoted(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Prunes and defaults `value` in place, then validates it against `schema` at `path`.
fn walk(schema: &Value, value: &mut Value, path: &str, errors: &mut Vec<String>) {
    if flag(schema, "x-kubernetes-preserve-unknown-fields") && schema.get("type").is_none() {
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(value.is_string() || type_name(value) == "integer") {
            errors.push(format!(
                "{path}: Invalid value: {}: {path} in body must be of type integer,string: {:?}",
                quoted(value),
                type_name(value)
            ));
        }
        return;
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else {
        return;
    };
    let actual = type_name(value);
    let fits = actual == ty || (ty == "number" && actual == "integer");
    if !fits {
        errors.push(format!(
            "{path}: Invalid value: {}: {path} in body must be of type {ty}: {actual:?}",
            quoted(value)
        ));
        return;
    }
    match value {
        Value::Object(fields) => walk_object(schema, fields, path, errors),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => check_scalar(schema, value, path, errors),
    }
}

fn walk_object(
    schema: &Value,
    fields: &mut Map<String, Value>,
    path: &str,
    errors: &mut Vec<String>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let nullable = |sub: &Value| flag(sub, "nullable");
    fields.retain(|k, v| {
        let sub = properties
            .and_then(|p| p.get(k))
            .or(additional.filter(|a| a.is_object()));
        match sub {
            Some(sub) => !v.is_null() || nullable(sub),
            None => preserve || additional == Some(&Value::Bool(true)),
        }
    });
    for (key, sub) in properties.into_iter().flatten() {
        if !fields.contains_key(key)
            && let Some(d) = sub.get("default")
        {
            fields.insert(key.clone(), d.clone());
        }
    }
    for (key, v) in fields.iter_mut() {
        let sub = properties
            .and_then(|p| p.get(key))
            .or(additional.filter(|a| a.is_object()));
        if let Some(sub) = sub
            && !v.is_null()
        {
            walk(sub, v, &format!("{path}.{key}"), errors);
        }
    }
    for r in required(schema) {
        if !fields.contains_key(r) {
            errors.push(format!("{path}.{r}: Required value"));
        }
    }
}

fn check_scalar(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(quoted).collect();
        errors.push(format!(
            "{path}: Unsupported value: {}: supported values: {}",
            quoted(value),
            list.join(", ")
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(format!(
                "{path}: Invalid value: {value}: {path} in body should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(format!(
                "{path}: Invalid value: {value}: {path} in body should be less than or equal to {max}"
            ));
        }
        let range = match schema.get("format").and_then(Value::as_str) {
            Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
            Some("int64") => Some((i64::MIN, i64::MAX)),
            _ => None,
        };
        if let Some((lo, hi)) = range
            && !value.as_i64().is_some_and(|v| (lo..=hi).contains(&v))
        {
            errors.push(format!(
                "{path}: Invalid value: {value}: {path} in body must be of type {}: \"{value}\"",
                schema["format"].as_str().unwrap_or_default()
            ));
        }
    }
    if let Some(s) = value.as_str()
        && schema.get("format").and_then(Value::as_str) == Some("date-time")
        && chrono::DateTime::parse_from_rfc3339(s).is_err()
    {
        errors.push(format!(
            "{path}: Invalid value: {s:?}: {path} in body must be of type date-time: {s:?}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RUNS: &str = "minion.dev/v1alpha1/taskruns";
    const CONFIGS: &str = "minion.dev/v1alpha1/miniontaskconfigs";

    fn run(spec: Value) -> Value {
        json!({"apiVersion": "minion.dev/v1alpha1", "kind": "TaskRun",
               "metadata": {"name": "r", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn unknown_fields_and_nulls_are_pruned_and_defaults_filled() {
        let s = Schemas::default();
        let mut cfg = json!({"apiVersion": "minion.dev/v1alpha1", "kind": "MinionTaskConfig",
            "metadata": {"name": "c", "labels": {"a": "b"}},
            "spec": {"taskType": "MergeRollupTask", "table": "t", "surprise": 1,
                     "schedule": null},
            "unknownTop": true});
        s.admit(CONFIGS, &mut cfg).unwrap();
        assert_eq!(cfg.get("unknownTop"), None);
        assert_eq!(cfg["spec"].get("surprise"), None);
        assert_eq!(cfg["spec"]["suspend"], false, "default filled: {cfg:#}");
        assert_eq!(cfg["metadata"]["labels"]["a"], "b", "metadata untouched");
    }

    #[test]
    fn bad_values_are_refused_naming_the_field_as_the_server_does() {
        let s = Schemas::default();
        let mut bad = run(json!({"taskType": "FooTask", "table": 7, "parallelism": -1}));
        let errors = s.admit(RUNS, &mut bad).unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with(
                "spec.taskType: Unsupported value: \"FooTask\": supported values: \""
            )),
            "{errors:#?}"
        );
        assert!(
            errors.contains(
                &"spec.table: Invalid value: 7: spec.table in body must be of type string: \"integer\"".to_string()
            ),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.parallelism: Invalid value: -1: spec.parallelism in body should be greater than or equal to 0")),
            "{errors:#?}"
        );
        // A config must name its task type (a run may leave it to its config).
        let mut missing = json!({"apiVersion": "minion.dev/v1alpha1", "kind": "MinionTaskConfig",
            "metadata": {"name": "c"}, "spec": {"table": "t"}});
        let errors = s.admit(CONFIGS, &mut missing).unwrap_err();
        assert!(
            errors.contains(&"spec.taskType: Required value".to_string()),
            "{errors:#?}"
        );
        let mut by_config = run(json!({"configRef": "c"}));
        s.admit(RUNS, &mut by_config).unwrap();
        let mut bad_time = run(json!({"taskType": "SegmentImportTask", "table": "t",
                                      "scheduledTime": "yesterday"}));
        let errors = s.admit(RUNS, &mut bad_time).unwrap_err();
        assert!(
            errors[0].contains("must be of type date-time"),
            "{errors:#?}"
        );
        let mut unknown_resource = json!({"spec": {"anything": 1}});
        s.admit("batch/v1/jobs", &mut unknown_resource).unwrap();
        assert_eq!(unknown_resource["spec"]["anything"], 1);
    }
}
