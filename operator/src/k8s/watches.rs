//! Watch-fed caches of the kinds the loop reads (Tables, MinionTaskConfigs, TaskRuns and our
//! Jobs), one per watched scope, and the running watches that wake the loop.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::Resource;

use super::cache::ObjectCache;
use crate::api::{MinionTaskConfig, Table, TaskRun};

/// The caches of one kind: one per watched scope (a namespace, or `None` for all).
pub(super) struct Scoped<K> {
    pub(super) scopes: Vec<(Option<String>, Arc<ObjectCache<K>>)>,
}

impl<K: Resource + Clone> Scoped<K> {
    pub(super) fn new(namespaces: &[String]) -> Self {
        let scopes = if namespaces.is_empty() {
            vec![(None, Arc::default())]
        } else {
            namespaces
                .iter()
                .map(|ns| (Some(ns.clone()), Arc::default()))
                .collect()
        };
        Scoped { scopes }
    }

    pub(super) fn scope(&self, namespace: &str) -> Option<&ObjectCache<K>> {
        self.scopes
            .iter()
            .find(|(ns, _)| ns.as_deref().is_none_or(|n| n == namespace))
            .map(|(_, c)| c.as_ref())
    }

    pub(super) fn is_synced(&self) -> bool {
        self.scopes.iter().all(|(_, c)| c.is_synced())
    }

    /// Every object, or `None` while a scope has not synced.
    pub(super) fn list(&self) -> Option<Vec<K>> {
        self.is_synced()
            .then(|| self.scopes.iter().flat_map(|(_, c)| c.list()).collect())
    }

    /// The object, `Some(None)` when absent, `None` when the cache cannot tell.
    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<Option<K>> {
        let cache = self.scope(namespace).filter(|c| c.is_synced())?;
        Some(cache.get(namespace, name))
    }

    pub(super) fn observe(&self, object: K) {
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        if let Some(cache) = self.scope(&namespace) {
            cache.observe(object);
        }
    }

    pub(super) fn forget(&self, namespace: &str, name: &str) {
        if let Some(cache) = self.scope(namespace) {
            cache.forget(namespace, name);
        }
    }
}

/// The watch-fed caches of every kind the loop reads.
pub(super) struct Caches {
    pub(super) tables: Scoped<Table>,
    pub(super) configs: Scoped<MinionTaskConfig>,
    pub(super) runs: Scoped<TaskRun>,
    pub(super) jobs: Scoped<Job>,
}

/// A kind with a cache in [`Caches`].
pub(super) trait Cached: Sized {
    fn scoped(caches: &Caches) -> &Scoped<Self>;
}

impl Cached for Table {
    fn scoped(caches: &Caches) -> &Scoped<Self> {
        &caches.tables
    }
}

impl Cached for MinionTaskConfig {
    fn scoped(caches: &Caches) -> &Scoped<Self> {
        &caches.configs
    }
}

impl Cached for TaskRun {
    fn scoped(caches: &Caches) -> &Scoped<Self> {
        &caches.runs
    }
}

impl Cached for Job {
    fn scoped(caches: &Caches) -> &Scoped<Self> {
        &caches.jobs
    }
}

/// The running watches of a [`KubeBackend`]: `wake` is notified whenever a watched object
/// changed in a way our own writes did not cause. Dropping it stops the watches.
pub struct Watches {
    pub wake: Arc<tokio::sync::Notify>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watches {
    /// Waits for the next change, at most `timeout`.
    pub async fn changed_within(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
