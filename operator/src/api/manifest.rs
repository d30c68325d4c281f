//! Reading multi-document YAML manifests (`kubectl apply -f` style) into [`Resource`]s, with
//! errors that name the document, kind, name and field path of every unknown key or wrong
//! type.

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::{API_VERSION, Resource};

/// Keys allowed at the top level of a resource.
const TOP_LEVEL_KEYS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// Why a manifest could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("document {document}: not valid YAML: {message}")]
    Yaml { document: usize, message: String },
    #[error("document {document}: expected a mapping with apiVersion, kind, metadata and spec")]
    NotAnObject { document: usize },
    #[error(
        "document {document} ({kind} {name}): apiVersion {api_version:?} is not supported; use {API_VERSION}"
    )]
    ApiVersion {
        document: usize,
        kind: String,
        name: String,
        api_version: String,
    },
    #[error(
        "document {document}: kind {kind:?} is not supported; use Table, MinionTaskConfig or TaskRun"
    )]
    UnknownKind { document: usize, kind: String },
    /// A key or value of the resource is wrong; `path` is e.g.
    /// `spec.mergeRollupTask.levels[1].bucketTimePeriod`.
    #[error("document {document} ({kind} {name}): {path}: {message}")]
    Field {
        document: usize,
        kind: String,
        name: String,
        path: String,
        message: String,
        reason: &'static str,
    },
}

impl ManifestError {
    /// Stable reason for conditions and Events: `UnknownField`, `MissingField`,
    /// `InvalidType`, `InvalidValue`, `InvalidYaml`, `UnsupportedApiVersion`, `UnknownKind`.
    pub fn reason(&self) -> &'static str {
        match self {
            ManifestError::Yaml { .. } | ManifestError::NotAnObject { .. } => "InvalidYaml",
            ManifestError::ApiVersion { .. } => "UnsupportedApiVersion",
            ManifestError::UnknownKind { .. } => "UnknownKind",
            ManifestError::Field { reason, .. } => reason,
        }
    }
}

/// Reads every document of a multi-document YAML string; empty documents are skipped.
///
/// # Errors
/// The first document that is not valid YAML, has another apiVersion or kind, or whose keys
/// or values do not fit the resource type (unknown keys are errors, not ignored).
pub fn parse_manifests(yaml: &str) -> Result<Vec<Resource>, ManifestError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc).map_err(|e| ManifestError::Yaml {
            document,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        out.push(parse_document(document, value)?);
    }
    Ok(out)
}

fn parse_document(document: usize, value: Value) -> Result<Resource, ManifestError> {
    let map = value
        .as_mapping()
        .ok_or(ManifestError::NotAnObject { document })?;
    let text = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let kind = text("kind");
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_string();
    if !matches!(kind.as_str(), "Table" | "MinionTaskConfig" | "TaskRun") {
        return Err(ManifestError::UnknownKind { document, kind });
    }
    let api_version = text("apiVersion");
    if api_version != API_VERSION {
        return Err(ManifestError::ApiVersion {
            document,
            kind,
            name,
            api_version,
        });
    }
    for key in map.keys() {
        let key = key.as_str().unwrap_or("<non-string key>");
        if !TOP_LEVEL_KEYS.contains(&key) {
            return Err(ManifestError::Field {
                document,
                kind,
                name,
                path: key.to_string(),
                message: format!("unknown field; allowed: {}", TOP_LEVEL_KEYS.join(", ")),
                reason: "UnknownField",
            });
        }
    }
    let ctx = Ctx {
        document,
        kind: &kind,
        name: &name,
    };
    Ok(match kind.as_str() {
        "Table" => Resource::Table(ctx.typed(value)?),
        "MinionTaskConfig" => Resource::MinionTaskConfig(ctx.typed(value)?),
        _ => Resource::TaskRun(ctx.typed(value)?),
    })
}

struct Ctx<'a> {
    document: usize,
    kind: &'a str,
    name: &'a str,
}

