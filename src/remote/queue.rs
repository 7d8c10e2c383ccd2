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
//!    retry of a batch); then samples of series refused by a series limit are dropped as
//!    `max_hourly_series` or `max_daily_series` (invariant 11). Every such drop happens after
//!    the sample's index in its shard is counted (invariant 6).
//! 4. Shard = hash(wire labels) mod shard count: a series keeps its shard even when it ends
//!    and comes back under a new ref (a restarted scrape loop continues its series). A reshard
//!    closes the old shards and waits until they have sent everything (retries included)
//!    before the new ones start, so each series' samples are sent in order across it.
//! 5. Endpoints share nothing but the input batches (`Arc`), so one cannot delay another.
//! 6. Resuming (cursors saved by a previous run): the shards start as many as were saved, each
//!    at its cursor, and a sample whose shard cursor is past it is skipped (it was delivered).
//!    A sample's index in its shard counts every sample of the batch assigned to that shard,
//!    dropped ones included, so it is the same in every run. No reshard happens before the
//!    reader has passed every saved cursor; a reshard flushes all shards and saves the new
//!    layout before the new shards send.
//! 7. Resent samples: after a crash, each shard may have had one request in flight whose
//!    success was not recorded; it held the shard's first samples after its cursor (up to
//!    `max_samples_per_send`, one per series) from what the previous run had routed. Samples
//!    of that window are counted in `samples_resent`: an upper bound of what the receiver gets
//!    twice.
//! 8. A previous run with other wire labels (a reload changed `external_labels` or
//!    `write_relabel_configs`): its saved cursors count samples per shard as *it* routed them,
//!    so while resuming, whether a sample was delivered (and whether it is in doubt) is decided
//!    with the previous routing ([`Routing`]); the new routing only decides where it goes now.
//! 9. Stopping: [`QueueHandle::stop`] first drains (no more batches are read; the shards send
//!    what they hold, so on success every shard's cursor is at the same batch boundary), and
//!    after its deadline stops hard (requests in flight are abandoned: at most one per shard
//!    is in doubt, as after a crash). Either way the final cursors are saved before the queue
//!    ends.
//! 10. Metric metadata (with `metadata_config.send`) is sent by a task of its own beside the
//!     shards (`metadata`), sharing the sender; it stops when the queue drains, stops hard or
//!     ends.
//! 11. Series limits (`max_hourly_series`, `max_daily_series`; see `limits`): a series'
//!     admission is decided on its first sample that would be sent (not skipped, dropped or
//!     too old) by the hash of its wire labels, and kept as the mark of its series table entry,
//!     so an admitted series costs nothing more per sample. A refused series is asked again on
//!     each sample whether a window has room (O(1) while it is full), so it is admitted once
//!     the window frees room. An admitted series is released from the limiter when it goes or
//!     is defined again; the limiter (and what it counted) lives as long as the queue: a
//!     restart of the queue (a reload that changes the endpoint, a restart of the agent)
//!     starts counting afresh, as vmagent does.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::encode::{RequestEncoder, WireSample, wire_hash};
use super::limits::{ADMITTED, REFUSED, SeriesLimits, Window};
use super::metadata::spawn_metadata;
use super::metrics::EndpointMetrics;
use super::send::{Sender, oldest_allowed_ms};
use super::sharding::{self, Counters, Rates};
use super::shards::{Progress, Routed, ShardQueue, run_shard};
use super::source::{BatchSource, CursorStore, Cursors, EndpointInput, Position, ShardCursor};
use super::table::SeriesTable;
use super::write_client::WriteClient;
use crate::append::{Batch, SeriesRef};
use crate::config::RemoteWriteConfig;
use crate::labels::Labels;
use crate::metadata::MetadataView;
use crate::relabel::Relabeler;
use crate::telemetry::LogLimiter;

