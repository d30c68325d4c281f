//! Parsers for the string-typed values of specs: periods (`1d`, `6h`, `15m`, `30s`,
//! `500ms`, and Pinot's compound `1d12h`), sizes (`500M`, `1G`, `512Mi`, `100K`, plain
//! bytes) and times (RFC3339 or epoch milliseconds). Pure; errors carry the bad value.

use chrono::DateTime;

use super::Invalid;
use crate::model::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};

/// Parses a period into milliseconds (≥ 0).
///
/// A period is one or more `<integer><unit>` parts, units `d`, `h`, `m`, `s`, `ms`
/// (case-insensitive), e.g. `1d`, `90m`, `1d12h`; the bare `0` is zero.
///
/// # Errors
/// [`Invalid::Period`] for anything else (including negative values and overflow).
pub fn parse_period(value: &str) -> Result<i64, Invalid> {
    let bad = || Invalid::Period {
        value: value.to_string(),
    };
    let s = value.trim().to_ascii_lowercase();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s.as_str();
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.as_bytes().first() {
                Some(b'd') => (DAY_MS, 1),
                Some(b'h') => (HOUR_MS, 1),
                Some(b'm') => (MINUTE_MS, 1),
                Some(b's') => (SECOND_MS, 1),
                _ => return Err(bad()),
            }
        };
        rest = &rest[len..];
        total = number
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Parses a period that must be greater than zero.
///
/// # Errors
/// [`Invalid::Period`] or [`Invalid::PeriodNotPositive`].
pub fn parse_positive_period(value: &str) -> Result<i64, Invalid> {
    match parse_period(value)? {
        0 => Err(Invalid::PeriodNotPositive {
            value: value.to_string(),
        }),
        ms => Ok(ms),
    }
}

/// Parses a Kubernetes resource quantity (`500m`, `2`, `1.5Gi`, `1e3`, `64M`) into its
/// value in base units (cores, bytes).
///
/// # Errors
/// [`Invalid::Quantity`] for anything else.
pub fn parse_quantity(value: &str) -> Result<f64, Invalid> {
    let bad = || Invalid::Quantity {
        value: value.to_string(),
    };
    let s = value.trim();
    let number_len = s
        .bytes()
        .enumerate()
        .take_while(|(i, b)| b.is_ascii_digit() || *b == b'.' || (*i == 0 && *b == b'+'))
        .count();
    let (number, suffix) = s.split_at(number_len);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Ei" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| bad())?;
            10f64.powi(exp)
        }
        _ => return Err(bad()),
    };
    Ok(number * multiplier)
}

/// Parses a size into bytes.
///
/// A number (decimals allowed with a unit) optionally followed by `K`, `M`, `G`, `T`, `P`
/// (powers of 1024, as in Pinot's `500M`), the same with `i` (`512Mi`, Kubernetes style), and
/// an optional `B`; case-insensitive. A plain integer is bytes.
///
/// # Errors
/// [`Invalid::Size`] for anything else; [`Invalid::SizeNotPositive`] for zero.
pub fn parse_size(value: &str) -> Result<u64, Invalid> {
    let bad = || Invalid::Size {
        value: value.to_string(),
    };
    let s = value.trim().to_ascii_uppercase();
    let number_len = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, unit) = s.split_at(number_len);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('B').unwrap_or(unit);
    let unit = unit.strip_suffix('I').unwrap_or(unit);
    let multiplier: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        "P" => 1 << 50,
        _ => return Err(bad()),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad());
    }
    let bytes = if let Some((whole, frac)) = number.split_once('.') {
        if multiplier == 1 || frac.contains('.') {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let scale = 10u64.checked_pow(frac.len() as u32).ok_or_else(bad)?;
        let frac: u64 = frac.parse().map_err(|_| bad())?;
        whole
            .checked_mul(multiplier)
            .zip(frac.checked_mul(multiplier))
            .and_then(|(w, f)| w.checked_add(f / scale))
            .ok_or_else(bad)?
    } else {
        let n: u64 = number.parse().map_err(|_| bad())?;
        n.checked_mul(multiplier).ok_or_else(bad)?
    };
    if bytes == 0 {
        return Err(Invalid::SizeNotPositive {
            value: value.to_string(),
        });
    }
    Ok(bytes)
}

