//! Storage settings per Table on the Kubernetes backend (in-process fake API): two namespaces
//! each hold a Table on the SAME bucket, each naming its own Secret with its own endpoint and
//! access key. Each Table's catalog is reached with its own Secret's settings only (each
//! endpoint is a recording proxy that sees which access key signed which request), each run's
//! Job gets its own namespace's Secret, and a Secret without the opt-in label is refused with
//! `SecretNotAllowed` naming `spec.storageSecretRef` and the fix.
//!
//! The proxies forward to the S3 test server when `MINION_TEST_S3_ENDPOINT` is set (then both
//! Tables also become Ready); without it they answer every request `403 Forbidden`, which is
//! enough to see who sent what.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, PostParams};
use minion_e2e::fake_api::FakeApi;
use minion_operator::api::{Resource, Table, TaskRun, parse_manifests};
use minion_operator::catalog::install_crypto_provider;
use minion_operator::control::gather::Catalogs;
use minion_operator::control::{Backend, LaunchRequest, tables};
use minion_operator::k8s::{KubeBackend, WorkerDefaults, WriteGate};
use serde_json::{Value, json};

const TABLES: &str = "minion.dev/v1alpha1/tables";
const LABEL: &str = "minion.dev/storage-credentials";

/// What one endpoint saw: (access key, request target) per request.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Records every request's access key (`Credential=<key>/…`) and target from a chunk of
/// client bytes.
fn record(seen: &Seen, chunk: &[u8]) {
    let text = String::from_utf8_lossy(chunk);
    let mut target = None;
    for line in text.split("\r\n") {
        let mut words = line.split(' ');
        if let (Some(method), Some(t)) = (words.next(), words.next())
            && ["GET", "PUT", "HEAD", "POST", "DELETE"].contains(&method)
            && line.ends_with("HTTP/1.1")
        {
            target = Some(t.to_string());
        }
        if let Some(at) = line.find("Credential=") {
            let key = line[at + "Credential=".len()..]
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            if let Some(t) = target.take() {
                seen.lock().unwrap().push((key, t));
            }
        }
    }
}

/// A recording S3 endpoint: forwards to `upstream` when given, else answers 403 to all.
async fn endpoint(upstream: Option<String>) -> (String, Seen) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = recorded.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let (mut from_client, mut to_client) = client.into_split();
                let Some(upstream) = upstream else {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut head = Vec::new();
                    while let Ok(n) = from_client.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                        if head.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    record(&seen, &head);
                    let _ = to_client
                        .write_all(
                            b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = from_client.read(&mut buf).await {
                    if n == 0 || to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    record(&seen, &buf[..n]);
                }
            });
        }
    });
    (url, seen)
}

fn secret(name: &str, endpoint: &str, key: &str, labelled: bool) -> Value {
    let mut s = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {
            "AWS_ENDPOINT": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": format!("{key}-secret"),
            "AWS_REGION": "us-east-1",
        },
    });
    if labelled {
        s["metadata"]["labels"] = json!({LABEL: "true"});
    }
    s
}

/// The sample OFFLINE Table in `ns`, at `uri`, naming the Secret `secret`.
fn table(ns: &str, uri: &str, secret: &str) -> Table {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/table-events-offline.yaml"),
    )
    .unwrap()
    .replace(
        "spec:\n  tableType:",
        &format!("spec:\n  storageSecretRef: {{name: {secret}}}\n  tableType:"),
    )
    .replace("file:///tmp/minion/events_offline", uri)
    .replace("namespace: default", &format!("namespace: {ns}"));
    let Resource::Table(t) = parse_manifests(&text).unwrap().remove(0) else {
        panic!("not a Table");
    };
    t
}

