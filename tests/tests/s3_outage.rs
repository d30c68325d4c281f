//! Local mode with every table, spec, plan and manifest in S3 (moto, started by
//! `scripts/s3-test-server.sh` as `bash scripts/test.sh` does), reached through a TCP proxy
//! the test can cut: an import survives an object-store outage during which workers fail and
//! the loop is killed, and afterwards the destination holds exactly the source's rows.
//!
//! Skipped, with a notice, when `MINION_TEST_S3_ENDPOINT` is unset.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use minion_e2e::fixtures::{
    Minion, assert_imported_exactly, created_run, import_samples, realtime_events, workspace_binary,
};
use minion_operator::api::{Resource, parse_manifests};
use minion_operator::catalog::install_crypto_provider;
use minion_operator::model::TableDef;
use minion_operator::validate;

/// Forwards connections to `upstream` while `up`; while down, accepts and drops them (what a
/// client sees of an unreachable or failing endpoint).
async fn proxy(listener: tokio::net::TcpListener, upstream: String, up: Arc<AtomicBool>) {
    while let Ok((mut client, _)) = listener.accept().await {
        if !up.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let upstream = upstream.clone();
        let up = up.clone();
        tokio::spawn(async move {
            let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                () = async {
                    while up.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                } => {}
            }
        });
    }
}

fn table_defs(manifests: &Path) -> Vec<TableDef> {
    let mut out = Vec::new();
    for file in ["table-events-realtime.yaml", "table-events-offline.yaml"] {
        let text = std::fs::read_to_string(manifests.join(file)).unwrap();
        for r in parse_manifests(&text).unwrap() {
            if let Resource::Table(t) = r {
                out.push(validate::table(&t).unwrap());
            }
        }
    }
    out
}

#[ignore = "needs the S3 test server: eval \"$(scripts/s3-test-server.sh start)\" (scripts/test.sh runs it)"]
#[test]
fn an_import_on_s3_survives_a_store_outage_and_a_killed_loop() {
    let endpoint = std::env::var("MINION_TEST_S3_ENDPOINT").expect(
        "MINION_TEST_S3_ENDPOINT: start the S3 test server (scripts/s3-test-server.sh start)",
    );
    let bucket = std::env::var("MINION_TEST_S3_BUCKET").unwrap_or_else(|_| "minion-test".into());
    let upstream = endpoint.trim_start_matches("http://").to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_endpoint = format!("http://{}", listener.local_addr().unwrap());
    // SAFETY: no other thread runs yet (the runtime is built below, and this file holds one
    // test, which nextest runs in a process of its own); the catalog, the worker and every
    // `minion` child read the store's endpoint and credentials from these variables.
    unsafe {
        std::env::set_var("AWS_ENDPOINT", &proxy_endpoint);
        std::env::set_var("AWS_ALLOW_HTTP", "true");
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        install_crypto_provider();
        listener.set_nonblocking(true).unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(proxy(listener, upstream, up.clone()));

        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        let prefix = format!("s3://{bucket}/outage-{}", std::process::id());
        let samples = import_samples(|text| {
            text.replace("file:///tmp/minion", &prefix).replace(
                "  segmentImportTask:\n",
                "  maxAttempts: 10\n  parallelism: 2\n  segmentImportTask:\n",
            )
        });
        for (file, text) in samples {
            std::fs::write(manifests.join(file), text).unwrap();
        }
        let cli = Minion {
            state: dir.path().join("state"),
        };
        cli.ok(&["apply", "-f", manifests.to_str().unwrap()]);
        let tables = table_defs(&manifests);
        let (realtime, offline) = (&tables[0], &tables[1]);
        assert!(realtime.uri.starts_with("s3://"), "{}", realtime.uri);
        let (source, start_ms) = realtime_events(realtime, dir.path(), 3, 200).await;

        let out = cli.ok(&["run", "events-import"]);
        let run = created_run(&out);
        let phase = |cli: &Minion| -> (String, serde_json::Value) {
            let tr: serde_json::Value =
                serde_json::from_str(&cli.ok(&["get", "tr", &run, "-o", "json"])).unwrap();
            (
                tr["status"]["phase"]
                    .as_str()
                    .unwrap_or("Pending")
                    .to_string(),
                tr,
            )
        };
        // Admit, plan, launch: workers are running when the store goes away.
        for _ in 0..3 {
            cli.step();
        }
        up.store(false, Ordering::SeqCst);
        let mut looping = Command::new(workspace_binary("minion", "minion-cli"))
            .arg("--state-dir")
            .arg(&cli.state)
            .args(["local", "up", "--poll-ms", "50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        looping.kill().unwrap();
        looping.wait().unwrap();
        let (during, tr) = phase(&cli);
        assert!(
            !matches!(during.as_str(), "Succeeded" | "Failed"),
            "the run ended while the store was unreachable: {tr:#}"
        );

        up.store(true, Ordering::SeqCst);
        let started = Instant::now();
        cli.ok(&["local", "up", "--until-idle", "--poll-ms", "20"]);
        let (end, tr) = phase(&cli);
        assert_eq!(end, "Succeeded", "{tr:#}");
        eprintln!(
            "recovered in {:.1}s: {}",
            started.elapsed().as_secs_f64(),
            tr["status"]["subtasks"]
        );

        assert_imported_exactly(
            &source,
            realtime,
            offline,
            start_ms,
            "default",
            "events-import",
        )
        .await;
    });
}
