//! Property: rollup is associative — rolling up concatenated inputs equals rolling up the
//! rollups of the parts, for every aggregation, with and without time rounding, and whether
//! or not the sorter spills (which pre-reduces runs with the same reducer).

mod common;

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use common::*;
use minion_contract::*;
use minion_worker::plan::Plan;
use minion_worker::reduce::Reducer;
use minion_worker::sort::spill::SpillDir;
use minion_worker::sort::{ExternalSorter, SortConfig};
use minion_worker::stream::BatchTransform;
use minion_worker::transform::PrepareKeys;
use proptest::prelude::*;

const T0: i64 = 1_700_006_400_000;
const AGGS: [AggregationType; 6] = [
    AggregationType::Sum,
    AggregationType::Min,
    AggregationType::Max,
    AggregationType::Count,
    AggregationType::FirstWithTime,
    AggregationType::LastWithTime,
];

type Row = (Option<u8>, i64, Option<i64>, Option<i8>);

fn table_schema() -> TableSchema {
    schema(
        vec![
            dim("d", ColumnType::String),
            time("ts", ColumnType::Long),
            metric("m", ColumnType::Long),
            metric("f", ColumnType::Double),
        ],
        "ts",
        TimeUnit::Milliseconds,
    )
}

fn plan(m: AggregationType, f: AggregationType, round: bool) -> Arc<Plan> {
    let dir = std::env::temp_dir();
    let mut p = processing(MergeType::Rollup);
    p.aggregation_types.insert("m".into(), m);
    p.aggregation_types.insert("f".into(), f);
    p.round_bucket_ms = round.then_some(3_600_000);
    Arc::new(Plan::new(&spec(&dir, table_schema(), vec![], p)).unwrap())
}

fn to_batch(rows: &[Row]) -> RecordBatch {
    let names = ["a", "b", "c"];
    batch(
        &table_schema(),
        vec![
            arc(StringArray::from(
                rows.iter()
                    .map(|r| r.0.map(|d| names[d as usize % 3]))
                    .collect::<Vec<_>>(),
            )),
            arc(Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            arc(Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            arc(Float64Array::from(
                rows.iter().map(|r| r.3.map(f64::from)).collect::<Vec<_>>(),
            )),
        ],
    )
}

/// Sorts (spilling runs of `budget` bytes) and reduces internal batches.
fn rollup(plan: &Arc<Plan>, input: Vec<RecordBatch>, budget: usize) -> RecordBatch {
    rollup_with(plan, input, budget, false)
}

/// [`rollup`], the reducer either re-encoding keys or told the group boundaries by the
/// sorter (`grouped`, as the pipeline does).
fn rollup_with(
    plan: &Arc<Plan>,
    input: Vec<RecordBatch>,
    budget: usize,
    grouped: bool,
) -> RecordBatch {
    let dir = tempfile::tempdir().unwrap();
    let combiner_plan = plan.clone();
    let config = SortConfig {
        schema: plan.internal.clone(),
        keys: plan.sort_keys.clone(),
        options: vec![],
        budget_bytes: budget,
        batch_size: 7,
        spill: SpillDir::new(dir.path()),
        combiner: Some(Arc::new(move || {
            Ok(Box::new(Reducer::new(combiner_plan.clone())?) as Box<dyn BatchTransform>)
        })),
        distinct: false,
        on_duplicates: None,
        expected_rows: None,
        disk_budget_bytes: None,
        spilling_budget_bytes: None,
    };
    let mut sorter = ExternalSorter::new(config, Arc::default()).unwrap();
    for b in input {
        for chunk in (0..b.num_rows()).step_by(5) {
            sorter
                .push(b.slice(chunk, 5.min(b.num_rows() - chunk)))
                .unwrap();
        }
    }
    let mut reducer = Reducer::new(plan.clone()).unwrap();
    let mut out = Vec::new();
    if grouped {
        for r in sorter.finish_grouped().unwrap() {
            let (b, continues) = r.unwrap();
            out.extend(reducer.apply_grouped(b, &continues).unwrap());
        }
    } else {
        for b in sorter.finish().unwrap() {
            out.extend(reducer.apply(b.unwrap()).unwrap());
        }
    }
    out.extend(reducer.finish().unwrap());
    concat_batches(&plan.internal, &out).unwrap()
}

fn prepare(plan: &Arc<Plan>, rows: &[Row]) -> Vec<RecordBatch> {
    if rows.is_empty() {
        return vec![];
    }
    let mut prep = PrepareKeys { plan: plan.clone() };
    vec![prep.apply(to_batch(rows)).unwrap().unwrap()]
}

fn row_strategy() -> impl Strategy<Value = Row> {
    (
        proptest::option::weighted(0.8, 0u8..3),
        (0i64..12).prop_map(|k| T0 + k * 20 * 60_000),
        proptest::option::weighted(0.8, -5i64..20),
        proptest::option::weighted(0.8, -5i8..20),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rollup_of_concatenation_equals_rollup_of_rollups(
        parts in proptest::collection::vec(proptest::collection::vec(row_strategy(), 0..25), 1..4),
        m in 0usize..6,
        f in 0usize..6,
        round in any::<bool>(),
        spill in any::<bool>(),
    ) {
        let plan = plan(AGGS[m], AGGS[f], round);
        let budget = if spill { 20_000 } else { 1 << 30 };
        let all: Vec<Row> = parts.iter().flatten().cloned().collect();
        let whole = rollup(&plan, prepare(&plan, &all), budget);
        let partials: Vec<RecordBatch> =
            parts.iter().map(|p| rollup(&plan, prepare(&plan, p), 1 << 30)).collect();
        let twice = rollup(&plan, partials, budget);
        // Hidden columns (the original time of first/last values) are not output.
        let table = |b: &RecordBatch| rows(&b.project(&[0, 1, 2, 3]).unwrap());
        prop_assert_eq!(table(&whole), table(&twice));
        // Group boundaries reported by the sorter give the same rollup as re-encoded keys.
        let grouped = rollup_with(&plan, prepare(&plan, &all), budget, true);
        prop_assert_eq!(&whole, &grouped);
    }
}
