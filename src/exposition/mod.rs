//! Zero-copy parser for the Prometheus text format 0.0.4 and OpenMetrics 1.0 text.
//!
//! Written as if it were a crate of its own: no imports from the rest of the agent.
//!
//! PUBLIC FACE (fixed; the scrape loop codes against it):
//!
//! ```ignore
//! let mut parser = Parser::new(body, Format::from_content_type(content_type));
//! while let Some(entry) = parser.next() {
//!     match entry? {
//!         Entry::Sample(s) => { /* s.series (cache key), s.name, s.value, s.timestamp_ms, s.labels() */ }
//!         Entry::Type { .. } | Entry::Help { .. } | Entry::Unit { .. } => {}
//!     }
//! }
//! ```
//!
//! Framing vs validation: `next()` validates a line's framing (metric name, the extent of the
//! label block with quoted strings and escapes, value, optional timestamp, optional exemplar)
//! but not the inside of the label block. [`Sample::labels`] validates and yields the labels.
//! A caller that has seen the exact `series` bytes before (and validated them then) may skip
//! `labels()`: identical bytes are identically valid.
//!
//! What is accepted and rejected follows Prometheus 2.x `model/textparse` (see the grammar in
//! `parser.rs`): where Prometheus rejects a body, so do we; where it accepts one, so do we,
//! with three deliberate exceptions: a NUL byte at the start of a text-format line is an error
//! (Prometheus's lexer silently ends the body there, losing the rest), labels must be the
//! classic `[a-zA-Z_][a-zA-Z0-9_]*` names (no Prometheus 3 quoted UTF-8 names), and OpenMetrics
//! `ct@` start timestamps are not recognised (Prometheus 2.x does not either).
//!
//! Invariants:
//! - Nothing is copied: names, series, label blocks, HELP text and unescaped label values
//!   are slices of the body; only a label value with a backslash escape is unescaped into an
//!   owned string. Iterating a body and its labels allocates nothing otherwise.
//! - No input makes it panic or loop: every step moves forward through the body, and the
//!   parser stops for good after the first error.
//! - Every error carries the 1-based line number and quotes the offending text (shortened).
//! - Every NaN value comes back as Prometheus's normal NaN (bits 0x7ff8000000000001), never
//!   as the stale marker.
//! - `labels()` depends on the `series` bytes and the format only, so caching by `series`
//!   (per target) is sound.

mod entry;
mod error;
mod parser;
#[cfg(test)]
mod proptests;
mod sample;
mod scan;
#[cfg(test)]
mod tests;

pub use entry::{Entry, Format, MetricType};
pub use error::ParseError;
pub use parser::Parser;
pub use sample::{LabelIter, Sample};
