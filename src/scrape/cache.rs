//! The per-target series cache: raw series text -> series, and staleness tracking.
//!
//! On the second scrape of a target a known line maps straight to its [`SeriesRef`]: one hash
//! of the raw bytes, one probe, no allocation, no label parsing.
//!
//! Structure: `raw` maps the raw series text of a line to a slot (or "dropped by metric
//! relabeling"); `slots` holds one entry per distinct final label set; `by_labels` maps a final
//! label set's hash to its slot, so that two raw texts that end up as the same series (metric
//! relabeling removed what told them apart, or a trailing comma) share one series.
//!
//! The raw text itself is not kept: an entry holds a 128-bit hash of it (xxh3, seeded per cache
//! with a random seed, so that a target cannot craft two texts that collide), 24 bytes where
//! the text took its own allocation. Two different texts of one target would have to share
//! all 128 bits to be confused; and a target can only ever confuse its own series.
//!
//! Invariants:
//! 1. Every live slot's ref was announced to the appender (in a committed batch) or belongs to
//!    the current scrape, which either commits ([`SeriesCache::commit`]) or is abandoned
//!    ([`SeriesCache::abandon`]).
//! 2. After `commit`, every raw entry was seen in that scrape; every live slot was seen in it
//!    or has been ended (stale marker if it was tracked, listed as gone, freed).
//! 3. A slot is seen at most once per scrape; a second sample for it is a duplicate.

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
    /// A series already seen in this scrape.
    Duplicate,
    /// A timestamp not after the series' previous one (would break per-series order).
    OutOfOrder,
    /// The series to append to.
    Series(SeriesRef),
}

pub(super) struct SeriesCache {
    raw: HashTable<RawEntry>,
    /// Seeds the raw texts' hashes (see the module docs).
    seed: u64,
    by_labels: HashTable<(u64, u32)>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The current scrape's number; starts at 1 (wrapping).
    iter: u64,
    raw_seen: usize,
    slots_seen: usize,
    live: usize,
}

/// A raw series text, known by its 128-bit hash (`hash` is the half the table uses).
struct RawEntry {
    hash: u64,
    check: u64,
    /// [`DROPPED`] when metric relabeling drops the text.
    slot: u32,
    /// The scrape that last saw it (wrapping; only compared for equality).
    last_iter: u32,
}

/// [`RawEntry::slot`] of a text metric relabeling drops.
const DROPPED: u32 = u32::MAX;

struct Slot {
    sref: SeriesRef,
    labels: Labels,
    /// Scrape numbers, wrapping (only compared for equality).
    last_iter: u32,
    created_iter: u32,
    /// Timestamp of the last accepted sample; samples must come strictly after it.
    last_ts: i64,
    /// `last_ts` before the current scrape changed it (what was committed, if the current
    /// scrape is abandoned).
    prev_ts: i64,
    /// Whether the last sample had no explicit timestamp (only those get stale markers).
    track_staleness: bool,
    live: bool,
}

impl SeriesCache {
    pub(super) fn new() -> Self {
        SeriesCache {
            raw: HashTable::new(),
            seed: rand::random(),
            by_labels: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            iter: 0,
            raw_seen: 0,
            slots_seen: 0,
            live: 0,
        }
    }

    /// Number of live series.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Starts a scrape.
    pub(super) fn begin(&mut self) {
        self.iter += 1;
        self.raw_seen = 0;
        self.slots_seen = 0;
    }

    /// Looks up a raw series text for a sample at `ts` and marks it seen.
    pub(super) fn lookup(&mut self, raw: &[u8], ts: i64, explicit_ts: bool) -> Lookup {
        let (hash, check) = self.hash(raw);
        let Some(entry) = self
            .raw
            .find_mut(hash, |e| e.hash == hash && e.check == check)
        else {
            return Lookup::Miss;
        };
        let iter = self.iter as u32;
        if entry.last_iter != iter {
            entry.last_iter = iter;
            self.raw_seen += 1;
        }
        match entry.slot {
            DROPPED => Lookup::Dropped,
            slot => self.see(slot, ts, explicit_ts),
        }
    }

