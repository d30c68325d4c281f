//! Checks of a validated task config against the validated tables it names: table types,
//! aggregation types keyed by metric columns, erased values being dimensions, upsert-only
//! and append-only task types, predicate columns and literals.

use std::collections::{BTreeMap, BTreeSet};

use minion_common::predicate::{CmpOp, Predicate};
use minion_contract::{AggregationType, ColumnRole, ColumnType, MergeType};

use super::table::{column_list, role_name, type_name};
use super::{Collector, Invalid, ResourceId, ValidationErrors};
use crate::api::block_key;
use crate::model::{
    Expr, MergeLevel, MergeRollupConfig, TableDef, TableType, TaskConfig, TaskSpec,
};

/// Checks a MinionTaskConfig's validated config against its destination `table` and, for
/// R2O/SegmentImport, its `source` table. For a TaskRun use
/// [`super::ValidatedTaskRun::against_tables`].
///
/// # Errors
/// Every mismatch, naming the config's field (e.g.
/// `spec.mergeRollupTask.aggregationTypes.country`).
pub fn against_tables(
    cfg: &TaskConfig,
    table: &TableDef,
    source: Option<&TableDef>,
) -> Result<(), ValidationErrors> {
    let resource = ResourceId {
        kind: "MinionTaskConfig",
        namespace: cfg.namespace.clone(),
        name: cfg.name.clone(),
    };
    check(resource, "spec", cfg, table, source)
}

pub(super) fn check(
    resource: ResourceId,
    at: &str,
    cfg: &TaskConfig,
    table: &TableDef,
    source: Option<&TableDef>,
) -> Result<(), ValidationErrors> {
    let mut c = Collector::new(resource);
    if cfg.table != table.name {
        c.push(
            "spec.table",
            Invalid::Mismatch {
                value: cfg.table.clone(),
                expected: table.name.clone(),
            },
        );
    }
    let block = format!("{at}.{}", block_key(cfg.task_type()));
    match &cfg.task {
        TaskSpec::RealtimeToOffline(r) => {
            check_source(&mut c, table, source);
            // As Pinot: the OFFLINE table would keep every version a newer one supersedes.
            if let Some(src) = source.filter(|s| s.schema.is_upsert()) {
                c.push(
                    "spec.sourceTable",
                    Invalid::WrongTableType {
                        value: src.name.clone(),
                        actual: "an upsert table (schema.primaryKey is set)".into(),
                        expected: "RealtimeToOfflineSegmentsTask moves append tables: the OFFLINE table would keep versions a newer one supersedes (Pinot refuses it too); compact the upsert table in place with SegmentRefreshTask".into(),
                    },
                );
            }
            let rollup = r.window.merge_type == MergeType::Rollup;
            metrics(&mut c, &block, table, &r.window.aggregation_types, rollup);
        }
        TaskSpec::SegmentImport(s) => {
            check_source(&mut c, table, source);
            let rollup = s.window.merge_type == MergeType::Rollup;
            metrics(&mut c, &block, table, &s.window.aggregation_types, rollup);
        }
        TaskSpec::MergeRollup(m) => {
            if table.schema.is_upsert() {
                c.push(
                    "spec.table",
                    Invalid::WrongTableType {
                        value: table.name.clone(),
                        actual: "an upsert table (schema.primaryKey is set)".into(),
                        expected: "MergeRollupTask merges append tables; use SegmentRefreshTask on upsert tables".into(),
                    },
                );
            }
            let rollup = m.levels.iter().any(|l| l.merge_type == MergeType::Rollup);
            metrics(&mut c, &block, table, &m.aggregation_types, rollup);
            for (i, level) in m.levels.iter().enumerate() {
                derived_metrics(&mut c, &format!("{block}.levels[{i}]"), table, m, level);
                for (j, name) in level.erase_dimension_values.iter().enumerate() {
                    let field = format!("{block}.levels[{i}].eraseDimensionValues[{j}]");
                    column_with_role(
                        &mut c,
                        field,
                        table,
                        name,
                        ColumnRole::Dimension,
                        "only dimension columns can be erased",
                    );
                }
            }
        }
        TaskSpec::SegmentRefresh(_) => {
            if !table.schema.is_upsert() {
                c.push(
                    "spec.table",
                    Invalid::WrongTableType {
                        value: table.name.clone(),
                        actual: "not an upsert table (no schema.primaryKey)".into(),
                        expected: "SegmentRefreshTask runs on upsert tables".into(),
                    },
                );
            }
        }
        TaskSpec::SegmentBackfill(b) => {
            if let Some(f) = &b.filter {
                predicate_columns(&mut c, &format!("{block}.filter"), table, f);
            }
        }
        TaskSpec::Purge(p) => {
            predicate_columns(
                &mut c,
                &format!("{block}.purgePredicate"),
                table,
                &p.purge_predicate,
            );
        }
        TaskSpec::FileIngestion(_) => {}
    }
    c.finish(())
}

