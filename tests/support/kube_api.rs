//! A fake Kubernetes API server over real HTTP (127.0.0.1), speaking the list/watch protocol
//! the kube client uses for pods and nodes:
//!
//! - list: `GET /api/v1/pods`, `/api/v1/namespaces/{ns}/pods`, `/api/v1/nodes` with
//!   `fieldSelector` (any `a.b.c=v`, `==`, `!=` on the object's JSON), `labelSelector` (`=`,
//!   `==`, `!=`, `in`, `notin`, `key`, `!key`), `limit`/`continue` paging and the current
//!   `resourceVersion` in the list metadata;
//! - watch (`watch=1|true`): from `resourceVersion`, the retained history then live events as
//!   ADDED / MODIFIED / DELETED (an object leaving the selector is DELETED, entering it
//!   ADDED), BOOKMARK when asked for (`allowWatchBookmarks`) and [`KubeApi::bookmark`] is
//!   called, ERROR 410 Gone when the version is older than the retained history
//!   ([`KubeApi::compact`]) or on demand ([`KubeApi::fail_next_watch_with_gone`]), and the end
//!   of the stream after `timeoutSeconds`;
//! - test controls: add, update and delete objects (each bumps the resourceVersion), drop all
//!   open watches, stop the server and start it again on the same port, hold list requests
//!   unanswered until released ([`KubeApi::hold_lists`], an API server slow to answer the
//!   first list), and a log of every request to count lists and watches;
//! - [`KubeApi::write_kubeconfig`]: a kubeconfig pointing at the server (plain http, optional
//!   token, which the server then requires).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, Infallible>;

/// A running (or stopped) fake API server.
pub struct KubeApi {
    addr: SocketAddr,
    state: Arc<Shared>,
    stop: Mutex<CancellationToken>,
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
}

/// A pod to add, built field by field (the JSON the API server would hold).
#[derive(Clone, Debug)]
pub struct PodBuilder {
    value: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pod,
    Node,
}

#[derive(Clone, Debug)]
struct Change {
    kind: Kind,
    /// MODIFIED, ADDED or DELETED.
    kind_of_change: &'static str,
    old: Option<Value>,
    new: Value,
    rv: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    /// While true, list requests (not watches) wait unanswered.
    hold_lists: tokio::sync::watch::Sender<bool>,
    /// Live changes and control signals for open watches.
    live: broadcast::Sender<Signal>,
}

#[derive(Clone, Debug)]
enum Signal {
    Change(Box<Change>),
    Bookmark(u64),
    DropAll,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    /// By `kind/namespace/name`.
    objects: BTreeMap<(u8, String), Value>,
    /// Changes after `oldest_rv`.
    history: Vec<Change>,
    /// Watches from a version below this get 410 Gone.
    oldest_rv: u64,
    gone_next_watch: bool,
    requests: Vec<Logged>,
    token: Option<String>,
}

impl KubeApi {
    /// Starts an empty server on a free port.
    pub async fn start() -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake API");
        let addr = listener.local_addr().expect("fake API address");
        let (live, _) = broadcast::channel(1024);
        let state = Arc::new(Shared {
            inner: Mutex::new(Inner {
                rv: 100,
                oldest_rv: 100,
                ..Inner::default()
            }),
            live,
            hold_lists: tokio::sync::watch::Sender::new(false),
        });
        let stop = CancellationToken::new();
        serve(listener, state.clone(), stop.clone());
        KubeApi {
            addr,
            state,
            stop: Mutex::new(stop),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requires `Authorization: Bearer <token>` from now on.
    pub fn require_token(&self, token: &str) {
        self.inner().token = Some(token.to_owned());
    }

    /// Adds or replaces a pod (ADDED or MODIFIED); returns its new resourceVersion.
    pub fn apply_pod(&self, pod: &PodBuilder) -> u64 {
        self.apply(Kind::Pod, pod.value.clone())
    }

    /// Deletes a pod (DELETED); false if there was none.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        self.delete(Kind::Pod, &format!("{namespace}/{name}"))
    }

