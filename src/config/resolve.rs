//! From the YAML as written ([`raw`](super::raw)) to the resolved [`Config`]: Prometheus's
//! defaults and inheritance (config/config.go and prometheus/common's HTTPClientConfig), and
//! every validation, collecting all problems rather than stopping at the first.
//!
//! Keys Prometheus knows that scrapelet does not implement are decided here, one by one:
//! accepted and ignored when they cannot change what an agent scrapes or sends, rejected with
//! "not supported by scrapelet" when ignoring them would silently change behaviour.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Location;

use super::duration::{format_duration, parse_duration};
use super::error::clean;
use super::locate::KeyIndex;
use super::raw::{
    Entries, RawAgentRemoteWrite, RawAgentScrape, RawBuffer, RawConfig, RawGlobal, RawHttpClient,
    RawKubernetesSdConfig, RawMetadataConfig, RawQueueConfig, RawRemoteWrite, RawScrapeConfig,
    RawSize, RawStaticConfig, S, StringMap,
};
use super::size::parse_size;
use super::{
    AgentConfig, AgentRemoteWriteConfig, AgentScrapeConfig, Authorization, BasicAuth, BufferConfig,
    Config, FieldSelector, GlobalConfig, HttpClientConfig, KubernetesSdConfig, LabelSelector,
    MetadataConfig, Problem, QueueConfig, RemoteWriteConfig, Scheme, ScrapeConfig, Secret,
    StaticConfig, TlsConfig,
};
use crate::labels::Labels;
use crate::relabel::{RelabelConfig, is_valid_label_name};

/// Resolves `raw`; problems found are appended to the returned list (empty when valid).
pub(super) fn resolve(raw: RawConfig, origin: &str, index: &KeyIndex) -> (Config, Vec<Problem>) {
    let mut cx = Cx {
        origin,
        index,
        problems: Vec::new(),
    };
    unsupported_top_level(&mut cx, &raw);
    let (global, limits) = global(&mut cx, raw.global.as_ref());
    let mut scrape_configs =
        scrape_configs(&mut cx, raw.scrape_configs.as_deref(), &global, &limits);
    let agent_remote_write =
        agent_remote_write(raw.agent.as_ref().and_then(|a| a.remote_write.as_ref()));
    let remote_write = remote_writes(&mut cx, raw.remote_write.as_deref(), &agent_remote_write);
    let agent = AgentConfig {
        debug_output: raw
            .agent
            .as_ref()
            .and_then(|a| a.debug_output)
            .unwrap_or(false),
        buffer: buffer(&mut cx, raw.agent.as_ref().and_then(|a| a.buffer.as_ref())),
        scrape: agent_scrape(&mut cx, raw.agent.as_ref().and_then(|a| a.scrape.as_ref())),
        remote_write: agent_remote_write,
    };
    // The agent-wide cap on bodies applies where a scrape config sets none.
    for sc in &mut scrape_configs {
        if sc.body_size_limit == 0 {
            sc.body_size_limit = agent.scrape.max_body_size;
        }
    }
    let config = Config {
        global,
        scrape_configs,
        remote_write,
        agent,
    };
    (config, cx.problems)
}

/// `agent.scrape`, with its defaults.
fn agent_scrape(cx: &mut Cx<'_>, raw: Option<&RawAgentScrape>) -> AgentScrapeConfig {
    let mut out = AgentScrapeConfig::default();
    if let Some(size) =
        raw.and_then(|r| cx.size("agent.scrape.max_body_size", r.max_body_size.as_ref()))
    {
        out.max_body_size = size;
    }
    out
}

/// `agent.remote_write`, with its defaults (no limits).
fn agent_remote_write(raw: Option<&RawAgentRemoteWrite>) -> AgentRemoteWriteConfig {
    let d = AgentRemoteWriteConfig::default();
    let Some(raw) = raw else { return d };
    AgentRemoteWriteConfig {
        max_hourly_series: raw.max_hourly_series.map_or(d.max_hourly_series, to_usize),
        max_daily_series: raw.max_daily_series.map_or(d.max_daily_series, to_usize),
    }
}

/// `agent.buffer`, with its defaults; bounds checked.
fn buffer(cx: &mut Cx<'_>, raw: Option<&RawBuffer>) -> BufferConfig {
    let mut out = BufferConfig::default();
    let Some(raw) = raw else {
        return out;
    };
    if let Some(size) = cx.size("agent.buffer.max_size", raw.max_size.as_ref()) {
        if size < BufferConfig::MIN_SIZE {
            cx.report(
                "agent.buffer.max_size",
                None,
                format!("must be at least {} bytes (256KiB)", BufferConfig::MIN_SIZE),
            );
        } else {
            out.max_size = size;
        }
    }
    if let Some(age) = cx.duration("agent.buffer.max_age", raw.max_age.as_ref()) {
        // 0 means no age cap, as Prometheus's zero durations mean "off".
        out.max_age = (!age.is_zero()).then_some(age);
    }
    if let Some(every) = cx.duration("agent.buffer.fsync_interval", raw.fsync_interval.as_ref()) {
        out.fsync_interval = every;
    }
    out
}

/// Prometheus's `reservedHeaders` (config/config.go): set by the protocol or the transport.
/// `authorization` is refused separately, with its own message.
const RESERVED_HEADERS: [&str; 16] = [
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Scrape protocol names Prometheus accepts in `scrape_protocols`.
const SCRAPE_PROTOCOLS: [&str; 5] = [
    "OpenMetricsText0.0.1",
    "OpenMetricsText1.0.0",
    "PrometheusProto",
    "PrometheusText0.0.4",
    "PrometheusText1.0.0",
];

/// The protobuf message of remote write 1.0, the only one scrapelet sends.
const WRITE_V1_MESSAGE: &str = "prometheus.WriteRequest";
const WRITE_V2_MESSAGE: &str = "io.prometheus.write.v2.Request";

const NOT_SUPPORTED: &str = "not supported by scrapelet";

/// The global limits, inherited by each scrape config that leaves its own at 0.
#[derive(Clone, Debug, Default)]
struct Limits {
    body_size_limit: u64,
    sample_limit: u64,
    label_limit: u64,
    label_name_length_limit: u64,
    label_value_length_limit: u64,
    target_limit: u64,
    keep_dropped_targets: u64,
    series_limit: u64,
    series_limit_per_metric: u64,
    label_limit_keep: Option<Vec<String>>,
}

/// The resolution context: where problems go and how their lines are found.
struct Cx<'a> {
    origin: &'a str,
    index: &'a KeyIndex,
    problems: Vec<Problem>,
}

