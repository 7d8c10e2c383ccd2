//! `/api/v1/status/tsdb`: the cardinality of the series live on this node now, in the shape of
//! Prometheus's endpoint of that name, so that its UI and tools read it. Parameters: `limit`
//! (entries per list, default 10, as Prometheus), and scrapelet's `job` and `instance` to
//! narrow it to a job or one target.
//!
//! Computed on request from the scrape caches (the labels the agent holds anyway), never per
//! scrape: one pass over the selected targets' series, counting interned pairs by pointer
//! (each distinct `name="value"` is one [`Pair`]). Memory: one map entry per distinct pair.
//! Each target's processor is held only while its series are read.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::labels::{INSTANCE, Labels, METRIC_NAME, Pair};
use crate::scrape::{TargetStatus, TargetsView};

/// Entries per list when `limit` is not given (Prometheus's default).
const DEFAULT_LIMIT: usize = 10;

/// Counts over a set of series.
#[derive(Debug, Default)]
pub(super) struct Cardinality {
    pub series: u64,
    /// Series per distinct pair.
    pairs: HashMap<Pair, u64>,
}

/// One ranked entry: a name and its count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Stat {
    pub name: String,
    pub value: u64,
}

impl Cardinality {
    /// Adds every live series of `target`.
    pub(super) fn add_target(&mut self, target: &TargetStatus) {
        target.for_each_series(|labels| self.add(labels));
    }

    /// Adds one series.
    fn add(&mut self, labels: &Labels) {
        self.series += 1;
        for p in labels.pairs() {
            *self.pairs.entry(p.clone()).or_default() += 1;
        }
    }

    /// Series per metric name, largest first.
    pub(super) fn by_metric_name(&self, limit: usize) -> Vec<Stat> {
        top(
            self.pairs
                .iter()
                .filter(|(p, _)| p.name() == METRIC_NAME)
                .map(|(p, n)| (p.value().to_owned(), *n)),
            limit,
        )
    }

    /// Distinct values per label name, largest first.
    pub(super) fn values_by_label(&self, limit: usize) -> Vec<Stat> {
        top(self.group(|_, _| 1), limit)
    }

    /// Bytes of values per label name (value length times series, as Prometheus counts it).
    pub(super) fn memory_by_label(&self, limit: usize) -> Vec<Stat> {
        top(self.group(|p, n| p.value().len() as u64 * n), limit)
    }

    /// Series per `name=value` pair, largest first.
    pub(super) fn by_pair(&self, limit: usize) -> Vec<Stat> {
        top(
            self.pairs
                .iter()
                .map(|(p, n)| (format!("{}={}", p.name(), p.value()), *n)),
            limit,
        )
    }

    /// Sums `f(pair, series)` by label name.
    fn group(&self, f: impl Fn(&Pair, u64) -> u64) -> impl Iterator<Item = (String, u64)> {
        let mut by_name: HashMap<&str, u64> = HashMap::new();
        for (p, n) in &self.pairs {
            *by_name.entry(p.name()).or_default() += f(p, *n);
        }
        by_name.into_iter().map(|(k, v)| (k.to_owned(), v))
    }
}

/// The `limit` largest, ties by name.
fn top(items: impl Iterator<Item = (String, u64)>, limit: usize) -> Vec<Stat> {
    let mut v: Vec<Stat> = items.map(|(name, value)| Stat { name, value }).collect();
    v.sort_unstable_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
    v.truncate(limit);
    v
}

/// The endpoint's JSON body for `query`.
pub(super) fn status(view: &TargetsView, query: &str) -> Result<Value, String> {
    let mut limit = DEFAULT_LIMIT;
    let mut job: Option<String> = None;
    let mut instance: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = super::page::percent_decode(v);
        match k {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("limit must be a positive number: {v:?}"))?;
            }
            "job" => job = Some(v),
            "instance" => instance = Some(v),
            _ => {}
        }
    }
    let mut c = Cardinality::default();
    for (name, targets) in view.snapshot() {
        if job.as_deref().is_some_and(|j| j != name) {
            continue;
        }
        for t in &targets.active {
            if instance
                .as_deref()
                .is_some_and(|i| t.target.labels.get(INSTANCE) != Some(i))
            {
                continue;
            }
            c.add_target(t);
        }
    }
    let list = |stats: Vec<Stat>| -> Value {
        stats
            .into_iter()
            .map(|s| json!({"name": s.name, "value": s.value}))
            .collect()
    };
    Ok(json!({
        "status": "success",
        "data": {
            "headStats": {
                "numSeries": c.series,
                "numLabelPairs": c.pairs.len(),
            },
            "seriesCountByMetricName": list(c.by_metric_name(limit)),
            "labelValueCountByLabelName": list(c.values_by_label(limit)),
            "memoryInBytesByLabelName": list(c.memory_by_label(limit)),
            "seriesCountByLabelValuePair": list(c.by_pair(limit)),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_names_labels_and_pairs() {
        let mut c = Cardinality::default();
        for i in 0..5 {
            let ua = format!("agent-{i}");
            c.add(&Labels::from_pairs([
                ("__name__", "req_total"),
                ("ua", ua.as_str()),
                ("job", "a"),
            ]));
        }
        c.add(&Labels::from_pairs([("__name__", "up"), ("job", "a")]));
        assert_eq!(c.series, 6);
        let names = c.by_metric_name(10);
        assert_eq!(names[0].name, "req_total");
        assert_eq!(names[0].value, 5);
        let labels = c.values_by_label(1);
        assert_eq!(
            labels,
            [Stat {
                name: "ua".into(),
                value: 5
            }]
        );
        let pairs = c.by_pair(1);
        assert_eq!(pairs[0].name, "job=a");
        assert_eq!(pairs[0].value, 6);
        let memory = c.memory_by_label(10);
        let job = memory.iter().find(|s| s.name == "job").expect("job");
        assert_eq!(job.value, 6, "one byte times six series");
    }
}
