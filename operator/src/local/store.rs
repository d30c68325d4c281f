//! Resources in a state directory, one object per file:
//! `<state>/resources/<plural>/<namespace>/<name>.yaml` holds what `minion apply` wrote
//! (apiVersion, kind, metadata, spec) and `<name>.status.yaml` beside it the status the
//! control loop wrote. Apply touches only the first, the loop only the second, so the two can
//! run at once. Every write is atomic (temp file + rename).

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
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| LocalError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| LocalError::io(path, e))
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

    fn dir<T: Stored>(&self, namespace: &str) -> PathBuf {
        self.root.join("resources").join(T::PLURAL).join(namespace)
    }

    fn spec_path<T: Stored>(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir::<T>(namespace).join(format!("{name}.yaml"))
    }

    fn status_path<T: Stored>(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir::<T>(namespace).join(format!("{name}.status.yaml"))
    }

    /// One object with its status, if it exists.
    ///
    /// # Errors
    /// The files exist but cannot be read or parsed.
    pub fn get<T: Stored>(&self, namespace: &str, name: &str) -> Result<Option<T>, LocalError> {
        let path = self.spec_path::<T>(namespace, name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LocalError::io(&path, e)),
        };
        let mut obj: T = serde_yaml::from_str(&text).map_err(|e| LocalError::parse(&path, e))?;
        *obj.status_mut() = None;
        let status_path = self.status_path::<T>(namespace, name);
        match std::fs::read_to_string(&status_path) {
            Ok(t) => {
                *obj.status_mut() =
                    Some(serde_yaml::from_str(&t).map_err(|e| LocalError::parse(&status_path, e))?)
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
        write_atomic(&self.spec_path::<T>(&namespace, &name), yaml.as_bytes())?;
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
        if !self.spec_path::<T>(namespace, name).exists() {
            return Err(LocalError::NotFound {
                kind: T::KIND,
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        let yaml =
            serde_yaml::to_string(status).map_err(|e| LocalError::parse(Path::new(name), e))?;
        write_atomic(&self.status_path::<T>(namespace, name), yaml.as_bytes())
    }

    /// Deletes an object and its status.
    ///
    /// # Errors
    /// Files that exist but cannot be removed.
    pub fn delete<T: Stored>(&self, namespace: &str, name: &str) -> Result<(), LocalError> {
        for path in [
            self.status_path::<T>(namespace, name),
            self.spec_path::<T>(namespace, name),
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
