//! [`RemoteWrite`]: every configured endpoint (and the debug output) reading one input: the
//! write-ahead buffer (`crate::wal`, what the agent uses) or the in-memory [`Fanout`] (tests
//! and benches of remote write alone).
//!
//! Invariants:
//! 1. Every endpoint to start is validated (URL, headers, TLS: its client is built) before
//!    anything starts or stops: `start` starts everything or nothing, and `reload` either
//!    applies the whole new configuration or returns the error having changed nothing.
//! 2. Each endpoint has its own input (reader), queue manager and shards: one slow or failing
//!    endpoint never delays another.
//! 3. Endpoints are keyed by a hash of everything that defines them ([`endpoint_key`]). A
//!    reload keeps running, untouched, every endpoint whose key did not change (same queue,
//!    shards, reader and cursors); stops at once every endpoint whose name left the
//!    configuration, and then makes its input forget it (cursors deleted, buffer released,
//!    metrics removed) once its cursors are saved; restarts every endpoint whose name stayed
//!    but whose key changed where its queue stopped (its saved cursors: nothing lost or
//!    skipped, at most one sample per series and shard sent again); starts new endpoints at the end of
//!    the input ("now").
//! 4. Shutdown stops accepting batches, lets every endpoint send what it holds, and after the
//!    grace period stops them hard and abandons the rest: with the on-disk buffer it stays
//!    there (cursors saved) and the next run sends it; with the in-memory input it is counted
//!    as dropped (reason `shutdown`). After the hard stop, shutdown waits at most
//!    [`HARD_STOP_BOUND`] for the queues to end (a hung disk can hold a cursor write), then
//!    returns anyway: shutdown takes at most the grace period plus that bound.
//! 5. `reload` and `shutdown` take `&mut self`/`self` and must be awaited to the end; the set
//!    of running endpoints changes only there.
//! 6. Settings accepted but not implemented (`send_exemplars`, `send_native_histograms`):
//!    while set, an endpoint has `scrapelet_remote_setting_ignored{setting}` 1 and a warning
//!    names them when the endpoint starts or a reload sets them. They are not part of
//!    [`endpoint_key`]: toggling them restarts nothing.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::debug::{DEBUG_INTERVAL, spawn_debug_sink};
use super::error::Error;
use super::metrics::EndpointMetrics;
use super::metrics::RemoteMetrics;
use super::queue::{QueueHandle, QueueOptions, QueueTuning, Routing, spawn_queue_with};
use super::source::{BatchSource, Cursors, EndpointInput, Fanout, MemoryQueue};
use super::write_client::{HttpWriteClient, WriteClient};
use crate::append::Appender;
use crate::config::{Config, RemoteWriteConfig};
use crate::labels::Labels;
use crate::metadata::MetadataView;
use crate::telemetry::redact_url;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The running remote write side of the agent.
pub struct RemoteWrite {
    control: Arc<dyn Control>,
    metrics: RemoteMetrics,
    /// In configuration order.
    endpoints: Vec<Endpoint>,
    debug: Option<DebugOutput>,
    /// How long a reload lets a changed endpoint flush before stopping it hard.
    flush: Duration,
    /// What endpoints with `metadata_config.send` collect metric metadata from.
    metadata: MetadataView,
}

/// Checks configurations against the endpoints running when it was made (see
/// [`RemoteWrite::validator`]).
pub struct Validator {
    control: Arc<dyn Control>,
    /// Name and key of each running endpoint.
    running: Vec<(String, u64)>,
}

impl Validator {
    /// What [`RemoteWrite::validate`] does.
    pub fn validate(&self, config: &Config) -> Result<(), Error> {
        let external = &config.global.external_labels;
        for cfg in &config.remote_write {
            let key = endpoint_key(cfg, external);
            if !self
                .running
                .iter()
                .any(|(n, k)| *n == cfg.name && *k == key)
            {
                drop(self.control.prepare(cfg)?);
            }
        }
        Ok(())
    }
}

/// What a reload did with the endpoints (see [`RemoteWrite::reload`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Endpoints whose configuration did not change: they kept running untouched.
    pub kept: usize,
    /// Endpoints new in the configuration, started at the end of the input.
    pub started: usize,
    /// Endpoints whose configuration changed, restarted where they had stopped.
    pub restarted: usize,
    /// Endpoints no longer configured: stopped, their cursors and buffer released.
    pub removed: usize,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kept={} started={} restarted={} removed={}",
            self.kept, self.started, self.restarted, self.removed
        )
    }
}

