//! Self-metrics of scraping. Labels: `job` (bounded by the config), `reason` and `health`
//! (fixed sets).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Scrape metrics, registered once; loops keep handles to their own series.
#[derive(Clone)]
pub struct Metrics {
    pub(super) scrapes: Family<JobLabels, Counter>,
    pub(super) failures: Family<FailureLabels, Counter>,
    pub(super) targets: Family<HealthLabels, Gauge>,
    pub(super) targets_dropped: Family<JobLabels, Gauge>,
    pub(super) samples_scraped: Family<JobLabels, Counter>,
    pub(super) samples_appended: Family<JobLabels, Counter>,
    pub(super) samples_rejected: Family<FailureLabels, Counter>,
    pub(super) series_active: Family<JobLabels, Gauge>,
    pub(super) series_limited: Family<FailureLabels, Counter>,
    pub(super) samples_merged: Family<JobLabels, Counter>,
    pub(super) duration: Family<JobLabels, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct JobLabels {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FailureLabels {
    pub job: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HealthLabels {
    pub job: String,
    pub health: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Metrics {
    /// Registers the scrape metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            scrapes: Family::default(),
            failures: Family::default(),
            targets: Family::default(),
            targets_dropped: Family::default(),
            samples_scraped: Family::default(),
            samples_appended: Family::default(),
            samples_rejected: Family::default(),
            series_active: Family::default(),
            series_limited: Family::default(),
            samples_merged: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
        };
        registry.register(
            "scrapelet_scrapes",
            "Scrapes attempted, by job",
            m.scrapes.clone(),
        );
        registry.register(
            "scrapelet_scrape_failures",
            "Scrapes that failed, by job and reason",
            m.failures.clone(),
        );
        registry.register(
            "scrapelet_targets",
            "Active targets by job and health (up, down, unknown)",
            m.targets.clone(),
        );
        registry.register(
            "scrapelet_targets_dropped",
            "Discovered targets not scraped (dropped by relabeling or invalid), by job",
            m.targets_dropped.clone(),
        );
        registry.register(
            "scrapelet_scrape_samples_scraped",
            "Samples exposed by targets, before metric relabeling",
            m.samples_scraped.clone(),
        );
        registry.register(
            "scrapelet_scrape_samples_appended",
            "Samples handed to delivery after metric relabeling (staleness markers and scrape_* series included)",
            m.samples_appended.clone(),
        );
        registry.register(
            "scrapelet_scrape_samples_rejected",
            "Samples rejected by the scrape loop, by job and reason (duplicate)",
            m.samples_rejected.clone(),
        );
        registry.register(
            "scrapelet_scrape_series_active",
            "Series in the scrape caches, by job",
            m.series_active.clone(),
        );
        registry.register(
            "scrapelet_target_series_limited_samples",
            "Samples dropped (series_limit, series_limit_per_metric) or sent with trimmed labels (label_limit) by the limits that never fail a scrape, by job and reason",
            m.series_limited.clone(),
        );
        registry.register(
            "scrapelet_target_samples_merged",
            "Samples merged into another of the same scrape after label_limit_keep trimmed their labels, by job",
            m.samples_merged.clone(),
        );
        registry.register(
            "scrapelet_scrape_duration_seconds",
            "Time to fetch a target's metrics, by job",
            m.duration.clone(),
        );
        m
    }
}
