//! Retry policy: the crate's backoff (`crate::backoff`: exponential with jitter) with
//! remote write's bounds (`min_backoff`, `max_backoff`), and `Retry-After`.
//!
//! Invariants:
//! 1. Every delay lies in `[min_backoff, max_backoff]`, except a server's `Retry-After`, which
//!    is honoured up to [`RETRY_AFTER_CAP`].
//! 2. The base doubles after each failure, from `min_backoff` up to `max_backoff`; the delay
//!    is the base scaled by a jitter factor in `[0.5, 1]` ("equal jitter"), so shards that
//!    failed together do not retry together.
//! 3. After a `Retry-After` delay the base continues from twice that delay (as Prometheus).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backoff::Backoff;

/// The longest `Retry-After` honoured; longer requests are cut to this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// Honours a receiver's `Retry-After` in `backoff` (the crate's one backoff, see
/// `crate::backoff`), cut to [`RETRY_AFTER_CAP`]; later delays continue from twice it.
pub(super) fn honour_retry_after(backoff: &mut Backoff, asked: Duration) -> Duration {
    backoff.retry_after(asked.min(RETRY_AFTER_CAP))
}

/// Parses a `Retry-After` value: delay-seconds or an IMF-fixdate (RFC 9110 §10.2.3). A date in
/// the past means "now" (zero). Obsolete date formats and junk give `None`.
pub(super) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_imf_fixdate(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let day = num(5..7)?;
    let month = match s.get(8..11)? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = num(12..16)?;
    let (hour, min, sec) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + min * 60 + sec;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm), for
/// years from 1970 on.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn backoff_doubles_from_min_to_max_with_jitter() {
        // jitter 1.0 gives the base itself.
        let mut b = Backoff::new(MS(30), MS(200));
        let got: Vec<_> = (0..6).map(|_| b.next_delay(1.0)).collect();
        assert_eq!(got, [MS(30), MS(60), MS(120), MS(200), MS(200), MS(200)]);
        // jitter 0.0 gives half the base, never below min.
        let mut b = Backoff::new(MS(30), MS(200));
        let got: Vec<_> = (0..5).map(|_| b.next_delay(0.0)).collect();
        assert_eq!(got, [MS(30), MS(30), MS(60), MS(100), MS(100)]);
    }

    #[test]
    fn backoff_stays_in_bounds_for_any_jitter() {
        let mut b = Backoff::new(MS(30), MS(5000));
        for i in 0..100 {
            let d = b.next_delay(f64::from(i % 11) / 10.0);
            assert!((MS(30)..=MS(5000)).contains(&d), "{d:?}");
        }
        // Out-of-range jitter is clamped; min above max is treated as max = min.
        let mut b = Backoff::new(MS(50), MS(10));
        assert_eq!(b.next_delay(7.0), MS(50));
        assert_eq!(b.next_delay(-1.0), MS(50));
    }

    #[test]
    fn retry_after_is_honoured_capped_and_continues_doubling() {
        let mut b = Backoff::new(MS(30), MS(5000));
        assert_eq!(honour_retry_after(&mut b, MS(1000)), MS(1000));
        assert_eq!(b.next_delay(1.0), MS(2000));
        assert_eq!(
            honour_retry_after(&mut b, Duration::from_secs(3600)),
            RETRY_AFTER_CAP
        );
        assert_eq!(b.next_delay(1.0), MS(5000));
    }

    #[test]
    fn parses_retry_after() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let check = |input: &str, expected: Option<u64>| {
            assert_eq!(
                parse_retry_after(input, now),
                expected.map(Duration::from_secs),
                "{input:?}"
            );
        };
        check("120", Some(120));
        check(" 0 ", Some(0));
        check("Sun, 06 Nov 1994 08:49:37 GMT", Some(0));
        check("Sun, 06 Nov 1994 08:50:07 GMT", Some(30));
        check("Mon, 07 Nov 1994 08:49:37 GMT", Some(86_400));
        check("Sat, 05 Nov 1994 08:49:37 GMT", Some(0)); // in the past
        check(
            "Tue, 29 Feb 2000 00:00:00 GMT",
            Some(951_782_400 - 784_111_777),
        );
        check("-5", None);
        check("1.5", None);
        check("", None);
        check("soon", None);
        check("Sunday, 06-Nov-94 08:49:37 GMT", None); // obsolete RFC 850 form
        check("Sun, 06 Foo 1994 08:49:37 GMT", None);
        check("Sun, 06 Nov 1994 25:49:37 GMT", None);
    }
}
