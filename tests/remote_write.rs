//! Remote write over real HTTP against the scriptable receiver of tests/support.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use prometheus_client::registry::Registry;
use scrapelet::append::{Batch, STALE_NAN_BITS, Sample, SeriesRef, stale_nan};
use scrapelet::config::{Config, GlobalConfig, QueueConfig, RemoteWriteConfig};
use scrapelet::labels::Labels;
use scrapelet::relabel::{Action, Regex, RelabelConfig};
use scrapelet::remote::{
    HttpWriteClient, QueueTuning, RemoteMetrics, RemoteWrite, USER_AGENT_VALUE,
};
use support::receiver::{ReceivedSample, Receiver, Reply};
use support::{eventually, metric_or_zero};

/// How long any wait may take before the test fails (generous: CI machines are slow).
const WAIT: Duration = Duration::from_secs(30);

fn endpoint(name: &str, url: &str) -> RemoteWriteConfig {
    RemoteWriteConfig {
        url: url.to_owned(),
        name: name.to_owned(),
        remote_timeout: Duration::from_secs(10),
        queue_config: QueueConfig {
            batch_send_deadline: Duration::from_millis(50),
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    }
}

struct Agent {
    remote: RemoteWrite,
    registry: Registry,
}

impl Agent {
    fn start(endpoints: Vec<RemoteWriteConfig>, external_labels: Labels) -> Self {
        Self::start_tuned(endpoints, external_labels, QueueTuning::default())
    }

    fn start_tuned(
        endpoints: Vec<RemoteWriteConfig>,
        external_labels: Labels,
        tuning: QueueTuning,
    ) -> Self {
        let config = Config {
            global: GlobalConfig {
                external_labels,
                ..Default::default()
            },
            remote_write: endpoints,
            ..Default::default()
        };
        let mut registry = Registry::default();
        let metrics = RemoteMetrics::register(&mut registry);
        let remote =
            RemoteWrite::start_with(&config, false, &metrics, tuning, HttpWriteClient::new)
                .unwrap_or_else(|e| panic!("cannot start remote write: {e}"));
        Agent { remote, registry }
    }

    fn append(&self, batch: Batch) {
        self.remote.appender().append(batch);
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_or_zero(&self.registry, name, labels)
    }
}

fn labels(name: &str, id: u64) -> Labels {
    Labels::from_pairs([("__name__", name.to_owned()), ("id", id.to_string())])
}

/// One scrape of series `refs` at `ts` (value = ts), defining them when `define`.
fn scrape(name: &str, refs: std::ops::RangeInclusive<u64>, ts: i64, define: bool) -> Batch {
    Batch {
        series: if define {
            refs.clone()
                .map(|r| (SeriesRef(r), labels(name, r)))
                .collect()
        } else {
            vec![]
        },
        samples: refs
            .map(|r| Sample {
                series: SeriesRef(r),
                timestamp_ms: ts,
                value: ts as f64,
            })
            .collect(),
        gone: vec![],
    }
}

/// Timestamps per `id` label, in arrival order.
fn timestamps_by_id(samples: &[ReceivedSample]) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in samples {
        out.entry(s.label("id").unwrap_or_default().to_owned())
            .or_default()
            .push(s.timestamp_ms);
    }
    out
}

/// Every series got exactly `expected` timestamps, in that order.
fn assert_each_series_got(samples: &[ReceivedSample], series: usize, expected: &[i64]) {
    let by_id = timestamps_by_id(samples);
    assert_eq!(by_id.len(), series, "series received");
    for (id, got) in by_id {
        assert_eq!(got, expected, "timestamps of series id={id}");
    }
}

