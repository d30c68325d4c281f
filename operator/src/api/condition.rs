//! Conditions in the standard Kubernetes shape (`type`, `status`, `reason`, `message`,
//! `observedGeneration`, `lastTransitionTime`), usable with `kubectl wait --for=condition=…`,
//! and the one helper that updates them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The resource is usable (Table: catalog reachable; MinionTaskConfig: valid and scheduling;
/// TaskRun: not used).
pub const READY: &str = "Ready";
/// The cron expression and time zone of a MinionTaskConfig parse.
pub const SCHEDULE_VALID: &str = "ScheduleValid";
/// A MinionTaskConfig is suspended (`spec.suspend`).
pub const SUSPENDED: &str = "Suspended";
/// Work is under way (a TaskRun planning, running or committing).
pub const PROGRESSING: &str = "Progressing";
/// Something needs attention but work continues (e.g. runs failing, delay growing).
pub const DEGRADED: &str = "Degraded";
/// A TaskRun ended successfully (or was skipped with nothing to do).
pub const COMPLETE: &str = "Complete";
/// A TaskRun failed or timed out.
pub const FAILED: &str = "Failed";

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// One condition of a resource's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Condition type in CamelCase (`Ready`, `ScheduleValid`, `Complete`, …).
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason of the last transition (e.g. `InvalidPeriod`).
    pub reason: String,
    /// Human-readable detail: for errors, the resource, field, bad value and what is allowed.
    #[serde(default)]
    pub message: String,
    /// `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    #[schemars(schema_with = "super::date_time_schema")]
    pub last_transition_time: DateTime<Utc>,
}

/// Sets condition `type_` in `conditions`, adding it if absent.
///
/// # Guarantees
/// `lastTransitionTime` changes only when `status` changes (reason, message and generation
/// are always updated). Returns whether anything changed, so callers can skip a status write.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let before = c.clone();
            if c.status != status {
                c.status = status;
                c.last_transition_time = now;
            }
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = observed_generation;
            *c != before
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                status,
                reason: reason.to_string(),
                message,
                observed_generation,
                last_transition_time: now,
            });
            true
        }
    }
}

/// The condition of type `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    #[test]
    fn unchanged_status_keeps_last_transition_time() {
        let mut cs = Vec::new();
        assert!(set_condition(
            &mut cs,
            READY,
            ConditionStatus::False,
            "InvalidPeriod",
            "bad",
            Some(1),
            t(10)
        ));
        assert!(set_condition(
            &mut cs,
            READY,
            ConditionStatus::False,
            "InvalidSize",
            "worse",
            Some(2),
            t(20)
        ));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, t(10));
        assert_eq!(cs[0].reason, "InvalidSize");
        assert_eq!(cs[0].observed_generation, Some(2));
    }

    #[test]
    fn changed_status_moves_last_transition_time() {
        let mut cs = Vec::new();
        set_condition(&mut cs, READY, ConditionStatus::False, "A", "", None, t(10));
        set_condition(
            &mut cs,
            READY,
            ConditionStatus::True,
            "Valid",
            "",
            None,
            t(20),
        );
        assert_eq!(cs[0].last_transition_time, t(20));
        assert!(is_true(&cs, READY));
    }

    #[test]
    fn identical_update_reports_no_change() {
        let mut cs = Vec::new();
        set_condition(
            &mut cs,
            SUSPENDED,
            false.into(),
            "Active",
            "",
            Some(1),
            t(1),
        );
        assert!(!set_condition(
            &mut cs,
            SUSPENDED,
            false.into(),
            "Active",
            "",
            Some(1),
            t(2)
        ));
    }

    #[test]
    fn condition_serializes_in_the_kubernetes_shape() {
        let mut cs = Vec::new();
        set_condition(
            &mut cs,
            READY,
            ConditionStatus::True,
            "Valid",
            "ok",
            Some(3),
            t(0),
        );
        let v = serde_json::to_value(&cs[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "Ready", "status": "True", "reason": "Valid", "message": "ok",
                "observedGeneration": 3, "lastTransitionTime": "1970-01-01T00:00:00Z"
            })
        );
    }
}
