//! A sample line and the validating iterator over its labels.

use std::borrow::Cow;

use super::scan::{QuoteError, closing_quote, label_name_end, name_str, skip_blanks, utf8_str};
use super::{Format, ParseError};

/// One sample line. Borrowed from the body; nothing is allocated to produce it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The raw series text, from the first byte of the name to the closing `}` (or the end of
    /// the name when there is no label block). The key of the scrape loop's series cache.
    pub series: &'a [u8],
    /// The metric name.
    pub name: &'a str,
    /// The value (NaN, +Inf, -Inf included).
    pub value: f64,
    /// The timestamp in milliseconds, if the line has one (OpenMetrics seconds converted).
    pub timestamp_ms: Option<i64>,
    /// The raw text between the braces (empty when there are none).
    labels_raw: &'a [u8],
    /// 1-based line number, for errors found later by `labels()`.
    line: usize,
    /// The separator rules `labels()` applies.
    format: Format,
}

/// Iterator over the labels of a sample; validates as it goes.
///
/// Yields `(name, value)` with the value unescaped (`\\`, `\"`, `\n`; any other escape kept
/// as written, as Prometheus does), borrowed unless it held an escape. After the first error
/// it yields nothing more.
pub struct LabelIter<'a> {
    rest: &'a [u8],
    line: usize,
    failed: bool,
    /// The whole label block, to quote in errors.
    block: &'a [u8],
    format: Format,
}

impl<'a> Sample<'a> {
    /// The labels, unescaped only when they contain escapes. Validates names, quoting and
    /// separators; errors carry the line number. Does not check for duplicate names.
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            rest: self.labels_raw,
            line: self.line,
            failed: false,
            block: self.labels_raw,
            format: self.format,
        }
    }

    /// The 1-based line number of this sample.
    pub fn line(&self) -> usize {
        self.line
    }

    /// A sample as framed by the parser; `labels_raw` must be a block whose quoted strings
    /// are closed (the parser's framing guarantees it; `labels()` still checks).
    pub(super) fn new(
        series: &'a [u8],
        name: &'a str,
        value: f64,
        timestamp_ms: Option<i64>,
        labels_raw: &'a [u8],
        line: usize,
        format: Format,
    ) -> Self {
        Sample {
            series,
            name,
            value,
            timestamp_ms,
            labels_raw,
            line,
            format,
        }
    }
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = Result<(&'a str, Cow<'a, str>), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(label) => label.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl<'a> LabelIter<'a> {
    /// Reads one `name="value"` and the separator after it.
    ///
    /// Text format (promparse.go `parseLVals`): blanks around every token; the comma after a
    /// pair is optional (Prometheus accepts `a="1" b="2"`); a trailing comma is fine.
    /// OpenMetrics: no blanks; pairs separated by exactly one comma; a trailing comma is
    /// accepted as Prometheus does.
    #[inline(always)]
    fn step(&mut self) -> Result<Option<(&'a str, Cow<'a, str>)>, ParseError> {
        let b = self.rest;
        let end = b.len();
        let lax = self.format == Format::PrometheusText;
        let blanks = |i: usize| if lax { skip_blanks(b, i, end) } else { i };

        let mut i = blanks(0);
        if i == end {
            self.rest = &b[end..];
            return Ok(None);
        }
        let name_end = label_name_end(b, i, end);
        if name_end == i {
            return Err(self.error(i, "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
        }
        let name = name_str(&b[i..name_end]);
        i = blanks(name_end);
        if i == end || b[i] != b'=' {
            return Err(self.error(i, format_args!("expected '=' after label name {name:?}")));
        }
        i = blanks(i + 1);
        if i == end || b[i] != b'"' {
            return Err(self.error(
                i,
                format_args!("expected a double-quoted value for label {name:?}"),
            ));
        }
        let (close, escaped) = closing_quote(b, i + 1, end).map_err(|e| match e {
            QuoteError::Unclosed => {
                self.error(end, format_args!("value of label {name:?} is not closed"))
            }
            QuoteError::BadBackslash(at) => self.error(
                at,
                format_args!("backslash ends the line in the value of label {name:?}"),
            ),
        })?;
        let raw = &b[i + 1..close];
        let Some(text) = utf8_str(raw) else {
            return Err(self.error(
                i,
                format_args!("value of label {name:?} is not valid UTF-8"),
            ));
        };
        let value = if escaped {
            Cow::Owned(unescape(text, true))
        } else {
            Cow::Borrowed(text)
        };

        i = blanks(close + 1);
        if i < end && b[i] == b',' {
            i += 1;
        } else if !lax && i < end {
            return Err(self.error(
                i,
                format_args!("expected ',' or '}}' after the value of label {name:?}"),
            ));
        }
        self.rest = &b[i..];
        Ok(Some((name, value)))
    }

    /// An error at offset `at` of the remaining text, quoting the whole label block.
    fn error(&self, at: usize, why: impl std::fmt::Display) -> ParseError {
        let offset = self.block.len() - self.rest.len() + at;
        ParseError::in_labels(self.line, self.block, offset, why)
    }
}

/// Replaces `\\` and `\n`, and `\"` when `quotes`; any other backslash sequence stays as
/// written (Prometheus's `lvalReplacer` with `quotes`, its `helpReplacer` without).
pub(super) fn unescape(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(k) = rest.find('\\') {
        out.push_str(&rest[..k]);
        let mut after = rest[k + 1..].chars();
        match after.next() {
            Some('\\') => out.push('\\'),
            Some('"') if quotes => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
        rest = after.as_str();
    }
    out.push_str(rest);
    out
}
