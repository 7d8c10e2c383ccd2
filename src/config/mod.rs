//! The configuration: Prometheus's YAML (the subset an agent needs) plus `agent:`.
//!
//! PUBLIC FACE (fixed; everything else codes against these resolved types):
//! - [`load`] reads a file, [`parse`] a string; both return a fully resolved [`Config`]: every
//!   default applied, every inherited value (global -> scrape config) filled in, every rule
//!   validated. Consumers never see an `Option` that means "use the default".
//! - [`Error`] names the file, line and key of every problem found.
//! - [`parse_duration`] / [`format_duration`] and [`parse_size`]: Prometheus's duration and
//!   byte-size forms (e.g. for the `__scrape_interval__` label, or flags).
//!
//! Semantics follow Prometheus 2.x exactly (defaults, inheritance, validation messages where
//! practical), so a Prometheus agent-mode config loads unchanged.
//!
//! How a file becomes a [`Config`]:
//! 1. `expand_env` rewrites `${VAR}` and `$VAR` from the environment (rules at the function);
//! 2. serde-saphyr reads it into the YAML model of `raw` (unknown keys are errors). A syntax or
//!    type error stops here: one [`Problem`], its key path found by `locate`;
//! 3. `resolve` applies defaults and inheritance and validates everything, collecting every
//!    problem, each with the line of its key.
//!
//! Invariants: [`parse`] never panics, whatever the text; it returns either a fully valid
//! [`Config`] or at least one [`Problem`], sorted by line. Keys Prometheus knows but scrapelet
//! does not implement are either accepted and ignored (no effect for an agent) or rejected as
//! "not supported by scrapelet" (ignoring them would silently change behaviour); the choice
//! and its reason are written next to each in `resolve`.

mod duration;
mod error;
mod locate;
mod raw;
mod resolve;
mod selector;
mod size;

/// The YAML machinery of this module for other files read the same way (the web config
/// file, src/web/config.rs): problems with file, line and key path.
pub(crate) mod yaml {
    pub(crate) use super::error::yaml_problem;
    pub(crate) use super::locate::{KeyIndex, ROOT};
}

pub use duration::{DurationError, format_duration, parse_duration};
pub use size::{SizeError, parse_size};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use selector::{FieldSelector, LabelSelector, POD_FIELDS, PodFields};

use crate::labels::Labels;
use crate::relabel::RelabelConfig;

/// The whole configuration, resolved.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub global: GlobalConfig,
    pub scrape_configs: Vec<ScrapeConfig>,
    pub remote_write: Vec<RemoteWriteConfig>,
    pub agent: AgentConfig,
}

/// `global:`
#[derive(Clone, Debug)]
pub struct GlobalConfig {
    /// Default 1m.
    pub scrape_interval: Duration,
    /// Default 10s.
    pub scrape_timeout: Duration,
    /// Added to every series sent by remote write (series labels win on conflict).
    pub external_labels: Labels,
}

/// One `scrape_configs:` entry, resolved.
#[derive(Clone, Debug)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Duration,
    /// Never more than `scrape_interval`.
    pub scrape_timeout: Duration,
    /// Default `/metrics`.
    pub metrics_path: String,
    pub scheme: Scheme,
    /// URL query parameters (each name may repeat).
    pub params: BTreeMap<String, Vec<String>>,
    /// Default false.
    pub honor_labels: bool,
    /// Default true.
    pub honor_timestamps: bool,
    /// Uncompressed body size limit in bytes; 0 means none.
    pub body_size_limit: u64,
    /// Samples per scrape after metric relabeling; 0 means none. Over it, the scrape fails.
    pub sample_limit: usize,
    /// Labels per series; 0 means none.
    pub label_limit: usize,
    /// Bytes per label name; 0 means none.
    pub label_name_length_limit: usize,
    /// Bytes per label value; 0 means none.
    pub label_value_length_limit: usize,
    /// Targets per job after relabeling; 0 means none.
    pub target_limit: usize,
    /// Unique series per target within the last hour (vmagent's `series_limit`); past it new
    /// series are dropped, admitted ones keep flowing. 0 means none.
    pub series_limit: usize,
    /// The same per metric family of a target. 0 means none.
    pub series_limit_per_metric: usize,
    /// When set, a series over `label_limit` is trimmed to it (keeping `__name__`, `job`,
    /// `instance`, these names in order, then the rest by name) instead of failing the scrape.
    pub label_limit_keep: Option<Vec<String>>,
    /// Dropped targets kept for the targets API and page (the count is always exact); 0
    /// means all.
    pub keep_dropped_targets: usize,
    /// Ask targets for gzip (default true).
    pub enable_compression: bool,
    pub http: HttpClientConfig,
    pub static_configs: Vec<StaticConfig>,
    /// Kubernetes pod discovery (`role: pod` only).
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

