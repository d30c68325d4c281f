//! A run driven one step of the local control loop at a time (`minion local up --until-idle
//! --max-steps 1`, a process of its own: stopping after every step is a kill between any two
//! steps), with a check of the tables after every step, one running worker SIGKILLed once,
//! one worker held (SIGSTOP) until another worker of the run has finished, so subtasks end
//! out of order, and optionally: the first workers the run launches failing once (a transient
//! failure: their spill directory cannot be created); the loop dying right after each of its
//! Delta commits (every other write of that step undone).
//!
//! Workers are found through their job records in the state directory (`jobs/default/`:
//! pid, spec, run, subtask, attempt) and `/proc`; the signals are sent with `kill(1)`.
//!
//! Why one long file: the driver, its kill and fault injection, and the table check after
//! each step form one loop whose parts only make sense together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixtures::{Minion, workspace_binary};

/// What to do to a run besides stepping it.
#[derive(Clone, Debug)]
pub struct StepOptions {
    /// The run must end within this many steps.
    pub max_steps: usize,
    /// SIGKILL one running worker of the run, once (at the first step after which one runs;
    /// not one of a subtask that failed at launch, nor the one held stopped), where it was
    /// caught as its step launched it.
    pub kill_a_worker: bool,
    /// Run steps with `MINION_SPILL_DIR` naming a regular file until the run launched its
    /// first workers: they fail at once with `Internal` (transient), and are retried.
    pub fail_first_launch: bool,
    /// In a run of several subtasks, SIGSTOP the first worker seen running after the kill,
    /// and SIGCONT it once another worker of the run has finished successfully (or after
    /// `hold_steps` steps, or when a step waits for it): later subtasks finish before an
    /// earlier one, and two workers run at once.
    pub hold_a_worker: bool,
    /// Steps after which a held worker is released even if no other finished.
    pub hold_steps: usize,
    /// The local directory of the run's destination table: after every step that added a
    /// version to its Delta log, undo every other write of the step (the state directory,
    /// but for its job records, and the table's `_minion` directory, back to what they held
    /// before the step), as if the loop had died right after its Delta commit; the next
    /// step must replay the rest without committing again.
    pub crash_after_commit: Option<PathBuf>,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            max_steps: 400,
            kill_a_worker: true,
            fail_first_launch: false,
            hold_a_worker: true,
            hold_steps: 12,
            crash_after_commit: None,
        }
    }
}

/// A worker held stopped by the harness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub job: JobRef,
    /// The worker that finished while this one was held (`None`: released after
    /// `hold_steps` steps without one, or when the loop had nothing else to do).
    pub overtaken_by: Option<JobRef>,
    /// Steps it was held.
    pub steps: usize,
}

/// SIGCONTs a stopped worker when dropped (also when a check panics).
struct Stopped {
    pid: u32,
    /// Its spec URI: every signal first checks the pid still runs this worker (once it has
    /// ended, its pid may be another test's process, which must not be touched).
    spec_uri: String,
}

impl Stopped {
    /// Sends `signal` if the pid still runs this worker; whether it was sent.
    fn signal(&self, signal: &str) -> bool {
        alive(self.pid, &self.spec_uri)
            && Command::new("kill")
                .args([signal, &self.pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.signal("-CONT");
    }
}

/// A worker (job) of a run, as its record names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRef {
    pub job: String,
    pub subtask: u32,
    pub attempt: u32,
}

/// How a stepped run went.
#[derive(Debug)]
pub struct StepReport {
    pub run: String,
    pub phase: String,
    /// Steps taken.
    pub steps: usize,
    /// The worker SIGKILLed while it ran (before it reported).
    pub killed: Option<JobRef>,
    /// The workers launched while their spill directory could not be created.
    pub failed_at_launch: Vec<JobRef>,
    /// The worker held stopped while others ran.
    pub held: Option<Held>,
    /// Steps after whose Delta commit the loop "died" (see
    /// [`StepOptions::crash_after_commit`]).
    pub crashed_after_commit: Vec<usize>,
    /// The run as `minion get tr -o json` shows it at the end.
    pub tr: serde_json::Value,
}

impl StepReport {
    /// The subtasks' status entries (as far as the status details them).
    pub fn subtasks(&self) -> Vec<&serde_json::Value> {
        self.tr["status"]["subtasks"]
            .as_array()
            .map(|s| s.iter().collect())
            .unwrap_or_default()
    }