    /// Remembers that `raw` is dropped by metric relabeling.
    pub(super) fn insert_dropped(&mut self, raw: &[u8]) {
        self.insert_raw(raw, DROPPED);
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
            .find(lhash, |&(h, s)| {
                h == lhash && slots[s as usize].labels == labels
            })
            .map(|&(_, s)| s);
        let slot = match existing {
            Some(s) => s,
            None => {
                let sref = refs.allocate();
                new_series.push((sref, labels.clone()));
                let entry = Slot {
                    sref,
                    labels,
                    last_iter: 0,
                    created_iter: self.iter as u32,
                    last_ts: i64::MIN,
                    prev_ts: i64::MIN,
                    track_staleness: !explicit_ts,
                    live: true,
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
                self.by_labels.insert_unique(lhash, (lhash, s), |&(h, _)| h);
                s
            }
        };
        self.insert_raw(raw, slot);
        self.see(slot, ts, explicit_ts)
    }

    /// Ends a successful scrape: series not seen get a stale marker at `ts` (when tracked)
    /// and are listed in `gone`; unseen raw texts are forgotten.
    pub(super) fn commit(&mut self, ts: i64, samples: &mut Vec<Sample>, gone: &mut Vec<SeriesRef>) {
        if self.slots_seen != self.live {
            let iter = self.iter as u32;
            for s in 0..self.slots.len() {
                let slot = &self.slots[s];
                if slot.live && slot.last_iter != iter {
                    self.end_slot(s as u32, ts, samples, gone);
                }
            }
        }
        if self.raw_seen != self.raw.len() {
            let iter = self.iter as u32;
            self.raw.retain(|e| e.last_iter == iter);
        }
    }

    /// Ends a failed scrape: the scrape's own series are forgotten unannounced; every series
    /// announced before gets a stale marker (when tracked) and is listed in `gone`. The cache
    /// is left empty.
    pub(super) fn abandon(
        &mut self,
        ts: i64,
        samples: &mut Vec<Sample>,
        gone: &mut Vec<SeriesRef>,
    ) {
        let iter = self.iter as u32;
        for slot in &self.slots {
            if slot.live && slot.created_iter != iter {
                let committed_ts = if slot.last_iter == iter {
                    slot.prev_ts
                } else {
                    slot.last_ts
                };
                if slot.track_staleness && ts > committed_ts {
                    samples.push(stale(slot.sref, ts));
                }
                gone.push(slot.sref);
            }
        }
        self.clear();
    }

    /// Ends every series (the target went away): stale markers at `ts` and `gone` for all.
    pub(super) fn end_all(
        &mut self,
        ts: i64,
        samples: &mut Vec<Sample>,
        gone: &mut Vec<SeriesRef>,
    ) {
        for slot in &self.slots {
            if slot.live {
                if slot.track_staleness && ts > slot.last_ts {
                    samples.push(stale(slot.sref, ts));
                }
                gone.push(slot.sref);
            }
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.raw.clear();
        self.by_labels.clear();
        self.slots.clear();
        self.free.clear();
        self.live = 0;
        self.raw_seen = 0;
        self.slots_seen = 0;
    }

    fn see(&mut self, slot: u32, ts: i64, explicit_ts: bool) -> Lookup {
        let s = &mut self.slots[slot as usize];
        let iter = self.iter as u32;
        if s.last_iter == iter {
            return Lookup::Duplicate;
        }
        s.last_iter = iter;
        s.track_staleness = !explicit_ts;
        self.slots_seen += 1;
        s.prev_ts = s.last_ts;
        if ts <= s.last_ts {
            return Lookup::OutOfOrder;
        }
        s.last_ts = ts;
        Lookup::Series(s.sref)
    }

    fn insert_raw(&mut self, raw: &[u8], slot: u32) {
        let (hash, check) = self.hash(raw);
        self.raw.insert_unique(
            hash,
            RawEntry {
                hash,
                check,
                slot,
                last_iter: self.iter as u32,
            },
            |e| e.hash,
        );
        self.raw_seen += 1;
    }

    /// The 128-bit hash of a raw series text, in the table's half and the other.
    fn hash(&self, raw: &[u8]) -> (u64, u64) {
        let h = xxhash_rust::xxh3::xxh3_128_with_seed(raw, self.seed);
        (h as u64, (h >> 64) as u64)
    }

    fn end_slot(&mut self, s: u32, ts: i64, samples: &mut Vec<Sample>, gone: &mut Vec<SeriesRef>) {
        let slot = &mut self.slots[s as usize];
        if slot.track_staleness && ts > slot.last_ts {
            samples.push(stale(slot.sref, ts));
        }
        gone.push(slot.sref);
        slot.live = false;
        let lhash = std::mem::take(&mut slot.labels).stable_hash();
        if let Ok(entry) = self.by_labels.find_entry(lhash, |&(_, owner)| owner == s) {
            entry.remove();
        }
        self.free.push(s);
        self.live -= 1;
    }
}

fn stale(series: SeriesRef, ts: i64) -> Sample {
    Sample {
        series,
        timestamp_ms: ts,
        value: stale_nan(),
    }
}
