//! Fuzzes the exposition parser: any bytes, both formats, every sample's labels. It must
//! never panic, and what it yields must point into the input.
//!
//! Run: `cargo +nightly fuzz run parser -- -max_total_time=300` (seeds in `fuzz/seeds/parser`
//! can be passed as a second corpus directory).

#![no_main]

use libfuzzer_sys::fuzz_target;
use scrapelet::exposition::{Entry, Format, Parser};

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    let within = |s: &[u8]| s.is_empty() || range.contains(&s.as_ptr());
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let mut parser = Parser::new(data, format);
        let mut errors = 0;
        for entry in parser.by_ref() {
            match entry {
                Ok(Entry::Sample(sample)) => {
                    assert!(within(sample.series));
                    assert!(sample.series.starts_with(sample.name.as_bytes()));
                    for label in sample.labels() {
                        if let Ok((name, _value)) = label {
                            assert!(within(name.as_bytes()));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    assert!(e.line >= 1);
                }
            }
        }
        assert!(errors <= 1);
        assert!(parser.next().is_none());
    }
});
