//! Reloads when the config file changes on disk.
//!
//! Polls the file's content (not its modification time): a Kubernetes ConfigMap update swaps
//! a symlink, which changes neither the path nor, reliably, the time seen through it. A change
//! triggers one reload; a refused config is not retried until the content changes again. An
//! unreadable file (e.g. between the two steps of a swap) is logged once per state change and
//! checked again at the next tick.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::control::Command;
use super::{ReloadError, reload_via};

/// Watches `path` every `interval` until `stop`.
pub(super) fn spawn(
    path: PathBuf,
    interval: Duration,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = content_hash(&path).await.ok();
        let mut failing = false;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let hash = match content_hash(&path).await {
                Ok(h) => {
                    if failing {
                        tracing::info!(file = %path.display(), "config file readable again");
                        failing = false;
                    }
                    h
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(file = %path.display(), error = %e, "cannot read the config file; the running config stays");
                        failing = true;
                    }
                    continue;
                }
            };
            if last == Some(hash) {
                continue;
            }
            last = Some(hash);
            tracing::info!(file = %path.display(), "config file changed; reloading");
            // The outcome is logged by the control loop; only a stopped one ends the watch.
            if let Err(ReloadError::Stopped) = reload_via(&commands, None).await {
                return;
            }
        }
    })
}

async fn content_hash(path: &std::path::Path) -> std::io::Result<u64> {
    let bytes = tokio::fs::read(path).await?;
    Ok(xxhash_rust::xxh3::xxh3_64(&bytes))
}
