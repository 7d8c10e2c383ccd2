//! Runs the providers of every scrape config and forwards their target groups per job.

use tokio::sync::mpsc;

use super::{TargetGroup, static_sd};
use crate::config::ScrapeConfig;

/// The full current target groups of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub job: String,
    pub groups: Vec<TargetGroup>,
}

/// Owns the discovery providers of the current config.
pub struct Manager {
    updates: mpsc::UnboundedSender<Update>,
}

impl Manager {
    /// A manager that sends updates to `updates`.
    pub fn new(updates: mpsc::UnboundedSender<Update>) -> Self {
        Manager { updates }
    }

    /// Starts (or restarts) discovery for `configs`. Static groups are sent at once.
    pub fn apply(&mut self, configs: &[ScrapeConfig]) {
        for cfg in configs {
            let update = Update {
                job: cfg.job_name.clone(),
                groups: static_sd::groups(&cfg.static_configs),
            };
            // The receiver lives as long as the agent; a send after shutdown has no one to tell.
            let _ = self.updates.send(update);
        }
    }
}
