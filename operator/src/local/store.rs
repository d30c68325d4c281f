//! Resources in a state directory, one object per file:
//! `<state>/resources/<plural>/<namespace>/<name>.yaml` holds what `minion apply` wrote
//! (apiVersion, kind, metadata, spec) and `<name>.status.yaml` beside it the status the
//! control loop wrote. Apply touches only the first, the loop only the second, so the two can
//! run at once. Every write is atomic (temp file + rename).
//!
//! A status is written as JSON (which is YAML too): the loop reads and writes it on every
//! step, and a Table's status holds its lineage, which YAML parses an order of magnitude
//! slower. A status file written as YAML by an older version is still read.
//!
//! Names and namespaces become path components only after [`check_name`] and
//! [`check_namespace`] accept them (Kubernetes' DNS-1123 rules: no `/`, no `..`, nothing
//! that could leave the state directory).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::LocalError;
use crate::api::{
    MinionTaskConfig, MinionTaskConfigStatus, Resource, Table, TableStatus, TaskRun, TaskRunStatus,
};
use crate::control::{k8s_time, name_of, namespace_of};

/// A kind stored in the state directory.
pub trait Stored: Serialize + DeserializeOwned + Clone + Send + 'static {
    const KIND: &'static str;
    const PLURAL: &'static str;
    type Status: Serialize + DeserializeOwned + Clone + PartialEq + Send;
    fn meta(&self) -> &kube::api::ObjectMeta;
    fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta;
    fn status_mut(&mut self) -> &mut Option<Self::Status>;
    /// The spec as a JSON value, to tell whether an apply changed it.
    fn spec_value(&self) -> serde_json::Value;
}

macro_rules! stored {
    ($t:ty, $kind:literal, $plural:literal, $status:ty) => {
        impl Stored for $t {
            const KIND: &'static str = $kind;
            const PLURAL: &'static str = $plural;
            type Status = $status;
            fn meta(&self) -> &kube::api::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
                &mut self.metadata
            }
            fn status_mut(&mut self) -> &mut Option<$status> {
                &mut self.status
            }
            fn spec_value(&self) -> serde_json::Value {
                serde_json::to_value(&self.spec).unwrap_or_default()
            }
        }
    };
}

stored!(Table, "Table", "tables", TableStatus);
stored!(
    MinionTaskConfig,
    "MinionTaskConfig",
    "miniontaskconfigs",
    MinionTaskConfigStatus
);
stored!(TaskRun, "TaskRun", "taskruns", TaskRunStatus);

/// Writes `bytes` to `path` atomically: a temp file in the same directory, then a rename.
///
/// # Errors
/// The directory or file cannot be written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| LocalError::io(dir, e))?;
    // At most 64 bytes of the file's name: the temp name must fit the 255 bytes of a file name.
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("f");
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        &name[..end],
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| LocalError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| LocalError::io(path, e))
}

const MAX_NAME: usize = 253;
const MAX_NAMESPACE: usize = 63;
/// A stored status: JSON as written now, or YAML as written by older versions.
fn parse_status<S: DeserializeOwned>(text: &str) -> Result<S, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }
}

/// Longest name a state directory stores: `<name>.status.yaml` is one file name (≤ 255 bytes).
const MAX_STORED_NAME: usize = 255 - ".status.yaml".len();

/// Why `value` is not a DNS-1123 label (lowercase alphanumerics and `-`, starting and ending
/// alphanumeric), if it is not.
fn label_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "{c:?} is not allowed: lowercase letters, digits, '-' and '.' only"
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Some("must start and end with a lowercase letter or digit".into());
    }
    None
}

/// Whether `name` is a valid Kubernetes object name (a DNS-1123 subdomain: at most 253
/// characters, dot-separated DNS-1123 labels), so it is safe as a file name: no `/`, no
/// `..`, no leading `.`.
///
/// # Errors
/// [`LocalError::InvalidName`] naming `kind`, `metadata.name` and the problem.
pub fn check_name(kind: &'static str, name: &str) -> Result<(), LocalError> {
    let problem = if name.len() > MAX_NAME {
        Some(format!("longer than {MAX_NAME} characters"))
    } else if name.is_empty() {
        Some("must not be empty".into())
    } else {
        name.split('.').find_map(|label| {
            label_problem(label).map(|p| {
                if label.is_empty() {
                    "'.' must separate non-empty parts (no \"..\", no leading or trailing '.')"
                        .to_string()
                } else {
                    p
                }
            })
        })
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(LocalError::InvalidName {
            kind,
            field: "metadata.name",
            value: name.into(),
            problem: format!("not a valid name (DNS-1123 subdomain): {problem}"),
        }),
    }
}

