use minion_contract::SegmentRef;
use minion_contract::segment::{TAG_SOURCE_FILE, TAG_SOURCE_FILE_VERSION};

use super::*;
use crate::generator::testkit::*;
use crate::generator::{GeneratorInput, plan};
use crate::model::TaskSpec;

fn ingestion(f: impl FnOnce(&mut FileIngestionConfig)) -> GeneratorInput {
    let mut c = file_ingestion();
    f(&mut c);
    input(TaskSpec::FileIngestion(c))
}

/// A segment ingested from `file` at `version`.
fn from_file(name: &str, file: &str, version: &str) -> SegmentRef {
    seg(name, T0, T0 + 1, 10)
        .tag(TAG_SOURCE_FILE, &format!("s3://in/events/{file}"))
        .tag(TAG_SOURCE_FILE_VERSION, version)
}

fn files_of(p: &Plan) -> Vec<Vec<String>> {
    p.subtasks
        .iter()
        .map(|s| {
            s.input_files
                .iter()
                .map(|f| f.uri.rsplit('/').next().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn rerun_after_success_ingests_nothing_new() {
    // Scenario 19, first half.
    let p = plan(
        &ingestion(|_| {})
            .files(vec![
                file("a.parquet", 10, "v1"),
                file("b.parquet", 10, "v1"),
            ])
            .dest_segments(vec![
                from_file("sa", "a.parquet", "v1"),
                from_file("sb", "b.parquet", "v1"),
            ]),
    )
    .unwrap();
    assert!(p.is_empty());
    assert_eq!(reason(&p), Some("NoNewFiles"));
}

#[test]
fn rerun_after_partial_failure_ingests_only_the_failed_files() {
    // Scenario 19, second half: b's subtask failed, so no segment carries b.
    let p = plan(
        &ingestion(|c| c.task_max_num_files = Some(1))
            .files(vec![
                file("a.parquet", 10, "v1"),
                file("b.parquet", 10, "v1"),
                file("c.parquet", 10, "v1"),
            ])
            .dest_segments(vec![
                from_file("sa", "a.parquet", "v1"),
                from_file("sc", "c.parquet", "v1"),
            ]),
    )
    .unwrap();
    assert_eq!(files_of(&p), vec![vec!["b.parquet"]]);
    assert_eq!(p.subtasks[0].input_files[0].version.as_deref(), Some("v1"));
}

#[test]
fn file_ingestion_modes_and_limits() {
    struct Case {
        name: &'static str,
        input: GeneratorInput,
        files: Vec<Vec<&'static str>>,
        deletes: Vec<Vec<&'static str>>,
        mode: CommitMode,
    }
    let changed = || vec![file("a.parquet", 10, "v2"), file("b.parquet", 10, "v1")];
    let old = || {
        vec![
            from_file("sa", "a.parquet", "v1"),
            from_file("sx", "gone.parquet", "v1"),
        ]
    };
    let cases = vec![
        Case {
            name: "append_mode_ignores_changed_files",
            input: ingestion(|_| {}).files(changed()).dest_segments(old()),
            files: vec![vec!["b.parquet"]],
            deletes: vec![vec![]],
            mode: CommitMode::PerSubtask,
        },
        Case {
            name: "sync_mode_reingests_changed_files_replacing_their_segments",
            input: ingestion(|c| c.mode = IngestionMode::Sync)
                .files(changed())
                .dest_segments(old()),
            files: vec![vec!["a.parquet", "b.parquet"]],
            deletes: vec![vec!["sa"]],
            mode: CommitMode::PerSubtask,
        },
        Case {
            name: "consistent_push_commits_all_or_none",
            input: ingestion(|c| {
                c.consistent_push_enabled = true;
                c.task_max_num_files = Some(1);
            })
            .files(changed()),
            files: vec![vec!["a.parquet"], vec!["b.parquet"]],
            deletes: vec![vec![], vec![]],
            mode: CommitMode::AllOrNone,
        },
        Case {
            name: "full_swap_replaces_every_live_segment_dropping_deleted_files",
            input: ingestion(|c| {
                c.consistent_push_swap_enabled = true;
                c.table_max_num_tasks = Some(1);
                c.task_max_num_files = Some(1);
            })
            .files(changed())
            .dest_segments(old()),
            files: vec![vec!["a.parquet"], vec!["b.parquet"]],
            deletes: vec![vec!["sa", "sx"], vec![]],
            mode: CommitMode::AllOrNone,
        },
        Case {
            name: "table_max_num_tasks_limits_subtasks_per_run",
            input: ingestion(|c| {
                c.table_max_num_tasks = Some(2);
                c.task_max_num_files = Some(1);
            })
            .files(vec![
                file("a", 1, "v"),
                file("b", 1, "v"),
                file("c", 1, "v"),
            ]),
            files: vec![vec!["a"], vec!["b"]],
            deletes: vec![vec![], vec![]],
            mode: CommitMode::PerSubtask,
        },
        Case {
            name: "task_max_data_size_closes_a_subtask_before_it_overflows",
            input: ingestion(|c| c.task_max_data_size_bytes = 100).files(vec![
                file("a", 60, "v"),
                file("b", 60, "v"),
                file("c", 200, "v"),
                file("d", 1, "v"),
            ]),
            files: vec![vec!["a"], vec!["b"], vec!["c"], vec!["d"]],
            deletes: vec![vec![], vec![], vec![], vec![]],
            mode: CommitMode::PerSubtask,
        },
        Case {
            name: "default_limits_put_all_pending_files_in_one_subtask",
            input: ingestion(|_| {}).files(vec![file("a", 60, "v"), file("b", 60, "v")]),
            files: vec![vec!["a", "b"]],
            deletes: vec![vec![]],
            mode: CommitMode::PerSubtask,
        },
        Case {
            name: "include_and_exclude_patterns_filter_files",
            input: ingestion(|c| {
                c.include_file_name_pattern = Some("glob:**/*.parquet".into());
                c.exclude_file_name_pattern = Some("**/tmp_*".into());
            })
            .files(vec![
                file("x/a.parquet", 1, "v"),
                file("x/tmp_b.parquet", 1, "v"),
                file("x/c.csv", 1, "v"),
            ]),
            files: vec![vec!["a.parquet"]],
            deletes: vec![vec![]],
            mode: CommitMode::PerSubtask,
        },
    ];
    for c in cases {
        let p = plan(&c.input).unwrap();
        assert_eq!(files_of(&p), c.files, "{}", c.name);
        assert_eq!(deletes_of(&p), c.deletes, "{}", c.name);
        assert_eq!(p.commit_mode, c.mode, "{}", c.name);
    }
}

#[test]
fn full_swap_with_nothing_changed_does_nothing() {
    let p = plan(
        &ingestion(|c| c.consistent_push_swap_enabled = true)
            .files(vec![file("a.parquet", 10, "v1")])
            .dest_segments(vec![from_file("sa", "a.parquet", "v1")]),
    )
    .unwrap();
    assert_eq!(reason(&p), Some("NoNewFiles"));
}

#[test]
fn full_swap_waits_while_a_segment_is_locked() {
    let p = plan(
        &ingestion(|c| c.consistent_push_swap_enabled = true)
            .files(vec![file("a.parquet", 10, "v2")])
            .dest_segments(vec![from_file("sa", "a.parquet", "v1")])
            .lock_dest(&["sa"]),
    )
    .unwrap();
    assert_eq!(reason(&p), Some("InputsLocked"));
}

#[test]
fn sync_mode_writes_one_segment_per_file() {
    let p =
        plan(&ingestion(|c| c.mode = IngestionMode::Sync).files(vec![file("a", 1, "v")])).unwrap();
    assert!(p.subtasks[0].output.segment_per_input_file);
}

/// A segment merged (by MergeRollup) from segments of `files` (`(file, version)`).
fn merged(name: &str, files: &[(&str, &str)]) -> SegmentRef {
    let map: std::collections::BTreeMap<String, String> = files
        .iter()
        .map(|(f, v)| {
            let uri = if *f == minion_contract::segment::UNTRACKED_SOURCE {
                f.to_string()
            } else {
                format!("s3://in/events/{f}")
            };
            (uri, v.to_string())
        })
        .collect();
    seg(name, T0, T0 + 1, 20).tag(
        minion_contract::segment::TAG_SOURCE_FILES,
        &serde_json::to_string(&map).unwrap(),
    )
}

#[test]
fn files_merged_by_another_task_stay_ingested() {
    let p = plan(
        &ingestion(|_| {})
            .files(vec![file("a", 10, "v1"), file("b", 10, "v1")])
            .dest_segments(vec![merged("m", &[("a", "v1"), ("b", "v1")])]),
    )
    .unwrap();
    assert_eq!(reason(&p), Some("NoNewFiles"), "no file is ingested twice");
}

#[test]
fn sync_mode_reingests_every_file_sharing_a_merged_segment_in_one_subtask() {
    let p = plan(
        &ingestion(|c| c.mode = IngestionMode::Sync)
            .files(vec![
                file("a", 10, "v2"),
                file("b", 10, "v1"),
                file("c", 10, "v1"),
                file("d", 10, "v1"),
            ])
            .dest_segments(vec![
                merged("m1", &[("a", "v1"), ("b", "v1")]),
                merged("m2", &[("b", "v1"), ("c", "v1")]),
                from_file("sd", "d", "v1"),
            ]),
    )
    .unwrap();
    // a changed; its segment m1 holds b's rows, and b's other segment m2 holds c's.
    assert_eq!(files_of(&p), vec![vec!["a", "b", "c"]]);
    let mut deleted: Vec<&str> = p.subtasks[0]
        .deletes
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    deleted.sort();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(deleted[0].contains("m1") && deleted[1].contains("m2"));
}

#[test]
fn sync_mode_leaves_a_merged_segment_it_could_not_rebuild() {
    for co_source in ["gone", minion_contract::segment::UNTRACKED_SOURCE] {
        let p = plan(
            &ingestion(|c| c.mode = IngestionMode::Sync)
                .files(vec![file("a", 10, "v2")])
                .dest_segments(vec![merged("m", &[("a", "v1"), (co_source, "v1")])]),
        )
        .unwrap();
        assert!(p.is_empty(), "{co_source}: {p:?}");
    }
}

#[test]
fn glob_matches_like_java_path_matchers() {
    assert!(glob_match("*.parquet", "a.parquet"));
    assert!(!glob_match("*.parquet", "x/a.parquet"));
    assert!(glob_match("**/*.parquet", "x/y/a.parquet"));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "a/c"));
}

/// A Delta source ("s3://in/events"): delta_source set, sync mode, one file per subtask.
fn delta(f: impl FnOnce(&mut FileIngestionConfig)) -> GeneratorInput {
    ingestion(|c| {
        c.delta_source = Some("s3://in/events".into());
        c.mode = IngestionMode::Sync;
        c.consistent_push_enabled = true;
        c.task_max_num_files = Some(1);
        f(c);
    })
}

fn deleted(p: &Plan) -> Vec<String> {
    let mut out: Vec<String> = p
        .subtasks
        .iter()
        .flat_map(|s| s.deletes.iter().map(|d| d.path.clone()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_delta_compaction_replaces_the_segments_of_the_files_it_removed_in_one_commit() {
    // Upstream, a and b were compacted into c: c is ingested, sa and sb go, all or none.
    let p = plan(
        &delta(|_| {})
            .files(vec![file("c.parquet", 30, "30")])
            .dest_segments(vec![
                from_file("sa", "a.parquet", "10"),
                from_file("sb", "b.parquet", "20"),
            ]),
    )
    .unwrap();
    assert_eq!(files_of(&p), vec![vec!["c.parquet".to_string()]]);
    assert_eq!(deleted(&p), vec!["data/sa.parquet", "data/sb.parquet"]);
    assert_eq!(p.commit_mode, CommitMode::AllOrNone);
    // Nothing new and nothing gone: nothing to do.
    let p = plan(
        &delta(|_| {})
            .files(vec![file("c.parquet", 30, "30")])
            .dest_segments(vec![from_file("sc", "c.parquet", "30")]),
    )
    .unwrap();
    assert_eq!(reason(&p), Some("NoNewFiles"));
}

#[test]
fn a_merged_segment_tying_a_removed_file_to_live_ones_is_rebuilt_from_the_live_files() {
    // sm holds rows of a (removed upstream) and b (live); b also has a segment of its own.
    let merged = seg("sm", T0, T0 + 1, 20).tag(
        minion_contract::segment::TAG_SOURCE_FILES,
        r#"{"s3://in/events/a.parquet":"10","s3://in/events/b.parquet":"20"}"#,
    );
    let p = plan(
        &delta(|_| {})
            .files(vec![file("b.parquet", 20, "20")])
            .dest_segments(vec![merged, from_file("sb", "b.parquet", "20")]),
    )
    .unwrap();
    // b is ingested again, and every segment holding a or b goes: no row lost or doubled.
    assert_eq!(files_of(&p), vec![vec!["b.parquet".to_string()]]);
    assert_eq!(deleted(&p), vec!["data/sb.parquet", "data/sm.parquet"]);
}

#[test]
fn files_pushed_from_elsewhere_are_not_the_delta_sources_to_remove() {
    let pushed = seg("sp", T0, T0 + 1, 5).tag(TAG_SOURCE_FILE, "file:///tmp/push/x.parquet");
    let p = plan(
        &delta(|_| {})
            .files(vec![file("c.parquet", 30, "30")])
            .dest_segments(vec![pushed, from_file("sc", "c.parquet", "30")]),
    )
    .unwrap();
    assert_eq!(reason(&p), Some("NoNewFiles"));
}
