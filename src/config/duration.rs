//! Prometheus durations (`model.Duration`): `1y2w3d4h5m6s7ms`, units from largest to smallest,
//! each at most once, integer amounts only, `0` allowed without a unit. `y` is 365 days and `w`
//! is 7 days. As in Prometheus, a duration must fit in an i64 count of nanoseconds.

use std::time::Duration;

/// Why a duration string was rejected; the Display is Prometheus's message. Never retryable:
/// the input itself is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration string")]
    Empty,
    /// The string does not have the `<number><unit>...` form, or the units are out of order.
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    /// A unit that is not one of `y w d h m s ms`.
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    /// More than about 292 years.
    #[error("duration out of range")]
    OutOfRange,
}

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000 * MS;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;
const YEAR: u64 = 365 * DAY;

/// Units from largest to smallest, in nanoseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", YEAR),
    ("w", WEEK),
    ("d", DAY),
    ("h", HOUR),
    ("m", MINUTE),
    ("s", SECOND),
    ("ms", MS),
];

/// Parses a duration in Prometheus form, e.g. `15s`, `1m30s`, `2d`, `100ms`, `0`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    match input {
        "0" => return Ok(Duration::ZERO),
        "" => return Err(DurationError::Empty),
        _ => {}
    }
    let invalid = || DurationError::Invalid(input.to_owned());
    let mut rest = input.as_bytes();
    let mut total: u64 = 0;
    // Index into UNITS of the last unit seen; the next one must come strictly after it.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(invalid());
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.iter().take_while(|b| !b.is_ascii_digit()).count();
        if unit_len == 0 {
            return Err(invalid());
        }
        let (unit, tail) = tail.split_at(unit_len);
        rest = tail;
        // Both slices are ASCII-delimited runs of a &str, so they are valid UTF-8.
        let number = std::str::from_utf8(number).map_err(|_| invalid())?;
        let unit = std::str::from_utf8(unit).map_err(|_| invalid())?;
        let value: u64 = number.parse().map_err(|_| invalid())?;
        let Some(pos) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                unit: unit.to_owned(),
                input: input.to_owned(),
            });
        };
        if pos < next_unit {
            return Err(invalid());
        }
        next_unit = pos + 1;
        let mult = UNITS[pos].1;
        let add = value.checked_mul(mult).ok_or(DurationError::OutOfRange)?;
        total = total.checked_add(add).ok_or(DurationError::OutOfRange)?;
        if total > i64::MAX as u64 {
            return Err(DurationError::OutOfRange);
        }
    }
    Ok(Duration::from_nanos(total))
}

/// Formats a duration as Prometheus does (`model.Duration.String`): millisecond precision,
/// years and weeks only when they divide the rest exactly, `0s` for zero.
/// E.g. 90s -> `1m30s`, 14 days -> `2w`, 10 days -> `10d`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (i, (unit, nanos)) in UNITS.iter().enumerate() {
        let mult = u128::from(nanos / MS);
        let exact_only = i < 2; // y, w
        if exact_only && !ms.is_multiple_of(mult) {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&v.to_string());
            out.push_str(unit);
            ms -= v * mult;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Duration, &str>) {
        let got = parse_duration(input).map_err(|e| e.to_string());
        assert_eq!(
            got,
            expected.map_err(str::to_owned),
            "parse_duration({input:?})"
        );
    }

    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn parses_prometheus_durations() {
        check("0", Ok(Duration::ZERO));
        check("0s", Ok(Duration::ZERO));
        check("15s", Ok(s(15)));
        check("1m30s", Ok(s(90)));
        check("1h", Ok(s(3600)));
        check("2d", Ok(s(2 * 86_400)));
        check("1w", Ok(s(7 * 86_400)));
        check("1y", Ok(s(365 * 86_400)));
        check("100ms", Ok(Duration::from_millis(100)));
        check("1h30m", Ok(s(5400)));
        check(
            "1y2w3d4h5m6s7ms",
            Ok(
                s(YEAR / SECOND + 14 * 86_400 + 3 * 86_400 + 4 * 3600 + 5 * 60 + 6)
                    + Duration::from_millis(7),
            ),
        );
        check("0010s", Ok(s(10)));
        check("292y", Ok(s(292 * 365 * 86_400)));
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        check("", Err("empty duration string"));
        check("15", Err(r#"not a valid duration string: "15""#));
        check("1.5h", Err(r#"unknown unit "." in duration "1.5h""#));
        check("-1s", Err(r#"not a valid duration string: "-1s""#));
        check(" 1s", Err(r#"not a valid duration string: " 1s""#));
        check("1s ", Err(r#"unknown unit "s " in duration "1s ""#));
        check("1s1m", Err(r#"not a valid duration string: "1s1m""#));
        check("1s1s", Err(r#"not a valid duration string: "1s1s""#));
        check("1x", Err(r#"unknown unit "x" in duration "1x""#));
        check("1S", Err(r#"unknown unit "S" in duration "1S""#));
        check("1sec", Err(r#"unknown unit "sec" in duration "1sec""#));
        check("s", Err(r#"not a valid duration string: "s""#));
        check("1µs", Err(r#"unknown unit "µs" in duration "1µs""#));
        check("300y", Err("duration out of range"));
        check(
            "99999999999999999999s",
            Err(r#"not a valid duration string: "99999999999999999999s""#),
        );
        check("18446744073709551615ms", Err("duration out of range"));
    }

    fn check_format(d: Duration, expected: &str) {
        assert_eq!(format_duration(d), expected, "format_duration({d:?})");
        if d.subsec_nanos().is_multiple_of(1_000_000) {
            assert_eq!(parse_duration(expected), Ok(d), "round trip of {expected}");
        }
    }

    #[test]
    fn formats_as_prometheus() {
        check_format(Duration::ZERO, "0s");
        check_format(s(15), "15s");
        check_format(s(90), "1m30s");
        check_format(s(3600), "1h");
        check_format(s(86_400), "1d");
        check_format(s(14 * 86_400), "2w");
        check_format(s(10 * 86_400), "10d");
        check_format(s(365 * 86_400), "1y");
        check_format(s(366 * 86_400), "366d");
        check_format(Duration::from_millis(1_500), "1s500ms");
        check_format(Duration::from_micros(1_500), "1ms");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(input in "\\PC{0,24}") {
            let _ = parse_duration(&input);
        }

        #[test]
        fn format_then_parse_round_trips(ms in 0u64..(200 * 365 * 86_400_000)) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
