//! Log lines for `kubectl logs`: logfmt or JSON, one line per event.
//!
//! [`init`] installs the process-wide `tracing` subscriber. Every line carries, in this order:
//! `ts` (RFC 3339, UTC, milliseconds), `level`, `component` (the module path without the
//! `scrapelet::` prefix: `scrape`, `remote::queue`; other crates keep their full target),
//! `msg`, then the fields of the spans the event is in (outermost first: a task spawned inside
//! `scrape{job=x target=y}` logs `job=x target=y`), then the event's own fields.
//!
//! ```text
//! ts=2026-11-21T23:55:12.345Z level=warn component=scrape msg="scrape failed" job=node target=10.0.0.7:9100 err="connection refused"
//! {"ts":"2026-11-21T23:55:12.345Z","level":"warn","component":"scrape","msg":"scrape failed","job":"node","target":"10.0.0.7:9100","err":"connection refused"}
//! ```
//!
//! Invariants:
//! 1. One event is one line: every newline and control character in a value is escaped, so a
//!    value cannot forge a line or an ANSI sequence.
//! 2. logfmt values are quoted when empty or when they hold a space, `=`, `"` or a control
//!    character; inside quotes `"` and `\` are escaped, and `\n`, `\r`, `\t`, other controls as
//!    `\u00XX`.
//! 3. JSON lines are valid JSON objects; integers, finite floats and booleans stay numbers and
//!    booleans, everything else is a string. A span field and an event field with one name both
//!    appear (JSON readers keep the last: the event's).
//!
//! Repeated failures (a target down for an hour) go through a
//! [`LogLimiter`](super::limiter::LogLimiter).

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// The shape of a log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `ts=... level=info component=scrape msg="..." key=value` (the default).
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Why logging could not be set up. None is retryable: fix the flag or call `init` once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bare word in the level string is not a level (`inof`). The filter syntax would take
    /// it for a target name and log nothing from it, so it is refused.
    #[error(
        "invalid log level {level:?}: {word:?} is not a level (trace, debug, info, warn, error, off); \
         write a level or target=level"
    )]
    UnknownLevel { level: String, word: String },
    /// The level string is not a valid filter (`hyper=loud`).
    #[error("invalid log level {level:?}")]
    Filter {
        level: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber (or `log` logger) was installed before, e.g. by an earlier `init`.
    #[error("cannot install the log subscriber")]
    Install(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber: `format` lines on stderr, filtered by `level` (filter
/// syntax: `info`, `debug,hyper=info`, `warn,scrapelet::scrape=debug`). Records of the `log`
/// crate (rustls logs through it) are routed to the same lines.
pub fn init(format: LogFormat, level: &str) -> Result<(), Error> {
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = parse_level(level)?;
    build(format, filter, std::io::stderr, SystemTime::now)
        .try_init()
        .map_err(Error::Install)
}

/// Checks `level` and turns it into a filter.
fn parse_level(level: &str) -> Result<EnvFilter, Error> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let directives: Vec<&str> = level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(Error::UnknownLevel {
            level: level.to_owned(),
            word: String::new(),
        });
    }
    for directive in &directives {
        let bare = !directive.contains(['=', '[', ':']);
        if bare && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            return Err(Error::UnknownLevel {
                level: level.to_owned(),
                word: (*directive).to_owned(),
            });
        }
    }
    EnvFilter::builder()
        .parse(directives.join(","))
        .map_err(|source| Error::Filter {
            level: level.to_owned(),
            source,
        })
}

/// The subscriber `init` installs, with the writer and clock as parameters (tests capture).
fn build<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    now: fn() -> SystemTime,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .fmt_fields(Fields { format })
        .event_format(Format { format, now })
        .with_writer(writer);
    tracing_subscriber::registry().with(filter).with(layer)
}

/// Our event formatter.
struct Format {
    format: LogFormat,
    now: fn() -> SystemTime,
}

