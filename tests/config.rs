//! The config loader against realistic files (tests/fixtures/config/) and small inline cases:
//! every resolved field of a real agent-mode config, and the exact file:line:key of problems.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use scrapelet::config::{self, Config, Error, Problem, Scheme};
use scrapelet::labels::Labels;
use scrapelet::relabel::Action;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

/// The problems of an invalid config as (line, key, message).
fn problems(result: Result<Config, Error>) -> Vec<(u64, String, String)> {
    match result {
        Ok(_) => panic!("expected the config to be invalid"),
        Err(Error::Read { path, source }) => panic!("cannot read {}: {source}", path.display()),
        Err(Error::Invalid { problems }) => problems
            .into_iter()
            .map(|p| (p.line, p.key, p.message))
            .collect(),
    }
}

/// Checks that `yaml` (as `prom.yml`) is refused with exactly `expected` problems.
fn check(yaml: &str, expected: &[(u64, &str, &str)]) {
    let got = problems(config::parse(yaml, "prom.yml"));
    let want: Vec<(u64, String, String)> = expected
        .iter()
        .map(|(l, k, m)| (*l, (*k).to_owned(), (*m).to_owned()))
        .collect();
    assert_eq!(got, want, "problems of:\n{yaml}");
}

fn parse_ok(yaml: &str) -> Config {
    match config::parse(yaml, "prom.yml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got {e}\n{yaml}"),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn agent_mode_config_loads_unchanged() {
    let c = config::load(&fixture("agent.yml")).expect("agent.yml is valid");

    assert_eq!(c.global.scrape_interval, secs(30));
    assert_eq!(c.global.scrape_timeout, secs(10));
    assert_eq!(
        c.global.external_labels,
        labels(&[
            ("cluster", "prod-eu-west-1"),
            ("region", "eu-west-1"),
            ("replica", "agent-0")
        ])
    );
    assert!(!c.agent.debug_output);
    assert_eq!(c.scrape_configs.len(), 4);
    assert_eq!(c.remote_write.len(), 2);

    // node: own interval, inherited timeout and limits, relabel rules kept as written.
    let node = &c.scrape_configs[0];
    assert_eq!(node.job_name, "node");
    assert_eq!(node.scrape_interval, secs(15));
    assert_eq!(node.scrape_timeout, secs(10));
    assert_eq!(node.metrics_path, "/metrics");
    assert_eq!(node.scheme, Scheme::Http);
    assert!(node.params.is_empty());
    assert!(!node.honor_labels);
    assert!(node.honor_timestamps);
    assert!(node.enable_compression);
    assert_eq!(node.body_size_limit, 32 << 20);
    assert_eq!(node.sample_limit, 50_000);
    assert_eq!(
        (
            node.label_limit,
            node.label_name_length_limit,
            node.label_value_length_limit
        ),
        (0, 0, 0)
    );
    assert_eq!(node.target_limit, 0);
    assert!(node.http.basic_auth.is_none());
    assert!(node.http.authorization.is_none());
    assert!(node.http.follow_redirects);
    assert!(node.http.enable_http2);
    assert_eq!(node.static_configs.len(), 1);
    assert_eq!(
        node.static_configs[0].targets,
        ["10.0.1.12:9100", "10.0.1.13:9100"]
    );
    assert_eq!(
        node.static_configs[0].labels,
        labels(&[("env", "prod"), ("team", "platform")])
    );
    assert_eq!(node.relabel_configs.len(), 1);
    let r = &node.relabel_configs[0];
    assert_eq!(r.source_labels, ["__address__"]);
    assert_eq!(r.regex.source, r"([^:]+):\d+");
    assert_eq!(r.target_label, "instance");
    // `${1}` reaches the relabel engine untouched (no environment expansion there).
    assert_eq!(r.replacement, "${1}");
    assert_eq!(r.action, Action::Replace);
    assert_eq!(node.metric_relabel_configs.len(), 1);
    let m = &node.metric_relabel_configs[0];
    assert_eq!(m.source_labels, ["__name__"]);
    assert_eq!(
        m.regex.source,
        "node_(scrape_collector_.*|textfile_mtime_seconds)"
    );
    assert_eq!(m.action, Action::Drop);

    // kube-state-metrics: own timeout within its own interval, own limits.
    let ksm = &c.scrape_configs[1];
    assert_eq!(ksm.job_name, "kube-state-metrics");
    assert!(ksm.honor_labels);
    assert_eq!(ksm.scrape_interval, secs(60));
    assert_eq!(ksm.scrape_timeout, secs(25));
    assert_eq!(ksm.sample_limit, 200_000);
    assert_eq!(ksm.label_limit, 64);
    assert_eq!(ksm.body_size_limit, 32 << 20);
    assert_eq!(
        ksm.static_configs[0].targets,
        ["kube-state-metrics.kube-system.svc:8080"]
    );
    assert!(ksm.static_configs[0].labels.is_empty());
    assert!(ksm.relabel_configs.is_empty());
    assert_eq!(ksm.metric_relabel_configs[0].action, Action::LabelDrop);
    assert_eq!(
        ksm.metric_relabel_configs[0].regex.source,
        "uid|container_id"
    );

    // app: https, params, TLS client certificate, authorization from a file.
    let app = &c.scrape_configs[2];
    assert_eq!(app.job_name, "app");
    assert_eq!(app.scrape_interval, secs(30));
    assert_eq!(app.scrape_timeout, secs(10));
    assert_eq!(app.metrics_path, "/internal/metrics");
    assert_eq!(app.scheme, Scheme::Https);
    assert_eq!(app.params.len(), 2);
    assert_eq!(app.params["format"], ["prometheus"]);
    assert_eq!(app.params["collect[]"], ["cpu", "memory"]);
    assert!(!app.honor_timestamps);
    assert!(!app.enable_compression);
    assert_eq!(app.body_size_limit, 512 << 10);
    assert_eq!(app.sample_limit, 50_000);
    assert_eq!(app.target_limit, 100);
    assert_eq!(app.label_name_length_limit, 128);
    assert_eq!(app.label_value_length_limit, 2048);
    let tls = &app.http.tls_config;
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(Path::new("/etc/prometheus/certs/ca.pem"))
    );
    assert_eq!(
        tls.cert_file.as_deref(),
        Some(Path::new("/etc/prometheus/certs/client.pem"))
    );
    assert_eq!(
        tls.key_file.as_deref(),
        Some(Path::new("/etc/prometheus/certs/client-key.pem"))
    );
    assert_eq!(tls.server_name.as_deref(), Some("app.internal"));
    assert!(!tls.insecure_skip_verify);
    assert_eq!(tls.min_version.as_deref(), Some("TLS12"));
    assert!(tls.ca.is_none() && tls.cert.is_none() && tls.key.is_none());
    let auth = app.http.authorization.as_ref().expect("authorization");
    assert_eq!(auth.kind, "Bearer");
    assert!(auth.credentials.is_none());
    assert_eq!(
        auth.credentials_file.as_deref(),
        Some(Path::new("/var/run/secrets/app-token"))
    );
    assert!(!app.http.follow_redirects);
    assert!(app.http.enable_http2);
    assert_eq!(app.static_configs.len(), 2);
    assert_eq!(
        app.static_configs[0].targets,
        ["app-0.app.svc:8443", "app-1.app.svc:8443"]
    );
    assert_eq!(app.static_configs[0].labels, labels(&[("service", "app")]));
    assert_eq!(app.static_configs[1].targets, ["app-canary.app.svc:8443"]);
    assert_eq!(
        app.static_configs[1].labels,
        labels(&[("service", "app"), ("track", "canary")])
    );

    // pushgateway: bearer_token becomes an Authorization: Bearer header.
    let pg = &c.scrape_configs[3];
    assert_eq!(pg.job_name, "pushgateway");
    assert!(pg.honor_labels);
    let auth = pg.http.authorization.as_ref().expect("authorization");
    assert_eq!(auth.kind, "Bearer");
    assert_eq!(
        auth.credentials.as_ref().map(|s| s.expose()),
        Some("s3cr3t-t0ken")
    );
    assert!(auth.credentials_file.is_none());
    assert!(
        !format!("{c:?}").contains("s3cr3t-t0ken"),
        "secret shown by Debug"
    );
    assert!(!pg.http.enable_http2);
    assert_eq!(pg.static_configs[0].targets, ["pushgateway:9091"]);

    // mimir: everything set.
    let mimir = &c.remote_write[0];
    assert_eq!(mimir.url, "https://mimir.example.com/api/v1/push");
    assert_eq!(mimir.name, "mimir");
    assert_eq!(mimir.remote_timeout, secs(60));
    assert_eq!(mimir.headers.len(), 1);
    assert_eq!(mimir.headers["X-Scope-OrgID"], "team-platform");
    let basic = mimir.http.basic_auth.as_ref().expect("basic_auth");
    assert_eq!(basic.username, "agent");
    assert!(basic.password.is_none());
    assert_eq!(
        basic.password_file.as_deref(),
        Some(Path::new("/etc/prometheus/secrets/mimir-password"))
    );
    assert!(mimir.http.authorization.is_none());
    assert_eq!(
        mimir.http.tls_config.ca_file.as_deref(),
        Some(Path::new("/etc/prometheus/certs/mimir-ca.pem"))
    );
    assert!(mimir.http.follow_redirects);
    assert!(
        !mimir.http.enable_http2,
        "remote write defaults to HTTP/1.1"
    );
    let q = &mimir.queue_config;
    assert_eq!(q.capacity, 20_000);
    assert_eq!(q.max_shards, 30);
    assert_eq!(q.min_shards, 2);
    assert_eq!(q.max_samples_per_send, 5_000);
    assert_eq!(q.batch_send_deadline, secs(10));
    assert_eq!(q.min_backoff, Duration::from_millis(100));
    assert_eq!(q.max_backoff, secs(10));
    assert!(q.retry_on_http_429);
    assert_eq!(q.sample_age_limit, secs(7200));
    assert!(mimir.metadata_config.send);
    assert_eq!(mimir.metadata_config.send_interval, secs(120));
    assert_eq!(mimir.metadata_config.max_samples_per_send, 500);
    assert!(!mimir.send_exemplars);
    assert!(!mimir.send_native_histograms);
    assert_eq!(mimir.write_relabel_configs.len(), 1);
    assert_eq!(mimir.write_relabel_configs[0].regex.source, "go_.*");
    assert_eq!(mimir.write_relabel_configs[0].action, Action::Drop);

    // victoria-metrics: no name (a stable generated one), defaults elsewhere.
    let vm = &c.remote_write[1];
    assert_eq!(
        vm.url,
        "http://victoria-metrics.monitoring.svc:8428/api/v1/write"
    );
    assert_eq!(vm.name.len(), 6);
    assert!(vm.name.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(vm.remote_timeout, secs(30));
    assert!(vm.headers.is_empty());
    assert!(vm.http.basic_auth.is_none() && vm.http.authorization.is_none());
    let q = &vm.queue_config;
    assert_eq!(q.max_shards, 10);
    assert_eq!(
        (q.capacity, q.min_shards, q.max_samples_per_send),
        (10_000, 1, 2_000)
    );
    assert_eq!(
        (q.batch_send_deadline, q.min_backoff, q.max_backoff),
        (secs(5), Duration::from_millis(30), secs(5))
    );
    assert!(!q.retry_on_http_429);
    assert_eq!(q.sample_age_limit, Duration::ZERO);
    assert!(!vm.metadata_config.send);
    assert_eq!(vm.metadata_config.send_interval, secs(60));
    assert!(vm.send_exemplars);
    assert_eq!(vm.write_relabel_configs[0].action, Action::Keep);
    assert_eq!(vm.write_relabel_configs[0].source_labels, ["team"]);

    // The same file gives the same names.
    let again = config::load(&fixture("agent.yml")).expect("valid");
    assert_eq!(again.remote_write[1].name, vm.name);
}

#[test]
fn several_problems_are_reported_at_once() {
    let got = problems(config::load(&fixture("many-problems.yml")));
    let expected: Vec<(u64, &str, &str)> = vec![
        (
            3,
            "global.scrape_timeout",
            "scrape timeout 20s greater than scrape interval 15s",
        ),
        (
            6,
            "global.external_labels.bad-name",
            r#""bad-name" is not a valid label name"#,
        ),
        (
            7,
            "global.body_size_limit",
            r#"unknown unit "XB" in size "10XB" (use B, KiB, MiB, GiB, ... or KB, MB, GB, ...)"#,
        ),
        (
            12,
            "scrape_configs[0].scrape_timeout",
            "scrape timeout 20s greater than scrape interval 10s",
        ),
        (
            14,
            "scrape_configs[0].static_configs[0].targets[0]",
            r#""http://10.0.0.1:9100/metrics" is not a valid hostname (a target is host:port; set scheme and metrics_path instead)"#,
        ),
        (
            15,
            "scrape_configs[1].job_name",
            r#"found multiple scrape configs with job name "node""#,
        ),
        (
            16,
            "scrape_configs[1].scrape_interval",
            r#"not a valid duration string: "1h30""#,
        ),
        (
            17,
            "scrape_configs[1].scheme",
            r#"scheme must be "http" or "https", got "ftp""#,
        ),
        (20, "scrape_configs[2].job_name", "job_name is empty"),
        (
            22,
            "scrape_configs[2].bearer_token_file",
            "at most one of bearer_token & bearer_token_file must be configured",
        ),
        (
            23,
            "scrape_configs[2].basic_auth",
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
        ),
        (
            26,
            "scrape_configs[2].basic_auth.password_file",
            "at most one of basic_auth password & password_file must be configured",
        ),
        (
            27,
            "scrape_configs[2].tls_config",
            "exactly one of key or key_file must be configured when a client certificate is configured",
        ),
        (
            31,
            "remote_write[0].url",
            r#"invalid URL "mimir:9009/api/v1/push": must be an absolute http or https URL"#,
        ),
        (
            33,
            "remote_write[0].headers.Content-Type",
            "Content-Type is a reserved header. It must not be changed",
        ),
        (
            34,
            "remote_write[0].headers.Authorization",
            "authorization header must be changed via the basic_auth or authorization parameter",
        ),
        (
            36,
            "remote_write[0].queue_config.min_shards",
            "min_shards 60 greater than max_shards 50",
        ),
        (
            37,
            "remote_write[0].sigv4",
            "not supported by scrapelet: AWS SigV4 signing is not implemented",
        ),
        (
            42,
            "remote_write[2].name",
            r#"found multiple remote write configs with name "dup""#,
        ),
        (
            43,
            "remote_write[2].oauth2",
            "not supported by scrapelet: OAuth 2.0 is not implemented",
        ),
        (
            46,
            "rule_files",
            "field rule_files is not allowed in agent mode",
        ),
    ];
    let expected: Vec<(u64, String, String)> = expected
        .into_iter()
        .map(|(l, k, m)| (l, k.to_owned(), m.to_owned()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn error_display_names_file_line_and_key() {
    let path = fixture("unknown-key.yml");
    let err = config::load(&path).expect_err("invalid");
    let Error::Invalid { problems } = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert_eq!(
        problems.as_slice(),
        [Problem {
            file: path.display().to_string(),
            line: 9,
            key: "scrape_configs[1].scrape_intervall".to_owned(),
            message: r#"unknown key "scrape_intervall" (did you mean "scrape_interval"?)"#
                .to_owned(),
        }]
    );
    assert_eq!(
        err.to_string(),
        format!(
            "invalid config:\n  {}:9: scrape_configs[1].scrape_intervall: unknown key \"scrape_intervall\" (did you mean \"scrape_interval\"?)",
            path.display()
        )
    );
}

#[test]
fn yaml_errors_stop_at_the_first_with_its_place() {
    let cases: [(&str, u64, &str, &str); 3] = [
        (
            "syntax-error.yml",
            7,
            "scrape_configs[0].static_configs[0].targets",
            "\"-\" is only valid inside a block",
        ),
        (
            "type-error.yml",
            5,
            "scrape_configs[0].sample_limit",
            "expected a whole number, 0 or more",
        ),
        (
            "bad-regex.yml",
            7,
            "scrape_configs[0].metric_relabel_configs[0].regex",
            r#"invalid regex "go_(.*": missing closing )"#,
        ),
    ];
    for (file, line, key, message) in cases {
        let got = problems(config::load(&fixture(file)));
        assert_eq!(got, [(line, key.to_owned(), message.to_owned())], "{file}");
    }
}

#[test]
fn prometheus_server_keys_an_agent_cannot_honour_are_refused() {
    let got = problems(config::load(&fixture("unsupported.yml")));
    let keys: Vec<(u64, &str)> = got.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
    assert_eq!(
        keys,
        [
            (7, "rule_files"),
            (10, "alerting"),
            (19, "scrape_configs[0].file_sd_configs"),
            (21, "scrape_configs[0].proxy_url"),
            (22, "scrape_configs[0].track_timestamps_staleness"),
            (26, "remote_write[0].sigv4"),
            (28, "remote_write[0].protobuf_message"),
            (30, "remote_read"),
        ]
    );
    assert_eq!(got[0].2, "field rule_files is not allowed in agent mode");
    assert_eq!(got[1].2, "field alerting is not allowed in agent mode");
    assert_eq!(got[7].2, "field remote_read is not allowed in agent mode");
    for (_, key, message) in &got[2..7] {
        assert!(
            message.starts_with("not supported by scrapelet: "),
            "{key}: {message}"
        );
    }
}

#[test]
fn relative_file_paths_are_relative_to_the_config_file() {
    let path = fixture("relative-files.yml");
    let c = config::load(&path).expect("valid");
    let dir = path.parent().expect("fixture dir");
    let http = &c.scrape_configs[0].http;
    let basic = http.basic_auth.as_ref().expect("basic_auth");
    assert_eq!(basic.username, "scraper");
    assert_eq!(
        basic.password_file.as_deref(),
        Some(dir.join("secrets/app-password").as_path())
    );
    assert_eq!(
        http.tls_config.ca_file.as_deref(),
        Some(dir.join("certs/ca.pem").as_path())
    );
    assert_eq!(
        http.tls_config.cert_file.as_deref(),
        Some(Path::new("/etc/certs/client.pem"))
    );
    assert_eq!(
        http.tls_config.key_file.as_deref(),
        Some(dir.join("certs/client-key.pem").as_path())
    );
    let auth = c.remote_write[0]
        .http
        .authorization
        .as_ref()
        .expect("authorization");
    assert_eq!(
        auth.credentials_file.as_deref(),
        Some(dir.join("secrets/token").as_path())
    );
    let basic = c.remote_write[1]
        .http
        .basic_auth
        .as_ref()
        .expect("basic_auth");
    assert_eq!(
        basic.username_file.as_deref(),
        Some(dir.join("secrets/user").as_path())
    );
    assert_eq!(
        basic.password_file.as_deref(),
        Some(Path::new("/etc/secrets/password"))
    );

    // parse() knows no directory and keeps paths as written.
    let text = std::fs::read_to_string(&path).expect("read fixture");
    let c = config::parse(&text, "relative-files.yml").expect("valid");
    let basic = c.scrape_configs[0]
        .http
        .basic_auth
        .as_ref()
        .expect("basic_auth");
    assert_eq!(
        basic.password_file.as_deref(),
        Some(Path::new("secrets/app-password"))
    );
}

#[test]
fn a_missing_file_is_a_read_error() {
    let path = fixture("does-not-exist.yml");
    match config::load(&path) {
        Err(Error::Read { path: p, source }) => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn defaults_are_prometheus_defaults() {
    for empty in [
        "",
        "# nothing\n",
        "---\n",
        "global:\n",
        "global: {}\nscrape_configs: []\n",
    ] {
        let c = parse_ok(empty);
        assert_eq!(c.global.scrape_interval, secs(60), "{empty:?}");
        assert_eq!(c.global.scrape_timeout, secs(10));
        assert!(c.global.external_labels.is_empty());
        assert!(c.scrape_configs.is_empty() && c.remote_write.is_empty());
        assert!(!c.agent.debug_output);
    }

    let c = parse_ok(
        "scrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_interval: 5s\nremote_write:\n  - url: http://r/w\nagent:\n  debug_output: true\n",
    );
    let a = &c.scrape_configs[0];
    assert_eq!((a.scrape_interval, a.scrape_timeout), (secs(60), secs(10)));
    assert_eq!(a.metrics_path, "/metrics");
    assert_eq!(a.scheme, Scheme::Http);
    assert!(!a.honor_labels && a.honor_timestamps && a.enable_compression);
    // No body_size_limit anywhere: the agent's cap (64 MiB) stands in for it.
    assert_eq!(a.body_size_limit, 64 << 20);
    assert_eq!(a.sample_limit, 0);
    assert!(a.http.follow_redirects && a.http.enable_http2);
    assert!(a.static_configs.is_empty());
    // The timeout never exceeds the interval: min(global timeout, own interval).
    let b = &c.scrape_configs[1];
    assert_eq!((b.scrape_interval, b.scrape_timeout), (secs(5), secs(5)));
    let rw = &c.remote_write[0];
    assert_eq!(rw.remote_timeout, secs(30));
    assert!(rw.http.follow_redirects && !rw.http.enable_http2);
    assert!(rw.metadata_config.send);
    assert_eq!(rw.queue_config.capacity, 10_000);
    assert!(c.agent.debug_output);
}

#[test]
fn scrape_configs_inherit_from_global() {
    let c = parse_ok(
        "global:
  scrape_interval: 20s
  scrape_timeout: 15s
  body_size_limit: 1MB
  sample_limit: 10
  label_limit: 11
  label_name_length_limit: 12
  label_value_length_limit: 13
  target_limit: 14
scrape_configs:
  - job_name: inherits
  - job_name: overrides
    scrape_interval: 10s
    body_size_limit: 2048
    sample_limit: 20
    label_limit: 0
  - job_name: short
    scrape_interval: 0
    scrape_timeout: 5s
",
    );
    let [inherits, overrides, short] = &c.scrape_configs[..] else {
        panic!("3 scrape configs");
    };
    assert_eq!(
        (inherits.scrape_interval, inherits.scrape_timeout),
        (secs(20), secs(15))
    );
    assert_eq!(inherits.body_size_limit, 1 << 20);
    assert_eq!(
        (
            inherits.sample_limit,
            inherits.label_limit,
            inherits.label_name_length_limit,
            inherits.label_value_length_limit,
            inherits.target_limit
        ),
        (10, 11, 12, 13, 14)
    );
    // An own interval below the global timeout lowers the timeout.
    assert_eq!(
        (overrides.scrape_interval, overrides.scrape_timeout),
        (secs(10), secs(10))
    );
    // A bare YAML integer is a byte count.
    assert_eq!(overrides.body_size_limit, 2048);
    assert_eq!(overrides.sample_limit, 20);
    // 0 means "not set" here, as in Prometheus: the global limit applies.
    assert_eq!(overrides.label_limit, 11);
    assert_eq!(
        (short.scrape_interval, short.scrape_timeout),
        (secs(20), secs(5))
    );
}

#[test]
fn timeouts_may_not_exceed_intervals() {
    check(
        "global:\n  scrape_timeout: 2m\n",
        &[(
            2,
            "global.scrape_timeout",
            "scrape timeout 2m greater than scrape interval 1m",
        )],
    );
    check(
        "global:\n  scrape_interval: 10s\nscrape_configs:\n  - job_name: a\n    scrape_timeout: 11s\n",
        &[(
            5,
            "scrape_configs[0].scrape_timeout",
            "scrape timeout 11s greater than scrape interval 10s",
        )],
    );
    // Equal is fine.
    let c = parse_ok(
        "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 5s\n",
    );
    assert_eq!(c.scrape_configs[0].scrape_timeout, secs(5));
}

#[test]
fn http_client_rules_are_prometheus_rules() {
    type Expected = &'static [(u64, &'static str, &'static str)];
    let cases: [(&str, Expected); 7] = [
        (
            "authorization:\n      credentials: a\n    bearer_token: b\n",
            &[(
                5,
                "scrape_configs[0].authorization",
                "authorization is not compatible with bearer_token & bearer_token_file",
            )],
        ),
        (
            "authorization:\n      credentials: a\n      credentials_file: /f\n",
            &[(
                7,
                "scrape_configs[0].authorization.credentials_file",
                "at most one of authorization credentials & credentials_file must be configured",
            )],
        ),
        (
            "authorization:\n      type: Basic\n      credentials: a\n",
            &[(
                6,
                "scrape_configs[0].authorization.type",
                r#"authorization type cannot be set to "basic", use "basic_auth" instead"#,
            )],
        ),
        (
            "authorization:\n      credentials: a\n    basic_auth:\n      username: u\n",
            &[(
                5,
                "scrape_configs[0].authorization",
                "at most one of basic_auth, oauth2 & authorization must be configured",
            )],
        ),
        (
            "tls_config:\n      ca: x\n      ca_file: /ca\n      key_file: /k\n",
            &[
                (
                    5,
                    "scrape_configs[0].tls_config",
                    "exactly one of cert or cert_file must be configured when a client key is configured",
                ),
                (
                    7,
                    "scrape_configs[0].tls_config.ca_file",
                    "at most one of ca & ca_file must be configured",
                ),
            ],
        ),
        (
            "tls_config:\n      min_version: TLS14\n",
            &[(
                6,
                "scrape_configs[0].tls_config.min_version",
                "unknown TLS version: TLS14",
            )],
        ),
        (
            "oauth2:\n      client_id: x\n    proxy_from_environment: true\n",
            &[
                (
                    5,
                    "scrape_configs[0].oauth2",
                    "not supported by scrapelet: OAuth 2.0 is not implemented",
                ),
                (
                    7,
                    "scrape_configs[0].proxy_from_environment",
                    "not supported by scrapelet: HTTP proxies are not implemented",
                ),
            ],
        ),
    ];
    for (keys, expected) in cases {
        let yaml = format!(
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [a:1]\n    {keys}"
        );
        check(&yaml, expected);
    }

    // authorization type defaults to Bearer; TLS10 is met by the TLS 1.2 floor.
    let c = parse_ok(
        "scrape_configs:\n  - job_name: a\n    authorization:\n      type: ' Token '\n      credentials: c\n    tls_config:\n      min_version: TLS10\n",
    );
    let auth = c.scrape_configs[0]
        .http
        .authorization
        .as_ref()
        .expect("authorization");
    assert_eq!(auth.kind, "Token");
    assert_eq!(auth.credentials.as_ref().map(|s| s.expose()), Some("c"));
    assert_eq!(c.scrape_configs[0].http.tls_config.min_version, None);
}

#[test]
fn remote_write_rules() {
    check(
        "remote_write:\n  - name: x\n  - url: ftp://a/b\n  - url: http://a/b\n    remote_timeout: 0s\n  -\n",
        &[
            (2, "remote_write[0].url", "url for remote_write is empty"),
            (
                3,
                "remote_write[1].url",
                r#"invalid URL "ftp://a/b": the scheme must be http or https"#,
            ),
            (
                5,
                "remote_write[2].remote_timeout",
                "remote_timeout must be greater than 0",
            ),
            (
                6,
                "remote_write[3]",
                "empty or null remote write config section",
            ),
        ],
    );
    // Two unnamed endpoints with the same URL and headers would get the same name.
    check(
        "remote_write:\n  - url: http://a/b\n  - url: http://a/b\n",
        &[(
            3,
            "remote_write[1]",
            r#"remote write config has the same name "6d8f29" as remote_write[0] (unnamed endpoints with the same url and headers need a name each)"#,
        )],
    );
    let c = parse_ok(
        "remote_write:\n  - url: http://a/b\n  - url: http://a/b\n    headers:\n      X-Scope-OrgID: t2\n  - url: http://a/b\n    name: explicit\n",
    );
    let names: Vec<&str> = c.remote_write.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 3);
    assert_ne!(names[0], names[1]);
    assert_eq!(names[2], "explicit");
    check(
        "remote_write:\n  - url: http://a/b\n    headers:\n      user-agent: me\n      X-Ok: fine\n      'bad header': x\n",
        &[
            (
                4,
                "remote_write[0].headers.user-agent",
                "user-agent is a reserved header. It must not be changed",
            ),
            (
                6,
                "remote_write[0].headers.bad header",
                r#""bad header" is not a valid header name"#,
            ),
        ],
    );
    check(
        "remote_write:\n  - url: http://a/b\n    queue_config:\n      max_shards: 0\n      min_backoff: 1s\n      max_backoff: 100ms\n      batch_send_deadline: 5\n",
        &[
            (
                4,
                "remote_write[0].queue_config.max_shards",
                "max_shards must be greater than 0",
            ),
            (
                4,
                "remote_write[0].queue_config.max_shards",
                "min_shards 1 greater than max_shards 0",
            ),
            (
                6,
                "remote_write[0].queue_config.max_backoff",
                "max_backoff 100ms less than min_backoff 1s",
            ),
            (
                7,
                "remote_write[0].queue_config.batch_send_deadline",
                r#"not a valid duration string: "5""#,
            ),
        ],
    );
}

#[test]
fn labels_and_targets_are_checked() {
    check(
        "global:\n  external_labels:\n    ok: a\n    1bad: b\nscrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['a:1', 'https://b:2', 'c:3/x']\n        labels:\n          'a.b': x\n      -\n",
        &[
            (
                4,
                "global.external_labels.1bad",
                r#""1bad" is not a valid label name"#,
            ),
            (
                8,
                "scrape_configs[0].static_configs[0].targets[1]",
                r#""https://b:2" is not a valid hostname (a target is host:port; set scheme and metrics_path instead)"#,
            ),
            (
                8,
                "scrape_configs[0].static_configs[0].targets[2]",
                r#""c:3/x" is not a valid hostname (a target is host:port; set scheme and metrics_path instead)"#,
            ),
            (
                10,
                "scrape_configs[0].static_configs[0].labels.a.b",
                r#""a.b" is not a valid label name"#,
            ),
            (
                11,
                "scrape_configs[0].static_configs[1]",
                "empty or null static config",
            ),
        ],
    );
    // An empty label value means "no such label".
    let c = parse_ok("global:\n  external_labels:\n    a: ''\n    b: x\n");
    assert_eq!(c.global.external_labels, labels(&[("b", "x")]));
}

#[test]
fn keys_with_no_effect_for_an_agent_are_accepted() {
    let c = parse_ok(
        "global:
  evaluation_interval: 30s
  rule_query_offset: 1m
  query_log_file: /q.log
  keep_dropped_targets: 100
  scrape_protocols: [OpenMetricsText1.0.0, PrometheusText0.0.4]
  metric_name_validation_scheme: legacy
  always_scrape_classic_histograms: true
  scrape_native_histograms: false
rule_files: []
remote_read: []
alerting: {}
storage:
  exemplars:
    max_exemplars: 0
tracing:
  endpoint: otel:4317
runtime:
  gogc: 50
otlp:
  promote_resource_attributes: [service.name]
scrape_configs:
  - job_name: a
    scrape_classic_histograms: true
    native_histogram_bucket_limit: 160
    native_histogram_min_bucket_factor: 1.1
    fallback_scrape_protocol: PrometheusText0.0.4
    track_timestamps_staleness: false
    proxy_url: ''
remote_write:
  - url: http://r/w
    round_robin_dns: true
    protobuf_message: prometheus.WriteRequest
",
    );
    assert_eq!(c.global.scrape_interval, secs(60));
    assert_eq!(c.scrape_configs[0].job_name, "a");
    assert_eq!(c.remote_write.len(), 1);
    check(
        "global:\n  evaluation_interval: 1x\n  scrape_protocols: [Proto]\n",
        &[
            (
                2,
                "global.evaluation_interval",
                r#"unknown unit "x" in duration "1x""#,
            ),
            (
                3,
                "global.scrape_protocols[0]",
                "unknown scrape protocol Proto, supported: OpenMetricsText0.0.1, OpenMetricsText1.0.0, PrometheusProto, PrometheusText0.0.4, PrometheusText1.0.0",
            ),
        ],
    );
}

#[test]
fn unknown_keys_are_errors_everywhere() {
    let cases: [(&str, u64, &str, &str); 8] = [
        ("foo: 1\n", 1, "foo", r#"unknown key "foo""#),
        ("- a\n", 1, "(root)", "expected mapping start"),
        (
            "global: {}\n---\nglobal: {}\n",
            3,
            "(root)",
            "more than one YAML document (---); a config file holds one",
        ),
        (
            "global:\n  scrape_interva: 1m\n",
            2,
            "global.scrape_interva",
            r#"unknown key "scrape_interva" (did you mean "scrape_interval"?)"#,
        ),
        (
            "agent:\n  debug: true\n",
            2,
            "agent.debug",
            r#"unknown key "debug""#,
        ),
        (
            "remote_write:\n  - url: http://a/b\n    queue_config:\n      max_shard: 3\n",
            4,
            "remote_write[0].queue_config.max_shard",
            r#"unknown key "max_shard" (did you mean "max_shards"?)"#,
        ),
        (
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [a:1]\n        label: {a: b}\n",
            5,
            "scrape_configs[0].static_configs[0].label",
            r#"unknown key "label" (did you mean "labels"?)"#,
        ),
        (
            "scrape_configs:\n  - job_name: a\n    moon_sd_configs: []\n",
            3,
            "scrape_configs[0].moon_sd_configs",
            "not supported by scrapelet: moon_sd_configs (static_configs is the only service discovery)",
        ),
    ];
    for (yaml, line, key, message) in cases {
        check(yaml, &[(line, key, message)]);
    }
}

#[test]
fn the_agent_body_cap_fills_only_unset_body_size_limits() {
    let c = parse_ok(
        "global:\n  body_size_limit: 1MB\nagent:\n  scrape:\n    max_body_size: 8MB\nscrape_configs:\n  - job_name: a\n  - job_name: b\n    body_size_limit: 2MB\n",
    );
    // The global value is a scrape config's own limit; the agent's cap fills only a gap.
    assert_eq!(c.scrape_configs[0].body_size_limit, 1 << 20);
    assert_eq!(c.scrape_configs[1].body_size_limit, 2 << 20);
    let c = parse_ok(
        "agent:\n  scrape:\n    max_body_size: 8MB\nscrape_configs:\n  - job_name: a\n  - job_name: b\n    body_size_limit: 2MB\n",
    );
    assert_eq!(c.scrape_configs[0].body_size_limit, 8 << 20);
    assert_eq!(c.scrape_configs[1].body_size_limit, 2 << 20);
    // 0 removes the cap.
    let c = parse_ok("agent:\n  scrape:\n    max_body_size: 0\nscrape_configs:\n  - job_name: a\n");
    assert_eq!(c.scrape_configs[0].body_size_limit, 0);
    check(
        "agent:\n  scrape:\n    max_body_size: lots\n",
        &[(3, "agent.scrape.max_body_size", "invalid size \"lots\"")],
    );
}

#[test]
fn guard_rails_are_inherited_and_checked() {
    let c = parse_ok(
        "global:\n  series_limit: 1000\n  label_limit_keep: [method]\nscrape_configs:\n  - job_name: a\n  - job_name: b\n    series_limit: 5\n    series_limit_per_metric: 2\n    label_limit: 6\n    label_limit_keep: [handler, code]\n",
    );
    let (a, b) = (&c.scrape_configs[0], &c.scrape_configs[1]);
    assert_eq!((a.series_limit, a.series_limit_per_metric), (1000, 0));
    assert_eq!(
        a.label_limit_keep.as_deref(),
        Some(&["method".to_owned()][..])
    );
    assert_eq!(
        (b.series_limit, b.series_limit_per_metric, b.label_limit),
        (5, 2, 6)
    );
    assert_eq!(
        b.label_limit_keep.as_deref(),
        Some(&["handler".to_owned(), "code".to_owned()][..])
    );
    let none = parse_ok("scrape_configs:\n  - job_name: a\n");
    assert_eq!(none.scrape_configs[0].series_limit, 0);
    assert!(none.scrape_configs[0].label_limit_keep.is_none());
    check(
        "scrape_configs:\n  - job_name: a\n    label_limit_keep: [ok, 'not-a-name']\n",
        &[(
            3,
            "scrape_configs[0].label_limit_keep[1]",
            r#""not-a-name" is not a valid label name"#,
        )],
    );
    check(
        "scrape_configs:\n  - job_name: a\n    series_limit: -1\n",
        &[(
            3,
            "scrape_configs[0].series_limit",
            "expected a whole number, 0 or more",
        )],
    );
}

#[test]
fn yaml_anchors_and_merge_keys_work() {
    let c = parse_ok(
        "scrape_configs:
  - &base
    job_name: one
    scrape_interval: 10s
    static_configs:
      - targets: [a:1]
  - <<: *base
    job_name: two
",
    );
    assert_eq!(c.scrape_configs[1].job_name, "two");
    assert_eq!(c.scrape_configs[1].scrape_interval, secs(10));
    assert_eq!(c.scrape_configs[1].static_configs[0].targets, ["a:1"]);
    // A problem in merged-in values points at the merge.
    check(
        "defaults: &d\n  scrape_timeout: 1h\n",
        &[(1, "defaults", r#"unknown key "defaults""#)],
    );
    check(
        "scrape_configs:\n  - &base\n    job_name: one\n  - <<: *base\n",
        &[(
            4,
            "scrape_configs[1].job_name",
            r#"found multiple scrape configs with job name "one""#,
        )],
    );
}

/// Seeds for the never-panic property: every fixture, the full agent config included.
fn seeds() -> Vec<String> {
    let names = [
        "many-problems.yml",
        "unsupported.yml",
        "relative-files.yml",
        "agent.yml",
        "bad-regex.yml",
    ];
    names
        .into_iter()
        .map(|n| std::fs::read_to_string(fixture(n)).expect("read fixture"))
        .collect()
}

/// One edit to a YAML text.
#[derive(Clone, Debug)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    Truncate { at: usize },
    DuplicateLine { line: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let noise = prop_oneof![
        Just(": ".to_owned()),
        Just("\n  - ".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("<<: *a\n".to_owned()),
        Just("[".to_owned()),
        Just("{".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("\t".to_owned()),
        Just("~".to_owned()),
        Just("!!binary ".to_owned()),
        Just("? ".to_owned()),
        Just("---\n".to_owned()),
        "\\PC{0,6}",
    ];
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), noise).prop_map(|(at, text)| Edit::Insert { at, text }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len().max(1);
    match edit {
        Edit::Delete { at, len } => {
            let at = at % n;
            let end = (at + len).min(chars.len());
            chars[..at.min(chars.len())]
                .iter()
                .chain(&chars[end..])
                .collect()
        }
        Edit::Insert { at, text: ins } => {
            let at = (at % n).min(chars.len());
            chars[..at].iter().collect::<String>() + ins + &chars[at..].iter().collect::<String>()
        }
        Edit::Truncate { at } => chars[..(at % n).min(chars.len())].iter().collect(),
        Edit::DuplicateLine { line } => {
            let lines: Vec<&str> = text.lines().collect();
            let i = line % lines.len().max(1);
            let mut out: Vec<&str> = lines.clone();
            if let Some(l) = lines.get(i) {
                out.insert(i, l);
            }
            out.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_mutated_configs(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let seeds = seeds();
        let mut text = seeds[seed.index(seeds.len())].clone();
        for e in &edits {
            text = apply(&text, e);
        }
        let lines = text.lines().count() as u64 + 1;
        match config::parse(&text, "fuzz.yml") {
            Ok(_) => {}
            Err(Error::Invalid { problems }) => {
                prop_assert!(!problems.is_empty());
                for p in &problems {
                    prop_assert_eq!(&p.file, "fuzz.yml");
                    prop_assert!(p.line <= lines, "line {} past the end in {}", p.line, p);
                    prop_assert!(!p.key.is_empty() && !p.message.is_empty(), "{}", p);
                }
                let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
                prop_assert!(lines.is_sorted(), "not sorted by line: {:?}", lines);
            }
            Err(Error::Read { .. }) => prop_assert!(false, "parse never reads files"),
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = config::parse(&text, "fuzz.yml");
    }
}

#[test]
fn basic_auth_takes_a_username_or_a_username_file() {
    let text = "scrape_configs:\n  - job_name: a\n    basic_auth:\n      username: u\n      username_file: /u\n";
    let err = config::parse(text, "inline.yml").expect_err("both set");
    let shown = err.to_string();
    assert!(shown.contains("inline.yml:5"), "{shown}");
    assert!(
        shown.contains("scrape_configs[0].basic_auth.username_file"),
        "{shown}"
    );
    assert!(
        shown.contains("at most one of basic_auth username & username_file"),
        "{shown}"
    );
}

#[test]
fn series_limits_are_off_by_default_inherited_from_agent_and_overridden_per_endpoint() {
    let c = parse_ok("remote_write:\n  - url: http://a/w\n");
    let rw = &c.remote_write[0];
    assert_eq!((rw.max_hourly_series, rw.max_daily_series), (0, 0));
    assert_eq!(
        c.agent.remote_write,
        scrapelet::config::AgentRemoteWriteConfig::default()
    );
    let c = parse_ok(
        "agent:\n  remote_write:\n    max_hourly_series: 1000\n    max_daily_series: 5000\nremote_write:\n  - url: http://a/w\n  - url: http://b/w\n    max_hourly_series: 10\n  - url: http://c/w\n    max_daily_series: 0\n",
    );
    assert_eq!(c.agent.remote_write.max_hourly_series, 1000);
    assert_eq!(c.agent.remote_write.max_daily_series, 5000);
    let limits: Vec<(usize, usize)> = c
        .remote_write
        .iter()
        .map(|rw| (rw.max_hourly_series, rw.max_daily_series))
        .collect();
    // An entry's own value wins, 0 (no limit) included.
    assert_eq!(limits, [(1000, 5000), (10, 5000), (1000, 0)]);
    // Only the agent's keys: the entries inherit both.
    let c = parse_ok(
        "agent:\n  remote_write:\n    max_daily_series: 7\nremote_write:\n  - url: http://a/w\n",
    );
    assert_eq!(
        (
            c.remote_write[0].max_hourly_series,
            c.remote_write[0].max_daily_series
        ),
        (0, 7)
    );
}

#[test]
fn bad_series_limits_name_their_line_and_key() {
    let cases: [(&str, u64, &str, &str); 4] = [
        (
            "remote_write:\n  - url: http://a/w\n    max_hourly_series: -1\n",
            3,
            "remote_write[0].max_hourly_series",
            "expected a whole number, 0 or more",
        ),
        (
            "remote_write:\n  - url: http://a/w\n  - url: http://b/w\n    max_daily_series: lots\n",
            4,
            "remote_write[1].max_daily_series",
            "expected a whole number, 0 or more",
        ),
        (
            "agent:\n  remote_write:\n    max_hourly_series: 1.5\n",
            3,
            "agent.remote_write.max_hourly_series",
            "expected a whole number, 0 or more",
        ),
        (
            "agent:\n  remote_write:\n    max_daily_serie: 10\n",
            3,
            "agent.remote_write.max_daily_serie",
            r#"unknown key "max_daily_serie" (did you mean "max_daily_series"?)"#,
        ),
    ];
    for (yaml, line, key, message) in cases {
        check(yaml, &[(line, key, message)]);
    }
}