impl Cx<'_> {
    /// Records a problem at `path`. Its line is the line of the key when the key is written in
    /// the text, else where the value came from (`at`: a merge key or alias site), else the
    /// nearest enclosing key.
    fn report(&mut self, path: &str, at: Option<&Location>, message: impl Into<String>) {
        let line = self
            .index
            .exact_line(path)
            .or_else(|| at.map(Location::line).filter(|l| *l > 0))
            .unwrap_or_else(|| self.index.line_of(path));
        self.problems.push(Problem {
            file: self.origin.to_owned(),
            line,
            key: path.to_owned(),
            message: message.into(),
        });
    }

    fn not_supported(&mut self, path: &str, reason: &str) {
        self.report(path, None, format!("{NOT_SUPPORTED}: {reason}"));
    }

    /// A duration key: None when absent or invalid (then reported).
    fn duration(&mut self, path: &str, value: Option<&S<String>>) -> Option<Duration> {
        let value = value?;
        match parse_duration(&value.value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.report(path, Some(&value.referenced), e.to_string());
                None
            }
        }
    }

    /// A size key: None when absent or invalid (then reported).
    fn size(&mut self, path: &str, value: Option<&S<RawSize>>) -> Option<u64> {
        let value = value?;
        match &value.value {
            RawSize::Bytes(n) => Some(*n),
            RawSize::Text(text) => match parse_size(text) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.report(path, Some(&value.referenced), e.to_string());
                    None
                }
            },
        }
    }

    /// A label set (`external_labels`, static `labels`); invalid names are reported and
    /// skipped.
    fn labels(&mut self, path: &str, map: Option<&StringMap>) -> Labels {
        let Some(map) = map else {
            return Labels::empty();
        };
        let mut pairs = Vec::with_capacity(map.0.len());
        for (name, value) in &map.0 {
            if is_valid_label_name(&name.value) {
                pairs.push((name.value.as_str(), value.value.as_str()));
            } else {
                self.report(
                    &format!("{path}.{}", name.value),
                    Some(&name.referenced),
                    format!("{:?} is not a valid label name", name.value),
                );
            }
        }
        Labels::from_pairs(pairs)
    }

    /// A list of label names (`label_limit_keep`); invalid names are reported and skipped.
    fn label_names(&mut self, path: &str, list: Option<&Vec<S<String>>>) -> Option<Vec<String>> {
        let list = list?;
        let mut names = Vec::with_capacity(list.len());
        for (i, name) in list.iter().enumerate() {
            if is_valid_label_name(&name.value) {
                names.push(name.value.clone());
            } else {
                self.report(
                    &format!("{path}[{i}]"),
                    Some(&name.referenced),
                    format!("{:?} is not a valid label name", name.value),
                );
            }
        }
        Some(names)
    }

    /// Relabel rules: null entries and invalid combinations are reported and skipped.
    fn relabel_rules(
        &mut self,
        path: &str,
        rules: Option<&Entries<RelabelConfig>>,
        null_message: &str,
    ) -> Vec<RelabelConfig> {
        let mut out = Vec::new();
        for (i, rule) in rules.into_iter().flatten().enumerate() {
            let rule_path = format!("{path}[{i}]");
            match &rule.value {
                None => self.report(&rule_path, Some(&rule.referenced), null_message),
                Some(r) => match r.validate() {
                    Ok(()) => out.push(r.clone()),
                    Err(message) => {
                        self.report(&rule_path, Some(&rule.referenced), clean(&message));
                    }
                },
            }
        }
        out
    }

    /// A boolean key that scrapelet can only honour at its default: `true` is rejected.
    fn only_false(&mut self, path: &str, value: Option<bool>, reason: &str) {
        if value == Some(true) {
            self.not_supported(path, reason);
        }
    }

    /// A string key that scrapelet can only honour when empty.
    fn only_empty(&mut self, path: &str, value: Option<&str>, reason: &str) {
        if value.is_some_and(|v| !v.is_empty()) {
            self.not_supported(path, reason);
        }
    }

    fn only_absent(&mut self, path: &str, present: bool, reason: &str) {
        if present {
            self.not_supported(path, reason);
        }
    }

    /// Checks `scrape_protocols` names as Prometheus does; the list itself is ignored.
    fn scrape_protocols(&mut self, path: &str, list: Option<&Vec<S<String>>>) {
        let Some(list) = list else { return };
        if list.is_empty() {
            self.report(path, None, "scrape_protocols cannot be empty");
        }
        let mut seen: Vec<String> = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let item = format!("{path}[{i}]");
            if !SCRAPE_PROTOCOLS.contains(&p.value.as_str()) {
                self.report(
                    &item,
                    Some(&p.referenced),
                    format!(
                        "unknown scrape protocol {}, supported: {}",
                        p.value,
                        SCRAPE_PROTOCOLS.join(", ")
                    ),
                );
            }
            let lower = p.value.to_lowercase();
            if seen.contains(&lower) {
                self.report(
                    &item,
                    Some(&p.referenced),
                    format!("duplicated protocol {} in scrape_protocols", p.value),
                );
            }
            seen.push(lower);
        }
    }
}

/// Top-level keys other than global, scrape_configs, remote_write and agent.
fn unsupported_top_level(cx: &mut Cx<'_>, raw: &RawConfig) {
    // Agent mode refuses these when non-empty, with these very messages (LoadFile).
    if raw.rule_files.as_ref().is_some_and(|v| !v.is_empty()) {
        cx.report(
            "rule_files",
            None,
            "field rule_files is not allowed in agent mode",
        );
    }
    if raw.remote_read.as_ref().is_some_and(|v| !v.is_empty()) {
        cx.report(
            "remote_read",
            None,
            "field remote_read is not allowed in agent mode",
        );
    }
    if let Some(a) = &raw.alerting {
        let non_empty = |v: &Option<Vec<_>>| v.as_ref().is_some_and(|v| !v.is_empty());
        if non_empty(&a.alertmanagers) || non_empty(&a.alert_relabel_configs) {
            cx.report(
                "alerting",
                None,
                "field alerting is not allowed in agent mode",
            );
        }
    }
    // The scrape configs in those files would silently not be scraped.
    if raw
        .scrape_config_files
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        cx.not_supported("scrape_config_files", "put the scrape configs in this file");
    }
    // Accepted and ignored, no effect for an agent: `storage` (TSDB and exemplar storage;
    // agent mode keeps no TSDB), `tracing` (traces of Prometheus itself), `runtime` (Go GC
    // tuning), `otlp` (translation for Prometheus's OTLP receiver; scrapelet has none).
}

