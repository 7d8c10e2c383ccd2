//! One line per key per interval: how repeated failures (a target down for an hour, an
//! endpoint answering 503) reach the log without flooding it, with the count of what was
//! held back in the line that gets through.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one line per key through per interval and counts the rest.
///
/// Use it where a failure can repeat at a high rate with the same cause, e.g. a target that
/// keeps refusing connections, an endpoint that keeps answering 503:
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use scrapelet::telemetry::LogLimiter;
/// let limiter = LogLimiter::new(Duration::from_secs(60), 4096);
/// # let (target, reason) = ("10.0.0.7:9100", "connection refused");
/// // On each failure:
/// let key = LogLimiter::key(&(target, "scrape_failed"));
/// if let Some(suppressed) = limiter.check(key, Instant::now()) {
///     tracing::warn!(target, reason, suppressed, "scrape failed");
/// }
/// ```
///
/// Build the key from what identifies the repeating condition (target and kind of failure,
/// not the changing error text). `suppressed` is how many lines were held back for the key
/// since the last one let through: put it in the line so nothing is silently lost.
///
/// Memory is bounded: at most `max_keys` keys are remembered. When a new key arrives at the
/// cap, keys whose interval has passed are forgotten first (they hold nothing back), then the
/// key let through longest ago.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    max_keys: usize,
    /// Per key: when a line was last let through, and how many were held back since.
    state: Mutex<HashMap<u64, Slot>>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    last_allowed: Instant,
    suppressed: u64,
}

impl LogLimiter {
    /// One line per key per `interval`, remembering at most `max_keys` keys (at least 1).
    pub fn new(interval: Duration, max_keys: usize) -> Self {
        LogLimiter {
            interval,
            max_keys: max_keys.max(1),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// A key for anything hashable (stable within the process).
    pub fn key<T: Hash + ?Sized>(value: &T) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut h);
        h.finish()
    }

    /// Whether to log now for `key`: `Some(n)` lets the line through, `n` being how many were
    /// held back since the last one let through; `None` holds this one back (and counts it).
    pub fn check(&self, key: u64, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = state.get_mut(&key) {
            if now.saturating_duration_since(slot.last_allowed) < self.interval {
                slot.suppressed += 1;
                return None;
            }
            let suppressed = slot.suppressed;
            *slot = Slot {
                last_allowed: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if state.len() >= self.max_keys {
            let interval = self.interval;
            state.retain(|_, s| now.saturating_duration_since(s.last_allowed) < interval);
            if state.len() >= self.max_keys
                && let Some(oldest) = state
                    .iter()
                    .min_by_key(|(_, s)| s.last_allowed)
                    .map(|(k, _)| *k)
            {
                state.remove(&oldest);
            }
        }
        state.insert(
            key,
            Slot {
                last_allowed: now,
                suppressed: 0,
            },
        );
        Some(0)
    }

    /// How many keys are remembered now.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_lets_one_line_per_interval_and_counts_the_rest() {
        let limiter = LogLimiter::new(Duration::from_secs(60), 16);
        let t0 = Instant::now();
        let a = LogLimiter::key(&("10.0.0.7:9100", "refused"));
        let b = LogLimiter::key(&("10.0.0.8:9100", "refused"));
        assert_ne!(a, b);
        assert_eq!(limiter.check(a, t0), Some(0));
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(1)), None);
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(59)), None);
        assert_eq!(limiter.check(b, t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(60)), Some(2));
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(61)), None);
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(200)), Some(1));
        // A clock reading earlier than the last allowed one counts as within the interval.
        assert_eq!(limiter.check(a, t0), None);
    }

    #[test]
    fn limiter_memory_is_bounded() {
        let limiter = LogLimiter::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for k in 0..3 {
            assert_eq!(limiter.check(k, t0 + Duration::from_secs(k)), Some(0));
        }
        assert_eq!(limiter.check(1, t0 + Duration::from_secs(10)), None);
        // Full: key 0, let through longest ago, is forgotten.
        assert_eq!(limiter.check(3, t0 + Duration::from_secs(10)), Some(0));
        assert_eq!(limiter.len(), 3);
        assert_eq!(limiter.check(0, t0 + Duration::from_secs(11)), Some(0));
        assert_eq!(limiter.len(), 3);
        // That evicted key 1 (the oldest now); key 2 is still remembered and held back.
        assert_eq!(limiter.check(2, t0 + Duration::from_secs(12)), None);
        // Later, every interval has passed: expired keys go first, and all fit again.
        let later = t0 + Duration::from_secs(500);
        for k in 10..13 {
            assert_eq!(limiter.check(k, later), Some(0));
        }
        assert_eq!(limiter.len(), 3);
        assert!(!limiter.is_empty());
    }
}