/// How long a reload lets an endpoint whose configuration changed send what it holds before
/// stopping it hard (what it did not send is then sent again by its successor).
pub const RELOAD_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// How long shutdown waits, after stopping the queues hard, for them to end (they save their
/// cursors on the way out; only a disk that does not answer makes that take long). Past it,
/// shutdown gives up on them: the buffer is on disk, and at worst cursors not saved make the
/// next run send a little again.
pub const HARD_STOP_BOUND: Duration = Duration::from_secs(5);

/// Where an endpoint's input starts.
pub(crate) enum Start {
    /// At start-up: where the previous run's saved cursors say, else at this process's first
    /// data.
    Configured,
    /// Added by a reload: at the end of the input (what is appended from now on).
    Now,
    /// Restarted by a reload: where its previous queue stopped.
    Resume(Cursors),
}

/// Where endpoints read what was scraped: hands out one source per endpoint, at start-up and
/// whenever a reload adds or restarts one.
pub(crate) trait Input: Send + Sync + 'static {
    type Source: BatchSource;
    /// The input of endpoint `cfg`, whose metrics are `metrics`, starting at `start`.
    fn endpoint(
        &self,
        cfg: &RemoteWriteConfig,
        metrics: &EndpointMetrics,
        start: Start,
    ) -> EndpointInput<Self::Source>;
    /// The debug output's source, from now on; what it cannot keep up with is of no
    /// consequence.
    fn debug(&self) -> Self::Source;
    /// Endpoint `name`'s queue has ended: completes once its cursor store has finished (no
    /// write can follow), with the cursors it saved last (`None` without a store). With
    /// `forget` (the endpoint left the configuration), then deletes them and releases
    /// everything the input keeps for it.
    fn retire(
        self: &Arc<Self>,
        name: &str,
        forget: bool,
    ) -> impl Future<Output = Option<Cursors>> + Send + 'static;
    /// The appender scrape loops write to.
    fn appender(self: Arc<Self>) -> Arc<dyn Appender>;
    /// No more batches: sources end once drained.
    fn close(&self);
    /// After a shutdown whose grace passed: throws away what the input holds for endpoints
    /// and returns how many samples were lost (0 for an input kept on disk).
    fn discard(&self) -> usize;
    /// Whether what endpoints did not send outlives the process (the on-disk buffer): then a
    /// shutdown past its grace loses nothing, the next run sends it.
    fn keeps_unsent(&self) -> bool;
}

impl std::fmt::Debug for RemoteWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWrite")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// One running endpoint.
#[derive(Debug)]
struct Endpoint {
    key: u64,
    cfg: RemoteWriteConfig,
    /// The external labels it runs with.
    external: Labels,
    queue: QueueHandle,
}

/// An endpoint a reload stopped.
struct Stopped {
    cfg: RemoteWriteConfig,
    external: Labels,
    /// It left the configuration.
    forget: bool,
    /// Where it stopped (`None`: the input keeps no cursors).
    cursors: Option<Cursors>,
}

/// The running debug output.
struct DebugOutput {
    external: Labels,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The input, the client factory, the metrics and the tuning, behind one object-safe face so
/// that `RemoteWrite` needs no type parameters.
trait Control: Send + Sync + 'static {
    /// Builds endpoint `cfg`'s client (invariant 1); the endpoint starts when the result is
    /// called.
    fn prepare(&self, cfg: &RemoteWriteConfig) -> Result<Starter, Error>;
    fn spawn_debug(&self, external: &Labels, stop: CancellationToken) -> JoinHandle<()>;
    /// See [`Input::retire`]; with `forget`, the endpoint's metrics are removed too.
    fn retire(
        &self,
        name: &str,
        forget: bool,
    ) -> Pin<Box<dyn Future<Output = Option<Cursors>> + Send>>;
    fn appender(&self) -> Arc<dyn Appender>;
    fn close(&self);
    fn discard(&self) -> usize;
    fn keeps_unsent(&self) -> bool;
}

/// Starts a prepared endpoint: with the external labels, where to start, and the routing of
/// the queue whose cursors it resumes from.
type Starter = Box<dyn FnOnce(&Labels, Start, Option<Routing>) -> QueueHandle + Send>;

/// [`Control`] for input `I` and clients `C` made by `F`.
struct Engine<I, C, F> {
    input: Arc<I>,
    make_client: F,
    metrics: RemoteMetrics,
    tuning: QueueTuning,
    metadata: MetadataView,
    _client: PhantomData<fn() -> C>,
}

/// An endpoint's input queue holds this many times its `queue_config.capacity` samples.
pub const INPUT_QUEUE_FACTOR: usize = 2;

