//! Data-driven tests: `check(format, input, expected)` renders what the parser yields (and
//! what `labels()` yields for each sample) one entry a line and compares it with `expected`.
//!
//! Rendering: `HELP fam "text"`, `TYPE fam kind`, `UNIT fam unit`,
//! `name{label="value",...} value[ @ts]` (values Rust-escaped), and
//! `error: line N: message` for a parse error (the parser stops there) or a labels error.
//! An expected error line may be a prefix of the actual one.

use std::borrow::Cow;

use super::scan::NORMAL_NAN_BITS;
use super::*;

use Format::{OpenMetrics as OM, PrometheusText as TEXT};

fn render(format: Format, input: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for entry in Parser::new(input, format) {
        match entry {
            Err(e) => out.push(format!("error: {e}")),
            Ok(Entry::Help { family, text }) => out.push(format!("HELP {family} {text:?}")),
            Ok(Entry::Type { family, kind }) => {
                out.push(format!("TYPE {family} {}", kind.as_str()))
            }
            Ok(Entry::Unit { family, unit }) => out.push(format!("UNIT {family} {unit:?}")),
            Ok(Entry::Sample(s)) => {
                // The series is a slice of the input that starts with the name.
                let input_range = input.as_ptr_range();
                assert!(input_range.contains(&s.series.as_ptr()) || s.series.is_empty());
                assert!(s.series.starts_with(s.name.as_bytes()));
                let mut labels = Vec::new();
                let mut label_error = None;
                for label in s.labels() {
                    match label {
                        Ok((name, value)) => labels.push(format!("{name}={value:?}")),
                        Err(e) => label_error = Some(e),
                    }
                }
                let value = if s.value.is_nan() {
                    assert_eq!(s.value.to_bits(), NORMAL_NAN_BITS, "NaN not normalised");
                    "NaN".to_string()
                } else {
                    s.value.to_string()
                };
                let ts = s.timestamp_ms.map(|t| format!(" @{t}")).unwrap_or_default();
                out.push(format!("{}{{{}}} {value}{ts}", s.name, labels.join(",")));
                if let Some(e) = label_error {
                    out.push(format!("error: {e}"));
                }
            }
        }
    }
    out
}

#[track_caller]
fn check(format: Format, input: &str, expected: &str) {
    check_bytes(format, input.as_bytes(), expected)
}