fn global(cx: &mut Cx<'_>, raw: Option<&RawGlobal>) -> (GlobalConfig, Limits) {
    let default = GlobalConfig::default();
    let Some(g) = raw else {
        return (default, Limits::default());
    };
    // As GlobalConfig.UnmarshalYAML: a zero or absent interval takes the default, then the
    // timeout (explicit or inferred) may not exceed it.
    let scrape_interval = cx
        .duration("global.scrape_interval", g.scrape_interval.as_ref())
        .filter(|d| !d.is_zero())
        .unwrap_or(default.scrape_interval);
    let timeout = cx
        .duration("global.scrape_timeout", g.scrape_timeout.as_ref())
        .filter(|d| !d.is_zero());
    if let Some(t) = timeout.filter(|t| *t > scrape_interval) {
        cx.report(
            "global.scrape_timeout",
            g.scrape_timeout.as_ref().map(|v| &v.referenced),
            format!(
                "scrape timeout {} greater than scrape interval {}",
                format_duration(t),
                format_duration(scrape_interval)
            ),
        );
    }
    let scrape_timeout = timeout.unwrap_or(default.scrape_timeout.min(scrape_interval));
    let external_labels = cx.labels("global.external_labels", g.external_labels.as_ref());

    let limits = Limits {
        body_size_limit: cx
            .size("global.body_size_limit", g.body_size_limit.as_ref())
            .unwrap_or(0),
        sample_limit: g.sample_limit.unwrap_or(0),
        label_limit: g.label_limit.unwrap_or(0),
        label_name_length_limit: g.label_name_length_limit.unwrap_or(0),
        label_value_length_limit: g.label_value_length_limit.unwrap_or(0),
        target_limit: g.target_limit.unwrap_or(0),
        keep_dropped_targets: g.keep_dropped_targets.unwrap_or(0),
        series_limit: g.series_limit.unwrap_or(0),
        series_limit_per_metric: g.series_limit_per_metric.unwrap_or(0),
        label_limit_keep: cx.label_names("global.label_limit_keep", g.label_limit_keep.as_ref()),
    };

    // Accepted and ignored (no effect for an agent), but checked as Prometheus checks them:
    // evaluation_interval and rule_query_offset (rules; an agent has none), query_log_file (an
    // agent answers no queries), scrape_protocols (content negotiation only: scrapelet parses the text formats
    // whatever it asks for), metric_name_validation_scheme / _escaping_scheme (the parser
    // takes every name the exposition formats allow), always_scrape_classic_histograms
    // (classic histograms are always scraped).
    cx.duration("global.evaluation_interval", g.evaluation_interval.as_ref());
    cx.duration("global.rule_query_offset", g.rule_query_offset.as_ref());
    cx.scrape_protocols("global.scrape_protocols", g.scrape_protocols.as_ref());
    // Rejected: they ask for something scrapelet does not do.
    cx.only_empty(
        "global.scrape_failure_log_file",
        g.scrape_failure_log_file.as_deref(),
        "scrape failures are logged and shown on the targets page",
    );
    unsupported_histogram_keys(
        cx,
        "global",
        g.scrape_native_histograms,
        g.convert_classic_histograms_to_nhcb,
        g.extra_scrape_metrics,
    );

    let global = GlobalConfig {
        scrape_interval,
        scrape_timeout,
        external_labels,
    };
    (global, limits)
}

/// Native histograms and extra scrape metrics: scrapelet has neither, so asking for them
/// would silently get less than asked.
fn unsupported_histogram_keys(
    cx: &mut Cx<'_>,
    path: &str,
    scrape_native_histograms: Option<bool>,
    convert_classic_histograms_to_nhcb: Option<bool>,
    extra_scrape_metrics: Option<bool>,
) {
    cx.only_false(
        &format!("{path}.scrape_native_histograms"),
        scrape_native_histograms,
        "native histograms are not scraped",
    );
    cx.only_false(
        &format!("{path}.convert_classic_histograms_to_nhcb"),
        convert_classic_histograms_to_nhcb,
        "native histograms are not produced",
    );
    cx.only_false(
        &format!("{path}.extra_scrape_metrics"),
        extra_scrape_metrics,
        "the extra scrape_* series are not produced",
    );
}

fn scrape_configs(
    cx: &mut Cx<'_>,
    raw: Option<&[S<Option<RawScrapeConfig>>]>,
    global: &GlobalConfig,
    limits: &Limits,
) -> Vec<ScrapeConfig> {
    let mut out = Vec::new();
    let mut jobs: HashSet<String> = HashSet::new();
    for (i, entry) in raw.into_iter().flatten().enumerate() {
        let path = format!("scrape_configs[{i}]");
        let Some(sc) = &entry.value else {
            cx.report(
                &path,
                Some(&entry.referenced),
                "empty or null scrape config section",
            );
            continue;
        };
        let resolved = scrape_config(cx, &path, sc, global, limits);
        if !resolved.job_name.is_empty() && !jobs.insert(resolved.job_name.clone()) {
            cx.report(
                &format!("{path}.job_name"),
                sc.job_name.as_ref().map(|j| &j.referenced),
                format!(
                    "found multiple scrape configs with job name {:?}",
                    resolved.job_name
                ),
            );
        }
        out.push(resolved);
    }
    out
}

fn scrape_config(
    cx: &mut Cx<'_>,
    path: &str,
    sc: &RawScrapeConfig,
    global: &GlobalConfig,
    limits: &Limits,
) -> ScrapeConfig {
    let defaults = ScrapeConfig::default();
    let key = |k: &str| format!("{path}.{k}");

    let job_name = sc
        .job_name
        .as_ref()
        .map(|j| j.value.clone())
        .unwrap_or_default();
    if job_name.is_empty() {
        cx.report(
            &key("job_name"),
            sc.job_name.as_ref().map(|j| &j.referenced),
            "job_name is empty",
        );
    }

    // As ScrapeConfig.Validate: interval from the global one when zero or absent, then the
    // timeout may not exceed it; an absent timeout is min(global timeout, interval).
    let scrape_interval = cx
        .duration(&key("scrape_interval"), sc.scrape_interval.as_ref())
        .filter(|d| !d.is_zero())
        .unwrap_or(global.scrape_interval);
    let timeout = cx
        .duration(&key("scrape_timeout"), sc.scrape_timeout.as_ref())
        .filter(|d| !d.is_zero());
    if let Some(t) = timeout.filter(|t| *t > scrape_interval) {
        cx.report(
            &key("scrape_timeout"),
            sc.scrape_timeout.as_ref().map(|v| &v.referenced),
            format!(
                "scrape timeout {} greater than scrape interval {}",
                format_duration(t),
                format_duration(scrape_interval)
            ),
        );
    }
    let scrape_timeout = timeout.unwrap_or(global.scrape_timeout.min(scrape_interval));

    let scheme = match sc.scheme.as_ref() {
        None => defaults.scheme,
        Some(s) => match s.value.as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                cx.report(
                    &key("scheme"),
                    Some(&s.referenced),
                    format!("scheme must be \"http\" or \"https\", got {other:?}"),
                );
                defaults.scheme
            }
        },
    };

    let inherit = |own: Option<u64>, global: u64| match own {
        Some(n) if n > 0 => n,
        _ => global,
    };
    let body_size_limit = inherit(
        cx.size(&key("body_size_limit"), sc.body_size_limit.as_ref()),
        limits.body_size_limit,
    );
    let count = |own: Option<u64>, global: u64| to_usize(inherit(own, global));

    let relabel_configs = cx.relabel_rules(
        &key("relabel_configs"),
        sc.relabel_configs.as_ref(),
        "empty or null target relabeling rule in scrape config",
    );
    let metric_relabel_configs = cx.relabel_rules(
        &key("metric_relabel_configs"),
        sc.metric_relabel_configs.as_ref(),
        "empty or null metric relabeling rule in scrape config",
    );
    // Prometheus checks static targets for URLs only when no relabel rule could rewrite them.
    let check_targets = sc.relabel_configs.as_ref().is_none_or(Vec::is_empty);
    let static_configs = static_configs(
        cx,
        &key("static_configs"),
        sc.static_configs.as_ref(),
        check_targets,
    );

    let kubernetes_sd_configs = kubernetes_sd_configs(
        cx,
        &key("kubernetes_sd_configs"),
        sc.kubernetes_sd_configs.as_ref(),
    );

    let http = http_client(cx, path, sc.http_client(), true);
    unsupported_scrape_keys(cx, path, sc);

    ScrapeConfig {
        job_name,
        scrape_interval,
        scrape_timeout,
        metrics_path: sc.metrics_path.clone().unwrap_or(defaults.metrics_path),
        scheme,
        params: sc.params.clone().unwrap_or_default(),
        honor_labels: sc.honor_labels.unwrap_or(defaults.honor_labels),
        honor_timestamps: sc.honor_timestamps.unwrap_or(defaults.honor_timestamps),
        body_size_limit,
        sample_limit: count(sc.sample_limit, limits.sample_limit),
        label_limit: count(sc.label_limit, limits.label_limit),
        label_name_length_limit: count(sc.label_name_length_limit, limits.label_name_length_limit),
        label_value_length_limit: count(
            sc.label_value_length_limit,
            limits.label_value_length_limit,
        ),
        target_limit: count(sc.target_limit, limits.target_limit),
        keep_dropped_targets: count(sc.keep_dropped_targets, limits.keep_dropped_targets),
        series_limit: count(sc.series_limit, limits.series_limit),
        series_limit_per_metric: count(sc.series_limit_per_metric, limits.series_limit_per_metric),
        label_limit_keep: cx
            .label_names(&key("label_limit_keep"), sc.label_limit_keep.as_ref())
            .or_else(|| limits.label_limit_keep.clone()),
        enable_compression: sc.enable_compression.unwrap_or(defaults.enable_compression),
        http,
        static_configs,
        kubernetes_sd_configs,
        relabel_configs,
        metric_relabel_configs,
    }
}

