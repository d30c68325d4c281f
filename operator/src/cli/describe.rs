//! `minion describe <kind> <name>`: one resource laid out like `kubectl describe` — metadata,
//! spec summary, status, conditions, subtasks (TaskRun), lineage (Table), Events.

use std::fmt::Write as _;

use chrono::Utc;

use super::get::print_objects;
use super::table_fmt::{age, opt, render, time, time_ms};
use super::target::Target;
use super::{CliError, Kind, Output, found};
use crate::api::{Condition, MinionTaskConfig, Table, TaskRun};
use crate::control::Event;
use crate::control::created_at;
use crate::local::Stored;

/// Ends the label of a [`field`] line until [`align`] pads it.
const SEP: char = '\u{1f}';
/// Spaces after the longest label of a block, as `kubectl describe` (its tabwriter's padding).
const PADDING: usize = 2;

/// A `Label: value` line; [`align`] lines the values of consecutive fields up.
fn field(out: &mut String, indent: usize, label: &str, value: impl std::fmt::Display) {
    let value = value.to_string().replace(SEP, " ");
    let _ = writeln!(out, "{}{label}:{SEP}{value}", " ".repeat(indent));
}

/// Lays out the fields of `text` as `kubectl describe` does: in each block of consecutive
/// field lines, every value starts [`PADDING`] columns after the block's longest label
/// (indentation included); any other line ends a block.
fn align(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].contains(SEP) {
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
            continue;
        }
        let end = (i..lines.len())
            .find(|&j| !lines[j].contains(SEP))
            .unwrap_or(lines.len());
        let cells: Vec<(&str, &str)> = lines[i..end]
            .iter()
            .map(|l| l.split_once(SEP).expect("a field line"))
            .collect();
        let width = cells
            .iter()
            .map(|(label, _)| label.chars().count())
            .max()
            .unwrap_or(0)
            + PADDING;
        for (label, value) in cells {
            let pad = width - label.chars().count();
            let line = format!("{label}{}{value}", " ".repeat(pad));
            out.push_str(line.trim_end());
            out.push('\n');
        }
        i = end;
    }
    out
}

fn section(out: &mut String, title: &str, body: &str) {
    let _ = writeln!(out, "{title}:");
    if body.trim().is_empty() {
        let _ = writeln!(out, "  <none>");
    } else {
        for line in body.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
}

fn conditions(out: &mut String, cs: &[Condition]) {
    let rows: Vec<Vec<String>> = cs
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.as_str().into(),
                c.reason.clone(),
                time(Some(c.last_transition_time)),
                c.message.clone(),
            ]
        })
        .collect();
    let body = if rows.is_empty() {
        String::new()
    } else {
        render(
            &["TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"],
            &rows,
        )
    };
    section(out, "Conditions", &body);
}

fn header<T: Stored>(out: &mut String, obj: &T) {
    let m = obj.meta();
    field(out, 0, "Name", m.name.clone().unwrap_or_default());
    field(out, 0, "Namespace", crate::control::namespace_of(m));
    field(out, 0, "Kind", T::KIND);
    field(out, 0, "API Version", crate::api::API_VERSION);
    field(out, 0, "Created", time(created_at(m)));
    field(out, 0, "Generation", opt(m.generation));
}

fn events(out: &mut String, events: &[Event]) {
    let now = Utc::now();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                format!("{:?}", e.type_),
                e.reason.clone(),
                age(Some(e.time), now),
                e.message.clone(),
            ]
        })
        .collect();
    let body = if rows.is_empty() {
        String::new()
    } else {
        render(&["TYPE", "REASON", "AGE", "MESSAGE"], &rows)
    };
    section(out, "Events", &body);
}

fn or_config(value: &str) -> &str {
    if value.is_empty() {
        "<from its config>"
    } else {
        value
    }
}

