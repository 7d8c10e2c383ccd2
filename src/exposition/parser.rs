//! The line parser: finds each line, checks its framing and yields entries.
//!
//! Grammar accepted, following Prometheus 2.x `model/textparse` (promlex.l + promparse.go,
//! openmetricslex.l + openmetricsparse.go); `NAME` is `[a-zA-Z_:][a-zA-Z0-9_:]*`, blanks are
//! spaces and tabs.
//!
//! Text format, per line (blanks allowed before and between every token):
//! - blank line: skipped;
//! - `# HELP NAME text` / `# TYPE NAME type`: the keyword must follow `#` and blanks and be
//!   followed by blanks; the text is the rest of the line minus the one byte after the name
//!   (all-blank text counts as empty); type is `counter|gauge|histogram|summary|untyped`;
//! - any other line starting with `#`: a comment, skipped;
//! - `NAME [{labels}] value [timestamp]`: value is the run of bytes up to a blank, `{` or the
//!   end of the line; timestamp is `[0-9]+` (milliseconds). A quoted label value may span
//!   lines (Prometheus's lexer accepts raw newlines there).
//!
//! OpenMetrics, per line (single spaces, no others; every line ends with `\n`):
//! - `# HELP NAME text`, `# TYPE NAME type`, `# UNIT NAME unit` (unit empty or a `_`-suffix of
//!   the name), type `counter|gauge|histogram|gaugehistogram|summary|info|stateset|unknown`;
//! - `NAME[{labels}] value[ timestamp][ # {labels} value[ timestamp]]`: value and timestamp
//!   are runs of non-spaces, the timestamp in float seconds; the exemplar is checked in full
//!   and skipped;
//! - `# EOF` ends the body; it must be there and nothing may follow it. Blank lines and other
//!   comments are errors.

use super::scan::{
    BlockEnd, BlockScan, NumberError, QuoteError, closing_quote, is_blank, label_name_end,
    line_end, metric_name_end, name_str, parse_float, parse_int_ms, parse_seconds_as_ms,
    skip_blanks, token_end,
};
use super::{Entry, Format, MetricType, ParseError, Sample};
use std::fmt;

/// The parser: an iterator over entries. After the first error it yields nothing more.
pub struct Parser<'a> {
    input: &'a [u8],
    /// Start of the next line.
    pos: usize,
    /// Number of lines read so far.
    line: usize,
    format: Format,
    done: bool,
}

