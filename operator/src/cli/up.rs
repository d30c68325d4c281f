//! `minion local up`: the control loop over the local backend. Subtasks run as child
//! processes of this binary (`minion worker run`), in their own process group, so an
//! interrupted loop leaves them running and a restarted one picks them up again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::CliError;
use crate::control::{Clock, Controller, ControllerOptions, OffsetClock, SystemClock};
use crate::local::LocalBackend;

/// `minion local up`.
pub(crate) async fn up(
    state: &Path,
    until_idle: bool,
    now: Option<DateTime<Utc>>,
    max_steps: Option<u64>,
    poll_ms: u64,
) -> Result<(), CliError> {
    crate::catalog::install_crypto_provider();
    let program = std::env::current_exe().map_err(CliError::failed)?;
    let clock: Arc<dyn Clock> = match now {
        Some(t) => Arc::new(OffsetClock::starting_at(t)),
        None => Arc::new(SystemClock),
    };
    let state = std::path::absolute(state).map_err(CliError::failed)?;
    let backend = LocalBackend::new(
        &state,
        program,
        vec![
            "--state-dir".into(),
            state.display().to_string(),
            "worker".into(),
            "run".into(),
        ],
        clock.clone(),
    );
    let mut controller = Controller::new(
        Arc::new(backend),
        clock,
        ControllerOptions {
            max_steps,
            poll_interval: Duration::from_millis(poll_ms.max(10)),
        },
    );
    eprintln!("minion local up: state in {}", state.display());
    let run = controller.run(until_idle, |report| {
        for line in &report.log {
            println!("{line}");
        }
        for e in &report.errors {
            eprintln!("warning: {e}");
        }
    });
    tokio::select! {
        r = run => r.map_err(CliError::failed),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted; running workers continue and `minion local up` resumes them");
            Ok(())
        }
    }
}
