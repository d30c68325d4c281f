//! Gathering what a run needs: the run resolved against its config and tables (validated),
//! the catalogs (cached per table URI), watermarks recovered from the Delta log, the stored
//! plan in object storage, a table's lineage with every live entry's lists loaded
//! ([`lineage`]), and the [`GeneratorInput`] assembled from them. Shared by the control loop and `minion plan`.
//!
//! What it may touch: the backend (reads only), catalogs (create-or-open and refresh), the
//! `_minion/` directory of destination tables, and (through [`super::inputs`]) input
//! directories and upsert validity files.
//!
//! # Stored lineage lists
//! A live lineage entry too long for the Table's status keeps its lists in
//! `<table>/_minion/lineage/<entry id>/<content hash>.json` ([`LINEAGE_LISTS_DIR`]). Such an
//! object is written before the status naming it and never changed (a new content is a new
//! name), so this process caches what it read or wrote; it is deleted once no status names it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};

use super::{Backend, ControlError, name_of, namespace_of};
use crate::api::{MinionTaskConfig, SubtaskStatus, Table, TableStatus, TaskRun, TaskRunPhase};
use crate::catalog::{Catalog, app_id};
use crate::generator::{DEFAULT_WATERMARK, GeneratorInput, IncompleteRun, Plan, TableView};
use crate::lineage::{EntryLists, Lineage};
use crate::model::{TableDef, TaskConfig, TaskSpec};
use crate::validate::{self, ValidatedTaskRun};

/// Open catalogs by table URI; each use refreshes to the latest log version.
#[derive(Default)]
pub struct Catalogs {
    open: HashMap<String, Catalog>,
    /// URI prefixes a catalog may be opened under (empty: any).
    allowed: Vec<String>,
}

impl Catalogs {
    /// Catalogs opened only under `allowed` URI prefixes (empty: any): nothing is read or
    /// created elsewhere, whoever asks.
    pub fn allowed_under(allowed: Vec<String>) -> Self {
        Catalogs {
            open: HashMap::new(),
            allowed,
        }
    }

    /// Forgets the open catalog of `uri` (its store's credentials changed): the next use
    /// opens it again.
    pub fn forget(&mut self, uri: &str) {
        self.open.remove(uri);
    }

    /// Keeps only the catalogs of `uris` (the Tables that still exist), so the cache never
    /// outgrows the tables the operator serves.
    pub fn retain<'a>(&mut self, uris: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = uris.into_iter().collect();
        self.open.retain(|uri, _| keep.contains(uri.as_str()));
    }

    /// How many catalogs are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no catalog is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The catalog of `def`, refreshed; created when the table has none yet and
    /// [`TableDef::create`] allows it.
    ///
    /// # Errors
    /// The log cannot be created, opened or read; `TableNotFound` when there is none and the
    /// Table may not create it.
    pub async fn get(&mut self, def: &TableDef) -> Result<&mut Catalog, ControlError> {
        let err = |source| ControlError::Catalog {
            table: def.name.clone(),
            source,
        };
        if !validate::uri_allowed(&def.uri, &self.allowed) {
            return Err(ControlError::Invalid {
                kind: "Table",
                name: format!("{}/{}", def.namespace, def.name),
                reason: super::Reason::UriNotAllowed.as_str(),
                message: validate::uri_refused(
                    &format!("Table {}/{}", def.namespace, def.name),
                    "spec.uri",
                    &def.uri,
                    &self.allowed,
                ),
            });
        }
        if !self.open.contains_key(&def.uri) {
            let catalog = if def.create {
                Catalog::create(&def.uri, &def.schema, HashMap::new()).await
            } else {
                Catalog::open_existing(&def.uri, &def.schema, HashMap::new()).await
            }
            .map_err(err)?;
            self.open.insert(def.uri.clone(), catalog);
            return Ok(self.open.get_mut(&def.uri).expect("inserted"));
        }
        let catalog = self.open.get_mut(&def.uri).expect("present");
        catalog.refresh().await.map_err(err)?;
        Ok(catalog)
    }
}

fn invalid(kind: &'static str, name: &str, e: &validate::ValidationErrors) -> ControlError {
    ControlError::Invalid {
        kind,
        name: name.to_string(),
        reason: e.reason(),
        message: e.to_string(),
    }
}

fn not_found(kind: &'static str, namespace: &str, name: &str) -> ControlError {
    ControlError::Invalid {
        kind,
        name: format!("{namespace}/{name}"),
        reason: "NotFound",
        message: format!("{kind} {namespace}/{name} does not exist"),
    }
}

