//! The per-target series cache: raw series text -> series, and staleness tracking.
//!
//! On the second scrape of a target a known line maps straight to its [`SeriesRef`]: one hash
//! of the raw bytes, no allocation, no label parsing.
//!
//! A target serves its lines in the same order scrape after scrape, so the cache keeps the
//! last scrape's lines in order (`order`: each line's hash and its slot) and expects each line
//! where it was: a steady scrape is a walk through one array, without a hash table at all.
//! Only when a line is not where it was expected (a series came or went, the target reordered
//! its output) is an index of `order` built, for the rest of that scrape; after it, `order`
//! becomes this scrape's sequence and the index is dropped.
//!
//! `slots` holds one entry per distinct final label set; `by_labels` maps a final label set's
//! hash to its slot, so that two raw texts that end up as the same series (metric relabeling
//! removed what told them apart, or a trailing comma) share one series.
//!
//! The raw text itself is not kept: a line is known by a 96-bit hash of it (xxh3, seeded per
//! cache with a random seed, so that a target cannot craft two texts that collide): 16 bytes
//! where the text took its own allocation. Two different texts of one target would have to
//! share all 96 bits to be confused; and a target can only ever confuse its own series.
//!
//! Invariants:
//! 1. Every live slot's ref was announced to the appender (in a committed batch) or belongs to
//!    the current scrape, which either commits ([`SeriesCache::commit`]) or is abandoned
//!    ([`SeriesCache::abandon`]).
//! 2. After `commit`, `order` holds exactly that scrape's lines, in order; every live slot
//!    was seen in it or has been ended (stale marker if it was tracked, listed as gone, freed).
//! 3. A slot is seen at most once per scrape; a second sample for it is a duplicate.
//! 4. Memory follows the live series: arrays are trimmed when they hold much more room than
//!    lines or slots, and the index exists only during a scrape that needed it.
//! 6. A failed scrape keeps the cache ([`SeriesCache::fail`]): the series it created (never
//!    announced) are forgotten, the others stay, each tracked one marked stale once (not
//!    again until a scrape commits), and `order` stays the last committed scrape's. So a
//!    target that keeps failing (`sample_limit`, a parse error half-way) neither rebuilds its
//!    labels every scrape nor sends a marker every scrape.
//! 7. A line a series limit refused maps to a marker (`LIMITED_*`), so the next scrapes count
//!    it without building its labels; [`SeriesCache::forget_limited`] drops those lines when
//!    the limiter has room again, so they are judged anew.
//! 5. A slot holds no timestamp: a series whose samples carry none was last seen at the last
//!    committed scrape (every live slot was seen in it, invariant 2) or at the current one;
//!    only series with explicit timestamps (or one refused as out of order) keep theirs, in
//!    `explicit` (a federation-like target; usually empty).

use std::collections::HashMap;

use hashbrown::HashTable;

use crate::append::{Sample, SeriesRef, SeriesRefs, stale_nan};
use crate::labels::Labels;

/// What a raw series text maps to in the current scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Not cached: build its labels and call [`SeriesCache::insert`].
    Miss,
    /// Dropped by metric relabeling.
    Dropped,
    /// Refused by a series limit (which one: [`Limited`]).
    Limited(Limited),
    /// A series already seen in this scrape.
    Duplicate(SeriesRef),
    /// A timestamp not after the series' previous one (would break per-series order).
    OutOfOrder,
    /// The series to append to.
    Series(SeriesRef),
}