impl<'a> Parser<'a> {
    /// A parser over `input` in `format`.
    pub fn new(input: &'a [u8], format: Format) -> Self {
        Parser {
            input,
            pos: 0,
            line: 0,
            format,
            done: false,
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match self.format {
            Format::PrometheusText => self.next_text(),
            Format::OpenMetrics => self.next_openmetrics(),
        };
        match next {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One line being parsed: `input[start..end]`, `end` at its `\n` or the end of input.
struct Line<'a> {
    input: &'a [u8],
    start: usize,
    end: usize,
    /// 1-based number of the line.
    number: usize,
    /// Newlines inside quoted label values that made this "line" span several (text format).
    extra_lines: usize,
}

impl<'a> Parser<'a> {
    /// Next entry of a text-format body; `None` at the end.
    fn next_text(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        let input = self.input;
        while self.pos < input.len() {
            let start = self.pos;
            let end = line_end(input, start);
            self.line += 1;
            self.pos = end + 1;
            let first = skip_blanks(input, start, end);
            if first == end {
                continue;
            }
            let mut line = Line {
                input,
                start,
                end,
                number: self.line,
                extra_lines: 0,
            };
            let entry = if input[first] == b'#' {
                line.text_comment(first)?
            } else {
                let sample = line.text_sample(first);
                self.line += line.extra_lines;
                self.pos = line.end + 1;
                Some(Entry::Sample(sample?))
            };
            if entry.is_some() {
                return Ok(entry);
            }
        }
        Ok(None)
    }

    /// Next entry of an OpenMetrics body; `None` after `# EOF`.
    fn next_openmetrics(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        let input = self.input;
        let start = self.pos;
        self.line += 1;
        if start >= input.len() {
            return Err(ParseError::plain(
                self.line,
                "the body does not end with `# EOF` (required by OpenMetrics)",
            ));
        }
        let end = line_end(input, start);
        self.pos = end + 1;
        let mut line = Line {
            input,
            start,
            end,
            number: self.line,
            extra_lines: 0,
        };
        if end == start {
            return Err(line.error(start, "blank line (OpenMetrics allows none)"));
        }
        let entry = if input[start] == b'#' {
            match line.openmetrics_meta()? {
                Some(entry) => entry,
                None => {
                    // `# EOF`, optionally followed by one newline, ends the input.
                    if self.pos < input.len() {
                        let rest = &input[self.pos..];
                        return Err(ParseError::at(
                            self.line + 1,
                            &rest[..line_end(rest, 0)],
                            0,
                            "unexpected data after `# EOF`",
                        ));
                    }
                    return Ok(None);
                }
            }
        } else {
            Entry::Sample(line.openmetrics_sample()?)
        };
        if end == input.len() {
            return Err(line.error(
                end,
                "the body does not end with `# EOF` (required by OpenMetrics)",
            ));
        }
        Ok(Some(entry))
    }
}

impl<'a> Line<'a> {
    /// A `#` line of the text format: `HELP`/`TYPE` metadata or a comment (`None`).
    fn text_comment(&self, hash: usize) -> Result<Option<Entry<'a>>, ParseError> {
        let (b, end) = (self.input, self.end);
        let mut i = hash + 1;
        if i == end || !is_blank(b[i]) {
            return Ok(None);
        }
        i = skip_blanks(b, i, end);
        let keyword = &b[i..end.min(i + 4)];
        let is_help = match keyword {
            b"HELP" => true,
            b"TYPE" => false,
            _ => return Ok(None),
        };
        i += 4;
        if i == end || !is_blank(b[i]) {
            return Ok(None);
        }
        let keyword = if is_help { "HELP" } else { "TYPE" };
        i = skip_blanks(b, i, end);
        let name_end = metric_name_end(b, i, end);
        if name_end == i {
            return Err(self.error(i, format_args!("expected a metric name after {keyword}")));
        }
        let family = name_str(&b[i..name_end]);
        // promlex.l: `{C}*` after the name, minus its first byte; when the rest is all blanks
        // the blank rule wins the tie and the text is empty.
        let rest = &b[name_end..end];
        let text = if rest.iter().all(|&c| is_blank(c)) {
            &rest[rest.len()..]
        } else {
            &rest[1..]
        };
        self.metadata(is_help, family, text, name_end + 1, Format::PrometheusText)
            .map(Some)
    }

    /// The text of a `HELP` or `TYPE` line (starting at `text_at`) made into an entry.
    fn metadata(
        &self,
        is_help: bool,
        family: &'a str,
        text: &'a [u8],
        text_at: usize,
        format: Format,
    ) -> Result<Entry<'a>, ParseError> {
        if is_help {
            let Ok(text) = std::str::from_utf8(text) else {
                return Err(self.error(text_at, "HELP text is not valid UTF-8"));
            };
            return Ok(Entry::Help { family, text });
        }
        match MetricType::from_type_line(format, text) {
            Some(kind) => Ok(Entry::Type { family, kind }),
            None => {
                let allowed = match format {
                    Format::PrometheusText => "counter, gauge, histogram, summary or untyped",
                    Format::OpenMetrics => {
                        "counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"
                    }
                };
                Err(self.error(
                    text_at,
                    format_args!("invalid metric type (expected {allowed})"),
                ))
            }
        }
    }

    /// A text-format sample line whose first non-blank byte is at `first`.
    fn text_sample(&mut self, first: usize) -> Result<Sample<'a>, ParseError> {
        let b = self.input;
        let name_end = metric_name_end(b, first, self.end);
        if name_end == first {
            return Err(self.error(
                first,
                "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), a comment or a blank line",
            ));
        }
        let name = name_str(&b[first..name_end]);
        let mut i = skip_blanks(b, name_end, self.end);
        let (series_end, labels_raw) = if i < self.end && b[i] == b'{' {
            let close = self.close_label_block(i + 1, true)?;
            (close + 1, &b[i + 1..close])
        } else {
            (name_end, &b[name_end..name_end])
        };
        let end = self.end;
        i = skip_blanks(b, series_end, end);
        let value_end = token_end(b, i, end, |c| is_blank(c) || c == b'{');
        if value_end == i {
            return Err(self.error(i, "expected a value after the series"));
        }
        let value = self.number(i, value_end, "value", parse_float)?;
        i = skip_blanks(b, value_end, end);
        let mut timestamp_ms = None;
        if i < end {
            let ts_end = token_end(b, i, end, |c| !c.is_ascii_digit());
            if ts_end == i {
                return Err(self.error(
                    i,
                    "expected a timestamp (integer milliseconds) or the end of the line",
                ));
            }
            timestamp_ms = Some(self.number(i, ts_end, "timestamp", parse_int_ms)?);
            i = skip_blanks(b, ts_end, end);
            if i < end {
                return Err(self.error(i, "expected the end of the line after the timestamp"));
            }
        }
        Ok(Sample::new(
            &b[first..series_end],
            name,
            value,
            timestamp_ms,
            labels_raw,
            self.number,
            Format::PrometheusText,
        ))
    }

