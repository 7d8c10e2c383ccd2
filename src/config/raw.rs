//! The YAML as written: a serde model of Prometheus's config file (the keys scrapelet knows),
//! before defaults, inheritance and validation.
//!
//! Rules of this model:
//! - every struct denies unknown keys, so a typo is an error that names the key and its line;
//! - every key is optional here (`null` counts as absent, as in Prometheus); what is required
//!   is checked in `resolve`, so that all such problems are reported at once;
//! - values that `resolve` validates keep their position ([`Spanned`]); durations, sizes, URLs
//!   and names stay strings until then;
//! - keys that Prometheus knows and scrapelet does not implement are fields too, so `resolve`
//!   can accept-and-ignore them or reject them with a reason (see its `unsupported_*`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_saphyr::Spanned;

use crate::relabel::RelabelConfig;

pub(super) type S<T> = Spanned<T>;

/// A list whose entries may be `null` (Prometheus reports those), each with its position.
pub(super) type Entries<T> = Vec<S<Option<T>>>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub global: Option<RawGlobal>,
    pub scrape_configs: Option<Entries<RawScrapeConfig>>,
    pub remote_write: Option<Entries<RawRemoteWrite>>,
    pub agent: Option<RawAgent>,

    // Prometheus keys with no scrapelet equivalent (see resolve::unsupported_top_level).
    pub rule_files: Option<Vec<IgnoredAny>>,
    pub remote_read: Option<Vec<IgnoredAny>>,
    pub alerting: Option<RawAlerting>,
    pub scrape_config_files: Option<Vec<IgnoredAny>>,
    #[expect(dead_code, reason = "accepted and ignored, see resolve")]
    pub storage: Option<IgnoredAny>,
    #[expect(dead_code, reason = "accepted and ignored, see resolve")]
    pub tracing: Option<IgnoredAny>,
    #[expect(dead_code, reason = "accepted and ignored, see resolve")]
    pub runtime: Option<IgnoredAny>,
    #[expect(dead_code, reason = "accepted and ignored, see resolve")]
    pub otlp: Option<IgnoredAny>,
}

/// `global:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub scrape_interval: Option<S<String>>,
    pub scrape_timeout: Option<S<String>>,
    pub external_labels: Option<StringMap>,
    pub body_size_limit: Option<S<RawSize>>,
    pub sample_limit: Option<u64>,
    pub label_limit: Option<u64>,
    pub label_name_length_limit: Option<u64>,
    pub label_value_length_limit: Option<u64>,
    pub target_limit: Option<u64>,
    pub series_limit: Option<u64>,
    pub series_limit_per_metric: Option<u64>,
    pub label_limit_keep: Option<Vec<S<String>>>,

    // Known to Prometheus, ignored or rejected by scrapelet.
    pub evaluation_interval: Option<S<String>>,
    pub rule_query_offset: Option<S<String>>,
    #[expect(dead_code, reason = "accepted and ignored, see resolve")]
    pub query_log_file: Option<IgnoredAny>,
    pub scrape_failure_log_file: Option<String>,
    pub keep_dropped_targets: Option<u64>,
    pub scrape_protocols: Option<Vec<S<String>>>,
    #[expect(dead_code, reason = "accepted and ignored, see resolve")]
    pub metric_name_validation_scheme: Option<IgnoredAny>,
    #[expect(dead_code, reason = "accepted and ignored, see resolve")]
    pub metric_name_escaping_scheme: Option<IgnoredAny>,
    pub scrape_native_histograms: Option<bool>,
    #[expect(dead_code, reason = "accepted and ignored, see resolve")]
    pub always_scrape_classic_histograms: Option<bool>,
    pub convert_classic_histograms_to_nhcb: Option<bool>,
    pub extra_scrape_metrics: Option<bool>,
}

/// `alerting:`; only its emptiness matters (agent mode refuses a non-empty one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerting {
    pub alertmanagers: Option<Vec<IgnoredAny>>,
    pub alert_relabel_configs: Option<Vec<IgnoredAny>>,
}

/// `agent:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub debug_output: Option<bool>,
    pub buffer: Option<RawBuffer>,
    pub scrape: Option<RawAgentScrape>,
    pub remote_write: Option<RawAgentRemoteWrite>,
}

