//! [`RemoteWrite`]: every configured endpoint (and the debug output) behind one [`Fanout`].
//!
//! Invariants:
//! 1. All endpoints are validated (URL, headers, TLS) before any starts: `start` either
//!    starts everything or nothing.
//! 2. Each endpoint has its own input queue, queue manager and shards: one slow or failing
//!    endpoint never delays another (its input queue fills and drops, counted).
//! 3. Endpoints are keyed by a hash of everything that defines them ([`endpoint_key`]), so a
//!    reload can keep the ones whose key did not change.
//! 4. Shutdown stops accepting batches, lets every endpoint send what it holds, and after the
//!    grace period abandons the rest, counting it as dropped (reason `shutdown`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::task::JoinHandle;

use super::debug::{DEBUG_INTERVAL, spawn_debug_sink};
use super::error::Error;
use super::metrics::RemoteMetrics;
use super::queue::{QueueHandle, QueueTuning, spawn_queue};
use super::source::Fanout;
use super::write_client::{HttpWriteClient, WriteClient};
use crate::append::Appender;
use crate::config::{Config, HttpClientConfig, RemoteWriteConfig};
use crate::labels::Labels;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The running remote write side of the agent.
#[derive(Debug)]
pub struct RemoteWrite {
    fanout: Arc<Fanout>,
    endpoints: Vec<Endpoint>,
    debug: Option<JoinHandle<()>>,
}

/// One running endpoint.
#[derive(Debug)]
struct Endpoint {
    key: u64,
    queue: QueueHandle,
}

/// An endpoint's input queue holds this many times its `queue_config.capacity` samples.
pub const INPUT_QUEUE_FACTOR: usize = 2;

impl RemoteWrite {
    /// Starts every `remote_write` endpoint of `config`, and the debug output when there is no
    /// endpoint or `debug_output` is set; registers the metrics in `registry`. Must be called
    /// within a Tokio runtime.
    pub fn new(
        config: &Config,
        debug_output: bool,
        registry: &mut Registry,
    ) -> Result<Self, Error> {
        let metrics = RemoteMetrics::register(registry);
        Self::start_with(
            config,
            debug_output,
            &metrics,
            QueueTuning::default(),
            HttpWriteClient::new,
        )
    }

    /// [`RemoteWrite::new`] with the metrics, tuning and write client given (tests, benches).
    pub fn start_with<C, F>(
        config: &Config,
        debug_output: bool,
        metrics: &RemoteMetrics,
        tuning: QueueTuning,
        mut make_client: F,
    ) -> Result<Self, Error>
    where
        C: WriteClient,
        F: FnMut(&RemoteWriteConfig) -> Result<C, Error>,
    {
        let external = &config.global.external_labels;
        let clients = config
            .remote_write
            .iter()
            .map(&mut make_client)
            .collect::<Result<Vec<_>, _>>()?;
        let mut fanout = Fanout::new();
        let mut endpoints = Vec::with_capacity(clients.len());
        for (cfg, client) in config.remote_write.iter().zip(clients) {
            let m = metrics.endpoint(&cfg.name);
            let q = &cfg.queue_config;
            let capacity = q
                .capacity
                .max(q.max_samples_per_send)
                .saturating_mul(INPUT_QUEUE_FACTOR);
            m.queue_capacity
                .set(i64::try_from(capacity).unwrap_or(i64::MAX));
            let source = fanout.add_output(
                capacity,
                m.dropped.queue_full.clone(),
                m.dropped.shutdown.clone(),
            );
            let queue = spawn_queue(cfg, external, source, client, m, tuning);
            tracing::info!(endpoint = %cfg.name, url = %cfg.url, "remote write endpoint started");
            endpoints.push(Endpoint {
                key: endpoint_key(cfg, external),
                queue,
            });
        }
        let debug = (config.remote_write.is_empty() || debug_output).then(|| {
            // What the debug output cannot keep up with is of no consequence: not counted.
            let source = fanout.add_output(100_000, Counter::default(), Counter::default());
            spawn_debug_sink(source, external.clone(), DEBUG_INTERVAL)
        });
        Ok(RemoteWrite {
            fanout: Arc::new(fanout),
            endpoints,
            debug,
        })
    }

    /// The appender to give the scrape loops.
    pub fn appender(&self) -> Arc<dyn Appender> {
        self.fanout.clone()
    }

    /// The running endpoints with their keys (see [`endpoint_key`]).
    pub fn endpoints(&self) -> impl Iterator<Item = (u64, &QueueHandle)> {
        self.endpoints.iter().map(|e| (e.key, &e.queue))
    }

