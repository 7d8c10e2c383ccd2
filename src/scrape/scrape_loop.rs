//! One target's scrape loop: tick, fetch, process (see `process`), append, report.
//!
//! Sequence of one scrape (timestamp `ts` = the scrape's start, strictly increasing per loop):
//! 1. fetch the body (deadline, gzip, size limit) into buffers lent for the scrape by a pool all
//!    loops share ([`BodyBuffers`]);
//! 2. parse it; each sample's raw series text is looked up in the series cache; only unknown
//!    texts have their labels parsed, target labels attached (honor_labels), metric relabeling
//!    applied, limits checked, and a series created;
//! 3. on success, series that vanished since the last scrape get staleness markers; on any
//!    failure (fetch, parse, limit) the scrape's samples are discarded and every series of the
//!    target gets a staleness marker;
//! 4. metadata (`# TYPE`, `# HELP`, `# UNIT`) that changed is published to the loop's slot of
//!    the metadata view; the slot, and so the target's metadata, goes when the loop ends;
//! 5. the synthetic series (`up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//!    `scrape_samples_post_metric_relabeling`, `scrape_series_added`) are added, and the whole
//!    result goes to the appender as one batch.
//!
//! A loop never waits on another loop or on delivery; its only await points are the tick and
//! the fetch, so stopping it at any point leaves its cache consistent.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::fetch::{FetchError, Fetcher};
use super::metrics::{FailureLabels, HealthLabels, JobLabels, Metrics};
use super::process::{Counts, LimitNotice, ProcessError, Processor, REASONS, Settings};
use super::target::Target;
use crate::append::{Appender, Batch, Sample, SeriesRef, SeriesRefs};
use crate::client::HttpClient;
use crate::labels::{Labels, METRIC_NAME};
use crate::metadata::{MetadataSlot, MetadataView};
use crate::telemetry::LogLimiter;
use crate::telemetry::error_chain;

/// A target's health as the targets API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Up,
    Down,
}

/// What the last scrape of a target found.
#[derive(Clone, Debug)]
pub struct ScrapeState {
    pub health: Health,
    /// Empty when the last scrape succeeded.
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    /// Samples after metric relabeling in the last scrape.
    pub last_samples: usize,
    /// Series in the target's cache.
    pub series: usize,
    /// The limits that never fail a scrape acting on the target now, with what explains them.
    pub limits: Vec<LimitNotice>,
}

/// A target and its live scrape state.
#[derive(Debug)]
pub struct TargetStatus {
    /// The target as its loop started; `target.discovered` is what was discovered then (see
    /// [`TargetStatus::discovered`] for now).
    pub target: Target,
    state: Mutex<ScrapeState>,
    /// The labels as last discovered. Discovery can change labels that relabeling does not
    /// keep (a pod's readiness, an annotation): the target and its loop stay, this follows.
    discovered: Mutex<Labels>,
    /// The running loop's processor (its series), for the cardinality view.
    processor: Mutex<Option<SharedProcessor>>,
}

/// A loop's processor, locked by the loop while it turns a body into a batch and by the
/// cardinality view while it reads the target's series.
pub(super) type SharedProcessor = Arc<Mutex<Processor>>;

/// Settings shared by every loop of a job.
pub(super) struct JobSettings {
    pub job: String,
    pub process: Arc<Settings>,
    pub body_size_limit: u64,
    pub enable_compression: bool,
    pub client: HttpClient,
}

/// What every loop hands its results to.
#[derive(Clone)]
pub(super) struct Deps {
    pub appender: Arc<dyn Appender>,
    pub refs: Arc<SeriesRefs>,
    pub metrics: Metrics,
    /// Holds back a flapping target's state-change lines (one per target per interval).
    pub log_limiter: Arc<LogLimiter>,
    /// Where loops publish their targets' metric metadata.
    pub metadata: MetadataView,
    /// Body buffers, lent to a loop for one scrape.
    pub buffers: Arc<BodyBuffers>,
}

