//! The parse error and the helpers that word it.

use std::fmt::{self, Write as _};

/// Why a body could not be parsed, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, in words (names the offending text, shortened).
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Longest text quoted whole in a message; longer text is cut to a window around the fault.
const QUOTE_WHOLE_MAX: usize = 80;
/// Bytes kept on each side of the fault when the text is cut.
const QUOTE_WINDOW: usize = 32;

impl ParseError {
    /// An error on line `line` about `text`, at byte offset `at` of `text` (it may equal
    /// `text.len()`): "<why> at column <n>: \"<text, shortened>\"".
    pub(super) fn at(line: usize, text: &[u8], at: usize, why: impl fmt::Display) -> ParseError {
        ParseError {
            line,
            message: format!("{why} at column {}: {}", at + 1, quote(text, at)),
        }
    }

    /// An error inside a label block (the text between the braces), at byte offset `at`.
    pub(super) fn in_labels(
        line: usize,
        block: &[u8],
        at: usize,
        why: impl fmt::Display,
    ) -> ParseError {
        ParseError {
            line,
            message: format!(
                "{why} at byte {} of the label block {}",
                at + 1,
                quote(block, at)
            ),
        }
    }

    /// An error that names no position.
    pub(super) fn plain(line: usize, why: impl fmt::Display) -> ParseError {
        ParseError {
            line,
            message: why.to_string(),
        }
    }
}

/// `text` in double quotes with Rust escapes (control characters; bytes that are not UTF-8 as
/// `\xNN`), cut to a window around `at` with `…` where it is long.
pub(super) fn quote(text: &[u8], at: usize) -> String {
    let (from, to) = if text.len() <= QUOTE_WHOLE_MAX {
        (0, text.len())
    } else {
        let at = at.min(text.len());
        let from = at.saturating_sub(QUOTE_WINDOW);
        (from, (at + QUOTE_WINDOW).min(text.len()))
    };
    let mut out = String::with_capacity(to - from + 8);
    out.push('"');
    if from > 0 {
        out.push('…');
    }
    for chunk in text[from..to].utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\'' => out.push(c),
                _ => out.extend(c.escape_debug()),
            }
        }
        for byte in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    if to < text.len() {
        out.push('…');
    }
    out.push('"');
    out
}
