//! A scriptable Prometheus remote-write receiver on `127.0.0.1:0`.
//!
//! It decodes every request (snappy block format + protobuf `WriteRequest`), records it with
//! its headers, and answers from a script: replies queued with [`Receiver::reply_next`] are
//! used one per request, in order; after that, the default reply ([`Receiver::set_default`],
//! initially `204 No Content`). A reply can carry a status, a body, headers and a delay.
//!
//! Samples count as accepted when their request was answered 2xx; [`Receiver::accepted`] lists
//! them in arrival order, [`Receiver::accepted_metadata`] the metric metadata likewise.
//! Metadata-only requests (no time series) take their replies from a script of their own
//! ([`Receiver::reply_next_metadata`]), then the default: a test that scripts replies for
//! samples is not disturbed by them.
//!
//! Waiting helpers take a timeout and panic with what they saw when it passes, so tests never
//! sleep to synchronise.
//!
//! ```ignore
//! let rx = Receiver::start().await;
//! rx.reply_next([Reply::status(500), Reply::status(400).with_body("bad label")]);
//! // ... point a remote_write url at rx.url() ...
//! let samples = rx.wait_for_accepted(10, Duration::from_secs(10)).await;
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use scrapelet::remote::prompb::{MetricMetadata, WriteRequest};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Requests larger than this (compressed or not) are answered 413 and recorded as undecodable.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// A running receiver. Dropping it stops the server and closes its connections.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering.
    pub delay: Duration,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: http::Method,
    pub path: String,
    pub headers: http::HeaderMap,
    /// Size of the body on the wire.
    pub body_len: usize,
    /// The decoded request, or why it could not be decoded.
    pub write: Result<WriteRequest, String>,
    /// The status it was answered with.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

/// One sample of an accepted request.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSample {
    /// In wire order.
    pub labels: Vec<(String, String)>,
    pub timestamp_ms: i64,
    pub value: f64,
}

struct Shared {
    /// Connections accepted so far.
    connections: std::sync::atomic::AtomicUsize,
    state: Mutex<State>,
    /// Bumped after every request is recorded; waiters watch it.
    changed: watch::Sender<u64>,
}

struct State {
    script: VecDeque<Reply>,
    /// For metadata-only requests, which never take `script`'s replies; when empty, they get
    /// the default.
    metadata_script: VecDeque<Reply>,
    default: Reply,
    requests: Vec<RecordedRequest>,
    accepted: Vec<ReceivedSample>,
    accepted_metadata: Vec<MetricMetadata>,
}

impl Reply {
    /// `204 No Content`, what Prometheus answers.
    pub fn ok() -> Self {
        Self::status(204)
    }

    /// An empty answer with `status`.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            body: String::new(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl RecordedRequest {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Samples in the request (decodable requests only).
    pub fn sample_count(&self) -> usize {
        self.write
            .as_ref()
            .map(|w| w.timeseries.iter().map(|t| t.samples.len()).sum())
            .unwrap_or(0)
    }

    /// Whether it was answered 2xx.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether it carries metric metadata and no time series.
    pub fn is_metadata_only(&self) -> bool {
        metadata_only(&self.write)
    }

    /// The metric metadata it carries (decodable requests only).
    pub fn metadata(&self) -> &[MetricMetadata] {
        self.write.as_ref().map_or(&[], |w| w.metadata.as_slice())
    }
}

