//! Sending one batch to one endpoint: encode once, then try until it is delivered, refused for
//! good, or the queue is stopped hard. Metadata requests (`metadata`) go through the same
//! attempt/backoff/classification loop ([`Sender::deliver`]) with their own counters
//! ([`Load`]).
//!
//! Invariants:
//! 1. A batch is encoded once and the same bytes are sent on every attempt (unless the age
//!    limit takes samples out, see 2).
//! 2. Retryable failures (see `SendError::is_retryable`) are retried for as long as it takes,
//!    with the delays of `retry::Backoff` (or the receiver's `Retry-After`); the shard sends
//!    nothing else meanwhile, which keeps the order of its series. With `sample_age_limit`,
//!    samples that grew too old while retrying are taken out before the next attempt (counted
//!    as dropped, `too_old`), as Prometheus does; the rest is encoded again.
//! 3. Each sample ends in exactly one of `samples_sent`, `samples_failed{reason}` or
//!    `samples_dropped{reason="shutdown"}`, or, with an input kept on disk, is left there by a
//!    hard stop for the next run (not counted: nothing is lost). Metadata counts in `metadata_sent`,
//!    `metadata_retried` and `metadata_failed` only, and never counts as a retrying shard.
//! 4. Logs follow the endpoint's state, not requests: one line when it starts retrying (with
//!    the status and the receiver's message), one when it recovers. Refusals (4xx) lose data
//!    and are logged at error level, at most once per status per [`REJECT_LOG_INTERVAL`], with
//!    a count of the ones held back. Lines carry the endpoint through the shard's span.
//!    Metadata has its own pair of lines, which follow its state across rounds; its refusals
//!    are warnings (the next round sends it again).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use super::encode::{RequestEncoder, WireSample};
use super::metrics::{EndpointMetrics, FailCounters};
use super::retry::honour_retry_after;
use super::sharding::Counters;
use super::write_client::{SendError, WriteClient};
use crate::backoff::Backoff;
use crate::config::QueueConfig;
use crate::telemetry::{LogLimiter, error_chain};

/// Refusals are logged at most this often per endpoint.
pub(super) const REJECT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What is shared by the reader and the shards of one endpoint for sending.
pub(super) struct Sender<C> {
    pub(super) name: String,
    pub(super) client: C,
    pub(super) cfg: QueueConfig,
    pub(super) metrics: EndpointMetrics,
    /// Inputs of dynamic sharding.
    pub(super) counters: Counters,
    /// Cancelled to stop sending at once (shutdown deadline passed).
    pub(super) hard_stop: CancellationToken,
    health: Mutex<Health>,
    /// Refusal lines, per status.
    reject_log: LogLimiter,
    started: Instant,
    /// Milliseconds after `started` when a send last finished (0: never).
    last_send_ms: AtomicU64,
    /// The input outlives the process (a cursor store saves progress): what a hard stop
    /// abandons is not lost, so it is not counted as dropped.
    durable: AtomicBool,
}

/// How a batch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Sent,
    /// Refused for good, could not be encoded, or every sample grew too old while retrying;
    /// counted as failed or dropped.
    Failed,
    /// Stopped by the hard stop; counted as dropped (shutdown) unless the input is durable
    /// (then the batch is sent again by the next run).
    Cancelled,
}

/// What a request carries: picks its counters and its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Load {
    /// A shard's batch of samples.
    Samples,
    /// A chunk of a metadata round (`metadata`).
    Metadata,
}

/// What [`Sender::deliver`] does before a retry.
pub(super) enum Refresh {
    /// Send the same body again.
    Same,
    /// Send this body, carrying this many items, instead.
    Replace(Bytes, u64),
    /// Stop: nothing left is worth sending (what was taken out is counted).
    GiveUp,
}

/// The counters of one [`Load`].
struct LoadCounters<'a> {
    sent: &'a Counter,
    retried: &'a Counter,
    bytes_sent: &'a Counter,
    failed: &'a FailCounters,
}

/// The endpoint's state as logged. Covered by `Sender::health`.
#[derive(Debug, Default)]
struct Health {
    /// Shards currently retrying a batch; the endpoint is "retrying" while this is above 0.
    retrying_shards: usize,
    retrying_since: Option<Instant>,
    /// Since when metadata has failed (rounds in between included); metadata never counts as
    /// a retrying shard, so it does not hold back resharding.
    metadata_failing_since: Option<Instant>,
}

impl<C: WriteClient> Sender<C> {
    pub(super) fn new(
        name: String,
        client: C,
        cfg: QueueConfig,
        metrics: EndpointMetrics,
        hard_stop: CancellationToken,
    ) -> Self {
        Sender {
            name,
            client,
            cfg,
            metrics,
            counters: Counters::default(),
            hard_stop,
            health: Mutex::new(Health::default()),
            reject_log: LogLimiter::new(REJECT_LOG_INTERVAL, 16),
            started: Instant::now(),
            last_send_ms: AtomicU64::new(0),
            durable: AtomicBool::new(false),
        }
    }

    /// See `Sender::durable`.
    pub(super) fn set_durable(&self, durable: bool) {
        self.durable.store(durable, Ordering::Relaxed);
    }

