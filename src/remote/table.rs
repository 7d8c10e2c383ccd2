//! The queue's table of series: what each defined, not yet gone series goes on the wire as,
//! found without a hash probe per sample.
//!
//! Entries live in pages, in definition order; an index finds a ref's entry. A scrape's batch
//! repeats its sample list scrape after scrape (as the buffer's codec relies on too), so the
//! table remembers, per list (keyed by its first ref), its samples' entries in order: a
//! repeated list is resolved by walking that array and the entries, checking each entry still
//! holds its sample's ref. With hundreds of thousands of series a hash probe per sample costs
//! two cache misses; the walk costs none the prefetcher does not hide.
//!
//! Invariants:
//! 1. The table holds exactly the series defined and not yet gone; a list goes with its first
//!    series and holds one entry number per sample of one batch, so memory follows the active
//!    series.
//! 2. A remembered entry number is only used after checking that the entry holds the
//!    sample's ref (refs are never reused, so a check that passes is right); otherwise the ref
//!    is looked up and the list remembered anew.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use hashbrown::HashTable;

use super::queue::{RefHasher, mix};
use crate::append::{Sample, SeriesRef};
use crate::pages::Pages;

/// An entry number for a sample whose series is not in the table.
pub(super) const UNKNOWN: u32 = u32::MAX;

/// See the module docs.
pub(super) struct SeriesTable<T> {
    entries: Pages<Entry<T>>,
    free: Vec<u32>,
    /// Live entries by their ref.
    index: HashTable<u32>,
    /// Entry numbers of sample lists, by first ref (invariant 2).
    lists: HashMap<u64, Vec<u32>, BuildHasherDefault<RefHasher>>,
    live: usize,
}

struct Entry<T> {
    /// 0: free (no ref is 0).
    sref: u64,
    value: Option<T>,
}

impl<T> Default for Entry<T> {
    fn default() -> Self {
        Entry {
            sref: 0,
            value: None,
        }
    }
}

impl<T> Default for SeriesTable<T> {
    fn default() -> Self {
        SeriesTable {
            entries: Pages::default(),
            free: Vec::new(),
            index: HashTable::new(),
            lists: HashMap::default(),
            live: 0,
        }
    }
}

impl<T> SeriesTable<T> {
    /// Series in the table.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Whether the table holds no series.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Defines `series` as `value` (replacing what it was).
    pub(super) fn define(&mut self, series: SeriesRef, value: T) {
        if let Some(n) = self.find(series.0)
            && let Some(e) = self.entries.get_mut(n as usize)
        {
            e.value = Some(value);
            return;
        }
        let entry = Entry {
            sref: series.0,
            value: Some(value),
        };
        let n = match self.free.pop() {
            Some(n) => {
                if let Some(e) = self.entries.get_mut(n as usize) {
                    *e = entry;
                }
                n
            }
            // More than u32::MAX series would not fit in memory long before.
            None => u32::try_from(self.entries.push(entry)).unwrap_or(UNKNOWN),
        };
        let entries = &self.entries;
        self.index.insert_unique(mix(series.0), n, |&i| {
            entries.get(i as usize).map_or(0, |e| mix(e.sref))
        });
        self.live += 1;
    }

    /// Forgets `series` (gone), and the list it heads.
    pub(super) fn remove(&mut self, series: SeriesRef) {
        let entries = &self.entries;
        if let Ok(found) = self.index.find_entry(mix(series.0), |&i| {
            entries.get(i as usize).is_some_and(|e| e.sref == series.0)
        }) {
            let (n, _) = found.remove();
            if let Some(e) = self.entries.get_mut(n as usize) {
                *e = Entry::default();
                self.free.push(n);
                self.live -= 1;
            }
        }
        self.lists.remove(&series.0);
    }

    /// The entry numbers of `samples`' series, in order ([`UNKNOWN`] for a series not in the
    /// table), into `out`: from the remembered list when it still holds (invariant 2).
    pub(super) fn resolve(&mut self, samples: &[Sample], out: &mut Vec<u32>) {
        out.clear();
        let Some(first) = samples.first().map(|s| s.series.0) else {
            return;
        };
        if let Some(list) = self.lists.get(&first)
            && list.len() == samples.len()
            && list.iter().zip(samples).all(|(&n, s)| {
                self.entries
                    .get(n as usize)
                    .is_some_and(|e| e.sref == s.series.0)
            })
        {
            out.extend_from_slice(list);
            return;
        }
        out.extend(
            samples
                .iter()
                .map(|s| self.find(s.series.0).unwrap_or(UNKNOWN)),
        );
        // Lists come and go with their first series; this only guards invariant 1 against a
        // stream whose lists never repeat.
        if self.lists.len() > self.live {
            self.lists.clear();
        }
        let list = self.lists.entry(first).or_default();
        list.clear();
        list.extend_from_slice(out);
    }

    /// The value of entry `n`, if it is live.
    pub(super) fn get(&self, n: u32) -> Option<&T> {
        self.entries.get(n as usize)?.value.as_ref()
    }

    /// The value of `series`, if it is in the table.
    #[cfg(test)]
    pub(super) fn get_ref(&self, series: SeriesRef) -> Option<&T> {
        self.get(self.find(series.0)?)
    }

    fn find(&self, sref: u64) -> Option<u32> {
        let entries = &self.entries;
        self.index
            .find(mix(sref), |&i| {
                entries.get(i as usize).is_some_and(|e| e.sref == sref)
            })
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(refs: &[u64]) -> Vec<Sample> {
        refs.iter()
            .map(|&r| Sample {
                series: SeriesRef(r),
                timestamp_ms: 1,
                value: 1.0,
            })
            .collect()
    }

    #[test]
    fn lists_are_walked_while_they_hold_and_looked_up_again_when_not() {
        let mut t: SeriesTable<&'static str> = SeriesTable::default();
        for (r, v) in [(1, "a"), (2, "b"), (3, "c")] {
            t.define(SeriesRef(r), v);
        }
        let mut out = Vec::new();
        let values = |t: &SeriesTable<&'static str>, out: &[u32]| -> Vec<Option<&'static str>> {
            out.iter().map(|&n| t.get(n).copied()).collect()
        };
        t.resolve(&samples(&[1, 2, 3]), &mut out);
        assert_eq!(values(&t, &out), [Some("a"), Some("b"), Some("c")]);
        assert_eq!(t.lists.len(), 1);
        // The same list again: from the remembered numbers.
        t.resolve(&samples(&[1, 2, 3]), &mut out);
        assert_eq!(values(&t, &out), [Some("a"), Some("b"), Some("c")]);
        // Series 2 goes and 4 takes its entry: the list no longer holds, 2 is unknown.
        t.remove(SeriesRef(2));
        t.define(SeriesRef(4), "d");
        assert_eq!(t.len(), 3);
        t.resolve(&samples(&[1, 2, 3]), &mut out);
        assert_eq!(values(&t, &out), [Some("a"), None, Some("c")]);
        assert_eq!(out[1], UNKNOWN);
        t.resolve(&samples(&[1, 4, 3]), &mut out);
        assert_eq!(values(&t, &out), [Some("a"), Some("d"), Some("c")]);
        assert_eq!(t.get_ref(SeriesRef(4)), Some(&"d"));
        // The first series goes: its list with it.
        t.remove(SeriesRef(1));
        assert!(t.lists.is_empty());
        t.resolve(&samples(&[]), &mut out);
        assert!(out.is_empty());
    }
}