impl ReceivedSample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The metric name (`__name__`).
    pub fn name(&self) -> Option<&str> {
        self.label("__name__")
    }
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let shared = Arc::new(Shared {
            connections: std::sync::atomic::AtomicUsize::new(0),
            state: Mutex::new(State {
                script: VecDeque::new(),
                default: Reply::ok(),
                metadata_script: VecDeque::new(),
                requests: Vec::new(),
                accepted: Vec::new(),
                accepted_metadata: Vec::new(),
            }),
            changed: watch::Sender::new(0),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Receiver {
            addr,
            shared,
            server,
        }
    }

    /// The write URL (`http://127.0.0.1:<port>/api/v1/write`).
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues replies for the next requests, one each, in order.
    pub fn reply_next(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().script.extend(replies);
    }

    /// Queues replies for the next metadata-only requests, one each, in order.
    pub fn reply_next_metadata(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().metadata_script.extend(replies);
    }

    /// The reply once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        self.shared.lock().default = reply;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Samples of requests answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<ReceivedSample> {
        self.shared.lock().accepted.clone()
    }

    /// Metric metadata of requests answered 2xx, in arrival order.
    pub fn accepted_metadata(&self) -> Vec<MetricMetadata> {
        self.shared.lock().accepted_metadata.clone()
    }

    /// Every metadata-only request so far, in arrival order.
    pub fn metadata_requests(&self) -> Vec<RecordedRequest> {
        let st = self.shared.lock();
        st.requests
            .iter()
            .filter(|r| r.is_metadata_only())
            .cloned()
            .collect()
    }

    /// Connections accepted so far (a sender that keeps its connection opens one).
    pub fn connections(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Number of accepted samples.
    pub fn accepted_count(&self) -> usize {
        self.shared.lock().accepted.len()
    }

    /// Waits until at least `n` samples were accepted; returns all accepted samples.
    pub async fn wait_for_accepted(&self, n: usize, timeout: Duration) -> Vec<ReceivedSample> {
        self.wait_until(timeout, &format!("{n} accepted samples"), |r| {
            r.accepted_count() >= n
        })
        .await;
        self.accepted()
    }

    /// Waits until at least `n` requests arrived; returns all requests.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        self.wait_until(timeout, &format!("{n} requests"), |r| {
            r.shared.lock().requests.len() >= n
        })
        .await;
        self.requests()
    }

    /// Waits until `done(self)` holds, re-checking after every request. Panics after
    /// `timeout`, saying what it waited for and what it has seen.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&Self) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.changed.subscribe();
        loop {
            changes.mark_unchanged();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                let (requests, accepted) = {
                    let st = self.shared.lock();
                    (st.requests.len(), st.accepted.len())
                };
                panic!(
                    "receiver: timed out after {timeout:?} waiting for {what}; \
                     saw {requests} requests, {accepted} accepted samples"
                );
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts connections until aborted; aborting drops the set, which aborts the connections.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        shared
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let (body_len, write) = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            (bytes.len(), decode(&bytes))
        }
        Err(e) => (0, Err(format!("cannot read body: {e}"))),
    };
    let reply = {
        let mut st = shared.lock();
        let scripted = if metadata_only(&write) {
            st.metadata_script.pop_front()
        } else {
            st.script.pop_front()
        };
        let reply = match scripted {
            Some(reply) => reply,
            None => st.default.clone(),
        };
        if (200..300).contains(&reply.status)
            && let Ok(w) = &write
        {
            st.accepted_metadata.extend(w.metadata.iter().cloned());
            for ts in &w.timeseries {
                let labels: Vec<_> = ts
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                st.accepted
                    .extend(ts.samples.iter().map(|s| ReceivedSample {
                        labels: labels.clone(),
                        timestamp_ms: s.timestamp,
                        value: s.value,
                    }));
            }
        }
        st.requests.push(RecordedRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body_len,
            write,
            status: reply.status,
            at,
        });
        reply
    };
    shared.changed.send_modify(|n| *n += 1);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = http::Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() =
        http::StatusCode::from_u16(reply.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &reply.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::try_from(name.as_str()),
            http::HeaderValue::try_from(value.as_str()),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    Ok(resp)
}

/// Whether a decoded request carries metric metadata and no time series.
fn metadata_only(write: &Result<WriteRequest, String>) -> bool {
    write
        .as_ref()
        .is_ok_and(|w| w.timeseries.is_empty() && !w.metadata.is_empty())
}

/// Snappy block format, then protobuf.
fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let len = snap::raw::decompress_len(body).map_err(|e| format!("not snappy: {e}"))?;
    if len > MAX_BODY_BYTES {
        return Err(format!("decompressed size {len} over the limit"));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("not snappy block format: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("not a WriteRequest: {e}"))
}