    /// Sends one batch (see the module invariants). Also feeds the sharding counters.
    pub(super) async fn send(
        &self,
        encoder: &mut RequestEncoder,
        samples: &[WireSample],
    ) -> Outcome {
        let began = Instant::now();
        let outcome = self.send_with_retries(encoder, samples).await;
        if outcome != Outcome::Cancelled {
            Counters::add(&self.counters.samples_out, samples.len() as u64);
            Counters::add(&self.counters.send_nanos, duration_nanos(began.elapsed()));
            let now = self.started.elapsed().as_millis().max(1);
            self.last_send_ms
                .store(u64::try_from(now).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        outcome
    }

    /// Whether some shard is retrying a batch.
    pub(super) fn is_retrying(&self) -> bool {
        self.health().retrying_shards > 0
    }

    /// How long ago a send last finished; `None` if none ever did.
    pub(super) fn since_last_send(&self) -> Option<Duration> {
        match self.last_send_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    async fn send_with_retries(
        &self,
        encoder: &mut RequestEncoder,
        samples: &[WireSample],
    ) -> Outcome {
        let Some(body) = self.encode(encoder, samples) else {
            return Outcome::Failed;
        };
        let mut samples = Cow::Borrowed(samples);
        let mut highest = samples.iter().map(|s| s.timestamp_ms).max();
        let n = samples.len() as u64;
        let outcome = self
            .deliver(Load::Samples, body, n, || {
                self.drop_too_old(encoder, &mut samples, &mut highest)
            })
            .await;
        if outcome == Outcome::Sent
            && let Some(ts) = highest
        {
            self.metrics.observe_sent_timestamp(ts);
        }
        outcome
    }

    /// Sends `body`, which carries `n` items of `load`, until it is delivered, refused for
    /// good, or the hard stop comes (invariants 2-4). Before each retry (after the backoff),
    /// `refresh` may replace the body or give up.
    pub(super) async fn deliver(
        &self,
        load: Load,
        mut body: Bytes,
        mut n: u64,
        mut refresh: impl FnMut() -> Refresh,
    ) -> Outcome {
        let counters = self.counters(load);
        let mut backoff = Backoff::new(self.cfg.min_backoff, self.cfg.max_backoff);
        let mut retrying = false;
        loop {
            let attempt = Instant::now();
            let result = tokio::select! {
                biased;
                _ = self.hard_stop.cancelled() => return self.cancelled(load, n, retrying),
                r = self.client.store(body.clone()) => r,
            };
            self.metrics
                .batch_send_duration
                .observe(attempt.elapsed().as_secs_f64());
            self.count_request(&result);
            let error = match result {
                Ok(()) => {
                    counters.sent.inc_by(n);
                    counters.bytes_sent.inc_by(body.len() as u64);
                    // Metadata's failing state outlives a round given up at its deadline.
                    if retrying || load == Load::Metadata {
                        self.end_retry(load, true);
                    }
                    return Outcome::Sent;
                }
                Err(e) => e,
            };
            if !error.is_retryable(self.cfg.retry_on_http_429) {
                if retrying {
                    self.end_retry(load, false);
                }
                self.refused(load, &error, n);
                return Outcome::Failed;
            }
            if retrying {
                tracing::debug!(?load, status = error.status().map(|s| s.as_u16()), reason = %error_chain(&error), "remote write failed again; retrying");
            } else {
                retrying = true;
                self.start_retry(load, &error);
            }
            let delay = match error.retry_after() {
                Some(asked) => honour_retry_after(&mut backoff, asked),
                None => backoff.next_delay(rand::random::<f64>()),
            };
            tokio::select! {
                biased;
                _ = self.hard_stop.cancelled() => return self.cancelled(load, n, retrying),
                _ = tokio::time::sleep(delay) => {}
            }
            match refresh() {
                Refresh::Same => {}
                Refresh::Replace(again, count) => {
                    body = again;
                    n = count;
                }
                Refresh::GiveUp => {
                    self.end_retry(load, false);
                    return Outcome::Failed;
                }
            }
            counters.retried.inc_by(n);
        }
    }

    /// With `sample_age_limit`, takes out of `samples` what grew too old while retrying
    /// (counted as dropped, `too_old`) and encodes the rest again.
    fn drop_too_old(
        &self,
        encoder: &mut RequestEncoder,
        samples: &mut Cow<'_, [WireSample]>,
        highest: &mut Option<i64>,
    ) -> Refresh {
        let Some(oldest) = oldest_allowed_ms(self.cfg.sample_age_limit) else {
            return Refresh::Same;
        };
        if !samples.iter().any(|s| s.timestamp_ms < oldest) {
            return Refresh::Same;
        }
        let kept: Vec<_> = samples
            .iter()
            .filter(|s| s.timestamp_ms >= oldest)
            .cloned()
            .collect();
        self.metrics
            .dropped
            .too_old
            .inc_by((samples.len() - kept.len()) as u64);
        if kept.is_empty() {
            return Refresh::GiveUp;
        }
        *samples = Cow::Owned(kept);
        *highest = samples.iter().map(|s| s.timestamp_ms).max();
        match self.encode(encoder, samples) {
            Some(body) => Refresh::Replace(body, samples.len() as u64),
            None => Refresh::GiveUp,
        }
    }

    /// The request body for `samples`; `None` (counted, logged) if it cannot be built.
    fn encode(&self, encoder: &mut RequestEncoder, samples: &[WireSample]) -> Option<Bytes> {
        match encoder.encode(samples) {
            Ok(body) => Some(Bytes::copy_from_slice(body)),
            Err(e) => {
                let n = samples.len() as u64;
                tracing::error!(samples = n, error = %error_chain(&e), "cannot encode a write request; samples dropped");
                self.metrics.failed.encode.inc_by(n);
                None
            }
        }
    }

    fn cancelled(&self, load: Load, n: u64, retrying: bool) -> Outcome {
        if retrying {
            self.end_retry(load, false);
        }
        // Metadata is collected afresh every round: abandoning it loses nothing.
        if load == Load::Samples && !self.durable.load(Ordering::Relaxed) {
            self.metrics.dropped.shutdown.inc_by(n);
        }
        Outcome::Cancelled
    }

    fn count_request(&self, result: &Result<(), SendError>) {
        let r = &self.metrics.requests;
        let counter = match result {
            Ok(()) => &r.ok,
            Err(SendError::Timeout(_)) => &r.timeout,
            Err(SendError::Transport(_)) => &r.network,
            Err(SendError::RateLimited { .. }) => &r.too_many_requests,
            Err(SendError::Server { .. }) => &r.server_error,
            Err(SendError::Rejected { status, .. }) if status.is_client_error() => &r.client_error,
            Err(SendError::Rejected { .. } | SendError::Redirect { .. }) => &r.other,
        };
        counter.inc();
    }

    fn start_retry(&self, load: Load, error: &SendError) {
        let status = error.status().map(|s| s.as_u16());
        let mut h = self.health();
        match load {
            Load::Samples => {
                h.retrying_shards += 1;
                if h.retrying_shards == 1 {
                    h.retrying_since = Some(Instant::now());
                    tracing::warn!(status, reason = %error_chain(error), "remote write failed; retrying");
                }
            }
            Load::Metadata => {
                if h.metadata_failing_since.is_none() {
                    h.metadata_failing_since = Some(Instant::now());
                    tracing::warn!(status, reason = %error_chain(error), "remote write of metadata failed; retrying");
                }
            }
        }
    }

    fn end_retry(&self, load: Load, recovered: bool) {
        let mut h = self.health();
        let since = match load {
            Load::Samples => {
                h.retrying_shards = h.retrying_shards.saturating_sub(1);
                if h.retrying_shards > 0 {
                    return;
                }
                h.retrying_since.take()
            }
            Load::Metadata => h.metadata_failing_since.take(),
        };
        if !recovered {
            return;
        }
        let failing_for = since.map(|s| s.elapsed()).unwrap_or_default();
        match load {
            Load::Samples => tracing::info!(failing_for = ?failing_for, "remote write recovered"),
            Load::Metadata if since.is_some() => {
                tracing::info!(failing_for = ?failing_for, "remote write of metadata recovered");
            }
            Load::Metadata => {}
        }
    }

    fn refused(&self, load: Load, error: &SendError, n: u64) {
        let failed = &self.counters(load).failed;
        let counter = match error {
            SendError::RateLimited { .. } => &failed.rate_limited,
            SendError::Redirect { .. } => &failed.redirect,
            _ => &failed.rejected,
        };
        counter.inc_by(n);
        let status = error.status().map(|s| s.as_u16());
        let key = LogLimiter::key(&(status, load));
        let Some(held_back) = self.reject_log.check(key, Instant::now()) else {
            return;
        };
        match load {
            Load::Samples => {
                tracing::error!(status, samples = n, reason = %error_chain(error), similar_not_logged = held_back, "receiver refused a batch; samples dropped");
            }
            Load::Metadata => {
                tracing::warn!(status, metadata = n, reason = %error_chain(error), similar_not_logged = held_back, "receiver refused metric metadata; dropped until the next round");
            }
        }
    }

    fn counters(&self, load: Load) -> LoadCounters<'_> {
        let m = &self.metrics;
        match load {
            Load::Samples => LoadCounters {
                sent: &m.samples_sent,
                retried: &m.samples_retried,
                bytes_sent: &m.bytes_sent,
                failed: &m.failed,
            },
            Load::Metadata => LoadCounters {
                sent: &m.metadata_sent,
                retried: &m.metadata_retried,
                bytes_sent: &m.metadata_bytes_sent,
                failed: &m.metadata_failed,
            },
        }
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        // Every edit of `Health` is a single step; a poisoned lock still holds a valid state.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The oldest timestamp (ms) `sample_age_limit` lets through now; `None` without a limit.
pub(super) fn oldest_allowed_ms(limit: Duration) -> Option<i64> {
    if limit.is_zero() {
        return None;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Some(i64::try_from(now.saturating_sub(limit).as_millis()).unwrap_or(i64::MAX))
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
