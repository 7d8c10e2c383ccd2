//! Byte-level scanning shared by the line parser and the label iterator: character classes,
//! names, quoted strings, numbers. Everything here works on byte slices with explicit bounds
//! and never allocates.

/// Class bits, one table lookup per byte.
const METRIC_START: u8 = 1;
const METRIC_CONT: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CONT: u8 = 8;

/// Metric names are `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`
/// (promlex.l / openmetricslex.l, rules `M` and `L`).
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let letter = c.is_ascii_alphabetic() || c == b'_';
        let mut class = 0;
        if letter || c == b':' {
            class |= METRIC_START | METRIC_CONT;
        }
        if letter {
            class |= LABEL_START | LABEL_CONT;
        }
        if c.is_ascii_digit() {
            class |= METRIC_CONT | LABEL_CONT;
        }
        table[i] = class;
        i += 1;
    }
    table
};

/// Prometheus's "normal" NaN (`value.NormalNaN`): every NaN in a body is returned with these
/// bits, so a target can never produce the stale-marker NaN (0x7ff0000000000002).
pub(super) const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Space or tab: the separators of the text format.
#[inline]
pub(super) fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// The first index in `from..end` that is not a space or tab (or `end`).
#[inline]
pub(super) fn skip_blanks(b: &[u8], mut from: usize, end: usize) -> usize {
    while from < end && is_blank(b[from]) {
        from += 1;
    }
    from
}

/// End of the line starting at `from`: the index of the next `\n`, or `b.len()`.
#[inline]
pub(super) fn line_end(b: &[u8], from: usize) -> usize {
    memchr::memchr(b'\n', &b[from..]).map_or(b.len(), |i| from + i)
}

#[inline]
fn scan_class(b: &[u8], mut from: usize, end: usize, class: u8) -> usize {
    while from < end && CLASS[b[from] as usize] & class != 0 {
        from += 1;
    }
    from
}

/// End of the metric name starting at `from` (`from` itself when there is none).
#[inline]
pub(super) fn metric_name_end(b: &[u8], from: usize, end: usize) -> usize {
    if from < end && CLASS[b[from] as usize] & METRIC_START != 0 {
        scan_class(b, from + 1, end, METRIC_CONT)
    } else {
        from
    }
}

/// End of the label name starting at `from` (`from` itself when there is none).
#[inline]
pub(super) fn label_name_end(b: &[u8], from: usize, end: usize) -> usize {
    if from < end && CLASS[b[from] as usize] & LABEL_START != 0 {
        scan_class(b, from + 1, end, LABEL_CONT)
    } else {
        from
    }
}

/// `b` as `&str` when it is all ASCII (names, numbers), without a UTF-8 validation pass.
#[inline]
pub(super) fn ascii_str(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        None
    }
}

/// A name already checked against [`CLASS`] (so ASCII) as `&str`.
#[inline]
pub(super) fn name_str(b: &[u8]) -> &str {
    ascii_str(b).unwrap_or_default()
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `b[at..at + 8]` as a little-endian u64 (byte `at` lowest), if there.
#[inline]
fn load_word(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_le_bytes)
}

