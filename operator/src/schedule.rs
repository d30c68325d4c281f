//! Cron schedules (placeholder until the schedule module lands).

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub expression: String,
}