/// `agent.scrape:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgentScrape {
    pub max_body_size: Option<S<RawSize>>,
}

/// `agent.remote_write:`: what every `remote_write` entry has unless it sets its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgentRemoteWrite {
    pub max_hourly_series: Option<u64>,
    pub max_daily_series: Option<u64>,
}

/// `agent.buffer:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuffer {
    pub max_size: Option<S<RawSize>>,
    pub max_age: Option<S<String>>,
    pub fsync_interval: Option<S<String>>,
}

/// Adds Prometheus's inline `HTTPClientConfig` keys to a struct (serde's `flatten` cannot be
/// used: it defeats both `deny_unknown_fields` and `Spanned`), and a view of them.
macro_rules! with_http_client {
    (
        $(#[$meta:meta])*
        pub(super) struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub(super) struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            pub basic_auth: Option<RawBasicAuth>,
            pub authorization: Option<RawAuthorization>,
            pub bearer_token: Option<String>,
            pub bearer_token_file: Option<String>,
            pub tls_config: Option<RawTlsConfig>,
            pub follow_redirects: Option<bool>,
            pub enable_http2: Option<bool>,
            // Known to Prometheus, rejected by scrapelet.
            pub oauth2: Option<IgnoredAny>,
            pub proxy_url: Option<String>,
            pub no_proxy: Option<String>,
            pub proxy_from_environment: Option<bool>,
            pub proxy_connect_header: Option<IgnoredAny>,
            pub http_headers: Option<IgnoredAny>,
        }

        impl $name {
            pub(super) fn http_client(&self) -> RawHttpClient<'_> {
                RawHttpClient {
                    basic_auth: self.basic_auth.as_ref(),
                    authorization: self.authorization.as_ref(),
                    bearer_token: self.bearer_token.as_deref(),
                    bearer_token_file: self.bearer_token_file.as_deref(),
                    tls_config: self.tls_config.as_ref(),
                    follow_redirects: self.follow_redirects,
                    enable_http2: self.enable_http2,
                    oauth2: self.oauth2.is_some(),
                    proxy_url: self.proxy_url.as_deref(),
                    no_proxy: self.no_proxy.as_deref(),
                    proxy_from_environment: self.proxy_from_environment,
                    proxy_connect_header: self.proxy_connect_header.is_some(),
                    http_headers: self.http_headers.is_some(),
                }
            }
        }
    };
}

