//! What the parser yields: formats, metric types and entries.

use std::borrow::Cow;

use super::Sample;
use super::sample::unescape;

/// Which text format a body is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    PrometheusText,
    /// OpenMetrics 1.0 text (`application/openmetrics-text`).
    OpenMetrics,
}

/// A metric family's type as declared by `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    /// OpenMetrics only.
    GaugeHistogram,
    Summary,
    /// OpenMetrics only.
    Info,
    /// OpenMetrics only.
    StateSet,
    /// `untyped` in the text format, `unknown` in OpenMetrics.
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

impl Format {
    /// Picks the format from a response's Content-Type (text format when absent or unknown).
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        const OPENMETRICS: &str = "application/openmetrics-text";
        match content_type {
            Some(ct)
                if ct
                    .trim_start()
                    .get(..OPENMETRICS.len())
                    .is_some_and(|t| t.eq_ignore_ascii_case(OPENMETRICS)) =>
            {
                Format::OpenMetrics
            }
            _ => Format::PrometheusText,
        }
    }
}

impl Format {
    /// The text of a [`Entry::Help`] unescaped as Prometheus does for this format: `\\` and
    /// `\n` in both, `\"` in OpenMetrics only; any other backslash stays. Borrows when there
    /// is nothing to replace.
    pub fn unescape_help(self, text: &str) -> Cow<'_, str> {
        if !text.contains('\\') {
            return Cow::Borrowed(text);
        }
        Cow::Owned(unescape(text, self == Format::OpenMetrics))
    }
}

impl MetricType {
    /// The type's name as Prometheus reports it in metadata (`counter`, `gaugehistogram`,
    /// `stateset`, `unknown` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// The type named on a `# TYPE` line of `format`, if that format has it.
    pub(super) fn from_type_line(format: Format, text: &[u8]) -> Option<MetricType> {
        use Format::{OpenMetrics, PrometheusText};
        Some(match (format, text) {
            (_, b"counter") => MetricType::Counter,
            (_, b"gauge") => MetricType::Gauge,
            (_, b"histogram") => MetricType::Histogram,
            (_, b"summary") => MetricType::Summary,
            (PrometheusText, b"untyped") | (OpenMetrics, b"unknown") => MetricType::Unknown,
            (OpenMetrics, b"gaugehistogram") => MetricType::GaugeHistogram,
            (OpenMetrics, b"info") => MetricType::Info,
            (OpenMetrics, b"stateset") => MetricType::StateSet,
            _ => return None,
        })
    }
}
