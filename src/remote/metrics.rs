//! Self-metrics of remote write, one series per endpoint (label `endpoint` = the remote's name).
//!
//! Every label comes from a bounded set: endpoint names from the config, `reason`, `code` and
//! `window` from the constants below.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// All remote write metric families. Cheap to clone (the families are shared).
#[derive(Clone, Debug)]
pub struct RemoteMetrics {
    samples_sent: Family<EndpointLabel, Counter>,
    samples_retried: Family<EndpointLabel, Counter>,
    samples_resent: Family<EndpointLabel, Counter>,
    samples_failed: Family<ReasonLabel, Counter>,
    samples_dropped: Family<ReasonLabel, Counter>,
    bytes_sent: Family<EndpointLabel, Counter>,
    requests: Family<CodeLabel, Counter>,
    batch_send_duration: Family<EndpointLabel, Histogram, fn() -> Histogram>,
    shards: Family<EndpointLabel, Gauge>,
    shards_desired: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
    shards_min: Family<EndpointLabel, Gauge>,
    shards_max: Family<EndpointLabel, Gauge>,
    shard_capacity: Family<EndpointLabel, Gauge>,
    samples_pending: Family<EndpointLabel, Gauge>,
    highest_sent_timestamp: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
    queue_capacity: Family<EndpointLabel, Gauge>,
    metadata_sent: Family<EndpointLabel, Counter>,
    metadata_retried: Family<EndpointLabel, Counter>,
    metadata_failed: Family<ReasonLabel, Counter>,
    metadata_bytes_sent: Family<EndpointLabel, Counter>,
    series_limit: Family<WindowLabel, Gauge>,
    series_current: Family<WindowLabel, Gauge>,
    setting_ignored: Family<SettingLabel, Gauge>,
}

/// The settings of `setting_ignored`: accepted in the config, not implemented.
pub mod ignored_setting {
    /// Exemplars are never sent.
    pub const SEND_EXEMPLARS: &str = "send_exemplars";
    /// Native histograms are never sent.
    pub const SEND_NATIVE_HISTOGRAMS: &str = "send_native_histograms";
}

/// Why samples were dropped before being sent (`reason` of `samples_dropped_total`).
pub mod drop_reason {
    /// The endpoint's input queue was full (the endpoint is slow or down).
    pub const QUEUE_FULL: &str = "queue_full";
    /// A sample arrived for a series this endpoint never saw defined.
    pub const UNKNOWN_SERIES: &str = "unknown_series";
    /// `write_relabel_configs` dropped the series.
    pub const WRITE_RELABEL: &str = "write_relabel";
    /// Older than `queue_config.sample_age_limit`.
    pub const TOO_OLD: &str = "too_old";
    /// Still queued when the shutdown deadline passed, with the in-memory input only
    /// (`RemoteWrite::new`, embedding). The agent's input is the on-disk buffer: what it did
    /// not send by then stays there and the next run sends it, so this stays 0.
    pub const SHUTDOWN: &str = "shutdown";
    /// A series beyond `max_hourly_series` (its samples are dropped while the hour is full).
    pub const MAX_HOURLY_SERIES: &str = "max_hourly_series";
    /// A series beyond `max_daily_series` (its samples are dropped while the day is full).
    pub const MAX_DAILY_SERIES: &str = "max_daily_series";
}

/// The `window` of the series limit gauges.
pub mod series_window {
    /// `max_hourly_series`: the last hour.
    pub const HOURLY: &str = "hourly";
    /// `max_daily_series`: the last 24 hours.
    pub const DAILY: &str = "daily";
}

/// Why the receiver's refusal was final (`reason` of `samples_failed_total`).
pub mod fail_reason {
    /// A 4xx other than 429: the request can never succeed.
    pub const REJECTED: &str = "rejected";
    /// A 429 while `retry_on_http_429` is off.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A redirect that is not followed: 301, 302 or 303 (a POST is not turned into a GET),
    /// 307/308 with `follow_redirects: false`, or one without `Location`.
    pub const REDIRECT: &str = "redirect";
    /// The request could not be built (never expected).
    pub const ENCODE: &str = "encode";
    /// Metadata only: not delivered within its `send_interval` (the next round sends it
    /// again, as it is then).
    pub const EXPIRED: &str = "expired";
}

