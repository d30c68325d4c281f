//! Cron schedules of `MinionTaskConfig`s: parsing and next fire times (pure).
//!
//! Two dialects, told apart by the number of fields:
//! - **Quartz** (6 or 7 fields, seconds first, optional year last), as Pinot users write it:
//!   `?`, `L`, `W`, `#`, day-of-week `1` = Sunday … `7` = Saturday, names `SUN`–`SAT`;
//! - **crontab** (5 fields, minute first): day-of-week `0` or `7` = Sunday.
//!
//! Macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly`
//! are accepted too. Fire times are computed in the schedule's IANA time zone (daylight-saving
//! gaps and repeats are handled by `croner`) and returned in UTC.
//!
//! Nothing here reads the clock: every query takes the instant to count from.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Upper bound on fire times computed by [`Schedule::next_n`] (status shows at most 5).
pub const MAX_NEXT_TIMES: usize = 100;

/// Why an expression or time zone was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{expression:?} has {fields} fields; use Quartz (6 or 7 fields, seconds first, e.g. \"0 0 */6 ? * *\") or crontab (5 fields, e.g. \"0 */6 * * *\")"
    )]
    FieldCount { expression: String, fields: usize },
    #[error(
        "{expression:?} is not a valid cron expression ({detail}); use Quartz (6 or 7 fields, seconds first, e.g. \"0 0 */6 ? * *\") or crontab (5 fields, e.g. \"0 */6 * * *\")"
    )]
    Expression { expression: String, detail: String },
    #[error(
        "{time_zone:?} is not an IANA time zone; use a name like UTC, Europe/Paris or America/New_York"
    )]
    TimeZone { time_zone: String },
}

impl ScheduleError {
    /// Stable reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            ScheduleError::FieldCount { .. } | ScheduleError::Expression { .. } => {
                "InvalidSchedule"
            }
            ScheduleError::TimeZone { .. } => "InvalidTimeZone",
        }
    }
}

/// Which syntax an expression was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// 6 or 7 fields, seconds first, day-of-week 1 = Sunday.
    Quartz,
    /// 5 fields (or a `@` macro), minute first, day-of-week 0/7 = Sunday.
    Crontab,
}

/// A parsed cron expression with its time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    expression: String,
    time_zone: Tz,
    dialect: Dialect,
    cron: Cron,
}

impl Schedule {
    /// Parses `expression` (Quartz or crontab, see the module docs) in the IANA `time_zone`.
    ///
    /// # Errors
    /// A wrong number of fields, a field croner or Quartz refuses (Quartz forbids restricting
    /// both day-of-month and day-of-week), or an unknown time zone.
    pub fn parse(expression: &str, time_zone: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_time_zone(time_zone)?;
        let trimmed = expression.trim();
        let invalid = |detail: String| ScheduleError::Expression {
            expression: expression.to_string(),
            detail,
        };
        let (dialect, normalized) = if let Some(name) = trimmed.strip_prefix('@') {
            let expanded = match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    return Err(invalid(format!(
                        "unknown macro @{name}; use @yearly, @monthly, @weekly, @daily or @hourly"
                    )));
                }
            };
            (Dialect::Crontab, expanded.to_string())
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            match fields.len() {
                5 => (Dialect::Crontab, fields.join(" ")),
                6 | 7 => {
                    check_quartz_days(fields[3], fields[5]).map_err(invalid)?;
                    let mut fields = fields;
                    // Quartz: `L` alone in day-of-week means its last day, Saturday.
                    if fields[5].eq_ignore_ascii_case("L") {
                        fields[5] = "7";
                    }
                    (Dialect::Quartz, fields.join(" "))
                }
                n => {
                    return Err(ScheduleError::FieldCount {
                        expression: expression.to_string(),
                        fields: n,
                    });
                }
            }
        };
        let parser = match dialect {
            Dialect::Quartz => CronParser::builder()
                .seconds(Seconds::Required)
                .alternative_weekdays(true)
                .sloppy_ranges(true)
                .build(),
            Dialect::Crontab => CronParser::builder()
                .seconds(Seconds::Optional)
                .sloppy_ranges(true)
                .build(),
        };
        let cron = parser.parse(&normalized).map_err(|e| {
            let mut detail = e.to_string();
            if dialect == Dialect::Quartz && detail.contains("input offset") {
                detail.push_str("; Quartz day-of-week is 1-7 (1 = SUN) or SUN-SAT");
            }
            invalid(detail)
        })?;
        Ok(Schedule {
            expression: trimmed.to_string(),
            time_zone: tz,
            dialect,
            cron,
        })
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The first fire time strictly after `after`, or `None` if there is none (e.g. a year
    /// field entirely in the past).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.time_zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Up to `n` (capped at [`MAX_NEXT_TIMES`]) fire times strictly after `after`, ascending.
    pub fn next_n(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n.min(MAX_NEXT_TIMES));
        let mut cursor = after;
        while out.len() < n.min(MAX_NEXT_TIMES) {
            match self.next_after(cursor) {
                Some(t) => {
                    out.push(t);
                    cursor = t;
                }
                None => break,
            }
        }
        out
    }

    /// The latest fire time at or before `at` (the most recent missed time for the
    /// missed-run policy), or `None` if there is none.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.time_zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expression, self.time_zone)
    }
}