/// One `static_configs:` entry.
#[derive(Clone, Debug, Default)]
pub struct StaticConfig {
    /// `host:port` strings.
    pub targets: Vec<String>,
    pub labels: Labels,
}

/// One `kubernetes_sd_configs:` entry, resolved. Only `role: pod` exists in scrapelet, and
/// every pod watch is scoped to the agent's node (`spec.nodeName=<node>`).
///
/// How the agent reaches the API server: `kubeconfig_file` when set; else `api_server` with
/// `http`; else the in-cluster service account (token and CA), or the file named by
/// `KUBECONFIG` outside a cluster. As Prometheus: `api_server` and `kubeconfig_file` exclude
/// each other, custom HTTP settings need `api_server`, `own_namespace` needs in-cluster.
#[derive(Clone, Debug, Default)]
pub struct KubernetesSdConfig {
    /// Absolute http(s) URL of the API server.
    pub api_server: Option<String>,
    pub kubeconfig_file: Option<PathBuf>,
    /// `namespaces.names`: only pods in these namespaces (empty: all, unless `own_namespace`).
    pub namespaces: Vec<String>,
    /// `namespaces.own_namespace`: also the agent's own namespace (from the service account).
    pub own_namespace: bool,
    /// The `role: pod` entry of `selectors`, applied to the node's pods by the agent.
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    /// `attach_metadata.node`: add the node's `__meta_kubernetes_node_*` labels to each pod.
    pub attach_node_metadata: bool,
    /// Authentication and TLS for `api_server` (ignored otherwise).
    pub http: HttpClientConfig,
}

/// One `remote_write:` entry, resolved.
#[derive(Clone, Debug)]
pub struct RemoteWriteConfig {
    /// Absolute http(s) URL.
    pub url: String,
    /// Unique among endpoints. When not configured: the first 6 hex digits of an MD5 over the
    /// URL and headers (Prometheus hashes the whole entry; this name survives queue tuning).
    pub name: String,
    /// Default 30s.
    pub remote_timeout: Duration,
    /// Extra headers; the protocol's own headers cannot be set here (rejected at load).
    pub headers: BTreeMap<String, String>,
    pub write_relabel_configs: Vec<RelabelConfig>,
    pub queue_config: QueueConfig,
    pub metadata_config: MetadataConfig,
    /// Default: as Prometheus's remote write, HTTP/2 off (`enable_http2: false`).
    pub http: HttpClientConfig,
    /// Send exemplars along with samples. Default false.
    pub send_exemplars: bool,
    /// Send native histograms. Default false.
    pub send_native_histograms: bool,
    /// scrapelet's own: at most this many distinct series (by their wire labels) are sent to
    /// the endpoint within any hour; samples of the others are dropped (counted). 0: no limit.
    /// Default `agent.remote_write.max_hourly_series`.
    pub max_hourly_series: usize,
    /// As `max_hourly_series`, within any 24 hours. Default
    /// `agent.remote_write.max_daily_series`.
    pub max_daily_series: usize,
}

/// `queue_config:`, with Prometheus's defaults.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Samples buffered per shard. Default 10000.
    pub capacity: usize,
    /// Default 1.
    pub min_shards: usize,
    /// Default 50.
    pub max_shards: usize,
    /// Default 2000.
    pub max_samples_per_send: usize,
    /// Default 5s.
    pub batch_send_deadline: Duration,
    /// Default 30ms.
    pub min_backoff: Duration,
    /// Default 5s.
    pub max_backoff: Duration,
    /// Default false.
    pub retry_on_http_429: bool,
    /// Samples older than this are dropped instead of sent; zero means no limit (default).
    pub sample_age_limit: Duration,
}

