//! Sending one compressed write request: the [`WriteClient`] seam and its HTTP implementation.
//!
//! Invariants:
//! 1. Every request carries the four headers the spec requires (`Content-Encoding: snappy`,
//!    `Content-Type: application/x-protobuf`, `X-Prometheus-Remote-Write-Version: 0.1.0`,
//!    `User-Agent: scrapelet/<version>`); configured headers are added first and can never
//!    replace them.
//! 2. A request that has not finished within `remote_timeout` (answer and body) fails with
//!    [`SendError::Timeout`].
//! 3. The answer is classified, never interpreted: 2xx is success; for anything else at most
//!    [`MAX_ERROR_MESSAGE_BYTES`] of the body are kept, as the receiver's message for the log.
//! 4. Redirects: with `follow_redirects` (the default) the client follows 307 and 308 with
//!    the same body, within its hop limit (`crate::client`); a redirect answer that reaches
//!    this classification (301, 302, 303, any 3xx without `Location`, or 307/308 with
//!    `follow_redirects: false`) is [`SendError::Redirect`]: not retryable, and its message
//!    names the status, where it points and what to change.

use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, RETRY_AFTER, USER_AGENT,
};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};

use super::error::Error;
use super::retry::parse_retry_after;
use crate::config::RemoteWriteConfig;

/// Sends one request body (a snappy-compressed `WriteRequest`) to one endpoint.
pub trait WriteClient: Send + Sync + 'static {
    /// Stores the request; the error says whether trying again can help.
    fn store(&self, body: Bytes) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// Why a request failed. [`SendError::is_retryable`] holds the policy.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiver answered 5xx. Retryable (the spec requires it).
    #[error("receiver answered {status}: {message}")]
    Server {
        status: StatusCode,
        /// What `Retry-After` asked for, if it was given and understood (Prometheus honours
        /// it on 5xx too).
        retry_after: Option<Duration>,
        message: String,
    },
    /// The receiver answered 429 Too Many Requests. Retryable only with `retry_on_http_429`.
    #[error("receiver answered {}: {message}", StatusCode::TOO_MANY_REQUESTS)]
    RateLimited {
        /// What `Retry-After` asked for, if it was given and understood.
        retry_after: Option<Duration>,
        message: String,
    },
    /// The receiver answered another non-2xx status (4xx, 1xx): the request can never
    /// succeed. Not retryable.
    #[error("receiver answered {status}: {message}")]
    Rejected { status: StatusCode, message: String },
    /// The receiver redirected and the redirect is not followed (invariant 4): the same
    /// request would get the same answer. Not retryable: the configured URL must change.
    #[error("receiver answered {status} redirecting to {}: {}", location.as_deref().unwrap_or("(no Location header)"), redirect_advice(*status, *follow_redirects, location.is_some()))]
    Redirect {
        status: StatusCode,
        /// Where it points, without user info or query (`client::redact_location`).
        location: Option<String>,
        follow_redirects: bool,
    },
    /// No complete answer within `remote_timeout`. Retryable.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, sending or reading failed, or credentials could not be read. Retryable:
    /// networks heal and credential files get fixed.
    #[error("request failed")]
    Transport(#[source] crate::client::Error),
}

/// How much of an error answer's body is kept as the receiver's message.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 256;

/// Successful answers' bodies are drained (to keep the connection) up to this size.
const MAX_DRAINED_BODY_BYTES: usize = 64 * 1024;

/// The version of the protocol sent in `X-Prometheus-Remote-Write-Version`.
pub const REMOTE_WRITE_VERSION: &str = "0.1.0";

/// The user agent sent with every request.
pub const USER_AGENT_VALUE: &str = concat!("scrapelet/", env!("CARGO_PKG_VERSION"));

/// [`WriteClient`] over HTTP(S) with the shared client (TLS, authentication).
#[derive(Clone, Debug)]
pub struct HttpWriteClient {
    client: crate::client::HttpClient,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    follow_redirects: bool,
}

