//! Property tests: the parser never panics, whatever the bytes, and a model exposition
//! rendered in either format parses back to the model.

use proptest::prelude::*;

use super::scan::{BlockEnd, BlockScan, NORMAL_NAN_BITS};
use super::{Entry, Format, MetricType, Parser};

/// Parses `input` to the end, calling `labels()` on every sample, and checks what must
/// always hold: slices point into the input, at most one error and nothing after it, errors
/// name a line that exists (or the one after the last, for a missing `# EOF`).
fn exercise(format: Format, input: &[u8]) {
    let lines = input.split(|&c| c == b'\n').count();
    let range = input.as_ptr_range();
    let within = |s: &[u8]| s.is_empty() || (range.contains(&s.as_ptr()) && s.len() <= input.len());
    let mut parser = Parser::new(input, format);
    let mut errors = 0;
    for entry in parser.by_ref() {
        match entry {
            Err(e) => {
                errors += 1;
                assert!(
                    e.line >= 1 && e.line <= lines + 1,
                    "line {} of {lines}",
                    e.line
                );
                assert!(!e.message.is_empty());
            }
            Ok(Entry::Sample(s)) => {
                assert!(within(s.series) && within(s.name.as_bytes()));
                assert!(s.series.starts_with(s.name.as_bytes()));
                assert!(s.line() >= 1 && s.line() <= lines);
                if s.value.is_nan() {
                    assert_eq!(s.value.to_bits(), NORMAL_NAN_BITS);
                }
                for label in s.labels() {
                    match label {
                        Ok((name, _)) => assert!(within(name.as_bytes())),
                        Err(e) => assert_eq!(e.line, s.line()),
                    }
                }
            }
            Ok(Entry::Help { family, text }) => {
                assert!(within(family.as_bytes()) && within(text.as_bytes()))
            }
            Ok(Entry::Type { family, .. }) | Ok(Entry::Unit { family, .. }) => {
                assert!(within(family.as_bytes()))
            }
        }
    }
    assert!(errors <= 1);
    assert!(parser.next().is_none(), "the parser goes on after the end");
}

/// A sample of the model.
#[derive(Clone, Debug)]
struct ModelSample {
    suffix: &'static str,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp: Option<i64>,
}

/// A family of the model.
#[derive(Clone, Debug)]
struct ModelFamily {
    name: String,
    help: String,
    kind: MetricType,
    samples: Vec<ModelSample>,
}

fn label_value() -> impl Strategy<Value = String> {
    // Syntax characters, escapes and non-ASCII text, where naive parsers go wrong.
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => proptest::sample::select(vec!['"', '\\', '\n', '}', '{', ',', '=', '#', ' ', '\t', 'é', '☃', '\0']),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        2 => (0u32..1_000_000).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

fn sample() -> impl Strategy<Value = ModelSample> {
    (
        proptest::sample::select(vec!["", "_total", "_bucket", "_sum", ":rate5m"]),
        proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,8}", label_value()), 0..6),
        value(),
        proptest::option::of(0i64..4_000_000_000),
    )
        .prop_map(|(suffix, labels, value, timestamp)| ModelSample {
            suffix,
            labels,
            value,
            timestamp,
        })
}

fn family() -> impl Strategy<Value = ModelFamily> {
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,15}",
        "[a-zA-Z0-9 .,'()]{0,20}",
        proptest::sample::select(vec![
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::Summary,
            MetricType::Unknown,
        ]),
        proptest::collection::vec(sample(), 0..5),
    )
        .prop_map(|(name, help, kind, samples)| ModelFamily {
            name,
            help,
            kind,
            samples,
        })
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The model as a body; text-format separators are picked from `blanks`.
fn render(families: &[ModelFamily], format: Format, blanks: &[&str]) -> String {
    let mut pick = blanks.iter().cycle();
    let mut sep = || match format {
        Format::PrometheusText => *pick.next().unwrap_or(&" "),
        Format::OpenMetrics => " ",
    };
    let mut out = String::new();
    for f in families {
        let kind = match (format, f.kind) {
            (Format::PrometheusText, MetricType::Unknown) => "untyped",
            (_, kind) => kind.as_str(),
        };
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} {kind}\n",
            f.name, f.help, f.name
        ));
        for s in &f.samples {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
                .collect();
            let value = if s.value.is_nan() {
                "NaN".to_string()
            } else {
                format!("{:?}", s.value)
            };
            out.push_str(&format!(
                "{}{}{{{}}}{}{value}",
                f.name,
                s.suffix,
                labels.join(","),
                sep()
            ));
            if let Some(ts) = s.timestamp {
                match format {
                    Format::PrometheusText => out.push_str(&format!("{}{ts}", sep())),
                    // Whole seconds: the model's timestamp is seconds here.
                    Format::OpenMetrics => out.push_str(&format!(" {ts}")),
                }
            }
            out.push('\n');
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Checks that `body` parses back to `families`.
fn assert_round_trip(families: &[ModelFamily], format: Format, body: &str) {
    let mut expected = Vec::new();
    for f in families {
        let help = if format == Format::PrometheusText && f.help.trim_matches(' ').is_empty() {
            String::new()
        } else {
            f.help.clone()
        };
        expected.push(format!("HELP {} {help:?}", f.name));
        expected.push(format!("TYPE {} {:?}", f.name, f.kind));
        for s in &f.samples {
            let ts = s.timestamp.map(|t| match format {
                Format::PrometheusText => t,
                Format::OpenMetrics => t * 1000,
            });
            let bits = if s.value.is_nan() {
                NORMAL_NAN_BITS
            } else {
                s.value.to_bits()
            };
            expected.push(format!(
                "{}{} {:?} {bits:x} {ts:?}",
                f.name, s.suffix, s.labels
            ));
        }
    }
    let mut actual = Vec::new();
    for entry in Parser::new(body.as_bytes(), format) {
        match entry {
            Ok(Entry::Help { family, text }) => actual.push(format!("HELP {family} {text:?}")),
            Ok(Entry::Type { family, kind }) => actual.push(format!("TYPE {family} {kind:?}")),
            Ok(Entry::Unit { .. }) => actual.push("UNIT".into()),
            Ok(Entry::Sample(s)) => {
                let labels: Vec<(String, String)> = s
                    .labels()
                    .map(|l| l.map(|(n, v)| (n.to_string(), v.into_owned())))
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| panic!("{e}\n{body}"));
                actual.push(format!(
                    "{} {labels:?} {:x} {:?}",
                    s.name,
                    s.value.to_bits(),
                    s.timestamp_ms
                ));
            }
            Err(e) => panic!("{e}\n{body}"),
        }
    }
    assert_eq!(actual, expected, "{body}");
}

