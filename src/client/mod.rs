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
//! 4. Redirects (with `follow_redirects`, as Go's client, hence Prometheus): GET and HEAD
//!    follow 301, 302, 303, 307 and 308; a request with a body (remote write's POST) follows
//!    only 307 and 308, with the same method and body (301/302/303 would turn it into a GET
//!    without its body: that answer is returned to the caller, who reports it). At most
//!    [`MAX_REDIRECTS`] hops; a relative `Location` is resolved against the URL of the request
//!    that got it (RFC 3986); an answer without `Location` is returned as it is. The
//!    `Authorization` header is not sent to a host that is neither the first request's host
//!    nor a subdomain of it (port ignored), and once dropped in a chain it stays dropped.
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

/// A file's (modification time, size, inode), or `None` if it cannot be seen: what tells the
/// TLS files and the credential files that they changed (the inode catches a Secret or
/// ConfigMap update, which swaps a symlink to a new file of the same size and time).
type Stamp = Option<(Option<SystemTime>, u64, u64)>;

/// The [`Stamp`] of the file at `path` (following symlinks).
fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok(), meta.len(), inode))
}

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
    stamp: Stamp,
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

    /// Sends `req` with the configured authentication, following redirects when enabled
    /// (invariant 4).
    pub async fn send(&self, mut req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Error> {
        if let Some(auth) = &self.auth {
            req.headers_mut()
                .insert(AUTHORIZATION, auth.header_value()?);
        }
        let pool = self.transport.pool();
        if !self.follow_redirects {
            return pool.request(req).await.map_err(Error::Request);
        }
        let bodyless = matches!(*req.method(), Method::GET | Method::HEAD);
        let first_host = req.uri().host().map(str::to_ascii_lowercase);
        let mut credentials = true;
        let mut sent = clone_request(&req);
        let mut response = pool.request(req).await.map_err(Error::Request)?;
        for _ in 0..MAX_REDIRECTS {
            if !follows(response.status(), bodyless) {
                return Ok(response);
            }
            let Some(next) = redirect_target(sent.uri(), &response)? else {
                // As Go: without a Location there is nowhere to go; the caller gets the 3xx.
                return Ok(response);
            };
            credentials &= same_site(first_host.as_deref(), next.host());
            let mut next_req = clone_request(&sent);
            if !credentials {
                next_req.headers_mut().remove(AUTHORIZATION);
            }
            *next_req.uri_mut() = next;
            sent = clone_request(&next_req);
            response = pool.request(next_req).await.map_err(Error::Request)?;
        }
        if follows(response.status(), bodyless) {
            return Err(Error::Redirect(format!(
                "stopped after {MAX_REDIRECTS} redirects"
            )));
        }
        Ok(response)
    }
}

/// Whether a redirect with `status` is followed for a request with (`!bodyless`) or without a
/// body (invariant 4).
fn follows(status: StatusCode, bodyless: bool) -> bool {
    match status.as_u16() {
        307 | 308 => true,
        301..=303 => bodyless,
        _ => false,
    }
}

/// Whether credentials for `first` may go to `next`: the same host or a subdomain of it
/// (Go's rule for `Authorization` on redirects; ports do not matter).
fn same_site(first: Option<&str>, next: Option<&str>) -> bool {
    let (Some(first), Some(next)) = (first, next) else {
        return false;
    };
    let next = next.to_ascii_lowercase();
    if next == first {
        return true;
    }
    // An IP address has no subdomains.
    if first.parse::<std::net::IpAddr>().is_ok()
        || first
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    {
        return false;
    }
    next.strip_suffix(first)
        .is_some_and(|prefix| prefix.ends_with('.'))
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
    paths.iter().map(|p| stamp(p)).collect()
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A copy of `req` to send again: method, URI, headers and body (cheap: the body is shared).
fn clone_request(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut out = Request::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.headers_mut() = req.headers().clone();
    out
}

/// Where a redirect answer to a request for `base` points: its `Location` resolved against
/// `base`; `None` without a `Location`.
fn redirect_target(base: &Uri, response: &Response<Incoming>) -> Result<Option<Uri>, Error> {
    let Some(location) = response.headers().get(LOCATION) else {
        return Ok(None);
    };
    let location = location
        .to_str()
        .map_err(|_| Error::Redirect("a Location header that is not text".into()))?;
    resolve(base, location)
        .map(Some)
        .ok_or_else(|| Error::Redirect(format!("bad Location {:?}", redact_location(location))))
}

/// `reference` resolved against `base` (RFC 3986 section 5.2, as Go's `URL.ResolveReference`);
/// `None` if the result is not an http(s) URL.
fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    let reference = reference.split('#').next().unwrap_or_default();
    let split_query = |s: &str| match s.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (s.to_owned(), None),
    };
    let (scheme, authority, path, query) = if let Some((scheme, rest)) = scheme_of(reference) {
        let rest = rest.strip_prefix("//")?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (path, query) = split_query(&rest[end..]);
        (scheme.to_owned(), rest[..end].to_owned(), path, query)
    } else {
        let scheme = base.scheme_str()?.to_owned();
        if let Some(rest) = reference.strip_prefix("//") {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (path, query) = split_query(&rest[end..]);
            (scheme, rest[..end].to_owned(), path, query)
        } else {
            let authority = base.authority()?.as_str().to_owned();
            let (path, query) = split_query(reference);
            if path.is_empty() {
                let query = query.or_else(|| base.query().map(str::to_owned));
                (scheme, authority, base.path().to_owned(), query)
            } else if path.starts_with('/') {
                (scheme, authority, path, query)
            } else {
                let dir = base.path().rfind('/').map_or("/", |i| &base.path()[..=i]);
                (scheme, authority, format!("{dir}{path}"), query)
            }
        }
    };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || authority.is_empty() {
        return None;
    }
    let path = remove_dot_segments(&path);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{authority}{path}{query}").parse().ok()
}