    /// An OpenMetrics `#` line: metadata, or `None` for `# EOF`.
    fn openmetrics_meta(&self) -> Result<Option<Entry<'a>>, ParseError> {
        let (b, start, end) = (self.input, self.start, self.end);
        let line = &b[start..end];
        if line == b"# EOF" {
            return Ok(None);
        }
        let keyword = match line.get(..7) {
            Some(b"# HELP ") => "HELP",
            Some(b"# TYPE ") => "TYPE",
            Some(b"# UNIT ") => "UNIT",
            _ => {
                return Err(self.error(
                    start,
                    "expected `# HELP`, `# TYPE`, `# UNIT` or `# EOF` (OpenMetrics has no other comments)",
                ));
            }
        };
        let i = start + 7;
        let name_end = metric_name_end(b, i, end);
        if name_end == i {
            return Err(self.error(i, format_args!("expected a metric name after {keyword}")));
        }
        if name_end == end || b[name_end] != b' ' {
            return Err(self.error(
                name_end,
                format_args!("expected a space and the {keyword} text after the metric name"),
            ));
        }
        let family = name_str(&b[i..name_end]);
        let text = &b[name_end + 1..end];
        if keyword == "UNIT" {
            // Empty, or the name ends with `_<unit>`.
            let ok = text.is_empty()
                || (family.len() > text.len()
                    && family.as_bytes().ends_with(text)
                    && family.as_bytes()[family.len() - text.len() - 1] == b'_');
            if !ok {
                return Err(self.error(
                    name_end + 1,
                    format_args!("unit is not a suffix of the metric name {family:?}"),
                ));
            }
            return Ok(Some(Entry::Unit {
                family,
                unit: name_str(text),
            }));
        }
        self.metadata(
            keyword == "HELP",
            family,
            text,
            name_end + 1,
            Format::OpenMetrics,
        )
        .map(Some)
    }

    /// An OpenMetrics sample line.
    fn openmetrics_sample(&mut self) -> Result<Sample<'a>, ParseError> {
        let (b, start, end) = (self.input, self.start, self.end);
        let name_end = metric_name_end(b, start, end);
        if name_end == start {
            return Err(self.error(
                start,
                "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), `# HELP`, `# TYPE`, `# UNIT` or `# EOF`",
            ));
        }
        let name = name_str(&b[start..name_end]);
        let (series_end, labels_raw) = if name_end < end && b[name_end] == b'{' {
            let close = self.close_label_block(name_end + 1, false)?;
            (close + 1, &b[name_end + 1..close])
        } else {
            (name_end, &b[name_end..name_end])
        };
        if series_end == end || b[series_end] != b' ' {
            return Err(self.error(
                series_end,
                "expected one space and the value after the series",
            ));
        }
        let i = series_end + 1;
        let value_end = token_end(b, i, end, |c| c == b' ');
        if value_end == i {
            return Err(self.error(i, "expected a value after the series"));
        }
        let value = self.number(i, value_end, "value", parse_float)?;
        let mut timestamp_ms = None;
        let mut i = value_end;
        if i < end && !b[i..end].starts_with(b" # {") {
            let ts_end = token_end(b, i + 1, end, |c| c == b' ');
            if ts_end == i + 1 {
                return Err(self.error(
                    i + 1,
                    "expected a timestamp or an exemplar (` # {...} value`) after one space",
                ));
            }
            timestamp_ms = Some(self.number(i + 1, ts_end, "timestamp", parse_seconds_as_ms)?);
            i = ts_end;
        }
        if i < end {
            if !b[i..end].starts_with(b" # {") {
                return Err(self.error(
                    i,
                    "expected the end of the line or an exemplar (` # {...} value`)",
                ));
            }
            self.skip_exemplar(i + 4)?;
        }
        Ok(Sample::new(
            &b[start..series_end],
            name,
            value,
            timestamp_ms,
            labels_raw,
            self.number,
            Format::OpenMetrics,
        ))
    }

    /// Checks an exemplar whose label block content starts at `from` (after `# {`) up to the
    /// end of the line: labels in full, value, optional timestamp.
    fn skip_exemplar(&self, from: usize) -> Result<(), ParseError> {
        let (b, end) = (self.input, self.end);
        let mut i = from;
        loop {
            if i < end && b[i] == b'}' {
                i += 1;
                break;
            }
            let name_end = label_name_end(b, i, end);
            if name_end == i {
                return Err(self.error(i, "expected an exemplar label name or '}'"));
            }
            if name_end == end || b[name_end] != b'=' {
                return Err(self.error(name_end, "expected '=' after the exemplar label name"));
            }
            if name_end + 1 == end || b[name_end + 1] != b'"' {
                return Err(self.error(
                    name_end + 1,
                    "expected a double-quoted exemplar label value",
                ));
            }
            let value_start = name_end + 2;
            let close = self.closing_quote(value_start)?;
            if std::str::from_utf8(&b[value_start..close]).is_err() {
                return Err(self.error(value_start, "exemplar label value is not valid UTF-8"));
            }
            i = close + 1;
            if i < end && b[i] == b',' {
                i += 1;
            } else if i == end || b[i] != b'}' {
                return Err(self.error(i, "expected ',' or '}' after the exemplar label value"));
            }
        }
        if i == end || b[i] != b' ' {
            return Err(self.error(i, "expected one space and the exemplar value"));
        }
        let value_end = token_end(b, i + 1, end, |c| c == b' ');
        if value_end == i + 1 {
            return Err(self.error(i + 1, "expected the exemplar value"));
        }
        self.number(i + 1, value_end, "exemplar value", parse_float)?;
        if value_end < end {
            let ts_end = token_end(b, value_end + 1, end, |c| c == b' ');
            if ts_end == value_end + 1 {
                return Err(self.error(ts_end, "expected the exemplar timestamp"));
            }
            self.number(
                value_end + 1,
                ts_end,
                "exemplar timestamp",
                parse_seconds_as_ms,
            )?;
            if ts_end < end {
                return Err(self.error(ts_end, "expected the end of the line after the exemplar"));
            }
        }
        Ok(())
    }

    /// Finds the `}` closing a label block whose content starts at `from` (see
    /// [`BlockScan`]). With `multiline` (text format) a quoted value may run past the end of
    /// the line, as Prometheus's lexer allows; the line then grows to the next newline.
    fn close_label_block(&mut self, from: usize, multiline: bool) -> Result<usize, ParseError> {
        let b = self.input;
        let mut scan = BlockScan::new(from);
        loop {
            match scan.run(b, self.end) {
                BlockEnd::Closed(close) => return Ok(close),
                BlockEnd::BadBackslash(at) => {
                    return Err(
                        self.error(at, "backslash before the end of the line in a label value")
                    );
                }
                BlockEnd::EndOfLine => match scan.open_quote {
                    None => {
                        return Err(self.error(self.end, "label block is not closed with '}'"));
                    }
                    Some(_) if multiline && self.end < b.len() => {
                        self.end = line_end(b, self.end + 1);
                        self.extra_lines += 1;
                    }
                    Some(open) => {
                        return Err(self.error(open, "label value is not closed with '\"'"));
                    }
                },
            }
        }
    }

    /// The closing quote of a single-line quoted string whose content starts at `from`.
    fn closing_quote(&self, from: usize) -> Result<usize, ParseError> {
        match closing_quote(self.input, from, self.end) {
            Ok((close, _)) => Ok(close),
            Err(QuoteError::Unclosed) => {
                Err(self.error(from - 1, "label value is not closed with '\"'"))
            }
            Err(QuoteError::BadBackslash(at)) => {
                Err(self.error(at, "backslash before the end of the line in a label value"))
            }
        }
    }

    /// Parses `input[from..to]` with `parse`, naming `what` in the error.
    fn number<T>(
        &self,
        from: usize,
        to: usize,
        what: &str,
        parse: impl Fn(&[u8]) -> Result<T, NumberError>,
    ) -> Result<T, ParseError> {
        parse(&self.input[from..to]).map_err(|e| {
            self.error(
                from,
                format_args!(
                    "{what} {} {}",
                    super::error::quote(&self.input[from..to], 0),
                    e.describe()
                ),
            )
        })
    }

    /// An error at absolute offset `at` (within this line), quoting the line.
    fn error(&self, at: usize, why: impl fmt::Display) -> ParseError {
        let text = &self.input[self.start..self.end];
        ParseError::at(self.number, text, at.saturating_sub(self.start), why)
    }
}
