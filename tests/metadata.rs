//! Metric metadata through the real agent: `# TYPE`/`# HELP`/`# UNIT` of scraped families reach
//! remote-write receivers every `metadata_config.send_interval`, in metadata-only requests,
//! deduplicated across targets, cut at `max_samples_per_send`, retried like samples, and not at
//! all with `send: false`; a target's metadata goes with its loop.

mod support;

use std::time::Duration;

use scrapelet::remote::prompb::{MetricMetadata, MetricType};
use support::agent::TestAgent;
use support::receiver::{Receiver, Reply};
use support::target::{Exposition, Target};

const WAIT: Duration = Duration::from_secs(20);

/// An OpenMetrics target with a counter, a gauge, a histogram and a summary, with units.
const OPENMETRICS: &str = r#"# TYPE http_requests counter
# HELP http_requests Requests served.
http_requests_total{code="200"} 10
# TYPE temperature_celsius gauge
# UNIT temperature_celsius celsius
# HELP temperature_celsius Room \"temperature\" in C.\nper room
temperature_celsius 21.5
# TYPE request_duration_seconds histogram
# UNIT request_duration_seconds seconds
# HELP request_duration_seconds Request latency.
request_duration_seconds_bucket{le="0.1"} 1
request_duration_seconds_bucket{le="+Inf"} 2
request_duration_seconds_sum 0.3
request_duration_seconds_count 2
# TYPE rpc_size_bytes summary
# UNIT rpc_size_bytes bytes
# HELP rpc_size_bytes RPC sizes.
rpc_size_bytes{quantile="0.5"} 100
rpc_size_bytes_sum 300
rpc_size_bytes_count 3
# EOF
"#;

/// A text-format target: one family as the OpenMetrics target has it (sent once), one with
/// other help (sent as its own entry).
const TEXT: &str = "# HELP http_requests Requests served.\n# TYPE http_requests counter\nhttp_requests{code=\"500\"} 1\n\
                    # HELP temperature_celsius Other help.\n# TYPE temperature_celsius gauge\ntemperature_celsius 19\n";

fn entry(family: &str, kind: MetricType, help: &str, unit: &str) -> MetricMetadata {
    MetricMetadata {
        r#type: kind as i32,
        metric_family_name: family.into(),
        help: help.into(),
        unit: unit.into(),
    }
}

/// What both targets expose, deduplicated, in the order sent (by family, type, help, unit).
fn both() -> Vec<MetricMetadata> {
    vec![
        entry("http_requests", MetricType::Counter, "Requests served.", ""),
        entry(
            "request_duration_seconds",
            MetricType::Histogram,
            "Request latency.",
            "seconds",
        ),
        entry("rpc_size_bytes", MetricType::Summary, "RPC sizes.", "bytes"),
        entry("temperature_celsius", MetricType::Gauge, "Other help.", ""),
        entry(
            "temperature_celsius",
            MetricType::Gauge,
            "Room \"temperature\" in C.\nper room",
            "celsius",
        ),
    ]
}

/// Scrapes `targets` (job name, address) every 100ms and writes to each endpoint (name, url,
/// extra YAML under the endpoint).
fn config(endpoints: &[(&str, &str, &str)], targets: &[(&str, &str)]) -> String {
    let mut yaml =
        "global:\n  scrape_interval: 100ms\n  scrape_timeout: 90ms\nremote_write:\n".to_owned();
    for (name, url, extra) in endpoints {
        yaml.push_str(&format!(
            "  - url: {url}\n    name: {name}\n    queue_config:\n      batch_send_deadline: 50ms\n      min_backoff: 10ms\n      max_backoff: 50ms\n{extra}"
        ));
    }
    yaml.push_str("scrape_configs:\n");
    for (job, addr) in targets {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
        ));
    }
    yaml
}

const EVERY_200MS: &str = "    metadata_config:\n      send_interval: 200ms\n";

