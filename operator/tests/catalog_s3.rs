//! The catalog on S3 (moto, started by `scripts/s3-test-server.sh` as `bash scripts/test.sh`
//! does), with the store configured by storage options: two writers racing on the same table
//! lose no commit (deltalake writes each version with a conditional put, which the store must
//! refuse when the version exists), and a replacement is atomic for a fresh reader.
//!
//! Skipped, with a notice, when `MINION_TEST_S3_ENDPOINT` is unset.

#[path = "common/catalog_fixtures.rs"]
mod fixtures;

use std::collections::HashMap;

use fixtures::event_schema;
use minion_contract::SegmentRef;
use minion_operator::catalog::{AppTxn, Catalog, Replacement, install_crypto_provider};

fn options(endpoint: &str) -> HashMap<String, String> {
    [
        ("aws_endpoint", endpoint),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A segment entry (the catalog records it; these tests never read the file).
fn segment(path: &str, t: i64) -> SegmentRef {
    SegmentRef {
        path: path.to_string(),
        rows: 10,
        bytes: 1000,
        min_time_ms: Some(t),
        max_time_ms: Some(t + 9),
        partition: None,
        tags: Default::default(),
    }
}

#[ignore = "needs the S3 test server: eval \"$(scripts/s3-test-server.sh start)\" (scripts/test.sh runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_s3_lose_no_commit_and_a_replacement_is_atomic() {
    let endpoint = std::env::var("MINION_TEST_S3_ENDPOINT").expect(
        "MINION_TEST_S3_ENDPOINT: start the S3 test server (scripts/s3-test-server.sh start)",
    );
    install_crypto_provider();
    let bucket = std::env::var("MINION_TEST_S3_BUCKET").unwrap_or_else(|_| "minion-test".into());
    let uri = format!("s3://{bucket}/catalog-{}/events", std::process::id());

    // What the log's safety rests on: the store refuses to create an object that exists.
    let url = url::Url::parse(&uri).unwrap();
    let (store, base) = object_store::parse_url_opts(&url, options(&endpoint)).unwrap();
    let probe = object_store::path::Path::from(format!("{base}/probe"));
    let create = object_store::PutOptions {
        mode: object_store::PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&probe, "a".into(), create.clone())
        .await
        .unwrap();
    let again = store.put_opts(&probe, "b".into(), create).await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "a conditional create over an existing object must fail with AlreadyExists: {again:?}"
    );

    let mut first = Catalog::create(&uri, &event_schema(), options(&endpoint))
        .await
        .unwrap()
        .with_commit_attempts(100);
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (uri, endpoint) = (uri.clone(), endpoint.clone());
            tokio::spawn(async move {
                let mut c = Catalog::open(&uri, options(&endpoint))
                    .await
                    .unwrap()
                    .with_commit_attempts(100);
                for i in 0..12 {
                    let s = segment(&format!("data/w{w}/{i}.parquet"), i * 100);
                    c.append(&[s], &[]).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let reader = Catalog::open(&uri, options(&endpoint)).await.unwrap();
    let live = reader.segments().unwrap();
    assert_eq!(live.len(), 24, "a racing commit was lost");
    assert_eq!(
        reader.version(),
        24,
        "one version per append after the create"
    );

    // One replacement of the first writer's segments by one output.
    first.refresh().await.unwrap();
    let inputs: Vec<String> = live
        .iter()
        .filter(|s| s.path.starts_with("data/w0/"))
        .map(|s| s.path.clone())
        .collect();
    first
        .replace(Replacement {
            remove: inputs.clone(),
            add: vec![segment("data/out/w0.parquet", 0)],
            txns: vec![AppTxn::run("minion.dev/ns/merge/0")],
            data_change: false,
            operation: "MINION CONCAT",
        })
        .await
        .unwrap();
    let after = Catalog::open(&uri, options(&endpoint))
        .await
        .unwrap()
        .segments()
        .unwrap();
    assert_eq!(after.len(), 13);
    assert!(after.iter().all(|s| !inputs.contains(&s.path)));
    assert!(after.iter().any(|s| s.path == "data/out/w0.parquet"));
}