/// A table, validated, with its status.
#[derive(Clone, Debug)]
pub struct ResolvedTable {
    pub def: TableDef,
    pub status: TableStatus,
}

/// Reads and validates a table.
///
/// # Errors
/// `Invalid` (reason `NotFound` or the validation reason); backend failures.
pub async fn table(
    backend: &dyn Backend,
    namespace: &str,
    name: &str,
) -> Result<ResolvedTable, ControlError> {
    let t: Table = backend
        .get_table(namespace, name)
        .await?
        .ok_or_else(|| not_found("Table", namespace, name))?;
    let def = validate::table(&t).map_err(|e| invalid("Table", name, &e))?;
    Ok(ResolvedTable {
        def,
        status: t.status.unwrap_or_default(),
    })
}

/// A validated config with its destination and source tables.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub config: TaskConfig,
    pub destination: ResolvedTable,
    pub source: Option<ResolvedTable>,
}

/// The config a SegmentImport's `initialWatermarkFrom` names, and why its watermark cannot be
/// taken over now: it is missing, of another task type or tables, not suspended, or has an
/// unfinished run in `runs` (which could still move its watermark). Asked only when planning
/// (one read of that config), never by the config's reconcile.
pub async fn watermark_source(
    backend: &dyn Backend,
    config: &TaskConfig,
    runs: &[TaskRun],
) -> Result<Option<(String, Option<String>)>, ControlError> {
    let TaskSpec::SegmentImport(import) = &config.task else {
        return Ok(None);
    };
    let Some(name) = &import.initial_watermark_from else {
        return Ok(None);
    };
    let blocked = match backend.get_task_config(&config.namespace, name).await? {
        None => Some(format!(
            "MinionTaskConfig {name} does not exist in namespace {}",
            config.namespace
        )),
        Some(other) => {
            let spec = &other.spec;
            if spec.task_type != minion_contract::TaskType::RealtimeToOfflineSegmentsTask {
                Some(format!(
                    "MinionTaskConfig {name} is a {}, not a RealtimeToOfflineSegmentsTask",
                    spec.task_type.as_str()
                ))
            } else if spec.table != config.table || spec.source_table != config.source_table {
                Some(format!(
                    "MinionTaskConfig {name} moves {} into {}, not {} into {}",
                    spec.source_table.as_deref().unwrap_or("-"),
                    spec.table,
                    config.source_table.as_deref().unwrap_or("-"),
                    config.table
                ))
            } else if !spec.suspend {
                Some(format!(
                    "MinionTaskConfig {name} is not suspended (minion suspend {name}, or \
                     spec.suspend: true)"
                ))
            } else {
                runs.iter()
                    .filter(|r| namespace_of(&r.metadata) == config.namespace)
                    .filter(|r| r.spec.config_ref.as_deref() == Some(name.as_str()))
                    .find(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_finished()))
                    .map(|r| {
                        format!(
                            "MinionTaskConfig {name} has an unfinished run, TaskRun {}",
                            name_of(&r.metadata)
                        )
                    })
            }
        }
    };
    Ok(Some((name.clone(), blocked)))
}

async fn tables_of(
    backend: &dyn Backend,
    config: &TaskConfig,
) -> Result<(ResolvedTable, Option<ResolvedTable>), ControlError> {
    let destination = table(backend, &config.namespace, &config.table).await?;
    let source = match &config.source_table {
        Some(s) => Some(table(backend, &config.namespace, s).await?),
        None => None,
    };
    Ok((destination, source))
}

/// Validates a MinionTaskConfig and checks it against its tables.
///
/// # Errors
/// `Invalid` naming the first problem's reason and every problem in the message.
pub async fn resolve_config(
    backend: &dyn Backend,
    cfg: &MinionTaskConfig,
) -> Result<Resolved, ControlError> {
    let name = name_of(&cfg.metadata);
    let config = validate::task_config(cfg).map_err(|e| invalid("MinionTaskConfig", &name, &e))?;
    let (destination, source) = tables_of(backend, &config).await?;
    validate::against_tables(&config, &destination.def, source.as_ref().map(|s| &s.def))
        .map_err(|e| invalid("MinionTaskConfig", &name, &e))?;
    Ok(Resolved {
        config,
        destination,
        source,
    })
}

