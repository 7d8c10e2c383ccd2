//! From discovered label sets to scrape targets, as Prometheus's `PopulateLabels` does it.
//!
//! Sequence for each discovered target (group labels merged under its own labels):
//! 1. add `job`, `__scrape_interval__`, `__scrape_timeout__`, `__metrics_path__`, `__scheme__`
//!    where absent, and `__param_<name>` for the first value of each configured param;
//! 2. apply `relabel_configs`; a drop makes a dropped target (kept for "am I scraping all the
//!    pods?", with its discovered labels);
//! 3. require `__address__`; add the scheme's default port when the address has none (as
//!    Prometheus 2.x does); reject an address with a scheme or a path;
//! 4. read interval and timeout back from their labels (relabeling may change them);
//! 5. default `instance` to the address; the target's public labels are those not starting
//!    with `__`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Scheme, ScrapeConfig, format_duration, parse_duration};
use crate::discovery::TargetGroup;
use crate::labels::{
    ADDRESS, INSTANCE, JOB, Labels, LabelsBuilder, META_PREFIX, METRICS_PATH, PARAM_PREFIX,
    RESERVED_PREFIX, SCHEME, SCRAPE_INTERVAL, SCRAPE_TIMEOUT,
};
use crate::relabel::{Relabeler, is_valid_label_name};

/// A target to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Labels attached to every series scraped from it (`job`, `instance`, ...).
    pub labels: Labels,
    /// Labels as discovered, before relabeling.
    pub discovered: Labels,
    /// The full scrape URL.
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
}

/// A discovered target that is not scraped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedTarget {
    /// Labels as discovered, before relabeling.
    pub discovered: Labels,
    /// `relabeling` when relabel_configs dropped it, otherwise the error that invalidated it.
    pub reason: String,
}

/// The targets of one job made from its discovered groups.
#[derive(Clone, Debug, Default)]
pub struct TargetSet {
    pub active: Vec<Target>,
    pub dropped: Vec<DroppedTarget>,
}

impl Target {
    /// A stable identity: equal targets (labels and URL) have equal keys, across processes.
    pub fn key(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&self.labels.stable_hash().to_le_bytes());
        h.update(self.url.as_bytes());
        h.update(&self.interval.as_millis().to_le_bytes());
        h.update(&self.timeout.as_millis().to_le_bytes());
        h.digest()
    }

    /// Where in each interval this target is scraped: a stable hash of the target modulo the
    /// interval, so that many targets spread evenly and a target keeps its slot across
    /// restarts.
    pub fn offset(&self) -> Duration {
        let interval_ns = self.interval.as_nanos().max(1) as u64;
        Duration::from_nanos(self.key() % interval_ns)
    }
}

/// Builds the targets of `cfg` from its discovered `groups`.
pub fn build(cfg: &ScrapeConfig, relabel: &Relabeler, groups: &[TargetGroup]) -> TargetSet {
    let mut set = TargetSet::default();
    for group in groups {
        for target in &group.targets {
            let mut lb = target.to_builder();
            for l in group.labels.iter() {
                if lb.get(l.name).is_none() {
                    lb.set(l.name, l.value);
                }
            }
            let discovered = lb.build();
            match populate(cfg, relabel, lb) {
                Ok(Some(t)) => set.active.push(Target { discovered, ..t }),
                Ok(None) => set.dropped.push(DroppedTarget {
                    discovered,
                    reason: "relabeling".to_owned(),
                }),
                Err(reason) => set.dropped.push(DroppedTarget { discovered, reason }),
            }
        }
    }
    set
}