    /// Adds or replaces a node with these labels.
    pub fn apply_node(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.apply(
            Kind::Node,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}),
        )
    }

    /// Sends a BOOKMARK with the current version to watches that asked for bookmarks.
    pub fn bookmark(&self) {
        let rv = self.inner().rv;
        let _ = self.state.live.send(Signal::Bookmark(rv));
    }

    /// Forgets the history: a watch from an older version gets 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.inner();
        inner.history.clear();
        inner.oldest_rv = inner.rv;
    }

    /// The next watch request gets an ERROR 410 Gone event.
    pub fn fail_next_watch_with_gone(&self) {
        self.inner().gone_next_watch = true;
    }

    /// From now on list requests wait unanswered (they are logged on arrival) until
    /// [`KubeApi::release_lists`].
    pub fn hold_lists(&self) {
        self.state.hold_lists.send_replace(true);
    }

    /// Answers the held list requests, and later ones at once.
    pub fn release_lists(&self) {
        self.state.hold_lists.send_replace(false);
    }

    /// Ends every open watch stream (the client sees the connection's stream end).
    pub fn drop_watches(&self) {
        let _ = self.state.live.send(Signal::DropAll);
    }

    /// Stops listening and closes every connection; the state is kept.
    pub fn stop(&self) {
        self.stop.lock().expect("stop lock").cancel();
    }

    /// Listens again on the same port, with the same state.
    pub async fn restart(&self) {
        let listener = bind_again(self.addr).await;
        let stop = CancellationToken::new();
        *self.stop.lock().expect("stop lock") = stop.clone();
        serve(listener, self.state.clone(), stop);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.inner().requests.clone()
    }

    /// Pod watch requests so far (`watch` set).
    pub fn pod_watches(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with("/pods") && is_watch(&r.query))
            .count()
    }

    /// Pod list requests so far.
    pub fn pod_lists(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with("/pods") && !is_watch(&r.query))
            .count()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner().rv
    }

    /// Writes a kubeconfig for this server (plain http; with `token` when given).
    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) {
        let user = match token {
            Some(t) => format!("  user:\n    token: {t}\n"),
            None => "  user: {}\n".to_owned(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n{user}",
            self.url()
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.state.inner.lock().expect("fake API lock")
    }

    fn apply(&self, kind: Kind, mut value: Value) -> u64 {
        let mut inner = self.inner();
        inner.rv += 1;
        let rv = inner.rv;
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (kind as u8, object_key(&value));
        let old = inner.objects.insert(key, value.clone());
        let change = Change {
            kind,
            kind_of_change: if old.is_some() { "MODIFIED" } else { "ADDED" },
            old,
            new: value,
            rv,
        };
        inner.history.push(change.clone());
        drop(inner);
        let _ = self.state.live.send(Signal::Change(Box::new(change)));
        rv
    }

    fn delete(&self, kind: Kind, key: &str) -> bool {
        let mut inner = self.inner();
        let Some(mut value) = inner.objects.remove(&(kind as u8, key.to_owned())) else {
            return false;
        };
        inner.rv += 1;
        let rv = inner.rv;
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        let change = Change {
            kind,
            kind_of_change: "DELETED",
            old: Some(value.clone()),
            new: value,
            rv,
        };
        inner.history.push(change.clone());
        drop(inner);
        let _ = self.state.live.send(Signal::Change(Box::new(change)));
        true
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

impl PodBuilder {
    /// A Running, Ready pod on `node` with IP `ip` and no containers yet.
    pub fn new(namespace: &str, name: &str, node: &str, ip: &str) -> PodBuilder {
        PodBuilder {
            value: json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": format!("uid-{namespace}-{name}"),
                    "labels": {},
                    "annotations": {},
                    // What a real server sends and the agent must not keep.
                    "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}],
                },
                "spec": {"nodeName": node, "containers": [], "initContainers": []},
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "podIPs": [{"ip": ip}],
                    "hostIP": "192.168.0.10",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [],
                    "initContainerStatuses": [],
                },
            }),
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.value["metadata"]["labels"][key] = json!(value);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.value["metadata"]["annotations"][key] = json!(value);
        self
    }

    /// Removes an annotation.
    pub fn without_annotation(mut self, key: &str) -> Self {
        if let Some(map) = self.value["metadata"]["annotations"].as_object_mut() {
            map.remove(key);
        }
        self
    }

    /// A container with `ports` as (name, number, protocol), and its status with `id`.
    pub fn container(self, name: &str, image: &str, ports: &[(&str, u16, &str)]) -> Self {
        self.push_container("containers", "containerStatuses", name, image, ports)
    }

    pub fn init_container(self, name: &str, image: &str, ports: &[(&str, u16, &str)]) -> Self {
        self.push_container(
            "initContainers",
            "initContainerStatuses",
            name,
            image,
            ports,
        )
    }

    pub fn controller(mut self, kind: &str, name: &str) -> Self {
        self.value["metadata"]["ownerReferences"] = json!([
            {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "owner-uid", "controller": true}
        ]);
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.value["status"]["phase"] = json!(phase);
        self
    }

    pub fn ready(mut self, ready: bool) -> Self {
        self.value["status"]["conditions"] =
            json!([{"type": "Ready", "status": if ready { "True" } else { "False" }}]);
        self
    }

    /// A new pod IP (as after a restart); an empty one means none yet.
    pub fn ip(mut self, ip: &str) -> Self {
        if ip.is_empty() {
            let status = &mut self.value["status"];
            if let Some(map) = status.as_object_mut() {
                map.remove("podIP");
                map.remove("podIPs");
            }
        } else {
            self.value["status"]["podIP"] = json!(ip);
            self.value["status"]["podIPs"] = json!([{"ip": ip}]);
        }
        self
    }

    pub fn host_ip(mut self, ip: &str) -> Self {
        self.value["status"]["hostIP"] = json!(ip);
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.value["metadata"]["uid"] = json!(uid);
        self
    }

    /// The JSON object.
    pub fn json(&self) -> &Value {
        &self.value
    }

    fn push_container(
        mut self,
        list: &str,
        statuses: &str,
        name: &str,
        image: &str,
        ports: &[(&str, u16, &str)],
    ) -> Self {
        let mut container = json!({"name": name, "image": image});
        if !ports.is_empty() {
            container["ports"] = ports
                .iter()
                .map(|(n, p, proto)| {
                    let mut port = json!({"containerPort": p, "protocol": proto});
                    if !n.is_empty() {
                        port["name"] = json!(n);
                    }
                    port
                })
                .collect();
        }
        if let Some(a) = self.value["spec"][list].as_array_mut() {
            a.push(container);
        }
        let status = json!({
            "name": name,
            "containerID": format!("containerd://{name}-id"),
            "image": image,
            "imageID": "",
            "ready": true,
            "restartCount": 0,
        });
        if let Some(a) = self.value["status"][statuses].as_array_mut() {
            a.push(status);
        }
        self
    }
}

