//! Crash tests with the built binary: `kill -9`, and aborts at exact steps (failpoints) in the
//! middle of a segment rotation and of a cursor write. Every sample appended before the crash
//! must arrive after the restart, in order per series, with duplicates only as exact repeats
//! of a series' latest sample (what Prometheus accepts) and no more than the restarted
//! process counts as resent.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::binary::{Process, churning_target, judge, up_timestamps, write_config};
use support::receiver::{Receiver, Reply};
use support::target::Target;

const WAIT: Duration = Duration::from_secs(60);
/// Series the target serves (each scrape adds 5 report series).
const SERIES: usize = 150;

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn config(rx: &Receiver, target: &Target) -> String {
    format!(
        "global:
  scrape_interval: 100ms
  scrape_timeout: 90ms
agent:
  buffer:
    max_size: 64MiB
    fsync_interval: 100ms
remote_write:
  - url: {}
    name: rx
    queue_config:
      batch_send_deadline: 50ms
      min_backoff: 10ms
      max_backoff: 100ms
      max_samples_per_send: 400
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ['{}']
",
        rx.url(),
        target.address()
    )
}

/// The checks every crash test ends with: every scrape of the first run (but the one in
/// flight at the crash) arrived whole, nothing Prometheus would refuse arrived, and
/// duplicates are bounded by what the second run counted as resent.
async fn check_after_restart(
    rx: &Receiver,
    first_run_scrapes: usize,
    crash_ms: i64,
    second: &Process,
) {
    // A scrape of the second run arrives after everything the buffer held before it.
    rx.wait_until(
        WAIT,
        "the first run's scrapes, then one of the second",
        |r| {
            let ts = up_timestamps(&r.accepted(), "app");
            ts.iter().filter(|t| **t < crash_ms).count() + 1 >= first_run_scrapes
                && ts.iter().any(|t| *t > crash_ms)
        },
    )
    .await;
    let accepted = rx.accepted();
    let verdict = judge(&accepted);
    assert!(
        verdict.rejected.is_empty(),
        "Prometheus would refuse {} samples, e.g. {:?}",
        verdict.rejected.len(),
        verdict.rejected.first()
    );
    // Whole batches: every scrape of the first run arrived with all its samples.
    for ts in up_timestamps(&accepted, "app")
        .into_iter()
        .filter(|t| *t < crash_ms)
    {
        let mut series: Vec<_> = accepted
            .iter()
            .filter(|s| s.timestamp_ms == ts)
            .map(|s| s.labels.clone())
            .collect();
        series.sort();
        series.dedup();
        assert_eq!(series.len(), SERIES + 5, "scrape at {ts}");
    }
    let resent = second
        .metric_or_zero(
            "scrapelet_remote_samples_resent_total",
            &[("endpoint", "rx")],
        )
        .await;
    assert!(
        verdict.duplicates as f64 <= resent,
        "{} duplicates, {resent} counted as resent",
        verdict.duplicates
    );
}

/// With the receiver answering 503: runs the binary until the target has served `scrapes`
/// scrapes, kills it with SIGKILL, brings the receiver back, restarts the binary on the same
/// data directory and checks that every scrape before the kill arrives
/// ([`check_after_restart`]). Returns the receiver, the second run and the target with its
/// stop flag (still serving).
async fn kill_9_with_the_receiver_down_after(scrapes: usize) -> (Receiver, Process, Churning) {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let (target, stop) = churning_target(SERIES).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), &config(&rx, &target));
    let data = dir.path().join("data");
    let first = Process::start(&cfg, &data, &[]);
    assert!(first.addr.is_some(), "{}", first.logs());
    target.wait_for_requests(scrapes, WAIT).await;
    first.kill9();
    let scrapes = target.requests();
    let crash_ms = now_ms();
    rx.set_default(Reply::ok());
    let second = Process::start(&cfg, &data, &[]);
    assert!(second.addr.is_some(), "{}", second.logs());
    check_after_restart(&rx, scrapes, crash_ms, &second).await;
    (rx, second, (target, stop))
}

