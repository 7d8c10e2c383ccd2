//! Self-metrics of Kubernetes discovery. Labels: `resource` (`pod`, `node`), `event` and
//! `kind` (fixed sets).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Kubernetes discovery metrics, registered once and shared by every watch.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub(super) pods: Gauge,
    pub(super) events: Family<EventLabels, Counter>,
    pub(super) relists: Family<ResourceLabels, Counter>,
    pub(super) errors: Family<ErrorLabels, Counter>,
    pub(super) last_sync: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    pub(super) healthy: Family<ResourceLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResourceLabels {
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EventLabels {
    pub resource: &'static str,
    /// `add`, `update` or `delete` (as Prometheus's `prometheus_sd_kubernetes_events_total`).
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ErrorLabels {
    pub resource: &'static str,
    /// `list`, `watch_start`, `watch`, `gone` (410: history expired, relisted) or `other`.
    pub kind: &'static str,
}

impl Metrics {
    /// Registers the Kubernetes discovery metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.register(
            "scrapelet_kubernetes_pods",
            "Pods on this node known to discovery (after the last list and watch events)",
            m.pods.clone(),
        );
        registry.register(
            "scrapelet_kubernetes_watch_events",
            "Watch events handled, by resource and event (add, update, delete)",
            m.events.clone(),
        );
        registry.register(
            "scrapelet_kubernetes_relists",
            "Complete lists of the watched resource: the first one and every relist after an error or 410 Gone",
            m.relists.clone(),
        );
        registry.register(
            "scrapelet_kubernetes_watch_errors",
            "List and watch failures, by resource and kind (list, watch_start, watch, gone, other)",
            m.errors.clone(),
        );
        registry.register(
            "scrapelet_kubernetes_last_sync_timestamp_seconds",
            "When the API server last confirmed the state: a complete list or a watch event (Unix seconds)",
            m.last_sync.clone(),
        );
        registry.register(
            "scrapelet_kubernetes_watch_healthy",
            "1 while the watch is listed and running, 0 while it is failing and retrying",
            m.healthy.clone(),
        );
        m
    }

    pub(super) fn synced(&self, resource: &'static str) {
        self.last_sync
            .get_or_create(&ResourceLabels { resource })
            .set(crate::telemetry::time::unix_seconds());
    }

    pub(super) fn event(&self, resource: &'static str, event: &'static str) {
        self.events
            .get_or_create(&EventLabels { resource, event })
            .inc();
    }

    pub(super) fn error(&self, resource: &'static str, kind: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { resource, kind })
            .inc();
    }

    pub(super) fn relisted(&self, resource: &'static str) {
        self.relists
            .get_or_create(&ResourceLabels { resource })
            .inc();
    }

    pub(super) fn set_healthy(&self, resource: &'static str, healthy: bool) {
        self.healthy
            .get_or_create(&ResourceLabels { resource })
            .set(i64::from(healthy));
    }
}
