//! The queue manager of one endpoint: reads batches from a [`BatchSource`], turns series into
//! wire labels, and routes samples to shards.
//!
//! Invariants:
//! 1. A series' wire labels are computed once, when its definition is read: its labels, plus
//!    the external labels it does not already have (series labels win), then
//!    `write_relabel_configs` (Prometheus applies write relabeling after external labels), then
//!    encoded. A series the relabeling drops (or leaves empty) is remembered as dropped.
//! 2. The series table holds exactly the series defined and not yet gone, so its size follows
//!    the active series: a ref in `gone` is forgotten after its batch's samples are routed.
//! 3. A sample is routed only if its series is known; otherwise it is counted as dropped
//!    (`unknown_series`, or `write_relabel` for a series relabeling dropped). Samples older
//!    than `sample_age_limit` (when set) are dropped as `too_old` (here, and again before each
//!    retry of a batch).
//! 4. Shard = hash(wire labels) mod shard count: a series keeps its shard even when it ends
//!    and comes back under a new ref (a restarted scrape loop continues its series). A reshard
//!    closes the old shards and waits until they have sent everything (retries included)
//!    before the new ones start, so each series' samples are sent in order across it.
//! 5. Endpoints share nothing but the input batches (`Arc`), so one cannot delay another.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::encode::{EncodedLabels, WireSample};
use super::metrics::EndpointMetrics;
use super::send::{Sender, oldest_allowed_ms};
use super::sharding::{self, Counters, Rates};
use super::shards::{Progress, ShardQueue, run_shard};
use super::source::{BatchSource, Position};
use super::write_client::WriteClient;
use crate::append::{Batch, SeriesRef};
use crate::config::RemoteWriteConfig;
use crate::labels::{Label, Labels};
use crate::relabel::Relabeler;

/// A running queue (one endpoint). Dropping the handle does not stop the queue; it ends when
/// its source ends (after flushing), or at once after [`QueueHandle::stop_sending`].
#[derive(Debug)]
pub struct QueueHandle {
    name: String,
    progress: watch::Receiver<Position>,
    hard_stop: CancellationToken,
    task: JoinHandle<()>,
}

/// How often shard counts are reconsidered (Prometheus: 10 s). Tests shorten it.
#[derive(Clone, Copy, Debug)]
pub struct QueueTuning {
    pub shard_update_interval: Duration,
}

/// Starts a queue for the endpoint `cfg` reading `source` and sending with `client`.
/// Must be called within a Tokio runtime.
pub(crate) fn spawn_queue<S: BatchSource, C: WriteClient>(
    cfg: &RemoteWriteConfig,
    external_labels: &Labels,
    source: S,
    client: C,
    metrics: EndpointMetrics,
    tuning: QueueTuning,
) -> QueueHandle {
    let mut reader = Reader::new(cfg, external_labels, client, metrics, tuning);
    let min_shards = cfg.queue_config.min_shards.max(1);
    reader.start_shards(min_shards);
    let reader_progress = reader.progress.subscribe();
    let reader_hard_stop = reader.sender.hard_stop.clone();
    let span = tracing::info_span!("remote_write", endpoint = %cfg.name);
    let task = tokio::spawn(
        reader
            .run(source, tuning.shard_update_interval)
            .instrument(span),
    );
    QueueHandle {
        name: cfg.name.clone(),
        progress: reader_progress,
        hard_stop: reader_hard_stop,
        task,
    }
}

impl QueueHandle {
    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lowest input position not yet fully handled (sent, refused or dropped): every
    /// batch before it is done with. A persisted read cursor may follow it.
    pub fn progress(&self) -> watch::Receiver<Position> {
        self.progress.clone()
    }

    /// Stops sending at once: requests in flight and retries are abandoned, what is still
    /// queued is counted as dropped (shutdown).
    pub fn stop_sending(&self) {
        self.hard_stop.cancel();
    }

    /// A token that does what [`QueueHandle::stop_sending`] does, usable after `join` took the
    /// handle.
    pub(crate) fn stopper(&self) -> CancellationToken {
        self.hard_stop.clone()
    }

    /// Whether the queue has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the queue has ended.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(endpoint = %self.name, error = %e, "remote write queue task failed");
        }
    }
}

impl Default for QueueTuning {
    fn default() -> Self {
        QueueTuning {
            shard_update_interval: sharding::SHARD_UPDATE_INTERVAL,
        }
    }
}

/// A series as it goes on the wire.
struct Prepared {
    labels: EncodedLabels,
    /// Hash of the wire labels: picks the shard.
    shard_hash: u64,
}

