//! [`KubeBackend`]: [`Backend`] on the Kubernetes API through `kube::Api`.
//!
//! # Contract
//! - Status is written only through the status subresource, by server-side apply with the
//!   field manager [`FIELD_MANAGER`] (forced): the whole status is ours, spec, labels and
//!   annotations are never sent.
//! - A TaskRun created for a MinionTaskConfig is owned by it; each subtask Job by its TaskRun
//!   (see [`super::job`]).
//! - Events go through `kube::runtime::events::Recorder` (reporter [`FIELD_MANAGER`]).
//! - Lists cover the watched namespaces (all when none are configured).
//! - Every write first checks the [`WriteGate`]: a replica that lost its Lease writes nothing.
//! - With [`KubeBackend::with_watches`], lists and gets are served from watch-fed caches
//!   ([`super::cache`]) once synced, and every object our writes return is recorded there
//!   (read-your-writes); without, every read asks the API server.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cache::spawn_watch;
use super::gate::WriteGate;
use super::job::{self, WorkerDefaults};
use super::secrets::StorageSecrets;
use super::stuck;
use super::watches::{Cached, Caches, Scoped, Watches};
use crate::api::{
    MinionTaskConfig, MinionTaskConfigStatus, Table, TableStatus, TaskRun, TaskRunStatus,
};
use crate::control::{
    Backend, BackendError, BoxFuture, Created, Event, EventType, JobState, LaunchRequest, Reason,
    name_of, namespace_of,
};

/// Field manager of every status write, and the Events' reporting controller.
pub const FIELD_MANAGER: &str = "minion-operator";
/// Longest Event note the API accepts (1 kB).
const MAX_NOTE: usize = 1000;

/// The Kubernetes backend.
#[derive(Clone)]
pub struct KubeBackend {
    client: Client,
    namespaces: Vec<String>,
    defaults: Arc<WorkerDefaults>,
    recorder: Recorder,
    gate: WriteGate,
    caches: Option<Arc<Caches>>,
    /// Storage Secrets read lately.
    secrets: Arc<StorageSecrets>,
    /// See [`KubeBackend::with_pod_start_timeout`].
    pod_start_timeout: std::time::Duration,
    /// See [`KubeBackend::with_run_finalizers`].
    hold_runs: bool,
}

fn api_error(operation: String, e: kube::Error) -> BackendError {
    BackendError::io(operation, e)
}

fn is_status(e: &kube::Error, check: fn(&kube::core::Status) -> bool) -> bool {
    matches!(e, kube::Error::Api(s) if check(s))
}

