//! The object store of the fake API server: objects by (resource, namespace, name), a global
//! `resourceVersion` counter, and the history of changes that watches replay.
//!
//! Semantics kept (those the operator relies on): custom resources are pruned, defaulted and
//! validated against their CRD's schema on every write (see the schema module); create refuses a taken name (409
//! `AlreadyExists`); a write carrying a stale `metadata.resourceVersion` is refused (409
//! `Conflict`); writes to the main resource keep the stored status and writes to `/status`
//! change only the status; deleting an object with finalizers only sets its
//! `deletionTimestamp`, and it goes when an update removes the last one; deleting an object
//! deletes the objects it owns (background garbage collection, one level per delete,
//! recursively).
//!
//! Limits kept, with the real server's codes and messages (checked against kube-apiserver
//! v1.37.2 and etcd v3.7.0 with their default limits; `control_plane.rs` keeps checking them):
//! - an object whose stored form passes etcd's request limit, 1.5 MiB
//!   ([`MAX_STORED_OBJECT_BYTES`]; custom resources are stored as JSON, so its JSON here), is
//!   refused by etcd with `etcdserver: request is too large`, and past the etcd client's 2 MiB
//!   ([`MAX_ETCD_CLIENT_SEND_BYTES`]) by the client (`rpc error: code = ResourceExhausted desc =
//!   trying to send message larger than max (N vs. 2097152)`, N here the JSON's length). The
//!   API server passes either on as a 500 without a reason (its handlers only retry once
//!   without `managedFields`, which this store does not keep). The 413
//!   `RequestEntityTooLarge` (`Request entity too large: limit is 3145728`) is for request
//!   bodies over 3 MiB (see the server module);
//! - names and label values, a 422 `Invalid` naming each field as `apierrors.NewInvalid` words
//!   it (no `details` here): a Job's name becomes a label value of its pods
//!   (`spec.template.labels`, at most 63 bytes); namespaces (whose name is also their
//!   `kubernetes.io/metadata.name` label) and services are DNS labels (`metadata.name`, 63
//!   characters); other objects DNS subdomains (253 characters); label values 63 bytes.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::schema::Schemas;

/// `group/version/plural`, e.g. `batch/v1/jobs` or `core/v1/pods`.
pub type ResourceKey = String;

/// etcd's default `--max-request-bytes`: larger objects cannot be stored.
pub const MAX_STORED_OBJECT_BYTES: usize = 1024 * 1024 * 3 / 2;
/// The etcd client's default largest message: larger ones it does not even send.
pub const MAX_ETCD_CLIENT_SEND_BYTES: usize = 2 * 1024 * 1024;
/// The API server's limit on the body of a write request (`MaxRequestBodyBytes`).
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Longest label value, and name of a DNS-label object (and of a Job).
pub const MAX_LABEL_VALUE: usize = 63;
/// Longest name of other objects (a DNS subdomain).
pub const MAX_NAME: usize = 253;
/// Resources whose names are DNS labels.
const DNS_LABEL_NAMES: [&str; 2] = ["core/v1/namespaces", "core/v1/services"];

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

    /// What the API server answers when etcd (or its client) refuses to store an object of
    /// `bytes`.
    pub fn too_large_for_etcd(bytes: usize) -> Self {
        let message = if bytes > MAX_ETCD_CLIENT_SEND_BYTES {
            format!(
                "rpc error: code = ResourceExhausted desc = trying to send message larger than max ({bytes} vs. {MAX_ETCD_CLIENT_SEND_BYTES})"
            )
        } else {
            "etcdserver: request is too large".into()
        };
        Refusal::new(500, "", message)
    }

    /// What the API server answers to a write request whose body passes its limit.
    pub fn request_too_large() -> Self {
        Refusal::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}"),
        )
    }

    /// The `Status` object the API server returns (no `reason` when it has none).
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "code": self.code,
        });
        if !self.reason.is_empty() {
            status["reason"] = json!(self.reason);
        }
        status
    }
}

/// `Kind.group` (`Kind` for the core group) of an object of `resource`, as messages name it.
fn qualified_kind(resource: &str, object: &Value) -> String {
    let group = resource.split('/').next().unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| resource.rsplit('/').next().unwrap_or_default().to_string());
    if group == "core" || group.is_empty() {
        kind
    } else {
        format!("{kind}.{group}")
    }
}

