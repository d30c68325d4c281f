//! `minion apply -f FILE|DIR…`: reads every manifest, validates every resource (field
//! errors, cross checks against the tables being applied or already stored, a TaskRun's
//! config), and only when nothing is wrong stores them all in the state directory. Names and
//! namespaces must be Kubernetes names (DNS-1123) before they become paths there.
//!
//! # Guarantees
//! On any error the state directory is not changed; every problem is printed, each naming
//! its file, document, resource and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::CliError;
use crate::api::{MinionTaskConfig, Resource, Table, parse_manifests};
use crate::control::{name_of, namespace_of};
use crate::local::{Store, check_name, check_namespace};
use crate::model::TableDef;
use crate::validate;

/// Manifest files named by `paths`, as kubectl reads `-f`: files as given; a directory's own
/// `*.yaml`/`*.yml`/`*.json` files, and with `recursive` (`-R`) those of its sub-directories
/// too (sorted).
pub(crate) fn manifest_files(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            let mut found = Vec::new();
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir)
                    .map_err(|e| CliError::Invalid(vec![format!("{}: {e}", dir.display())]))?;
                for e in entries.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        if recursive {
                            stack.push(path);
                        }
                    } else if matches!(
                        path.extension().and_then(|x| x.to_str()),
                        Some("yaml" | "yml" | "json")
                    ) {
                        found.push(path);
                    }
                }
            }
            found.sort();
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(CliError::Invalid(vec![format!(
                "{}: no such file or directory",
                p.display()
            )]));
        }
    }
    Ok(out)
}

fn key(meta: &kube::api::ObjectMeta) -> (String, String) {
    (namespace_of(meta), name_of(meta))
}

