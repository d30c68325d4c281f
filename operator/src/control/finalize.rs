//! A TaskRun deleted before it finished: the operator's finalizer keeps the object until the
//! run is reverted (its jobs stopped, what it staged and did not commit deleted, its lineage
//! released: the `Deleted` abort of [`super::taskrun`]), then removes the run's directory and
//! lets the object go.
//!
//! The finalizer is added when the loop first steps an unfinished run (before it plans), and
//! removed once the run is finished and deleted. A run whose config or tables are gone (a
//! namespace being deleted) cannot be reverted; its finalizer is removed anyway, so a deletion
//! is never blocked. Only an operator watching every namespace adds it (see
//! `Backend::holds_runs`): a namespaced install's Role goes with its namespace.

use super::stepctx::StepCtx;
use super::{ControlError, gather, name_of, namespace_of, protocol};
use crate::api::TaskRun;

/// The operator's finalizer on TaskRuns.
pub const FINALIZER: &str = "minion.dev/revert-uncommitted";

/// Whether `run` carries the operator's finalizer.
pub fn holds(run: &TaskRun) -> bool {
    run.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

fn finished(run: &TaskRun) -> bool {
    run.status.as_ref().is_some_and(|s| s.phase.is_finished())
}

/// Adds the finalizer to an unfinished run that is not being deleted and lacks it.
///
/// # Errors
/// The backend refuses the write.
pub(super) async fn hold(ctx: &StepCtx<'_>, run: &TaskRun) -> Result<(), ControlError> {
    if !ctx.backend.holds_runs()
        || finished(run)
        || run.metadata.deletion_timestamp.is_some()
        || holds(run)
    {
        return Ok(());
    }
    // The tick's list may predate a finalizer added by an earlier step of this tick: patch
    // the object as it is now (a cached read on Kubernetes).
    let (namespace, name) = (namespace_of(&run.metadata), name_of(&run.metadata));
    match ctx.backend.get_task_run(&namespace, &name).await? {
        Some(current) if !holds(&current) && current.metadata.deletion_timestamp.is_none() => {
            ctx.backend.set_run_finalizer(&current, true).await?;
        }
        _ => {}
    }
    Ok(())
}

/// Lets a deleted run go once its abort finished it: removes its run directory and then the
/// finalizer. A deleted run whose config or tables are gone (its namespace being deleted)
/// cannot be reverted and is let go at once. Returns whether it was let go.
///
/// # Errors
/// The backend or the store fails; retried next tick.
pub(super) async fn release(ctx: &mut StepCtx<'_>, run: &TaskRun) -> Result<bool, ControlError> {
    if run.metadata.deletion_timestamp.is_none() || !holds(run) {
        return Ok(false);
    }
    let name = name_of(&run.metadata);
    let dir = format!(
        "{}/{}",
        namespace_of(&run.metadata),
        protocol::run_key(&name, run.metadata.uid.as_deref())
    );
    match ctx.resolve(run).await {
        Ok(resolved) => {
            if !finished(run) {
                // Its `Deleted` abort reverts it first.
                return Ok(false);
            }
            gather::delete_run_dir(&resolved.destination.def.uri, &dir).await?;
        }
        Err(e @ ControlError::Invalid { .. }) => {
            tracing::warn!(task_run = %name, error = %e,
                "deleted run: its config or tables are gone, so nothing can be reverted; its staged files are left to the tables' housekeeping");
        }
        Err(e) => return Err(e),
    }
    ctx.backend.set_run_finalizer(run, false).await?;
    Ok(true)
}