/// The handles of one endpoint.
#[derive(Clone, Debug)]
pub(crate) struct EndpointMetrics {
    pub(crate) samples_sent: Counter,
    pub(crate) samples_retried: Counter,
    pub(crate) samples_resent: Counter,
    pub(crate) failed: FailCounters,
    pub(crate) dropped: DropCounters,
    pub(crate) bytes_sent: Counter,
    pub(crate) requests: RequestCounters,
    pub(crate) batch_send_duration: Histogram,
    pub(crate) shards: Gauge,
    pub(crate) shards_desired: Gauge<f64, AtomicU64>,
    pub(crate) shards_min: Gauge,
    pub(crate) shards_max: Gauge,
    pub(crate) shard_capacity: Gauge,
    pub(crate) samples_pending: Gauge,
    pub(crate) highest_sent_timestamp: Gauge<f64, AtomicU64>,
    pub(crate) queue_capacity: Gauge,
    /// The highest timestamp sent in ms, behind `highest_sent_timestamp` (which only rises).
    pub(crate) highest_sent_ms: std::sync::Arc<AtomicI64>,
    /// Metric metadata entries (not samples), and their requests' bytes.
    pub(crate) metadata_sent: Counter,
    pub(crate) metadata_retried: Counter,
    pub(crate) metadata_bytes_sent: Counter,
    /// `metadata_failed_total` per reason; `expired` is metadata's own.
    pub(crate) metadata_failed: FailCounters,
    pub(crate) metadata_expired: Counter,
    /// `series_limit` and `series_current` of the hourly and the daily window.
    pub(crate) series_hourly: SeriesGauges,
    pub(crate) series_daily: SeriesGauges,
}

/// The series limit of one window, and the series it counts now.
#[derive(Clone, Debug, Default)]
pub(crate) struct SeriesGauges {
    pub(crate) limit: Gauge,
    pub(crate) current: Gauge,
}

/// `samples_dropped_total` per reason.
#[derive(Clone, Debug, Default)]
pub(crate) struct DropCounters {
    pub(crate) queue_full: Counter,
    pub(crate) unknown_series: Counter,
    pub(crate) write_relabel: Counter,
    pub(crate) too_old: Counter,
    pub(crate) shutdown: Counter,
    pub(crate) max_hourly_series: Counter,
    pub(crate) max_daily_series: Counter,
}

/// `samples_failed_total` per reason.
#[derive(Clone, Debug, Default)]
pub(crate) struct FailCounters {
    pub(crate) rejected: Counter,
    pub(crate) rate_limited: Counter,
    pub(crate) redirect: Counter,
    pub(crate) encode: Counter,
}