/// Waits until a metadata-only request was accepted carrying exactly `expected`.
async fn wait_for_round(rx: &Receiver, expected: &[MetricMetadata]) {
    rx.wait_until(WAIT, "a metadata request with the expected entries", |r| {
        r.metadata_requests()
            .iter()
            .any(|q| q.accepted() && q.metadata() == expected)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reaches_the_receiver_deduplicated_and_follows_the_targets() {
    let rx = Receiver::start().await;
    let om = Target::start(Exposition::openmetrics(OPENMETRICS)).await;
    let text = Target::start(Exposition::text(TEXT)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scrapelet.yml");
    let extra = format!("{EVERY_200MS}    headers:\n      X-Scope-OrgID: tenant-1\n");
    let endpoints = [("rx", rx.url(), extra)];
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(n, u, e)| (*n, u.as_str(), e.as_str()))
        .collect();
    let (oa, ta) = (om.address(), text.address());
    let write = |yaml: String| {
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write config: {e}"));
    };
    write(config(&endpoints, &[("om", &oa), ("text", &ta)]));
    let agent = TestAgent::start_file(&path, Duration::ZERO).await;

    wait_for_round(&rx, &both()).await;
    let requests = rx.metadata_requests();
    for q in &requests {
        // Every entry ever sent is one of the targets' (a round may precede a first scrape).
        assert!(
            q.metadata().iter().all(|m| both().contains(m)),
            "{:?}",
            q.metadata()
        );
        assert_eq!(q.header("content-encoding"), Some("snappy"));
        assert_eq!(q.header("x-prometheus-remote-write-version"), Some("0.1.0"));
        assert_eq!(q.header("x-scope-orgid"), Some("tenant-1"));
    }
    let sent = agent
        .metric(
            "scrapelet_remote_metadata_sent_total",
            &[("endpoint", "rx")],
        )
        .await;
    assert!(sent.is_some_and(|n| n >= 5.0), "{sent:?}");
    let bytes = agent
        .metric(
            "scrapelet_remote_metadata_bytes_sent_total",
            &[("endpoint", "rx")],
        )
        .await;
    assert!(bytes.is_some_and(|n| n > 0.0), "{bytes:?}");
    // Samples flow as before.
    assert!(
        rx.accepted()
            .iter()
            .any(|s| s.name() == Some("temperature_celsius"))
    );

    // The text job goes: its loop ends and so does its metadata; the endpoint keeps running.
    write(config(&endpoints, &[("om", &oa)]));
    let (status, body) = agent.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let without_text: Vec<_> = both()
        .into_iter()
        .filter(|m| m.help != "Other help.")
        .collect();
    wait_for_round(&rx, &without_text).await;
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_false_sends_no_metadata() {
    let off = Receiver::start().await;
    let on = Receiver::start().await;
    let om = Target::start(Exposition::openmetrics(OPENMETRICS)).await;
    let (off_url, on_url) = (off.url(), on.url());
    let yaml = config(
        &[
            (
                "off",
                &off_url,
                "    metadata_config:\n      send: false\n      send_interval: 200ms\n",
            ),
            ("on", &on_url, EVERY_200MS),
        ],
        &[("om", &om.address())],
    );
    let agent = TestAgent::start(&yaml).await;
    // Two rounds at the other endpoint: the one without `send` had as many chances.
    on.wait_until(WAIT, "two metadata requests", |r| {
        r.metadata_requests().len() >= 2
    })
    .await;
    off.wait_for_accepted(1, WAIT).await;
    assert!(off.metadata_requests().is_empty());
    assert!(off.accepted_metadata().is_empty());
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_metadata_is_retried_refused_metadata_counted_and_samples_unaffected() {
    let rx = Receiver::start().await;
    rx.reply_next_metadata([
        Reply::status(503).with_body("overloaded"),
        Reply::status(503).with_body("overloaded"),
        Reply::status(400).with_body("metadata not accepted"),
    ]);
    let om = Target::start(Exposition::openmetrics(OPENMETRICS)).await;
    // A round long enough for two retries, so that the counts below are exact.
    let every_second = "    metadata_config:\n      send_interval: 1s\n";
    let yaml = config(&[("rx", &rx.url(), every_second)], &[("om", &om.address())]);
    let agent = TestAgent::start(&yaml).await;
    let four: Vec<_> = both()
        .into_iter()
        .filter(|m| m.help != "Other help.")
        .collect();
    wait_for_round(&rx, &four).await;

    let statuses: Vec<u16> = rx.metadata_requests().iter().map(|q| q.status).collect();
    assert_eq!(statuses[..3], [503, 503, 400], "{statuses:?}");
    let first = &rx.metadata_requests()[0];
    let n = first.metadata().len() as f64;
    let metric = |name: &'static str, labels: &'static [(&'static str, &'static str)]| {
        let agent = &agent;
        async move { agent.metric(name, labels).await.unwrap_or(0.0) }
    };
    // Each 503 retried the whole request once; the 400 dropped it (the round may have expired
    // first, then the 400 refused the next round's first request: as many entries either way).
    assert_eq!(
        metric(
            "scrapelet_remote_metadata_retried_total",
            &[("endpoint", "rx")]
        )
        .await,
        2.0 * n
    );
    let rejected = &[("endpoint", "rx"), ("reason", "rejected")];
    assert_eq!(
        metric("scrapelet_remote_metadata_failed_total", rejected).await,
        first_refused(&rx)
    );
    // Samples were never refused nor retried: metadata has its own script and counters.
    assert!(
        rx.requests()
            .iter()
            .filter(|q| !q.is_metadata_only())
            .all(|q| q.accepted())
    );
    assert_eq!(
        metric(
            "scrapelet_remote_samples_retried_total",
            &[("endpoint", "rx")]
        )
        .await,
        0.0
    );
    assert_eq!(
        metric("scrapelet_remote_samples_failed_total", rejected).await,
        0.0
    );
    agent.agent.shutdown().await;
}

/// How many entries the request answered 400 carried.
fn first_refused(rx: &Receiver) -> f64 {
    rx.metadata_requests()
        .iter()
        .find(|q| q.status == 400)
        .map_or(0.0, |q| q.metadata().len() as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_cut_into_requests_of_max_samples_per_send() {
    let rx = Receiver::start().await;
    let om = Target::start(Exposition::openmetrics(OPENMETRICS)).await;
    let text = Target::start(Exposition::text(TEXT)).await;
    let extra = "    metadata_config:\n      send_interval: 200ms\n      max_samples_per_send: 2\n";
    let yaml = config(
        &[("rx", &rx.url(), extra)],
        &[("om", &om.address()), ("text", &text.address())],
    );
    let agent = TestAgent::start(&yaml).await;
    // A whole round: three consecutive requests of 2, 2 and 1 entries, in order.
    let expected = both();
    rx.wait_until(WAIT, "a round of three requests", |r| {
        let requests = r.metadata_requests();
        requests.windows(3).any(|w| {
            let sizes: Vec<_> = w.iter().map(|q| q.metadata().len()).collect();
            let all: Vec<_> = w.iter().flat_map(|q| q.metadata().to_vec()).collect();
            sizes == [2, 2, 1] && all == expected
        })
    })
    .await;
    assert!(
        rx.metadata_requests()
            .iter()
            .all(|q| q.metadata().len() <= 2)
    );
    agent.agent.shutdown().await;
}
