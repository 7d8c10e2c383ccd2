//! The synchronous heart of a scrape: a body in, a [`Batch`] out. Separate from I/O so that
//! it can be tested and benchmarked alone.
//!
//! For each sample line the raw series text is looked up in the target's series cache; only
//! unknown texts have their labels parsed, target labels attached (`honor_labels`), metric
//! relabeling applied, limits checked and a series created. A steady-state scrape therefore
//! parses values only and allocates nothing per sample (tests/scrape_alloc.rs proves it).
//!
//! `# TYPE`, `# HELP` and `# UNIT` lines go to the target's metadata cache (see `metadata`),
//! which allocates only when a family's metadata is new or changed.
//!
//! Guard rails (see `limits`) act on new series only, so they cost nothing on a steady
//! scrape: `series_limit`/`series_limit_per_metric` refuse a new series (its line is then
//! cached as refused), `label_limit` with `label_limit_keep` trims it; two series of one scrape
//! that trimming made identical are merged into one sample (summed, or for gauges and summary
//! quantiles the larger value). `sample_limit` stops the scrape at the limit, and a failed
//! scrape keeps the cache (see `cache`, invariant 6).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::cache::{Limited, Lookup, SeriesCache};
use super::limits::{self, LabelValues, Refusal, SeriesLimiter};
use super::metadata::{Line, MetadataCache};
use crate::append::{Batch, Sample, SeriesRef, SeriesRefs};
use crate::config::ScrapeConfig;
use crate::exposition::{self, Entry, Format, MetricType, ParseError, Parser};
use crate::labels::{Labels, LabelsBuilder, METRIC_NAME};
use crate::metadata::TargetMetadata;
use crate::relabel::{Relabeler, is_valid_label_name};

/// How a job's bodies are turned into series (the scrape config's parsing settings).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// 0 means none.
    pub sample_limit: usize,
    /// 0 means none.
    pub label_limit: usize,
    /// 0 means none.
    pub label_name_length_limit: usize,
    /// 0 means none.
    pub label_value_length_limit: usize,
    /// 0 means none.
    pub series_limit: usize,
    /// 0 means none.
    pub series_limit_per_metric: usize,
    /// With `label_limit`: trim series to it, keeping these names first, instead of failing.
    pub label_limit_keep: Option<Vec<String>>,
    pub metric_relabel: Relabeler,
}

/// Why a body could not be turned into a batch. Every variant fails the whole scrape.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The body is not valid exposition text.
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("line {line}: duplicate label name {name:?}")]
    DuplicateLabel { line: usize, name: String },
    #[error("line {line}: metric relabeling produced invalid label name {name:?}")]
    InvalidLabelName { line: usize, name: String },
    #[error("line {line}: missing metric name (__name__ label)")]
    NoName { line: usize },
    #[error("sample_limit exceeded (more than {limit} samples after metric relabeling)")]
    SampleLimit { limit: usize },
    #[error("line {line}: {what} exceeded (limit {limit})")]
    LabelLimit {
        line: usize,
        what: &'static str,
        limit: usize,
    },
}

impl ProcessError {
    /// A fixed, low-cardinality name for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProcessError::Parse(_)
            | ProcessError::DuplicateLabel { .. }
            | ProcessError::InvalidLabelName { .. }
            | ProcessError::NoName { .. } => "parse",
            ProcessError::SampleLimit { .. } => "sample_limit",
            ProcessError::LabelLimit { .. } => "label_limit",
        }
    }
}

/// Counts of one successful parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Samples in the body.
    pub scraped: usize,
    /// Samples kept after metric relabeling (duplicates and out-of-order ones excluded).
    pub appended: usize,
    /// Series created by this scrape.
    pub added: usize,
    pub duplicates: usize,
    pub out_of_order: usize,
    /// Samples of series `series_limit` refused.
    pub series_limited: usize,
    /// Samples of series `series_limit_per_metric` refused.
    pub metric_limited: usize,
    /// Series sent with labels trimmed to `label_limit` (live after this scrape).
    pub trimmed: usize,
    /// Samples merged into another one after trimming.
    pub merged: usize,
}

