//! Kubernetes pod discovery for a DaemonSet: the pods of the agent's own node, with exactly
//! Prometheus's `role: pod` meta labels.
//!
//! Design:
//! - One [`Connection`] per distinct way of reaching the API server (in-cluster, a kubeconfig,
//!   an `api_server` with its auth), however many scrape configs use it. Each runs one pod
//!   list/watch with the field selector `spec.nodeName=<node>`, so the API server (its watch
//!   cache, indexed by node) does the filtering, and, when some config asks for
//!   `attach_metadata.node`, one watch of the node object itself.
//! - The watches feed a shared store (`watch::Store`) of cut-down pods (`pod::PodInfo`): only
//!   what the meta labels and the selectors need, with the target group built once per change.
//! - Each `kubernetes_sd_configs` entry becomes a [`Subscription`]: the store plus the entry's
//!   namespaces and selectors, applied by the agent (see `selector` for the supported fields).
//!
//! Invariants:
//! - while the API server is unreachable the store keeps the last known pods (a relist replaces
//!   them in one step once it completes);
//! - a [`Connection`] stops its watches when dropped; nothing outlives the discovery manager.
//!
//! Load on the API server, for N nodes: N long-lived pod watches (one per agent, however many
//! jobs), each with `spec.nodeName=<node>`, which the API server's watch cache serves from its
//! node index, so a pod change costs one event to the one agent of its node, not N. Lists
//! (at start, after 410 Gone, after an error) use `resourceVersion=0`, answered from the watch
//! cache, not etcd, and return only that node's pods (about 110 at most); errors back off
//! exponentially (1s to 30s, jittered) per agent, so a restarted API server is not hit by N
//! agents at once. Watches are renewed every ~290s by the server-side timeout (resumed from
//! the last resourceVersion or bookmark, no list). With `attach_metadata.node`, one more
//! watch per agent on its own Node object.

mod client;
mod metrics;
mod pod;
mod watch;

pub use crate::config::{FieldSelector, LabelSelector, POD_FIELDS, PodFields};
pub use metrics::Metrics;
pub use pod::sanitize_label_name;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::watch as notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::TargetGroup;
use crate::config::KubernetesSdConfig;
use crate::labels::LabelsBuilder;

/// What Kubernetes discovery needs from the agent.
#[derive(Clone, Debug)]
pub struct Options {
    /// The agent's node (`--node-name` / `NODE_NAME`): only its pods are watched.
    pub node_name: String,
    pub metrics: Metrics,
    /// First retry delay after a failed list or watch; doubles up to `max_backoff`. Each
    /// delay is randomised to 50-100% of its value. Default 1s.
    pub min_backoff: Duration,
    /// Default 30s.
    pub max_backoff: Duration,
    /// Changes arriving within this window are sent as one update. Default 100ms.
    pub coalesce: Duration,
    /// Where the agent's namespace is read for `namespaces.own_namespace`. Default: the
    /// service account mount.
    pub namespace_file: PathBuf,
    /// Server-side watch timeout (the watch is resumed after it). Default 290s (kube's).
    pub watch_timeout_seconds: u32,
}

/// Kubernetes discovery could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `kubernetes_sd_configs` exist but the agent was not told its node. Not retryable: set
    /// `--node-name` or `NODE_NAME` (from the downward API, `spec.nodeName`).
    #[error(
        "kubernetes_sd_configs need the node name: set --node-name or the NODE_NAME environment variable (downward API fieldRef spec.nodeName)"
    )]
    NoNodeName,
    /// Neither in a cluster nor given a kubeconfig. Not retryable: set `kubeconfig_file`,
    /// `api_server` or `KUBECONFIG`.
    #[error(
        "not running in a Kubernetes cluster (no KUBERNETES_SERVICE_HOST) and no kubeconfig: set kubeconfig_file or api_server in kubernetes_sd_configs, or KUBECONFIG"
    )]
    NoCluster,
    /// The in-cluster service account (token, CA) cannot be read. Retryable once mounted.
    #[error("cannot use the in-cluster service account")]
    InCluster {
        #[source]
        source: kube::config::InClusterError,
    },
    /// The kubeconfig cannot be read or used. Not retryable: the file must change.
    #[error("cannot use kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// `api_server` is not a URL (config validation normally catches this).
    #[error("invalid api_server URL {url:?}")]
    ApiServer {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    /// A file named in the config cannot be read. Retryable: it may appear.
    #[error("cannot read {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CA certificate cannot be parsed. Not retryable.
    #[error("invalid certificate in {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    /// The kube client cannot be built (TLS setup). Not retryable.
    #[error("cannot create the Kubernetes client")]
    Client {
        #[source]
        source: kube::Error,
    },
}

