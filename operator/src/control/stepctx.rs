//! What one step of a TaskRun works with ([`StepCtx`]: the backend, the catalogs, the tick's
//! runs and the plans in memory, the Tables it read and the statuses it wrote) and the run
//! being stepped ([`Run`]: its status, loaded whole, and how it is saved in bounded form).
//! The steps themselves are in `runstep.rs` and `subtasks.rs`.

use std::collections::HashMap;

use super::gather::{self, Catalogs, Plans, Resolved, ResolvedTable};
use super::protocol;
use super::taskrun::{self};
use super::{Backend, ControlError, Event, EventType, ObjectRef, Reason, name_of, namespace_of};
use crate::api::task_run::MAX_SUBTASK_DETAIL;
use crate::api::{SubtaskState, SubtaskStatus, TableStatus, TaskRun, TaskRunStatus};
use chrono::{DateTime, Utc};

/// Everything one step works with.
pub(super) struct StepCtx<'a> {
    pub backend: &'a dyn Backend,
    pub catalogs: &'a mut Catalogs,
    pub now: DateTime<Utc>,
    /// Every TaskRun: the tick's list, with what earlier steps of the tick wrote (for the
    /// earlier runs a plan waits for; the concurrency policy lists afresh).
    pub runs: &'a [TaskRun],
    /// Stored plans of runs in flight (immutable once written).
    pub plans: &'a mut Plans,
    /// Every TaskRun status this step wrote (`namespace`, `name`, status), for the tick's
    /// list.
    pub written: Vec<(String, String, TaskRunStatus)>,
    /// Tables this step read (`namespace/name`), with what it wrote into their status: a
    /// step reads each Table once. Nothing else writes a Table's status while a step runs
    /// (one writer, and Table reconcile and housekeeping run before the steps).
    pub tables: HashMap<String, ResolvedTable>,
    /// URI prefixes task inputs must lie under (empty: any).
    pub allowed_uri_prefixes: &'a [String],
}

pub(super) struct Run<'r> {
    pub(super) namespace: String,
    pub(super) name: String,
    /// The run's identity (name and uid): see [`protocol::run_key`].
    pub(super) key: String,
    pub(super) object: &'r TaskRun,
    /// Every subtask, also beyond the detail kept in the object's status (see [`Run::load`]).
    pub(super) status: TaskRunStatus,
    /// URI of the destination table (the run's directory is under it); empty before the run
    /// is resolved.
    pub(super) dest_uri: String,
}

impl<'r> Run<'r> {
    pub(super) fn new(object: &'r TaskRun) -> Self {
        let name = name_of(&object.metadata);
        Run {
            namespace: namespace_of(&object.metadata),
            key: protocol::run_key(&name, object.metadata.uid.as_deref()),
            name,
            object,
            status: object.status.clone().unwrap_or_default(),
            dest_uri: String::new(),
        }
    }

    /// The run's directory below the destination's `_minion/runs/`: `<namespace>/<key>`.
    pub(super) fn dir(&self) -> String {
        format!("{}/{}", self.namespace, self.key)
    }

    /// The run with every subtask's state: from status, or — when status holds only the
    /// bounded detail — from `<dest>/_minion/runs/<run>/subtasks.json`.
    ///
    /// # Errors
    /// The stored subtask states cannot be read.
    pub(super) async fn load(object: &'r TaskRun, dest_uri: &str) -> Result<Self, ControlError> {
        let mut run = Run::new(object);
        run.dest_uri = dest_uri.to_string();
        if run.status.subtasks_total as usize > run.status.subtasks.len()
            && !dest_uri.is_empty()
            && let Some(all) = gather::read_subtasks(dest_uri, &run.dir()).await?
        {
            run.status.subtasks = all;
        }
        Ok(run)
    }
}

/// The detail kept in status: the first [`MAX_SUBTASK_DETAIL`] subtasks by index, and up to
/// as many failed ones beyond them (the counters cover all).
pub fn bounded_detail(subtasks: &[SubtaskStatus]) -> Vec<SubtaskStatus> {
    if subtasks.len() <= MAX_SUBTASK_DETAIL {
        return subtasks.to_vec();
    }
    let mut sorted: Vec<&SubtaskStatus> = subtasks.iter().collect();
    sorted.sort_by_key(|s| s.index);
    let failed =
        |s: &&&SubtaskStatus| matches!(s.state, SubtaskState::Reverted | SubtaskState::Failed);
    sorted
        .iter()
        .take(MAX_SUBTASK_DETAIL)
        .chain(
            sorted
                .iter()
                .skip(MAX_SUBTASK_DETAIL)
                .filter(failed)
                .take(MAX_SUBTASK_DETAIL),
        )
        .map(|s| (*s).clone())
        .collect()
}