/// Every column a predicate names is a column of `table`, and every literal compared with
/// one is a valid value of its type — as the worker binds it.
fn predicate_columns(c: &mut Collector, field: &str, table: &TableDef, expr: &Expr) {
    let arrow = minion_common::schema::arrow_schema(&table.schema);
    let mut stack = vec![expr];
    let mut unknown = BTreeSet::new();
    while let Some(e) = stack.pop() {
        let (column, values) = match e {
            Expr::Not(inner) => {
                stack.push(inner);
                continue;
            }
            Expr::And(items) | Expr::Or(items) => {
                stack.extend(items.iter().rev());
                continue;
            }
            Expr::Cmp { column, value, .. } => (column, std::slice::from_ref(value)),
            Expr::In { column, values, .. } => (column, values.as_slice()),
        };
        let Some(col) = table.schema.column(column) else {
            if unknown.insert(column.clone()) {
                c.push(
                    field,
                    Invalid::UnknownColumn {
                        value: column.clone(),
                        table: table.name.clone(),
                        columns: column_list(&table.schema),
                    },
                );
            }
            continue;
        };
        for value in values {
            let leaf = Expr::Cmp {
                column: column.clone(),
                op: CmpOp::Eq,
                value: value.clone(),
            };
            if Predicate::bind(&leaf, &arrow).is_err() {
                c.push(
                    field,
                    Invalid::PredicateLiteral {
                        value: value.to_string(),
                        column: column.clone(),
                        data_type: type_name(col.data_type),
                        table: table.name.clone(),
                    },
                );
            }
        }
    }
}

/// The source must be the named REALTIME table and the destination an OFFLINE table.
fn check_source(c: &mut Collector, table: &TableDef, source: Option<&TableDef>) {
    if table.table_type != TableType::Offline {
        c.push(
            "spec.table",
            Invalid::WrongTableType {
                value: table.name.clone(),
                actual: "REALTIME".into(),
                expected: "the destination must be an OFFLINE table".into(),
            },
        );
    }
    if let Some(src) = source
        && src.table_type != TableType::Realtime
    {
        c.push(
            "spec.sourceTable",
            Invalid::WrongTableType {
                value: src.name.clone(),
                actual: "OFFLINE".into(),
                expected: "the source must be a REALTIME table".into(),
            },
        );
    }
}

