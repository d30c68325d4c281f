//! Which Delta tables the catalog serves: the protocol and metadata check every open and every
//! refresh runs ([`check`]), so a table another writer created — or changed after we opened
//! it — with a feature we do not implement is refused with [`CatalogError::UnsupportedDeltaFeature`]
//! before anything is planned, committed or cleaned up.
//!
//! The operator reads a table's rows from its Parquet files alone and commits plain `add` and
//! `remove` actions. A feature is accepted only where that stays correct:
//! - partitioned tables are refused: partition values live only in the log (the files lack
//!   the columns), so rows would be read with null partition columns and outputs would be
//!   committed without `partitionValues`;
//! - deletion vectors are refused while the table property enables them or a live file
//!   carries one: deleted rows would come back, and deletion-vector files would look
//!   unreferenced to the clean-up (the feature alone, property off and no live file with one,
//!   is harmless: no writer may add one);
//! - column mapping (`delta.columnMapping.mode` other than `none`) is refused: the Parquet
//!   column names are physical names, not the schema's;
//! - `delta.appendOnly=true` and `delta.enableChangeDataFeed=true` are refused: our
//!   replacements remove files and write no change data;
//! - harmless features are accepted: reader features `timestampNtz` and `variantType` (a
//!   column of such a type fails the schema comparison instead), `columnMapping` with mode
//!   `none` and `deletionVectors` as above; writer features only where the Delta library (built
//!   without its DataFusion feature) can still commit: `appendOnly` (property off),
//!   `timestampNtz`, `variantType`, `deletionVectors` as above;
//! - every other reader or writer feature is refused, known or not (`v2Checkpoint`,
//!   `typeWidening`, `rowTracking`, `inCommitTimestamp`, `catalogManaged`, and the writer
//!   features `invariants`, `domainMetadata`, `vacuumProtocolCheck`, `columnMapping`, …), and
//!   so are writer versions 3 to 6, whose implied features (`invariants`, `checkConstraints`)
//!   the library cannot write. A reader
//!   feature the Delta library does not know fails the load itself; [`refused_by_library`]
//!   turns that error into the same refusal.
//!
//! Tables the operator creates have protocol 1/2 without feature lists and none of the refused
//! properties, so they always pass.

use std::collections::HashMap;

use super::error::{CatalogError, Result};

/// Reader features that are harmless to the operator (see the module docs).
const ACCEPTED_READER_FEATURES: &[&str] = &[
    "timestampNtz",
    "timestampWithoutTimezone",
    "variantType",
    "variantType-preview",
    "columnMapping",
    "deletionVectors",
];

/// Writer features the operator's commits (through the Delta library) can honour.
const ACCEPTED_WRITER_FEATURES: &[&str] = &[
    "appendOnly",
    "timestampNtz",
    "timestampWithoutTimezone",
    "variantType",
    "variantType-preview",
    "deletionVectors",
];

/// What the check needs of a snapshot's protocol and metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableFeatures {
    pub min_reader_version: i32,
    pub min_writer_version: i32,
    /// Reader features, for reader version 3 (as the log spells them).
    pub reader_features: Vec<String>,
    /// Writer features, for writer version 7.
    pub writer_features: Vec<String>,
    pub partition_columns: Vec<String>,
    /// The table properties (`metaData.configuration`).
    pub configuration: HashMap<String, String>,
    /// Live files carrying a deletion vector; counted only when the `deletionVectors` feature
    /// is on and the property does not enable them (the one case it decides).
    pub files_with_deletion_vectors: usize,
}

/// A feature the operator does not support, and how to make the table usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The feature, as the condition names it (e.g. `partitioned by [day]`, `deletion vectors`).
    pub feature: String,
    pub fix: String,
}

