//! The agent's own HTTP server: `/metrics`, `/-/healthy`, `/-/ready`, `/api/v1/targets`,
//! `/targets`, `/api/v1/status/tsdb`, and `POST /-/reload` (with `--web.enable-lifecycle`).
//!
//! Invariants:
//! 1. Nothing served here ever contains a secret (configs are never rendered; target URLs
//!    come from labels, which hold no credentials).
//! 2. A slow or broken client affects only its own connection: request heads and bodies
//!    have a deadline, idle connections a timeout, and the number of connections a cap at
//!    which the longest-idle one makes room (`conns`), so neither thousands of idle
//!    connections nor slowly sent headers keep a scraper out, and the file descriptors the
//!    server holds are bounded by the cap.
//! 3. With a web config (`--web.config.file`, exporter-toolkit's format: `config`), every
//!    connection speaks TLS with the certificate in force when it arrives, and every request
//!    but the two probes (`/-/healthy`, `/-/ready`) needs basic auth when users are set
//!    (`security`, `auth`, `tls`). Its files are re-read when they change; a bad change keeps
//!    the running web config.
//!
//! Layout: `server` (listener, connections, what every request goes through), `conns` (the
//! cap and timers), `routes` (what each path answers: `api`, `page`, `tsdb`), `security`
//! (the web config in force and its watch), `config` (reading the file), `tls`, `auth`,
//! `metrics`.

mod api;
mod auth;
mod config;
mod conns;
mod metrics;
mod page;
mod routes;
mod security;
mod server;
mod tls;
mod tsdb;

pub use config::Error as ConfigError;
pub use metrics::Metrics;
pub use routes::{Readiness, Reloader, State};
pub use security::Security;
pub use server::{Error, Limits, Server, Settings};
