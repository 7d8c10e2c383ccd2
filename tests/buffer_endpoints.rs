//! Endpoints coming and going across restarts: a removed endpoint's cursor is deleted and its
//! hold on the buffer released; an added endpoint starts at "now", not at the start of the
//! buffer; an endpoint kept across the restart resumes where it was.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::agent::TestAgent;
use support::binary::{buffer_test_config, churning_target, judge, now_ms, up_timestamps};
use support::receiver::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(60);

fn config(endpoints: &[(&str, &Receiver)], target: &str) -> scrapelet::Config {
    let yaml = buffer_test_config(endpoints, target, "1MiB");
    scrapelet::config::parse(&yaml, "test.yml").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_endpoints_release_the_buffer_and_added_ones_start_at_now() {
    let kept = Receiver::start().await;
    let removed = Receiver::start().await;
    removed.set_default(Reply::status(503));
    let (target, stop) = churning_target(150).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let first = TestAgent::start_in(
        config(&[("kept", &kept), ("removed", &removed)], &target.address()),
        None,
        dir,
    )
    .await;
    // The endpoint that is down holds segments while it is configured.
    support::eventually(WAIT, "segments held by the endpoint that is down", || {
        std::fs::read_dir(data.join("buffer"))
            .map(|d| d.count())
            .unwrap_or(0)
            >= 3
    })
    .await;
    assert!(data.join("cursors/removed.cursor").exists());
    let dir = first.dir;
    first.agent.shutdown().await;
    let stopped = now_ms();

    // Second run: "removed" is gone from the config, "added" is new.
    let added = Receiver::start().await;
    let second = TestAgent::start_in(
        config(&[("kept", &kept), ("added", &added)], &target.address()),
        None,
        dir,
    )
    .await;
    assert!(
        !data.join("cursors/removed.cursor").exists(),
        "its cursor is deleted"
    );
    let restarted = now_ms();
    added
        .wait_until(WAIT, "the added endpoint's first scrapes", |r| {
            up_timestamps(&r.accepted(), "app").len() >= 3
        })
        .await;
    let first_added = up_timestamps(&added.accepted(), "app");
    assert!(
        first_added.iter().all(|t| *t >= stopped),
        "the added endpoint starts at now, not with the backlog: {first_added:?} before {stopped}"
    );
    // Nothing holds the old segments any more: the buffer shrinks to this run's data.
    support::eventually(WAIT, "old segments deleted", || {
        std::fs::read_dir(data.join("buffer"))
            .map(|d| d.count())
            .unwrap_or(99)
            <= 2
    })
    .await;
    // The kept endpoint resumed: no gap across the restart beyond the downtime.
    kept.wait_until(WAIT, "the kept endpoint continues", |r| {
        up_timestamps(&r.accepted(), "app")
            .iter()
            .any(|t| *t > restarted)
    })
    .await;
    let v = judge(&kept.accepted());
    assert!(v.rejected.is_empty(), "{:?}", v.rejected.first());
    assert_eq!(v.duplicates, 0, "a clean shutdown leaves nothing in doubt");
    stop.store(true, Ordering::Relaxed);
    second.agent.shutdown().await;
}
