//! The catalog's one error type. Every variant names the table URI (and the segment or column
//! where there is one) and has a fixed [`CatalogError::reason`] for conditions, Events and
//! metric labels.

use deltalake::DeltaTableError;
use deltalake::kernel::transaction::TransactionError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A segment to be removed is not (or no longer) a live file of the table.
    #[error(
        "table {uri}: segment {path} is not live in the catalog (it was already replaced or deleted); the replacement was not committed"
    )]
    SegmentNotLive { uri: String, path: String },

    /// The existing Delta table's schema differs from the Table's schema.
    #[error("table {uri}: column {column}: {detail}")]
    SchemaMismatch {
        uri: String,
        column: String,
        detail: String,
    },

    /// The Table's schema cannot be turned into a Delta schema (e.g. the time column is missing).
    #[error("table {uri}: invalid schema: {detail}")]
    InvalidSchema { uri: String, detail: String },

    /// A segment reference cannot be committed as given.
    #[error("table {uri}: segment {path}: {detail}")]
    InvalidSegment {
        uri: String,
        path: String,
        detail: String,
    },

    /// There is no Delta table at the URI.
    #[error("table {uri}: no Delta table at this location (no _delta_log)")]
    NotATable { uri: String },

    /// There is no Delta table at the URI, and the Table does not let the operator create one.
    #[error(
        "table {uri}: no Delta table at this location (no _delta_log); the operator creates only OFFLINE tables: fix spec.uri, or set spec.create: true to create an empty table here"
    )]
    TableNotFound { uri: String },

    /// The URI cannot be parsed or its scheme is not supported.
    #[error("table {uri}: invalid table URI: {detail}")]
    InvalidUri { uri: String, detail: String },

    /// The object store could not be reached or refused a request.
    #[error("table {uri}: object store unreachable: {source}")]
    StoreUnreachable {
        uri: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Other writers kept committing between our refresh and our commit, attempt after attempt.
    #[error(
        "table {uri}: commit conflict: the table changed concurrently during {attempts} attempts; try again"
    )]
    CommitConflict { uri: String, attempts: usize },

    /// The Delta table uses a feature the operator does not support (see `catalog::features`).
    #[error("table {uri}: unsupported Delta table feature: {feature}. {fix}")]
    UnsupportedDeltaFeature {
        uri: String,
        feature: String,
        fix: String,
    },

    /// Any other error from the Delta library.
    #[error("table {uri}: delta: {source}")]
    Delta {
        uri: String,
        #[source]
        source: Box<DeltaTableError>,
    },
}

impl CatalogError {
    /// A fixed, machine-readable reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            CatalogError::SegmentNotLive { .. } => "SegmentNotLive",
            CatalogError::SchemaMismatch { .. } => "SchemaMismatch",
            CatalogError::InvalidSchema { .. } => "InvalidSchema",
            CatalogError::InvalidSegment { .. } => "InvalidSegment",
            CatalogError::NotATable { .. } => "NotATable",
            CatalogError::TableNotFound { .. } => "TableNotFound",
            CatalogError::InvalidUri { .. } => "InvalidUri",
            CatalogError::StoreUnreachable { .. } => "StoreUnreachable",
            CatalogError::CommitConflict { .. } => "CommitConflict",
            CatalogError::UnsupportedDeltaFeature { .. } => "UnsupportedDeltaFeature",
            CatalogError::Delta { .. } => "Delta",
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CatalogError::StoreUnreachable { .. } | CatalogError::CommitConflict { .. }
        )
    }

    /// Wraps a Delta error, classifying storage failures, missing tables and features the
    /// library refuses to read.
    pub(crate) fn delta(uri: &str, err: DeltaTableError) -> Self {
        match err {
            DeltaTableError::NotATable(_) => CatalogError::NotATable {
                uri: uri.to_string(),
            },
            DeltaTableError::InvalidTableLocation(detail) => CatalogError::InvalidUri {
                uri: uri.to_string(),
                detail,
            },
            DeltaTableError::ObjectStore { source } => CatalogError::StoreUnreachable {
                uri: uri.to_string(),
                source: Box::new(source),
            },
            DeltaTableError::Transaction {
                source: TransactionError::ObjectStore { source },
            } => CatalogError::StoreUnreachable {
                uri: uri.to_string(),
                source: Box::new(source),
            },
            other => match super::features::refused_by_library(&other.to_string()) {
                Some(refused) => CatalogError::UnsupportedDeltaFeature {
                    uri: uri.to_string(),
                    feature: refused.feature,
                    fix: refused.fix,
                },
                None => CatalogError::Delta {
                    uri: uri.to_string(),
                    source: Box::new(other),
                },
            },
        }
    }

    pub(crate) fn store(uri: &str, err: object_store::Error) -> Self {
        CatalogError::StoreUnreachable {
            uri: uri.to_string(),
            source: Box::new(err),
        }
    }
}

/// Whether a commit failed only because the table moved on since our snapshot (so refreshing and
/// re-checking may succeed). With `max_retries(0)` deltalake reports that as
/// `MaxCommitAttempts(0)`, or `VersionAlreadyExists` when it lost the put-if-absent race.
pub(crate) fn is_concurrent_commit(err: &DeltaTableError) -> bool {
    matches!(
        err,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::CommitConflict(_)
            }
    )
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
