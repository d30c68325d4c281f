//! Validation: raw resource specs (`crate::api`) into validated model types (`crate::model`).
//!
//! One function per kind — [`table`], [`task_config`], [`task_run`] — parses periods, sizes,
//! cron expressions, time zones and times, applies Pinot's defaults and checks cross-field
//! rules; [`against_tables`] checks a task config against the schemas of its tables. Every
//! error of a resource is collected (not only the first); each names the resource, the field
//! path, the bad value and what is allowed, and has a stable [`Invalid::reason`] for
//! conditions and Events. Pure: no I/O, no clock.

mod blocks;
mod cross;
mod table;
mod tasks;
pub mod units;

use std::fmt;

use chrono::{DateTime, Utc};

use crate::schedule::ScheduleError;
use minion_common::predicate::{Expr, MAX_DEPTH};

/// The start of a long value, for an error message.
fn excerpt(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        format!("{}…", value.chars().take(MAX).collect::<String>())
    }
}

pub use cross::against_tables;
pub use table::{UriOverlap, overlap_message, table, uri_overlap};
pub use tasks::{ValidatedTaskRun, task_config, task_run};

/// What is wrong with one value. One variant per kind of mistake; [`Invalid::reason`] is the
/// stable CamelCase reason used in conditions, Events and metric labels.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Invalid {
    #[error(
        "{value:?} is not a period; use a number followed by d, h, m, s or ms (e.g. 1d, 6h, 15m)"
    )]
    Period { value: String },
    #[error("{value:?} must be a period greater than 0 (e.g. 1h)")]
    PeriodNotPositive { value: String },
    #[error(
        "{value:?} is not a size; use a number optionally followed by K, M, G, T (×1024, as in Pinot) or Ki, Mi, Gi, Ti (e.g. 500M, 512Mi, 1G)"
    )]
    Size { value: String },
    #[error("{value:?} must be a size greater than 0 (e.g. 512Mi)")]
    SizeNotPositive { value: String },
    #[error(
        "{value:?} is not a Kubernetes quantity; use a number with an optional suffix: m, k, M, G, T or Ki, Mi, Gi, Ti (e.g. 500m, 2, 1Gi)"
    )]
    Quantity { value: String },
    #[error("{0}")]
    Schedule(ScheduleError),
    /// The time column's format does not parse or does not fit the column's type.
    #[error("{message}")]
    TimeFormat { message: String },
    /// A sketch parameter that does not fit its aggregation type.
    #[error("{message}")]
    AggregationParameter { message: String },
    #[error(
        "{value:?} is not a time; use RFC3339 (e.g. 2024-01-31T00:00:00Z) or epoch milliseconds"
    )]
    Time { value: String },
    #[error(
        "{value:?} is not a URI; use scheme://… with scheme file, s3, s3a, gs, az, abfs or memory (e.g. s3://bucket/tables/events)"
    )]
    Uri { value: String },
    #[error(
        "{value:?} has unsupported scheme {scheme:?}; use file, s3, s3a, gs, az, abfs or memory"
    )]
    UriScheme { value: String, scheme: String },
    #[error("is required; {hint}")]
    Missing { hint: String },
    #[error("{value} is out of range; {allowed}")]
    OutOfRange { value: String, allowed: String },
    #[error("is set but taskType is {task_type}; only {expected} may be present")]
    BlockMismatch { task_type: String, expected: String },
    #[error(
        "{value:?} is not longer than the previous level's {previous:?}; list levels finest bucket first with strictly increasing bucketTimePeriod"
    )]
    LevelsOutOfOrder { value: String, previous: String },
    #[error("{value:?} is used twice; names must be unique")]
    Duplicate { value: String },
    #[error("{value:?} is longer than bucketTimePeriod {bucket:?}; use a period ≤ the bucket")]
    RoundingTooLong { value: String, bucket: String },
    #[error("{value:?} is not a column of table {table}; columns: {columns}")]
    UnknownColumn {
        value: String,
        table: String,
        columns: String,
    },
    #[error("column {value:?} of table {table} is a {role} column; {expected}")]
    WrongColumnRole {
        value: String,
        table: String,
        role: String,
        expected: String,
    },
    #[error("column {value:?} has type {data_type}; {expected}")]
    WrongColumnType {
        value: String,
        data_type: String,
        expected: String,
    },
    #[error(
        "{start:?} is not before endTime {end:?}; the range [startTime, endTime) must not be empty"
    )]
    EmptyTimeRange { start: String, end: String },
    #[error("cannot be set together with {other}; {hint}")]
    Conflicting { other: String, hint: String },
    #[error("MinionTaskConfig {value:?} was not found in namespace {namespace}")]
    ConfigNotFound { value: String, namespace: String },
    #[error("{value:?} does not match the referenced MinionTaskConfig's {expected:?}")]
    Mismatch { value: String, expected: String },
    #[error("is not allowed: {detail}")]
    NotAllowed { detail: String },
    #[error("table {value} is {actual}; {expected}")]
    WrongTableType {
        value: String,
        actual: String,
        expected: String,
    },
    #[error(
        "{value:?} {problem}; it becomes part of output file names, so use 1 to 100 characters from A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.' or '-' and without \"..\" (e.g. events_v2)"
    )]
    SegmentName { value: String, problem: String },
    #[error(
        "{value:?} does not parse: at character {position} ({token:?}): {message}; write comparisons (column = 'text', column >= 10, column [NOT] IN ('a', 'b')) joined by AND, OR, NOT and parentheses"
    )]
    Predicate {
        value: String,
        position: usize,
        token: String,
        message: String,
    },
    #[error(
        "{value:?} nests parentheses and NOT deeper than {max} levels (at character {position}); flatten it, e.g. a long OR chain or an IN list needs no nesting"
    )]
    PredicateTooDeep {
        value: String,
        position: usize,
        max: usize,
    },
    #[error("{value} is not a valid {data_type} for column {column:?} of table {table}")]
    PredicateLiteral {
        value: String,
        column: String,
        data_type: String,
        table: String,
    },
}

