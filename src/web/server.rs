//! The server: the listener and accept loop, each connection (TLS handshake, HTTP/1.1 or
//! HTTP/2, its timers from `conns`), and what every request goes through before its route:
//! basic auth, the body cap, the web config's headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::conns::{RequestGuard, Slot, Table, Tracked, Wake};
use super::metrics::{Closed, Metrics};
use super::routes::{self, State, text};
use super::security::{Security, Snapshot};

/// How the server treats connections and requests.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections held at once (`--web.max-connections`, 512 as Prometheus); 0: no cap.
    /// At the cap the longest-idle connection makes room (see `conns`).
    pub max_connections: usize,
    /// A new connection's TLS handshake and first request head, and any later request head
    /// once its first byte arrived, must be complete within this (`--web.read-header-timeout`,
    /// 10s); so must a request body. Zero: no limit.
    pub header_read_timeout: Duration,
    /// A connection without a request for this long is closed (`--web.idle-timeout`, 2m,
    /// longer than usual scrape intervals so that scrapers keep their connection). Zero: no
    /// limit.
    pub idle_timeout: Duration,
    /// Larger request bodies are refused with 413 (64 KiB; no endpoint reads a body).
    pub max_request_body_bytes: usize,
}

/// Everything the server needs besides what it shows.
pub struct Settings {
    pub limits: Limits,
    /// `--web.config.file`, loaded; None: plain HTTP, no auth.
    pub security: Option<Arc<Security>>,
    /// How often the web config's files are checked for changes.
    pub security_check_interval: Duration,
    pub metrics: Metrics,
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    join: JoinHandle<()>,
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct Error {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Largest request head (HTTP/1: hyper's read buffer, at least 8 KiB): bounds what one
/// connection can make the server hold while a head arrives.
const MAX_HEAD_BYTES: usize = 32 * 1024;

struct Shared {
    state: State,
    limits: Limits,
    security: Option<Arc<Security>>,
    metrics: Metrics,
    table: Arc<Table>,
}

/// How a connection speaks.
#[derive(Clone, Copy)]
enum Proto {
    Http1,
    Http2,
    /// HTTP/1 or HTTP/2 with prior knowledge, as the client's first bytes say (plain HTTP).
    Auto,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_request_body_bytes: 64 * 1024,
        }
    }
}

impl Server {
    /// Binds `addr` and serves `state` until [`Server::shutdown`].
    pub async fn start(
        addr: SocketAddr,
        state: State,
        settings: Settings,
    ) -> Result<Server, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error { addr, source })?;
        let shutdown = CancellationToken::new();
        let limits = settings.limits;
        let table = Table::new(
            limits.max_connections,
            limits.header_read_timeout,
            limits.idle_timeout,
        );
        if let Some(security) = &settings.security
            && !settings.security_check_interval.is_zero()
        {
            security.clone().watch(
                settings.security_check_interval,
                settings.metrics.clone(),
                shutdown.clone(),
            );
        }
        let shared = Arc::new(Shared {
            state,
            limits,
            security: settings.security,
            metrics: settings.metrics,
            table,
        });
        let join = tokio::spawn(accept_loop(listener, shared, shutdown.clone()));
        Ok(Server {
            local_addr,
            shutdown,
            join,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes the listener and every connection.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.join.await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "cannot accept a web connection");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        // At the cap this waits for room; meanwhile new connections wait in the backlog.
        let Some(slot) = shared.table.admit(&stop).await else {
            return;
        };
        shared.metrics.connection_opened();
        let (shared, stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            if let Some(why) = serve(stream, &slot, &shared, &stop).await {
                shared.metrics.closed(why);
            }
            drop(slot);
            shared.metrics.connection_closed();
        });
    }
}

/// Serves one connection until it ends; Some when the server closed it, and why.
async fn serve(
    stream: TcpStream,
    slot: &Slot,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Option<Closed> {
    let _ = stream.set_nodelay(true);
    let snapshot = shared.security.as_ref().map(|s| s.current());
    let http2 = snapshot.as_ref().is_none_or(|s| s.http2);
    let Some(config) = snapshot.and_then(|s| s.tls.clone()) else {
        let proto = if http2 { Proto::Auto } else { Proto::Http1 };
        let io = Tracked::new(stream, slot.conn().clone());
        return drive(io, proto, slot, shared, stop).await;
    };
    // The handshake counts against the header timeout (the connection is new: pending).
    let tls = tokio::select! {
        tls = tokio_rustls::TlsAcceptor::from(config).accept(stream) => match tls {
            Ok(tls) => tls,
            Err(e) => {
                // A client's problem (no or wrong certificate, plain HTTP, a scanner): not
                // worth more than debug, and counted.
                tracing::debug!(error = %e, "TLS handshake failed");
                return Some(Closed::TlsHandshake);
            }
        },
        wake = slot.expired() => return Some(closed(wake)),
        _ = stop.cancelled() => return None,
    };
    let proto = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        Proto::Http2
    } else {
        Proto::Http1
    };
    drive(
        Tracked::new(tls, slot.conn().clone()),
        proto,
        slot,
        shared,
        stop,
    )
    .await
}

