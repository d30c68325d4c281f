//! The operator's object-store access, per Table: [`resolve`] is the worker's resolver
//! (`minion_store::resolve`: endpoint and credentials from the environment) unless the
//! URI lies under the root of a Table that has storage options registered ([`register`]) — as
//! the Kubernetes backend does from the Secret a Table names in `spec.storageSecretRef` — in
//! which case the store is built from the environment with that Table's options over it
//! (`minion_store::resolve_with_options`).
//!
//! Options are object_store configuration keys (`aws_access_key_id`, `aws_endpoint`,
//! `google_service_account`, `azure_storage_account_name`, …); Secret keys are taken in either
//! case (`AWS_ACCESS_KEY_ID` works). Keys the store does not know are ignored.
//!
//! # Decisions
//! - Registrations are per Table (`namespace/name`), never per bucket: two Tables on one
//!   bucket with different Secrets each reach their own data with their own settings, and a
//!   later registration never changes what another Table uses.
//! - A URI takes the options of the Table whose root contains it (Table locations never
//!   overlap; the longest root wins should two ever be registered). A URI under no registered
//!   root gets no registered options at all — never those of another Table on the same bucket.
//!   Callers that reach outside a Table on its behalf (a config's input directory) pass that
//!   Table's options explicitly ([`resolve_with`], [`options_of`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use minion_store::{Location, StoreError};
use url::Url;

/// Object-store options, keys in lower case.
pub type Options = HashMap<String, String>;

/// What one Table registered: its root URI (without a trailing `/`) and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    root: String,
    options: Options,
}

fn registry() -> &'static RwLock<BTreeMap<String, Entry>> {
    static REGISTRY: std::sync::OnceLock<RwLock<BTreeMap<String, Entry>>> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The registry key of a Table: `namespace/name`.
pub fn table_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
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

