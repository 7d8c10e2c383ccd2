//! A hostile target's decompression bomb: a gzip body of about a megabyte that inflates to
//! 1 GiB. With no `body_size_limit` in the config, the agent-wide cap
//! (`agent.scrape.max_body_size`, 64 MiB by default) stops it: that target's scrapes fail
//! alone with the reason, the other target keeps every sample, and the agent's peak RSS stays
//! far below what the bomb would take.

mod support;

use std::io::Write;
use std::time::Duration;

use support::binary::{Process, up_timestamps, write_config};
use support::receiver::Receiver;
use support::target::{Exposition, Target};

const WAIT: Duration = Duration::from_secs(60);
/// What the bomb inflates to.
const INFLATED: usize = 1 << 30;
/// The agent's peak RSS while it is bombed: the 64 MiB cap, the body pool, a debug binary.
const PEAK_RSS_BOUND_KIB: u64 = 320 << 10;

/// A gzip body inflating to [`INFLATED`] bytes of valid-looking exposition lines.
fn bomb() -> Vec<u8> {
    let line = b"bomb_metric{label=\"value\"} 1\n";
    let chunk: Vec<u8> = line.iter().copied().cycle().take(1 << 20).collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..INFLATED / chunk.len() {
        enc.write_all(&chunk).unwrap_or_else(|e| panic!("{e}"));
    }
    enc.finish().unwrap_or_else(|e| panic!("{e}"))
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_fails_its_target_alone_and_the_agent_stays_small() {
    let compressed = bomb();
    assert!(compressed.len() < 8 << 20, "{} bytes", compressed.len());
    let hostile = Target::start(Exposition::gzipped(compressed)).await;
    let good_body: String = (0..50)
        .map(|i| format!("steady{{i=\"{i}\"}} {i}\n"))
        .collect();
    let good = Target::start(Exposition::text(&good_body)).await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let yaml = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 180ms\nremote_write:\n  - url: {}\n    name: rx\n    queue_config:\n      batch_send_deadline: 50ms\nscrape_configs:\n  - job_name: bomb\n    scrape_timeout: 5s\n    scrape_interval: 6s\n    static_configs:\n      - targets: ['{}']\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        rx.url(),
        hostile.address(),
        good.address()
    );
    let cfg = write_config(dir.path(), &yaml);
    let agent = Process::start(&cfg, &dir.path().join("data"), &[]);
    assert!(agent.addr.is_some(), "{}", agent.logs());

    // Bombed three times, while the other target is scraped on.
    hostile.wait_for_requests(3, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let failures = loop {
        let n = agent
            .metric_or_zero(
                "scrapelet_scrape_failures_total",
                &[("job", "bomb"), ("reason", "body_size_limit")],
            )
            .await;
        if n >= 3.0 {
            break n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bomb's scrapes did not fail for the body size limit: {n}\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(failures >= 3.0);
    let peak = peak_rss_kib(agent.pid());
    eprintln!("peak RSS while bombed: {peak} KiB");
    assert!(
        peak < PEAK_RSS_BOUND_KIB,
        "peak RSS {peak} KiB while bombed (bound {PEAK_RSS_BOUND_KIB} KiB)"
    );

    // The reason shows where people look.
    let (_, targets) = support::agent::get(&format!("{}/api/v1/targets", agent.base())).await;
    assert!(
        targets.contains("body size limit of 67108864 bytes"),
        "/api/v1/targets: {targets}"
    );
    // The bomb's `up` is 0, the other target's series arrive in every scrape.
    rx.wait_until(WAIT, "the bomb's up = 0", |r| {
        r.accepted()
            .iter()
            .any(|s| s.name() == Some("up") && s.label("job") == Some("bomb") && s.value == 0.0)
    })
    .await;
    let accepted = rx.accepted();
    let app = up_timestamps(&accepted, "app");
    assert!(app.len() >= 20, "{} scrapes of the good target", app.len());
    assert!(
        app.windows(2).all(|w| w[1] - w[0] < 500),
        "a gap in the good target's scrapes: {app:?}"
    );
    for ts in &app {
        let steady = accepted
            .iter()
            .filter(|s| s.timestamp_ms == *ts && s.name() == Some("steady"))
            .count();
        assert_eq!(steady, 50, "every series of the scrape at {ts}");
    }
    agent.kill9();
}