impl Invalid {
    /// Stable CamelCase reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Period { .. } | Invalid::PeriodNotPositive { .. } => "InvalidPeriod",
            Invalid::Size { .. } | Invalid::SizeNotPositive { .. } => "InvalidSize",
            Invalid::Quantity { .. } => "InvalidQuantity",
            Invalid::Schedule(e) => e.reason(),
            Invalid::Time { .. } => "InvalidTime",
            Invalid::Uri { .. } => "InvalidUri",
            Invalid::UriScheme { .. } => "UnsupportedUriScheme",
            Invalid::Missing { .. } => "MissingField",
            Invalid::OutOfRange { .. } => "OutOfRange",
            Invalid::BlockMismatch { .. } => "TaskBlockMismatch",
            Invalid::LevelsOutOfOrder { .. } => "MergeLevelsOutOfOrder",
            Invalid::Duplicate { .. } => "DuplicateName",
            Invalid::RoundingTooLong { .. } => "InvalidRounding",
            Invalid::UnknownColumn { .. } => "UnknownColumn",
            Invalid::WrongColumnRole { .. } => "WrongColumnRole",
            Invalid::WrongColumnType { .. } => "WrongColumnType",
            Invalid::EmptyTimeRange { .. } => "InvalidTimeRange",
            Invalid::Conflicting { .. } => "ConflictingFields",
            Invalid::ConfigNotFound { .. } => "ConfigNotFound",
            Invalid::Mismatch { .. } => "ConfigMismatch",
            Invalid::NotAllowed { .. } => "FieldNotAllowed",
            Invalid::WrongTableType { .. } => "WrongTableType",
            Invalid::SegmentName { .. } => "InvalidSegmentName",
            Invalid::Predicate { .. } => "InvalidPredicate",
            Invalid::TimeFormat { .. } => "InvalidTimeFormat",
            Invalid::AggregationParameter { .. } => "InvalidAggregationParameter",
            Invalid::PredicateTooDeep { .. } => "PredicateTooDeep",
            Invalid::PredicateLiteral { .. } => "InvalidPredicateLiteral",
        }
    }
}