impl TableFeatures {
    /// The protocol and metadata of the loaded snapshot of `table`.
    pub fn of(uri: &str, table: &deltalake::DeltaTable) -> Result<TableFeatures> {
        let state = table.snapshot().map_err(|e| CatalogError::delta(uri, e))?;
        let protocol = state.protocol();
        let metadata = state.metadata();
        let names = |features: Option<&[_]>| {
            features
                .unwrap_or_default()
                .iter()
                .map(|f: &_| format!("{f}"))
                .collect::<Vec<String>>()
        };
        let mut features = TableFeatures {
            min_reader_version: protocol.min_reader_version(),
            min_writer_version: protocol.min_writer_version(),
            reader_features: names(protocol.reader_features()),
            writer_features: names(protocol.writer_features()),
            partition_columns: metadata.partition_columns().to_vec(),
            configuration: metadata.configuration().clone(),
            files_with_deletion_vectors: 0,
        };
        if features.has_feature("deletionVectors") && !features.deletion_vectors_enabled() {
            let files = state
                .snapshot()
                .try_log_data()
                .map_err(|e| CatalogError::delta(uri, e))?;
            features.files_with_deletion_vectors = files
                .iter()
                .filter(|f| f.deletion_vector_descriptor().is_some())
                .count();
        }
        Ok(features)
    }

