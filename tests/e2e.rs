//! End to end: the built `scrapelet` binary against real software from Debian packages —
//! Prometheus 2.42 as a remote-write receiver, VictoriaMetrics as a second receiver,
//! prometheus-node-exporter as a real target — plus targets served by the test. Every server
//! listens on 127.0.0.1 with a temporary directory; children die with the test (support::procs).
//!
//! `cargo test --features e2e --test e2e -- --test-threads 2` (.ci/run installs the packages).

#![cfg(feature = "e2e")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use support::procs::{LabelMap, NodeExporter, Prometheus, Scrapelet, VictoriaMetrics, now_secs};
use support::receiver::{Receiver, Reply};
use support::target::{Exposition, Target};

/// The longest any single wait may take before a test fails.
const WAIT: Duration = Duration::from_secs(40);

/// The series every scrape adds besides what the target served.
const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Label values that are hard to carry through the text format, protobuf and storage.
const TRICKY: [(&str, &str); 10] = [
    ("comma", "a,b,c"),
    ("equals", "x=y==z"),
    ("braces", "}{}"),
    ("quotes", "say \"hi\""),
    ("backslash", "C:\\dir\\"),
    ("newline", "line1\nline2"),
    ("unicode", "ünï©ødé ✓ 日本 🚀"),
    ("all", "a=\"1\",b=\\2\\\n}{"),
    ("spaces", "  lead and trail  "),
    ("hash", "# not a comment"),
];

/// Special and extreme values, by the `v` label.
const VALUES: [(&str, &str, f64); 8] = [
    ("max", "1.7976931348623157e+308", f64::MAX),
    ("min", "5e-324", 5e-324),
    ("negative", "-0.5", -0.5),
    ("inf", "+Inf", f64::INFINITY),
    ("ninf", "-Inf", f64::NEG_INFINITY),
    ("nan", "NaN", f64::NAN),
    ("zero", "0", 0.0),
    ("big", "123456789012345678", 123_456_789_012_345_678.0),
];

/// A scrapelet config: global settings, `remote_write` entries and scrape jobs as YAML.
fn config(remote_write: &[(&str, String)], jobs: &[(&str, String)]) -> String {
    config_with_queue(remote_write, jobs, "")
}

/// Like [`config`], with `queue` lines added to every `queue_config` (indented six spaces).
fn config_with_queue(
    remote_write: &[(&str, String)],
    jobs: &[(&str, String)],
    queue: &str,
) -> String {
    let mut yaml = String::from(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\n  external_labels:\n    cluster: e2e\n",
    );
    if !remote_write.is_empty() {
        yaml.push_str("remote_write:\n");
        for (name, url) in remote_write {
            yaml.push_str(&format!(
                "  - url: {url}\n    name: {name}\n    remote_timeout: 5s\n    queue_config:\n      \
                 batch_send_deadline: 100ms\n      min_backoff: 50ms\n      max_backoff: 500ms\n{queue}"
            ));
        }
    }
    yaml.push_str("scrape_configs:\n");
    for (job, address) in jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{address}']\n"
        ));
    }
    yaml
}

