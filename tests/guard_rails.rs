//! Guard rails at the edge, through the built binary: a target whose request counter gains
//! 500 new `user_agent` values per scrape, beside 50 steady series, scraped by three jobs that
//! each set one limit (`series_limit`, `series_limit_per_metric`, `label_limit` with
//! `label_limit_keep`), and a second, steady target. No limit fails a scrape: `up` stays 1,
//! the steady series arrive in every scrape, what is dropped is counted, trimmed series are
//! merged exactly, the targets API and the log name `user_agent`, `/api/v1/status/tsdb` ranks
//! it first, and a reload that leaves the job unchanged keeps its series limit.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use support::binary::{Process, judge, up_timestamps, write_config};
use support::receiver::{ReceivedSample, Receiver};
use support::target::{Exposition, Target};

const WAIT: Duration = Duration::from_secs(60);
/// New `user_agent` values per request of the exploding target.
const NEW_PER_SCRAPE: usize = 500;
/// The body stops growing after this many requests (10,000 request series).
const MAX_GENERATION: usize = 20;
const STEADY: usize = 50;
const SERIES_LIMIT: usize = 300;
const PER_METRIC_LIMIT: usize = 200;

/// The exploding target's body for its `n`th request.
fn exploding(n: usize) -> String {
    let generation = n.min(MAX_GENERATION);
    let mut body =
        format!("# TYPE generation gauge\ngeneration {generation}\n# TYPE steady gauge\n");
    for i in 0..STEADY {
        body.push_str(&format!("steady{{i=\"{i}\"}} {i}\n"));
    }
    body.push_str("# TYPE http_requests_total counter\n");
    for k in 0..generation * NEW_PER_SCRAPE {
        body.push_str(&format!(
            "http_requests_total{{method=\"GET\",code=\"200\",user_agent=\"ua-{k}\"}} 1\n"
        ));
    }
    body
}

fn config(rx: &str, exploding: &str, steady: &str, steady_interval: &str) -> String {
    format!(
        "global:
  scrape_interval: 1s
  scrape_timeout: 1s
remote_write:
  - url: {rx}
    name: rx
    queue_config:
      batch_send_deadline: 50ms
scrape_configs:
  - job_name: limited
    series_limit: {SERIES_LIMIT}
    static_configs:
      - targets: ['{exploding}']
  - job_name: per_metric
    series_limit_per_metric: {PER_METRIC_LIMIT}
    static_configs:
      - targets: ['{exploding}']
  - job_name: trimmed
    label_limit: 5
    label_limit_keep: [method]
    static_configs:
      - targets: ['{exploding}']
  - job_name: other
    scrape_interval: {steady_interval}
    static_configs:
      - targets: ['{steady}']
"
    )
}

fn of_job<'a>(samples: &'a [ReceivedSample], job: &str, name: &str) -> Vec<&'a ReceivedSample> {
    samples
        .iter()
        .filter(|s| s.label("job") == Some(job) && s.name() == Some(name))
        .collect()
}

/// Distinct label sets of `name` in `job`.
fn distinct(samples: &[ReceivedSample], job: &str, name: &str) -> BTreeSet<Vec<(String, String)>> {
    of_job(samples, job, name)
        .into_iter()
        .map(|s| s.labels.clone())
        .collect()
}

/// Asserts that every scrape of `job` (by its `up` samples) carried all steady series and
/// that `up` was always 1.
fn steady_in_every_scrape(samples: &[ReceivedSample], job: &str) {
    let ups = of_job(samples, job, "up");
    assert!(
        ups.iter().all(|u| u.value == 1.0),
        "{job}: a limit failed a scrape"
    );
    let scrapes = up_timestamps(samples, job);
    assert!(scrapes.len() >= 5, "{job}: {} scrapes", scrapes.len());
    let mut per_ts: HashMap<i64, usize> = HashMap::new();
    for s in of_job(samples, job, "steady") {
        *per_ts.entry(s.timestamp_ms).or_default() += 1;
    }
    for ts in &scrapes {
        assert_eq!(
            per_ts.get(ts).copied().unwrap_or(0),
            STEADY,
            "{job}: the steady series of the scrape at {ts}"
        );
    }
}