/// Body buffers (the body, and the compressed body) shared by every loop. A loop holds a pair
/// only from its fetch until its batch is appended, so the agent keeps about as many pairs as
/// scrapes run at once, not a pair per target (a ~200 KB body per target adds up). Taking and
/// giving back allocate nothing once the pool is as large as the busiest moment needed.
#[derive(Debug, Default)]
pub(super) struct BodyBuffers {
    free: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// A running loop.
pub(super) struct LoopHandle {
    pub status: Arc<TargetStatus>,
    cancel: CancellationToken,
    mode: Arc<AtomicU8>,
    join: JoinHandle<()>,
}

/// How a loop ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum StopMode {
    /// The target went away: staleness markers for all its series, then they are gone.
    Stale = 0,
    /// A new loop takes over (config reload): the series are gone without markers, so the
    /// successor continues them without a gap.
    Retire = 1,
    /// The agent stops: nothing more is appended.
    Shutdown = 2,
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

impl ScrapeError {
    fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Fetch(e) => e.reason(),
            ScrapeError::Process(e) => e.reason(),
        }
    }
}

const REPORT_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Added to the report with `series_limit`, as vmagent writes them.
const SERIES_LIMIT_NAMES: [&str; 3] = [
    "scrape_series_limit",
    "scrape_series_current",
    "scrape_series_limit_samples_dropped",
];

struct ScrapeLoop {
    status: Arc<TargetStatus>,
    settings: Arc<JobSettings>,
    fetcher: Result<Fetcher, String>,
    processor: SharedProcessor,
    /// Removes the target's metadata from the view when the loop ends (it is dropped).
    metadata: MetadataSlot,
    appender: Arc<dyn Appender>,
    /// The synthetic series' refs (`REPORT_NAMES`, then `SERIES_LIMIT_NAMES` with a series
    /// limit), and whether they were announced yet.
    report: Vec<SeriesRef>,
    report_announced: bool,
    last_ts: i64,
    buffers: Arc<BodyBuffers>,
    last_sample_count: usize,
    /// What this loop last added to the job's active-series gauge.
    reported_series: usize,
    m: LoopMetrics,
    log_limiter: Arc<LogLimiter>,
    log_key: u64,
}

struct LoopMetrics {
    scrapes: Counter,
    scraped: Counter,
    appended: Counter,
    duplicates: Counter,
    out_of_order: Counter,
    series: Gauge,
    duration: Histogram,
    /// By the order of `LimitNotice` reasons: series_limit, series_limit_per_metric,
    /// label_limit.
    limited: [Counter; 3],
    merged: Counter,
    metrics: Metrics,
    job: String,
}

impl TargetStatus {
    pub(super) fn new(target: Target) -> Self {
        TargetStatus {
            discovered: Mutex::new(target.discovered.clone()),
            target,
            state: Mutex::new(ScrapeState {
                health: Health::Unknown,
                last_error: String::new(),
                last_scrape: None,
                last_duration: Duration::ZERO,
                last_samples: 0,
                series: 0,
                limits: Vec::new(),
            }),
            processor: Mutex::new(None),
        }
    }

    /// Calls `f` with the labels of every live series of the target (none before its loop
    /// started). Holds the target's processor meanwhile: its next scrape waits.
    pub fn for_each_series(&self, f: impl FnMut(&Labels)) {
        let processor = self
            .processor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(p) = processor {
            p.lock()
                .unwrap_or_else(|p| p.into_inner())
                .for_each_series(f);
        }
    }

    /// A snapshot of the target's scrape state.
    pub fn state(&self) -> ScrapeState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The target's labels as discovery reports them now, before relabeling.
    pub fn discovered(&self) -> Labels {
        self.discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Discovery reported the target again, with `labels`.
    pub(super) fn set_discovered(&self, labels: Labels) {
        *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) = labels;
    }

    pub(super) fn set_down(&self, error: String) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.health = Health::Down;
        s.last_error = error;
    }
}