/// Validates a TaskRun (with the config it refers to) and checks it against its tables.
///
/// # Errors
/// As [`resolve_config`], naming the TaskRun or its config.
pub async fn resolve_run(
    backend: &dyn Backend,
    run: &TaskRun,
) -> Result<(ValidatedTaskRun, Resolved), ControlError> {
    let namespace = namespace_of(&run.metadata);
    let name = name_of(&run.metadata);
    let config = match &run.spec.config_ref {
        Some(c) => backend.get_task_config(&namespace, c).await?,
        None => None,
    };
    let validated =
        validate::task_run(run, config.as_ref()).map_err(|e| invalid("TaskRun", &name, &e))?;
    let (destination, source) = tables_of(backend, &validated.config).await?;
    validated
        .against_tables(&destination.def, source.as_ref().map(|s| &s.def))
        .map_err(|e| invalid("TaskRun", &name, &e))?;
    let resolved = Resolved {
        config: validated.config.clone(),
        destination,
        source,
    };
    Ok((validated, resolved))
}

/// The watermark keys of a config: each merge level, or [`DEFAULT_WATERMARK`].
pub fn watermark_levels(config: &TaskConfig) -> Vec<String> {
    match &config.task {
        TaskSpec::MergeRollup(m) => m.levels.iter().map(|l| l.name.clone()).collect(),
        _ => vec![DEFAULT_WATERMARK.to_string()],
    }
}

/// Watermarks recovered from the destination's Delta log (the `txn` version of each level's
/// app id); levels never committed are absent.
///
/// # Errors
/// The log cannot be read.
pub async fn watermarks_from_log(
    catalog: &Catalog,
    config: &TaskConfig,
) -> Result<BTreeMap<String, i64>, ControlError> {
    let mut out = BTreeMap::new();
    for level in watermark_levels(config) {
        let app = app_id::watermark(
            &config.namespace,
            &config.name,
            (!level.is_empty()).then_some(level.as_str()),
        );
        let version = catalog
            .txn_version(&app)
            .await
            .map_err(|source| ControlError::Catalog {
                table: config.table.clone(),
                source,
            })?;
        if let Some(v) = version {
            out.insert(level, v);
        }
    }
    Ok(out)
}

// A run's directory is `_minion/runs/<run dir>/`, where the run dir is `<namespace>/<run key>`
// (the key carries the TaskRun's uid: see `protocol::run_key`).

fn plan_path(run_dir: &str) -> String {
    format!("_minion/runs/{run_dir}/plan.json")
}

fn subtasks_path(run_dir: &str) -> String {
    format!("_minion/runs/{run_dir}/subtasks.json")
}

async fn get_json<T: serde::de::DeserializeOwned>(
    uri: &str,
    relative: &str,
) -> Result<Option<T>, ControlError> {
    let loc = crate::storage::resolve(uri).map_err(|e| ControlError::storage(uri, e))?;
    match loc.get_bytes(&loc.child(relative)).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ControlError::storage(&loc.child_uri(relative), e)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(ControlError::storage(&loc.child_uri(relative), e)),
    }
}

async fn put_json<T: serde::Serialize>(
    uri: &str,
    relative: &str,
    value: &T,
) -> Result<(), ControlError> {
    let loc = crate::storage::resolve(uri).map_err(|e| ControlError::storage(uri, e))?;
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ControlError::storage(uri, e))?;
    loc.put_bytes(&loc.child(relative), bytes)
        .await
        .map_err(|e| ControlError::storage(&loc.child_uri(relative), e))
}

/// How many times this process read a stored plan (`plan.json`) and stored subtask states
/// (`subtasks.json`), found or not: what the control loop's reads per step are measured by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredReads {
    pub plans: u64,
    pub subtasks: u64,
}

static PLAN_READS: AtomicU64 = AtomicU64::new(0);
static SUBTASKS_READS: AtomicU64 = AtomicU64::new(0);

/// Reads of stored plans and subtask states by this process so far (see [`StoredReads`]).
pub fn stored_reads() -> StoredReads {
    StoredReads {
        plans: PLAN_READS.load(Ordering::Relaxed),
        subtasks: SUBTASKS_READS.load(Ordering::Relaxed),
    }
}

/// The full plan of a run stored at `<dest>/_minion/runs/<run dir>/plan.json`, if any.
///
/// # Errors
/// The store cannot be read or the stored plan does not parse.
pub async fn read_plan(dest_uri: &str, run_dir: &str) -> Result<Option<Plan>, ControlError> {
    PLAN_READS.fetch_add(1, Ordering::Relaxed);
    get_json(dest_uri, &plan_path(run_dir)).await
}

