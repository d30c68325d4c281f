//! An in-process fake of the Kubernetes API server, enough for the operator's `kube::Client`
//! JSON over HTTP/1.1 on 127.0.0.1, no auth, any resource under
//! `/api/v1/…` and `/apis/<group>/<version>/…`.
//!
//! Served: create (POST; 409 `AlreadyExists`), get, list (all namespaces too,
//! with `labelSelector` equality terms and the list's `resourceVersion`), replace (PUT),
//! patch (merge, strategic merge taken as merge, server-side apply: a merge on the main
//! resource, creating it when absent, the whole status on `/status` — one field manager owns
//! it), cluster-scoped resources (`/apis/<group>/<version>/<plural>/<name>`), delete (background
//! garbage collection of owned objects), `resourceVersion` conflicts (409 on a stale PUT or
//! patch that carries one), and `?watch=true` streams of newline-delimited `WatchEvent`s
//! (from a `resourceVersion`, or the current objects first). Not served: discovery,
//! field selectors, JSON patch, bookmarks.
//!
//! Limits as the real server's (see [`store`]): a write body over 3 MiB is refused with 413
//! `RequestEntityTooLarge`, an object over etcd's 1.5 MiB with 500 `etcdserver: request is too
//! large`, names and label values over their lengths with 422 `Invalid`.
//!
//! Tests read and change objects directly through [`FakeApi`]'s methods too.

pub mod kubelet;
pub mod schema;
pub mod store;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

pub use store::{Change, Refusal, Store};

type Body = BoxBody<Bytes, Infallible>;

/// A running fake API server; stops when dropped.
pub struct FakeApi {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where a request goes.
#[derive(Debug)]
struct Target {
    /// `group/version/plural` (`core/v1/pods` for the core group).
    resource: String,
    api_version: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("core", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(*name), None),
        _ => return None,
    };
    Some(Target {
        resource: format!("{group}/{version}/{plural}"),
        api_version: if group == "core" {
            version.to_string()
        } else {
            format!("{group}/{version}")
        },
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    })
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .expect("response")
}