/// The first index in `from..end` holding one of `needles`.
///
/// Spans in a label block are short (a label name, a value), so instead of a SIMD search per
/// span (memchr2 spends most of its time in setup there) this tests eight bytes at a time in
/// a u64: `(v - 0x01..) & !v & 0x80..` flags the lowest zero byte of `v` exactly (borrows only
/// cause false flags above a true one), and `v = word ^ needle * 0x01..` is zero where a
/// byte equals the needle.
#[inline]
pub(super) fn find_any<const N: usize>(
    b: &[u8],
    mut from: usize,
    end: usize,
    needles: [u8; N],
) -> Option<usize> {
    let splat = needles.map(|n| ONES * u64::from(n));
    while from + 8 <= end {
        let Some(word) = load_word(b, from) else {
            break;
        };
        let mut hits = 0;
        for s in splat {
            let v = word ^ s;
            hits |= v.wrapping_sub(ONES) & !v & HIGHS;
        }
        if hits != 0 {
            return Some(from + (hits.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    (from..end).find(|&i| needles.contains(&b[i]))
}

/// The end of a token: the first index in `from..end` holding one of the stop bytes.
#[inline]
pub(super) fn token_end(b: &[u8], mut from: usize, end: usize, stop: impl Fn(u8) -> bool) -> usize {
    while from < end && !stop(b[from]) {
        from += 1;
    }
    from
}

/// Where a label-block scan stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BlockEnd {
    /// The `}` closing the block is at this index.
    Closed(usize),
    /// The end of the line came first ([`BlockScan::open_quote`] says whether that was
    /// inside a quoted string).
    EndOfLine,
    /// The backslash at this index is the last byte of the line (or input) inside a quoted
    /// string: `\\.` does not match a newline.
    BadBackslash(usize),
}

/// A scan for the `}` that closes a label block, skipping quoted strings (which may hold
/// `}`, `,`, `=`, `#`, raw newlines and escaped quotes). The inside is not validated. The
/// state survives the end of a line, so a caller may extend the line and go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BlockScan {
    /// First byte not consumed yet (an escape consumes the byte after its backslash).
    pub(super) next: usize,
    /// Where the quoted string we are in opened, if we are in one.
    pub(super) open_quote: Option<usize>,
}

impl BlockScan {
    /// A scan of a block whose content starts at `from` (just after the `{`).
    pub(super) fn new(from: usize) -> Self {
        BlockScan {
            next: from,
            open_quote: None,
        }
    }

    /// Scans `b[self.next..end]`.
    #[inline]
    pub(super) fn run(&mut self, b: &[u8], end: usize) -> BlockEnd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `run_sse2` only needs SSE2, which is part of the x86_64 baseline (every
        // x86_64 CPU has it; the target enables it statically).
        return unsafe { self.run_sse2(b, end) };
        #[cfg(not(target_arch = "x86_64"))]
        return self.run_portable(b, end);
    }

    /// Handles the quote, backslash or brace at `p`; `Some` when the scan is over.
    #[inline]
    fn hit(&mut self, b: &[u8], p: usize, end: usize) -> Option<BlockEnd> {
        if p < self.next {
            return None;
        }
        self.next = p + 1;
        match (b[p], self.open_quote) {
            (b'"', None) => self.open_quote = Some(p),
            (b'"', Some(_)) => self.open_quote = None,
            (b'}', None) => return Some(BlockEnd::Closed(p)),
            (b'\\', Some(_)) => {
                if p + 1 >= end || b[p + 1] == b'\n' {
                    return Some(BlockEnd::BadBackslash(p));
                }
                self.next = p + 2;
            }
            // `}` inside quotes; a backslash outside them is for `labels()` to refuse.
            _ => {}
        }
        None
    }

    /// Any target: one [`find_any`] per quote, backslash or brace. (On x86_64 only the tests
    /// use it, to check `run_sse2` against it.)
    #[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
    pub(super) fn run_portable(&mut self, b: &[u8], end: usize) -> BlockEnd {
        while let Some(p) = find_any(b, self.next, end, [b'"', b'\\', b'}']) {
            if let Some(done) = self.hit(b, p, end) {
                return done;
            }
        }
        self.next = self.next.max(end);
        BlockEnd::EndOfLine
    }

    /// x86_64 (SSE2 is part of the baseline): sixteen bytes at a time. A chunk without
    /// backslashes (nearly all) is settled without a branch per structure byte: the prefix
    /// XOR of its quote mask tells, for every byte, whether it lies inside quotes, and the
    /// first brace outside them closes the block. A chunk with a backslash goes hit by hit.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    pub(super) fn run_sse2(&mut self, b: &[u8], end: usize) -> BlockEnd {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set_epi64x, _mm_set1_epi8};
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let brace = _mm_set1_epi8(b'}' as i8);
        let mut at = self.next;
        while at + 16 <= end {
            let (Some(lo), Some(hi)) = (load_word(b, at), load_word(b, at + 8)) else {
                break;
            };
            let chunk = _mm_set_epi64x(hi as i64, lo as i64);
            let quotes = _mm_movemask_epi8(_mm_cmpeq_epi8(chunk, quote)) as u32;
            let backslashes = _mm_movemask_epi8(_mm_cmpeq_epi8(chunk, backslash)) as u32;
            let braces = _mm_movemask_epi8(_mm_cmpeq_epi8(chunk, brace)) as u32;
            if backslashes == 0 && self.next <= at {
                // Bit k: an odd number of quotes in bytes 0..=k, so byte k is inside quotes
                // (an opening quote counts as inside, a closing one as outside).
                let mut inside = quotes;
                inside ^= inside << 1;
                inside ^= inside << 2;
                inside ^= inside << 4;
                inside ^= inside << 8;
                if self.open_quote.is_some() {
                    inside = !inside;
                }
                let closing = braces & !inside;
                if closing != 0 {
                    return BlockEnd::Closed(at + closing.trailing_zeros() as usize);
                }
                if inside & 0x8000 == 0 {
                    self.open_quote = None;
                } else if quotes != 0 {
                    // Inside at the end: the last quote opened the string.
                    self.open_quote = Some(at + 31 - quotes.leading_zeros() as usize);
                }
            } else {
                let mut hits = quotes | backslashes | braces;
                while hits != 0 {
                    let p = at + hits.trailing_zeros() as usize;
                    hits &= hits - 1;
                    if let Some(done) = self.hit(b, p, end) {
                        return done;
                    }
                }
            }
            at += 16;
            self.next = self.next.max(at);
        }
        for p in at..end {
            if matches!(b[p], b'"' | b'\\' | b'}')
                && let Some(done) = self.hit(b, p, end)
            {
                return done;
            }
        }
        self.next = self.next.max(end);
        BlockEnd::EndOfLine
    }
}

/// What went wrong inside a quoted string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QuoteError {
    /// No closing quote before `end`.
    Unclosed,
    /// A backslash at `end` or before a raw newline (`\\.` does not match a newline).
    BadBackslash(usize),
}