/// The resource an error belongs to: `Kind namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceId {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ResourceId {
    fn of(kind: &'static str, meta: &kube::api::ObjectMeta) -> ResourceId {
        ResourceId {
            kind,
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One error: resource, field path (e.g. `spec.mergeRollupTask.levels[1].bucketTimePeriod`)
/// and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{resource}: {field}: {problem}")]
pub struct ValidationError {
    pub resource: ResourceId,
    pub field: String,
    pub problem: Invalid,
}

impl ValidationError {
    pub fn reason(&self) -> &'static str {
        self.problem.reason()
    }
}

/// Every error found in one resource (never empty).
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationErrors {
    pub errors: Vec<ValidationError>,
}

impl ValidationErrors {
    /// Reason of the first error (for a condition's `reason`).
    pub fn reason(&self) -> &'static str {
        self.errors
            .first()
            .map_or("Invalid", ValidationError::reason)
    }

    /// Whether some error is at `field` with `reason`.
    pub fn has(&self, field: &str, reason: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.field == field && e.reason() == reason)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Collects the errors of one resource while its fields are parsed.
pub(crate) struct Collector {
    resource: ResourceId,
    errors: Vec<ValidationError>,
}

impl Collector {
    pub(crate) fn new(resource: ResourceId) -> Collector {
        Collector {
            resource,
            errors: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, problem: Invalid) {
        self.errors.push(ValidationError {
            resource: self.resource.clone(),
            field: field.into(),
            problem,
        });
    }

    /// Records the error of `result` at `field`, returning its value if it is fine.
    pub(crate) fn check<T>(&mut self, field: &str, result: Result<T, Invalid>) -> Option<T> {
        result.map_err(|e| self.push(field, e)).ok()
    }

    /// A period (≥ 0), `default` when absent or invalid.
    pub(crate) fn period(&mut self, field: &str, value: Option<&str>, default: i64) -> i64 {
        value
            .and_then(|v| self.check(field, units::parse_period(v)))
            .unwrap_or(default)
    }

    /// A period > 0, `default` when absent or invalid.
    pub(crate) fn positive_period(
        &mut self,
        field: &str,
        value: Option<&str>,
        default: i64,
    ) -> i64 {
        value
            .and_then(|v| self.check(field, units::parse_positive_period(v)))
            .unwrap_or(default)
    }

    /// A size > 0, `default` when absent or invalid.
    pub(crate) fn size(&mut self, field: &str, value: Option<&str>, default: u64) -> u64 {
        value
            .and_then(|v| self.check(field, units::parse_size(v)))
            .unwrap_or(default)
    }

    /// An integer ≥ 1, `default` when absent.
    pub(crate) fn at_least_one<T>(&mut self, field: &str, value: Option<T>, default: T) -> T
    where
        T: Copy + PartialOrd + From<u8> + fmt::Display,
    {
        match value {
            Some(v) if v < T::from(1) => {
                self.push(
                    field,
                    Invalid::OutOfRange {
                        value: v.to_string(),
                        allowed: "use 1 or more".into(),
                    },
                );
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    /// A user predicate parsed into its tree, `None` (and an error at `field`) if it does
    /// not parse or nests deeper than [`MAX_DEPTH`].
    pub(crate) fn predicate(&mut self, field: &str, text: &str) -> Option<Expr> {
        let e = match Expr::parse(text) {
            Ok(expr) => return Some(expr),
            Err(e) => e,
        };
        let value = excerpt(text);
        let problem = if e.too_deep() {
            Invalid::PredicateTooDeep {
                value,
                position: e.position,
                max: MAX_DEPTH,
            }
        } else {
            Invalid::Predicate {
                value,
                position: e.position,
                token: e.token,
                message: e.message,
            }
        };
        self.push(field, problem);
        None
    }

    pub(crate) fn missing(&mut self, field: &str, hint: &str) {
        self.push(field, Invalid::Missing { hint: hint.into() });
    }

    pub(crate) fn resource(&self) -> &ResourceId {
        &self.resource
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors {
                errors: self.errors,
            })
        }
    }

    pub(crate) fn absorb(&mut self, errors: ValidationErrors) {
        self.errors.extend(errors.errors);
    }
}

/// URI schemes tables and input prefixes may use.
pub const SUPPORTED_SCHEMES: [&str; 7] = ["file", "s3", "s3a", "gs", "az", "abfs", "memory"];

/// Checks a table or input URI: `scheme://…` with a supported scheme.
pub(crate) fn check_uri(value: &str) -> Result<(), Invalid> {
    let parsed = url::Url::parse(value).map_err(|_| Invalid::Uri {
        value: value.to_string(),
    })?;
    if !SUPPORTED_SCHEMES.contains(&parsed.scheme()) {
        return Err(Invalid::UriScheme {
            value: value.to_string(),
            scheme: parsed.scheme().to_string(),
        });
    }
    let needs_bucket = !matches!(parsed.scheme(), "file" | "memory");
    if !value.contains("://") || (needs_bucket && parsed.host_str().unwrap_or("").is_empty()) {
        return Err(Invalid::Uri {
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Longest `segmentNamePrefix` / `segmentNamePostfix` (and merge level name) accepted.
pub const MAX_SEGMENT_NAME_PART_CHARS: usize = 100;

/// Checks a part of output file names (`segmentNamePrefix`, `segmentNamePostfix`, a merge
/// level name): the worker names outputs `<prefix>_<min>_<max>[_<postfix>]_<seq>.parquet` and
/// the catalog commits that path, so only characters that need no escaping in an object key,
/// a local path or a Delta `add` path (a URI) are allowed: `[A-Za-z0-9._-]`, not starting with
/// `.` or `-`, no `..`, at most [`MAX_SEGMENT_NAME_PART_CHARS`].
pub(crate) fn check_segment_name_part(value: &str) -> Result<(), Invalid> {
    let bad = |problem: String| Invalid::SegmentName {
        value: value.to_string(),
        problem,
    };
    if value.is_empty() {
        return Err(bad("is empty".into()));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(match c {
            ' ' => "contains a space".into(),
            '/' | '\\' => format!("contains {c:?}, a path separator"),
            c if c.is_control() => format!("contains the control character U+{:04X}", c as u32),
            c if !c.is_ascii() => format!("contains {c:?}, which is not ASCII"),
            c => format!("contains {c:?}"),
        }));
    }
    if let Some(c) = value.chars().next().filter(|c| matches!(c, '.' | '-')) {
        return Err(bad(format!("starts with {c:?}")));
    }
    if value.contains("..") {
        return Err(bad("contains \"..\"".into()));
    }
    let n = value.chars().count();
    if n > MAX_SEGMENT_NAME_PART_CHARS {
        return Err(bad(format!(
            "is {n} characters long, more than {MAX_SEGMENT_NAME_PART_CHARS}"
        )));
    }
    Ok(())
}

/// Epoch milliseconds to a UTC time (for status fields).
pub fn millis_to_utc(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

/// Whether `uri` lies under one of `allowed` (URI prefixes such as `s3://lake/`); an empty
/// list allows every URI (local mode, and an operator started without the restriction).
pub fn uri_allowed(uri: &str, allowed: &[String]) -> bool {
    allowed.is_empty() || allowed.iter().any(|p| uri.starts_with(p.as_str()))
}

/// The URIs a task reads besides its tables, with the field each comes from.
pub fn input_uris(spec: &crate::model::TaskSpec) -> Vec<(&'static str, &str)> {
    use crate::model::TaskSpec;
    match spec {
        TaskSpec::FileIngestion(f) => {
            let mut out = Vec::new();
            if !f.input_dir_uri.is_empty() {
                out.push(("fileIngestionTask.inputDirURI", f.input_dir_uri.as_str()));
            }
            out.extend(
                f.input_files
                    .iter()
                    .map(|u| ("fileIngestionTask.inputFiles", u.as_str())),
            );
            out
        }
        TaskSpec::SegmentBackfill(b) => {
            vec![("segmentBackfillTask.inputDirURI", b.input_dir_uri.as_str())]
        }
        _ => Vec::new(),
    }
}

/// Why `uri` (of `field`) is refused under `allowed`, for conditions and Events.
pub fn uri_refused(what: &str, field: &str, uri: &str, allowed: &[String]) -> String {
    format!(
        "{what}: {field} {uri} is not under a location this operator may use ({}); use one of them, or ask the operator's administrator to add it (chart value allowedUriPrefixes)",
        allowed.join(", ")
    )
}

#[cfg(test)]
mod uri_tests {
    use super::*;

    #[test]
    fn uris_are_allowed_by_prefix_and_an_empty_list_allows_any() {
        let allowed = vec!["s3://lake/".to_string(), "gs://".to_string()];
        assert!(uri_allowed("s3://lake/events", &allowed));
        assert!(uri_allowed("gs://other/x", &allowed));
        assert!(!uri_allowed("s3://lake2/events", &allowed));
        assert!(!uri_allowed("file:///etc", &allowed));
        assert!(uri_allowed("file:///etc", &[]));
        let m = uri_refused("Table ns/t", "spec.uri", "file:///etc", &allowed);
        assert!(
            m.contains("spec.uri file:///etc") && m.contains("s3://lake/, gs://"),
            "{m}"
        );
    }
}
