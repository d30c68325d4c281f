//! Subtask jobs as child processes: `<worker program> <args…> --spec <URI> --exit-file <F>`,
//! in their own process group (an interrupted `minion local up` does not kill them; a
//! restarted one finds them again).
//!
//! Per job, under `<state>/jobs/<namespace>/`: `<job>.json` (pid, spec URI, start time),
//! `<job>.log` (the worker's stdout and stderr) and `<job>.exit.json` (exit code and message,
//! written by the worker as it exits, or by this module when it reaps a child that could not
//! write it, e.g. one killed by a signal).
//!
//! States: an exit file says Succeeded (code 0) or Failed; a live process (checked through
//! `/proc`, with its command line naming the spec) is Running; a record whose process is gone
//! without an exit file is Failed (killed); no record is Missing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::LocalError;
use super::store::write_atomic;
use crate::control::{JobState, LaunchRequest};

/// What the worker (or the reaper) writes when a job ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// Process exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobRecord {
    pid: u32,
    spec_uri: String,
    task_run: String,
    subtask: u32,
    attempt: u32,
    started: DateTime<Utc>,
}

/// Writes an exit record (used by `minion worker run --exit-file`).
///
/// # Errors
/// The file cannot be written.
pub fn write_exit_record(path: &Path, record: &ExitRecord) -> Result<(), LocalError> {
    let json = serde_json::to_vec(record).map_err(|e| LocalError::parse(path, e))?;
    write_atomic(path, &json)
}

/// The local job runner.
pub struct Jobs {
    dir: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    children: Mutex<HashMap<String, Child>>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("dir", &self.dir)
            .field("program", &self.program)
            .finish()
    }
}

fn key(namespace: &str, job: &str) -> String {
    format!("{namespace}/{job}")
}

/// Whether process `pid` is alive (not a zombie) and its command line contains `needle`.
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

/// The last lines of a worker's log, for a failure message: `; last lines: …`, or nothing.
fn log_tail(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        String::new()
    } else {
        format!(
            "; last lines: {}",
            tail.chars().take(600).collect::<String>()
        )
    }
}

impl Jobs {
    /// Jobs under `<state>/jobs`, run as `program args… --spec URI --exit-file F`.
    pub fn new(state_dir: &Path, program: PathBuf, args: Vec<String>) -> Self {
        Jobs {
            dir: state_dir.join("jobs"),
            program,
            args,
            children: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, namespace: &str, job: &str, ext: &str) -> PathBuf {
        self.dir.join(namespace).join(format!("{job}.{ext}"))
    }

    /// The log file of a job.
    pub fn log_path(&self, namespace: &str, job: &str) -> PathBuf {
        self.path(namespace, job, "log")
    }

    /// Starts a job unless one of that name exists.
    ///
    /// # Errors
    /// The process cannot be started or its record written.
    pub fn launch(&self, req: &LaunchRequest) -> Result<(), LocalError> {
        let record_path = self.path(&req.namespace, &req.job, "json");
        if record_path.exists() {
            return Ok(());
        }
        let exit_path = self.path(&req.namespace, &req.job, "exit.json");
        let log_path = self.log_path(&req.namespace, &req.job);
        let dir = record_path.parent().expect("job files live in a directory");
        std::fs::create_dir_all(dir).map_err(|e| LocalError::io(dir, e))?;
        let log = std::fs::File::create(&log_path).map_err(|e| LocalError::io(&log_path, e))?;
        let log2 = log.try_clone().map_err(|e| LocalError::io(&log_path, e))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .arg("--spec")
            .arg(&req.spec_uri)
            .arg("--exit-file")
            .arg(&exit_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|e| LocalError::io(&self.program, e))?;
        let record = JobRecord {
            pid: child.id(),
            spec_uri: req.spec_uri.clone(),
            task_run: req.task_run.clone(),
            subtask: req.subtask,
            attempt: req.attempt,
            started: Utc::now(),
        };
        let json = serde_json::to_vec(&record).map_err(|e| LocalError::parse(&record_path, e))?;
        write_atomic(&record_path, &json)?;
        self.children
            .lock()
            .expect("job table lock")
            .insert(key(&req.namespace, &req.job), child);
        Ok(())
    }

    /// Reaps an own child that ended, writing its exit record if the worker could not.
    fn reap(&self, namespace: &str, job: &str) {
        let mut children = self.children.lock().expect("job table lock");
        let k = key(namespace, job);
        let Some(child) = children.get_mut(&k) else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            children.remove(&k);
            let exit_path = self.path(namespace, job, "exit.json");
            if !exit_path.exists() {
                let message = match status.code() {
                    Some(c) => format!("worker exited with code {c} without a report"),
                    None => format!("worker was killed ({status})"),
                };
                let _ = write_exit_record(
                    &exit_path,
                    &ExitRecord {
                        code: status.code(),
                        message,
                    },
                );
            }
        }
    }