/// Stored plans of runs in flight, kept in memory by run directory (`<namespace>/<run key>`,
/// the key carrying the run's uid). A plan is written once, while the run plans, and never
/// changed after (the run's identity names it: a TaskRun created again under its name is a
/// new run with a new directory), so a plan read or written once serves every later step
/// of its run. Only an optimisation: a process that starts reads the plan again, and an
/// entry read under another destination URI is read again.
#[derive(Default)]
pub struct Plans {
    by_dir: HashMap<String, (String, Arc<Plan>)>,
}

impl Plans {
    /// The stored plan of the run `run_dir` under `dest_uri` ([`read_plan`] unless known).
    ///
    /// # Errors
    /// As [`read_plan`].
    pub async fn read(
        &mut self,
        dest_uri: &str,
        run_dir: &str,
    ) -> Result<Option<Arc<Plan>>, ControlError> {
        if let Some((uri, plan)) = self.by_dir.get(run_dir)
            && uri == dest_uri
        {
            return Ok(Some(plan.clone()));
        }
        let Some(plan) = read_plan(dest_uri, run_dir).await? else {
            return Ok(None);
        };
        Ok(Some(self.keep(dest_uri, run_dir, plan)))
    }

    /// Stores the plan of a run ([`write_plan`]) and keeps it.
    ///
    /// # Errors
    /// As [`write_plan`]; nothing is kept then.
    pub async fn write(
        &mut self,
        dest_uri: &str,
        run_dir: &str,
        plan: Plan,
    ) -> Result<Arc<Plan>, ControlError> {
        write_plan(dest_uri, run_dir, &plan).await?;
        Ok(self.keep(dest_uri, run_dir, plan))
    }

    fn keep(&mut self, dest_uri: &str, run_dir: &str, plan: Plan) -> Arc<Plan> {
        let plan = Arc::new(plan);
        self.by_dir
            .insert(run_dir.to_string(), (dest_uri.to_string(), plan.clone()));
        plan
    }

    /// Forgets the plans of runs whose directory `keep` refuses (finished or deleted runs).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_dir.retain(|dir, _| keep(dir));
    }

    /// Plans kept.
    pub fn len(&self) -> usize {
        self.by_dir.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_dir.is_empty()
    }
}

/// Stores the full plan of a run (overwriting is harmless: a run is planned once).
///
/// # Errors
/// The store cannot be written.
pub async fn write_plan(dest_uri: &str, run_dir: &str, plan: &Plan) -> Result<(), ControlError> {
    put_json(dest_uri, &plan_path(run_dir), plan).await
}

/// Every subtask's state of a run too large for its status (more than
/// [`crate::api::task_run::MAX_SUBTASK_DETAIL`] subtasks), stored at
/// `<dest>/_minion/runs/<run dir>/subtasks.json`, if any.
///
/// # Errors
/// The store cannot be read or the stored list does not parse.
pub async fn read_subtasks(
    dest_uri: &str,
    run_dir: &str,
) -> Result<Option<Vec<SubtaskStatus>>, ControlError> {
    SUBTASKS_READS.fetch_add(1, Ordering::Relaxed);
    get_json(dest_uri, &subtasks_path(run_dir)).await
}

/// Stores every subtask's state of a run (see [`read_subtasks`]).
///
/// # Errors
/// The store cannot be written.
pub async fn write_subtasks(
    dest_uri: &str,
    run_dir: &str,
    subtasks: &[SubtaskStatus],
) -> Result<(), ControlError> {
    put_json(dest_uri, &subtasks_path(run_dir), &subtasks).await
}

/// Deletes the run's directory `<dest>/_minion/runs/<namespace>/<key>/` (plan, subtask states)
/// and returns how many objects were deleted. Only that directory: both parts must be plain
/// resource names.
///
/// # Errors
/// An unusable run directory, or the store cannot be listed or written.
pub async fn delete_run_dir(dest_uri: &str, run_dir: &str) -> Result<usize, ControlError> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let plain = |p: &str| !p.is_empty() && !p.starts_with('.') && !p.contains("..");
    let parts: Vec<&str> = run_dir.split('/').collect();
    if parts.len() != 2 || !parts.iter().all(|p| plain(p)) {
        return Err(ControlError::storage(
            dest_uri,
            format!("refusing to delete the run directory {run_dir:?}"),
        ));
    }
    let relative = format!("_minion/runs/{run_dir}/");
    let loc = crate::storage::resolve(dest_uri).map_err(|e| ControlError::storage(dest_uri, e))?;
    let dir = loc.child(&relative);
    let files: Vec<object_store::path::Path> = loc
        .store
        .list(Some(&dir))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|e| ControlError::storage(&loc.child_uri(&relative), e))?;
    let mut deleted = 0;
    for path in files {
        match loc.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
            Err(e) => return Err(ControlError::storage(&loc.child_uri(&relative), e)),
        }
    }
    if deleted > 0
        && let Some(local) = dest_uri.strip_prefix("file://")
    {
        // The local store leaves empty directories behind.
        let _ = std::fs::remove_dir_all(
            std::path::Path::new(local).join(relative.trim_end_matches('/')),
        );
    }
    Ok(deleted)
}

