//! Label sets: the identity of a series and of a target.
//!
//! Two types, one for each phase of a label set's life:
//!
//! - [`LabelsBuilder`]: mutable, used while a label set is being made (discovery, relabeling,
//!   attaching target labels to a new series). Cheap to edit, not compact.
//! - [`Labels`]: immutable and compact, what the agent keeps for every active series: an
//!   array of [`Pair`]s (one pointer each), shared by clones (a clone is a reference count: the
//!   scrape cache, the write-ahead buffer's series map and every endpoint's queue hold one
//!   label set, not copies).
//!
//! Pairs are symbols: every distinct `name="value"` is held once for the whole process (the
//! interner), however many series and targets carry it (`job="app"`, `le="0.5"`, a pod's
//! `namespace`), and shared by pointer. A pair no label set uses any more is freed by the
//! interner's next sweep, which runs when the interner has doubled since the last one, so
//! the pairs held are at most about twice the pairs in use (a pod's departure frees its
//! strings).
//!
//! Invariants of [`Labels`] (every constructor upholds them, tests prove them):
//! 1. names are sorted in byte order and unique;
//! 2. no value is empty (an empty value means "no such label", as in Prometheus);
//! 3. each pair is the interner's: two equal pairs are the same pointer, so two equal label
//!    sets hold the same pointers and equality is a pointer comparison per pair.
//!
//! Lock: the interner's mutex, held only while a label set is built (a lookup per pair) or
//! swept; never while labels are read.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

use hashbrown::HashTable;

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
#[derive(Clone, Default)]
pub struct Labels {
    pairs: Arc<[Pair]>,
}

/// One interned `name="value"`. Cheap to clone (a reference count); equal pairs are the same
/// pointer (invariant 3).
#[derive(Clone)]
pub struct Pair(Arc<PairData>);

struct PairData {
    /// The name, then the value.
    text: Box<str>,
    name_len: u32,
    /// Of (name, value), as [`pair_hash`] computes it.
    hash: u64,
    /// The pair as a remote-write `TimeSeries.labels` field (see [`Pair::write_field`]).
    wire: Box<[u8]>,
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
    pairs: std::slice::Iter<'a, Pair>,
}

/// A mutable label set. Names are unique; setting an empty value removes the label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelsBuilder {
    pairs: Vec<(String, String)>,
}

/// The process's pairs (see the module docs).
struct Interner {
    table: HashTable<Pair>,
    /// The table is swept when it holds this many pairs.
    sweep_at: usize,
}

/// The smallest table size at which the interner sweeps.
const SWEEP_MIN: usize = 4096;

static INTERNER: LazyLock<Mutex<Interner>> = LazyLock::new(|| Mutex::new(Interner::new()));

impl Pair {
    /// The label's name.
    pub fn name(&self) -> &str {
        self.0
            .text
            .get(..self.0.name_len as usize)
            .unwrap_or_default()
    }

    /// The label's value.
    pub fn value(&self) -> &str {
        self.0
            .text
            .get(self.0.name_len as usize..)
            .unwrap_or_default()
    }

    fn label(&self) -> Label<'_> {
        Label {
            name: self.name(),
            value: self.value(),
        }
    }

    /// The encoded size of the pair as a remote-write `TimeSeries.labels` field (a `Label`
    /// message: `name = 1`, `value = 2`; proto3 leaves empty strings out).
    pub fn field_len(&self) -> usize {
        self.0.wire.len()
    }

    /// Appends the pair as a remote-write `TimeSeries.labels` field: the bytes prost writes,
    /// made when the pair was interned.
    pub fn write_field(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.wire);
    }
}