impl RemoteWrite {
    /// Starts every `remote_write` endpoint of `config`, and the debug output when there is no
    /// endpoint or `debug_output` is set, reading an in-memory [`Fanout`] (nothing outlives
    /// the process); registers the metrics in `registry`. Must be called within a Tokio
    /// runtime.
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
    /// Endpoints read an in-memory [`Fanout`].
    pub fn start_with<C, F>(
        config: &Config,
        debug_output: bool,
        metrics: &RemoteMetrics,
        tuning: QueueTuning,
        make_client: F,
    ) -> Result<Self, Error>
    where
        C: WriteClient,
        F: Fn(&RemoteWriteConfig) -> Result<C, Error> + Send + Sync + 'static,
    {
        Self::start_from(
            Fanout::new(),
            config,
            debug_output,
            metrics,
            tuning,
            make_client,
        )
    }

    /// Starts every endpoint reading `input`.
    pub(crate) fn start_from<I, C, F>(
        input: I,
        config: &Config,
        debug_output: bool,
        metrics: &RemoteMetrics,
        tuning: QueueTuning,
        make_client: F,
    ) -> Result<Self, Error>
    where
        I: Input,
        C: WriteClient,
        F: Fn(&RemoteWriteConfig) -> Result<C, Error> + Send + Sync + 'static,
    {
        let metadata = MetadataView::default();
        let control: Arc<dyn Control> = Arc::new(Engine {
            input: Arc::new(input),
            make_client,
            metrics: metrics.clone(),
            tuning,
            metadata: metadata.clone(),
            _client: PhantomData,
        });
        let external = &config.global.external_labels;
        let starters = config
            .remote_write
            .iter()
            .map(|cfg| control.prepare(cfg))
            .collect::<Result<Vec<_>, _>>()?;
        let mut endpoints = Vec::with_capacity(starters.len());
        for (cfg, starter) in config.remote_write.iter().zip(starters) {
            let queue = starter(external, Start::Configured, None);
            tracing::info!(endpoint = %cfg.name, url = %redact_url(&cfg.url), "remote write endpoint started");
            note_ignored_settings(metrics, cfg, None);
            endpoints.push(Endpoint {
                key: endpoint_key(cfg, external),
                cfg: cfg.clone(),
                external: external.clone(),
                queue,
            });
        }
        let mut remote = RemoteWrite {
            control,
            metrics: metrics.clone(),
            endpoints,
            debug: None,
            flush: RELOAD_FLUSH_DEADLINE,
            metadata,
        };
        remote.start_debug(config, debug_output);
        Ok(remote)
    }

    /// The appender to give the scrape loops.
    pub fn appender(&self) -> Arc<dyn Appender> {
        self.control.appender()
    }

    /// The metadata view to give the scrape loops: endpoints with `metadata_config.send`
    /// send what they publish there (see `metadata`).
    pub fn metadata(&self) -> MetadataView {
        self.metadata.clone()
    }

    /// The running endpoints with their keys (see [`endpoint_key`]), in configuration order.
    pub fn endpoints(&self) -> impl Iterator<Item = (u64, &QueueHandle)> {
        self.endpoints.iter().map(|e| (e.key, &e.queue))
    }

    /// Whether the debug output runs.
    pub fn debug_output(&self) -> bool {
        self.debug.is_some()
    }

    /// Sets how long a reload lets a changed endpoint flush before stopping it hard (default
    /// [`RELOAD_FLUSH_DEADLINE`]).
    pub fn set_reload_flush_deadline(&mut self, flush: Duration) {
        self.flush = flush;
    }

    /// Checks that `config`'s new or changed endpoints can be built (URL, headers, TLS files),
    /// without changing anything: what [`RemoteWrite::reload`] checks first, for a caller that
    /// must validate every part of a configuration before applying any. (A file can still
    /// change in between: `reload` checks again.)
    pub fn validate(&self, config: &Config) -> Result<(), Error> {
        self.validator().validate(config)
    }

    /// What [`RemoteWrite::validate`] needs, owned, so that a configuration can be checked
    /// off the async runtime (building a client reads TLS files, which can block).
    pub fn validator(&self) -> Validator {
        Validator {
            control: self.control.clone(),
            running: self
                .endpoints
                .iter()
                .map(|e| (e.cfg.name.clone(), e.key))
                .collect(),
        }
    }

