//! What each path answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, Uri, header};
use http_body_util::Full;
use prometheus_client::registry::Registry;

use super::{api, page, tsdb};
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
    /// `--web.enable-lifecycle`: without it `POST /-/reload` answers 403, as Prometheus.
    pub lifecycle: bool,
}

/// Whether the agent is ready: `Ok`, or `Err` with the reason (answered 503 with it).
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Reloads the config: `Ok` with a summary, or `Err` with why the new config was refused
/// (the running one is kept).
pub type Reloader =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Answers a request for `method` and `uri` (bodies are never read here; see `server`).
pub(super) async fn route(state: &State, method: &Method, uri: &Uri) -> Response<Full<Bytes>> {
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    match (method, path) {
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
        // As Prometheus: only with --web.enable-lifecycle.
        (&Method::POST | &Method::PUT, "/-/reload") if !state.lifecycle => {
            text(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n")
        }
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

pub(super) fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}