/// Reconciles the Table `ns`/events-offline as read from the API; returns its Ready condition.
async fn reconcile(
    api: &FakeApi,
    backend: &KubeBackend,
    catalogs: &mut Catalogs,
    ns: &str,
) -> Value {
    let read = |ns: &str| -> Table {
        serde_json::from_value(api.get(TABLES, ns, "events-offline").unwrap()).unwrap()
    };
    let t = read(ns);
    let all = vec![read("tenant-a"), read("tenant-b")];
    tables::reconcile(backend, catalogs, &t, &all, &[], chrono::Utc::now())
        .await
        .unwrap();
    api.get(TABLES, ns, "events-offline").unwrap()["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone()
}

fn keys_and_prefixes(seen: &Seen) -> (BTreeSet<String>, Vec<String>) {
    let seen = seen.lock().unwrap();
    (
        seen.iter().map(|(k, _)| k.clone()).collect(),
        seen.iter().map(|(_, t)| t.clone()).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_on_one_bucket_with_different_secrets_each_use_their_own() {
    install_crypto_provider();
    let upstream = std::env::var("MINION_TEST_S3_ENDPOINT")
        .ok()
        .map(|e| e.trim_start_matches("http://").to_string());
    let bucket = std::env::var("MINION_TEST_S3_BUCKET").unwrap_or_else(|_| "minion-test".into());
    let (url_a, seen_a) = endpoint(upstream.clone()).await;
    let (url_b, seen_b) = endpoint(upstream.clone()).await;
    let api = FakeApi::start().await;
    let client = api.client();
    let backend = KubeBackend::new(
        client.clone(),
        vec!["tenant-a".into(), "tenant-b".into()],
        WorkerDefaults::default(),
        None,
        WriteGate::default(),
    );
    let run_id = std::process::id();
    for (ns, url, key) in [("tenant-a", &url_a, "key-a"), ("tenant-b", &url_b, "key-b")] {
        api.create("core/v1/secrets", ns, secret("store", url, key, true))
            .unwrap();
        let uri = format!("s3://{bucket}/tenancy-{run_id}/{ns}/events");
        Api::<Table>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &table(ns, &uri, "store"))
            .await
            .unwrap();
    }

    // Each Table's catalog goes to its own Secret's endpoint, signed with its own key, for its
    // own location — whichever Table was reconciled last.
    let mut catalogs = Catalogs::default();
    for _ in 0..2 {
        for ns in ["tenant-a", "tenant-b"] {
            let ready = reconcile(&api, &backend, &mut catalogs, ns).await;
            if upstream.is_some() {
                assert_eq!(ready["status"], "True", "{ns}: {ready}");
            }
        }
    }
    for (seen, key, mine, other) in [
        (&seen_a, "key-a", "tenant-a", "tenant-b"),
        (&seen_b, "key-b", "tenant-b", "tenant-a"),
    ] {
        let (keys, targets) = keys_and_prefixes(seen);
        assert_eq!(keys, BTreeSet::from([key.to_string()]), "{targets:?}");
        assert!(
            targets
                .iter()
                .all(|t| t.contains(mine) && !t.contains(other)),
            "{key}: {targets:?}"
        );
    }

    // Each run's Job gets the Secret of its own namespace's Table.
    for ns in ["tenant-a", "tenant-b"] {
        let run: TaskRun = serde_json::from_value(json!({
            "apiVersion": "minion.dev/v1alpha1", "kind": "TaskRun",
            "metadata": {"name": "run", "namespace": ns},
            "spec": {"taskType": "PurgeTask", "table": "events-offline"},
        }))
        .unwrap();
        Api::<TaskRun>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &run)
            .await
            .unwrap();
        backend
            .launch_subtask(&LaunchRequest {
                namespace: ns.into(),
                task_run: "run".into(),
                subtask: 0,
                attempt: 1,
                job: "run-0-1".into(),
                spec_uri: format!("s3://{bucket}/tenancy-{run_id}/{ns}/events/_minion/spec.json"),
                memory_budget_bytes: 1 << 30,
                timeout_ms: 60_000,
                kind: Default::default(),
            })
            .await
            .unwrap();
        let job = api.get("batch/v1/jobs", ns, "run-0-1").unwrap();
        let env_from = &job["spec"]["template"]["spec"]["containers"][0]["envFrom"];
        assert_eq!(env_from, &json!([{"secretRef": {"name": "store"}}]), "{ns}");
    }

    // A Secret without the opt-in label is refused, naming the field, the Secret and the fix;
    // its settings are dropped, and the Table's runs get no Job.
    api.create(
        "core/v1/secrets",
        "tenant-b",
        secret("other", &url_a, "key-a", false),
    )
    .unwrap();
    let mut t: Table =
        serde_json::from_value(api.get(TABLES, "tenant-b", "events-offline").unwrap()).unwrap();
    t.spec.storage_secret_ref.as_mut().unwrap().name = "other".into();
    let refused = backend.storage_options(&t).await.unwrap_err();
    assert_eq!(refused.reason(), "SecretNotAllowed");
    let msg = refused.to_string();
    for needle in [
        "spec.storageSecretRef",
        "tenant-b/other",
        "kubectl label secret other -n tenant-b minion.dev/storage-credentials=true",
    ] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    Api::<Table>::namespaced(client.clone(), "tenant-b")
        .replace("events-offline", &PostParams::default(), &t)
        .await
        .unwrap();
    let before = seen_a.lock().unwrap().len();
    let ready = reconcile(&api, &backend, &mut catalogs, "tenant-b").await;
    assert_eq!(ready["status"], "False", "{ready}");
    assert_eq!(ready["reason"], "SecretNotAllowed", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("spec.storageSecretRef"),
        "{ready}"
    );
    let events = api.list("events.k8s.io/v1/events", Some("tenant-b"));
    assert!(
        events.iter().any(|e| e["reason"] == "SecretNotAllowed"),
        "{events:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen_a.lock().unwrap().len(),
        before,
        "nothing was sent with the refused Secret"
    );
    assert_eq!(
        minion_operator::storage::options_of("tenant-b/events-offline"),
        None,
        "refused settings are dropped"
    );
    let err = backend
        .launch_subtask(&LaunchRequest {
            namespace: "tenant-b".into(),
            task_run: "run".into(),
            subtask: 1,
            attempt: 1,
            job: "run-1-1".into(),
            spec_uri: format!("s3://{bucket}/tenancy-{run_id}/tenant-b/events/_minion/spec.json"),
            memory_budget_bytes: 1 << 30,
            timeout_ms: 60_000,
            kind: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "SecretNotAllowed", "{err}");
    assert!(api.get("batch/v1/jobs", "tenant-b", "run-1-1").is_none());
}
