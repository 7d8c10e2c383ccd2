//! The agent: wires config -> discovery -> scrape -> delivery, plus the web server, and runs
//! until shut down.
//!
//! Start-up order: registry, the write-ahead buffer under `--data-dir` (recovery, cursors),
//! delivery (so the appender exists), scrape manager, discovery, web server; ready once the
//! config is applied. Shutdown order is the reverse data path: stop discovery and scraping
//! first (nothing new is appended), then seal the buffer and let delivery flush within the
//! grace period (what is not sent stays in the buffer for the next run), then close the web
//! server (it serves `/metrics` to the end).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::append::SeriesRefs;
use crate::config::Config;
use crate::discovery;
use crate::remote::{self, RemoteWrite};
use crate::scrape::{self, TargetsView};
use crate::telemetry;
use crate::wal::{self, Wal};
use crate::web;

/// Settings that come from the command line, not the config file.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the web server listens (port 0 picks a free port).
    pub listen_address: SocketAddr,
    /// Where the agent keeps its state.
    pub data_dir: PathBuf,
    /// Log a summary of what is sent, next to real endpoints.
    pub debug_output: bool,
    /// How long shutdown may spend flushing to endpoints.
    pub shutdown_grace: Duration,
    /// The node whose pods Kubernetes discovery watches (`--node-name` / `NODE_NAME`).
    pub node_name: Option<String>,
}

/// A running agent.
pub struct Agent {
    web: web::Server,
    runner: JoinHandle<scrape::Manager>,
    remote: RemoteWrite,
    stop: CancellationToken,
    targets: TargetsView,
    grace: Duration,
}

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory cannot be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The write-ahead buffer could not be opened.
    #[error(transparent)]
    Wal(#[from] wal::Error),
    /// Delivery could not be set up.
    #[error(transparent)]
    Remote(#[from] remote::Error),
    /// A scrape job could not be set up.
    #[error(transparent)]
    Job(#[from] scrape::JobError),
    /// The web server could not start.
    #[error(transparent)]
    Web(#[from] web::Error),
    /// Discovery could not start (e.g. Kubernetes discovery without a node name).
    #[error(transparent)]
    Discovery(#[from] discovery::Error),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen_address: SocketAddr::from(([0, 0, 0, 0], 9464)),
            data_dir: PathBuf::from("data"),
            debug_output: false,
            shutdown_grace: Duration::from_secs(25),
            node_name: None,
        }
    }
}

impl Agent {
    /// Starts the agent with `config`.
    pub async fn start(config: Config, options: Options) -> Result<Agent, Error> {
        std::fs::create_dir_all(&options.data_dir).map_err(|source| Error::DataDir {
            path: options.data_dir.clone(),
            source,
        })?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(telemetry::process::ProcessCollector::new()));
        let debug_output = options.debug_output || config.agent.debug_output;
        let names: Vec<&str> = config
            .remote_write
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let wal = Wal::open(
            &options.data_dir,
            &config.agent.buffer,
            &names,
            &mut registry,
        )?;
        let remote = RemoteWrite::with_wal(wal, &config, debug_output, &mut registry)?;
        let scrape_metrics = scrape::Metrics::register(&mut registry);
        let mut manager = scrape::Manager::new(
            remote.appender(),
            Arc::new(SeriesRefs::default()),
            scrape_metrics,
        );
        manager.apply_config(&config.scrape_configs)?;
        let (updates_tx, updates_rx) = mpsc::unbounded_channel();
        let kubernetes = options.node_name.clone().map(|node| {
            discovery::kubernetes::Options::new(
                node,
                discovery::kubernetes::Metrics::register(&mut registry),
            )
        });
        let mut discovery = discovery::Manager::new(updates_tx).with_kubernetes(kubernetes);
        discovery.start(&config.scrape_configs).await?;

        let ready = Arc::new(AtomicBool::new(false));
        let targets = manager.targets();
        let web = web::Server::start(
            options.listen_address,
            web::State {
                registry: Arc::new(registry),
                targets: targets.clone(),
                ready: ready.clone(),
            },
        )
        .await?;
        let stop = CancellationToken::new();
        let runner = tokio::spawn(run(manager, discovery, updates_rx, stop.clone()));
        ready.store(true, Ordering::Relaxed);
        log_start(&config, &options, web.local_addr());
        Ok(Agent {
            web,
            runner,
            remote,
            stop,
            targets,
            grace: options.shutdown_grace,
        })
    }

    /// The web server's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.web.local_addr()
    }

    /// Every job's targets, live.
    pub fn targets(&self) -> TargetsView {
        self.targets.clone()
    }

    /// Stops scraping, flushes delivery within the grace period, stops the web server.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Ok(manager) = self.runner.await {
            manager.shutdown().await;
        }
        self.remote.shutdown(self.grace).await;
        self.web.shutdown().await;
        tracing::info!("scrapelet stopped");
    }
}

/// Feeds discovery updates to the scrape manager until stopped; returns the manager so that
/// shutdown can stop its loops.
async fn run(
    mut manager: scrape::Manager,
    discovery: discovery::Manager,
    mut updates: mpsc::UnboundedReceiver<discovery::Update>,
    stop: CancellationToken,
) -> scrape::Manager {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            update = updates.recv() => match update {
                Some(u) => manager.sync(u),
                None => break,
            },
        }
    }
    drop(discovery);
    manager
}

fn log_start(config: &Config, options: &Options, addr: SocketAddr) {
    let static_targets: usize = config
        .scrape_configs
        .iter()
        .flat_map(|c| &c.static_configs)
        .map(|s| s.targets.len())
        .sum();
    let endpoints: Vec<String> = config
        .remote_write
        .iter()
        .map(|r| format!("{}={}", r.name, redact_url(&r.url)))
        .collect();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node = options.node_name.as_deref().unwrap_or("none"),
        listen = %addr,
        data_dir = %options.data_dir.display(),
        jobs = config.scrape_configs.len(),
        static_targets,
        kubernetes_jobs = config.scrape_configs.iter().filter(|c| !c.kubernetes_sd_configs.is_empty()).count(),
        endpoints = %if endpoints.is_empty() { "none (debug output)".to_owned() } else { endpoints.join(",") },
        "scrapelet started"
    );
}

/// A URL without user info (`https://user:pass@host/` -> `https://host/`).
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_user_info() {
        assert_eq!(
            redact_url("https://u:p@h:1/api/v1/write"),
            "https://h:1/api/v1/write"
        );
        assert_eq!(redact_url("http://h/x@y"), "http://h/x@y");
        assert_eq!(redact_url("http://h"), "http://h");
    }
}
