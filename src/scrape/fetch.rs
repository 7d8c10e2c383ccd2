//! Fetching a target's metrics over HTTP: one GET with a deadline, gzip, and a size limit.
//!
//! Buffers are the caller's and are reused between scrapes, so a steady scrape allocates only
//! when a body outgrows every earlier one.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};

use crate::client::HttpClient;

/// What Prometheus 2.x offers: OpenMetrics first, then the text format.
pub(super) const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The User-Agent of scrapes.
pub(super) const USER_AGENT_VALUE: &str = concat!("scrapelet/", env!("CARGO_PKG_VERSION"));

/// Fetches one target. Cheap to keep per loop.
pub(super) struct Fetcher {
    client: HttpClient,
    uri: Uri,
    timeout: Duration,
    timeout_header: HeaderValue,
    /// Uncompressed body limit in bytes; 0 means none.
    body_limit: u64,
    gzip: bool,
}

/// Why a fetch failed. `reason()` is the metric label.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    /// The scrape URL does not parse (a relabeling produced it).
    #[error("invalid scrape URL {0:?}")]
    Url(String),
    /// No complete response within the scrape timeout.
    #[error("scrape timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting or talking to the target failed; the cause says how.
    #[error("cannot reach the target")]
    Connection(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The target answered with a status other than 200.
    #[error("server returned HTTP status {0}")]
    Status(http::StatusCode),
    /// The body (uncompressed) is larger than `body_size_limit` (or, where a scrape config
    /// sets none, `agent.scrape.max_body_size`).
    #[error(
        "body exceeds the body size limit of {0} bytes once decompressed (body_size_limit, or agent.scrape.max_body_size where that is unset)"
    )]
    TooLarge(u64),
    /// A gzip body could not be decompressed.
    #[error("invalid gzip body: {0}")]
    Gzip(std::io::Error),
}

impl FetchError {
    /// A fixed, low-cardinality name for metrics.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            FetchError::Url(_) => "invalid_url",
            FetchError::Timeout(_) => "timeout",
            FetchError::Connection(_) => "connection",
            FetchError::Status(_) => "http_status",
            FetchError::TooLarge(_) => "body_size_limit",
            FetchError::Gzip(_) => "gzip",
        }
    }
}

impl Fetcher {
    pub(super) fn new(
        client: HttpClient,
        url: &str,
        timeout: Duration,
        body_limit: u64,
        gzip: bool,
    ) -> Result<Self, FetchError> {
        let uri: Uri = url.parse().map_err(|_| FetchError::Url(url.to_owned()))?;
        let secs = format!("{}", timeout.as_secs_f64());
        let timeout_header =
            HeaderValue::from_str(&secs).map_err(|_| FetchError::Url(url.to_owned()))?;
        Ok(Fetcher {
            client,
            uri,
            timeout,
            timeout_header,
            body_limit,
            gzip,
        })
    }

    /// Fetches the body into `body` (cleared first), using `scratch` for the compressed form.
    /// Returns the Content-Type.
    pub(super) async fn fetch(
        &self,
        body: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<String>, FetchError> {
        body.clear();
        scratch.clear();
        match tokio::time::timeout(self.timeout, self.fetch_inner(body, scratch)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }

    async fn fetch_inner(
        &self,
        body: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<String>, FetchError> {
        let mut req = Request::get(self.uri.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|_| FetchError::Url(self.uri.to_string()))?;
        let headers = req.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_HEADER));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        headers.insert(
            "X-Prometheus-Scrape-Timeout-Seconds",
            self.timeout_header.clone(),
        );
        let encoding = if self.gzip { "gzip" } else { "identity" };
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(encoding));

        let response = self
            .client
            .send(req)
            .await
            .map_err(|e| FetchError::Connection(Box::new(e)))?;
        if response.status() != http::StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let gzipped = response
            .headers()
            .get(CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let limit = if self.body_limit == 0 {
            u64::MAX
        } else {
            self.body_limit
        };
        let sink = if gzipped { &mut *scratch } else { &mut *body };
        let mut incoming = response.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| FetchError::Connection(Box::new(e)))?;
            if let Ok(data) = frame.into_data() {
                sink.extend_from_slice(&data);
                // Gzip output is never much larger than its input, so a compressed body this
                // large would decompress past the limit too.
                let cap = if gzipped {
                    limit.saturating_add(limit / 16 + 1024)
                } else {
                    limit
                };
                if sink.len() as u64 > cap {
                    return Err(FetchError::TooLarge(limit));
                }
            }
        }
        if gzipped {
            // Inflated in pieces and never past the limit: a small body that inflates to
            // gigabytes costs the limit, not the gigabytes.
            let mut decoder =
                flate2::bufread::GzDecoder::new(&scratch[..]).take(limit.saturating_add(1));
            decoder.read_to_end(body).map_err(FetchError::Gzip)?;
            if body.len() as u64 > limit {
                return Err(FetchError::TooLarge(limit));
            }
        }
        Ok(content_type)
    }
}
