//! The scrape manager: one pool per job, one loop per target, kept in step with discovery and
//! the config.
//!
//! Invariants:
//! 1. At most one loop runs per target key; a loop that starts for a key whose previous loop
//!    is still stopping waits for it, so the two never interleave appends.
//! 2. A target that disappears from discovery has its loop stopped with staleness markers;
//!    a job whose config changed has its loops retired (series ended without markers) and
//!    restarted; unchanged jobs and unchanged targets keep their loops and caches.
//! 3. The targets view always equals the pools' current targets (active and dropped), with
//!    the discovered labels of the last update, also for targets whose loop is kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use tokio::task::JoinHandle;

use super::metrics::{JobLabels, Metrics};
use super::process::Settings;
use super::scrape_loop::{Deps, JobSettings, LoopHandle, StopMode, TargetStatus};
use super::target::{self, DroppedTarget};
use crate::append::{Appender, SeriesRefs};
use crate::client::HttpClient;
use crate::config::ScrapeConfig;
use crate::discovery::{TargetGroup, Update};
use crate::relabel::Relabeler;

/// Runs the scrape loops of every job.
pub struct Manager {
    deps: Deps,
    pools: HashMap<String, Pool>,
    /// Loops told to stop and not known to be finished, by target key.
    stopping: HashMap<u64, JoinHandle<()>>,
    view: TargetsView,
}

/// A shared, read-only view of every job's targets (for the API and pages).
#[derive(Clone, Default)]
pub struct TargetsView {
    inner: Arc<RwLock<BTreeMap<String, JobTargets>>>,
}

/// One job's targets.
#[derive(Clone, Debug, Default)]
pub struct JobTargets {
    pub active: Vec<Arc<TargetStatus>>,
    /// At most `keep_dropped_targets` of them (all when 0).
    pub dropped: Vec<DroppedTarget>,
    /// How many targets were dropped, kept or not.
    pub dropped_total: usize,
}

struct Pool {
    /// The config's identity: a change restarts the pool.
    fingerprint: String,
    cfg: ScrapeConfig,
    relabel: Relabeler,
    settings: Arc<JobSettings>,
    loops: HashMap<u64, LoopHandle>,
    groups: Vec<TargetGroup>,
}

/// A job that could not be started from its config.
#[derive(Debug, thiserror::Error)]
#[error("job {job:?}: cannot build its HTTP client")]
pub struct JobError {
    pub job: String,
    #[source]
    pub source: crate::client::Error,
}

impl TargetsView {
    /// A copy of every job's targets, by job name.
    pub fn snapshot(&self) -> BTreeMap<String, JobTargets> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, job: &str, targets: JobTargets) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.to_owned(), targets);
    }

    fn remove(&self, job: &str) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job);
    }
}

impl Manager {
    /// A manager whose loops append to `appender`.
    pub fn new(appender: Arc<dyn Appender>, refs: Arc<SeriesRefs>, metrics: Metrics) -> Self {
        Manager {
            deps: Deps {
                appender,
                refs,
                metrics,
            },
            pools: HashMap::new(),
            stopping: HashMap::new(),
            view: TargetsView::default(),
        }
    }

    /// The live targets view.
    pub fn targets(&self) -> TargetsView {
        self.view.clone()
    }

    /// Makes the pools match `configs`: new jobs start (with no targets until discovery
    /// reports), removed jobs stop, changed jobs restart with their last known targets.
    /// A job whose HTTP client cannot be built is skipped and reported.
    pub fn apply_config(&mut self, configs: &[ScrapeConfig]) -> Vec<JobError> {
        let mut errors = Vec::new();
        let wanted: HashMap<&str, &ScrapeConfig> =
            configs.iter().map(|c| (c.job_name.as_str(), c)).collect();
        let removed: Vec<String> = self
            .pools
            .keys()
            .filter(|job| !wanted.contains_key(job.as_str()))
            .cloned()
            .collect();
        for job in removed {
            if let Some(pool) = self.pools.remove(&job) {
                self.stop_pool(pool, StopMode::Stale);
            }
            self.view.remove(&job);
        }
        for cfg in configs {
            let fingerprint = format!("{cfg:?}");
            if self
                .pools
                .get(&cfg.job_name)
                .is_some_and(|p| p.fingerprint == fingerprint)
            {
                continue;
            }
            let client = match HttpClient::new(&cfg.http) {
                Ok(c) => c,
                Err(source) => {
                    errors.push(JobError {
                        job: cfg.job_name.clone(),
                        source,
                    });
                    continue;
                }
            };
            let groups = match self.pools.remove(&cfg.job_name) {
                Some(old) => {
                    let groups = old.groups.clone();
                    self.stop_pool(old, StopMode::Retire);
                    groups
                }
                None => Vec::new(),
            };
            let pool = Pool {
                fingerprint,
                relabel: Relabeler::new(&cfg.relabel_configs),
                settings: Arc::new(JobSettings {
                    job: cfg.job_name.clone(),
                    process: Arc::new(Settings::from_config(cfg)),
                    body_size_limit: cfg.body_size_limit,
                    enable_compression: cfg.enable_compression,
                    client,
                }),
                cfg: cfg.clone(),
                loops: HashMap::new(),
                groups: Vec::new(),
            };
            self.pools.insert(cfg.job_name.clone(), pool);
            self.sync(Update {
                job: cfg.job_name.clone(),
                groups,
            });
        }
        errors
    }

