//! The cases of the Prometheus remote-write sender compliance suite
//! (github.com/prometheus/compliance, `remote_write_sender/cases`), run against the whole agent
//! in-process: a target served by the test -> scrapelet -> a receiver served by the test, over
//! real HTTP on 127.0.0.1. One test per case, named after it.
//!
//! The suite runs each sender for a fixed time and then inspects what arrived; here every test
//! waits (with a deadline) until what it needs has arrived, so runs are short and never sleep.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scrapelet::append::is_stale_nan;
use scrapelet::remote::USER_AGENT_VALUE;
use support::agent::TestAgent;
use support::receiver::{ReceivedSample, Receiver, Reply};
use support::target::{Exposition, Target};

/// The longest any wait may take before a test fails (generous: CI machines are slow).
const WAIT: Duration = Duration::from_secs(30);

/// The endpoint's name in the config (the `endpoint` label of remote write metrics).
const ENDPOINT: &str = "rx";

/// One scrape job of a test config.
struct Job<'a> {
    name: &'a str,
    address: String,
    /// YAML lines added to the job, indented by four spaces.
    extra: &'a str,
}

impl<'a> Job<'a> {
    fn new(name: &'a str, address: String) -> Self {
        Job {
            name,
            address,
            extra: "",
        }
    }

    fn with(mut self, extra: &'a str) -> Self {
        self.extra = extra;
        self
    }
}

/// A config scraping `jobs` every 200ms and sending to `rx` quickly (50ms batch deadline,
/// short backoff); `queue` adds lines under `queue_config` (indented by eight spaces).
fn config(rx: &Receiver, jobs: &[Job], queue: &str) -> String {
    let mut yaml = format!(
        "global:
  scrape_interval: 200ms
  scrape_timeout: 200ms
remote_write:
  - url: {url}
    name: {ENDPOINT}
    queue_config:
      batch_send_deadline: 50ms
      min_backoff: 10ms
      max_backoff: 100ms
{queue}scrape_configs:
",
        url = rx.url()
    );
    for job in jobs {
        yaml.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: ['{}']\n{}",
            job.name, job.address, job.extra
        ));
    }
    yaml
}

/// Starts a receiver, one target answering `body`, and the agent scraping it as job `test`.
async fn single(body: &str) -> (Receiver, Target, TestAgent) {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text(body)).await;
    let agent = TestAgent::start(&config(&rx, &[Job::new("test", target.address())], "")).await;
    (rx, target, agent)
}

/// Waits until the accepted samples satisfy `done`; returns them.
async fn accepted_when(
    rx: &Receiver,
    what: &str,
    done: impl Fn(&[ReceivedSample]) -> bool,
) -> Vec<ReceivedSample> {
    rx.wait_until(WAIT, what, |r| done(&r.accepted())).await;
    rx.accepted()
}

/// Whether `s` carries every label of `want` (others may be present).
fn has(s: &ReceivedSample, want: &[(&str, &str)]) -> bool {
    want.iter().all(|(k, v)| s.label(k) == Some(v))
}

/// The samples carrying every label of `want`, in arrival order.
fn matching<'a>(samples: &'a [ReceivedSample], want: &[(&str, &str)]) -> Vec<&'a ReceivedSample> {
    samples.iter().filter(|s| has(s, want)).collect()
}

/// How many samples carry every label of `want` and have `value` (the suite's
/// `countMetricWithValue`).
fn count_with_value(samples: &[ReceivedSample], want: &[(&str, &str)], value: f64) -> usize {
    matching(samples, want)
        .iter()
        .filter(|s| s.value == value)
        .count()
}