fn refused(r: &Refusal) -> Response<Body> {
    json_response(r.code, &r.to_status())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl FakeApi {
    /// Starts the server on an ephemeral port of 127.0.0.1.
    ///
    /// # Panics
    /// The port cannot be bound.
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let store = Arc::new(Mutex::new(Store::default()));
        let shared = store.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let store = store.clone();
                        async move { Ok::<_, Infallible>(handle(store, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeApi { addr, store, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Client` for this server (no auth, namespace `default`).
    ///
    /// # Panics
    /// The client cannot be built.
    pub fn client(&self) -> kube::Client {
        // rustls needs one process-wide crypto provider before any client is built.
        minion_operator::catalog::install_crypto_provider();
        let config = kube::Config::new(self.url().parse().expect("server url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Objects of `resource` (`batch/v1/jobs`, `minion.dev/v1alpha1/taskruns`, …).
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.store
            .lock()
            .expect("store")
            .list(resource, namespace, None)
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.store
            .lock()
            .expect("store")
            .get(resource, namespace, name)
            .cloned()
    }

    /// Creates an object as a POST would.
    ///
    /// # Errors
    /// The refusal a POST would get.
    pub fn create(&self, resource: &str, namespace: &str, object: Value) -> Result<Value, Refusal> {
        self.store
            .lock()
            .expect("store")
            .create(resource, namespace, object, false, &now())
    }

    /// Sets what `GET …/pods/<pod>/log` returns (the output a kubelet would serve).
    pub fn set_pod_log(&self, namespace: &str, pod: &str, text: &str) {
        self.store
            .lock()
            .expect("store")
            .pod_logs
            .insert((namespace.to_string(), pod.to_string()), text.to_string());
    }

    /// How many `verb` (`list`, `get` or `watch`) requests `resource` has served.
    pub fn reads(&self, verb: &str, resource: &str) -> u64 {
        let s = self.store.lock().expect("store");
        s.reads
            .iter()
            .filter(|((v, r), _)| *v == verb && r == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every change so far (what a watch from resourceVersion 0 replays).
    pub fn history(&self) -> Vec<Change> {
        self.store.lock().expect("store").history.clone()
    }
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

async fn handle(store: Arc<Mutex<Store>>, req: Request<Incoming>) -> Response<Body> {
    let Some(t) = parse_path(req.uri().path()) else {
        return refused(&Refusal::not_found("path", req.uri().path()));
    };
    let q = query(&req);
    let param = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return json_response(400, &json!({"message": e.to_string()})),
    };
    if matches!(method, Method::POST | Method::PUT | Method::PATCH)
        && body.len() > store::MAX_REQUEST_BODY_BYTES
    {
        return refused(&Refusal::request_too_large());
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let ns = t.namespace.clone().unwrap_or_default();
    let status_only = t.subresource.as_deref() == Some("status");
    if method == Method::GET {
        let verb = match (&t.name, param("watch").as_deref()) {
            (None, Some("true" | "1")) => "watch",
            (None, _) => "list",
            (Some(_), _) => "get",
        };
        *store
            .lock()
            .expect("store")
            .reads
            .entry((verb, t.resource.clone()))
            .or_default() += 1;
    }
    if method == Method::GET && t.subresource.as_deref() == Some("log") {
        let s = store.lock().expect("store");
        let name = t.name.clone().unwrap_or_default();
        return match s.pod_logs.get(&(ns.clone(), name.clone())) {
            Some(text) if s.get(&t.resource, &ns, &name).is_some() => Response::builder()
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from(text.clone())).boxed())
                .expect("response"),
            _ => refused(&Refusal::not_found(&t.resource, &name)),
        };
    }
    let result = match (&method, &t.name) {
        (&Method::GET, None) if matches!(param("watch").as_deref(), Some("true" | "1")) => {
            return watch(
                store,
                t,
                param("resourceVersion"),
                param("labelSelector"),
                param("timeoutSeconds"),
            );
        }
        (&Method::GET, None) => {
            let s = store.lock().expect("store");
            let items = s.list(
                &t.resource,
                t.namespace.as_deref(),
                param("labelSelector").as_deref(),
            );
            Ok(json!({
                "apiVersion": t.api_version, "kind": "List",
                "metadata": {"resourceVersion": s.resource_version().to_string()},
                "items": items,
            }))
        }
        (&Method::GET, Some(name)) => store
            .lock()
            .expect("store")
            .get(&t.resource, &ns, name)
            .cloned()
            .ok_or_else(|| Refusal::not_found(&t.resource, name)),
        (&Method::POST, None) => match parsed {
            Some(obj) => store
                .lock()
                .expect("store")
                .create(&t.resource, &ns, obj, false, &now()),
            None => Err(bad_body()),
        },
        (&Method::PUT, Some(name)) => match parsed {
            Some(obj) => {
                store
                    .lock()
                    .expect("store")
                    .update(&t.resource, &ns, name, status_only, |_| obj)
            }
            None => Err(bad_body()),
        },
        (&Method::PATCH, Some(name)) => match parsed {
            _ if content_type.contains("json-patch") => Err(Refusal {
                code: 415,
                reason: "UnsupportedMediaType",
                message: "JSON patch is not served by the fake API".into(),
            }),
            Some(patch)
                if content_type.contains("apply-patch") && !status_only && {
                    let s = store.lock().expect("store");
                    s.get(&t.resource, &ns, name).is_none()
                } =>
            {
                // Server-side apply creates what does not exist yet.
                store
                    .lock()
                    .expect("store")
                    .create(&t.resource, &ns, patch, false, &now())
            }
            Some(patch) => {
                let apply = content_type.contains("apply-patch");
                store
                    .lock()
                    .expect("store")
                    .update(&t.resource, &ns, name, status_only, |stored| {
                        let mut next = stored.clone();
                        if let Some(rv) = stored.pointer("/metadata/resourceVersion") {
                            next["metadata"]["resourceVersion"] = rv.clone();
                        }
                        if apply && status_only {
                            // One field manager owns the whole status: applying replaces it.
                            next["status"] = patch.get("status").cloned().unwrap_or(Value::Null);
                            if let Some(rv) = patch.pointer("/metadata/resourceVersion") {
                                next["metadata"]["resourceVersion"] = rv.clone();
                            }
                        } else {
                            store::merge(&mut next, &patch);
                        }
                        next
                    })
            }
            None => Err(bad_body()),
        },
        (&Method::DELETE, Some(name)) => {
            store.lock().expect("store").delete(&t.resource, &ns, name)
        }
        _ => Err(Refusal {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("{method} {}", t.resource),
        }),
    };
    match result {
        Ok(v) => json_response(if method == Method::POST { 201 } else { 200 }, &v),
        Err(r) => refused(&r),
    }
}

fn bad_body() -> Refusal {
    Refusal {
        code: 400,
        reason: "BadRequest",
        message: "the body is not a JSON object".into(),
    }
}

/// A stream of `WatchEvent` lines: the current objects first when no resourceVersion is
/// given (or `0`), then every change after it, until `timeoutSeconds` (default 300 s) or
/// the client goes away.
fn watch(
    store: Arc<Mutex<Store>>,
    t: Target,
    rv: Option<String>,
    selector: Option<String>,
    timeout: Option<String>,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let start: u64 = rv.and_then(|v| v.parse().ok()).unwrap_or(0);
    let timeout = Duration::from_secs(timeout.and_then(|v| v.parse().ok()).unwrap_or(300));
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let line = |kind: &str, object: &Value| {
            Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
        };
        let mut sent = start;
        if start == 0 {
            let (items, now_rv) = {
                let s = store.lock().expect("store");
                (
                    s.list(&t.resource, t.namespace.as_deref(), selector.as_deref()),
                    s.resource_version(),
                )
            };
            for item in &items {
                if tx.send(line("ADDED", item)).await.is_err() {
                    return;
                }
            }
            sent = now_rv;
        }
        while tokio::time::Instant::now() < deadline {
            let (changes, latest): (Vec<Change>, u64) = {
                let s = store.lock().expect("store");
                let changes = s
                    .history
                    .iter()
                    .filter(|c| {
                        c.rv > sent
                            && c.resource == t.resource
                            && t.namespace.as_deref().is_none_or(|n| n == c.namespace)
                            && store::selects(selector.as_deref(), &c.object)
                    })
                    .cloned()
                    .collect();
                (changes, s.resource_version())
            };
            for c in changes {
                if tx.send(line(c.kind, &c.object)).await.is_err() {
                    return;
                }
            }
            sent = sent.max(latest);
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .expect("response")
}
