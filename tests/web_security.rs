//! The agent's own endpoints: the lifecycle API only with `--web.enable-lifecycle`, and TLS,
//! basic auth and headers from a web config file (exporter-toolkit's format), with real
//! rustls clients over 127.0.0.1: certificates made by the test (rcgen), wrong passwords,
//! a required client certificate present and missing, a certificate rotated on disk, a bad
//! web config at start and at run time, and the agent scraping itself through TLS and basic
//! auth (what the chart's self-scrape job does).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::KeyPair;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use scrapelet::agent::{Agent, Options};
use scrapelet::telemetry::error_chain;
use support::agent::TestAgent;
use support::eventually_async;
use support::tls::{Ca, Leaf};

const WAIT: Duration = Duration::from_secs(20);

impl Ca {
    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert.clone())
            .unwrap_or_else(|e| panic!("CA: {e}"));
        roots
    }
}

/// Replaces `path`'s content the way a Secret update does: a new file renamed over the old.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {}: {e}", path.display()));
}

/// A bcrypt hash of `password` (cost 4, the least: tests need not be slow).
fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap_or_else(|e| panic!("bcrypt: {e}"))
}

/// A directory with a web config and its files.
struct WebFiles {
    dir: tempfile::TempDir,
}

impl WebFiles {
    fn new() -> WebFiles {
        WebFiles {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: &str) {
        replace(&self.path(name), content);
    }

    /// The server certificate and key as `tls.crt` and `tls.key`.
    fn use_server(&self, leaf: &Leaf) {
        self.write("tls.crt", &leaf.cert_pem);
        self.write("tls.key", &leaf.key.serialize_pem());
    }

    /// The web config as `web.yml`.
    fn config(&self, text: &str) -> PathBuf {
        self.write("web.yml", text);
        self.path("web.yml")
    }
}

/// An agent with only a static job scraping nothing in particular, and `options`.
async fn agent(options: impl FnOnce(Options) -> Options) -> TestAgent {
    TestAgent::start_options(
        "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
        options,
    )
    .await
}

/// A rustls client trusting `ca`, presenting `client` when given, speaking HTTP/1.1.
fn client_config(ca: &Ca, client: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    client_config_alpn(ca, client, &[b"http/1.1"])
}

/// [`client_config`] offering `alpn`.
fn client_config_alpn(ca: &Ca, client: Option<&Leaf>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_root_certificates(ca.roots());
    let mut config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.serialize_der())),
            )
            .unwrap_or_else(|e| panic!("client cert: {e}")),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What an HTTPS GET saw: the server's certificate, status, headers and body.
struct Answer {
    server_cert: Option<CertificateDer<'static>>,
    version: http::Version,
    status: u16,
    headers: HeaderMap,
    body: String,
}

/// GETs `path` from `addr` over TLS (server name `localhost`) with `config`, with basic auth
/// when given: the answer, or the error on the way.
async fn https_get(
    addr: SocketAddr,
    path: &str,
    config: Arc<rustls::ClientConfig>,
    basic: Option<(&str, &str)>,
) -> Result<Answer, String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned());
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let mut request = http::Request::get(format!("https://localhost{path}"));
        if let Some((user, password)) = basic {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header("authorization", format!("Basic {encoded}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| format!("http handshake: {e}"))?;
            tokio::spawn(conn);
            sender.send_request(request).await
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("http handshake: {e}"))?;
            tokio::spawn(conn);
            let (mut parts, body) = request.into_parts();
            parts.uri = path.parse().map_err(|e| format!("{e}"))?;
            parts
                .headers
                .insert("host", http::HeaderValue::from_static("localhost"));
            sender
                .send_request(http::Request::from_parts(parts, body))
                .await
        }
        .map_err(|e| format!("request: {}", error_chain(&e)))?;
        let version = response.version();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            server_cert,
            version,
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
}

