//! Shutdown with the built binary: it is bounded (past the grace period, and while a reload
//! hangs), and what was not sent by then is kept in the buffer and delivered by the next run,
//! as the log says.

mod support;

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use support::binary::{Process, buffer_test_config, up_timestamps, write_config};
use support::receiver::{Receiver, Reply};
use support::target::{Exposition, Target};

/// Deadline of every wait for something that must happen eventually.
const WAIT: Duration = Duration::from_secs(30);
/// `--shutdown-grace` of every process (what `Process::start` passes).
const GRACE: Duration = Duration::from_secs(5);
/// What shutdown may take beyond the grace period: the bound after the hard stop
/// (`remote::HARD_STOP_BOUND`, 5 s) and the exit's bound for blocked threads (1 s), with
/// room for a loaded machine.
const BEYOND_GRACE: Duration = Duration::from_secs(8);

/// SIGTERM, off the runtime (the receivers and targets keep serving meanwhile): the exit
/// status (`None`: still running after `timeout`, then killed) and how long it took.
async fn terminate(process: Process, timeout: Duration) -> (Option<ExitStatus>, Duration) {
    let began = Instant::now();
    let status = tokio::task::spawn_blocking(move || process.terminate(timeout))
        .await
        .unwrap_or_else(|e| panic!("terminate: {e}"));
    (status, began.elapsed())
}

/// A receiver that takes requests and never answers; what it got is recorded as accepted
/// (its answer would have been 204), so `accepted()` lists what was in flight.
async fn silent_receiver() -> Receiver {
    let rx = Receiver::start().await;
    rx.set_default(Reply::ok().with_delay(Duration::from_secs(3600)));
    rx
}

fn config_for(dir: &Path, rx: &Receiver, target: &Target) -> std::path::PathBuf {
    write_config(
        dir,
        &buffer_test_config(&[("primary", rx)], &target.address(), "4MiB"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_the_grace_period_keeps_what_was_not_sent_for_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let target = Target::start(Exposition::text("app_requests_total 1\n")).await;
    let silent = silent_receiver().await;
    let first = Process::start(&config_for(dir.path(), &silent, &target), &data, &[]);
    assert!(first.addr.is_some(), "did not start:\n{}", first.logs());
    // A request is in flight, unanswered (its shard sends nothing else meanwhile) ...
    silent
        .wait_until(WAIT, "a request with samples", |r| {
            r.requests().iter().any(|q| q.sample_count() > 0)
        })
        .await;
    let in_flight = up_timestamps(&silent.accepted(), "app");
    let last_in_flight = in_flight.iter().copied().max().unwrap_or_default();
    // ... and more scrapes wait behind it.
    target.wait_for_requests(target.requests() + 3, WAIT).await;

    // `terminate` consumes the process; its log is read through a handle.
    let logs = first.log_handle();
    let (status, took) = terminate(first, GRACE + BEYOND_GRACE + WAIT).await;
    let stopped_at = support::binary::now_ms();
    let logs = logs.text();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}:\n{logs}"
    );
    assert!(
        took < GRACE + BEYOND_GRACE,
        "shutdown took {took:?}, more than the grace period {GRACE:?} and its bound:\n{logs}"
    );
    // The log says what happens to what was not sent: kept, not dropped.
    let line = logs
        .lines()
        .find(|l| l.contains("shutdown grace period"))
        .unwrap_or_else(|| panic!("no shutdown line in:\n{logs}"));
    assert!(line.contains("level=warn"), "{line}");
    assert!(
        line.contains("what was not sent stays in the buffer and is sent by the next run"),
        "{line}"
    );
    assert!(line.contains("endpoints=primary"), "{line}");
    assert!(!logs.contains("dropped"), "{logs}");

    // The second run sends what the first could not, to a receiver that answers.
    let rx = Receiver::start().await;
    let second = Process::start(&config_for(dir.path(), &rx, &target), &data, &[]);
    rx.wait_until(WAIT, "the first run's samples", |r| {
        let got = up_timestamps(&r.accepted(), "app");
        // The scrape in flight at SIGTERM may not have reached the buffer: 2 of the 3.
        in_flight.iter().all(|t| got.contains(t))
            && got
                .iter()
                .filter(|t| **t > last_in_flight && **t < stopped_at)
                .count()
                >= 2
    })
    .await;
    let (status, _) = terminate(second, WAIT).await;
    assert!(status.is_some_and(|s| s.success()));
}

/// A reload that cannot finish: a new endpoint's CA file is a FIFO nobody writes to, so
/// reading it blocks. SIGTERM still stops the agent, in bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_hung_reload_exits_in_bounded_time() {
    use std::os::unix::fs::OpenOptionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start(Exposition::text("app_requests_total 1\n")).await;
    let rx = Receiver::start().await;
    let config = config_for(dir.path(), &rx, &target);
    let process = Process::start_args(
        &config,
        &dir.path().join("data"),
        &[],
        &["--config-watch-interval", "0s"],
    );
    assert!(process.addr.is_some(), "did not start:\n{}", process.logs());
    rx.wait_for_accepted(1, WAIT).await;

    let fifo = dir.path().join("ca.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    assert!(made.success());
    let yaml = std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("{e}"));
    let yaml = yaml.replace(
        "remote_write:\n",
        &format!(
            "remote_write:\n  - url: https://127.0.0.1:1/api/v1/write\n    name: hangs\n    tls_config:\n      ca_file: {}\n",
            fifo.display()
        ),
    );
    std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("{e}"));
    process.signal("HUP");

    // The reload is blocked reading the FIFO once a writer can open it (O_NONBLOCK fails with
    // ENXIO while no reader is there); held open and silent, the read never returns.
    const O_NONBLOCK: i32 = 0o4000;
    let deadline = Instant::now() + WAIT;
    let _writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo)
        {
            Ok(w) => break w,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the reload never read the CA file ({e}):\n{}",
                    process.logs()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        process.logs().contains("reloading the config"),
        "{}",
        process.logs()
    );

    let logs = process.log_handle();
    let (status, took) = terminate(process, GRACE + BEYOND_GRACE + WAIT).await;
    let logs = logs.text();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}:\n{logs}"
    );
    assert!(took < GRACE + BEYOND_GRACE, "took {took:?}:\n{logs}");
    assert!(
        logs.contains("config reload abandoned: the agent is shutting down"),
        "{logs}"
    );
    assert!(logs.contains("scrapelet stopped"), "{logs}");
    assert!(!logs.contains("config reloaded"), "{logs}");
}
