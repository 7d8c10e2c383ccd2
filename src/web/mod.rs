//! The agent's own HTTP server: `/metrics`, `/-/healthy`, `/-/ready`, `/api/v1/targets`,
//! `/targets`, `/api/v1/status/tsdb`, and `POST /-/reload`.
//!
//! Invariants:
//! 1. Nothing served here ever contains a secret (configs are never rendered; target URLs
//!    come from labels, which hold no credentials).
//! 2. A slow or broken client affects only its own connection.

mod api;
mod page;
mod tsdb;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::scrape::TargetsView;

/// What the server shows.
#[derive(Clone)]
pub struct State {
    pub registry: Arc<Registry>,
    pub targets: TargetsView,
    /// Whether the agent is ready (`/-/ready`): `Err` says why not.
    pub ready: Readiness,
    /// Reloads the config for `POST /-/reload`; `None` answers 503.
    pub reload: Option<Reloader>,
}

/// Whether the agent is ready: `Ok`, or `Err` with the reason (answered 503 with it).
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Reloads the config: `Ok` with a summary, or `Err` with why the new config was refused
/// (the running one is kept).
pub type Reloader =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

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

impl Server {
    /// Binds `addr` and serves `state` until [`Server::shutdown`].
    pub async fn start(addr: SocketAddr, state: State) -> Result<Server, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error { addr, source })?;
        let shutdown = CancellationToken::new();
        let join = tokio::spawn(accept_loop(listener, state, shutdown.clone()));
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

    /// Stops accepting and closes the listener.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.join.await;
    }
}

async fn accept_loop(listener: TcpListener, state: State, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "cannot accept a web connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/metrics") => metrics(state),
        (&Method::GET | &Method::HEAD, "/-/healthy") => {
            text(StatusCode::OK, "scrapelet is healthy.\n")
        }
        (&Method::GET | &Method::HEAD, "/-/ready") => match (state.ready)() {
            Ok(()) => text(StatusCode::OK, "scrapelet is ready.\n"),
            Err(reason) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("not ready: {reason}\n").into(),
            ),
        },
        (&Method::POST | &Method::PUT, "/-/reload") => match &state.reload {
            // As Prometheus: 200 when applied, 500 with the reason when refused.
            Some(reload) => match reload().await {
                Ok(summary) => respond(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    format!("{summary}\n").into(),
                ),
                Err(reason) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("failed to reload config: {reason}\n").into(),
                ),
            },
            None => text(StatusCode::SERVICE_UNAVAILABLE, "reload is not available\n"),
        },
        (_, "/-/reload") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        (&Method::GET, "/api/v1/targets") => api::targets(&state.targets, query),
        // Both read every selected target's series: off the runtime's threads.
        (&Method::GET, "/api/v1/status/tsdb") => {
            let (view, query) = (state.targets.clone(), query.to_owned());
            match tokio::task::spawn_blocking(move || tsdb::status(&view, &query)).await {
                Ok(Ok(body)) => respond(
                    StatusCode::OK,
                    "application/json",
                    body.to_string().into(),
                ),
                Ok(Err(reason)) => respond(
                    StatusCode::BAD_REQUEST,
                    "application/json",
                    serde_json::json!({"status": "error", "errorType": "bad_data", "error": reason})
                        .to_string()
                        .into(),
                ),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot compute\n"),
            }
        }
        (&Method::GET, "/targets") => {
            let (view, query) = (state.targets.clone(), query.to_owned());
            match tokio::task::spawn_blocking(move || page::targets(&view, &query)).await {
                Ok(page) => respond(StatusCode::OK, "text/html; charset=utf-8", page.into()),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot render\n"),
            }
        }
        (&Method::GET, "/") => text(
            StatusCode::OK,
            "scrapelet\n\n/targets\n/api/v1/targets\n/api/v1/status/tsdb\n/metrics\n/-/healthy\n/-/ready\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn metrics(state: &State) -> Response<Full<Bytes>> {
    let mut body = String::with_capacity(16 * 1024);
    if prometheus_client::encoding::text::encode(&mut body, &state.registry).is_err() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n");
    }
    respond(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body.into(),
    )
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}