/// Reads and validates every manifest of `paths` (see the module docs).
///
/// # Errors
/// `Invalid` listing every problem.
pub(crate) fn read_and_validate(
    store: &Store,
    paths: &[PathBuf],
    recursive: bool,
) -> Result<Vec<(PathBuf, Resource)>, CliError> {
    let mut errors = Vec::new();
    let mut resources = Vec::new();
    for file in manifest_files(paths, recursive)? {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        match parse_manifests(&text) {
            Ok(rs) => resources.extend(rs.into_iter().map(|r| (file.clone(), r))),
            Err(e) => errors.push(format!("{}: {e} ({})", file.display(), e.reason())),
        }
    }
    if !errors.is_empty() {
        return Err(CliError::Invalid(errors));
    }
    // Names and namespaces become paths in the state directory: refuse any that is not a
    // Kubernetes name before anything else looks at them.
    for (file, r) in &resources {
        let ns = namespace_of(r.metadata());
        if let Err(e) = check_namespace(r.kind(), &ns).and(check_name(r.kind(), r.name())) {
            errors.push(format!("{}: {e}", file.display()));
        }
    }
    if !errors.is_empty() {
        return Err(CliError::Invalid(errors));
    }
    // Tables and configs as they will be once applied: stored ones overridden by these.
    let stored = |e: crate::local::LocalError| CliError::failed(e);
    let mut tables: BTreeMap<(String, String), Table> = store
        .list::<Table>()
        .map_err(stored)?
        .into_iter()
        .map(|t| (key(&t.metadata), t))
        .collect();
    let mut configs: BTreeMap<(String, String), MinionTaskConfig> = store
        .list::<MinionTaskConfig>()
        .map_err(stored)?
        .into_iter()
        .map(|c| (key(&c.metadata), c))
        .collect();
    for (_, r) in &resources {
        match r {
            Resource::Table(t) => {
                tables.insert(key(&t.metadata), t.clone());
            }
            Resource::MinionTaskConfig(c) => {
                configs.insert(key(&c.metadata), c.clone());
            }
            Resource::TaskRun(_) => {}
        }
    }
    let defs: BTreeMap<(String, String), TableDef> = tables
        .iter()
        .filter_map(|(k, t)| validate::table(t).ok().map(|d| (k.clone(), d)))
        .collect();
    let table_of = |ns: &str, name: &str| defs.get(&(ns.to_string(), name.to_string()));
    // No two Tables at the same or nested locations: one's clean-up and commits would reach
    // the other's files.
    for (file, r) in &resources {
        let Resource::Table(t) = r else { continue };
        let k = key(&t.metadata);
        let Some(def) = defs.get(&k) else { continue };
        for (other_key, other) in &defs {
            if *other_key != k
                && let Some(how) = validate::uri_overlap(&def.uri, &other.uri)
            {
                let message = validate::overlap_message(
                    (&def.namespace, &def.name, &def.uri),
                    (&other.namespace, &other.name, &other.uri),
                    how,
                );
                errors.push(format!("{}: {message}", file.display()));
            }
        }
    }
    for (file, r) in &resources {
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
        match r {
            Resource::Table(t) => {
                if let Err(e) = validate::table(t) {
                    errors.extend(e.errors.iter().map(|e| at(e)));
                }
            }
            Resource::MinionTaskConfig(c) => match validate::task_config(c) {
                Err(e) => errors.extend(e.errors.iter().map(|e| at(e))),
                Ok(cfg) => {
                    if let Some(dest) = table_of(&cfg.namespace, &cfg.table) {
                        let source = cfg
                            .source_table
                            .as_deref()
                            .and_then(|s| table_of(&cfg.namespace, s));
                        if let Err(e) = validate::against_tables(&cfg, dest, source) {
                            errors.extend(e.errors.iter().map(|e| at(e)));
                        }
                    }
                }
            },
            Resource::TaskRun(run) => {
                let ns = namespace_of(&run.metadata);
                let config = run
                    .spec
                    .config_ref
                    .as_ref()
                    .and_then(|c| configs.get(&(ns.clone(), c.clone())));
                match validate::task_run(run, config) {
                    Err(e) => errors.extend(e.errors.iter().map(|e| at(e))),
                    Ok(v) => {
                        if let Some(dest) = table_of(&ns, &v.config.table) {
                            let source = v
                                .config
                                .source_table
                                .as_deref()
                                .and_then(|s| table_of(&ns, s));
                            if let Err(e) = v.against_tables(dest, source) {
                                errors.extend(e.errors.iter().map(|e| at(e)));
                            }
                        }
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(CliError::Invalid(errors))
    }
}

fn kind_label(r: &Resource) -> &'static str {
    match r {
        Resource::Table(_) => "table.minion.dev",
        Resource::MinionTaskConfig(_) => "miniontaskconfig.minion.dev",
        Resource::TaskRun(_) => "taskrun.minion.dev",
    }
}

/// `minion apply`.
pub(crate) fn apply(state: &Path, paths: &[PathBuf], recursive: bool) -> Result<(), CliError> {
    let store = Store::new(state);
    let resources = read_and_validate(&store, paths, recursive)?;
    let now = chrono::Utc::now();
    for (_, r) in &resources {
        let applied = store.put_resource(r, now).map_err(CliError::failed)?;
        println!("{}/{} {}", kind_label(r), r.name(), applied.as_str());
    }
    Ok(())
}

/// `minion execute -f FILE…`: creates TaskRuns carrying an inline config (Pinot's *execute*
/// API), started by the next `local up` tick.
///
/// # Guarantees
/// Nothing is stored unless every document is a valid TaskRun with an inline `config` whose
/// name is not taken (a run executes once: rerunning means a new name, as `kubectl create`).
pub(crate) fn execute(state: &Path, paths: &[PathBuf], recursive: bool) -> Result<(), CliError> {
    let store = Store::new(state);
    let resources = read_and_validate(&store, paths, recursive)?;
    let mut errors = Vec::new();
    for (file, r) in &resources {
        let Resource::TaskRun(run) = r else {
            errors.push(format!(
                "{}: {} {}: `execute` takes TaskRuns only; use `minion apply` for other kinds",
                file.display(),
                kind_label(r),
                r.name()
            ));
            continue;
        };
        let (ns, name) = key(&run.metadata);
        if run.spec.config_ref.is_some() {
            errors.push(format!(
                "{}: TaskRun {name}: spec.configRef: `execute` runs an inline spec.config; \
                 use `minion run <config>` to run a MinionTaskConfig",
                file.display()
            ));
        }
        match store.get::<crate::api::TaskRun>(&ns, &name) {
            Ok(Some(_)) => errors.push(format!(
                "{}: TaskRun {ns}/{name} already exists; give the new run another name",
                file.display()
            )),
            Ok(None) => {}
            Err(e) => return Err(CliError::failed(e)),
        }
    }
    if !errors.is_empty() {
        return Err(CliError::Invalid(errors));
    }
    let now = chrono::Utc::now();
    for (_, r) in &resources {
        store.put_resource(r, now).map_err(CliError::failed)?;
        println!("{}/{} created", kind_label(r), r.name());
    }
    Ok(())
}
