//! `skipCorruptSegments`: a segment that cannot be read is left out of the subtask and
//! reported, the other inputs are processed, and the row ledger counts only their rows —
//! whether the damage is in the footer (found before any row is read) or in a page (found
//! mid-stream: the read starts again without the segment and leaves no partial output).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use common::*;
use minion_contract::*;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};

const T0: i64 = 1_700_006_400_000;

/// `n` rows named `<tag>-<i>`.
fn rows_of(tag: &str, n: i64) -> RecordBatch {
    batch(
        &events_schema(),
        vec![
            arc(StringArray::from_iter_values(
                (0..n).map(|i| format!("{tag}-{i}")),
            )),
            arc(StringArray::from_iter_values(
                (0..n).map(|i| format!("e{}", i % 3)),
            )),
            arc(Int64Array::from_iter_values((0..n).map(|i| T0 + i))),
            arc(Int64Array::from_iter_values((0..n).map(|i| i + 1))),
        ],
    )
}

/// Writes `b` as a segment of row groups of `group` rows.
fn write_groups(dir: &Path, rel: &str, b: &RecordBatch, group: usize) -> SegmentRef {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        b.schema(),
        Some(props),
    )
    .unwrap();
    w.write(b).unwrap();
    w.close().unwrap();
    let mut seg = write_segment(dir, "scratch/x.parquet", std::slice::from_ref(b));
    seg.path = rel.into();
    seg.bytes = std::fs::metadata(&path).unwrap().len();
    seg
}

fn sorted_rows(b: &RecordBatch) -> Vec<Vec<String>> {
    let mut r = rows(b);
    r.sort();
    r
}

/// Parquet files under the attempt's staging prefix.
fn staged_files(dir: &Path, spec: &SubtaskSpec) -> BTreeSet<String> {
    let root = dir.join(&spec.output.staging_prefix);
    let mut out = BTreeSet::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel);
            }
        }
    }
    out
}

#[tokio::test]
async fn a_truncated_segment_is_skipped_up_front_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_segment(dir.path(), "in/a.parquet", &[rows_of("a", 50)]);
    let b = write_segment(dir.path(), "in/b.parquet", &[rows_of("b", 70)]);
    let c = write_segment(dir.path(), "in/c.parquet", &[rows_of("c", 30)]);
    // `b` loses its second half (its footer); the catalog still says its full size.
    let path = dir.path().join("in/b.parquet");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let mut p = processing(MergeType::Concat);
    let s = spec(
        dir.path(),
        events_schema(),
        vec![a.clone(), b.clone(), c.clone()],
        p.clone(),
    );
    // Without the flag the subtask fails on it.
    let e = run(&s).await.unwrap_err();
    assert_eq!(e.reason(), FailureReason::CorruptSegment, "{e}");

    p.skip_corrupt_segments = true;
    let s = spec(dir.path(), events_schema(), vec![a, b, c], p);
    let m = run(&s).await.unwrap();
    assert_eq!(m.skipped_segments.len(), 1, "{:?}", m.skipped_segments);
    assert_eq!(m.skipped_segments[0].path, "in/b.parquet");
    // What is wrong: the footer reaches past the end of the file.
    let reason = &m.skipped_segments[0].reason;
    assert!(
        reason.contains("truncated or corrupt") || reason.contains("EOF"),
        "{reason}"
    );
    let out = read_all(dir.path(), &m, &events_schema());
    let mut want = rows(&rows_of("a", 50));
    want.extend(rows(&rows_of("c", 30)));
    want.sort();
    assert_eq!(sorted_rows(&out), want);
    let ledger = m.ledger.unwrap();
    assert_eq!(ledger.source_rows, 80);
    assert_eq!(ledger.skipped_segments, 1);
    assert_eq!(m.input_rows, 80);
    // The corrupt file is left as it was.
    assert_eq!(std::fs::read(&path).unwrap(), &bytes[..bytes.len() / 2]);
}