with_http_client! {
    /// One `scrape_configs:` entry.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct RawScrapeConfig {
        pub job_name: Option<S<String>>,
        pub scrape_interval: Option<S<String>>,
        pub scrape_timeout: Option<S<String>>,
        pub metrics_path: Option<String>,
        pub scheme: Option<S<String>>,
        pub params: Option<BTreeMap<String, Vec<String>>>,
        pub honor_labels: Option<bool>,
        pub honor_timestamps: Option<bool>,
        pub enable_compression: Option<bool>,
        pub body_size_limit: Option<S<RawSize>>,
        pub sample_limit: Option<u64>,
        pub label_limit: Option<u64>,
        pub label_name_length_limit: Option<u64>,
        pub label_value_length_limit: Option<u64>,
        pub target_limit: Option<u64>,
        pub series_limit: Option<u64>,
        pub series_limit_per_metric: Option<u64>,
        pub label_limit_keep: Option<Vec<S<String>>>,
        pub static_configs: Option<Entries<RawStaticConfig>>,
        pub kubernetes_sd_configs: Option<Entries<RawKubernetesSdConfig>>,
        pub relabel_configs: Option<Entries<RelabelConfig>>,
        pub metric_relabel_configs: Option<Entries<RelabelConfig>>,

        // Known to Prometheus, ignored or rejected by scrapelet.
        pub track_timestamps_staleness: Option<bool>,
        pub scrape_protocols: Option<Vec<S<String>>>,
        pub fallback_scrape_protocol: Option<S<String>>,
        #[expect(dead_code, reason = "accepted and ignored, see resolve")]
        pub scrape_classic_histograms: Option<bool>,
        #[expect(dead_code, reason = "accepted and ignored, see resolve")]
        pub always_scrape_classic_histograms: Option<bool>,
        pub scrape_native_histograms: Option<bool>,
        pub convert_classic_histograms_to_nhcb: Option<bool>,
        pub extra_scrape_metrics: Option<bool>,
        #[expect(dead_code, reason = "accepted and ignored, see resolve")]
        pub native_histogram_bucket_limit: Option<u64>,
        #[expect(dead_code, reason = "accepted and ignored, see resolve")]
        pub native_histogram_min_bucket_factor: Option<f64>,
        pub keep_dropped_targets: Option<u64>,
        #[expect(dead_code, reason = "accepted and ignored, see resolve")]
        pub metric_name_validation_scheme: Option<IgnoredAny>,
        #[expect(dead_code, reason = "accepted and ignored, see resolve")]
        pub metric_name_escaping_scheme: Option<IgnoredAny>,
        pub scrape_failure_log_file: Option<String>,

        // Service discovery other than static_configs (rejected; see resolve).
        pub azure_sd_configs: Option<IgnoredAny>,
        pub consul_sd_configs: Option<IgnoredAny>,
        pub digitalocean_sd_configs: Option<IgnoredAny>,
        pub docker_sd_configs: Option<IgnoredAny>,
        pub dockerswarm_sd_configs: Option<IgnoredAny>,
        pub dns_sd_configs: Option<IgnoredAny>,
        pub ec2_sd_configs: Option<IgnoredAny>,
        pub eureka_sd_configs: Option<IgnoredAny>,
        pub file_sd_configs: Option<IgnoredAny>,
        pub gce_sd_configs: Option<IgnoredAny>,
        pub hetzner_sd_configs: Option<IgnoredAny>,
        pub http_sd_configs: Option<IgnoredAny>,
        pub ionos_sd_configs: Option<IgnoredAny>,
        pub kuma_sd_configs: Option<IgnoredAny>,
        pub lightsail_sd_configs: Option<IgnoredAny>,
        pub linode_sd_configs: Option<IgnoredAny>,
        pub marathon_sd_configs: Option<IgnoredAny>,
        pub nerve_sd_configs: Option<IgnoredAny>,
        pub nomad_sd_configs: Option<IgnoredAny>,
        pub openstack_sd_configs: Option<IgnoredAny>,
        pub ovhcloud_sd_configs: Option<IgnoredAny>,
        pub puppetdb_sd_configs: Option<IgnoredAny>,
        pub scaleway_sd_configs: Option<IgnoredAny>,
        pub serverset_sd_configs: Option<IgnoredAny>,
        pub stackit_sd_configs: Option<IgnoredAny>,
        pub triton_sd_configs: Option<IgnoredAny>,
        pub uyuni_sd_configs: Option<IgnoredAny>,
        pub vultr_sd_configs: Option<IgnoredAny>,
    }
}

with_http_client! {
    /// One `remote_write:` entry.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct RawRemoteWrite {
        pub url: Option<S<String>>,
        pub name: Option<S<String>>,
        pub remote_timeout: Option<S<String>>,
        pub headers: Option<StringMap>,
        pub write_relabel_configs: Option<Entries<RelabelConfig>>,
        pub queue_config: Option<RawQueueConfig>,
        pub metadata_config: Option<RawMetadataConfig>,
        pub send_exemplars: Option<bool>,
        pub send_native_histograms: Option<bool>,
        // scrapelet's own (vmagent's -remoteWrite.maxHourlySeries / maxDailySeries).
        pub max_hourly_series: Option<u64>,
        pub max_daily_series: Option<u64>,

        // Known to Prometheus, ignored or rejected by scrapelet.
        #[expect(dead_code, reason = "accepted and ignored, see resolve")]
        pub round_robin_dns: Option<bool>,
        pub protobuf_message: Option<S<String>>,
        pub sigv4: Option<IgnoredAny>,
        pub azuread: Option<IgnoredAny>,
        pub google_iam: Option<IgnoredAny>,
    }
}