#[tokio::test]
async fn sends_exactly_the_required_headers() {
    let rx = Receiver::start().await;
    let mut ep = endpoint("primary", &rx.url());
    ep.headers.insert("X-Scope-OrgID".into(), "tenant-1".into());
    ep.headers
        .insert("User-Agent".into(), "not-scrapelet".into());
    let agent = Agent::start(vec![ep], Labels::empty());
    agent.append(scrape("up", 1..=1, 1_000, true));
    let reqs = rx.wait_for_requests(1, WAIT).await;
    let r = &reqs[0];
    assert_eq!(r.method, http::Method::POST);
    assert_eq!(r.path, "/api/v1/write");
    assert_eq!(r.header("content-encoding"), Some("snappy"));
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
    assert_eq!(r.header("user-agent"), Some(USER_AGENT_VALUE));
    assert_eq!(
        USER_AGENT_VALUE,
        concat!("scrapelet/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(r.header("x-scope-orgid"), Some("tenant-1"));
    assert_eq!(r.headers.get_all("user-agent").iter().count(), 1);
    assert!(r.write.is_ok(), "{:?}", r.write);
}

#[tokio::test]
async fn labels_are_sorted_named_and_carry_external_labels() {
    let rx = Receiver::start().await;
    let external = Labels::from_pairs([("cluster", "c1"), ("job", "external"), ("a_first", "x")]);
    let agent = Agent::start(vec![endpoint("primary", &rx.url())], external);
    agent.append(Batch {
        series: vec![
            (
                SeriesRef(1),
                Labels::from_pairs([("__name__", "up"), ("job", "node"), ("zone", "z1")]),
            ),
            (
                SeriesRef(2),
                Labels::from_pairs([("__name__", "x"), ("empty", ""), ("job", "api")]),
            ),
        ],
        samples: vec![
            Sample {
                series: SeriesRef(1),
                timestamp_ms: 5,
                value: 1.0,
            },
            Sample {
                series: SeriesRef(2),
                timestamp_ms: 5,
                value: 2.0,
            },
        ],
        gone: vec![],
    });
    let samples = rx.wait_for_accepted(2, WAIT).await;
    for s in &samples {
        let names: Vec<_> = s.labels.iter().map(|(n, _)| n.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "names sorted and unique");
        assert!(s.labels.iter().all(|(n, v)| !n.is_empty() && !v.is_empty()));
        assert!(s.name().is_some(), "__name__ present");
        assert_eq!(s.label("cluster"), Some("c1"));
        assert_eq!(s.label("a_first"), Some("x"));
    }
    let up = samples.iter().find(|s| s.name() == Some("up"));
    let wire: Vec<_> = up
        .map(|s| s.labels.iter().map(|(n, v)| format!("{n}={v}")).collect())
        .unwrap_or_default();
    assert_eq!(
        wire,
        [
            "__name__=up",
            "a_first=x",
            "cluster=c1",
            "job=node",
            "zone=z1"
        ]
    );
    let x = samples.iter().find(|s| s.name() == Some("x"));
    assert_eq!(x.and_then(|s| s.label("job")), Some("api"));
    assert_eq!(x.and_then(|s| s.label("empty")), None);
}

#[tokio::test]
async fn staleness_marker_keeps_its_bit_pattern_on_the_wire() {
    let rx = Receiver::start().await;
    let agent = Agent::start(vec![endpoint("primary", &rx.url())], Labels::empty());
    let mut batch = scrape("up", 1..=2, 10, true);
    batch.samples[0].value = stale_nan();
    batch.samples[1].value = f64::NAN;
    agent.append(batch);
    let samples = rx.wait_for_accepted(2, WAIT).await;
    let bits = |id: &str| {
        samples
            .iter()
            .find(|s| s.label("id") == Some(id))
            .map(|s| s.value.to_bits())
    };
    assert_eq!(bits("1"), Some(STALE_NAN_BITS));
    assert_eq!(bits("2"), Some(f64::NAN.to_bits()));
}

#[tokio::test]
async fn server_errors_are_retried_until_every_sample_arrives_once_in_order() {
    let rx = Receiver::start().await;
    rx.reply_next([
        Reply::status(500),
        Reply::status(503).with_body("overloaded"),
        Reply::status(502),
    ]);
    let agent = Agent::start(vec![endpoint("primary", &rx.url())], Labels::empty());
    for ts in 1..=10 {
        agent.append(scrape("m", 1..=5, ts, ts == 1));
    }
    let samples = rx.wait_for_accepted(50, WAIT).await;
    assert_each_series_got(&samples, 5, &(1..=10).collect::<Vec<_>>());
    let e = [("endpoint", "primary")];
    eventually(WAIT, "samples_sent to reach 50", || {
        agent.metric("scrapelet_remote_samples_sent_total", &e) == 50.0
    })
    .await;
    assert_eq!(
        agent.metric(
            "scrapelet_remote_requests_total",
            &[("endpoint", "primary"), ("code", "5xx")]
        ),
        3.0
    );
    assert!(agent.metric("scrapelet_remote_samples_retried_total", &e) > 0.0);
    assert_eq!(
        agent.metric("scrapelet_remote_samples_failed_total", &e),
        0.0
    );
}

#[tokio::test]
async fn client_errors_are_not_retried_but_dropped_and_counted() {
    let rx = Receiver::start().await;
    rx.reply_next([Reply::status(400).with_body("invalid label name \"0x\"")]);
    let agent = Agent::start(vec![endpoint("primary", &rx.url())], Labels::empty());
    agent.append(scrape("m", 1..=3, 1, true));
    rx.wait_for_requests(1, WAIT).await;
    agent.append(scrape("m", 1..=3, 2, false));
    let samples = rx.wait_for_accepted(3, WAIT).await;
    assert!(samples.iter().all(|s| s.timestamp_ms == 2), "{samples:?}");
    // One shard sends one request at a time: a retry would have come before the second batch.
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].status, 400);
    let failed = [("endpoint", "primary"), ("reason", "rejected")];
    assert_eq!(
        agent.metric("scrapelet_remote_samples_failed_total", &failed),
        3.0
    );
    assert_eq!(
        agent.metric(
            "scrapelet_remote_samples_retried_total",
            &[("endpoint", "primary")]
        ),
        0.0
    );
    assert_eq!(
        agent.metric(
            "scrapelet_remote_requests_total",
            &[("endpoint", "primary"), ("code", "4xx")]
        ),
        1.0
    );
}

