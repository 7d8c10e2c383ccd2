//! The web config in force (TLS, basic auth, headers) and the watch that follows its files.
//!
//! The file is read and every file it names (certificate, key, client CA) at start-up, where
//! any problem stops the agent. Then every check interval (1 s by default) the same files
//! are read again and hashed; when the hash changed, a new [`Snapshot`] is built and swapped
//! in: each new connection takes the TLS configuration in force when it arrives, each
//! request the users and headers. So a certificate rotated on disk (a Kubernetes Secret's
//! symlink swap included) is served from the next handshake on, and changed users or headers
//! apply from the next request. A web config that cannot be built keeps the running one, with
//! one error in the log per distinct problem (`scrapelet_web_config_last_reload_successful`
//! 0) until the files change again. Turning TLS on or off needs a restart (clients would
//! speak the wrong protocol); such a change is refused the same way.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::Xxh3;

use super::auth::BasicAuth;
use super::config::{self, Error, Pem, Reporter, WebConfig};
use super::metrics::Metrics;
use super::tls::{self, Material};
use crate::telemetry::error_chain;

/// The web config of `--web.config.file`, live.
pub struct Security {
    path: PathBuf,
    current: RwLock<Arc<Snapshot>>,
    /// The hash of the files the current snapshot was built from.
    fingerprint: RwLock<u64>,
}

/// One version of the web config, ready to serve.
pub(super) struct Snapshot {
    /// None: plain HTTP.
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) http2: bool,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    /// None: no basic auth.
    pub(super) auth: Option<BasicAuth>,
}

/// What a check read: the config and the files it names, and their hash.
struct Read {
    config: WebConfig,
    reporter: Reporter,
    material: Option<Material>,
    fingerprint: u64,
}

impl Security {
    /// Reads the web config at `path` and every file it names; any problem is an error that
    /// names the file, line and key.
    pub fn load(path: &Path) -> Result<Security, Error> {
        let read = read(path)?;
        let fingerprint = read.fingerprint;
        let snapshot = build(read)?;
        Ok(Security {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(snapshot)),
            fingerprint: RwLock::new(fingerprint),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the server speaks TLS (fixed for the life of the process).
    pub fn tls(&self) -> bool {
        self.current().tls.is_some()
    }

    /// Whether requests need basic auth (as of now).
    pub fn basic_auth(&self) -> bool {
        self.current().auth.is_some()
    }

    pub(super) fn current(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks the files every `interval` until `stop`.
    pub(super) fn watch(
        self: Arc<Self>,
        interval: Duration,
        metrics: Metrics,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker.tick().await;
            // The last problem logged, so that a broken file is reported once, not every tick.
            let mut last_problem: Option<String> = None;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let this = self.clone();
                let outcome = tokio::task::spawn_blocking(move || this.check()).await;
                match outcome {
                    Ok(Ok(Some(summary))) => {
                        last_problem = None;
                        metrics.web_config_reloaded(true);
                        tracing::info!(file = %self.path.display(), tls = summary.tls, basic_auth_users = summary.users, "web config reloaded");
                    }
                    Ok(Ok(None)) => {
                        if last_problem.take().is_some() {
                            metrics.web_config_reloaded(true);
                            tracing::info!(file = %self.path.display(), "the web config files are back to the running version");
                        }
                    }
                    Ok(Err(problem)) => {
                        metrics.web_config_reloaded(false);
                        if last_problem.as_ref() != Some(&problem) {
                            tracing::error!(file = %self.path.display(), error = %problem, "cannot reload the web config; the running one stays");
                            last_problem = Some(problem);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the web config check failed"),
                }
            }
        })
    }

    /// Reads the files; swaps in a new snapshot when they changed. `Ok(None)`: unchanged.
    fn check(&self) -> Result<Option<Summary>, String> {
        let read = read(&self.path).map_err(|e| error_chain(&e))?;
        let unchanged = *self.fingerprint.read().unwrap_or_else(|e| e.into_inner());
        if read.fingerprint == unchanged {
            return Ok(None);
        }
        let fingerprint = read.fingerprint;
        let snapshot = build(read).map_err(|e| error_chain(&e))?;
        if snapshot.tls.is_some() != self.tls() {
            return Err(format!(
                "turning TLS {} needs a restart",
                if snapshot.tls.is_some() { "on" } else { "off" }
            ));
        }
        let summary = Summary {
            tls: snapshot.tls.is_some(),
            users: snapshot.auth.as_ref().map_or(0, BasicAuth::user_count),
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        *self.fingerprint.write().unwrap_or_else(|e| e.into_inner()) = fingerprint;
        Ok(Some(summary))
    }
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a reload changed to, for its log line.
struct Summary {
    tls: bool,
    users: usize,
}

/// Reads the web config at `path` and the files it names.
fn read(path: &Path) -> Result<Read, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let origin = path.display().to_string();
    let (config, mut reporter) = config::parse(&text, &origin, path.parent())?;
    let mut hash = Xxh3::new();
    hash.update(text.as_bytes());
    let material = config.tls.as_ref().and_then(|t| {
        let mut file = |pem: &Pem, inline: &str, key: &str| -> Option<Vec<u8>> {
            let bytes = match pem {
                Pem::Inline(text) => text.as_bytes().to_vec(),
                Pem::File(file) => match std::fs::read(file) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        reporter.report(
                            &tls::key_of(pem, inline, key),
                            format!("cannot read {}: {e}", file.display()),
                        );
                        return None;
                    }
                },
            };
            hash.update(&bytes);
            Some(bytes)
        };
        let cert = file(&t.cert, "cert", "cert_file");
        let key = file(&t.key, "key", "key_file");
        let client_ca = match &t.client_ca {
            Some(pem) => Some(file(pem, "client_ca", "client_ca_file")?),
            None => None,
        };
        Some(Material {
            cert: cert?,
            key: key?,
            client_ca,
        })
    });
    Ok(Read {
        config,
        reporter,
        material,
        fingerprint: hash.digest(),
    })
}

fn build(read: Read) -> Result<Snapshot, Error> {
    let Read {
        config,
        mut reporter,
        material,
        ..
    } = read;
    let tls = match (&config.tls, &material) {
        (Some(t), Some(m)) => tls::server_config(t, m, config.http2, &mut reporter),
        _ => None,
    };
    reporter.into_result(Snapshot {
        tls,
        http2: config.http2,
        headers: config.headers,
        auth: BasicAuth::new(config.users),
    })
}
