//! One list/watch per connection and resource, feeding the shared [`Store`].
//!
//! The loop drives kube's `watcher` (it resumes from the last resourceVersion after a dropped
//! or timed-out connection and relists after `410 Gone`) and adds what an agent needs:
//! - the store keeps the last known objects until a new list is complete (`InitDone`), so
//!   targets keep being scraped while the API server is down, and a relist swaps the state
//!   in one step (pods gone meanwhile are removed then);
//! - after any error the loop waits (exponential backoff with jitter, reset by a complete
//!   list) and then starts over with a fresh list, so "recovered" means the API server
//!   answered a list, never a guess; a 410 relists at once the first time;
//! - one log line per state change: `failing` (with the reason) and `recovered`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tokio::sync::watch as notify;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::pod::{NodeInfo, PodInfo};

/// The pods (and node) of one connection, shared by every job that uses it.
///
/// Invariant: `version` (in the channel) grows by one after every change of the contents, so
/// a subscriber that saw version N and now sees N+k knows there were changes.
pub(super) struct Store {
    inner: Mutex<Contents>,
    version: notify::Sender<u64>,
}

#[derive(Default)]
pub(super) struct Contents {
    /// By `namespace/name`.
    pub pods: HashMap<String, Arc<PodInfo>>,
    pub node: Option<NodeInfo>,
    /// The pods have been listed at least once.
    pub synced: bool,
}

/// How the watch loops retry: the crate's backoff, jittered (so that many agents that lost
/// the API server at the same moment do not come back at the same moment).
pub(super) use crate::backoff::Backoff;

/// What a watch loop maintains in the store. Objects are cut down to what is kept as soon as
/// they arrive ([`Resource::keep`]), before anything is buffered.
pub(super) trait Resource:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// What the store keeps of one object.
    type Kept: PartialEq + Send;
    /// The `resource` label of the metrics.
    const NAME: &'static str;
    /// The key (`namespace/name`) and what is kept.
    fn keep(&self) -> (String, Self::Kept);
    /// Replaces the whole state after a complete list.
    fn replace(contents: &mut Contents, objects: Vec<(String, Self::Kept)>, metrics: &Metrics);
    /// An added or modified object.
    fn apply(contents: &mut Contents, key: String, object: Self::Kept, metrics: &Metrics);
    /// A deleted object.
    fn delete(contents: &mut Contents, key: &str, metrics: &Metrics);
}

impl Store {
    pub fn new() -> Store {
        Store {
            inner: Mutex::new(Contents::default()),
            version: notify::Sender::new(0),
        }
    }

    /// A receiver that sees the version change.
    pub fn subscribe(&self) -> notify::Receiver<u64> {
        self.version.subscribe()
    }

    /// The contents, for reading (never held across an await).
    pub fn lock(&self) -> MutexGuard<'_, Contents> {
        // A panic while holding the lock leaves consistent contents (every update is a
        // single insert/remove/replace), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Contents)) {
        f(&mut self.lock());
        self.version.send_modify(|v| *v += 1);
    }
}

/// Lists and watches `api` with `config` into `store` until `stop`.
pub(super) async fn run<K: Resource>(
    api: Api<K>,
    config: watcher::Config,
    store: Arc<Store>,
    metrics: Metrics,
    backoff: Backoff,
    stop: CancellationToken,
) {
    let resource = K::NAME;
    let mut backoff = backoff;
    let mut failing = false;
    let mut last_was_gone = false;
    metrics.set_healthy(resource, false);
    'restart: loop {
        let mut stream = watcher::watcher(api.clone(), config.clone()).boxed();
        let mut listed: Vec<(String, K::Kept)> = Vec::new();
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                event = stream.next() => event,
            };
            let error = match event {
                Some(Ok(Event::Init)) => {
                    listed.clear();
                    continue;
                }
                Some(Ok(Event::InitApply(object))) => {
                    listed.push(object.keep());
                    continue;
                }
                Some(Ok(Event::InitDone)) => {
                    let objects = std::mem::take(&mut listed);
                    let count = objects.len();
                    store.update(|c| K::replace(c, objects, &metrics));
                    metrics.relisted(resource);
                    metrics.synced(resource);
                    metrics.set_healthy(resource, true);
                    backoff.reset();
                    last_was_gone = false;
                    if failing {
                        failing = false;
                        tracing::info!(resource, objects = count, "kubernetes watch recovered");
                    } else {
                        tracing::debug!(resource, objects = count, "kubernetes list complete");
                    }
                    continue;
                }
                Some(Ok(Event::Apply(object))) => {
                    let (key, kept) = object.keep();
                    store.update(|c| K::apply(c, key, kept, &metrics));
                    metrics.synced(resource);
                    continue;
                }
                Some(Ok(Event::Delete(object))) => {
                    let (key, _) = object.keep();
                    store.update(|c| K::delete(c, &key, &metrics));
                    metrics.synced(resource);
                    continue;
                }
                Some(Err(e)) => e,
                // The watcher never ends; if it did, start over after a pause.
                None => watcher::Error::NoResourceVersion,
            };
            let kind = error_kind(&error);
            metrics.error(resource, kind);
            if kind == "gone" && !last_was_gone {
                // The resourceVersion is too old: relist now (kube's watcher would too).
                last_was_gone = true;
                tracing::debug!(
                    resource,
                    "kubernetes watch history expired (410 Gone); relisting"
                );
                continue 'restart;
            }
            metrics.set_healthy(resource, false);
            if !failing {
                failing = true;
                tracing::warn!(
                    resource,
                    kind,
                    reason = %crate::telemetry::error_chain(&error),
                    "kubernetes watch failing; keeping the last known state and retrying with backoff"
                );
            } else {
                tracing::debug!(resource, kind, reason = %error, "kubernetes watch still failing");
            }
            let pause = backoff.next_jittered();
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            continue 'restart;
        }
    }
}