/// Aggregation types name metric columns of a type they take (sketches and avg: BYTES;
/// the others: numbers); under rollup every BYTES metric has one.
fn metrics(
    c: &mut Collector,
    block: &str,
    table: &TableDef,
    types: &BTreeMap<String, AggregationType>,
    rollup: bool,
) {
    for (name, agg) in types {
        let field = format!("{block}.aggregationTypes.{name}");
        column_with_role(
            c,
            field.clone(),
            table,
            name,
            ColumnRole::Metric,
            "aggregation types apply to metric columns only",
        );
        let Some(col) = table.schema.column(name) else {
            continue;
        };
        let bytes = col.data_type == ColumnType::Bytes;
        if col.role == ColumnRole::Metric && bytes != agg.is_bytes() {
            let expected = if agg.is_bytes() {
                format!(
                    "{} holds a sketch or an average pair: declare the column's dataType BYTES",
                    agg.name()
                )
            } else {
                format!("{} aggregates numbers; {BYTES_AGGREGATIONS}", agg.name())
            };
            c.push(
                field,
                Invalid::WrongColumnType {
                    value: name.clone(),
                    data_type: type_name(col.data_type),
                    expected,
                },
            );
        }
    }
    if !rollup {
        return;
    }
    for col in table.schema.metrics() {
        if col.data_type == ColumnType::Bytes && !types.contains_key(&col.name) {
            c.missing(
                &format!("{block}.aggregationTypes.{}", col.name),
                &format!(
                    "BYTES metric {:?} cannot be summed under rollup; {BYTES_AGGREGATIONS}",
                    col.name
                ),
            );
        }
    }
}

const BYTES_AGGREGATIONS: &str = "a BYTES metric takes distinctCountThetaSketch, distinctCountHLL, distinctCountHLLPlus, distinctCountCPCSketch, percentileTDigest, percentileKLL or avg";

/// A level's `deriveMetrics`: a BYTES metric with a sketch (or avg) aggregation, built from
/// a column the same level erases under rollup (numeric for percentiles and avg).
fn derived_metrics(
    c: &mut Collector,
    at: &str,
    table: &TableDef,
    config: &MergeRollupConfig,
    level: &MergeLevel,
) {
    for (metric, source) in &level.derive_metrics {
        let field = format!("{at}.deriveMetrics.{metric}");
        let mut not = |detail: String| c.push(field.clone(), Invalid::NotAllowed { detail });
        if level.merge_type != MergeType::Rollup {
            not(
                "deriveMetrics builds metrics for a rollup; set this level's mergeType to rollup"
                    .into(),
            );
            continue;
        }
        let Some(agg) = config
            .aggregation_types
            .get(metric)
            .copied()
            .filter(|a| a.is_bytes())
        else {
            not(format!(
                "{metric:?} needs a sketch or avg aggregation type in aggregationTypes (and dataType BYTES)"
            ));
            continue;
        };
        if !level.erase_dimension_values.contains(source) {
            not(format!(
                "{source:?} must be listed in this level's eraseDimensionValues: the metric keeps what the rollup drops, and a column kept would be added again by the next level"
            ));
            continue;
        }
        let numeric = table.schema.column(source).is_some_and(|c| {
            matches!(
                c.data_type,
                ColumnType::Int | ColumnType::Long | ColumnType::Float | ColumnType::Double
            )
        });
        let distinct = matches!(
            agg,
            AggregationType::DistinctCountThetaSketch
                | AggregationType::DistinctCountHll
                | AggregationType::DistinctCountHllPlus
                | AggregationType::DistinctCountCpcSketch
        );
        if !distinct && !numeric {
            not(format!(
                "{} needs a numeric column (INT, LONG, FLOAT or DOUBLE), and {source:?} is not one",
                agg.name()
            ));
        }
    }
}

fn column_with_role(
    c: &mut Collector,
    field: String,
    table: &TableDef,
    name: &str,
    role: ColumnRole,
    expected: &str,
) {
    match table.schema.column(name) {
        None => c.push(
            field,
            Invalid::UnknownColumn {
                value: name.to_string(),
                table: table.name.clone(),
                columns: column_list(&table.schema),
            },
        ),
        Some(col) if col.role != role => c.push(
            field,
            Invalid::WrongColumnRole {
                value: name.to_string(),
                table: table.name.clone(),
                role: role_name(col.role).into(),
                expected: expected.into(),
            },
        ),
        Some(_) => {}
    }
}
