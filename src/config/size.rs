//! Byte sizes as Prometheus reads `body_size_limit` (`units.Base2Bytes` from alecthomas/units):
//! one or more `<number><unit>` parts, decimals allowed (`1.5MB`), units case-sensitive and all
//! powers of 1024: `B`, and either the IEC spelling `KiB MiB GiB TiB PiB EiB` or the old one
//! `KB MB GB TB PB EB` (not mixed in one string). `0` needs no unit. A bare YAML integer is a
//! count of bytes (the YAML decoder stores it directly), handled by the caller.
//!
//! Unlike Prometheus, a negative size is an error here rather than "no limit".

/// Why a size string was rejected. Never retryable: the input itself is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not of the `<number><unit>...` form.
    #[error("invalid size {0:?}")]
    Invalid(String),
    /// A unit that is not a power-of-1024 byte unit.
    #[error(
        "unknown unit {unit:?} in size {input:?} (use B, KiB, MiB, GiB, ... or KB, MB, GB, ...)"
    )]
    UnknownUnit { unit: String, input: String },
    /// Below zero.
    #[error("negative size {0:?}")]
    Negative(String),
    /// Does not fit in 63 bits.
    #[error("size {0:?} out of range")]
    OutOfRange(String),
}

const IEC_UNITS: [(&str, f64); 7] = [
    ("B", 1.0),
    ("KiB", KI),
    ("MiB", KI * KI),
    ("GiB", KI * KI * KI),
    ("TiB", KI * KI * KI * KI),
    ("PiB", KI * KI * KI * KI * KI),
    ("EiB", KI * KI * KI * KI * KI * KI),
];

const OLD_UNITS: [(&str, f64); 7] = [
    ("B", 1.0),
    ("KB", KI),
    ("MB", KI * KI),
    ("GB", KI * KI * KI),
    ("TB", KI * KI * KI * KI),
    ("PB", KI * KI * KI * KI * KI),
    ("EB", KI * KI * KI * KI * KI * KI),
];

const KI: f64 = 1024.0;

/// Parses a size such as `10MB` (10 MiB), `512KiB`, `1.5GB` or `0` into bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    // As units.ParseBase2Bytes: the IEC table first, then the old one, whose error is reported.
    let bytes = parse_with(input, &IEC_UNITS).or_else(|_| parse_with(input, &OLD_UNITS))?;
    if bytes < 0.0 {
        return Err(SizeError::Negative(input.to_owned()));
    }
    // Go converts with int64(f): values at or past 2^63 overflow.
    if bytes >= 9_223_372_036_854_775_808.0 {
        return Err(SizeError::OutOfRange(input.to_owned()));
    }
    // Truncation toward zero is what Go's int64(f) does.
    Ok(bytes as u64)
}

/// units.ParseUnit: `[-+]?([0-9]*(\.[0-9]*)?[a-zA-Z]+)+`, or a lone `0`.
fn parse_with(input: &str, units: &[(&str, f64)]) -> Result<f64, SizeError> {
    let invalid = || SizeError::Invalid(input.to_owned());
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0.0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = 0.0f64;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        s = rest;
        let mut value = if int_part.is_empty() {
            0.0
        } else {
            // Go's leadingInt fails past 2^63; so does this.
            int_part.parse::<i64>().map_err(|_| invalid())? as f64
        };
        let mut frac_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (frac, rest) = rest.split_at(frac_len);
            s = rest;
            if !frac.is_empty() {
                let digits: i64 = frac.parse().map_err(|_| invalid())?;
                value +=
                    digits as f64 / 10f64.powi(i32::try_from(frac_len).map_err(|_| invalid())?);
            }
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .take_while(|b| *b != b'.' && !b.is_ascii_digit())
            .count();
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let Some((_, mult)) = units.iter().find(|(name, _)| *name == unit) else {
            return Err(SizeError::UnknownUnit {
                unit: unit.to_owned(),
                input: input.to_owned(),
            });
        };
        total += value * mult;
    }
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<u64, &str>) {
        let got = parse_size(input).map_err(|e| e.to_string());
        assert_eq!(
            got,
            expected.map_err(str::to_owned),
            "parse_size({input:?})"
        );
    }

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn parses_base2_sizes() {
        check("0", Ok(0));
        check("0B", Ok(0));
        check("100B", Ok(100));
        check("10MB", Ok(10 * MIB));
        check("10MiB", Ok(10 * MIB));
        check("512KiB", Ok(512 * KIB));
        check("512KB", Ok(512 * KIB));
        check("1GB", Ok(GIB));
        check("1.5GB", Ok(GIB + GIB / 2));
        check(".5KB", Ok(512));
        check("1.KB", Ok(1024));
        check("1MB512KB", Ok(MIB + 512 * KIB));
        check("+1KB", Ok(1024));
        check("1EiB", Ok(1 << 60));
        check("1.0001B", Ok(1));
    }

    #[test]
    fn rejects_bad_sizes() {
        check("", Err(r#"invalid size """#));
        check(
            "10",
            Err(r#"unknown unit "" in size "10" (use B, KiB, MiB, GiB, ... or KB, MB, GB, ...)"#),
        );
        check(
            "10mb",
            Err(
                r#"unknown unit "mb" in size "10mb" (use B, KiB, MiB, GiB, ... or KB, MB, GB, ...)"#,
            ),
        );
        check(
            "10M",
            Err(r#"unknown unit "M" in size "10M" (use B, KiB, MiB, GiB, ... or KB, MB, GB, ...)"#),
        );
        check(
            "1MiB512KB",
            Err(
                r#"unknown unit "MiB" in size "1MiB512KB" (use B, KiB, MiB, GiB, ... or KB, MB, GB, ...)"#,
            ),
        );
        check("MB", Err(r#"invalid size "MB""#));
        check(".KB", Err(r#"invalid size ".KB""#));
        check("-", Err(r#"invalid size "-""#));
        check("-1KB", Err(r#"negative size "-1KB""#));
        check("8EiB", Err(r#"size "8EiB" out of range"#));
        check(
            "99999999999999999999B",
            Err(r#"invalid size "99999999999999999999B""#),
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(input in "\\PC{0,24}") {
            let _ = parse_size(&input);
        }

        #[test]
        fn whole_kib_round_trip(n in 0u64..(1 << 40)) {
            proptest::prop_assert_eq!(parse_size(&format!("{n}KiB")), Ok(n * KIB));
            proptest::prop_assert_eq!(parse_size(&format!("{n}KB")), Ok(n * KIB));
        }
    }
}