/// A pair as a remote-write `TimeSeries.labels` field: `0x0a len(Label)`, then the `Label`
/// message, `0x0a len(name) name 0x12 len(value) value` (proto3 leaves empty strings out).
fn wire_field(name: &str, value: &str) -> Box<[u8]> {
    let field = |n: usize| {
        if n == 0 {
            0
        } else {
            1 + varint_len(n as u64) + n
        }
    };
    let inner = field(name.len()) + field(value.len());
    let mut out = Vec::with_capacity(1 + varint_len(inner as u64) + inner);
    out.push(0x0a);
    put_varint(&mut out, inner as u64);
    for (tag, s) in [(0x0a, name), (0x12, value)] {
        if !s.is_empty() {
            out.push(tag);
            put_varint(&mut out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
    out.into_boxed_slice()
}

/// Bytes of `v` as a varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Pair {}

impl Hash for Pair {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=\"{}\"", self.name(), self.value().escape_debug())
    }
}

/// The hash a pair is interned under.
fn pair_hash(name: &str, value: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(name.as_bytes());
    h.update(&[0xff]);
    h.update(value.as_bytes());
    h.digest()
}

impl Interner {
    fn new() -> Self {
        Interner {
            table: HashTable::new(),
            sweep_at: SWEEP_MIN,
        }
    }

    fn lock() -> std::sync::MutexGuard<'static, Interner> {
        // Every edit completes without a panicking step in between.
        INTERNER.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pair `name="value"`, interned.
    fn intern(&mut self, name: &str, value: &str) -> Pair {
        let hash = pair_hash(name, value);
        if let Some(p) = self.table.find(hash, |p| {
            p.0.hash == hash && p.name() == name && p.value() == value
        }) {
            return p.clone();
        }
        if self.table.len() >= self.sweep_at {
            // Only the table holds a pair whose count is 1: no one can clone it meanwhile.
            self.table.retain(|p| Arc::strong_count(&p.0) > 1);
            self.table.shrink_to_fit(|p| p.0.hash);
            self.sweep_at = (2 * self.table.len()).max(SWEEP_MIN);
        }
        let mut text = String::with_capacity(name.len() + value.len());
        text.push_str(name);
        text.push_str(value);
        let pair = Pair(Arc::new(PairData {
            wire: wire_field(name, value),
            text: text.into_boxed_str(),
            name_len: u32::try_from(name.len()).unwrap_or(u32::MAX),
            hash,
        }));
        self.table.insert_unique(hash, pair.clone(), |p| p.0.hash);
        pair
    }
}

/// Pairs the interner holds (tests, memory accounting).
pub fn interned_pairs() -> usize {
    Interner::lock().table.len()
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
        Iter {
            pairs: self.pairs.iter(),
        }
    }

    /// The pairs in name order.
    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|l| l.name == name).map(|l| l.value)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Bytes of the names and values (for memory accounting).
    pub fn encoded_len(&self) -> usize {
        self.pairs.iter().map(|p| p.0.text.len()).sum()
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

    /// A stable 64-bit hash of the label set (the same in every process and version that
    /// hashes names and values this way). Used for scrape offsets and cache keys.
    pub fn stable_hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for p in self.pairs.iter() {
            h.update(p.0.text.as_bytes());
            h.update(&p.0.name_len.to_le_bytes());
        }
        h.digest()
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.pairs.len() == other.pairs.len()
            && self
                .pairs
                .iter()
                .zip(other.pairs.iter())
                .all(|(a, b)| a == b)
    }
}

impl Eq for Labels {}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.pairs.len());
        for p in self.pairs.iter() {
            state.write_u64(p.0.hash);
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Label<'a>;

    fn next(&mut self) -> Option<Label<'a>> {
        self.pairs.next().map(Pair::label)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.pairs.size_hint()
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

    /// Freezes into a compact [`Labels`] (sorted by name, pairs interned). The builder is
    /// left unchanged.
    pub fn build(&self) -> Labels {
        let mut order: Vec<&(String, String)> = self.pairs.iter().collect();
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut interner = Interner::lock();
        let pairs: Vec<Pair> = order
            .into_iter()
            .map(|(name, value)| interner.intern(name, value))
            .collect();
        drop(interner);
        Labels {
            pairs: pairs.into(),
        }
    }
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
    fn equal_pairs_are_one_and_pairs_no_one_uses_are_swept() {
        let mut interner = Interner::new();
        let a = interner.intern("job", "x");
        let b = interner.intern("job", "x");
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_ne!(interner.intern("job", "y"), a);
        assert_eq!((a.name(), a.value()), ("job", "x"));
        drop(b);
        for n in 0..SWEEP_MIN {
            drop(interner.intern("k", &n.to_string()));
        }
        let c = interner.intern("new", "1");
        assert!(
            interner.table.len() < SWEEP_MIN / 2,
            "swept: {}",
            interner.table.len()
        );
        assert!(Arc::ptr_eq(&interner.intern("job", "x").0, &a.0), "kept");
        assert!(Arc::ptr_eq(&interner.intern("new", "1").0, &c.0), "kept");
    }

    #[test]
    fn label_sets_share_their_pairs() {
        let a = Labels::from_pairs([("job", "shared-pair-test"), ("instance", "a")]);
        let b = Labels::from_pairs([("instance", "b"), ("job", "shared-pair-test")]);
        let job = |l: &Labels| l.pairs().iter().find(|p| p.name() == "job").cloned();
        let (ja, jb) = (job(&a), job(&b));
        assert!(matches!((&ja, &jb), (Some(x), Some(y)) if Arc::ptr_eq(&x.0, &y.0)));
        assert_ne!(a, b);
        let mut hashes = std::collections::HashSet::new();
        hashes.insert(a.clone());
        assert!(hashes.contains(&Labels::from_pairs([
            ("job", "shared-pair-test"),
            ("instance", "a")
        ])));
        assert!(!hashes.contains(&b));
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