async fn drive<I>(
    io: Tracked<I>,
    proto: Proto,
    slot: &Slot,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Option<Closed>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn({
        let (shared, conn) = (shared.clone(), slot.conn().clone());
        move |req| {
            let guard = conn.request_started();
            let shared = shared.clone();
            async move {
                let response = handle(&shared, req).await;
                Ok::<_, Infallible>(response.map(|body| Body {
                    inner: body,
                    _guard: guard,
                }))
            }
        }
    });
    let io = TokioIo::new(io);
    match proto {
        Proto::Http1 => {
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(io, service);
            run(conn, slot, stop).await
        }
        Proto::Http2 => {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service);
            run(conn, slot, stop).await
        }
        Proto::Auto => {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().max_buf_size(MAX_HEAD_BYTES);
            let conn = builder.serve_connection(io, service);
            run(conn, slot, stop).await
        }
    }
}

/// Polls the connection until it ends, its timer runs out, it is evicted or the server
/// stops; dropping it closes the socket.
async fn run<F, E>(conn: F, slot: &Slot, stop: &CancellationToken) -> Option<Closed>
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "web connection ended with an error");
            }
            None
        }
        wake = slot.expired() => Some(closed(wake)),
        _ = stop.cancelled() => None,
    }
}

fn closed(wake: Wake) -> Closed {
    match wake {
        Wake::HeaderTimeout => Closed::HeaderTimeout,
        Wake::IdleTimeout => Closed::IdleTimeout,
        Wake::Evicted => Closed::Evicted,
    }
}

/// Every request: the web config's headers on whatever the answer is.
async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let snapshot = shared.security.as_ref().map(|s| s.current());
    let mut response = answer(shared, snapshot.as_deref(), req).await;
    if let Some(snapshot) = &snapshot {
        for (name, value) in &snapshot.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

/// `/-/healthy` and `/-/ready` answer without basic auth: the kubelet's probes carry no
/// credentials (only a password in the pod spec would let them), and these paths show a
/// fixed sentence and nothing about targets.
fn is_probe(path: &str) -> bool {
    matches!(path, "/-/healthy" | "/-/ready")
}

async fn answer(
    shared: &Shared,
    snapshot: Option<&Snapshot>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if let Some(auth) = snapshot.and_then(|s| s.auth.as_ref())
        && !is_probe(req.uri().path())
        && !auth.allows(req.headers().get(header::AUTHORIZATION)).await
    {
        shared.metrics.unauthorized();
        let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"scrapelet\""),
        );
        return response;
    }
    let (parts, body) = req.into_parts();
    if let Err(refused) = drain(body, parts.version, &shared.limits).await {
        return refused;
    }
    routes::route(&shared.state, &parts.method, &parts.uri).await
}

/// Reads and discards a request body within the cap and the header timeout; the answer to
/// send instead when it is too large or too slow.
async fn drain(
    body: Incoming,
    version: Version,
    limits: &Limits,
) -> Result<(), Response<Full<Bytes>>> {
    if body.is_end_stream() {
        return Ok(());
    }
    let cap = limits.max_request_body_bytes;
    let too_large = || {
        close(
            version,
            text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
        )
    };
    if body.size_hint().lower() > cap as u64 {
        return Err(too_large());
    }
    let read = Limited::new(body, cap).collect();
    let outcome = if limits.header_read_timeout.is_zero() {
        Ok(read.await)
    } else {
        tokio::time::timeout(limits.header_read_timeout, read).await
    };
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(close(
            version,
            text(StatusCode::BAD_REQUEST, "cannot read the request body\n"),
        )),
        Err(_) => Err(close(
            version,
            text(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time\n",
            ),
        )),
    }
}

/// Asks an HTTP/1 client to close the connection (the rest of its body is not read).
fn close(version: Version, mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    if version < Version::HTTP_2 {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A response body that keeps its request counted as being handled until hyper is done
/// with it.
struct Body {
    inner: Full<Bytes>,
    _guard: RequestGuard,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