fn unsupported_scrape_keys(cx: &mut Cx<'_>, path: &str, sc: &RawScrapeConfig) {
    let key = |k: &str| format!("{path}.{k}");
    // Accepted and ignored, no effect for an agent (checked where Prometheus checks):
    // scrape_protocols and fallback_scrape_protocol (content negotiation; scrapelet parses the
    // text formats whatever the target says), scrape_classic_histograms and
    // always_scrape_classic_histograms (classic histograms are always scraped),
    // native_histogram_bucket_limit and native_histogram_min_bucket_factor (no native
    // histograms are scraped), metric_name_validation_scheme / _escaping_scheme (the parser takes every name the
    // exposition formats allow).
    cx.scrape_protocols(&key("scrape_protocols"), sc.scrape_protocols.as_ref());
    if let Some(p) = &sc.fallback_scrape_protocol
        && !SCRAPE_PROTOCOLS.contains(&p.value.as_str())
    {
        cx.report(
            &key("fallback_scrape_protocol"),
            Some(&p.referenced),
            format!(
                "invalid fallback_scrape_protocol: unknown scrape protocol {}, supported: {}",
                p.value,
                SCRAPE_PROTOCOLS.join(", ")
            ),
        );
    }
    // Rejected: they ask for behaviour scrapelet does not have.
    cx.only_false(
        &key("track_timestamps_staleness"),
        sc.track_timestamps_staleness,
        "staleness markers for samples with explicit timestamps are not written",
    );
    cx.only_empty(
        &key("scrape_failure_log_file"),
        sc.scrape_failure_log_file.as_deref(),
        "scrape failures are logged and shown on the targets page",
    );
    unsupported_histogram_keys(
        cx,
        path,
        sc.scrape_native_histograms,
        sc.convert_classic_histograms_to_nhcb,
        sc.extra_scrape_metrics,
    );
    // Service discovery: targets that would silently never be scraped.
    let sd = [
        ("azure_sd_configs", sc.azure_sd_configs.is_some()),
        ("consul_sd_configs", sc.consul_sd_configs.is_some()),
        (
            "digitalocean_sd_configs",
            sc.digitalocean_sd_configs.is_some(),
        ),
        ("docker_sd_configs", sc.docker_sd_configs.is_some()),
        (
            "dockerswarm_sd_configs",
            sc.dockerswarm_sd_configs.is_some(),
        ),
        ("dns_sd_configs", sc.dns_sd_configs.is_some()),
        ("ec2_sd_configs", sc.ec2_sd_configs.is_some()),
        ("eureka_sd_configs", sc.eureka_sd_configs.is_some()),
        ("file_sd_configs", sc.file_sd_configs.is_some()),
        ("gce_sd_configs", sc.gce_sd_configs.is_some()),
        ("hetzner_sd_configs", sc.hetzner_sd_configs.is_some()),
        ("http_sd_configs", sc.http_sd_configs.is_some()),
        ("ionos_sd_configs", sc.ionos_sd_configs.is_some()),
        ("kuma_sd_configs", sc.kuma_sd_configs.is_some()),
        ("lightsail_sd_configs", sc.lightsail_sd_configs.is_some()),
        ("linode_sd_configs", sc.linode_sd_configs.is_some()),
        ("marathon_sd_configs", sc.marathon_sd_configs.is_some()),
        ("nerve_sd_configs", sc.nerve_sd_configs.is_some()),
        ("nomad_sd_configs", sc.nomad_sd_configs.is_some()),
        ("openstack_sd_configs", sc.openstack_sd_configs.is_some()),
        ("ovhcloud_sd_configs", sc.ovhcloud_sd_configs.is_some()),
        ("puppetdb_sd_configs", sc.puppetdb_sd_configs.is_some()),
        ("scaleway_sd_configs", sc.scaleway_sd_configs.is_some()),
        ("serverset_sd_configs", sc.serverset_sd_configs.is_some()),
        ("stackit_sd_configs", sc.stackit_sd_configs.is_some()),
        ("triton_sd_configs", sc.triton_sd_configs.is_some()),
        ("uyuni_sd_configs", sc.uyuni_sd_configs.is_some()),
        ("vultr_sd_configs", sc.vultr_sd_configs.is_some()),
    ];
    for (name, present) in sd {
        cx.only_absent(
            &key(name),
            present,
            "static_configs and kubernetes_sd_configs are the only service discovery",
        );
    }
}

/// The roles Prometheus knows; scrapelet discovers pods only.
const KUBERNETES_ROLES: [&str; 6] = [
    "pod",
    "node",
    "service",
    "endpoints",
    "endpointslice",
    "ingress",
];

/// `kubernetes_sd_configs` as Prometheus's `SDConfig.UnmarshalYAML` checks it, plus what
/// scrapelet does not do (other roles, namespace metadata, some client settings).
fn kubernetes_sd_configs(
    cx: &mut Cx<'_>,
    path: &str,
    raw: Option<&Entries<RawKubernetesSdConfig>>,
) -> Vec<KubernetesSdConfig> {
    let mut out = Vec::new();
    for (i, entry) in raw.into_iter().flatten().enumerate() {
        let entry_path = format!("{path}[{i}]");
        let Some(k) = &entry.value else {
            cx.report(
                &entry_path,
                Some(&entry.referenced),
                "empty or null kubernetes_sd_configs entry",
            );
            continue;
        };
        if let Some(resolved) = kubernetes_sd_config(cx, &entry_path, k) {
            out.push(resolved);
        }
    }
    out
}