impl Health {
    /// `up`, `down` or `unknown`, as Prometheus's API spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

impl LoopHandle {
    /// Starts a loop for `status.target`. A `predecessor` (a stopping loop of the same target)
    /// is awaited first, so that its last samples are appended before this loop's first.
    pub(super) fn spawn(
        status: Arc<TargetStatus>,
        settings: Arc<JobSettings>,
        deps: &Deps,
        predecessor: Option<JoinHandle<()>>,
    ) -> Self {
        let cancel = CancellationToken::new();
        let mode = Arc::new(AtomicU8::new(StopMode::Stale as u8));
        let target = &status.target;
        let fetcher = Fetcher::new(
            settings.client.clone(),
            &target.url,
            target.timeout,
            settings.body_size_limit,
            settings.enable_compression,
        )
        .map_err(|e| e.to_string());
        let job_labels = JobLabels {
            job: settings.job.clone(),
        };
        let m = LoopMetrics {
            scrapes: deps.metrics.scrapes.get_or_create_owned(&job_labels),
            scraped: deps
                .metrics
                .samples_scraped
                .get_or_create_owned(&job_labels),
            appended: deps
                .metrics
                .samples_appended
                .get_or_create_owned(&job_labels),
            duplicates: deps
                .metrics
                .samples_rejected
                .get_or_create_owned(&FailureLabels {
                    job: settings.job.clone(),
                    reason: "duplicate",
                }),
            out_of_order: deps
                .metrics
                .samples_rejected
                .get_or_create_owned(&FailureLabels {
                    job: settings.job.clone(),
                    reason: "out_of_order",
                }),
            series: deps.metrics.series_active.get_or_create_owned(&job_labels),
            duration: deps.metrics.duration.get_or_create_owned(&job_labels),
            limited: REASONS.map(|reason| {
                deps.metrics
                    .series_limited
                    .get_or_create_owned(&FailureLabels {
                        job: settings.job.clone(),
                        reason,
                    })
            }),
            merged: deps.metrics.samples_merged.get_or_create_owned(&job_labels),
            metrics: deps.metrics.clone(),
            job: settings.job.clone(),
        };
        m.health_gauge(Health::Unknown).inc();
        let reports = REPORT_NAMES.len()
            + if settings.process.series_limit > 0 {
                SERIES_LIMIT_NAMES.len()
            } else {
                0
            };
        let report = (0..reports).map(|_| deps.refs.allocate()).collect();
        let processor = Arc::new(Mutex::new(Processor::new(
            settings.process.clone(),
            target.labels.clone(),
            deps.refs.clone(),
        )));
        *status.processor.lock().unwrap_or_else(|p| p.into_inner()) = Some(processor.clone());
        let scrape_loop = ScrapeLoop {
            status: status.clone(),
            settings: settings.clone(),
            fetcher,
            processor,
            metadata: deps.metadata.slot(),
            appender: deps.appender.clone(),
            report,
            report_announced: false,
            last_ts: i64::MIN,
            buffers: deps.buffers.clone(),
            last_sample_count: 0,
            reported_series: 0,
            m,
            log_limiter: deps.log_limiter.clone(),
            log_key: target.key(),
        };
        let span = tracing::info_span!("scrape", job = %settings.job, target = %target.url);
        let loop_cancel = cancel.clone();
        let loop_mode = mode.clone();
        let join = tokio::spawn(
            async move {
                if let Some(p) = predecessor {
                    let _ = p.await;
                }
                scrape_loop.run(loop_cancel, loop_mode).await
            }
            .instrument(span),
        );
        LoopHandle {
            status,
            cancel,
            mode,
            join,
        }
    }

    /// Stops the loop; it finishes on its own (await the handle to know when).
    pub(super) fn stop(self, mode: StopMode) -> JoinHandle<()> {
        self.mode.store(mode as u8, Ordering::Relaxed);
        self.cancel.cancel();
        self.join
    }
}

impl BodyBuffers {
    /// A pair of buffers (empty, with whatever capacity they had).
    fn take(&self) -> (Vec<u8>, Vec<u8>) {
        self.lock().pop().unwrap_or_default()
    }

    /// Gives a pair back, after giving back memory held for an unusually large body.
    fn give(&self, mut body: Vec<u8>, mut scratch: Vec<u8>) {
        const KEEP: usize = 1 << 20;
        for buf in [&mut body, &mut scratch] {
            if buf.capacity() > KEEP && buf.capacity() > 4 * buf.len() {
                buf.shrink_to(buf.len().max(KEEP));
            }
        }
        self.lock().push((body, scratch));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Vec<u8>, Vec<u8>)>> {
        // Pushes and pops only: a poisoned lock still guards a consistent list.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ScrapeLoop {
    async fn run(mut self, cancel: CancellationToken, mode: Arc<AtomicU8>) {
        let target = &self.status.target;
        let start =
            Instant::now() + initial_delay(target.offset(), target.interval, SystemTime::now());
        let mut ticker = tokio::time::interval_at(start, target.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = self.scrape_once() => {}
            }
        }
        match mode.load(Ordering::Relaxed) {
            m if m == StopMode::Stale as u8 => self.end_run(true),
            m if m == StopMode::Retire as u8 => self.end_run(false),
            _ => {}
        }
        let health = self.status.state().health;
        self.m.health_gauge(health).dec();
        self.m.series.dec_by(self.reported_series as i64);
    }