/// The reader task's state. Owned by that task alone.
struct Reader<C> {
    sender: Arc<Sender<C>>,
    progress: Arc<Progress>,
    /// Defined, not yet gone series: their wire form, or `None` if write relabeling dropped
    /// them.
    series: HashMap<SeriesRef, Option<Prepared>, BuildHasherDefault<RefHasher>>,
    external: Labels,
    relabel: Relabeler,
    shards: Vec<Arc<ShardQueue>>,
    tasks: Vec<JoinHandle<()>>,
    /// Per shard, the samples of the batch being routed (reused).
    routed: Vec<Vec<WireSample>>,
    rates: Rates,
    highest_read_ms: Option<i64>,
}

impl<C: WriteClient> Reader<C> {
    /// A reader with no shards yet (see `start_shards`).
    fn new(
        cfg: &RemoteWriteConfig,
        external_labels: &Labels,
        client: C,
        metrics: EndpointMetrics,
        tuning: QueueTuning,
    ) -> Self {
        let q = &cfg.queue_config;
        let min_shards = q.min_shards.max(1);
        metrics.shards_min.set(min_shards as i64);
        metrics.shards_max.set(q.max_shards.max(min_shards) as i64);
        metrics.shards_desired.set(min_shards as f64);
        metrics.shard_capacity.set(q.capacity as i64);
        let sender = Arc::new(Sender::new(
            cfg.name.clone(),
            client,
            q.clone(),
            metrics,
            CancellationToken::new(),
        ));
        Reader {
            sender,
            progress: Arc::new(Progress::new()),
            series: HashMap::default(),
            external: external_labels.clone(),
            relabel: Relabeler::new(&cfg.write_relabel_configs),
            shards: Vec::new(),
            tasks: Vec::new(),
            routed: Vec::new(),
            rates: Rates::new(tuning.shard_update_interval),
            highest_read_ms: None,
        }
    }

