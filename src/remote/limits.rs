//! Per-endpoint series limits, as vmagent's `-remoteWrite.maxHourlySeries` and
//! `-remoteWrite.maxDailySeries`: at most `limit` distinct series (by the hash of their wire
//! labels, external labels and write relabeling applied) are sent to one endpoint within any
//! hour (any 24 hours). A series admitted keeps flowing; the queue drops, and counts per
//! window, the samples of series refused.
//!
//! Each window is a table of the series it counts: the hash, when the series was last seen
//! (whole seconds of the limiter's clock), and how many live series of the queue's table hold
//! it (pinned). The queue decides a series' admission once, on its first sample to send, and
//! keeps the decision in its own table; it tells the limiter when an admitted series goes
//! ([`SeriesLimits::release`]). So a live series counts as seen now at no cost per sample, and
//! a series stops counting a whole window after it went.
//!
//! Invariants:
//! 1. A window holds at most `limit` entries: memory is bounded by the limits, whatever the
//!    churn of series. A refused series costs the limiter nothing.
//! 2. A series is admitted only if every window holds its hash or has room for it; it is then
//!    held, pinned once more, by every window. Each [`SeriesLimits::admit`] that succeeds is
//!    matched by one [`SeriesLimits::release`] when the series goes.
//! 3. An entry is forgotten only when no live series pins it and it was last seen more than a
//!    whole window ago, so no stretch of a window's length sees more than `limit` series sent.
//!    It may be forgotten up to [`SWEEP_EVERY`] seconds later than that: expired entries are
//!    swept at most that often.
//! 4. Refusing costs O(1) while a window is full: each window knows the earliest moment one
//!    of its entries can expire, and sweeps (O(entries)) only once that has passed.
//! 5. Time comes from an injected [`Clock`], so tests move past an hour or a day at once.

use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashTable;

use super::metrics::series_window;

/// Seconds between two sweeps of one window, at least (invariant 3).
pub(super) const SWEEP_EVERY: u32 = 60;

/// Where the limiter reads the time: `Instant::now` but in tests.
pub(super) type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Marks of the queue's series table entries (`SeriesTable::mark`) while an endpoint has
/// limits; a new entry's mark, 0, means undecided: no sample of the series was to be sent yet.
/// The series is admitted: it holds an entry in every window until it goes.
pub(super) const ADMITTED: u8 = 1;
/// The series was refused: its samples are dropped while a window stays full.
pub(super) const REFUSED: u8 = 2;

/// One of the two limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Window {
    /// `max_hourly_series`.
    Hourly,
    /// `max_daily_series`.
    Daily,
}

/// The limits of one endpoint; see the module docs.
pub(super) struct SeriesLimits {
    /// The windows with a limit, hourly first.
    windows: Vec<Counted>,
    clock: Clock,
    /// Time 0 of the windows' seconds.
    start: Instant,
}

/// One window's series.
struct Counted {
    window: Window,
    limit: usize,
    entries: HashTable<Seen>,
    /// The earliest second an unpinned entry can be forgotten; `u32::MAX` when none can.
    next_expiry: u32,
    last_sweep: Option<u32>,
}

/// A series a window counts.
#[derive(Clone, Copy, Debug)]
struct Seen {
    hash: u64,
    /// When an unpinned entry was last seen (when its last live series went).
    last_seen: u32,
    /// Live series of the queue's table admitted under this hash.
    live: u32,
}

impl Window {
    /// The `window` label and the word in log lines.
    pub(super) fn name(self) -> &'static str {
        match self {
            Window::Hourly => series_window::HOURLY,
            Window::Daily => series_window::DAILY,
        }
    }

    fn seconds(self) -> u32 {
        match self {
            Window::Hourly => 3_600,
            Window::Daily => 86_400,
        }
    }
}

impl SeriesLimits {
    /// The limits `hourly` and `daily` (0: none) read on `clock`, or `None` when neither is
    /// set.
    pub(super) fn new(hourly: usize, daily: usize, clock: Clock) -> Option<Self> {
        let windows: Vec<Counted> = [(Window::Hourly, hourly), (Window::Daily, daily)]
            .into_iter()
            .filter(|(_, limit)| *limit > 0)
            .map(|(window, limit)| Counted {
                window,
                limit,
                entries: HashTable::new(),
                next_expiry: u32::MAX,
                last_sweep: None,
            })
            .collect();
        if windows.is_empty() {
            return None;
        }
        let start = clock();
        Some(SeriesLimits {
            windows,
            clock,
            start,
        })
    }

    /// Reads time from `clock` from now on (tests; before any use).
    #[cfg(test)]
    pub(super) fn set_clock(&mut self, clock: Clock) {
        self.start = clock();
        self.clock = clock;
    }

    /// The clock's time.
    pub(super) fn instant(&self) -> Instant {
        (self.clock)()
    }

    /// The clock's time in the windows' seconds.
    pub(super) fn now(&self) -> u32 {
        let elapsed = self.instant().saturating_duration_since(self.start);
        u32::try_from(elapsed.as_secs()).unwrap_or(u32::MAX)
    }