    /// Applies a new configuration's `remote_write` and `global.external_labels`; only what
    /// changed restarts (invariants 1 and 3). On error (an endpoint cannot be built: bad URL,
    /// header or TLS files) nothing has changed and the old configuration keeps running. The
    /// debug output starts or stops as `config` and `debug_output` ask. Logs one line per
    /// endpoint started, restarted or removed; returns what it did.
    ///
    /// Returns once removed endpoints are forgotten and restarted ones run again: at most
    /// the flush deadline ([`RemoteWrite::set_reload_flush_deadline`]) plus a cursor write.
    /// Must be awaited to the end (invariant 5).
    pub async fn reload(
        &mut self,
        config: &Config,
        debug_output: bool,
    ) -> Result<ReloadSummary, Error> {
        let external = &config.global.external_labels;
        // Validate first: build every new or changed endpoint's client (invariant 1).
        let mut plan = Vec::with_capacity(config.remote_write.len());
        for cfg in &config.remote_write {
            let key = endpoint_key(cfg, external);
            let unchanged = self
                .endpoints
                .iter()
                .any(|e| e.cfg.name == cfg.name && e.key == key);
            let starter = if unchanged {
                None
            } else {
                Some(self.control.prepare(cfg)?)
            };
            plan.push((cfg, key, starter));
        }
        // Nothing fails from here on.
        let mut old: HashMap<String, Endpoint> = self
            .endpoints
            .drain(..)
            .map(|e| (e.cfg.name.clone(), e))
            .collect();
        let mut summary = ReloadSummary::default();
        let mut stopping = Vec::new();
        for name in old.keys().cloned().collect::<Vec<_>>() {
            let planned = plan.iter().find(|(cfg, _, _)| cfg.name == name);
            let forget = match planned {
                None => true,
                Some((_, _, Some(_))) => false,
                Some((_, _, None)) => continue,
            };
            if let Some(endpoint) = old.remove(&name) {
                stopping.push(self.retire(endpoint, forget));
            }
        }
        let mut stopped: HashMap<String, Stopped> = HashMap::new();
        for s in join_all(stopping).await {
            if s.forget {
                summary.removed += 1;
                tracing::info!(endpoint = %s.cfg.name, "remote write endpoint removed");
            } else {
                stopped.insert(s.cfg.name.clone(), s);
            }
        }
        for (cfg, key, starter) in plan {
            let Some(starter) = starter else {
                if let Some(mut kept) = old.remove(&cfg.name) {
                    summary.kept += 1;
                    // Only what the key leaves out can differ (invariant 6).
                    note_ignored_settings(&self.metrics, cfg, Some(&kept.cfg));
                    kept.cfg = cfg.clone();
                    self.endpoints.push(kept);
                }
                continue;
            };
            let queue = match stopped.remove(&cfg.name) {
                Some(previous) => {
                    summary.restarted += 1;
                    note_ignored_settings(&self.metrics, cfg, Some(&previous.cfg));
                    tracing::info!(endpoint = %cfg.name, url = %redact_url(&cfg.url), reason = "config changed", "remote write endpoint restarted");
                    let start = previous.cursors.map_or(Start::Now, Start::Resume);
                    let routing = Routing::new(&previous.cfg, &previous.external);
                    starter(external, start, Some(routing))
                }
                None => {
                    summary.started += 1;
                    tracing::info!(endpoint = %cfg.name, url = %redact_url(&cfg.url), "remote write endpoint started");
                    note_ignored_settings(&self.metrics, cfg, None);
                    starter(external, Start::Now, None)
                }
            };
            self.endpoints.push(Endpoint {
                key,
                cfg: cfg.clone(),
                external: external.clone(),
                queue,
            });
        }
        self.start_debug(config, debug_output);
        Ok(summary)
    }

    /// Stops the debug output if `config` no longer wants it (or wants other external
    /// labels), and starts it if wanted and not running.
    fn start_debug(&mut self, config: &Config, debug_output: bool) {
        let wanted = config.remote_write.is_empty() || debug_output;
        let external = &config.global.external_labels;
        if let Some(debug) = &self.debug
            && (!wanted || debug.external != *external)
        {
            // It logs its last summary and ends on its own.
            debug.stop.cancel();
            self.debug = None;
        }
        if wanted && self.debug.is_none() {
            let stop = CancellationToken::new();
            self.debug = Some(DebugOutput {
                external: external.clone(),
                task: self.control.spawn_debug(external, stop.clone()),
                stop,
            });
        }
    }