    /// Applies discovery's current groups for one job: starts loops for new targets, stops
    /// those of vanished targets (with staleness markers), keeps the rest untouched.
    pub fn sync(&mut self, update: Update) {
        self.stopping.retain(|_, h| !h.is_finished());
        let Some(pool) = self.pools.get_mut(&update.job) else {
            return;
        };
        pool.groups = update.groups;
        let set = target::build(&pool.cfg, &pool.relabel, &pool.groups);
        let limit = pool.cfg.target_limit;
        let over_limit = limit > 0 && set.active.len() > limit;

        let mut wanted: HashMap<u64, target::Target> = HashMap::with_capacity(set.active.len());
        for t in set.active {
            wanted.entry(t.key()).or_insert(t);
        }
        let gone: Vec<u64> = pool
            .loops
            .keys()
            .filter(|k| over_limit || !wanted.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(handle) = pool.loops.remove(&key) {
                self.stopping.insert(key, handle.stop(StopMode::Stale));
            }
        }
        let mut active = Vec::with_capacity(wanted.len());
        for (key, t) in wanted {
            if over_limit {
                let status = Arc::new(TargetStatus::new(t));
                status.set_down(format!("target_limit exceeded (limit {limit})"));
                active.push(status);
                continue;
            }
            let handle = match pool.loops.remove(&key) {
                Some(h) => {
                    // Same labels and URL, so the same loop; meta labels may have changed.
                    h.status.set_discovered(t.discovered);
                    h
                }
                None => LoopHandle::spawn(
                    Arc::new(TargetStatus::new(t)),
                    pool.settings.clone(),
                    &self.deps,
                    self.stopping.remove(&key),
                ),
            };
            active.push(handle.status.clone());
            pool.loops.insert(key, handle);
        }
        active.sort_by(|a, b| a.target.url.cmp(&b.target.url));
        let dropped_total = set.dropped.len();
        let mut dropped = set.dropped;
        if pool.cfg.keep_dropped_targets > 0 {
            dropped.truncate(pool.cfg.keep_dropped_targets);
        }
        self.deps
            .metrics
            .targets_dropped
            .get_or_create_owned(&JobLabels {
                job: update.job.clone(),
            })
            .set(dropped_total as i64);
        if over_limit {
            tracing::warn!(job = %update.job, limit, "target_limit exceeded; no target of the job is scraped");
        }
        self.view.set(
            &update.job,
            JobTargets {
                active,
                dropped,
                dropped_total,
            },
        );
    }

    /// Stops every loop without staleness markers and waits for them.
    pub async fn shutdown(mut self) {
        let mut handles: Vec<JoinHandle<()>> = self.stopping.drain().map(|(_, h)| h).collect();
        for (_, pool) in self.pools.drain() {
            handles.extend(pool.loops.into_values().map(|l| l.stop(StopMode::Shutdown)));
        }
        for h in handles {
            let _ = h.await;
        }
    }

    fn stop_pool(&mut self, pool: Pool, mode: StopMode) {
        for (key, handle) in pool.loops {
            self.stopping.insert(key, handle.stop(mode));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::Batch;
    use crate::labels::Labels;

    struct Discard;

    impl Appender for Discard {
        fn append(&self, _batch: Batch) {}
    }

    fn update(ready: &str) -> Update {
        Update {
            job: "pods".to_owned(),
            groups: vec![TargetGroup {
                source: "pod/prod/web".to_owned(),
                targets: vec![Labels::from_pairs([("__address__", "127.0.0.1:1")])],
                labels: Labels::from_pairs([("__meta_kubernetes_pod_ready", ready)]),
            }],
        }
    }

    /// A change of discovered labels that relabeling drops keeps the loop and shows the new
    /// labels (Prometheus's `SetDiscoveredLabels`).
    #[tokio::test]
    async fn a_kept_target_shows_its_latest_discovered_labels() {
        let mut registry = prometheus_client::registry::Registry::default();
        let mut manager = Manager::new(
            Arc::new(Discard),
            Arc::new(SeriesRefs::default()),
            Metrics::register(&mut registry),
        );
        let cfg = ScrapeConfig {
            job_name: "pods".to_owned(),
            ..ScrapeConfig::default()
        };
        assert!(manager.apply_config(&[cfg]).is_empty());
        let active = |m: &Manager| m.targets().snapshot()["pods"].active.clone();
        manager.sync(update("true"));
        let before = active(&manager);
        manager.sync(update("false"));
        let after = active(&manager);
        assert_eq!((before.len(), after.len()), (1, 1));
        assert!(Arc::ptr_eq(&before[0], &after[0]), "the loop was kept");
        assert_eq!(
            after[0].discovered().get("__meta_kubernetes_pod_ready"),
            Some("false")
        );
        manager.shutdown().await;
    }
}