pub(super) struct SeriesCache {
    /// The last committed scrape's lines, in order (invariant 2).
    order: Vec<Line>,
    /// The current scrape's lines from the first one not where `order` expected it (`order`
    /// up to `diverged` stays as it is).
    changed: Vec<Line>,
    /// Where in `order` the current scrape left it, if it did.
    diverged: Option<usize>,
    /// The index in `order` of the line expected next.
    expect: usize,
    /// `order`'s lines by hash, built when the current scrape first diverged.
    index: Option<HashTable<u32>>,
    /// Seeds the raw texts' hashes (see the module docs).
    seed: u64,
    slots: Vec<Slot>,
    /// Live slots by their labels' hash.
    by_labels: HashTable<u32>,
    free: Vec<u32>,
    /// The current scrape's number; starts at 1 (wrapping; only compared for equality).
    iter: u32,
    /// Refs from this one on were allocated during the current scrape.
    scrape_refs: u64,
    /// The current scrape's timestamp (of its samples without one of their own).
    scrape_ts: i64,
    /// The last committed scrape's timestamp.
    committed_ts: i64,
    /// Timestamps of slots whose samples carry their own (invariant 5), by slot.
    explicit: HashMap<u32, Times>,
    slots_seen: usize,
    live: usize,
    /// Set by a failed scrape: every tracked series got a stale marker then (invariant 6).
    marked_stale: bool,
    /// Labels hashes of series that ended, collected for the series limiter when `Some`.
    ended: Option<Vec<u64>>,
}

/// One line of a scrape: its raw text's hash and what it maps to.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Line {
    hash: u64,
    check: u32,
    /// [`DROPPED`] when metric relabeling drops the text.
    slot: u32,
}

/// [`Line::slot`] of a text metric relabeling drops.
const DROPPED: u32 = u32::MAX;
/// [`Line::slot`] of a text `series_limit` refused.
const LIMITED_SERIES: u32 = u32::MAX - 1;
/// [`Line::slot`] of a text `series_limit_per_metric` refused.
const LIMITED_METRIC: u32 = u32::MAX - 2;
/// Slot numbers from here on are markers, not slots.
const FIRST_MARKER: u32 = LIMITED_METRIC;

/// Which series limit refused a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Limited {
    /// The target's `series_limit`.
    Series,
    /// The family's `series_limit_per_metric`.
    PerMetric,
}

struct Slot {
    sref: SeriesRef,
    labels: Labels,
    /// The scrape that last saw it.
    last_iter: u32,
    /// Whether the last sample had no explicit timestamp (only those get stale markers).
    track_staleness: bool,
    live: bool,
    /// Its timestamps are in `SeriesCache::explicit` (invariant 5).
    explicit: bool,
    /// No sample of it was accepted yet.
    fresh: bool,
}

/// The timestamps of a slot in `SeriesCache::explicit`.
#[derive(Clone, Copy, Debug)]
struct Times {
    /// Of the last accepted sample; samples must come strictly after it.
    last: i64,
    /// `last` before the current scrape changed it (what was committed, if the current scrape
    /// is abandoned).
    prev: i64,
}

impl SeriesCache {
    pub(super) fn new() -> Self {
        SeriesCache {
            order: Vec::new(),
            changed: Vec::new(),
            diverged: None,
            expect: 0,
            index: None,
            seed: rand::random(),
            slots: Vec::new(),
            by_labels: HashTable::new(),
            free: Vec::new(),
            iter: 0,
            scrape_refs: 0,
            scrape_ts: i64::MIN,
            committed_ts: i64::MIN,
            explicit: HashMap::new(),
            slots_seen: 0,
            live: 0,
            marked_stale: false,
            ended: None,
        }
    }

    /// Collects the labels hash of every series that ends from now on (see
    /// [`SeriesCache::take_ended`]).
    pub(super) fn track_ended(&mut self) {
        self.ended.get_or_insert_with(Vec::new);
    }

