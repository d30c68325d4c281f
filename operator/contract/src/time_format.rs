//! How a time column's values map onto the time axis that windows, buckets, rounding and
//! watermarks are computed on, as Pinot's `dateTimeFieldSpecs` declare it.
//!
//! A format is written in either of Pinot's spellings:
//!
//! | kind | old spelling | new spelling |
//! |---|---|---|
//! | epoch | `5:MINUTES:EPOCH` | `EPOCH\|MINUTES\|5` |
//! | date string | `1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd tz(America/Los_Angeles)` | `SIMPLE_DATE_FORMAT\|yyyyMMdd\|America/Los_Angeles` |
//! | timestamp | `1:MILLISECONDS:TIMESTAMP` | `TIMESTAMP` |
//!
//! **The time axis.** Every value maps to a number of milliseconds, its *axis time*, and all
//! windows, buckets, rounding and watermarks are computed on that number:
//! - epoch values and TIMESTAMPs: epoch milliseconds (UTC);
//! - date strings: the wall-clock time the string spells, counted as if it were UTC. A
//!   `yyyyMMdd` value `20240101` is `2024-01-01T00:00Z` on the axis whatever its zone, so a day
//!   bucket is exactly one calendar day of the column, rounding never moves a value to another
//!   date, and a daylight-saving change never makes a bucket 23 or 25 hours long. The zone is
//!   read only to compare with the present: "now" on the axis is the zone's wall-clock time.
//!
//! Date patterns must sort in time order (fields from the year down, fixed width), so that a
//! file's min/max statistics of the strings are its earliest and latest times.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike};
use chrono_tz::Tz;

const NANOS_PER_MILLI: i128 = 1_000_000;
const MS_PER_DAY: i64 = 86_400_000;

/// Unit of an epoch time column (Pinot's, which are Java's `TimeUnit`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeUnit {
    Nanoseconds,
    Microseconds,
    #[default]
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl TimeUnit {
    pub const ALL: [TimeUnit; 7] = [
        TimeUnit::Nanoseconds,
        TimeUnit::Microseconds,
        TimeUnit::Milliseconds,
        TimeUnit::Seconds,
        TimeUnit::Minutes,
        TimeUnit::Hours,
        TimeUnit::Days,
    ];

    pub fn nanos(self) -> i128 {
        match self {
            TimeUnit::Nanoseconds => 1,
            TimeUnit::Microseconds => 1_000,
            TimeUnit::Milliseconds => 1_000_000,
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Minutes => 60_000_000_000,
            TimeUnit::Hours => 3_600_000_000_000,
            TimeUnit::Days => 86_400_000_000_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Nanoseconds => "NANOSECONDS",
            TimeUnit::Microseconds => "MICROSECONDS",
            TimeUnit::Milliseconds => "MILLISECONDS",
            TimeUnit::Seconds => "SECONDS",
            TimeUnit::Minutes => "MINUTES",
            TimeUnit::Hours => "HOURS",
            TimeUnit::Days => "DAYS",
        }
    }

    pub fn parse(s: &str) -> Option<TimeUnit> {
        TimeUnit::ALL.into_iter().find(|u| u.name() == s)
    }

    /// Converts a value in this unit to epoch milliseconds, rounding towards negative infinity.
    pub fn to_millis(self, value: i64) -> i64 {
        Scale::new(self, 1).to_millis(value)
    }

    /// The smallest value in this unit whose time is at or after `ms`.
    pub fn from_millis_ceil(self, ms: i64) -> i64 {
        Scale::new(self, 1).raw_ceil(ms)
    }

    /// The largest value in this unit whose time is at or before `ms`.
    pub fn from_millis_floor(self, ms: i64) -> i64 {
        Scale::new(self, 1).raw_floor(ms)
    }
}

/// `size` × `unit` per integer step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scale {
    nanos: i128,
}

impl Scale {
    fn new(unit: TimeUnit, size: u32) -> Scale {
        Scale {
            nanos: unit.nanos() * i128::from(size.max(1)),
        }
    }

    fn to_millis(self, value: i64) -> i64 {
        clamp((i128::from(value) * self.nanos).div_euclid(NANOS_PER_MILLI))
    }

    fn raw_floor(self, ms: i64) -> i64 {
        clamp((i128::from(ms) * NANOS_PER_MILLI).div_euclid(self.nanos))
    }

