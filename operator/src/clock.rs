//! Wall-clock time, injected so tests (and `minion demo --now`) control it. Every reader of
//! the time goes through one [`Clock`]: the control loop, the catalog's commit timestamps and
//! leader election. Pure code takes the instant as an argument instead.

use chrono::{DateTime, Utc};

/// Wall-clock time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// [`Clock::now`] in epoch milliseconds.
    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock shifted so that it read `at` when created (time still passes).
#[derive(Clone, Copy, Debug)]
pub struct OffsetClock {
    offset: chrono::Duration,
}

impl OffsetClock {
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        OffsetClock {
            offset: at - Utc::now(),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_clock_starts_at_the_given_instant_and_keeps_running() {
        let at = DateTime::parse_from_rfc3339("2024-01-15T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = OffsetClock::starting_at(at);
        let first = clock.now();
        assert!((first - at).num_seconds().abs() < 5, "{first} vs {at}");
        assert!(clock.now() >= first);
        assert_eq!(
            clock.now_ms() / 100_000,
            clock.now().timestamp_millis() / 100_000
        );
    }
}
