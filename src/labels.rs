//! Label sets: the identity of a series and of a target.
//!
//! Two types, one for each phase of a label set's life:
//!
//! - [`LabelsBuilder`]: mutable, used while a label set is being made (discovery, relabeling,
//!   attaching target labels to a new series). Cheap to edit, not compact.
//! - [`Labels`]: immutable and compact, what the agent keeps for every active series. One heap
//!   allocation holding `len(name) name len(value) value ...` with LEB128 lengths, shared by
//!   clones (a clone is a reference count: the scrape cache and the write-ahead buffer's series
//!   map hold one label set, not two copies).
//!
//! Invariants of [`Labels`] (every constructor upholds them, tests prove them):
//! 1. names are sorted in byte order and unique;
//! 2. no value is empty (an empty value means "no such label", as in Prometheus);
//! 3. the encoded buffer is well formed, so iteration never fails.
//!
//! Two equal label sets have equal bytes, so equality and hashing are byte comparisons.

use std::fmt;

/// The label holding a series' metric name.
pub const METRIC_NAME: &str = "__name__";
/// The target label holding `host:port`.
pub const ADDRESS: &str = "__address__";
/// The target label holding the scheme (`http`, `https`).
pub const SCHEME: &str = "__scheme__";
/// The target label holding the metrics path.
pub const METRICS_PATH: &str = "__metrics_path__";
/// Prefix of target labels that become URL query parameters.
pub const PARAM_PREFIX: &str = "__param_";
/// The target label holding the scrape interval (Prometheus duration form).
pub const SCRAPE_INTERVAL: &str = "__scrape_interval__";
/// The target label holding the scrape timeout (Prometheus duration form).
pub const SCRAPE_TIMEOUT: &str = "__scrape_timeout__";
/// Prefix of discovery meta labels.
pub const META_PREFIX: &str = "__meta_";
/// Prefix of labels removed after relabeling.
pub const RESERVED_PREFIX: &str = "__";
/// The job label.
pub const JOB: &str = "job";
/// The instance label.
pub const INSTANCE: &str = "instance";

/// An immutable, compact, sorted label set. See the module docs for its invariants.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels {
    data: std::sync::Arc<[u8]>,
}

/// One label borrowed from a [`Labels`] or a [`LabelsBuilder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// Iterator over the labels of a [`Labels`], in name order.
#[derive(Clone)]
pub struct Iter<'a> {
    rest: &'a [u8],
}

/// A mutable label set. Names are unique; setting an empty value removes the label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelsBuilder {
    pairs: Vec<(String, String)>,
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a label set from pairs; later duplicates win, empty values are skipped.
    pub fn from_pairs<N, V, I>(pairs: I) -> Self
    where
        N: AsRef<str>,
        V: AsRef<str>,
        I: IntoIterator<Item = (N, V)>,
    {
        let mut builder = LabelsBuilder::new();
        for (name, value) in pairs {
            builder.set(name.as_ref(), value.as_ref());
        }
        builder.build()
    }

    /// The labels in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.data }
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|l| l.name == name).map(|l| l.value)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Size of the encoded form in bytes (for memory accounting).
    pub fn encoded_len(&self) -> usize {
        self.data.len()
    }

    /// A mutable copy.
    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            pairs: self
                .iter()
                .map(|l| (l.name.to_owned(), l.value.to_owned()))
                .collect(),
        }
    }

    /// A stable 64-bit hash of the label set (the same in every process and version that keeps
    /// this encoding). Used for sharding and scrape offsets.
    pub fn stable_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.data)
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Label<'a>;

    fn next(&mut self) -> Option<Label<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let name = take_str(&mut self.rest);
        let value = take_str(&mut self.rest);
        Some(Label { name, value })
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = Label<'a>;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Display for Labels {
    /// Prometheus form: `{a="1", b="x\"y"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=\"{}\"", l.name, l.value.escape_debug())?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl LabelsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `n` labels.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            pairs: Vec::with_capacity(n),
        }
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.remove(name);
            return;
        }
        match self.pairs.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => {
                v.clear();
                v.push_str(value);
            }
            None => self.pairs.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(n, _)| n != name);
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Keeps only the labels for which `keep(name, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.pairs.retain(|(n, v)| keep(n, v));
    }

    /// The labels in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = Label<'_>> {
        self.pairs.iter().map(|(n, v)| Label {
            name: n.as_str(),
            value: v.as_str(),
        })
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Removes every label, keeping the allocation.
    pub fn clear(&mut self) {
        self.pairs.clear();
    }

    /// Freezes into a compact [`Labels`] (sorted by name). The builder is left unchanged.
    pub fn build(&self) -> Labels {
        let mut order: Vec<&(String, String)> = self.pairs.iter().collect();
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let size = order
            .iter()
            .map(|(n, v)| n.len() + v.len() + varint_len(n.len()) + varint_len(v.len()))
            .sum();
        let mut data = Vec::with_capacity(size);
        for (name, value) in order {
            put_str(&mut data, name);
            put_str(&mut data, value);
        }
        Labels { data: data.into() }
    }
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(s.as_bytes());
}

/// Reads one length-prefixed string. The buffer was written by `put_str` from `&str`s, so it is
/// well formed (invariant 3); the fallbacks below are unreachable and keep this panic-free.
fn take_str<'a>(rest: &mut &'a [u8]) -> &'a str {
    let mut len = 0usize;
    let mut shift = 0;
    let mut i = 0;
    while let Some(&b) = rest.get(i) {
        len |= usize::from(b & 0x7f) << shift;
        i += 1;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    let end = (i + len).min(rest.len());
    let bytes = &rest[i..end];
    *rest = &rest[end..];
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sorted_unique_and_no_empty_values() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("b", "3")]);
        let got: Vec<_> = l.iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(got, vec![("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.len(), 2);
        assert_eq!(l.to_string(), r#"{a="1", b="3"}"#);
    }

    #[test]
    fn equal_sets_are_equal_whatever_the_insertion_order() {
        let a = Labels::from_pairs([("x", "1"), ("y", "2")]);
        let b = Labels::from_pairs([("y", "2"), ("x", "1")]);
        assert_eq!(a, b);
        assert_eq!(a.stable_hash(), b.stable_hash());
        assert_ne!(a, Labels::from_pairs([("x", "1"), ("y", "3")]));
    }

    #[test]
    fn long_values_round_trip() {
        let long = "v".repeat(70_000);
        let l = Labels::from_pairs([("a", long.as_str()), ("b", "x")]);
        assert_eq!(l.get("a"), Some(long.as_str()));
        assert_eq!(l.get("b"), Some("x"));
    }

    proptest! {
        #[test]
        fn round_trips(pairs in proptest::collection::vec(("[a-z_]{1,8}", "\\PC{0,20}"), 0..12)) {
            let labels = Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let mut expect: std::collections::BTreeMap<&str, &str> = Default::default();
            for (n, v) in &pairs {
                if v.is_empty() { expect.remove(n.as_str()); } else { expect.insert(n, v); }
            }
            let got: Vec<_> = labels.iter().map(|l| (l.name, l.value)).collect();
            let want: Vec<_> = expect.into_iter().collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(labels.to_builder().build(), labels);
        }
    }
}
