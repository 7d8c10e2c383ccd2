//! Guard rails of one target that never fail its scrape: `series_limit`,
//! `series_limit_per_metric` and `label_limit` with `label_limit_keep`, and what explains them
//! (which family, which label).
//!
//! - [`SeriesLimiter`]: the series a target may send within the last hour. A series is
//!   admitted when it is already counted, or when the target (and its family) has room; a
//!   series counts from its admission until an hour after it was last seen (a live series is
//!   seen now). Memory: one 32-byte entry per counted series, at most the limit.
//! - [`trim`]: which labels a series over `label_limit` keeps.
//! - [`family_of`]: the metric family of a sample name (histogram and summary parts, a
//!   counter's `_total`, count as their family).
//! - [`LabelValues`]: distinct values per label name of one family, bounded, for the
//!   "label user_agent has 4,987 values" of an episode.
//!
//! Invariants:
//! 1. An admitted series is never refused while it is counted: the limits only ever stop
//!    *new* series, so what flowed keeps flowing every scrape.
//! 2. The limiter holds at most `max(series_limit, per-family total)` entries: one per counted
//!    series, none for a refused one.
//! 3. Time is passed in (milliseconds), never read here: tests move it past the window.

use std::collections::{HashMap, HashSet};

use hashbrown::HashTable;

use crate::exposition::MetricType;
use crate::labels::{INSTANCE, JOB, LabelsBuilder, METRIC_NAME};

/// How long a series counts after it was last seen (vmagent's hourly window).
pub(super) const WINDOW_MS: i64 = 3_600_000;
/// How often at most counted series that are no longer seen are looked for.
const SWEEP_EVERY_MS: i64 = 60_000;

/// Why a series limit refused a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    Series,
    PerMetric,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct SeriesLimiter {
    series_limit: usize,
    per_metric: usize,
    entries: HashTable<Entry>,
    /// Counted series per family hash (with `per_metric`).
    families: HashMap<u64, usize>,
    last_sweep_ms: i64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    hash: u64,
    family: u64,
    /// When it was last seen; meaningless while `live`.
    last_seen_ms: i64,
    /// In the target's cache now (seen every scrape).
    live: bool,
}

impl SeriesLimiter {
    /// A limiter, or `None` when both limits are 0 (off).
    pub(super) fn new(series_limit: usize, per_metric: usize) -> Option<Self> {
        (series_limit > 0 || per_metric > 0).then(|| SeriesLimiter {
            series_limit,
            per_metric,
            entries: HashTable::new(),
            families: HashMap::new(),
            last_sweep_ms: i64::MIN,
        })
    }

    /// The target's `series_limit` (0: none).
    pub(super) fn series_limit(&self) -> usize {
        self.series_limit
    }

    /// Series counted now (live, or seen within the window).
    pub(super) fn current(&self) -> usize {
        self.entries.len()
    }

    /// Whether a series (labels hash `hash`, family hash `family`) new to the target's cache
    /// may be sent; if so it is counted (and live) from `now_ms`.
    pub(super) fn admit(&mut self, hash: u64, family: u64, now_ms: i64) -> Result<(), Refusal> {
        if let Some(e) = self.entries.find_mut(hash, |e| e.hash == hash) {
            e.live = true;
            e.last_seen_ms = now_ms;
            return Ok(());
        }
        if self.series_limit > 0 && self.entries.len() >= self.series_limit {
            return Err(Refusal::Series);
        }
        if self.per_metric > 0 {
            let n = self.families.entry(family).or_insert(0);
            if *n >= self.per_metric {
                return Err(Refusal::PerMetric);
            }
            *n += 1;
        }
        self.entries.insert_unique(
            hash,
            Entry {
                hash,
                family,
                last_seen_ms: now_ms,
                live: true,
            },
            |e| e.hash,
        );
        Ok(())
    }

    /// A counted series left the target's cache at `now_ms`: it counts for the window from
    /// then.
    pub(super) fn ended(&mut self, hash: u64, now_ms: i64) {
        if let Some(e) = self.entries.find_mut(hash, |e| e.hash == hash) {
            e.live = false;
            e.last_seen_ms = now_ms;
        }
    }