fn object_key(value: &Value) -> String {
    let meta = &value["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    match meta["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

fn is_watch(query: &BTreeMap<String, String>) -> bool {
    query.get("watch").is_some_and(|w| w == "1" || w == "true")
}

async fn bind_again(addr: SocketAddr) -> TcpListener {
    // The old listener may take a moment to go away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("rebind fake API on {addr}: {e}"),
        }
    }
}

fn serve(listener: TcpListener, state: Arc<Shared>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let state = state.clone();
            let stop = stop.clone();
            let for_requests = stop.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    let stop = for_requests.clone();
                    async move {
                        if !is_watch(&parse_query(req.uri().query().unwrap_or_default())) {
                            log_request(&state, &req);
                            let mut held = state.hold_lists.subscribe();
                            // Err: the server is gone; answer anyway.
                            let _ = held.wait_for(|hold| !hold).await;
                            return Ok::<_, Infallible>(handle(&state, req, stop, false));
                        }
                        Ok::<_, Infallible>(handle(&state, req, stop, true))
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    // Stopping drops the connection: the client sees it close.
                    () = stop.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    });
}

/// Logs `req` in the request log.
fn log_request(state: &Shared, req: &Request<Incoming>) {
    let mut inner = state.inner.lock().expect("fake API lock");
    inner.requests.push(Logged {
        path: req.uri().path().to_owned(),
        query: parse_query(req.uri().query().unwrap_or_default()),
    });
}