/// The label set of a sample as a map.
fn label_map(s: &ReceivedSample) -> BTreeMap<&str, &str> {
    s.labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Samples per series (label set as sent), each in arrival order.
fn by_series(samples: &[ReceivedSample]) -> HashMap<Vec<(String, String)>, Vec<&ReceivedSample>> {
    let mut out: HashMap<_, Vec<_>> = HashMap::new();
    for s in samples {
        out.entry(s.labels.clone()).or_default().push(s);
    }
    out
}

/// Panics unless every series' timestamps strictly increase in arrival order.
fn assert_strictly_increasing_per_series(samples: &[ReceivedSample]) {
    for (series, got) in by_series(samples) {
        for pair in got.windows(2) {
            assert!(
                pair[0].timestamp_ms < pair[1].timestamp_ms,
                "series {series:?}: timestamp {} arrived after {}",
                pair[1].timestamp_ms,
                pair[0].timestamp_ms
            );
        }
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("clock before 1970: {e}"));
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn closed_port_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"));
    drop(listener);
    addr.to_string()
}

/// The suite's `Counter`: a counter that increases by one after every scrape arrives with
/// every value, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter() {
    let rx = Receiver::start().await;
    let target = Target::start_with(|n| {
        format!(
            "# HELP counter_total Scrapes answered.\n# TYPE counter_total counter\ncounter_total {}\n",
            n - 1
        )
    })
    .await;
    let agent = TestAgent::start(&config(&rx, &[Job::new("test", target.address())], "")).await;
    let samples = accepted_when(&rx, "5 counter samples", |s| {
        matching(s, &[("__name__", "counter_total")]).len() >= 5
    })
    .await;
    let values: Vec<f64> = matching(&samples, &[("__name__", "counter_total")])
        .iter()
        .map(|s| s.value)
        .collect();
    let expected: Vec<f64> = (0..values.len()).map(|v| v as f64).collect();
    assert_eq!(values, expected, "every scrape's value, in order");
    agent.agent.shutdown().await;
}

/// The suite's `Gauge`: a gauge's values arrive as served, up and down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauge() {
    let rx = Receiver::start().await;
    const VALUES: [f64; 4] = [42.0, -2.5, 1e-3, 1.5e10];
    let target = Target::start_with(|n| {
        format!(
            "# HELP gauge A gauge.\n# TYPE gauge gauge\ngauge {:e}\n",
            VALUES[(n - 1) % VALUES.len()]
        )
    })
    .await;
    let agent = TestAgent::start(&config(&rx, &[Job::new("test", target.address())], "")).await;
    let samples = accepted_when(&rx, "6 gauge samples", |s| {
        matching(s, &[("__name__", "gauge")]).len() >= 6
    })
    .await;
    let values: Vec<f64> = matching(&samples, &[("__name__", "gauge")])
        .iter()
        .map(|s| s.value)
        .collect();
    let expected: Vec<f64> = (0..values.len())
        .map(|i| VALUES[i % VALUES.len()])
        .collect();
    assert_eq!(values, expected);
    agent.agent.shutdown().await;
}

/// The suite's `Histogram`: every bucket, the sum and the count arrive with their values, as
/// many times each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram() {
    let (rx, _target, agent) = single(
        "# HELP histogram A histogram.\n# TYPE histogram histogram\n\
         histogram_bucket{le=\"1\"} 1\nhistogram_bucket{le=\"2\"} 2\nhistogram_bucket{le=\"+Inf\"} 2\n\
         histogram_sum 3\nhistogram_count 2\n",
    )
    .await;
    accepted_when(&rx, "3 histogram scrapes", |s| {
        count_with_value(s, &[("__name__", "histogram_count")], 2.0) >= 3
    })
    .await;
    // Shutdown flushes: every scrape made so far has arrived whole.
    agent.agent.shutdown().await;
    let samples = rx.accepted();
    let count = count_with_value(&samples, &[("__name__", "histogram_count")], 2.0);
    for (want, value) in [
        (&[("__name__", "histogram_bucket"), ("le", "1")][..], 1.0),
        (&[("__name__", "histogram_bucket"), ("le", "2")][..], 2.0),
        (&[("__name__", "histogram_bucket"), ("le", "+Inf")][..], 2.0),
        (&[("__name__", "histogram_sum")][..], 3.0),
    ] {
        assert_eq!(
            count_with_value(&samples, want, value),
            count,
            "{want:?} = {value}, as often as histogram_count"
        );
    }
    assert_eq!(
        matching(&samples, &[("__name__", "histogram_bucket")]).len(),
        count_with_value(
            &samples,
            &[("__name__", "histogram_bucket"), ("le", "1")],
            1.0
        ) + count_with_value(
            &samples,
            &[("__name__", "histogram_bucket"), ("le", "2")],
            2.0
        ) + count_with_value(
            &samples,
            &[("__name__", "histogram_bucket"), ("le", "+Inf")],
            2.0
        ),
        "no bucket has another value"
    );
    assert!(count >= 3);
}