/// Whether `namespace` is a valid Kubernetes namespace (a DNS-1123 label of at most 63
/// characters).
///
/// # Errors
/// [`LocalError::InvalidName`] naming `kind`, `metadata.namespace` and the problem.
pub fn check_namespace(kind: &'static str, namespace: &str) -> Result<(), LocalError> {
    let problem = if namespace.len() > MAX_NAMESPACE {
        Some(format!("longer than {MAX_NAMESPACE} characters"))
    } else {
        label_problem(namespace).map(|p| p.replace(", '.'", ""))
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(LocalError::InvalidName {
            kind,
            field: "metadata.namespace",
            value: namespace.into(),
            problem: format!("not a valid namespace (DNS-1123 label): {problem}"),
        }),
    }
}

/// The resources of one state directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// What `apply` did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `namespace`, and `name` checked: nothing reaches a path unchecked.
    fn dir<T: Stored>(&self, namespace: &str, name: &str) -> Result<PathBuf, LocalError> {
        check_namespace(T::KIND, namespace)?;
        check_name(T::KIND, name)?;
        if name.len() > MAX_STORED_NAME {
            return Err(LocalError::InvalidName {
                kind: T::KIND,
                field: "metadata.name",
                value: name.into(),
                problem: format!(
                    "longer than {MAX_STORED_NAME} characters, the longest a state directory \
                     stores (as `<name>.status.yaml`, a file name of at most 255 bytes)"
                ),
            });
        }
        Ok(self.root.join("resources").join(T::PLURAL).join(namespace))
    }

    fn spec_path<T: Stored>(&self, namespace: &str, name: &str) -> Result<PathBuf, LocalError> {
        Ok(self.dir::<T>(namespace, name)?.join(format!("{name}.yaml")))
    }

    fn status_path<T: Stored>(&self, namespace: &str, name: &str) -> Result<PathBuf, LocalError> {
        Ok(self
            .dir::<T>(namespace, name)?
            .join(format!("{name}.status.yaml")))
    }

    /// One object with its status, if it exists.
    ///
    /// # Errors
    /// The files exist but cannot be read or parsed.
    pub fn get<T: Stored>(&self, namespace: &str, name: &str) -> Result<Option<T>, LocalError> {
        let path = self.spec_path::<T>(namespace, name)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LocalError::io(&path, e)),
        };
        let mut obj: T = serde_yaml::from_str(&text).map_err(|e| LocalError::parse(&path, e))?;
        *obj.status_mut() = None;
        let status_path = self.status_path::<T>(namespace, name)?;
        match std::fs::read_to_string(&status_path) {
            Ok(t) => {
                *obj.status_mut() =
                    Some(parse_status(&t).map_err(|e| LocalError::parse(&status_path, e))?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LocalError::io(&status_path, e)),
        }
        Ok(Some(obj))
    }

    /// Every object of a kind, sorted by namespace and name.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn list<T: Stored>(&self) -> Result<Vec<T>, LocalError> {
        let base = self.root.join("resources").join(T::PLURAL);
        let mut out = Vec::new();
        let Ok(namespaces) = std::fs::read_dir(&base) else {
            return Ok(out);
        };
        let mut names = Vec::new();
        for ns in namespaces.flatten() {
            let namespace = ns.file_name().to_string_lossy().to_string();
            for f in std::fs::read_dir(ns.path()).map_err(|e| LocalError::io(&ns.path(), e))? {
                let f = f.map_err(|e| LocalError::io(&ns.path(), e))?;
                let file = f.file_name().to_string_lossy().to_string();
                if let Some(name) = file.strip_suffix(".yaml")
                    && !name.ends_with(".status")
                    && !file.starts_with('.')
                {
                    if let Err(e) =
                        check_namespace(T::KIND, &namespace).and(check_name(T::KIND, name))
                    {
                        tracing::warn!(path = %f.path().display(), error = %e, "skipping a file that names no valid object");
                        continue;
                    }
                    names.push((namespace.clone(), name.to_string()));
                }
            }
        }
        names.sort();
        for (namespace, name) in names {
            if let Some(obj) = self.get::<T>(&namespace, &name)? {
                out.push(obj);
            }
        }
        Ok(out)
    }

    /// Writes the spec file of `obj` (metadata and spec, never status), keeping the
    /// creation time, uid and generation of an existing object (generation + 1 when the
    /// spec changed).
    ///
    /// # Errors
    /// The state directory cannot be written.
    pub fn put<T: Stored>(&self, obj: &T, now: DateTime<Utc>) -> Result<Applied, LocalError> {
        let namespace = namespace_of(obj.meta());
        let name = name_of(obj.meta());
        check_namespace(T::KIND, &namespace)?;
        check_name(T::KIND, &name)?;
        let existing = self.get::<T>(&namespace, &name)?;
        let mut obj = obj.clone();
        *obj.status_mut() = None;
        let meta = obj.meta_mut();
        meta.namespace = Some(namespace.clone());
        let applied = match &existing {
            None => {
                meta.creation_timestamp = Some(k8s_time(now));
                meta.uid = Some(uuid::Uuid::new_v4().to_string());
                meta.generation = Some(1);
                Applied::Created
            }
            Some(old) => {
                let om = old.meta();
                meta.creation_timestamp = om.creation_timestamp.clone();
                meta.uid = om.uid.clone();
                let changed = old.spec_value() != obj.spec_value();
                let generation = om.generation.unwrap_or(1);
                obj.meta_mut().generation = Some(generation + i64::from(changed));
                let same_meta = old.meta().labels == obj.meta().labels
                    && old.meta().annotations == obj.meta().annotations;
                if changed || !same_meta {
                    Applied::Configured
                } else {
                    return Ok(Applied::Unchanged);
                }
            }
        };
        let yaml =
            serde_yaml::to_string(&obj).map_err(|e| LocalError::parse(Path::new(&name), e))?;
        write_atomic(&self.spec_path::<T>(&namespace, &name)?, yaml.as_bytes())?;
        Ok(applied)
    }

    /// Replaces the status of an existing object.
    ///
    /// # Errors
    /// `NotFound` when the object does not exist; write failures.
    pub fn put_status<T: Stored>(
        &self,
        namespace: &str,
        name: &str,
        status: &T::Status,
    ) -> Result<(), LocalError> {
        if !self.spec_path::<T>(namespace, name)?.exists() {
            return Err(LocalError::NotFound {
                kind: T::KIND,
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        let json =
            serde_json::to_vec_pretty(status).map_err(|e| LocalError::parse(Path::new(name), e))?;
        write_atomic(&self.status_path::<T>(namespace, name)?, &json)
    }

    /// Deletes an object and its status.
    ///
    /// # Errors
    /// Files that exist but cannot be removed.
    pub fn delete<T: Stored>(&self, namespace: &str, name: &str) -> Result<(), LocalError> {
        for path in [
            self.status_path::<T>(namespace, name)?,
            self.spec_path::<T>(namespace, name)?,
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LocalError::io(&path, e)),
            }
        }
        Ok(())
    }

    /// Stores one applied resource.
    ///
    /// # Errors
    /// As [`Store::put`].
    pub fn put_resource(&self, r: &Resource, now: DateTime<Utc>) -> Result<Applied, LocalError> {
        match r {
            Resource::Table(t) => self.put(t, now),
            Resource::MinionTaskConfig(c) => self.put(c, now),
            Resource::TaskRun(t) => self.put(t, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_1123_subdomains_and_namespaces_labels() {
        for ok in ["a", "events-offline", "a.b-c.0", &"a".repeat(253)] {
            check_name("Table", ok).unwrap();
        }
        for bad in [
            "",
            "..",
            ".",
            "../../etc",
            "a/b",
            "/abs",
            "Events",
            "a_b",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a\0b",
            &"a".repeat(254),
        ] {
            let e = check_name("Table", bad).unwrap_err();
            assert_eq!(e.reason(), "InvalidName", "{bad:?}");
            assert!(e.to_string().contains("metadata.name"), "{e}");
        }
        check_namespace("Table", "default").unwrap();
        for bad in ["", "a.b", "..", "a/b", "Default", &"a".repeat(64)] {
            let e = check_namespace("Table", bad).unwrap_err();
            assert!(e.to_string().contains("metadata.namespace"), "{e}");
        }
    }

    #[test]
    fn the_store_refuses_a_bad_name_before_touching_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state"));
        assert!(store.get::<Table>("default", "../../x").is_err());
        assert!(store.get::<Table>("..", "x").is_err());
        assert!(store.delete::<Table>("default", "a/b").is_err());
        let name = "a".repeat(250);
        let e = store.get::<Table>("default", &name).unwrap_err();
        assert!(e.to_string().contains("255 bytes"), "{e}");
        assert!(!dir.path().join("state").exists());
    }

    #[test]
    fn a_status_reads_back_as_written_and_one_written_as_yaml_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state"));
        let yaml = "apiVersion: minion.dev/v1alpha1\nkind: Table\nmetadata: {name: t, namespace: default}\nspec:\n  tableType: OFFLINE\n  uri: file:///tmp/t\n  schema:\n    timeColumn: ts\n    columns:\n      - {name: ts, dataType: LONG, role: dateTime}\n";
        let Resource::Table(table) = crate::api::parse_manifests(yaml).unwrap().remove(0) else {
            panic!("a Table");
        };
        let now = DateTime::<Utc>::from_timestamp_millis(1_700_000_000_000).unwrap();
        store.put(&table, now).unwrap();
        let status = TableStatus {
            segments: Some(12),
            rows: Some(3_400),
            ..TableStatus::default()
        };
        store.put_status::<Table>("default", "t", &status).unwrap();
        let read = store.get::<Table>("default", "t").unwrap().unwrap();
        assert_eq!(read.status.as_ref(), Some(&status));

        // The form older versions wrote.
        let path = store.status_path::<Table>("default", "t").unwrap();
        std::fs::write(&path, serde_yaml::to_string(&status).unwrap()).unwrap();
        let read = store.get::<Table>("default", "t").unwrap().unwrap();
        assert_eq!(read.status, Some(status));
    }
}
