//! Helpers shared by the integration tests. Each test binary uses a subset.
#![allow(dead_code)]

pub mod agent;
pub mod binary;
pub mod kube_api;
pub mod logs;
pub mod procs;
pub mod receiver;
pub mod target;
pub mod tls;

use std::time::Duration;

use prometheus_client::registry::Registry;

/// Polls `done` until it holds; panics with `what` after `timeout`. For conditions nothing
/// signals (metrics, files); prefer a receiver's `wait_*` where one applies.
pub async fn eventually(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the series `name{labels...}` in `registry`'s text exposition, if present.
/// `labels` must all match; other labels of the series are ignored. Counters are named with
/// their `_total` suffix, histograms by their `_count`/`_sum`/`_bucket` series.
pub fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .unwrap_or_else(|e| panic!("cannot encode metrics: {e}"));
    metric_in_text(&text, name, labels)
}

/// Like [`metric`], 0 when absent.
pub fn metric_or_zero(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(registry, name, labels).unwrap_or(0.0)
}

/// The value of `name{labels...}` in an OpenMetrics or text exposition (the agent's own
/// `/metrics`), parsed with scrapelet's parser.
pub fn metric_in_text(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    matching_samples(text, name, labels).into_iter().next()
}

/// The sum of every `name{labels...}` series in an exposition (0 when none matches).
pub fn metric_sum_in_text(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching_samples(text, name, labels).into_iter().sum()
}

/// The values of the `name` series that have all of `labels`, in exposition order.
fn matching_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    use scrapelet::exposition::{Entry, Format, Parser};
    let format = if text.trim_end().ends_with("# EOF") {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    };
    let mut values = Vec::new();
    for entry in Parser::new(text.as_bytes(), format) {
        let Ok(Entry::Sample(sample)) = entry else {
            continue;
        };
        if sample.name != name {
            continue;
        }
        let have: Vec<(String, String)> = sample
            .labels()
            .filter_map(Result::ok)
            .map(|(k, v)| (k.to_owned(), v.into_owned()))
            .collect();
        if labels
            .iter()
            .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
        {
            values.push(sample.value);
        }
    }
    values
}

/// Every sample of an OpenMetrics or text exposition, parsed with scrapelet's parser: name,
/// labels (without `__name__`), value. Lines that do not parse are skipped.
pub fn samples_in_text(
    text: &str,
) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    use scrapelet::exposition::{Entry, Format, Parser};
    let format = if text.trim_end().ends_with("# EOF") {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    };
    Parser::new(text.as_bytes(), format)
        .filter_map(|entry| match entry {
            Ok(Entry::Sample(sample)) => Some((
                sample.name.to_owned(),
                sample
                    .labels()
                    .filter_map(Result::ok)
                    .map(|(k, v)| (k.to_owned(), v.into_owned()))
                    .collect(),
                sample.value,
            )),
            _ => None,
        })
        .collect()
}

/// Like [`eventually`] for conditions that need to await (HTTP requests).
pub async fn eventually_async<F, Fut>(timeout: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