    /// Stops `endpoint` (at once when it is to be forgotten, else after flushing within the
    /// deadline) and retires it from the input.
    fn retire(&self, endpoint: Endpoint, forget: bool) -> impl Future<Output = Stopped> + use<> {
        let control = self.control.clone();
        let flush = self.flush;
        async move {
            let Endpoint {
                cfg,
                external,
                queue,
                ..
            } = endpoint;
            if forget {
                queue.stop_sending();
                queue.join().await;
            } else {
                queue.stop(flush).await;
            }
            let cursors = control.retire(&cfg.name, forget).await;
            Stopped {
                cfg,
                external,
                forget,
                cursors,
            }
        }
    }

    /// Stops accepting batches, sends what is queued, and after `grace` stops the queues hard
    /// and abandons the rest (invariant 4); returns after at most `grace` plus
    /// [`HARD_STOP_BOUND`]. Returns whether everything was sent (or refused) in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shutdown_bounded(grace, HARD_STOP_BOUND).await
    }

    /// [`RemoteWrite::shutdown`] with the bound after the hard stop given (tests).
    pub(crate) async fn shutdown_bounded(self, grace: Duration, bound: Duration) -> bool {
        use std::sync::atomic::{AtomicBool, Ordering};
        self.control.close();
        let stoppers: Vec<_> = self.endpoints.iter().map(|e| e.queue.stopper()).collect();
        // Per endpoint: its name, and whether its queue has ended.
        let ended: Vec<(String, Arc<AtomicBool>)> = self
            .endpoints
            .iter()
            .map(|e| (e.cfg.name.clone(), Arc::new(AtomicBool::new(false))))
            .collect();
        let mut waits: Vec<_> = self
            .endpoints
            .into_iter()
            .zip(&ended)
            .map(|(e, (_, done))| {
                let done = done.clone();
                futures_util::future::Either::Left(async move {
                    e.queue.join().await;
                    done.store(true, Ordering::Relaxed);
                })
            })
            .collect();
        if let Some(debug) = self.debug {
            waits.push(futures_util::future::Either::Right(async move {
                let _ = debug.task.await;
            }));
        }
        let all = join_all(waits);
        tokio::pin!(all);
        let clean = tokio::time::timeout(grace, &mut all).await.is_ok();
        if clean {
            tracing::info!("remote write stopped; everything queued was sent");
            return true;
        }
        let unfinished = |ended: &[(String, Arc<AtomicBool>)]| {
            ended
                .iter()
                .filter(|(_, done)| !done.load(Ordering::Relaxed))
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let endpoints = unfinished(&ended);
        for stop in &stoppers {
            stop.cancel();
        }
        let ended_in_time = tokio::time::timeout(bound, &mut all).await.is_ok();
        let discarded = self.control.discard();
        if self.control.keeps_unsent() {
            tracing::warn!(grace = ?grace, endpoints = %endpoints, "remote write stopped at the end of the shutdown grace period; what was not sent stays in the buffer and is sent by the next run");
        } else {
            tracing::warn!(grace = ?grace, endpoints = %endpoints, discarded_input = discarded, "remote write stopped at the end of the shutdown grace period; what was not sent is dropped (counted: samples_dropped_total reason shutdown)");
        }
        if !ended_in_time {
            let stuck = unfinished(&ended);
            tracing::error!(bound = ?bound, endpoints = %stuck, "remote write queues did not end after the hard stop (a cursor write that does not return?); exiting without waiting for them: the next run may send some samples again");
        }
        false
    }
}

impl<I, C, F> Control for Engine<I, C, F>
where
    I: Input,
    C: WriteClient,
    F: Fn(&RemoteWriteConfig) -> Result<C, Error> + Send + Sync + 'static,
{
    fn prepare(&self, cfg: &RemoteWriteConfig) -> Result<Starter, Error> {
        let client = (self.make_client)(cfg)?;
        let cfg = cfg.clone();
        let input = self.input.clone();
        let metrics = self.metrics.clone();
        let options = QueueOptions {
            tuning: self.tuning,
            previous: None,
            metadata: Some(self.metadata.clone()),
        };
        Ok(Box::new(
            move |external: &Labels, start: Start, previous: Option<Routing>| {
                let m = metrics.endpoint(&cfg.name);
                let source = input.endpoint(&cfg, &m, start);
                let options = QueueOptions {
                    previous,
                    ..options
                };
                spawn_queue_with(&cfg, external, source, client, m, options)
            },
        ))
    }

    fn spawn_debug(&self, external: &Labels, stop: CancellationToken) -> JoinHandle<()> {
        spawn_debug_sink(self.input.debug(), external.clone(), DEBUG_INTERVAL, stop)
    }

    fn retire(
        &self,
        name: &str,
        forget: bool,
    ) -> Pin<Box<dyn Future<Output = Option<Cursors>> + Send>> {
        let retired = self.input.retire(name, forget);
        let metrics = self.metrics.clone();
        let name = name.to_owned();
        Box::pin(async move {
            let cursors = retired.await;
            if forget {
                metrics.remove_endpoint(&name);
            }
            cursors
        })
    }

    fn appender(&self) -> Arc<dyn Appender> {
        self.input.clone().appender()
    }

    fn close(&self) {
        self.input.close();
    }

    fn discard(&self) -> usize {
        self.input.discard()
    }

    fn keeps_unsent(&self) -> bool {
        self.input.keeps_unsent()
    }
}