    /// The state of a job.
    ///
    /// # Errors
    /// Its files exist but cannot be read.
    pub fn state(&self, namespace: &str, job: &str) -> Result<JobState, LocalError> {
        self.reap(namespace, job);
        let exit_path = self.path(namespace, job, "exit.json");
        // An own child that has not exited runs: its wait status is the truth, whatever
        // `/proc` shows meanwhile (once it exits, `reap` has its exit record written).
        let own_running = self
            .children
            .lock()
            .expect("job table lock")
            .contains_key(&key(namespace, job));
        if own_running && !exit_path.exists() {
            return Ok(JobState::Running);
        }
        if let Ok(bytes) = std::fs::read(&exit_path) {
            let exit: ExitRecord =
                serde_json::from_slice(&bytes).map_err(|e| LocalError::parse(&exit_path, e))?;
            return Ok(match exit.code {
                Some(0) => JobState::Succeeded {
                    at: std::fs::metadata(&exit_path)
                        .and_then(|m| m.modified())
                        .ok()
                        .map(DateTime::<Utc>::from),
                },
                code => JobState::Failed {
                    exit_code: code,
                    message: exit.message,
                },
            });
        }
        let record_path = self.path(namespace, job, "json");
        let Ok(bytes) = std::fs::read(&record_path) else {
            return Ok(JobState::Missing);
        };
        let record: JobRecord =
            serde_json::from_slice(&bytes).map_err(|e| LocalError::parse(&record_path, e))?;
        if alive(record.pid, &record.spec_uri) {
            return Ok(JobState::Running);
        }
        // The process may have written its exit file between the two checks; and a process
        // of another loop is only judged gone when a second look, a moment later, agrees.
        std::thread::sleep(std::time::Duration::from_millis(50));
        if exit_path.exists() || alive(record.pid, &record.spec_uri) {
            return self.state(namespace, job);
        }
        let log = self.log_path(namespace, job);
        Ok(JobState::Failed {
            exit_code: None,
            message: format!(
                "worker process {} ended without reporting (killed?); log: {}{}",
                record.pid,
                log.display(),
                log_tail(&log)
            ),
        })
    }

    /// Stops a job if it runs and removes its files (the log is kept for `describe`).
    ///
    /// # Errors
    /// Files that exist but cannot be removed.
    pub fn delete(&self, namespace: &str, job: &str) -> Result<(), LocalError> {
        let own = self
            .children
            .lock()
            .expect("job table lock")
            .remove(&key(namespace, job));
        let record_path = self.path(namespace, job, "json");
        match own {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {
                if let Ok(bytes) = std::fs::read(&record_path)
                    && let Ok(record) = serde_json::from_slice::<JobRecord>(&bytes)
                    && alive(record.pid, &record.spec_uri)
                {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(record.pid.to_string())
                        .status();
                }
            }
        }
        for path in [record_path, self.path(namespace, job, "exit.json")] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LocalError::io(&path, e)),
            }
        }
        Ok(())
    }

    /// The pid of a job's process, if it was started (tests kill it).
    pub fn pid(&self, namespace: &str, job: &str) -> Option<u32> {
        let bytes = std::fs::read(self.path(namespace, job, "json")).ok()?;
        serde_json::from_slice::<JobRecord>(&bytes)
            .ok()
            .map(|r| r.pid)
    }
}
