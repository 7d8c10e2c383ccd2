//! `RemoteWrite::reload` over the write-ahead buffer, against receivers on 127.0.0.1: only
//! what changed restarts, a removed endpoint releases its buffer, an added one starts at
//! "now", a changed one resumes exactly where it stopped, and a bad reload changes nothing.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use scrapelet::append::{Appender, Batch, Sample, SeriesRef};
use scrapelet::config::{BufferConfig, Config, GlobalConfig, QueueConfig, RemoteWriteConfig};
use scrapelet::labels::Labels;
use scrapelet::remote::{ReloadSummary, RemoteWrite};
use scrapelet::wal::Wal;
use support::receiver::{ReceivedSample, Receiver, Reply};

const WAIT: Duration = Duration::from_secs(30);

/// Series per batch.
const SERIES: u64 = 20;

/// Remote write over a buffer in a temporary directory.
struct Harness {
    remote: RemoteWrite,
    appender: Arc<dyn Appender>,
    registry: Registry,
    dir: tempfile::TempDir,
}

impl Harness {
    fn start(config: &Config, max_size: u64) -> Harness {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut registry = Registry::default();
        let names: Vec<&str> = config
            .remote_write
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        let buffer = BufferConfig {
            max_size,
            ..Default::default()
        };
        let wal = Wal::open(dir.path(), &buffer, &names, &mut registry)
            .unwrap_or_else(|e| panic!("open the buffer: {e}"));
        let remote = RemoteWrite::with_wal(wal, config, false, &mut registry)
            .unwrap_or_else(|e| panic!("start remote write: {e}"));
        Harness {
            appender: remote.appender(),
            remote,
            registry,
            dir,
        }
    }

    /// Appends one scrape of every series at `ts`.
    fn append(&self, ts: i64) {
        self.appender.append(scrape(ts));
    }

    async fn reload(&mut self, config: &Config) -> ReloadSummary {
        self.remote
            .reload(config, false)
            .await
            .unwrap_or_else(|e| panic!("reload: {e}"))
    }

    fn queue_id(&self, index: usize) -> Option<tokio::task::Id> {
        self.remote.endpoints().nth(index).map(|(_, q)| q.id())
    }

    fn cursor_file(&self, name: &str) -> std::path::PathBuf {
        scrapelet::wal::cursor_path(&self.dir.path().join("cursors"), name)
    }

    fn segments(&self) -> usize {
        segments(&self.dir.path().join("buffer"))
    }

    fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .unwrap_or_else(|e| panic!("{e}"));
        text
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        support::metric_or_zero(&self.registry, name, labels)
    }
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0)
}