    fn raw_ceil(self, ms: i64) -> i64 {
        let n = i128::from(ms) * NANOS_PER_MILLI;
        clamp(n.div_euclid(self.nanos) + i128::from(n.rem_euclid(self.nanos) != 0))
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// How a time column's values are written. See the module documentation. Written back
/// (`Display`) in its new spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeFormat {
    /// Integers counting `size` × `unit` since the epoch.
    Epoch { unit: TimeUnit, size: u32 },
    /// A TIMESTAMP column: microseconds since the epoch, UTC.
    Timestamp,
    /// Strings (or, for an all-digit pattern, integers) in a date pattern.
    SimpleDate(DatePattern),
}

impl Default for TimeFormat {
    fn default() -> Self {
        TimeFormat::Epoch {
            unit: TimeUnit::Milliseconds,
            size: 1,
        }
    }
}

impl TimeFormat {
    /// Parses either of Pinot's spellings (see the module documentation).
    ///
    /// # Errors
    /// A sentence naming what is wrong and what is accepted.
    pub fn parse(s: &str) -> Result<TimeFormat, String> {
        let s = s.trim();
        if s.contains('|') || matches!(s, "EPOCH" | "TIMESTAMP" | "SIMPLE_DATE_FORMAT") {
            return parse_new(s);
        }
        parse_old(s)
    }

    /// The integer a raw value is read as: epoch values as they are, TIMESTAMPs in
    /// microseconds, date strings as their axis milliseconds.
    fn scale(&self) -> Option<Scale> {
        match self {
            TimeFormat::Epoch { unit, size } => Some(Scale::new(*unit, *size)),
            TimeFormat::Timestamp => Some(Scale::new(TimeUnit::Microseconds, 1)),
            TimeFormat::SimpleDate(_) => None,
        }
    }

    /// Axis milliseconds of a raw value, floored.
    pub fn to_millis(&self, raw: i64) -> i64 {
        self.scale().map_or(raw, |s| s.to_millis(raw))
    }

    /// The smallest raw value whose axis time is at or after `ms`.
    pub fn from_millis_ceil(&self, ms: i64) -> i64 {
        self.scale().map_or(ms, |s| s.raw_ceil(ms))
    }

    /// The largest raw value whose axis time is at or before `ms`.
    pub fn from_millis_floor(&self, ms: i64) -> i64 {
        self.scale().map_or(ms, |s| s.raw_floor(ms))
    }

    /// Axis milliseconds of a value stored as an integer (epoch value, TIMESTAMP microseconds,
    /// or an all-digit date such as `20240101`); `None` for a date that does not parse.
    pub fn integer_to_millis(&self, stored: i64) -> Option<i64> {
        match self {
            TimeFormat::SimpleDate(p) => p.parse_integer(stored).ok(),
            _ => Some(self.to_millis(stored)),
        }
    }

    /// Axis milliseconds of a value stored as a string (date patterns only).
    pub fn string_to_millis(&self, stored: &str) -> Option<i64> {
        self.date_pattern()?.parse(stored).ok()
    }

    /// The present (`utc_ms`, epoch milliseconds) on this format's axis: the wall-clock time
    /// of a date pattern's zone, the instant itself otherwise.
    pub fn axis_now(&self, utc_ms: i64) -> i64 {
        match self {
            TimeFormat::SimpleDate(p) => p.wall_clock_ms(utc_ms),
            _ => utc_ms,
        }
    }

