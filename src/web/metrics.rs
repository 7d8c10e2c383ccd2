//! The web server's own metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters of connections and refused requests.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    connections: Gauge,
    closed: Family<ReasonLabel, Counter>,
    unauthorized: Counter,
    config_ok: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why the server closed a connection (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Closed {
    /// No complete request head (or TLS handshake) within the header timeout.
    HeaderTimeout,
    /// No request within the idle timeout.
    IdleTimeout,
    /// Idle, and room was needed for a new connection at `--web.max-connections`.
    Evicted,
    /// The TLS handshake failed (a client without the right certificate, plain HTTP ...).
    TlsHandshake,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        registry.register(
            "scrapelet_web_connections",
            "Connections the web server holds",
            m.connections.clone(),
        );
        registry.register(
            "scrapelet_web_connections_closed",
            "Connections the web server closed itself, by reason (header_timeout, idle_timeout, evicted, tls_handshake)",
            m.closed.clone(),
        );
        registry.register(
            "scrapelet_web_requests_unauthorized",
            "Requests refused with 401: no or wrong basic auth credentials",
            m.unauthorized.clone(),
        );
        registry.register(
            "scrapelet_web_config_last_reload_successful",
            "Whether the web config files last read were applied (1) or refused (0); 1 without a web config",
            m.config_ok.clone(),
        );
        m.config_ok.set(1);
        m
    }

    pub(super) fn connection_opened(&self) {
        self.connections.inc();
    }

    pub(super) fn connection_closed(&self) {
        self.connections.dec();
    }

    pub(super) fn closed(&self, why: Closed) {
        let reason = match why {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted => "evicted",
            Closed::TlsHandshake => "tls_handshake",
        };
        self.closed.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(super) fn unauthorized(&self) {
        self.unauthorized.inc();
    }

    pub(super) fn web_config_reloaded(&self, ok: bool) {
        self.config_ok.set(i64::from(ok));
    }
}