/// `requests_total` per answer: status class, 429 on its own, or no answer.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestCounters {
    pub(crate) ok: Counter,
    pub(crate) client_error: Counter,
    pub(crate) too_many_requests: Counter,
    pub(crate) server_error: Counter,
    pub(crate) other: Counter,
    pub(crate) timeout: Counter,
    pub(crate) network: Counter,
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
struct WindowLabel {
    endpoint: String,
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SettingLabel {
    endpoint: String,
    setting: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    endpoint: String,
    code: String,
}

/// Every `code` of `requests_total`.
const REQUEST_CODES: [&str; 7] = ["2xx", "4xx", "429", "5xx", "other", "timeout", "network"];

/// Prometheus's default buckets, as `prometheus_remote_storage_sent_batch_duration_seconds`.
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl RemoteMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = RemoteMetrics {
            samples_sent: Family::default(),
            samples_retried: Family::default(),
            samples_resent: Family::default(),
            samples_failed: Family::default(),
            samples_dropped: Family::default(),
            bytes_sent: Family::default(),
            requests: Family::default(),
            batch_send_duration: Family::new_with_constructor(duration_histogram),
            shards: Family::default(),
            shards_desired: Family::default(),
            shards_min: Family::default(),
            shards_max: Family::default(),
            shard_capacity: Family::default(),
            samples_pending: Family::default(),
            highest_sent_timestamp: Family::default(),
            queue_capacity: Family::default(),
            metadata_sent: Family::default(),
            metadata_retried: Family::default(),
            metadata_failed: Family::default(),
            metadata_bytes_sent: Family::default(),
            series_limit: Family::default(),
            series_current: Family::default(),
            setting_ignored: Family::default(),
        };
        let r = registry;
        // Counters get their `_total` suffix from the encoder.
        r.register(
            "scrapelet_remote_samples_sent",
            "Samples the receiver accepted.",
            m.samples_sent.clone(),
        );
        r.register(
            "scrapelet_remote_samples_retried",
            "Samples in requests that failed and were retried (counted once per retry).",
            m.samples_retried.clone(),
        );
        r.register(
            "scrapelet_remote_samples_resent",
            "Samples routed again after a restart that the previous run had routed but whose \
             delivery it had not recorded (at most one sample per series and shard of them had \
             reached the receiver).",
            m.samples_resent.clone(),
        );
        r.register(
            "scrapelet_remote_samples_failed",
            "Samples the receiver refused for good, by reason: rejected (4xx), rate_limited (429), \
             redirect (a redirect not followed), encode.",
            m.samples_failed.clone(),
        );
        r.register(
            "scrapelet_remote_samples_dropped",
            "Samples dropped before being sent, by reason.",
            m.samples_dropped.clone(),
        );
        r.register(
            "scrapelet_remote_bytes_sent",
            "Compressed bytes of sample requests the receiver accepted.",
            m.bytes_sent.clone(),
        );
        r.register(
            "scrapelet_remote_requests",
            "Write requests (samples or metadata) by answer: 2xx, 4xx, 429, 5xx, other, timeout, \
             network.",
            m.requests.clone(),
        );
        r.register(
            "scrapelet_remote_batch_send_duration_seconds",
            "Duration of one write request, retries not included.",
            m.batch_send_duration.clone(),
        );
        r.register(
            "scrapelet_remote_shards",
            "Shards sending in parallel.",
            m.shards.clone(),
        );
        r.register(
            "scrapelet_remote_shards_desired",
            "Shards the rates of samples in and out call for.",
            m.shards_desired.clone(),
        );
        r.register(
            "scrapelet_remote_shards_min",
            "Configured minimum shards.",
            m.shards_min.clone(),
        );
        r.register(
            "scrapelet_remote_shards_max",
            "Configured maximum shards.",
            m.shards_max.clone(),
        );
        r.register(
            "scrapelet_remote_shard_capacity",
            "Samples each shard buffers (queue_config.capacity).",
            m.shard_capacity.clone(),
        );
        r.register(
            "scrapelet_remote_samples_pending",
            "Samples buffered in shards, not yet sent.",
            m.samples_pending.clone(),
        );
        r.register(
            "scrapelet_remote_highest_sent_timestamp_seconds",
            "Highest sample timestamp the receiver accepted, in seconds since the epoch.",
            m.highest_sent_timestamp.clone(),
        );
        r.register(
            "scrapelet_remote_queue_capacity",
            "Samples the endpoint's input queue holds before it drops (reason queue_full).",
            m.queue_capacity.clone(),
        );
        r.register(
            "scrapelet_remote_metadata_sent",
            "Metric metadata entries the receiver accepted.",
            m.metadata_sent.clone(),
        );
        r.register(
            "scrapelet_remote_metadata_retried",
            "Metric metadata entries in requests that failed and were retried (counted once per \
             retry).",
            m.metadata_retried.clone(),
        );
        r.register(
            "scrapelet_remote_metadata_failed",
            "Metric metadata entries not delivered, by reason: refused for good (rejected, \
             rate_limited, redirect), or not delivered within send_interval (expired).",
            m.metadata_failed.clone(),
        );
        r.register(
            "scrapelet_remote_metadata_bytes_sent",
            "Compressed bytes of metadata requests the receiver accepted.",
            m.metadata_bytes_sent.clone(),
        );
        r.register(
            "scrapelet_remote_series_limit",
            "Distinct series the endpoint may be sent within the window (max_hourly_series, \
             max_daily_series); 0: no limit.",
            m.series_limit.clone(),
        );
        r.register(
            "scrapelet_remote_series_current",
            "Distinct series the window's limit counts now: sent within the window, or live and \
             sent (0 without a limit).",
            m.series_current.clone(),
        );
        r.register(
            "scrapelet_remote_setting_ignored",
            "1 for each remote_write setting that is set but not implemented yet, so has no \
             effect (send_exemplars: exemplars are not sent; send_native_histograms: native \
             histograms are not sent); absent when not set.",
            m.setting_ignored.clone(),
        );
        m
    }

    /// Sets `setting_ignored{endpoint=name, setting}` to 1 when `set`, removes it otherwise.
    pub(crate) fn set_setting_ignored(&self, name: &str, setting: &str, set: bool) {
        let label = SettingLabel {
            endpoint: name.to_owned(),
            setting: setting.to_owned(),
        };
        if set {
            self.setting_ignored.get_or_create(&label).set(1);
        } else {
            self.setting_ignored.remove(&label);
        }
    }

    /// The handles of endpoint `name`.
    pub(crate) fn endpoint(&self, name: &str) -> EndpointMetrics {
        let e = EndpointLabel {
            endpoint: name.to_owned(),
        };
        let reason = |family: &Family<ReasonLabel, Counter>, reason: &str| {
            family.get_or_create_owned(&ReasonLabel {
                endpoint: name.to_owned(),
                reason: reason.to_owned(),
            })
        };
        let code = |code: &str| {
            debug_assert!(REQUEST_CODES.contains(&code));
            self.requests.get_or_create_owned(&CodeLabel {
                endpoint: name.to_owned(),
                code: code.to_owned(),
            })
        };
        let d = &self.samples_dropped;
        let f = &self.samples_failed;
        let series = |window: &str| {
            let label = WindowLabel {
                endpoint: name.to_owned(),
                window: window.to_owned(),
            };
            SeriesGauges {
                limit: self.series_limit.get_or_create_owned(&label),
                current: self.series_current.get_or_create_owned(&label),
            }
        };
        EndpointMetrics {
            samples_sent: self.samples_sent.get_or_create_owned(&e),
            samples_retried: self.samples_retried.get_or_create_owned(&e),
            samples_resent: self.samples_resent.get_or_create_owned(&e),
            failed: FailCounters {
                rejected: reason(f, fail_reason::REJECTED),
                rate_limited: reason(f, fail_reason::RATE_LIMITED),
                redirect: reason(f, fail_reason::REDIRECT),
                encode: reason(f, fail_reason::ENCODE),
            },
            dropped: DropCounters {
                queue_full: reason(d, drop_reason::QUEUE_FULL),
                unknown_series: reason(d, drop_reason::UNKNOWN_SERIES),
                write_relabel: reason(d, drop_reason::WRITE_RELABEL),
                too_old: reason(d, drop_reason::TOO_OLD),
                shutdown: reason(d, drop_reason::SHUTDOWN),
                max_hourly_series: reason(d, drop_reason::MAX_HOURLY_SERIES),
                max_daily_series: reason(d, drop_reason::MAX_DAILY_SERIES),
            },
            bytes_sent: self.bytes_sent.get_or_create_owned(&e),
            requests: RequestCounters {
                ok: code("2xx"),
                client_error: code("4xx"),
                too_many_requests: code("429"),
                server_error: code("5xx"),
                other: code("other"),
                timeout: code("timeout"),
                network: code("network"),
            },
            batch_send_duration: self.batch_send_duration.get_or_create_owned(&e),
            shards: self.shards.get_or_create_owned(&e),
            shards_desired: self.shards_desired.get_or_create_owned(&e),
            shards_min: self.shards_min.get_or_create_owned(&e),
            shards_max: self.shards_max.get_or_create_owned(&e),
            shard_capacity: self.shard_capacity.get_or_create_owned(&e),
            samples_pending: self.samples_pending.get_or_create_owned(&e),
            highest_sent_timestamp: self.highest_sent_timestamp.get_or_create_owned(&e),
            queue_capacity: self.queue_capacity.get_or_create_owned(&e),
            highest_sent_ms: std::sync::Arc::new(AtomicI64::new(i64::MIN)),
            metadata_sent: self.metadata_sent.get_or_create_owned(&e),
            metadata_retried: self.metadata_retried.get_or_create_owned(&e),
            metadata_bytes_sent: self.metadata_bytes_sent.get_or_create_owned(&e),
            metadata_failed: FailCounters {
                rejected: reason(&self.metadata_failed, fail_reason::REJECTED),
                rate_limited: reason(&self.metadata_failed, fail_reason::RATE_LIMITED),
                redirect: reason(&self.metadata_failed, fail_reason::REDIRECT),
                encode: reason(&self.metadata_failed, fail_reason::ENCODE),
            },
            metadata_expired: reason(&self.metadata_failed, fail_reason::EXPIRED),
            series_hourly: series(series_window::HOURLY),
            series_daily: series(series_window::DAILY),
        }
    }
}