    pub fn date_pattern(&self) -> Option<&DatePattern> {
        match self {
            TimeFormat::SimpleDate(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for TimeFormat {
    /// The new spelling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeFormat::Epoch { unit, size } => write!(f, "EPOCH|{}|{size}", unit.name()),
            TimeFormat::Timestamp => f.write_str("TIMESTAMP"),
            TimeFormat::SimpleDate(p) => match &p.zone {
                Some(z) => write!(f, "SIMPLE_DATE_FORMAT|{}|{}", p.pattern, z.name()),
                None => write!(f, "SIMPLE_DATE_FORMAT|{}", p.pattern),
            },
        }
    }
}

const ACCEPTED: &str = "accepted: EPOCH|<unit>|<size> (or <size>:<unit>:EPOCH), \
     SIMPLE_DATE_FORMAT|<pattern>|<zone> (or 1:DAYS:SIMPLE_DATE_FORMAT:<pattern> tz(<zone>)), \
     TIMESTAMP";

fn unit_of(s: &str) -> Result<TimeUnit, String> {
    TimeUnit::parse(s.trim()).ok_or_else(|| {
        let all: Vec<&str> = TimeUnit::ALL.iter().map(|u| u.name()).collect();
        format!(
            "unknown time unit {s:?}; expected one of {}",
            all.join(", ")
        )
    })
}

fn size_of(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("time size {s:?} is not a positive integer")),
    }
}

fn parse_new(s: &str) -> Result<TimeFormat, String> {
    let parts: Vec<&str> = s.split('|').collect();
    match parts.as_slice() {
        ["EPOCH"] => Ok(TimeFormat::default()),
        ["EPOCH", unit] => Ok(TimeFormat::Epoch {
            unit: unit_of(unit)?,
            size: 1,
        }),
        ["EPOCH", unit, size] => Ok(TimeFormat::Epoch {
            unit: unit_of(unit)?,
            size: size_of(size)?,
        }),
        ["TIMESTAMP"] => Ok(TimeFormat::Timestamp),
        ["SIMPLE_DATE_FORMAT", pattern] => {
            Ok(TimeFormat::SimpleDate(DatePattern::new(pattern, None)?))
        }
        ["SIMPLE_DATE_FORMAT", pattern, zone] => Ok(TimeFormat::SimpleDate(DatePattern::new(
            pattern,
            Some(zone),
        )?)),
        ["SIMPLE_DATE_FORMAT"] => Err("SIMPLE_DATE_FORMAT needs a pattern, as in \
                                        SIMPLE_DATE_FORMAT|yyyyMMdd"
            .into()),
        _ => Err(format!("time format {s:?} is not recognised; {ACCEPTED}")),
    }
}

fn parse_old(s: &str) -> Result<TimeFormat, String> {
    let parts: Vec<&str> = s.splitn(4, ':').collect();
    match parts.as_slice() {
        [size, unit, "EPOCH"] => Ok(TimeFormat::Epoch {
            unit: unit_of(unit)?,
            size: size_of(size)?,
        }),
        [size, unit, "TIMESTAMP"] => {
            size_of(size)?;
            unit_of(unit)?;
            Ok(TimeFormat::Timestamp)
        }
        [size, unit, "SIMPLE_DATE_FORMAT", pattern] => {
            // The size and unit are only a granularity hint in this spelling.
            size_of(size)?;
            unit_of(unit)?;
            let pattern = pattern.trim();
            match pattern
                .strip_suffix(')')
                .and_then(|p| p.rsplit_once(" tz("))
            {
                Some((pattern, zone)) => Ok(TimeFormat::SimpleDate(DatePattern::new(
                    pattern,
                    Some(zone),
                )?)),
                None => Ok(TimeFormat::SimpleDate(DatePattern::new(pattern, None)?)),
            }
        }
        [_, _, "SIMPLE_DATE_FORMAT"] => Err("SIMPLE_DATE_FORMAT needs a pattern, as in \
                                             1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd"
            .into()),
        _ => Err(format!("time format {s:?} is not recognised; {ACCEPTED}")),
    }
}

/// A field of a date pattern, from the most significant down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Milli,
}

impl Field {
    const ORDER: [(char, Field, usize); 7] = [
        ('y', Field::Year, 4),
        ('M', Field::Month, 2),
        ('d', Field::Day, 2),
        ('H', Field::Hour, 2),
        ('m', Field::Minute, 2),
        ('s', Field::Second, 2),
        ('S', Field::Milli, 3),
    ];

    fn width(self) -> usize {
        Field::ORDER[self as usize].2
    }

    fn letters(self) -> String {
        let (c, _, w) = Field::ORDER[self as usize];
        std::iter::repeat_n(c, w).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Field(Field),
    Literal(String),
}

/// A Java/Joda date pattern restricted to fixed-width fields from the year down (`yyyy`,
/// `MM`, `dd`, `HH`, `mm`, `ss`, `SSS`) and literal text (`-`, ` `, `'T'` …), so that the
/// strings sort in time order; with an optional IANA time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatePattern {
    pattern: String,
    pieces: Vec<Piece>,
    width: usize,
    zone: Option<Tz>,
}