    /// Admits the series `hash` at `now` (invariant 2), or names the first window that has
    /// neither the series nor room for it.
    pub(super) fn admit(&mut self, hash: u64, now: u32) -> Result<(), Window> {
        for w in &mut self.windows {
            if !w.holds(hash) && !w.has_room(now) {
                return Err(w.window);
            }
        }
        for w in &mut self.windows {
            w.pin(hash, now);
        }
        Ok(())
    }

    /// The first window with no room for a new series at `now`, if any. O(1) while it stays
    /// full (invariant 4): the queue asks this first for a series it refused before.
    pub(super) fn full(&mut self, now: u32) -> Option<Window> {
        for w in &mut self.windows {
            if !w.has_room(now) {
                return Some(w.window);
            }
        }
        None
    }

    /// A series admitted under `hash` went at `now`: unpinned, it counts as seen then.
    pub(super) fn release(&mut self, hash: u64, now: u32) {
        for w in &mut self.windows {
            w.release(hash, now);
        }
    }

    /// Forgets what expired, when a sweep is due (invariant 3); cheap otherwise.
    pub(super) fn maintain(&mut self, now: u32) {
        for w in &mut self.windows {
            w.sweep_if_due(now);
        }
    }

    /// Per window with a limit: the window, its limit, and the series it counts now.
    pub(super) fn counts(&self) -> impl Iterator<Item = (Window, usize, usize)> + '_ {
        self.windows
            .iter()
            .map(|w| (w.window, w.limit, w.entries.len()))
    }

    /// The limit of `window`, if set.
    pub(super) fn limit(&self, window: Window) -> Option<usize> {
        self.windows
            .iter()
            .find(|w| w.window == window)
            .map(|w| w.limit)
    }
}

impl Counted {
    fn holds(&self, hash: u64) -> bool {
        self.entries.find(hash, |s| s.hash == hash).is_some()
    }

    /// Whether a new series fits, after forgetting what expired if that is due.
    fn has_room(&mut self, now: u32) -> bool {
        if self.entries.len() < self.limit {
            return true;
        }
        self.sweep_if_due(now);
        self.entries.len() < self.limit
    }

    /// Pins `hash`, adding it if new (the caller checked the room).
    fn pin(&mut self, hash: u64, now: u32) {
        match self.entries.find_mut(hash, |s| s.hash == hash) {
            Some(seen) => {
                seen.live = seen.live.saturating_add(1);
                seen.last_seen = now;
            }
            None => {
                // The hash is xxh3 of the wire labels: a hash table's hash already.
                self.entries.insert_unique(
                    hash,
                    Seen {
                        hash,
                        last_seen: now,
                        live: 1,
                    },
                    |s| s.hash,
                );
            }
        }
    }

    fn release(&mut self, hash: u64, now: u32) {
        let Some(seen) = self.entries.find_mut(hash, |s| s.hash == hash) else {
            return;
        };
        seen.live = seen.live.saturating_sub(1);
        seen.last_seen = now;
        if seen.live == 0 {
            self.next_expiry = self.next_expiry.min(self.expiry(now));
        }
    }

    /// When an entry last seen at `seen` may be forgotten: once more than a whole window has
    /// passed (seconds are whole, so one more).
    fn expiry(&self, seen: u32) -> u32 {
        seen.saturating_add(self.window.seconds()).saturating_add(1)
    }

