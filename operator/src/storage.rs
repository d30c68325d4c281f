//! The operator's object-store access: [`resolve`] is the worker's resolver
//! (`minion_worker::store::resolve`: endpoint and credentials from the environment) unless
//! storage options are registered for the URI's bucket ([`register`]) — as the Kubernetes
//! backend does from the Secret a Table names in `spec.storageSecretRef` — in which case the
//! store is built from the environment with those options over it.
//!
//! Options are object_store configuration keys (`aws_access_key_id`, `aws_endpoint`,
//! `google_service_account`, `azure_storage_account_name`, …); Secret keys are taken in either
//! case (`AWS_ACCESS_KEY_ID` works). Keys the store does not know are ignored. Registrations
//! are per bucket (`s3://bucket`): a later registration for the same bucket replaces the
//! earlier one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use minion_worker::WorkerError;
use minion_worker::store::Location;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, RetryConfig};
use url::Url;

type Options = HashMap<String, String>;

fn registry() -> &'static RwLock<BTreeMap<String, Options>> {
    static REGISTRY: std::sync::OnceLock<RwLock<BTreeMap<String, Options>>> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// `scheme://bucket` of a cloud URI; `None` for local paths and `file://`.
pub fn bucket_of(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    if url.scheme() == "file" || url.scheme().len() < 2 {
        return None;
    }
    Some(format!(
        "{}://{}",
        url.scheme(),
        url.host_str().unwrap_or_default()
    ))
}

/// Registers `options` (keys in any case) for the bucket of `uri`; true when that changed
/// what was registered. Local URIs are ignored.
pub fn register(uri: &str, options: &Options) -> bool {
    let Some(bucket) = bucket_of(uri) else {
        return false;
    };
    let options: Options = options
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let mut r = registry().write().expect("storage registry");
    if r.get(&bucket) == Some(&options) {
        return false;
    }
    r.insert(bucket, options);
    true
}

/// The options registered for the bucket of `uri`.
pub fn options_for(uri: &str) -> Option<Options> {
    let bucket = bucket_of(uri)?;
    registry()
        .read()
        .expect("storage registry")
        .get(&bucket)
        .cloned()
}

/// Resolves `uri` to a store: with the options registered for its bucket, else as the worker
/// does (environment only).
///
/// # Errors
/// As `minion_worker::store::resolve`: a bad URI or an unbuildable client.
pub fn resolve(uri: &str) -> Result<Location, WorkerError> {
    match options_for(uri) {
        Some(options) => resolve_with(uri, &options),
        None => minion_worker::store::resolve(uri),
    }
}

/// Resolves a cloud `uri` with `options` over the environment's settings.
///
/// # Errors
/// A bad URI, an unsupported scheme, or an unbuildable client.
pub fn resolve_with(uri: &str, options: &Options) -> Result<Location, WorkerError> {
    let url = Url::parse(uri).map_err(|e| WorkerError::BadSpec(format!("URI {uri:?}: {e}")))?;
    let unreachable = |e: object_store::Error| WorkerError::StoreUnreachable {
        uri: uri.to_string(),
        message: e.to_string(),
    };
    // The worker's retry policy: an unreachable store fails in seconds, not minutes.
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
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
        _ => return minion_worker::store::resolve(uri),
    };
    let base = Path::from_url_path(url.path())
        .map_err(|e| WorkerError::BadSpec(format!("URI {uri:?}: {e}")))?;
    Ok(Location {
        store,
        base,
        uri: uri.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_registered_per_bucket_in_lower_case_and_local_uris_are_left_alone() {
        let opts = Options::from([("AWS_ENDPOINT".to_string(), "http://x:1".to_string())]);
        assert!(register("s3://reg-test-bucket/tables/a", &opts));
        assert!(
            !register("s3://reg-test-bucket/tables/b", &opts),
            "same options"
        );
        let got = options_for("s3://reg-test-bucket/other/prefix").unwrap();
        assert_eq!(
            got.get("aws_endpoint").map(String::as_str),
            Some("http://x:1")
        );
        assert_eq!(options_for("s3://another-bucket/x"), None);
        assert!(!register("file:///tmp/t", &opts));
        assert_eq!(bucket_of("/tmp/t"), None);
        let loc = resolve("s3://reg-test-bucket/tables/a").unwrap();
        assert_eq!(loc.base.as_ref(), "tables/a");
    }
}
