//! Scraping: targets from discovered groups, one loop per target, samples to the appender.
//!
//! - `target`: discovered label sets -> targets (Prometheus's `PopulateLabels`).
//! - `manager`: pools per job, loops per target, diffed against discovery and config.
//! - `scrape_loop`: the per-target loop (fetch -> parse -> cache -> append -> report).
//! - `process`: body -> batch, the synchronous part of a scrape (public for tests and benches).
//! - `cache`: the per-target series cache and staleness tracking.
//! - `limits`: guard rails that never fail a scrape (series limits, label trimming) and what
//!   explains them.
//! - `metadata`: the per-target metadata cache (`# TYPE`/`# HELP`/`# UNIT`), published to the
//!   manager's [`crate::metadata::MetadataView`] when it changes.
//! - `fetch`: the HTTP GET with deadline, gzip and size limit.

mod cache;
mod fetch;
mod limits;
mod manager;
mod metadata;
mod metrics;
mod process;
mod scrape_loop;
mod target;

pub use manager::{ApplySummary, ConfigCheck, JobError, JobTargets, Manager, TargetsView};
pub use metrics::Metrics;
pub use process::{Counts, LimitNotice, ProcessError, Processor, Settings};
pub use scrape_loop::{Health, ScrapeState, TargetStatus};
pub use target::{DroppedTarget, Target};