/// The connections of the current config, by connection key.
#[derive(Default)]
pub struct Kubernetes {
    connections: HashMap<String, Connection>,
    options: Option<Options>,
}

/// One way of reaching the API server and its watches.
struct Connection {
    client: kube::Client,
    store: Arc<watch::Store>,
    /// Stops the pod watch when the connection is dropped.
    _pods: DropGuard,
    /// The node watch, while some config attaches node metadata.
    node: Option<DropGuard>,
}

/// One `kubernetes_sd_configs` entry bound to its connection's store.
pub struct Subscription {
    store: Arc<watch::Store>,
    changes: notify::Receiver<u64>,
    namespaces: Vec<String>,
    label_selector: Option<LabelSelector>,
    field_selector: Option<FieldSelector>,
    attach_node: bool,
}

impl Options {
    /// The defaults for `node_name`, reporting to `metrics`.
    pub fn new(node_name: impl Into<String>, metrics: Metrics) -> Options {
        Options {
            node_name: node_name.into(),
            metrics,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            coalesce: Duration::from_millis(100),
            namespace_file: PathBuf::from(client::SERVICE_ACCOUNT_NAMESPACE),
            watch_timeout_seconds: 290,
        }
    }
}

impl Kubernetes {
    /// Discovery for the node in `options`; `None` when the agent has no node name (then any
    /// `kubernetes_sd_configs` fail with [`Error::NoNodeName`]).
    pub fn new(options: Option<Options>) -> Kubernetes {
        Kubernetes {
            connections: HashMap::new(),
            options,
        }
    }

    /// The coalescing window of updates.
    pub fn coalesce(&self) -> Duration {
        self.options
            .as_ref()
            .map_or(Duration::from_millis(100), |o| o.coalesce)
    }

    /// Binds `configs` (all entries of all jobs, in order) to connections: keeps the
    /// connections still used (their watches go on undisturbed), starts new ones, stops the
    /// others. Returns one subscription per entry. On error nothing changes.
    pub async fn subscribe(
        &mut self,
        configs: &[&KubernetesSdConfig],
    ) -> Result<Vec<Subscription>, Error> {
        if configs.is_empty() {
            self.connections.clear();
            return Ok(Vec::new());
        }
        let options = self.options.clone().ok_or(Error::NoNodeName)?;
        let mut own_namespace = None;
        // Build what is new first, so that an error leaves the running state alone.
        let mut keys = Vec::with_capacity(configs.len());
        let mut new: HashMap<String, kube::Client> = HashMap::new();
        for cfg in configs {
            let key = client::connection_key(cfg);
            if !self.connections.contains_key(&key) && !new.contains_key(&key) {
                new.insert(key.clone(), client::client(cfg).await?);
            }
            if cfg.own_namespace && own_namespace.is_none() {
                own_namespace = Some(client::own_namespace(&options.namespace_file)?);
            }
            keys.push(key);
        }
        self.connections.retain(|k, _| keys.contains(k));
        for (key, client) in new {
            let conn = Connection::start(client, &options);
            tracing::info!(connection = %key, node = %options.node_name, "kubernetes pod watch started");
            self.connections.insert(key, conn);
        }
        for conn in self.connections.values_mut() {
            conn.node = None;
        }
        let mut subscriptions = Vec::with_capacity(configs.len());
        for (cfg, key) in configs.iter().zip(&keys) {
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            if cfg.attach_node_metadata && conn.node.is_none() {
                conn.node = Some(conn.start_node_watch(&options));
            }
            let mut namespaces = cfg.namespaces.clone();
            if cfg.own_namespace
                && let Some(ns) = &own_namespace
            {
                namespaces.push(ns.clone());
            }
            subscriptions.push(Subscription {
                store: conn.store.clone(),
                changes: conn.store.subscribe(),
                namespaces,
                label_selector: cfg.label_selector.clone(),
                field_selector: cfg.field_selector.clone(),
                attach_node: cfg.attach_node_metadata,
            });
        }
        Ok(subscriptions)
    }

