//! Discovery: where targets come from.
//!
//! Each scrape config has providers (today `static_configs`; Kubernetes pods next). A provider
//! produces [`TargetGroup`]s; the discovery [`Manager`] sends, per job, the full current list of
//! groups to the scrape manager whenever any provider of that job changes. Sending full lists
//! (not deltas) makes every update self-contained: a lost or merged update cannot leave a stale
//! target behind, which is what lets [`Updates`] keep only the latest update of each job.

pub mod kubernetes;
mod manager;
mod static_sd;
mod updates;

pub use manager::{Error, Manager, Update};
pub use updates::Updates;

use crate::labels::Labels;

/// A set of targets from one source that share labels (Prometheus's `targetgroup.Group`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Identifies the group within its provider (e.g. `static/0` or `pod/ns/name`).
    pub source: String,
    /// One label set per target; each holds at least `__address__`.
    pub targets: Vec<Labels>,
    /// Labels common to every target of the group (target labels win on conflict).
    pub labels: Labels,
}
