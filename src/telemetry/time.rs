//! Wall-clock formatting shared by logs and the web API.

use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch (0 before 1970).
pub fn unix_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Now, in seconds since the Unix epoch (0 before 1970).
pub fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `t` as RFC 3339 in UTC (`YYYY-MM-DDTHH:MM:SS.fffZ`) with `digits` (0-9) fractional digits.
/// Times before 1970 print as 1970.
pub fn rfc3339(t: SystemTime, digits: u32) -> String {
    let mut out = String::with_capacity(32);
    // Writing to a String cannot fail.
    let _ = write_rfc3339(&mut out, t, digits);
    out
}

/// Writes what [`rfc3339`] returns.
pub fn write_rfc3339(out: &mut String, t: SystemTime, digits: u32) -> fmt::Result {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let in_day = secs % 86_400;
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
    )?;
    let digits = digits.min(9);
    if digits > 0 {
        let frac = since.subsec_nanos() / 10u32.pow(9 - digits);
        write!(out, ".{frac:0width$}", width = digits as usize)?;
    }
    out.write_char('Z')
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH, 9), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339(t, 9), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(t, 3), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339(t, 0), "2023-11-14T22:13:20Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap, 0), "2000-02-29T00:00:00Z");
    }
}
