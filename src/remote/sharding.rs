//! Dynamic sharding: how many shards an endpoint needs, as Prometheus's
//! `QueueManager.calculateDesiredShards` computes it.
//!
//! Every [`SHARD_UPDATE_INTERVAL`] the queue turns its counters (samples in, out, dropped, and
//! time spent sending) into exponentially weighted rates and asks for
//! `time_per_sample * (in_rate * kept_ratio + 5% of the backlog)` shards, rounded up. A change
//! smaller than 30% of the current count is ignored; the queue never shrinks while more than
//! 10 s behind; the result is kept within `[min_shards, max_shards]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the desired number of shards is recomputed.
pub const SHARD_UPDATE_INTERVAL: Duration = Duration::from_secs(10);

/// Weight of the newest interval in the moving averages.
const EWMA_WEIGHT: f64 = 0.2;
/// A change in shards must exceed this fraction of the current count.
const SHARD_TOLERANCE_FRACTION: f64 = 0.3;
/// Share of the backlog to catch up on per second.
const BACKLOG_CATCHUP: f64 = 0.05;
/// Never shrink while further behind than this many seconds.
const MAX_DELAY_TO_DOWNSHARD: f64 = 10.0;

/// Counters the reader and the shards add to; the controller drains them every interval.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Samples read from the input.
    pub(super) samples_in: AtomicU64,
    /// Samples whose send finished (sent, or failed for good).
    pub(super) samples_out: AtomicU64,
    /// Samples dropped before sending (relabeling, unknown series, age limit).
    pub(super) samples_dropped: AtomicU64,
    /// Nanoseconds spent sending, retries included.
    pub(super) send_nanos: AtomicU64,
}

/// The moving averages, owned by the controller.
#[derive(Debug)]
pub(super) struct Rates {
    samples_in: Ewma,
    samples_out: Ewma,
    samples_dropped: Ewma,
    send_nanos: Ewma,
}

/// What the calculation needs to know at one tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Inputs {
    /// Samples per second read.
    pub(super) in_rate: f64,
    /// Samples per second whose send finished.
    pub(super) out_rate: f64,
    /// Samples per second dropped before sending.
    pub(super) dropped_rate: f64,
    /// Seconds spent sending per second (summed over shards).
    pub(super) send_seconds_rate: f64,
    /// Highest sample timestamp read, in seconds.
    pub(super) highest_read_s: f64,
    /// Highest sample timestamp delivered, in seconds.
    pub(super) highest_sent_s: f64,
    pub(super) current: usize,
    pub(super) min: usize,
    pub(super) max: usize,
}

/// The result of one calculation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Desired {
    /// The raw estimate (exported as `scrapelet_remote_shards_desired`); `None` when there was
    /// nothing to estimate from (no sends finished).
    pub(super) estimate: Option<f64>,
    /// The number of shards to run.
    pub(super) shards: usize,
}

/// An exponentially weighted moving rate, ticked once per interval.
#[derive(Debug)]
struct Ewma {
    interval: Duration,
    rate: f64,
    initialised: bool,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Rates {
    pub(super) fn new(interval: Duration) -> Self {
        Rates {
            samples_in: Ewma::new(interval),
            samples_out: Ewma::new(interval),
            samples_dropped: Ewma::new(interval),
            send_nanos: Ewma::new(interval),
        }
    }

    /// Folds the counts since the last tick into the averages and resets the counters.
    pub(super) fn tick(&mut self, c: &Counters) {
        self.samples_in
            .tick(c.samples_in.swap(0, Ordering::Relaxed));
        self.samples_out
            .tick(c.samples_out.swap(0, Ordering::Relaxed));
        self.samples_dropped
            .tick(c.samples_dropped.swap(0, Ordering::Relaxed));
        self.send_nanos
            .tick(c.send_nanos.swap(0, Ordering::Relaxed));
    }

    /// The inputs of [`desired_shards`] from the current averages.
    pub(super) fn inputs(
        &self,
        highest_read_s: f64,
        highest_sent_s: f64,
        current: usize,
        min: usize,
        max: usize,
    ) -> Inputs {
        Inputs {
            in_rate: self.samples_in.rate,
            out_rate: self.samples_out.rate,
            dropped_rate: self.samples_dropped.rate,
            send_seconds_rate: self.send_nanos.rate / 1e9,
            highest_read_s,
            highest_sent_s,
            current,
            min,
            max,
        }
    }
}

impl Ewma {
    fn new(interval: Duration) -> Self {
        Ewma {
            interval,
            rate: 0.0,
            initialised: false,
        }
    }

