//! `minion run`, `minion plan` and `minion segments`: commands that read (and for `run`,
//! create) resources and read catalogs, without running the control loop.

use chrono::Utc;

use super::table_fmt::{render, time_ms};
use super::target::Target;
use super::{CliError, Output, found};
use crate::api::{MinionTaskConfig, TaskRun};
use crate::control::gather::{self, Catalogs};
use crate::control::{Created, configs};
use crate::schedule::manual_task_run_name;

fn control(e: crate::control::ControlError) -> CliError {
    match e {
        crate::control::ControlError::Invalid { .. } => CliError::Invalid(vec![e.to_string()]),
        other => CliError::failed(other),
    }
}

/// `minion run <config>`: a manual TaskRun, started by the next `local up` tick.
pub(crate) async fn run(target: &Target, namespace: &str, name: &str) -> Result<(), CliError> {
    let b = target.backend(Some(namespace));
    let cfg: MinionTaskConfig = found(b.get_task_config(namespace, name).await, namespace, name)?;
    gather::resolve_config(b.as_ref(), &cfg)
        .await
        .map_err(control)?;
    // Names have one-second resolution: a second `run` within the same second waits for the
    // next one rather than being taken for the first.
    for _ in 0..3 {
        let run_name = manual_task_run_name(name, Utc::now());
        let run: TaskRun = configs::new_task_run(&cfg, &run_name, None);
        if b.create_task_run(&run).await.map_err(CliError::failed)? == Created::Created {
            println!("taskrun.minion.dev/{run_name} created");
            return Ok(());
        }
        let ms = 1_000 - Utc::now().timestamp_subsec_millis().min(999);
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(ms))).await;
    }
    Err(CliError::Failed(format!(
        "could not create a TaskRun of {name}: the names of the last seconds are taken"
    )))
}

/// `minion plan <config>`: the plan a run would make now (dry run).
pub(crate) async fn plan(
    target: &Target,
    namespace: &str,
    name: &str,
    output: Option<Output>,
) -> Result<(), CliError> {
    crate::catalog::install_crypto_provider();
    let b = target.backend(Some(namespace));
    let cfg: MinionTaskConfig = found(b.get_task_config(namespace, name).await, namespace, name)?;
    let resolved = gather::resolve_config(b.as_ref(), &cfg)
        .await
        .map_err(control)?;
    let runs = b.list_task_runs().await.map_err(CliError::failed)?;
    let incomplete = gather::incomplete_runs(&runs, &resolved.config, None, Utc::now());
    let source = gather::watermark_source(b.as_ref(), &resolved.config, &runs)
        .await
        .map_err(control)?;
    let mut catalogs = Catalogs::default();
    let gathered = gather::generator_input(
        &mut catalogs,
        &resolved,
        incomplete,
        Utc::now().timestamp_millis(),
        false,
        source,
    )
    .await
    .map_err(control)?;
    let input = match gathered {
        gather::Gathered::Input(input) => input,
        gather::Gathered::NeedsValidity { segments } => {
            println!(
                "A run would first compute upsert validity across {} segment(s) in a worker \
                 subtask of kind validity, then plan from the validity files it writes.",
                segments.len()
            );
            return Ok(());
        }
    };
    let plan = crate::generator::plan(&input).map_err(CliError::failed)?;
    match output {
        None => print!("{}", plan.render()),
        Some(Output::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&plan).map_err(CliError::failed)?
        ),
        Some(Output::Yaml) => print!(
            "{}",
            serde_yaml::to_string(&plan).map_err(CliError::failed)?
        ),
    }
    Ok(())
}

