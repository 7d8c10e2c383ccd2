//! One target's scrape loop: tick, fetch, parse, cache, append, report.
//!
//! Sequence of one scrape (timestamp `ts` = the scrape's start, strictly increasing per loop):
//! 1. fetch the body (deadline, gzip, size limit) into a buffer reused across scrapes;
//! 2. parse it; each sample's raw series text is looked up in the series cache; only unknown
//!    texts have their labels parsed, target labels attached (honor_labels), metric relabeling
//!    applied, limits checked, and a series created;
//! 3. on success, series that vanished since the last scrape get staleness markers; on any
//!    failure (fetch, parse, limit) the scrape's samples are discarded and every series of the
//!    target gets a staleness marker;
//! 4. the synthetic series (`up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
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

use super::cache::{Lookup, SeriesCache};
use super::fetch::{FetchError, Fetcher};
use super::metrics::{FailureLabels, HealthLabels, JobLabels, Metrics};
use super::target::Target;
use crate::append::{Appender, Batch, Sample, SeriesRef, SeriesRefs};
use crate::client::HttpClient;
use crate::exposition::{self, Entry, Format, ParseError, Parser};
use crate::labels::{Labels, LabelsBuilder, METRIC_NAME};
use crate::relabel::{Relabeler, is_valid_label_name};
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
}

/// A target and its live scrape state.
#[derive(Debug)]
pub struct TargetStatus {
    pub target: Target,
    state: Mutex<ScrapeState>,
}

/// Settings shared by every loop of a job.
pub(super) struct JobSettings {
    pub job: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: usize,
    pub label_limit: usize,
    pub label_name_length_limit: usize,
    pub label_value_length_limit: usize,
    pub body_size_limit: u64,
    pub enable_compression: bool,
    pub metric_relabel: Relabeler,
    pub client: HttpClient,
}

/// What every loop hands its results to.
#[derive(Clone)]
pub(super) struct Deps {
    pub appender: Arc<dyn Appender>,
    pub refs: Arc<SeriesRefs>,
    pub metrics: Metrics,
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
pub(super) enum ScrapeError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The body is not valid exposition text.
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("line {line}: duplicate label name {name:?}")]
    DuplicateLabel { line: usize, name: String },
    #[error("line {line}: metric relabeling produced invalid label name {name:?}")]
    InvalidLabelName { line: usize, name: String },
    #[error("line {line}: missing metric name (__name__ label)")]
    NoName { line: usize },
    #[error("sample_limit exceeded ({count} samples, limit {limit})")]
    SampleLimit { count: usize, limit: usize },
    #[error("line {line}: {what} exceeded (limit {limit})")]
    LabelLimit {
        line: usize,
        what: &'static str,
        limit: usize,
    },
}

impl ScrapeError {
    fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Fetch(e) => e.reason(),
            ScrapeError::Parse(_)
            | ScrapeError::DuplicateLabel { .. }
            | ScrapeError::InvalidLabelName { .. }
            | ScrapeError::NoName { .. } => "parse",
            ScrapeError::SampleLimit { .. } => "sample_limit",
            ScrapeError::LabelLimit { .. } => "label_limit",
        }
    }
}

/// Counts of one successful parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// Samples in the body.
    pub scraped: usize,
    /// Samples kept after metric relabeling (duplicates and out-of-order ones excluded).
    pub appended: usize,
    /// Series created by this scrape.
    pub added: usize,
    pub duplicates: usize,
    pub out_of_order: usize,
}

/// The synchronous heart of a loop: body in, batch out. Separate from I/O so it can be tested
/// and benchmarked alone.
pub(super) struct Processor {
    settings: Arc<JobSettings>,
    target_labels: Labels,
    refs: Arc<SeriesRefs>,
    cache: SeriesCache,
    scratch: LabelsBuilder,
}

const REPORT_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

