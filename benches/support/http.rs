//! HTTP pieces of the side-by-side benches, all on 127.0.0.1: a scrape target serving a
//! generated body, a fast remote-write receiver that counts what it gets, and a small client.
//!
//! Invariants: servers live on the tokio runtime that started them, and stop with it; the
//! receiver answers every request 204 at once (it never pushes back), so what an agent
//! delivers is limited by the agent alone; counters only grow.
//!
//! Include with `#[path = "support/http.rs"] mod http_support;`.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::TcpListener;

/// A running receiver and what it has counted.
pub struct Sink {
    pub addr: SocketAddr,
    pub counts: Arc<SinkCounts>,
}

/// What a [`Sink`] has received so far.
#[derive(Default)]
pub struct SinkCounts {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Samples in the requests that decoded (only when the sink decodes).
    pub samples: AtomicU64,
    /// Requests that were not snappy-compressed `WriteRequest`s (only when it decodes).
    pub undecodable: AtomicU64,
    /// Compressed bytes received.
    pub bytes: AtomicU64,
    /// Delivery latency of every decoded sample: arrival time minus the sample's timestamp.
    pub latency: Latency,
    /// While set, the receiver answers 503 to everything (an outage) and counts nothing.
    pub down: std::sync::atomic::AtomicBool,
    /// Newest sample timestamp received, ms.
    pub newest_ms: std::sync::atomic::AtomicI64,
}

/// A histogram of delivery latencies in [`Latency::STEP_MS`] buckets (the last bucket takes
/// everything beyond it). Counts only grow, so two snapshots subtract to a window's.
pub struct Latency {
    buckets: Vec<AtomicU64>,
}

impl Latency {
    /// Width of a bucket.
    pub const STEP_MS: u64 = 25;
    const BUCKETS: usize = 24_000; // 10 minutes

    fn record(&self, latency_ms: i64) {
        let i = (latency_ms.max(0) as u64 / Self::STEP_MS).min(Self::BUCKETS as u64 - 1);
        self.buckets[i as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// The `q` quantile (0..1) in seconds of the samples counted between `before` and `after`
    /// (two snapshots); the upper edge of its bucket. `None` without samples.
    pub fn quantile(before: &[u64], after: &[u64], q: f64) -> Option<f64> {
        let counts: Vec<u64> = after
            .iter()
            .zip(before)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(((i as u64 + 1) * Self::STEP_MS) as f64 / 1000.0);
            }
        }
        None
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: (0..Self::BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl SinkCounts {
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Sink {
    /// Starts a receiver on 127.0.0.1:0. With `decode`, every body is snappy-decoded and its
    /// samples counted; without, bodies are only read (the cheapest possible receiver).
    pub async fn start(decode: bool) -> Sink {
        let counts = Arc::new(SinkCounts::default());
        let c = counts.clone();
        let addr = serve(move |body| {
            if c.down.load(Ordering::Relaxed) {
                return (http::StatusCode::SERVICE_UNAVAILABLE, String::new());
            }
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            if decode {
                match count_samples(&body, &c.latency, &c.newest_ms) {
                    Some(n) => c.samples.fetch_add(n, Ordering::Relaxed),
                    None => c.undecodable.fetch_add(1, Ordering::Relaxed),
                };
            }
            (http::StatusCode::NO_CONTENT, String::new())
        })
        .await;
        Sink { addr, counts }
    }

    /// The remote-write URL to give an agent.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }
}

/// Starts a scrape target on 127.0.0.1:0 whose every response is `body()` (called once per
/// request) as the Prometheus text format.
pub async fn serve_text(body: impl FnMut() -> String + Send + 'static) -> SocketAddr {
    let body = std::sync::Mutex::new(body);
    serve(move |_| match body.lock() {
        Ok(mut f) => (http::StatusCode::OK, f()),
        Err(_) => (http::StatusCode::INTERNAL_SERVER_ERROR, String::new()),
    })
    .await
}

/// A server on 127.0.0.1:0 that reads each request's body whole and answers with what
/// `answer` makes of it.
async fn serve(
    answer: impl Fn(Bytes) -> (http::StatusCode, String) + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let (status, text) = answer(body);
                        let mut resp = http::Response::new(Full::new(Bytes::from(text)));
                        *resp.status_mut() = status;
                        if status == http::StatusCode::OK {
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `prometheus.WriteRequest` with only what counting needs: prost skips the labels (field 1
/// of `TimeSeries`) and metadata (field 3) without allocating for them.
#[derive(Clone, PartialEq, prost::Message)]
struct CountRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<CountSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CountSeries {
    #[prost(message, repeated, tag = "2")]
    samples: Vec<CountSample>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CountSample {
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// Samples in a snappy-compressed (block format) `WriteRequest`, their latencies recorded in
/// `latency`; `None` if it is not one.
fn count_samples(
    body: &[u8],
    latency: &Latency,
    newest_ms: &std::sync::atomic::AtomicI64,
) -> Option<u64> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).ok()?;
    let req = CountRequest::decode(raw.as_slice()).ok()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut n = 0;
    for s in req.timeseries.iter().flat_map(|s| &s.samples) {
        latency.record(now_ms - s.timestamp);
        newest_ms.fetch_max(s.timestamp, Ordering::Relaxed);
        n += 1;
    }
    Some(n)
}

/// GETs `path` from 127.0.0.1:`port`; the body as text, `None` on any failure or after 5 s.
pub async fn get_text(port: u16, path: &str) -> Option<String> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let uri: http::Uri = format!("http://127.0.0.1:{port}{path}").parse().ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .ok()?
        .ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// The sum of the values of every series of metric `name` on 127.0.0.1:`port`/metrics.
pub async fn metric(port: u16, name: &str) -> Option<f64> {
    let text = get_text(port, "/metrics").await?;
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}
