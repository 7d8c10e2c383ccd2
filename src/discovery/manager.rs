//! Runs the providers of every scrape config and forwards their target groups per job.
//!
//! Every update is a job's complete list of groups: its static groups, then the groups of its
//! Kubernetes subscriptions in config order (each sorted by source). A pod that disappeared
//! (deleted, or no longer matching) is sent once more as an empty group with its source, as
//! Prometheus's discovery does, then forgotten.
//!
//! Updates go through [`Updates`], latest wins per job: while the consumer is busy (a reload),
//! what waits is one list per job, not every change. A job with Kubernetes discovery is marked
//! there once all its subscriptions completed their first list (readiness).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::select_all;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::kubernetes::{self, Kubernetes, Subscription};
use super::{TargetGroup, Updates, static_sd};
use crate::config::ScrapeConfig;

/// The full current target groups of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub job: String,
    pub groups: Vec<TargetGroup>,
}

/// Owns the discovery providers of the current config.
pub struct Manager {
    updates: Arc<Updates>,
    kubernetes: Kubernetes,
    /// The tasks of jobs with Kubernetes discovery; dropping a guard stops its task.
    jobs: Vec<DropGuard>,
}

/// Discovery could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kubernetes discovery (see its variants for what is retryable).
    #[error(transparent)]
    Kubernetes(#[from] kubernetes::Error),
}

impl Manager {
    /// A manager that sends updates to `updates`, without Kubernetes discovery (a config
    /// with `kubernetes_sd_configs` then fails [`Manager::start`] with a clear error).
    pub fn new(updates: Arc<Updates>) -> Self {
        Manager {
            updates,
            kubernetes: Kubernetes::new(None),
            jobs: Vec::new(),
        }
    }

    /// Enables Kubernetes discovery with `options` (`None`: the agent has no node name).
    pub fn with_kubernetes(mut self, options: Option<kubernetes::Options>) -> Self {
        self.kubernetes = Kubernetes::new(options);
        self
    }

    /// Starts (or restarts, on reload) discovery for `configs`: static groups are sent at
    /// once; each job with `kubernetes_sd_configs` gets a task that sends its full groups
    /// whenever a pod it selects changes (changes within the coalescing window go out as one
    /// update). Pod watches whose connection is still used keep running across calls. On
    /// error the previous discovery keeps running and nothing is sent. Cancel-safe: nothing
    /// changes before the last await.
    ///
    /// Every job with `kubernetes_sd_configs` is then expected to complete a first list
    /// ([`Updates::waiting`]); static configs are complete at once.
    pub async fn start(&mut self, configs: &[ScrapeConfig]) -> Result<(), Error> {
        let entries: Vec<_> = configs
            .iter()
            .flat_map(|c| &c.kubernetes_sd_configs)
            .collect();
        let mut subscriptions = self.kubernetes.subscribe(&entries).await?.into_iter();
        self.jobs.clear();
        self.updates.expect_first_lists(
            configs
                .iter()
                .filter(|c| !c.kubernetes_sd_configs.is_empty())
                .map(|c| c.job_name.as_str()),
        );
        let coalesce = self.kubernetes.coalesce();
        for cfg in configs {
            self.send_static(cfg);
            let n = cfg.kubernetes_sd_configs.len();
            if n == 0 {
                continue;
            }
            let subs: Vec<Subscription> = subscriptions.by_ref().take(n).collect();
            let stop = CancellationToken::new();
            tokio::spawn(run_job(
                cfg.job_name.clone(),
                static_sd::groups(&cfg.static_configs),
                subs,
                self.updates.clone(),
                coalesce,
                stop.clone(),
            ));
            self.jobs.push(stop.drop_guard());
        }
        Ok(())
    }

    /// Kubernetes connections running (one pod watch each).
    pub fn kubernetes_connections(&self) -> usize {
        self.kubernetes.connections()
    }

    fn send_static(&self, cfg: &ScrapeConfig) {
        let update = Update {
            job: cfg.job_name.clone(),
            groups: static_sd::groups(&cfg.static_configs),
        };
        self.updates.send(update);
    }
}

/// Sends `job`'s full groups whenever one of its subscriptions changes, until `stop`; tells
/// `updates` when all of them have completed their first list.
async fn run_job(
    job: String,
    statics: Vec<TargetGroup>,
    mut subs: Vec<Subscription>,
    updates: Arc<Updates>,
    coalesce: Duration,
    stop: CancellationToken,
) {
    // What the receiver has now: the manager just sent the static groups.
    let mut last = statics.clone();
    let mut sent: HashSet<String> = HashSet::new();
    let mut first = true;
    let mut listed = false;
    loop {
        if !(first && subs.iter().any(Subscription::synced)) {
            let any_change = select_all(subs.iter_mut().map(|s| Box::pin(s.changed())));
            tokio::select! {
                () = stop.cancelled() => return,
                _ = any_change => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(coalesce) => {}
            }
        }
        first = false;
        let mut discovered = Vec::new();
        for sub in &mut subs {
            sub.groups(&mut discovered);
        }
        let current: HashSet<String> = discovered.iter().map(|g| g.source.clone()).collect();
        let mut gone: Vec<&String> = sent.difference(&current).collect();
        gone.sort();
        let gone: Vec<TargetGroup> = gone
            .into_iter()
            .map(|source| TargetGroup {
                source: source.clone(),
                ..TargetGroup::default()
            })
            .collect();
        let mut groups = statics.clone();
        groups.extend(discovered);
        groups.extend(gone);
        sent = current;
        let first_list = !listed && subs.iter().all(Subscription::synced);
        let update = (groups != last).then(|| {
            last = groups.clone();
            Update {
                job: job.clone(),
                groups,
            }
        });
        match update {
            _ if first_list => {
                listed = true;
                updates.listed(&job, update);
            }
            Some(update) => updates.send(update),
            None => {}
        }
    }
}
