//! Calendar arithmetic for the two timestamps a sink meets: RFC 3339 (the
//! envelope's `timestamp`) and HTTP-date (`Retry-After`). Proleptic Gregorian,
//! UTC only, after Howard Hinnant's `days_from_civil` / `civil_from_days`; kept
//! here so plugins need no date crate.

const MS_PER_DAY: u64 = 86_400_000;

/// Days since 1970-01-01 for a proleptic Gregorian date (`month` 1..=12).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` that is `days` days after 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with second
/// precision, e.g. `2026-04-21T08:09:50Z`. Sub-second digits are truncated.
pub(crate) fn rfc3339_from_ms(ms: u64) -> String {
    let (year, month, day) = civil_from_days((ms / MS_PER_DAY) as i64);
    let secs = (ms % MS_PER_DAY) / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parses an HTTP-date (RFC 9110 section 5.6.7) into milliseconds since the
/// Unix epoch. Accepts all three forms recipients must accept:
/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate), `Sunday, 06-Nov-94 08:49:37 GMT`
/// (RFC 850) and `Sun Nov  6 08:49:37 1994` (asctime). In each, the first
/// number is the day and the second the year, so one tokenizer reads them all.
pub(crate) fn parse_http_date_ms(value: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let (mut month, mut time, mut numbers) = (None, None, Vec::with_capacity(2));
    for token in value.split([' ', ',', '-']).filter(|t| !t.is_empty()) {
        if token.contains(':') {
            time = Some(token);
        } else if token.bytes().all(|b| b.is_ascii_digit()) {
            numbers.push(token);
        } else if let Some(i) = MONTHS.iter().position(|m| token.eq_ignore_ascii_case(m)) {
            month = Some(i as u32 + 1);
        }
        // Anything else is the weekday or the zone ("GMT"), which carry nothing.
    }
    let ([day, year], Some(month), Some(time)) = (numbers.as_slice(), month, time) else {
        return None;
    };
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let year: i64 = match (year.len(), year.parse::<i64>().ok()?) {
        // RFC 850's two-digit year; no server has sent one from before 1970.
        (2, yy) if yy < 70 => 2000 + yy,
        (2, yy) => 1900 + yy,
        (4, yyyy) if yyyy >= 1970 => yyyy,
        _ => return None,
    };
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (Some(Some(h)), Some(Some(m)), Some(Some(s)), None) =
        (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return None;
    };
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days as u64 * MS_PER_DAY + (h * 3600 + m * 60 + s) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_the_epoch_and_a_recent_instant() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_ms(1_776_758_990_000), "2026-04-21T08:09:50Z");
        // Milliseconds are truncated, never rounded up into the next second.
        assert_eq!(rfc3339_from_ms(1_776_758_990_999), "2026-04-21T08:09:50Z");
    }

    #[test]
    fn rfc3339_handles_leap_days_and_century_rules() {
        // 2024 is a leap year.
        assert_eq!(rfc3339_from_ms(1_709_164_800_000), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_ms(1_709_251_199_000), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339_from_ms(1_709_251_200_000), "2024-03-01T00:00:00Z");
        // 2000 is a leap year (divisible by 400).
        assert_eq!(rfc3339_from_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        // 2100 is not (divisible by 100, not by 400): Feb 28 is followed by Mar 1.
        assert_eq!(rfc3339_from_ms(4_107_542_399_000), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_from_ms(4_107_542_400_000), "2100-03-01T00:00:00Z");
        // Last second of a leap year's Dec 31 (day 366).
        assert_eq!(rfc3339_from_ms(1_735_689_599_000), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn civil_and_days_round_trip_over_four_centuries() {
        for days in (-200_000..200_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn http_date_accepts_the_three_rfc_9110_forms() {
        let expected = Some(784_111_777_000);
        assert_eq!(
            parse_http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            expected
        );
        assert_eq!(
            parse_http_date_ms("Sunday, 06-Nov-94 08:49:37 GMT"),
            expected
        );
        assert_eq!(parse_http_date_ms("Sun Nov  6 08:49:37 1994"), expected);
        assert_eq!(
            parse_http_date_ms("Tue, 21 Apr 2026 08:09:50 GMT"),
            Some(1_776_758_990_000)
        );
    }

    #[test]
    fn http_date_rejects_garbage() {
        for bad in [
            "",
            "soon",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37:01 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date_ms(bad), None, "{bad:?}");
        }
    }
}
