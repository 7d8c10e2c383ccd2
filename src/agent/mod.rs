//! The agent: wires config -> discovery -> scrape -> delivery, plus the web server, and runs
//! until shut down.
//!
//! Start-up order: registry, the write-ahead buffer under `--data-dir` (recovery, cursors),
//! delivery (so the appender exists), scrape manager, discovery, web server, then the control
//! loop (`control`), which owns the running parts, feeds discovery updates to scraping and
//! applies reloads (SIGHUP via [`Agent::request_reload`], `POST /-/reload` with
//! `--web.enable-lifecycle`, the config file changing on disk: `watch`); ready once every
//! discovery's first list is applied ([`Readiness`]). Shutdown order is the reverse data path: stop discovery and scraping
//! first (nothing new is appended), then seal the buffer and let delivery flush within the
//! grace period (what is not sent stays in the buffer for the next run), then close the web
//! server (it serves `/metrics` to the end). Every wait of the shutdown is bounded (see
//! [`Agent::shutdown`]).

mod control;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::control::{Command, Control, Parts, ReloadMetrics};
use crate::append::SeriesRefs;
use crate::config::Config;
use crate::discovery;
use crate::remote::{self, RemoteWrite};
use crate::scrape::{self, TargetsView};
use crate::telemetry::{self, redact_url};
use crate::wal::{self, Wal};
use crate::web;

/// How long shutdown waits for scrape loops to stop.
pub const STOP_BOUND: Duration = Duration::from_secs(5);

/// How long shutdown waits for a reload that is applying its config (stopping and restarting
/// changed endpoints, bounded by their flush deadline) before giving up on flushing.
pub const RELOAD_BOUND: Duration = Duration::from_secs(
    remote::RELOAD_FLUSH_DEADLINE.as_secs() + remote::HARD_STOP_BOUND.as_secs(),
);

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
    /// The config file, re-read by reloads (SIGHUP, `POST /-/reload`, changes on disk).
    /// `None`: the agent runs the config it was given and cannot reload from a file.
    pub config_file: Option<PathBuf>,
    /// How often the config file is checked for changes; zero turns watching off.
    pub config_watch_interval: Duration,
    /// The filesystem the buffer's writer goes through (tests give a failing or stalled
    /// disk; the real one by default).
    pub buffer_fs: BufferFs,
    /// `--web.enable-lifecycle`: serve `POST /-/reload` (otherwise 403, as Prometheus).
    /// Reloads by SIGHUP and by the config file changing need nothing.
    pub enable_lifecycle: bool,
    /// The web server's connection cap, timeouts and body cap.
    pub web_limits: web::Limits,
    /// `--web.config.file`: TLS, basic auth and headers for the web server.
    pub web_config_file: Option<PathBuf>,
    /// How often the web config's files are checked for changes (1s); zero: never.
    pub web_config_check_interval: Duration,
}

/// The filesystem of [`Options::buffer_fs`].
#[derive(Clone)]
pub struct BufferFs(pub Arc<dyn crate::buffer::Fs>);

impl Default for BufferFs {
    fn default() -> Self {
        BufferFs(Arc::new(crate::buffer::StdFs))
    }
}

impl std::fmt::Debug for BufferFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BufferFs")
    }
}

/// A running agent.
pub struct Agent {
    web: web::Server,
    runner: JoinHandle<Parts>,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
    targets: TargetsView,
    grace: Duration,
}

/// What `/-/ready` answers. The config is loaded and the buffer open and recovered before
/// the web server listens (until then a probe cannot connect); then the agent is ready once
/// the control loop runs and every discovery has completed its first list and the scrape
/// manager has applied it ([`discovery::Updates::waiting`]): static configs at once,
/// Kubernetes discovery after the API server answered the first pod list. Once ready, it stays
/// ready (as Prometheus): a reload or an API server outage later does not take the agent out
/// of its Service.
pub(crate) struct Readiness {
    /// The control loop runs.
    started: AtomicBool,
    /// Latched once ready.
    ready: AtomicBool,
    updates: Arc<discovery::Updates>,
}

