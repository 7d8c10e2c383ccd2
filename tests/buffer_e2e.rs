//! Crash tests of the write-ahead buffer against a real Prometheus 2.42 receiver: after a
//! `kill -9` in the middle of a stream, an abort in the middle of a segment rotation, and an
//! abort between a request's success and its cursor's write, Prometheus must hold every scrape
//! of the first run and must never have answered or logged "out of order" (or anything else
//! but 2xx) — the resent request repeats only each series' latest sample, which it accepts.
//!
//! `cargo test --features e2e --test buffer_e2e`

#![cfg(feature = "e2e")]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::binary::{Process, churning_target, now_ms, write_config};
use support::procs::Prometheus;

const WAIT: Duration = Duration::from_secs(60);

fn config(write_url: &str, target: &str, max_size: &str) -> String {
    format!(
        "global:\n  scrape_interval: 100ms\n  scrape_timeout: 90ms\nagent:\n  buffer:\n    max_size: {max_size}\nremote_write:\n  - url: {write_url}\n    name: prom\n    queue_config:\n      batch_send_deadline: 50ms\n      min_backoff: 10ms\n      max_backoff: 100ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// Scrapes Prometheus holds for job `app` with timestamps before `before_ms`.
async fn stored_scrapes(prom: &Prometheus, before_ms: i64) -> usize {
    let series = prom.query_samples("up{job=\"app\"}[1h]").await;
    series
        .iter()
        .flat_map(|(_, samples)| samples.iter())
        .filter(|(t, _)| *t < before_ms)
        .count()
}

/// Runs the first process until `crash` ends it, restarts, and checks Prometheus.
async fn crash_and_check(env: &[(&str, &str)], max_size: &str, kill_after_scrapes: usize) {
    let prom = Prometheus::start().await;
    let (target, stop) = churning_target(150).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &config(&prom.write_url(), &target.address(), max_size),
    );
    let data = dir.path().join("data");
    let mut first = Process::start(&cfg, &data, env);
    if env.is_empty() {
        target.wait_for_requests(kill_after_scrapes, WAIT).await;
        first.kill9();
    } else {
        let status = first.wait_exit(WAIT);
        assert!(
            status.is_some_and(|s| !s.success()),
            "{env:?}: {status:?}\n{}",
            first.logs()
        );
        drop(first);
    }
    let scrapes = target.requests();
    let crash_ms = now_ms();
    let second = Process::start(&cfg, &data, &[]);
    assert!(second.addr.is_some(), "{}", second.logs());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = stored_scrapes(&prom, crash_ms).await;
        let after = stored_scrapes(&prom, i64::MAX).await - stored;
        if stored + 1 >= scrapes && after > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{env:?}: prometheus holds {stored} of {scrapes} scrapes of the first run"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    prom.assert_clean().await;
    stop.store(true, Ordering::Relaxed);
    second.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_stream_loses_nothing_and_prometheus_accepts_the_rest() {
    crash_and_check(&[], "64MiB", 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_between_a_request_and_its_cursor_write_is_accepted_by_prometheus() {
    for failpoint in ["cursor-commit-before-write:12", "cursor-commit-partial:12"] {
        crash_and_check(&[("SCRAPELET_FAILPOINT", failpoint)], "64MiB", 0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_in_the_middle_of_a_segment_rotation_is_accepted_by_prometheus() {
    crash_and_check(
        &[("SCRAPELET_FAILPOINT", "buffer-rotate-sealed:3")],
        "256KiB",
        0,
    )
    .await;
}