/// Why a limit that never fails the scrape acted, as the targets API and the log say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitNotice {
    /// `series_limit`, `series_limit_per_metric` or `label_limit`.
    pub reason: &'static str,
    /// The metric family it acted on first (empty when not known).
    pub family: String,
    /// The family's label with the most distinct values, and their number.
    pub label: Option<(String, usize)>,
    /// The count stopped at its bound ([`LabelValues::CAP`]): at least that many.
    pub capped: bool,
}

impl fmt::Display for LimitNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} exceeded", self.reason)?;
        if !self.family.is_empty() {
            write!(f, " by {}", self.family)?;
        }
        if self.reason == LABEL_LIMIT {
            f.write_str(" (labels trimmed)")?;
        }
        if let Some((name, n)) = &self.label {
            let more = if self.capped { " or more" } else { "" };
            write!(
                f,
                ": label {name} has {}{more} values",
                limits::thousands(*n)
            )?;
        }
        Ok(())
    }
}

const SERIES_LIMIT: &str = "series_limit";
const PER_METRIC: &str = "series_limit_per_metric";
const LABEL_LIMIT: &str = "label_limit";
/// The reasons of [`LimitNotice`], in the order of `Processor::episodes` (and of the
/// scrape loop's counters).
pub(super) const REASONS: [&str; 3] = [SERIES_LIMIT, PER_METRIC, LABEL_LIMIT];
/// Refused or trimmed label sets kept per scrape for the explanation, at most.
const EXPLAIN_MAX: usize = 10_000;

/// A limit acting scrape after scrape, until a successful scrape where it does not.
struct Episode {
    family: String,
    family_hash: u64,
    values: LabelValues,
}

/// A label set a limit refused or trimmed in the current scrape (for the explanation).
struct Refused {
    reason: usize,
    family: String,
    labels: LabelsBuilder,
}

/// How two samples of one series, made identical by trimming, become one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Merge {
    Sum,
    Max,
}

/// Turns a target's bodies into batches; holds the target's series cache.
pub struct Processor {
    settings: Arc<Settings>,
    target_labels: Labels,
    refs: Arc<SeriesRefs>,
    cache: SeriesCache,
    metadata: MetadataCache,
    scratch: LabelsBuilder,
    limiter: Option<SeriesLimiter>,
    /// Series whose labels were trimmed (`label_limit_keep`); their duplicates are merged.
    trimmed: HashSet<SeriesRef>,
    /// The current scrape's sample index per series, built only when a merge needs it, up to
    /// `mapped`.
    merge_at: HashMap<SeriesRef, usize>,
    mapped: usize,
    refused: Vec<Refused>,
    /// Samples each limit acted on in the current scrape, by [`REASONS`] order.
    hits: [usize; 3],
    episodes: [Option<Episode>; 3],
}

impl fmt::Debug for Processor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processor")
            .field("series", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The settings of `cfg`.
    pub fn from_config(cfg: &ScrapeConfig) -> Self {
        Settings {
            honor_labels: cfg.honor_labels,
            honor_timestamps: cfg.honor_timestamps,
            sample_limit: cfg.sample_limit,
            label_limit: cfg.label_limit,
            label_name_length_limit: cfg.label_name_length_limit,
            label_value_length_limit: cfg.label_value_length_limit,
            series_limit: cfg.series_limit,
            series_limit_per_metric: cfg.series_limit_per_metric,
            label_limit_keep: cfg.label_limit_keep.clone(),
            metric_relabel: Relabeler::new(&cfg.metric_relabel_configs),
        }
    }
}

impl Processor {
    pub fn new(settings: Arc<Settings>, target_labels: Labels, refs: Arc<SeriesRefs>) -> Self {
        let limiter = SeriesLimiter::new(settings.series_limit, settings.series_limit_per_metric);
        let mut cache = SeriesCache::new();
        if limiter.is_some() {
            cache.track_ended();
        }
        Processor {
            settings,
            target_labels,
            refs,
            cache,
            metadata: MetadataCache::new(),
            scratch: LabelsBuilder::new(),
            limiter,
            trimmed: HashSet::new(),
            merge_at: HashMap::new(),
            mapped: 0,
            refused: Vec::new(),
            hits: [0; 3],
            episodes: [None, None, None],
        }
    }