/// Where live lineage entries too long for a Table's status keep their lists, below the table.
pub const LINEAGE_LISTS_DIR: &str = "_minion/lineage";

/// The cache holds at most this many paths; beyond, it is emptied.
const LISTS_CACHE_PATHS: usize = 1_000_000;

/// Stored lineage lists by object URI, with the number of paths they hold in all.
type ListsCache = (HashMap<String, Arc<EntryLists>>, usize);

/// Stored lineage lists read or written by this process.
fn lists_cache() -> &'static Mutex<ListsCache> {
    static CACHE: OnceLock<Mutex<ListsCache>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn cache_lists(key: String, lists: Arc<EntryLists>) {
    let mut cache = lists_cache().lock().expect("lists cache");
    if cache.1 + lists.paths() > LISTS_CACHE_PATHS {
        *cache = Default::default();
    }
    cache.1 += lists.paths();
    if let Some(old) = cache.0.insert(key, lists) {
        cache.1 -= old.paths();
    }
}

fn uncache_lists(key: &str) {
    let mut cache = lists_cache().lock().expect("lists cache");
    if let Some(old) = cache.0.remove(key) {
        cache.1 -= old.paths();
    }
}

/// Empties this process's cache of stored lists (tests: what another process sees).
#[cfg(test)]
pub(crate) fn forget_cached_lists() {
    *lists_cache().lock().expect("lists cache") = Default::default();
}

fn cached_lists(key: &str) -> Option<Arc<EntryLists>> {
    lists_cache()
        .lock()
        .expect("lists cache")
        .0
        .get(key)
        .cloned()
}

/// Whether `relative` names a stored lineage list: `_minion/lineage/<id>/<name>.json`, plain
/// parts only. Nothing else is ever read or deleted as one.
pub fn is_lineage_lists_path(relative: &str) -> bool {
    let Some(rest) = relative.strip_prefix(LINEAGE_LISTS_DIR) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let plain = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(parts.as_slice(), ["", id, file] if plain(id) && plain(file) && file.ends_with(".json"))
}

fn lists_uri(uri: &str, relative: &str) -> String {
    format!("{}/{}", uri.trim_end_matches('/'), relative)
}

/// Reads the stored lists at `relative` below the table `uri` (cached: they never change).
///
/// # Errors
/// Not a lists path, missing, unreadable or unparsable.
pub async fn read_lineage_lists(
    uri: &str,
    relative: &str,
) -> Result<Arc<EntryLists>, ControlError> {
    let key = lists_uri(uri, relative);
    if !is_lineage_lists_path(relative) {
        return Err(ControlError::storage(
            &key,
            "not a lineage lists path (_minion/lineage/<entry>/<hash>.json)",
        ));
    }
    if let Some(lists) = cached_lists(&key) {
        return Ok(lists);
    }
    let lists: EntryLists = get_json(uri, relative)
        .await?
        .ok_or_else(|| ControlError::storage(&key, "stored lineage lists are missing"))?;
    let lists = Arc::new(lists);
    cache_lists(key, lists.clone());
    Ok(lists)
}

/// Writes stored lists (`bytes`, the JSON of `lists`) at `relative` below the table `uri`,
/// unless this process already wrote or read that object (its name is its content's hash).
///
/// # Errors
/// Not a lists path, or the store cannot be written.
pub async fn write_lineage_lists(
    uri: &str,
    relative: &str,
    lists: &EntryLists,
    bytes: Vec<u8>,
) -> Result<(), ControlError> {
    let key = lists_uri(uri, relative);
    if !is_lineage_lists_path(relative) {
        return Err(ControlError::storage(&key, "not a lineage lists path"));
    }
    if cached_lists(&key).is_some() {
        return Ok(());
    }
    let loc = crate::storage::resolve(uri).map_err(|e| ControlError::storage(uri, e))?;
    loc.put_bytes(&loc.child(relative), bytes)
        .await
        .map_err(|e| ControlError::storage(&key, e))?;
    cache_lists(key, Arc::new(lists.clone()));
    Ok(())
}