fn lower(options: &Options) -> Options {
    options
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// Whether `uri` is `root` or lies below it (whole path segments only).
fn under(uri: &str, root: &str) -> bool {
    let uri = uri.trim_end_matches('/');
    uri == root
        || uri
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Registers `options` (keys in any case) for the Table `table` (`namespace/name`, see
/// [`table_key`]) rooted at `root_uri`; true when that changed what the Table had registered
/// (its store must then be built again). Other Tables are not affected.
pub fn register(table: &str, root_uri: &str, options: &Options) -> bool {
    let entry = Entry {
        root: root_uri.trim_end_matches('/').to_string(),
        options: lower(options),
    };
    let mut r = registry().write().expect("storage registry");
    if r.get(table) == Some(&entry) {
        return false;
    }
    r.insert(table.to_string(), entry);
    true
}

/// Drops what `table` registered (its Secret was removed from the spec, or the Table is
/// gone); true when there was something.
pub fn unregister(table: &str) -> bool {
    registry()
        .write()
        .expect("storage registry")
        .remove(table)
        .is_some()
}

/// Keeps only the registrations of the Tables `keep` accepts (those that still exist);
/// returns the root URIs of those dropped.
pub fn retain(keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut r = registry().write().expect("storage registry");
    let gone: Vec<String> = r.keys().filter(|k| !keep(k)).cloned().collect();
    gone.iter()
        .filter_map(|k| r.remove(k).map(|e| e.root))
        .collect()
}

/// The options `table` (`namespace/name`) registered.
pub fn options_of(table: &str) -> Option<Options> {
    registry()
        .read()
        .expect("storage registry")
        .get(table)
        .map(|e| e.options.clone())
}

/// The options of the Table whose root contains `uri`; `None` when no registered Table's
/// root does (whatever other Tables on the same bucket registered).
pub fn options_for(uri: &str) -> Option<Options> {
    registry()
        .read()
        .expect("storage registry")
        .values()
        .filter(|e| under(uri, &e.root))
        .max_by_key(|e| e.root.len())
        .map(|e| e.options.clone())
}

/// Resolves `uri` to a store: with the options of the Table whose root contains it over the
/// environment's settings, else as the worker does (environment only).
///
/// # Errors
/// As `minion_store::resolve`: a bad URI or an unbuildable client.
pub fn resolve(uri: &str) -> Result<Location, StoreError> {
    minion_store::resolve_with_options(uri, &options_for(uri).unwrap_or_default())
}

/// Resolves `uri` with exactly `options` (a Table's, from [`options_of`]) over the
/// environment; `None` is the environment alone. What is registered for other Tables is never
/// used, even when `uri` lies under one of them.
///
/// # Errors
/// As [`resolve`].
pub fn resolve_with(uri: &str, options: Option<&Options>) -> Result<Location, StoreError> {
    match options {
        Some(options) => minion_store::resolve_with_options(uri, options),
        None => minion_store::resolve(uri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(endpoint: &str) -> Options {
        Options::from([("AWS_ENDPOINT".to_string(), endpoint.to_string())])
    }

    fn endpoint(o: Option<Options>) -> Option<String> {
        o.and_then(|o| o.get("aws_endpoint").cloned())
    }

    #[test]
    fn options_are_registered_per_table_in_lower_case() {
        let a = table_key("reg-ns", "a");
        assert!(register(
            &a,
            "s3://reg-test-bucket/tables/a/",
            &opts("http://x:1")
        ));
        assert!(
            !register(&a, "s3://reg-test-bucket/tables/a", &opts("http://x:1")),
            "same root and options"
        );
        assert_eq!(
            endpoint(options_for("s3://reg-test-bucket/tables/a/data/x.parquet")).as_deref(),
            Some("http://x:1")
        );
        assert_eq!(endpoint(options_of(&a)).as_deref(), Some("http://x:1"));
        assert_eq!(options_for("s3://reg-test-bucket/tables/ab"), None);
        assert_eq!(options_for("s3://another-bucket/x"), None);
        assert_eq!(bucket_of("/tmp/t"), None);
        let loc = resolve("s3://reg-test-bucket/tables/a").unwrap();
        assert_eq!(loc.base.as_ref(), "tables/a");
        assert!(unregister(&a));
        assert_eq!(options_for("s3://reg-test-bucket/tables/a"), None);
    }

    #[test]
    fn settings_are_never_shared_across_tables_on_one_bucket() {
        let a = table_key("tenant-a", "events");
        let b = table_key("tenant-b", "events");
        register(
            &a,
            "s3://shared-bucket/tenant-a/events",
            &opts("http://a:1"),
        );
        register(
            &b,
            "s3://shared-bucket/tenant-b/events",
            &opts("http://b:2"),
        );
        // The later registration does not replace the earlier one: each Table keeps its own.
        assert_eq!(
            endpoint(options_for("s3://shared-bucket/tenant-a/events/_delta_log")).as_deref(),
            Some("http://a:1")
        );
        assert_eq!(
            endpoint(options_for("s3://shared-bucket/tenant-b/events/_minion/x")).as_deref(),
            Some("http://b:2")
        );
        // Elsewhere on the bucket, no Table's settings apply.
        assert_eq!(options_for("s3://shared-bucket/landing/file.csv"), None);
        assert_eq!(options_for("s3://shared-bucket/tenant-a"), None);
        // Re-registering one Table changes nothing for the other.
        assert!(register(
            &a,
            "s3://shared-bucket/tenant-a/events",
            &opts("http://a:3")
        ));
        assert_eq!(
            endpoint(options_for("s3://shared-bucket/tenant-b/events")).as_deref(),
            Some("http://b:2")
        );
        // Explicit options win over where the URI lies: a's input directory under b's root
        // is read with a's settings only.
        let a_opts = options_of(&a);
        assert_eq!(endpoint(a_opts.clone()).as_deref(), Some("http://a:3"));
        assert!(resolve_with("s3://shared-bucket/tenant-b/events/in", a_opts.as_ref()).is_ok());
        // A Table that is gone leaves nothing behind for the next one at its location.
        let gone = retain(|k| k != b);
        assert_eq!(gone, vec!["s3://shared-bucket/tenant-b/events".to_string()]);
        assert_eq!(options_for("s3://shared-bucket/tenant-b/events"), None);
        unregister(&a);
    }
}
