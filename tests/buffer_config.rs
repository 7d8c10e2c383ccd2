//! `agent.buffer` in the config file: defaults, units, bounds, and errors with file, line and
//! key.

use std::time::Duration;

use scrapelet::config::{self, BufferConfig, Error};

fn buffer(yaml: &str) -> Result<BufferConfig, Vec<String>> {
    match config::parse(yaml, "prom.yml") {
        Ok(c) => Ok(c.agent.buffer),
        Err(Error::Invalid { problems }) => Err(problems.iter().map(|p| p.to_string()).collect()),
        Err(e) => Err(vec![e.to_string()]),
    }
}

#[test]
fn defaults_and_values() {
    let check = |yaml: &str, expected: BufferConfig| {
        assert_eq!(buffer(yaml), Ok(expected), "{yaml}");
    };
    check("", BufferConfig::default());
    check(
        "agent:\n  buffer: {}\n",
        BufferConfig {
            max_size: 1 << 30,
            max_age: None,
            fsync_interval: Duration::from_secs(1),
        },
    );
    check(
        "agent:\n  buffer:\n    max_size: 2GiB\n    max_age: 6h\n    fsync_interval: 0s\n",
        BufferConfig {
            max_size: 2 << 30,
            max_age: Some(Duration::from_secs(6 * 3600)),
            fsync_interval: Duration::ZERO,
        },
    );
    check(
        "agent:\n  buffer:\n    max_size: 1048576\n    max_age: 0s\n",
        BufferConfig {
            max_size: 1 << 20,
            ..BufferConfig::default()
        },
    );
}

#[test]
fn problems_name_file_line_and_key() {
    let check = |yaml: &str, expected: &[&str]| {
        let got = buffer(yaml).err().unwrap_or_default();
        assert_eq!(got, expected, "{yaml}");
    };
    check(
        "agent:\n  buffer:\n    max_size: 100KiB\n    fsync_interval: soon\n",
        &[
            "prom.yml:3: agent.buffer.max_size: must be at least 262144 bytes (256KiB)",
            "prom.yml:4: agent.buffer.fsync_interval: not a valid duration string: \"soon\"",
        ],
    );
    let typo = buffer("agent:\n  buffer:\n    max_sise: 1GiB\n")
        .err()
        .unwrap_or_default();
    assert_eq!(typo.len(), 1);
    assert!(typo[0].starts_with("prom.yml:3:"), "{typo:?}");
    assert!(typo[0].contains("max_sise"), "{typo:?}");
}