/// The suite's `Summary`: quantiles, sum and count arrive with their values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary() {
    let (rx, _target, agent) = single(
        "# HELP summary A summary.\n# TYPE summary summary\n\
         summary{quantile=\"0.5\"} 2\nsummary{quantile=\"0.9\"} 3\nsummary{quantile=\"0.99\"} 3\n\
         summary_sum 6\nsummary_count 3\n",
    )
    .await;
    accepted_when(&rx, "3 summary scrapes", |s| {
        count_with_value(s, &[("__name__", "summary_count")], 3.0) >= 3
    })
    .await;
    agent.agent.shutdown().await;
    let samples = rx.accepted();
    let count = count_with_value(&samples, &[("__name__", "summary_count")], 3.0);
    for (want, value) in [
        (&[("__name__", "summary"), ("quantile", "0.5")][..], 2.0),
        (&[("__name__", "summary"), ("quantile", "0.9")][..], 3.0),
        (&[("__name__", "summary"), ("quantile", "0.99")][..], 3.0),
        (&[("__name__", "summary_sum")][..], 6.0),
    ] {
        assert_eq!(
            count_with_value(&samples, want, value),
            count,
            "{want:?} = {value}, as often as summary_count"
        );
    }
    assert_eq!(
        matching(&samples, &[("__name__", "summary")]).len(),
        matching(&samples, &[("__name__", "summary"), ("quantile", "0.5")]).len() * 3,
        "three quantiles per scrape"
    );
    assert!(count >= 3);
}

/// The suite's `Up`: `up` is 1 for a target that answers, and (ours) 0 for one that does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up() {
    let rx = Receiver::start().await;
    let good = Target::start(Exposition::text("gauge 42\n")).await;
    let jobs = [
        Job::new("test", good.address()),
        Job::new("down", closed_port_address()),
    ];
    let agent = TestAgent::start(&config(&rx, &jobs, "")).await;
    let samples = accepted_when(&rx, "3 up samples per job", |s| {
        matching(s, &[("__name__", "up"), ("job", "test")]).len() >= 3
            && matching(s, &[("__name__", "up"), ("job", "down")]).len() >= 3
    })
    .await;
    let up_of = |job| -> Vec<f64> {
        matching(&samples, &[("__name__", "up"), ("job", job)])
            .iter()
            .map(|s| s.value)
            .collect()
    };
    assert!(
        up_of("test").iter().all(|v| *v == 1.0),
        "{:?}",
        up_of("test")
    );
    assert!(
        up_of("down").iter().all(|v| *v == 0.0),
        "{:?}",
        up_of("down")
    );
    agent.agent.shutdown().await;
}

/// The suite's `Invalid Scrape`: an unparsable exposition gives `up` 0, and none of its
/// samples (not even those before the bad line) are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid() {
    let (rx, _target, agent) =
        single("valid_before 1\n# this is not valid prometheus\n1234notvali}{ 444\n").await;
    let samples = accepted_when(&rx, "3 up samples", |s| {
        matching(s, &[("__name__", "up"), ("job", "test")]).len() >= 3
    })
    .await;
    let ups = matching(&samples, &[("__name__", "up"), ("job", "test")]);
    assert!(ups.iter().all(|s| s.value == 0.0), "up: {ups:?}");
    let synthetic = [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ];
    let scraped: Vec<_> = samples
        .iter()
        .filter(|s| !synthetic.contains(&s.name().unwrap_or("")))
        .collect();
    assert!(scraped.is_empty(), "sent from a failed scrape: {scraped:?}");
    agent.agent.shutdown().await;
}