impl DatePattern {
    /// # Errors
    /// A sentence naming the unsupported letter, the field out of order, or the unknown zone.
    pub fn new(pattern: &str, zone: Option<&str>) -> Result<DatePattern, String> {
        let pieces = pattern_pieces(pattern)?;
        let fields: Vec<Field> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Field(f) => Some(*f),
                Piece::Literal(_) => None,
            })
            .collect();
        let expected: Vec<Field> = Field::ORDER
            .iter()
            .map(|(_, f, _)| *f)
            .take(fields.len())
            .collect();
        if fields.is_empty() || fields != expected {
            let spelled: Vec<String> = fields.iter().map(|f| f.letters()).collect();
            return Err(format!(
                "date pattern {pattern:?} has the fields [{}]; a pattern must run from the year \
                 down without gaps (yyyy, MM, dd, HH, mm, ss, SSS), so that its strings sort in \
                 time order: for example yyyyMMdd or yyyy-MM-dd HH:mm:ss",
                spelled.join(", ")
            ));
        }
        let zone = match zone.map(str::trim) {
            None | Some("") => None,
            Some(z) => Some(z.parse::<Tz>().map_err(|_| {
                format!(
                    "unknown time zone {z:?} in date pattern {pattern:?}; use an IANA name such as \
                     UTC or America/Los_Angeles"
                )
            })?),
        };
        let width = pieces
            .iter()
            .map(|p| match p {
                Piece::Field(f) => f.width(),
                Piece::Literal(l) => l.len(),
            })
            .sum();
        Ok(DatePattern {
            pattern: pattern.to_string(),
            pieces,
            width,
            zone,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn zone(&self) -> Option<&str> {
        self.zone.as_ref().map(|z| z.name())
    }

    /// Whether the pattern is digits only, so an INT or LONG column can hold it.
    pub fn is_numeric(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Field(_)))
    }

    /// The zone's wall-clock time at `utc_ms`, counted as if it were UTC.
    pub fn wall_clock_ms(&self, utc_ms: i64) -> i64 {
        let Some(zone) = self.zone else {
            return utc_ms;
        };
        let Some(t) = DateTime::from_timestamp_millis(utc_ms) else {
            return utc_ms;
        };
        let offset = zone.offset_from_utc_datetime(&t.naive_utc()).fix();
        utc_ms + i64::from(offset.local_minus_utc()) * 1000
    }

    /// Axis milliseconds of a string in this pattern.
    ///
    /// # Errors
    /// A sentence naming the value and the pattern.
    pub fn parse(&self, value: &str) -> Result<i64, String> {
        let bad = |why: &str| {
            format!(
                "{value:?} does not match the pattern {:?}: {why}",
                self.pattern
            )
        };
        let bytes = value.as_bytes();
        if bytes.len() != self.width {
            return Err(bad(&format!(
                "expected {} characters, found {}",
                self.width,
                bytes.len()
            )));
        }
        let mut at = 0;
        let mut v = [1970i64, 1, 1, 0, 0, 0, 0];
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => {
                    if &bytes[at..at + l.len()] != l.as_bytes() {
                        return Err(bad(&format!("expected {l:?} at character {}", at + 1)));
                    }
                    at += l.len();
                }
                Piece::Field(f) => {
                    let digits = &bytes[at..at + f.width()];
                    let mut n = 0i64;
                    for &d in digits {
                        if !d.is_ascii_digit() {
                            return Err(bad(&format!("expected a digit at character {}", at + 1)));
                        }
                        n = n * 10 + i64::from(d - b'0');
                    }
                    v[*f as usize] = n;
                    at += f.width();
                }
            }
        }
        let date = NaiveDate::from_ymd_opt(v[0] as i32, v[1] as u32, v[2] as u32)
            .ok_or_else(|| bad("no such date"))?;
        if v[3] > 23 || v[4] > 59 || v[5] > 59 {
            return Err(bad("no such time of day"));
        }
        let days = i64::from(date.num_days_from_ce() - EPOCH_DAYS_FROM_CE);
        Ok(days * MS_PER_DAY + v[3] * 3_600_000 + v[4] * 60_000 + v[5] * 1_000 + v[6])
    }

    /// Axis milliseconds of an integer written in an all-digit pattern (`20240101`).
    ///
    /// # Errors
    /// As [`DatePattern::parse`].
    pub fn parse_integer(&self, value: i64) -> Result<i64, String> {
        if value < 0 {
            return Err(format!(
                "{value} does not match the pattern {:?}: negative",
                self.pattern
            ));
        }
        self.parse(&format!("{value:0width$}", width = self.width))
    }

    /// The string of axis time `ms`, truncated to the pattern's finest field; `None` for a
    /// year outside 0..=9999.
    pub fn format(&self, ms: i64) -> Option<String> {
        let t = DateTime::from_timestamp_millis(ms)?.naive_utc();
        if !(0..=9999).contains(&t.year()) {
            return None;
        }
        let v = [
            i64::from(t.year()),
            i64::from(t.month()),
            i64::from(t.day()),
            i64::from(t.hour()),
            i64::from(t.minute()),
            i64::from(t.second()),
            i64::from(t.and_utc().timestamp_subsec_millis()),
        ];
        let mut out = String::with_capacity(self.width);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Field(f) => {
                    out.push_str(&format!("{:0w$}", v[*f as usize], w = f.width()));
                }
            }
        }
        Some(out)
    }

    /// [`DatePattern::format`] as an integer (all-digit patterns).
    pub fn format_integer(&self, ms: i64) -> Option<i64> {
        self.format(ms)?.parse().ok()
    }
}