fn not_found(kind: &'static str, namespace: &str, name: &str) -> BackendError {
    BackendError::NotFound {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

impl KubeBackend {
    /// The storage Secret a run's Job gets: the one of the run's Tables (the destination, and
    /// the source when the task reads one), and only when it opts in to being storage
    /// credentials. The worker has one set of credentials, so a source Table naming another
    /// Secret than the destination is refused, naming both.
    async fn job_secret(&self, ns: &str, run: &TaskRun) -> Result<Option<String>, BackendError> {
        // A run of a config may leave its tables to the config.
        let config = match &run.spec.config_ref {
            Some(c) => self.get::<MinionTaskConfig>(ns, c).await?,
            None => None,
        };
        let (table, source) = match &config {
            Some(cfg) => (cfg.spec.table.clone(), cfg.spec.source_table.clone()),
            None => (run.spec.table.clone(), run.spec.source_table.clone()),
        };
        let mut tables = vec![("spec.table", table)];
        if let Some(source) = source {
            tables.push(("spec.sourceTable", source));
        }
        let mut chosen: Option<(String, Option<String>)> = None;
        for (field, name) in tables {
            let Some(table) = self.get::<Table>(ns, &name).await? else {
                continue;
            };
            let secret = table
                .spec
                .storage_secret_ref
                .as_ref()
                .map(|s| s.name.clone());
            if secret.is_some() {
                // Refuses a Secret without the opt-in label (and a missing one).
                self.secrets.options(&self.client, &table).await?;
            }
            match &chosen {
                None => chosen = Some((name, secret)),
                Some((first, first_secret)) if *first_secret != secret => {
                    return Err(BackendError::NotAllowed {
                        reason: crate::control::Reason::SecretNotAllowed.as_str(),
                        message: format!(
                            "{field}: Table {ns}/{name} uses storage Secret {:?} but Table \
                             {ns}/{first} uses {:?}; a run's worker has one set of storage \
                             credentials, so both Tables must name the same \
                             spec.storageSecretRef",
                            secret.as_deref().unwrap_or("(none)"),
                            first_secret.as_deref().unwrap_or("(none)"),
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(chosen.and_then(|(_, secret)| secret))
    }
    /// A backend over `namespaces` (all when empty); `instance` names this replica in Events.
    pub fn new(
        client: Client,
        namespaces: Vec<String>,
        defaults: WorkerDefaults,
        instance: Option<String>,
        gate: WriteGate,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        let namespaces_all = namespaces.is_empty();
        KubeBackend {
            client,
            namespaces,
            defaults: Arc::new(defaults),
            recorder,
            gate,
            caches: None,
            secrets: Arc::default(),
            pod_start_timeout: stuck::DEFAULT_GRACE,
            hold_runs: namespaces_all,
        }
    }

    /// Serves reads from watch-fed caches: starts one watch per kind (Tables,
    /// MinionTaskConfigs, TaskRuns, and the Jobs labelled as ours) per watched scope. Must be
    /// called inside a Tokio runtime; the watches stop when the returned [`Watches`] drops.
    pub fn with_watches(mut self) -> (Self, Watches) {
        let caches = Arc::new(Caches {
            tables: Scoped::new(&self.namespaces),
            configs: Scoped::new(&self.namespaces),
            runs: Scoped::new(&self.namespaces),
            jobs: Scoped::new(&self.namespaces),
        });
        let wake = Arc::new(tokio::sync::Notify::new());
        let jobs_selector = format!("{}={}", job::MANAGED_BY_LABEL, job::MANAGED_BY);
        let mut tasks = Vec::new();
        fn api<K>(client: &Client, scope: &Option<String>) -> Api<K>
        where
            K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        {
            match scope {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            }
        }
        for (scope, cache) in &caches.tables.scopes {
            let api = api(&self.client, scope);
            tasks.push(spawn_watch(api, None, cache.clone(), wake.clone()));
        }
        for (scope, cache) in &caches.configs.scopes {
            let api = api(&self.client, scope);
            tasks.push(spawn_watch(api, None, cache.clone(), wake.clone()));
        }
        for (scope, cache) in &caches.runs.scopes {
            let api = api(&self.client, scope);
            tasks.push(spawn_watch(api, None, cache.clone(), wake.clone()));
        }
        for (scope, cache) in &caches.jobs.scopes {
            let api = api(&self.client, scope);
            tasks.push(spawn_watch(
                api,
                Some(&jobs_selector),
                cache.clone(),
                wake.clone(),
            ));
        }
        self.caches = Some(caches);
        (self, Watches { wake, tasks })
    }

    /// Whether every watch has completed its first list (always true without watches).
    pub fn is_synced(&self) -> bool {
        self.caches.as_ref().is_none_or(|c| {
            c.tables.is_synced()
                && c.configs.is_synced()
                && c.runs.is_synced()
                && c.jobs.is_synced()
        })
    }

    fn cache<K: Cached>(&self) -> Option<&Scoped<K>> {
        self.caches.as_deref().map(K::scoped)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    async fn list<K>(&self) -> Result<Vec<K>, BackendError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Cached,
    {
        if let Some(items) = self.cache::<K>().and_then(Scoped::list) {
            return Ok(items);
        }
        let lp = ListParams::default();
        let op = || format!("list {}", K::plural(&()));
        if self.namespaces.is_empty() {
            let api: Api<K> = Api::all(self.client.clone());
            return Ok(api.list(&lp).await.map_err(|e| api_error(op(), e))?.items);
        }
        let mut out = Vec::new();
        for ns in &self.namespaces {
            let api: Api<K> = Api::namespaced(self.client.clone(), ns);
            out.extend(api.list(&lp).await.map_err(|e| api_error(op(), e))?.items);
        }
        Ok(out)
    }

    async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, BackendError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Cached,
    {
        if let Some(found) = self.cache::<K>().and_then(|c| c.get(namespace, name)) {
            return Ok(found);
        }
        Api::<K>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| api_error(format!("get {} {namespace}/{name}", K::kind(&())), e))
    }

    /// Server-side apply of `status` on `/status`, as the only owner of the status.
    async fn apply_status<K, S>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        status: &S,
    ) -> Result<(), BackendError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
        S: Serialize,
        K: Cached,
    {
        self.gate.check("update status")?;
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match Api::<K>::namespaced(self.client.clone(), namespace)
            .patch_status(name, &pp, &Patch::Apply(&patch))
            .await
        {
            Ok(updated) => {
                if let Some(cache) = self.cache::<K>() {
                    cache.observe(updated);
                }
                Ok(())
            }
            Err(e) if is_status(&e, kube::core::Status::is_not_found) => {
                Err(not_found(kind, namespace, name))
            }
            Err(e) => Err(api_error(
                format!("apply status of {kind} {namespace}/{name}"),
                e,
            )),
        }
    }

    async fn delete<K>(&self, namespace: &str, name: &str) -> Result<(), BackendError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Cached,
    {
        self.gate.check("delete")?;
        let forget = || {
            if let Some(cache) = self.cache::<K>() {
                cache.forget(namespace, name);
            }
        };
        match Api::<K>::namespaced(self.client.clone(), namespace)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => {
                forget();
                Ok(())
            }
            Err(e) if is_status(&e, kube::core::Status::is_not_found) => {
                forget();
                Ok(())
            }
            Err(e) => Err(api_error(
                format!("delete {} {namespace}/{name}", K::kind(&())),
                e,
            )),
        }
    }

    async fn create_run(&self, run: &TaskRun) -> Result<Created, BackendError> {
        self.gate.check("create TaskRun")?;
        let namespace = namespace_of(&run.metadata);
        let mut run = run.clone();
        run.status = None;
        run.metadata.namespace = Some(namespace.clone());
        run.metadata.creation_timestamp = None;
        if run.metadata.owner_references.is_none()
            && let Some(cfg_name) = &run.spec.config_ref
            && let Some(cfg) = self.get::<MinionTaskConfig>(&namespace, cfg_name).await?
            && let Some(owner) = cfg.controller_owner_ref(&())
        {
            run.metadata.owner_references = Some(vec![owner]);
        }
        let api: Api<TaskRun> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &run).await {
            Ok(created) => {
                if let Some(cache) = self.cache::<TaskRun>() {
                    cache.observe(created);
                }
                Ok(Created::Created)
            }
            Err(e) if is_status(&e, kube::core::Status::is_already_exists) => {
                Ok(Created::AlreadyExists)
            }
            Err(e) => Err(api_error(
                format!("create TaskRun {namespace}/{}", name_of(&run.metadata)),
                e,
            )),
        }
    }

    async fn event(&self, event: &Event) -> Result<(), BackendError> {
        self.gate.check("record Event")?;
        let o = &event.object;
        let uid = match o.kind.as_str() {
            "Table" => self
                .get::<Table>(&o.namespace, &o.name)
                .await?
                .and_then(|r| r.metadata.uid),
            "MinionTaskConfig" => self
                .get::<MinionTaskConfig>(&o.namespace, &o.name)
                .await?
                .and_then(|r| r.metadata.uid),
            "TaskRun" => self
                .get::<TaskRun>(&o.namespace, &o.name)
                .await?
                .and_then(|r| r.metadata.uid),
            _ => None,
        };
        let reference = ObjectReference {
            api_version: Some(crate::api::API_VERSION.into()),
            kind: Some(o.kind.clone()),
            namespace: Some(o.namespace.clone()),
            name: Some(o.name.clone()),
            uid,
            ..ObjectReference::default()
        };
        let mut note = event.message.clone();
        if note.len() > MAX_NOTE {
            let mut end = MAX_NOTE;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let ev = KubeEvent {
            type_: match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: event.reason.clone(),
            note: Some(note),
            action: event.reason.clone(),
            secondary: None,
        };
        self.recorder
            .publish(&ev, &reference)
            .await
            .map_err(|e| api_error(format!("record Event {} on {}", event.reason, o.name), e))
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<(), BackendError> {
        self.gate.check("create Job")?;
        let ns = &request.namespace;
        let run = self
            .get::<TaskRun>(ns, &request.task_run)
            .await?
            .ok_or_else(|| not_found("TaskRun", ns, &request.task_run))?;
        let secret = self.job_secret(ns, &run).await?;
        let overrides = match &run.spec.config_ref {
            Some(name) => self
                .get::<MinionTaskConfig>(ns, name)
                .await?
                .and_then(|c| c.spec.worker),
            None => None,
        };
        let job = job::build(
            request,
            &self.defaults,
            overrides.as_ref(),
            &run,
            secret.as_deref(),
        )
        .map_err(|e| BackendError::Corrupt {
            kind: "TaskRun",
            namespace: ns.clone(),
            name: request.task_run.clone(),
            message: e.to_string(),
        })?;
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        match api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                if let Some(cache) = self.cache::<Job>() {
                    cache.observe(created);
                }
                Ok(())
            }
            Err(e) if is_status(&e, kube::core::Status::is_already_exists) => Ok(()),
            Err(e) => {
                let operation = format!("create Job {ns}/{}", request.job);
                self.name_refusal(request, &operation, &e).await;
                Err(api_error(operation, e))
            }
        }
    }

    /// A Job the API server refuses (403: a missing RBAC verb; 422: an invalid Job) is
    /// retried every tick and would otherwise show only in the operator's log: a Warning
    /// Event on the run names the refusal where `kubectl describe tr` shows it (repeats
    /// become the Event's series count).
    async fn name_refusal(&self, request: &LaunchRequest, operation: &str, e: &kube::Error) {
        let kube::Error::Api(status) = e else {
            return;
        };
        let reason = match status.code {
            403 => Reason::JobForbidden,
            422 => Reason::JobInvalid,
            _ => return,
        };
        let event = Event {
            object: crate::control::ObjectRef::new(
                "TaskRun",
                &request.namespace,
                &request.task_run,
            ),
            type_: EventType::Warning,
            reason: reason.into(),
            message: format!(
                "subtask {} attempt {}: {operation}: {}",
                request.subtask, request.attempt, status.message
            ),
            time: chrono::Utc::now(),
        };
        if let Err(err) = self.event(&event).await {
            tracing::warn!(task_run = %request.task_run, error = %err, "could not record an event");
        }
    }

    async fn state(&self, namespace: &str, name: &str) -> Result<JobState, BackendError> {
        let Some(found) = self.get::<Job>(namespace, name).await? else {
            return Ok(JobState::Missing);
        };
        let state = job::job_state(&found, None);
        if matches!(state, JobState::Pending | JobState::Running) {
            return Ok(self.stuck(namespace, name, &found).await.unwrap_or(state));
        }
        if !matches!(state, JobState::Failed { .. }) {
            return Ok(state);
        }
        // The worker's exit code tells bad input from a transient failure; the pods may
        // already be gone (TTL, or no `pods: list` right), then the Job's reason decides.
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"));
        let code = pods
            .list(&lp)
            .await
            .ok()
            .and_then(|l| l.items.iter().rev().find_map(job::pod_exit_code));
        Ok(job::job_state(&found, code))
    }
}

impl KubeBackend {
    /// Why a Job that has not finished cannot start its worker ([`stuck::stuck`]), looked at
    /// only once it is older than the grace period; `None` when it may still start (or the
    /// pods or Events cannot be read: the run's own timeouts still apply).
    async fn stuck(&self, namespace: &str, name: &str, found: &Job) -> Option<JobState> {
        let now = chrono::Utc::now();
        let created = crate::control::created_at(&found.metadata)?;
        let grace = chrono::Duration::from_std(self.pod_start_timeout).ok()?;
        if now - created < grace {
            return None;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"));
        let pods = pods.list(&lp).await.ok()?.items;
        let events = if pods.is_empty() {
            let events: Api<k8s_openapi::api::core::v1::Event> =
                Api::namespaced(self.client.clone(), namespace);
            let lp = ListParams::default().fields(&format!(
                "involvedObject.kind=Job,involvedObject.name={name}"
            ));
            events.list(&lp).await.map(|l| l.items).unwrap_or_default()
        } else {
            Vec::new()
        };
        let (reason, message) = stuck::stuck(found, &pods, &events, now, self.pod_start_timeout)?;
        Some(JobState::Stuck { reason, message })
    }

    /// Adds or removes [`crate::control::finalize::FINALIZER`] with a merge patch that carries
    /// the run's `resourceVersion` (a concurrent change makes it fail; the next tick retries).
    async fn set_finalizer(&self, run: &TaskRun, hold: bool) -> Result<(), BackendError> {
        use crate::control::finalize::FINALIZER;
        self.gate.check("update a TaskRun's finalizers")?;
        let namespace = crate::control::namespace_of(&run.metadata);
        let name = crate::control::name_of(&run.metadata);
        let mut finalizers = run.metadata.finalizers.clone().unwrap_or_default();
        finalizers.retain(|f| f != FINALIZER);
        if hold {
            finalizers.push(FINALIZER.to_string());
        }
        let patch = serde_json::json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": run.metadata.resource_version,
        }});
        match Api::<TaskRun>::namespaced(self.client.clone(), &namespace)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => {
                if let Some(cache) = self.cache::<TaskRun>() {
                    cache.observe(updated);
                }
                Ok(())
            }
            Err(e) if is_status(&e, kube::core::Status::is_not_found) => Ok(()),
            Err(e) => Err(api_error(
                format!("update the finalizers of TaskRun {namespace}/{name}"),
                e,
            )),
        }
    }

    /// Whether runs get the operator's finalizer (`--finalizers`); by default only when every
    /// namespace is watched. A namespaced install's Role lives in the watched namespace, and
    /// deleting that namespace deletes the Role too: the finalizer could then never be removed
    /// and would block the namespace's deletion for good.
    pub fn with_run_finalizers(mut self, hold: bool) -> Self {
        self.hold_runs = hold;
        self
    }

    /// How long a subtask's Job may take to start its worker before its attempt fails with
    /// the reason ([`stuck::DEFAULT_GRACE`] by default).
    pub fn with_pod_start_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.pod_start_timeout = timeout;
        self
    }
}

impl Backend for KubeBackend {
    fn list_tables(&self) -> BoxFuture<'_, Result<Vec<Table>, BackendError>> {
        Box::pin(self.list())
    }

    fn list_task_configs(&self) -> BoxFuture<'_, Result<Vec<MinionTaskConfig>, BackendError>> {
        Box::pin(self.list())
    }

    fn list_task_runs(&self) -> BoxFuture<'_, Result<Vec<TaskRun>, BackendError>> {
        Box::pin(self.list())
    }

    fn get_table<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Table>, BackendError>> {
        Box::pin(self.get(namespace, name))
    }

    fn get_task_config<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<MinionTaskConfig>, BackendError>> {
        Box::pin(self.get(namespace, name))
    }

    fn get_task_run<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<TaskRun>, BackendError>> {
        Box::pin(self.get(namespace, name))
    }

    fn create_task_run<'a>(
        &'a self,
        run: &'a TaskRun,
    ) -> BoxFuture<'a, Result<Created, BackendError>> {
        Box::pin(self.create_run(run))
    }

    fn delete_task_run<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.delete::<TaskRun>(namespace, name))
    }

    fn update_table_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a TableStatus,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.apply_status::<Table, _>("Table", namespace, name, status))
    }

    fn update_task_config_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a MinionTaskConfigStatus,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.apply_status::<MinionTaskConfig, _>(
            "MinionTaskConfig",
            namespace,
            name,
            status,
        ))
    }

    fn update_task_run_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a TaskRunStatus,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.apply_status::<TaskRun, _>("TaskRun", namespace, name, status))
    }

    fn record_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.event(event))
    }

    fn set_run_finalizer<'a>(
        &'a self,
        run: &'a TaskRun,
        hold: bool,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.set_finalizer(run, hold))
    }

    fn holds_runs(&self) -> bool {
        self.hold_runs
    }

    fn launch_subtask<'a>(
        &'a self,
        request: &'a LaunchRequest,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.launch(request))
    }

    fn subtask_state<'a>(
        &'a self,
        namespace: &'a str,
        job: &'a str,
    ) -> BoxFuture<'a, Result<JobState, BackendError>> {
        Box::pin(self.state(namespace, job))
    }

    fn delete_subtask<'a>(
        &'a self,
        namespace: &'a str,
        job: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.delete::<Job>(namespace, job))
    }

    fn check_write(&self, operation: &str) -> Result<(), BackendError> {
        self.gate.check(operation)
    }

    fn storage_options<'a>(
        &'a self,
        table: &'a Table,
    ) -> BoxFuture<'a, Result<Option<std::collections::HashMap<String, String>>, BackendError>>
    {
        Box::pin(self.secrets.options(&self.client, table))
    }
}