/// The closing quote of a quoted string whose content starts at `from`; also says whether the
/// content holds a backslash. `\\`, `\"` and `\n` are escapes; any other `\x` is accepted and
/// kept as is, as Prometheus does.
#[inline]
pub(super) fn closing_quote(
    b: &[u8],
    from: usize,
    end: usize,
) -> Result<(usize, bool), QuoteError> {
    let mut p = from;
    let mut escaped = false;
    loop {
        match find_any(b, p, end, [b'"', b'\\']) {
            None => return Err(QuoteError::Unclosed),
            Some(q) if b[q] == b'"' => return Ok((q, escaped)),
            Some(q) => {
                if q + 1 >= end || b[q + 1] == b'\n' {
                    return Err(QuoteError::BadBackslash(q));
                }
                escaped = true;
                p = q + 2;
            }
        }
    }
}

/// Why a number was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NumberError {
    /// Not a number in Go's `strconv.ParseFloat` / `ParseInt` syntax (as Prometheus: no
    /// hex, no underscores, no signed NaN).
    Syntax,
    /// Outside the range of f64 / i64.
    Range,
    /// NaN or an infinity where a timestamp is wanted.
    NotFinite,
}

impl NumberError {
    pub(super) fn describe(self) -> &'static str {
        match self {
            NumberError::Syntax => "is not a number",
            NumberError::Range => "is out of range",
            NumberError::NotFinite => "is not a finite number",
        }
    }
}

/// Parses a sample value as Prometheus does (`strconv.ParseFloat` minus hex and underscores):
/// decimal with optional sign, fraction and exponent; `NaN`, `Inf`, `Infinity` in any case,
/// the infinities with an optional sign. Finite text that overflows is refused, as in Go.
/// NaN comes back with [`NORMAL_NAN_BITS`].
pub(super) fn parse_float(tok: &[u8]) -> Result<f64, NumberError> {
    // Fast path: plain integers of up to 19 digits fit u64, and `u64 as f64` rounds to
    // nearest-even exactly as a correct decimal parse does.
    if !tok.is_empty() && tok.len() <= 19 {
        let mut n: u64 = 0;
        let mut all_digits = true;
        for &c in tok {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                all_digits = false;
                break;
            }
            n = n * 10 + u64::from(d);
        }
        if all_digits {
            return Ok(n as f64);
        }
    }
    let text = ascii_str(tok).ok_or(NumberError::Syntax)?;
    let v: f64 = text.parse().map_err(|_| NumberError::Syntax)?;
    if v.is_nan() {
        // Go accepts "nan" in any case but no sign before it.
        if matches!(tok.first(), Some(b'+' | b'-')) {
            return Err(NumberError::Syntax);
        }
        return Ok(f64::from_bits(NORMAL_NAN_BITS));
    }
    if v.is_infinite() {
        let unsigned = tok
            .strip_prefix(b"+")
            .or(tok.strip_prefix(b"-"))
            .unwrap_or(tok);
        if !unsigned.eq_ignore_ascii_case(b"inf") && !unsigned.eq_ignore_ascii_case(b"infinity") {
            return Err(NumberError::Range);
        }
    }
    Ok(v)
}

/// Parses a text-format timestamp: `[0-9]+` as i64 milliseconds.
pub(super) fn parse_int_ms(tok: &[u8]) -> Result<i64, NumberError> {
    if tok.is_empty() {
        return Err(NumberError::Syntax);
    }
    let mut n: i64 = 0;
    for &c in tok {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(NumberError::Syntax);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(d)))
            .ok_or(NumberError::Range)?;
    }
    Ok(n)
}

/// Parses an OpenMetrics timestamp: float seconds, finite, converted to milliseconds with
/// truncation toward zero (`int64(ts * 1000)` in Prometheus; out-of-range results saturate).
pub(super) fn parse_seconds_as_ms(tok: &[u8]) -> Result<i64, NumberError> {
    let secs = parse_float(tok)?;
    if !secs.is_finite() {
        return Err(NumberError::NotFinite);
    }
    Ok((secs * 1000.0) as i64)
}
