//! Self-metrics of the write-ahead buffer. Labels come from bounded sets: endpoint names from
//! the config, reasons from the constants here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Why scraped samples never reached the buffer (`reason` of `samples_dropped_total`).
pub mod drop_reason {
    /// Writing failed (disk full, I/O error) or the writer was backing off after a failure.
    pub const WRITE_ERROR: &str = "write_error";
    /// The batch does not fit in one record or under the size cap.
    pub const TOO_LARGE: &str = "too_large";
    /// The writer thread was not keeping up (a slow or stalled disk): its queue was full.
    pub const STALLED: &str = "stalled";
}

/// All buffer metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WalMetrics {
    pub(super) bytes: Gauge,
    pub(super) segments: Gauge,
    pub(super) samples_written: Counter,
    pub(super) bytes_written: Counter,
    pub(super) dropped_write_error: Counter,
    pub(super) dropped_too_large: Counter,
    pub(super) dropped_stalled: Counter,
    pub(super) corrupt_bytes: Counter,
    pub(super) fsync_duration: Histogram,
    pub(super) fsync_failures: Counter,
    pub(super) cursor_write_failures: Counter,
    lost: Family<ReasonLabel, Counter>,
    replayed: Family<EndpointLabel, Counter>,
    lag_bytes: Family<EndpointLabel, Gauge>,
    lag_seconds: Family<EndpointLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    oldest_unsent: Family<EndpointLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// The handles of one endpoint.
#[derive(Clone, Debug)]
pub(super) struct EndpointWalMetrics {
    pub(super) lost_cap: Counter,
    pub(super) lost_age: Counter,
    pub(super) lost_corrupt: Counter,
    pub(super) lost_missing: Counter,
    pub(super) replayed: Counter,
    pub(super) lag_bytes: Gauge,
    pub(super) lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub(super) oldest_unsent: Gauge<f64, std::sync::atomic::AtomicU64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    endpoint: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabel {
    reason: String,
}

/// The `reason`s of `samples_lost_total`, as the buffer's gap reasons.
const LOST_REASONS: [&str; 4] = ["cap", "age", "corrupt", "missing"];

/// Buckets for fsync durations: 100 µs to 10 s.
const FSYNC_BUCKETS: [f64; 11] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

impl WalMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let dropped: Family<DropLabel, Counter> = Family::default();
        let reason = |r: &str| {
            dropped.get_or_create_owned(&DropLabel {
                reason: r.to_owned(),
            })
        };
        let m = WalMetrics {
            bytes: Gauge::default(),
            segments: Gauge::default(),
            samples_written: Counter::default(),
            bytes_written: Counter::default(),
            dropped_write_error: reason(drop_reason::WRITE_ERROR),
            dropped_too_large: reason(drop_reason::TOO_LARGE),
            dropped_stalled: reason(drop_reason::STALLED),
            corrupt_bytes: Counter::default(),
            fsync_duration: Histogram::new(FSYNC_BUCKETS),
            fsync_failures: Counter::default(),
            cursor_write_failures: Counter::default(),
            lost: Family::default(),
            replayed: Family::default(),
            lag_bytes: Family::default(),
            lag_seconds: Family::default(),
            oldest_unsent: Family::default(),
        };
        let r = registry;
        r.register(
            "scrapelet_buffer_bytes",
            "Bytes of buffer segments on disk.",
            m.bytes.clone(),
        );
        r.register(
            "scrapelet_buffer_segments",
            "Buffer segments on disk.",
            m.segments.clone(),
        );
        r.register(
            "scrapelet_buffer_samples_written",
            "Samples written to the buffer.",
            m.samples_written.clone(),
        );
        r.register(
            "scrapelet_buffer_bytes_written",
            "Bytes of records written to the buffer (snapshots included).",
            m.bytes_written.clone(),
        );
        r.register(
            "scrapelet_buffer_samples_dropped",
            "Scraped samples that could not be written to the buffer, by reason.",
            dropped,
        );
        r.register(
            "scrapelet_buffer_samples_lost",
            "Samples in the buffer an endpoint never read, by reason: cap, age (deleted by a \
             cap first), corrupt (damaged on disk), missing (gone before this process knew).",
            m.lost.clone(),
        );
        r.register(
            "scrapelet_buffer_corrupt_bytes",
            "Bytes cut or removed at start-up: torn tails and unreadable segments.",
            m.corrupt_bytes.clone(),
        );
        r.register(
            "scrapelet_buffer_fsync_duration_seconds",
            "Duration of syncing a buffer segment to disk.",
            m.fsync_duration.clone(),
        );
        r.register(
            "scrapelet_buffer_fsync_failures",
            "Failed syncs of a buffer segment.",
            m.fsync_failures.clone(),
        );
        r.register(
            "scrapelet_buffer_cursor_write_failures",
            "Failed writes of an endpoint's cursor file.",
            m.cursor_write_failures.clone(),
        );
        r.register(
            "scrapelet_buffer_replayed_records",
            "Records an endpoint read that an earlier process had written.",
            m.replayed.clone(),
        );
        r.register(
            "scrapelet_buffer_endpoint_lag_bytes",
            "Buffer bytes after the endpoint's saved cursor.",
            m.lag_bytes.clone(),
        );
        r.register(
            "scrapelet_buffer_endpoint_lag_seconds",
            "Newest sample timestamp written minus newest delivered, in seconds.",
            m.lag_seconds.clone(),
        );
        r.register(
            "scrapelet_buffer_oldest_unsent_sample_age_seconds",
            "Age of the oldest sample not yet delivered to the endpoint (0 when caught up).",
            m.oldest_unsent.clone(),
        );
        m
    }

    pub(super) fn endpoint(&self, name: &str) -> EndpointWalMetrics {
        let e = EndpointLabel {
            endpoint: name.to_owned(),
        };
        let lost = |reason: &str| {
            self.lost.get_or_create_owned(&ReasonLabel {
                endpoint: name.to_owned(),
                reason: reason.to_owned(),
            })
        };
        let [cap, age, corrupt, missing] = LOST_REASONS;
        EndpointWalMetrics {
            lost_cap: lost(cap),
            lost_age: lost(age),
            lost_corrupt: lost(corrupt),
            lost_missing: lost(missing),
            replayed: self.replayed.get_or_create_owned(&e),
            lag_bytes: self.lag_bytes.get_or_create_owned(&e),
            lag_seconds: self.lag_seconds.get_or_create_owned(&e),
            oldest_unsent: self.oldest_unsent.get_or_create_owned(&e),
        }
    }
}

impl WalMetrics {
    /// Removes every series of endpoint `name` (it left the config).
    pub(super) fn remove_endpoint(&self, name: &str) {
        let e = EndpointLabel {
            endpoint: name.to_owned(),
        };
        for reason in LOST_REASONS {
            self.lost.remove(&ReasonLabel {
                endpoint: name.to_owned(),
                reason: reason.to_owned(),
            });
        }
        self.replayed.remove(&e);
        self.lag_bytes.remove(&e);
        self.lag_seconds.remove(&e);
        self.oldest_unsent.remove(&e);
    }
}

impl EndpointWalMetrics {
    pub(super) fn lost(&self, reason: crate::buffer::GapReason) -> &Counter {
        use crate::buffer::GapReason;
        match reason {
            GapReason::Cap => &self.lost_cap,
            GapReason::Age => &self.lost_age,
            GapReason::Corrupt => &self.lost_corrupt,
            GapReason::Missing => &self.lost_missing,
        }
    }
}
