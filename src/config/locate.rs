//! Where things are in the YAML text: dotted key paths <-> lines.
//!
//! serde-saphyr reports a syntax or type error with a position but no key path, and a
//! `Spanned` value knows its own line but not the line of its key (a block mapping value starts
//! on the line after its key). [`KeyIndex`] walks the parser's events once and records, for every
//! node of the first document, its dotted path (`scrape_configs[1].scrape_timeout`), its offset
//! and the line of the key that introduced it, so both questions have an answer.
//!
//! Paths: mapping keys are joined with `.`, sequence items as `[i]` (0-based), the document
//! root is the empty path. A non-scalar key shows as `?`. Alias nodes are recorded where the
//! alias is written; what they expand to is not walked.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// Every node of the first YAML document with its path, offset and key line.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    /// In document order.
    nodes: Vec<Node>,
    /// Path -> line of its key (or of the item itself in a sequence); first occurrence wins.
    lines: HashMap<String, u64>,
}

#[derive(Debug)]
struct Node {
    /// Character offset of the node's first character.
    offset: u64,
    path: String,
}

struct Frame {
    path: String,
    kind: Kind,
    /// This collection is itself a mapping key (rare YAML): its end does not end a value.
    is_key: bool,
}

enum Kind {
    /// `key` is the key whose value comes next (with its line), None while a key is awaited.
    Mapping {
        key: Option<(String, u64)>,
    },
    Sequence {
        next: usize,
    },
}

/// The path to show for the document root.
pub(crate) const ROOT: &str = "(root)";

impl KeyIndex {
    /// Indexes `text` up to the end of its first document or its first syntax error.
    pub(crate) fn build(text: &str) -> KeyIndex {
        let mut index = KeyIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let offset = span.start.index() as u64;
            let line = span.start.line() as u64;
            match event {
                Event::DocumentEnd => break,
                Event::Scalar(value, ..) => {
                    if let Some(key) = awaited_key(&mut stack) {
                        // A key: it names the next value, and "unknown field" points at it.
                        *key = Some((value.into_owned(), line));
                        let path = index.value_path(&stack, line);
                        index.push(offset, path);
                    } else {
                        let path = index.value_path(&stack, line);
                        index.push(offset, path);
                        after_value(&mut stack);
                    }
                }
                Event::Alias(_) => {
                    let path = index.value_path(&stack, line);
                    index.push(offset, path);
                    after_value(&mut stack);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let is_key = if let Some(key) = awaited_key(&mut stack) {
                        // A complex key: give it a placeholder name.
                        *key = Some(("?".to_owned(), line));
                        true
                    } else {
                        false
                    };
                    let path = index.value_path(&stack, line);
                    index.push(offset, path.clone());
                    let kind = if matches!(event, Event::MappingStart(..)) {
                        Kind::Mapping { key: None }
                    } else {
                        Kind::Sequence { next: 0 }
                    };
                    stack.push(Frame { path, kind, is_key });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    let ended = stack.pop();
                    // A collection that was a complex key does not complete a value.
                    if ended.is_some_and(|frame| !frame.is_key) {
                        after_value(&mut stack);
                    }
                }
                _ => {}
            }
        }
        index
    }

    /// The line of the key at `path`, or of the nearest enclosing key that is in the text
    /// (paths that come from an alias or a merge key are not). 0 when nothing matches.
    pub(crate) fn line_of(&self, path: &str) -> u64 {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return *line;
            }
            match parent(path) {
                Some(p) => path = p,
                None => return 0,
            }
        }
    }

    /// The line of the key at exactly `path`, if it is written in the text.
    pub(crate) fn exact_line(&self, path: &str) -> Option<u64> {
        self.lines.get(path).copied()
    }

    /// The path of the node at `offset` (or the last one before it). Where a mapping starts at
    /// its first key, `innermost` picks the key rather than the mapping.
    pub(super) fn path_at(&self, offset: u64, innermost: bool) -> Option<&str> {
        let end = self.nodes.partition_point(|n| n.offset <= offset);
        let last = self.nodes.get(end.checked_sub(1)?)?;
        if innermost {
            return Some(&last.path);
        }
        let first = self.nodes[..end]
            .iter()
            .find(|n| n.offset == last.offset)
            .unwrap_or(last);
        Some(&first.path)
    }

    /// The path of the node about to be read under the top frame (a value, or a key just
    /// seen), remembering the line of the key that introduced it.
    fn value_path(&mut self, stack: &[Frame], line: u64) -> String {
        let (path, key_line) = match stack.last() {
            None => (String::new(), line),
            Some(Frame {
                path,
                kind: Kind::Mapping { key },
                ..
            }) => match key {
                Some((k, key_line)) => (join(path, k), *key_line),
                None => (join(path, "?"), line),
            },
            Some(Frame {
                path,
                kind: Kind::Sequence { next },
                ..
            }) => (format!("{path}[{next}]"), line),
        };
        self.lines.entry(path.clone()).or_insert(key_line);
        path
    }

    fn push(&mut self, offset: u64, path: String) {
        self.nodes.push(Node { offset, path });
    }
}

/// The top frame's key slot when it is a mapping waiting for a key.
fn awaited_key(stack: &mut [Frame]) -> Option<&mut Option<(String, u64)>> {
    match stack.last_mut() {
        Some(Frame {
            kind: Kind::Mapping { key: key @ None },
            ..
        }) => Some(key),
        _ => None,
    }
}

/// A value is complete: its mapping awaits the next key, its sequence the next item.
fn after_value(stack: &mut [Frame]) {
    match stack.last_mut().map(|f| &mut f.kind) {
        Some(Kind::Mapping { key }) => *key = None,
        Some(Kind::Sequence { next }) => *next += 1,
        None => {}
    }
}

/// `parent.child`, or `child` at the root.
fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// The enclosing path: `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> root.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']')
        && let Some(i) = path.rfind('[')
    {
        return Some(&path[..i]);
    }
    Some(path.rfind('.').map_or("", |i| &path[..i]))
}