fn endpoint(name: &str, url: &str) -> RemoteWriteConfig {
    RemoteWriteConfig {
        url: url.to_owned(),
        name: name.to_owned(),
        remote_timeout: Duration::from_secs(5),
        queue_config: QueueConfig {
            max_samples_per_send: 50,
            batch_send_deadline: Duration::from_millis(20),
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn config(endpoints: Vec<RemoteWriteConfig>) -> Config {
    Config {
        remote_write: endpoints,
        ..Default::default()
    }
}

/// One scrape of every series at `ts`, defining them at `ts == 1`. Values vary so that records
/// take room in the buffer.
fn scrape(ts: i64) -> Batch {
    Batch {
        series: if ts == 1 {
            (1..=SERIES)
                .map(|id| {
                    (
                        SeriesRef(id),
                        Labels::from_pairs([("__name__", "m".to_owned()), ("id", id.to_string())]),
                    )
                })
                .collect()
        } else {
            Vec::new()
        },
        samples: (1..=SERIES)
            .map(|id| Sample {
                series: SeriesRef(id),
                timestamp_ms: ts,
                value: (ts as f64).sin() * id as f64 * 1e6,
            })
            .collect(),
        gone: Vec::new(),
    }
}

/// Timestamps per `id`, in arrival order.
fn by_series(samples: &[ReceivedSample]) -> BTreeMap<u64, Vec<i64>> {
    let mut out: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for s in samples {
        let id = s.label("id").and_then(|v| v.parse().ok()).unwrap_or(0);
        out.entry(id).or_default().push(s.timestamp_ms);
    }
    out
}

/// Whether every series reached `ts` at `rx`.
fn all_reached(rx: &Receiver, ts: i64) -> bool {
    let got = by_series(&rx.accepted());
    got.len() == SERIES as usize && got.values().all(|t| t.last() == Some(&ts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_endpoint_keeps_its_queue_and_delivers_across_the_reload() {
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    let mut h = Harness::start(&config(vec![endpoint("a", &a.url())]), 1 << 20);
    for ts in 1..=10 {
        h.append(ts);
    }
    a.wait_until(WAIT, "the first scrapes", |r| all_reached(r, 10))
        .await;
    let before = h.queue_id(0);
    let connections = a.connections();

    let summary = h
        .reload(&config(vec![
            endpoint("a", &a.url()),
            endpoint("b", &b.url()),
        ]))
        .await;
    assert_eq!(
        summary,
        ReloadSummary {
            kept: 1,
            started: 1,
            ..Default::default()
        }
    );
    assert_eq!(h.queue_id(0), before, "the same queue runs");
    for ts in 11..=20 {
        h.append(ts);
    }
    a.wait_until(WAIT, "the later scrapes", |r| all_reached(r, 20))
        .await;
    let expected: Vec<i64> = (1..=20).collect();
    for (id, got) in by_series(&a.accepted()) {
        assert_eq!(got, expected, "series {id}: everything once, in order");
    }
    assert_eq!(a.connections(), connections, "no reconnection");
    assert_eq!(
        h.metric(
            "scrapelet_remote_samples_resent_total",
            &[("endpoint", "a")]
        ),
        0.0
    );
    assert!(h.remote.shutdown(Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_endpoint_receives_only_what_is_appended_after_the_reload() {
    let a = Receiver::start().await;
    let c = Receiver::start().await;
    let mut h = Harness::start(&config(vec![endpoint("a", &a.url())]), 1 << 20);
    for ts in 1..=10 {
        h.append(ts);
    }
    a.wait_until(WAIT, "the first scrapes", |r| all_reached(r, 10))
        .await;
    let summary = h
        .reload(&config(vec![
            endpoint("a", &a.url()),
            endpoint("c", &c.url()),
        ]))
        .await;
    assert_eq!(summary.started, 1);
    assert!(h.cursor_file("c").exists(), "written before it reads");
    for ts in 11..=20 {
        h.append(ts);
    }
    c.wait_until(WAIT, "the added endpoint's scrapes", |r| all_reached(r, 20))
        .await;
    let expected: Vec<i64> = (11..=20).collect();
    let got = by_series(&c.accepted());
    assert_eq!(got.len(), SERIES as usize);
    for (id, got) in got {
        assert_eq!(got, expected, "series {id}: from the reload on");
    }
    assert!(h.remote.shutdown(Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_endpoint_deletes_its_cursor_and_releases_the_buffer() {
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    b.set_default(Reply::status(503));
    let mut h = Harness::start(
        &config(vec![endpoint("a", &a.url()), endpoint("b", &b.url())]),
        BufferConfig::MIN_SIZE,
    );
    // The endpoint that is down holds every segment since it started.
    let mut ts = 0;
    while h.segments() < 4 {
        ts += 1;
        h.append(ts);
        assert!(ts < 100_000, "no segment was added");
    }
    a.wait_until(WAIT, "a caught up", |r| all_reached(r, ts))
        .await;
    assert!(h.cursor_file("b").exists());
    assert!(h.metrics_text().contains("endpoint=\"b\""));
    let held = h.segments();

    let summary = h.reload(&config(vec![endpoint("a", &a.url())])).await;
    assert_eq!(
        summary,
        ReloadSummary {
            kept: 1,
            removed: 1,
            ..Default::default()
        }
    );
    assert!(!h.cursor_file("b").exists(), "its cursor file is deleted");
    let text = h.metrics_text();
    assert!(
        !text.contains("endpoint=\"b\""),
        "no series of b left:\n{text}"
    );
    support::eventually(WAIT, "segments no one needs deleted", || {
        h.segments() < held
    })
    .await;
    // Nothing of b comes back: its store had finished before the file was deleted.
    for _ in 0..20 {
        ts += 1;
        h.append(ts);
    }
    a.wait_until(WAIT, "a goes on", |r| all_reached(r, ts))
        .await;
    assert!(!h.cursor_file("b").exists());
    let cursor = h.cursor_file("b");
    assert!(h.remote.shutdown(Duration::from_secs(10)).await);
    assert!(!cursor.exists());
}

/// Appends one scrape every 2 ms from `from` on until told to stop; returns the last
/// timestamp appended.
fn keep_appending(
    appender: Arc<dyn Appender>,
    from: i64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let mut ts = from;
        loop {
            appender.append(scrape(ts));
            if stop.load(Ordering::Relaxed) {
                return ts;
            }
            ts += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

/// Checks what two receivers got of one endpoint that moved from the first to the second:
/// per series, each got its samples in order, together every timestamp `1..=last`; returns
/// the number of samples both got.
/// Judges the move from `first` to `second` (see [`judge_move`]) and checks that every sample
/// that reached both was counted as resent.
fn assert_duplicates_were_in_doubt(h: &Harness, first: &Receiver, second: &Receiver, last: i64) {
    let duplicates = judge_move(first, second, last);
    let resent = h.metric(
        "scrapelet_remote_samples_resent_total",
        &[("endpoint", "a")],
    );
    assert!(
        duplicates as f64 <= resent,
        "{duplicates} samples reached both, but only {resent} were in doubt"
    );
}

fn judge_move(first: &Receiver, second: &Receiver, last: i64) -> usize {
    let (one, two) = (by_series(&first.accepted()), by_series(&second.accepted()));
    let mut duplicates = 0;
    for id in 1..=SERIES {
        let (a, b) = (
            one.get(&id).cloned().unwrap_or_default(),
            two.get(&id).cloned().unwrap_or_default(),
        );
        assert!(
            a.is_sorted_by(|x, y| x < y),
            "series {id} at the first: {a:?}"
        );
        assert!(
            b.is_sorted_by(|x, y| x < y),
            "series {id} at the second: {b:?}"
        );
        let mut all: Vec<i64> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        let before = all.len();
        all.dedup();
        duplicates += before - all.len();
        let expected: Vec<i64> = (1..=last).collect();
        assert_eq!(all, expected, "series {id}: nothing lost");
        // Whatever both got is the end of the first's and the start of the second's.
        if let (Some(end), Some(start)) = (a.last(), b.first()) {
            assert!(
                start <= &(end + 1),
                "series {id}: a gap between {end} and {start}"
            );
        }
    }
    duplicates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_endpoint_resumes_exactly_where_it_stopped() {
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let mut ep = endpoint("a", &first.url());
    ep.queue_config.min_shards = 3;
    let mut h = Harness::start(&config(vec![ep.clone()]), 1 << 20);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = keep_appending(h.appender.clone(), 1, stop.clone());
    first
        .wait_until(WAIT, "some delivery", |r| r.accepted_count() > 500)
        .await;

    ep.url = second.url();
    let summary = h.reload(&config(vec![ep])).await;
    assert_eq!(
        summary,
        ReloadSummary {
            restarted: 1,
            ..Default::default()
        }
    );
    second
        .wait_until(WAIT, "delivery after the reload", |r| {
            r.accepted_count() > 500
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    let last = producer.await.unwrap_or_else(|e| panic!("{e}"));
    second
        .wait_until(WAIT, "everything", |r| all_reached(r, last))
        .await;
    assert_duplicates_were_in_doubt(&h, &first, &second, last);
    assert!(h.remote.shutdown(Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_endpoint_that_cannot_flush_is_stopped_hard_and_loses_nothing() {
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let mut ep = endpoint("a", &first.url());
    ep.queue_config.min_shards = 3;
    let mut config1 = config(vec![ep.clone()]);
    config1.global = GlobalConfig {
        external_labels: Labels::from_pairs([("cluster", "one")]),
        ..Default::default()
    };
    let mut h = Harness::start(&config1, 1 << 20);
    h.remote
        .set_reload_flush_deadline(Duration::from_millis(200));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = keep_appending(h.appender.clone(), 1, stop.clone());
    first
        .wait_until(WAIT, "some delivery", |r| r.accepted_count() > 500)
        .await;
    // The first receiver fails from now on: the queue holds what it could not send.
    first.set_default(Reply::status(503));
    let failed_at = first.requests().len();
    first
        .wait_until(WAIT, "failing requests", |r| {
            r.requests().len() > failed_at + 10
        })
        .await;

    // Another URL and other external labels (so other wire labels and shards).
    ep.url = second.url();
    let mut config2 = config(vec![ep]);
    config2.global = GlobalConfig {
        external_labels: Labels::from_pairs([("cluster", "two")]),
        ..Default::default()
    };
    let summary = h.reload(&config2).await;
    assert_eq!(summary.restarted, 1);
    second
        .wait_until(WAIT, "delivery after the reload", |r| {
            r.accepted_count() > 500
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    let last = producer.await.unwrap_or_else(|e| panic!("{e}"));
    second
        .wait_until(WAIT, "everything", |r| all_reached(r, last))
        .await;
    assert!(
        second
            .accepted()
            .iter()
            .all(|s| s.label("cluster") == Some("two")),
        "the new external labels"
    );
    assert_duplicates_were_in_doubt(&h, &first, &second, last);
    assert!(h.remote.shutdown(Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_an_invalid_endpoint_changes_nothing() {
    let a = Receiver::start().await;
    let other = Receiver::start().await;
    let mut h = Harness::start(&config(vec![endpoint("a", &a.url())]), 1 << 20);
    h.append(1);
    a.wait_until(WAIT, "the first scrape", |r| all_reached(r, 1))
        .await;
    let before = h.queue_id(0);

    // "a" changes (it would restart) and "b" cannot be built: its CA file is missing.
    let mut b = endpoint("b", "https://127.0.0.1:1/api/v1/write");
    b.http.tls_config.ca_file = Some(h.dir.path().join("missing-ca.pem"));
    let err = h
        .remote
        .reload(&config(vec![endpoint("a", &other.url()), b]), true)
        .await
        .err()
        .unwrap_or_else(|| panic!("a reload with an unreadable CA file succeeded"));
    let message = scrapelet::telemetry::error_chain(&err);
    assert!(message.contains("missing-ca.pem"), "{message}");

    assert_eq!(h.remote.endpoints().count(), 1);
    assert_eq!(h.queue_id(0), before, "a still runs, untouched");
    assert!(!h.remote.debug_output(), "the debug output did not start");
    assert!(!h.cursor_file("b").exists());
    h.append(2);
    a.wait_until(WAIT, "a goes on", |r| all_reached(r, 2)).await;
    assert_eq!(other.requests().len(), 0, "the new URL was never used");
    assert!(h.remote.shutdown(Duration::from_secs(10)).await);
}
