//! Helpers shared by the integration tests. Each test binary uses a subset.
#![allow(dead_code)]

pub mod kube_api;
pub mod receiver;

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
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_line)
        .find(|line| {
            line.name == name
                && labels
                    .iter()
                    .all(|(k, v)| line.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|line| line.value)
}

/// Like [`metric`], 0 when absent.
pub fn metric_or_zero(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(registry, name, labels).unwrap_or(0.0)
}

/// One sample line of the text exposition.
#[derive(Debug, PartialEq)]
struct ExpositionLine {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses `name{a="1",b="2"} value`. Label values must not contain `"`.
fn parse_line(line: &str) -> Option<ExpositionLine> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let labels = labels
        .split("\",")
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once("=\"")?;
            Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
        })
        .collect();
    Some(ExpositionLine {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[test]
fn parses_exposition_lines() {
    let line = |name: &str, labels: &[(&str, &str)], value: f64| ExpositionLine {
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    };
    assert_eq!(
        parse_line(r#"a_total{endpoint="x",reason="queue_full"} 3"#),
        Some(line(
            "a_total",
            &[("endpoint", "x"), ("reason", "queue_full")],
            3.0
        ))
    );
    assert_eq!(parse_line("b 1.5"), Some(line("b", &[], 1.5)));
    assert_eq!(parse_line("# HELP b x"), None);
}
