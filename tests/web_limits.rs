//! The agent's web server under a flood of connections, run as the built binary so that its
//! file descriptors can be counted apart from the test's (`/proc/<pid>/fd`): 2,000 idle
//! connections, 200 half-sent request heads and a few idle keep-alive connections. Meanwhile
//! `/metrics` and `/-/healthy` answer within a second, the agent never holds more than
//! `--web.max-connections`, scraping and sending go on; afterwards every flooding connection
//! has been closed by the server (evicted to make room, or by its timeout) and the agent's
//! descriptors are back to their baseline. Also: the cap on request bodies.
//!
//! All traffic goes to 127.0.0.1; the flood is bounded (2,220 connections, about half a
//! minute at most).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::agent::TestAgent;
use support::binary::Process;
use support::receiver::Receiver;
use support::target::{Exposition, Target};

const WAIT: Duration = Duration::from_secs(30);
const IDLE: usize = 2_000;
const HALF_SENT: usize = 200;
const KEEP_ALIVE: usize = 20;
const CAP: usize = 512;
/// The agent's own descriptors come and go by a few (buffer segments, a scrape or
/// remote-write connection renewed, the test's own requests being closed).
const SLACK: usize = 12;

/// Raises this process's soft limit of open files to `want` (the agent started from it
/// inherits it): the flood needs more than the usual 1,024. Fails, saying why, when the
/// hard limit is lower and cannot be raised (CI runs as root, where it can).
fn raise_open_files(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limits into the struct it is given, which we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if limit.rlim_cur >= want {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: limit.rlim_max.max(want),
    };
    // SAFETY: setrlimit reads the struct it is given.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    assert_eq!(
        rc,
        0,
        "this test needs {want} open files (the limit is {} soft, {} hard; run as root or raise it): {}",
        limit.rlim_cur,
        limit.rlim_max,
        std::io::Error::last_os_error()
    );
}