/// At most one log line per endpoint and window in this long while a series limit drops.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A running queue (one endpoint). Dropping the handle does not stop the queue; it ends when
/// its source ends (after flushing), at once after [`QueueHandle::stop_sending`], or after
/// [`QueueHandle::stop`].
#[derive(Debug)]
pub struct QueueHandle {
    name: String,
    progress: watch::Receiver<Position>,
    hard_stop: CancellationToken,
    drain: CancellationToken,
    task: JoinHandle<()>,
    /// The metadata task (with `metadata_config.send`) and what stops it: the drain, the
    /// queue's end, or [`QueueHandle::join`].
    metadata: Option<(CancellationToken, JoinHandle<()>)>,
}

/// What a queue starts with besides its endpoint, input, client and metrics.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueueOptions {
    pub(crate) tuning: QueueTuning,
    /// The routing of the queue whose saved cursors this one resumes from (invariant 8).
    pub(crate) previous: Option<Routing>,
    /// Where the metadata task collects metric metadata (with `metadata_config.send`).
    pub(crate) metadata: Option<MetadataView>,
}

/// What turns a series' labels into wire labels, and so picks its shard: the external labels
/// and `write_relabel_configs` (invariants 1, 4 and 8).
#[derive(Clone, Debug)]
pub(crate) struct Routing {
    external: Labels,
    relabel: Relabeler,
}

/// How often shard counts are reconsidered (Prometheus: 10 s). Tests shorten it.
#[derive(Clone, Copy, Debug)]
pub struct QueueTuning {
    pub shard_update_interval: Duration,
}

/// Starts a queue for the endpoint `cfg` reading `input` and sending with `client`.
/// Must be called within a Tokio runtime.
#[cfg(test)]
pub(crate) fn spawn_queue<S: BatchSource, C: WriteClient>(
    cfg: &RemoteWriteConfig,
    external_labels: &Labels,
    input: EndpointInput<S>,
    client: C,
    metrics: EndpointMetrics,
    tuning: QueueTuning,
) -> QueueHandle {
    let options = QueueOptions {
        tuning,
        ..QueueOptions::default()
    };
    spawn_queue_with(cfg, external_labels, input, client, metrics, options)
}

