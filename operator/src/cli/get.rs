//! `minion get tables|taskconfigs|taskruns [NAME]`: the CRDs' printer columns as a table, or
//! the objects as JSON/YAML (`-o`; a `List` without a name). A TaskRun's REASON is its
//! status reason: why it was Skipped (the generator's reason), failed, or waits.

use chrono::Utc;
use serde::Serialize;

use super::table_fmt::{age, opt, render, time};
use super::target::Target;
use super::{CliError, Kind, Output};
use crate::control::{created_at, name_of, namespace_of};
use crate::local::Stored;

pub(crate) fn print_objects<T: Serialize>(
    items: &[T],
    single: bool,
    output: Output,
) -> Result<(), CliError> {
    let value = if single {
        serde_json::to_value(&items[0])
    } else {
        serde_json::to_value(items)
            .map(|items| serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))
    }
    .map_err(CliError::failed)?;
    let text = match output {
        Output::Json => serde_json::to_string_pretty(&value).map_err(CliError::failed)? + "\n",
        Output::Yaml => serde_yaml::to_string(&value).map_err(CliError::failed)?,
    };
    print!("{text}");
    Ok(())
}

fn select<T: Stored>(
    listed: Result<Vec<T>, crate::control::BackendError>,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<Vec<T>, CliError> {
    let items: Vec<T> = listed
        .map_err(CliError::failed)?
        .into_iter()
        .filter(|o| namespace.is_none_or(|ns| namespace_of(o.meta()) == ns))
        .filter(|o| name.is_none_or(|n| name_of(o.meta()) == n))
        .collect();
    if let Some(n) = name
        && items.is_empty()
    {
        return Err(CliError::NotFound(format!(
            "{} {n:?} not found in namespace {}",
            T::KIND,
            namespace.unwrap_or("(any)")
        )));
    }
    Ok(items)
}

fn with_namespace(all: bool, header: &[&'static str]) -> Vec<&'static str> {
    let mut h = Vec::new();
    if all {
        h.push("NAMESPACE");
    }
    h.extend_from_slice(header);
    h
}

fn row(all: bool, meta: &kube::api::ObjectMeta, cells: Vec<String>) -> Vec<String> {
    let mut r = Vec::new();
    if all {
        r.push(namespace_of(meta));
    }
    r.extend(cells);
    r
}

/// `minion get`.
pub(crate) async fn get(
    target: &Target,
    kind: &str,
    name: Option<&str>,
    namespace: Option<&str>,
    output: Option<Output>,
) -> Result<(), CliError> {
    let b = target.backend(namespace);
    let now = Utc::now();
    let all = namespace.is_none();
    let (header, rows): (Vec<&str>, Vec<Vec<String>>) = match Kind::parse(kind)? {
        Kind::Table => {
            let items = select(b.list_tables().await, name, namespace)?;
            if let Some(o) = output {
                return print_objects(&items, name.is_some(), o);
            }
            let rows = items
                .iter()
                .map(|t| {
                    let s = t.status.clone().unwrap_or_default();
                    let ready = crate::api::condition::find_condition(&s.conditions, "Ready")
                        .map_or("<unknown>".to_string(), |c| c.status.as_str().to_string());
                    row(
                        all,
                        &t.metadata,
                        vec![
                            name_of(&t.metadata),
                            serde_json::to_value(t.spec.table_type)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                            ready,
                            opt(s.segments),
                            opt(s.rows),
                            time(s.min_time),
                            time(s.max_time),
                            age(created_at(&t.metadata), now),
                        ],
                    )
                })
                .collect();
            let h = [
                "NAME", "TYPE", "READY", "SEGMENTS", "ROWS", "MIN TIME", "MAX TIME", "AGE",
            ];
            (with_namespace(all, &h), rows)
        }
        Kind::TaskConfig => {
            let items = select(b.list_task_configs().await, name, namespace)?;
            if let Some(o) = output {
                return print_objects(&items, name.is_some(), o);
            }
            let rows = items
                .iter()
                .map(|c| {
                    let s = c.status.clone().unwrap_or_default();
                    row(
                        all,
                        &c.metadata,
                        vec![
                            name_of(&c.metadata),
                            c.spec.task_type.to_string(),
                            c.spec.table.clone(),
                            c.spec.schedule.clone().unwrap_or_else(|| "<none>".into()),
                            c.spec.suspend.to_string(),
                            s.last_schedule_time
                                .map_or("<none>".into(), |t| age(Some(t), now)),
                            time(s.next_schedule_time),
                            s.last_result
                                .map_or("<none>".into(), |r| r.as_str().to_string()),
                            age(created_at(&c.metadata), now),
                        ],
                    )
                })
                .collect();
            let h = [
                "NAME",
                "TYPE",
                "TABLE",
                "SCHEDULE",
                "SUSPENDED",
                "LAST",
                "NEXT",
                "LAST RESULT",
                "AGE",
            ];
            (with_namespace(all, &h), rows)
        }
        Kind::TaskRun => {
            let mut items = select(b.list_task_runs().await, name, namespace)?;
            items.sort_by_key(|r| (created_at(&r.metadata), name_of(&r.metadata)));
            if let Some(o) = output {
                return print_objects(&items, name.is_some(), o);
            }
            let rows = items
                .iter()
                .map(|r| {
                    let s = r.status.clone().unwrap_or_default();
                    row(
                        all,
                        &r.metadata,
                        vec![
                            name_of(&r.metadata),
                            r.task_type().map_or("-".into(), |t| t.to_string()),
                            match r.table() {
                                "" => "-".to_string(),
                                t => t.to_string(),
                            },
                            s.phase.as_str().to_string(),
                            s.reason.unwrap_or_else(|| "-".into()),
                            s.progress.unwrap_or_else(|| "-".into()),
                            age(created_at(&r.metadata), now),
                        ],
                    )
                })
                .collect();
            let h = [
                "NAME", "TYPE", "TABLE", "PHASE", "REASON", "PROGRESS", "AGE",
            ];
            (with_namespace(all, &h), rows)
        }
    };
    if rows.is_empty() {
        eprintln!(
            "No resources found{}.",
            namespace.map_or(String::new(), |ns| format!(" in {ns} namespace"))
        );
        return Ok(());
    }
    print!("{}", render(&header, &rows));
    Ok(())
}