    /// Stops counting series not seen for the window (at most once a minute). True when room
    /// was freed, so that refused series may be judged anew.
    pub(super) fn sweep(&mut self, now_ms: i64) -> bool {
        if now_ms.saturating_sub(self.last_sweep_ms) < SWEEP_EVERY_MS {
            return false;
        }
        self.last_sweep_ms = now_ms;
        let before = self.entries.len();
        let families = &mut self.families;
        self.entries.retain(|e| {
            let keep = e.live || now_ms.saturating_sub(e.last_seen_ms) < WINDOW_MS;
            if !keep && let Some(n) = families.get_mut(&e.family) {
                *n = n.saturating_sub(1);
            }
            keep
        });
        self.families.retain(|_, n| *n > 0);
        self.entries.shrink_to_fit(|e| e.hash);
        self.entries.len() < before
    }
}

/// Trims `lb` to `limit` labels: `__name__`, `job`, `instance`, then the names of `keep` in
/// order, then the others in name order. Returns whether anything was removed.
pub(super) fn trim(lb: &mut LabelsBuilder, limit: usize, keep: &[String]) -> bool {
    if limit == 0 || lb.len() <= limit {
        return false;
    }
    let mut kept: Vec<&str> = Vec::with_capacity(limit);
    for name in [METRIC_NAME, JOB, INSTANCE]
        .into_iter()
        .chain(keep.iter().map(String::as_str))
    {
        if kept.len() < limit && lb.get(name).is_some() && !kept.contains(&name) {
            kept.push(name);
        }
    }
    if kept.len() < limit {
        let mut rest: Vec<&str> = lb
            .iter()
            .map(|l| l.name)
            .filter(|n| !kept.contains(n))
            .collect();
        rest.sort_unstable();
        rest.truncate(limit - kept.len());
        kept.extend(rest);
    }
    let kept: HashSet<String> = kept.into_iter().map(str::to_owned).collect();
    lb.retain(|name, _| kept.contains(name));
    true
}

/// The family of a sample named `name`: the name without `_bucket`/`_sum`/`_count`/`_created`
/// when the stripped name is a histogram or summary, without `_total` when it is a counter,
/// else the name itself. `kind` looks a family's type up in the target's metadata.
pub(super) fn family_of(name: &str, kind: impl Fn(&str) -> Option<MetricType>) -> &str {
    const PARTS: [(&str, &[MetricType]); 5] = [
        (
            "_bucket",
            &[MetricType::Histogram, MetricType::GaugeHistogram],
        ),
        (
            "_sum",
            &[
                MetricType::Histogram,
                MetricType::GaugeHistogram,
                MetricType::Summary,
            ],
        ),
        (
            "_count",
            &[
                MetricType::Histogram,
                MetricType::GaugeHistogram,
                MetricType::Summary,
            ],
        ),
        (
            "_created",
            &[
                MetricType::Histogram,
                MetricType::Summary,
                MetricType::Counter,
            ],
        ),
        ("_total", &[MetricType::Counter]),
    ];
    for (suffix, kinds) in PARTS {
        if let Some(base) = name.strip_suffix(suffix)
            && kind(base).is_some_and(|k| kinds.contains(&k))
        {
            return base;
        }
    }
    name
}

/// Distinct values per label name of one family, at most [`LabelValues::CAP`] in all.
#[derive(Debug, Default)]
pub(super) struct LabelValues {
    by_name: HashMap<Box<str>, HashSet<u64>>,
    total: usize,
}

impl LabelValues {
    /// Values remembered at most, over all names (8 bytes each).
    pub(super) const CAP: usize = 50_000;

    /// Adds the values of one series' labels (`__name__` aside).
    pub(super) fn add<'a>(&mut self, labels: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (name, value) in labels {
            if name == METRIC_NAME || self.total >= Self::CAP {
                continue;
            }
            let h = xxhash_rust::xxh3::xxh3_64(value.as_bytes());
            let set = match self.by_name.get_mut(name) {
                Some(set) => set,
                None => self.by_name.entry(name.into()).or_default(),
            };
            if set.insert(h) {
                self.total += 1;
            }
        }
    }

    /// The label with the most distinct values and their number (ties: the first name).
    pub(super) fn top(&self) -> Option<(&str, usize)> {
        self.by_name
            .iter()
            .map(|(n, v)| (&**n, v.len()))
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
    }

    /// Whether the bound cut counting short.
    pub(super) fn capped(&self) -> bool {
        self.total >= Self::CAP
    }
}