/// `minion segments <table>`: committed segments, lineage entries, watermarks of its configs.
pub(crate) async fn segments(target: &Target, namespace: &str, name: &str) -> Result<(), CliError> {
    crate::catalog::install_crypto_provider();
    let b = target.backend(Some(namespace));
    let table = gather::table(b.as_ref(), namespace, name)
        .await
        .map_err(|e| match e {
            crate::control::ControlError::Invalid {
                reason: "NotFound", ..
            } => CliError::NotFound(e.to_string()),
            other => control(other),
        })?;
    let mut catalogs = Catalogs::default();
    let catalog = catalogs.get(&table.def).await.map_err(control)?;
    let mut segments = catalog.segments().map_err(CliError::failed)?;
    segments.sort_by(|a, b| (a.min_time_ms, &a.path).cmp(&(b.min_time_ms, &b.path)));
    println!(
        "Table {namespace}/{name} ({}), Delta version {}, {} segment(s), {} rows, {} bytes",
        table.def.uri,
        catalog.version(),
        segments.len(),
        segments.iter().map(|s| s.rows).sum::<u64>(),
        segments.iter().map(|s| s.bytes).sum::<u64>(),
    );
    let rows: Vec<Vec<String>> = segments
        .iter()
        .map(|s| {
            let tags: Vec<String> = s
                .tags
                .iter()
                .filter(|(k, _)| !k.ends_with("TimeMs"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            vec![
                s.path.clone(),
                s.rows.to_string(),
                s.bytes.to_string(),
                time_ms(s.min_time_ms),
                time_ms(s.max_time_ms),
                tags.join(","),
            ]
        })
        .collect();
    if !rows.is_empty() {
        print!(
            "{}",
            render(
                &["SEGMENT", "ROWS", "BYTES", "MIN TIME", "MAX TIME", "TAGS"],
                &rows
            )
        );
    }
    let lineage: Vec<Vec<String>> = table
        .status
        .lineage
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.state.as_str().into(),
                e.segments_from_len().to_string(),
                e.segments_to_len().to_string(),
                time_ms(Some(e.timestamp_ms)),
            ]
        })
        .collect();
    println!("\nLineage:");
    if lineage.is_empty() {
        println!("  <none>");
    } else {
        print!(
            "{}",
            render(&["ID", "STATE", "FROM", "TO", "TIME"], &lineage)
        );
    }
    println!("\nWatermarks:");
    let mut any = false;
    for cfg in b.list_task_configs().await.map_err(CliError::failed)? {
        if crate::control::namespace_of(&cfg.metadata) != namespace || cfg.spec.table != name {
            continue;
        }
        let Ok(resolved) = gather::resolve_config(b.as_ref(), &cfg).await else {
            continue;
        };
        let catalog = catalogs.get(&table.def).await.map_err(control)?;
        for (level, ms) in gather::watermarks_from_log(catalog, &resolved.config)
            .await
            .map_err(control)?
        {
            any = true;
            let level = if level.is_empty() {
                String::new()
            } else {
                format!(" [{level}]")
            };
            println!("  {}{level}: {}", resolved.config.name, time_ms(Some(ms)));
        }
    }
    if !any {
        println!("  <none>");
    }
    Ok(())
}

/// `minion suspend|resume <config>`: sets `spec.suspend` (a suspended config starts no
/// scheduled run; runs in flight go on).
pub(crate) async fn suspend(
    target: &Target,
    namespace: &str,
    name: &str,
    suspend: bool,
) -> Result<(), CliError> {
    target.set_suspend(namespace, name, suspend).await?;
    let what = if suspend { "suspended" } else { "resumed" };
    println!("miniontaskconfig.minion.dev/{name} {what}");
    Ok(())
}

/// `minion cancel <run>`: sets `spec.cancel`; the control loop reverts what the run staged
/// and ends it `Cancelled`. A finished run is left as it is.
pub(crate) async fn cancel(target: &Target, namespace: &str, name: &str) -> Result<(), CliError> {
    let b = target.backend(Some(namespace));
    let run: TaskRun = found(b.get_task_run(namespace, name).await, namespace, name)?;
    let phase = run.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if phase.is_finished() {
        return Err(CliError::Invalid(vec![format!(
            "TaskRun {namespace}/{name} already ended {}; there is nothing to cancel",
            phase.as_str()
        )]));
    }
    target.cancel(namespace, name).await?;
    println!(
        "taskrun.minion.dev/{name} cancel requested (phase {}): its uncommitted subtasks are reverted; a commit already under way finishes",
        phase.as_str()
    );
    Ok(())
}