impl StepCtx<'_> {
    pub(super) async fn event(
        &self,
        run: &Run<'_>,
        type_: EventType,
        reason: Reason,
        message: String,
    ) {
        self.event_passing(run, type_, reason.as_str(), message)
            .await
    }

    /// An Event whose reason is passed through from elsewhere (a worker's failure reason, a
    /// generator's skip reason, an error's reason).
    pub(super) async fn event_passing(
        &self,
        run: &Run<'_>,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        let event = Event {
            object: ObjectRef::new("TaskRun", &run.namespace, &run.name),
            type_,
            reason: reason.to_string(),
            message,
            time: self.now,
        };
        if let Err(e) = self.backend.record_event(&event).await {
            tracing::warn!(task_run = %run.name, error = %e, "could not record an event");
        }
    }

    /// Writes the run's status. Beyond [`MAX_SUBTASK_DETAIL`] subtasks, every subtask's state
    /// goes to the run's directory first and status keeps the counters and
    /// [`bounded_detail`].
    pub(super) async fn save(&mut self, run: &mut Run<'_>) -> Result<(), ControlError> {
        taskrun::recount(&mut run.status);
        run.status.observed_generation = run.object.metadata.generation;
        if run.status.subtasks.len() > MAX_SUBTASK_DETAIL {
            if run.dest_uri.is_empty() {
                return Err(ControlError::storage(
                    "",
                    format!("run {} has no destination to store its subtasks", run.name),
                ));
            }
            gather::write_subtasks(&run.dest_uri, &run.dir(), &run.status.subtasks).await?;
            let mut bounded = run.status.clone();
            bounded.subtasks = bounded_detail(&run.status.subtasks);
            self.write_run_status(&run.namespace, &run.name, bounded)
                .await
        } else {
            self.write_run_status(&run.namespace, &run.name, run.status.clone())
                .await
        }
    }

    /// Writes a TaskRun's status and notes it for the tick's list of runs.
    pub(super) async fn write_run_status(
        &mut self,
        namespace: &str,
        name: &str,
        status: TaskRunStatus,
    ) -> Result<(), ControlError> {
        self.backend
            .update_task_run_status(namespace, name, &status)
            .await?;
        self.written
            .push((namespace.to_string(), name.to_string(), status));
        Ok(())
    }

    /// The Table `namespace/name` as this step knows it: read once, with this step's writes.
    ///
    /// # Errors
    /// As [`gather::table`].
    pub(super) async fn table(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Result<ResolvedTable, ControlError> {
        let key = format!("{namespace}/{name}");
        if let Some(t) = self.tables.get(&key) {
            return Ok(t.clone());
        }
        let t = gather::table(self.backend, namespace, name).await?;
        self.tables.insert(key, t.clone());
        Ok(t)
    }

    /// Writes a Table's status and keeps it for the rest of the step.
    ///
    /// # Errors
    /// Backend failures (the Table is read again by whatever needs it next).
    pub(super) async fn write_table_status(
        &mut self,
        namespace: &str,
        name: &str,
        status: TableStatus,
    ) -> Result<(), ControlError> {
        let key = format!("{namespace}/{name}");
        let known = self.tables.remove(&key);
        self.backend
            .update_table_status(namespace, name, &status)
            .await?;
        if let Some(mut t) = known {
            t.status = status;
            self.tables.insert(key, t);
        }
        Ok(())
    }

    /// Resolves a run ([`gather::resolve_run`]) and keeps its tables for the rest of the step
    /// (a table this step already knows keeps what the step knows).
    ///
    /// # Errors
    /// As [`gather::resolve_run`].
    pub(super) async fn resolve(&mut self, object: &TaskRun) -> Result<Resolved, ControlError> {
        let (_, resolved) = gather::resolve_run(self.backend, object).await?;
        for (field, uri) in crate::validate::input_uris(&resolved.config.task) {
            if !crate::validate::uri_allowed(uri, self.allowed_uri_prefixes) {
                let name = format!(
                    "{}/{}",
                    namespace_of(&object.metadata),
                    name_of(&object.metadata)
                );
                return Err(ControlError::Invalid {
                    kind: "TaskRun",
                    message: crate::validate::uri_refused(
                        &format!("TaskRun {name}"),
                        field,
                        uri,
                        self.allowed_uri_prefixes,
                    ),
                    name,
                    reason: Reason::UriNotAllowed.as_str(),
                });
            }
        }
        for t in std::iter::once(&resolved.destination).chain(resolved.source.as_ref()) {
            self.tables
                .entry(format!("{}/{}", t.def.namespace, t.def.name))
                .or_insert_with(|| t.clone());
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(index: u32, state: SubtaskState) -> SubtaskStatus {
        SubtaskStatus {
            index,
            state,
            ..Default::default()
        }
    }

    #[test]
    fn bounded_detail_keeps_the_first_subtasks_and_failed_ones_beyond_them() {
        let small: Vec<_> = (0..10).map(|i| sub(i, SubtaskState::Pending)).collect();
        assert_eq!(bounded_detail(&small), small);
        let n = MAX_SUBTASK_DETAIL as u32 * 3;
        let mut all: Vec<_> = (0..n)
            .rev()
            .map(|i| sub(i, SubtaskState::Committed))
            .collect();
        all[0].state = SubtaskState::Reverted; // index n - 1
        all[5].state = SubtaskState::Failed; // index n - 6
        let detail = bounded_detail(&all);
        assert_eq!(detail.len(), MAX_SUBTASK_DETAIL + 2);
        assert!(
            detail[..MAX_SUBTASK_DETAIL]
                .iter()
                .enumerate()
                .all(|(i, s)| s.index == i as u32)
        );
        assert_eq!(
            (
                detail[MAX_SUBTASK_DETAIL].index,
                detail[MAX_SUBTASK_DETAIL + 1].index
            ),
            (n - 6, n - 1)
        );
        // Failed ones beyond the first are bounded too.
        let failed: Vec<_> = (0..n).map(|i| sub(i, SubtaskState::Reverted)).collect();
        assert_eq!(bounded_detail(&failed).len(), 2 * MAX_SUBTASK_DETAIL);
    }
}
