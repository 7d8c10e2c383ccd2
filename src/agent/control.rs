//! The agent's control loop: owns the scrape manager, discovery and remote write while the
//! agent runs; feeds discovery updates to the scrape manager and applies reloads, one at a
//! time, in the order they were asked for.
//!
//! A reload either applies the whole new config or none of it: everything that can fail
//! (reading and parsing the file, building every HTTP client, starting discovery) is checked
//! before anything running is touched, then remote write, discovery and scraping each change
//! only what changed. A refused config is logged with its reason and counted
//! (`scrapelet_config_last_reload_successful` 0); the running one stays.
//!
//! A shutdown does not wait for a reload still checking the new config: reading the file and
//! building its clients (which read TLS files: a FIFO or a hung network mount blocks that
//! read for ever) run off the async runtime, and discovery's checks are cancel-safe, so the
//! control loop abandons that phase when the agent stops. Once the new config is applied
//! (bounded by the endpoints' flush deadline), it runs to the end: a half-applied config
//! would be worse.

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::discovery;
use crate::remote::RemoteWrite;
use crate::scrape;
use crate::telemetry::error_chain;
use crate::telemetry::time::unix_seconds;

/// What the control loop is asked to do.
pub(super) enum Command {
    /// Reload from `config`, or from the config file when `None`; the reply says what changed
    /// or why the new config was refused.
    Reload {
        config: Option<Box<Config>>,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// Why a reload did not apply.
enum Failure {
    /// The new config was refused; the message says why.
    Refused(String),
    /// The agent began to shut down while the new config was being checked.
    Abandoned,
}

/// What the control loop owns; handed back at shutdown.
pub(super) struct Parts {
    pub manager: scrape::Manager,
    pub discovery: discovery::Manager,
    pub remote: RemoteWrite,
}

/// Reload metrics, as Prometheus names them.
#[derive(Clone)]
pub(super) struct ReloadMetrics {
    successful: Gauge,
    success_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    reloads: Family<ResultLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

pub(super) struct Control {
    pub parts: Parts,
    /// Discovery's updates, latest wins per job (nothing piles up while a reload runs).
    pub updates: Arc<discovery::Updates>,
    pub readiness: Arc<super::Readiness>,
    pub commands: mpsc::Receiver<Command>,
    pub config_file: Option<PathBuf>,
    /// The running config (what a reload is compared with).
    pub config: Config,
    pub debug_output: bool,
    pub metrics: ReloadMetrics,
}

impl ReloadMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = ReloadMetrics {
            successful: Gauge::default(),
            success_time: Gauge::default(),
            reloads: Family::default(),
        };
        registry.register(
            "scrapelet_config_last_reload_successful",
            "Whether the last config reload succeeded (1) or was refused (0)",
            m.successful.clone(),
        );
        registry.register(
            "scrapelet_config_last_reload_success_timestamp_seconds",
            "When the running config was loaded",
            m.success_time.clone(),
        );
        registry.register(
            "scrapelet_config_reloads",
            "Config reloads by result (success, failure)",
            m.reloads.clone(),
        );
        m.succeeded_at_start();
        m
    }

    fn succeeded_at_start(&self) {
        self.successful.set(1);
        self.success_time.set(unix_seconds());
    }

    fn record(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .get_or_create_owned(&ResultLabel { result })
            .inc();
        if ok {
            self.succeeded_at_start();
        } else {
            self.successful.set(0);
        }
    }
}

impl Control {
    /// Runs until `stop`; returns what it owns so that shutdown can stop it in order.
    pub(super) async fn run(mut self, stop: CancellationToken) -> Parts {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(Command::Reload { config, reply }) => {
                        let outcome = self.reload(config, &stop).await;
                        let _ = reply.send(outcome);
                    }
                    None => break,
                },
                updates = self.updates.next() => {
                    for update in updates {
                        self.parts.manager.sync(update);
                    }
                    self.updates.applied();
                    let _ = self.readiness.check();
                }
            }
        }
        self.parts
    }

    async fn reload(
        &mut self,
        config: Option<Box<Config>>,
        stop: &CancellationToken,
    ) -> Result<String, String> {
        match &self.config_file {
            Some(file) if config.is_none() => {
                tracing::info!(file = %file.display(), "reloading the config");
            }
            _ => tracing::info!("reloading the config"),
        }
        let outcome = match self.try_reload(config, stop).await {
            Ok(summary) => Ok(summary),
            Err(Failure::Refused(reason)) => Err(reason),
            Err(Failure::Abandoned) => {
                tracing::warn!(
                    "config reload abandoned: the agent is shutting down; the running config stays"
                );
                return Err("the agent is shutting down".to_owned());
            }
        };
        self.metrics.record(outcome.is_ok());
        match &outcome {
            Ok(summary) => tracing::info!(changes = %summary, "config reloaded"),
            Err(reason) => {
                tracing::error!(reason = %reason, "config reload refused; the running config stays")
            }
        }
        outcome
    }

    async fn try_reload(
        &mut self,
        config: Option<Box<Config>>,
        stop: &CancellationToken,
    ) -> Result<String, Failure> {
        // Everything that can fail is checked before anything changes: off the runtime (file
        // reads can block), abandoned if the agent stops meanwhile (see the module docs).
        let file = self.config_file.clone();
        let scrape = self.parts.manager.checker();
        let remote = self.parts.remote.validator();
        let checked = tokio::task::spawn_blocking(move || {
            let new = match (config, file) {
                (Some(c), _) => *c,
                (None, Some(path)) => config::load(&path).map_err(|e| error_chain(&e))?,
                (None, None) => return Err("the agent was started without a config file".into()),
            };
            scrape
                .check(&new.scrape_configs)
                .map_err(|e| error_chain(&e))?;
            remote.validate(&new).map_err(|e| error_chain(&e))?;
            Ok::<_, String>(new)
        });
        let new = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(Failure::Abandoned),
            checked = checked => checked
                .map_err(|e| Failure::Refused(format!("the config check failed: {e}")))?
                .map_err(Failure::Refused)?,
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => return Err(Failure::Abandoned),
            started = self.parts.discovery.start(&new.scrape_configs) => {
                started.map_err(|e| Failure::Refused(error_chain(&e)))?;
            }
        }
        let remote = self
            .parts
            .remote
            .reload(&new, self.debug_output || new.agent.debug_output)
            .await
            .map_err(|e| Failure::Refused(error_chain(&e)))?;
        let scrape = self
            .parts
            .manager
            .apply_config(&new.scrape_configs)
            .map_err(|e| Failure::Refused(error_chain(&e)))?;
        let mut summary = format!(
            "jobs kept={} retargeted={} restarted={} started={} removed={}; endpoints {remote}",
            scrape.kept, scrape.retargeted, scrape.restarted, scrape.started, scrape.removed
        );
        if new.agent.buffer != self.config.agent.buffer {
            tracing::warn!("agent.buffer changed: the buffer keeps its settings until a restart");
            summary.push_str("; agent.buffer changes need a restart");
        }
        self.config = new;
        Ok(summary)
    }
}