struct ScrapeLoop {
    status: Arc<TargetStatus>,
    settings: Arc<JobSettings>,
    fetcher: Result<Fetcher, String>,
    processor: Processor,
    appender: Arc<dyn Appender>,
    /// The synthetic series' refs, and whether they were announced yet.
    report: [SeriesRef; 5],
    report_announced: bool,
    last_ts: i64,
    body: Vec<u8>,
    scratch: Vec<u8>,
    last_sample_count: usize,
    /// What this loop last added to the job's active-series gauge.
    reported_series: usize,
    m: LoopMetrics,
}

struct LoopMetrics {
    scrapes: Counter,
    scraped: Counter,
    appended: Counter,
    duplicates: Counter,
    out_of_order: Counter,
    series: Gauge,
    duration: Histogram,
    metrics: Metrics,
    job: String,
}

impl TargetStatus {
    pub(super) fn new(target: Target) -> Self {
        TargetStatus {
            target,
            state: Mutex::new(ScrapeState {
                health: Health::Unknown,
                last_error: String::new(),
                last_scrape: None,
                last_duration: Duration::ZERO,
                last_samples: 0,
                series: 0,
            }),
        }
    }

    /// A snapshot of the target's scrape state.
    pub fn state(&self) -> ScrapeState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
            scrapes: deps.metrics.scrapes.get_or_create(&job_labels).clone(),
            scraped: deps
                .metrics
                .samples_scraped
                .get_or_create(&job_labels)
                .clone(),
            appended: deps
                .metrics
                .samples_appended
                .get_or_create(&job_labels)
                .clone(),
            duplicates: deps
                .metrics
                .samples_rejected
                .get_or_create(&FailureLabels {
                    job: settings.job.clone(),
                    reason: "duplicate",
                })
                .clone(),
            out_of_order: deps
                .metrics
                .samples_rejected
                .get_or_create(&FailureLabels {
                    job: settings.job.clone(),
                    reason: "out_of_order",
                })
                .clone(),
            series: deps
                .metrics
                .series_active
                .get_or_create(&job_labels)
                .clone(),
            duration: deps.metrics.duration.get_or_create(&job_labels).clone(),
            metrics: deps.metrics.clone(),
            job: settings.job.clone(),
        };
        m.health_gauge(Health::Unknown).inc();
        let report = std::array::from_fn(|_| deps.refs.allocate());
        let scrape_loop = ScrapeLoop {
            status: status.clone(),
            settings: settings.clone(),
            fetcher,
            processor: Processor::new(settings.clone(), target.labels.clone(), deps.refs.clone()),
            appender: deps.appender.clone(),
            report,
            report_announced: false,
            last_ts: i64::MIN,
            body: Vec::new(),
            scratch: Vec::new(),
            last_sample_count: 0,
            reported_series: 0,
            m,
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
        let fetched = match &self.fetcher {
            Ok(f) => f
                .fetch(&mut self.body, &mut self.scratch)
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
        let result = fetched.and_then(|content_type| {
            self.processor
                .process(&self.body, content_type.as_deref(), ts, &mut batch)
        });
        let counts = match &result {
            Ok(counts) => *counts,
            Err(_) => {
                batch.series.clear();
                batch.samples.clear();
                self.processor
                    .cache
                    .abandon(ts, &mut batch.samples, &mut batch.gone);
                Counts::default()
            }
        };
        self.m.scraped.inc_by(counts.scraped as u64);
        self.m.duplicates.inc_by(counts.duplicates as u64);
        self.m.out_of_order.inc_by(counts.out_of_order as u64);
        let series_now = self.processor.cache.len();
        self.m
            .series
            .inc_by(series_now as i64 - self.reported_series as i64);
        self.reported_series = series_now;

        self.add_report(&mut batch, ts, result.is_ok(), duration, &counts);
        self.last_sample_count = batch.samples.len();
        self.m.appended.inc_by(batch.samples.len() as u64);
        self.appender.append(batch);
        self.shrink_buffers();
        self.update_status(result.err(), duration, counts.appended, series_now);
    }

    fn add_report(&mut self, batch: &mut Batch, ts: i64, up: bool, duration: Duration, c: &Counts) {
        if !self.report_announced {
            for (sref, name) in self.report.iter().zip(REPORT_NAMES) {
                let mut lb = self.status.target.labels.to_builder();
                lb.set(METRIC_NAME, name);
                batch.series.push((*sref, lb.build()));
            }
            self.report_announced = true;
        }
        let values = [
            if up { 1.0 } else { 0.0 },
            duration.as_secs_f64(),
            c.scraped as f64,
            c.appended as f64,
            c.added as f64,
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
            .cache
            .end_all(ts, &mut batch.samples, &mut batch.gone);
        if self.report_announced {
            for sref in self.report {
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

    /// Gives back memory after an unusually large body.
    fn shrink_buffers(&mut self) {
        const KEEP: usize = 1 << 20;
        for buf in [&mut self.body, &mut self.scratch] {
            if buf.capacity() > KEEP && buf.capacity() > 4 * buf.len() {
                buf.shrink_to(buf.len().max(KEEP));
            }
        }
    }

    fn update_status(
        &mut self,
        error: Option<ScrapeError>,
        duration: Duration,
        samples: usize,
        series: usize,
    ) {
        let target = &self.status.target;
        let (health, message, reason) = match &error {
            None => (Health::Up, String::new(), None),
            Some(e) => (Health::Down, error_chain(e), Some(e.reason())),
        };
        if let Some(reason) = reason {
            self.m
                .metrics
                .failures
                .get_or_create(&FailureLabels {
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
        match (previous, health) {
            (Health::Up | Health::Unknown, Health::Down) => {
                tracing::warn!(job = %self.settings.job, target = %target.url, reason = %message, "target down")
            }
            (Health::Down, Health::Down) if changed_error => {
                tracing::debug!(job = %self.settings.job, target = %target.url, reason = %message, "target still down, new reason")
            }
            (Health::Down, Health::Up) => {
                tracing::info!(job = %self.settings.job, target = %target.url, "target up again")
            }
            _ => {}
        }
    }
}

impl LoopMetrics {
    fn health_gauge(&self, health: Health) -> Gauge {
        self.metrics
            .targets
            .get_or_create(&HealthLabels {
                job: self.job.clone(),
                health: health.as_str(),
            })
            .clone()
    }
}

impl Processor {
    pub(super) fn new(
        settings: Arc<JobSettings>,
        target_labels: Labels,
        refs: Arc<SeriesRefs>,
    ) -> Self {
        Processor {
            settings,
            target_labels,
            refs,
            cache: SeriesCache::new(),
            scratch: LabelsBuilder::new(),
        }
    }

    /// Parses `body` into `batch` (new series, samples, staleness markers for vanished
    /// series). On error the caller discards the batch and calls `cache.abandon`.
    pub(super) fn process(
        &mut self,
        body: &[u8],
        content_type: Option<&str>,
        ts: i64,
        batch: &mut Batch,
    ) -> Result<Counts, ScrapeError> {
        self.cache.begin();
        let honor_ts = self.settings.honor_timestamps;
        let mut counts = Counts::default();
        let mut names: Vec<&str> = Vec::new();
        let series_before = batch.series.len();
        for entry in Parser::new(body, Format::from_content_type(content_type)) {
            let Entry::Sample(s) = entry? else {
                continue;
            };
            counts.scraped += 1;
            let (t, explicit) = match s.timestamp_ms {
                Some(t) if honor_ts => (t, true),
                _ => (ts, false),
            };
            let lookup = match self.cache.lookup(s.series, t, explicit) {
                Lookup::Miss => match self.build_labels(&s, &mut names)? {
                    None => {
                        self.cache.insert_dropped(s.series);
                        Lookup::Dropped
                    }
                    Some(labels) => self.cache.insert(
                        s.series,
                        labels,
                        t,
                        explicit,
                        &self.refs,
                        &mut batch.series,
                    ),
                },
                found => found,
            };
            match lookup {
                Lookup::Series(series) => {
                    counts.appended += 1;
                    batch.samples.push(Sample {
                        series,
                        timestamp_ms: t,
                        value: s.value,
                    });
                }
                Lookup::Duplicate => counts.duplicates += 1,
                Lookup::OutOfOrder => counts.out_of_order += 1,
                Lookup::Dropped | Lookup::Miss => {}
            }
        }
        let limit = self.settings.sample_limit;
        if limit > 0 && counts.appended > limit {
            return Err(ScrapeError::SampleLimit {
                count: counts.appended,
                limit,
            });
        }
        counts.added = batch.series.len() - series_before;
        self.cache.commit(ts, &mut batch.samples, &mut batch.gone);
        Ok(counts)
    }

    /// The final labels of a sample not in the cache; `None` when metric relabeling drops it.
    fn build_labels<'a>(
        &mut self,
        s: &exposition::Sample<'a>,
        names: &mut Vec<&'a str>,
    ) -> Result<Option<Labels>, ScrapeError> {
        let line = s.line();
        let lb = &mut self.scratch;
        lb.clear();
        names.clear();
        lb.set(METRIC_NAME, s.name);
        for item in s.labels() {
            let (name, value) = item?;
            if name == METRIC_NAME || names.contains(&name) {
                return Err(ScrapeError::DuplicateLabel {
                    line,
                    name: name.to_owned(),
                });
            }
            names.push(name);
            lb.set(name, &value);
        }
        let settings = &*self.settings;
        if settings.honor_labels {
            for l in self.target_labels.iter() {
                if lb.get(l.name).is_none() {
                    lb.set(l.name, l.value);
                }
            }
        } else {
            let mut conflicts: Vec<(&str, String)> = Vec::new();
            for l in self.target_labels.iter() {
                if let Some(existing) = lb.get(l.name) {
                    conflicts.push((l.name, existing.to_owned()));
                }
                lb.set(l.name, l.value);
            }
            // Prometheus's order: shorter names first, each prefixed with `exported_` until free.
            conflicts.sort_by_key(|(name, _)| name.len());
            for (name, value) in conflicts {
                let mut exported = format!("exported_{name}");
                while lb.get(&exported).is_some() {
                    exported.insert_str(0, "exported_");
                }
                lb.set(&exported, &value);
            }
        }
        if !settings.metric_relabel.is_empty() {
            if !settings.metric_relabel.process(lb) {
                return Ok(None);
            }
            // labelmap can produce names the exposition could not have.
            if let Some(l) = lb.iter().find(|l| !is_valid_label_name(l.name)) {
                return Err(ScrapeError::InvalidLabelName {
                    line,
                    name: l.name.to_owned(),
                });
            }
        }
        if lb.get(METRIC_NAME).is_none() {
            return Err(ScrapeError::NoName { line });
        }
        check_limits(settings, lb, line)?;
        Ok(Some(lb.build()))
    }
}

fn check_limits(
    settings: &JobSettings,
    lb: &LabelsBuilder,
    line: usize,
) -> Result<(), ScrapeError> {
    let err = |what, limit| ScrapeError::LabelLimit { line, what, limit };
    if settings.label_limit > 0 && lb.len() > settings.label_limit {
        return Err(err("label_limit", settings.label_limit));
    }
    for l in lb.iter() {
        if settings.label_name_length_limit > 0 && l.name.len() > settings.label_name_length_limit {
            return Err(err(
                "label_name_length_limit",
                settings.label_name_length_limit,
            ));
        }
        if settings.label_value_length_limit > 0
            && l.value.len() > settings.label_value_length_limit
        {
            return Err(err(
                "label_value_length_limit",
                settings.label_value_length_limit,
            ));
        }
    }
    Ok(())
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
mod tests;