impl SendError {
    /// Whether the same request should be tried again.
    pub fn is_retryable(&self, retry_on_http_429: bool) -> bool {
        match self {
            SendError::Server { .. } | SendError::Timeout(_) | SendError::Transport(_) => true,
            SendError::RateLimited { .. } => retry_on_http_429,
            SendError::Rejected { .. } | SendError::Redirect { .. } => false,
        }
    }

    /// The delay the receiver asked for with `Retry-After` (5xx and 429).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Server { retry_after, .. } | SendError::RateLimited { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The HTTP status, when the receiver answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            SendError::Server { status, .. }
            | SendError::Rejected { status, .. }
            | SendError::Redirect { status, .. } => Some(*status),
            SendError::RateLimited { .. } => Some(StatusCode::TOO_MANY_REQUESTS),
            SendError::Timeout(_) | SendError::Transport(_) => None,
        }
    }
}

impl HttpWriteClient {
    /// A client for `cfg.url` with `cfg`'s headers, timeout, TLS and authentication.
    pub fn new(cfg: &RemoteWriteConfig) -> Result<Self, Error> {
        let uri: Uri = cfg.url.parse().map_err(|source| Error::Url {
            endpoint: cfg.name.clone(),
            url: cfg.url.clone(),
            source,
        })?;
        let client = crate::client::HttpClient::new(&cfg.http).map_err(|source| Error::Client {
            endpoint: cfg.name.clone(),
            source,
        })?;
        let headers = request_headers(cfg)?;
        Ok(HttpWriteClient {
            client,
            uri,
            headers,
            timeout: cfg.remote_timeout,
            follow_redirects: cfg.http.follow_redirects,
        })
    }

    async fn store_without_timeout(&self, body: Bytes) -> Result<(), SendError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        let resp = self.client.send(req).await.map_err(SendError::Transport)?;
        let status = resp.status();
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(LOCATION)
                .map(|l| crate::client::redact_location(&String::from_utf8_lossy(l.as_bytes())));
            return Err(SendError::Redirect {
                status,
                location,
                follow_redirects: self.follow_redirects,
            });
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let limit = if status.is_success() {
            MAX_DRAINED_BODY_BYTES
        } else {
            MAX_ERROR_MESSAGE_BYTES
        };
        let body = read_prefix(resp.into_body(), limit).await;
        if status.is_success() {
            return Ok(());
        }
        let message = error_message(&body);
        Err(if status.is_server_error() {
            SendError::Server {
                status,
                retry_after,
                message,
            }
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            SendError::RateLimited {
                retry_after,
                message,
            }
        } else {
            SendError::Rejected { status, message }
        })
    }
}

impl WriteClient for HttpWriteClient {
    async fn store(&self, body: Bytes) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.store_without_timeout(body)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(self.timeout)),
        }
    }
}

/// What to do about a redirect that is not followed.
fn redirect_advice(status: StatusCode, follow_redirects: bool, has_location: bool) -> &'static str {
    match status.as_u16() {
        _ if !has_location => "nowhere to follow; check the url",
        307 | 308 if !follow_redirects => {
            "follow_redirects is false; set url to the new location or enable follow_redirects"
        }
        301..=303 => {
            "remote write does not follow it (it would turn the POST into a GET without the samples); set url to the new location"
        }
        _ => "not followed; set url to the new location",
    }
}

/// The configured headers, then the protocol's (which replace any configured namesake).
fn request_headers(cfg: &RemoteWriteConfig) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    for (name, value) in &cfg.headers {
        let bad = || Error::Header {
            endpoint: cfg.name.clone(),
            name: name.clone(),
        };
        let name = HeaderName::try_from(name.as_str()).map_err(|_| bad())?;
        let value = HeaderValue::try_from(value.as_str()).map_err(|_| bad())?;
        headers.insert(name, value);
    }
    let version = HeaderName::from_static("x-prometheus-remote-write-version");
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    headers.insert(version, HeaderValue::from_static(REMOTE_WRITE_VERSION));
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    Ok(headers)
}

