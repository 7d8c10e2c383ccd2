//! The whole pipeline in-process: targets served by the test -> the real agent -> a
//! remote-write receiver served by the test, all over real HTTP on 127.0.0.1.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use scrapelet::append::is_stale_nan;
use support::agent::TestAgent;
use support::receiver::{ReceivedSample, Receiver};
use support::target::{Exposition, Target};

const WAIT: Duration = Duration::from_secs(20);

/// A config with one job per (name, address), 1s interval, sending to `receiver`.
fn config(receiver: &Receiver, jobs: &[(&str, String)], extra_job_yaml: &str) -> String {
    let mut yaml = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\n  external_labels:\n    cluster: test\nremote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 100ms\n      min_backoff: 10ms\n      max_backoff: 50ms\nscrape_configs:\n",
        receiver.url()
    );
    for (job, addr) in jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n{extra_job_yaml}"
        ));
    }
    yaml
}

/// Waits until the accepted samples satisfy `done`; returns them.
async fn samples_when(
    rx: &Receiver,
    what: &str,
    done: impl Fn(&[ReceivedSample]) -> bool,
) -> Vec<ReceivedSample> {
    rx.wait_until(WAIT, what, |r| done(&r.accepted())).await;
    rx.accepted()
}

fn labels_of(s: &ReceivedSample) -> BTreeMap<&str, &str> {
    s.labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn named<'a>(samples: &'a [ReceivedSample], name: &str, job: &str) -> Vec<&'a ReceivedSample> {
    samples
        .iter()
        .filter(|s| {
            let l = labels_of(s);
            l.get("__name__") == Some(&name) && l.get("job") == Some(&job)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_samples_reach_the_receiver_with_target_and_external_labels() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text(
        "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{method=\"get\",code=\"200\"} 1027\nhttp_requests_total{method=\"post\",code=\"500\",empty=\"\"} 3\ntemperature_celsius -4.5e1\n",
    ))
    .await;
    let agent = TestAgent::start(&config(&rx, &[("app", target.address())], "")).await;

    let samples = samples_when(&rx, "app series and up", |s| {
        !named(s, "http_requests_total", "app").is_empty()
            && !named(s, "up", "app").is_empty()
            && !named(s, "scrape_series_added", "app").is_empty()
    })
    .await;
    let get = named(&samples, "http_requests_total", "app")
        .into_iter()
        .find(|s| labels_of(s).get("method") == Some(&"get"))
        .expect("get series");
    let instance = target.address();
    assert_eq!(
        get.labels,
        vec![
            ("__name__".to_owned(), "http_requests_total".to_owned()),
            ("cluster".to_owned(), "test".to_owned()),
            ("code".to_owned(), "200".to_owned()),
            ("instance".to_owned(), instance.clone()),
            ("job".to_owned(), "app".to_owned()),
            ("method".to_owned(), "get".to_owned()),
        ],
        "sorted, external labels added, job and instance attached"
    );
    assert_eq!(get.value, 1027.0);
    let post = named(&samples, "http_requests_total", "app")
        .into_iter()
        .find(|s| labels_of(s).get("method") == Some(&"post"))
        .expect("post series");
    assert!(
        !labels_of(post).contains_key("empty"),
        "empty labels are dropped"
    );
    let temp = named(&samples, "temperature_celsius", "app");
    assert_eq!(temp[0].value, -45.0);
    assert_eq!(named(&samples, "up", "app")[0].value, 1.0);
    assert_eq!(
        named(&samples, "scrape_samples_scraped", "app")[0].value,
        3.0
    );
    assert_eq!(
        named(&samples, "scrape_samples_post_metric_relabeling", "app")[0].value,
        3.0
    );
    assert_eq!(named(&samples, "scrape_series_added", "app")[0].value, 3.0);

    let headers = target.last_headers();
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        accept.starts_with("application/openmetrics-text"),
        "{accept}"
    );
    assert!(accept.contains("text/plain;version=0.0.4"), "{accept}");
    assert_eq!(
        headers
            .get("x-prometheus-scrape-timeout-seconds")
            .map(|v| v.as_bytes()),
        Some(&b"0.5"[..])
    );
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_garbage_or_huge_target_fails_alone() {
    let rx = Receiver::start().await;
    let good = Target::start(Exposition::text("good_metric 1\n")).await;
    let hung = Target::start(Exposition {
        hang: true,
        ..Exposition::text("x 1\n")
    })
    .await;
    let garbage = Target::start(Exposition::text("ok 1\nthis is not { an exposition\n")).await;
    let huge = Target::start(Exposition::text(
        &"big_metric_name_padding_padding 1\n".repeat(4000),
    ))
    .await;
    let cfg = config(
        &rx,
        &[
            ("good", good.address()),
            ("hung", hung.address()),
            ("garbage", garbage.address()),
            ("huge", huge.address()),
        ],
        "    body_size_limit: 64KiB\n",
    );
    let agent = TestAgent::start(&cfg).await;

    // Every bad target reports up == 0 while the good one keeps its schedule.
    let samples = samples_when(&rx, "up for every job", |s| {
        ["hung", "garbage", "huge"]
            .iter()
            .all(|j| named(s, "up", j).iter().any(|u| u.value == 0.0))
            && named(s, "good_metric", "good").len() >= 3
    })
    .await;
    assert!(named(&samples, "up", "good").iter().all(|u| u.value == 1.0));
    assert!(
        named(&samples, "ok", "garbage").is_empty(),
        "a failed scrape sends none of its samples"
    );

    let (status, body) = agent.get("/api/v1/targets").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let targets = json["data"]["activeTargets"].as_array().expect("active");
    let error_of = |job: &str| {
        targets
            .iter()
            .find(|t| t["scrapePool"] == job)
            .map(|t| {
                (
                    t["health"].as_str().unwrap_or("").to_owned(),
                    t["lastError"].as_str().unwrap_or("").to_owned(),
                )
            })
            .unwrap_or_default()
    };
    assert_eq!(error_of("good"), ("up".to_owned(), String::new()));
    let (health, err) = error_of("hung");
    assert_eq!(health, "down");
    assert!(err.contains("timed out"), "{err}");
    let (_, err) = error_of("garbage");
    assert!(err.contains("line 2"), "{err}");
    let (_, err) = error_of("huge");
    assert!(err.contains("body size limit"), "{err}");

    let failures = agent
        .metric(
            "scrapelet_scrape_failures_total",
            &[("job", "hung"), ("reason", "timeout")],
        )
        .await
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "timeouts counted: {failures}");
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_series_and_failed_scrapes_send_staleness_markers() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text("a 1\nb 2\n")).await;
    let agent = TestAgent::start(&config(&rx, &[("app", target.address())], "")).await;
    samples_when(&rx, "b scraped", |s| !named(s, "b", "app").is_empty()).await;

    target.set_body("a 1\n");
    let samples = samples_when(&rx, "b marked stale", |s| {
        named(s, "b", "app").iter().any(|x| is_stale_nan(x.value))
    })
    .await;
    let stale = named(&samples, "b", "app")
        .into_iter()
        .find(|x| is_stale_nan(x.value))
        .expect("stale");
    assert_eq!(stale.value.to_bits(), 0x7ff0_0000_0000_0002);
    assert!(
        named(&samples, "a", "app")
            .iter()
            .all(|x| !is_stale_nan(x.value))
    );

    target.set(Exposition {
        status: 500,
        ..Exposition::text("")
    });
    samples_when(&rx, "a marked stale after a failed scrape", |s| {
        named(s, "a", "app").iter().any(|x| is_stale_nan(x.value))
    })
    .await;
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_openmetrics_and_honor_labels() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition {
        gzip: true,
        ..Exposition::openmetrics(
            "# TYPE jobs_total counter\njobs_total{job=\"batch\",instance=\"x\"} 7 1700000000.5\n# EOF\n",
        )
    })
    .await;
    let honored = config(
        &rx,
        &[("honored", target.address())],
        "    honor_labels: true\n",
    );
    let agent = TestAgent::start(&honored).await;
    let samples = samples_when(&rx, "jobs_total", |s| {
        s.iter()
            .any(|x| labels_of(x).get("__name__") == Some(&"jobs_total"))
    })
    .await;
    let s = samples
        .iter()
        .find(|x| labels_of(x).get("__name__") == Some(&"jobs_total"))
        .expect("sample");
    assert_eq!(labels_of(s).get("job"), Some(&"batch"));
    assert_eq!(labels_of(s).get("instance"), Some(&"x"));
    assert_eq!(
        s.timestamp_ms, 1_700_000_000_500,
        "OpenMetrics seconds honoured as ms"
    );
    assert_eq!(
        target
            .last_headers()
            .get("accept-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    agent.agent.shutdown().await;

    let rx = Receiver::start().await;
    let agent = TestAgent::start(&config(&rx, &[("plain", target.address())], "")).await;
    let samples = samples_when(&rx, "jobs_total", |s| {
        s.iter()
            .any(|x| labels_of(x).get("__name__") == Some(&"jobs_total"))
    })
    .await;
    let s = samples
        .iter()
        .find(|x| labels_of(x).get("__name__") == Some(&"jobs_total"))
        .expect("sample");
    assert_eq!(labels_of(s).get("job"), Some(&"plain"));
    assert_eq!(labels_of(s).get("exported_job"), Some(&"batch"));
    assert_eq!(labels_of(s).get("exported_instance"), Some(&"x"));
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_self_metrics() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text("m 1\n")).await;
    let agent = TestAgent::start(&config(&rx, &[("app", target.address())], "")).await;
    assert_eq!(agent.get("/-/healthy").await.0, 200);
    assert_eq!(agent.get("/-/ready").await.0, 200);
    assert_eq!(agent.get("/nope").await.0, 404);
    samples_when(&rx, "m", |s| !named(s, "m", "app").is_empty()).await;
    support::eventually_async(WAIT, "scrape metrics", || async {
        agent
            .metric("scrapelet_scrapes_total", &[("job", "app")])
            .await
            .unwrap_or(0.0)
            >= 1.0
            && agent
                .metric("scrapelet_targets", &[("job", "app"), ("health", "up")])
                .await
                == Some(1.0)
            && agent
                .metric("scrapelet_remote_samples_sent_total", &[])
                .await
                .unwrap_or(0.0)
                >= 1.0
    })
    .await;
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_page_and_dropped_targets_with_a_cap() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text("m 1\n")).await;
    let cfg = format!(
        "{}  - job_name: filtered\n    keep_dropped_targets: 1\n    static_configs:\n      - targets: ['a:1', 'b:2', 'c:3']\n        labels:\n          team: '<ops>'\n    relabel_configs:\n      - source_labels: [__address__]\n        regex: '[abc]:.*'\n        action: drop\n",
        config(&rx, &[("app", target.address())], "")
    );
    let agent = TestAgent::start(&cfg).await;
    samples_when(&rx, "m", |s| !named(s, "m", "app").is_empty()).await;

    let (status, page) = agent.get("/targets").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("http://{}/metrics", target.address())),
        "{page}"
    );
    assert!(page.contains("app (1/1 up)"), "{page}");
    assert!(page.contains("3 dropped targets (1 shown"), "{page}");
    assert!(
        page.contains("&lt;ops&gt;"),
        "label values are escaped: {page}"
    );
    assert!(!page.contains("<ops>"), "{page}");

    let (_, body) = agent.get("/api/v1/targets?state=dropped").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        json["data"]["activeTargets"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(
        json["data"]["droppedTargets"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(json["data"]["droppedTargetCounts"]["filtered"], 3);
    assert_eq!(json["data"]["droppedTargets"][0]["reason"], "relabeling");
    assert_eq!(
        agent
            .metric("scrapelet_targets_dropped", &[("job", "filtered")])
            .await,
        Some(3.0)
    );
    agent.agent.shutdown().await;
}