    /// Connections (and so pod watches) running.
    pub fn connections(&self) -> usize {
        self.connections.len()
    }
}

impl Connection {
    fn start(client: kube::Client, options: &Options) -> Connection {
        let store = Arc::new(watch::Store::new());
        let stop = CancellationToken::new();
        let config = watch_config(&format!("spec.nodeName={}", options.node_name), options);
        tokio::spawn(watch::run(
            Api::<Pod>::all(client.clone()),
            config,
            store.clone(),
            options.metrics.clone(),
            backoff(options),
            stop.clone(),
        ));
        Connection {
            client,
            store,
            _pods: stop.drop_guard(),
            node: None,
        }
    }

    fn start_node_watch(&self, options: &Options) -> DropGuard {
        let stop = CancellationToken::new();
        let config = watch_config(&format!("metadata.name={}", options.node_name), options);
        tokio::spawn(watch::run(
            Api::<Node>::all(self.client.clone()),
            config,
            self.store.clone(),
            options.metrics.clone(),
            backoff(options),
            stop.clone(),
        ));
        stop.drop_guard()
    }
}

/// The list/watch settings of every watch: `fields` selects the objects; lists are served
/// from the API server's watch cache (`resourceVersion=0`), not read from etcd.
fn watch_config(fields: &str, options: &Options) -> watcher::Config {
    let mut config = watcher::Config::default()
        .fields(fields)
        .any_semantic()
        .timeout(options.watch_timeout_seconds);
    // kube sends `resourceVersion=0` only on unpaged lists (a paged list is a quorum read from
    // etcd, whatever the semantic). One node's pods (at most ~110) need no paging.
    config.page_size = None;
    config
}

fn backoff(options: &Options) -> watch::Backoff {
    watch::Backoff::new(options.min_backoff, options.max_backoff)
}

impl Subscription {
    /// Waits until the store changed since the last [`Subscription::groups`] call (at once
    /// if it did). Never returns if the store is gone (the connection was replaced).
    pub async fn changed(&mut self) {
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the pods have been listed at least once.
    pub fn synced(&self) -> bool {
        self.store.lock().synced
    }

    /// Appends the groups of the matching pods, sorted by source, to `out`, and marks the
    /// current state as seen.
    pub fn groups(&mut self, out: &mut Vec<TargetGroup>) {
        self.changes.borrow_and_update();
        let contents = self.store.lock();
        let node_labels = if self.attach_node {
            contents.node.as_ref().map(|n| &n.labels)
        } else {
            None
        };
        let mut matched: Vec<_> = contents.pods.values().filter(|p| self.matches(p)).collect();
        matched.sort_by(|a, b| a.group.source.cmp(&b.group.source));
        for pod in matched {
            let mut group = pod.group.clone();
            if let Some(node) = node_labels
                && !group.targets.is_empty()
            {
                let mut lb: LabelsBuilder = group.labels.to_builder();
                for l in node.iter() {
                    lb.set(l.name, l.value);
                }
                group.labels = lb.build();
            }
            out.push(group);
        }
    }

    fn matches(&self, pod: &pod::PodInfo) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|n| **n == *pod.namespace))
            && self
                .label_selector
                .as_ref()
                .is_none_or(|s| s.matches(|k| pod.label(k)))
            && self
                .field_selector
                .as_ref()
                .is_none_or(|s| s.matches(&pod.fields()))
    }
}
