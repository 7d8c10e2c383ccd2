//! Zero-copy parser for the Prometheus text format 0.0.4 and OpenMetrics 1.0 text.
//!
//! Written as if it were a crate of its own: no imports from the rest of the agent.
//!
//! PUBLIC FACE (fixed; the scrape loop codes against it):
//!
//! ```ignore
//! let mut parser = Parser::new(body, Format::from_content_type(content_type));
//! while let Some(entry) = parser.next() {
//!     match entry? {
//!         Entry::Sample(s) => { /* s.series (cache key), s.name, s.value, s.timestamp_ms, s.labels() */ }
//!         Entry::Type { .. } | Entry::Help { .. } | Entry::Unit { .. } => {}
//!     }
//! }
//! ```
//!
//! Framing vs validation: `next()` validates a line's framing (metric name, the extent of the
//! label block with quoted strings and escapes, value, optional timestamp, optional exemplar)
//! but not the inside of the label block. [`Sample::labels`] validates and yields the labels.
//! A caller that has seen the exact `series` bytes before (and validated them then) may skip
//! `labels()`: identical bytes are identically valid.

use std::borrow::Cow;
use std::fmt;

/// Which text format a body is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    PrometheusText,
    /// OpenMetrics 1.0 text (`application/openmetrics-text`).
    OpenMetrics,
}

/// A metric family's type as declared by `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

/// One meaningful line of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    Sample(Sample<'a>),
    /// `# TYPE <family> <type>`
    Type {
        family: &'a str,
        kind: MetricType,
    },
    /// `# HELP <family> <text>`; `text` is still escaped as on the wire.
    Help {
        family: &'a str,
        text: &'a str,
    },
    /// `# UNIT <family> <unit>` (OpenMetrics).
    Unit {
        family: &'a str,
        unit: &'a str,
    },
}

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
}

/// Iterator over the labels of a sample; validates as it goes.
pub struct LabelIter<'a> {
    rest: &'a [u8],
    line: usize,
    failed: bool,
}

/// The parser: an iterator over entries. After the first error it yields nothing more.
pub struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    line: usize,
    format: Format,
    done: bool,
}

/// Why a body could not be parsed, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, in words (names the offending text, shortened).
    pub message: String,
}

impl Format {
    /// Picks the format from a response's Content-Type (text format when absent or unknown).
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(ct) if ct.trim_start().starts_with("application/openmetrics-text") => {
                Format::OpenMetrics
            }
            _ => Format::PrometheusText,
        }
    }
}

impl<'a> Sample<'a> {
    /// The labels, unescaped only when they contain escapes. Validates names, quoting and
    /// separators; errors carry the line number. Does not check for duplicate names.
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            rest: self.labels_raw,
            line: self.line,
            failed: false,
        }
    }

    /// The 1-based line number of this sample.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = Result<(&'a str, Cow<'a, str>), ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        let _ = (self.rest, self.line, self.failed);
        todo!("exposition: label iteration")
    }
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
        let _ = (self.input, self.pos, self.line, self.format, self.done);
        todo!("exposition: parser")
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}