#[tokio::test]
async fn a_bad_page_restarts_the_read_without_the_segment_and_leaves_no_partial_output() {
    bad_page(false).await;
}

#[tokio::test]
async fn a_bad_page_found_while_sorting_restarts_the_read_without_the_segment() {
    bad_page(true).await;
}

/// Inputs `a`, `b` (a bad page in its second row group) and `c`, read with `skip` set
/// (`sort`: through the external sort, else written as read).
async fn bad_page(sort: bool) {
    let dir = tempfile::tempdir().unwrap();
    let a = write_segment(dir.path(), "in/a.parquet", &[rows_of("a", 40)]);
    // `b` has a readable footer and first row group; its second row group's first page
    // header is overwritten, so the damage is found only while rows are streaming.
    let b = write_groups(dir.path(), "in/b.parquet", &rows_of("b", 60), 20);
    let path = dir.path().join("in/b.parquet");
    let meta = SerializedFileReader::new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .metadata()
        .clone();
    assert_eq!(meta.num_row_groups(), 3);
    let (start, _) = meta.row_group(1).column(0).byte_range();
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in &mut bytes[start as usize..start as usize + 16] {
        *byte = 0xFF;
    }
    std::fs::write(&path, &bytes).unwrap();
    let c = write_segment(dir.path(), "in/c.parquet", &[rows_of("c", 30)]);

    // Unsorted concat with tiny outputs: segments are written while inputs are still read,
    // so the first pass has staged outputs holding rows of `b` when the bad page is found.
    // Sorted, the bad page is found while the sorter takes its input.
    let mut p = processing(MergeType::Concat);
    p.sort = sort;
    p.max_records_per_segment = 10;
    let s = spec(
        dir.path(),
        events_schema(),
        vec![a.clone(), b.clone(), c.clone()],
        p.clone(),
    );
    let e = run(&s).await.unwrap_err();
    assert_eq!(e.reason(), FailureReason::CorruptSegment, "{e}");

    p.skip_corrupt_segments = true;
    let mut s = spec(dir.path(), events_schema(), vec![a, b, c], p);
    s.attempt = 2;
    s.output.staging_prefix = staging_prefix("run-1", 0, 2);
    let m = run(&s).await.unwrap();
    assert_eq!(
        m.skipped_segments
            .iter()
            .map(|k| k.path.as_str())
            .collect::<Vec<_>>(),
        vec!["in/b.parquet"]
    );
    let out = read_all(dir.path(), &m, &events_schema());
    let mut want = rows(&rows_of("a", 40));
    want.extend(rows(&rows_of("c", 30)));
    want.sort();
    assert_eq!(sorted_rows(&out), want, "no row of the skipped segment");
    let ledger = m.ledger.unwrap();
    assert_eq!((ledger.source_rows, ledger.skipped_segments), (70, 1));
    // Only the outputs the manifest lists are staged: the first pass's are gone.
    let listed: BTreeSet<String> = m.outputs.iter().map(|o| o.path.clone()).collect();
    assert_eq!(staged_files(dir.path(), &s), listed);
}

#[tokio::test]
async fn when_every_input_is_unreadable_nothing_is_written_and_all_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for name in ["a", "b"] {
        let rel = format!("in/{name}.parquet");
        let seg = write_segment(dir.path(), &rel, &[rows_of(name, 20)]);
        std::fs::write(dir.path().join(&rel), b"not parquet").unwrap();
        inputs.push(seg);
    }
    for merge in [MergeType::Concat, MergeType::Rollup, MergeType::Dedup] {
        let mut p = processing(merge);
        p.skip_corrupt_segments = true;
        let m = run(&spec(dir.path(), events_schema(), inputs.clone(), p))
            .await
            .unwrap();
        assert!(m.outputs.is_empty(), "{merge:?}: {:?}", m.outputs);
        assert_eq!(m.skipped_segments.len(), 2, "{merge:?}");
        let ledger = m.ledger.unwrap();
        assert_eq!((ledger.source_rows, ledger.skipped_segments), (0, 2));
    }
}
