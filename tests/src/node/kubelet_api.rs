//! The one kubelet endpoint the suites read through the API server: container logs, so
//! `kubectl logs` and `kubectl minion logs` work on the real control plane. HTTPS on
//! 127.0.0.1 with a self-signed certificate made by `openssl` (the API server does not verify
//! a kubelet's certificate without `--kubelet-certificate-authority`, and `control-plane.sh`
//! reaches nodes by `InternalIP`); `GET /containerLogs/<namespace>/<pod>/<container>` serves
//! the file the container's output went to ([`super::Node::log`]). The Node's status names
//! the port (`daemonEndpoints.kubeletEndpoint.Port`).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A self-signed certificate and key for 127.0.0.1 under `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("kubelet.crt");
    let key = dir.join("kubelet.key");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=minion-e2e-node",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs (the control plane's PKI needs it too)");
    assert!(
        status.success(),
        "openssl could not make the node's certificate"
    );
    (cert, key)
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

fn container_log(pods_dir: &Path, path: &str) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = path
        .strip_prefix("/containerLogs/")
        .unwrap_or("")
        .split('/')
        .collect();
    let [namespace, pod, container] = parts.as_slice() else {
        return text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"));
    };
    if [namespace, pod, container]
        .iter()
        .any(|p| p.is_empty() || p.contains(".."))
    {
        return text(StatusCode::BAD_REQUEST, format!("bad path: {path}"));
    }
    let file = pods_dir
        .join(namespace)
        .join(pod)
        .join(format!("{container}.log"));
    match std::fs::read_to_string(&file) {
        Ok(log) => text(StatusCode::OK, log),
        Err(e) => text(
            StatusCode::NOT_FOUND,
            format!("container {container} of pod {namespace}/{pod} has no log here: {e}"),
        ),
    }
}

/// Serves the endpoint for the Pods whose logs are under `pods_dir`; its port.
pub(super) async fn serve(pods_dir: PathBuf) -> (u16, tokio::task::JoinHandle<()>) {
    let (cert, key) = certificate(&pods_dir);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .expect("the node's certificate")
        .collect::<Result<_, _>>()
        .expect("the node's certificate");
    let key = PrivateKeyDer::from_pem_file(&key).expect("the node's key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("a TLS server configuration");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let pods_dir = pods_dir.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let response = container_log(&pods_dir, req.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, task)
}