    fn sweep_if_due(&mut self, now: u32) {
        if now < self.next_expiry
            || self
                .last_sweep
                .is_some_and(|t| now < t.saturating_add(SWEEP_EVERY))
        {
            return;
        }
        let length = self.window.seconds();
        let mut next = u32::MAX;
        self.entries.retain(|s| {
            if s.live > 0 {
                return true;
            }
            let expiry = s.last_seen.saturating_add(length).saturating_add(1);
            if now >= expiry {
                return false;
            }
            next = next.min(expiry);
            true
        });
        self.next_expiry = next;
        self.last_sweep = Some(now);
        // A table that held many more series than it does now gives the room back.
        if self.entries.len() * 4 < self.entries.capacity() {
            self.entries.shrink_to(self.entries.len() * 2, |s| s.hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u32 = 3_600;
    const DAY: u32 = 86_400;

    fn limits(hourly: usize, daily: usize) -> SeriesLimits {
        SeriesLimits::new(hourly, daily, Arc::new(Instant::now)).expect("a limit is set")
    }

    fn len(l: &SeriesLimits, window: Window) -> usize {
        l.counts()
            .find(|(w, _, _)| *w == window)
            .map_or(0, |(_, _, n)| n)
    }

    #[test]
    fn no_limit_no_limiter() {
        assert!(SeriesLimits::new(0, 0, Arc::new(Instant::now)).is_none());
        let l = limits(0, 5);
        assert_eq!(l.limit(Window::Daily), Some(5));
        assert_eq!(l.limit(Window::Hourly), None);
    }

    #[test]
    fn admits_up_to_the_limit_and_keeps_admitting_what_it_holds() {
        let mut l = limits(2, 0);
        assert_eq!(l.admit(1, 0), Ok(()));
        assert_eq!(l.admit(2, 0), Ok(()));
        assert_eq!(l.admit(3, 0), Err(Window::Hourly));
        assert_eq!(l.full(0), Some(Window::Hourly));
        // A second live series with a hash it holds (write relabeling made two into one).
        assert_eq!(l.admit(1, 5), Ok(()));
        assert_eq!(len(&l, Window::Hourly), 2);
        // Pinned twice: one going is not enough to start the hour.
        l.release(1, 10);
        l.maintain(10 + 2 * DAY);
        assert_eq!(l.admit(3, 10 + 2 * DAY), Err(Window::Hourly));
    }

    #[test]
    fn a_series_that_went_is_forgotten_once_a_whole_window_has_passed() {
        let mut l = limits(2, 0);
        assert_eq!(l.admit(1, 0), Ok(()));
        assert_eq!(l.admit(2, 0), Ok(()));
        l.release(1, 10);
        // Exactly an hour after: still counted (it may have been sent in that second).
        assert_eq!(l.admit(3, 10 + HOUR), Err(Window::Hourly));
        assert_eq!(l.full(10 + HOUR), Some(Window::Hourly));
        // More than an hour: forgotten, room for one.
        assert_eq!(l.full(11 + HOUR), None);
        assert_eq!(len(&l, Window::Hourly), 1);
        assert_eq!(l.admit(3, 11 + HOUR), Ok(()));
        assert_eq!(l.admit(1, 11 + HOUR), Err(Window::Hourly));
        // A live series never expires.
        l.maintain(100 * DAY);
        assert_eq!(len(&l, Window::Hourly), 2);
        assert_eq!(l.admit(4, 100 * DAY), Err(Window::Hourly));
    }

    #[test]
    fn sweeps_are_a_minute_apart_at_least() {
        let mut l = limits(2, 0);
        assert_eq!(l.admit(1, 0), Ok(()));
        assert_eq!(l.admit(2, 0), Ok(()));
        l.release(1, 0);
        l.release(2, 1);
        // 1 expires first; the sweep that forgets it keeps 2 (not expired yet).
        assert_eq!(l.admit(3, HOUR + 1), Ok(()));
        assert_eq!(len(&l, Window::Hourly), 2);
        // 2 has expired since, but the next sweep is only due a minute after the last.
        assert_eq!(l.admit(4, HOUR + 2), Err(Window::Hourly));
        assert_eq!(l.admit(4, HOUR + SWEEP_EVERY), Err(Window::Hourly));
        assert_eq!(l.admit(4, HOUR + 1 + SWEEP_EVERY), Ok(()));
    }

    #[test]
    fn every_window_must_have_room_and_then_holds_the_series() {
        let mut l = limits(1, 2);
        assert_eq!(l.admit(1, 0), Ok(()));
        assert_eq!(l.admit(2, 0), Err(Window::Hourly));
        l.release(1, 0);
        // An hour on, the hour has room, the day does not forget 1 yet.
        assert_eq!(l.admit(2, HOUR + 1), Ok(()));
        l.release(2, HOUR + 1);
        assert_eq!(l.admit(3, 2 * HOUR + 2), Err(Window::Daily));
        assert_eq!(
            len(&l, Window::Hourly),
            0,
            "refused by the day: not counted"
        );
        assert_eq!(l.full(2 * HOUR + 2), Some(Window::Daily));
        // A day on, both forgot 1.
        assert_eq!(l.admit(3, DAY + 1), Ok(()));
        assert_eq!(len(&l, Window::Daily), 2);
        assert_eq!(len(&l, Window::Hourly), 1);
    }

    #[test]
    fn memory_stays_within_the_limit_whatever_the_churn() {
        let mut l = limits(100, 1_000);
        let mut live = Vec::new();
        let mut admitted = 0;
        // A new series every second for ~14 hours; each goes ten series later.
        for (now, n) in (0..50_000u32).zip(0u64..) {
            let hash = crate::remote::queue::mix(n);
            if l.admit(hash, now).is_ok() {
                admitted += 1;
                live.push(hash);
            }
            if live.len() > 10 {
                l.release(live.remove(0), now);
            }
            for (_, limit, n) in l.counts() {
                assert!(n <= limit, "{n} entries over the limit {limit}");
            }
        }
        // About 100 an hour until the day's 1000 are used: none of them is a day old.
        assert_eq!(admitted, 1_000);
        assert_eq!(l.full(50_000), Some(Window::Daily));
    }

    #[test]
    fn the_clock_is_injected() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let base = Instant::now();
        let offset = Arc::new(AtomicU64::new(0));
        let at = offset.clone();
        let mut l = limits(1, 0);
        l.set_clock(Arc::new(move || {
            base + std::time::Duration::from_secs(at.load(Ordering::Relaxed))
        }));
        assert_eq!(l.now(), 0);
        offset.store(u64::from(DAY) + 7, Ordering::Relaxed);
        assert_eq!(l.now(), DAY + 7);
    }
}