/// A churning target and the flag that stops its churn.
type Churning = (
    std::sync::Arc<Target>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_the_receiver_down_loses_nothing_appended() {
    let (rx, second, (_target, stop)) = kill_9_with_the_receiver_down_after(30).await;
    let dups = judge(&rx.accepted()).duplicates;
    assert_eq!(dups, 0, "the receiver was down: nothing was in doubt");
    stop.store(true, Ordering::Relaxed);
    assert!(second.terminate(WAIT).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_in_the_middle_of_a_segment_rotation_loses_nothing_appended() {
    // The first rotation is the one at start-up; the third is one the scrapes cause.
    for failpoint in [
        "buffer-rotate-start:3",
        "buffer-rotate-sealed:3",
        "buffer-rotate-created:3",
    ] {
        let rx = Receiver::start().await;
        rx.set_default(Reply::status(503));
        let (target, stop) = churning_target(SERIES).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = config(&rx, &target).replace("max_size: 64MiB", "max_size: 256KiB");
        let cfg = write_config(dir.path(), &yaml);
        let data = dir.path().join("data");

        let mut first = Process::start(&cfg, &data, &[("SCRAPELET_FAILPOINT", failpoint)]);
        let status = first.wait_exit(WAIT);
        assert!(
            status.is_some_and(|s| !s.success()),
            "{failpoint}: {status:?}\n{}",
            first.logs()
        );
        assert!(first.logs().contains("failpoint"), "{}", first.logs());
        let scrapes = target.requests();
        let crash_ms = now_ms();
        drop(first);

        rx.set_default(Reply::ok());
        let second = Process::start(&cfg, &data, &[]);
        assert!(second.addr.is_some(), "{failpoint}: {}", second.logs());
        check_after_restart(&rx, scrapes, crash_ms, &second).await;
        assert_eq!(judge(&rx.accepted()).duplicates, 0, "{failpoint}");
        stop.store(true, Ordering::Relaxed);
        second.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_in_the_middle_of_a_cursor_write_resends_only_exact_duplicates() {
    for failpoint in ["cursor-commit-before-write:15", "cursor-commit-partial:15"] {
        let rx = Receiver::start().await;
        let (target, stop) = churning_target(SERIES).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = write_config(dir.path(), &config(&rx, &target));
        let data = dir.path().join("data");

        let mut first = Process::start(&cfg, &data, &[("SCRAPELET_FAILPOINT", failpoint)]);
        let status = first.wait_exit(WAIT);
        assert!(
            status.is_some_and(|s| !s.success()),
            "{failpoint}: {status:?}\n{}",
            first.logs()
        );
        let scrapes = target.requests();
        let crash_ms = now_ms();
        let before = rx.accepted_count();
        assert!(
            before > 0,
            "{failpoint}: the receiver got data before the crash"
        );
        drop(first);

        let second = Process::start(&cfg, &data, &[]);
        assert!(second.addr.is_some(), "{failpoint}: {}", second.logs());
        check_after_restart(&rx, scrapes, crash_ms, &second).await;
        // The request whose success the crash kept from being recorded was sent again.
        let dups = judge(&rx.accepted()).duplicates;
        assert!(dups > 0, "{failpoint}: nothing was resent");
        assert!(
            dups <= 400,
            "{failpoint}: at most one request (max_samples_per_send)"
        );
        stop.store(true, Ordering::Relaxed);
        second.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_before_any_progress_was_saved_loses_nothing() {
    // Killed within the first scrapes: the endpoint's cursor file is still the one written at
    // start-up (no shard cursors yet); the next run must start there, not at its own "now".
    let (_rx, second, (_target, stop)) = kill_9_with_the_receiver_down_after(3).await;
    stop.store(true, Ordering::Relaxed);
    second.kill9();
}