    fn deletion_vectors_enabled(&self) -> bool {
        self.property("delta.enableDeletionVectors")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn property(&self, key: &str) -> Option<&str> {
        self.configuration.get(key).map(|v| v.trim())
    }

    fn has_feature(&self, name: &str) -> bool {
        self.reader_features.iter().any(|f| f == name)
            || self.writer_features.iter().any(|f| f == name)
    }

    /// The first feature the operator does not support, if any (see the module docs).
    pub fn unsupported(&self) -> Option<Unsupported> {
        let refuse = |feature: String, fix: &str| {
            Some(Unsupported {
                feature,
                fix: fix.to_string(),
            })
        };
        if !self.partition_columns.is_empty() {
            return refuse(
                format!("partitioned by [{}]", self.partition_columns.join(", ")),
                "Partition values live only in the Delta log and the operator reads rows from the Parquet files alone; rewrite the table without partitioning (e.g. with another Delta writer: read it and write it to a new location without partition columns) and point spec.uri there",
            );
        }
        let is_true = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        // The feature alone, with the property off and no live file carrying one, is harmless:
        // no writer may add deletion vectors while the property is off.
        if self.deletion_vectors_enabled() || self.files_with_deletion_vectors > 0 {
            return refuse(
                "deletion vectors".to_string(),
                "Deleted rows would be read again and deletion-vector files would look unreferenced; set delta.enableDeletionVectors=false and purge the existing deletion vectors (REORG TABLE … APPLY (PURGE)), or rewrite the table to a new location",
            );
        }
        let mapping = self
            .property("delta.columnMapping.mode")
            .unwrap_or("none")
            .to_ascii_lowercase();
        if mapping != "none" {
            return refuse(
                format!("column mapping (delta.columnMapping.mode={mapping})"),
                "Parquet files of a column-mapped table name columns by their physical names, which the operator does not translate; rewrite the table to a new location without column mapping",
            );
        }
        if is_true(self.property("delta.appendOnly")) {
            return refuse(
                "append-only (delta.appendOnly=true)".to_string(),
                "The operator's tasks replace files; set delta.appendOnly=false",
            );
        }
        if is_true(self.property("delta.enableChangeDataFeed")) {
            return refuse(
                "change data feed (delta.enableChangeDataFeed=true)".to_string(),
                "The operator's commits write no change data; set delta.enableChangeDataFeed=false",
            );
        }
        if self.min_reader_version > 3 {
            return refuse(
                format!("reader version {}", self.min_reader_version),
                "The table needs a newer Delta reader; rewrite it to a new location with reader version 3 or lower",
            );
        }
        if self.min_writer_version > 7 {
            return refuse(
                format!("writer version {}", self.min_writer_version),
                "The table needs a newer Delta writer; rewrite it to a new location with writer version 7 or lower",
            );
        }
        if (3..=6).contains(&self.min_writer_version) {
            return refuse(
                format!("writer version {}", self.min_writer_version),
                "The Delta library the operator commits with cannot write the features this writer version implies (invariants, check constraints); rewrite the table to a new location with writer version 2, or 7 without them",
            );
        }
        for (kind, features, accepted) in [
            ("reader", &self.reader_features, ACCEPTED_READER_FEATURES),
            ("writer", &self.writer_features, ACCEPTED_WRITER_FEATURES),
        ] {
            if let Some(f) = features.iter().find(|f| !accepted.contains(&f.as_str())) {
                return refuse(format!("{kind} feature {f}"), DROP_OR_REWRITE);
            }
        }
        None
    }
}

/// The fix for a feature the operator does not implement.
const DROP_OR_REWRITE: &str = "The operator does not implement this Delta table feature; drop the feature with the writer that enabled it (ALTER TABLE … DROP FEATURE) or rewrite the table to a new location without it";

/// A feature the Delta library itself refused while loading the log (a reader feature it does
/// not know), from its error message (`… Feature 'x' is not supported …`).
pub(crate) fn refused_by_library(message: &str) -> Option<Unsupported> {
    let (_, rest) = message.split_once("Feature '")?;
    let (name, rest) = rest.split_once('\'')?;
    if !rest.contains("not supported") || name.is_empty() {
        return None;
    }
    Some(Unsupported {
        feature: format!("feature {name} (unknown to the Delta library)"),
        fix: DROP_OR_REWRITE.to_string(),
    })
}

/// Refuses the loaded snapshot of `table` when it uses a feature the operator does not support.
///
/// # Errors
/// [`CatalogError::UnsupportedDeltaFeature`] naming `uri`, the feature and the fix; `Delta` when
/// the snapshot cannot be read.
pub(crate) fn check(uri: &str, table: &deltalake::DeltaTable) -> Result<()> {
    match TableFeatures::of(uri, table)?.unsupported() {
        None => Ok(()),
        Some(Unsupported { feature, fix }) => Err(CatalogError::UnsupportedDeltaFeature {
            uri: uri.to_string(),
            feature,
            fix,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn legacy(reader: i32, writer: i32, configuration: &[(&str, &str)]) -> TableFeatures {
        TableFeatures {
            min_reader_version: reader,
            min_writer_version: writer,
            configuration: props(configuration),
            ..TableFeatures::default()
        }
    }

    fn with_features(reader: &[&str], writer: &[&str]) -> TableFeatures {
        TableFeatures {
            min_reader_version: 3,
            min_writer_version: 7,
            reader_features: reader.iter().map(|s| s.to_string()).collect(),
            writer_features: writer.iter().map(|s| s.to_string()).collect(),
            ..TableFeatures::default()
        }
    }

    fn refused(t: &TableFeatures) -> String {
        t.unsupported().expect("refused").feature
    }

    #[test]
    fn plain_tables_of_any_writer_and_the_features_harmless_to_us_are_accepted() {
        assert_eq!(legacy(1, 2, &[]).unsupported(), None);
        // What the operator sets on the tables it creates.
        let ours = legacy(
            1,
            2,
            &[
                ("delta.checkpointInterval", "100"),
                ("delta.setTransactionRetentionDuration", "interval 30 days"),
                ("delta.deletedFileRetentionDuration", "interval 7 days"),
                ("minion.timeColumn", "ts"),
                ("minion.timeUnit", "MILLISECONDS"),
            ],
        );
        assert_eq!(ours.unsupported(), None);
        assert_eq!(
            legacy(
                1,
                2,
                &[
                    ("delta.enableDeletionVectors", "false"),
                    ("delta.appendOnly", "false")
                ]
            )
            .unsupported(),
            None
        );
        assert_eq!(
            legacy(2, 2, &[("delta.columnMapping.mode", "none")]).unsupported(),
            None
        );
        let harmless = with_features(
            &["timestampNtz", "variantType", "columnMapping"],
            &["appendOnly", "timestampNtz", "variantType"],
        );
        assert_eq!(harmless.unsupported(), None);
    }

    #[test]
    fn partitioned_tables_are_refused_naming_the_partition_columns() {
        let t = TableFeatures {
            partition_columns: vec!["day".into(), "country".into()],
            ..legacy(1, 2, &[])
        };
        let refused = t.unsupported().unwrap();
        assert_eq!(refused.feature, "partitioned by [day, country]");
        assert!(refused.fix.contains("without partitioning"), "{refused:?}");
    }

    #[test]
    fn deletion_vectors_are_refused_by_property_or_by_feature() {
        let by_property = legacy(3, 7, &[("delta.enableDeletionVectors", "TRUE")]);
        assert_eq!(refused(&by_property), "deletion vectors");
        // Disabled again while a live file still carries one: refused until they are purged.
        let mut by_feature = with_features(&["deletionVectors"], &["deletionVectors"]);
        by_feature.configuration = props(&[("delta.enableDeletionVectors", "false")]);
        by_feature.files_with_deletion_vectors = 2;
        assert_eq!(refused(&by_feature), "deletion vectors");
        assert!(
            by_feature.unsupported().unwrap().fix.contains("PURGE"),
            "the fix says how"
        );
        // Purged: the feature alone is harmless.
        by_feature.files_with_deletion_vectors = 0;
        assert_eq!(by_feature.unsupported(), None);
    }

    #[test]
    fn column_mapping_is_refused_unless_its_mode_is_none() {
        for mode in ["name", "id", "Name"] {
            let t = legacy(2, 5, &[("delta.columnMapping.mode", mode)]);
            assert_eq!(
                refused(&t),
                format!(
                    "column mapping (delta.columnMapping.mode={})",
                    mode.to_ascii_lowercase()
                )
            );
        }
        // Mode none: readable as it is, but the library cannot commit with the writer feature.
        let mut t = with_features(&["columnMapping"], &["columnMapping"]);
        assert_eq!(refused(&t), "writer feature columnMapping");
        t.configuration = props(&[("delta.columnMapping.mode", "id")]);
        assert!(refused(&t).starts_with("column mapping"));
    }

    #[test]
    fn unknown_or_unimplemented_features_are_refused_by_name() {
        for (reader, writer, want) in [
            (
                &["v2Checkpoint"][..],
                &["v2Checkpoint"][..],
                "reader feature v2Checkpoint",
            ),
            (
                &["typeWidening"],
                &["typeWidening"],
                "reader feature typeWidening",
            ),
            (
                &["someFutureFeature"],
                &[],
                "reader feature someFutureFeature",
            ),
            (&[], &["rowTracking"], "writer feature rowTracking"),
            (
                &[],
                &["appendOnly", "invariants"],
                "writer feature invariants",
            ),
            (
                &["vacuumProtocolCheck"],
                &["vacuumProtocolCheck"],
                "reader feature vacuumProtocolCheck",
            ),
            (
                &[],
                &["inCommitTimestamp"],
                "writer feature inCommitTimestamp",
            ),
            (
                &[],
                &["someFutureWriterFeature"],
                "writer feature someFutureWriterFeature",
            ),
        ] {
            assert_eq!(refused(&with_features(reader, writer)), want);
        }
        assert_eq!(refused(&legacy(4, 7, &[])), "reader version 4");
        assert_eq!(refused(&legacy(1, 8, &[])), "writer version 8");
        for v in 3..=6 {
            assert_eq!(refused(&legacy(1, v, &[])), format!("writer version {v}"));
        }
    }

    #[test]
    fn features_the_delta_library_refuses_are_named() {
        let refused = refused_by_library(
            "Kernel error: Unsupported: Feature 'someFutureFeature' is not supported",
        )
        .unwrap();
        assert_eq!(
            refused.feature,
            "feature someFutureFeature (unknown to the Delta library)"
        );
        assert_eq!(
            refused_by_library("Kernel error: Generic: no such file"),
            None
        );
        assert_eq!(refused_by_library("Feature 'x' was enabled"), None);
    }

    #[test]
    fn properties_that_forbid_our_commits_are_refused() {
        assert_eq!(
            refused(&legacy(1, 2, &[("delta.appendOnly", "true")])),
            "append-only (delta.appendOnly=true)"
        );
        assert_eq!(
            refused(&legacy(1, 4, &[("delta.enableChangeDataFeed", "true")])),
            "change data feed (delta.enableChangeDataFeed=true)"
        );
    }

    #[test]
    fn the_error_names_the_table_the_feature_and_the_fix() {
        let err = CatalogError::UnsupportedDeltaFeature {
            uri: "s3://lake/events".into(),
            feature: "deletion vectors".into(),
            fix: "Set delta.enableDeletionVectors=false".into(),
        };
        assert_eq!(err.reason(), "UnsupportedDeltaFeature");
        // The Table's Ready condition carries the catalog's reason: one spelling.
        assert_eq!(
            err.reason(),
            crate::control::Reason::UnsupportedDeltaFeature.as_str()
        );
        assert!(!err.is_transient());
        assert_eq!(
            err.to_string(),
            "table s3://lake/events: unsupported Delta table feature: deletion vectors. Set delta.enableDeletionVectors=false"
        );
    }
}