    fn tick(&mut self, events: u64) {
        let instant = events as f64 / self.interval.as_secs_f64().max(1e-9);
        if self.initialised {
            self.rate += EWMA_WEIGHT * (instant - self.rate);
        } else {
            self.rate = instant;
            self.initialised = true;
        }
    }
}

/// Prometheus's `calculateDesiredShards`.
pub(super) fn desired_shards(i: &Inputs) -> Desired {
    let keep = |n: usize| Desired {
        estimate: None,
        shards: n,
    };
    if i.out_rate <= 0.0 {
        return keep(i.current);
    }
    let kept_ratio = i.out_rate / (i.dropped_rate + i.out_rate);
    let delay = i.highest_read_s - i.highest_sent_s;
    let pending = delay * i.in_rate * kept_ratio;
    let time_per_sample = i.send_seconds_rate / i.out_rate;
    let estimate = time_per_sample * (i.in_rate * kept_ratio + BACKLOG_CATCHUP * pending);
    let with_estimate = |n: usize| Desired {
        estimate: Some(estimate),
        shards: n,
    };

    let current = i.current as f64;
    let lower = current * (1.0 - SHARD_TOLERANCE_FRACTION);
    let upper = current * (1.0 + SHARD_TOLERANCE_FRACTION);
    let rounded = estimate.ceil();
    if !rounded.is_finite() || (lower <= rounded && rounded <= upper) {
        return with_estimate(i.current);
    }
    let wanted = rounded.max(0.0) as usize;
    if wanted < i.current && delay > MAX_DELAY_TO_DOWNSHARD {
        return with_estimate(i.current);
    }
    with_estimate(wanted.clamp(i.min, i.max.max(i.min)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(in_rate: f64, out_rate: f64, send_seconds_rate: f64, current: usize) -> Inputs {
        Inputs {
            in_rate,
            out_rate,
            dropped_rate: 0.0,
            send_seconds_rate,
            highest_read_s: 1000.0,
            highest_sent_s: 1000.0,
            current,
            min: 1,
            max: 50,
        }
    }

    #[test]
    fn desired_shards_follow_prometheus() {
        let check = |i: Inputs, shards: usize, estimate: Option<f64>| {
            let got = desired_shards(&i);
            assert_eq!(got.shards, shards, "{i:?}");
            match (got.estimate, estimate) {
                (Some(g), Some(e)) => assert!((g - e).abs() < 1e-9, "{g} != {e}"),
                (g, e) => assert_eq!(g, e),
            }
        };
        // Nothing finished sending: keep what we have.
        check(inputs(1000.0, 0.0, 0.0, 3), 3, None);
        // 10k samples/s in and out, each second of sending moves 2000 samples: 5 shards.
        check(inputs(10_000.0, 10_000.0, 5.0, 1), 5, Some(5.0));
        // Within 30% of the current count: no change.
        check(inputs(10_000.0, 10_000.0, 5.0, 4), 4, Some(5.0));
        check(inputs(10_000.0, 10_000.0, 5.0, 6), 6, Some(5.0));
        // Far above: go up, but not past max.
        check(inputs(10_000.0, 10_000.0, 500.0, 1), 50, Some(500.0));
        // Far below: go down, but not under min.
        let mut few = inputs(10.0, 10.0, 0.001, 20);
        few.min = 2;
        check(few, 2, Some(0.001));
        // Dropped samples are no work: with half of the input dropped, 10k/s in needs what
        // 5k/s needs (5000 * 0.0005 s = 2.5 shards), not 5.
        let mut dropped = inputs(10_000.0, 5_000.0, 2.5, 1);
        dropped.dropped_rate = 5_000.0;
        check(dropped, 3, Some(2.5));
        // A backlog of 100 s adds 5% of it per second.
        let mut behind = inputs(1_000.0, 1_000.0, 1.0, 1);
        behind.highest_sent_s = 900.0;
        check(
            behind,
            6,
            Some(1.0 * (1_000.0 + 0.05 * 100.0 * 1_000.0) / 1_000.0),
        );
        // More than 10 s behind: never shrink.
        let mut late = inputs(100.0, 100.0, 0.01, 10);
        late.highest_sent_s = 980.0;
        check(late, 10, Some(0.01 * (100.0 + 0.05 * 20.0 * 100.0) / 100.0));
    }

    #[test]
    fn ewma_starts_at_the_first_rate_then_moves_a_fifth_of_the_way() {
        let counters = Counters::default();
        let mut rates = Rates::new(Duration::from_secs(10));
        Counters::add(&counters.samples_in, 1000);
        rates.tick(&counters);
        assert_eq!(rates.samples_in.rate, 100.0);
        rates.tick(&counters);
        assert!((rates.samples_in.rate - 80.0).abs() < 1e-9);
        Counters::add(&counters.samples_in, 2000);
        rates.tick(&counters);
        assert!((rates.samples_in.rate - (80.0 + 0.2 * (200.0 - 80.0))).abs() < 1e-9);
        let i = rates.inputs(1.0, 1.0, 1, 1, 2);
        assert_eq!(i.in_rate, rates.samples_in.rate);
    }
}
