//! The operator's object-store access: [`resolve`] is the resolver the worker uses too
//! (`minion_store::resolve`: endpoint and credentials from the environment) unless
//! storage options are registered for the URI's bucket ([`register`]) — as the Kubernetes
//! backend does from the Secret a Table names in `spec.storageSecretRef` — in which case the
//! store is built from the environment with those options over it
//! (`minion_store::resolve_with_options`).
//!
//! Options are object_store configuration keys (`aws_access_key_id`, `aws_endpoint`,
//! `google_service_account`, `azure_storage_account_name`, …); Secret keys are taken in either
//! case (`AWS_ACCESS_KEY_ID` works). Keys the store does not know are ignored. Registrations
//! are per bucket (`s3://bucket`): a later registration for the same bucket replaces the
//! earlier one.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use minion_store::{Location, StoreError};
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

/// Resolves `uri` to a store: with the options registered for its bucket over the
/// environment's settings, else as the worker does (environment only).
///
/// # Errors
/// As `minion_store::resolve`: a bad URI or an unbuildable client.
pub fn resolve(uri: &str) -> Result<Location, StoreError> {
    minion_store::resolve_with_options(uri, &options_for(uri).unwrap_or_default())
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
