//! One backoff for every retry loop (remote write's batches, the Kubernetes watches, the
//! buffer's writer after a disk error): the delay doubles after each failure from `min` up to
//! `max`, scaled by a jitter factor in `[0.5, 1]` ("equal jitter") where many parties that
//! failed together must not retry together. The policies are values ([`Backoff::new`]'s
//! bounds); the randomness is passed in, so tests choose it.
//!
//! Invariants:
//! 1. Every delay from [`Backoff::next_delay`] lies in `[min, max]` (`max` is at least `min`).
//! 2. The base doubles after each delay handed out, up to `max`; [`Backoff::reset`] starts
//!    again from `min`.
//! 3. After [`Backoff::retry_after`] (a server's request, capped by the caller) the base
//!    continues from twice that delay (as Prometheus).

use std::time::Duration;

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    base: Duration,
}

impl Backoff {
    /// A backoff from `min` to `max` (a `max` below `min` is taken as `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            base: min,
        }
    }

    /// The delay before the next attempt. `jitter` is in `[0, 1]` (clamped): 1 gives the base
    /// itself, 0 half of it (never below `min`). Callers that want no jitter pass 1.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        // NaN (no number at all) counts as no jitter; `mul_f64` would panic on it.
        let jitter = if jitter.is_nan() {
            1.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let factor = 0.5 + 0.5 * jitter;
        let delay = self.base.mul_f64(factor).clamp(self.min, self.max);
        self.base = self.base.saturating_mul(2).min(self.max);
        delay
    }

    /// [`Backoff::next_delay`] with a random jitter.
    pub fn next_jittered(&mut self) -> Duration {
        self.next_delay(rand::random())
    }

    /// A delay the other side asked for (already capped by the caller); later delays continue
    /// from twice it (invariant 3).
    pub fn retry_after(&mut self, asked: Duration) -> Duration {
        self.base = asked.saturating_mul(2).clamp(self.min, self.max);
        asked
    }

    /// Success: the next failure starts again from `min`.
    pub fn reset(&mut self) {
        self.base = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_min_to_max_and_resets() {
        let mut b = Backoff::new(10 * MS, 75 * MS);
        let delays: Vec<Duration> = (0..5).map(|_| b.next_delay(1.0)).collect();
        assert_eq!(delays, [10 * MS, 20 * MS, 40 * MS, 75 * MS, 75 * MS]);
        b.reset();
        assert_eq!(b.next_delay(1.0), 10 * MS);
        // Jitter 0 halves the base, never below min.
        assert_eq!(b.next_delay(0.0), 10 * MS);
        assert_eq!(b.next_delay(0.0), 20 * MS);
    }

    #[test]
    fn stays_in_bounds_for_any_jitter_and_continues_after_retry_after() {
        let mut b = Backoff::new(30 * MS, 5 * MS);
        for j in [-1.0, 0.0, 0.3, 1.0, 7.0, f64::NAN] {
            let d = b.next_delay(j);
            assert_eq!(d, 30 * MS, "max below min is min, for jitter {j}");
        }
        let mut b = Backoff::new(10 * MS, 1000 * MS);
        assert_eq!(b.retry_after(200 * MS), 200 * MS);
        assert_eq!(b.next_delay(1.0), 400 * MS);
        for _ in 0..100 {
            let d = b.next_jittered();
            assert!(d >= 10 * MS && d <= 1000 * MS);
        }
    }
}