    /// Parses `body` into `batch` (new series, samples, staleness markers for vanished
    /// series). On error the batch holds a partial result: call [`Processor::fail`]. `ts` is
    /// also the series limits' clock.
    pub fn process(
        &mut self,
        body: &[u8],
        content_type: Option<&str>,
        ts: i64,
        batch: &mut Batch,
    ) -> Result<Counts, ProcessError> {
        if let Some(limiter) = &mut self.limiter
            && limiter.sweep(ts)
        {
            self.cache.forget_limited();
        }
        self.cache.begin(ts);
        self.metadata.begin();
        self.merge_at.clear();
        self.mapped = batch.samples.len();
        self.refused.clear();
        self.hits = [0; 3];
        let honor_ts = self.settings.honor_timestamps;
        let sample_limit = self.settings.sample_limit;
        let mut counts = Counts::default();
        let mut names: Vec<&str> = Vec::new();
        let series_before = batch.series.len();
        let gone_before = batch.gone.len();
        let format = Format::from_content_type(content_type);
        for entry in Parser::new(body, format) {
            let s = match entry? {
                Entry::Sample(s) => s,
                Entry::Type { family, kind } => {
                    self.metadata.line(family, Line::Type(kind), format);
                    continue;
                }
                Entry::Help { family, text } => {
                    self.metadata.line(family, Line::Help(text), format);
                    continue;
                }
                Entry::Unit { family, unit } => {
                    self.metadata.line(family, Line::Unit(unit), format);
                    continue;
                }
            };
            counts.scraped += 1;
            let (t, explicit) = match s.timestamp_ms {
                Some(t) if honor_ts => (t, true),
                _ => (ts, false),
            };
            let lookup = match self.cache.lookup(s.series, t, explicit) {
                Lookup::Miss => self.new_series(&s, t, explicit, ts, &mut names, batch)?,
                found => found,
            };
            match lookup {
                Lookup::Series(series) => {
                    counts.appended += 1;
                    if sample_limit > 0 && counts.appended > sample_limit {
                        // Stop at the limit (as Prometheus): the rest is not even parsed.
                        return Err(ProcessError::SampleLimit {
                            limit: sample_limit,
                        });
                    }
                    batch.samples.push(Sample {
                        series,
                        timestamp_ms: t,
                        value: s.value,
                    });
                }
                Lookup::Duplicate(series) if self.trimmed.contains(&series) => {
                    let rule = merge_rule(s.name, &self.metadata);
                    if self.merge(batch, series, s.value, rule) {
                        counts.merged += 1;
                    }
                }
                Lookup::Duplicate(_) => counts.duplicates += 1,
                Lookup::OutOfOrder => counts.out_of_order += 1,
                Lookup::Limited(Limited::Series) => self.hits[0] += 1,
                Lookup::Limited(Limited::PerMetric) => self.hits[1] += 1,
                Lookup::Dropped | Lookup::Miss => {}
            }
        }
        counts.added = batch.series.len() - series_before;
        self.cache.commit(ts, &mut batch.samples, &mut batch.gone);
        self.metadata.commit();
        if !self.trimmed.is_empty() {
            for r in &batch.gone[gone_before..] {
                self.trimmed.remove(r);
            }
        }
        self.take_ended(ts);
        counts.series_limited = self.hits[0];
        counts.metric_limited = self.hits[1];
        counts.trimmed = self.trimmed.len();
        self.hits[2] = counts.trimmed;
        self.update_episodes();
        Ok(counts)
    }