/// Deletes stored lists below the table `uri` (paths that are not lists paths are skipped;
/// missing ones count as deleted) and returns how many were deleted.
///
/// # Errors
/// The store cannot be written.
pub async fn delete_lineage_lists(uri: &str, relative: &[String]) -> Result<usize, ControlError> {
    use object_store::ObjectStoreExt;
    let loc = crate::storage::resolve(uri).map_err(|e| ControlError::storage(uri, e))?;
    let mut deleted = 0;
    for path in relative.iter().filter(|p| is_lineage_lists_path(p)) {
        let key = lists_uri(uri, path);
        uncache_lists(&key);
        match loc.store.delete(&loc.child(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
            Err(e) => return Err(ControlError::storage(&key, e)),
        }
        if let Some(local) = uri.strip_prefix("file://")
            && let Some((dir, _)) = path.rsplit_once('/')
        {
            // The local store leaves empty directories behind; a directory that still holds
            // something stays.
            let _ = std::fs::remove_dir(std::path::Path::new(local).join(dir));
        }
    }
    Ok(deleted)
}

/// Every stored lists object below the table `uri`, as paths relative to it.
///
/// # Errors
/// The store cannot be listed.
pub async fn list_lineage_lists(uri: &str) -> Result<Vec<String>, ControlError> {
    use futures::TryStreamExt;
    let loc = crate::storage::resolve(uri).map_err(|e| ControlError::storage(uri, e))?;
    let dir = loc.child(&format!("{LINEAGE_LISTS_DIR}/"));
    let base = format!("{}/", loc.base.as_ref());
    let paths: Vec<String> = loc
        .store
        .list(Some(&dir))
        .map_ok(|meta| {
            let p = meta.location.as_ref();
            p.strip_prefix(base.as_str()).unwrap_or(p).to_string()
        })
        .try_collect()
        .await
        .map_err(|e| ControlError::storage(&lists_uri(uri, LINEAGE_LISTS_DIR), e))?;
    Ok(paths)
}

/// The lineage of the table at `uri` from its status, with the lists of every live entry
/// loaded (status holds long ones at `listsRef`): what every transition, lock check and
/// generator works on. Ended entries keep counts only.
///
/// # Errors
/// Stored lists missing, unreadable, or not matching the status.
pub async fn lineage(uri: &str, status: &TableStatus) -> Result<Lineage, ControlError> {
    let mut entries = status.lineage.clone();
    for entry in entries.iter_mut() {
        let Some(relative) = entry.lists_ref.clone() else {
            continue;
        };
        if !entry.lists_unloaded() {
            // An ended entry needs no lists.
            continue;
        }
        let lists = read_lineage_lists(uri, &relative).await?;
        entry
            .restore_lists((*lists).clone())
            .map_err(|m| ControlError::storage(&lists_uri(uri, &relative), m))?;
    }
    Ok(Lineage::new(entries))
}

/// URI of a run's stored plan, for messages.
pub fn plan_uri(dest_uri: &str, run_dir: &str) -> String {
    format!("{}/{}", dest_uri.trim_end_matches('/'), plan_path(run_dir))
}

/// The runs of `config` that hold back a new plan, by creation time (Pinot's in-progress
/// tasks): those Planning or Running, and those still Pending that were created before
/// `this` (every Pending one when `this` is `None`, as for a dry run: a new run would come
/// after them). A run that started (or, still Pending, was created) longer ago than the
/// config's runTimeout is stale and no longer blocks planning, as Pinot ignores a stale
/// in-progress task; the control loop times it out, and the lineage it holds still keeps
/// its inputs from being planned twice.
pub fn incomplete_runs(
    runs: &[TaskRun],
    config: &TaskConfig,
    this: Option<&TaskRun>,
    now: DateTime<Utc>,
) -> Vec<IncompleteRun> {
    let key = |r: &TaskRun| (super::created_at(&r.metadata), name_of(&r.metadata));
    let mine = this.map(key);
    let stale_before = now - chrono::Duration::milliseconds(config.execution.run_timeout_ms);
    let mut out: Vec<(Option<DateTime<Utc>>, String)> = runs
        .iter()
        .filter(|r| namespace_of(&r.metadata) == config.namespace)
        .filter(|r| r.spec.config_ref.as_deref() == Some(config.name.as_str()))
        .filter(|r| mine.as_ref().is_none_or(|m| key(r) != *m))
        .filter(|r| {
            let status = r.status.as_ref();
            let phase = status.map(|s| s.phase).unwrap_or_default();
            if phase.is_finished() {
                return false;
            }
            if phase == TaskRunPhase::Pending && mine.as_ref().is_some_and(|m| key(r) > *m) {
                return false;
            }
            let since = status
                .and_then(|s| s.start_time)
                .or_else(|| super::created_at(&r.metadata));
            if since.is_some_and(|t| t < stale_before) {
                tracing::info!(
                    task_run = %name_of(&r.metadata),
                    config = %config.name,
                    "an incomplete run older than the runTimeout no longer blocks planning"
                );
                return false;
            }
            true
        })
        .map(key)
        .collect();
    out.sort();
    out.into_iter()
        .map(|(_, name)| IncompleteRun {
            name,
            levels: Vec::new(),
        })
        .collect()
}

/// What a run is planned from, or what it needs first.
#[derive(Clone, Debug)]
pub enum Gathered {
    Input(Box<GeneratorInput>),
    /// A SegmentRefresh of an upsert table some of whose segments have no validity file:
    /// a worker subtask computes validity across `segments` first.
    NeedsValidity {
        segments: Vec<minion_contract::SegmentRef>,
    },
}

/// Assembles the generator's input for `resolved` at `now_ms`. `validity_computed`: the
/// run's validity subtask has run (missing validity files are not asked for again).
/// `watermark_source`: what [`watermark_source`] found for the config.
///
/// # Errors
/// Catalog or storage failures.
pub async fn generator_input(
    catalogs: &mut Catalogs,
    resolved: &Resolved,
    incomplete: Vec<IncompleteRun>,
    now_ms: i64,
    validity_computed: bool,
    watermark_source: Option<(String, Option<String>)>,
) -> Result<Gathered, ControlError> {
    let view = |t: &ResolvedTable, segments, lineage| TableView {
        def: t.def.clone(),
        segments,
        lineage,
    };
    let source = match &resolved.source {
        Some(s) => {
            let catalog = catalogs.get(&s.def).await?;
            let err = |source| ControlError::Catalog {
                table: s.def.name.clone(),
                source,
            };
            let mut segments = catalog.segments().map_err(err)?;
            catalog
                .expand_source_files(&mut segments)
                .await
                .map_err(err)?;
            Some(view(s, segments, lineage(&s.def.uri, &s.status).await?))
        }
        None => None,
    };
    let dest = &resolved.destination;
    let catalog = catalogs.get(&dest.def).await?;
    let err = |source| ControlError::Catalog {
        table: dest.def.name.clone(),
        source,
    };
    let mut segments = catalog.segments().map_err(err)?;
    // Ingested-file lists stored beside the table are read back, so planning sees them inline.
    catalog
        .expand_source_files(&mut segments)
        .await
        .map_err(err)?;
    let watermarks = watermarks_from_log(catalog, &resolved.config).await?;
    let destination = view(dest, segments, lineage(&dest.def.uri, &dest.status).await?);
    // Input files outside the tables are read with the destination Table's settings.
    let options = crate::storage::options_of(&crate::storage::table_key(
        &dest.def.namespace,
        &dest.def.name,
    ));
    let options = options.as_ref();
    let files = match &resolved.config.task {
        TaskSpec::FileIngestion(c) if c.delta_source.is_some() => {
            let source = c.delta_source.as_deref().unwrap_or_default();
            super::inputs::list_delta_files(source, options).await?
        }
        TaskSpec::FileIngestion(c) if !c.input_files.is_empty() => {
            super::inputs::list_named_files(&c.input_files, options).await?
        }
        TaskSpec::FileIngestion(c) => super::inputs::list_files(&c.input_dir_uri, options).await?,
        TaskSpec::SegmentBackfill(c) => {
            super::inputs::list_files(&c.input_dir_uri, options).await?
        }
        _ => Vec::new(),
    };
    // The watermark `initialWatermarkFrom` continues from: the named config's txn in the same
    // destination log, read only while this config has none of its own.
    let watermark_source = match watermark_source {
        Some((config, blocked)) if !watermarks.contains_key(DEFAULT_WATERMARK) => {
            let app = app_id::watermark(&resolved.config.namespace, &config, None);
            let watermark_ms = catalog.txn_version(&app).await.map_err(err)?;
            Some(crate::generator::WatermarkSource {
                config,
                watermark_ms,
                blocked,
            })
        }
        _ => None,
    };
    let invalid_rows = match &resolved.config.task {
        TaskSpec::SegmentRefresh(_) if dest.def.schema.is_upsert() => {
            match super::inputs::invalid_rows(&destination, validity_computed).await? {
                super::inputs::InvalidRows::Known(counts) => counts,
                super::inputs::InvalidRows::Missing { segments } => {
                    return Ok(Gathered::NeedsValidity { segments });
                }
            }
        }
        _ => HashMap::new(),
    };
    Ok(Gathered::Input(Box::new(GeneratorInput {
        config: resolved.config.clone(),
        source,
        destination,
        watermarks,
        // Windows commit in order (CommitMode::InOrder): none is ever committed beyond the
        // watermark.
        committed_windows: Vec::new(),
        incomplete_runs: incomplete,
        files,
        invalid_rows,
        now_ms,
        watermark_source,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::testkit;
    use crate::model::TableType;

    /// A run of config `cfg` in `ns`, created at `created` (minutes after T0), in `phase`,
    /// started at `started` if given.
    fn run_of(name: &str, created: i64, phase: TaskRunPhase, started: Option<i64>) -> TaskRun {
        let at = |min: i64| DateTime::<Utc>::from_timestamp_millis(min * 60_000).unwrap();
        let mut run = TaskRun::new(
            name,
            crate::api::TaskRunSpec {
                task_type: Some(minion_contract::TaskType::MergeRollupTask),
                table: "events".into(),
                source_table: None,
                config_ref: Some("cfg".into()),
                config: None,
                scheduled_time: None,
                subtask_timeout: None,
                run_timeout: None,
                max_attempts: None,
                parallelism: None,
                memory_budget: None,
                cancel: false,
            },
        );
        run.metadata.namespace = Some("ns".into());
        run.metadata.creation_timestamp = Some(super::super::k8s_time(at(created)));
        run.status = Some(crate::api::TaskRunStatus {
            phase,
            start_time: started.map(at),
            ..Default::default()
        });
        run
    }

    #[test]
    fn pending_and_stale_runs_at_plan_time() {
        let mut config = testkit::config(testkit::merge_rollup(vec![testkit::merge_level(
            "1hour", 3_600_000,
        )]));
        config.execution.run_timeout_ms = 60 * 60_000; // an hour
        let names = |v: Vec<IncompleteRun>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        let now = DateTime::<Utc>::from_timestamp_millis(100 * 60_000).unwrap();
        let runs = vec![
            run_of("stale", 10, TaskRunPhase::Running, Some(11)),
            run_of("running", 50, TaskRunPhase::Running, Some(51)),
            run_of("early-pending", 60, TaskRunPhase::Pending, None),
            run_of("me", 70, TaskRunPhase::Planning, Some(71)),
            run_of("late-pending", 80, TaskRunPhase::Pending, None),
            run_of("stale-pending", 20, TaskRunPhase::Pending, None),
            run_of("done", 30, TaskRunPhase::Succeeded, Some(31)),
        ];
        // A run planning: Running and Planning runs block it, and Pending ones created
        // before it; a later Pending run does not (it would wait for this one), nor one
        // older than the runTimeout.
        assert_eq!(
            names(incomplete_runs(&runs, &config, Some(&runs[3]), now)),
            ["running", "early-pending"]
        );
        // A dry run comes after every run that exists: each Pending one blocks it.
        assert_eq!(
            names(incomplete_runs(&runs, &config, None, now)),
            ["running", "early-pending", "me", "late-pending"]
        );
        // A longer runTimeout: the stale runs block again.
        config.execution.run_timeout_ms = 24 * 60 * 60_000;
        assert_eq!(
            names(incomplete_runs(&runs, &config, None, now)),
            [
                "stale",
                "stale-pending",
                "running",
                "early-pending",
                "me",
                "late-pending"
            ]
        );
    }

    #[tokio::test]
    async fn catalogs_of_tables_that_are_gone_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalogs = Catalogs::default();
        let mut uris = Vec::new();
        for name in ["a", "b", "c"] {
            let mut def = testkit::table(name, TableType::Offline, None).def;
            def.uri = format!("file://{}/{name}", dir.path().display());
            catalogs.get(&def).await.unwrap();
            uris.push(def.uri);
        }
        assert_eq!(catalogs.len(), 3);
        catalogs.retain([uris[0].as_str(), uris[2].as_str()]);
        assert_eq!(catalogs.len(), 2);
        catalogs.retain([]);
        assert!(catalogs.is_empty());
    }
}
