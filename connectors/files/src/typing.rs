//! Typing of cell values: number, date or text.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use crossdex_model::Observation;

fn is_number(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() || !frac.is_empty())
        && digits(int)
        && digits(frac)
        && exponent.is_none_or(|e| !e.is_empty() && digits(e))
}

/// Parses the date and date-time spellings exports use: `2024-03-05`,
/// `2024-03-05 14:30`, `2024-03-05 14:30:00.123`, `2024-03-05T14:30:00Z`,
/// `2024-03-05T14:30:00+01:00`. Times without an offset are taken as UTC.
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if b.len() == 10 {
        return NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .map(|t| t.and_utc())
}

/// Types one value: a number, a date or date-time, or text. The raw text is always
/// kept in `value_text`.
pub fn type_value(variable: &str, raw: &str) -> Observation {
    if is_number(raw)
        && let Ok(n) = raw.parse::<f64>()
        && n.is_finite()
    {
        return Observation::number(variable, n, raw);
    }
    if let Some(d) = parse_date(raw) {
        return Observation::date(variable, d, raw);
    }
    Observation::text(variable, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_dates_and_text() {
        assert_eq!(type_value("x", "27").value_num, Some(27.0));
        assert_eq!(type_value("x", "-1.5e3").value_num, Some(-1500.0));
        assert_eq!(type_value("x", ".5").value_num, Some(0.5));
        let leading_zero = type_value("x", "0042");
        assert_eq!(
            (leading_zero.value_num, leading_zero.value_text.as_deref()),
            (Some(42.0), Some("0042"))
        );
        for text in ["NaN", "inf", "1.2.3", "12a", "", "-", "e5", "1e"] {
            assert_eq!(type_value("x", text).value_num, None, "{text}");
        }
        let d = |s: &str| type_value("x", s).value_date.map(|d| d.to_rfc3339());
        assert_eq!(
            d("2024-03-05").as_deref(),
            Some("2024-03-05T00:00:00+00:00")
        );
        assert_eq!(
            d("2024-03-05 14:30").as_deref(),
            Some("2024-03-05T14:30:00+00:00")
        );
        assert_eq!(
            d("2022-11-09 10:33:35").as_deref(),
            Some("2022-11-09T10:33:35+00:00")
        );
        assert_eq!(
            d("2018-05-14 15:17:57.815").as_deref(),
            Some("2018-05-14T15:17:57.815+00:00")
        );
        assert_eq!(
            d("2024-03-05T14:30:00+01:00").as_deref(),
            Some("2024-03-05T13:30:00+00:00")
        );
        assert_eq!(d("2024-13-05"), None);
        assert_eq!(d("05/03/2024"), None);
        assert_eq!(
            type_value("x", "amnesia").value_text.as_deref(),
            Some("amnesia")
        );
    }
}