    /// Attempts of subtask `index` as the status shows them.
    pub fn attempts(&self, index: u32) -> u64 {
        self.subtasks()
            .iter()
            .find(|s| s["index"] == index)
            .and_then(|s| s["attempts"].as_u64())
            .unwrap_or(0)
    }
}

/// What the check sees after a step.
pub struct View<'a> {
    /// 0 before the first step.
    pub step: usize,
    pub run: &'a str,
    /// The run as `minion get tr -o json` shows it after this step.
    pub tr: &'a serde_json::Value,
}

impl View<'_> {
    pub fn phase(&self) -> &str {
        self.tr["status"]["phase"].as_str().unwrap_or("Pending")
    }
}

fn terminal(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed" | "TimedOut" | "Skipped")
}

/// A job's record in the local state directory (`jobs/<namespace>/<job>.json`).
#[derive(Debug)]
struct JobRecord {
    job: String,
    pid: u32,
    spec_uri: String,
    task_run: String,
    subtask: u32,
    attempt: u32,
}

fn job_records(state: &Path) -> Vec<JobRecord> {
    let dir = state.join("jobs/default");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(job) = name.strip_suffix(".json") else {
            continue;
        };
        if job.ends_with(".exit") {
            continue;
        }
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        out.push(JobRecord {
            job: job.to_string(),
            pid: v["pid"].as_u64().unwrap_or(0) as u32,
            spec_uri: v["specUri"].as_str().unwrap_or_default().to_string(),
            task_run: v["taskRun"].as_str().unwrap_or_default().to_string(),
            subtask: v["subtask"].as_u64().unwrap_or(0) as u32,
            attempt: v["attempt"].as_u64().unwrap_or(0) as u32,
        });
    }
    out.sort_by(|a, b| a.job.cmp(&b.job));
    out
}

/// The exit record of a job: its code (`None`: killed by a signal), if it has one.
fn exit_code(state: &Path, job: &str) -> Option<Option<i64>> {
    let bytes = std::fs::read(state.join(format!("jobs/default/{job}.exit.json"))).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(v["code"].as_i64())
}

/// Whether `pid` is a live (not zombie) process whose command line contains `needle`.
fn alive(pid: u32, needle: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X') | None) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(needle))
        .unwrap_or(false)
}

/// The live workers of `run`, not of a subtask in `spare`.
fn live_workers(state: &Path, run: &str, spare: &[u32]) -> Vec<JobRecord> {
    job_records(state)
        .into_iter()
        .filter(|r| {
            r.task_run == run
                && r.pid != 0
                && !spare.contains(&r.subtask)
                && exit_code(state, &r.job).is_none()
                && alive(r.pid, &r.spec_uri)
        })
        .collect()
}

/// SIGSTOPs a live worker of `run`, not of a subtask in `spare`.
fn stop_a_live_worker(state: &Path, run: &str, spare: &[u32]) -> Option<(JobRef, Stopped)> {
    let r = live_workers(state, run, spare).into_iter().next()?;
    let s = Stopped {
        pid: r.pid,
        spec_uri: r.spec_uri.clone(),
    };
    // A worker that reported before the signal is not held (dropping `s` resumes it).
    if !s.signal("-STOP") || exit_code(state, &r.job).is_some() {
        return None;
    }
    Some((
        JobRef {
            job: r.job,
            subtask: r.subtask,
            attempt: r.attempt,
        },
        s,
    ))
}