    async fn scrape_once(&mut self) {
        let started = Instant::now();
        let ts = self.next_ts();
        // Dropped, not given back, if the loop is stopped during the fetch.
        let (mut body, mut scratch) = self.buffers.take();
        let fetched = match &self.fetcher {
            Ok(f) => f
                .fetch(&mut body, &mut scratch)
                .await
                .map_err(ScrapeError::from),
            Err(url) => Err(ScrapeError::Fetch(FetchError::Url(url.clone()))),
        };
        let duration = started.elapsed();
        self.m.scrapes.inc();
        self.m.duration.observe(duration.as_secs_f64());

        let mut batch = Batch {
            series: Vec::new(),
            samples: Vec::with_capacity(self.last_sample_count + REPORT_NAMES.len()),
            gone: Vec::new(),
        };
        let (result, counts, series_now, series_limit, notices) = {
            let mut processor = self.processor.lock().unwrap_or_else(|p| p.into_inner());
            let result = fetched.and_then(|content_type| {
                processor
                    .process(&body, content_type.as_deref(), ts, &mut batch)
                    .map_err(ScrapeError::from)
            });
            let counts = match &result {
                Ok(counts) => *counts,
                Err(_) => {
                    processor.fail(ts, &mut batch);
                    Counts::default()
                }
            };
            if let Some(families) = processor.take_metadata_update() {
                self.metadata.publish(families);
            }
            let notices = result.is_ok().then(|| processor.limit_notices());
            (
                result,
                counts,
                processor.series(),
                processor.series_limit(),
                notices,
            )
        };
        self.m.scraped.inc_by(counts.scraped as u64);
        self.m.duplicates.inc_by(counts.duplicates as u64);
        self.m.out_of_order.inc_by(counts.out_of_order as u64);
        let limited = [counts.series_limited, counts.metric_limited, counts.trimmed];
        for (counter, n) in self.m.limited.iter().zip(limited) {
            if n > 0 {
                counter.inc_by(n as u64);
            }
        }
        self.m.merged.inc_by(counts.merged as u64);
        self.m
            .series
            .inc_by(series_now as i64 - self.reported_series as i64);
        self.reported_series = series_now;

        self.add_report(
            &mut batch,
            ts,
            result.is_ok(),
            duration,
            &counts,
            series_limit,
        );
        self.last_sample_count = batch.samples.len();
        self.m.appended.inc_by(batch.samples.len() as u64);
        self.appender.append(batch);
        if result.is_err() {
            // What a failed scrape left (up to the body size limit) is not kept in the pool.
            body.clear();
            scratch.clear();
        }
        self.buffers.give(body, scratch);
        if let Some(notices) = notices {
            self.update_limits(notices);
        }
        self.update_status(result.err(), duration, counts.appended, series_now);
    }

    /// Publishes what the limits that never fail a scrape are doing; a limit that starts
    /// acting (or moves to another family) is logged once, rate-limited as the other lines.
    fn update_limits(&mut self, notices: Vec<LimitNotice>) {
        let started: Vec<LimitNotice> = {
            let mut s = self.status.state.lock().unwrap_or_else(|p| p.into_inner());
            let started = notices
                .iter()
                .filter(|n| {
                    !s.limits
                        .iter()
                        .any(|o| o.reason == n.reason && o.family == n.family)
                })
                .cloned()
                .collect();
            s.limits = notices;
            started
        };
        for n in started {
            let key = self.log_key ^ xxhash_rust::xxh3::xxh3_64(n.reason.as_bytes());
            let Some(suppressed) = self.log_limiter.check(key, std::time::Instant::now()) else {
                continue;
            };
            let (label, values) = n.label.clone().unwrap_or_default();
            tracing::warn!(
                reason = n.reason,
                family = %n.family,
                label = %label,
                values,
                suppressed,
                notice = %n,
                "series limited"
            );
        }
    }

    fn add_report(
        &mut self,
        batch: &mut Batch,
        ts: i64,
        up: bool,
        duration: Duration,
        c: &Counts,
        series_limit: Option<(usize, usize)>,
    ) {
        if !self.report_announced {
            let names = REPORT_NAMES.iter().chain(&SERIES_LIMIT_NAMES);
            for (sref, name) in self.report.iter().zip(names) {
                let mut lb = self.status.target.labels.to_builder();
                lb.set(METRIC_NAME, name);
                batch.series.push((*sref, lb.build()));
            }
            self.report_announced = true;
        }
        let (limit, current) = series_limit.unwrap_or_default();
        let values = [
            if up { 1.0 } else { 0.0 },
            duration.as_secs_f64(),
            c.scraped as f64,
            c.appended as f64,
            c.added as f64,
            limit as f64,
            current as f64,
            c.series_limited as f64,
        ];
        for (sref, value) in self.report.iter().zip(values) {
            batch.samples.push(Sample {
                series: *sref,
                timestamp_ms: ts,
                value,
            });
        }
    }

