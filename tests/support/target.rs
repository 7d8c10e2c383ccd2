//! A scrape target served by the test: an HTTP server on 127.0.0.1:0 (or an address the test
//! picks) whose response the test controls (body, content type, status, gzip, delay, hang; or
//! a body computed per request) and which counts its requests and records their paths.
//! [`Target::stop`] (or dropping it) closes the port and every connection, as a target that
//! goes away.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// What the target answers.
#[derive(Clone, Debug)]
pub struct Exposition {
    pub body: Vec<u8>,
    pub content_type: String,
    pub status: u16,
    /// Compress with gzip when the scraper accepts it.
    pub gzip: bool,
    /// `body` is gzip already: sent as it is, with `Content-Encoding: gzip` (a hostile
    /// target's bomb).
    pub gzipped: bool,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Never answer.
    pub hang: bool,
}

/// A running target.
pub struct Target {
    pub addr: SocketAddr,
    state: Arc<Shared>,
    server: JoinHandle<()>,
}

/// Computes a body from the request's number (1 for the first request).
type BodyFn = Box<dyn Fn(usize) -> String + Send + Sync>;

struct Shared {
    response: Mutex<Exposition>,
    /// When set, replaces `response.body`.
    body_fn: Mutex<Option<BodyFn>>,
    requests: AtomicUsize,
    /// Path and query of every request, in arrival order.
    uris: Mutex<Vec<String>>,
    last_headers: Mutex<http::HeaderMap>,
    scraped: Notify,
}

impl Exposition {
    /// A text-format (0.0.4) body.
    pub fn text(body: &str) -> Self {
        Exposition {
            body: body.as_bytes().to_vec(),
            content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
            status: 200,
            gzip: false,
            gzipped: false,
            delay: Duration::ZERO,
            hang: false,
        }
    }

    /// A body that is gzip already (what it inflates to is the test's business).
    pub fn gzipped(compressed: Vec<u8>) -> Self {
        Exposition {
            body: compressed,
            gzipped: true,
            ..Exposition::text("")
        }
    }

    /// An OpenMetrics body.
    pub fn openmetrics(body: &str) -> Self {
        Exposition {
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
            ..Exposition::text(body)
        }
    }
}

impl Target {
    /// Starts a target answering `exposition` on a free port of 127.0.0.1.
    pub async fn start(exposition: Exposition) -> Target {
        Target::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), exposition)
            .await
            .unwrap_or_else(|e| panic!("bind target: {e}"))
    }

    /// Starts a target answering `exposition` on `addr` (e.g. another 127.0.0.x address, or
    /// a port another target uses on a different address); fails when `addr` cannot be bound.
    pub async fn start_at(addr: SocketAddr, exposition: Exposition) -> std::io::Result<Target> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Shared {
            response: Mutex::new(exposition),
            body_fn: Mutex::new(None),
            requests: AtomicUsize::new(0),
            uris: Mutex::new(Vec::new()),
            last_headers: Mutex::new(http::HeaderMap::new()),
            scraped: Notify::new(),
        });
        let shared = state.clone();
        // Connections live in a set owned by the accept loop: aborting the loop drops them.
        let server = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(&shared, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Target {
            addr,
            state,
            server,
        })
    }

    /// Starts a text-format target whose body is `body(n)` for its `n`th request (from 1).
    pub async fn start_with(body: impl Fn(usize) -> String + Send + Sync + 'static) -> Target {
        let target = Target::start(Exposition::text("")).await;
        *target.state.body_fn.lock().expect("lock") = Some(Box::new(body));
        target
    }

    /// Closes the port and every open connection: later scrapes are refused.
    pub fn stop(&self) {
        self.server.abort();
    }

    /// `127.0.0.1:port`, as a static target.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Changes what the target answers from now on.
    pub fn set(&self, exposition: Exposition) {
        *self.state.response.lock().expect("lock") = exposition;
    }

    /// Changes only the body.
    pub fn set_body(&self, body: &str) {
        self.state.response.lock().expect("lock").body = body.as_bytes().to_vec();
    }

    /// Requests answered or in progress so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Path and query of every request so far (`/metrics?x=y`), in arrival order.
    pub fn uris(&self) -> Vec<String> {
        self.state.uris.lock().expect("lock").clone()
    }

    /// Headers of the last request.
    pub fn last_headers(&self) -> http::HeaderMap {
        self.state.last_headers.lock().expect("lock").clone()
    }

    /// Waits until the target has been asked `n` times in total, or panics at the deadline.
    pub async fn wait_for_requests(&self, n: usize, deadline: Duration) {
        let wait = async {
            loop {
                let notified = self.state.scraped.notified();
                if self.requests() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "target {} got {} of {n} requests in {deadline:?}",
                    self.addr,
                    self.requests()
                )
            });
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    shared.uris.lock().expect("lock").push(uri);
    let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
    *shared.last_headers.lock().expect("lock") = req.headers().clone();
    shared.scraped.notify_waiters();
    let mut exposition = shared.response.lock().expect("lock").clone();
    if let Some(body) = shared.body_fn.lock().expect("lock").as_ref() {
        exposition.body = body(n).into_bytes();
    }
    if exposition.hang {
        std::future::pending::<()>().await;
    }
    if !exposition.delay.is_zero() {
        tokio::time::sleep(exposition.delay).await;
    }
    let accepts_gzip = req
        .headers()
        .get(http::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(exposition.status).expect("status"))
        .header(http::header::CONTENT_TYPE, exposition.content_type);
    let body = if exposition.gzipped {
        builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
        exposition.body
    } else if exposition.gzip && accepts_gzip {
        builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&exposition.body).expect("gzip");
        enc.finish().expect("gzip")
    } else {
        exposition.body
    };
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}
