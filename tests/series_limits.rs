//! Per-endpoint series limits through the real agent: a target whose metric gains a series
//! every scrape, one endpoint with `max_hourly_series` and one without, each a receiver served
//! by the test.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::agent::TestAgent;
use support::logs::Logs;
use support::receiver::{ReceivedSample, Receiver};
use support::target::Target;

const WAIT: Duration = Duration::from_secs(30);

/// Scrape `n` exposes `churn{id="1"}` .. `churn{id="n+2"}`: one new series per scrape. With
/// the 5 series every scrape adds (`up`, `scrape_*`), the first scrape has 8 series.
const FIRST_SCRAPE_SERIES: usize = 8;

/// A series of the one target as text: `churn{id="1"}`, `up` (job and instance left out).
fn series_of(s: &ReceivedSample) -> String {
    let labels: Vec<String> = s
        .labels
        .iter()
        .filter(|(name, _)| !["__name__", "job", "instance"].contains(&name.as_str()))
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    let name = s.name().unwrap_or("");
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

/// Timestamps received per series.
fn by_series(rx: &Receiver) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in rx.accepted() {
        out.entry(series_of(&s)).or_default().push(s.timestamp_ms);
    }
    out
}

/// `scrapelet_remote_samples_dropped_total{reason="max_hourly_series"}` of `endpoint`.
async fn dropped(agent: &TestAgent, endpoint: &str) -> f64 {
    let labels = [("endpoint", endpoint), ("reason", "max_hourly_series")];
    let value = agent
        .metric("scrapelet_remote_samples_dropped_total", &labels)
        .await;
    value.unwrap_or_else(|| panic!("no dropped counter for {endpoint}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_gets_at_most_its_series_limit_and_the_other_gets_everything() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .unwrap_or_else(|e| panic!("log subscriber: {e}"));

    let limited = Receiver::start().await;
    let unlimited = Receiver::start().await;
    let target = Target::start_with(|n| {
        (1..=n + 2)
            .map(|id| format!("churn{{id=\"{id}\"}} {n}\n"))
            .collect()
    })
    .await;
    let queue = "    queue_config:\n      batch_send_deadline: 50ms\n      min_backoff: 10ms\n      max_backoff: 50ms\n";
    let config = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
         remote_write:\n  - url: {limited}\n    name: limited\n    max_hourly_series: {FIRST_SCRAPE_SERIES}\n{queue}\
         \x20 - url: {unlimited}\n    name: unlimited\n{queue}\
         scrape_configs:\n  - job_name: churn\n    static_configs:\n      - targets: ['{target}']\n",
        limited = limited.url(),
        unlimited = unlimited.url(),
        target = target.address(),
    );
    let agent = TestAgent::start(&config).await;

    // The unlimited endpoint sees the series grow past the limit.
    let beyond = format!("churn{{id=\"{}\"}}", FIRST_SCRAPE_SERIES + 4);
    unlimited
        .wait_until(WAIT, "series well beyond the limit", |rx| {
            rx.accepted().iter().any(|s| series_of(s) == beyond)
        })
        .await;
    // The limited one keeps getting the first scrape's series, scrape after scrape.
    limited
        .wait_until(WAIT, "5 scrapes of the admitted series", |rx| {
            let seen = by_series(rx);
            seen.len() == FIRST_SCRAPE_SERIES && seen.values().all(|ts| ts.len() >= 5)
        })
        .await;

    let first = dropped(&agent, "limited").await;
    assert!(first >= 1.0, "dropped samples counted: {first}");
    support::eventually_async(WAIT, "more samples dropped", || async {
        dropped(&agent, "limited").await > first
    })
    .await;
    let gauge = |name: &'static str, endpoint: &'static str, window: &'static str| {
        let agent = &agent;
        async move {
            agent
                .metric(name, &[("endpoint", endpoint), ("window", window)])
                .await
        }
    };
    assert_eq!(
        gauge("scrapelet_remote_series_limit", "limited", "hourly").await,
        Some(FIRST_SCRAPE_SERIES as f64)
    );
    assert_eq!(
        gauge("scrapelet_remote_series_current", "limited", "hourly").await,
        Some(FIRST_SCRAPE_SERIES as f64)
    );
    assert_eq!(
        gauge("scrapelet_remote_series_limit", "limited", "daily").await,
        Some(0.0)
    );
    assert_eq!(
        gauge("scrapelet_remote_series_limit", "unlimited", "hourly").await,
        Some(0.0)
    );
    assert_eq!(dropped(&agent, "unlimited").await, 0.0);
    agent.agent.shutdown().await;

    // Shutdown sent everything: the limited endpoint got every sample of the first scrape's
    // series that the unlimited one got, and nothing else.
    let limited_series = by_series(&limited);
    let unlimited_series = by_series(&unlimited);
    assert_eq!(limited_series.len(), FIRST_SCRAPE_SERIES);
    let first_scrape: BTreeSet<String> = (1..=3)
        .map(|id| format!("churn{{id=\"{id}\"}}"))
        .chain(
            [
                "up",
                "scrape_duration_seconds",
                "scrape_samples_scraped",
                "scrape_samples_post_metric_relabeling",
                "scrape_series_added",
            ]
            .map(str::to_owned),
        )
        .collect();
    let admitted: BTreeSet<String> = limited_series.keys().cloned().collect();
    assert_eq!(admitted, first_scrape);
    for (series, timestamps) in &limited_series {
        assert_eq!(
            Some(timestamps),
            unlimited_series.get(series),
            "{series}: every scrape of an admitted series"
        );
    }
    assert!(
        unlimited_series.len() >= FIRST_SCRAPE_SERIES + 4,
        "{} series",
        unlimited_series.len()
    );

    // One warning for the endpoint and window (at most one a minute), with its fields.
    let warnings = logs.lines_with("series limit reached");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    for field in [
        "endpoint=limited",
        &format!("limit={FIRST_SCRAPE_SERIES}"),
        "window=\"hourly\"",
    ] {
        assert!(warnings[0].contains(field), "{field} in {}", warnings[0]);
    }
}