    /// Ends every series of the target, with staleness markers when `mark_stale`.
    fn end_run(&mut self, mark_stale: bool) {
        let ts = self.next_ts();
        let mut batch = Batch::default();
        self.processor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .end_all(ts, &mut batch);
        if self.report_announced {
            for &sref in &self.report {
                batch.samples.push(Sample {
                    series: sref,
                    timestamp_ms: ts,
                    value: crate::append::stale_nan(),
                });
                batch.gone.push(sref);
            }
        }
        if !mark_stale {
            batch.samples.clear();
        }
        if !batch.is_empty() {
            self.m.appended.inc_by(batch.samples.len() as u64);
            self.appender.append(batch);
        }
    }

    /// The scrape timestamp: now in ms, but always after the previous one, so that a clock
    /// stepping back never produces out-of-order samples.
    fn next_ts(&mut self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.last_ts = now.max(self.last_ts.saturating_add(1));
        self.last_ts
    }

    fn update_status(
        &mut self,
        error: Option<ScrapeError>,
        duration: Duration,
        samples: usize,
        series: usize,
    ) {
        let (health, message, reason) = match &error {
            None => (Health::Up, String::new(), None),
            Some(e) => (Health::Down, error_chain(e), Some(e.reason())),
        };
        if let Some(reason) = reason {
            self.m
                .metrics
                .failures
                .get_or_create_owned(&FailureLabels {
                    job: self.settings.job.clone(),
                    reason,
                })
                .inc();
        }
        let previous = {
            let mut s = self.status.state.lock().unwrap_or_else(|p| p.into_inner());
            let previous = s.health;
            let changed_error = s.last_error != message;
            s.health = health;
            s.last_error = message.clone();
            s.last_scrape = Some(SystemTime::now() - duration);
            s.last_duration = duration;
            s.last_samples = samples;
            s.series = series;
            (previous, changed_error)
        };
        let (previous, changed_error) = previous;
        if previous != health {
            self.m.health_gauge(previous).dec();
            self.m.health_gauge(health).inc();
        }
        let changed = previous != health && (previous, health) != (Health::Unknown, Health::Up);
        if changed {
            // The loop's span carries job and target. Each direction is limited on its own,
            // so a recovery is logged after a failure; a flapping target gets one line per
            // direction per limiter interval, which says how many were held back.
            let key = self.log_key ^ u64::from(health == Health::Down);
            let Some(suppressed) = self.log_limiter.check(key, std::time::Instant::now()) else {
                return;
            };
            if health == Health::Down {
                tracing::warn!(reason = %message, suppressed, "target down");
            } else {
                tracing::info!(suppressed, "target up again");
            }
        } else if health == Health::Down && changed_error {
            tracing::debug!(reason = %message, "target still down, new reason");
        }
    }
}

impl LoopMetrics {
    fn health_gauge(&self, health: Health) -> Gauge {
        self.metrics.targets.get_or_create_owned(&HealthLabels {
            job: self.job.clone(),
            health: health.as_str(),
        })
    }
}

/// How long until this target's slot in the current interval: targets keep a fixed phase
/// relative to wall-clock multiples of the interval, so restarts keep the spacing.
fn initial_delay(offset: Duration, interval: Duration, now: SystemTime) -> Duration {
    let interval_ns = interval.as_nanos().max(1);
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let phase = now_ns % interval_ns;
    let offset_ns = offset.as_nanos() % interval_ns;
    let wait = (offset_ns + interval_ns - phase) % interval_ns;
    Duration::from_nanos(wait as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_delay_puts_targets_in_their_slot() {
        let interval = Duration::from_secs(10);
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(
            initial_delay(Duration::from_secs(3), interval, at(100)),
            Duration::from_secs(3)
        );
        assert_eq!(
            initial_delay(Duration::from_secs(3), interval, at(104)),
            Duration::from_secs(9)
        );
        assert_eq!(
            initial_delay(Duration::ZERO, interval, at(100)),
            Duration::ZERO
        );
    }
}
