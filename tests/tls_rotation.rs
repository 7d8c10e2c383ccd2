//! TLS files rotate without a restart: the shared HTTP client (scraping and remote write) sees
//! a new client certificate, key or CA on disk at the next request, and keeps the previous
//! ones, with one warning, when the new files are unusable.
//!
//! Real TLS over 127.0.0.1: a CA, server and client certificates made by the test (rcgen), and
//! a hyper + rustls server that requires a client certificate and answers with the name of
//! the one it was shown.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use scrapelet::client::HttpClient;
use scrapelet::config::{HttpClientConfig, TlsConfig};
use support::logs::Logs;
use support::tls::{Ca, Leaf};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An HTTPS server on 127.0.0.1 that requires a client certificate issued by its client CA
/// and answers with the name of the client certificate it was shown.
struct Server {
    url: String,
    task: JoinHandle<()>,
}

/// Names of client certificates, by DER.
type Known = Arc<Mutex<Vec<(String, CertificateDer<'static>)>>>;

impl Server {
    async fn start(leaf: &Leaf, client_ca: &Ca, known: Known) -> Server {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(client_ca.cert.clone())
            .unwrap_or_else(|e| panic!("client CA: {e}"));
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap_or_else(|e| panic!("client verifier: {e}"));
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![leaf.der.clone()], key)
            .unwrap_or_else(|e| panic!("server config: {e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let known = known.clone();
                tokio::spawn(async move {
                    // A handshake the server refuses (unknown client) just ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let shown = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first().cloned());
                    let name = known
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .find(|(_, der)| Some(der) == shown.as_ref())
                        .map_or_else(|| "unknown".to_owned(), |(n, _)| n.clone());
                    let service = service_fn(move |_req| {
                        let body = Full::new(Bytes::from(name.clone()));
                        async move { Ok::<_, std::convert::Infallible>(http::Response::new(body)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Server {
            url: format!("https://{addr}/"),
            task,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Replaces `path`'s content the way a Secret update does: a new file renamed over the old.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {}: {e}", path.display()));
}

/// GETs `url`: the name of the client certificate the server saw, or the error.
async fn who(client: &HttpClient, url: &str) -> Result<String, String> {
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|e| panic!("{e}"));
    let response = tokio::time::timeout(Duration::from_secs(10), client.send(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| scrapelet::telemetry::error_chain(&e))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

struct Files {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(ca: &Ca, client: &Leaf) -> Files {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = Files {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("client.pem"),
            key: dir.path().join("client.key"),
            _dir: dir,
        };
        replace(&files.ca, &ca.pem);
        files.use_client(client);
        files
    }

    fn use_client(&self, client: &Leaf) {
        replace(&self.cert, &client.cert_pem);
        replace(&self.key, &client.key.serialize_pem());
    }

    fn config(&self) -> HttpClientConfig {
        HttpClientConfig {
            tls_config: TlsConfig {
                ca_file: Some(self.ca.clone()),
                cert_file: Some(self.cert.clone()),
                key_file: Some(self.key.clone()),
                ..Default::default()
            },
            follow_redirects: true,
            ..Default::default()
        }
    }
}

#[tokio::test]
async fn rotated_client_certificates_and_cas_are_used_without_a_restart() {
    let captured = Logs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // A current-thread runtime: the client runs on this thread, under this default.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (ca1, ca2) = (Ca::new("ca one"), Ca::new("ca two"));
    let (alice, bob) = (ca1.issue("alice", &["alice"]), ca1.issue("bob", &["bob"]));
    let known: Known = Arc::new(Mutex::new(vec![
        ("alice".to_owned(), alice.der.clone()),
        ("bob".to_owned(), bob.der.clone()),
    ]));
    // Both servers take client certificates from ca1; their own certificates come from ca1
    // and ca2.
    let one = Server::start(&ca1.issue("server", &["127.0.0.1"]), &ca1, known.clone()).await;
    let two = Server::start(&ca2.issue("server", &["127.0.0.1"]), &ca1, known.clone()).await;
    let files = Files::new(&ca1, &alice);
    let client = HttpClient::new(&files.config()).unwrap_or_else(|e| panic!("client: {e}"));

    assert_eq!(who(&client, &one.url).await, Ok("alice".to_owned()));
    assert_eq!(
        who(&client, &one.url).await,
        Ok("alice".to_owned()),
        "pooled"
    );

    // A new client certificate and key: the next request shows them.
    files.use_client(&bob);
    assert_eq!(who(&client, &one.url).await, Ok("bob".to_owned()));
    assert_eq!(
        captured
            .lines_with("TLS files changed; new connections")
            .len(),
        1
    );

    // The server's CA is not trusted until the CA file says so.
    let refused = who(&client, &two.url).await;
    assert!(
        refused.is_err(),
        "a server from an untrusted CA: {refused:?}"
    );
    replace(&files.ca, &ca2.pem);
    assert_eq!(who(&client, &two.url).await, Ok("bob".to_owned()));
    let dropped = who(&client, &one.url).await;
    assert!(dropped.is_err(), "ca1 is no longer trusted: {dropped:?}");

    // An unusable key keeps the previous settings working, and says so once.
    replace(&files.key, "this is not a key\n");
    assert_eq!(who(&client, &two.url).await, Ok("bob".to_owned()));
    assert_eq!(who(&client, &two.url).await, Ok("bob".to_owned()));
    let warnings = captured.lines_with("cannot be used; keeping the previous ones");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("client.key"), "{}", warnings[0]);
    assert!(
        !warnings[0].contains("this is not a key"),
        "{}",
        warnings[0]
    );

    // Fixed files are picked up again.
    files.use_client(&alice);
    assert_eq!(who(&client, &two.url).await, Ok("alice".to_owned()));
}
