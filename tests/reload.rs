//! Config reload through the real agent: `POST /-/reload`, the config file changing on disk
//! (a ConfigMap-style symlink swap), and SIGHUP to the built binary. Only what changed
//! restarts; a refused config keeps the running one.

mod support;

use std::path::Path;
use std::time::Duration;

use scrapelet::append::is_stale_nan;
use support::agent::TestAgent;
use support::receiver::{ReceivedSample, Receiver};
use support::target::{Exposition, Target};

const WAIT: Duration = Duration::from_secs(20);

/// Jobs (name, address, extra YAML) scraped every 200ms, sent to `rx`.
fn config(rx: &Receiver, jobs: &[(&str, &str, &str)]) -> String {
    let mut yaml = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nremote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 50ms\n      min_backoff: 10ms\n      max_backoff: 50ms\nscrape_configs:\n",
        rx.url()
    );
    for (job, addr, extra) in jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n{extra}"
        ));
    }
    yaml
}

fn label<'a>(s: &'a ReceivedSample, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn of<'a>(samples: &'a [ReceivedSample], name: &str, job: &str) -> Vec<&'a ReceivedSample> {
    samples
        .iter()
        .filter(|s| label(s, "__name__") == Some(name) && label(s, "job") == Some(job))
        .collect()
}

async fn samples_when(
    rx: &Receiver,
    what: &str,
    done: impl Fn(&[ReceivedSample]) -> bool,
) -> Vec<ReceivedSample> {
    rx.wait_until(WAIT, what, |r| done(&r.accepted())).await;
    rx.accepted()
}

/// The reload metrics: whether the last reload succeeded, and how many had `result`.
async fn assert_reloads(agent: &TestAgent, last_ok: bool, result: &str, count: f64) {
    let last = agent
        .metric("scrapelet_config_last_reload_successful", &[])
        .await;
    assert_eq!(last, Some(if last_ok { 1.0 } else { 0.0 }));
    let total = agent
        .metric("scrapelet_config_reloads_total", &[("result", result)])
        .await;
    assert_eq!(total, Some(count), "reloads with result {result}");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_restarts_only_what_changed() {
    let rx = Receiver::start().await;
    let kept = Target::start(Exposition::text("kept_metric 1\n")).await;
    let changed = Target::start(Exposition::text("changed_metric{drop_me=\"x\"} 1\n")).await;
    let removed = Target::start(Exposition::text("removed_metric 1\n")).await;
    let added = Target::start(Exposition::text("added_metric 1\n")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scrapelet.yml");
    let (ka, ca, ra, aa) = (
        kept.address(),
        changed.address(),
        removed.address(),
        added.address(),
    );
    write(
        &path,
        &config(
            &rx,
            &[
                ("kept", &ka, ""),
                ("changed", &ca, ""),
                ("removed", &ra, ""),
            ],
        ),
    );
    let agent = TestAgent::start_file(&path, Duration::ZERO).await;
    samples_when(&rx, "every job scraped twice", |s| {
        ["kept", "changed", "removed"]
            .iter()
            .all(|j| of(s, "up", j).len() >= 2)
    })
    .await;

    let drop_label =
        "    metric_relabel_configs:\n      - regex: drop_me\n        action: labeldrop\n";
    write(
        &path,
        &config(
            &rx,
            &[
                ("kept", &ka, ""),
                ("changed", &ca, drop_label),
                ("added", &aa, ""),
            ],
        ),
    );
    let before = rx.accepted().len();
    let (status, body) = agent.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("kept=1")
            && body.contains("restarted=1")
            && body.contains("started=1")
            && body.contains("removed=1"),
        "{body}"
    );

    let samples = samples_when(&rx, "the new config at work", |s| {
        let after = &s[before.min(s.len())..];
        !of(after, "added_metric", "added").is_empty()
            && of(after, "changed_metric", "changed")
                .iter()
                .any(|x| label(x, "drop_me").is_none())
            && of(after, "removed_metric", "removed")
                .iter()
                .any(|x| is_stale_nan(x.value))
            && of(after, "up", "kept").len() >= 3
    })
    .await;
    let after = &samples[before..];
    // The unchanged job kept its loop and series cache: no series were created again.
    assert!(
        of(after, "scrape_series_added", "kept")
            .iter()
            .all(|x| x.value == 0.0),
        "kept job re-created its series: {:?}",
        of(after, "scrape_series_added", "kept")
    );
    // The restarted job's series continue: no staleness marker between the two loops.
    assert!(
        of(&samples, "up", "changed")
            .iter()
            .all(|x| !is_stale_nan(x.value)),
        "a restarted job must not mark its series stale"
    );
    assert_reloads(&agent, true, "success", 1.0).await;
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_config_keeps_the_running_one() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text("m 1\n")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scrapelet.yml");
    let good = config(&rx, &[("app", &target.address(), "")]);
    write(&path, &good);
    let agent = TestAgent::start_file(&path, Duration::ZERO).await;
    samples_when(&rx, "app scraped", |s| !of(s, "m", "app").is_empty()).await;

    write(
        &path,
        &good.replace("scrape_interval: 200ms", "scrape_interval: 200 ms"),
    );
    let (status, body) = agent.post("/-/reload").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("scrapelet.yml:2"),
        "names file and line: {body}"
    );
    assert!(
        body.contains("global.scrape_interval"),
        "names the key: {body}"
    );
    assert_eq!(
        agent
            .metric("scrapelet_config_last_reload_successful", &[])
            .await,
        Some(0.0),
        "a refused reload is shown"
    );

    // A config that parses but cannot run (an unreadable CA) is refused as well.
    let bad_tls = "    tls_config:\n      ca_file: /nonexistent/ca.pem\n";
    write(&path, &config(&rx, &[("app", &target.address(), bad_tls)]));
    let (status, body) = agent.post("/-/reload").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("/nonexistent/ca.pem"), "{body}");

    // Scraping carried on with the running config.
    let seen = rx.accepted().len();
    samples_when(&rx, "scraping after refused reloads", |s| {
        of(&s[seen.min(s.len())..], "m", "app").len() >= 2
    })
    .await;

    write(&path, &good);
    assert_eq!(agent.post("/-/reload").await.0, 200);
    assert_reloads(&agent, true, "failure", 2.0).await;
    agent.agent.shutdown().await;
}