/// Starts a queue (see `spawn_queue`) with `options`: resuming from cursors saved by a queue
/// that routed with `options.previous` (when it differs from this queue's routing: invariant
/// 8), and sending metric metadata from `options.metadata` (see `metadata`).
pub(crate) fn spawn_queue_with<S: BatchSource, C: WriteClient>(
    cfg: &RemoteWriteConfig,
    external_labels: &Labels,
    input: EndpointInput<S>,
    client: C,
    metrics: EndpointMetrics,
    options: QueueOptions,
) -> QueueHandle {
    let QueueOptions {
        tuning,
        previous,
        metadata,
    } = options;
    let mut reader = Reader::new(cfg, external_labels, client, metrics, tuning);
    let EndpointInput {
        source,
        resume,
        store,
    } = input;
    reader.resume_from(resume, store);
    if let Some(previous) = previous {
        reader.resume_with_previous(previous);
    }
    let reader_progress = reader.progress.subscribe();
    let reader_hard_stop = reader.sender.hard_stop.clone();
    let drain = CancellationToken::new();
    let metadata = metadata.filter(|_| cfg.metadata_config.send).map(|view| {
        let stop = drain.child_token();
        let sender = reader.sender.clone();
        let task = spawn_metadata(sender, cfg.metadata_config.clone(), view, stop.clone());
        (stop, task)
    });
    let metadata_stop = metadata.as_ref().map(|(stop, _)| stop.clone());
    let span = tracing::info_span!("remote_write", endpoint = %cfg.name);
    let update_every = tuning.shard_update_interval;
    let reader_drain = drain.clone();
    let task = tokio::spawn(
        async move {
            reader.run(source, update_every, reader_drain).await;
            if let Some(stop) = metadata_stop {
                stop.cancel();
            }
        }
        .instrument(span),
    );
    QueueHandle {
        name: cfg.name.clone(),
        progress: reader_progress,
        hard_stop: reader_hard_stop,
        drain,
        task,
        metadata,
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

    /// Stops sending at once: requests in flight and retries are abandoned; what is still
    /// queued stays in an input kept on disk (its cursors are saved), or is counted as
    /// dropped (shutdown) with the in-memory input.
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

    /// The queue task's id: the same id means the same running queue (a reload kept it).
    pub fn id(&self) -> tokio::task::Id {
        self.task.id()
    }

    /// Stops the queue (invariant 9): reads no more batches and lets the shards send what they
    /// hold; if that takes longer than `flush`, stops hard. Returns once the queue has ended
    /// and saved its cursors: true if everything it held was delivered (or refused) in time.
    pub async fn stop(self, flush: Duration) -> bool {
        self.drain.cancel();
        let hard_stop = self.hard_stop.clone();
        let name = self.name.clone();
        if let Some((_, metadata)) = self.metadata {
            join_metadata(&name, metadata).await;
        }
        let mut task = self.task;
        let (joined, clean) = match tokio::time::timeout(flush, &mut task).await {
            Ok(joined) => (joined, true),
            Err(_) => {
                hard_stop.cancel();
                tracing::warn!(endpoint = %name, flush = ?flush, "remote write queue did not flush in time; stopped hard (what it held is sent again)");
                (task.await, false)
            }
        };
        if let Err(e) = joined {
            tracing::error!(endpoint = %name, error = %e, "remote write queue task failed");
            return false;
        }
        clean
    }

    /// Whether the queue has a metadata task.
    #[cfg(test)]
    pub(super) fn sends_metadata(&self) -> bool {
        self.metadata.is_some()
    }

    /// Waits until the queue has ended; its metadata task (if any) stops at once.
    pub async fn join(self) {
        if let Some((stop, metadata)) = self.metadata {
            stop.cancel();
            join_metadata(&self.name, metadata).await;
        }
        if let Err(e) = self.task.await {
            tracing::error!(endpoint = %self.name, error = %e, "remote write queue task failed");
        }
    }
}

async fn join_metadata(name: &str, task: JoinHandle<()>) {
    if let Err(e) = task.await {
        tracing::error!(endpoint = %name, error = %e, "remote write metadata task failed");
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
    /// The series' labels (shared with the scrape loop), or its relabeled labels.
    labels: Labels,
    /// Hash of the wire labels: picks the shard.
    shard_hash: u64,
}

/// Cursors saved by a previous run, until the reader has passed them (invariant 6).
struct Resume {
    cursors: Vec<ShardCursor>,
    /// The reader is past every saved cursor once it routes a batch at or after this.
    until: Position,
    /// Per saved shard, samples of the batch being routed that the previous run assigned to
    /// it (the next index, in the previous run's terms).
    counts: Vec<u32>,
    /// The previous run's routing when it differs from this run's (invariant 8), with each
    /// defined series' shard hash under it (`None`: it dropped the series).
    previous: Option<(Routing, RefMap<Option<u64>>)>,
}

/// A map keyed by series ref.
type RefMap<V> = HashMap<SeriesRef, V, BuildHasherDefault<RefHasher>>;

/// The window of samples a previous run may have sent without recording it (invariant 7).
struct Doubt {
    /// The previous run routed nothing at or after this.
    end: Position,
    /// Per shard: samples left in the window, and the series seen in it.
    shards: Vec<(usize, HashSet<u64, BuildHasherDefault<RefHasher>>)>,
}

/// The reader task's state. Owned by that task alone.
struct Reader<C> {
    sender: Arc<Sender<C>>,
    progress: Arc<Progress>,
    store: Option<Arc<dyn CursorStore>>,
    resume: Option<Resume>,
    doubt: Option<Doubt>,
    /// Where new shards' cursors start (set by `resume_from`).
    start_cursors: Vec<ShardCursor>,
    /// Per shard, samples of the batch being routed assigned to it (the next index).
    counts: Vec<u32>,
    /// Defined, not yet gone series: their wire form, or `None` if write relabeling dropped
    /// them.
    series: SeriesTable<Option<Prepared>>,
    /// Entry numbers of the batch being routed (reused).
    entries: Vec<u32>,
    routing: Routing,
    shards: Vec<Arc<ShardQueue>>,
    tasks: Vec<JoinHandle<()>>,
    /// Per shard, the samples of the batch being routed (reused).
    routed: Vec<Vec<Routed>>,
    rates: Rates,
    highest_read_ms: Option<i64>,
    /// The endpoint's series limits, if it has any (invariant 11); then `series` has marks.
    limits: Option<SeriesLimits>,
    /// One line per window per [`LIMIT_LOG_INTERVAL`] while a limit drops samples.
    limit_log: LogLimiter,
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
        let limits = SeriesLimits::new(
            cfg.max_hourly_series,
            cfg.max_daily_series,
            Arc::new(Instant::now),
        );
        for (gauges, limit) in [
            (&metrics.series_hourly, cfg.max_hourly_series),
            (&metrics.series_daily, cfg.max_daily_series),
        ] {
            gauges.limit.set(gauge_value(limit));
            gauges.current.set(0);
        }
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
            store: None,
            resume: None,
            doubt: None,
            start_cursors: Vec::new(),
            counts: Vec::new(),
            series: if limits.is_some() {
                SeriesTable::with_marks()
            } else {
                SeriesTable::default()
            },
            entries: Vec::new(),
            routing: Routing::new(cfg, external_labels),
            shards: Vec::new(),
            tasks: Vec::new(),
            routed: Vec::new(),
            rates: Rates::new(tuning.shard_update_interval),
            highest_read_ms: None,
            limits,
            limit_log: LogLimiter::new(LIMIT_LOG_INTERVAL, 2),
        }
    }

    /// Sets where delivery resumes and where progress is saved, and starts the shards:
    /// as many as were saved, else `min_shards` (invariant 6).
    fn resume_from(&mut self, resume: Option<Cursors>, store: Option<Arc<dyn CursorStore>>) {
        self.sender.set_durable(store.is_some());
        self.store = store;
        let min_shards = self.sender.cfg.min_shards.max(1);
        let Some(saved) = resume else {
            self.start_shards(min_shards);
            return;
        };
        self.progress.set_next(saved.min_position());
        let at_routed = ShardCursor {
            position: saved.routed,
            skip: 0,
        };
        // Every shard delivered everything routed before `routed`, which bounds what was
        // routed: nothing is in doubt, and the saved layout need not be kept.
        if saved.shards.iter().all(|c| *c == at_routed) {
            self.start_cursors = Vec::new();
            self.start_shards(min_shards);
            return;
        }
        let until = saved
            .shards
            .iter()
            .map(|c| c.position)
            .max()
            .unwrap_or(saved.routed)
            .max(saved.routed);
        self.start_cursors = saved.shards.clone();
        self.start_shards(saved.shards.len());
        self.start_cursors = Vec::new();
        self.doubt = Some(Doubt {
            end: saved.routed,
            shards: saved
                .shards
                .iter()
                .map(|_| (usize::MAX, HashSet::default()))
                .collect(),
        });
        self.resume = Some(Resume {
            cursors: saved.shards,
            until,
            counts: Vec::new(),
            previous: None,
        });
    }

    /// The saved cursors being resumed from were made by a queue routing with `previous`:
    /// decide what it delivered in its terms (invariant 8). Nothing to do when the routing is
    /// the same, or when there is nothing to resume.
    fn resume_with_previous(&mut self, previous: Routing) {
        if previous.same_as(&self.routing) {
            return;
        }
        if let Some(resume) = &mut self.resume {
            resume.previous = Some((previous, HashMap::default()));
        }
    }

    async fn run<S: BatchSource>(
        mut self,
        mut source: S,
        update_every: Duration,
        drain: CancellationToken,
    ) {
        let hard_stop = self.sender.hard_stop.clone();
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + update_every, update_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = hard_stop.cancelled() => break,
                _ = drain.cancelled() => break,
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
        // Samples routed but not yet in a shard's queue when a hard stop came (with a store,
        // they stay in the input for the next run).
        if self.store.is_none() {
            let unqueued: usize = self.routed.iter().map(Vec::len).sum();
            self.sender.metrics.dropped.shutdown.inc_by(unqueued as u64);
        }
        self.stop_shards().await;
        self.progress.publish();
        if let Some(store) = &self.store {
            store.commit(self.progress.snapshot()).await;
        }
    }

    /// Handles one batch: definitions, then samples, then gone refs (invariants 1-3, 6-8).
    async fn route(&mut self, position: Position, batch: &Batch) {
        // The series limits' time for the whole batch.
        let at = self.limits.as_ref().map_or(0, SeriesLimits::now);
        for (r, labels) in &batch.series {
            let prepared = self.routing.prepare(labels);
            if let Some((Some(before), ADMITTED)) = self.series.define(*r, prepared)
                && let Some(limits) = &mut self.limits
            {
                // Defined again: decided again on its next sample (invariant 11).
                limits.release(before.shard_hash, at);
            }
            if let Some(Resume {
                previous: Some((routing, hashes)),
                ..
            }) = &mut self.resume
            {
                hashes.insert(*r, routing.prepare(labels).map(|p| p.shard_hash));
            }
        }
        let samples = batch.samples.len() as u64;
        let oldest_ms = oldest_allowed_ms(self.sender.cfg.sample_age_limit).unwrap_or(i64::MIN);
        let (mut unknown, mut relabeled, mut too_old) = (0u64, 0u64, 0u64);
        let (mut skipped, mut resent) = (0u64, 0u64);
        let (mut over_hourly, mut over_daily) = (0u64, 0u64);
        let n = self.shards.len() as u64;
        self.counts.clear();
        self.counts.resize(self.shards.len(), 0);
        if let Some(resume) = &mut self.resume {
            resume.counts.clear();
            resume.counts.resize(resume.cursors.len(), 0);
        }
        self.series.resolve(&batch.samples, &mut self.entries);
        for (s, &e) in batch.samples.iter().zip(&self.entries) {
            self.highest_read_ms = self.highest_read_ms.max(Some(s.timestamp_ms));
            let Some(entry) = self.series.get(e) else {
                unknown += 1;
                continue;
            };
            // Where it goes now; its index counts every sample assigned to the shard.
            let now = entry.as_ref().map(|prepared| {
                let shard = (prepared.shard_hash % n) as usize;
                let index = self.counts[shard];
                self.counts[shard] += 1;
                (shard, index, prepared)
            });
            // While resuming: what the previous run did with it, in its terms (invariants 6-8).
            if let Some(resume) = &mut self.resume {
                let before = match &resume.previous {
                    Some((_, hashes)) => hashes.get(&s.series).copied().flatten(),
                    None => now.map(|(_, _, p)| p.shard_hash),
                };
                if let Some(hash) = before
                    && !resume.cursors.is_empty()
                {
                    let shard = (hash % resume.cursors.len() as u64) as usize;
                    let index = resume.counts[shard];
                    resume.counts[shard] += 1;
                    let here = ShardCursor {
                        position,
                        skip: index,
                    };
                    if here < resume.cursors[shard] {
                        skipped += 1;
                        continue;
                    }
                    if let Some(doubt) = &mut self.doubt
                        && position < doubt.end
                        && let Some((left, seen)) = doubt.shards.get_mut(shard)
                        && *left > 0
                    {
                        // What was in doubt ended at the first repeated series (shards' rule).
                        if seen.insert(hash) {
                            resent += 1;
                            *left -= 1;
                        } else {
                            *left = 0;
                        }
                    }
                }
            }
            let Some((shard, index, prepared)) = now else {
                relabeled += 1;
                continue;
            };
            if s.timestamp_ms < oldest_ms {
                too_old += 1;
                continue;
            }
            // Series limits: decided once per series, kept as its entry's mark (invariant 11).
            let mut admitted = false;
            if let Some(limits) = &mut self.limits {
                let mark = self.series.mark(e);
                if mark != ADMITTED {
                    let hash = prepared.shard_hash;
                    // Refused before: nothing to look up while a window stays full.
                    let verdict = if mark == REFUSED
                        && let Some(window) = limits.full(at)
                    {
                        Err(window)
                    } else {
                        limits.admit(hash, at)
                    };
                    match verdict {
                        Ok(()) => admitted = true,
                        Err(window) => {
                            match window {
                                Window::Hourly => over_hourly += 1,
                                Window::Daily => over_daily += 1,
                            }
                            if mark != REFUSED {
                                self.series.set_mark(e, REFUSED);
                            }
                            continue;
                        }
                    }
                }
            }
            self.routed[shard].push(Routed {
                hash: prepared.shard_hash,
                index,
                sample: WireSample {
                    labels: prepared.labels.clone(),
                    timestamp_ms: s.timestamp_ms,
                    value: s.value,
                },
            });
            if admitted {
                self.series.set_mark(e, ADMITTED);
            }
        }
        self.sender.metrics.samples_resent.inc_by(resent);
        Counters::add(&self.sender.counters.samples_in, samples - skipped);
        let dropped = &self.sender.metrics.dropped;
        dropped.unknown_series.inc_by(unknown);
        dropped.write_relabel.inc_by(relabeled);
        dropped.too_old.inc_by(too_old);
        dropped.max_hourly_series.inc_by(over_hourly);
        dropped.max_daily_series.inc_by(over_daily);
        Counters::add(
            &self.sender.counters.samples_dropped,
            unknown + relabeled + too_old + over_hourly + over_daily,
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
            if let Some((Some(gone), ADMITTED)) = self.series.remove(*r)
                && let Some(limits) = &mut self.limits
            {
                limits.release(gone.shard_hash, at);
            }
            if let Some(Resume {
                previous: Some((_, hashes)),
                ..
            }) = &mut self.resume
            {
                hashes.remove(r);
            }
        }
        self.publish_limits(at);
        self.log_limited(Window::Hourly, over_hourly);
        self.log_limited(Window::Daily, over_daily);
        self.progress.set_next(Position(position.0 + 1));
        if self.resume.as_ref().is_some_and(|r| position >= r.until) {
            self.resume = None;
        }
        if self
            .doubt
            .as_ref()
            .is_some_and(|d| position >= d.end || d.shards.iter().all(|(left, _)| *left == 0))
        {
            self.doubt = None;
        }
        if let Some(store) = &self.store {
            store.offer(self.progress.snapshot());
        }
    }

    /// Lets the series limits forget what expired (when due) and publishes what they count.
    fn publish_limits(&mut self, at: u32) {
        let Some(limits) = &mut self.limits else {
            return;
        };
        limits.maintain(at);
        let m = &self.sender.metrics;
        for (window, _, current) in limits.counts() {
            let gauges = match window {
                Window::Hourly => &m.series_hourly,
                Window::Daily => &m.series_daily,
            };
            gauges.current.set(gauge_value(current));
        }
    }

    /// Says that `window`'s limit dropped `samples` of this batch: one line per window per
    /// [`LIMIT_LOG_INTERVAL`], with how many were held back since the last.
    fn log_limited(&self, window: Window, samples: u64) {
        let Some(limits) = &self.limits else {
            return;
        };
        if samples == 0 {
            return;
        }
        let key = LogLimiter::key(&window.name());
        let Some(held_back) = self.limit_log.check(key, limits.instant()) else {
            return;
        };
        let limit = limits.limit(window).unwrap_or(0);
        // The endpoint comes from the reader's span.
        tracing::warn!(
            limit,
            window = window.name(),
            samples,
            similar_not_logged = held_back,
            "series limit reached; samples of series beyond it are dropped"
        );
    }

    /// One tick of dynamic sharding (Prometheus's `updateShardsLoop` body).
    async fn update_shards(&mut self) {
        if let Some(at) = self.limits.as_ref().map(SeriesLimits::now) {
            self.publish_limits(at);
        }
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
        if self.resume.is_some() {
            tracing::debug!(
                wanted = desired.shards,
                "not resharding: still resuming at the saved cursors"
            );
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

    /// Flushes the current shards completely, saves the new layout (with a store), then
    /// starts `n` new ones (invariants 4 and 6).
    async fn reshard(&mut self, n: usize) {
        self.doubt = None;
        self.stop_shards().await;
        let next = self.progress.snapshot().routed;
        if let Some(store) = &self.store {
            let at = ShardCursor {
                position: next,
                skip: 0,
            };
            store
                .commit(Cursors {
                    shards: vec![at; n.max(1)],
                    routed: next,
                })
                .await;
        }
        self.start_shards(n);
    }

    /// Starts `n` shards, at `start_cursors` when set, else at the reader's next position.
    fn start_shards(&mut self, n: usize) {
        let n = n.max(1);
        let cfg = &self.sender.cfg;
        let next = ShardCursor {
            position: self.progress.snapshot().routed,
            skip: 0,
        };
        self.shards = (0..n)
            .map(|i| {
                Arc::new(ShardQueue::new(
                    cfg.max_samples_per_send,
                    cfg.capacity,
                    self.sender.metrics.samples_pending.clone(),
                    self.start_cursors.get(i).copied().unwrap_or(next),
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
                    run_shard(
                        self.sender.clone(),
                        q.clone(),
                        RequestEncoder::with_external(self.routing.encoded_external()),
                        i,
                        self.progress.clone(),
                        self.store.clone(),
                    )
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

impl Routing {
    /// The routing of endpoint `cfg` with `external_labels`.
    pub(crate) fn new(cfg: &RemoteWriteConfig, external_labels: &Labels) -> Self {
        Routing {
            external: external_labels.clone(),
            relabel: Relabeler::new(&cfg.write_relabel_configs),
        }
    }

    /// Whether both give every series the same wire labels (judged by their definitions).
    fn same_as(&self, other: &Routing) -> bool {
        self.external == other.external
            && format!("{:?}", self.relabel) == format!("{:?}", other.relabel)
    }

    /// The wire form of a new series, or `None` if it is not to be sent (invariants 1, 4).
    fn prepare(&self, labels: &Labels) -> Option<Prepared> {
        let labels = self.wire_labels(labels)?;
        let shard_hash = wire_hash(&labels, &self.encoded_external());
        Some(Prepared { labels, shard_hash })
    }

    /// The external labels the encoder merges into every series' wire labels: none after
    /// write relabeling, which has applied them already.
    fn encoded_external(&self) -> Labels {
        if self.relabel.is_empty() {
            self.external.clone()
        } else {
            Labels::empty()
        }
    }

    /// The wire labels of a new series, or `None` if it is not to be sent (invariant 1):
    /// without write relabeling the series' own labels (shared with the scrape loop), the
    /// external labels merged in as requests are encoded.
    fn wire_labels(&self, labels: &Labels) -> Option<Labels> {
        if self.relabel.is_empty() {
            return Some(labels.clone());
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
        Some(labels)
    }
}

/// A count as a gauge's value (saturating).
fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A 64-bit mixer (splitmix64's finalizer): spreads sequential refs over hash buckets.
pub(super) fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hasher for [`SeriesRef`] keys: the ref through [`mix`].
#[derive(Default)]
pub(super) struct RefHasher(u64);

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
pub(super) mod tests;