    /// The labels hashes of series that ended since the last call (with `track_ended`).
    pub(super) fn take_ended(&mut self) -> Vec<u64> {
        self.ended.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Whether a live series has these labels.
    pub(super) fn contains(&self, labels: &Labels) -> bool {
        let slots = &self.slots;
        self.by_labels
            .find(labels.stable_hash(), |&s| {
                slots[s as usize].labels == *labels
            })
            .is_some()
    }

    /// The labels of every live series.
    pub(super) fn live_labels(&self) -> impl Iterator<Item = &Labels> {
        self.slots.iter().filter(|s| s.live).map(|s| &s.labels)
    }

    /// Refs from this one on were created by the current (or last) scrape.
    pub(super) fn first_ref_of_scrape(&self) -> u64 {
        self.scrape_refs
    }

    /// Forgets every line a series limit refused, so that they are judged anew (invariant 7).
    /// Between scrapes only.
    pub(super) fn forget_limited(&mut self) {
        self.order
            .retain(|l| l.slot != LIMITED_SERIES && l.slot != LIMITED_METRIC);
    }

    /// Number of live series.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Starts a scrape at `ts` (the timestamp of its samples without one of their own).
    pub(super) fn begin(&mut self, ts: i64) {
        self.scrape_ts = ts;
        self.iter = self.iter.wrapping_add(1);
        self.slots_seen = 0;
        self.expect = 0;
        self.diverged = None;
        self.changed.clear();
        self.index = None;
        self.scrape_refs = SeriesRef::allocate().0;
    }

    /// Looks up a raw series text for a sample at `ts` and marks it seen.
    pub(super) fn lookup(&mut self, raw: &[u8], ts: i64, explicit_ts: bool) -> Lookup {
        let line = self.line(raw, 0);
        let expected = self
            .order
            .get(self.expect)
            .filter(|o| o.hash == line.hash && o.check == line.check);
        let found = match expected {
            Some(o) => {
                self.expect += 1;
                Some(o.slot)
            }
            None => {
                let at = self.find(line);
                if let Some(i) = at {
                    self.expect = i + 1;
                }
                at.map(|i| self.order[i].slot)
            }
        };
        let Some(slot) = found else {
            return Lookup::Miss;
        };
        if self.diverged.is_some() {
            self.changed.push(Line { slot, ..line });
        }
        match slot {
            DROPPED => Lookup::Dropped,
            LIMITED_SERIES => Lookup::Limited(Limited::Series),
            LIMITED_METRIC => Lookup::Limited(Limited::PerMetric),
            slot => self.see(slot, ts, explicit_ts),
        }
    }

    /// Remembers that `raw` is dropped by metric relabeling.
    pub(super) fn insert_dropped(&mut self, raw: &[u8]) {
        let line = self.line(raw, DROPPED);
        self.add_line(line);
    }

    /// Remembers that a series limit refused `raw` (invariant 7).
    pub(super) fn insert_limited(&mut self, raw: &[u8], which: Limited) {
        let marker = match which {
            Limited::Series => LIMITED_SERIES,
            Limited::PerMetric => LIMITED_METRIC,
        };
        let line = self.line(raw, marker);
        self.add_line(line);
    }

    /// Caches a new raw series text with its final labels. A series with these labels may
    /// already exist (then it is shared); otherwise a ref is allocated and the series pushed
    /// to `new_series`.
    pub(super) fn insert(
        &mut self,
        raw: &[u8],
        labels: Labels,
        ts: i64,
        explicit_ts: bool,
        refs: &SeriesRefs,
        new_series: &mut Vec<(SeriesRef, Labels)>,
    ) -> Lookup {
        let lhash = labels.stable_hash();
        let slots = &self.slots;
        let existing = self
            .by_labels
            .find(lhash, |&s| slots[s as usize].labels == labels)
            .copied();
        let slot = match existing {
            Some(s) => s,
            None => {
                let sref = refs.allocate();
                new_series.push((sref, labels.clone()));
                let entry = Slot {
                    sref,
                    labels,
                    last_iter: self.iter.wrapping_sub(1),
                    track_staleness: !explicit_ts,
                    live: true,
                    explicit: false,
                    fresh: true,
                };
                let s = match self.free.pop() {
                    Some(s) => {
                        self.slots[s as usize] = entry;
                        s
                    }
                    None => {
                        self.slots.push(entry);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.live += 1;
                let slots = &self.slots;
                self.by_labels.insert_unique(lhash, s, |&i| {
                    slots.get(i as usize).map_or(0, |s| s.labels.stable_hash())
                });
                s
            }
        };
        let line = self.line(raw, slot);
        self.add_line(line);
        self.see(slot, ts, explicit_ts)
    }

    /// Ends a successful scrape: series not seen get a stale marker at `ts` (when tracked)
    /// and are listed in `gone`; `order` becomes this scrape's lines.
    pub(super) fn commit(&mut self, ts: i64, samples: &mut Vec<Sample>, gone: &mut Vec<SeriesRef>) {
        if self.slots_seen != self.live {
            let iter = self.iter;
            for s in 0..self.slots.len() {
                let slot = &self.slots[s];
                if slot.live && slot.last_iter != iter {
                    self.end_slot(s as u32, ts, samples, gone);
                }
            }
        }
        self.committed_ts = ts;
        self.marked_stale = false;
        if !self.explicit.is_empty() {
            // Slots whose last sample was the scrape's own timestamp need no entry any more.
            let slots = &mut self.slots;
            self.explicit.retain(|&s, times| {
                let Some(slot) = slots.get_mut(s as usize) else {
                    return false;
                };
                let keep = slot.live && times.last != ts;
                slot.explicit = keep;
                keep
            });
        }
        match self.diverged {
            Some(at) => {
                self.order.truncate(at);
                self.order.append(&mut self.changed);
            }
            // Lines at the end that did not come.
            None => self.order.truncate(self.expect),
        }
        self.index = None;
        trim(&mut self.order);
        trim(&mut self.changed);
        if self.free.len() > self.slots.len() / 4 {
            self.compact();
        }
    }

    /// Ends a failed scrape (invariant 6): the series it created are forgotten unannounced;
    /// every other series stays, and each tracked one gets a stale marker at `ts` unless a
    /// failed scrape since the last commit gave it one.
    pub(super) fn fail(&mut self, ts: i64, samples: &mut Vec<Sample>) {
        let iter = self.iter;
        let mut forget = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !slot.live {
                continue;
            }
            // Refs allocated during this scrape were never announced.
            if slot.sref.0 >= self.scrape_refs {
                forget.push(i as u32);
                continue;
            }
            let times = self.explicit.get_mut(&(i as u32));
            let committed_ts = match times {
                Some(t) if slot.explicit && slot.last_iter == iter => {
                    // What this scrape accepted is not kept.
                    t.last = t.prev;
                    t.prev
                }
                Some(t) if slot.explicit => t.last,
                _ => self.committed_ts,
            };
            if slot.track_staleness && ts > committed_ts && !self.marked_stale {
                samples.push(stale(slot.sref, ts));
            }
            // Seen in no scrape since; the next one is judged against the last commit.
            slot.last_iter = iter.wrapping_sub(1);
        }
        for s in forget {
            self.forget_slot(s);
        }
        self.marked_stale = true;
        self.changed.clear();
        self.diverged = None;
        self.index = None;
    }

    /// Ends every series (the target went away): stale markers at `ts` and `gone` for all.
    pub(super) fn end_all(
        &mut self,
        ts: i64,
        samples: &mut Vec<Sample>,
        gone: &mut Vec<SeriesRef>,
    ) {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.live {
                if slot.track_staleness && ts > self.last_ts(i as u32, slot) && !self.marked_stale {
                    samples.push(stale(slot.sref, ts));
                }
                gone.push(slot.sref);
            }
        }
        self.clear();
    }

    /// When `slot` (number `i`) last had a sample accepted (invariant 5).
    fn last_ts(&self, i: u32, slot: &Slot) -> i64 {
        if slot.fresh {
            i64::MIN
        } else if slot.explicit {
            self.explicit.get(&i).map_or(i64::MIN, |t| t.last)
        } else if slot.last_iter == self.iter {
            self.scrape_ts
        } else {
            self.committed_ts
        }
    }

    fn clear(&mut self) {
        *self = SeriesCache {
            seed: self.seed,
            iter: self.iter,
            scrape_ts: self.scrape_ts,
            ..SeriesCache::new()
        };
    }

    fn see(&mut self, slot: u32, ts: i64, explicit_ts: bool) -> Lookup {
        let Some(s) = self.slots.get(slot as usize) else {
            return Lookup::Miss;
        };
        if s.last_iter == self.iter {
            return Lookup::Duplicate(s.sref);
        }
        let prev = self.last_ts(slot, s);
        let sref = s.sref;
        let was_explicit = s.explicit;
        let accepted = ts > prev;
        // Invariant 5: a slot keeps its own timestamps when its sample has one, when it had
        // one, or when its sample is refused (its last accepted timestamp stays `prev`).
        let own = explicit_ts || was_explicit || !accepted;
        let s = &mut self.slots[slot as usize];
        s.last_iter = self.iter;
        s.track_staleness = !explicit_ts;
        s.explicit = own;
        s.fresh &= !accepted;
        self.slots_seen += 1;
        if own {
            let last = if accepted { ts } else { prev };
            self.explicit.insert(slot, Times { last, prev });
        }
        if !accepted {
            return Lookup::OutOfOrder;
        }
        Lookup::Series(sref)
    }

    /// The line of a raw series text (see the module docs for the hash).
    fn line(&self, raw: &[u8], slot: u32) -> Line {
        let h = xxhash_rust::xxh3::xxh3_128_with_seed(raw, self.seed);
        Line {
            hash: h as u64,
            check: (h >> 64) as u32,
            slot,
        }
    }

    /// Where `line` is in `order`, once the scrape has left the expected sequence.
    fn find(&mut self, line: Line) -> Option<usize> {
        if self.diverged.is_none() {
            self.diverged = Some(self.expect);
        }
        let order = &self.order;
        let index = self.index.get_or_insert_with(|| {
            let mut index = HashTable::with_capacity(order.len());
            for (i, l) in order.iter().enumerate() {
                index.insert_unique(l.hash, i as u32, |&j| order[j as usize].hash);
            }
            index
        });
        index
            .find(line.hash, |&i| {
                let o = &order[i as usize];
                o.hash == line.hash && o.check == line.check
            })
            .map(|&i| i as usize)
    }

    /// A line that was not in `order`: the scrape has left the expected sequence.
    fn add_line(&mut self, line: Line) {
        if self.diverged.is_none() {
            self.diverged = Some(self.expect);
        }
        self.changed.push(line);
    }

    fn end_slot(&mut self, s: u32, ts: i64, samples: &mut Vec<Sample>, gone: &mut Vec<SeriesRef>) {
        let last = self.last_ts(s, &self.slots[s as usize]);
        let slot = &self.slots[s as usize];
        if slot.track_staleness && ts > last && !self.marked_stale {
            samples.push(stale(slot.sref, ts));
        }
        gone.push(slot.sref);
        self.forget_slot(s);
    }

    /// Frees slot `s` (its series ended, or was never announced).
    fn forget_slot(&mut self, s: u32) {
        let slot = &mut self.slots[s as usize];
        slot.live = false;
        slot.explicit = false;
        self.explicit.remove(&s);
        let lhash = std::mem::take(&mut slot.labels).stable_hash();
        if let Some(ended) = &mut self.ended {
            ended.push(lhash);
        }
        if let Ok(entry) = self.by_labels.find_entry(lhash, |&owner| owner == s) {
            entry.remove();
        }
        self.free.push(s);
        self.live -= 1;
    }

    /// Moves the live slots to the front when many are free (a target that lost a good part
    /// of its series), so that the slot array shrinks with them (invariant 4).
    fn compact(&mut self) {
        let mut moved = vec![DROPPED; self.slots.len()];
        let mut kept = Vec::with_capacity(self.live);
        for (i, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            if slot.live {
                moved[i] = kept.len() as u32;
                kept.push(slot);
            }
        }
        self.slots = kept;
        self.free.clear();
        self.free.shrink_to_fit();
        for line in &mut self.order {
            if line.slot < FIRST_MARKER {
                line.slot = moved.get(line.slot as usize).copied().unwrap_or(DROPPED);
            }
        }
        self.explicit = std::mem::take(&mut self.explicit)
            .into_iter()
            .filter_map(|(s, t)| Some((*moved.get(s as usize)?, t)))
            .filter(|(s, _)| *s != DROPPED)
            .collect();
        let slots = &self.slots;
        let mut by_labels = HashTable::with_capacity(slots.len());
        for (i, slot) in slots.iter().enumerate() {
            by_labels.insert_unique(slot.labels.stable_hash(), i as u32, |&j| {
                slots[j as usize].labels.stable_hash()
            });
        }
        self.by_labels = by_labels;
    }
}

/// Gives back room a vector no longer needs (a scrape much smaller than an earlier one).
fn trim<T>(v: &mut Vec<T>) {
    if v.capacity() > 64 && v.capacity() > v.len() + v.len() / 4 {
        v.shrink_to(v.len() + v.len() / 8);
    }
}

fn stale(series: SeriesRef, ts: i64) -> Sample {
    Sample {
        series,
        timestamp_ms: ts,
        value: stale_nan(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    /// Lines `0..10` are series, two texts per series (`id / 2`: what metric relabeling that
    /// removes a label does); lines from 10 on are dropped by relabeling.
    fn series_of(line: u8) -> Option<u8> {
        (line < 10).then_some(line / 2)
    }

    fn labels(key: u8) -> Labels {
        Labels::from_pairs([("__name__", "m".to_owned()), ("k", key.to_string())])
    }

    /// Runs `scrapes` through a cache and checks every answer against a map of series (a
    /// series lives from its first scrape to the first committed scrape without it).
    fn check(scrapes: &[Vec<u8>]) {
        let mut cache = SeriesCache::new();
        let refs = SeriesRefs::default();
        let mut model: HashMap<u8, SeriesRef> = HashMap::new();
        for (n, scrape) in scrapes.iter().enumerate() {
            let ts = (n as i64 + 1) * 1000;
            cache.begin(ts);
            let mut seen = HashSet::new();
            let mut new_series = Vec::new();
            for &line in scrape {
                let raw = format!("m{{id=\"{line}\"}}");
                let got = match cache.lookup(raw.as_bytes(), ts, false) {
                    Lookup::Miss => match series_of(line) {
                        None => {
                            cache.insert_dropped(raw.as_bytes());
                            Lookup::Dropped
                        }
                        Some(key) => cache.insert(
                            raw.as_bytes(),
                            labels(key),
                            ts,
                            false,
                            &refs,
                            &mut new_series,
                        ),
                    },
                    other => other,
                };
                let Some(key) = series_of(line) else {
                    assert_eq!(got, Lookup::Dropped, "line {line} of scrape {n}");
                    continue;
                };
                if !seen.insert(key) {
                    assert!(
                        matches!(got, Lookup::Duplicate(r) if Some(&r) == model.get(&key)),
                        "line {line} of scrape {n}: {got:?}"
                    );
                    continue;
                }
                let Lookup::Series(r) = got else {
                    panic!("line {line} of scrape {n}: {got:?}");
                };
                assert_eq!(
                    *model.entry(key).or_insert(r),
                    r,
                    "line {line} of scrape {n}"
                );
            }
            let defined: HashSet<SeriesRef> = new_series.iter().map(|(r, _)| *r).collect();
            let expected_new: HashSet<SeriesRef> = seen
                .iter()
                .filter_map(|k| model.get(k).copied())
                .filter(|r| r.0 >= cache.scrape_refs)
                .collect();
            assert_eq!(defined, expected_new, "scrape {n}: series defined");
            let (mut samples, mut gone) = (Vec::new(), Vec::new());
            cache.commit(ts, &mut samples, &mut gone);
            let ended: HashSet<SeriesRef> = model
                .iter()
                .filter(|(k, _)| !seen.contains(*k))
                .map(|(_, r)| *r)
                .collect();
            model.retain(|k, _| seen.contains(k));
            assert_eq!(gone.iter().copied().collect::<HashSet<_>>(), ended);
            assert_eq!(gone.len(), ended.len());
            let marked: HashSet<SeriesRef> = samples.iter().map(|s| s.series).collect();
            assert_eq!(marked, ended, "a stale marker for each ended series");
            assert_eq!(cache.len(), model.len());
            assert!(
                cache.index.is_none(),
                "the index lives only during a scrape"
            );
        }
    }

    #[test]
    fn lines_that_move_come_and_go_keep_their_series() {
        check(&[
            vec![0, 2, 4, 6, 10],
            vec![0, 2, 4, 6, 10],
            // Inserted in the middle, one gone, one at the end.
            vec![0, 8, 2, 6, 10, 4],
            // Reversed.
            vec![4, 10, 6, 2, 8, 0],
            // A second text of a series, a repeated line.
            vec![4, 5, 10, 6, 6, 2],
            vec![],
            vec![0, 2],
        ]);
    }

    #[test]
    fn a_steady_scrape_walks_the_order_without_an_index() {
        let mut cache = SeriesCache::new();
        let refs = SeriesRefs::default();
        for n in 0..3 {
            cache.begin(n + 1);
            let mut new_series = Vec::new();
            for line in 0..50u8 {
                let raw = [line];
                if cache.lookup(&raw, n + 1, false) == Lookup::Miss {
                    cache.insert(&raw, labels(line), n + 1, false, &refs, &mut new_series);
                }
            }
            if n > 0 {
                assert!(new_series.is_empty());
                assert!(cache.diverged.is_none(), "every line where it was expected");
                assert!(cache.index.is_none());
            }
            cache.commit(n + 1, &mut Vec::new(), &mut Vec::new());
        }
        assert_eq!(cache.order.len(), 50);
    }

    #[test]
    fn per_series_state_stays_small() {
        // Kept for every live series of every target: a regression here is memory per series.
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::size_of::<Line>(), 16);
    }

    #[test]
    fn explicit_timestamps_never_go_back_and_decide_staleness() {
        let mut cache = SeriesCache::new();
        let refs = SeriesRefs::default();
        let mut new_series = Vec::new();
        // One sample of series `m` at scrape time `ts`, with its own timestamp if `own`.
        let mut scrape = |cache: &mut SeriesCache, ts: i64, own: Option<i64>| {
            cache.begin(ts);
            let (t, explicit) = own.map_or((ts, false), |t| (t, true));
            let got = match cache.lookup(b"m", t, explicit) {
                Lookup::Miss => cache.insert(b"m", labels(1), t, explicit, &refs, &mut new_series),
                other => other,
            };
            let (mut samples, mut gone) = (Vec::new(), Vec::new());
            cache.commit(ts, &mut samples, &mut gone);
            got
        };
        // A new series takes an explicit timestamp older than anything seen.
        assert!(matches!(
            scrape(&mut cache, 1000, Some(500)),
            Lookup::Series(_)
        ));
        assert_eq!(scrape(&mut cache, 2000, Some(500)), Lookup::OutOfOrder);
        assert!(matches!(
            scrape(&mut cache, 3000, Some(600)),
            Lookup::Series(_)
        ));
        // Its own timestamp then the scrape's: after 600, 4000 is fine...
        assert!(matches!(scrape(&mut cache, 4000, None), Lookup::Series(_)));
        assert!(cache.explicit.is_empty(), "back to the scrape's timestamps");
        // ...and an explicit timestamp before the last accepted one is refused.
        assert_eq!(scrape(&mut cache, 5000, Some(3000)), Lookup::OutOfOrder);
        assert_eq!(cache.explicit.len(), 1, "refused: its last stays 4000");
        assert_eq!(scrape(&mut cache, 6000, Some(4000)), Lookup::OutOfOrder);
        assert!(matches!(scrape(&mut cache, 7000, None), Lookup::Series(_)));
        // A failed scrape marks it stale after what was committed (7000), and keeps it.
        cache.begin(8000);
        let Lookup::Series(r) = cache.lookup(b"m", 8000, false) else {
            panic!("m is cached");
        };
        let mut samples = Vec::new();
        cache.fail(8000, &mut samples);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].timestamp_ms, 8000);
        // A second failure sends no second marker; a success continues the same series.
        cache.begin(9000);
        cache.fail(9000, &mut samples);
        assert_eq!(samples.len(), 1);
        cache.begin(10_000);
        assert_eq!(cache.lookup(b"m", 10_000, false), Lookup::Series(r));
        let (mut samples, mut gone) = (Vec::new(), Vec::new());
        cache.commit(10_000, &mut samples, &mut gone);
        assert!(samples.is_empty() && gone.is_empty());
    }

