//! The object store of the fake API server: objects by (resource, namespace, name), a global
//! `resourceVersion` counter, and the history of changes that watches replay.
//!
//! Semantics kept (those the operator relies on): create refuses a taken name (409
//! `AlreadyExists`); a write carrying a stale `metadata.resourceVersion` is refused (409
//! `Conflict`); writes to the main resource keep the stored status and writes to `/status`
//! change only the status; deleting an object deletes the objects it owns (background
//! garbage collection, one level per delete, recursively).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// `group/version/plural`, e.g. `batch/v1/jobs` or `core/v1/pods`.
pub type ResourceKey = String;

/// One change, as a watch sends it.
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub resource: ResourceKey,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

/// A refused request: HTTP code, Kubernetes reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        Refusal {
            code,
            reason,
            message,
        }
    }

    pub fn not_found(resource: &str, name: &str) -> Self {
        Refusal::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
    }

    /// The `Status` object the API server returns.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        })
    }
}

/// The objects and their history.
#[derive(Debug, Default)]
pub struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<(ResourceKey, String, String), Value>,
    pub history: Vec<Change>,
    /// Reads served, per `(verb, resource)` with verb `list`, `get` or `watch`.
    pub reads: BTreeMap<(&'static str, String), u64>,
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn rv_of(v: &Value) -> Option<&str> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// Whether `selector` (`k=v,k2=v2`, equality only) matches the object's labels.
pub fn selects(selector: Option<&str>, object: &Value) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        let v = v.trim_start_matches('=');
        object
            .pointer("/metadata/labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            == Some(v)
    })
}

impl Store {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn record(&mut self, resource: &str, namespace: &str, kind: &'static str, object: &Value) {
        self.history.push(Change {
            rv: self.rv,
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            kind,
            object: object.clone(),
        });
    }

    fn bump(&mut self, object: &mut Value) {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        ))
    }

    /// Objects of `resource` in `namespace` (all namespaces when `None`).
    pub fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, ns, _), v)| {
                r == resource && namespace.is_none_or(|n| n == ns) && selects(selector, v)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// POST: stores a new object (a `generateName` gets a suffix); status is dropped when
    /// the resource has a status subresource.
    ///
    /// # Errors
    /// 409 `AlreadyExists` when the name is taken.
    pub fn create(
        &mut self,
        resource: &str,
        namespace: &str,
        mut object: Value,
        keep_status: bool,
        now: &str,
    ) -> Result<Value, Refusal> {
        if object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_none()
        {
            let prefix = object
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .unwrap_or("obj-")
                .to_string();
            object["metadata"]["name"] = json!(format!("{prefix}{:05}", self.uid + 1));
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = (resource.to_string(), namespace.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(Refusal::new(
                409,
                "AlreadyExists",
                format!("{resource} \"{name}\" already exists"),
            ));
        }
        if !keep_status && let Some(o) = object.as_object_mut() {
            o.remove("status");
        }
        self.uid += 1;
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(namespace);
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.uid));
        meta["creationTimestamp"] = json!(now);
        meta["generation"] = json!(1);
        self.bump(&mut object);
        self.objects.insert(key, object.clone());
        self.record(resource, namespace, "ADDED", &object);
        Ok(object)
    }

    /// PUT or PATCH result: `update` computes the new object from the stored one. With
    /// `status_only`, only the new status is kept; otherwise the stored status is kept.
    ///
    /// # Errors
    /// 404 for a missing object; 409 `Conflict` when `update`'s result carries a stale
    /// `resourceVersion`.
    pub fn update(
        &mut self,
        resource: &str,
        namespace: &str,
        name: &str,
        status_only: bool,
        update: impl FnOnce(&Value) -> Value,
    ) -> Result<Value, Refusal> {
        let key = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let Some(stored) = self.objects.get(&key).cloned() else {
            return Err(Refusal::not_found(resource, name));
        };
        let mut next = update(&stored);
        if let Some(rv) = rv_of(&next)
            && Some(rv) != rv_of(&stored)
        {
            return Err(Refusal::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
            ));
        }
        let mut result = stored.clone();
        if status_only {
            match next.get("status") {
                Some(s) => result["status"] = s.clone(),
                None => {
                    result.as_object_mut().map(|o| o.remove("status"));
                }
            }
        } else {
            // Identity fields stay; the rest comes from the new object, status excepted.
            for field in ["uid", "creationTimestamp", "namespace", "name"] {
                next["metadata"][field] = stored["metadata"][field].clone();
            }
            match stored.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    next.as_object_mut().map(|o| o.remove("status"));
                }
            }
            if next.get("spec") != stored.get("spec") {
                let g = stored["metadata"]["generation"].as_i64().unwrap_or(1);
                next["metadata"]["generation"] = json!(g + 1);
            }
            result = next;
        }
        self.bump(&mut result);
        self.objects.insert(key, result.clone());
        self.record(resource, namespace, "MODIFIED", &result);
        Ok(result)
    }

    /// DELETE, and (background propagation) every object owned by the deleted one.
    ///
    /// # Errors
    /// 404 for a missing object.
    pub fn delete(
        &mut self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, Refusal> {
        let key = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let Some(mut gone) = self.objects.remove(&key) else {
            return Err(Refusal::not_found(resource, name));
        };
        self.bump(&mut gone);
        self.record(resource, namespace, "DELETED", &gone);
        let uid = gone["metadata"]["uid"].clone();
        let owned: Vec<(ResourceKey, String, String)> = self
            .objects
            .iter()
            .filter(|((_, ns, _), v)| {
                ns == namespace
                    && v.pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (r, ns, n) in owned {
            let _ = self.delete(&r, &ns, &n);
        }
        Ok(gone)
    }
}