/// The latest value of `name` in `job`.
fn latest(samples: &[ReceivedSample], job: &str, name: &str) -> f64 {
    of_job(samples, job, name)
        .into_iter()
        .max_by_key(|s| s.timestamp_ms)
        .map_or(f64::NAN, |s| s.value)
}

async fn json(url: &str) -> serde_json::Value {
    let (status, body) = support::agent::get(url).await;
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_stops_only_the_new_series_and_names_the_label() {
    let hostile = Target::start_with(exploding).await;
    let steady_body: String = (0..STEADY)
        .map(|i| format!("steady{{i=\"{i}\"}} {i}\n"))
        .collect();
    let steady = Target::start(Exposition::text(&steady_body)).await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = write_config(
        dir.path(),
        &config(&rx.url(), &hostile.address(), &steady.address(), "1s"),
    );
    let agent = Process::start(&cfg, &dir.path().join("data"), &[]);
    assert!(agent.addr.is_some(), "{}", agent.logs());

    rx.wait_until(WAIT, "eight scrapes of every job", |r| {
        let accepted = r.accepted();
        ["limited", "per_metric", "trimmed", "other"]
            .iter()
            .all(|job| up_timestamps(&accepted, job).len() >= 8)
    })
    .await;
    let before = rx.accepted();

    // series_limit: at most 300 series of the target, the steady ones among them.
    let limited_requests = distinct(&before, "limited", "http_requests_total");
    assert!(!limited_requests.is_empty());
    assert_eq!(
        limited_requests.len(),
        SERIES_LIMIT - STEADY - 1,
        "request series under series_limit {SERIES_LIMIT} (beside the steady ones and `generation`)"
    );
    steady_in_every_scrape(&before, "limited");
    assert_eq!(
        latest(&before, "limited", "scrape_series_limit"),
        SERIES_LIMIT as f64
    );
    assert_eq!(
        latest(&before, "limited", "scrape_series_current"),
        SERIES_LIMIT as f64
    );
    assert!(latest(&before, "limited", "scrape_series_limit_samples_dropped") > 0.0);

    // series_limit_per_metric: the request family alone is held to 200.
    let per_metric = distinct(&before, "per_metric", "http_requests_total");
    assert_eq!(per_metric.len(), PER_METRIC_LIMIT);
    steady_in_every_scrape(&before, "per_metric");
    assert!(
        of_job(&before, "per_metric", "scrape_series_limit").is_empty(),
        "only with series_limit"
    );

    // label_limit_keep: one request series without user_agent, its value the exact sum.
    let trimmed = distinct(&before, "trimmed", "http_requests_total");
    assert_eq!(trimmed.len(), 1, "{trimmed:?}");
    let labels: Vec<&str> = trimmed
        .iter()
        .next()
        .map(|l| l.iter().map(|(n, _)| n.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(labels, ["__name__", "code", "instance", "job", "method"]);
    let generation: HashMap<i64, f64> = of_job(&before, "trimmed", "generation")
        .into_iter()
        .map(|s| (s.timestamp_ms, s.value))
        .collect();
    let merged = of_job(&before, "trimmed", "http_requests_total");
    assert!(merged.len() >= 5);
    for s in merged {
        let g = generation.get(&s.timestamp_ms).copied().unwrap_or(f64::NAN);
        assert_eq!(
            s.value,
            g * NEW_PER_SCRAPE as f64,
            "merged value at {}",
            s.timestamp_ms
        );
    }
    steady_in_every_scrape(&before, "trimmed");
    steady_in_every_scrape(&before, "other");

    // Nothing twice at one timestamp, nothing out of order, no marker for a series never sent.
    let verdict = judge(&before);
    assert_eq!(verdict.duplicates, 0);
    assert!(verdict.rejected.is_empty(), "{:?}", verdict.rejected);
    let sent: BTreeSet<&Vec<(String, String)>> = before
        .iter()
        .filter(|s| s.value.to_bits() != 0x7ff0_0000_0000_0002)
        .map(|s| &s.labels)
        .collect();
    for s in before
        .iter()
        .filter(|s| s.value.to_bits() == 0x7ff0_0000_0000_0002)
    {
        assert!(
            sent.contains(&s.labels),
            "a stale marker for a series never sent: {:?}",
            s.labels
        );
    }

    // Counted, per job and reason.
    for (job, reason) in [
        ("limited", "series_limit"),
        ("per_metric", "series_limit_per_metric"),
        ("trimmed", "label_limit"),
    ] {
        let n = agent
            .metric_or_zero(
                "scrapelet_target_series_limited_samples_total",
                &[("job", job), ("reason", reason)],
            )
            .await;
        assert!(n > 0.0, "{job}/{reason}: {n}");
    }
    let merges = agent
        .metric_or_zero(
            "scrapelet_target_samples_merged_total",
            &[("job", "trimmed")],
        )
        .await;
    assert!(merges > 0.0);

    // Which label: the targets API, the page and the log say it.
    let targets = json(&format!("{}/api/v1/targets", agent.base())).await;
    let notices = |job: &str| -> String {
        targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["scrapePool"] == job)
            .map(|t| t["seriesLimits"].to_string())
            .collect()
    };
    assert!(
        notices("limited")
            .contains("series_limit exceeded by http_requests_total: label user_agent has"),
        "{}",
        notices("limited")
    );
    assert!(
        notices("per_metric").contains(
            "series_limit_per_metric exceeded by http_requests_total: label user_agent has"
        ),
        "{}",
        notices("per_metric")
    );
    assert!(
        notices("trimmed").contains(
            "label_limit exceeded by http_requests_total (labels trimmed): label user_agent has"
        ),
        "{}",
        notices("trimmed")
    );
    assert_eq!(notices("other"), "[]");
    let (_, page) = support::agent::get(&format!("{}/targets", agent.base())).await;
    assert!(page.contains("label user_agent has"), "{page}");
    let logs = agent.logs();
    assert!(
        logs.contains("msg=\"series limited\"") && logs.contains("label=user_agent"),
        "{logs}"
    );

    // The node's cardinality: user_agent first; narrowed to one job.
    let tsdb = json(&format!("{}/api/v1/status/tsdb", agent.base())).await;
    assert_eq!(
        tsdb["data"]["labelValueCountByLabelName"][0]["name"], "user_agent",
        "{tsdb}"
    );
    assert_eq!(
        tsdb["data"]["seriesCountByMetricName"][0]["name"], "http_requests_total",
        "{tsdb}"
    );
    let other = json(&format!(
        "{}/api/v1/status/tsdb?job=other&limit=3",
        agent.base()
    ))
    .await;
    assert_eq!(other["data"]["headStats"]["numSeries"], STEADY, "{other}");
    assert_eq!(
        other["data"]["seriesCountByLabelValuePair"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let (status, _) =
        support::agent::get(&format!("{}/api/v1/status/tsdb?limit=x", agent.base())).await;
    assert_eq!(status, 400);

    // A reload that changes another job keeps this job's limiter: no new series get in.
    let admitted_before = limited_requests;
    std::fs::write(
        &cfg,
        config(&rx.url(), &hostile.address(), &steady.address(), "2s"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    agent.signal("HUP");
    let deadline = tokio::time::Instant::now() + WAIT;
    while agent
        .metric_or_zero("scrapelet_config_reloads_total", &[("result", "success")])
        .await
        < 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload: {}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scrapes_then = up_timestamps(&rx.accepted(), "limited").len();
    rx.wait_until(WAIT, "five scrapes of `limited` after the reload", |r| {
        up_timestamps(&r.accepted(), "limited").len() >= scrapes_then + 5
    })
    .await;
    let after = rx.accepted();
    assert_eq!(
        distinct(&after, "limited", "http_requests_total"),
        admitted_before,
        "the same series, no new ones, after the reload"
    );
    steady_in_every_scrape(&after, "limited");
    agent.kill9();
}
