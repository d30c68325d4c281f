//! `minion local up`: the control loop over the local backend. Subtasks run as child
//! processes of this binary (`minion worker run`), in their own process group, so an
//! interrupted loop leaves them running and a restarted one picks them up again. The loop
//! holds the state directory's lock ([`StateLock`]) while it runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::CliError;
use crate::clock::{Clock, OffsetClock, SystemClock};
use crate::control::{Controller, ControllerOptions};
use crate::local::{LocalBackend, StateLock};

/// `minion local up`.
pub(crate) async fn up(
    state: &Path,
    until_idle: bool,
    now: Option<DateTime<Utc>>,
    max_steps: Option<u64>,
    poll_ms: u64,
    watch: Vec<PathBuf>,
) -> Result<(), CliError> {
    crate::catalog::install_crypto_provider();
    let program = std::env::current_exe().map_err(CliError::failed)?;
    let clock: Arc<dyn Clock> = match now {
        Some(t) => Arc::new(OffsetClock::starting_at(t)),
        None => Arc::new(SystemClock),
    };
    let state = std::path::absolute(state).map_err(CliError::failed)?;
    // Held until the loop returns: a second loop on this directory is refused at once.
    let _lock = StateLock::acquire(&state).map_err(CliError::failed)?;
    let backend = LocalBackend::with_minion_workers(&state, program, clock.clone());
    let mut controller = Controller::new(
        Arc::new(backend),
        clock,
        ControllerOptions {
            max_steps,
            poll_interval: Duration::from_millis(poll_ms.max(10)),
            only_run: None,
            ..ControllerOptions::default()
        },
    );
    eprintln!("minion local up: state in {}", state.display());
    let mut manifests = WatchedManifests::new(watch);
    manifests.apply_if_changed(&state);
    let mut waiting = 0;
    let run = controller.run(until_idle, |report| {
        waiting = report.waiting_runs;
        manifests.apply_if_changed(&state);
        for line in &report.log {
            println!("{line}");
        }
        for e in &report.errors {
            eprintln!("warning: {e}");
        }
    });
    let done = tokio::select! {
        r = run => r.map_err(CliError::failed),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted; running workers continue and `minion local up` resumes them");
            return Ok(());
        }
    };
    if done.is_ok() && until_idle && waiting > 0 {
        eprintln!(
            "idle: {waiting} run(s) wait in Pending for a Table to become Ready (TableNotReady: see `minion get tr`)"
        );
    }
    done
}

/// Manifest files `local up -f` re-applies when they change.
struct WatchedManifests {
    paths: Vec<PathBuf>,
    /// (file, modification time, length) at the last apply attempt.
    seen: Vec<(PathBuf, Option<std::time::SystemTime>, u64)>,
}

impl WatchedManifests {
    fn new(paths: Vec<PathBuf>) -> Self {
        WatchedManifests {
            paths,
            seen: Vec::new(),
        }
    }

    fn fingerprint(&self) -> Vec<(PathBuf, Option<std::time::SystemTime>, u64)> {
        let files = super::apply::manifest_files(&self.paths, false).unwrap_or_default();
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).ok();
                let modified = meta.as_ref().and_then(|m| m.modified().ok());
                let len = meta.map_or(0, |m| m.len());
                (f, modified, len)
            })
            .collect()
    }

    /// Applies the manifests when any was added, removed or changed since the last attempt.
    /// A bad manifest is reported and changes nothing; it is not retried until it changes.
    fn apply_if_changed(&mut self, state: &Path) {
        if self.paths.is_empty() {
            return;
        }
        let now = self.fingerprint();
        if now == self.seen {
            return;
        }
        self.seen = now;
        if let Err(e) = super::apply::apply(state, &self.paths, false) {
            eprintln!("warning: manifests not applied (nothing changed): {e}");
        }
    }
}