/// Parses an IANA time zone name (`UTC`, `Europe/Paris`, …).
///
/// # Errors
/// [`ScheduleError::TimeZone`] naming the value.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name.trim()).map_err(|_| ScheduleError::TimeZone {
        time_zone: name.to_string(),
    })
}

/// Quartz refuses expressions restricting both day-of-month and day-of-week; one of them must
/// be `?` (we also accept `*`, which means the same there).
fn check_quartz_days(day_of_month: &str, day_of_week: &str) -> Result<(), String> {
    let open = |f: &str| f == "?" || f == "*";
    if !open(day_of_month) && !open(day_of_week) {
        return Err(format!(
            "day-of-month {day_of_month:?} and day-of-week {day_of_week:?} are both set; Quartz needs '?' in one of them"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Timelike, Weekday};

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, after: &str) -> DateTime<Utc> {
        Schedule::parse(expr, "UTC")
            .unwrap()
            .next_after(utc(after))
            .unwrap()
    }

    #[test]
    fn quartz_day_of_week_two_is_monday() {
        // 2024-01-03 is a Wednesday.
        let t = next("0 0 12 ? * 2", "2024-01-03T00:00:00Z");
        assert_eq!(t, utc("2024-01-08T12:00:00Z"));
        assert_eq!(t.weekday(), Weekday::Mon);
    }

    #[test]
    fn quartz_day_of_week_one_and_sun_are_sunday() {
        let a = next("0 0 12 ? * 1", "2024-01-03T00:00:00Z");
        let b = next("0 0 12 ? * SUN", "2024-01-03T00:00:00Z");
        assert_eq!(a, utc("2024-01-07T12:00:00Z"));
        assert_eq!(a, b);
    }

    #[test]
    fn quartz_last_day_of_month() {
        assert_eq!(
            next("0 0 12 L * ?", "2024-02-01T00:00:00Z"),
            utc("2024-02-29T12:00:00Z")
        );
    }

    #[test]
    fn quartz_third_friday() {
        // Quartz 6 = Friday; the third Friday of January 2024 is the 19th.
        let t = next("0 0 12 ? * 6#3", "2024-01-01T00:00:00Z");
        assert_eq!(t, utc("2024-01-19T12:00:00Z"));
    }

    #[test]
    fn quartz_weekday_names_range() {
        // Saturday 2024-01-06 → next is Monday 10:15.
        let s = Schedule::parse("0 15 10 ? * MON-FRI", "UTC").unwrap();
        let times = s.next_n(utc("2024-01-05T11:00:00Z"), 6);
        assert_eq!(times[0], utc("2024-01-08T10:15:00Z"));
        assert!(
            times
                .iter()
                .all(|t| !matches!(t.weekday(), Weekday::Sat | Weekday::Sun))
        );
        assert_eq!(times.len(), 6);
    }

    #[test]
    fn quartz_last_weekday_of_month_and_last_friday() {
        // `6L` = last Friday; `L` alone in day-of-week = Saturday.
        assert_eq!(
            next("0 0 12 ? * 6L", "2024-01-01T00:00:00Z"),
            utc("2024-01-26T12:00:00Z")
        );
        assert_eq!(
            next("0 0 12 ? * L", "2024-01-01T00:00:00Z"),
            utc("2024-01-06T12:00:00Z")
        );
    }

    #[test]
    fn quartz_day_of_week_zero_is_refused_with_the_numbering() {
        let err = Schedule::parse("0 0 12 ? * 0", "UTC").unwrap_err();
        assert!(err.to_string().contains("1 = SUN"), "{err}");
    }

    #[test]
    fn quartz_nearest_weekday_w() {
        // 2024-06-15 is a Saturday: 15W fires on Friday the 14th.
        assert_eq!(
            next("0 0 9 15W * ?", "2024-06-01T00:00:00Z"),
            utc("2024-06-14T09:00:00Z")
        );
    }

    #[test]
    fn quartz_slash_steps_from_a_start_value() {
        let s = Schedule::parse("0 0/15 * * * ?", "UTC").unwrap();
        assert_eq!(
            s.next_n(utc("2024-01-01T00:01:00Z"), 2),
            vec![utc("2024-01-01T00:15:00Z"), utc("2024-01-01T00:30:00Z")]
        );
    }

    #[test]
    fn quartz_seconds_field_is_honoured() {
        assert_eq!(
            next("30 * * * * ?", "2024-01-01T00:00:00Z"),
            utc("2024-01-01T00:00:30Z")
        );
    }

    #[test]
    fn quartz_year_field_in_the_past_has_no_next_time() {
        let s = Schedule::parse("0 0 0 1 1 ? 2020", "UTC").unwrap();
        assert_eq!(s.next_after(utc("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn quartz_refuses_both_day_fields() {
        let err = Schedule::parse("0 0 12 1 * MON", "UTC").unwrap_err();
        assert_eq!(err.reason(), "InvalidSchedule");
        assert!(err.to_string().contains("'?'"), "{err}");
    }

    #[test]
    fn crontab_day_of_week_zero_and_seven_are_sunday() {
        let a = next("0 12 * * 0", "2024-01-03T00:00:00Z");
        let b = next("0 12 * * 7", "2024-01-03T00:00:00Z");
        assert_eq!(a, utc("2024-01-07T12:00:00Z"));
        assert_eq!(a, b);
        assert_eq!(
            Schedule::parse("0 12 * * 1", "UTC").unwrap().dialect(),
            Dialect::Crontab
        );
        assert_eq!(
            next("0 12 * * 1", "2024-01-03T00:00:00Z").weekday(),
            Weekday::Mon
        );
    }

    #[test]
    fn macros_expand_to_crontab() {
        assert_eq!(
            next("@hourly", "2024-01-01T00:30:00Z"),
            utc("2024-01-01T01:00:00Z")
        );
        assert_eq!(
            next("@daily", "2024-01-01T00:30:00Z"),
            utc("2024-01-02T00:00:00Z")
        );
        assert!(Schedule::parse("@sometimes", "UTC").is_err());
    }

    #[test]
    fn wrong_field_count_is_refused_with_examples() {
        let err = Schedule::parse("* * * *", "UTC").unwrap_err();
        assert!(matches!(err, ScheduleError::FieldCount { fields: 4, .. }));
        assert!(err.to_string().contains("crontab"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(Schedule::parse("0 61 * * * ?", "UTC").is_err());
        assert!(Schedule::parse("0 0 25 * * ?", "UTC").is_err());
        assert!(Schedule::parse("0 0 12 ? * 8", "UTC").is_err());
        assert!(Schedule::parse("0 0 12 ? * X", "UTC").is_err());
    }

    #[test]
    fn fire_times_follow_the_time_zone_across_daylight_saving() {
        // Noon in Paris: 11:00Z in winter, 10:00Z in summer (DST starts 2024-03-31).
        let s = Schedule::parse("0 0 12 * * ?", "Europe/Paris").unwrap();
        let times = s.next_n(utc("2024-03-30T00:00:00Z"), 2);
        assert_eq!(
            times,
            vec![utc("2024-03-30T11:00:00Z"), utc("2024-03-31T10:00:00Z")]
        );
        let local = times[1].with_timezone(&chrono_tz::Europe::Paris);
        assert_eq!((local.hour(), local.minute()), (12, 0));
    }

    #[test]
    fn fire_time_in_a_daylight_saving_gap_is_not_lost() {
        // 02:30 does not exist in Paris on 2024-03-31; the run still happens that day.
        let s = Schedule::parse("0 30 2 * * ?", "Europe/Paris").unwrap();
        let t = s.next_after(utc("2024-03-30T12:00:00Z")).unwrap();
        assert_eq!(
            t.with_timezone(&chrono_tz::Europe::Paris).date_naive(),
            chrono::NaiveDate::from_ymd_opt(2024, 3, 31).unwrap()
        );
    }

    #[test]
    fn unknown_time_zone_is_refused() {
        let err = Schedule::parse("0 0 * * * ?", "Mars/Olympus").unwrap_err();
        assert_eq!(err.reason(), "InvalidTimeZone");
        assert!(err.to_string().contains("Mars/Olympus"));
    }

    #[test]
    fn next_after_is_strict_and_last_at_or_before_is_inclusive() {
        let s = Schedule::parse("0 0 * * * ?", "UTC").unwrap();
        let on = utc("2024-01-01T05:00:00Z");
        assert_eq!(s.next_after(on), Some(utc("2024-01-01T06:00:00Z")));
        assert_eq!(s.last_at_or_before(on), Some(on));
        assert_eq!(s.last_at_or_before(utc("2024-01-01T05:59:59Z")), Some(on));
    }
}