/// SIGKILLs a live worker of `run`, not of a subtask in `spare`; the job when one was killed
/// before it reported (it wrote no exit record, as a worker does when it ends).
fn kill_a_live_worker(state: &Path, run: &str, spare: &[u32]) -> Option<JobRef> {
    for r in live_workers(state, run, spare) {
        let _ = Command::new("kill")
            .args(["-KILL", &r.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(r.pid, &r.spec_uri) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // A worker that reported just before the signal is not a kill.
        if exit_code(state, &r.job).is_some() {
            continue;
        }
        return Some(JobRef {
            job: r.job,
            subtask: r.subtask,
            attempt: r.attempt,
        });
    }
    None
}

/// One step of the loop (`local up --until-idle --max-steps 1`), with `MINION_SPILL_DIR` set
/// to `spill_dir` when given. A step waits until the loop can take one; when it has not
/// ended after three seconds, `stopped` (a held worker the loop may be waiting for) is
/// released. With `catch` (a run and the subtasks to spare), the first live worker of the
/// run is SIGSTOPped as soon as it is seen (the step polls every millisecond), so even a
/// worker that would finish before the step returns can be held or killed while it runs.
///
/// The step runs under `nohup`, so its workers inherit SIGHUP ignored: when a step exits,
/// the process group of a worker it launched is orphaned, and the kernel sends an orphaned
/// group holding a stopped process SIGHUP (which would kill the caught worker) and SIGCONT
/// (which resumes it; it is stopped again here).
///
/// # Panics
/// The step fails.
fn one_step(
    cli: &Minion,
    spill_dir: Option<&Path>,
    stopped: &mut Option<Stopped>,
    catch: Option<(&str, &[u32])>,
) -> Option<(JobRef, Stopped)> {
    let mut cmd = Command::new("nohup");
    cmd.arg(workspace_binary("minion", "minion-cli"))
        .arg("--state-dir")
        .arg(&cli.state)
        .args([
            "local",
            "up",
            "--until-idle",
            "--max-steps",
            "1",
            "--poll-ms",
            "20",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(dir) = spill_dir {
        cmd.env("MINION_SPILL_DIR", dir);
    }
    let mut child = cmd.spawn().expect("minion starts");
    let patience = Duration::from_secs(3);
    let started = Instant::now();
    let mut caught = None;
    let look = |caught: &mut Option<(JobRef, Stopped)>| {
        if caught.is_none()
            && let Some((run, spare)) = catch
        {
            *caught = stop_a_live_worker(&cli.state, run, spare);
        }
    };
    while child.try_wait().expect("wait for the step").is_none() {
        look(&mut caught);
        if started.elapsed() > patience {
            *stopped = None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    look(&mut caught);
    // Stopped again after the kernel's SIGCONT to its orphaned group; one that reported
    // meanwhile is not caught.
    let caught = caught.and_then(|(job, s)| {
        s.signal("-STOP");
        exit_code(&cli.state, &job.job)
            .is_none()
            .then_some((job, s))
    });
    let out = child.wait_with_output().expect("the step ends");
    assert!(
        out.status.success(),
        "a step failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    caught
}

/// SIGKILLs a caught worker where it was caught (stopped, early in its life: a kill needs no
/// timing then); the job when it was killed before it reported (it wrote no exit record).
fn kill_caught(state: &Path, job: JobRef, stopped: Stopped) -> Option<JobRef> {
    let pid = stopped.pid;
    stopped.signal("-KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid, &stopped.spec_uri) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(stopped);
    // A worker that reported just before it was caught is not a kill.
    exit_code(state, &job.job).is_none().then_some(job)
}

/// The newest version in the Delta log of the table at `table` (-1: none).
fn delta_version(table: &Path) -> i64 {
    std::fs::read_dir(table.join("_delta_log"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")?
                .parse::<i64>()
                .ok()
        })
        .max()
        .unwrap_or(-1)
}

/// The files a step writes besides the Delta log, the data files and the workers' job
/// records: the state directory but `jobs/`, and the table's `_minion` directory.
fn writes_of_a_step(state: &Path, table: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for root in [state.to_path_buf(), table.join("_minion")] {
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = e.path();
                if path == state.join("jobs") {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    out.insert(path, bytes);
                }
            }
        }
    }
    out
}

/// Puts back what [`writes_of_a_step`] listed before a step: files the step created are
/// deleted, files it changed or deleted restored.
fn undo_writes(state: &Path, table: &Path, before: &BTreeMap<PathBuf, Vec<u8>>) {
    let after = writes_of_a_step(state, table);
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        std::fs::remove_file(path).unwrap();
    }
    for (path, bytes) in before {
        if after.get(path) != Some(bytes) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

/// The run `run` as `minion get tr -o json` shows it.
pub fn task_run(cli: &Minion, run: &str) -> serde_json::Value {
    serde_json::from_str(&cli.ok(&["get", "tr", run, "-o", "json"])).expect("TaskRun JSON")
}

/// Drives `run` to its end one step at a time, calling `check` before the first step and
/// after every step (after the worker kill of that step, if any), and returns how it went.
///
/// # Panics
/// A step fails, the run does not end within `options.max_steps`, or `check` panics.
pub async fn step_through(
    cli: &Minion,
    run: &str,
    options: &StepOptions,
    mut check: impl AsyncFnMut(View<'_>),
) -> StepReport {
    let tr = task_run(cli, run);
    check(View {
        step: 0,
        run,
        tr: &tr,
    })
    .await;
    // A regular file where the spill directory should be: `create_dir_all` fails.
    let blocked_spill: PathBuf = cli.state.with_file_name("spill-dir-is-a-file");
    let mut failing = options.fail_first_launch;
    if failing {
        std::fs::write(&blocked_spill, b"not a directory").unwrap();
    }
    let mut report = StepReport {
        run: run.to_string(),
        phase: String::new(),
        steps: 0,
        killed: None,
        failed_at_launch: Vec::new(),
        tr: serde_json::Value::Null,
        held: None,
        crashed_after_commit: Vec::new(),
    };
    let mut stopped: Option<Stopped> = None;
    // Jobs of the run that had ended when the worker was held.
    let mut ended_before_hold: Vec<String> = Vec::new();
    for step in 1..=options.max_steps {
        report.steps = step;
        if failing {
            let before: Vec<String> = job_records(&cli.state).into_iter().map(|r| r.job).collect();
            one_step(cli, Some(&blocked_spill), &mut stopped, None);
            let launched: Vec<JobRef> = job_records(&cli.state)
                .into_iter()
                .filter(|r| r.task_run == run && !before.contains(&r.job))
                .map(|r| JobRef {
                    job: r.job,
                    subtask: r.subtask,
                    attempt: r.attempt,
                })
                .collect();
            if !launched.is_empty() {
                report.failed_at_launch = launched;
                failing = false;
            }
        } else {
            let before = options
                .crash_after_commit
                .as_deref()
                .map(|table| (delta_version(table), writes_of_a_step(&cli.state, table)));
            // Spare the subtasks failed at launch and the one held now, so several are retried
            // or overtaken.
            let mut spare: Vec<u32> = report.failed_at_launch.iter().map(|j| j.subtask).collect();
            if let Some(held) = report.held.as_ref().filter(|_| stopped.is_some()) {
                spare.push(held.job.subtask);
            }
            // Hold only where another subtask can overtake the held one.
            let several = report.tr["status"]["subtasksTotal"]
                .as_u64()
                .is_some_and(|n| n > 1);
            let want_hold = options.hold_a_worker && several && report.held.is_none();
            let want_kill = options.kill_a_worker && report.killed.is_none();
            let caught = one_step(
                cli,
                None,
                &mut stopped,
                (want_hold || want_kill).then_some((run, &spare[..])),
            );
            if let (Some(table), Some((version, files))) =
                (options.crash_after_commit.as_deref(), before)
                && delta_version(table) > version
            {
                undo_writes(&cli.state, table, &files);
                report.crashed_after_commit.push(step);
            }
            if let Some(held) = report.held.as_mut().filter(|_| stopped.is_some()) {
                held.steps += 1;
                held.overtaken_by = job_records(&cli.state)
                    .into_iter()
                    .find(|r| {
                        r.task_run == run
                            && r.subtask != held.job.subtask
                            && !ended_before_hold.contains(&r.job)
                            && exit_code(&cli.state, &r.job) == Some(Some(0))
                    })
                    .map(|r| JobRef {
                        job: r.job,
                        subtask: r.subtask,
                        attempt: r.attempt,
                    });
                if held.overtaken_by.is_some() || held.steps >= options.hold_steps {
                    stopped = None;
                }
            }
            match caught {
                Some((job, s)) if want_kill => {
                    report.killed = kill_caught(&cli.state, job, s);
                }
                Some((job, s)) if want_hold => {
                    ended_before_hold = job_records(&cli.state)
                        .into_iter()
                        .filter(|r| exit_code(&cli.state, &r.job).is_some())
                        .map(|r| r.job)
                        .collect();
                    report.held = Some(Held {
                        job,
                        overtaken_by: None,
                        steps: 0,
                    });
                    stopped = Some(s);
                }
                None if want_kill => {
                    report.killed = kill_a_live_worker(&cli.state, run, &spare);
                }
                // Released (SIGCONT) as it is dropped.
                _ => {}
            }
        }
        let tr = task_run(cli, run);
        check(View { step, run, tr: &tr }).await;
        let phase = tr["status"]["phase"]
            .as_str()
            .unwrap_or("Pending")
            .to_string();
        report.phase = phase;
        report.tr = tr;
        if terminal(&report.phase) {
            break;
        }
    }
    drop(stopped);
    let _ = std::fs::remove_file(&blocked_spill);
    assert!(
        terminal(&report.phase),
        "{run} did not end in {} steps: {:#}",
        options.max_steps,
        report.tr
    );
    // The held worker was only paused: it finished by itself once let go.
    if let Some(held) = &report.held {
        let deadline = Instant::now() + Duration::from_secs(30);
        while exit_code(&cli.state, &held.job.job).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            exit_code(&cli.state, &held.job.job),
            Some(Some(0)),
            "{run}: the held worker {} did not finish by itself",
            held.job.job
        );
    }
    // Every worker launched into the fault failed as a transient failure, by itself.
    for j in &report.failed_at_launch {
        let bytes = std::fs::read(cli.state.join(format!("jobs/default/{}.exit.json", j.job)))
            .unwrap_or_else(|e| panic!("{}: no exit record: {e}", j.job));
        let exit: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            exit["code"],
            i64::from(minion_contract::EXIT_TRANSIENT),
            "{}: {exit}",
            j.job
        );
    }
    report
}
