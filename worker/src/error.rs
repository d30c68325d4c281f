//! The worker's error type: every way a subtask can fail, each mapped to a fixed
//! [`FailureReason`] (for the manifest, conditions and metrics) and an exit code.
//!
//! Messages are one line and name the cause: the file, the column, the store.

use minion_contract::{EXIT_BAD_INPUT, EXIT_TRANSIENT, FailureReason};

use crate::predicate::PredicateError;

/// A failure of one subtask.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("bad subtask spec: {0}")]
    BadSpec(String),
    #[error("corrupt input {file}: {message}")]
    CorruptInput { file: String, message: String },
    /// A committed segment of a table that cannot be read (truncated, bad magic, bad page).
    #[error("corrupt segment {file}: {message}")]
    CorruptSegment { file: String, message: String },
    #[error("schema mismatch in {file}: {message}")]
    SchemaMismatch { file: String, message: String },
    #[error("missing input {file}: {message}")]
    MissingInput { file: String, message: String },
    #[error("object store unreachable at {uri}: {message}")]
    StoreUnreachable { uri: String, message: String },
    #[error("memory budget of {budget} bytes is too small: {message}")]
    BudgetTooSmall { budget: u64, message: String },
    #[error("bad purge predicate: {0}")]
    BadPredicate(#[from] PredicateError),
    #[error("internal error: {0}")]
    Internal(String),
    /// The row ledger or the output order check failed: rows were lost or counted twice.
    #[error("internal error, nothing may be committed: {0}")]
    InvariantViolated(String),
}

impl WorkerError {
    /// The fixed reason recorded in the manifest.
    pub fn reason(&self) -> FailureReason {
        match self {
            WorkerError::BadSpec(_) => FailureReason::BadSpec,
            WorkerError::CorruptInput { .. } => FailureReason::CorruptInput,
            WorkerError::CorruptSegment { .. } => FailureReason::CorruptSegment,
            WorkerError::SchemaMismatch { .. } => FailureReason::SchemaMismatch,
            WorkerError::MissingInput { .. } => FailureReason::MissingInput,
            WorkerError::StoreUnreachable { .. } => FailureReason::StoreUnreachable,
            WorkerError::BudgetTooSmall { .. } => FailureReason::BudgetTooSmall,
            WorkerError::BadPredicate(_) => FailureReason::BadPredicate,
            WorkerError::Internal(_) => FailureReason::Internal,
            WorkerError::InvariantViolated(_) => FailureReason::InvariantViolated,
        }
    }

    /// The process exit code: [`EXIT_BAD_INPUT`] when retrying cannot help.
    pub fn exit_code(&self) -> i32 {
        if self.reason().is_permanent() {
            EXIT_BAD_INPUT
        } else {
            EXIT_TRANSIENT
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        WorkerError::Internal(e.to_string())
    }

    /// The error as it concerns an input segment (`segment`) rather than a file being ingested:
    /// a corrupt segment is `CorruptSegment`.
    pub fn of_input(self, segment: bool) -> Self {
        match self {
            WorkerError::CorruptInput { file, message } if segment => {
                WorkerError::CorruptSegment { file, message }
            }
            other => other,
        }
    }

    /// Classifies an object store error on `uri`.
    pub fn from_store(uri: &str, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => WorkerError::MissingInput {
                file: uri.to_string(),
                message: "not found".to_string(),
            },
            other => WorkerError::StoreUnreachable {
                uri: uri.to_string(),
                message: one_line(&other.to_string()),
            },
        }
    }

    /// Classifies a Parquet error while reading `file`: store failures stay store failures,
    /// everything else means the file is not valid Parquet.
    pub fn from_parquet(file: &str, e: parquet::errors::ParquetError) -> Self {
        if let parquet::errors::ParquetError::External(inner) = &e
            && let Some(store_err) = inner.downcast_ref::<object_store::Error>()
        {
            return match store_err {
                object_store::Error::NotFound { .. } => WorkerError::MissingInput {
                    file: file.to_string(),
                    message: "not found".to_string(),
                },
                other => WorkerError::StoreUnreachable {
                    uri: file.to_string(),
                    message: one_line(&other.to_string()),
                },
            };
        }
        WorkerError::CorruptInput {
            file: file.to_string(),
            message: one_line(&e.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for WorkerError {
    fn from(e: arrow::error::ArrowError) -> Self {
        WorkerError::Internal(one_line(&e.to_string()))
    }
}

impl From<minion_store::StoreError> for WorkerError {
    fn from(e: minion_store::StoreError) -> Self {
        use minion_store::StoreError;
        match e {
            StoreError::BadUri(m) => WorkerError::BadSpec(m),
            StoreError::NotFound { uri } => WorkerError::MissingInput {
                file: uri,
                message: "not found".to_string(),
            },
            StoreError::Unreachable { uri, message } => {
                WorkerError::StoreUnreachable { uri, message }
            }
            StoreError::Io(m) => WorkerError::Internal(format!("local disk: {m}")),
        }
    }
}

impl From<std::io::Error> for WorkerError {
    fn from(e: std::io::Error) -> Self {
        WorkerError::Internal(format!("local disk: {}", one_line(&e.to_string())))
    }
}

/// Collapses a multi-line message into one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub type Result<T, E = WorkerError> = std::result::Result<T, E>;