/// Escapes a label value for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_map(pairs: &[(&str, &str)]) -> LabelMap {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The app target's body and the series it serves (labels without target labels, value).
fn app_exposition() -> (String, Vec<(LabelMap, f64)>) {
    let mut body = String::from(
        "# HELP e2e_tricky_info Label values that are hard to carry.\n# TYPE e2e_tricky_info gauge\n",
    );
    let mut series = Vec::new();
    for (i, (kind, value)) in TRICKY.iter().enumerate() {
        body.push_str(&format!(
            "e2e_tricky_info{{kind=\"{kind}\",value=\"{}\"}} {i}\n",
            escape(value)
        ));
        series.push((
            label_map(&[
                ("__name__", "e2e_tricky_info"),
                ("kind", kind),
                ("value", value),
            ]),
            i as f64,
        ));
    }
    body.push_str("# TYPE e2e_values gauge\n");
    for (v, text, value) in VALUES {
        body.push_str(&format!("e2e_values{{v=\"{v}\"}} {text}\n"));
        series.push((label_map(&[("__name__", "e2e_values"), ("v", v)]), value));
    }
    body.push_str(concat!(
        "# HELP e2e:requests:rate5m A recording-rule style name.\n",
        "# TYPE e2e:requests:rate5m gauge\n",
        "e2e:requests:rate5m{path=\"/api/v1/x\"} 0.25\n",
        "# HELP e2e_latency_seconds A histogram.\n",
        "# TYPE e2e_latency_seconds histogram\n",
        "e2e_latency_seconds_bucket{le=\"0.1\"} 3\n",
        "e2e_latency_seconds_bucket{le=\"1\"} 7\n",
        "e2e_latency_seconds_bucket{le=\"+Inf\"} 9\n",
        "e2e_latency_seconds_sum 4.25\n",
        "e2e_latency_seconds_count 9\n",
        "# HELP e2e_rpc_seconds A summary.\n",
        "# TYPE e2e_rpc_seconds summary\n",
        "e2e_rpc_seconds{quantile=\"0.5\"} 0.05\n",
        "e2e_rpc_seconds{quantile=\"0.99\"} 0.5\n",
        "e2e_rpc_seconds_sum 12.5\n",
        "e2e_rpc_seconds_count 100\n",
    ));
    for (labels, value) in [
        (
            &[("__name__", "e2e:requests:rate5m"), ("path", "/api/v1/x")][..],
            0.25,
        ),
        (
            &[("__name__", "e2e_latency_seconds_bucket"), ("le", "0.1")],
            3.0,
        ),
        (
            &[("__name__", "e2e_latency_seconds_bucket"), ("le", "1")],
            7.0,
        ),
        (
            &[("__name__", "e2e_latency_seconds_bucket"), ("le", "+Inf")],
            9.0,
        ),
        (&[("__name__", "e2e_latency_seconds_sum")], 4.25),
        (&[("__name__", "e2e_latency_seconds_count")], 9.0),
        (
            &[("__name__", "e2e_rpc_seconds"), ("quantile", "0.5")],
            0.05,
        ),
        (
            &[("__name__", "e2e_rpc_seconds"), ("quantile", "0.99")],
            0.5,
        ),
        (&[("__name__", "e2e_rpc_seconds_sum")], 12.5),
        (&[("__name__", "e2e_rpc_seconds_count")], 100.0),
    ] {
        series.push((label_map(labels), value));
    }
    (body, series)
}

/// The OpenMetrics target's body and the series it serves: the exemplar is not a series,
/// `_created` is one (as Prometheus 2.x stores it), info and stateset are gauges.
fn openmetrics_exposition() -> (&'static str, Vec<(LabelMap, f64)>) {
    let body = concat!(
        "# TYPE e2e_om_requests counter\n",
        "# HELP e2e_om_requests Requests, with an exemplar.\n",
        "e2e_om_requests_total{path=\"/a\"} 5 # {trace_id=\"abc\"} 1.0\n",
        "e2e_om_requests_created{path=\"/a\"} 1700000000.5\n",
        "# TYPE e2e_om_build info\n",
        "e2e_om_build_info{version=\"1.2.3\"} 1\n",
        "# TYPE e2e_om_state stateset\n",
        "e2e_om_state{e2e_om_state=\"on\"} 1\n",
        "e2e_om_state{e2e_om_state=\"off\"} 0\n",
        "# EOF\n",
    );
    let series = [
        (
            &[("__name__", "e2e_om_requests_total"), ("path", "/a")][..],
            5.0,
        ),
        (
            &[("__name__", "e2e_om_requests_created"), ("path", "/a")],
            1_700_000_000.5,
        ),
        (
            &[("__name__", "e2e_om_build_info"), ("version", "1.2.3")],
            1.0,
        ),
        (&[("__name__", "e2e_om_state"), ("e2e_om_state", "on")], 1.0),
        (
            &[("__name__", "e2e_om_state"), ("e2e_om_state", "off")],
            0.0,
        ),
    ]
    .into_iter()
    .map(|(l, v)| (label_map(l), v))
    .collect();
    (body, series)
}

/// `labels` with the target labels and the external label added.
fn with_target(labels: &LabelMap, job: &str, instance: &str) -> LabelMap {
    let mut out = labels.clone();
    out.insert("job".into(), job.into());
    out.insert("instance".into(), instance.into());
    out.insert("cluster".into(), "e2e".into());
    out
}