    /// Stops accepting batches, sends what is queued, and after `grace` abandons the rest.
    /// Returns whether everything was sent (or refused) in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.fanout.close();
        let stoppers: Vec<_> = self.endpoints.iter().map(|e| e.queue.stopper()).collect();
        let mut waits: Vec<_> = self
            .endpoints
            .into_iter()
            .map(|e| futures_util::future::Either::Left(e.queue.join()))
            .collect();
        if let Some(debug) = self.debug {
            waits.push(futures_util::future::Either::Right(async move {
                let _ = debug.await;
            }));
        }
        let all = join_all(waits);
        tokio::pin!(all);
        let clean = tokio::time::timeout(grace, &mut all).await.is_ok();
        if !clean {
            for stop in &stoppers {
                stop.cancel();
            }
            all.await;
        }
        let discarded = self.fanout.discard_queued();
        if clean {
            tracing::info!("remote write stopped; everything queued was sent");
        } else {
            tracing::warn!(grace = ?grace, discarded_input = discarded, "remote write stopped before everything queued was sent; the rest is counted as dropped (shutdown)");
        }
        clean
    }
}

/// A stable hash of what defines an endpoint: its configuration (secrets included, never
/// shown) and the external labels.
pub fn endpoint_key(cfg: &RemoteWriteConfig, external_labels: &Labels) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    // `Debug` of the config shows every field but secrets, which are added separately.
    h.update(format!("{cfg:?}").as_bytes());
    h.update(format!("{external_labels:?}").as_bytes());
    for secret in secrets(&cfg.http) {
        h.update(&[0xff]);
        h.update(secret.as_bytes());
    }
    h.digest()
}

fn secrets(http: &HttpClientConfig) -> impl Iterator<Item = &str> {
    let basic = http.basic_auth.as_ref().and_then(|b| b.password.as_ref());
    let auth = http
        .authorization
        .as_ref()
        .and_then(|a| a.credentials.as_ref());
    let key = http.tls_config.key.as_ref();
    [basic, auth, key].into_iter().flatten().map(|s| s.expose())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BasicAuth, Secret};

    fn cfg(url: &str) -> RemoteWriteConfig {
        RemoteWriteConfig {
            url: url.into(),
            name: "a".into(),
            ..Default::default()
        }
    }

    #[test]
    fn endpoint_key_changes_with_anything_that_defines_the_endpoint() {
        let none = Labels::empty();
        let base = cfg("http://a/w");
        let key = endpoint_key(&base, &none);
        assert_eq!(key, endpoint_key(&base.clone(), &none));
        assert_ne!(key, endpoint_key(&cfg("http://b/w"), &none));
        assert_ne!(key, endpoint_key(&base, &Labels::from_pairs([("x", "1")])));
        let mut slower = base.clone();
        slower.queue_config.max_shards = 3;
        assert_ne!(key, endpoint_key(&slower, &none));
        let with_password = |p: &str| {
            let mut c = base.clone();
            c.http.basic_auth = Some(BasicAuth {
                username: "u".into(),
                password: Some(Secret::new(p)),
                password_file: None,
            });
            endpoint_key(&c, &none)
        };
        assert_ne!(with_password("one"), with_password("two"));
    }

    #[test]
    fn an_invalid_endpoint_starts_nothing() {
        let config = Config {
            remote_write: vec![cfg("http://127.0.0.1:1/ok"), cfg("not a url")],
            ..Default::default()
        };
        let err = RemoteWrite::new(&config, false, &mut Registry::default()).err();
        assert!(
            matches!(err, Some(Error::Url { ref url, .. }) if url == "not a url"),
            "{err:?}"
        );
    }

    /// Collects formatted log output.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn without_endpoints_the_debug_output_logs_what_would_be_sent() {
        use crate::append::{Batch, Sample, SeriesRef};
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        // A current-thread runtime: the debug task runs on this thread, under this default.
        let _guard = tracing::subscriber::set_default(subscriber);
        let config = Config {
            global: crate::config::GlobalConfig {
                external_labels: Labels::from_pairs([("cluster", "c1")]),
                ..Default::default()
            },
            ..Default::default()
        };
        let remote = RemoteWrite::new(&config, false, &mut Registry::default());
        let remote = remote.unwrap_or_else(|e| panic!("cannot start: {e}"));
        assert_eq!(remote.endpoints().count(), 0);
        remote.appender().append(Batch {
            series: vec![(SeriesRef(1), Labels::from_pairs([("__name__", "up")]))],
            samples: vec![Sample {
                series: SeriesRef(1),
                timestamp_ms: 42,
                value: 1.0,
            }],
            gone: vec![],
        });
        // Shutdown ends the debug output, which logs its last summary.
        assert!(remote.shutdown(Duration::from_secs(10)).await);
        let logs = String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner()))
            .into_owned();
        let line = logs.lines().find(|l| l.contains("debug output"));
        let line = line.unwrap_or_else(|| panic!("no debug output line in:\n{logs}"));
        assert!(line.contains("samples=1"), "{line}");
        assert!(
            line.contains(r#"{__name__="up", cluster="c1"} 1 @42"#),
            "{line}"
        );
    }
}