fn kubernetes_sd_config(
    cx: &mut Cx<'_>,
    path: &str,
    k: &RawKubernetesSdConfig,
) -> Option<KubernetesSdConfig> {
    let key = |name: &str| format!("{path}.{name}");
    let mut ok = true;
    match k.role.as_ref() {
        None => {
            cx.report(
                &key("role"),
                None,
                "role missing (one of: pod, service, endpoints, endpointslice, node, ingress)",
            );
            ok = false;
        }
        Some(role) if role.value == "pod" => {}
        Some(role) if KUBERNETES_ROLES.contains(&role.value.as_str()) => {
            cx.not_supported(
                &key("role"),
                &format!(
                    "role {:?}: scrapelet discovers the pods of its own node only (role: pod)",
                    role.value
                ),
            );
            ok = false;
        }
        Some(role) => {
            cx.report(
                &key("role"),
                Some(&role.referenced),
                format!("unknown Kubernetes SD role {:?}", role.value),
            );
            ok = false;
        }
    }

    let api_server = k.api_server.as_ref().filter(|s| !s.value.is_empty());
    if let Some(url) = api_server
        && let Err(message) = check_http_url(&url.value)
    {
        cx.report(&key("api_server"), Some(&url.referenced), message);
    }
    let kubeconfig_file = k
        .kubeconfig_file
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let raw_http = k.http_client();
    let custom_http = raw_http.basic_auth.is_some()
        || raw_http.authorization.is_some()
        || raw_http.bearer_token.is_some_and(|s| !s.is_empty())
        || raw_http.bearer_token_file.is_some_and(|s| !s.is_empty())
        || raw_http.tls_config.is_some()
        || raw_http.follow_redirects == Some(false)
        || raw_http.enable_http2 == Some(false)
        || raw_http.oauth2
        || raw_http.proxy_url.is_some_and(|s| !s.is_empty());
    let own_namespace = k
        .namespaces
        .as_ref()
        .and_then(|n| n.own_namespace)
        .unwrap_or(false);
    if api_server.is_some() && kubeconfig_file.is_some() {
        cx.report(
            &key("kubeconfig_file"),
            None,
            "cannot use 'kubeconfig_file' and 'api_server' simultaneously",
        );
    }
    if kubeconfig_file.is_some() && custom_http {
        cx.report(
            &key("kubeconfig_file"),
            None,
            "cannot use a custom HTTP client configuration together with 'kubeconfig_file'",
        );
    }
    if api_server.is_none() && kubeconfig_file.is_none() && custom_http {
        cx.report(
            path,
            None,
            "to use custom HTTP client configuration please provide the 'api_server' URL explicitly",
        );
    }
    if own_namespace && api_server.is_some() {
        cx.report(
            &key("namespaces.own_namespace"),
            None,
            "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously",
        );
    }
    if own_namespace && kubeconfig_file.is_some() {
        cx.report(
            &key("namespaces.own_namespace"),
            None,
            "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously",
        );
    }

    let http = http_client(cx, path, raw_http, true);
    // kube's client takes a bearer token (or token file), basic auth, a CA, a client
    // certificate and a server name; anything else would be silently dropped.
    if let Some(a) = &http.authorization
        && !a.kind.eq_ignore_ascii_case("bearer")
    {
        cx.not_supported(
            &key("authorization.type"),
            "the Kubernetes client sends Bearer credentials only",
        );
    }
    if http.tls_config.min_version.as_deref() == Some("TLS13") {
        cx.not_supported(
            &key("tls_config.min_version"),
            "the Kubernetes client cannot be limited to TLS 1.3",
        );
    }
    // follow_redirects and enable_http2 are accepted and ignored: the API server does not
    // redirect, and HTTP/1.1 or HTTP/2 carry the same list and watch requests.

    let mut label_selector = None;
    let mut field_selector = None;
    let mut seen_roles: Vec<String> = Vec::new();
    for (j, s) in k.selectors.iter().flatten().enumerate() {
        let spath = format!("{path}.selectors[{j}]");
        let Some(sel) = &s.value else {
            cx.report(&spath, Some(&s.referenced), "empty or null selector");
            continue;
        };
        let role = sel
            .role
            .as_ref()
            .map(|r| r.value.clone())
            .unwrap_or_default();
        if seen_roles.contains(&role) {
            cx.report(
                &format!("{spath}.role"),
                None,
                format!("duplicated selector role: {role}"),
            );
            continue;
        }
        seen_roles.push(role.clone());
        if role != "pod" {
            cx.report(
                &format!("{spath}.role"),
                None,
                "pod role supports only pod selectors",
            );
            continue;
        }
        if let Some(label) = sel.label.as_ref().filter(|l| !l.value.is_empty()) {
            match LabelSelector::parse(&label.value) {
                Ok(parsed) => label_selector = Some(parsed),
                Err(message) => {
                    cx.report(&format!("{spath}.label"), Some(&label.referenced), message);
                }
            }
        }
        if let Some(field) = sel.field.as_ref().filter(|f| !f.value.is_empty()) {
            match FieldSelector::parse(&field.value) {
                Ok(parsed) => field_selector = Some(parsed),
                Err(message) => {
                    cx.report(&format!("{spath}.field"), Some(&field.referenced), message);
                }
            }
        }
    }

    let attach = k.attach_metadata.as_ref();
    cx.only_false(
        &key("attach_metadata.namespace"),
        attach.and_then(|a| a.namespace),
        "namespace metadata is not attached (it needs a namespace watch); use relabeling on __meta_kubernetes_namespace",
    );

    ok.then(|| KubernetesSdConfig {
        api_server: api_server.map(|s| s.value.clone()),
        kubeconfig_file,
        namespaces: k
            .namespaces
            .as_ref()
            .and_then(|n| n.names.clone())
            .unwrap_or_default(),
        own_namespace,
        label_selector,
        field_selector,
        attach_node_metadata: attach.and_then(|a| a.node).unwrap_or(false),
        http,
    })
}

fn static_configs(
    cx: &mut Cx<'_>,
    path: &str,
    raw: Option<&Entries<RawStaticConfig>>,
    check_targets: bool,
) -> Vec<StaticConfig> {
    let mut out = Vec::new();
    for (i, entry) in raw.into_iter().flatten().enumerate() {
        let entry_path = format!("{path}[{i}]");
        let Some(group) = &entry.value else {
            cx.report(
                &entry_path,
                Some(&entry.referenced),
                "empty or null static config",
            );
            continue;
        };
        let targets: Vec<String> = group
            .targets
            .iter()
            .flatten()
            .map(|t| t.value.clone())
            .collect();
        if check_targets {
            for (j, t) in group.targets.iter().flatten().enumerate() {
                // CheckTargetAddress: a target is host:port; scheme and path are set apart.
                if t.value.contains('/') {
                    cx.report(
                        &format!("{entry_path}.targets[{j}]"),
                        Some(&t.referenced),
                        format!(
                            "{:?} is not a valid hostname (a target is host:port; set scheme and metrics_path instead)",
                            t.value
                        ),
                    );
                }
            }
        }
        let labels = cx.labels(&format!("{entry_path}.labels"), group.labels.as_ref());
        out.push(StaticConfig { targets, labels });
    }
    out
}