/// The suite's `JobLabel`: every sample carries `job` = the job's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_label() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text("gauge 42\n")).await;
    let agent = TestAgent::start(&config(
        &rx,
        &[Job::new("compliance-job", target.address())],
        "",
    ))
    .await;
    let samples = accepted_when(&rx, "gauge and up", |s| {
        !matching(s, &[("__name__", "gauge")]).is_empty()
            && !matching(s, &[("__name__", "up")]).is_empty()
    })
    .await;
    for s in &samples {
        assert_eq!(s.label("job"), Some("compliance-job"), "{s:?}");
    }
    agent.agent.shutdown().await;
}

/// The suite's `InstanceLabel`: every sample carries `instance` = the target's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_label() {
    let (rx, target, agent) = single("gauge 42\n").await;
    let samples = accepted_when(&rx, "gauge and up", |s| {
        !matching(s, &[("__name__", "gauge")]).is_empty()
            && !matching(s, &[("__name__", "up")]).is_empty()
    })
    .await;
    let instance = target.address();
    for s in &samples {
        assert_eq!(s.label("instance"), Some(instance.as_str()), "{s:?}");
    }
    agent.agent.shutdown().await;
}

/// The suite's `SortedLabels`: labels served out of order arrive sorted by name, on every
/// sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_labels() {
    let (rx, target, agent) =
        single("# HELP test A gauge\n# TYPE test gauge\ntest{b=\"2\",a=\"1\"} 1.0\n").await;
    let samples = accepted_when(&rx, "test and up", |s| {
        !matching(s, &[("__name__", "test")]).is_empty()
            && !matching(s, &[("__name__", "up")]).is_empty()
    })
    .await;
    for s in &samples {
        let names: Vec<&str> = s.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "not sorted: {names:?}"
        );
    }
    let test = matching(&samples, &[("__name__", "test")]);
    let instance = target.address();
    assert_eq!(
        test[0].labels,
        [
            ("__name__", "test"),
            ("a", "1"),
            ("b", "2"),
            ("instance", instance.as_str()),
            ("job", "test"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(test[0].value, 1.0);
    agent.agent.shutdown().await;
}

/// The suite's `RepeatedLabels`: a series with a label name twice fails the scrape; nothing of
/// it is sent and no sample ever carries a name twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_labels() {
    let (rx, _target, agent) =
        single("# HELP test A gauge\n# TYPE test gauge\ntest{a=\"1\",a=\"1\"} 1.0\n").await;
    let samples = accepted_when(&rx, "3 up samples", |s| {
        matching(s, &[("__name__", "up")]).len() >= 3
    })
    .await;
    assert!(matching(&samples, &[("__name__", "test")]).is_empty());
    assert!(
        matching(&samples, &[("__name__", "up")])
            .iter()
            .all(|s| s.value == 0.0),
        "the scrape fails"
    );
    for s in &samples {
        let names: HashSet<&str> = s.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), s.labels.len(), "repeated label in {s:?}");
    }
    agent.agent.shutdown().await;
}

/// The suite's `EmptyLabels`: a label with an empty value is dropped; no sample carries one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_labels() {
    let (rx, target, agent) =
        single("# HELP test A gauge\n# TYPE test gauge\ntest{a=\"\"} 1.0\n").await;
    let samples = accepted_when(&rx, "test", |s| {
        !matching(s, &[("__name__", "test")]).is_empty()
    })
    .await;
    for s in &samples {
        assert!(
            s.labels.iter().all(|(_, v)| !v.is_empty()),
            "empty label value in {s:?}"
        );
    }
    let test = matching(&samples, &[("__name__", "test")]);
    let instance = target.address();
    assert_eq!(
        label_map(test[0]),
        BTreeMap::from([
            ("__name__", "test"),
            ("instance", instance.as_str()),
            ("job", "test")
        ])
    );
    assert_eq!(test[0].value, 1.0);
    agent.agent.shutdown().await;
}