/// A bounded label for each watcher error.
fn error_kind(e: &watcher::Error) -> &'static str {
    match e {
        watcher::Error::InitialListFailed(_) => "list",
        watcher::Error::WatchStartFailed(_) => "watch_start",
        watcher::Error::WatchError(status) if status.code == 410 => "gone",
        watcher::Error::WatchError(_) | watcher::Error::WatchFailed(_) => "watch",
        watcher::Error::NoResourceVersion => "other",
    }
}

impl Resource for Pod {
    type Kept = Arc<PodInfo>;
    const NAME: &'static str = "pod";

    fn keep(&self) -> (String, Arc<PodInfo>) {
        let key = format!(
            "{}/{}",
            self.namespace().unwrap_or_default(),
            self.name_any()
        );
        (key, Arc::new(PodInfo::from_pod(self)))
    }

    fn replace(contents: &mut Contents, objects: Vec<(String, Arc<PodInfo>)>, metrics: &Metrics) {
        let mut pods = HashMap::with_capacity(objects.len());
        for (key, info) in objects {
            let event = match contents.pods.get(&key) {
                None => Some("add"),
                Some(old) if *old != info => Some("update"),
                Some(_) => None,
            };
            if let Some(event) = event {
                metrics.event(Self::NAME, event);
            }
            pods.insert(key, info);
        }
        for key in contents.pods.keys() {
            if !pods.contains_key(key) {
                metrics.event(Self::NAME, "delete");
            }
        }
        contents.pods = pods;
        contents.synced = true;
        metrics.pods.set(contents.pods.len() as i64);
    }

    fn apply(contents: &mut Contents, key: String, info: Arc<PodInfo>, metrics: &Metrics) {
        let event = match contents.pods.insert(key, info) {
            None => "add",
            Some(_) => "update",
        };
        metrics.event(Self::NAME, event);
        metrics.pods.set(contents.pods.len() as i64);
    }

    fn delete(contents: &mut Contents, key: &str, metrics: &Metrics) {
        if contents.pods.remove(key).is_some() {
            metrics.event(Self::NAME, "delete");
        }
        metrics.pods.set(contents.pods.len() as i64);
    }
}

impl Resource for Node {
    type Kept = NodeInfo;
    const NAME: &'static str = "node";

    fn keep(&self) -> (String, NodeInfo) {
        (self.name_any(), NodeInfo::from_node(self))
    }

    fn replace(contents: &mut Contents, objects: Vec<(String, NodeInfo)>, metrics: &Metrics) {
        let node = objects.into_iter().next().map(|(_, n)| n);
        if node != contents.node {
            metrics.event(Self::NAME, "update");
        }
        contents.node = node;
    }

    fn apply(contents: &mut Contents, _key: String, node: NodeInfo, metrics: &Metrics) {
        contents.node = Some(node);
        metrics.event(Self::NAME, "update");
    }

    fn delete(contents: &mut Contents, _key: &str, metrics: &Metrics) {
        contents.node = None;
        metrics.event(Self::NAME, "delete");
    }
}
