//! The S3 path against a real S3-compatible server (moto, started by
//! `scripts/s3-test-server.sh start`): the spec, the inputs, the outputs and the manifest all
//! live in a bucket. Skipped, with a notice, when `MINION_TEST_S3_ENDPOINT` is unset.

mod common;

use std::process::Command;
use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use common::*;
use minion_contract::*;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;

const T0: i64 = 1_700_006_400_000;

fn env_for(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

#[tokio::test]
#[ignore = "needs the S3 test server: eval \"$(scripts/s3-test-server.sh start)\" (scripts/test.sh runs it)"]
async fn rollup_reads_and_writes_segments_spec_and_manifest_on_s3() {
    let endpoint = std::env::var("MINION_TEST_S3_ENDPOINT").expect(
        "MINION_TEST_S3_ENDPOINT: start the S3 test server (scripts/s3-test-server.sh start)",
    );
    let bucket = std::env::var("MINION_TEST_S3_BUCKET").unwrap_or_else(|_| "minion-test".into());
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(&bucket)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_region("us-east-1")
            .build()
            .unwrap(),
    );
    let prefix = format!("tables/t-{}", std::process::id());
    let b = batch(
        &events_schema(),
        vec![
            arc(StringArray::from(vec!["a", "a", "b"])),
            arc(StringArray::from(vec!["x", "x", "y"])),
            arc(Int64Array::from(vec![T0 + 1, T0 + 2, T0 + 3])),
            arc(Int64Array::from(vec![1, 2, 4])),
        ],
    );
    let mut bytes = Vec::new();
    let mut w = ArrowWriter::try_new(&mut bytes, b.schema(), None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    let seg_path = "in/a.parquet";
    store
        .put(
            &Path::from(format!("{prefix}/{seg_path}")),
            PutPayload::from(bytes.clone()),
        )
        .await
        .unwrap();
    let seg = SegmentRef {
        path: seg_path.into(),
        rows: 3,
        bytes: bytes.len() as u64,
        min_time_ms: None,
        max_time_ms: None,
        partition: None,
        tags: Default::default(),
    };
    let mut p = processing(MergeType::Rollup);
    p.round_bucket_ms = Some(3_600_000);
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), events_schema(), vec![seg], p);
    let uri = format!("s3://{bucket}/{prefix}");
    s.source.uri = uri.clone();
    s.destination.uri = uri.clone();
    let spec_key = format!("{prefix}/specs/0.json");
    store
        .put(
            &Path::from(spec_key.clone()),
            PutPayload::from(serde_json::to_vec(&s).unwrap()),
        )
        .await
        .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_minion-worker"))
        .args(["run", "--spec", &format!("s3://{bucket}/{spec_key}")])
        .envs(env_for(&endpoint))
        .env("MINION_SPILL_DIR", dir.path().join("spill"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let manifest_key = Path::from(format!("{prefix}/{}", s.manifest_path()));
    let manifest: ResultManifest = serde_json::from_slice(
        &store
            .get(&manifest_key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest.outcome, Outcome::Succeeded);
    assert_eq!((manifest.input_rows, manifest.output_rows), (3, 2));
    let output = &manifest.outputs[0];
    let head = store
        .head(&Path::from(format!("{prefix}/{}", output.path)))
        .await
        .unwrap();
    assert_eq!(head.size, output.bytes);
    // No temporary objects remain in the staging prefix.
    let listed: Vec<_> = futures::StreamExt::collect::<Vec<_>>(store.list(Some(&Path::from(
        format!("{prefix}/{}", s.output.staging_prefix),
    ))))
    .await;
    let names: Vec<String> = listed
        .into_iter()
        .map(|m| m.unwrap().location.to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| !n.contains("_tmp")), "{names:?}");
}
