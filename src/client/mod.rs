//! The HTTP client shared by scraping and remote write, made from Prometheus's HTTP client
//! settings ([`HttpClientConfig`]): TLS (CA, client certificate, server name, minimum version,
//! skip-verify), authentication (basic auth, `authorization`, bearer tokens), redirects and
//! HTTP/2.
//!
//! Invariants:
//! 1. Credentials that live in files are read when a request needs them and re-read whenever the
//!    file changes (size or modification time), so rotation needs no restart. A file that cannot
//!    be read fails the request with the path in the error, never with its content.
//! 2. TLS files (`ca_file`, `cert_file`, `key_file`) are checked before every request (their
//!    modification time, size and inode: a few `stat`s); when any changed, the TLS settings
//!    are rebuilt from them and later requests use new connections made with them. When the
//!    new files are unusable (missing, not PEM, a key that does not fit the certificate), the
//!    previous settings stay in use and one warning names the files and the reason (never the
//!    content); they are tried again when the files change again.
//! 3. Secrets are never part of an error, a log line or a `Debug` output.
//! 4. Redirects (when enabled) are followed only for requests without a body, at most
//!    [`MAX_REDIRECTS`] times, and credentials are not sent to another host.
//! 5. Connections are pooled and kept alive; timeouts are the caller's (wrap `send` in
//!    `tokio::time::timeout`).

mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue, LOCATION};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{HttpClientConfig, Secret, TlsConfig};

/// Redirects followed before giving up (Go's default, which Prometheus inherits).
pub const MAX_REDIRECTS: usize = 10;

/// A pooled HTTP(S) client with the configured TLS and authentication. Cheap to clone; clones
/// share the pool and follow the same TLS files.
#[derive(Clone)]
pub struct HttpClient {
    transport: Arc<Transport>,
    auth: Option<Arc<Auth>>,
    follow_redirects: bool,
}

/// The pooled hyper client.
type Pool = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a request could not be made or completed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TLS settings are unusable (bad CA, certificate or key; unknown version). Not
    /// retryable: the configuration must change.
    #[error("invalid TLS settings: {0}")]
    Tls(String),
    /// A credentials file could not be read. Retryable: the file may appear.
    #[error("cannot read credentials file {path}")]
    CredentialsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A credential is not a valid header value. Not retryable until the credential changes.
    #[error("credentials are not a valid HTTP header value")]
    InvalidCredentials,
    /// Connecting, sending or receiving failed. Usually retryable.
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// A redirect was malformed or there were too many.
    #[error("redirect failed: {0}")]
    Redirect(String),
}

/// The pool in use, rebuilt when the TLS files it was made from change (invariant 2).
struct Transport {
    current: Mutex<Current>,
    /// `None` when no TLS setting lives in a file: the pool never changes.
    files: Option<TlsFiles>,
}

/// Covered by `Transport::current`.
struct Current {
    pool: Pool,
    /// The TLS files as they were when `pool` was built.
    stamps: Vec<Stamp>,
    /// The TLS files as they were when they last failed to load (already reported): not
    /// tried again until they change.
    failed: Option<Vec<Stamp>>,
}

/// What rebuilding the pool needs.
struct TlsFiles {
    tls: TlsConfig,
    http2: bool,
    paths: Vec<PathBuf>,
}

/// A file's (modification time, size, inode), or `None` if it cannot be seen.
type Stamp = Option<(Option<SystemTime>, u64, u64)>;

/// How requests authenticate.
enum Auth {
    Basic {
        username: Credential,
        password: Credential,
    },
    Header {
        kind: String,
        credentials: Credential,
    },
}

/// A secret given inline or in a file that is re-read when it changes.
enum Credential {
    Inline(Secret),
    File(CachedFile),
    None,
}

struct CachedFile {
    path: PathBuf,
    /// The last read, reused while the file is unchanged.
    last: Mutex<Option<FileRead>>,
}

/// A file's content and the (modification time, size) it had when read.
struct FileRead {
    stamp: (Option<SystemTime>, u64),
    content: Arc<str>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("auth", &self.auth.is_some())
            .field("follow_redirects", &self.follow_redirects)
            .finish()
    }
}

