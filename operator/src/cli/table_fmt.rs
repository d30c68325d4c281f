//! Plain-text tables and ages, laid out like `kubectl get`.

use chrono::{DateTime, Utc};

/// Columns padded to their widest cell, separated by three spaces.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("   ");
            }
            l.push_str(c);
            l.push_str(&" ".repeat(w.saturating_sub(c.chars().count())));
        }
        l.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// `kubectl`-style age: `45s`, `12m`, `5h`, `3d`.
pub(crate) fn age(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(since) = since else {
        return "<unknown>".into();
    };
    let s = (now - since).num_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A time for tables: RFC3339 to the second, or `<none>`.
pub(crate) fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "<none>".into(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Epoch milliseconds as a time.
pub(crate) fn time_ms(ms: Option<i64>) -> String {
    time(ms.and_then(DateTime::<Utc>::from_timestamp_millis))
}

pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "<none>".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let out = render(
            &["NAME", "PHASE"],
            &[vec!["a-long-name".into(), "Running".into()]],
        );
        assert_eq!(out, "NAME          PHASE\na-long-name   Running\n");
    }

    #[test]
    fn ages_read_like_kubectl() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(age(Some(t0), t0 + chrono::Duration::seconds(45)), "45s");
        assert_eq!(age(Some(t0), t0 + chrono::Duration::minutes(12)), "12m");
        assert_eq!(age(Some(t0), t0 + chrono::Duration::hours(5)), "5h");
        assert_eq!(age(Some(t0), t0 + chrono::Duration::days(3)), "3d");
    }
}