/// The synthetic series of one target.
fn synthetic(job: &str, instance: &str) -> Vec<LabelMap> {
    SYNTHETIC
        .iter()
        .map(|name| with_target(&label_map(&[("__name__", name)]), job, instance))
        .collect()
}

fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Polls `check` (an async condition) until it holds; panics with `what` after `timeout`.
async fn until<F, Fut>(timeout: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    support::eventually_async(timeout, what, check).await;
}

/// A deadline for a poll loop that keeps what it saw: `tick` waits a little, or panics with
/// `what` and the last observation once the deadline has passed.
struct Deadline {
    at: tokio::time::Instant,
    timeout: Duration,
    what: &'static str,
}

impl Deadline {
    fn new(timeout: Duration, what: &'static str) -> Self {
        Deadline {
            at: tokio::time::Instant::now() + timeout,
            timeout,
            what,
        }
    }

    async fn tick(&self, seen: impl std::fmt::Debug) {
        assert!(
            tokio::time::Instant::now() < self.at,
            "timed out after {:?} waiting for {}; last seen: {seen:#?}",
            self.timeout,
            self.what
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sums scrapelet's `name` series whose labels include `endpoint`.
async fn scrapelet_sum(scrapelet: &Scrapelet, name: &str, endpoint: &str) -> f64 {
    let url = format!("http://{}/metrics", scrapelet.listen);
    let (_, text) = support::procs::try_get(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    support::samples_in_text(&text)
        .into_iter()
        .filter(|(n, l, _)| n == name && l.get("endpoint").map(String::as_str) == Some(endpoint))
        .map(|(_, _, v)| v)
        .sum()
}

/// Stops scrapelet with SIGTERM; it must exit 0 and say so.
async fn terminate(mut scrapelet: Scrapelet) {
    scrapelet.proc.signal("TERM");
    let status = scrapelet.proc.wait_exit(WAIT).await;
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        scrapelet.proc.log_tail()
    );
    assert!(scrapelet.proc.log().contains("msg=\"scrapelet stopped\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_exactly_what_the_test_targets_served() {
    let start = now_secs();
    let prometheus = Prometheus::start().await;
    let (body, app_served) = app_exposition();
    let app = Target::start(Exposition::text(&body)).await;
    let (om_body, om_served) = openmetrics_exposition();
    let om = Target::start(Exposition::openmetrics(om_body)).await;
    let ticks =
        Target::start_with(|n| format!("# TYPE e2e_ticks counter\ne2e_ticks_total {}\n", n - 1))
            .await;
    let scrapelet = Scrapelet::start(
        &config(
            &[("prom", prometheus.write_url())],
            &[
                ("app", app.address()),
                ("om", om.address()),
                ("ticks", ticks.address()),
            ],
        ),
        &[],
    )
    .await;
    let app_addr = app.address();
    let mut served: Vec<(LabelMap, f64)> = app_served
        .iter()
        .map(|(l, v)| (with_target(l, "app", &app_addr), *v))
        .collect();
    served.extend(
        om_served
            .iter()
            .map(|(l, v)| (with_target(l, "om", &om.address()), *v)),
    );
    let mut expected: BTreeSet<LabelMap> = served.iter().map(|(l, _)| l.clone()).collect();
    expected.extend(synthetic("app", &app_addr));
    expected.extend(synthetic("om", &om.address()));

    // Exactly the served label sets, plus target and external labels.
    let deadline = Deadline::new(WAIT, "every app and om series in prometheus");
    let stored: BTreeSet<LabelMap> = loop {
        let stored: BTreeSet<LabelMap> = prometheus
            .series("{job=~\"app|om\"}")
            .await
            .into_iter()
            .collect();
        if stored.len() >= expected.len() {
            break stored;
        }
        deadline.tick(stored).await;
    };
    assert_eq!(
        stored,
        expected,
        "missing: {:#?}\nunexpected: {:#?}",
        expected.difference(&stored).collect::<Vec<_>>(),
        stored.difference(&expected).collect::<Vec<_>>()
    );

    // Exactly the served values.
    let now: BTreeMap<LabelMap, f64> = prometheus
        .query("{job=~\"app|om\"}")
        .await
        .into_iter()
        .collect();
    for (key, value) in &served {
        let got = now.get(key).copied();
        assert!(
            got.is_some_and(|g| same_value(g, *value)),
            "{key:?}: served {value}, stored {got:?}"
        );
    }
    let up = prometheus.query("up{job=\"app\"}").await;
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0);
    let q = prometheus
        .query("histogram_quantile(0.5, e2e_latency_seconds_bucket{job=\"app\"})")
        .await;
    assert!((q[0].1 - 0.4375).abs() < 1e-9, "median {q:?}");

    // Raw samples of a counter: every scrape's value, none missing or repeated.
    let deadline = Deadline::new(WAIT, "5 tick samples");
    let samples = loop {
        let got = prometheus
            .query_samples("e2e_ticks_total{job=\"ticks\"}[10m]")
            .await;
        let samples = got.into_iter().next().map(|(_, s)| s).unwrap_or_default();
        if samples.len() >= 5 {
            break samples;
        }
        deadline.tick(samples).await;
    };
    let values: Vec<f64> = samples.iter().map(|(_, v)| *v).collect();
    let first = values[0];
    let contiguous: Vec<f64> = (0..values.len()).map(|i| first + i as f64).collect();
    assert_eq!(values, contiguous, "every scrape stored once, in order");
    assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        samples[0].0 as f64 / 1000.0 >= start - 1.0,
        "scrape timestamps are now"
    );

    // A range query: up was 1 at every step since the first scrape.
    let first_ts = samples[0].0 as f64 / 1000.0;
    let range = prometheus
        .query_range("up{job=\"ticks\"}", first_ts, now_secs(), 0.5)
        .await;
    assert_eq!(range.len(), 1, "{range:?}");
    assert!(range[0].1.len() >= 3 && range[0].1.iter().all(|(_, v)| *v == 1.0));

    // Staleness: a series no longer served, and a target gone away, vanish from instant
    // queries at once (not after the 5-minute lookback), though their data stays.
    let comma_less: String = body
        .lines()
        .filter(|l| !l.contains("kind=\"comma\""))
        .map(|l| format!("{l}\n"))
        .collect();
    app.set_body(&comma_less);
    ticks.stop();
    until(WAIT, "the dropped series and the gone target stale", || {
        let p = &prometheus;
        async move {
            p.query("e2e_tricky_info{kind=\"comma\"}").await.is_empty()
                && p.query("e2e_ticks_total").await.is_empty()
        }
    })
    .await;
    let kept = prometheus
        .query("count_over_time(e2e_tricky_info{kind=\"comma\"}[10m])")
        .await;
    assert!(kept.first().is_some_and(|(_, n)| *n >= 1.0), "{kept:?}");
    let kept = prometheus
        .query("count_over_time(e2e_ticks_total[10m])")
        .await;
    assert!(kept.first().is_some_and(|(_, n)| *n >= 5.0), "{kept:?}");
    assert_eq!(
        prometheus
            .query("e2e_tricky_info{kind=\"unicode\"}")
            .await
            .len(),
        1,
        "the other series stay"
    );
    until(WAIT, "up 0 for the gone target", || {
        let p = &prometheus;
        async move { p.query("up{job=\"ticks\"} == 0").await.len() == 1 }
    })
    .await;

    prometheus.assert_clean().await;
    for metric in [
        "scrapelet_remote_samples_failed_total",
        "scrapelet_remote_samples_dropped_total",
    ] {
        assert_eq!(
            scrapelet_sum(&scrapelet, metric, "prom").await,
            0.0,
            "{metric}"
        );
    }
    terminate(scrapelet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exporter_series_reach_prometheus_as_scraped() {
    let prometheus = Prometheus::start().await;
    let node = NodeExporter::start().await;
    let scrapelet = Scrapelet::start(
        &config(
            &[("prom", prometheus.write_url())],
            &[("node", node.address())],
        ),
        &[],
    )
    .await;
    let instance = node.address();

    // The series Prometheus holds for the job equal those of a direct scrape (polled: a
    // series can come or go between the two).
    let deadline = Deadline::new(
        WAIT,
        "prometheus to hold the node series of a direct scrape",
    );
    let direct_count = loop {
        let direct: BTreeSet<LabelMap> = support::samples_in_text(&node.scrape().await)
            .into_iter()
            .map(|(name, mut labels, _)| {
                labels.insert("__name__".into(), name);
                with_target(&labels, "node", &instance)
            })
            .collect();
        let stored: BTreeSet<LabelMap> = prometheus
            .query("{job=\"node\"}")
            .await
            .into_iter()
            .map(|(l, _)| l)
            .filter(|l| !SYNTHETIC.contains(&l["__name__"].as_str()))
            .collect();
        if !direct.is_empty() && direct == stored {
            break direct.len();
        }
        deadline
            .tick((
                (
                    "only scraped",
                    direct.difference(&stored).collect::<Vec<_>>(),
                ),
                (
                    "only stored",
                    stored.difference(&direct).collect::<Vec<_>>(),
                ),
            ))
            .await;
    };
    assert!(direct_count > 50, "{direct_count} series");

    let build = prometheus.query("node_exporter_build_info").await;
    assert_eq!(build.len(), 1, "{build:?}");
    assert_eq!(build[0].1, 1.0);
    assert_eq!(build[0].0["job"], "node");
    assert_eq!(build[0].0["instance"], instance);
    assert_eq!(build[0].0["cluster"], "e2e");
    assert!(build[0].0.contains_key("version"));
    let time = prometheus
        .query_samples("node_time_seconds{job=\"node\"}[1m]")
        .await;
    let (ts, value) = *time[0].1.last().unwrap_or_else(|| panic!("{time:?}"));
    assert!(
        (value - ts as f64 / 1000.0).abs() < 60.0,
        "node_time_seconds {value} at {ts} ms"
    );
    let up = prometheus.query("up{job=\"node\"}").await;
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0);
    let scraped = prometheus
        .query("scrape_samples_scraped{job=\"node\"}")
        .await;
    assert!(
        scraped[0].1 >= direct_count as f64 * 0.9 && scraped[0].1 <= direct_count as f64 * 1.1,
        "scrape_samples_scraped {} vs {direct_count} in a direct scrape",
        scraped[0].1
    );

    prometheus.assert_clean().await;
    terminate(scrapelet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_series_over_several_shards_reach_prometheus_in_order() {
    const SERIES: usize = 10_000;
    let prometheus = Prometheus::start().await;
    let big = Target::start_with(|n| {
        let mut body = String::with_capacity(SERIES * 24);
        for i in 0..SERIES {
            body.push_str(&format!("e2e_big{{i=\"{i}\"}} {n}\n"));
        }
        body
    })
    .await;
    let scrapelet = Scrapelet::start(
        &config_with_queue(
            &[("prom", prometheus.write_url())],
            &[("big", big.address())],
            "      min_shards: 4\n      max_shards: 8\n      max_samples_per_send: 500\n",
        ),
        &[],
    )
    .await;
    until(WAIT, "5 samples of every series in prometheus", || async {
        prometheus
            .query("count(count_over_time(e2e_big[10m]) >= 5)")
            .await
            .first()
            .is_some_and(|(_, n)| *n == SERIES as f64)
    })
    .await;
    for i in [0, 1234, SERIES - 1] {
        let got = prometheus
            .query_samples(&format!("e2e_big{{i=\"{i}\"}}[10m]"))
            .await;
        let samples = &got[0].1;
        assert!(
            samples
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
            "series {i}: {samples:?}"
        );
    }
    prometheus.assert_clean().await;
    for metric in [
        "scrapelet_remote_samples_failed_total",
        "scrapelet_remote_samples_dropped_total",
    ] {
        assert_eq!(
            scrapelet_sum(&scrapelet, metric, "prom").await,
            0.0,
            "{metric}"
        );
    }
    terminate(scrapelet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_victoria_metrics_outage_holds_back_neither_prometheus_nor_its_catch_up() {
    let prometheus = Prometheus::start().await;
    let mut vm = VictoriaMetrics::start().await;
    let ticks = Target::start_with(|n| {
        let mut body = format!("# TYPE e2e_ticks counter\ne2e_ticks_total {}\n", n - 1);
        for i in 0..50 {
            body.push_str(&format!("e2e_load{{i=\"{i}\"}} {n}\n"));
        }
        body
    })
    .await;
    let scrapelet = Scrapelet::start(
        &config(
            &[("prom", prometheus.write_url()), ("vm", vm.write_url())],
            &[("ticks", ticks.address())],
        ),
        &[],
    )
    .await;
    let prom_ticks = || async {
        prometheus
            .query_samples("e2e_ticks_total{job=\"ticks\"}[10m]")
            .await
            .into_iter()
            .next()
            .map(|(_, s)| s)
            .unwrap_or_default()
    };
    until(WAIT, "ticks in both receivers", || async {
        !prom_ticks().await.is_empty() && !vm.export("e2e_ticks_total").await.is_empty()
    })
    .await;

    // VictoriaMetrics goes away; Prometheus keeps receiving every scrape.
    vm.kill();
    let killed_ms = (now_secs() * 1000.0) as i64;
    until(
        WAIT,
        "prometheus to receive 3s of scrapes after the kill",
        || async {
            prom_ticks()
                .await
                .last()
                .is_some_and(|(ts, _)| *ts > killed_ms + 3000)
        },
    )
    .await;
    until(WAIT, "scrapelet to retry vm", || async {
        scrapelet_sum(&scrapelet, "scrapelet_remote_samples_retried_total", "vm").await > 0.0
    })
    .await;

    // Back on the same port and data directory, it catches up: every tick Prometheus stored
    // from the kill up to the restart arrives, with the same value. (What VictoriaMetrics had
    // acknowledged before the kill may be lost with its in-memory buffers: not compared.)
    let restarted_ms = (now_secs() * 1000.0) as i64;
    vm.restart().await;
    let reference: Vec<(i64, f64)> = prom_ticks()
        .await
        .into_iter()
        .filter(|(ts, _)| *ts > killed_ms)
        .collect();
    assert!(reference.iter().any(|(ts, _)| *ts > killed_ms + 3000));
    let deadline = Deadline::new(WAIT, "vm to catch up on the outage");
    loop {
        let got: BTreeMap<i64, f64> = vm
            .export("e2e_ticks_total")
            .await
            .into_iter()
            .flat_map(|e| e.timestamps_ms.into_iter().zip(e.values))
            .collect();
        let missing: Vec<(i64, f64)> = reference
            .iter()
            .filter(|(ts, v)| got.get(ts) != Some(v))
            .copied()
            .collect();
        if missing.is_empty() {
            break;
        }
        deadline.tick(missing).await;
    }
    let load = vm.export("e2e_load{i=\"7\"}").await;
    assert_eq!(load.len(), 1);
    assert!(
        load[0].timestamps_ms.windows(2).all(|w| w[0] < w[1]),
        "one sample per scrape, in order"
    );
    assert!(
        load[0]
            .timestamps_ms
            .iter()
            .any(|ts| (killed_ms..restarted_ms).contains(ts)),
        "samples from the outage window arrived"
    );
    assert_eq!(
        scrapelet_sum(&scrapelet, "scrapelet_remote_samples_dropped_total", "vm").await,
        0.0,
        "the queue held the outage"
    );
    prometheus.assert_clean().await;
    terminate(scrapelet).await;
}

/// Real receivers take metadata-only requests (Prometheus 2.42 keeps none of it, both answer
/// 2xx): metadata is counted sent and never failed, and samples flow beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_victoria_metrics_accept_metadata_only_requests() {
    let prometheus = Prometheus::start().await;
    let vm = VictoriaMetrics::start().await;
    let target = Target::start(Exposition::text(
        "# HELP e2e_meta_total Requests.\n# TYPE e2e_meta_total counter\ne2e_meta_total 1\n",
    ))
    .await;
    let metadata = "    metadata_config:\n      send_interval: 300ms\n";
    let scrapelet = Scrapelet::start(
        &config_with_queue(
            &[("prom", prometheus.write_url()), ("vm", vm.write_url())],
            &[("meta", target.address())],
            metadata,
        ),
        &[],
    )
    .await;
    for endpoint in ["prom", "vm"] {
        until(WAIT, "metadata accepted", || async {
            scrapelet_sum(&scrapelet, "scrapelet_remote_metadata_sent_total", endpoint).await >= 2.0
        })
        .await;
        let failed = scrapelet_sum(
            &scrapelet,
            "scrapelet_remote_metadata_failed_total",
            endpoint,
        )
        .await;
        assert_eq!(failed, 0.0, "{endpoint}");
    }
    until(WAIT, "samples in prometheus", || async {
        !prometheus
            .query_samples("e2e_meta_total{job=\"meta\"}[10m]")
            .await
            .is_empty()
    })
    .await;
    prometheus.assert_clean().await;
    terminate(scrapelet).await;
}

#[test]
fn check_config_accepts_a_good_file_and_names_file_line_and_key_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        config(
            &[("prom", "http://127.0.0.1:9/api/v1/write".into())],
            &[("app", "127.0.0.1:9100".into())],
        ),
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    let out = Command::new(Scrapelet::binary())
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scrapelet: {e}"));
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("valid"),
        "{out:?}"
    );

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: app\n    scrape_timeout: soon\n    static_configs:\n      - targets: ['127.0.0.1:9100']\n",
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    let out = Command::new(Scrapelet::binary())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scrapelet: {e}"));
    assert!(!out.status.success(), "{out:?}");
    let message = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:5: scrape_configs[0].scrape_timeout", bad.display());
    assert!(message.contains(&expected), "{message}");
    assert!(message.contains("soon"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_remote_write_the_debug_output_summarises_what_would_be_sent() {
    let app = Target::start(Exposition::text("e2e_debug_metric{a=\"1\"} 7\n")).await;
    let mut scrapelet = Scrapelet::start(&config(&[], &[("app", app.address())]), &[]).await;
    let line = scrapelet
        .proc
        .wait_log_line(WAIT, "a debug output line", |l| {
            l.contains("msg=\"debug output: what remote write would send\"")
        })
        .await;
    let field = |name: &str| -> u64 {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    assert!(field("samples") >= 6, "{line}");
    assert_eq!(
        field("live_series"),
        6,
        "one served series and 5 synthetic: {line}"
    );
    assert!(
        line.contains("__name__=\\\"e2e_debug_metric\\\"") && line.contains("a=\\\"1\\\""),
        "the served series is an example: {line}"
    );
    assert!(
        line.contains("cluster=\\\"e2e\\\""),
        "external labels shown: {line}"
    );
    terminate(scrapelet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_within_the_grace_period_even_with_a_hung_endpoint() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::ok().with_delay(Duration::from_secs(300)));
    let app = Target::start(Exposition::text("e2e_metric 1\n")).await;
    let mut scrapelet = Scrapelet::start(
        &config(&[("hung", rx.url())], &[("app", app.address())]),
        &["--shutdown-grace", "2s"],
    )
    .await;
    rx.wait_for_requests(1, WAIT).await;
    scrapelet.proc.signal("TERM");
    let status = scrapelet.proc.wait_exit(Duration::from_secs(20)).await;
    let log = scrapelet.proc.log();
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(log.contains("msg=\"scrapelet stopped\""), "{log}");
    assert!(log.contains("signal=SIGTERM"), "{log}");
    assert!(
        log.contains("remote write stopped at the end of the shutdown grace period; what was not sent stays in the buffer"),
        "the grace period ended the hung send: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_without_finishing_shutdown() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::ok().with_delay(Duration::from_secs(300)));
    let app = Target::start(Exposition::text("e2e_metric 1\n")).await;
    let mut scrapelet = Scrapelet::start(
        &config(&[("hung", rx.url())], &[("app", app.address())]),
        &["--shutdown-grace", "300s"],
    )
    .await;
    rx.wait_for_requests(1, WAIT).await;
    scrapelet.proc.signal("TERM");
    scrapelet
        .proc
        .wait_log_line(WAIT, "that it is shutting down", |l| {
            l.contains("msg=\"shutting down; a second signal exits at once\"")
        })
        .await;
    scrapelet.proc.signal("INT");
    let status = scrapelet.proc.wait_exit(WAIT).await;
    let log = scrapelet.proc.log();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("signal=SIGINT"), "{log}");
    assert!(!log.contains("msg=\"scrapelet stopped\""), "{log}");
}