    /// A line not in the cache: its labels built, trimmed, judged by the series limits, and
    /// cached with what became of it.
    fn new_series<'a>(
        &mut self,
        s: &exposition::Sample<'a>,
        t: i64,
        explicit: bool,
        ts: i64,
        names: &mut Vec<&'a str>,
        batch: &mut Batch,
    ) -> Result<Lookup, ProcessError> {
        let Some((labels, trimmed)) = self.build_labels(s, names)? else {
            self.cache.insert_dropped(s.series);
            return Ok(Lookup::Dropped);
        };
        if let Some(limiter) = &mut self.limiter
            && !self.cache.contains(&labels)
        {
            let name = labels.get(METRIC_NAME).unwrap_or_default();
            let family = limits::family_of(name, |f| self.metadata.kind(f));
            let family_hash = xxhash_rust::xxh3::xxh3_64(family.as_bytes());
            if let Err(refusal) = limiter.admit(labels.stable_hash(), family_hash, ts) {
                let (which, reason) = match refusal {
                    Refusal::Series => (Limited::Series, 0),
                    Refusal::PerMetric => (Limited::PerMetric, 1),
                };
                if self.refused.len() < EXPLAIN_MAX {
                    self.refused.push(Refused {
                        reason,
                        family: family.to_owned(),
                        labels: labels.to_builder(),
                    });
                }
                self.cache.insert_limited(s.series, which);
                return Ok(Lookup::Limited(which));
            }
        }
        let lookup =
            self.cache
                .insert(s.series, labels, t, explicit, &self.refs, &mut batch.series);
        if trimmed && let Lookup::Series(r) | Lookup::Duplicate(r) = lookup {
            self.trimmed.insert(r);
        }
        Ok(lookup)
    }

    /// Merges `value` into the current scrape's sample of `series` (`rule`). False if that
    /// sample is not in the batch (it was refused as out of order).
    fn merge(&mut self, batch: &mut Batch, series: SeriesRef, value: f64, rule: Merge) -> bool {
        while let Some(s) = batch.samples.get(self.mapped) {
            self.merge_at.entry(s.series).or_insert(self.mapped);
            self.mapped += 1;
        }
        let Some(sample) = self
            .merge_at
            .get(&series)
            .and_then(|&i| batch.samples.get_mut(i))
        else {
            return false;
        };
        sample.value = match rule {
            Merge::Sum => sample.value + value,
            Merge::Max if sample.value.is_nan() || value > sample.value => value,
            Merge::Max => sample.value,
        };
        true
    }

    /// Series that left the cache count for the limiter's window from `ts`.
    fn take_ended(&mut self, ts: i64) {
        if let Some(limiter) = &mut self.limiter {
            for h in self.cache.take_ended() {
                limiter.ended(h, ts);
            }
        }
    }

    /// Starts, feeds and ends the limits' episodes after a successful scrape.
    fn update_episodes(&mut self) {
        for (i, episode) in self.episodes.iter_mut().enumerate() {
            if self.hits[i] == 0 {
                *episode = None;
                continue;
            }
            if episode.is_none() {
                // The family refused (or trimmed) most in this scrape.
                let mut by_family: HashMap<&str, usize> = HashMap::new();
                for r in self.refused.iter().filter(|r| r.reason == i) {
                    *by_family.entry(&r.family).or_default() += 1;
                }
                let family = by_family
                    .into_iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
                    .map(|(f, _)| f.to_owned())
                    .unwrap_or_default();
                let family_hash = xxhash_rust::xxh3::xxh3_64(family.as_bytes());
                let mut values = LabelValues::default();
                // What flows of the family counts too.
                let metadata = &self.metadata;
                for labels in self.cache.live_labels() {
                    let name = labels.get(METRIC_NAME).unwrap_or_default();
                    if !family.is_empty() && limits::family_of(name, |f| metadata.kind(f)) == family
                    {
                        values.add(labels.iter().map(|l| (l.name, l.value)));
                    }
                }
                *episode = Some(Episode {
                    family,
                    family_hash,
                    values,
                });
            }
            if let Some(e) = episode {
                for r in self.refused.iter().filter(|r| r.reason == i) {
                    if xxhash_rust::xxh3::xxh3_64(r.family.as_bytes()) == e.family_hash {
                        e.values.add(r.labels.iter().map(|l| (l.name, l.value)));
                    }
                }
            }
        }
        self.refused.clear();
    }

    /// What the limits that never fail a scrape are doing now: one notice per limit acting.
    pub fn limit_notices(&self) -> Vec<LimitNotice> {
        self.episodes
            .iter()
            .zip(REASONS)
            .filter_map(|(e, reason)| {
                let e = e.as_ref()?;
                Some(LimitNotice {
                    reason,
                    family: e.family.clone(),
                    label: e.values.top().map(|(n, c)| (n.to_owned(), c)),
                    capped: e.values.capped(),
                })
            })
            .collect()
    }

    /// `series_limit` and the series counted against it now, when the limit is set.
    pub fn series_limit(&self) -> Option<(usize, usize)> {
        self.limiter
            .as_ref()
            .filter(|l| l.series_limit() > 0)
            .map(|l| (l.series_limit(), l.current()))
    }

    /// The labels of every live series of the target.
    pub fn for_each_series(&self, mut f: impl FnMut(&Labels)) {
        for labels in self.cache.live_labels() {
            f(labels);
        }
    }

    /// The target's metric metadata when it changed since the last call (a new family, a
    /// changed type, help or unit, a family forgotten), else `None`.
    pub fn take_metadata_update(&mut self) -> Option<TargetMetadata> {
        self.metadata.take_update()
    }

    /// Ends a failed scrape: drops its partial result from `batch` and adds a staleness
    /// marker for every series announced before; the cache keeps them (see `cache`,
    /// invariant 6), forgetting only the series this scrape created.
    pub fn fail(&mut self, ts: i64, batch: &mut Batch) {
        batch.series.clear();
        batch.samples.clear();
        let first_new = self.cache.first_ref_of_scrape();
        self.cache.fail(ts, &mut batch.samples);
        self.trimmed.retain(|r| r.0 < first_new);
        self.take_ended(ts);
        self.refused.clear();
    }

    /// Ends every series (the target went away, or the loop is retired): staleness markers
    /// at `ts` for tracked series, all listed as gone.
    pub fn end_all(&mut self, ts: i64, batch: &mut Batch) {
        self.cache.end_all(ts, &mut batch.samples, &mut batch.gone);
        self.trimmed.clear();
    }

    /// Number of live series of the target.
    pub fn series(&self) -> usize {
        self.cache.len()
    }

    /// The final labels of a sample not in the cache, and whether `label_limit_keep` trimmed
    /// them; `None` when metric relabeling drops it.
    fn build_labels<'a>(
        &mut self,
        s: &exposition::Sample<'a>,
        names: &mut Vec<&'a str>,
    ) -> Result<Option<(Labels, bool)>, ProcessError> {
        let line = s.line();
        let lb = &mut self.scratch;
        lb.clear();
        names.clear();
        lb.set(METRIC_NAME, s.name);
        for item in s.labels() {
            let (name, value) = item?;
            if name == METRIC_NAME || names.contains(&name) {
                return Err(ProcessError::DuplicateLabel {
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
                return Err(ProcessError::InvalidLabelName {
                    line,
                    name: l.name.to_owned(),
                });
            }
        }
        if lb.get(METRIC_NAME).is_none() {
            return Err(ProcessError::NoName { line });
        }
        let mut trimmed = false;
        if let Some(keep) = &settings.label_limit_keep
            && settings.label_limit > 0
            && lb.len() > settings.label_limit
        {
            if self.refused.len() < EXPLAIN_MAX {
                let name = lb.get(METRIC_NAME).unwrap_or_default();
                let family = limits::family_of(name, |f| self.metadata.kind(f)).to_owned();
                self.refused.push(Refused {
                    reason: 2,
                    family,
                    labels: lb.clone(),
                });
            }
            trimmed = limits::trim(lb, settings.label_limit, keep);
        }
        check_limits(settings, lb, line)?;
        Ok(Some((lb.build(), trimmed)))
    }
}

/// How duplicates of a trimmed series of sample name `name` merge: gauges (and summary
/// quantiles, info and stateset samples) keep the larger value; counters, untyped samples,
/// histogram buckets, `_sum` and `_count` are summed.
fn merge_rule(name: &str, metadata: &MetadataCache) -> Merge {
    let kind = |f: &str| metadata.kind(f);
    let family = limits::family_of(name, kind);
    match kind(family) {
        Some(MetricType::Gauge | MetricType::Info | MetricType::StateSet) => Merge::Max,
        Some(MetricType::Summary) if family == name => Merge::Max,
        _ => Merge::Sum,
    }
}

fn check_limits(settings: &Settings, lb: &LabelsBuilder, line: usize) -> Result<(), ProcessError> {
    let err = |what, limit| ProcessError::LabelLimit { line, what, limit };
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

#[cfg(test)]
mod tests;
