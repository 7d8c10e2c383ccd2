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
//! 3. A table made [`SeriesTable::with_marks`] keeps one byte per entry beside it (the queue's
//!    series-limit decision): 0 when the entry is defined, whatever the user sets after, handed
//!    back with the value when the series is defined again or goes. Without marks it costs
//!    nothing.

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
    /// Entry `n`'s mark is `marks[n]` (invariant 3); `None` without marks.
    marks: Option<Pages<u8>>,
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
            marks: None,
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

    /// A table with a mark per entry (invariant 3).
    pub(super) fn with_marks() -> Self {
        SeriesTable {
            marks: Some(Pages::default()),
            ..SeriesTable::default()
        }
    }

    /// Defines `series` as `value`; if it was defined, returns what it was and its mark (the
    /// mark starts again at 0).
    pub(super) fn define(&mut self, series: SeriesRef, value: T) -> Option<(T, u8)> {
        if let Some(n) = self.find(series.0)
            && let Some(e) = self.entries.get_mut(n as usize)
        {
            let old = e.value.replace(value);
            let mark = self.take_mark(n);
            return old.map(|old| (old, mark));
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
            None => {
                let n = self.entries.push(entry);
                if let Some(marks) = &mut self.marks {
                    marks.push(0);
                }
                // More than u32::MAX series would not fit in memory long before.
                u32::try_from(n).unwrap_or(UNKNOWN)
            }
        };
        self.take_mark(n);
        let entries = &self.entries;
        self.index.insert_unique(mix(series.0), n, |&i| {
            entries.get(i as usize).map_or(0, |e| mix(e.sref))
        });
        self.live += 1;
        None
    }

    /// Forgets `series` (gone), and the list it heads; returns its value and mark.
    pub(super) fn remove(&mut self, series: SeriesRef) -> Option<(T, u8)> {
        self.lists.remove(&series.0);
        let entries = &self.entries;
        let found = self.index.find_entry(mix(series.0), |&i| {
            entries.get(i as usize).is_some_and(|e| e.sref == series.0)
        });
        let Ok(found) = found else { return None };
        let (n, _) = found.remove();
        let e = self.entries.get_mut(n as usize)?;
        let value = std::mem::take(e).value;
        self.free.push(n);
        self.live -= 1;
        let mark = self.take_mark(n);
        value.map(|v| (v, mark))
    }

    /// The mark of entry `n` (0 without marks).
    pub(super) fn mark(&self, n: u32) -> u8 {
        self.marks
            .as_ref()
            .and_then(|m| m.get(n as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Sets the mark of entry `n` (nothing without marks).
    pub(super) fn set_mark(&mut self, n: u32, mark: u8) {
        if let Some(m) = self.marks.as_mut().and_then(|m| m.get_mut(n as usize)) {
            *m = mark;
        }
    }

    /// The mark of entry `n`, reset to 0.
    fn take_mark(&mut self, n: u32) -> u8 {
        self.marks
            .as_mut()
            .and_then(|m| m.get_mut(n as usize))
            .map_or(0, std::mem::take)
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

    #[test]
    fn marks_start_at_zero_and_come_back_with_the_value() {
        let mut t: SeriesTable<&'static str> = SeriesTable::with_marks();
        assert_eq!(t.define(SeriesRef(1), "a"), None);
        let mut out = Vec::new();
        t.resolve(&samples(&[1]), &mut out);
        let n = out[0];
        assert_eq!(t.mark(n), 0);
        t.set_mark(n, 7);
        assert_eq!(t.mark(n), 7);
        // Defined again: the old value and mark come back, the mark starts again.
        assert_eq!(t.define(SeriesRef(1), "b"), Some(("a", 7)));
        assert_eq!(t.mark(n), 0);
        t.set_mark(n, 3);
        assert_eq!(t.remove(SeriesRef(1)), Some(("b", 3)));
        assert_eq!(t.remove(SeriesRef(1)), None);
        // The entry is reused with a fresh mark.
        t.define(SeriesRef(2), "c");
        t.resolve(&samples(&[2]), &mut out);
        assert_eq!(out[0], n);
        assert_eq!(t.mark(n), 0);
        // Without marks: always 0, setting one does nothing.
        let mut plain: SeriesTable<&'static str> = SeriesTable::default();
        plain.define(SeriesRef(1), "a");
        plain.set_mark(0, 5);
        assert_eq!(plain.mark(0), 0);
        assert_eq!(plain.remove(SeriesRef(1)), Some(("a", 0)));
    }
}
