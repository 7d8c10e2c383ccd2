//! What `kubectl logs` shows: the built binary at the default level logs a start-up line, one
//! line per target state change (down with the reason, up again), one per endpoint state
//! change (retrying with the status and the receiver's message, recovered), and nothing per
//! scrape or per request.

mod support;

use std::time::Duration;

use support::binary::Process;
use support::receiver::{Receiver, Reply};
use support::target::{Exposition, Target};

const DEADLINE: Duration = Duration::from_secs(20);

fn lines_with<'a>(logs: &'a str, msg: &str) -> Vec<&'a str> {
    let quoted = format!("msg=\"{msg}\"");
    logs.lines().filter(|l| l.contains(&quoted)).collect()
}

/// Waits until the process has logged `msg`; returns those lines.
async fn logged(process: &Process, msg: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let logs = process.logs();
        let found = lines_with(&logs, msg);
        if !found.is_empty() {
            return found.into_iter().map(str::to_owned).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {msg:?} line within {DEADLINE:?}:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_state_changes_not_requests() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text("m 1\n")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "global:\n  scrape_interval: 50ms\n  scrape_timeout: 40ms\n\
         remote_write:\n  - url: {url}\n    name: primary\n    queue_config:\n      batch_send_deadline: 20ms\n      min_backoff: 10ms\n      max_backoff: 20ms\n\
         scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{t}']\n",
        url = rx.url(),
        t = target.address(),
    );
    let path = support::binary::write_config(dir.path(), &config);
    let process = Process::start(&path, &dir.path().join("data"), &[]);
    assert!(process.addr.is_some(), "{}", process.logs());

    let started = logged(&process, "scrapelet started").await;
    let line = &started[0];
    for field in [
        format!("version={}", env!("CARGO_PKG_VERSION")),
        "jobs=1".to_owned(),
        "static_targets=1".to_owned(),
        format!("primary={}", rx.url()),
    ] {
        assert!(line.contains(&field), "{field} missing from: {line}");
    }

    // The target fails for many scrapes: one line, with the reason and the target.
    rx.wait_for_accepted(1, DEADLINE).await;
    target.set(Exposition {
        status: 500,
        ..Exposition::text("m 1\n")
    });
    let down = logged(&process, "target down").await;
    let seen = target.requests();
    target.wait_for_requests(seen + 10, DEADLINE).await;
    let down_again = lines_with(&process.logs(), "target down").len();
    assert_eq!(down_again, 1, "{}", process.logs());
    assert!(
        down[0].contains("500"),
        "the reason names the status: {}",
        down[0]
    );
    assert!(down[0].contains(&target.address()), "{}", down[0]);
    assert!(down[0].contains("job=app"), "{}", down[0]);
    target.set(Exposition::text("m 1\n"));
    let up = logged(&process, "target up again").await;
    assert!(up[0].contains(&target.address()), "{}", up[0]);

    // The receiver fails many requests: one line with its status and message, then one when
    // it recovers.
    rx.set_default(Reply::status(503).with_body("ingester overloaded"));
    let retrying = logged(&process, "remote write failed; retrying").await;
    let seen = rx.requests().len();
    rx.wait_for_requests(seen + 10, DEADLINE).await;
    let logs = process.logs();
    assert_eq!(
        lines_with(&logs, "remote write failed; retrying").len(),
        1,
        "{logs}"
    );
    assert!(retrying[0].contains("status=503"), "{}", retrying[0]);
    assert!(
        retrying[0].contains("ingester overloaded"),
        "{}",
        retrying[0]
    );
    assert!(retrying[0].contains("primary"), "{}", retrying[0]);
    rx.set_default(Reply::ok());
    logged(&process, "remote write recovered").await;

    // Over ten failing scrapes and ten failing requests (waited for above), and more that
    // succeeded: a handful of lines.
    let logs = process.logs();
    assert!(
        logs.lines().count() <= 8,
        "only state changes are logged at info level ({} scrapes, {} requests):\n{logs}",
        target.requests(),
        rx.requests().len()
    );
    process.terminate(Duration::from_secs(10));
}
