//! The newest batches, kept in memory beside the log for readers that have caught up with
//! the writer: such a reader takes each batch as the scrape loop made it (its labels shared,
//! nothing decoded), and reads the log only while it is behind.
//!
//! Invariants:
//! 1. Entries are in log order and numbered consecutively; each carries its record's position
//!    and the position after it.
//! 2. An entry is pushed only once its record is in the log, so the tail never offers what a
//!    reader of the log could not read yet. Every batch record the writer appends is pushed.
//!    A batch that could not be written has no record; its definitions and gone refs (which
//!    the next segment's snapshot holds on disk) are pushed, without samples, at that
//!    snapshot's position.
//! 3. Bounded: at most [`TAIL_SAMPLES`] samples and [`TAIL_ENTRIES`] entries, the newest entry
//!    always kept; older ones are evicted. A reader whose next entry was evicted reads the log
//!    from there instead ([`Tail::get`] says so), and [`Tail::seq_from`] only lets a reader of
//!    the log switch to the tail when no record at or after its position was evicted.
//!
//! Lock: `Tail::state`; nothing is awaited or written under it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::append::Batch;
use crate::buffer::Position;

/// Samples the tail keeps (about 24 bytes each, in batches the scrape loops made anyway).
pub const TAIL_SAMPLES: usize = 1 << 16;
/// Entries the tail keeps.
pub const TAIL_ENTRIES: usize = 1024;

/// The newest batches (see the module docs).
#[derive(Default)]
pub(super) struct Tail {
    state: Mutex<State>,
    changed: Condvar,
}

/// One batch and where its record is.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) position: Position,
    /// The position after its record.
    pub(super) end: Position,
    pub(super) batch: Arc<Batch>,
}

/// What [`Tail::get`] found.
pub(super) enum Next {
    Entry(Entry),
    /// The entry was evicted: read the log from the end of the last entry taken.
    Evicted,
    /// Not pushed yet (the wait timed out).
    Empty,
    /// The log is closed and every entry was taken.
    Closed,
}

#[derive(Default)]
struct State {
    entries: VecDeque<Entry>,
    /// The number of `entries[0]` (of the next entry when empty).
    first_seq: u64,
    samples: usize,
    /// The position of the newest entry evicted.
    evicted: Option<Position>,
    closed: bool,
}

impl Tail {
    /// Adds the batch of the record at `position` (ending at `end`), evicting the oldest
    /// entries beyond the bounds (invariant 3).
    pub(super) fn push(&self, position: Position, end: Position, batch: Arc<Batch>) {
        let mut st = self.lock();
        st.samples += batch.samples.len();
        st.entries.push_back(Entry {
            position,
            end,
            batch,
        });
        while st.entries.len() > 1 && (st.samples > TAIL_SAMPLES || st.entries.len() > TAIL_ENTRIES)
        {
            if let Some(old) = st.entries.pop_front() {
                st.samples -= old.batch.samples.len();
                st.evicted = Some(old.position);
                st.first_seq += 1;
            }
        }
        drop(st);
        self.changed.notify_all();
    }

    /// No more entries will come; readers end once they have taken the rest.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The number of the first entry at or after `from`, if the tail holds every record from
    /// `from` on (the next one pushed, when none is there yet); `None` when one was evicted.
    pub(super) fn seq_from(&self, from: Position) -> Option<u64> {
        let st = self.lock();
        if st.evicted.is_some_and(|p| p >= from) {
            return None;
        }
        let skip = st.entries.iter().take_while(|e| e.position < from).count();
        Some(st.first_seq + skip as u64)
    }

    /// Entry `seq`, waiting up to `timeout` for it to be pushed.
    pub(super) fn get(&self, seq: u64, timeout: Duration) -> Next {
        let mut st = self.lock();
        let mut waited = false;
        loop {
            if seq < st.first_seq {
                return Next::Evicted;
            }
            if let Some(e) = st.entries.get((seq - st.first_seq) as usize) {
                return Next::Entry(e.clone());
            }
            if st.closed {
                return Next::Closed;
            }
            if waited {
                return Next::Empty;
            }
            st = self
                .changed
                .wait_timeout(st, timeout)
                .map(|(st, _)| st)
                .unwrap_or_else(|e| e.into_inner().0);
            waited = true;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every edit completes without a panicking step in between.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::{Sample, SeriesRef};

    fn at(offset: u64) -> Position {
        Position { segment: 1, offset }
    }

    fn batch(samples: usize) -> Arc<Batch> {
        Arc::new(Batch {
            samples: vec![
                Sample {
                    series: SeriesRef(1),
                    timestamp_ms: 1,
                    value: 1.0,
                };
                samples
            ],
            ..Batch::default()
        })
    }

    #[test]
    fn readers_switch_only_when_nothing_after_them_was_evicted() {
        let tail = Tail::default();
        assert_eq!(tail.seq_from(at(0)), Some(0), "the next entry pushed");
        tail.push(at(10), at(20), batch(1));
        tail.push(at(20), at(30), batch(1));
        assert_eq!(tail.seq_from(at(20)), Some(1));
        assert_eq!(tail.seq_from(at(30)), Some(2));
        // Past the sample bound: the oldest go, the newest stays even when alone too big.
        tail.push(at(30), at(40), batch(TAIL_SAMPLES));
        assert_eq!(tail.seq_from(at(20)), None, "entry at 20 was evicted");
        assert_eq!(tail.seq_from(at(30)), Some(2));
        assert!(matches!(tail.get(1, Duration::ZERO), Next::Evicted));
        match tail.get(2, Duration::ZERO) {
            Next::Entry(e) => assert_eq!((e.position, e.end), (at(30), at(40))),
            _ => panic!("entry 2 is there"),
        }
        assert!(matches!(tail.get(3, Duration::ZERO), Next::Empty));
        tail.close();
        assert!(matches!(tail.get(2, Duration::ZERO), Next::Entry(_)));
        assert!(matches!(tail.get(3, Duration::ZERO), Next::Closed));
    }

    #[test]
    fn a_waiting_reader_wakes_on_a_push() {
        let tail = Arc::new(Tail::default());
        let pusher = tail.clone();
        let t = std::thread::spawn(move || pusher.push(at(5), at(6), batch(2)));
        let mut got = None;
        for _ in 0..100 {
            match tail.get(0, Duration::from_millis(100)) {
                Next::Entry(e) => {
                    got = Some(e);
                    break;
                }
                Next::Empty => continue,
                _ => panic!("not evicted, not closed"),
            }
        }
        let got = got.unwrap_or_else(|| panic!("no entry within 10 s"));
        assert_eq!(got.batch.samples.len(), 2);
        let _ = t.join();
    }
}