impl Input for Fanout {
    type Source = MemoryQueue;

    fn endpoint(
        &self,
        cfg: &RemoteWriteConfig,
        m: &EndpointMetrics,
        _start: Start,
    ) -> EndpointInput<MemoryQueue> {
        let q = &cfg.queue_config;
        let capacity = q
            .capacity
            .max(q.max_samples_per_send)
            .saturating_mul(INPUT_QUEUE_FACTOR);
        m.queue_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        EndpointInput {
            source: self.add_output(
                capacity,
                m.dropped.queue_full.clone(),
                m.dropped.shutdown.clone(),
            ),
            resume: None,
            store: None,
        }
    }

    fn debug(&self) -> MemoryQueue {
        self.add_output(100_000, Counter::default(), Counter::default())
    }

    fn retire(
        self: &Arc<Self>,
        _name: &str,
        _forget: bool,
    ) -> impl Future<Output = Option<Cursors>> + Send + 'static {
        // The queue's end dropped its output, which detached it: nothing else is kept.
        std::future::ready(None)
    }

    fn appender(self: Arc<Self>) -> Arc<dyn Appender> {
        self
    }

    fn close(&self) {
        Fanout::close(self);
    }

    fn discard(&self) -> usize {
        self.discard_queued()
    }

    fn keeps_unsent(&self) -> bool {
        false
    }
}

/// Sets `setting_ignored` for endpoint `cfg` and warns about each setting that is set now and
/// was not in `before` (the endpoint's previous configuration; `None` when it starts) (module
/// invariant 6).
fn note_ignored_settings(
    metrics: &RemoteMetrics,
    cfg: &RemoteWriteConfig,
    before: Option<&RemoteWriteConfig>,
) {
    use super::metrics::ignored_setting::{SEND_EXEMPLARS, SEND_NATIVE_HISTOGRAMS};
    let settings = |c: &RemoteWriteConfig| {
        [
            (SEND_EXEMPLARS, c.send_exemplars, "exemplars are not sent"),
            (
                SEND_NATIVE_HISTOGRAMS,
                c.send_native_histograms,
                "native histograms are not sent",
            ),
        ]
    };
    let was = before.map(settings);
    for (i, (setting, set, effect)) in settings(cfg).into_iter().enumerate() {
        metrics.set_setting_ignored(&cfg.name, setting, set);
        let set_before = was.is_some_and(|w| w[i].1);
        if set && !set_before {
            tracing::warn!(endpoint = %cfg.name, setting, "remote_write setting is not implemented yet and has no effect: {effect}");
        }
    }
}

