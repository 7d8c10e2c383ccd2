//! Fuzzes the config loader: any text as a config file, through `${VAR}` expansion (with a few
//! variables set, one holding YAML syntax), YAML, and every resolve rule. It must never panic;
//! a refused config names at least one problem, each with a key or a message.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run config corpus/config seeds/config --
//! -max_total_time=60` (new inputs go to the first directory, which git ignores).

#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use scrapelet::config::{self, Error};

fn set_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in [
            ("FUZZ_HOST", "prometheus:9090"),
            ("FUZZ_EMPTY", ""),
            ("FUZZ_YAML", "a: [b, {c: d}]\n- e"),
            ("FUZZ_DOLLAR", "$1 ${2} $$"),
        ] {
            // SAFETY: set once, before the first input is parsed; the fuzzed code only reads
            // the environment, on this thread.
            unsafe { std::env::set_var(k, v) };
        }
    });
}

fuzz_target!(|data: &[u8]| {
    set_env();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, "fuzz.yml") {
        Ok(c) => {
            // A resolved config keeps its own promises.
            for sc in &c.scrape_configs {
                assert!(sc.scrape_timeout <= sc.scrape_interval, "{}", sc.job_name);
            }
        }
        Err(Error::Invalid { problems }) => {
            assert!(!problems.is_empty());
            for p in &problems {
                assert!(!p.key.is_empty() || !p.message.is_empty());
            }
        }
        Err(Error::Read { .. }) => unreachable!("parse reads no file"),
    }
});