/// `minion retry <run>`: a new TaskRun with the same spec as a run that ended `Failed`,
/// `TimedOut` or `Cancelled`, named `<run>-retry-<n>` and annotated `minion.dev/retry-of`.
/// A run of a config plans again from the config's watermarks, so it takes up the windows
/// and buckets the failed run left uncommitted (and whatever became due since); an inline
/// run (a backfill, a file ingestion) does the same work again.
pub(crate) async fn retry(target: &Target, namespace: &str, name: &str) -> Result<(), CliError> {
    use crate::api::TaskRunPhase;
    let b = target.backend(Some(namespace));
    let run: TaskRun = found(b.get_task_run(namespace, name).await, namespace, name)?;
    let phase = run.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if !matches!(
        phase,
        TaskRunPhase::Failed | TaskRunPhase::TimedOut | TaskRunPhase::Cancelled
    ) {
        return Err(CliError::Invalid(vec![format!(
            "TaskRun {namespace}/{name} is {}: only a Failed, TimedOut or Cancelled run can be retried{}",
            phase.as_str(),
            if phase.is_finished() {
                ""
            } else {
                " (cancel it first, or wait for it to end)"
            }
        )]));
    }
    let mut spec = run.spec.clone();
    spec.cancel = false;
    spec.scheduled_time = None;
    for attempt in 1..=50 {
        let retry_name = crate::schedule::retry_task_run_name(name, attempt);
        let mut retry = TaskRun::new(&retry_name, spec.clone());
        retry.metadata.namespace = Some(namespace.to_string());
        retry.metadata.labels = run.metadata.labels.clone();
        retry.metadata.annotations = Some(std::collections::BTreeMap::from([(
            RETRY_OF_ANNOTATION.to_string(),
            name.to_string(),
        )]));
        if b.create_task_run(&retry).await.map_err(CliError::failed)? == Created::Created {
            println!("taskrun.minion.dev/{retry_name} created (retry of {name})");
            return Ok(());
        }
    }
    Err(CliError::Failed(format!(
        "could not create a retry of {name}: {name}-retry-1 to -50 exist"
    )))
}

/// The annotation a retry carries: the run it retries.
pub const RETRY_OF_ANNOTATION: &str = "minion.dev/retry-of";

/// `minion logs <run> [--subtask N]`: the output of a subtask's Job (its last attempt), or of
/// the run's validity Job with `--validity`; without either, of the first subtask that failed,
/// else the last one that ran.
pub(crate) async fn logs(
    target: &Target,
    namespace: &str,
    name: &str,
    subtask: Option<u32>,
    validity: bool,
) -> Result<(), CliError> {
    use crate::api::SubtaskState;
    let b = target.backend(Some(namespace));
    let run: TaskRun = found(b.get_task_run(namespace, name).await, namespace, name)?;
    let status = run.status.clone().unwrap_or_default();
    let job = if validity {
        status
            .validity
            .as_ref()
            .and_then(|v| v.job.clone())
            .ok_or_else(|| {
                CliError::NotFound(format!("TaskRun {namespace}/{name} has no validity Job"))
            })?
    } else {
        let chosen = match subtask {
            Some(i) => status
                .subtasks
                .iter()
                .find(|s| s.index == i)
                .ok_or_else(|| {
                    CliError::NotFound(format!(
                        "TaskRun {namespace}/{name} has no subtask {i} (it has {}{})",
                        status.subtasks.len(),
                        if status.subtasks.len() > crate::api::task_run::MAX_SUBTASK_DETAIL {
                            "; only the first ones and the failed ones are kept in its status"
                        } else {
                            ""
                        }
                    ))
                })?,
            None => status
                .subtasks
                .iter()
                .find(|s| s.state == SubtaskState::Failed)
                .or_else(|| status.subtasks.iter().rev().find(|s| s.job.is_some()))
                .ok_or_else(|| {
                    CliError::NotFound(format!(
                        "TaskRun {namespace}/{name} has started no Job yet (phase {})",
                        status.phase.as_str()
                    ))
                })?,
        };
        chosen.job.clone().ok_or_else(|| {
            CliError::NotFound(format!(
                "subtask {} of TaskRun {namespace}/{name} has not started a Job yet ({})",
                chosen.index,
                chosen.state.as_str()
            ))
        })?
    };
    eprintln!("==> job {job}");
    print!("{}", target.job_logs(namespace, &job).await?);
    Ok(())
}