impl RemoteMetrics {
    /// Removes every series of endpoint `name` from the families (it left the config), so
    /// that dashboards do not show it any more. Handles still held keep working but are no
    /// longer exported.
    pub(crate) fn remove_endpoint(&self, name: &str) {
        let e = EndpointLabel {
            endpoint: name.to_owned(),
        };
        for family in [
            &self.samples_sent,
            &self.samples_retried,
            &self.samples_resent,
            &self.bytes_sent,
            &self.metadata_sent,
            &self.metadata_retried,
            &self.metadata_bytes_sent,
        ] {
            family.remove(&e);
        }
        self.batch_send_duration.remove(&e);
        for family in [
            &self.shards,
            &self.shards_min,
            &self.shards_max,
            &self.shard_capacity,
            &self.samples_pending,
            &self.queue_capacity,
        ] {
            family.remove(&e);
        }
        self.shards_desired.remove(&e);
        self.highest_sent_timestamp.remove(&e);
        let reasons = |family: &Family<ReasonLabel, Counter>, reasons: &[&str]| {
            for reason in reasons {
                family.remove(&ReasonLabel {
                    endpoint: name.to_owned(),
                    reason: (*reason).to_owned(),
                });
            }
        };
        reasons(
            &self.samples_failed,
            &[
                fail_reason::REJECTED,
                fail_reason::RATE_LIMITED,
                fail_reason::REDIRECT,
                fail_reason::ENCODE,
            ],
        );
        reasons(
            &self.metadata_failed,
            &[
                fail_reason::REJECTED,
                fail_reason::RATE_LIMITED,
                fail_reason::REDIRECT,
                fail_reason::ENCODE,
                fail_reason::EXPIRED,
            ],
        );
        reasons(
            &self.samples_dropped,
            &[
                drop_reason::QUEUE_FULL,
                drop_reason::UNKNOWN_SERIES,
                drop_reason::WRITE_RELABEL,
                drop_reason::TOO_OLD,
                drop_reason::SHUTDOWN,
                drop_reason::MAX_HOURLY_SERIES,
                drop_reason::MAX_DAILY_SERIES,
            ],
        );
        for window in [series_window::HOURLY, series_window::DAILY] {
            let label = WindowLabel {
                endpoint: name.to_owned(),
                window: window.to_owned(),
            };
            self.series_limit.remove(&label);
            self.series_current.remove(&label);
        }
        for code in REQUEST_CODES {
            self.requests.remove(&CodeLabel {
                endpoint: name.to_owned(),
                code: code.to_owned(),
            });
        }
        for setting in [
            ignored_setting::SEND_EXEMPLARS,
            ignored_setting::SEND_NATIVE_HISTOGRAMS,
        ] {
            self.set_setting_ignored(name, setting, false);
        }
    }
}

impl EndpointMetrics {
    /// Handles registered nowhere.
    #[cfg(test)]
    pub(crate) fn unregistered() -> Self {
        RemoteMetrics::register(&mut Registry::default()).endpoint("unregistered")
    }

    /// Raises `highest_sent_timestamp` to `timestamp_ms` if it is higher.
    pub(crate) fn observe_sent_timestamp(&self, timestamp_ms: i64) {
        use std::sync::atomic::Ordering;
        let prev = self
            .highest_sent_ms
            .fetch_max(timestamp_ms, Ordering::Relaxed);
        if timestamp_ms > prev {
            // Set from the atomic, not from `timestamp_ms`: a racing higher value wins.
            let highest = self.highest_sent_ms.load(Ordering::Relaxed);
            self.highest_sent_timestamp.set(highest as f64 / 1000.0);
        }
    }

    /// The highest timestamp sent, in seconds (0 before the first send).
    pub(crate) fn highest_sent_seconds(&self) -> f64 {
        use std::sync::atomic::Ordering;
        match self.highest_sent_ms.load(Ordering::Relaxed) {
            i64::MIN => 0.0,
            ms => ms as f64 / 1000.0,
        }
    }
}