/// `metadata_config:`.
#[derive(Clone, Debug)]
pub struct MetadataConfig {
    /// Default true.
    pub send: bool,
    /// Default 1m.
    pub send_interval: Duration,
    /// Default 500.
    pub max_samples_per_send: usize,
}

/// The HTTP client settings shared by scrape configs and remote write (Prometheus's
/// `HTTPClientConfig`): authentication, TLS and transport switches.
#[derive(Clone, Debug)]
pub struct HttpClientConfig {
    pub basic_auth: Option<BasicAuth>,
    /// Also what `bearer_token` and `bearer_token_file` become (type `Bearer`).
    pub authorization: Option<Authorization>,
    pub tls_config: TlsConfig,
    /// Default true.
    pub follow_redirects: bool,
    /// Default true for scraping, false for remote write (as Prometheus).
    pub enable_http2: bool,
}

/// `basic_auth:`. At most one of `username` and `username_file`, and of `password` and
/// `password_file`, is set.
#[derive(Clone, Debug)]
pub struct BasicAuth {
    pub username: String,
    /// Re-read when it changes; surrounding whitespace is trimmed (as Prometheus).
    pub username_file: Option<PathBuf>,
    pub password: Option<Secret>,
    /// Re-read when it changes.
    pub password_file: Option<PathBuf>,
}

/// `authorization:`. Exactly one of `credentials` and `credentials_file` may be set.
#[derive(Clone, Debug)]
pub struct Authorization {
    /// Default `Bearer`.
    pub kind: String,
    pub credentials: Option<Secret>,
    /// Re-read when it changes.
    pub credentials_file: Option<PathBuf>,
}

/// `tls_config:`.
#[derive(Clone, Debug, Default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub ca: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub cert: Option<String>,
    pub key_file: Option<PathBuf>,
    pub key: Option<Secret>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    /// `TLS12` or `TLS13`; None means the library default.
    pub min_version: Option<String>,
}

/// A string that never shows itself in logs, errors or pages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// `agent:`: settings that only scrapelet has.
#[derive(Clone, Debug, Default)]
pub struct AgentConfig {
    /// Also log a compact summary of what is sent (always on when no remote_write exists).
    pub debug_output: bool,
    pub buffer: BufferConfig,
    pub scrape: AgentScrapeConfig,
    pub remote_write: AgentRemoteWriteConfig,
}

/// `agent.remote_write:`: what every `remote_write` entry has unless it sets its own (already
/// applied to [`RemoteWriteConfig`] when the config is loaded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentRemoteWriteConfig {
    /// Default for [`RemoteWriteConfig::max_hourly_series`]; 0 (default): no limit.
    pub max_hourly_series: usize,
    /// Default for [`RemoteWriteConfig::max_daily_series`]; 0 (default): no limit.
    pub max_daily_series: usize,
}

/// `agent.scrape:`: limits every scrape config shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentScrapeConfig {
    /// The most a body may take once decompressed, for every scrape config that sets no
    /// `body_size_limit` (applied when the config is loaded); 0: none. Default
    /// [`AgentScrapeConfig::DEFAULT_MAX_BODY_SIZE`]: without it, a target's small gzip body
    /// could inflate to gigabytes of the agent's memory.
    pub max_body_size: u64,
}

impl AgentScrapeConfig {
    /// 64 MiB: four times vmagent's default (`-promscrape.maxScrapeSize`, 16 MiB), so that
    /// the largest exporters (kube-state-metrics of a big cluster) fit.
    pub const DEFAULT_MAX_BODY_SIZE: u64 = 64 << 20;
}

impl Default for AgentScrapeConfig {
    fn default() -> Self {
        AgentScrapeConfig {
            max_body_size: Self::DEFAULT_MAX_BODY_SIZE,
        }
    }
}

