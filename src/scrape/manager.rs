//! The scrape manager: one pool per job, one loop per target, kept in step with discovery and
//! the config.
//!
//! Invariants:
//! 1. At most one loop runs per target key; a loop that starts for a key whose previous loop
//!    is still stopping waits for it, so the two never interleave appends.
//! 2. A target that disappears has its loop stopped with staleness markers, unless a target
//!    with the same labels replaces it (a new URL or interval): then its series end without
//!    markers and the new loop continues them. A job whose scrape settings changed has its
//!    loops retired the same way and restarted; unchanged jobs and unchanged targets keep
//!    their loops and caches (see [`Manager::apply_config`]).
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
use crate::metadata::MetadataView;
use crate::relabel::Relabeler;
use crate::telemetry::LogLimiter;

/// How often one target may log a state change (a flapping target says how many it held back).
const TARGET_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// What the pool was made from; see [`Manager::apply_config`].
    fingerprints: Fingerprints,
    cfg: ScrapeConfig,
    relabel: Relabeler,
    settings: Arc<JobSettings>,
    loops: HashMap<u64, LoopHandle>,
    groups: Vec<TargetGroup>,
}

/// Checks scrape configs against the jobs running when it was made (see
/// [`Manager::checker`]).
#[derive(Clone, Debug)]
pub struct ConfigCheck {
    /// Each running job's settings fingerprint.
    settings: HashMap<String, u64>,
}