    async fn run<S: BatchSource>(mut self, mut source: S, update_every: Duration) {
        let hard_stop = self.sender.hard_stop.clone();
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + update_every, update_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = hard_stop.cancelled() => break,
                _ = tick.tick() => {
                    tokio::select! {
                        biased;
                        _ = hard_stop.cancelled() => break,
                        _ = self.update_shards() => {}
                    }
                }
                item = source.next() => {
                    let Some((position, batch)) = item else { break };
                    tokio::select! {
                        biased;
                        _ = hard_stop.cancelled() => break,
                        _ = self.route(position, &batch) => {}
                    }
                }
            }
        }
        // Samples routed but not yet in a shard's queue when a hard stop came.
        let unqueued: usize = self.routed.iter().map(Vec::len).sum();
        self.sender.metrics.dropped.shutdown.inc_by(unqueued as u64);
        self.stop_shards().await;
        self.progress.publish();
    }

    /// Handles one batch: definitions, then samples, then gone refs (invariants 1-3).
    async fn route(&mut self, position: Position, batch: &Batch) {
        for (r, labels) in &batch.series {
            let prepared = self.prepare(labels);
            self.series.insert(*r, prepared);
        }
        let samples = batch.samples.len() as u64;
        Counters::add(&self.sender.counters.samples_in, samples);
        let oldest_ms = oldest_allowed_ms(self.sender.cfg.sample_age_limit).unwrap_or(i64::MIN);
        let (mut unknown, mut relabeled, mut too_old) = (0u64, 0u64, 0u64);
        let n = self.shards.len() as u64;
        for s in &batch.samples {
            self.highest_read_ms = self.highest_read_ms.max(Some(s.timestamp_ms));
            let prepared = match self.series.get(&s.series) {
                Some(Some(prepared)) => prepared,
                Some(None) => {
                    relabeled += 1;
                    continue;
                }
                None => {
                    unknown += 1;
                    continue;
                }
            };
            if s.timestamp_ms < oldest_ms {
                too_old += 1;
                continue;
            }
            let shard = (prepared.shard_hash % n) as usize;
            self.routed[shard].push(WireSample {
                labels: prepared.labels.clone(),
                timestamp_ms: s.timestamp_ms,
                value: s.value,
            });
        }
        let dropped = &self.sender.metrics.dropped;
        dropped.unknown_series.inc_by(unknown);
        dropped.write_relabel.inc_by(relabeled);
        dropped.too_old.inc_by(too_old);
        Counters::add(
            &self.sender.counters.samples_dropped,
            unknown + relabeled + too_old,
        );
        if unknown > 0 {
            tracing::debug!(
                samples = unknown,
                "samples of series never defined; dropped"
            );
        }
        for (queue, routed) in self.shards.iter().zip(self.routed.iter_mut()) {
            if !routed.is_empty() {
                queue.push(position, routed).await;
            }
        }
        for r in &batch.gone {
            self.series.remove(r);
        }
        self.progress.set_next(Position(position.0 + 1));
    }

    /// The wire form of a new series, or `None` if it is not to be sent (invariants 1, 4).
    fn prepare(&self, labels: &Labels) -> Option<Prepared> {
        let labels = self.wire_labels(labels)?;
        let shard_hash = xxhash_rust::xxh3::xxh3_64(labels.as_bytes());
        Some(Prepared { labels, shard_hash })
    }

    /// The wire labels of a new series, or `None` if it is not to be sent (invariant 1).
    fn wire_labels(&self, labels: &Labels) -> Option<EncodedLabels> {
        if self.relabel.is_empty() {
            return Some(EncodedLabels::encode(merge_external(
                labels,
                &self.external,
            )));
        }
        let mut builder = labels.to_builder();
        for l in &self.external {
            if builder.get(l.name).is_none() {
                builder.set(l.name, l.value);
            }
        }
        if !self.relabel.process(&mut builder) {
            return None;
        }
        let labels = builder.build();
        if labels.is_empty() {
            return None;
        }
        Some(EncodedLabels::encode(labels.iter()))
    }

    /// One tick of dynamic sharding (Prometheus's `updateShardsLoop` body).
    async fn update_shards(&mut self) {
        self.rates.tick(&self.sender.counters);
        let cfg = &self.sender.cfg;
        let (min, max) = (
            cfg.min_shards.max(1),
            cfg.max_shards.max(cfg.min_shards.max(1)),
        );
        let highest_read = self.highest_read_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
        let highest_sent = self.sender.metrics.highest_sent_seconds();
        let inputs = self
            .rates
            .inputs(highest_read, highest_sent, self.shards.len(), min, max);
        let desired = sharding::desired_shards(&inputs);
        if let Some(estimate) = desired.estimate {
            self.sender.metrics.shards_desired.set(estimate);
        }
        tracing::debug!(?inputs, ?desired, "desired shards computed");
        if desired.shards == self.shards.len() {
            return;
        }
        // As Prometheus: not while sends fail, nor when nothing was sent lately.
        let recent = cfg.batch_send_deadline.saturating_mul(2);
        if self.sender.is_retrying() || self.sender.since_last_send().is_none_or(|d| d > recent) {
            tracing::debug!(
                wanted = desired.shards,
                "not resharding: sends are failing or stalled"
            );
            return;
        }
        tracing::info!(from = self.shards.len(), to = desired.shards, "resharding");
        self.reshard(desired.shards).await;
    }

    /// Flushes the current shards completely, then starts `n` new ones (invariant 4).
    async fn reshard(&mut self, n: usize) {
        self.stop_shards().await;
        self.start_shards(n);
    }

    fn start_shards(&mut self, n: usize) {
        let n = n.max(1);
        let cfg = &self.sender.cfg;
        self.shards = (0..n)
            .map(|_| {
                Arc::new(ShardQueue::new(
                    cfg.max_samples_per_send,
                    cfg.capacity,
                    self.sender.metrics.samples_pending.clone(),
                ))
            })
            .collect();
        self.routed.resize_with(n, Vec::new);
        self.routed.truncate(n);
        self.tasks = self
            .shards
            .iter()
            .enumerate()
            .map(|(i, q)| {
                // A root span: shards spawned by a reshard must not nest in the reader's span
                // (the endpoint would show twice).
                let span = tracing::info_span!(parent: None, "remote_write_shard", endpoint = %self.sender.name, shard = i);
                tokio::spawn(
                    run_shard(self.sender.clone(), q.clone(), self.progress.clone())
                        .instrument(span),
                )
            })
            .collect();
        self.progress.set_queues(self.shards.clone());
        self.sender.metrics.shards.set(n as i64);
    }

    /// Closes the shards and waits until they have sent everything (or were stopped hard).
    async fn stop_shards(&mut self) {
        for q in &self.shards {
            q.close();
        }
        for task in self.tasks.drain(..) {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "remote write shard task failed");
            }
        }
    }
}

/// Series labels with the external labels they lack, in name order (series labels win).
fn merge_external<'a>(labels: &'a Labels, external: &'a Labels) -> Vec<Label<'a>> {
    let mut out = Vec::with_capacity(labels.len() + external.len());
    let mut a = labels.iter().peekable();
    let mut b = external.iter().peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.name < y.name => a.next(),
            (Some(x), Some(y)) if x.name > y.name => b.next(),
            (Some(_), Some(_)) => {
                b.next();
                a.next()
            }
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        out.extend(next);
    }
    out
}

/// A 64-bit mixer (splitmix64's finalizer): spreads sequential refs over hash buckets.
fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hasher for [`SeriesRef`] keys: the ref through [`mix`].
#[derive(Default)]
struct RefHasher(u64);

impl Hasher for RefHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = mix(self.0 ^ n);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests;