fn remote_writes(
    cx: &mut Cx<'_>,
    raw: Option<&[S<Option<RawRemoteWrite>>]>,
    agent: &AgentRemoteWriteConfig,
) -> Vec<RemoteWriteConfig> {
    let mut out: Vec<RemoteWriteConfig> = Vec::new();
    // Name -> (index, whether it was generated).
    let mut names: HashMap<String, (usize, bool)> = HashMap::new();
    for (i, entry) in raw.into_iter().flatten().enumerate() {
        let path = format!("remote_write[{i}]");
        let Some(rw) = &entry.value else {
            cx.report(
                &path,
                Some(&entry.referenced),
                "empty or null remote write config section",
            );
            continue;
        };
        let resolved = remote_write(cx, &path, rw, agent);
        let explicit = rw.name.as_ref().is_some_and(|n| !n.value.is_empty());
        if let Some((first, first_generated)) = names.insert(resolved.name.clone(), (i, !explicit))
        {
            let name_at = rw.name.as_ref().map(|n| &n.referenced);
            if explicit && !first_generated {
                cx.report(
                    &format!("{path}.name"),
                    name_at,
                    format!(
                        "found multiple remote write configs with name {:?}",
                        resolved.name
                    ),
                );
            } else {
                cx.report(
                    &path,
                    name_at,
                    format!(
                        "remote write config has the same name {:?} as remote_write[{first}] (unnamed endpoints with the same url and headers need a name each)",
                        resolved.name
                    ),
                );
            }
        }
        out.push(resolved);
    }
    out
}

fn remote_write(
    cx: &mut Cx<'_>,
    path: &str,
    rw: &RawRemoteWrite,
    agent: &AgentRemoteWriteConfig,
) -> RemoteWriteConfig {
    let defaults = RemoteWriteConfig::default();
    let key = |k: &str| format!("{path}.{k}");

    let url = rw.url.as_ref().map(|u| u.value.clone()).unwrap_or_default();
    if url.is_empty() {
        cx.report(
            &key("url"),
            rw.url.as_ref().map(|u| &u.referenced),
            "url for remote_write is empty",
        );
    } else if let Err(why) = check_http_url(&url) {
        cx.report(
            &key("url"),
            rw.url.as_ref().map(|u| &u.referenced),
            format!("invalid URL {url:?}: {why}"),
        );
    }

    let remote_timeout = cx
        .duration(&key("remote_timeout"), rw.remote_timeout.as_ref())
        .unwrap_or(defaults.remote_timeout);
    if remote_timeout.is_zero() {
        cx.report(
            &key("remote_timeout"),
            rw.remote_timeout.as_ref().map(|v| &v.referenced),
            "remote_timeout must be greater than 0",
        );
    }

    let mut headers = BTreeMap::new();
    for (name, value) in rw.headers.iter().flat_map(|h| &h.0) {
        let lower = name.value.to_ascii_lowercase();
        let header_path = key(&format!("headers.{}", name.value));
        if lower == "authorization" {
            cx.report(
                &header_path,
                Some(&name.referenced),
                "authorization header must be changed via the basic_auth or authorization parameter",
            );
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            cx.report(
                &header_path,
                Some(&name.referenced),
                format!(
                    "{} is a reserved header. It must not be changed",
                    name.value
                ),
            );
        } else if http::HeaderName::from_bytes(name.value.as_bytes()).is_err() {
            cx.report(
                &header_path,
                Some(&name.referenced),
                format!("{:?} is not a valid header name", name.value),
            );
        } else if http::HeaderValue::from_str(&value.value).is_err() {
            cx.report(
                &header_path,
                Some(&value.referenced),
                "header value has characters not allowed in HTTP headers",
            );
        } else {
            headers.insert(name.value.clone(), value.value.clone());
        }
    }

    let write_relabel_configs = cx.relabel_rules(
        &key("write_relabel_configs"),
        rw.write_relabel_configs.as_ref(),
        "empty or null relabeling rule in remote write config",
    );
    let queue_config = queue_config(cx, &key("queue_config"), rw.queue_config.as_ref());
    let metadata_config = metadata_config(cx, &key("metadata_config"), rw.metadata_config.as_ref());
    let http = http_client(cx, path, rw.http_client(), false);

    let name = match rw.name.as_ref().filter(|n| !n.value.is_empty()) {
        Some(n) => n.value.clone(),
        None => generated_name(&url, &headers),
    };

    // Accepted and ignored: round_robin_dns (how connections spread over the addresses of one
    // name; what is sent is the same).
    // Rejected: other wire formats and authentication schemes.
    if let Some(m) = &rw.protobuf_message {
        match m.value.as_str() {
            WRITE_V1_MESSAGE => {}
            WRITE_V2_MESSAGE => cx.not_supported(
                &key("protobuf_message"),
                "remote write 2.0 is not implemented yet; use prometheus.WriteRequest",
            ),
            other => cx.report(
                &key("protobuf_message"),
                Some(&m.referenced),
                format!(
                    "invalid protobuf_message value: unknown remote write protobuf message {other}, supported: {WRITE_V1_MESSAGE}, {WRITE_V2_MESSAGE}"
                ),
            ),
        }
    }
    cx.only_absent(
        &key("sigv4"),
        rw.sigv4.is_some(),
        "AWS SigV4 signing is not implemented",
    );
    cx.only_absent(
        &key("azuread"),
        rw.azuread.is_some(),
        "Azure AD authentication is not implemented",
    );
    cx.only_absent(
        &key("google_iam"),
        rw.google_iam.is_some(),
        "Google IAM authentication is not implemented",
    );

    RemoteWriteConfig {
        url,
        name,
        remote_timeout,
        headers,
        write_relabel_configs,
        queue_config,
        metadata_config,
        http,
        send_exemplars: rw.send_exemplars.unwrap_or(false),
        send_native_histograms: rw.send_native_histograms.unwrap_or(false),
        // An entry's own value wins, 0 included (no limit for it).
        max_hourly_series: rw
            .max_hourly_series
            .map_or(agent.max_hourly_series, to_usize),
        max_daily_series: rw.max_daily_series.map_or(agent.max_daily_series, to_usize),
    }
}

/// The name of an endpoint configured without one: the first 6 hex digits of an MD5 (as
/// Prometheus names queues), here over the URL and headers only, so that tuning the queue
/// does not rename the endpoint (and lose its place in the buffer).
fn generated_name(url: &str, headers: &BTreeMap<String, String>) -> String {
    use md5::Digest;
    let mut hasher = md5::Md5::new();
    hasher.update(url.as_bytes());
    for (name, value) in headers {
        hasher.update(b"\n");
        hasher.update(name.to_ascii_lowercase().as_bytes());
        hasher.update(b": ");
        hasher.update(value.as_bytes());
    }
    let digest = hasher.finalize();
    digest[..3].iter().map(|b| format!("{b:02x}")).collect()
}

/// An absolute `http://` or `https://` URL with a host.
fn check_http_url(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "must be an absolute http or https URL")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Err("the scheme must be http or https"),
        None => return Err("must be an absolute http or https URL"),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err("the URL has no host"),
    }
}