impl Readiness {
    /// `Ok` when ready, else why not. Logs once when the agent becomes ready.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !self.started.load(Ordering::Relaxed) {
            return Err("starting".to_owned());
        }
        let waiting = self.updates.waiting();
        if !waiting.is_empty() {
            return Err(format!(
                "waiting for the first list of pods from the Kubernetes API (jobs: {})",
                waiting.join(", ")
            ));
        }
        if !self.ready.swap(true, Ordering::Relaxed) {
            tracing::info!("scrapelet is ready");
        }
        Ok(())
    }
}

/// A reload could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config was refused (the running one stays); the message says why.
    #[error("{0}")]
    Refused(String),
    /// The agent is shutting down.
    #[error("the agent is shutting down")]
    Stopped,
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
    /// The web config file (`--web.config.file`) is missing or invalid.
    #[error(transparent)]
    WebConfig(#[from] web::ConfigError),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen_address: SocketAddr::from(([0, 0, 0, 0], 9464)),
            data_dir: PathBuf::from("data"),
            debug_output: false,
            shutdown_grace: Duration::from_secs(25),
            node_name: None,
            config_file: None,
            config_watch_interval: Duration::from_secs(10),
            buffer_fs: BufferFs::default(),
            enable_lifecycle: false,
            web_limits: web::Limits::default(),
            web_config_file: None,
            web_config_check_interval: Duration::from_secs(1),
        }
    }
}

impl Agent {
    /// Starts the agent with `config`.
    pub async fn start(config: Config, options: Options) -> Result<Agent, Error> {
        // First: a bad web config stops start-up before anything is opened.
        let security = match &options.web_config_file {
            Some(path) => Some(Arc::new(web::Security::load(path)?)),
            None => None,
        };
        std::fs::create_dir_all(&options.data_dir).map_err(|source| Error::DataDir {
            path: options.data_dir.clone(),
            source,
        })?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(telemetry::process::ProcessCollector::new()));
        let reload_metrics = ReloadMetrics::register(&mut registry);
        let debug_output = options.debug_output || config.agent.debug_output;
        let names: Vec<&str> = config
            .remote_write
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let wal = Wal::open_with(
            &options.data_dir,
            &config.agent.buffer,
            &names,
            &mut registry,
            options.buffer_fs.0.clone(),
        )?;
        let remote = RemoteWrite::with_wal(wal, &config, debug_output, &mut registry)?;
        let scrape_metrics = scrape::Metrics::register(&mut registry);
        let web_metrics = web::Metrics::register(&mut registry);
        let mut manager = scrape::Manager::new(
            remote.appender(),
            Arc::new(SeriesRefs::default()),
            scrape_metrics,
        )
        .with_metadata(remote.metadata());
        manager.apply_config(&config.scrape_configs)?;
        let updates = Arc::new(discovery::Updates::new());
        let kubernetes = options.node_name.clone().map(|node| {
            discovery::kubernetes::Options::new(
                node,
                discovery::kubernetes::Metrics::register(&mut registry),
            )
        });
        let mut discovery = discovery::Manager::new(updates.clone()).with_kubernetes(kubernetes);
        discovery.start(&config.scrape_configs).await?;