/// A stable hash of what defines an endpoint: its configuration (secrets included, never
/// shown) and the external labels. Settings that change nothing the endpoint does
/// (`send_exemplars`, `send_native_histograms`: not implemented) are left out, so toggling
/// them restarts nothing.
pub fn endpoint_key(cfg: &RemoteWriteConfig, external_labels: &Labels) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let cfg = &RemoteWriteConfig {
        send_exemplars: false,
        send_native_histograms: false,
        ..cfg.clone()
    };
    // `Debug` of the config shows every field but secrets, which are added separately.
    h.update(format!("{cfg:?}").as_bytes());
    h.update(format!("{external_labels:?}").as_bytes());
    for secret in cfg.http.secrets() {
        h.update(&[0xff]);
        h.update(secret.as_bytes());
    }
    h.digest()
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
                username_file: None,
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

    /// Accepts every request.
    struct Accept;

    impl WriteClient for Accept {
        async fn store(&self, _body: bytes::Bytes) -> Result<(), super::super::SendError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn reloading_the_in_memory_input_starts_restarts_and_removes_endpoints() {
        let mut registry = Registry::default();
        let metrics = RemoteMetrics::register(&mut registry);
        let config = |endpoints: &[(&str, &str)]| Config {
            remote_write: endpoints
                .iter()
                .map(|(name, url)| RemoteWriteConfig {
                    url: (*url).into(),
                    name: (*name).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut remote = RemoteWrite::start_with(
            &config(&[("a", "http://a/w"), ("b", "http://b/w")]),
            false,
            &metrics,
            QueueTuning::default(),
            // Validates like the real client, sends nowhere.
            |cfg| HttpWriteClient::new(cfg).map(|_| Accept),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ids = |r: &RemoteWrite| r.endpoints().map(|(_, q)| q.id()).collect::<Vec<_>>();
        let before = ids(&remote);
        assert!(!remote.debug_output());

        let bad = remote
            .reload(&config(&[("a", "http://a/w"), ("c", "not a url")]), true)
            .await;
        assert!(matches!(bad, Err(Error::Url { .. })), "{bad:?}");
        let checked = remote.validate(&config(&[("c", "not a url")]));
        assert!(matches!(checked, Err(Error::Url { .. })), "{checked:?}");
        assert!(
            remote
                .validate(&config(&[("a", "http://a/w"), ("c", "http://c/w")]))
                .is_ok()
        );
        assert_eq!(ids(&remote), before, "a failed reload changes nothing");
        assert!(!remote.debug_output());

        let summary = remote
            .reload(
                &config(&[
                    ("a", "http://a/w"),
                    ("b", "http://b2/w"),
                    ("c", "http://c/w"),
                ]),
                true,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            summary,
            ReloadSummary {
                kept: 1,
                started: 1,
                restarted: 1,
                removed: 0
            }
        );
        let after = ids(&remote);
        assert_eq!(after[0], before[0], "a is kept");
        assert_ne!(after[1], before[1], "b is restarted");
        assert!(remote.debug_output());

        let summary = remote
            .reload(&config(&[("c", "http://c/w")]), false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary.removed, 2);
        assert_eq!(summary.kept, 1);
        assert!(!remote.debug_output());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!text.contains("endpoint=\"a\""), "{text}");
        assert!(text.contains("endpoint=\"c\""), "{text}");
        assert!(remote.shutdown(Duration::from_secs(10)).await);
    }

    #[test]
    fn endpoint_key_leaves_out_settings_that_are_not_implemented() {
        let none = Labels::empty();
        let base = cfg("http://a/w");
        let toggled = RemoteWriteConfig {
            send_exemplars: true,
            send_native_histograms: true,
            ..base.clone()
        };
        assert_eq!(endpoint_key(&base, &none), endpoint_key(&toggled, &none));
    }

    #[tokio::test]
    async fn toggling_ignored_settings_on_reload_keeps_the_endpoint_running_and_says_so() {
        let captured = crate::telemetry::capture::Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut registry = Registry::default();
        let metrics = RemoteMetrics::register(&mut registry);
        let config = |exemplars: bool, histograms: bool| Config {
            remote_write: vec![RemoteWriteConfig {
                send_exemplars: exemplars,
                send_native_histograms: histograms,
                ..cfg("http://a/w")
            }],
            ..Default::default()
        };
        let ignored = |setting: &str| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry)
                .unwrap_or_else(|e| panic!("{e}"));
            let series = format!(
                "scrapelet_remote_setting_ignored{{endpoint=\"a\",setting=\"{setting}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&series))
                .map(str::to_owned)
        };
        let mut remote = RemoteWrite::start_with(
            &config(false, true),
            false,
            &metrics,
            QueueTuning::default(),
            |cfg| HttpWriteClient::new(cfg).map(|_| Accept),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let id = |r: &RemoteWrite| r.endpoints().map(|(_, q)| q.id()).next();
        let before = id(&remote);
        assert_eq!(ignored("send_native_histograms").as_deref(), Some("1"));
        assert_eq!(ignored("send_exemplars"), None);
        let started = captured.text();
        assert!(
            started.contains("remote_write setting is not implemented yet and has no effect: native histograms are not sent")
                && started.contains("setting=\"send_native_histograms\""),
            "{started}"
        );

        for (exemplars, histograms) in [(true, true), (false, false), (true, false)] {
            let summary = remote
                .reload(&config(exemplars, histograms), false)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                summary,
                ReloadSummary {
                    kept: 1,
                    ..Default::default()
                },
                "exemplars={exemplars} histograms={histograms}"
            );
            assert_eq!(id(&remote), before, "the same queue runs");
            assert_eq!(ignored("send_exemplars").is_some(), exemplars);
            assert_eq!(ignored("send_native_histograms").is_some(), histograms);
        }
        let logs = captured.text();
        assert!(!logs.contains("endpoint restarted"), "{logs}");
        assert_eq!(
            logs.matches("remote write endpoint started").count(),
            1,
            "{logs}"
        );
        // A warning each time a setting became set: histograms at start, exemplars twice.
        assert_eq!(
            logs.matches("setting=\"send_exemplars\"").count(),
            2,
            "{logs}"
        );
        assert_eq!(
            logs.matches("setting=\"send_native_histograms\"").count(),
            1,
            "{logs}"
        );
        assert!(remote.shutdown(Duration::from_secs(10)).await);
    }

    /// Never answers (a receiver that accepted the connection and went quiet).
    struct Silent;

    impl WriteClient for Silent {
        async fn store(&self, _body: bytes::Bytes) -> Result<(), super::super::SendError> {
            std::future::pending().await
        }
    }

    /// A cursor store on a disk that does not answer: commits never complete.
    struct HungStore;

    impl super::super::CursorStore for HungStore {
        fn commit(&self, _cursors: Cursors) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
            Box::pin(std::future::pending())
        }
        fn offer(&self, _cursors: Cursors) {}
    }

    /// The in-memory input with cursors "saved" on a hung disk, as the buffer's would be.
    struct HungDisk(Arc<Fanout>);

    impl Input for HungDisk {
        type Source = MemoryQueue;

        fn endpoint(
            &self,
            cfg: &RemoteWriteConfig,
            metrics: &EndpointMetrics,
            start: Start,
        ) -> EndpointInput<MemoryQueue> {
            EndpointInput {
                store: Some(Arc::new(HungStore)),
                ..self.0.endpoint(cfg, metrics, start)
            }
        }
        fn debug(&self) -> MemoryQueue {
            Input::debug(self.0.as_ref())
        }
        fn retire(
            self: &Arc<Self>,
            _name: &str,
            _forget: bool,
        ) -> impl Future<Output = Option<Cursors>> + Send + 'static {
            std::future::ready(None)
        }
        fn appender(self: Arc<Self>) -> Arc<dyn Appender> {
            self.0.clone()
        }
        fn close(&self) {
            self.0.close();
        }
        fn discard(&self) -> usize {
            0
        }
        fn keeps_unsent(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn shutdown_is_bounded_after_the_hard_stop_even_when_cursors_cannot_be_saved() {
        use crate::append::{Batch, Sample, SeriesRef};
        let captured = crate::telemetry::capture::Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let config = Config {
            remote_write: vec![cfg("http://127.0.0.1:1/w")],
            ..Default::default()
        };
        let metrics = RemoteMetrics::register(&mut Registry::default());
        let remote = RemoteWrite::start_from(
            HungDisk(Arc::new(Fanout::new())),
            &config,
            false,
            &metrics,
            QueueTuning::default(),
            |_cfg: &RemoteWriteConfig| Ok(Silent),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        remote.appender().append(Batch {
            series: vec![(SeriesRef(1), Labels::from_pairs([("__name__", "up")]))],
            samples: vec![Sample {
                series: SeriesRef(1),
                timestamp_ms: 42,
                value: 1.0,
            }],
            gone: vec![],
        });
        let (grace, bound) = (Duration::from_millis(200), Duration::from_millis(300));
        let began = std::time::Instant::now();
        // Without the bound this never returns: the queue's last cursor commit hangs.
        let clean = tokio::time::timeout(
            Duration::from_secs(20),
            remote.shutdown_bounded(grace, bound),
        )
        .await;
        assert_eq!(clean, Ok(false), "shutdown did not return");
        let took = began.elapsed();
        assert!(took < grace + bound + Duration::from_secs(2), "{took:?}");
        let logs = captured.text();
        assert!(
            logs.contains("what was not sent stays in the buffer and is sent by the next run"),
            "{logs}"
        );
        assert!(!logs.contains("counted as dropped"), "{logs}");
        assert!(
            logs.contains("remote write queues did not end after the hard stop")
                && logs.contains("endpoints=a"),
            "{logs}"
        );
    }

    #[tokio::test]
    async fn without_endpoints_the_debug_output_logs_what_would_be_sent() {
        use crate::append::{Batch, Sample, SeriesRef};
        let captured = crate::telemetry::capture::Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
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
        let logs = captured.text();
        let line = logs.lines().find(|l| l.contains("debug output"));
        let line = line.unwrap_or_else(|| panic!("no debug output line in:\n{logs}"));
        assert!(line.contains("samples=1"), "{line}");
        assert!(
            line.contains(r#"{__name__="up", cluster="c1"} 1 @42"#),
            "{line}"
        );
    }
}
