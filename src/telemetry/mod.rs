//! The agent's own telemetry: log lines, time formatting, error chains.
//!
//! - [`log`]: the `tracing` subscriber for `kubectl logs` (logfmt or JSON, one line per
//!   event, span fields flattened) and [`LogLimiter`] for failures that repeat.
//! - [`process`]: the `process_*` metrics (CPU, memory, file descriptors) from `/proc/self`.

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

pub use log::{Error as LogError, LogFormat, LogLimiter, init as init_logging};
