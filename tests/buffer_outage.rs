//! Outages, in-process: a receiver that answers 503 for a while and then recovers gets the
//! whole backlog in order; with a tiny cap the oldest data is dropped and counted and the
//! newest arrives; with two endpoints, the healthy one is not held back by the one that is
//! down, which catches up later.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::agent::TestAgent;
use support::binary::{buffer_test_config, churning_target, judge, now_ms, up_timestamps};
use support::receiver::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(60);

/// Waits until the agent has scraped `n` times more than now.
async fn scrapes(target: &support::target::Target, n: usize) -> usize {
    let want = target.requests() + n;
    target.wait_for_requests(want, WAIT).await;
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_built_during_an_outage_drains_in_order() {
    let rx = Receiver::start().await;
    let (target, stop) = churning_target(100).await;
    let agent = TestAgent::start(&buffer_test_config(
        &[("rx", &rx)],
        &target.address(),
        "64MiB",
    ))
    .await;
    rx.wait_for_accepted(1, WAIT).await;
    rx.set_default(Reply::status(503));
    let outage_from = now_ms();
    scrapes(&target, 30).await;
    let outage_to = now_ms();
    rx.set_default(Reply::ok());
    rx.wait_until(WAIT, "a scrape after the outage", |r| {
        up_timestamps(&r.accepted(), "app")
            .iter()
            .any(|t| *t > outage_to + 200)
    })
    .await;
    let accepted = rx.accepted();
    let during: Vec<i64> = up_timestamps(&accepted, "app")
        .into_iter()
        .filter(|t| (outage_from..outage_to).contains(t))
        .collect();
    assert!(
        during.len() >= 25,
        "the outage's scrapes arrived: {}",
        during.len()
    );
    // No scrape is missing: consecutive scrapes are one interval apart.
    let all = up_timestamps(&accepted, "app");
    assert!(
        all.windows(2).all(|w| w[1] - w[0] < 250),
        "a gap in the scrapes: {all:?}"
    );
    let verdict = judge(&accepted);
    assert!(
        verdict.rejected.is_empty(),
        "{:?}",
        verdict.rejected.first()
    );
    assert_eq!(verdict.duplicates, 0);
    stop.store(true, Ordering::Relaxed);
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_tiny_cap_the_oldest_data_is_dropped_and_counted_and_the_newest_arrives() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let (target, stop) = churning_target(3000).await;
    let started = now_ms();
    let agent = TestAgent::start(&buffer_test_config(
        &[("rx", &rx)],
        &target.address(),
        "256KiB",
    ))
    .await;
    // Write well over the cap while the receiver refuses everything, and more than the
    // newest batches kept in memory (which a reader that falls behind does not lose).
    support::eventually_async(WAIT, "bytes written over three times the cap", || async {
        agent
            .metric("scrapelet_buffer_bytes_written_total", &[])
            .await
            .unwrap_or(0.0)
            > 3.0 * 256.0 * 1024.0
            && agent
                .metric("scrapelet_buffer_samples_written_total", &[])
                .await
                .unwrap_or(0.0)
                > 3.0 * scrapelet::wal::TAIL_SAMPLES as f64
    })
    .await;
    let bytes = agent
        .metric("scrapelet_buffer_bytes", &[])
        .await
        .unwrap_or(f64::MAX);
    assert!(
        bytes <= 256.0 * 1024.0,
        "the buffer stays under its cap: {bytes}"
    );
    let recovered_at = now_ms();
    rx.set_default(Reply::ok());
    rx.wait_until(WAIT, "a scrape after recovery", |r| {
        up_timestamps(&r.accepted(), "app")
            .iter()
            .any(|t| *t > recovered_at)
    })
    .await;
    let lost = agent
        .metric(
            "scrapelet_buffer_samples_lost_total",
            &[("endpoint", "rx"), ("reason", "cap")],
        )
        .await
        .unwrap_or(0.0);
    assert!(lost > 0.0, "the dropped samples are counted");
    let accepted = rx.accepted();
    let first = up_timestamps(&accepted, "app")
        .first()
        .copied()
        .unwrap_or(0);
    let written = agent
        .metric("scrapelet_buffer_samples_written_total", &[])
        .await
        .unwrap_or(0.0);
    assert!(
        (accepted.len() as f64) + lost <= written,
        "accepted {} + lost {lost} <= written {written}",
        accepted.len()
    );
    let verdict = judge(&accepted);
    assert!(
        verdict.rejected.is_empty(),
        "{:?}",
        verdict.rejected.first()
    );
    // The oldest data in the buffer is what went (what the queue had already read is still
    // sent): a stretch of scrapes is missing, and everything after it arrived.
    let ts = up_timestamps(&accepted, "app");
    let widest = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(widest > 1000, "a second or more was dropped: {ts:?}");
    assert!(first >= started);
    stop.store(true, Ordering::Relaxed);
    agent.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_down_does_not_hold_back_the_healthy_one_and_catches_up() {
    let healthy = Receiver::start().await;
    let down = Receiver::start().await;
    down.set_default(Reply::status(503));
    let (target, stop) = churning_target(100).await;
    let agent = TestAgent::start(&buffer_test_config(
        &[("healthy", &healthy), ("down", &down)],
        &target.address(),
        "64MiB",
    ))
    .await;
    // The healthy endpoint keeps up while the other one fails.
    let until = scrapes(&target, 20).await;
    healthy
        .wait_until(WAIT, "the healthy endpoint keeps up", |r| {
            up_timestamps(&r.accepted(), "app").len() + 2 >= until
        })
        .await;
    assert_eq!(down.accepted_count(), 0);
    let lag = agent
        .metric(
            "scrapelet_buffer_endpoint_lag_bytes",
            &[("endpoint", "down")],
        )
        .await
        .unwrap_or(0.0);
    assert!(lag > 0.0, "the failing endpoint's lag shows");
    let recovered_at = now_ms();
    down.set_default(Reply::ok());
    down.wait_until(WAIT, "the recovered endpoint catches up", |r| {
        up_timestamps(&r.accepted(), "app")
            .iter()
            .any(|t| *t > recovered_at)
    })
    .await;
    let h = up_timestamps(&healthy.accepted(), "app");
    let d = up_timestamps(&down.accepted(), "app");
    let before: Vec<&i64> = h.iter().filter(|t| **t < recovered_at).collect();
    assert!(
        before.iter().all(|t| d.contains(t)),
        "everything the healthy one got before, the other got too"
    );
    for rx in [&healthy, &down] {
        let v = judge(&rx.accepted());
        assert!(v.rejected.is_empty(), "{:?}", v.rejected.first());
    }
    stop.store(true, Ordering::Relaxed);
    agent.agent.shutdown().await;
}