/// `agent.buffer:`: the write-ahead buffer under `--data-dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferConfig {
    /// Disk the buffer may take, in bytes; when full, the oldest data is dropped (counted).
    /// Default 1GiB; at least [`BufferConfig::MIN_SIZE`].
    pub max_size: u64,
    /// Data older than this is dropped even if not sent; `None` (default, or `0s`): no age cap.
    pub max_age: Option<Duration>,
    /// How often written data is synced to disk: what a power loss can cost (a crashed
    /// process loses nothing). Default 1s; `0s` syncs after every scrape.
    pub fsync_interval: Duration,
}

/// A configuration problem, or several, each with file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read (missing, unreadable). Retryable: a later load or reload
    /// may find it.
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid for scrapelet; every problem found is listed (a YAML syntax or
    /// type error stops the reading, so it comes alone). Not retryable: the file must change.
    #[error("invalid config:\n{}", .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: u64,
    /// Dotted path of the key, e.g. `scrape_configs[1].scrape_timeout` (indexes from 0;
    /// `(root)` for the document itself).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.key, self.message
        )
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// Reads and resolves the config file at `path`. Relative file paths in it (password,
/// credential, CA, certificate and key files) are taken relative to the file's directory, as
/// Prometheus does.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut config = parse(&text, &path.display().to_string())?;
    if let Some(dir) = path.parent() {
        resolve::set_directory(&mut config, dir);
    }
    Ok(config)
}

/// Parses and resolves config text; `origin` names it in errors (usually the file path).
/// Relative file paths are kept as written.
pub fn parse(text: &str, origin: &str) -> Result<Config, Error> {
    let text = expand_env(text);
    let index = locate::KeyIndex::build(&text);
    let raw: raw::RawConfig = match serde_saphyr::from_str::<Option<raw::RawConfig>>(&text) {
        Ok(raw) => raw.unwrap_or_default(),
        Err(e) => {
            return Err(Error::Invalid {
                problems: vec![error::yaml_problem(&e, origin, &index)],
            });
        }
    };
    let (config, mut problems) = resolve::resolve(raw, origin, &index);
    if problems.is_empty() {
        return Ok(config);
    }
    problems.sort_by_key(|p| p.line);
    Err(Error::Invalid { problems })
}

/// `${VAR}` and `$VAR` environment expansion, on the whole text before parsing.
///
/// The rule, chosen so that it never changes a relabel rule:
/// - a reference expands only when the variable is **set** in the environment; an unset
///   one stays as written (Prometheus's `$1`, `${1}`, `${name}` reach the relabel engine);
/// - a name is `[A-Za-z_][A-Za-z0-9_]*`, so `$1` and `${1}` are never variables;
/// - a name used for a named capture group anywhere in the file (`(?P<name>` or `(?<name>`)
///   is never expanded, even when set, so `${name}` keeps referring to the group;
/// - `$$` is left as it is (relabeling reads it as a literal `$`), and the `$` after it
///   starts nothing: `$${HOME}` stays `$${HOME}`.
///
/// A value is inserted verbatim: one with a newline shifts the lines of later problems, and
/// one with YAML syntax in it is read as YAML (as with any template).
fn expand_env(text: &str) -> Cow<'_, str> {
    expand_with(text, |name| std::env::var(name).ok())
}

