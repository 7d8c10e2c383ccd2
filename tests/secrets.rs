//! Secrets never show: the built binary runs at debug level with inline and file credentials
//! for scraping and remote write, against a target and a receiver that refuse them; nothing it
//! logs or serves contains a secret, while the requests did carry them.

mod support;

use std::time::Duration;

use support::agent::get;
use support::receiver::{Receiver, Reply};
use support::target::{Exposition, Target};

const SCRAPE_PASSWORD: &str = "scrape-pass-Zq8Kx";
const REMOTE_TOKEN: &str = "remote-token-W3nP";
const FILE_TOKEN: &str = "file-token-R7yB";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_or_pages() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(401).with_body("unauthorized"));
    let target = Target::start(Exposition {
        status: 401,
        ..Exposition::text("m 1\n")
    })
    .await;
    let bearer = Target::start(Exposition::text("b 1\n")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, FILE_TOKEN).expect("token file");
    let config = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
         remote_write:\n  - url: {url}\n    authorization:\n      credentials: {REMOTE_TOKEN}\n    queue_config:\n      batch_send_deadline: 50ms\n      min_backoff: 10ms\n      max_backoff: 50ms\n\
         scrape_configs:\n\
         \x20 - job_name: basic\n    basic_auth:\n      username: user\n      password: {SCRAPE_PASSWORD}\n    static_configs:\n      - targets: ['{t}']\n\
         \x20 - job_name: bearer\n    bearer_token_file: {file}\n    static_configs:\n      - targets: ['{b}']\n",
        url = rx.url(),
        t = target.address(),
        b = bearer.address(),
        file = token_file.display(),
    );
    let path = support::binary::write_config(dir.path(), &config);
    let process = support::binary::Process::start_args(
        &path,
        &dir.path().join("data"),
        &[],
        &["--log-level", "debug"],
    );
    target.wait_for_requests(2, Duration::from_secs(20)).await;
    bearer.wait_for_requests(2, Duration::from_secs(20)).await;
    rx.wait_for_requests(2, Duration::from_secs(20)).await;

    // The credentials were used ...
    let auth = |h: &http::HeaderMap| {
        h.get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(auth(&target.last_headers()).starts_with("Basic "));
    assert_eq!(auth(&bearer.last_headers()), format!("Bearer {FILE_TOKEN}"));
    let sent = rx.requests();
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {REMOTE_TOKEN}").as_str())
    );

    // ... and show nowhere.
    let base = process.base();
    let mut shown = process.logs();
    for page in ["/api/v1/targets", "/targets", "/metrics", "/"] {
        let (status, body) = get(&format!("{base}{page}")).await;
        assert_eq!(status, 200, "{page}");
        shown.push_str(&body);
    }
    assert!(shown.contains("401"), "the failures were reported: {shown}");
    let encoded_basic = auth(&target.last_headers());
    for secret in [
        SCRAPE_PASSWORD,
        REMOTE_TOKEN,
        FILE_TOKEN,
        encoded_basic.as_str(),
    ] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    process.terminate(Duration::from_secs(10));
}

/// Rotation needs no restart: the agent's scrape bearer token file and its remote-write
/// credentials file are rewritten (as a Secret volume update does), and the next requests
/// carry the new values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_credential_files_are_used_without_a_restart() {
    let rx = Receiver::start().await;
    let target = Target::start(Exposition::text("m 1\n")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let scrape_token = dir.path().join("scrape-token");
    let remote_token = dir.path().join("remote-token");
    std::fs::write(&scrape_token, "scrape-old").expect("token file");
    std::fs::write(&remote_token, "remote-old").expect("token file");
    let config = format!(
        "global:\n  scrape_interval: 100ms\n  scrape_timeout: 80ms\n\
         remote_write:\n  - url: {url}\n    authorization:\n      credentials_file: {remote}\n    queue_config:\n      batch_send_deadline: 20ms\n\
         scrape_configs:\n\
         \x20 - job_name: bearer\n    authorization:\n      credentials_file: {scrape}\n    static_configs:\n      - targets: ['{t}']\n",
        url = rx.url(),
        remote = remote_token.display(),
        scrape = scrape_token.display(),
        t = target.address(),
    );
    let path = support::binary::write_config(dir.path(), &config);
    let process = support::binary::Process::start(&path, &dir.path().join("data"), &[]);
    let auth = |h: &http::HeaderMap| {
        h.get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let last_remote = |rx: &Receiver| {
        rx.requests()
            .last()
            .and_then(|r| r.header("authorization").map(str::to_owned))
    };
    target.wait_for_requests(1, Duration::from_secs(20)).await;
    rx.wait_for_requests(1, Duration::from_secs(20)).await;
    assert_eq!(auth(&target.last_headers()), "Bearer scrape-old");
    assert_eq!(last_remote(&rx).as_deref(), Some("Bearer remote-old"));

    std::fs::write(&scrape_token, "scrape-new").expect("token file");
    std::fs::write(&remote_token, "remote-new").expect("token file");
    rx.wait_until(Duration::from_secs(20), "the rotated token", |rx| {
        last_remote(rx).as_deref() == Some("Bearer remote-new")
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while auth(&target.last_headers()) != "Bearer scrape-new" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the target never saw the rotated token: {}",
            auth(&target.last_headers())
        );
        let seen = target.requests();
        target
            .wait_for_requests(seen + 1, Duration::from_secs(20))
            .await;
    }
    assert!(
        !process.logs().contains("Bearer "),
        "no header value is logged"
    );
    process.terminate(Duration::from_secs(10));
}