/// Steps 1-5 of the module doc. `Ok(None)`: dropped by relabeling.
fn populate(
    cfg: &ScrapeConfig,
    relabel: &Relabeler,
    mut lb: LabelsBuilder,
) -> Result<Option<Target>, String> {
    let scheme = match cfg.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    for (name, value) in [
        (JOB, cfg.job_name.clone()),
        (SCRAPE_INTERVAL, format_duration(cfg.scrape_interval)),
        (SCRAPE_TIMEOUT, format_duration(cfg.scrape_timeout)),
        (METRICS_PATH, cfg.metrics_path.clone()),
        (SCHEME, scheme.to_owned()),
    ] {
        if lb.get(name).is_none() {
            lb.set(name, &value);
        }
    }
    for (name, values) in &cfg.params {
        if let Some(first) = values.first() {
            lb.set(&format!("{PARAM_PREFIX}{name}"), first);
        }
    }
    if !relabel.is_empty() {
        if !relabel.process(&mut lb) {
            return Ok(None);
        }
        if let Some(l) = lb.iter().find(|l| !is_valid_label_name(l.name)) {
            return Err(format!(
                "relabeling produced invalid label name {:?}",
                l.name
            ));
        }
    }
    let mut addr = lb
        .get(ADDRESS)
        .ok_or_else(|| "no address".to_owned())?
        .to_owned();
    let scheme = lb.get(SCHEME).unwrap_or("").to_owned();
    if needs_port(&addr) {
        match scheme.as_str() {
            "http" | "" => addr.push_str(":80"),
            "https" => addr.push_str(":443"),
            other => return Err(format!("invalid scheme: {other:?}")),
        }
        lb.set(ADDRESS, &addr);
    }
    check_address(&addr)?;
    let interval_text = lb.get(SCRAPE_INTERVAL).unwrap_or("").to_owned();
    let interval = parse_duration(&interval_text)
        .map_err(|e| format!("error parsing scrape interval: {e}"))?;
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".to_owned());
    }
    let timeout_text = lb.get(SCRAPE_TIMEOUT).unwrap_or("").to_owned();
    let timeout =
        parse_duration(&timeout_text).map_err(|e| format!("error parsing scrape timeout: {e}"))?;
    if timeout.is_zero() {
        return Err("scrape timeout cannot be 0".to_owned());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout_text:?} > {interval_text:?})"
        ));
    }
    lb.retain(|name, _| !name.starts_with(META_PREFIX));
    if lb.get(INSTANCE).is_none() {
        lb.set(INSTANCE, &addr);
    }
    let url = scrape_url(&lb, &cfg.params, &scheme, &addr);
    lb.retain(|name, _| !name.starts_with(RESERVED_PREFIX));
    Ok(Some(Target {
        labels: lb.build(),
        discovered: Labels::empty(),
        url,
        interval,
        timeout,
    }))
}

/// Whether `addr` has no port but would be a valid `host:port` with one.
fn needs_port(addr: &str) -> bool {
    split_host_port(addr).is_none() && split_host_port(&format!("{addr}:1234")).is_some()
}

/// Go's `net.SplitHostPort`, enough of it: `host:port` or `[v6]:port`.
fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        if port.contains(':') || host.contains(['[', ']']) {
            return None;
        }
        return Some((host, port));
    }
    let (host, port) = addr.rsplit_once(':')?;
    if host.contains(':') || host.contains(['[', ']']) || port.contains(['[', ']']) {
        return None;
    }
    Some((host, port))
}

/// Prometheus's `CheckTargetAddress`: no scheme, no path.
fn check_address(addr: &str) -> Result<(), String> {
    if addr.contains('/') {
        return Err(format!("{addr:?} is not a valid hostname"));
    }
    Ok(())
}

/// `scheme://address/path?params`, where `__param_<name>` labels replace the first value of a
/// configured param or add it (Prometheus's `Target.URL`). Query keys sorted, as Go encodes.
fn scrape_url(
    lb: &LabelsBuilder,
    config_params: &BTreeMap<String, Vec<String>>,
    scheme: &str,
    addr: &str,
) -> String {
    let mut params = config_params.clone();
    for l in lb.iter() {
        if let Some(name) = l.name.strip_prefix(PARAM_PREFIX) {
            match params.get_mut(name).and_then(|v| v.first_mut()) {
                Some(first) => *first = l.value.to_owned(),
                None => {
                    params.insert(name.to_owned(), vec![l.value.to_owned()]);
                }
            }
        }
    }
    let path = lb.get(METRICS_PATH).unwrap_or("");
    let mut url = format!("{scheme}://{addr}");
    if !path.is_empty() && !path.starts_with('/') {
        url.push('/');
    }
    url.push_str(&escape_path(path));
    let mut sep = '?';
    for (name, values) in &params {
        for value in values {
            url.push(sep);
            sep = '&';
            url.push_str(&query_escape(name));
            url.push('=');
            url.push_str(&query_escape(value));
        }
    }
    url
}

/// Percent-encodes what may not appear raw in a URL path (as Go's `url.PathEscape` for paths).
fn escape_path(path: &str) -> String {
    percent_encode(path, |b| {
        b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b)
    })
}

