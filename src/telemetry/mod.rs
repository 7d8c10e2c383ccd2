//! The agent's own telemetry: log lines now, self-metrics later.
//!
//! - [`log`]: the `tracing` subscriber for `kubectl logs` (logfmt or JSON, one line per
//!   event, span fields flattened) and [`LogLimiter`] for failures that repeat.

pub mod log;

pub use log::{Error as LogError, LogFormat, LogLimiter, init as init_logging};