/// Reads at most about `limit` bytes of a body; errors end the read (the body is a courtesy).
async fn read_prefix(mut body: hyper::body::Incoming, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let take = data.len().min(limit - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    out
}

/// The receiver's message: the first bytes of the body, as text, trimmed.
fn error_message(body: &[u8]) -> String {
    let body = &body[..body.len().min(MAX_ERROR_MESSAGE_BYTES)];
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(headers: &[(&str, &str)]) -> RemoteWriteConfig {
        RemoteWriteConfig {
            url: "http://127.0.0.1:1/write".into(),
            name: "test".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        }
    }

    #[test]
    fn protocol_headers_cannot_be_overridden() {
        let headers = request_headers(&config(&[
            ("User-Agent", "evil"),
            ("Content-Encoding", "gzip"),
            ("X-Scope-OrgID", "tenant-1"),
        ]));
        let headers = headers.unwrap_or_default();
        let get = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(get("user-agent").as_deref(), Some(USER_AGENT_VALUE));
        assert_eq!(get("content-encoding").as_deref(), Some("snappy"));
        assert_eq!(
            get("content-type").as_deref(),
            Some("application/x-protobuf")
        );
        assert_eq!(
            get("x-prometheus-remote-write-version").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(get("x-scope-orgid").as_deref(), Some("tenant-1"));
        assert_eq!(headers.len(), 5);
    }

    #[test]
    fn bad_header_is_an_error_naming_it() {
        let err = request_headers(&config(&[("bad name", "x")])).err();
        assert!(matches!(err, Some(Error::Header { ref name, .. }) if name == "bad name"));
    }

    #[test]
    fn retry_policy_follows_the_spec() {
        let server = SendError::Server {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(Duration::from_secs(2)),
            message: String::new(),
        };
        let limited = SendError::RateLimited {
            retry_after: None,
            message: String::new(),
        };
        let rejected = SendError::Rejected {
            status: StatusCode::BAD_REQUEST,
            message: String::new(),
        };
        assert!(server.is_retryable(false));
        assert!(SendError::Timeout(Duration::from_secs(1)).is_retryable(false));
        assert!(!limited.is_retryable(false));
        assert!(limited.is_retryable(true));
        assert!(!rejected.is_retryable(true));
        assert_eq!(limited.status(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(server.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(rejected.retry_after(), None);
    }

    #[test]
    fn redirects_not_followed_are_final_and_say_where_and_why() {
        let moved = SendError::Redirect {
            status: StatusCode::MOVED_PERMANENTLY,
            location: Some("https://mimir.example/api/v1/push?…".into()),
            follow_redirects: true,
        };
        assert!(!moved.is_retryable(true));
        assert_eq!(moved.status(), Some(StatusCode::MOVED_PERMANENTLY));
        assert_eq!(
            moved.to_string(),
            "receiver answered 301 Moved Permanently redirecting to \
             https://mimir.example/api/v1/push?…: remote write does not follow it (it would \
             turn the POST into a GET without the samples); set url to the new location"
        );
        let not_followed = SendError::Redirect {
            status: StatusCode::TEMPORARY_REDIRECT,
            location: Some("http://b/w".into()),
            follow_redirects: false,
        };
        assert!(!not_followed.is_retryable(false));
        assert_eq!(
            not_followed.to_string(),
            "receiver answered 307 Temporary Redirect redirecting to http://b/w: \
             follow_redirects is false; set url to the new location or enable follow_redirects"
        );
        let nowhere = SendError::Redirect {
            status: StatusCode::PERMANENT_REDIRECT,
            location: None,
            follow_redirects: true,
        };
        assert!(
            nowhere
                .to_string()
                .contains("redirecting to (no Location header): nowhere to follow"),
            "{nowhere}"
        );
    }

    #[test]
    fn error_message_is_cut_and_trimmed() {
        assert_eq!(
            error_message(b"  out of order sample\n"),
            "out of order sample"
        );
        assert_eq!(error_message(b""), "(empty body)");
        let long = vec![b'x'; 1000];
        assert_eq!(error_message(&long).len(), MAX_ERROR_MESSAGE_BYTES);
        // A cut inside a multi-byte character does not fail.
        let mut cut = vec![b'a'; MAX_ERROR_MESSAGE_BYTES - 1];
        cut.extend_from_slice("é".as_bytes());
        assert!(error_message(&cut).starts_with("aaa"));
    }
}
