//! Schedules of `MinionTaskConfig`s (pure: nothing here reads the clock or touches the API).
//!
//! - [`cron`]: parsing Quartz and crontab expressions and their next fire times in a time zone;
//! - [`due`]: which fire times are due at `now`, the missed-run policy, suspension, and the
//!   deterministic names of the TaskRuns a schedule creates.

pub mod cron;
pub mod due;

pub use cron::{Dialect, MAX_NEXT_TIMES, Schedule, ScheduleError, parse_time_zone};
pub use due::{
    MAX_DUE_ENUMERATED, MAX_NAME_LEN, ON_TIME_GRACE_MS, ScheduleDecision, ScheduleState, decide,
    manual_task_run_name, retry_task_run_name, task_run_name,
};