/// [`expand_env`] with the environment given as a function.
fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Cow<'_, str> {
    if !text.contains('$') {
        return Cow::Borrowed(text);
    }
    let groups = named_groups(text);
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // text[..copied] is in out
    let mut i = 0;
    let mut changed = false;
    while let Some(off) = memchr::memchr(b'$', &bytes[i..]) {
        let at = i + off;
        if bytes.get(at + 1) == Some(&b'$') {
            i = at + 2;
            continue;
        }
        let (name, end) = if bytes.get(at + 1) == Some(&b'{') {
            match text[at + 2..].find('}') {
                Some(close) => (&text[at + 2..at + 2 + close], at + 3 + close),
                None => ("", at + 1),
            }
        } else {
            let len = text[at + 1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            (&text[at + 1..at + 1 + len], at + 1 + len)
        };
        i = end.max(at + 1);
        if !is_env_name(name) || groups.contains(&name) {
            continue;
        }
        if let Some(value) = lookup(name) {
            out.push_str(&text[copied..at]);
            out.push_str(&value);
            copied = end;
            changed = true;
        }
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Names of the capture groups written anywhere in `text` as `(?P<name>` or `(?<name>`.
fn named_groups(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for opener in ["(?P<", "(?<"] {
        let mut rest = text;
        while let Some(pos) = rest.find(opener) {
            rest = &rest[pos + opener.len()..];
            if let Some(close) = rest.find('>') {
                names.push(&rest[..close]);
            }
        }
    }
    names
}

impl BufferConfig {
    /// The smallest `max_size` accepted.
    pub const MIN_SIZE: u64 = 256 << 10;
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_size: 1 << 30,
            max_age: None,
            fsync_interval: Duration::from_secs(1),
        }
    }
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            external_labels: Labels::empty(),
        }
    }
}

impl Default for ScrapeConfig {
    /// Prometheus's `DefaultScrapeConfig` with the default global interval and timeout; the
    /// job name is empty.
    fn default() -> Self {
        let global = GlobalConfig::default();
        ScrapeConfig {
            job_name: String::new(),
            scrape_interval: global.scrape_interval,
            scrape_timeout: global.scrape_timeout,
            metrics_path: "/metrics".to_owned(),
            scheme: Scheme::Http,
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            body_size_limit: 0,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            target_limit: 0,
            series_limit: 0,
            series_limit_per_metric: 0,
            label_limit_keep: None,
            keep_dropped_targets: 0,
            enable_compression: true,
            http: HttpClientConfig::default(),
            static_configs: Vec::new(),
            kubernetes_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
        }
    }
}

impl Default for RemoteWriteConfig {
    /// Prometheus's `DefaultRemoteWriteConfig`; url and name are empty.
    fn default() -> Self {
        RemoteWriteConfig {
            url: String::new(),
            name: String::new(),
            remote_timeout: Duration::from_secs(30),
            headers: BTreeMap::new(),
            write_relabel_configs: Vec::new(),
            queue_config: QueueConfig::default(),
            metadata_config: MetadataConfig::default(),
            http: HttpClientConfig {
                enable_http2: false,
                ..HttpClientConfig::default()
            },
            send_exemplars: false,
            send_native_histograms: false,
            max_hourly_series: 0,
            max_daily_series: 0,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            min_shards: 1,
            max_shards: 50,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
            sample_age_limit: Duration::ZERO,
        }
    }
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 500,
        }
    }
}

impl HttpClientConfig {
    /// The inline secrets (basic-auth password, credentials, TLS key), for fingerprints that
    /// must change when a secret does; never show them.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        let basic = self.basic_auth.as_ref().and_then(|b| b.password.as_ref());
        let auth = self
            .authorization
            .as_ref()
            .and_then(|a| a.credentials.as_ref());
        let key = self.tls_config.key.as_ref();
        [basic, auth, key].into_iter().flatten().map(Secret::expose)
    }
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "NODE_NAME" => Some("node-1".to_owned()),
            "NS" => Some("prod".to_owned()),
            "name" => Some("lowercase-env".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// `check(input, expected)`: expansion with [`env`] as the environment.
    fn check(input: &str, expected: &str) {
        assert_eq!(expand_with(input, env), expected, "{input}");
    }

    #[test]
    fn expands_set_variables_only() {
        check("node: ${NODE_NAME}", "node: node-1");
        check("node: $NODE_NAME", "node: node-1");
        check("f: spec.nodeName=$NODE_NAME,x", "f: spec.nodeName=node-1,x");
        check("${NS}-${NODE_NAME}", "prod-node-1");
        check("v: ${EMPTY}x", "v: x");
        check("v: ${UNSET} $UNSET", "v: ${UNSET} $UNSET");
        check("no dollars", "no dollars");
        check("trailing $", "trailing $");
        check("open ${NODE_NAME", "open ${NODE_NAME");
        check("$NODE_NAMEX", "$NODE_NAMEX");
    }

    #[test]
    fn relabel_references_are_untouched() {
        check("replacement: $1", "replacement: $1");
        check("replacement: ${1}_x", "replacement: ${1}_x");
        check("replacement: $1:$2", "replacement: $1:$2");
        check("replacement: $$1", "replacement: $$1");
        check("replacement: $${NODE_NAME}", "replacement: $${NODE_NAME}");
        // A named group wins over a variable of the same name.
        check(
            "regex: (?P<name>.+)\nreplacement: ${name}",
            "regex: (?P<name>.+)\nreplacement: ${name}",
        );
        check("regex: (?<name>.+) ${name}", "regex: (?<name>.+) ${name}");
        // Without such a group, a set lowercase variable does expand.
        check("x: ${name}", "x: lowercase-env");
        check("regex: (.*)$", "regex: (.*)$");
    }

    #[test]
    fn borrowed_when_nothing_changes() {
        assert!(matches!(expand_with("a: $1", env), Cow::Borrowed(_)));
        assert!(matches!(expand_with("a: b", env), Cow::Borrowed(_)));
    }
}