#[track_caller]
fn check_bytes(format: Format, input: &[u8], expected: &str) {
    let actual = render(format, input);
    let expected: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let matches = actual.len() == expected.len()
        && actual.iter().zip(&expected).all(|(a, e)| {
            if e.starts_with("error:") {
                a.starts_with(e)
            } else {
                a == e
            }
        });
    assert!(
        matches,
        "input: {:?}\nexpected:\n  {}\nactual:\n  {}",
        String::from_utf8_lossy(input),
        expected.join("\n  "),
        actual.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// Text format: what is accepted.

#[test]
fn text_basic_families() {
    check(
        TEXT,
        "# HELP http_requests_total The total number of HTTP requests.\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
         http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
         \n\
         # A normal comment.\n\
         metric_without_timestamp_and_labels 12.47\n\
         # TYPE rpc_duration_seconds summary\n\
         rpc_duration_seconds{quantile=\"0.5\"} 4773\n\
         rpc_duration_seconds_sum 1.7560473e+07\n\
         rpc_duration_seconds_count 2693\n",
        r#"
        HELP http_requests_total "The total number of HTTP requests."
        TYPE http_requests_total counter
        http_requests_total{method="post",code="200"} 1027 @1395066363000
        http_requests_total{method="post",code="400"} 3 @1395066363000
        metric_without_timestamp_and_labels{} 12.47
        TYPE rpc_duration_seconds summary
        rpc_duration_seconds{quantile="0.5"} 4773
        rpc_duration_seconds_sum{} 17560473
        rpc_duration_seconds_count{} 2693
        "#,
    );
}

#[test]
fn text_all_types() {
    check(
        TEXT,
        "# TYPE a counter\n# TYPE b gauge\n# TYPE c histogram\n# TYPE d summary\n# TYPE e untyped\n",
        "TYPE a counter\nTYPE b gauge\nTYPE c histogram\nTYPE d summary\nTYPE e unknown",
    );
}

#[test]
fn text_histogram_family() {
    check(
        TEXT,
        "# TYPE req_seconds histogram\n\
         req_seconds_bucket{le=\"0.05\"} 24054\n\
         req_seconds_bucket{le=\"+Inf\"} 144320\n\
         req_seconds_sum 53423\n\
         req_seconds_count 144320\n",
        r#"
        TYPE req_seconds histogram
        req_seconds_bucket{le="0.05"} 24054
        req_seconds_bucket{le="+Inf"} 144320
        req_seconds_sum{} 53423
        req_seconds_count{} 144320
        "#,
    );
}

#[test]
fn text_names() {
    // Colons and leading underscores in metric names; the name ends where its charset ends.
    check(
        TEXT,
        "some:aggregate:rate5m{a_b=\"c\"}\t1\n_under 1\n:colon_first 2\nx9 3\n",
        r#"
        some:aggregate:rate5m{a_b="c"} 1
        _under{} 1
        :colon_first{} 2
        x9{} 3
        "#,
    );
    check(
        TEXT,
        "testmetric{_label_starting_with_underscore=\"foo\",L9=\"x\"} 1\n",
        r#"testmetric{_label_starting_with_underscore="foo",L9="x"} 1"#,
    );
}

#[test]
fn text_label_block_layouts() {
    // From Prometheus's promparse_test.go: blanks anywhere, trailing commas, empty blocks,
    // and (accepted by Prometheus) pairs without a comma between them.
    check(
        TEXT,
        "a{} 1\n\
         a{q=\"0.25\",} 2\n\
         a{ q=\"0.9\", a=\"b\"} 3\n\
         a { q=\"1.0\", a=\"b\" } 4\n\
         a { q= \"1.0\", a= \"b\", } 5\n\
         a { q = \"1.0\", a = \"b\" } 6\n\
         a { q = \"2.0\" a = \"b\" } 7\n\
         a{x=\"1\"y=\"2\"} 8\n\
         a{\t} 9\n",
        r#"
        a{} 1
        a{q="0.25"} 2
        a{q="0.9",a="b"} 3
        a{q="1.0",a="b"} 4
        a{q="1.0",a="b"} 5
        a{q="1.0",a="b"} 6
        a{q="2.0",a="b"} 7
        a{x="1",y="2"} 8
        a{} 9
        "#,
    );
}

#[test]
fn text_label_values_with_syntax_characters() {
    // Where the prometheus-parse crate goes wrong: `,`, `=`, `}`, `{`, `#` and quotes inside
    // values must not end the value or the block.
    check(
        TEXT,
        "m{path=\"/a,b=c\",q=\"}{\"} 1\n\
         m{x=\"# not a comment\"} 2\n\
         m{x=\"a=\\\"b\\\",c\"} 3\n\
         m{x=\"}\"} 4 1000\n\
         m{x=\"\",y=\" \"} 5\n",
        r##"
        m{path="/a,b=c",q="}{"} 1
        m{x="# not a comment"} 2
        m{x="a=\"b\",c"} 3
        m{x="}"} 4 @1000
        m{x="",y=" "} 5
        "##,
    );
}

#[test]
fn text_escapes() {
    // `\\`, `\"`, `\n` are unescaped; any other escape is kept as written (Prometheus's
    // lvalReplacer does the same); UTF-8 passes through.
    check(
        TEXT,
        r#"m{a="x\\y",b="say \"hi\"",c="line1\nline2",d="tab\there",e="\\n",f="Grüße ☃"} 1"#,
        r#"m{a="x\\y",b="say \"hi\"",c="line1\nline2",d="tab\\there",e="\\n",f="Grüße ☃"} 1"#,
    );
}

#[test]
fn help_text_is_unescaped_per_format() {
    let check = |format: Format, text: &str, expected: &str, borrowed: bool| {
        let got = format.unescape_help(text);
        assert_eq!(got, expected, "{format:?} {text:?}");
        assert_eq!(matches!(got, Cow::Borrowed(_)), borrowed, "{text:?}");
    };
    check(TEXT, "plain \"text\"", "plain \"text\"", true);
    check(TEXT, r#"a\\b\nc\"d\te"#, "a\\b\nc\\\"d\\te", false);
    check(OM, r#"a\\b\nc\"d\te"#, "a\\b\nc\"d\\te", false);
    check(TEXT, "trailing\\", "trailing\\", false);
}

#[test]
fn labels_borrow_unless_escaped() {
    let body = b"m{plain=\"abc\",esc=\"a\\\"b\"} 1\n";
    let Some(Ok(Entry::Sample(s))) = Parser::new(body, TEXT).next() else {
        panic!("no sample");
    };
    let labels: Vec<_> = s.labels().collect::<Result<_, _>>().unwrap();
    assert!(matches!(labels[0], ("plain", Cow::Borrowed("abc"))));
    assert!(matches!(&labels[1], ("esc", Cow::Owned(v)) if v == "a\"b"));
}

#[test]
fn text_values() {
    check(
        TEXT,
        "a NaN\na nan\na +Inf\na -Inf\na inf\na -infinity\na Infinity\n\
         a 1e3\na 1.5E-3\na -0.25\na +7\na 1.\na .5\na 00012\na 1e-400\n\
         a 123456789012345678901234567890\n",
        r#"
        a{} NaN
        a{} NaN
        a{} inf
        a{} -inf
        a{} inf
        a{} -inf
        a{} inf
        a{} 1000
        a{} 0.0015
        a{} -0.25
        a{} 7
        a{} 1
        a{} 0.5
        a{} 12
        a{} 0
        a{} 123456789012345680000000000000
        "#,
    );
}

#[test]
fn text_value_glued_to_series() {
    // promlex.l: after the name (or `}`) the value is any run of bytes other than blanks and
    // `{`, so Prometheus reads `a-1 2` as `a` = -1 at 2 ms and `a{b="c"}1` as value 1.
    check(
        TEXT,
        "a-1 2\na{b=\"c\"}1\na+Inf\n",
        r#"
        a{} -1 @2
        a{b="c"} 1
        a{} inf
        "#,
    );
}

#[test]
fn text_timestamps_and_blanks() {
    check(
        TEXT,
        "go_goroutines 33  \t123123\n  indented 1\t\na 1 -0\n",
        r#"
        go_goroutines{} 33 @123123
        indented{} 1
        error: line 3: expected a timestamp (integer milliseconds) or the end of the line at column 5: "a 1 -0"
        "#,
    );
    check(
        TEXT,
        "a 1 0\na 1 9223372036854775807\n",
        "a{} 1 @0\na{} 1 @9223372036854775807",
    );
}

#[test]
fn text_comments_and_blank_lines() {
    check(
        TEXT,
        "#\n#no space\n# just a comment\n# HELPER not help\n# help lower case\n\
         # HELP\n#HELP no_blank_after_hash x\n   \n\t\n# Hrandom\n# TYPE\na 1\n",
        "a{} 1",
    );
}

#[test]
fn text_help_lines() {
    check(
        TEXT,
        "# HELP nohelp1\n\
         # HELP nohelp2 \n\
         # HELP blanks_only \t \n\
         #\t HELP  \t tabbed\tText with\ttabs \n\
         # HELP escaped A \\\\ backslash and a \\n newline.\n\
         # HELP spaced  two spaces\n\
         # HELP glued-on text\n\
         # HELP nul foo\0bar\n",
        r#"
        HELP nohelp1 ""
        HELP nohelp2 ""
        HELP blanks_only ""
        HELP tabbed "Text with\ttabs "
        HELP escaped "A \\\\ backslash and a \\n newline."
        HELP spaced " two spaces"
        HELP glued "on text"
        HELP nul "foo\0bar"
        "#,
    );
}

#[test]
fn text_duplicate_type_is_accepted() {
    // Prometheus's promparse does not police family order or repeated metadata.
    check(
        TEXT,
        "# TYPE a counter\n# TYPE a gauge\na 1\n# HELP a x\n# HELP a y\n",
        r#"
        TYPE a counter
        TYPE a gauge
        a{} 1
        HELP a "x"
        HELP a "y"
        "#,
    );
}

#[test]
fn text_multiline_label_value() {
    // Prometheus's text lexer lets a quoted value run over a raw newline; line numbers
    // after it stay right.
    check(
        TEXT,
        "a{b=\"x\ny\",c=\"z\"} 1\nb 2\nc{\n",
        r#"
        a{b="x\ny",c="z"} 1
        b{} 2
        error: line 4: label block is not closed with '}' at column 3: "c{"
        "#,
    );
}

#[test]
fn text_nul_bytes() {
    // NUL is fine inside label values and HELP text (as in Prometheus) and nowhere else.
    check_bytes(TEXT, b"a{b=\"abc\0\"} 1\n", r#"a{b="abc\0"} 1"#);
    check_bytes(
        TEXT,
        b"a{b=\0\"ssss\"} 1\n",
        r#"
        a{} 1
        error: line 1: expected a double-quoted value for label "b" at byte 3 of the label block "b=\0\"ssss\""
        "#,
    );
    check_bytes(
        TEXT,
        b"a\0{b=\"d\"} 1\n",
        "error: line 1: value \"\\0\" is not a number",
    );
    check_bytes(
        TEXT,
        b"a 0 1\0\n",
        "error: line 1: expected the end of the line after the timestamp",
    );
    // Prometheus's lexer treats a NUL at the start of a line as the end of the body and drops
    // the rest silently; we refuse it.
    check_bytes(
        TEXT,
        b"a 1\n\0b 2\n",
        "a{} 1\nerror: line 2: expected a metric name",
    );
}

#[test]
fn text_last_line_without_newline() {
    check(TEXT, "a 1\nb{c=\"d\"} 2 3", "a{} 1\nb{c=\"d\"} 2 @3");
    check(TEXT, "", "");
    check(TEXT, "\n\n", "");
}

#[test]
fn series_is_the_raw_text_from_name_to_brace() {
    let body = b"  m { a = \"1\" } 5 6\nn 1\no{} 2\n";
    let series: Vec<&[u8]> = Parser::new(body, TEXT)
        .map(|e| match e {
            Ok(Entry::Sample(s)) => s.series,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(series, [&b"m { a = \"1\" }"[..], b"n", b"o{}"]);
    let lines: Vec<usize> = Parser::new(b"\n# c\na 1\n\nb 2\n", TEXT)
        .map(|e| match e {
            Ok(Entry::Sample(s)) => s.line(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(lines, [3, 5]);
}

// ---------------------------------------------------------------------------------------
// Text format: what is rejected (Prometheus rejects each of these too).

#[test]
fn text_errors_in_framing() {
    let cases: &[(&str, &str)] = &[
        (
            "a",
            r#"error: line 1: expected a value after the series at column 2: "a""#,
        ),
        (
            "a{b=\n",
            r#"error: line 1: label block is not closed with '}' at column 5: "a{b=""#,
        ),
        (
            "something_weird{problem=\"",
            r#"error: line 1: label value is not closed with '"' at column 25"#,
        ),
        (
            "a true\n",
            r#"error: line 1: value "true" is not a number at column 3: "a true""#,
        ),
        ("foo 1_2\n", r#"error: line 1: value "1_2" is not a number"#),
        (
            "foo 0x1p-3\n",
            r#"error: line 1: value "0x1p-3" is not a number"#,
        ),
        (
            "foo 0x10\n",
            r#"error: line 1: value "0x10" is not a number"#,
        ),
        (
            "foo +nan\n",
            r#"error: line 1: value "+nan" is not a number"#,
        ),
        (
            "foo -NaN\n",
            r#"error: line 1: value "-NaN" is not a number"#,
        ),
        (
            "foo infinit\n",
            r#"error: line 1: value "infinit" is not a number"#,
        ),
        (
            "foo 1e400\n",
            r#"error: line 1: value "1e400" is out of range"#,
        ),
        (
            "foo -1e400\n",
            r#"error: line 1: value "-1e400" is out of range"#,
        ),
        ("foo 1\r\n", r#"error: line 1: value "1\r" is not a number"#),
        (
            "foo 0 1_2\n",
            r#"error: line 1: expected the end of the line after the timestamp at column 8: "foo 0 1_2""#,
        ),
        (
            "foo 1 2 3\n",
            "error: line 1: expected the end of the line after the timestamp",
        ),
        (
            "foo 1 2.5\n",
            "error: line 1: expected the end of the line after the timestamp",
        ),
        (
            "foo 1 9223372036854775808\n",
            r#"error: line 1: timestamp "9223372036854775808" is out of range"#,
        ),
        (
            "foo 1{\n",
            "error: line 1: expected a timestamp (integer milliseconds) or the end of the line at column 6",
        ),
        (
            "foo 1 # comment\n",
            "error: line 1: expected a timestamp (integer milliseconds) or the end of the line at column 7",
        ),
        (
            "{a=\"ok\"} 1",
            r#"error: line 1: expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), a comment or a blank line at column 1: "{a=\"ok\"} 1""#,
        ),
        ("9lives 1\n", "error: line 1: expected a metric name"),
        ("a.b 1\n", r#"error: line 1: value ".b" is not a number"#),
        (
            "a{b=\"c\"} {d=\"e\"} 1\n",
            "error: line 1: expected a value after the series at column 10",
        ),
        (
            "a{b=\"c\\",
            "error: line 1: backslash before the end of the line in a label value at column 7",
        ),
        (
            "a{b=\"c\\\nd\"} 1",
            "error: line 1: backslash before the end of the line in a label value",
        ),
        (
            "# TYPE #\n",
            r##"error: line 1: expected a metric name after TYPE at column 8: "# TYPE #""##,
        ),
        (
            "# HELP #\n",
            "error: line 1: expected a metric name after HELP at column 8",
        ),
        (
            "# HELP \n",
            "error: line 1: expected a metric name after HELP at column 8",
        ),
        (
            "# TYPE a unknown\n",
            r##"error: line 1: invalid metric type (expected counter, gauge, histogram, summary or untyped) at column 10: "# TYPE a unknown""##,
        ),
        ("# TYPE a info\n", "error: line 1: invalid metric type"),
        ("# TYPE a counter \n", "error: line 1: invalid metric type"),
        ("# TYPE a Counter\n", "error: line 1: invalid metric type"),
        ("# TYPE a\n", "error: line 1: invalid metric type"),
        ("# TYPE a  counter\n", "error: line 1: invalid metric type"),
    ];
    for (input, expected) in cases {
        check(TEXT, input, expected);
    }
    check_bytes(
        TEXT,
        b"# HELP a \xff\n",
        "error: line 1: HELP text is not valid UTF-8 at column 10",
    );
}

#[test]
fn text_errors_in_labels() {
    // Framing passes these; `labels()` refuses them.
    let cases: &[(&str, &str)] = &[
        (
            "a{b='c'} 1\n",
            r#"error: line 1: expected a double-quoted value for label "b" at byte 3 of the label block "b='c'""#,
        ),
        (
            "empty_label_name{=\"\"} 0",
            r#"error: line 1: expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at byte 1 of the label block "=\"\"""#,
        ),
        (
            "a{b=\"c\",,d=\"e\"} 1\n",
            "error: line 1: expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at byte 7",
        ),
        ("a{,} 1\n", "error: line 1: expected a label name"),
        (
            "a{b c=\"d\"} 1\n",
            r#"error: line 1: expected '=' after label name "b" at byte 3"#,
        ),
        (
            "a{b} 1\n",
            r#"error: line 1: expected '=' after label name "b" at byte 2"#,
        ),
        (
            "a{b=} 1\n",
            r#"error: line 1: expected a double-quoted value for label "b""#,
        ),
        (
            "a{b:c=\"d\"} 1\n",
            r#"error: line 1: expected '=' after label name "b""#,
        ),
        ("a{9=\"d\"} 1\n", "error: line 1: expected a label name"),
        ("a{b=\"c\" \\} 1\n", "error: line 1: expected a label name"),
    ];
    for (input, expected) in cases {
        let first = render(TEXT, input.as_bytes());
        assert!(
            first[0].starts_with("a{") || first[0].starts_with("empty_label_name{"),
            "{first:?}"
        );
        check(TEXT, input, &format!("{}\n{expected}", first[0]));
    }
    check_bytes(
        TEXT,
        b"a{\xff=\"foo\"} 1\n",
        "a{} 1\nerror: line 1: expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at byte 1",
    );
    check_bytes(
        TEXT,
        b"a{b=\"\xff\"} 1\n",
        r#"a{} 1
        error: line 1: value of label "b" is not valid UTF-8 at byte 3 of the label block "b=\"\xff\"""#,
    );
}

#[test]
fn error_line_numbers_and_stop() {
    check(
        TEXT,
        "# HELP a x\n\n# comment\na 1\nb{c=\"d\"} 2\n  \nc x\nd 1\n",
        r#"
        HELP a "x"
        a{} 1
        b{c="d"} 2
        error: line 7: value "x" is not a number at column 3: "c x"
        "#,
    );
}

#[test]
fn long_lines_are_quoted_shortened() {
    let long = format!("m{{a=\"{}\"}} oops\n", "x".repeat(200));
    let err = Parser::new(long.as_bytes(), TEXT)
        .find_map(Result::err)
        .expect("an error");
    assert_eq!(err.line, 1);
    assert!(
        err.message
            .starts_with("value \"oops\" is not a number at column 209: \"…"),
        "{}",
        err.message
    );
    assert!(err.message.ends_with("xxx\\\"} oops\""), "{}", err.message);
    assert!(err.message.len() < 150, "{}", err.message);
}

// ---------------------------------------------------------------------------------------
// OpenMetrics: what is accepted.

#[test]
fn openmetrics_full_body() {
    check(
        OM,
        "# TYPE acme_http_router_request_seconds summary\n\
         # UNIT acme_http_router_request_seconds seconds\n\
         # HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n\
         acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
         acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
         acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
         # TYPE go_goroutines gauge\n\
         go_goroutines 69\n\
         # TYPE foo histogram\n\
         foo_bucket{le=\"0.0\"} 0\n\
         foo_bucket{le=\"+Inf\"} 17 1520879607.789 # {trace_id=\"oHg5SJYRHA0\"} 9.8e-03 1520879607.789\n\
         foo_count 17\n\
         foo_sum 324789.3\n\
         # EOF\n",
        r#"
        TYPE acme_http_router_request_seconds summary
        UNIT acme_http_router_request_seconds "seconds"
        HELP acme_http_router_request_seconds "Latency though all of ACME's HTTP request router."
        acme_http_router_request_seconds_sum{path="/api/v1",method="GET"} 9036.32
        acme_http_router_request_seconds_count{path="/api/v1",method="GET"} 807283
        acme_http_router_request_seconds_created{path="/api/v1",method="GET"} 1605281325
        TYPE go_goroutines gauge
        go_goroutines{} 69
        TYPE foo histogram
        foo_bucket{le="0.0"} 0
        foo_bucket{le="+Inf"} 17 @1520879607789
        foo_count{} 17
        foo_sum{} 324789.3
        "#,
    );
}

#[test]
fn openmetrics_all_types() {
    check(
        OM,
        "# TYPE a counter\n# TYPE b gauge\n# TYPE c histogram\n# TYPE d gaugehistogram\n\
         # TYPE e summary\n# TYPE f info\n# TYPE g stateset\n# TYPE h unknown\n# EOF\n",
        "TYPE a counter\nTYPE b gauge\nTYPE c histogram\nTYPE d gaugehistogram\n\
         TYPE e summary\nTYPE f info\nTYPE g stateset\nTYPE h unknown",
    );
    check(
        OM,
        "# TYPE a untyped\n# EOF\n",
        "error: line 1: invalid metric type (expected counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown) at column 10",
    );
}

#[test]
fn openmetrics_info_stateset_gaugehistogram() {
    check(
        OM,
        "# TYPE build info\nbuild_info{version=\"1.2\",rev=\"abc\"} 1\n\
         # TYPE door stateset\ndoor{door=\"open\"} 1\ndoor{door=\"closed\"} 0\n\
         # TYPE q gaugehistogram\nq_bucket{le=\"1\"} 3\nq_gcount 3\nq_gsum 2.5\n# EOF",
        r#"
        TYPE build info
        build_info{version="1.2",rev="abc"} 1
        TYPE door stateset
        door{door="open"} 1
        door{door="closed"} 0
        TYPE q gaugehistogram
        q_bucket{le="1"} 3
        q_gcount{} 3
        q_gsum{} 2.5
        "#,
    );
}

#[test]
fn openmetrics_timestamps_and_exemplars() {
    check(
        OM,
        "a 1 1520879607.789\n\
         a 1 -1.5\n\
         a 1 0\n\
         a 1 1e3\n\
         a_total 2 # {} 1\n\
         a_total 2 # {a=\"b\",c=\"d,}#\"} 1.5\n\
         a_total 2 # {a=\"b\",} NaN 123.5\n\
         a_total 2 123 # {a=\"\\\"\"} +Inf 1\n\
         # EOF\n",
        r#"
        a{} 1 @1520879607789
        a{} 1 @-1500
        a{} 1 @0
        a{} 1 @1000000
        a_total{} 2
        a_total{} 2
        a_total{} 2
        a_total{} 2 @123000
        "#,
    );
}

#[test]
fn openmetrics_labels_and_escapes() {
    check(
        OM,
        "m{a=\"x\\\\y\",b=\"\\\"q\\\"\",c=\"l1\\nl2\",d=\"\\t\",e=\"}{,=#\"} NaN\nm{} 1\nm{a=\"1\",} 2\n# EOF\n",
        r#"
        m{a="x\\y",b="\"q\"",c="l1\nl2",d="\\t",e="}{,=#"} NaN
        m{} 1
        m{a="1"} 2
        "#,
    );
}

#[test]
fn openmetrics_help_and_unit() {
    check(
        OM,
        "# HELP a \n# HELP b two  spaces \n# UNIT c_seconds seconds\n# UNIT d \n# UNIT e_bytes_total bytes_total\n# EOF",
        r#"
        HELP a ""
        HELP b "two  spaces "
        UNIT c_seconds "seconds"
        UNIT d ""
        UNIT e_bytes_total "bytes_total"
        "#,
    );
}

#[test]
fn openmetrics_eof_forms() {
    check(OM, "# EOF", "");
    check(OM, "# EOF\n", "");
    check(OM, "a 1\n# EOF", "a{} 1");
}

// ---------------------------------------------------------------------------------------
// OpenMetrics: what is rejected.

#[test]
fn openmetrics_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "",
            "error: line 1: the body does not end with `# EOF` (required by OpenMetrics)",
        ),
        (
            "a 1\n",
            "a{} 1\nerror: line 2: the body does not end with `# EOF`",
        ),
        (
            "a 1",
            r#"error: line 1: the body does not end with `# EOF` (required by OpenMetrics) at column 4: "a 1""#,
        ),
        (
            "# EOF\n\n",
            "error: line 2: unexpected data after `# EOF` at column 1: \"\"",
        ),
        (
            "# EOF\na 1\n",
            r#"error: line 2: unexpected data after `# EOF` at column 1: "a 1""#,
        ),
        (
            "# EOF \n",
            "error: line 1: expected `# HELP`, `# TYPE`, `# UNIT` or `# EOF` (OpenMetrics has no other comments) at column 1",
        ),
        (
            "#EOF\n",
            "error: line 1: expected `# HELP`, `# TYPE`, `# UNIT` or `# EOF`",
        ),
        (
            "a 1\n\n# EOF\n",
            "a{} 1\nerror: line 2: blank line (OpenMetrics allows none)",
        ),
        (
            "# a comment\n# EOF\n",
            "error: line 1: expected `# HELP`, `# TYPE`, `# UNIT` or `# EOF`",
        ),
        ("#  HELP a b\n# EOF\n", "error: line 1: expected `# HELP`"),
        (
            "# HELP  a b\n# EOF\n",
            "error: line 1: expected a metric name after HELP at column 8",
        ),
        (
            "# HELP a\n# EOF\n",
            "error: line 1: expected a space and the HELP text after the metric name at column 9",
        ),
        (
            "# TYPE a counter \n# EOF\n",
            "error: line 1: invalid metric type",
        ),
        (
            "# UNIT a_seconds bytes\n# EOF\n",
            r#"error: line 1: unit is not a suffix of the metric name "a_seconds" at column 18"#,
        ),
        (
            "# UNIT seconds seconds\n# EOF\n",
            "error: line 1: unit is not a suffix",
        ),
        (
            "# UNIT aseconds seconds\n# EOF\n",
            "error: line 1: unit is not a suffix",
        ),
        ("  a 1\n# EOF\n", "error: line 1: expected a metric name"),
        (
            "a  1\n# EOF\n",
            "error: line 1: expected a value after the series at column 3",
        ),
        (
            "a\t1\n# EOF\n",
            "error: line 1: expected one space and the value after the series at column 2",
        ),
        (
            "a {} 1\n# EOF\n",
            r#"error: line 1: value "{}" is not a number"#,
        ),
        (
            "a{}1\n# EOF\n",
            "error: line 1: expected one space and the value after the series at column 4",
        ),
        (
            "a 1 \n# EOF\n",
            "error: line 1: expected a timestamp or an exemplar (` # {...} value`) after one space at column 5",
        ),
        (
            "a 1 2 3\n# EOF\n",
            "error: line 1: expected the end of the line or an exemplar (` # {...} value`) at column 6",
        ),
        (
            "a 1 NaN\n# EOF\n",
            r#"error: line 1: timestamp "NaN" is not a finite number"#,
        ),
        (
            "a 1 Inf\n# EOF\n",
            r#"error: line 1: timestamp "Inf" is not a finite number"#,
        ),
        (
            "a 1 x\n# EOF\n",
            r#"error: line 1: timestamp "x" is not a number"#,
        ),
        (
            "a 1 #{} 1\n# EOF\n",
            r##"error: line 1: timestamp "#{}" is not a number"##,
        ),
        (
            "a 1 # x\n# EOF\n",
            r##"error: line 1: timestamp "#" is not a number"##,
        ),
        (
            "a 1\r\n# EOF\n",
            r#"error: line 1: value "1\r" is not a number"#,
        ),
        (
            "a 1\t2\n# EOF\n",
            r#"error: line 1: value "1\t2" is not a number"#,
        ),
        (
            "# TYPE c  counter\n# EOF\n",
            "error: line 1: invalid metric type",
        ),
        (
            "#\tTYPE c counter\n# EOF\n",
            "error: line 1: expected `# HELP`, `# TYPE`, `# UNIT` or `# EOF`",
        ),
        (
            "# EOFa 1",
            "error: line 1: expected `# HELP`, `# TYPE`, `# UNIT` or `# EOF`",
        ),
        (" # EOF\n", "error: line 1: expected a metric name"),
        (
            "{b=\"c\",} 1\n# EOF\n",
            "error: line 1: expected a metric name",
        ),
        (
            "a 1 -Inf\n# EOF\n",
            r#"error: line 1: timestamp "-Inf" is not a finite number"#,
        ),
        (
            "a{b=\"c\nd\"} 1\n# EOF\n",
            "error: line 1: label value is not closed with '\"' at column 5",
        ),
        (
            "a{b=\"c\"\n# EOF\n",
            "error: line 1: label block is not closed with '}' at column 8",
        ),
        (
            "{\"a\"} 1\n# EOF\n",
            "error: line 1: expected a metric name",
        ),
        // Exemplars.
        (
            "a 1 # {\n# EOF\n",
            "error: line 1: expected an exemplar label name or '}' at column 8",
        ),
        (
            "a 1 # {} \n# EOF\n",
            "error: line 1: expected the exemplar value at column 10",
        ),
        (
            "a 1 # {}\n# EOF\n",
            "error: line 1: expected one space and the exemplar value at column 9",
        ),
        (
            "a 1 # {a=\"b\"}\n# EOF\n",
            "error: line 1: expected one space and the exemplar value",
        ),
        (
            "a 1 # {a=b} 1\n# EOF\n",
            "error: line 1: expected a double-quoted exemplar label value at column 10",
        ),
        (
            "a 1 # {a} 1\n# EOF\n",
            "error: line 1: expected '=' after the exemplar label name at column 9",
        ),
        (
            "a 1 # {a=\"b\" c=\"d\"} 1\n# EOF\n",
            "error: line 1: expected ',' or '}' after the exemplar label value at column 13",
        ),
        (
            "a 1 # {a=\"b\"} x\n# EOF\n",
            r#"error: line 1: exemplar value "x" is not a number"#,
        ),
        (
            "a 1 # {a=\"b\"} 1 NaN\n# EOF\n",
            r#"error: line 1: exemplar timestamp "NaN" is not a finite number"#,
        ),
        (
            "a 1 # {a=\"b\"} 1 2 3\n# EOF\n",
            "error: line 1: expected the end of the line after the exemplar at column 18",
        ),
        (
            "a 1 # {a=\"b\"} 1 \n# EOF\n",
            "error: line 1: expected the exemplar timestamp at column 17",
        ),
        (
            "a 1 # {a=\"b\\\n# EOF\n",
            "error: line 1: backslash before the end of the line in a label value at column 12",
        ),
        (
            "a 1 # {a=\"b} 1\n# EOF\n",
            "error: line 1: label value is not closed with '\"' at column 10",
        ),
    ];
    for (input, expected) in cases {
        check(OM, input, expected);
    }
    check_bytes(
        OM,
        b"# HELP a \xff\n# EOF\n",
        "error: line 1: HELP text is not valid UTF-8 at column 10",
    );
    check_bytes(
        OM,
        b"a 1 # {a=\"\xff\"} 1\n# EOF\n",
        "error: line 1: exemplar label value is not valid UTF-8",
    );
    // From Prometheus's TestOMNullByteHandling: NUL is fine in sample label values, not in
    // exemplar label values.
    check_bytes(OM, b"a{b=\"\0\"} 1\n# EOF", "a{b=\"\\0\"} 1");
    check_bytes(
        OM,
        b"a_total 1 # {b=\"\0ss\"} 1\n# EOF\n",
        "error: line 1: NUL byte in an exemplar label value at column 17",
    );
    check_bytes(
        OM,
        b"a{b=\0\"ssss\"} 1\n# EOF\n",
        "a{} 1\nerror: line 1: expected a double-quoted value for label \"b\"",
    );
}

#[test]
fn openmetrics_label_errors() {
    // Stricter than the text format: no blanks, one comma between pairs.
    let cases: &[(&str, &str)] = &[
        (
            "a{b=\"1\", c=\"2\"} 1\n# EOF\n",
            r#"error: line 1: expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at byte 7 of the label block "b=\"1\", c=\"2\"""#,
        ),
        (
            "a{b=\"1\"c=\"2\"} 1\n# EOF\n",
            r#"error: line 1: expected ',' or '}' after the value of label "b" at byte 6"#,
        ),
        (
            "a{ b=\"1\"} 1\n# EOF\n",
            "error: line 1: expected a label name",
        ),
        (
            "a{b =\"1\"} 1\n# EOF\n",
            r#"error: line 1: expected '=' after label name "b""#,
        ),
        (
            "a{b= \"1\"} 1\n# EOF\n",
            r#"error: line 1: expected a double-quoted value for label "b""#,
        ),
        (
            "a{b=\"1\" } 1\n# EOF\n",
            r#"error: line 1: expected ',' or '}' after the value of label "b""#,
        ),
        ("a{,} 1\n# EOF\n", "error: line 1: expected a label name"),
    ];
    for (input, expected) in cases {
        let first = render(OM, input.as_bytes());
        check(OM, input, &format!("{}\n{expected}", first[0]));
    }
}

#[test]
fn content_type_picks_the_format() {
    let cases = [
        (None, TEXT),
        (Some("text/plain; version=0.0.4; charset=utf-8"), TEXT),
        (
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            OM,
        ),
        (Some(" Application/OpenMetrics-Text"), OM),
        (Some("application/json"), TEXT),
        (Some(""), TEXT),
    ];
    for (ct, want) in cases {
        assert_eq!(Format::from_content_type(ct), want, "{ct:?}");
    }
}

#[test]
fn error_display_names_the_line() {
    let e = ParseError {
        line: 3,
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "line 3: bad");
}
