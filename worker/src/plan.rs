//! The validated processing plan of a subtask: the spec's processing options checked once
//! against the destination schema and turned into column indices (parse, don't re-validate).
//!
//! Rows flow through the pipeline in the *internal* schema: the table's columns followed by
//! hidden columns — the time partition, the value partition, and for each first/last-with-time
//! metric the original (unrounded) time of the value it holds. The writer drops them.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use minion_contract::{
    AggregationType, ColumnRole, ColumnType, MergeType, PartitionFunction, Sketch, SubtaskSpec,
    TableSchema, TimeWindow,
};

use crate::error::{Result, WorkerError};
use crate::predicate::Predicate;
use crate::sketch::SketchMetric;
use crate::table::arrow_schema;
use crate::time::TimeColumn;

/// Prefix of hidden pipeline columns.
pub const HIDDEN_PREFIX: &str = "__minion_";

/// How one metric is aggregated under rollup.
#[derive(Clone, Debug)]
pub struct MetricAgg {
    pub index: usize,
    pub agg: AggregationType,
    /// Hidden column with the original time of the held value (first/last-with-time).
    pub time_index: Option<usize>,
    /// How a BYTES metric (a sketch or an average pair) merges.
    pub sketch: Option<SketchMetric>,
}

/// A BYTES metric built from a raw column's values before that column is erased.
#[derive(Clone, Debug)]
pub struct DerivedMetric {
    pub index: usize,
    pub source: usize,
    pub sketch: SketchMetric,
}

/// Value partitioning of the output.
#[derive(Clone, Debug)]
pub struct ValuePartition {
    pub column: usize,
    pub function: PartitionFunction,
    pub num_partitions: u32,
}

/// Everything the pipeline needs, validated.
#[derive(Clone, Debug)]
pub struct Plan {
    pub table: TableSchema,
    /// The destination table's Arrow schema (what segments hold).
    pub table_arrow: SchemaRef,
    /// Table columns plus hidden columns (what flows through the pipeline).
    pub internal: SchemaRef,
    pub time: TimeColumn,
    pub window: Option<TimeWindow>,
    pub predicate: Option<Predicate>,
    pub erase: Vec<usize>,
    /// Metrics derived from raw columns, before those are erased.
    pub derive: Vec<DerivedMetric>,
    pub round_ms: Option<i64>,
    pub time_partition_ms: Option<i64>,
    pub tpart_index: Option<usize>,
    pub value_partition: Option<ValuePartition>,
    pub vpart_index: Option<usize>,
    pub merge: MergeType,
    /// Rollup aggregations, one per metric column.
    pub metrics: Vec<MetricAgg>,
    /// Internal columns the stream is sorted by (empty: no sort needed).
    pub sort_keys: Vec<usize>,
    pub max_records: u64,
    pub desired_bytes: Option<u64>,
}

fn bad(msg: String) -> WorkerError {
    WorkerError::BadSpec(msg)
}