/// Our field formatter: writes fields as line fragments with their leading separator
/// (` key=value` or `,"key":value`). Span fields are kept in this form by the fmt layer.
struct Fields {
    format: LogFormat,
}

impl<S> FormatEvent<S, Fields> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, Fields>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = FieldWriter::new(self.format, true);
        event.record(&mut fields);
        let mut ts = String::with_capacity(24);
        write_timestamp(&mut ts, (self.now)())?;
        let level = level_name(meta.level());
        let component = component(fields.log_target.as_deref().unwrap_or(meta.target()));

        let mut line = String::with_capacity(128 + fields.out.len());
        match self.format {
            LogFormat::Logfmt => {
                let _ = write!(line, "ts={ts} level={level} component=");
                logfmt_value(&mut line, component);
                line.push_str(" msg=");
                logfmt_value(&mut line, &fields.message);
            }
            LogFormat::Json => {
                let _ = write!(line, r#"{{"ts":"{ts}","level":"{level}","component":"#);
                json_string(&mut line, component);
                line.push_str(r#","msg":"#);
                json_string(&mut line, &fields.message);
            }
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(stored) = span.extensions().get::<FormattedFields<Fields>>() {
                    line.push_str(&stored.fields);
                }
            }
        }
        line.push_str(&fields.out);
        if self.format == LogFormat::Json {
            line.push('}');
        }
        line.push('\n');
        w.write_str(&line)
    }
}

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = FieldWriter::new(self.format, false);
        fields.record(&mut v);
        writer.write_str(&v.out)
    }

    /// Fields recorded on a span later are appended as fragments (no extra separator).
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        self.format_fields(current.as_writer(), fields)
    }
}

/// Writes fields as fragments; for events, keeps `message` apart, and for records of the `log`
/// crate keeps `log.target` (the component) and drops the other `log.*` fields.
struct FieldWriter {
    format: LogFormat,
    is_event: bool,
    message: String,
    log_target: Option<String>,
    out: String,
}

impl FieldWriter {
    fn new(format: LogFormat, is_event: bool) -> Self {
        FieldWriter {
            format,
            is_event,
            message: String::new(),
            log_target: None,
            out: String::new(),
        }
    }

    fn key(&mut self, name: &str) {
        match self.format {
            LogFormat::Logfmt => {
                // Field names are identifiers, but `"quoted name" = x` is allowed by the macros.
                self.out.push(' ');
                self.out.extend(name.chars().map(|c| {
                    if c == ' ' || c == '=' || c == '"' || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                }));
                self.out.push('=');
            }
            LogFormat::Json => {
                self.out.push(',');
                json_string(&mut self.out, name);
                self.out.push(':');
            }
        }
    }

    /// A value written as text (quoted as needed).
    fn text(&mut self, field: &Field, value: &str) {
        if self.is_event && field.name() == "message" {
            self.message.clear();
            self.message.push_str(value);
            return;
        }
        if self.is_event && field.name().starts_with("log.") {
            if field.name() == "log.target" {
                self.log_target = Some(value.to_owned());
            }
            return;
        }
        self.key(field.name());
        match self.format {
            LogFormat::Logfmt => logfmt_value(&mut self.out, value),
            LogFormat::Json => json_string(&mut self.out, value),
        }
    }

    /// A value written bare in both formats (numbers, booleans).
    fn bare(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.is_event && field.name().starts_with("log.") {
            return;
        }
        self.key(field.name());
        let _ = self.out.write_fmt(value);
    }
}