#[tokio::test]
async fn too_many_requests_is_dropped_without_retry_on_http_429() {
    let rx = Receiver::start().await;
    rx.reply_next([Reply::status(429).with_header("Retry-After", "1")]);
    let agent = Agent::start(vec![endpoint("primary", &rx.url())], Labels::empty());
    agent.append(scrape("m", 1..=2, 1, true));
    rx.wait_for_requests(1, WAIT).await;
    agent.append(scrape("m", 1..=2, 2, false));
    let samples = rx.wait_for_accepted(2, WAIT).await;
    assert!(samples.iter().all(|s| s.timestamp_ms == 2));
    assert_eq!(rx.requests().len(), 2);
    let failed = [("endpoint", "primary"), ("reason", "rate_limited")];
    assert_eq!(
        agent.metric("scrapelet_remote_samples_failed_total", &failed),
        2.0
    );
}

#[tokio::test]
async fn too_many_requests_is_retried_after_retry_after_with_retry_on_http_429() {
    let rx = Receiver::start().await;
    rx.reply_next([Reply::status(429).with_header("Retry-After", "1")]);
    let mut ep = endpoint("primary", &rx.url());
    ep.queue_config.retry_on_http_429 = true;
    let agent = Agent::start(vec![ep], Labels::empty());
    agent.append(scrape("m", 1..=2, 1, true));
    let samples = rx.wait_for_accepted(2, WAIT).await;
    assert_each_series_got(&samples, 2, &[1]);
    let reqs = rx.requests();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 204]
    );
    // Correctness, not speed: the retry must not come before the second the receiver asked for.
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert_eq!(
        agent.metric(
            "scrapelet_remote_samples_retried_total",
            &[("endpoint", "primary")]
        ),
        2.0
    );
}

#[tokio::test]
async fn order_per_series_holds_with_several_shards_and_a_slow_receiver() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::ok().with_delay(Duration::from_millis(20)));
    let mut ep = endpoint("primary", &rx.url());
    ep.queue_config.min_shards = 4;
    ep.queue_config.max_shards = 4;
    ep.queue_config.max_samples_per_send = 7;
    let agent = Agent::start(vec![ep], Labels::empty());
    for ts in 1..=20 {
        agent.append(scrape("m", 1..=30, ts, ts == 1));
    }
    let samples = rx.wait_for_accepted(600, WAIT).await;
    assert_each_series_got(&samples, 30, &(1..=20).collect::<Vec<_>>());
    assert!(rx.requests().iter().all(|r| r.sample_count() <= 7));
    assert_eq!(
        agent.metric("scrapelet_remote_shards", &[("endpoint", "primary")]),
        4.0
    );
}

