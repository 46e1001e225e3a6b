//! TUF's `expires`: `YYYY-MM-DDTHH:MM:SSZ` in UTC, to and from Unix seconds,
//! with no date library (the civil-calendar arithmetic fits in a few lines).

/// An `expires` value that is not `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a UTC time of the form YYYY-MM-DDTHH:MM:SSZ")]
pub struct TimeError(pub String);

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats Unix seconds as TUF writes them (years past 9999 are clamped).
pub fn format_utc(secs: u64) -> String {
    let secs = secs.min(253_402_300_799) as i64; // 9999-12-31T23:59:59Z
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into Unix seconds; times before 1970 are 0.
pub fn parse_utc(text: &str) -> Result<u64, TimeError> {
    let err = || TimeError(text.chars().take(64).collect());
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let s = &text[r];
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        s.parse().map_err(|_| err())
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(err());
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    Ok(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_452_000), "2026-11-23T16:40:00Z");
        for t in [0u64, 59, 86_399, 951_782_400, 1_795_452_000, 4_102_444_800] {
            assert_eq!(parse_utc(&format_utc(t)).unwrap(), t);
        }
        assert_eq!(format_utc(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn refuses_other_forms() {
        for bad in [
            "2026-11-24T14:40:00",
            "2026-11-24 14:40:00Z",
            "2026-13-24T14:40:00Z",
            "2026-11-24T14:40:00.5Z",
            "+026-11-24T14:40:00Z",
            "",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
    }
}