/// A Kubernetes ConfigMap volume: `config.yml -> ..data/config.yml`, `..data -> ..v1`; an
/// update writes `..v2` and swaps `..data` atomically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_on_disk_reloads() {
    let rx = Receiver::start().await;
    let one = Target::start(Exposition::text("first 1\n")).await;
    let two = Target::start(Exposition::text("second 1\n")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let version = |name: &str, text: &str| {
        std::fs::create_dir_all(root.join(name)).expect("mkdir");
        write(&root.join(name).join("config.yml"), text);
    };
    version("..v1", &config(&rx, &[("first", &one.address(), "")]));
    std::os::unix::fs::symlink("..v1", root.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/config.yml", root.join("config.yml")).expect("symlink");
    let agent = TestAgent::start_file(&root.join("config.yml"), Duration::from_millis(100)).await;
    samples_when(&rx, "first scraped", |s| {
        !of(s, "first", "first").is_empty()
    })
    .await;

    version("..v2", &config(&rx, &[("second", &two.address(), "")]));
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).expect("symlink");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
    samples_when(&rx, "second scraped and first stale", |s| {
        !of(s, "second", "second").is_empty()
            && of(s, "first", "first")
                .iter()
                .any(|x| is_stale_nan(x.value))
    })
    .await;
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary() {
    let rx = Receiver::start().await;
    let one = Target::start(Exposition::text("first 1\n")).await;
    let two = Target::start(Exposition::text("second 1\n")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scrapelet.yml");
    write(&path, &config(&rx, &[("first", &one.address(), "")]));
    // Watching off: the reload below can only come from the signal.
    let process = support::binary::Process::start_args(
        &path,
        &dir.path().join("data"),
        &[],
        &["--config-watch-interval", "0s"],
    );
    samples_when(&rx, "first scraped", |s| {
        !of(s, "first", "first").is_empty()
    })
    .await;

    write(
        &path,
        &config(
            &rx,
            &[
                ("first", &one.address(), ""),
                ("second", &two.address(), ""),
            ],
        ),
    );
    process.signal("HUP");
    samples_when(&rx, "second scraped after SIGHUP", |s| {
        !of(s, "second", "second").is_empty()
    })
    .await;
    let logs = process.logs();
    assert!(logs.contains("msg=\"config reloaded\""), "{logs}");
    assert!(logs.contains("started=1"), "{logs}");
    process.terminate(Duration::from_secs(10));
}

/// `send_exemplars` is not implemented: setting it by a reload keeps the endpoint running
/// (nothing restarts, delivery goes on) and shows as `scrapelet_remote_setting_ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggling_send_exemplars_restarts_nothing_and_shows_it_is_ignored() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text("app_metric 1\n")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scrapelet.yml");
    let plain = config(&rx, &[("app", &target.address(), "")]);
    write(&path, &plain);
    let agent = TestAgent::start_file(&path, Duration::ZERO).await;
    samples_when(&rx, "a first scrape", |s| {
        !of(s, "app_metric", "app").is_empty()
    })
    .await;
    let ignored = [("setting", "send_exemplars")];
    assert_eq!(
        agent
            .metric("scrapelet_remote_setting_ignored", &ignored)
            .await,
        None
    );

    write(
        &path,
        &plain.replace(
            "    queue_config:\n",
            "    send_exemplars: true\n    queue_config:\n",
        ),
    );
    let (status, body) = agent.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("endpoints kept=1 started=0 restarted=0 removed=0"),
        "{body}"
    );
    assert_eq!(
        agent
            .metric("scrapelet_remote_setting_ignored", &ignored)
            .await,
        Some(1.0)
    );
    let before = rx.accepted_count();
    rx.wait_until(WAIT, "delivery going on", |r| r.accepted_count() > before)
        .await;

    write(&path, &plain);
    let (status, body) = agent.post("/-/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("endpoints kept=1 started=0"), "{body}");
    assert_eq!(
        agent
            .metric("scrapelet_remote_setting_ignored", &ignored)
            .await,
        None
    );
    agent.agent.shutdown().await;
}