/// The suite's `NameLabel`: a sample without a metric name is never sent; every sample sent
/// has `__name__`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_label() {
    let (rx, _target, agent) =
        single("# HELP test A gauge\n# TYPE test gauge\n{label=\"value\"} 1.0\n").await;
    let samples = accepted_when(&rx, "3 up samples", |s| {
        matching(s, &[("__name__", "up")]).len() >= 3
    })
    .await;
    for s in &samples {
        assert!(s.name().is_some_and(|n| !n.is_empty()), "no name: {s:?}");
    }
    assert!(matching(&samples, &[("label", "value")]).is_empty());
    assert!(
        matching(&samples, &[("__name__", "up")])
            .iter()
            .all(|s| s.value == 0.0),
        "the scrape fails"
    );
    agent.agent.shutdown().await;
}

/// The suite's `HonorLabels`: without `honor_labels` a scraped `job` is kept as
/// `exported_job`; with it, the scraped value wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honor_labels() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text(
        "# HELP test A gauge\n# TYPE test gauge\ntest{job=\"original\"} 1.0\n",
    ))
    .await;
    let jobs = [
        Job::new("plain", target.address()),
        Job::new("honored", target.address()).with("    honor_labels: true\n"),
    ];
    let agent = TestAgent::start(&config(&rx, &jobs, "")).await;
    let samples = accepted_when(&rx, "test from both jobs", |s| {
        count_with_value(
            s,
            &[("__name__", "test"), ("exported_job", "original")],
            1.0,
        ) > 0
            && count_with_value(s, &[("__name__", "test"), ("job", "original")], 1.0) > 0
    })
    .await;
    let plain = matching(
        &samples,
        &[("__name__", "test"), ("exported_job", "original")],
    );
    assert_eq!(plain[0].label("job"), Some("plain"));
    let honored = matching(&samples, &[("__name__", "test"), ("job", "original")]);
    assert_eq!(honored[0].label("exported_job"), None);
    // The synthetic series always carry the job's own name.
    assert!(!matching(&samples, &[("__name__", "up"), ("job", "honored")]).is_empty());
    agent.agent.shutdown().await;
}

/// The suite's `Staleness` (a Prometheus behaviour the suite expects of senders): a series
/// that disappears, and every series of a target that goes away, get a staleness marker (the
/// NaN 0x7ff0000000000002) after their last sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staleness() {
    let (rx, target, agent) = single("a 1\nb 2\n").await;
    accepted_when(&rx, "a and b", |s| {
        !matching(s, &[("__name__", "b")]).is_empty()
    })
    .await;

    target.set_body("a 1\n");
    let samples = accepted_when(&rx, "b marked stale", |s| {
        matching(s, &[("__name__", "b")])
            .iter()
            .any(|x| is_stale_nan(x.value))
    })
    .await;
    let b = matching(&samples, &[("__name__", "b")]);
    let marker = b.iter().position(|x| is_stale_nan(x.value)).unwrap_or(0);
    assert_eq!(b[marker].value.to_bits(), 0x7ff0_0000_0000_0002);
    assert!(marker > 0 && b[marker - 1].timestamp_ms < b[marker].timestamp_ms);
    assert!(
        matching(&samples, &[("__name__", "a")])
            .iter()
            .all(|x| x.value == 1.0),
        "a stays fresh"
    );

    target.stop();
    let samples = accepted_when(
        &rx,
        "a marked stale and up 0 once the target is gone",
        |s| {
            matching(s, &[("__name__", "a")])
                .iter()
                .any(|x| is_stale_nan(x.value))
                && matching(s, &[("__name__", "up")])
                    .iter()
                    .any(|x| x.value == 0.0)
        },
    )
    .await;
    let a = matching(&samples, &[("__name__", "a")]);
    let marker = a.iter().position(|x| is_stale_nan(x.value)).unwrap_or(0);
    assert_eq!(a[marker].value.to_bits(), 0x7ff0_0000_0000_0002);
    assert!(marker > 0 && a[marker - 1].timestamp_ms < a[marker].timestamp_ms);
    // One marker each: b was already gone, and nothing follows a's marker.
    assert_eq!(b.iter().filter(|x| is_stale_nan(x.value)).count(), 1);
    let after: Vec<_> = matching(&rx.accepted(), &[("__name__", "a")])
        .into_iter()
        .skip(marker + 1)
        .cloned()
        .collect();
    assert!(after.is_empty(), "after a's marker: {after:?}");
    agent.agent.shutdown().await;
}