/// Open file descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// GETs `path` from `addr` on a new connection; must answer 200 within a second.
async fn answers_within_a_second(addr: SocketAddr, path: &str) -> String {
    let url = format!("http://{addr}{path}");
    let (status, body) = tokio::time::timeout(Duration::from_secs(1), support::agent::get(&url))
        .await
        .unwrap_or_else(|_| panic!("{path} did not answer within a second"));
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Waits until the server closes `stream` (EOF or reset); anything it sends first is read
/// and dropped. False when `deadline` passes first.
async fn closed_by_server(mut stream: TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_neither_lock_out_scrapers_nor_leak() {
    raise_open_files(8_192);
    let target = Target::start(Exposition::text("flood_probe 1\n")).await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("scrapelet.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\nremote_write:\n  - url: {}\n    \
             queue_config:\n      batch_send_deadline: 50ms\nscrape_configs:\n  - job_name: probe\n    \
             static_configs: [{{targets: ['{}']}}]\n",
            rx.url(),
            target.address()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let process = Process::start_args(
        &config,
        &dir.path().join("data"),
        &[],
        &[
            "--web.max-connections=512",
            "--web.read-header-timeout=3s",
            "--web.idle-timeout=3s",
        ],
    );
    let addr = process
        .addr
        .unwrap_or_else(|| panic!("the agent did not start:\n{}", process.logs()));
    let pid = process.pid();
    let probe = |s: &support::receiver::ReceivedSample| {
        s.labels
            .iter()
            .any(|(k, v)| k == "__name__" && v == "flood_probe")
    };
    rx.wait_until(WAIT, "the first probe sample", |r| {
        r.accepted().iter().any(probe)
    })
    .await;
    answers_within_a_second(addr, "/-/healthy").await;
    let baseline = fds(pid);

    // The flood: idle connections, then heads that never end, then keep-alive connections
    // that made one request and wait.
    let flood_started = now_ms();
    let mut held = Vec::with_capacity(IDLE + HALF_SENT + KEEP_ALIVE);
    for _ in 0..IDLE {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        held.push(stream);
    }
    for _ in 0..HALF_SENT {
        let mut stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        held.push(stream);
    }
    for _ in 0..KEEP_ALIVE {
        let mut stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        stream
            .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut answer = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("keep-alive request not answered"))
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&answer[..n])
        );
        held.push(stream);
    }

    // While the test holds them all: the probes and /metrics answer at once, and the agent
    // holds at most the cap (plus the connection waiting for room).
    for _ in 0..3 {
        let metrics = answers_within_a_second(addr, "/metrics").await;
        answers_within_a_second(addr, "/-/healthy").await;
        let open = support::metric_in_text(&metrics, "scrapelet_web_connections", &[]);
        assert!(
            open.is_some_and(|n| n <= CAP as f64),
            "connections held: {open:?}"
        );
        let now = fds(pid);
        assert!(
            now <= baseline + CAP + 1 + SLACK,
            "the agent holds {now} descriptors (baseline {baseline}, cap {CAP})"
        );
    }

    // Scraping and sending go on: a probe sample scraped after the flood began arrives.
    rx.wait_until(WAIT, "a probe sample scraped during the flood", |r| {
        r.accepted()
            .iter()
            .any(|s| probe(s) && s.timestamp_ms > flood_started + 500)
    })
    .await;

    // Every flooding connection is closed by the server: evicted, or by its timeout.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut closing = tokio::task::JoinSet::new();
    for stream in held {
        closing.spawn(closed_by_server(stream, deadline));
    }
    let mut open = 0;
    while let Some(closed) = closing.join_next().await {
        if !closed.unwrap_or(false) {
            open += 1;
        }
    }
    assert_eq!(open, 0, "connections the server never closed");

    // The counts say how: room made at the cap, and the rest by the timeouts.
    let metrics = answers_within_a_second(addr, "/metrics").await;
    let closed = |reason: &str| {
        support::metric_in_text(
            &metrics,
            "scrapelet_web_connections_closed_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    let (evicted, header, idle) = (
        closed("evicted"),
        closed("header_timeout"),
        closed("idle_timeout"),
    );
    assert!(
        evicted + header + idle >= (IDLE + HALF_SENT + KEEP_ALIVE) as f64,
        "evicted {evicted}, header_timeout {header}, idle_timeout {idle}"
    );
    assert!(
        evicted >= (IDLE + HALF_SENT - CAP) as f64 / 2.0,
        "evicted {evicted}"
    );
    assert!(header >= 1.0, "none closed by the header timeout");
    assert!(idle >= 1.0, "none closed by the idle timeout");
    // One warning said so, not one per eviction.
    let logs = process.logs();
    let warnings = logs.matches("is at --web.max-connections").count();
    assert_eq!(warnings, 1, "{logs}");

    // And the agent's descriptors come back to their baseline.
    let mut now = fds(pid);
    let deadline = tokio::time::Instant::now() + WAIT;
    while now > baseline + SLACK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent still holds {now} descriptors (baseline {baseline})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = fds(pid);
    }
    process.terminate(Duration::from_secs(10));
}

#[tokio::test]
async fn request_bodies_over_the_cap_are_refused() {
    let agent = TestAgent::start("scrape_configs: []\n").await;
    let addr = agent.agent.local_addr();
    // One request on its own connection: the status line of the answer.
    let status_of = |request: Vec<u8>| async move {
        let mut stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        // The server may answer (and close) before all of an oversized body is written.
        let _ = stream.write_all(&request).await;
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.lines().next().unwrap_or("").to_owned()
    };
    let big = vec![b'x'; 1 << 20];
    let mut declared = b"POST /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    declared.extend_from_slice(&big);
    assert_eq!(status_of(declared).await, "HTTP/1.1 413 Payload Too Large");
    // Announced as huge, nothing sent: refused from the header alone.
    let announced =
        b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n".to_vec();
    assert_eq!(status_of(announced).await, "HTTP/1.1 413 Payload Too Large");
    // Chunked, no length given: counted as it arrives.
    let mut chunked =
        b"POST /metrics HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..32 {
        chunked.extend_from_slice(b"8000\r\n");
        chunked.extend_from_slice(&[b'y'; 0x8000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(status_of(chunked).await, "HTTP/1.1 413 Payload Too Large");
    // A small body is read and the request answered as usual.
    let small = b"POST /-/reload HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    assert_eq!(status_of(small).await, "HTTP/1.1 403 Forbidden");
}