fn queue_config(cx: &mut Cx<'_>, path: &str, raw: Option<&RawQueueConfig>) -> QueueConfig {
    let d = QueueConfig::default();
    let Some(q) = raw else { return d };
    let key = |k: &str| format!("{path}.{k}");
    let resolved = QueueConfig {
        capacity: q.capacity.map_or(d.capacity, to_usize),
        min_shards: q.min_shards.map_or(d.min_shards, to_usize),
        max_shards: q.max_shards.map_or(d.max_shards, to_usize),
        max_samples_per_send: q
            .max_samples_per_send
            .map_or(d.max_samples_per_send, to_usize),
        batch_send_deadline: cx
            .duration(&key("batch_send_deadline"), q.batch_send_deadline.as_ref())
            .unwrap_or(d.batch_send_deadline),
        min_backoff: cx
            .duration(&key("min_backoff"), q.min_backoff.as_ref())
            .unwrap_or(d.min_backoff),
        max_backoff: cx
            .duration(&key("max_backoff"), q.max_backoff.as_ref())
            .unwrap_or(d.max_backoff),
        retry_on_http_429: q.retry_on_http_429.unwrap_or(d.retry_on_http_429),
        sample_age_limit: cx
            .duration(&key("sample_age_limit"), q.sample_age_limit.as_ref())
            .unwrap_or(d.sample_age_limit),
    };
    // Prometheus takes these as given; values that would stall or spin the queue are refused
    // here instead.
    for (name, value) in [
        ("capacity", resolved.capacity),
        ("max_shards", resolved.max_shards),
        ("min_shards", resolved.min_shards),
        ("max_samples_per_send", resolved.max_samples_per_send),
    ] {
        if value == 0 {
            cx.report(&key(name), None, format!("{name} must be greater than 0"));
        }
    }
    // A clash between two keys is shown at the one that is written (prefer the first named).
    let written = |first: &'static str, first_set: bool, second: &'static str| {
        if first_set { first } else { second }
    };
    if resolved.min_shards > resolved.max_shards {
        cx.report(
            &key(written("min_shards", q.min_shards.is_some(), "max_shards")),
            None,
            format!(
                "min_shards {} greater than max_shards {}",
                resolved.min_shards, resolved.max_shards
            ),
        );
    }
    if resolved.batch_send_deadline.is_zero() {
        cx.report(
            &key("batch_send_deadline"),
            None,
            "batch_send_deadline must be greater than 0",
        );
    }
    if resolved.min_backoff.is_zero() {
        cx.report(
            &key("min_backoff"),
            None,
            "min_backoff must be greater than 0",
        );
    }
    if resolved.min_backoff > resolved.max_backoff {
        cx.report(
            &key(written(
                "max_backoff",
                q.max_backoff.is_some(),
                "min_backoff",
            )),
            None,
            format!(
                "max_backoff {} less than min_backoff {}",
                format_duration(resolved.max_backoff),
                format_duration(resolved.min_backoff)
            ),
        );
    }
    resolved
}

fn metadata_config(cx: &mut Cx<'_>, path: &str, raw: Option<&RawMetadataConfig>) -> MetadataConfig {
    let d = MetadataConfig::default();
    let Some(m) = raw else { return d };
    let key = |k: &str| format!("{path}.{k}");
    let resolved = MetadataConfig {
        send: m.send.unwrap_or(d.send),
        send_interval: cx
            .duration(&key("send_interval"), m.send_interval.as_ref())
            .unwrap_or(d.send_interval),
        max_samples_per_send: m
            .max_samples_per_send
            .map_or(d.max_samples_per_send, to_usize),
    };
    if resolved.send && resolved.send_interval.is_zero() {
        cx.report(
            &key("send_interval"),
            None,
            "send_interval must be greater than 0",
        );
    }
    if resolved.send && resolved.max_samples_per_send == 0 {
        cx.report(
            &key("max_samples_per_send"),
            None,
            "max_samples_per_send must be greater than 0",
        );
    }
    resolved
}

/// Prometheus's `HTTPClientConfig.Validate` and `TLSConfig.Validate`, all checks run.
/// `path` is the entry holding the (inline) keys; `for_scrape` picks the defaults (remote
/// write has HTTP/2 off by default, as Prometheus's `DefaultRemoteWriteHTTPClientConfig`).
fn http_client(
    cx: &mut Cx<'_>,
    path: &str,
    raw: RawHttpClient<'_>,
    for_scrape: bool,
) -> HttpClientConfig {
    let key = |k: &str| format!("{path}.{k}");
    // Go treats an empty string as unset throughout.
    let set = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
    let bearer_token = set(raw.bearer_token);
    let bearer_token_file = set(raw.bearer_token_file);
    let has_bearer = bearer_token.is_some() || bearer_token_file.is_some();

    if bearer_token.is_some() && bearer_token_file.is_some() {
        cx.report(
            &key("bearer_token_file"),
            None,
            "at most one of bearer_token & bearer_token_file must be configured",
        );
    }
    if raw.basic_auth.is_some() && has_bearer {
        cx.report(
            &key("basic_auth"),
            None,
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
        );
    }

    let basic_auth = raw.basic_auth.map(|b| {
        let password = set(b.password.as_deref());
        let password_file = set(b.password_file.as_deref());
        if password.is_some() && password_file.is_some() {
            cx.report(
                &key("basic_auth.password_file"),
                None,
                "at most one of basic_auth password & password_file must be configured",
            );
        }
        let username_file = set(b.username_file.as_deref());
        if b.username.as_deref().is_some_and(|u| !u.is_empty()) && username_file.is_some() {
            cx.report(
                &key("basic_auth.username_file"),
                None,
                "at most one of basic_auth username & username_file must be configured",
            );
        }
        cx.only_empty(
            &key("basic_auth.username_ref"),
            b.username_ref.as_deref(),
            "secret references are not implemented",
        );
        cx.only_empty(
            &key("basic_auth.password_ref"),
            b.password_ref.as_deref(),
            "secret references are not implemented; use password_file",
        );
        BasicAuth {
            username: b.username.clone().unwrap_or_default(),
            username_file: username_file.map(PathBuf::from),
            password: password.map(Secret::new),
            password_file: password_file.map(PathBuf::from),
        }
    });

    let authorization = match raw.authorization {
        Some(a) => {
            if has_bearer {
                cx.report(
                    &key("authorization"),
                    None,
                    "authorization is not compatible with bearer_token & bearer_token_file",
                );
            }
            let credentials = set(a.credentials.as_deref());
            let credentials_file = set(a.credentials_file.as_deref());
            if credentials.is_some() && credentials_file.is_some() {
                cx.report(
                    &key("authorization.credentials_file"),
                    None,
                    "at most one of authorization credentials & credentials_file must be configured",
                );
            }
            let mut kind = a.kind.as_deref().unwrap_or("").trim().to_owned();
            if kind.is_empty() {
                kind = "Bearer".to_owned();
            }
            if kind.eq_ignore_ascii_case("basic") {
                cx.report(
                    &key("authorization.type"),
                    None,
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
                );
            }
            if raw.basic_auth.is_some() {
                cx.report(
                    &key("authorization"),
                    None,
                    "at most one of basic_auth, oauth2 & authorization must be configured",
                );
            }
            cx.only_empty(
                &key("authorization.credentials_ref"),
                a.credentials_ref.as_deref(),
                "secret references are not implemented; use credentials_file",
            );
            Some(Authorization {
                kind,
                credentials: credentials.map(Secret::new),
                credentials_file: credentials_file.map(PathBuf::from),
            })
        }
        // The legacy keys become an `Authorization: Bearer` (the file wins if both are set,
        // which is reported above).
        None => match (bearer_token, bearer_token_file) {
            (_, Some(file)) => Some(Authorization {
                kind: "Bearer".to_owned(),
                credentials: None,
                credentials_file: Some(PathBuf::from(file)),
            }),
            (Some(token), None) => Some(Authorization {
                kind: "Bearer".to_owned(),
                credentials: Some(Secret::new(token)),
                credentials_file: None,
            }),
            (None, None) => None,
        },
    };

    let tls_config = tls_config(cx, &key("tls_config"), raw.tls_config);

    // Rejected: each would silently send requests another way than configured.
    cx.only_absent(&key("oauth2"), raw.oauth2, "OAuth 2.0 is not implemented");
    cx.only_empty(
        &key("proxy_url"),
        raw.proxy_url,
        "HTTP proxies are not implemented",
    );
    cx.only_empty(
        &key("no_proxy"),
        raw.no_proxy,
        "HTTP proxies are not implemented",
    );
    cx.only_false(
        &key("proxy_from_environment"),
        raw.proxy_from_environment,
        "HTTP proxies are not implemented",
    );
    cx.only_absent(
        &key("proxy_connect_header"),
        raw.proxy_connect_header,
        "HTTP proxies are not implemented",
    );
    cx.only_absent(
        &key("http_headers"),
        raw.http_headers,
        "custom HTTP headers are not implemented for this client",
    );

    let defaults = if for_scrape {
        HttpClientConfig::default()
    } else {
        RemoteWriteConfig::default().http
    };
    HttpClientConfig {
        basic_auth,
        authorization,
        tls_config,
        follow_redirects: raw.follow_redirects.unwrap_or(defaults.follow_redirects),
        enable_http2: raw.enable_http2.unwrap_or(defaults.enable_http2),
    }
}