with_http_client! {
    /// One `kubernetes_sd_configs:` entry.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct RawKubernetesSdConfig {
        pub role: Option<S<String>>,
        pub api_server: Option<S<String>>,
        pub kubeconfig_file: Option<String>,
        pub namespaces: Option<RawNamespaces>,
        pub selectors: Option<Entries<RawSelector>>,
        pub attach_metadata: Option<RawAttachMetadata>,
    }
}

/// `namespaces:` of a Kubernetes SD config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNamespaces {
    pub names: Option<Vec<String>>,
    pub own_namespace: Option<bool>,
}

/// One `selectors:` entry of a Kubernetes SD config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelector {
    pub role: Option<S<String>>,
    pub label: Option<S<String>>,
    pub field: Option<S<String>>,
}

/// `attach_metadata:` of a Kubernetes SD config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAttachMetadata {
    pub node: Option<bool>,
    pub namespace: Option<bool>,
}

/// `queue_config:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueueConfig {
    pub capacity: Option<u64>,
    pub min_shards: Option<u64>,
    pub max_shards: Option<u64>,
    pub max_samples_per_send: Option<u64>,
    pub batch_send_deadline: Option<S<String>>,
    pub min_backoff: Option<S<String>>,
    pub max_backoff: Option<S<String>>,
    pub retry_on_http_429: Option<bool>,
    pub sample_age_limit: Option<S<String>>,
}

/// `metadata_config:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetadataConfig {
    pub send: Option<bool>,
    pub send_interval: Option<S<String>>,
    pub max_samples_per_send: Option<u64>,
}

/// One `static_configs:` entry (a target group).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaticConfig {
    pub targets: Option<Vec<S<String>>>,
    pub labels: Option<StringMap>,
}

/// `basic_auth:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasicAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    // Known to Prometheus, rejected by scrapelet.
    pub username_file: Option<String>,
    pub username_ref: Option<String>,
    pub password_ref: Option<String>,
}

/// `authorization:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorization {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<String>,
    // Known to Prometheus, rejected by scrapelet.
    pub credentials_ref: Option<String>,
}

/// `tls_config:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsConfig {
    pub ca_file: Option<String>,
    pub ca: Option<String>,
    pub cert_file: Option<String>,
    pub cert: Option<String>,
    pub key_file: Option<String>,
    pub key: Option<String>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub min_version: Option<S<String>>,
    // Known to Prometheus, rejected by scrapelet.
    pub max_version: Option<String>,
    pub ca_ref: Option<String>,
    pub cert_ref: Option<String>,
    pub key_ref: Option<String>,
}

/// The HTTP client keys of a scrape config or remote write entry.
#[derive(Clone, Copy, Debug)]
pub(super) struct RawHttpClient<'a> {
    pub basic_auth: Option<&'a RawBasicAuth>,
    pub authorization: Option<&'a RawAuthorization>,
    pub bearer_token: Option<&'a str>,
    pub bearer_token_file: Option<&'a str>,
    pub tls_config: Option<&'a RawTlsConfig>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
    pub oauth2: bool,
    pub proxy_url: Option<&'a str>,
    pub no_proxy: Option<&'a str>,
    pub proxy_from_environment: Option<bool>,
    pub proxy_connect_header: bool,
    pub http_headers: bool,
}

/// A string-to-string mapping in file order, each key and value with its position
/// (`external_labels`, static `labels`, `headers`). Duplicate keys are a parse error.
#[derive(Debug, Default)]
pub(super) struct StringMap(pub Vec<(S<String>, S<String>)>);

/// A `body_size_limit` as written: a bare YAML integer is a byte count, a string has units.
#[derive(Debug)]
pub(super) enum RawSize {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = StringMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of strings to strings")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<StringMap, E> {
                Ok(StringMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringMap, A::Error> {
                let mut pairs = Vec::new();
                while let Some(key) = map.next_key::<S<String>>()? {
                    let value = map.next_value::<S<String>>()?;
                    pairs.push((key, value));
                }
                Ok(StringMap(pairs))
            }
        }
        d.deserialize_map(MapVisitor)
    }
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 10MB, or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(u64::try_from(v).map_or_else(|_| RawSize::Text(v.to_string()), RawSize::Bytes))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}