#[tokio::test]
async fn order_per_series_holds_across_dynamic_resharding() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::ok().with_delay(Duration::from_millis(20)));
    let mut ep = endpoint("primary", &rx.url());
    ep.queue_config.min_shards = 1;
    ep.queue_config.max_shards = 8;
    ep.queue_config.max_samples_per_send = 10;
    let tuning = QueueTuning {
        shard_update_interval: Duration::from_millis(200),
    };
    let agent = Agent::start_tuned(vec![ep], Labels::empty(), tuning);
    let shards = || agent.metric("scrapelet_remote_shards", &[("endpoint", "primary")]);
    let mut most_shards = shards();
    // About 2000 samples/s in, while one shard moves about 500/s: it must scale out.
    for ts in 1..=100 {
        agent.append(scrape("m", 1..=40, ts, ts == 1));
        // Pacing the producer like scrapes would, not synchronising.
        tokio::time::sleep(Duration::from_millis(20)).await;
        most_shards = most_shards.max(shards());
    }
    let samples = rx.wait_for_accepted(4000, WAIT).await;
    assert_each_series_got(&samples, 40, &(1..=100).collect::<Vec<_>>());
    assert!(
        most_shards > 1.0,
        "never resharded (at most {most_shards} shards)"
    );
    assert!(
        agent.metric(
            "scrapelet_remote_shards_desired",
            &[("endpoint", "primary")]
        ) > 0.0
    );
}

#[tokio::test]
async fn batches_are_cut_at_max_samples_per_send() {
    let rx = Receiver::start().await;
    let mut ep = endpoint("primary", &rx.url());
    ep.queue_config.max_samples_per_send = 10;
    ep.queue_config.batch_send_deadline = Duration::from_secs(3600);
    let agent = Agent::start(vec![ep], Labels::empty());
    agent.append(scrape("m", 1..=35, 1, true));
    let reqs = rx.wait_for_requests(3, WAIT).await;
    assert_eq!(
        reqs.iter().map(|r| r.sample_count()).collect::<Vec<_>>(),
        [10, 10, 10]
    );
    // The rest waits for the deadline, or for the shutdown flush.
    assert!(agent.remote.shutdown(WAIT).await, "shutdown was not clean");
    let sizes: Vec<_> = rx.requests().iter().map(|r| r.sample_count()).collect();
    assert_eq!(sizes, [10, 10, 10, 5]);
}

#[tokio::test]
async fn batches_are_cut_at_the_send_deadline() {
    let rx = Receiver::start().await;
    let mut ep = endpoint("primary", &rx.url());
    ep.queue_config.max_samples_per_send = 1000;
    ep.queue_config.batch_send_deadline = Duration::from_millis(100);
    let agent = Agent::start(vec![ep], Labels::empty());
    agent.append(scrape("m", 1..=3, 1, true));
    rx.wait_for_accepted(3, WAIT).await;
    let sizes: Vec<_> = rx.requests().iter().map(|r| r.sample_count()).collect();
    assert_eq!(sizes, [3]);
}

#[tokio::test]
async fn a_down_endpoint_does_not_hold_back_a_healthy_one() {
    let healthy = Receiver::start().await;
    let down = Receiver::start().await;
    down.set_default(Reply::status(503).with_body("maintenance"));
    let mut slow = endpoint("down", &down.url());
    slow.queue_config.capacity = 20;
    slow.queue_config.max_samples_per_send = 10;
    let agent = Agent::start(
        vec![endpoint("healthy", &healthy.url()), slow],
        Labels::empty(),
    );
    for ts in 1..=50 {
        agent.append(scrape("m", 1..=10, ts, ts == 1));
    }
    let samples = healthy.wait_for_accepted(500, WAIT).await;
    assert_each_series_got(&samples, 10, &(1..=50).collect::<Vec<_>>());
    let full = [("endpoint", "down"), ("reason", "queue_full")];
    assert!(agent.metric("scrapelet_remote_samples_dropped_total", &full) > 0.0);
    assert_eq!(
        agent.metric(
            "scrapelet_remote_samples_dropped_total",
            &[("endpoint", "healthy"), ("reason", "queue_full")]
        ),
        0.0
    );
    assert_eq!(down.accepted_count(), 0);
}