/// The label-block scan written the obvious way, byte by byte.
fn reference_block_scan(b: &[u8], from: usize, end: usize) -> (BlockEnd, Option<usize>) {
    let mut open_quote = None;
    let mut p = from;
    while p < end {
        match (b[p], open_quote) {
            (b'"', None) => open_quote = Some(p),
            (b'"', Some(_)) => open_quote = None,
            (b'}', None) => return (BlockEnd::Closed(p), None),
            (b'\\', Some(_)) => {
                if p + 1 >= end || b[p + 1] == b'\n' {
                    return (BlockEnd::BadBackslash(p), open_quote);
                }
                p += 1;
            }
            _ => {}
        }
        p += 1;
    }
    (BlockEnd::EndOfLine, open_quote)
}

/// Bytes for a label block: mostly structure characters, so every path is taken.
fn block_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            3 => proptest::sample::select(b"\"\\}=,\n".to_vec()),
            2 => proptest::sample::select(b"abc ".to_vec()),
        ],
        0..80,
    )
}

/// Byte edits that tend to break framing: structure characters, blanks, NUL, non-UTF-8.
fn edit() -> impl Strategy<Value = (usize, u8, u8)> {
    (
        any::<usize>(),
        0u8..3,
        proptest::sample::select(b"\"\\{},= \t\n#\0\xffe.+-9aN".to_vec()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn block_scans_agree(bytes in block_bytes(), from in 0usize..8, cut in 0usize..8) {
        let end = bytes.len().saturating_sub(cut);
        let from = from.min(end);
        let expected = reference_block_scan(&bytes, from, end);
        let mut fast = BlockScan::new(from);
        let fast_end = fast.run(&bytes, end);
        let mut portable = BlockScan::new(from);
        let portable_end = portable.run_portable(&bytes, end);
        prop_assert_eq!(fast_end, expected.0);
        prop_assert_eq!(portable_end, expected.0);
        if expected.0 == BlockEnd::EndOfLine {
            prop_assert_eq!(fast.open_quote, expected.1);
            prop_assert_eq!(portable.open_quote, expected.1);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(Format::PrometheusText, &input);
        exercise(Format::OpenMetrics, &input);
    }

    #[test]
    fn text_format_round_trips(
        families in proptest::collection::vec(family(), 0..5),
        blanks in proptest::collection::vec(proptest::sample::select(vec![" ", "\t", "  ", " \t"]), 1..4),
    ) {
        let body = render(&families, Format::PrometheusText, &blanks);
        assert_round_trip(&families, Format::PrometheusText, &body);
    }

    #[test]
    fn openmetrics_round_trips(families in proptest::collection::vec(family(), 0..5)) {
        let body = render(&families, Format::OpenMetrics, &[" "]);
        assert_round_trip(&families, Format::OpenMetrics, &body);
    }

    #[test]
    fn mutated_expositions_never_panic(
        families in proptest::collection::vec(family(), 1..4),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let mut body = render(&families, format, &[" "]).into_bytes();
            for &(at, op, byte) in &edits {
                let at = at % (body.len() + 1);
                match op {
                    0 => body.insert(at, byte),
                    1 if at < body.len() => { body.remove(at); }
                    _ if at < body.len() => body[at] = byte,
                    _ => body.push(byte),
                }
            }
            exercise(Format::PrometheusText, &body);
            exercise(Format::OpenMetrics, &body);
        }
    }
}