impl ConfigCheck {
    /// What [`Manager::check`] does: builds the HTTP client of every job that
    /// [`Manager::apply_config`] would (new jobs, and jobs whose scrape settings changed).
    pub fn check(&self, configs: &[ScrapeConfig]) -> Result<(), JobError> {
        for cfg in configs {
            let settings = Fingerprints::of(cfg).settings;
            if self.settings.get(&cfg.job_name) == Some(&settings) {
                continue;
            }
            HttpClient::new(&cfg.http).map_err(|source| JobError {
                job: cfg.job_name.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// What [`Manager::apply_config`] did, job by job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplySummary {
    /// Unchanged: loops and caches kept.
    pub kept: usize,
    /// Targets re-built (relabeling, discovery, interval ...); unchanged targets kept.
    pub retargeted: usize,
    /// Scrape settings changed: loops restarted.
    pub restarted: usize,
    pub started: usize,
    pub removed: usize,
}

/// Stable hashes of a scrape config: all of it, and the part its loops are made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprints {
    all: u64,
    /// honor_*, limits, metric relabeling, body size, compression, HTTP client (secrets
    /// included): what a running loop uses.
    settings: u64,
}

enum Plan {
    Keep,
    Retarget,
    Restart(HttpClient),
    Start(HttpClient),
}

impl Fingerprints {
    fn of(cfg: &ScrapeConfig) -> Self {
        // `Debug` shows every field but secrets, which are hashed separately.
        let hash = |text: String| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(text.as_bytes());
            for secret in cfg.http.secrets() {
                h.update(&[0xff]);
                h.update(secret.as_bytes());
            }
            h.digest()
        };
        let settings = format!(
            "{:?}",
            (
                cfg.honor_labels,
                cfg.honor_timestamps,
                (cfg.sample_limit, cfg.label_limit),
                (cfg.label_name_length_limit, cfg.label_value_length_limit),
                &cfg.metric_relabel_configs,
                (cfg.body_size_limit, cfg.enable_compression),
                &cfg.http,
            )
        );
        Fingerprints {
            all: hash(format!("{cfg:?}")),
            settings: hash(settings),
        }
    }
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
                log_limiter: Arc::new(LogLimiter::new(TARGET_LOG_INTERVAL, 10_000)),
                metadata: MetadataView::default(),
                buffers: Default::default(),
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

    /// Makes loops publish their targets' metric metadata to `view` (by default, a view of
    /// the manager's own; see [`Manager::metadata`]). Call before the first `apply_config`:
    /// loops already running keep the view they started with.
    pub fn with_metadata(mut self, view: MetadataView) -> Self {
        self.deps.metadata = view;
        self
    }

    /// The metric metadata of every running loop's target (`# TYPE`, `# HELP`, `# UNIT` of
    /// each family, as last scraped), deduplicated across targets when collected.
    pub fn metadata(&self) -> MetadataView {
        self.deps.metadata.clone()
    }

    /// Makes the pools match `configs`, changing only what changed:
    /// - a job whose config is unchanged keeps its loops and caches;
    /// - a job whose scrape settings are unchanged but whose targets may be (relabel rules,
    ///   interval, path, discovery ...) is re-synced: targets that stay the same keep their
    ///   loops;
    /// - a job whose scrape settings changed (limits, metric relabeling, HTTP client ...)
    ///   restarts its loops, series continuing without staleness markers;
    /// - a removed job stops, its series marked stale; a new job starts (targets come from
    ///   discovery).
    ///
    /// Every new or changed job's HTTP client is built first: when one cannot be, nothing
    /// changes and the error is returned (a reload keeps the running config).
    pub fn apply_config(&mut self, configs: &[ScrapeConfig]) -> Result<ApplySummary, JobError> {
        let plans = self.plan(configs)?;
        let mut summary = ApplySummary::default();
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
            summary.removed += 1;
        }
        for (cfg, fingerprints, plan) in plans {
            let client = match plan {
                Plan::Keep => {
                    summary.kept += 1;
                    continue;
                }
                Plan::Retarget => {
                    summary.retargeted += 1;
                    if let Some(pool) = self.pools.get_mut(&cfg.job_name) {
                        pool.fingerprints = fingerprints;
                        pool.relabel = Relabeler::new(&cfg.relabel_configs);
                        pool.cfg = cfg.clone();
                        let groups = std::mem::take(&mut pool.groups);
                        self.sync(Update {
                            job: cfg.job_name.clone(),
                            groups,
                        });
                    }
                    continue;
                }
                Plan::Restart(client) => {
                    summary.restarted += 1;
                    client
                }
                Plan::Start(client) => {
                    summary.started += 1;
                    client
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
                fingerprints,
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
        Ok(summary)
    }

    /// Checks what [`Manager::apply_config`] would need (every new or changed job's HTTP
    /// client) without changing anything: what a reload does before it touches anything.
    pub fn check(&self, configs: &[ScrapeConfig]) -> Result<(), JobError> {
        self.checker().check(configs)
    }

    /// What [`Manager::check`] needs, owned, so that a config can be checked off the async
    /// runtime (building a client reads TLS files, which can block: a FIFO, a hung mount).
    pub fn checker(&self) -> ConfigCheck {
        ConfigCheck {
            settings: self
                .pools
                .iter()
                .map(|(job, pool)| (job.clone(), pool.fingerprints.settings))
                .collect(),
        }
    }

    fn plan<'a>(
        &self,
        configs: &'a [ScrapeConfig],
    ) -> Result<Vec<(&'a ScrapeConfig, Fingerprints, Plan)>, JobError> {
        let mut plans = Vec::with_capacity(configs.len());
        for cfg in configs {
            let fingerprints = Fingerprints::of(cfg);
            let plan = match self.pools.get(&cfg.job_name) {
                Some(p) if p.fingerprints == fingerprints => Plan::Keep,
                Some(p) if p.fingerprints.settings == fingerprints.settings => Plan::Retarget,
                existing => {
                    let client = HttpClient::new(&cfg.http).map_err(|source| JobError {
                        job: cfg.job_name.clone(),
                        source,
                    })?;
                    if existing.is_some() {
                        Plan::Restart(client)
                    } else {
                        Plan::Start(client)
                    }
                }
            };
            plans.push((cfg, fingerprints, plan));
        }
        Ok(plans)
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
                // A target that comes back with the same labels under another URL or interval
                // continues its series: no staleness markers between the two loops.
                let labels = &handle.status.target.labels;
                let continued = !over_limit && wanted.values().any(|t| &t.labels == labels);
                let mode = if continued {
                    StopMode::Retire
                } else {
                    StopMode::Stale
                };
                self.stopping.insert(key, handle.stop(mode));
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
        manager.apply_config(&[cfg]).expect("apply");
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

    fn manager() -> Manager {
        let mut registry = prometheus_client::registry::Registry::default();
        Manager::new(
            Arc::new(Discard),
            Arc::new(SeriesRefs::default()),
            Metrics::register(&mut registry),
        )
    }

    fn job(yaml_rules: &str, metric_rules: &str) -> ScrapeConfig {
        let rules = |y: &str| -> Vec<crate::relabel::RelabelConfig> {
            if y.is_empty() {
                Vec::new()
            } else {
                serde_saphyr::from_str(y).expect("rules")
            }
        };
        ScrapeConfig {
            job_name: "pods".to_owned(),
            relabel_configs: rules(yaml_rules),
            metric_relabel_configs: rules(metric_rules),
            ..ScrapeConfig::default()
        }
    }

    fn status(m: &Manager) -> Arc<TargetStatus> {
        m.targets().snapshot()["pods"].active[0].clone()
    }

    /// Only what changed restarts: same config keeps the loop; new target relabeling that
    /// leaves the target as it was keeps it too; new scrape settings restart it.
    #[tokio::test]
    async fn a_reload_restarts_only_what_changed() {
        let mut m = manager();
        let first = job("", "");
        let s = m.apply_config(std::slice::from_ref(&first)).expect("apply");
        assert_eq!(s.started, 1);
        m.sync(update("true"));
        let original = status(&m);

        let s = m.apply_config(std::slice::from_ref(&first)).expect("same");
        assert_eq!((s.kept, s.started, s.restarted), (1, 0, 0));
        assert!(Arc::ptr_eq(&original, &status(&m)));

        let harmless = job("- source_labels: [nope]\n  target_label: unused\n", "");
        let s = m.apply_config(&[harmless]).expect("retarget");
        assert_eq!(s.retargeted, 1);
        assert!(
            Arc::ptr_eq(&original, &status(&m)),
            "the same target keeps its loop"
        );

        let dropping = job("", "- regex: x\n  action: labeldrop\n");
        let s = m.apply_config(&[dropping]).expect("restart");
        assert_eq!(s.restarted, 1);
        assert!(
            !Arc::ptr_eq(&original, &status(&m)),
            "new settings, new loop"
        );
        assert_eq!(status(&m).target.url, original.target.url);

        let s = m.apply_config(&[]).expect("remove");
        assert_eq!(s.removed, 1);
        assert!(m.targets().snapshot().is_empty());
        m.shutdown().await;
    }

    /// A config whose HTTP client cannot be built changes nothing.
    #[tokio::test]
    async fn a_bad_job_leaves_the_running_config() {
        let mut m = manager();
        m.apply_config(&[job("", "")]).expect("apply");
        m.sync(update("true"));
        let original = status(&m);
        let mut bad = job("", "- regex: y\n  action: labeldrop\n");
        bad.http.tls_config.ca_file = Some("/nonexistent/ca.pem".into());
        let other = ScrapeConfig {
            job_name: "other".to_owned(),
            ..ScrapeConfig::default()
        };
        let err = m.apply_config(&[other, bad]).expect_err("bad CA");
        assert_eq!(err.job, "pods");
        assert!(Arc::ptr_eq(&original, &status(&m)));
        assert!(
            !m.targets().snapshot().contains_key("other"),
            "nothing applied"
        );
        m.shutdown().await;
    }
}