#[cfg(test)]
mod kubernetes_tests {
    use super::*;

    fn scrape(yaml: &str) -> ScrapeConfig {
        let mut c = parse(yaml, "t.yml").unwrap_or_else(|e| panic!("{e}"));
        c.scrape_configs.remove(0)
    }

    /// `check(yaml, [(line, key, message part)])`: the problems reported.
    fn check(yaml: &str, expected: &[(u64, &str, &str)]) {
        let Err(Error::Invalid { problems }) = parse(yaml, "t.yml") else {
            panic!("accepted:\n{yaml}");
        };
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (p, (line, key, part)) in problems.iter().zip(expected) {
            assert_eq!((p.line, p.key.as_str()), (*line, *key), "{p}");
            assert!(p.message.contains(part), "{p} lacks {part:?}");
        }
    }

    #[test]
    fn all_pod_keys_resolve() {
        let sc = scrape(
            "scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        namespaces:
          names: [prod, staging]
        selectors:
          - role: pod
            label: app in (web),tier!=db
            field: status.phase=Running
        attach_metadata: {node: true}
      - role: pod
        api_server: https://k8s.example:6443
        bearer_token: s3cret
        tls_config: {insecure_skip_verify: true, server_name: k8s}
      - role: pod
        kubeconfig_file: kube/config
",
        );
        let k = &sc.kubernetes_sd_configs;
        assert_eq!(k.len(), 3);
        assert_eq!(k[0].namespaces, ["prod", "staging"]);
        assert_eq!(
            k[0].label_selector.as_ref().map(LabelSelector::as_str),
            Some("app in (web),tier!=db")
        );
        assert_eq!(
            k[0].field_selector.as_ref().map(FieldSelector::as_str),
            Some("status.phase=Running")
        );
        assert!(k[0].attach_node_metadata);
        assert!(k[0].api_server.is_none() && k[0].kubeconfig_file.is_none());
        assert_eq!(k[1].api_server.as_deref(), Some("https://k8s.example:6443"));
        let auth = k[1].http.authorization.as_ref().expect("token");
        assert_eq!(
            auth.credentials.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(k[1].http.tls_config.insecure_skip_verify);
        assert_eq!(k[2].kubeconfig_file, Some(PathBuf::from("kube/config")));
    }

    #[test]
    fn kubeconfig_is_relative_to_the_config_file() {
        let dir = std::env::temp_dir().join(format!("scrapelet-kube-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("c.yml");
        std::fs::write(
            &file,
            "scrape_configs:\n  - job_name: p\n    kubernetes_sd_configs: [{role: pod, kubeconfig_file: kc}]\n",
        )
        .expect("write");
        let c = load(&file).expect("load");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            c.scrape_configs[0].kubernetes_sd_configs[0].kubeconfig_file,
            Some(dir.join("kc"))
        );
    }

    #[test]
    fn rejected_as_prometheus_and_where_unsupported() {
        let head = "scrape_configs:\n  - job_name: p\n    kubernetes_sd_configs:\n";
        let k = "scrape_configs[0].kubernetes_sd_configs";
        check(
            &format!("{head}      - role: node\n"),
            &[(4, &format!("{k}[0].role"), "not supported by scrapelet")],
        );
        check(
            &format!("{head}      - role: pods\n"),
            &[(4, &format!("{k}[0].role"), "unknown Kubernetes SD role")],
        );
        check(
            &format!("{head}      - namespaces: {{names: [a]}}\n"),
            &[(4, &format!("{k}[0].role"), "role missing")],
        );
        check(
            &format!(
                "{head}      - role: pod\n        selectors: [{{role: service, label: a=b}}]\n"
            ),
            &[(
                5,
                &format!("{k}[0].selectors[0].role"),
                "pod role supports only pod selectors",
            )],
        );
        check(
            &format!(
                "{head}      - role: pod\n        selectors:\n          - {{role: pod, label: a=b}}\n          - {{role: pod, field: status.phase=Running}}\n"
            ),
            &[(
                7,
                &format!("{k}[0].selectors[1].role"),
                "duplicated selector role",
            )],
        );
        check(
            &format!(
                "{head}      - role: pod\n        selectors: [{{role: pod, label: 'a in b'}}]\n"
            ),
            &[(
                5,
                &format!("{k}[0].selectors[0].label"),
                "invalid label selector",
            )],
        );
        check(
            &format!(
                "{head}      - role: pod\n        selectors: [{{role: pod, field: spec.restartPolicy=Always}}]\n"
            ),
            &[(5, &format!("{k}[0].selectors[0].field"), "status.phase")],
        );
        check(
            &format!(
                "{head}      - role: pod\n        api_server: http://a\n        kubeconfig_file: k\n"
            ),
            &[(6, &format!("{k}[0].kubeconfig_file"), "simultaneously")],
        );
        check(
            &format!("{head}      - role: pod\n        bearer_token: x\n"),
            &[(4, &format!("{k}[0]"), "provide the 'api_server' URL")],
        );
        check(
            &format!(
                "{head}      - role: pod\n        api_server: http://a\n        namespaces: {{own_namespace: true}}\n"
            ),
            &[(
                6,
                &format!("{k}[0].namespaces.own_namespace"),
                "simultaneously",
            )],
        );
        check(
            &format!("{head}      - role: pod\n        attach_metadata: {{namespace: true}}\n"),
            &[(
                5,
                &format!("{k}[0].attach_metadata.namespace"),
                "not supported by scrapelet",
            )],
        );
        check(
            &format!(
                "{head}      - role: pod\n        api_server: http://a\n        authorization: {{type: Token, credentials: x}}\n"
            ),
            &[(6, &format!("{k}[0].authorization.type"), "Bearer")],
        );
        check(
            &format!("{head}      - role: pod\n        api_server: a:6443\n"),
            &[(5, &format!("{k}[0].api_server"), "")],
        );
    }

    #[test]
    fn environment_expands_in_selectors_and_spares_relabel_references() {
        let Ok(home) = std::env::var("HOME") else {
            return;
        };
        let sc = scrape(
            "scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        selectors: [{role: pod, field: 'spec.nodeName=${HOME}x'}]
    relabel_configs:
      - source_labels: [__address__]
        regex: '(.+):(\\d+)'
        target_label: x
        replacement: '${1}:$2 $$HOME $${HOME}'
",
        );
        let expected = format!("spec.nodeName={home}x");
        assert_eq!(
            sc.kubernetes_sd_configs[0]
                .field_selector
                .as_ref()
                .map(FieldSelector::as_str),
            Some(expected.as_str())
        );
        assert_eq!(sc.relabel_configs[0].replacement, "${1}:$2 $$HOME $${HOME}");
        // A named group of that name anywhere in the file keeps `${HOME}` for relabeling.
        let sc = scrape(
            "scrape_configs:
  - job_name: pods
    relabel_configs:
      - source_labels: [__address__]
        regex: '(?P<HOME>.+)'
        target_label: y
        replacement: '${HOME}'
",
        );
        assert_eq!(sc.relabel_configs[0].replacement, "${HOME}");
    }
}