/// The validation the real server applies to the lengths of names and label values: a 422
/// `Invalid` naming every field, as `apierrors.NewInvalid` words it.
fn check_lengths(resource: &str, object: &Value, create: bool) -> Result<(), Refusal> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut errors: Vec<String> = Vec::new();
    let invalid = |field: &str, value: &str, max: usize, unit: &str| {
        format!("{field}: Invalid value: {value:?}: must be no more than {max} {unit}")
    };
    if create {
        if resource == "batch/v1/jobs" {
            // The Job's name goes into its pod template's `batch.kubernetes.io/job-name` and
            // `job-name` labels.
            if name.len() > MAX_LABEL_VALUE {
                errors.push(invalid(
                    "spec.template.labels",
                    name,
                    MAX_LABEL_VALUE,
                    "bytes",
                ));
            }
        } else if DNS_LABEL_NAMES.contains(&resource) {
            if name.len() > MAX_LABEL_VALUE {
                errors.push(invalid(
                    "metadata.name",
                    name,
                    MAX_LABEL_VALUE,
                    "characters",
                ));
                if resource == "core/v1/namespaces" {
                    errors.push(invalid("metadata.labels", name, MAX_LABEL_VALUE, "bytes"));
                }
            }
        } else if name.len() > MAX_NAME {
            errors.push(invalid("metadata.name", name, MAX_NAME, "characters"));
        }
    }
    if let Some(labels) = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        for value in labels.values().filter_map(Value::as_str) {
            if value.len() > MAX_LABEL_VALUE {
                errors.push(invalid("metadata.labels", value, MAX_LABEL_VALUE, "bytes"));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert(e.clone()));
    let listed = match errors.as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    Err(Refusal::new(
        422,
        "Invalid",
        format!(
            "{} {name:?} is invalid: {listed}",
            qualified_kind(resource, object)
        ),
    ))
}

/// etcd's limit on what is stored: the object's JSON.
fn check_stored_size(object: &Value) -> Result<(), Refusal> {
    let bytes = serde_json::to_vec(object).map(|b| b.len()).unwrap_or(0);
    if bytes > MAX_STORED_OBJECT_BYTES {
        return Err(Refusal::too_large_for_etcd(bytes));
    }
    Ok(())
}

/// The objects and their history.
#[derive(Default)]
pub struct Store {
    rv: u64,
    /// The CRDs' schemas: custom resources are pruned, defaulted and validated on every write.
    schemas: Schemas,
    uid: u64,
    objects: BTreeMap<(ResourceKey, String, String), Value>,
    pub history: Vec<Change>,
    /// Reads served, per `(verb, resource)` with verb `list`, `get` or `watch`.
    pub reads: BTreeMap<(&'static str, String), u64>,
    /// What `pods/<name>/log` serves, by `(namespace, pod)` (a kubelet's container output).
    pub pod_logs: BTreeMap<(String, String), String>,
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

    /// The schema admission of a custom resource: a 422 `Invalid` listing every error.
    fn admit(&self, resource: &str, object: &mut Value) -> Result<(), Refusal> {
        self.schemas.admit(resource, object).map_err(|errors| {
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let listed = match errors.as_slice() {
                [one] => one.clone(),
                many => format!("[{}]", many.join(", ")),
            };
            Refusal::new(
                422,
                "Invalid",
                format!(
                    "{} {name:?} is invalid: {listed}",
                    qualified_kind(resource, object)
                ),
            )
        })
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
        self.admit(resource, &mut object)?;
        check_lengths(resource, &object, true)?;
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(namespace);
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.uid + 1));
        meta["creationTimestamp"] = json!(now);
        meta["generation"] = json!(1);
        meta["resourceVersion"] = json!((self.rv + 1).to_string());
        check_stored_size(&object)?;
        self.uid += 1;
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
            if let Some(t) = stored.pointer("/metadata/deletionTimestamp") {
                next["metadata"]["deletionTimestamp"] = t.clone();
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
        self.admit(resource, &mut result)?;
        check_lengths(resource, &result, false)?;
        result["metadata"]["resourceVersion"] = json!((self.rv + 1).to_string());
        check_stored_size(&result)?;
        let released = result.pointer("/metadata/deletionTimestamp").is_some()
            && result
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        self.bump(&mut result);
        self.objects.insert(key, result.clone());
        self.record(resource, namespace, "MODIFIED", &result);
        if released {
            // The last finalizer of a deleted object is gone: the object goes.
            self.delete(resource, namespace, name)?;
        }
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
        let Some(stored) = self.objects.get(&key) else {
            return Err(Refusal::not_found(resource, name));
        };
        let finalizers = stored
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            // Finalizers hold the object: it is only marked, and goes when the last one is
            // removed (see `update`).
            if stored.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(stored.clone());
            }
            let mut marked = stored.clone();
            marked["metadata"]["deletionTimestamp"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            marked["metadata"]["resourceVersion"] = json!((self.rv + 1).to_string());
            self.bump(&mut marked);
            self.objects.insert(key, marked.clone());
            self.record(resource, namespace, "MODIFIED", &marked);
            return Ok(marked);
        }
        let mut gone = self.objects.remove(&key).expect("checked above");
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

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: &str = "minion.dev/v1alpha1/tables";

    /// A Table the schema admits.
    fn table(name: &str) -> Value {
        json!({"apiVersion": "minion.dev/v1alpha1", "kind": "Table", "metadata": {"name": name},
               "spec": {"tableType": "OFFLINE", "uri": "s3://lake/t",
                        "schema": {"timeColumn": "ts",
                                   "columns": [{"name": "ts", "dataType": "LONG"}]}}})
    }