#[tokio::test]
async fn reload_over_http_needs_the_lifecycle_flag() {
    let off = agent(|o| o).await;
    for method in [http::Method::POST, http::Method::PUT] {
        let (status, body) = off.request(method.clone(), "/-/reload").await;
        assert_eq!(
            (status, body.as_str()),
            (403, "Lifecycle API is not enabled.\n"),
            "{method}"
        );
    }
    assert_eq!(off.get("/-/reload").await.0, 405);
    // No reload happened: the counter of reloads has no sample.
    assert_eq!(
        off.metric_sum("scrapelet_config_reloads_total", &[]).await,
        0.0
    );

    // With the flag, the agent reloads (a config without a file: 500 with the reason).
    let on = agent(|o| Options {
        enable_lifecycle: true,
        ..o
    })
    .await;
    let (status, body) = on.post("/-/reload").await;
    assert_ne!(status, 403, "{body}");
    assert!(
        body.starts_with("failed to reload config"),
        "{status} {body}"
    );
}

#[tokio::test]
async fn basic_auth_refuses_wrong_passwords_and_lets_probes_through() {
    let files = WebFiles::new();
    let path = files.config(&format!(
        "basic_auth_users:\n  prometheus: {}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n",
        bcrypt_hash("s3cret")
    ));
    let agent = agent(|o| Options {
        web_config_file: Some(path),
        ..o
    })
    .await;
    let url = |path: &str| format!("{}{path}", agent.base());

    // Plain hyper client with or without the header.
    let get = |path: String, auth: Option<String>| async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<Bytes>>();
        let mut request = http::Request::get(path);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            client.request(request.body(Empty::new()).expect("request")),
        )
        .await
        .expect("in time")
        .expect("response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    };
    let basic = |user: &str, password: &str| {
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ))
    };

    for path in [
        "/metrics",
        "/api/v1/targets",
        "/targets",
        "/api/v1/status/tsdb",
        "/",
    ] {
        for auth in [
            None,
            basic("prometheus", "wrong"),
            basic("nobody", "s3cret"),
            Some("Bearer s3cret".to_owned()),
        ] {
            let (status, headers, _) = get(url(path), auth.clone()).await;
            assert_eq!(status, 401, "{path} with {auth:?}");
            assert_eq!(
                headers
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Basic realm=\"scrapelet\""),
                "{path}"
            );
            // The configured headers are on every answer, refusals included.
            assert_eq!(
                headers.get("x-frame-options").map(|v| v.as_bytes()),
                Some(&b"deny"[..])
            );
        }
    }
    let (status, headers, body) = get(url("/metrics"), basic("prometheus", "s3cret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers.get("x-content-type-options").map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );
    // The refusals were counted (5 paths x 4 credentials).
    let refused = support::metric_in_text(&body, "scrapelet_web_requests_unauthorized_total", &[]);
    assert_eq!(refused, Some(20.0), "{body}");
    // The kubelet's probes carry no credentials.
    for probe in ["/-/healthy", "/-/ready"] {
        let (status, _, body) = get(url(probe), None).await;
        assert_eq!(status, 200, "{probe}: {body}");
    }
    // Lifecycle stays off behind the password too.
    let (status, _, body) = {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<Bytes>>();
        let request = http::Request::post(url("/-/reload"))
            .header(
                "authorization",
                basic("prometheus", "s3cret").expect("header"),
            )
            .body(Empty::new())
            .expect("request");
        let response = client.request(request).await.expect("response");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, (), String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(
        (status, body.as_str()),
        (403, "Lifecycle API is not enabled.\n")
    );
}

#[tokio::test]
async fn tls_with_a_required_client_certificate() {
    let (server_ca, client_ca, stranger_ca) = (
        Ca::new("server ca"),
        Ca::new("client ca"),
        Ca::new("stranger"),
    );
    let files = WebFiles::new();
    files.use_server(&server_ca.issue("scrapelet", &["localhost"]));
    files.write("client-ca.crt", &client_ca.pem);
    let path = files.config(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n",
    );
    let agent = agent(|o| Options {
        web_config_file: Some(path),
        ..o
    })
    .await;
    let addr = agent.agent.local_addr();

    let prometheus = client_ca.issue("prometheus", &["prometheus"]);
    let answer = https_get(
        addr,
        "/metrics",
        client_config(&server_ca, Some(&prometheus)),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("with a client certificate: {e}"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.version, http::Version::HTTP_11);
    assert!(
        answer.body.contains("scrapelet_web_connections"),
        "{}",
        answer.body
    );
    // HTTP/2 through ALPN (http_server_config.http2 defaults to true).
    let h2 = client_config_alpn(&server_ca, Some(&prometheus), &[b"h2", b"http/1.1"]);
    let answer = https_get(addr, "/-/ready", h2, None)
        .await
        .unwrap_or_else(|e| panic!("HTTP/2: {e}"));
    assert_eq!(
        (answer.version, answer.status),
        (http::Version::HTTP_2, 200)
    );

    // Without a certificate, or with one from another CA, nothing is answered.
    let impostor = stranger_ca.issue("prometheus", &["prometheus"]);
    for (what, client) in [
        ("no certificate", None),
        ("a stranger's certificate", Some(&impostor)),
    ] {
        let refused = https_get(addr, "/metrics", client_config(&server_ca, client), None).await;
        assert!(
            refused.is_err(),
            "{what}: answered {:?}",
            refused.map(|a| a.status)
        );
    }
    // Plain HTTP to the TLS port gets no answer either.
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Empty<Bytes>>()
            .get(format!("http://{addr}/metrics").parse().expect("uri")),
    )
    .await
    .expect("in time");
    assert!(plain.is_err(), "plain HTTP was answered");
    // The three failed handshakes are counted (each just after its alert went out).
    let client = client_config(&server_ca, Some(&prometheus));
    eventually_async(WAIT, "3 failed handshakes counted", || async {
        tls_metric(
            addr,
            &client,
            "scrapelet_web_connections_closed_total",
            &[("reason", "tls_handshake")],
        )
        .await
            == Some(3.0)
    })
    .await;
}

#[tokio::test]
async fn a_certificate_rotated_on_disk_is_served_from_the_next_connection() {
    let ca = Ca::new("server ca");
    let files = WebFiles::new();
    let first = ca.issue("first", &["localhost"]);
    files.use_server(&first);
    let path = files.config("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n");
    let agent = agent(|o| Options {
        web_config_file: Some(path),
        web_config_check_interval: Duration::from_millis(100),
        ..o
    })
    .await;
    let addr = agent.agent.local_addr();
    let client = client_config(&ca, None);
    let served = || {
        let client = client.clone();
        async move {
            https_get(addr, "/-/healthy", client, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .server_cert
        }
    };
    assert_eq!(served().await.as_ref(), Some(&first.der));

    // A broken key: the running certificate stays, and the metric says the reload failed.
    files.write(
        "tls.key",
        "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n",
    );
    eventually_async(WAIT, "the broken key refused", || async {
        tls_metric(
            addr,
            &client,
            "scrapelet_web_config_last_reload_successful",
            &[],
        )
        .await
            == Some(0.0)
    })
    .await;
    assert_eq!(served().await.as_ref(), Some(&first.der));

    // A new certificate and key (Secret-style renames): served from a next connection on.
    let second = ca.issue("second", &["localhost"]);
    files.use_server(&second);
    eventually_async(WAIT, "the rotated certificate served", || async {
        served().await.as_ref() == Some(&second.der)
    })
    .await;
    assert_eq!(
        tls_metric(
            addr,
            &client,
            "scrapelet_web_config_last_reload_successful",
            &[]
        )
        .await,
        Some(1.0)
    );
}

/// A self-metric of the agent at `addr`, read over TLS (no basic auth).
async fn tls_metric(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let answer = https_get(addr, "/metrics", client.clone(), None)
        .await
        .ok()?;
    support::metric_in_text(&answer.body, name, labels)
}

#[tokio::test]
async fn a_bad_web_config_stops_start_up_naming_file_line_and_key() {
    let files = WebFiles::new();
    let path = files.config(
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\nbasic_auth_users:\n  alice: plain-text\n",
    );
    let config = scrapelet::config::parse("scrape_configs: []\n", "test.yml")
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = Options {
        listen_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().join("data"),
        web_config_file: Some(path.clone()),
        ..Options::default()
    };
    let error = match Agent::start(config, options).await {
        Ok(_) => panic!("started with a bad web config"),
        Err(e) => error_chain(&e),
    };
    let file = path.display();
    for expected in [
        format!(
            "{file}:2: tls_server_config.cert_file: cannot read {}",
            files.path("missing.crt").display()
        ),
        format!(
            "{file}:3: tls_server_config.key_file: cannot read {}",
            files.path("missing.key").display()
        ),
        format!("{file}:5: basic_auth_users.alice: not a bcrypt hash"),
    ] {
        assert!(error.contains(&expected), "{error}\nlacks {expected}");
    }
    assert!(
        !error.contains("plain-text"),
        "a password was shown: {error}"
    );
    // Nothing was opened: the data directory was not even created.
    assert!(!dir.path().join("data").exists());
}

#[tokio::test]
async fn the_agent_scrapes_itself_through_tls_and_basic_auth() {
    // What the chart's self-scrape job does when the web config turns TLS and basic auth on.
    let ca = Ca::new("server ca");
    let files = WebFiles::new();
    files.use_server(&ca.issue("scrapelet", &["localhost", "127.0.0.1"]));
    files.write("ca.crt", &ca.pem);
    files.write("password", "s3cret\n");
    let path = files.config(&format!(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  scrapelet: {}\n",
        bcrypt_hash("s3cret")
    ));
    let agent = agent(|o| Options {
        web_config_file: Some(path),
        ..o
    })
    .await;
    let addr = agent.agent.local_addr();
    let job = |name: &str, tls: &str| {
        format!(
            "  - job_name: {name}\n    scrape_interval: 200ms\n    scrape_timeout: 200ms\n    scheme: https\n    \
             basic_auth:\n      username: scrapelet\n      password_file: {}\n    tls_config:\n{tls}\n    \
             static_configs: [{{targets: ['{addr}']}}]\n",
            files.path("password").display()
        )
    };
    let config = format!(
        "scrape_configs:\n{}{}",
        job(
            "verified",
            &format!("      ca_file: {}", files.path("ca.crt").display())
        ),
        job("skip-verify", "      insecure_skip_verify: true"),
    );
    let config = scrapelet::config::parse(&config, "self.yml").unwrap_or_else(|e| panic!("{e}"));
    agent
        .agent
        .reload_with(config)
        .await
        .unwrap_or_else(|e| panic!("reload: {e}"));
    let client = client_config(&ca, None);
    for job in ["verified", "skip-verify"] {
        eventually_async(WAIT, &format!("{job} scraped up"), || async {
            let Ok(answer) = https_get(
                addr,
                "/api/v1/targets",
                client.clone(),
                Some(("scrapelet", "s3cret")),
            )
            .await
            else {
                return false;
            };
            let targets: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
            targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["scrapePool"] == job && t["health"] == "up")
        })
        .await;
    }
    // And a wrong password is what the targets page would show as the reason.
    let answer = https_get(addr, "/metrics", client, Some(("scrapelet", "nope")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status, 401);
    assert!(answer.headers.contains_key("www-authenticate"));
}

#[test]
fn check_web_config_validates_a_file_and_the_files_it_names() {
    let ca = Ca::new("server ca");
    let files = WebFiles::new();
    files.use_server(&ca.issue("scrapelet", &["localhost"]));
    let good = files.config("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n");
    let run = |file: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_scrapelet"))
            .arg("check-web-config")
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("cannot run scrapelet: {e}"))
    };
    let out = run(&good);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: valid (TLS on, basic auth off)\n", good.display())
    );

    // A key that is not the certificate's: refused at the key, with its line.
    files.write(
        "other.key",
        &KeyPair::generate().expect("key").serialize_pem(),
    );
    let bad = files.config("tls_server_config:\n  cert_file: tls.crt\n  key_file: other.key\n");
    let out = run(&bad);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3: tls_server_config.key_file: unusable certificate and key",
            bad.display()
        )),
        "{stderr}"
    );
}