/// The suite's `Timestamp`: samples carry the scrape's time in ms, between the test's start
/// and end; (ours) an explicit timestamp in the exposition is sent as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps() {
    let start = now_ms();
    let (rx, _target, agent) = single("gauge 42\nexplicit 7 1700000000123\n").await;
    let samples = accepted_when(&rx, "3 gauge samples and explicit", |s| {
        count_with_value(s, &[("__name__", "gauge")], 42.0) >= 3
            && !matching(s, &[("__name__", "explicit")]).is_empty()
    })
    .await;
    let end = now_ms();
    for s in samples.iter().filter(|s| s.name() != Some("explicit")) {
        assert!(
            (start..=end).contains(&s.timestamp_ms),
            "{} not within [{start}, {end}]: {s:?}",
            s.timestamp_ms
        );
    }
    let explicit = matching(&samples, &[("__name__", "explicit")]);
    assert_eq!(explicit[0].timestamp_ms, 1_700_000_000_123);
    assert_eq!(explicit[0].value, 7.0);
    assert_eq!(
        explicit.len(),
        1,
        "a repeated explicit timestamp is sent once"
    );
    agent.agent.shutdown().await;
}

/// The suite's `Headers`: every request is a POST with the remote-write 1.0 headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers() {
    let (rx, _target, agent) = single("gauge 42\n").await;
    let requests = rx.wait_for_requests(3, WAIT).await;
    for r in &requests {
        assert_eq!(r.method, http::Method::POST);
        assert_eq!(r.path, "/api/v1/write");
        assert_eq!(r.header("content-encoding"), Some("snappy"));
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
        assert_eq!(r.header("user-agent"), Some(USER_AGENT_VALUE));
        assert!(r.write.is_ok(), "undecodable: {:?}", r.write);
    }
    assert_eq!(
        USER_AGENT_VALUE,
        concat!("scrapelet/", env!("CARGO_PKG_VERSION"))
    );
    agent.agent.shutdown().await;
}

/// The suite's `Ordering`: with many series, several shards and a receiver that delays its
/// answers at random, every series' timestamps still strictly increase at the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering() {
    const SERIES: usize = 1000;
    let rx = Receiver::start().await;
    // Delays from a fixed pseudo-random sequence (xorshift): reproducible, 0..250ms.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    rx.reply_next((0..400).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Reply::ok().with_delay(Duration::from_millis(x % 250))
    }));
    let body: String = (0..SERIES)
        .map(|i| format!("test{{i=\"{i}\"}} 1\n"))
        .collect();
    let target = Target::start(Exposition::text(&body)).await;
    let queue = "      min_shards: 4\n      max_shards: 4\n      max_samples_per_send: 100\n";
    let agent = TestAgent::start(&config(&rx, &[Job::new("test", target.address())], queue)).await;
    let samples = accepted_when(&rx, "4 samples of every test series", |s| {
        let per_series = by_series(s);
        let full = per_series
            .iter()
            .filter(|(labels, got)| {
                labels.iter().any(|(k, v)| k == "__name__" && v == "test") && got.len() >= 4
            })
            .count();
        full == SERIES
    })
    .await;
    assert_strictly_increasing_per_series(&samples);
    assert!(
        matching(&samples, &[("__name__", "test")])
            .iter()
            .all(|s| s.value == 1.0)
    );
    let busy = rx.requests().len();
    assert!(busy > 4 * SERIES / 100, "{busy} requests");
    agent.agent.shutdown().await;
}