#[tokio::test]
async fn queue_full_drops_are_counted_and_everything_else_arrives_after_recovery() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let mut ep = endpoint("primary", &rx.url());
    ep.queue_config.capacity = 10;
    ep.queue_config.max_samples_per_send = 5;
    let agent = Agent::start(vec![ep], Labels::empty());
    for ts in 1..=100 {
        agent.append(scrape("m", 1..=2, ts, ts == 1));
    }
    let full = [("endpoint", "primary"), ("reason", "queue_full")];
    eventually(WAIT, "queue_full drops", || {
        agent.metric("scrapelet_remote_samples_dropped_total", &full) > 0.0
    })
    .await;
    rx.set_default(Reply::ok());
    let dropped = agent.metric("scrapelet_remote_samples_dropped_total", &full) as usize;
    let samples = rx.wait_for_accepted(200 - dropped, WAIT).await;
    assert_eq!(samples.len() + dropped, 200);
    // What arrived came once each and in order, even though batches in between were dropped
    // (the first batch, which defined the series, among them or not).
    let mut seen = HashSet::new();
    for (id, ts) in timestamps_by_id(&samples) {
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "series {id}: {ts:?}");
        assert!(seen.insert(id));
    }
    assert_eq!(
        agent.metric(
            "scrapelet_remote_samples_dropped_total",
            &[("endpoint", "primary"), ("reason", "unknown_series")]
        ),
        0.0
    );
}

#[tokio::test]
async fn write_relabeling_runs_after_external_labels() {
    let rx = Receiver::start().await;
    let rule = |source: &str, regex: &str, action: Action| RelabelConfig {
        source_labels: vec![source.to_owned()],
        separator: ";".to_owned(),
        regex: Regex::new(regex).unwrap_or_else(|e| panic!("bad regex: {e}")),
        modulus: 0,
        target_label: String::new(),
        replacement: "$1".to_owned(),
        action,
    };
    let mut ep = endpoint("primary", &rx.url());
    ep.write_relabel_configs = vec![
        // Keeps everything only if the external label is already there.
        rule("cluster", "c1", Action::Keep),
        rule("__name__", "secret_.*", Action::Drop),
    ];
    let agent = Agent::start(vec![ep], Labels::from_pairs([("cluster", "c1")]));
    agent.append(Batch {
        series: vec![
            (SeriesRef(1), labels("public", 1)),
            (SeriesRef(2), labels("secret_token", 2)),
        ],
        samples: (1..=2)
            .map(|r| Sample {
                series: SeriesRef(r),
                timestamp_ms: 1,
                value: 1.0,
            })
            .collect(),
        gone: vec![],
    });
    let samples = rx.wait_for_accepted(1, WAIT).await;
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].name(), Some("public"));
    let relabeled = [("endpoint", "primary"), ("reason", "write_relabel")];
    eventually(WAIT, "the relabeled sample to be counted", || {
        agent.metric("scrapelet_remote_samples_dropped_total", &relabeled) == 1.0
    })
    .await;
}

#[tokio::test]
async fn shutdown_sends_what_is_queued() {
    let rx = Receiver::start().await;
    let mut ep = endpoint("primary", &rx.url());
    ep.queue_config.batch_send_deadline = Duration::from_secs(3600);
    let agent = Agent::start(vec![ep], Labels::empty());
    for ts in 1..=3 {
        agent.append(scrape("m", 1..=4, ts, ts == 1));
    }
    assert!(agent.remote.shutdown(WAIT).await, "shutdown was not clean");
    assert_each_series_got(&rx.accepted(), 4, &[1, 2, 3]);
}

#[tokio::test]
async fn shutdown_deadline_abandons_and_counts_what_could_not_be_sent() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let agent = Agent::start(vec![endpoint("primary", &rx.url())], Labels::empty());
    for ts in 1..=5 {
        agent.append(scrape("m", 1..=4, ts, ts == 1));
    }
    rx.wait_for_requests(1, WAIT).await;
    let Agent { remote, registry } = agent;
    assert!(!remote.shutdown(Duration::from_millis(200)).await);
    let shutdown = [("endpoint", "primary"), ("reason", "shutdown")];
    assert_eq!(
        metric_or_zero(
            &registry,
            "scrapelet_remote_samples_dropped_total",
            &shutdown
        ),
        20.0
    );
    assert_eq!(
        metric_or_zero(
            &registry,
            "scrapelet_remote_samples_pending",
            &[("endpoint", "primary")]
        ),
        0.0
    );
    assert_eq!(rx.accepted_count(), 0);
}

/// Every decoded body of `requests`.
fn bodies(
    requests: &[support::receiver::RecordedRequest],
) -> Vec<scrapelet::remote::prompb::WriteRequest> {
    requests
        .iter()
        .map(|r| {
            r.write
                .clone()
                .unwrap_or_else(|e| panic!("undecodable: {e}"))
        })
        .collect()
}