impl HttpClient {
    /// Builds a client. Reads CA and client-certificate files now (and again when they change,
    /// invariant 2); credential files are read per request (invariant 1).
    pub fn new(cfg: &HttpClientConfig) -> Result<Self, Error> {
        let tls = &cfg.tls_config;
        let paths: Vec<PathBuf> = [&tls.ca_file, &tls.cert_file, &tls.key_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let stamps = stamps(&paths);
        let pool = build_pool(tls, cfg.enable_http2)?;
        let files = (!paths.is_empty()).then(|| TlsFiles {
            tls: tls.clone(),
            http2: cfg.enable_http2,
            paths,
        });
        Ok(HttpClient {
            transport: Arc::new(Transport {
                current: Mutex::new(Current {
                    pool,
                    stamps,
                    failed: None,
                }),
                files,
            }),
            auth: auth_from(cfg).map(Arc::new),
            follow_redirects: cfg.follow_redirects,
        })
    }

    /// Sends `req` with the configured authentication, following redirects when enabled.
    pub async fn send(&self, mut req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Error> {
        if let Some(auth) = &self.auth {
            req.headers_mut()
                .insert(AUTHORIZATION, auth.header_value()?);
        }
        let pool = self.transport.pool();
        let follow = self.follow_redirects && matches!(*req.method(), Method::GET | Method::HEAD);
        if !follow {
            return pool.request(req).await.map_err(Error::Request);
        }
        let original_authority = req.uri().authority().cloned();
        let template = clone_without_body(&req);
        let mut response = pool.request(req).await.map_err(Error::Request)?;
        for _ in 0..MAX_REDIRECTS {
            if !is_redirect(response.status()) {
                return Ok(response);
            }
            let base = template.uri().clone();
            let next = redirect_target(&base, &response)?;
            let mut next_req = clone_without_body(&template);
            if next.authority() != original_authority.as_ref() {
                next_req.headers_mut().remove(AUTHORIZATION);
            }
            *next_req.uri_mut() = next;
            response = pool.request(next_req).await.map_err(Error::Request)?;
        }
        if is_redirect(response.status()) {
            return Err(Error::Redirect(format!(
                "stopped after {MAX_REDIRECTS} redirects"
            )));
        }
        Ok(response)
    }
}

impl Transport {
    /// The pool to use now: rebuilt first if the TLS files changed (invariant 2).
    fn pool(&self) -> Pool {
        let Some(files) = &self.files else {
            return self.lock().pool.clone();
        };
        let now = stamps(&files.paths);
        let mut current = self.lock();
        if now == current.stamps || current.failed.as_ref() == Some(&now) {
            return current.pool.clone();
        }
        match build_pool(&files.tls, files.http2) {
            Ok(pool) => {
                tracing::info!(files = %display_paths(&files.paths), "TLS files changed; new connections use them");
                current.pool = pool;
                current.stamps = now;
                current.failed = None;
            }
            Err(e) => {
                // The error names the file and the reason, never the content (invariant 3).
                tracing::warn!(files = %display_paths(&files.paths), error = %e, "TLS files changed but cannot be used; keeping the previous ones");
                current.failed = Some(now);
            }
        }
        current.pool.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        // Whole-field replacements only; a poisoned lock still guards a consistent state.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What an HTTP/1 connection reads at a time, and the most it buffers. hyper's default
/// (adaptive, up to ~400 KB) lets each kept-alive connection's read buffer grow to the size
/// of the largest body it streamed and keeps it while idle: with one connection per target
/// that was ~250 KB per target (64 KB with a 64 KB cap: 32 MB for 500 targets). Bodies stream
/// through in pieces this large instead (a read(2) per 16 KB, a few microseconds per scrape
/// of a large target); a response head must fit in it (Go's servers send a few hundred bytes).
const HTTP1_READ_BUF_SIZE: usize = 16 * 1024;

/// A pool whose connections use the TLS settings `tls`.
fn build_pool(tls: &TlsConfig, http2: bool) -> Result<Pool, Error> {
    let tls = tls::client_config(tls)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(std::time::Duration::from_secs(30)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = if http2 {
        builder.enable_http1().enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .http1_read_buf_exact_size(HTTP1_READ_BUF_SIZE)
        .build(connector))
}

/// What the files at `paths` look like now (following symlinks: a ConfigMap or Secret update
/// swaps one).
fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&meta);
            #[cfg(not(unix))]
            let inode = 0;
            Some((meta.modified().ok(), meta.len(), inode))
        })
        .collect()
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn clone_without_body(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut out = Request::new(Full::new(Bytes::new()));
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.headers_mut() = req.headers().clone();
    out
}

/// Resolves a `Location` header against the request URI.
fn redirect_target(base: &Uri, response: &Response<Incoming>) -> Result<Uri, Error> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Redirect("redirect without a Location header".into()))?;
    let bad = || Error::Redirect(format!("bad Location {location:?}"));
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().map_err(|_| bad());
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let path = if location.starts_with('/') {
        location.to_owned()
    } else {
        let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{dir}/{location}")
    };
    format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|_| bad())
}

fn auth_from(cfg: &HttpClientConfig) -> Option<Auth> {
    if let Some(basic) = &cfg.basic_auth {
        let username = Secret::new(basic.username.clone());
        return Some(Auth::Basic {
            username: Credential::new(Some(&username), basic.username_file.as_deref()),
            password: Credential::new(basic.password.as_ref(), basic.password_file.as_deref()),
        });
    }
    cfg.authorization.as_ref().map(|a| Auth::Header {
        kind: a.kind.clone(),
        credentials: Credential::new(a.credentials.as_ref(), a.credentials_file.as_deref()),
    })
}