fn tls_config(cx: &mut Cx<'_>, path: &str, raw: Option<&super::raw::RawTlsConfig>) -> TlsConfig {
    let Some(t) = raw else {
        return TlsConfig::default();
    };
    let key = |k: &str| format!("{path}.{k}");
    let set = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let resolved = TlsConfig {
        ca_file: set(&t.ca_file).map(PathBuf::from),
        ca: set(&t.ca),
        cert_file: set(&t.cert_file).map(PathBuf::from),
        cert: set(&t.cert),
        key_file: set(&t.key_file).map(PathBuf::from),
        key: set(&t.key).map(Secret::new),
        server_name: set(&t.server_name),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        min_version: t.min_version.as_ref().and_then(|v| match v.value.as_str() {
            "TLS12" | "TLS13" => Some(v.value.clone()),
            // rustls speaks TLS 1.2 and 1.3 only: a lower minimum is met by its default.
            "TLS10" | "TLS11" | "" => None,
            other => {
                cx.report(
                    &key("min_version"),
                    Some(&v.referenced),
                    format!("unknown TLS version: {other}"),
                );
                None
            }
        }),
    };
    if resolved.ca.is_some() && resolved.ca_file.is_some() {
        cx.report(
            &key("ca_file"),
            None,
            "at most one of ca & ca_file must be configured",
        );
    }
    let has_cert = resolved.cert.is_some() || resolved.cert_file.is_some();
    let has_key = resolved.key.is_some() || resolved.key_file.is_some();
    if resolved.cert.is_some() && resolved.cert_file.is_some() {
        cx.report(
            &key("cert_file"),
            None,
            "at most one of cert & cert_file must be configured",
        );
    }
    if resolved.key.is_some() && resolved.key_file.is_some() {
        cx.report(
            &key("key_file"),
            None,
            "at most one of key and key_file must be configured",
        );
    }
    if has_cert && !has_key {
        cx.report(
            path,
            None,
            "exactly one of key or key_file must be configured when a client certificate is configured",
        );
    } else if has_key && !has_cert {
        cx.report(
            path,
            None,
            "exactly one of cert or cert_file must be configured when a client key is configured",
        );
    }
    // Rejected: a maximum scrapelet would not enforce, and secret references it cannot follow.
    cx.only_empty(
        &key("max_version"),
        t.max_version.as_deref(),
        "a maximum TLS version is not implemented",
    );
    for (name, value) in [
        ("ca_ref", &t.ca_ref),
        ("cert_ref", &t.cert_ref),
        ("key_ref", &t.key_ref),
    ] {
        cx.only_empty(
            &key(name),
            value.as_deref(),
            "secret references are not implemented",
        );
    }
    resolved
}

/// Counts are u64 in YAML; on a 32-bit target a huge one saturates (it means "no limit" in
/// practice anyway).
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Joins relative file paths with `dir`, as Prometheus's `SetDirectory` does for a file it
/// loaded: credentials, CA, certificate and key files are relative to the config file.
pub(super) fn set_directory(config: &mut Config, dir: &std::path::Path) {
    let join = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    for k in config
        .scrape_configs
        .iter_mut()
        .flat_map(|s| &mut s.kubernetes_sd_configs)
    {
        k.kubeconfig_file.as_mut().map(join);
    }
    let http_clients = config
        .scrape_configs
        .iter_mut()
        .flat_map(|s| {
            std::iter::once(&mut s.http)
                .chain(s.kubernetes_sd_configs.iter_mut().map(|k| &mut k.http))
        })
        .chain(config.remote_write.iter_mut().map(|r| &mut r.http));
    for http in http_clients {
        if let Some(b) = &mut http.basic_auth {
            b.username_file.as_mut().map(join);
            b.password_file.as_mut().map(join);
        }
        if let Some(a) = &mut http.authorization {
            a.credentials_file.as_mut().map(join);
        }
        let tls = &mut http.tls_config;
        for file in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file] {
            file.as_mut().map(join);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        for ok in ["a", "_", "job", "__address__", "A1_b"] {
            assert!(is_valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é", "a b"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn http_urls() {
        assert_eq!(check_http_url("http://a:9090/api/v1/write"), Ok(()));
        assert_eq!(
            check_http_url("https://mimir.example.com/api/v1/push"),
            Ok(())
        );
        assert!(check_http_url("mimir:9009/api/v1/push").is_err());
        assert!(check_http_url("/api/v1/write").is_err());
        assert!(check_http_url("ftp://a/b").is_err());
        assert!(check_http_url("http://").is_err());
        assert!(check_http_url("http://a b/").is_err());
    }

    #[test]
    fn generated_names_are_stable_and_depend_on_url_and_headers() {
        let none = BTreeMap::new();
        let a = generated_name("http://a/write", &none);
        assert_eq!(a.len(), 6);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, generated_name("http://a/write", &none));
        assert_ne!(a, generated_name("http://b/write", &none));
        let tenant = BTreeMap::from([("X-Scope-OrgID".to_owned(), "t1".to_owned())]);
        assert_ne!(a, generated_name("http://a/write", &tenant));
        // md5("http://a/write") starts with these 3 bytes: the name must never change.
        assert_eq!(a, "b8a983");
    }
}