/// Answers `req`; logs it first when `log` (a list is logged on arrival, before it is held).
fn handle(
    state: &Arc<Shared>,
    req: Request<Incoming>,
    stop: CancellationToken,
    log: bool,
) -> Response<Body> {
    if log {
        log_request(state, &req);
    }
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or_default());
    let mut inner = state.inner.lock().expect("fake API lock");
    if let Some(token) = &inner.token {
        let expected = format!("Bearer {token}");
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return status(StatusCode::UNAUTHORIZED, "Unauthorized", "no valid token");
        }
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (kind, namespace) = match segments.as_slice() {
        ["api", "v1", "pods"] => (Kind::Pod, None),
        ["api", "v1", "namespaces", ns, "pods"] => (Kind::Pod, Some((*ns).to_owned())),
        ["api", "v1", "nodes"] => (Kind::Node, None),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", "no such resource"),
    };
    let selector = match Selector::parse(&query, namespace) {
        Ok(s) => s,
        Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    if is_watch(&query) {
        let from = query
            .get("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let gone =
            std::mem::take(&mut inner.gone_next_watch) || (from != 0 && from < inner.oldest_rv);
        let bookmarks = query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true" || v == "1");
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        // Subscribe before reading the history, so no change falls between the two.
        let live = state.live.subscribe();
        let replay: Vec<Change> = if from == 0 {
            // "Any version": start with the current objects as ADDED.
            inner
                .objects
                .iter()
                .filter(|((k, _), _)| *k == kind as u8)
                .map(|(_, v)| Change {
                    kind,
                    kind_of_change: "ADDED",
                    old: None,
                    new: v.clone(),
                    rv: inner.rv,
                })
                .collect()
        } else {
            inner
                .history
                .iter()
                .filter(|c| c.rv > from && c.kind == kind)
                .cloned()
                .collect()
        };
        let last_rv = inner.rv;
        drop(inner);
        return watch(
            kind, selector, gone, bookmarks, timeout, replay, last_rv, live, stop,
        );
    }
    let limit = query
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let offset = query
        .get("continue")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let matching: Vec<&Value> = inner
        .objects
        .iter()
        .filter(|((k, _), v)| *k == kind as u8 && selector.matches(v))
        .map(|(_, v)| v)
        .collect();
    let end = limit.map_or(matching.len(), |l| (offset + l).min(matching.len()));
    let items: Vec<Value> = matching
        .get(offset..end)
        .unwrap_or_default()
        .iter()
        .map(|v| (*v).clone())
        .collect();
    let mut metadata = json!({"resourceVersion": inner.rv.to_string()});
    if end < matching.len() {
        metadata["continue"] = json!(end.to_string());
    }
    let list_kind = match kind {
        Kind::Pod => "PodList",
        Kind::Node => "NodeList",
    };
    json_response(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": list_kind, "metadata": metadata, "items": items}),
    )
}

#[allow(clippy::too_many_arguments)]
fn watch(
    kind: Kind,
    selector: Selector,
    gone: bool,
    bookmarks: bool,
    timeout: Option<Duration>,
    replay: Vec<Change>,
    last_rv: u64,
    mut live: broadcast::Receiver<Signal>,
    stop: CancellationToken,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    tokio::spawn(async move {
        let send = |event: Value| {
            let tx = tx.clone();
            async move {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_ok()
            }
        };
        if gone {
            let status = json!({
                "type": "ERROR",
                "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "too old resource version", "reason": "Expired", "code": 410}
            });
            send(status).await;
            return;
        }
        for change in replay {
            if let Some(event) = event_for(&selector, &change)
                && !send(event).await
            {
                return;
            }
        }
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut seen_rv = last_rv;
        loop {
            let signal = tokio::select! {
                () = stop.cancelled() => return,
                () = &mut deadline => return,
                s = live.recv() => s,
            };
            let event = match signal {
                Ok(Signal::Change(change)) if change.kind == kind && change.rv > seen_rv => {
                    seen_rv = change.rv;
                    event_for(&selector, &change)
                }
                Ok(Signal::Bookmark(rv)) if bookmarks => Some(json!({
                    "type": "BOOKMARK",
                    "object": {"kind": match kind { Kind::Pod => "Pod", Kind::Node => "Node" }, "apiVersion": "v1",
                               "metadata": {"resourceVersion": rv.to_string()}}
                })),
                Ok(Signal::DropAll) | Err(broadcast::error::RecvError::Closed) => return,
                // A watcher too slow for the buffer: end the stream, the client resumes.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Ok(_) => None,
            };
            if let Some(event) = event
                && !send(event).await
            {
                return;
            }
        }
    });
    let body = StreamBody::new(tokio_stream_from(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed(body))
        .expect("watch response")
}

/// An mpsc receiver as a stream of frames.
fn tokio_stream_from(
    rx: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) })
}