/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

fn pattern_pieces(pattern: &str) -> Result<Vec<Piece>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    let flush = |literal: &mut String, pieces: &mut Vec<Piece>| {
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(literal)));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // 'quoted text'; '' is a quote.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\'') {
                literal.push('\'');
                i += 2;
                continue;
            }
            loop {
                match chars.get(j) {
                    None => return Err(format!("date pattern {pattern:?} has an unclosed quote")),
                    Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                        literal.push('\'');
                        j += 2;
                    }
                    Some('\'') => break,
                    Some(&ch) => {
                        literal.push(ch);
                        j += 1;
                    }
                }
            }
            i = j + 1;
            continue;
        }
        if c.is_ascii_alphabetic() {
            let run = chars[i..].iter().take_while(|&&x| x == c).count();
            let Some((_, field, width)) = Field::ORDER.iter().find(|(l, _, _)| *l == c) else {
                return Err(format!(
                    "date pattern {pattern:?}: the letter {c:?} is not supported; supported \
                     fields are yyyy, MM, dd, HH, mm, ss and SSS (quote literal text as 'T')"
                ));
            };
            if run != *width {
                return Err(format!(
                    "date pattern {pattern:?}: {} must be written {} (fixed width, so strings \
                     sort in time order)",
                    std::iter::repeat_n(c, run).collect::<String>(),
                    field.letters()
                ));
            }
            flush(&mut literal, &mut pieces);
            pieces.push(Piece::Field(*field));
            i += run;
            continue;
        }
        literal.push(c);
        i += 1;
    }
    flush(&mut literal, &mut pieces);
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_parse_to_the_same_format() {
        for (old, new) in [
            ("5:MINUTES:EPOCH", "EPOCH|MINUTES|5"),
            ("1:HOURS:EPOCH", "EPOCH|HOURS|1"),
            ("1:MILLISECONDS:TIMESTAMP", "TIMESTAMP"),
            (
                "1:DAYS:SIMPLE_DATE_FORMAT:yyyyMMdd tz(America/Los_Angeles)",
                "SIMPLE_DATE_FORMAT|yyyyMMdd|America/Los_Angeles",
            ),
            (
                "1:SECONDS:SIMPLE_DATE_FORMAT:yyyy-MM-dd HH:mm:ss",
                "SIMPLE_DATE_FORMAT|yyyy-MM-dd HH:mm:ss",
            ),
        ] {
            let a = TimeFormat::parse(old).unwrap();
            let b = TimeFormat::parse(new).unwrap();
            assert_eq!(a, b, "{old} vs {new}");
            assert_eq!(TimeFormat::parse(&a.to_string()).unwrap(), a);
        }
        assert_eq!(
            TimeFormat::parse("EPOCH|DAYS").unwrap(),
            TimeFormat::Epoch {
                unit: TimeUnit::Days,
                size: 1
            }
        );
    }

    #[test]
    fn bad_formats_say_what_is_accepted() {
        for (s, says) in [
            ("7:WEEKS:EPOCH", "unknown time unit \"WEEKS\""),
            ("0:HOURS:EPOCH", "not a positive integer"),
            ("EPOCH|HOURS|x", "not a positive integer"),
            ("yyyyMMdd", "not recognised"),
            ("SIMPLE_DATE_FORMAT|MM/dd/yyyy", "run from the year down"),
            (
                "SIMPLE_DATE_FORMAT|yyyyMMdd|Mars/Olympus",
                "unknown time zone",
            ),
            ("SIMPLE_DATE_FORMAT|yyyy-M-d", "must be written MM"),
            ("SIMPLE_DATE_FORMAT|yyyy-MM-dd HH:mm:ss.SSSZ", "letter 'Z'"),
            ("SIMPLE_DATE_FORMAT|yyyyMMdd'T", "unclosed quote"),
        ] {
            let err = TimeFormat::parse(s).unwrap_err();
            assert!(err.contains(says), "{s}: {err}");
        }
    }

    #[test]
    fn epoch_sizes_convert_exactly() {
        let f = TimeFormat::parse("5:MINUTES:EPOCH").unwrap();
        assert_eq!(f.to_millis(2), 600_000);
        assert_eq!(f.from_millis_ceil(600_000), 2);
        assert_eq!(f.from_millis_ceil(600_001), 3);
        assert_eq!(f.from_millis_floor(899_999), 2);
        assert_eq!(f.to_millis(-1), -300_000);
        let ns = TimeFormat::parse("EPOCH|NANOSECONDS").unwrap();
        assert_eq!(ns.to_millis(-1), -1);
        assert_eq!(ns.from_millis_ceil(3), 3_000_000);
        let days = TimeFormat::parse("EPOCH|DAYS|1").unwrap();
        assert_eq!(days.to_millis(19_723), 19_723 * MS_PER_DAY);
        assert_eq!(days.from_millis_floor(19_723 * MS_PER_DAY - 1), 19_722);
    }

    #[test]
    fn time_unit_conversions_round_towards_the_window() {
        assert_eq!(TimeUnit::Seconds.to_millis(2), 2000);
        assert_eq!(TimeUnit::Microseconds.to_millis(-1), -1);
        assert_eq!(TimeUnit::Seconds.from_millis_ceil(1001), 2);
        assert_eq!(TimeUnit::Seconds.from_millis_ceil(1000), 1);
        assert_eq!(TimeUnit::Seconds.from_millis_floor(1999), 1);
        assert_eq!(TimeUnit::Microseconds.from_millis_ceil(3), 3000);
    }

    #[test]
    fn date_strings_map_to_wall_clock_time_whatever_the_zone() {
        let la = DatePattern::new("yyyyMMdd", Some("America/Los_Angeles")).unwrap();
        let jan1 = 1_704_067_200_000; // 2024-01-01T00:00Z
        assert_eq!(la.parse("20240101").unwrap(), jan1);
        assert_eq!(la.parse_integer(20240101).unwrap(), jan1);
        assert_eq!(la.format(jan1 + 23 * 3_600_000).unwrap(), "20240101");
        assert_eq!(la.format_integer(jan1).unwrap(), 20240101);
        // 2024-01-01T05:00Z is still 2023-12-31 21:00 in Los Angeles.
        assert_eq!(la.wall_clock_ms(jan1 + 5 * 3_600_000), jan1 - 3 * 3_600_000);
        let t = DatePattern::new("yyyy-MM-dd'T'HH:mm:ss.SSS", None).unwrap();
        let v = "2024-03-10T02:30:00.250";
        let ms = t.parse(v).unwrap();
        assert_eq!(t.format(ms).unwrap(), v);
        assert!(la.is_numeric() && !t.is_numeric());
        for bad in ["2024011", "20241301", "20240230", "2024O101"] {
            assert!(la.parse(bad).is_err(), "{bad}");
        }
        assert!(t.parse("2024-03-10T24:00:00.000").is_err());
    }

    #[test]
    fn date_strings_sort_as_their_times() {
        let p = DatePattern::new("yyyy-MM-dd HH:mm:ss", None).unwrap();
        let mut values = [
            "2023-12-31 23:59:59",
            "2024-01-01 00:00:00",
            "2024-02-29 12:00:00",
            "1999-01-01 00:00:00",
        ];
        values.sort_unstable();
        let ms: Vec<i64> = values.iter().map(|v| p.parse(v).unwrap()).collect();
        assert!(ms.windows(2).all(|w| w[0] < w[1]), "{ms:?}");
    }
}