impl Visit for FieldWriter {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.text(field, &text);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.bare(field, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.bare(field, format_args!("{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.bare(field, format_args!("{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.bare(field, format_args!("{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.bare(field, format_args!("{value}"));
        } else {
            self.text(field, &value.to_string());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.bare(field, format_args!("{value}"));
    }

    /// An error with its causes: `outer: inner: root`.
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.text(field, &text);
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The target without our crate's prefix.
fn component(target: &str) -> &str {
    const CRATE: &str = env!("CARGO_CRATE_NAME");
    target
        .strip_prefix(CRATE)
        .and_then(|rest| rest.strip_prefix("::"))
        .unwrap_or(target)
}

/// Writes a logfmt value, quoted and escaped when it must be (invariant 2).
fn logfmt_value(out: &mut String, value: &str) {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if !needs_quotes {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes a JSON string literal.
fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC). Times before 1970 print as 1970.
fn write_timestamp(out: &mut String, t: SystemTime) -> fmt::Result {
    super::time::write_rfc3339(out, t, 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::capture::Capture;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2026-11-21T23:55:12.345Z
    fn fixed_now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_305_312_345)
    }

    /// Runs `f` under a subscriber of `format` at `level` and returns the lines written.
    fn capture(format: LogFormat, level: &str, f: impl FnOnce()) -> Vec<String> {
        let out = Capture::default();
        let filter = parse_level(level).unwrap();
        let subscriber = build(format, filter, out.clone(), fixed_now);
        tracing::subscriber::with_default(subscriber, f);
        out.lines()
    }

    #[test]
    fn logfmt_line_shape() {
        let lines = capture(LogFormat::Logfmt, "info", || {
            tracing::warn!(
                status = 503,
                retry = true,
                ratio = 0.5,
                endpoint = "eu",
                "remote write failed; retrying"
            );
            tracing::debug!("not at info");
        });
        assert_eq!(
            lines,
            vec![
                "ts=2026-11-21T23:55:12.345Z level=warn component=telemetry::log::tests \
                 msg=\"remote write failed; retrying\" status=503 retry=true ratio=0.5 endpoint=eu"
            ]
        );
    }

    #[test]
    fn logfmt_escaping() {
        // (value, as written)
        let cases = [
            ("plain", "plain"),
            ("", r#""""#),
            ("two words", r#""two words""#),
            ("a=b", r#""a=b""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            ("line1\nline2", r#""line1\nline2""#),
            ("tab\there", r#""tab\there""#),
            ("cr\r", r#""cr\r""#),
            ("esc\x1b[31m", r#""esc\u001b[31m""#),
            (r"back\slash", r"back\slash"),
            (r"back\ and space", r#""back\\ and space""#),
            ("ünïcode", "ünïcode"),
            ("c1\u{85}", r#""c1\u0085""#),
        ];
        for (value, want) in cases {
            let lines = capture(LogFormat::Logfmt, "info", || {
                tracing::info!(v = value, "m");
            });
            assert_eq!(lines.len(), 1, "{value:?}");
            let got = lines[0].split_once(" v=").map(|(_, v)| v.to_owned());
            assert_eq!(got.as_deref(), Some(want), "{value:?}");
        }
    }

    #[test]
    fn display_debug_and_error_values() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("root cause"));
        let lines = capture(LogFormat::Logfmt, "info", || {
            let url = "http://x:1/metrics";
            tracing::error!(url = %url, list = ?["a", "b"], error = &err as &dyn std::error::Error, "failed");
        });
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].ends_with(
                r#"msg=failed url=http://x:1/metrics list="[\"a\", \"b\"]" error="outer: root cause""#
            ),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn span_fields_are_flattened_outermost_first() {
        for format in [LogFormat::Logfmt, LogFormat::Json] {
            let lines = capture(format, "info", || {
                let outer = tracing::info_span!("scrape", job = "node", target = "10.0.0.7:9100");
                let _o = outer.enter();
                let inner = tracing::info_span!("fetch", attempt = 2, late = tracing::field::Empty);
                inner.record("late", "yes");
                let _i = inner.enter();
                tracing::info!(bytes = 10, "scraped");
            });
            assert_eq!(lines.len(), 1);
            match format {
                LogFormat::Logfmt => assert!(
                    lines[0].ends_with(
                        "msg=scraped job=node target=10.0.0.7:9100 attempt=2 late=yes bytes=10"
                    ),
                    "{}",
                    lines[0]
                ),
                LogFormat::Json => {
                    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
                    assert_eq!(v["job"], "node");
                    assert_eq!(v["target"], "10.0.0.7:9100");
                    assert_eq!(v["attempt"], 2);
                    assert_eq!(v["late"], "yes");
                    assert_eq!(v["bytes"], 10);
                }
            }
        }
    }

    #[test]
    fn json_line_shape() {
        let lines = capture(LogFormat::Json, "debug", || {
            tracing::debug!(
                status = 503,
                ok = false,
                ratio = 1.5,
                nan = f64::NAN,
                text = "quote \" and \\ and\nnewline \u{1}",
                "remote write failed"
            );
        });
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        // serde_json's map is sorted; the line's own order is checked below.
        assert_eq!(
            keys,
            [
                "component",
                "level",
                "msg",
                "nan",
                "ok",
                "ratio",
                "status",
                "text",
                "ts"
            ]
        );
        assert_eq!(v["ts"], "2026-11-21T23:55:12.345Z");
        assert_eq!(v["level"], "debug");
        assert_eq!(v["component"], "telemetry::log::tests");
        assert_eq!(v["msg"], "remote write failed");
        assert_eq!(v["status"], 503);
        assert_eq!(v["ok"], false);
        assert_eq!(v["ratio"], 1.5);
        assert_eq!(v["nan"], "NaN");
        assert_eq!(v["text"], "quote \" and \\ and\nnewline \u{1}");
        assert!(
            lines[0]
                .starts_with(r#"{"ts":"2026-11-21T23:55:12.345Z","level":"debug","component":"#)
        );
    }

    #[test]
    fn log_crate_records_use_their_target_and_drop_log_fields() {
        // What tracing-log makes of a `log` record.
        let lines = capture(LogFormat::Logfmt, "info", || {
            tracing::info!(
                log.target = "rustls::client::hs",
                log.module_path = "rustls::client::hs",
                log.file = "hs.rs",
                log.line = 42u32,
                "no cached session"
            );
        });
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0]
                .ends_with(r#"level=info component=rustls::client::hs msg="no cached session""#),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn filter_applies_per_target() {
        let lines = capture(LogFormat::Logfmt, "warn,scrapelet::telemetry=debug", || {
            tracing::debug!("kept");
            tracing::debug!(target: "hyper::proto", "dropped");
            tracing::warn!(target: "hyper::proto", "other crate");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("msg=kept"));
        assert!(lines[1].contains("component=hyper::proto msg=\"other crate\""));
    }

    #[test]
    fn bad_levels_are_named() {
        for level in ["inof", "info,loud", "hyper=loud", "[unclosed", ""] {
            let err = parse_level(level).unwrap_err();
            assert!(err.to_string().contains(&format!("{level:?}")), "{err}");
        }
        for level in [
            "info",
            "DEBUG",
            "debug,hyper=info",
            "debug, hyper=info",
            "warn,scrapelet::scrape=trace",
            "off",
        ] {
            assert!(parse_level(level).is_ok(), "{level}");
        }
    }

    #[test]
    fn init_refuses_a_bad_level_before_installing_anything() {
        assert!(matches!(
            init(LogFormat::Json, "inof"),
            Err(Error::UnknownLevel { .. })
        ));
    }

    #[test]
    fn timestamps() {
        // (milliseconds since the epoch, as written)
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (951_868_799_999, "2000-02-29T23:59:59.999Z"),
            (1_709_164_800_001, "2024-02-29T00:00:00.001Z"),
            (1_735_689_599_000, "2024-12-31T23:59:59.000Z"),
            (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
            (1_795_305_312_345, "2026-11-21T23:55:12.345Z"),
        ];
        for (ms, want) in cases {
            let mut s = String::new();
            write_timestamp(&mut s, UNIX_EPOCH + Duration::from_millis(ms)).unwrap();
            assert_eq!(s, want, "{ms}");
        }
    }
}