/// The suite's `Retries500`: samples of requests answered 500 are sent again until accepted,
/// each accepted once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_500() {
    let rx = Receiver::start().await;
    rx.reply_next((0..3).map(|_| Reply::status(500).with_body("internal server error")));
    let target = Target::start_with(|n| format!("now {}\nscrapes_total {n}\n", now_ms())).await;
    let agent = TestAgent::start(&config(&rx, &[Job::new("test", target.address())], "")).await;
    let requests = rx.wait_for_requests(3, WAIT).await;
    let refused: Vec<(Vec<(String, String)>, i64)> = requests[..3]
        .iter()
        .inspect(|r| assert_eq!(r.status, 500))
        .flat_map(|r| {
            r.write
                .as_ref()
                .map(|w| w.timeseries.clone())
                .unwrap_or_default()
        })
        .flat_map(|ts| {
            let labels: Vec<_> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            ts.samples
                .into_iter()
                .map(move |s| (labels.clone(), s.timestamp))
        })
        .collect();
    assert!(
        refused
            .iter()
            .any(|(l, _)| l.iter().any(|(k, v)| k == "__name__" && v == "now")),
        "the refused requests carried `now`"
    );
    let samples = accepted_when(&rx, "every refused sample accepted", |s| {
        let got: HashSet<(&[(String, String)], i64)> = s
            .iter()
            .map(|x| (x.labels.as_slice(), x.timestamp_ms))
            .collect();
        refused
            .iter()
            .all(|(l, t)| got.contains(&(l.as_slice(), *t)))
    })
    .await;
    assert_strictly_increasing_per_series(&samples);
    support::eventually_async(WAIT, "retries counted", || async {
        agent
            .metric(
                "scrapelet_remote_samples_retried_total",
                &[("endpoint", ENDPOINT)],
            )
            .await
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    agent.agent.shutdown().await;
}

/// The suite's `Retries400`: samples of a request answered 400 are never sent again; they are
/// counted as failed and what follows keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retries_on_400() {
    let rx = Receiver::start().await;
    rx.reply_next([Reply::status(400).with_body("bad request")]);
    let target = Target::start_with(|n| format!("now {}\nscrapes_total {n}\n", now_ms())).await;
    let agent = TestAgent::start(&config(&rx, &[Job::new("test", target.address())], "")).await;
    let requests = rx.wait_for_requests(1, WAIT).await;
    let rejected = &requests[0];
    assert_eq!(rejected.status, 400);
    let write = rejected
        .write
        .as_ref()
        .unwrap_or_else(|e| panic!("undecodable: {e}"));
    let refused: HashSet<(Vec<(String, String)>, i64)> = write
        .timeseries
        .iter()
        .flat_map(|ts| {
            let labels: Vec<_> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            ts.samples
                .iter()
                .map(move |s| (labels.clone(), s.timestamp))
        })
        .collect();
    let last_refused = refused.iter().map(|(_, t)| *t).max().unwrap_or(0);
    // What follows keeps flowing: `now` samples from three later scrapes arrive.
    let samples = accepted_when(&rx, "3 later scrapes of now", |s| {
        matching(s, &[("__name__", "now")])
            .iter()
            .filter(|x| x.timestamp_ms > last_refused)
            .count()
            >= 3
    })
    .await;
    let resent: Vec<_> = samples
        .iter()
        .filter(|s| refused.contains(&(s.labels.clone(), s.timestamp_ms)))
        .collect();
    assert!(resent.is_empty(), "sent again after a 400: {resent:?}");
    assert_eq!(rx.requests().iter().filter(|r| r.status == 400).count(), 1);
    let n = rejected.sample_count() as f64;
    support::eventually_async(WAIT, "the refused samples counted as failed", || async {
        agent
            .metric(
                "scrapelet_remote_samples_failed_total",
                &[("endpoint", ENDPOINT), ("reason", "rejected")],
            )
            .await
            == Some(n)
    })
    .await;
    agent.agent.shutdown().await;
}