#[tokio::test]
async fn redirects_307_and_308_are_followed_with_the_same_body() {
    let target = Receiver::start().await;
    let redirecting = Receiver::start().await;
    // A relative 307 to another path of the same server, whose answer is a 308 to another
    // server (same host, other port: credentials go along, as Go's client does).
    redirecting.reply_next([Reply::status(307).with_header("Location", "push?x=1")]);
    redirecting.set_default(Reply::status(308).with_header("Location", &target.url()));
    let mut ep = endpoint("primary", &redirecting.url());
    ep.http.basic_auth = Some(scrapelet::config::BasicAuth {
        username: "u".into(),
        username_file: None,
        password: Some(scrapelet::config::Secret::new("p")),
        password_file: None,
    });
    let agent = Agent::start(vec![ep], Labels::empty());
    agent.append(scrape("m", 1..=3, 1, true));
    let samples = target.wait_for_accepted(3, WAIT).await;
    assert_each_series_got(&samples, 3, &[1]);

    let hops = redirecting.requests();
    assert_eq!(
        hops.iter()
            .map(|r| (r.path.as_str(), r.status))
            .collect::<Vec<_>>(),
        [("/api/v1/write", 307), ("/api/v1/push", 308)]
    );
    let arrived = target.requests();
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].method, http::Method::POST);
    let all: Vec<_> = hops.iter().chain(&arrived).cloned().collect();
    let bodies = bodies(&all);
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    for r in &all {
        assert_eq!(r.header("authorization"), Some("Basic dTpw"), "{}", r.path);
        assert_eq!(r.header("content-encoding"), Some("snappy"));
    }
    // Counted once the answer is back (the receiver records before answering).
    let primary = [("endpoint", "primary")];
    eventually(WAIT, "3 samples counted as sent", || {
        agent.metric("scrapelet_remote_samples_sent_total", &primary) == 3.0
    })
    .await;
    for reason in ["rejected", "redirect"] {
        let failed = [("endpoint", "primary"), ("reason", reason)];
        assert_eq!(
            agent.metric("scrapelet_remote_samples_failed_total", &failed),
            0.0
        );
    }
}

#[tokio::test]
async fn a_301_is_not_followed_but_refused_and_counted_as_a_redirect() {
    let target = Receiver::start().await;
    let rx = Receiver::start().await;
    rx.reply_next([
        Reply::status(301).with_header("Location", &format!("{}?token=s3cret", target.url()))
    ]);
    let agent = Agent::start(vec![endpoint("primary", &rx.url())], Labels::empty());
    agent.append(scrape("m", 1..=3, 1, true));
    rx.wait_for_requests(1, WAIT).await;
    agent.append(scrape("m", 1..=3, 2, false));
    let samples = rx.wait_for_accepted(3, WAIT).await;
    assert!(samples.iter().all(|s| s.timestamp_ms == 2), "{samples:?}");
    // Not followed (the POST would lose its body), not retried.
    assert_eq!(rx.requests().len(), 2);
    assert!(target.requests().is_empty());
    let redirect = [("endpoint", "primary"), ("reason", "redirect")];
    assert_eq!(
        agent.metric("scrapelet_remote_samples_failed_total", &redirect),
        3.0
    );
    let rejected = [("endpoint", "primary"), ("reason", "rejected")];
    assert_eq!(
        agent.metric("scrapelet_remote_samples_failed_total", &rejected),
        0.0
    );
    assert_eq!(
        agent.metric(
            "scrapelet_remote_samples_retried_total",
            &[("endpoint", "primary")]
        ),
        0.0
    );
}

#[tokio::test]
async fn without_follow_redirects_a_307_is_refused_as_a_redirect() {
    let target = Receiver::start().await;
    let rx = Receiver::start().await;
    rx.reply_next([Reply::status(307).with_header("Location", &target.url())]);
    let mut ep = endpoint("primary", &rx.url());
    ep.http.follow_redirects = false;
    let agent = Agent::start(vec![ep], Labels::empty());
    agent.append(scrape("m", 1..=2, 1, true));
    rx.wait_for_requests(1, WAIT).await;
    agent.append(scrape("m", 1..=2, 2, false));
    rx.wait_for_accepted(2, WAIT).await;
    assert!(target.requests().is_empty());
    let redirect = [("endpoint", "primary"), ("reason", "redirect")];
    assert_eq!(
        agent.metric("scrapelet_remote_samples_failed_total", &redirect),
        2.0
    );
}