impl Plan {
    /// # Errors
    /// [`WorkerError::BadSpec`] naming the field for unknown columns, non-numeric aggregated
    /// metrics or non-positive periods; [`WorkerError::BadPredicate`] for the purge predicate.
    pub fn new(spec: &SubtaskSpec) -> Result<Plan> {
        let table = spec.destination.schema.clone();
        let p = &spec.processing;
        let table_arrow = arrow_schema(&table);
        let time = TimeColumn::new(&table, &table_arrow)?;
        let index = |what: &str, name: &str| {
            table_arrow
                .index_of(name)
                .map_err(|_| bad(format!("{what}: {name:?} is not a column of the schema")))
        };
        for (what, v) in [
            ("processing.roundBucketMs", p.round_bucket_ms),
            ("processing.timePartitionMs", p.time_partition_ms),
        ] {
            if let Some(v) = v
                && v <= 0
            {
                return Err(bad(format!("{what} must be positive, got {v}")));
            }
        }
        if p.max_records_per_segment == 0 {
            return Err(bad(
                "processing.maxRecordsPerSegment must be positive".into()
            ));
        }
        let erase = p
            .erase_dimension_values
            .iter()
            .map(|n| index("processing.eraseDimensionValues", n))
            .collect::<Result<Vec<_>>>()?;
        for name in &table.bloom_filter_columns {
            index("schema.bloomFilterColumns", name)?;
        }
        let predicate = match &p.purge_predicate {
            Some(text) if !text.trim().is_empty() => Some(Predicate::parse(text, &table_arrow)?),
            _ => None,
        };

        let mut fields: Vec<Field> = table_arrow
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut hidden = |name: String, dt: DataType| {
            fields.push(Field::new(format!("{HIDDEN_PREFIX}{name}"), dt, true));
            fields.len() - 1
        };
        let tpart_index = p
            .time_partition_ms
            .map(|_| hidden("tpart".into(), DataType::Int64));
        let value_partition = if p.value_partitioning {
            let part = table.partitioning.as_ref().ok_or_else(|| {
                bad("processing.valuePartitioning is set but the schema has no partitioning".into())
            })?;
            if part.num_partitions == 0 {
                return Err(bad(
                    "schema.partitioning.numPartitions must be positive".into()
                ));
            }
            Some(ValuePartition {
                column: index("schema.partitioning.column", &part.column)?,
                function: part.function,
                num_partitions: part.num_partitions,
            })
        } else {
            None
        };
        let vpart_index = value_partition
            .as_ref()
            .map(|_| hidden("vpart".into(), DataType::UInt32));

        let mut metrics = Vec::new();
        let mut derive = Vec::new();
        if p.merge_type == MergeType::Rollup {
            for name in p.aggregation_types.keys() {
                let c = table.column(name).ok_or_else(|| {
                    bad(format!(
                        "processing.aggregationTypes: {name:?} is not a column"
                    ))
                })?;
                if c.role != ColumnRole::Metric {
                    return Err(bad(format!(
                        "processing.aggregationTypes: {name:?} is not a metric column"
                    )));
                }
            }
            for (i, c) in table.columns.iter().enumerate() {
                if c.role != ColumnRole::Metric {
                    continue;
                }
                let agg = p
                    .aggregation_types
                    .get(&c.name)
                    .copied()
                    .unwrap_or_default();
                let fits = match c.data_type {
                    ColumnType::Int | ColumnType::Long | ColumnType::Float | ColumnType::Double => {
                        !agg.is_bytes()
                    }
                    ColumnType::Bytes => agg.is_bytes(),
                    _ => false,
                };
                if !fits {
                    return Err(bad(format!(
                        "metric {:?} of type {:?} cannot be aggregated with {}",
                        c.name,
                        c.data_type,
                        agg.name()
                    )));
                }
                let params = p
                    .aggregation_parameters
                    .get(&c.name)
                    .copied()
                    .unwrap_or_default();
                let sketch = Sketch::resolve(agg, &params)
                    .map_err(|e| bad(format!("processing.aggregationParameters.{}: {e}", c.name)))?
                    .map(|sketch| SketchMetric {
                        name: c.name.clone(),
                        sketch,
                    });
                let time_index = matches!(
                    agg,
                    AggregationType::FirstWithTime | AggregationType::LastWithTime
                )
                .then(|| hidden(format!("t_{}", c.name), DataType::Int64));
                metrics.push(MetricAgg {
                    index: i,
                    agg,
                    time_index,
                    sketch,
                });
            }
            for (name, from) in &p.derive_metrics {
                let m = metrics
                    .iter()
                    .find(|m| table.columns[m.index].name == *name)
                    .and_then(|m| m.sketch.clone().map(|s| (m.index, s)));
                let Some((target, sketch)) = m else {
                    return Err(bad(format!(
                        "processing.deriveMetrics.{name}: not a metric with a sketch or avg aggregation"
                    )));
                };
                let source = index("processing.deriveMetrics", from)?;
                let numeric = matches!(
                    table.columns[source].data_type,
                    ColumnType::Int | ColumnType::Long | ColumnType::Float | ColumnType::Double
                );
                if !sketch.sketch.counts_distinct() && !numeric {
                    return Err(bad(format!(
                        "processing.deriveMetrics.{name}: {from:?} is not numeric"
                    )));
                }
                derive.push(DerivedMetric {
                    index: target,
                    source,
                    sketch,
                });
            }
        } else if !p.derive_metrics.is_empty() {
            return Err(bad(
                "processing.deriveMetrics needs mergeType rollup".to_string()
            ));
        }

        let mut sort_keys: Vec<usize> = tpart_index.into_iter().chain(vpart_index).collect();
        let sorted = match &table.sorted_column {
            Some(name) => Some(index("schema.sortedColumn", name)?),
            None => None,
        };
        match p.merge_type {
            MergeType::Concat => {
                if p.sort {
                    sort_keys.extend(sorted);
                }
            }
            MergeType::Dedup => {
                sort_keys.extend(sorted);
                sort_keys.extend((0..table_arrow.fields().len()).filter(|i| Some(*i) != sorted));
            }
            MergeType::Rollup => {
                let non_metric = |i: &usize| table.columns[*i].role != ColumnRole::Metric;
                sort_keys
                    .extend((0..table.columns.len()).filter(|i| non_metric(i) && *i != time.index));
                sort_keys.push(time.index);
            }
        }
        Ok(Plan {
            table,
            table_arrow,
            internal: Arc::new(Schema::new(fields)),
            time,
            window: spec.window,
            predicate,
            erase,
            derive,
            round_ms: p.round_bucket_ms,
            time_partition_ms: p.time_partition_ms,
            tpart_index,
            value_partition,
            vpart_index,
            merge: p.merge_type,
            metrics,
            sort_keys,
            max_records: p.max_records_per_segment,
            desired_bytes: p.desired_segment_size_bytes,
        })
    }

    /// Whether rows are reduced (dedup or rollup) after sorting.
    pub fn reduces(&self) -> bool {
        self.merge != MergeType::Concat
    }

    /// Erased columns nothing reads before they are erased (nullable ones: they read as
    /// nulls, which is what erasing makes of them). A predicate, a derived metric, the time
    /// column and the value partition column are read.
    pub fn unread_columns(&self) -> Vec<String> {
        if self.predicate.is_some() {
            return Vec::new();
        }
        let partition = self.value_partition.as_ref().map(|v| v.column);
        self.erase
            .iter()
            .copied()
            .filter(|&i| self.table_arrow.field(i).is_nullable())
            .filter(|&i| i != self.time.index && Some(i) != partition)
            .filter(|&i| self.derive.iter().all(|d| d.source != i))
            .map(|i| self.table_arrow.field(i).name().clone())
            .collect()
    }

    /// Number of table (non-hidden) columns.
    pub fn table_width(&self) -> usize {
        self.table_arrow.fields().len()
    }
}
