//! Proves the parser's zero-allocation claim: iterating a large body without escapes,
//! including every sample's `labels()`, performs no heap allocation.

#[path = "support/alloc.rs"]
mod alloc;

use alloc::allocations_in;
use scrapelet::exposition::{Entry, Format, Parser};

/// A body of every kind of line, no escapes, about `lines` sample lines.
fn body(format: Format, lines: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    while n < lines {
        let family = n / 20;
        out.push_str(&format!(
            "# HELP req_{family}_seconds Request latency, with = and {{ in it.\n# TYPE req_{family}_seconds histogram\n"
        ));
        if format == Format::OpenMetrics {
            out.push_str(&format!("# UNIT req_{family}_seconds seconds\n"));
        } else {
            out.push_str("# a comment\n\n");
        }
        for le in ["0.1", "1", "+Inf"] {
            out.push_str(&format!(
                "req_{family}_seconds_bucket{{namespace=\"ns-{n}\",pod=\"api-{n:x}\",path=\"/a,b=c}}\",method=\"GET\",le=\"{le}\"}} {n}\n"
            ));
            n += 1;
        }
        out.push_str(&format!(
            "req_{family}_seconds_sum{{namespace=\"ns\",le=\"x\",}} 1.5e-3 17\n"
        ));
        out.push_str(&format!("req_{family}_seconds_count{{}} NaN\n"));
        out.push_str(&format!("up:{family} -Inf\n"));
        n += 3;
    }
    if format == Format::OpenMetrics {
        out.push_str("up_total 1 # {trace_id=\"abc\"} 1 1.5\n# EOF\n");
    }
    out
}

fn walk(format: Format, body: &[u8]) -> (usize, usize) {
    let (mut samples, mut labels) = (0, 0);
    for entry in Parser::new(body, format) {
        match entry {
            Ok(Entry::Sample(s)) => {
                samples += 1;
                for label in s.labels() {
                    match label {
                        Ok((name, value)) => labels += name.len() + value.len(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    (samples, labels)
}

#[test]
fn parsing_without_escapes_allocates_nothing() {
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let text = body(format, 50_000);
        let mut seen = (0, 0);
        let allocations = allocations_in(|| seen = walk(format, text.as_bytes()));
        assert_eq!(allocations, 0, "{format:?}: allocations while parsing");
        assert!(
            seen.0 >= 50_000 && seen.1 > 0,
            "{format:?}: parsed {seen:?}"
        );
    }
}

#[test]
fn the_counter_sees_allocations() {
    // The counter works: an escaped value is unescaped into an owned string.
    let body = b"m{a=\"x\\\"y\"} 1\n";
    let allocations = allocations_in(|| {
        walk(Format::PrometheusText, body);
    });
    assert!(allocations >= 1, "{allocations}");
}