/// Parses a time given as RFC3339 (`2024-01-31T00:00:00Z`) or epoch milliseconds into epoch
/// milliseconds.
///
/// # Errors
/// [`Invalid::Time`].
pub fn parse_time(value: &str) -> Result<i64, Invalid> {
    let s = value.trim();
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| Invalid::Time {
            value: value.to_string(),
        });
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| Invalid::Time {
            value: value.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_quantities() {
        assert_eq!(parse_quantity("500m"), Ok(0.5));
        assert_eq!(parse_quantity("2"), Ok(2.0));
        assert_eq!(parse_quantity("1Gi"), Ok(1_073_741_824.0));
        assert_eq!(parse_quantity("1.5Mi"), Ok(1_572_864.0));
        assert_eq!(parse_quantity("64M"), Ok(64e6));
        assert_eq!(parse_quantity("1e3"), Ok(1000.0));
        for bad in ["", "lots", "1GB", "2 cores", "-1", "Mi"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn periods_in_every_unit() {
        assert_eq!(parse_period("1d"), Ok(DAY_MS));
        assert_eq!(parse_period("6h"), Ok(6 * HOUR_MS));
        assert_eq!(parse_period("15m"), Ok(15 * MINUTE_MS));
        assert_eq!(parse_period("30s"), Ok(30 * SECOND_MS));
        assert_eq!(parse_period("500ms"), Ok(500));
        assert_eq!(parse_period("1D"), Ok(DAY_MS));
        assert_eq!(parse_period("0"), Ok(0));
        assert_eq!(parse_period("0d"), Ok(0));
    }

    proptest::proptest! {
        #[test]
        fn any_compound_period_parses_to_the_sum_of_its_parts(
            d in 0i64..1000, h in 0i64..100, m in 0i64..100, s in 0i64..100, ms in 0i64..1000
        ) {
            let text = format!("{d}d{h}h{m}m{s}s{ms}ms");
            let expected = d * DAY_MS + h * HOUR_MS + m * MINUTE_MS + s * SECOND_MS + ms;
            proptest::prop_assert_eq!(parse_period(&text), Ok(expected));
        }

        #[test]
        fn parsers_never_panic_on_arbitrary_text(text in "\\PC{0,12}") {
            let _ = parse_size(&text);
            let _ = parse_period(&text);
            let _ = parse_time(&text);
        }
    }

    #[test]
    fn compound_pinot_periods_add_up() {
        assert_eq!(parse_period("1d12h"), Ok(DAY_MS + 12 * HOUR_MS));
        assert_eq!(parse_period("1h30m"), Ok(90 * MINUTE_MS));
    }

    #[test]
    fn malformed_periods_are_refused() {
        for bad in [
            "",
            "1x",
            "d",
            "-1d",
            "1.5h",
            "1 d",
            "1w",
            "PT1H",
            "99999999999999999d",
        ] {
            assert!(
                matches!(parse_period(bad), Err(Invalid::Period { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_positive_period("0h"),
            Err(Invalid::PeriodNotPositive { .. })
        ));
    }

    #[test]
    fn sizes_use_binary_multiples() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("100K"), Ok(100 << 10));
        assert_eq!(parse_size("100kb"), Ok(100 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("5GB"), Ok(5 << 30));
    }

    #[test]
    fn malformed_sizes_are_refused() {
        for bad in [
            "",
            "M",
            "5X",
            "-1M",
            "1.5",
            "1..5G",
            "5 GiBs",
            "99999999999P",
        ] {
            assert!(
                matches!(parse_size(bad), Err(Invalid::Size { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_size("0M"),
            Err(Invalid::SizeNotPositive { .. })
        ));
    }

    #[test]
    fn times_as_rfc3339_or_epoch_millis() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert!(matches!(
            parse_time("2024-13-01"),
            Err(Invalid::Time { .. })
        ));
        assert!(matches!(parse_time("yesterday"), Err(Invalid::Time { .. })));
    }
}
