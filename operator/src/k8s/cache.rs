//! Watch-fed caches of the resources the control loop reads (kube-runtime `watcher`s), so
//! the operator lists and gets from memory instead of polling the API server, and wakes the
//! loop the moment something it cares about changes (a Job finishing, a spec edited, a
//! TaskRun created by hand).
//!
//! # Contract
//! - One [`ObjectCache`] per resource kind and watched scope (a namespace, or the cluster);
//!   each is filled by one `watcher` stream (`ListWatch`, default backoff). Until its first
//!   list completed ([`ObjectCache::is_synced`]) readers must ask the API instead.
//! - Read-your-writes: the backend records every object its own writes return
//!   ([`ObjectCache::observe`]) and removes what it deleted ([`ObjectCache::forget`]), so the
//!   next step never sees the status it just replaced. An event never replaces a newer
//!   version: versions are compared as numbers when both parse (etcd revisions), otherwise the
//!   event wins.
//! - [`ObjectCache::apply`] reports whether the event brought news (an object or version the
//!   cache did not hold); the echo of our own write does not, so the loop is not woken by its
//!   own status updates.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

type Key = (String, String);

fn key_of<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn version_of<K: Resource>(object: &K) -> Option<&str> {
    object.meta().resource_version.as_deref()
}

/// Whether `new` may replace `old`: not when both versions are numbers and `new`'s is lower.
fn replaces<K: Resource>(old: &K, new: &K) -> bool {
    match (
        version_of(old).and_then(|v| v.parse::<u64>().ok()),
        version_of(new).and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(o), Some(n)) => n >= o,
        _ => true,
    }
}

#[derive(Debug)]
struct Inner<K> {
    objects: HashMap<Key, K>,
    /// Objects of a relist in progress (between `Init` and `InitDone`).
    relist: Option<HashMap<Key, K>>,
}

/// The objects of one kind in one scope, as last seen by its watch or written by us.
#[derive(Debug)]
pub struct ObjectCache<K> {
    inner: RwLock<Inner<K>>,
    synced: AtomicBool,
}

impl<K> Default for ObjectCache<K> {
    fn default() -> Self {
        ObjectCache {
            inner: RwLock::new(Inner {
                objects: HashMap::new(),
                relist: None,
            }),
            synced: AtomicBool::new(false),
        }
    }
}

impl<K: Resource + Clone> ObjectCache<K> {
    /// Whether the first list has completed (before that the cache may miss objects).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<K> {
        let inner = self.inner.read().expect("cache lock");
        inner.objects.values().cloned().collect()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<K> {
        let inner = self.inner.read().expect("cache lock");
        inner
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Inserts `object` unless the cache holds a newer version; true when it changed.
    fn upsert(objects: &mut HashMap<Key, K>, object: K) -> bool {
        let key = key_of(&object);
        match objects.get(&key) {
            Some(old) if !replaces(old, &object) => false,
            Some(old) if version_of(old).is_some() && version_of(old) == version_of(&object) => {
                false
            }
            _ => {
                objects.insert(key, object);
                true
            }
        }
    }

    /// Records an object our own write returned.
    pub fn observe(&self, object: K) {
        let mut inner = self.inner.write().expect("cache lock");
        Self::upsert(&mut inner.objects, object);
    }

    /// Removes an object we deleted.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut inner = self.inner.write().expect("cache lock");
        inner
            .objects
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// Applies one watch event; true when it told the cache something new.
    pub fn apply(&self, event: Event<K>) -> bool {
        let mut inner = self.inner.write().expect("cache lock");
        match event {
            Event::Apply(object) => Self::upsert(&mut inner.objects, object),
            Event::Delete(object) => inner.objects.remove(&key_of(&object)).is_some(),
            Event::Init => {
                inner.relist = Some(HashMap::new());
                false
            }
            Event::InitApply(object) => {
                let relist = inner.relist.get_or_insert_with(HashMap::new);
                relist.insert(key_of(&object), object);
                false
            }
            Event::InitDone => {
                let mut fresh = inner.relist.take().unwrap_or_default();
                let mut changed = fresh.len() != inner.objects.len();
                for (key, old) in inner.objects.drain() {
                    match fresh.get(&key) {
                        // Our own write can be newer than the list it raced with.
                        Some(new) if !replaces(&old, new) => {
                            fresh.insert(key, old);
                        }
                        Some(new) => changed |= version_of(new) != version_of(&old),
                        None => changed = true,
                    }
                }
                inner.objects = fresh;
                self.synced.store(true, Ordering::SeqCst);
                changed
            }
        }
    }
}

/// Feeds `cache` from a watch on `api` (optionally only objects matching `labels`) until the
/// task is aborted, notifying `wake` on news. Watch errors are logged and retried with
/// kube-runtime's default backoff.
pub fn spawn_watch<K>(
    api: Api<K>,
    labels: Option<&str>,
    cache: Arc<ObjectCache<K>>,
    wake: Arc<Notify>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut config = watcher::Config::default();
    if let Some(labels) = labels {
        config = config.labels(labels);
    }
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    let done = matches!(event, Event::InitDone);
                    if cache.apply(event) || done {
                        wake.notify_one();
                    }
                }
                Err(e) => tracing::warn!(
                    kind = %K::kind(&()),
                    error = %e,
                    "watch failed; retrying with backoff"
                ),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::ObjectMeta;

    fn job(name: &str, rv: &str) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..Job::default()
        }
    }

    fn rv(cache: &ObjectCache<Job>, name: &str) -> Option<String> {
        cache
            .get("ns", name)
            .and_then(|j| j.metadata.resource_version)
    }

    #[test]
    fn an_older_event_never_replaces_our_newer_write_and_its_echo_is_no_news() {
        let cache = ObjectCache::<Job>::default();
        cache.observe(job("a", "7"));
        assert!(!cache.apply(Event::Apply(job("a", "5"))));
        assert_eq!(rv(&cache, "a").as_deref(), Some("7"));
        assert!(!cache.apply(Event::Apply(job("a", "7"))), "our own echo");
        assert!(cache.apply(Event::Apply(job("a", "9"))));
        assert_eq!(rv(&cache, "a").as_deref(), Some("9"));
        assert!(cache.apply(Event::Delete(job("a", "10"))));
        assert_eq!(cache.get("ns", "a"), None);
    }

    #[test]
    fn a_relist_replaces_the_contents_atomically_but_keeps_newer_writes() {
        let cache = ObjectCache::<Job>::default();
        assert!(!cache.is_synced());
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(job("a", "1")));
        cache.apply(Event::InitApply(job("b", "2")));
        assert!(
            cache.list().is_empty(),
            "nothing shown before the list completes"
        );
        assert!(cache.apply(Event::InitDone));
        assert!(cache.is_synced());
        assert_eq!(cache.list().len(), 2);
        cache.observe(job("b", "8"));
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(job("b", "3")));
        assert!(cache.apply(Event::InitDone), "a was deleted meanwhile");
        assert_eq!(cache.get("ns", "a"), None);
        assert_eq!(rv(&cache, "b").as_deref(), Some("8"));
    }

    #[test]
    fn opaque_versions_let_the_event_win() {
        let cache = ObjectCache::<Job>::default();
        cache.observe(job("a", "x9"));
        assert!(cache.apply(Event::Apply(job("a", "x1"))));
        assert_eq!(rv(&cache, "a").as_deref(), Some("x1"));
    }
}