/// `4987` as `4,987`.
pub(super) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = WINDOW_MS;

    #[test]
    fn admitted_series_keep_flowing_and_new_ones_wait_for_room() {
        let mut l = SeriesLimiter::new(2, 0).expect("on");
        assert_eq!(l.admit(1, 0, 0), Ok(()));
        assert_eq!(l.admit(2, 0, 0), Ok(()));
        assert_eq!(l.admit(3, 0, 0), Err(Refusal::Series));
        assert_eq!(l.admit(1, 0, 10), Ok(()), "invariant 1");
        // Series 2 ends; it still counts for the hour.
        l.ended(2, 1000);
        assert!(!l.sweep(H));
        assert_eq!(l.admit(3, 0, H), Err(Refusal::Series));
        // A minute later, an hour after it was last seen: room for series 3.
        assert!(l.sweep(1000 + H + SWEEP_EVERY_MS));
        assert_eq!(l.current(), 1, "the live series 1 never expires");
        assert_eq!(l.admit(3, 0, 1000 + H + SWEEP_EVERY_MS), Ok(()));
        assert_eq!(l.current(), 2);
    }

    #[test]
    fn per_metric_limits_each_family_alone() {
        let mut l = SeriesLimiter::new(0, 2).expect("on");
        assert_eq!(l.admit(1, 7, 0), Ok(()));
        assert_eq!(l.admit(2, 7, 0), Ok(()));
        assert_eq!(l.admit(3, 7, 0), Err(Refusal::PerMetric));
        assert_eq!(l.admit(4, 8, 0), Ok(()), "another family has its own room");
        l.ended(1, 0);
        l.ended(2, 0);
        assert!(l.sweep(H + 1));
        assert_eq!(l.admit(3, 7, H + 1), Ok(()));
        assert_eq!(l.families.get(&7), Some(&1));
    }

    #[test]
    fn the_limiter_holds_no_more_entries_than_its_limit() {
        let mut l = SeriesLimiter::new(100, 0).expect("on");
        for h in 0..10_000 {
            let _ = l.admit(h, 0, 0);
        }
        assert_eq!(l.current(), 100, "invariant 2");
        assert!(SeriesLimiter::new(0, 0).is_none());
    }

    #[test]
    fn trim_keeps_the_identity_then_the_listed_then_by_name() {
        let mut lb = LabelsBuilder::new();
        for (n, v) in [
            ("__name__", "req_total"),
            ("zone", "z"),
            ("user_agent", "curl"),
            ("method", "GET"),
            ("instance", "a:1"),
            ("job", "app"),
            ("code", "200"),
        ] {
            lb.set(n, v);
        }
        let keep = vec!["method".to_owned(), "missing".to_owned()];
        assert!(trim(&mut lb, 5, &keep));
        let mut names: Vec<&str> = lb.iter().map(|l| l.name).collect();
        names.sort_unstable();
        assert_eq!(names, ["__name__", "code", "instance", "job", "method"]);
        assert!(!trim(&mut lb, 5, &keep), "within the limit: untouched");
    }

    #[test]
    fn families_group_their_parts() {
        let kind = |f: &str| match f {
            "rpc" => Some(MetricType::Histogram),
            "lat" => Some(MetricType::Summary),
            "req" => Some(MetricType::Counter),
            _ => None,
        };
        assert_eq!(family_of("rpc_bucket", kind), "rpc");
        assert_eq!(family_of("rpc_count", kind), "rpc");
        assert_eq!(family_of("lat_sum", kind), "lat");
        assert_eq!(family_of("lat", kind), "lat");
        assert_eq!(family_of("req_total", kind), "req");
        assert_eq!(family_of("other_bucket", kind), "other_bucket");
    }

    #[test]
    fn label_values_rank_and_stay_bounded() {
        let mut v = LabelValues::default();
        for i in 0..10 {
            let ua = format!("ua{i}");
            v.add([("__name__", "x"), ("method", "GET"), ("user_agent", &*ua)]);
        }
        assert_eq!(v.top(), Some(("user_agent", 10)));
        for i in 0..(LabelValues::CAP + 10) {
            let ua = format!("more{i}");
            v.add([("user_agent", &*ua)]);
        }
        assert!(v.capped());
        assert_eq!(v.total, LabelValues::CAP);
        assert_eq!(thousands(4987), "4,987");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