/// Go's `url.QueryEscape`: space becomes `+`.
fn query_escape(s: &str) -> String {
    percent_encode(s, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)).replace("%20", "+")
}

fn percent_encode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    fn config(job: &str) -> ScrapeConfig {
        ScrapeConfig {
            job_name: job.to_owned(),
            scrape_interval: Duration::from_secs(15),
            scrape_timeout: Duration::from_secs(10),
            ..Default::default()
        }
    }

    fn group(targets: &[&[(&str, &str)]], labels: &[(&str, &str)]) -> TargetGroup {
        TargetGroup {
            source: "test".into(),
            targets: targets
                .iter()
                .map(|t| Labels::from_pairs(t.iter().copied()))
                .collect(),
            labels: Labels::from_pairs(labels.iter().copied()),
        }
    }

    #[test]
    fn plain_target_gets_job_instance_and_url() {
        let cfg = config("node");
        let set = build(
            &cfg,
            &Relabeler::default(),
            &[group(&[&[(ADDRESS, "10.0.0.1:9100")]], &[("env", "prod")])],
        );
        assert_eq!(set.dropped, vec![]);
        let t = &set.active[0];
        assert_eq!(t.url, "http://10.0.0.1:9100/metrics");
        assert_eq!(
            t.labels,
            Labels::from_pairs([
                ("env", "prod"),
                ("instance", "10.0.0.1:9100"),
                ("job", "node")
            ])
        );
        assert_eq!(t.discovered.get(ADDRESS), Some("10.0.0.1:9100"));
        assert_eq!(t.discovered.get("env"), Some("prod"));
        assert_eq!(t.interval, Duration::from_secs(15));
    }

    #[test]
    fn target_labels_win_over_group_labels() {
        let set = build(
            &config("j"),
            &Relabeler::default(),
            &[group(
                &[&[(ADDRESS, "a:1"), ("env", "dev")]],
                &[("env", "prod")],
            )],
        );
        assert_eq!(set.active[0].labels.get("env"), Some("dev"));
    }

    #[test]
    fn default_ports_and_params() {
        let mut cfg = config("j");
        cfg.params
            .insert("module".into(), vec!["http_2xx".into(), "b".into()]);
        cfg.params.insert("x y".into(), vec!["1&2".into()]);
        let set = build(
            &cfg,
            &Relabeler::default(),
            &[group(
                &[&[(ADDRESS, "example.org")], &[(ADDRESS, "[::1]")]],
                &[],
            )],
        );
        assert_eq!(
            set.active[0].url,
            "http://example.org:80/metrics?module=http_2xx&module=b&x+y=1%262"
        );
        assert_eq!(set.active[0].labels.get(INSTANCE), Some("example.org:80"));
        assert_eq!(
            set.active[1].url,
            "http://[::1]:80/metrics?module=http_2xx&module=b&x+y=1%262"
        );
    }

    #[test]
    fn https_default_port() {
        let mut cfg = config("j");
        cfg.scheme = Scheme::Https;
        let set = build(
            &cfg,
            &Relabeler::default(),
            &[group(&[&[(ADDRESS, "h")]], &[])],
        );
        assert_eq!(set.active[0].url, "https://h:443/metrics");
    }

    #[test]
    fn invalid_addresses_are_dropped_with_reason() {
        let set = build(
            &config("j"),
            &Relabeler::default(),
            &[group(
                &[&[(ADDRESS, "http://a:1/x")], &[("foo", "bar")]],
                &[],
            )],
        );
        assert!(set.active.is_empty());
        assert_eq!(set.dropped.len(), 2);
        assert!(
            set.dropped[0].reason.contains("not a valid hostname"),
            "{}",
            set.dropped[0].reason
        );
        assert_eq!(set.dropped[1].reason, "no address");
    }

    #[test]
    fn keys_are_stable_and_distinguish_targets() {
        let g = group(&[&[(ADDRESS, "a:1")], &[(ADDRESS, "a:2")]], &[]);
        let a = build(
            &config("j"),
            &Relabeler::default(),
            std::slice::from_ref(&g),
        );
        let b = build(&config("j"), &Relabeler::default(), &[g]);
        assert_eq!(a.active[0].key(), b.active[0].key());
        assert_ne!(a.active[0].key(), a.active[1].key());
        assert!(a.active[0].offset() < Duration::from_secs(15));
    }
}
