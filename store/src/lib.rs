//! Object store access, shared by the operator and the worker: turns a table or file URI
//! (`file://`, a bare absolute path, `s3://`, `gs://`, `az://`) into a store plus a base
//! path. Credentials and endpoints come from the environment (`AWS_*`, `GOOGLE_*`,
//! `AZURE_*`), never from a spec; the operator may add options over them
//! ([`resolve_with_options`]).
//!
//! A crate of its own so the operator resolves and moves bytes without the processing
//! engine. It only resolves and moves bytes; it decides nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use url::Url;

/// Why a URI could not be resolved or an object not moved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An unparsable URI or an unsupported scheme.
    #[error("bad URI: {0}")]
    BadUri(String),
    /// No object at `uri`.
    #[error("{uri}: not found")]
    NotFound { uri: String },
    /// The store client cannot be built (e.g. missing credentials) or a request failed.
    #[error("object store unreachable at {uri}: {message}")]
    Unreachable { uri: String, message: String },
    /// The local working directory (of a relative path) cannot be read.
    #[error("local disk: {0}")]
    Io(String),
}

impl StoreError {
    /// Classifies an object store error on `uri`: not found, or unreachable.
    pub fn from_store(uri: &str, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                uri: uri.to_string(),
            },
            other => StoreError::Unreachable {
                uri: uri.to_string(),
                message: one_line(&other.to_string()),
            },
        }
    }

    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// Collapses a multi-line message into one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A store and the path inside it that a URI designates.
#[derive(Clone, Debug)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// Path of the URI inside the store (no leading or trailing slash).
    pub base: Path,
    /// The URI as given, for messages.
    pub uri: String,
}

impl Location {
    /// The path of `relative` (a `/`-separated path) below this location.
    pub fn child(&self, relative: &str) -> Path {
        let rel = relative.trim_matches('/');
        let base = self.base.as_ref();
        if base.is_empty() {
            Path::from(rel)
        } else if rel.is_empty() {
            self.base.clone()
        } else {
            Path::from(format!("{base}/{rel}"))
        }
    }

    /// The URI of `relative` below this location, for messages.
    pub fn child_uri(&self, relative: &str) -> String {
        format!(
            "{}/{}",
            self.uri.trim_end_matches('/'),
            relative.trim_start_matches('/')
        )
    }

    /// Reads a whole (small) object, e.g. a spec.
    pub async fn get_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let uri = self.display(path);
        let got = self
            .store
            .get(path)
            .await
            .map_err(|e| StoreError::from_store(&uri, e))?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| StoreError::from_store(&uri, e))?;
        Ok(bytes.to_vec())
    }

    /// Writes a whole (small) object, e.g. a manifest.
    pub async fn put_bytes(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        let uri = self.display(path);
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(|e| StoreError::from_store(&uri, e))?;
        Ok(())
    }

    /// A printable name of `path` in this store.
    pub fn display(&self, path: &Path) -> String {
        let base = self.base.as_ref();
        let rel = path.as_ref();
        let rel = rel
            .strip_prefix(base)
            .unwrap_or(rel)
            .trim_start_matches('/');
        self.child_uri(rel)
    }
}

/// Resolves a URI to a store, with endpoint and credentials from the environment.
///
/// # Errors
/// [`StoreError::BadUri`] for an unparsable URI or unknown scheme,
/// [`StoreError::Unreachable`] when the store client cannot be built (e.g. missing
/// credentials).
pub fn resolve(uri: &str) -> Result<Location> {
    resolve_with_options(uri, &HashMap::new())
}

/// [`resolve`] with object_store configuration `options` (`aws_endpoint`,
/// `aws_access_key_id`, `google_service_account`, …; keys in any case) applied over the
/// environment's settings. Keys the store does not know are ignored; local URIs ignore them.
///
/// # Errors
/// As [`resolve`].
pub fn resolve_with_options(uri: &str, options: &HashMap<String, String>) -> Result<Location> {
    if uri.starts_with('/') {
        return local(uri, uri);
    }
    let url = Url::parse(uri).map_err(|e| StoreError::BadUri(format!("URI {uri:?}: {e}")))?;
    let unreachable = |e: object_store::Error| StoreError::Unreachable {
        uri: uri.to_string(),
        message: one_line(&e.to_string()),
    };
    // Client options (endpoint, allow-http, timeouts) come from the environment and
    // `options`; only the retry policy is ours, so an unreachable store fails in seconds
    // rather than minutes.
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    };
    let options = options
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()));
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "file" => return local(url.path(), uri),
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(uri).with_retry(retry);
            for (k, v) in options {
                if let Ok(key) = k.parse::<AmazonS3ConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            Arc::new(b.build().map_err(unreachable)?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_url(uri)
                .with_retry(retry);
            for (k, v) in options {
                if let Ok(key) = k.parse::<GoogleConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            Arc::new(b.build().map_err(unreachable)?)
        }
        "az" | "abfs" | "abfss" | "azure" => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(uri)
                .with_retry(retry);
            for (k, v) in options {
                if let Ok(key) = k.parse::<AzureConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            Arc::new(b.build().map_err(unreachable)?)
        }
        other => {
            return Err(StoreError::BadUri(format!(
                "URI {uri:?}: unsupported scheme {other:?}"
            )));
        }
    };
    let base = Path::from_url_path(url.path())
        .map_err(|e| StoreError::BadUri(format!("URI {uri:?}: {e}")))?;
    Ok(Location {
        store,
        base,
        uri: uri.to_string(),
    })
}

fn local(path: &str, uri: &str) -> Result<Location> {
    let base = Path::from_url_path(path.trim_start_matches('/'))
        .map_err(|e| StoreError::BadUri(format!("URI {uri:?}: {e}")))?;
    Ok(Location {
        store: Arc::new(LocalFileSystem::new()),
        base,
        uri: uri.to_string(),
    })
}

/// Splits a file URI into its parent location and file name, so files can be read with the
/// same machinery as segments.
pub fn resolve_file(uri: &str) -> Result<(Location, Path)> {
    if !uri.contains("://") && !uri.starts_with('/') {
        // A relative local path.
        let cwd = std::env::current_dir().map_err(|e| StoreError::Io(one_line(&e.to_string())))?;
        return resolve_file(&cwd.join(uri).to_string_lossy());
    }
    let (dir, file) = uri
        .rsplit_once('/')
        .ok_or_else(|| StoreError::BadUri(format!("file URI {uri:?} has no directory")))?;
    let dir = if dir.ends_with(':') || dir.ends_with(":/") {
        format!("{dir}/")
    } else {
        dir.to_string()
    };
    let loc = resolve(if dir.is_empty() { "/" } else { &dir })?;
    let path = loc.child(file);
    Ok((loc, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_and_bare_paths_resolve_to_the_same_base() {
        let a = resolve("file:///tmp/t/events").unwrap();
        let b = resolve("/tmp/t/events").unwrap();
        assert_eq!(a.base, b.base);
        assert_eq!(
            a.child("data/x.parquet").as_ref(),
            "tmp/t/events/data/x.parquet"
        );
    }

    #[test]
    fn unknown_scheme_is_a_bad_spec() {
        let err = resolve("ftp://host/x").unwrap_err();
        assert!(err.to_string().contains("unsupported scheme"), "{err}");
    }
}
