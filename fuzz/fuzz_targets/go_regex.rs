//! Fuzzes the Go (RE2) regex translator behind relabel rules: any text as a Go pattern. It
//! must never panic, and what it accepts the `regex` crate compiles (a syntax error there
//! would mean the translation wrote something that is not a pattern; only size limits may
//! refuse it). A compiled relabel regex then matches without panicking.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run go_regex corpus/go_regex seeds/go_regex --
//! -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scrapelet::relabel::{Regex, translate_go_regex};

fuzz_target!(|data: &[u8]| {
    let Ok(go) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pattern) = translate_go_regex(go) {
        match regex::RegexBuilder::new(&pattern)
            .size_limit(1 << 20)
            .build()
        {
            Ok(_) | Err(regex::Error::CompiledTooBig(_)) => {}
            Err(e) => panic!("{go:?} translated to {pattern:?}, which does not compile: {e}"),
        }
    }
    if let Ok(re) = Regex::new(go) {
        let re = re.compiled();
        for haystack in ["", "a", go, "foo_bar:baz", "\u{1F600}\n"] {
            let _ = re.is_match(haystack);
            let _ = re.captures(haystack);
        }
    }
});