    #[test]
    fn a_failed_scrape_forgets_only_the_series_it_created() {
        let mut cache = SeriesCache::new();
        let refs = SeriesRefs::default();
        let mut new_series = Vec::new();
        cache.track_ended();
        cache.begin(1000);
        let Lookup::Series(a) = cache.insert(b"a", labels(1), 1000, false, &refs, &mut new_series)
        else {
            panic!("a is new");
        };
        cache.commit(1000, &mut Vec::new(), &mut Vec::new());
        cache.begin(2000);
        assert_eq!(cache.lookup(b"a", 2000, false), Lookup::Series(a));
        assert_eq!(cache.lookup(b"b", 2000, false), Lookup::Miss);
        cache.insert(b"b", labels(2), 2000, false, &refs, &mut new_series);
        let mut samples = Vec::new();
        cache.fail(2000, &mut samples);
        // Only `a` was announced: only it is marked stale, and it stays.
        assert_eq!(samples.iter().map(|s| s.series).collect::<Vec<_>>(), [a]);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.take_ended(), [labels(2).stable_hash()]);
        assert!(cache.contains(&labels(1)) && !cache.contains(&labels(2)));
        // The next scrape sees `a` where it was and `b` as new.
        cache.begin(3000);
        assert_eq!(cache.lookup(b"a", 3000, false), Lookup::Series(a));
        assert_eq!(cache.lookup(b"b", 3000, false), Lookup::Miss);
    }

    #[test]
    fn limited_lines_are_counted_until_forgotten() {
        let mut cache = SeriesCache::new();
        for ts in [1000, 2000] {
            cache.begin(ts);
            match cache.lookup(b"x", ts, false) {
                Lookup::Miss => cache.insert_limited(b"x", Limited::PerMetric),
                other => assert_eq!(other, Lookup::Limited(Limited::PerMetric)),
            }
            cache.commit(ts, &mut Vec::new(), &mut Vec::new());
        }
        cache.forget_limited();
        cache.begin(3000);
        assert_eq!(cache.lookup(b"x", 3000, false), Lookup::Miss);
    }

    proptest! {
        #[test]
        fn behaves_like_a_map_of_series(
            scrapes in proptest::collection::vec(proptest::collection::vec(0u8..12, 0..16), 1..10)
        ) {
            check(&scrapes);
        }
    }
}