        let readiness = Arc::new(Readiness {
            started: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            updates: updates.clone(),
        });
        let targets = manager.targets();
        let (commands, commands_rx) = mpsc::channel(8);
        let web = web::Server::start(
            options.listen_address,
            web::State {
                registry: Arc::new(registry),
                targets: targets.clone(),
                ready: {
                    let readiness = readiness.clone();
                    Arc::new(move || readiness.check())
                },
                reload: Some(reloader(commands.clone())),
                lifecycle: options.enable_lifecycle,
            },
            web::Settings {
                limits: options.web_limits.clone(),
                security: security.clone(),
                security_check_interval: options.web_config_check_interval,
                metrics: web_metrics,
            },
        )
        .await?;
        log_start(&config, &options, web.local_addr(), security.as_deref());
        let stop = CancellationToken::new();
        if let Some(path) = &options.config_file
            && !options.config_watch_interval.is_zero()
        {
            watch::spawn(
                path.clone(),
                options.config_watch_interval,
                commands.clone(),
                stop.clone(),
            );
        }
        let control = Control {
            parts: Parts {
                manager,
                discovery,
                remote,
            },
            updates,
            readiness: readiness.clone(),
            commands: commands_rx,
            config_file: options.config_file.clone(),
            config,
            debug_output: options.debug_output,
            metrics: reload_metrics,
        };
        let runner = tokio::spawn(control.run(stop.clone()));
        readiness.started.store(true, Ordering::Relaxed);
        // Without Kubernetes discovery: ready now.
        let _ = readiness.check();
        Ok(Agent {
            web,
            runner,
            commands,
            stop,
            targets,
            grace: options.shutdown_grace,
        })
    }

    /// Reloads the config file (what SIGHUP, `POST /-/reload` and a change on disk do).
    /// Returns a summary of what changed.
    pub async fn reload(&self) -> Result<String, ReloadError> {
        reload_via(&self.commands, None).await
    }

    /// Reloads with `config` instead of the file (tests, embedding).
    pub async fn reload_with(&self, config: Config) -> Result<String, ReloadError> {
        reload_via(&self.commands, Some(Box::new(config))).await
    }

    /// The web server's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.web.local_addr()
    }

    /// Every job's targets, live.
    pub fn targets(&self) -> TargetsView {
        self.targets.clone()
    }

    /// Asks for a reload of the config file without waiting for it (SIGHUP): the outcome is
    /// logged. Returns false when reloads are already queued (the last of them reads the
    /// file as it is then, so this one is covered) or the agent is stopping.
    pub fn request_reload(&self) -> bool {
        let (reply, _) = oneshot::channel();
        self.commands
            .try_send(Command::Reload {
                config: None,
                reply,
            })
            .is_ok()
    }

    /// Stops discovery and scraping, flushes delivery within the grace period (what is not
    /// sent stays in the buffer), stops the web server. Bounded: a reload being checked is
    /// abandoned, one being applied gets [`RELOAD_BOUND`]; scraping gets [`STOP_BOUND`] to
    /// stop; remote write what is left of the grace period (counted from the call) plus
    /// [`remote::HARD_STOP_BOUND`]. So it returns within the larger of the grace period and
    /// `RELOAD_BOUND + STOP_BOUND`, plus `HARD_STOP_BOUND`. Whatever did not finish in time is
    /// left behind: the buffer is on disk.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let flush_until = tokio::time::Instant::now() + self.grace;
        let mut runner = self.runner;
        match tokio::time::timeout(RELOAD_BOUND, &mut runner).await {
            Ok(Ok(parts)) => {
                drop(parts.discovery);
                if tokio::time::timeout(STOP_BOUND, parts.manager.shutdown())
                    .await
                    .is_err()
                {
                    tracing::warn!(bound = ?STOP_BOUND, "scrape loops did not stop in time; going on without them");
                }
                let grace = flush_until.saturating_duration_since(tokio::time::Instant::now());
                parts.remote.shutdown(grace).await;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the control loop failed; shutting down without flushing (what was not sent stays in the buffer)")
            }
            Err(_) => {
                tracing::error!(bound = ?RELOAD_BOUND, "a config reload did not finish in time; shutting down without flushing (what was not sent stays in the buffer)")
            }
        }
        self.web.shutdown().await;
        tracing::info!("scrapelet stopped");
    }
}

async fn reload_via(
    commands: &mpsc::Sender<Command>,
    config: Option<Box<Config>>,
) -> Result<String, ReloadError> {
    let (reply, outcome) = oneshot::channel();
    commands
        .send(Command::Reload { config, reply })
        .await
        .map_err(|_| ReloadError::Stopped)?;
    outcome
        .await
        .map_err(|_| ReloadError::Stopped)?
        .map_err(ReloadError::Refused)
}

/// `POST /-/reload` for the web server.
fn reloader(commands: mpsc::Sender<Command>) -> web::Reloader {
    Arc::new(move || {
        let commands = commands.clone();
        Box::pin(async move { reload_via(&commands, None).await.map_err(|e| e.to_string()) })
    })
}

fn log_start(
    config: &Config,
    options: &Options,
    addr: SocketAddr,
    security: Option<&web::Security>,
) {
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
        tls = security.is_some_and(web::Security::tls),
        basic_auth = security.is_some_and(web::Security::basic_auth),
        lifecycle = options.enable_lifecycle,
        data_dir = %options.data_dir.display(),
        jobs = config.scrape_configs.len(),
        static_targets,
        kubernetes_jobs = config.scrape_configs.iter().filter(|c| !c.kubernetes_sd_configs.is_empty()).count(),
        endpoints = %if endpoints.is_empty() { "none (debug output)".to_owned() } else { endpoints.join(",") },
        "scrapelet started"
    );
}
