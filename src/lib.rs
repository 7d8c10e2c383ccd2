//! scrapelet: a node-local Prometheus scrape agent for Kubernetes.
//!
//! The modules follow the data path (see docs/ARCHITECTURE.md):
//!
//! ```text
//! config -> discovery -> relabel -> scrape (exposition) -> append -> remote
//!                                            \-> metadata -----------/
//!                                                     web, telemetry watch it all
//! ```

pub mod agent;
pub mod append;
pub mod backoff;
pub mod buffer;
pub mod client;
pub mod config;
pub mod discovery;
pub mod exposition;
pub mod labels;
pub mod metadata;
pub mod pages;
pub mod relabel;
pub mod remote;
pub mod scrape;
pub mod telemetry;
pub mod wal;
pub mod web;

pub use config::Config;
