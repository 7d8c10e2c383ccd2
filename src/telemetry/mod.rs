//! The agent's own telemetry: log lines, time formatting, error chains.
//!
//! - [`log`]: the `tracing` subscriber for `kubectl logs` (logfmt or JSON, one line per
//!   event, span fields flattened) and [`LogLimiter`] for failures that repeat.
//! - [`process`]: the `process_*` metrics (CPU, memory, file descriptors) from `/proc/self`.

#[cfg(test)]
pub(crate) mod capture;
pub mod limiter;
pub mod log;
pub mod process;
pub mod time;

/// An error and its causes on one line (`a: b: c`), skipping a cause whose text its parent
/// already shows. For log fields and the targets page.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

pub use limiter::LogLimiter;
pub use log::{Error as LogError, LogFormat, init as init_logging};

/// A URL without user info (`https://user:pass@host/` -> `https://host/`), for logs and pages.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_lose_their_user_info() {
        assert_eq!(
            redact_url("https://u:p@h:1/api/v1/write"),
            "https://h:1/api/v1/write"
        );
        assert_eq!(redact_url("http://h/x@y"), "http://h/x@y");
        assert_eq!(redact_url("http://h"), "http://h");
    }
}