/// The scheme of an absolute reference and what follows its `:`.
fn scheme_of(reference: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = reference.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// RFC 3986 section 5.2.4 for an absolute path (`""` becomes `/`).
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.into_iter().enumerate() {
        match segment {
            "." | ".." => {
                if segment == ".." {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// A `Location` for an error message: no user info, no query (either may hold a secret).
pub fn redact_location(location: &str) -> String {
    let without_query = match location.split_once(['?', '#']) {
        Some((before, _)) => format!("{before}?…"),
        None => location.to_owned(),
    };
    crate::telemetry::redact_url(&without_query)
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
                format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        raw.as_bytes()
                    )
                )
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
        // Unseeable: read_to_string below says why.
        let stamp = stamp(&self.path);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(read) = last.as_ref()
            && stamp.is_some()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Authorization, BasicAuth};

    #[test]
    fn locations_resolve_against_the_request_url_as_rfc3986() {
        let base: Uri = "http://a.example:9/api/v1/write?x=1".parse().expect("uri");
        for (location, want) in [
            ("http://b.example/w", "http://b.example/w"),
            ("HTTPS://b.example:8443", "https://b.example:8443/"),
            ("//c.example/x?y=2", "http://c.example/x?y=2"),
            ("/other", "http://a.example:9/other"),
            ("push", "http://a.example:9/api/v1/push"),
            ("../v2/write", "http://a.example:9/api/v2/write"),
            ("./w/./x/../y", "http://a.example:9/api/v1/w/y"),
            ("../../../../up", "http://a.example:9/up"),
            ("?z=3", "http://a.example:9/api/v1/write?z=3"),
            ("", "http://a.example:9/api/v1/write?x=1"),
            ("#frag", "http://a.example:9/api/v1/write?x=1"),
            ("/a/b/..", "http://a.example:9/a/"),
        ] {
            let got = resolve(&base, location).map(|u| u.to_string());
            assert_eq!(got.as_deref(), Some(want), "{location:?}");
        }
        for bad in ["ftp://b.example/w", "mailto:x@y", "http://"] {
            assert_eq!(resolve(&base, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn credentials_follow_only_to_the_same_host_or_its_subdomains() {
        let same = |a: &str, b: &str| same_site(Some(a), Some(b));
        assert!(same("example.com", "example.com"));
        assert!(same("example.com", "EU.Example.COM"));
        assert!(same("127.0.0.1", "127.0.0.1"), "ports do not matter");
        assert!(!same("example.com", "badexample.com"));
        assert!(!same("eu.example.com", "example.com"));
        assert!(!same("example.com", "example.com.evil.net"));
        assert!(!same("127.0.0.1", "localhost"));
        assert!(
            !same("10.0.0.1", "1.10.0.0.1"),
            "addresses have no subdomains"
        );
        assert!(!same_site(Some("example.com"), None));
    }

    #[test]
    fn bodies_follow_307_and_308_only() {
        for (status, bodyless, want) in [
            (301, true, true),
            (302, true, true),
            (303, true, true),
            (307, true, true),
            (308, true, true),
            (301, false, false),
            (302, false, false),
            (303, false, false),
            (307, false, true),
            (308, false, true),
            (304, true, false),
            (200, false, false),
        ] {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(
                follows(status, bodyless),
                want,
                "{status} bodyless={bodyless}"
            );
        }
    }

    #[test]
    fn locations_in_messages_lose_user_info_and_query() {
        assert_eq!(
            redact_location("https://u:p@h/w?token=s3cret"),
            "https://h/w?…"
        );
        assert_eq!(redact_location("/w"), "/w");
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