    fn set_status(store: &mut Store, status: &Value) -> Result<Value, Refusal> {
        store.update(TABLES, "default", "t", true, |stored| {
            let mut next = stored.clone();
            next["status"] = status.clone();
            next
        })
    }

    #[test]
    fn objects_etcd_could_not_store_are_refused_as_the_api_server_passes_etcds_refusal_on() {
        let mut store = Store::default();
        store
            .create(TABLES, "default", table("t"), false, "now")
            .unwrap();
        let status = |bytes: usize| {
            json!({"lineage": [{"id": "r-0", "taskRun": "r", "state": "IN_PROGRESS",
                "timestampMs": 0, "outputPrefix": "data/r/0", "segmentsFrom": ["x".repeat(bytes)]}]})
        };
        let err = set_status(&mut store, &status(MAX_STORED_OBJECT_BYTES)).unwrap_err();
        assert_eq!((err.code, err.reason), (500, ""));
        assert_eq!(err.message, "etcdserver: request is too large");
        assert_eq!(
            err.to_status(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "etcdserver: request is too large", "code": 500})
        );
        // Past the etcd client's limit, the client refuses to send it.
        let err = set_status(&mut store, &status(MAX_ETCD_CLIENT_SEND_BYTES)).unwrap_err();
        assert_eq!((err.code, err.reason), (500, ""));
        assert!(
            err.message.starts_with(
                "rpc error: code = ResourceExhausted desc = trying to send message larger than max ("
            ) && err.message.ends_with(" vs. 2097152)"),
            "{}",
            err.message
        );
        let rv = store.resource_version();
        assert!(
            store
                .get(TABLES, "default", "t")
                .unwrap()
                .get("status")
                .is_none()
        );
        // Just under the limit is stored.
        let stored = serde_json::to_vec(store.get(TABLES, "default", "t").unwrap())
            .unwrap()
            .len();
        set_status(&mut store, &status(MAX_STORED_OBJECT_BYTES - stored - 200)).unwrap();
        assert_eq!(
            store.resource_version(),
            rv + 1,
            "refused writes changed nothing"
        );
        let mut huge = table("h");
        huge["spec"]["uri"] = json!("x".repeat(MAX_STORED_OBJECT_BYTES));
        let err = store
            .create(TABLES, "default", huge, false, "now")
            .unwrap_err();
        assert_eq!(err.message, "etcdserver: request is too large");
        assert!(store.get(TABLES, "default", "h").is_none());
        let body = Refusal::request_too_large();
        assert_eq!((body.code, body.reason), (413, "RequestEntityTooLarge"));
        assert_eq!(body.message, "Request entity too large: limit is 3145728");
    }

    #[test]
    fn names_and_label_values_longer_than_the_real_limits_are_refused() {
        let mut store = Store::default();
        let long = |c: &str, n: usize| c.repeat(n);
        let job = |name: &str| json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}});
        store
            .create(
                "batch/v1/jobs",
                "default",
                job(&long("j", 63)),
                false,
                "now",
            )
            .unwrap();
        let err = store
            .create(
                "batch/v1/jobs",
                "default",
                job(&long("j", 64)),
                false,
                "now",
            )
            .unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        // The real server's messages, word for word.
        assert_eq!(
            err.message,
            format!(
                "Job.batch \"{0}\" is invalid: spec.template.labels: Invalid value: \"{0}\": must be no more than 63 bytes",
                long("j", 64)
            )
        );
        store
            .create(TABLES, "default", table(&long("t", 253)), false, "now")
            .unwrap();
        let mut labelled = table(&long("t", 254));
        labelled["metadata"]["labels"] = json!({"minion.dev/config": long("c", 64)});
        let err = store
            .create(TABLES, "default", labelled, false, "now")
            .unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "Table.minion.dev \"{0}\" is invalid: [metadata.name: Invalid value: \"{0}\": must be no more than 253 characters, metadata.labels: Invalid value: \"{1}\": must be no more than 63 bytes]",
                long("t", 254),
                long("c", 64)
            )
        );
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": long("n", 64)}});
        let err = store
            .create("core/v1/namespaces", "", ns, false, "now")
            .unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "Namespace \"{0}\" is invalid: [metadata.name: Invalid value: \"{0}\": must be no more than 63 characters, metadata.labels: Invalid value: \"{0}\": must be no more than 63 bytes]",
                long("n", 64)
            )
        );
        let svc =
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": long("s", 64)}});
        let err = store
            .create("core/v1/services", "default", svc, false, "now")
            .unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "Service \"{0}\" is invalid: metadata.name: Invalid value: \"{0}\": must be no more than 63 characters",
                long("s", 64)
            )
        );
        // A label set by an update is checked too.
        let err = store
            .update(TABLES, "default", &long("t", 253), false, |stored| {
                let mut next = stored.clone();
                next["metadata"]["labels"] = json!({"k": long("v", 64)});
                next
            })
            .unwrap_err();
        assert_eq!(err.code, 422);
    }
}
