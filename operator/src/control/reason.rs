//! The reasons the control loop writes: on Events, on a TaskRun's `status.reason`, on a
//! subtask's `reason` and on the Ready/ScheduleValid/Suspended conditions. One enum, so a
//! reason has one spelling; alerting rules and `kubectl get events --field-selector
//! reason=…` match these strings (docs/kubernetes.md).
//!
//! Reasons that come from elsewhere keep their own typed homes and are passed through as
//! strings: the worker's failure reasons ([`minion_contract::FailureReason`], e.g.
//! `CorruptSegment`), a generator's reason for skipping ([`crate::generator::NoTaskReason`]),
//! and the `reason()` of each error type (validation, catalog, backend).

use std::fmt;

/// Declares [`Reason`], each variant spelt in the API as it is named.
macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A reason written by the control loop.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every reason.
            pub const ALL: &[Reason] = &[$(Reason::$name,)*];

            /// The reason as written to the API.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    // A run's phases and their Events.
    /// A run was admitted and is planning.
    Planning,
    /// A run was planned and its subtasks start.
    Running,
    /// Every subtask of a run committed (the run's Event).
    Succeeded,
    /// Every subtask of a run committed (the run's `status.reason`).
    Completed,
    /// The all-or-none commit of a run's staged subtasks.
    Committed,
    /// A run was aborted by a newer run of its config (concurrencyPolicy Replace).
    ReplacedByNewerRun,
    /// A run past its `runTimeout`.
    RunTimeout,
    /// A run still planning past its `runTimeout` (planning kept failing).
    PlanningTimedOut,
    /// `spec.cancel` ended the run.
    Cancelled,
    /// The TaskRun was deleted before it finished; its finalizer reverted what it staged.
    Deleted,
    /// A run waits in Pending for a Table that is not Ready, or failed after waiting past its
    /// deadline.
    TableNotReady,
    /// A run waits in Pending for an earlier run of a config its config names in `runAfter`.
    WaitingForRunAfter,

    // Subtasks.
    /// An attempt's job was started.
    SubtaskStarted,
    /// A subtask's output was committed.
    SubtaskCommitted,
    /// A subtask's output is staged, waiting for the all-or-none commit.
    SubtaskSucceeded,
    /// An attempt failed and the subtask will be tried again.
    SubtaskRetrying,
    /// A subtask failed for good and was reverted (also a run's reason when the failure
    /// gave none).
    SubtaskFailed,
    /// An attempt exited with a failure and its manifest named no reason.
    WorkerFailed,
    /// An attempt's job vanished (process killed, Job deleted).
    WorkerLost,
    /// An attempt past `subtaskTimeout`.
    SubtaskTimeout,
    /// An attempt ended without writing its result manifest.
    ManifestMissing,
    /// A worker's result does not add up; nothing was committed (see [`crate::commit_gate`]).
    CommitRefused,
    /// A subtask left unreadable input segments out (`skipCorruptSegments`); they stay in the
    /// table.
    SegmentsSkipped,
    /// The API server refused a subtask's Job as forbidden (RBAC).
    JobForbidden,
    /// The API server refused a subtask's Job as invalid.
    JobInvalid,
    /// A subtask's Job created no pod (e.g. its ServiceAccount does not exist).
    JobCreateFailed,
    /// A subtask's pod cannot pull the worker image.
    ImagePullFailed,
    /// A subtask's container cannot be created (a missing Secret or ConfigMap, say).
    ContainerConfigInvalid,
    /// No node takes a subtask's pod.
    Unschedulable,

    // Configs and tables.
    /// A scheduled run was created.
    Scheduled,
    /// Fire times were missed and will not run.
    MissedSchedule,
    /// A config (or its schedule) is valid.
    Valid,
    /// A config without a schedule: runs start only on demand.
    NoSchedule,
    /// `spec.suspend` is true.
    Suspended,
    /// `spec.suspend` is false.
    Active,
    /// A table's catalog is readable.
    CatalogReady,
    /// A Table's Delta table uses a feature the operator does not support (partitioning,
    /// deletion vectors, column mapping, …): the table is not Ready and never cleaned up.
    UnsupportedDeltaFeature,
    /// The Secret a table's storage credentials come from cannot be read.
    StorageSecretUnavailable,
    /// The Secret a Table names in `spec.storageSecretRef` does not opt in to being used as
    /// storage credentials (label `minion.dev/storage-credentials: "true"`).
    SecretNotAllowed,
    /// A Table's `spec.uri` is the location of an older Table, or nested with it.
    UriOverlaps,
    /// A Table's or task's URI is outside the operator's allowed URI prefixes.
    UriNotAllowed,
    /// Housekeeping deleted unreferenced or expired files.
    CleanedUp,
    /// Data retention removed segments past `retentionTimePeriod`.
    RetentionApplied,
    /// Data retention keeps expired segments an importer has not moved yet (Degraded).
    RetentionBlockedByImport,

    // A config's health (the Degraded condition) and run-now requests.
    RunsFailing,
    RunsSucceeding,
    RunNowRequested,
    InvalidRunNow,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.as_str().to_string()
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Reason> for &str {
    fn eq(&self, other: &Reason) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_upper_camel_case_api_words() {
        for &r in Reason::ALL {
            let s = r.as_str();
            assert!(s.chars().next().unwrap().is_ascii_uppercase(), "{s}");
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
            assert_eq!(format!("{r:?}"), s, "the variant is spelt as written");
            assert_eq!(String::from(r), s);
        }
    }
}