impl Auth {
    fn header_value(&self) -> Result<HeaderValue, Error> {
        let text = match self {
            Auth::Basic { username, password } => {
                let username = username.current()?;
                let password = password.current()?;
                let raw = format!(
                    "{}:{}",
                    username.as_deref().unwrap_or(""),
                    password.as_deref().unwrap_or("")
                );
                format!("Basic {}", base64_encode(raw.as_bytes()))
            }
            Auth::Header { kind, credentials } => match credentials.current()? {
                Some(c) => format!("{kind} {}", c.trim()),
                None => kind.clone(),
            },
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| Error::InvalidCredentials)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl Credential {
    fn new(inline: Option<&Secret>, file: Option<&Path>) -> Self {
        match (inline, file) {
            (_, Some(path)) => Credential::File(CachedFile {
                path: path.to_owned(),
                last: Mutex::new(None),
            }),
            (Some(secret), None) => Credential::Inline(secret.clone()),
            (None, None) => Credential::None,
        }
    }

    /// The credential as of now (files re-read when changed, their content trimmed of
    /// surrounding whitespace as Prometheus does: a trailing newline is not part of it).
    fn current(&self) -> Result<Option<Arc<str>>, Error> {
        match self {
            Credential::Inline(s) => Ok(Some(Arc::from(s.expose()))),
            Credential::File(f) => f.read().map(|s| match s.trim() {
                t if t.len() == s.len() => Some(s),
                t => Some(Arc::from(t)),
            }),
            Credential::None => Ok(None),
        }
    }
}

impl CachedFile {
    fn read(&self) -> Result<Arc<str>, Error> {
        let err = |source| Error::CredentialsFile {
            path: self.path.clone(),
            source,
        };
        let meta = std::fs::metadata(&self.path).map_err(err)?;
        let stamp = (meta.modified().ok(), meta.len());
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(read) = last.as_ref()
            && read.stamp == stamp
        {
            return Ok(read.content.clone());
        }
        let content: Arc<str> = std::fs::read_to_string(&self.path)
            .map_err(err)?
            .trim_end_matches(['\n', '\r'])
            .into();
        *last = Some(FileRead {
            stamp,
            content: content.clone(),
        });
        Ok(content)
    }
}

/// Standard base64 with padding (for basic auth; too small to warrant a dependency).
fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Authorization, BasicAuth};

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn credential_files_are_reread_when_they_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").expect("write");
        let cfg = HttpClientConfig {
            authorization: Some(Authorization {
                kind: "Bearer".into(),
                credentials: None,
                credentials_file: Some(path.clone()),
            }),
            ..Default::default()
        };
        let auth = auth_from(&cfg).expect("auth");
        assert_eq!(auth.header_value().expect("value"), "Bearer first");
        std::fs::write(&path, "second-and-longer\n").expect("write");
        assert_eq!(
            auth.header_value().expect("value"),
            "Bearer second-and-longer"
        );
        std::fs::remove_file(&path).expect("remove");
        let err = auth.header_value().expect_err("missing file");
        assert!(err.to_string().contains("token"), "{err}");
        assert!(!err.to_string().contains("second"), "{err}");
    }

    #[test]
    fn basic_auth_header() {
        let cfg = HttpClientConfig {
            basic_auth: Some(BasicAuth {
                username: "user".into(),
                username_file: None,
                password: Some(Secret::new("pass")),
                password_file: None,
            }),
            ..Default::default()
        };
        let value = auth_from(&cfg)
            .expect("auth")
            .header_value()
            .expect("value");
        assert_eq!(value, "Basic dXNlcjpwYXNz");
        assert!(value.is_sensitive());
    }

    #[test]
    fn basic_auth_from_files_is_trimmed_and_follows_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (user, pass) = (dir.path().join("user"), dir.path().join("pass"));
        std::fs::write(&user, "user\n").expect("write");
        std::fs::write(&pass, "pass\n").expect("write");
        let cfg = HttpClientConfig {
            basic_auth: Some(BasicAuth {
                username: String::new(),
                username_file: Some(user.clone()),
                password: None,
                password_file: Some(pass.clone()),
            }),
            ..Default::default()
        };
        let auth = auth_from(&cfg).expect("auth");
        assert_eq!(auth.header_value().expect("value"), "Basic dXNlcjpwYXNz");
        std::fs::write(&user, "admin").expect("write");
        std::fs::write(&pass, " secret \n").expect("write");
        // base64("admin:secret")
        assert_eq!(
            auth.header_value().expect("value"),
            "Basic YWRtaW46c2VjcmV0"
        );
    }
}