impl Ctx<'_> {
    fn typed<T: DeserializeOwned>(&self, value: Value) -> Result<T, ManifestError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let mut path = e.path().to_string();
            let (message, reason) = describe(&e.inner().to_string());
            if let Some(field) = reason.1 {
                if path == "." || path.is_empty() {
                    path = field;
                } else if !path.ends_with(&field) {
                    path = format!("{path}.{field}");
                }
            }
            ManifestError::Field {
                document: self.document,
                kind: self.kind.to_string(),
                name: self.name.to_string(),
                path,
                message,
                reason: reason.0,
            }
        })
    }
}

/// Turns serde's message into ours, with a reason and the field it names (if any).
fn describe(serde_message: &str) -> (String, (&'static str, Option<String>)) {
    let quoted = |s: &str| s.split('`').nth(1).map(str::to_string);
    if let Some(rest) = serde_message.strip_prefix("unknown field ") {
        let field = quoted(rest);
        let allowed = rest
            .split_once("expected one of ")
            .or_else(|| rest.split_once("expected "))
            .map(|(_, a)| a.replace('`', ""))
            .unwrap_or_else(|| "no fields".to_string());
        let message = format!("unknown field; allowed: {allowed}");
        (message, ("UnknownField", field))
    } else if let Some(rest) = serde_message.strip_prefix("missing field ") {
        let field = quoted(rest);
        (
            "required field is missing".to_string(),
            ("MissingField", field),
        )
    } else if serde_message.starts_with("invalid type") {
        (serde_message.replace('`', ""), ("InvalidType", None))
    } else {
        (serde_message.replace('`', ""), ("InvalidValue", None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"
apiVersion: minion.dev/v1alpha1
kind: Table
metadata: {name: events, namespace: default}
spec:
  tableType: OFFLINE
  uri: file:///tmp/events
  schema:
    timeColumn: ts
    columns:
      - {name: ts, dataType: LONG, role: dateTime}
"#;

    #[test]
    fn multi_document_yaml_yields_every_resource_and_skips_empty_documents() {
        let yaml = format!("---\n{TABLE}\n---\n---\n{TABLE}");
        let rs = parse_manifests(&yaml).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].kind(), "Table");
        assert_eq!(rs[1].name(), "events");
    }

    #[test]
    fn unknown_nested_key_names_document_kind_name_and_path() {
        let yaml = format!(
            "{TABLE}---\n{}",
            TABLE.replace("role: dateTime", "role: dateTime, colour: red")
        );
        let err = parse_manifests(&yaml).unwrap_err();
        assert_eq!(err.reason(), "UnknownField");
        let msg = err.to_string();
        assert!(
            msg.starts_with("document 2 (Table events): spec.schema.columns[0].colour: unknown field; allowed: name, dataType, role, nullable"),
            "{msg}"
        );
    }

    #[test]
    fn missing_field_names_the_field() {
        let err = parse_manifests(&TABLE.replace("  uri: file:///tmp/events\n", "")).unwrap_err();
        assert_eq!(err.reason(), "MissingField");
        assert!(
            err.to_string()
                .contains("spec.uri: required field is missing"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_and_unknown_variant_name_the_field() {
        let err = parse_manifests(&TABLE.replace("OFFLINE", "BATCH")).unwrap_err();
        assert_eq!(err.reason(), "InvalidValue");
        assert!(
            err.to_string()
                .contains("spec.tableType: unknown variant BATCH"),
            "{err}"
        );
        let err =
            parse_manifests(&TABLE.replace("uri: file:///tmp/events", "uri: [a]")).unwrap_err();
        assert_eq!(err.reason(), "InvalidType");
        assert!(err.to_string().contains("spec.uri: invalid type"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_and_kind_and_api_version_are_refused() {
        let err = parse_manifests(&format!("{TABLE}specs: {{}}\n")).unwrap_err();
        assert_eq!(err.reason(), "UnknownField");
        let err = parse_manifests(&TABLE.replace("kind: Table", "kind: Tabel")).unwrap_err();
        assert_eq!(err.reason(), "UnknownKind");
        let err = parse_manifests(&TABLE.replace("v1alpha1", "v1")).unwrap_err();
        assert_eq!(err.reason(), "UnsupportedApiVersion");
    }
}