/// The watch event a client with `selector` sees for `change`, if any.
fn event_for(selector: &Selector, change: &Change) -> Option<Value> {
    let new_matches = selector.matches(&change.new);
    let old_matches = change.old.as_ref().is_some_and(|o| selector.matches(o));
    let kind = match change.kind_of_change {
        "DELETED" if old_matches => "DELETED",
        "DELETED" => return None,
        _ if new_matches && old_matches => "MODIFIED",
        _ if new_matches => "ADDED",
        _ if old_matches => "DELETED",
        _ => return None,
    };
    Some(json!({"type": kind, "object": change.new}))
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed(Full::new(Bytes::from(body))))
        .expect("response")
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The selectors of one request: namespace from the path, fieldSelector, labelSelector.
#[derive(Clone, Debug, Default)]
struct Selector {
    namespace: Option<String>,
    fields: Vec<(Vec<String>, String, bool)>,
    labels: Vec<LabelReq>,
}

#[derive(Clone, Debug)]
enum LabelReq {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Selector {
    fn parse(query: &BTreeMap<String, String>, namespace: Option<String>) -> Result<Self, String> {
        let mut selector = Selector {
            namespace,
            ..Selector::default()
        };
        for term in query
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            let path = field.split('.').map(str::to_owned).collect();
            selector.fields.push((path, value.to_owned(), equal));
        }
        let labels = query
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default();
        for term in split_outside_parens(labels) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let req = if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_owned())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                LabelReq::NotIn(k.trim().to_owned(), set_values(rest)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                LabelReq::In(k.trim().to_owned(), set_values(rest)?)
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotIn(k.trim().to_owned(), vec![v.trim().to_owned()])
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::In(k.trim().to_owned(), vec![v.trim().to_owned()])
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::In(k.trim().to_owned(), vec![v.trim().to_owned()])
            } else {
                LabelReq::Exists(term.to_owned())
            };
            selector.labels.push(req);
        }
        Ok(selector)
    }

    fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        if let Some(ns) = &self.namespace
            && meta["namespace"].as_str() != Some(ns)
        {
            return false;
        }
        let fields_ok = self.fields.iter().all(|(path, value, equal)| {
            let mut v = object;
            for p in path {
                v = &v[p.as_str()];
            }
            (v.as_str().unwrap_or_default() == value) == *equal
        });
        let label = |k: &str| meta["labels"][k].as_str();
        let labels_ok = self.labels.iter().all(|req| match req {
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
            LabelReq::In(k, vs) => label(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            LabelReq::NotIn(k, vs) => label(k).is_none_or(|v| vs.iter().all(|x| x != v)),
        });
        fields_ok && labels_ok
    }
}

fn set_values(rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("invalid set {rest:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

fn split_outside_parens(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}
