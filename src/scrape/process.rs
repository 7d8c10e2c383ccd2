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

use std::sync::Arc;

use super::cache::{Lookup, SeriesCache};
use super::metadata::{Line, MetadataCache};
use crate::append::{Batch, Sample, SeriesRefs};
use crate::config::ScrapeConfig;
use crate::exposition::{self, Entry, Format, ParseError, Parser};
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
    pub metric_relabel: Relabeler,
}

/// Why a body could not be turned into a batch. Every variant fails the whole scrape.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
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
}

/// Turns a target's bodies into batches; holds the target's series cache.
pub struct Processor {
    settings: Arc<Settings>,
    target_labels: Labels,
    refs: Arc<SeriesRefs>,
    cache: SeriesCache,
    metadata: MetadataCache,
    scratch: LabelsBuilder,
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
            metric_relabel: Relabeler::new(&cfg.metric_relabel_configs),
        }
    }
}

impl Processor {
    pub fn new(settings: Arc<Settings>, target_labels: Labels, refs: Arc<SeriesRefs>) -> Self {
        Processor {
            settings,
            target_labels,
            refs,
            cache: SeriesCache::new(),
            metadata: MetadataCache::new(),
            scratch: LabelsBuilder::new(),
        }
    }

    /// Parses `body` into `batch` (new series, samples, staleness markers for vanished
    /// series). On error the batch holds a partial result: call [`Processor::abandon`].
    pub fn process(
        &mut self,
        body: &[u8],
        content_type: Option<&str>,
        ts: i64,
        batch: &mut Batch,
    ) -> Result<Counts, ProcessError> {
        self.cache.begin(ts);
        self.metadata.begin();
        let honor_ts = self.settings.honor_timestamps;
        let mut counts = Counts::default();
        let mut names: Vec<&str> = Vec::new();
        let series_before = batch.series.len();
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
            return Err(ProcessError::SampleLimit {
                count: counts.appended,
                limit,
            });
        }
        counts.added = batch.series.len() - series_before;
        self.cache.commit(ts, &mut batch.samples, &mut batch.gone);
        self.metadata.commit();
        Ok(counts)
    }

    /// The target's metric metadata when it changed since the last call (a new family, a
    /// changed type, help or unit, a family forgotten), else `None`.
    pub fn take_metadata_update(&mut self) -> Option<TargetMetadata> {
        self.metadata.take_update()
    }

    /// Ends a failed scrape: drops its partial result from `batch`, adds staleness markers
    /// for every series announced before (and lists them as gone), and empties the cache.
    pub fn abandon(&mut self, ts: i64, batch: &mut Batch) {
        batch.series.clear();
        batch.samples.clear();
        self.cache.abandon(ts, &mut batch.samples, &mut batch.gone);
    }

    /// Ends every series (the target went away, or the loop is retired): staleness markers
    /// at `ts` for tracked series, all listed as gone.
    pub fn end_all(&mut self, ts: i64, batch: &mut Batch) {
        self.cache.end_all(ts, &mut batch.samples, &mut batch.gone);
    }

    /// Number of live series of the target.
    pub fn series(&self) -> usize {
        self.cache.len()
    }

    /// The final labels of a sample not in the cache; `None` when metric relabeling drops it.
    fn build_labels<'a>(
        &mut self,
        s: &exposition::Sample<'a>,
        names: &mut Vec<&'a str>,
    ) -> Result<Option<Labels>, ProcessError> {
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
        check_limits(settings, lb, line)?;
        Ok(Some(lb.build()))
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