/// `minion describe`.
pub(crate) async fn describe(
    target: &Target,
    kind: &str,
    namespace: &str,
    name: &str,
    output: Option<Output>,
) -> Result<(), CliError> {
    let b = target.backend(Some(namespace));
    let mut out = String::new();
    match Kind::parse(kind)? {
        Kind::Table => {
            let t: Table = found(b.get_table(namespace, name).await, namespace, name)?;
            if let Some(o) = output {
                return print_objects(&[t], true, o);
            }
            header(&mut out, &t);
            let _ = writeln!(out, "Spec:");
            field(
                &mut out,
                2,
                "Type",
                format!("{:?}", t.spec.table_type).to_uppercase(),
            );
            field(&mut out, 2, "URI", &t.spec.uri);
            field(&mut out, 2, "Time Column", &t.spec.schema.time_column);
            let cols: Vec<String> = t
                .spec
                .schema
                .columns
                .iter()
                .map(|c| format!("{} ({:?}, {:?})", c.name, c.data_type, c.role))
                .collect();
            field(&mut out, 2, "Columns", cols.join(", "));
            let s = t.status.clone().unwrap_or_default();
            let _ = writeln!(out, "Status:");
            field(&mut out, 2, "Segments", opt(s.segments));
            field(&mut out, 2, "Rows", opt(s.rows));
            field(&mut out, 2, "Bytes", opt(s.bytes));
            field(&mut out, 2, "Min Time", time(s.min_time));
            field(&mut out, 2, "Max Time", time(s.max_time));
            field(&mut out, 2, "Catalog Version", opt(s.catalog_version));
            field(&mut out, 2, "Lineage Ended", s.lineage_ended_total);
            conditions(&mut out, &s.conditions);
            let rows: Vec<Vec<String>> = s
                .lineage
                .iter()
                .map(|e| {
                    vec![
                        e.id.clone(),
                        e.state.as_str().into(),
                        e.segments_from_len().to_string(),
                        e.segments_to_len().to_string(),
                        time_ms(Some(e.timestamp_ms)),
                        e.message.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let body = if rows.is_empty() {
                String::new()
            } else {
                render(&["ID", "STATE", "FROM", "TO", "TIME", "MESSAGE"], &rows)
            };
            section(&mut out, "Lineage", &body);
            events(&mut out, &target.events("Table", namespace, name).await?);
        }
        Kind::TaskConfig => {
            let c: MinionTaskConfig =
                found(b.get_task_config(namespace, name).await, namespace, name)?;
            if let Some(o) = output {
                return print_objects(&[c], true, o);
            }
            header(&mut out, &c);
            let _ = writeln!(out, "Spec:");
            field(&mut out, 2, "Task Type", c.spec.task_type);
            field(&mut out, 2, "Table", &c.spec.table);
            field(
                &mut out,
                2,
                "Source Table",
                opt(c.spec.source_table.clone()),
            );
            field(&mut out, 2, "Schedule", opt(c.spec.schedule.clone()));
            field(
                &mut out,
                2,
                "Time Zone",
                c.spec.time_zone.clone().unwrap_or_else(|| "UTC".into()),
            );
            field(&mut out, 2, "Suspend", c.spec.suspend);
            let s = c.status.clone().unwrap_or_default();
            let _ = writeln!(out, "Status:");
            field(&mut out, 2, "Last Schedule", time(s.last_schedule_time));
            let next: Vec<String> = s
                .next_schedule_times
                .iter()
                .map(|t| time(Some(*t)))
                .collect();
            field(
                &mut out,
                2,
                "Next Schedules",
                if next.is_empty() {
                    "<none>".into()
                } else {
                    next.join(", ")
                },
            );
            field(&mut out, 2, "Last Run", opt(s.last_run.clone()));
            field(
                &mut out,
                2,
                "Last Result",
                s.last_result.map_or("<none>", |r| r.as_str()),
            );
            if let Some(m) = s.last_result_message.as_ref().filter(|m| !m.is_empty()) {
                field(&mut out, 2, "Last Message", m);
            }
            field(
                &mut out,
                2,
                "Active Runs",
                if s.active_runs.is_empty() {
                    "<none>".into()
                } else {
                    s.active_runs.join(", ")
                },
            );
            for w in &s.watermarks {
                let label = format!("Watermark {}", w.level.as_deref().unwrap_or(""))
                    .trim_end()
                    .to_string();
                field(&mut out, 2, &label, time(Some(w.watermark)));
            }
            for d in &s.delays {
                let label = format!("Delay {}", d.level.as_deref().unwrap_or(""))
                    .trim_end()
                    .to_string();
                field(&mut out, 2, &label, format!("{} bucket(s)", d.buckets));
            }
            conditions(&mut out, &s.conditions);
            events(
                &mut out,
                &target.events("MinionTaskConfig", namespace, name).await?,
            );
        }
        Kind::TaskRun => {
            let r: TaskRun = found(b.get_task_run(namespace, name).await, namespace, name)?;
            if let Some(o) = output {
                return print_objects(&[r], true, o);
            }
            header(&mut out, &r);
            let _ = writeln!(out, "Spec:");
            field(
                &mut out,
                2,
                "Task Type",
                r.task_type()
                    .map_or("<from its config>".to_string(), |t| t.to_string()),
            );
            field(&mut out, 2, "Table", or_config(r.table()));
            field(&mut out, 2, "Config Ref", opt(r.spec.config_ref.clone()));
            field(&mut out, 2, "Scheduled Time", time(r.spec.scheduled_time));
            let s = r.status.clone().unwrap_or_default();
            let _ = writeln!(out, "Status:");
            field(&mut out, 2, "Phase", s.phase.as_str());
            field(&mut out, 2, "Reason", opt(s.reason.clone()));
            field(&mut out, 2, "Message", opt(s.message.clone()));
            field(&mut out, 2, "Progress", opt(s.progress.clone()));
            field(&mut out, 2, "Start Time", time(s.start_time));
            field(&mut out, 2, "Completion Time", time(s.completion_time));
            field(&mut out, 2, "Watermark Before", time_ms(s.watermark_before));
            field(&mut out, 2, "Watermark After", time_ms(s.watermark_after));
            conditions(&mut out, &s.conditions);
            // The validity subtask (kind validity) ran before the numbered ones.
            let validity = s.validity.iter().map(|v| {
                vec![
                    "validity".to_string(),
                    v.state.as_str().into(),
                    v.attempts.to_string(),
                    v.job.clone().unwrap_or_else(|| "-".into()),
                    "-".into(),
                    v.segments.to_string(),
                    "0".into(),
                    v.rows.to_string(),
                    "0".into(),
                    [v.reason.as_deref(), v.message.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                        + &if v.state == crate::api::SubtaskState::Succeeded {
                            format!(
                                "{} invalid rows, {} bytes spilled",
                                v.invalid_rows, v.spilled_bytes
                            )
                        } else {
                            String::new()
                        },
                ]
            });
            let rows: Vec<Vec<String>> = validity
                .chain(s.subtasks.iter().map(|t| {
                    let plan = s.plan.iter().find(|p| p.subtask == t.index);
                    let window = plan
                        .filter(|p| p.window_start_ms.is_some())
                        .map(|p| {
                            format!(
                                "[{}, {})",
                                time_ms(p.window_start_ms),
                                time_ms(p.window_end_ms)
                            )
                        })
                        .unwrap_or_else(|| "-".into());
                    vec![
                        t.index.to_string(),
                        t.state.as_str().into(),
                        t.attempts.to_string(),
                        t.job.clone().unwrap_or_else(|| "-".into()),
                        window,
                        t.inputs.to_string(),
                        t.outputs.to_string(),
                        t.input_rows.to_string(),
                        t.output_rows.to_string(),
                        [t.reason.as_deref(), t.message.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(": "),
                    ]
                }))
                .collect();
            let body = if rows.is_empty() {
                String::new()
            } else {
                render(
                    &[
                        "#", "STATE", "ATTEMPTS", "JOB", "WINDOW", "INPUTS", "OUTPUTS", "ROWS IN",
                        "ROWS OUT", "MESSAGE",
                    ],
                    &rows,
                )
            };
            section(&mut out, "Subtasks", &body);
            if !s.skipped_segments.is_empty() {
                let rows: Vec<Vec<String>> = s
                    .skipped_segments
                    .iter()
                    .map(|k| vec![k.subtask.to_string(), k.path.clone(), k.reason.clone()])
                    .collect();
                let mut body = render(&["SUBTASK", "SEGMENT", "REASON"], &rows);
                let more =
                    (s.skipped_segments_total as usize).saturating_sub(s.skipped_segments.len());
                if more > 0 {
                    let _ = writeln!(body, "… and {more} more");
                }
                section(
                    &mut out,
                    "Skipped Segments (unreadable, left in place)",
                    &body,
                );
            }
            events(&mut out, &target.events("TaskRun", namespace, name).await?);
        }
    }
    print!("{}", align(&out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_a_block_start_two_columns_after_its_longest_label() {
        let mut out = String::new();
        field(&mut out, 0, "Name", "r1");
        field(&mut out, 0, "Namespace", "default");
        let _ = writeln!(out, "Status:");
        field(&mut out, 2, "Phase", "Succeeded");
        field(&mut out, 2, "Completion Time", "2026-01-01T00:00:00Z");
        field(&mut out, 2, "Watermark Before", "2026-01-01T00:00:00Z");
        field(&mut out, 2, "Message", "");
        let _ = writeln!(out, "Conditions:");
        let _ = writeln!(out, "  <none>");
        assert_eq!(
            align(&out),
            "Name:       r1\n\
             Namespace:  default\n\
             Status:\n\
             \x20 Phase:             Succeeded\n\
             \x20 Completion Time:   2026-01-01T00:00:00Z\n\
             \x20 Watermark Before:  2026-01-01T00:00:00Z\n\
             \x20 Message:\n\
             Conditions:\n\
             \x20 <none>\n"
        );
    }

    #[test]
    fn a_label_longer_than_any_before_still_gets_its_padding() {
        let label = "A Label Much Longer Than The Old Fixed Column";
        let mut out = String::new();
        field(&mut out, 2, label, "v");
        field(&mut out, 2, "X", format!("tab{SEP}inside"));
        let aligned = align(&out);
        let lines: Vec<&str> = aligned.lines().collect();
        assert_eq!(lines[0], format!("  {label}:  v"));
        let column = lines[0].find('v').unwrap();
        assert_eq!(lines[1].find("tab"), Some(column), "{aligned}");
        assert!(lines[1].ends_with("tab inside"), "{aligned}");
    }
}
