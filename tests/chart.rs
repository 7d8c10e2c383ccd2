//! The Helm chart (charts/scrapelet), rendered with the real `helm template`: the agent config
//! it renders parses with scrapelet's own loader, the pod spec keeps its promises (least
//! privilege, NODE_NAME, the buffer volume, probes, grace period), typos in values are
//! refused, and deploy/ is the chart rendered with default values.
//!
//! Needs `helm` on the PATH (.ci/run installs it; the README's "Install" section says how),
//! so, like the other tests that need tools from outside Cargo, it runs with the `e2e`
//! feature: `cargo test --features e2e --test chart`. Without helm these tests fail rather
//! than pass vacuously.
//!
//! Regenerate deploy/ after a chart change:
//!
//! ```sh
//! helm template scrapelet charts/scrapelet --namespace monitoring > deploy/scrapelet.yaml
//! ```

#![cfg(feature = "e2e")]

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

const CHART: &str = "charts/scrapelet";
const ALL_VALUES: &str = "charts/scrapelet/ci/all-values.yaml";
const DEPLOY: &str = "deploy/scrapelet.yaml";

/// Runs `helm template scrapelet charts/scrapelet --namespace monitoring <args>` in the
/// repository: its stdout, or its stderr as `Err`.
fn helm_template(args: &[&str]) -> Result<String, String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("helm")
        .current_dir(root)
        .args(["template", "scrapelet", CHART, "--namespace", "monitoring"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run helm ({e}); install it as .ci/run does (see README, Install)")
        });
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The chart rendered with `args`, as one JSON value per manifest.
fn render(args: &[&str]) -> Vec<Value> {
    let text = helm_template(args).unwrap_or_else(|e| panic!("helm template {args:?}: {e}"));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("helm's output is not YAML ({e}):\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// The one manifest of `kind` whose name ends with `suffix`.
fn manifest<'a>(manifests: &'a [Value], kind: &str, suffix: &str) -> &'a Value {
    let found: Vec<&Value> = manifests
        .iter()
        .filter(|m| m["kind"] == kind)
        .filter(|m| {
            m["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .ends_with(suffix)
        })
        .collect();
    assert_eq!(found.len(), 1, "one {kind} named *{suffix}: {found:#?}");
    found[0]
}

/// The agent's config text from the rendered ConfigMap.
fn config_text(manifests: &[Value]) -> String {
    manifests
        .iter()
        .filter(|m| m["kind"] == "ConfigMap")
        .find_map(|m| m["data"]["scrapelet.yml"].as_str())
        .unwrap_or_else(|| panic!("no ConfigMap with scrapelet.yml: {manifests:#?}"))
        .to_owned()
}

/// The agent's config, parsed by scrapelet's own loader.
fn config(manifests: &[Value]) -> scrapelet::Config {
    let text = config_text(manifests);
    scrapelet::config::parse(&text, "scrapelet.yml")
        .unwrap_or_else(|e| panic!("the chart's config is invalid: {e}\n{text}"))
}

/// The config as plain YAML data (for comparing with examples/).
fn config_value(manifests: &[Value]) -> Value {
    let text = config_text(manifests);
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("config is not YAML ({e}):\n{text}"))
}

fn pod_spec(manifests: &[Value]) -> &Value {
    &manifest(manifests, "DaemonSet", "")["spec"]["template"]["spec"]
}

fn container<'a>(spec: &'a Value, name: &str) -> &'a Value {
    spec["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}: {spec:#}"))
}

/// The value of flag `--name=value` in the container's args.
fn flag<'a>(container: &'a Value, name: &str) -> &'a str {
    let prefix = format!("--{name}=");
    container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no --{name} in {:#}", container["args"]))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The ClusterRole's rules as (resources, verbs).
fn rbac_rules(manifests: &[Value]) -> Vec<(Vec<String>, Vec<String>)> {
    manifest(manifests, "ClusterRole", "")["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let own = |v: &Value| strings(v).into_iter().map(str::to_owned).collect();
            (own(&r["resources"]), own(&r["verbs"]))
        })
        .collect()
}

fn read_only() -> Vec<String> {
    ["get", "list", "watch"].map(str::to_owned).to_vec()
}

#[test]
fn default_values_render_a_valid_agent_config() {
    let manifests = render(&[]);
    let config = config(&manifests);
    let jobs: Vec<&str> = config
        .scrape_configs
        .iter()
        .map(|j| j.job_name.as_str())
        .collect();
    assert_eq!(jobs, ["scrapelet", "kubernetes-pods"]);
    assert!(config.remote_write.is_empty());
    assert_eq!(config.global.scrape_interval.as_secs(), 30);
    assert_eq!(config.global.scrape_timeout.as_secs(), 10);
    assert!(
        config.global.external_labels.is_empty(),
        "empty cluster label left out"
    );

    // The self-scrape: the agent's own port, its node, and the per-job `job` label kept.
    let own = &config.scrape_configs[0];
    assert!(own.honor_labels);
    assert_eq!(own.static_configs[0].targets, ["127.0.0.1:9464"]);
    let node = std::env::var("NODE_NAME").unwrap_or_else(|_| "${NODE_NAME}".to_owned());
    assert_eq!(
        own.static_configs[0].labels.get("node"),
        Some(node.as_str())
    );
    let pods = &config.scrape_configs[1];
    assert_eq!(pods.kubernetes_sd_configs.len(), 1);
    assert!(!pods.kubernetes_sd_configs[0].attach_node_metadata);
}

#[test]
fn every_value_set_renders_a_valid_agent_config() {
    let manifests = render(&["-f", ALL_VALUES]);
    let config = config(&manifests);
    let jobs: Vec<&str> = config
        .scrape_configs
        .iter()
        .map(|j| j.job_name.as_str())
        .collect();
    assert_eq!(
        jobs,
        ["scrapelet", "pods", "kubelet-cadvisor", "kube-system-pods"]
    );
    assert_eq!(
        config.scrape_configs[0].static_configs[0].targets,
        ["127.0.0.1:9500"]
    );
    assert_eq!(
        config.global.external_labels.get("cluster"),
        Some("prod-eu-1")
    );
    let pods = &config.scrape_configs[1];
    assert_eq!(
        pods.kubernetes_sd_configs[0].namespaces,
        ["default", "apps"]
    );
    assert!(pods.kubernetes_sd_configs[0].attach_node_metadata);
    assert_eq!(pods.metric_relabel_configs.len(), 1);
    // The guard rails reach every job, and the endpoint's series caps their endpoint.
    assert_eq!(
        (pods.series_limit, pods.series_limit_per_metric),
        (20_000, 5_000)
    );
    assert_eq!(pods.label_limit, 30);
    assert_eq!(
        pods.label_limit_keep.as_deref(),
        Some(&["handler".to_owned(), "method".to_owned(), "code".to_owned()][..])
    );
    assert_eq!(pods.body_size_limit, 32 << 20);
    assert_eq!(config.remote_write[0].max_hourly_series, 1_000_000);
    assert_eq!(config.remote_write[0].max_daily_series, 3_000_000);

    let names: Vec<&str> = config
        .remote_write
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names.len(), 3);
    assert_eq!((names[0], names[2]), ("mimir", "victoria"));
    let mimir = &config.remote_write[0];
    assert_eq!(mimir.queue_config.max_shards, 20);
    assert_eq!(mimir.queue_config.capacity, 20000);
    assert_eq!(
        mimir.headers.get("X-Scope-OrgID").map(String::as_str),
        Some("team-a")
    );
    assert_eq!(mimir.write_relabel_configs.len(), 1);
    assert_eq!(mimir.remote_timeout.as_secs(), 20);

    // Every credential is a file inside a mounted Secret, never inline.
    let spec = pod_spec(&manifests);
    let agent = container(spec, "scrapelet");
    let mut files = Vec::new();
    for rw in &config.remote_write {
        if let Some(basic) = &rw.http.basic_auth {
            assert!(basic.password.is_none(), "{}: inline password", rw.name);
            files.push(basic.password_file.clone().expect("password_file"));
            files.extend(basic.username_file.clone());
        }
        if let Some(auth) = &rw.http.authorization {
            assert!(
                auth.credentials.is_none(),
                "{}: inline credentials",
                rw.name
            );
            files.push(auth.credentials_file.clone().expect("credentials_file"));
        }
    }
    assert_eq!(files.len(), 4);
    // The self-scrape's credentials and TLS files too (web.basicAuth, web.tls).
    let own = &config.scrape_configs[0].http;
    let basic = own.basic_auth.as_ref().expect("self-scrape basic_auth");
    files.extend(basic.username_file.clone());
    files.extend(basic.password_file.clone());
    let tls = &own.tls_config;
    files.extend(
        [&tls.ca_file, &tls.cert_file, &tls.key_file]
            .into_iter()
            .flatten()
            .cloned(),
    );
    assert_eq!(files.len(), 9);
    for file in &files {
        let dir = file.parent().and_then(Path::to_str).expect("a directory");
        let mount = agent["volumeMounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["mountPath"] == dir))
            .unwrap_or_else(|| panic!("{} is not mounted: {:#}", file.display(), agent));
        assert!(
            mount.get("subPath").is_none(),
            "a subPath never sees updates"
        );
        let volume = spec["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
            .expect("the mount's volume");
        let secret = match dir {
            "/etc/scrapelet/web" => "scrapelet-web",
            _ => dir.rsplit('/').next().expect("secret name"),
        };
        assert_eq!(volume["secret"]["secretName"], secret, "{volume:#}");
    }
    let secret_volumes = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v.get("secret").is_some())
        .count();
    assert_eq!(
        secret_volumes, 6,
        "three Secrets of remote write, one extra volume, the web config and the self-scrape's credentials"
    );

    // Restart on change (reloadOnChange false): a checksum, and the agent does not watch;
    // emptyDir buffer: no chown init container.
    let template = &manifest(&manifests, "DaemonSet", "")["spec"]["template"];
    let checksum = &template["metadata"]["annotations"]["checksum/config"];
    assert_eq!(checksum.as_str().map(str::len), Some(64), "{checksum}");
    let changed = render(&["-f", ALL_VALUES, "--set", "scrape.interval=1m"]);
    let changed = &manifest(&changed, "DaemonSet", "")["spec"]["template"]["metadata"]["annotations"]
        ["checksum/config"];
    assert_ne!(checksum, changed);
    assert!(
        spec["containers"][0]["args"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "--config-watch-interval=0s")),
        "{:#}",
        spec["containers"][0]["args"]
    );
    assert!(spec.get("initContainers").is_none());
    let buffer = spec["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "buffer"))
        .expect("buffer volume");
    assert_eq!(
        buffer["emptyDir"],
        json!({"medium": "Memory", "sizeLimit": "4Gi"})
    );
    assert_eq!(spec["terminationGracePeriodSeconds"], 50);
    assert_eq!(flag(agent, "shutdown-grace"), "40s");
    assert_eq!(flag(agent, "log-format"), "json");
    assert_eq!(
        agent["image"],
        "registry.example.com/scrapelet@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    );
    assert_eq!(spec["priorityClassName"], "system-node-critical");

    // Nodes are readable because of attach_metadata; the extra rule is there.
    let rules = rbac_rules(&manifests);
    assert!(rules.contains(&(vec!["nodes".to_owned()], read_only())));
    assert!(rules.contains(&(vec!["nodes/metrics".to_owned()], vec!["get".to_owned()])));

    // The web server: its flags, and probes over TCP (the web config wants client certs).
    assert_eq!(flag(agent, "web.max-connections"), "1024");
    assert_eq!(flag(agent, "web.config.file"), "/etc/scrapelet/web/web.yml");
    assert!(strings(&agent["args"]).contains(&"--web.enable-lifecycle"));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            agent[probe]["tcpSocket"],
            json!({"port": "http-metrics"}),
            "{probe}"
        );
        assert!(agent[probe].get("httpGet").is_none(), "{probe}");
    }

    // The monitors give the labels the dashboard reads.
    for (kind, endpoints) in [
        ("ServiceMonitor", "endpoints"),
        ("PodMonitor", "podMetricsEndpoints"),
    ] {
        let endpoint = &manifest(&manifests, kind, "")["spec"][endpoints][0];
        assert_eq!(endpoint["honorLabels"], true, "{kind}");
        let relabelings = endpoint["relabelings"].as_array().expect("relabelings");
        assert!(relabelings.contains(
            &json!({"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"})
        ));
        assert!(relabelings.contains(&json!({"targetLabel": "job", "replacement": "scrapelet"})));
    }
    let dashboards = manifest(&manifests, "ConfigMap", "-dashboards");
    assert_eq!(dashboards["metadata"]["namespace"], "grafana");
}

#[test]
fn the_pod_spec_is_least_privilege_on_every_node() {
    let manifests = render(&[]);
    let daemonset = manifest(&manifests, "DaemonSet", "");
    let spec = pod_spec(&manifests);
    let agent = container(spec, "scrapelet");

    // Non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp.
    let security = &agent["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        rbac_rules(&manifests),
        [(vec!["pods".to_owned()], read_only())]
    );

    // The node name from the downward API.
    let env = agent["env"].as_array().expect("env");
    assert!(env.contains(
        &json!({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
    ));

    // The buffer on a hostPath, handed to the agent's user by a root init container that
    // may only chown.
    assert_eq!(flag(agent, "data-dir"), "/var/lib/scrapelet");
    let buffer = spec["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "buffer"))
        .expect("buffer volume");
    assert_eq!(
        buffer["hostPath"],
        json!({"path": "/var/lib/scrapelet", "type": "DirectoryOrCreate"})
    );
    let init = &spec["initContainers"][0];
    assert_eq!(
        strings(&init["command"]),
        ["chown", "-R", "65532:65532", "/var/lib/scrapelet"]
    );
    assert_eq!(
        init["securityContext"]["capabilities"],
        json!({"drop": ["ALL"], "add": ["CHOWN"]})
    );
    assert_eq!(init["securityContext"]["readOnlyRootFilesystem"], true);

    // On every node, control-plane included; never two agents on a node.
    let tolerations = spec["tolerations"].as_array().expect("tolerations");
    assert!(tolerations.contains(&json!({"operator": "Exists", "effect": "NoSchedule"})));
    let rolling = &daemonset["spec"]["updateStrategy"]["rollingUpdate"];
    assert_eq!(rolling["maxSurge"], 0);
    assert_eq!(rolling["maxUnavailable"], 1);

    // Probes, and a grace period longer than the shutdown flush.
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(agent["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(agent["livenessProbe"]["httpGet"]["port"], "http-metrics");
    let grace: u64 = flag(agent, "shutdown-grace")
        .trim_end_matches('s')
        .parse()
        .expect("seconds");
    let period = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(
        period > grace,
        "terminationGracePeriodSeconds {period} <= --shutdown-grace {grace}"
    );

    // Live reload by default: the agent re-reads the ConfigMap file; no checksum restarts.
    assert!(
        daemonset["spec"]["template"]["metadata"]["annotations"]
            .get("checksum/config")
            .is_none()
    );

    // The dashboard for Grafana's sidecar, byte for byte.
    let dashboards = manifest(&manifests, "ConfigMap", "-dashboards");
    assert_eq!(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");
    let file = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/scrapelet/dashboards/scrapelet.json"),
    )
    .expect("dashboard file");
    assert_eq!(
        dashboards["data"]["scrapelet.json"].as_str(),
        Some(file.as_str())
    );
}

#[test]
fn the_pod_job_is_the_one_of_examples_kubernetes_yml() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes.yml");
    let text = std::fs::read_to_string(&path).expect("examples/kubernetes.yml");
    let example: Value = serde_saphyr::from_str(&text).expect("example YAML");
    let chart = config_value(&render(&[]));
    let pods = chart["scrape_configs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_name"] == "kubernetes-pods"))
        .expect("the chart's pod job");
    assert_eq!(pods, &example["scrape_configs"][0]);
    assert_eq!(chart["global"], example["global"]);
}

#[test]
fn nodes_are_readable_only_when_node_metadata_is_attached() {
    let read_nodes = |args: &[&str]| {
        rbac_rules(&render(args))
            .iter()
            .any(|(resources, _)| resources.contains(&"nodes".to_owned()))
    };
    assert!(!read_nodes(&[]));
    assert!(read_nodes(&[
        "--set",
        "podScraping.attachNodeMetadata=true"
    ]));
    assert!(!read_nodes(&[
        "--set",
        "podScraping.enabled=false,podScraping.attachNodeMetadata=true"
    ]));
    let extra = r#"extraScrapeConfigs=[{"job_name":"x","kubernetes_sd_configs":[{"role":"pod","attach_metadata":{"node":true}}]}]"#;
    assert!(read_nodes(&["--set-json", extra]));
    let extra = r#"extraScrapeConfigs=[{"job_name":"x","kubernetes_sd_configs":[{"role":"pod"}]}]"#;
    assert!(!read_nodes(&["--set-json", extra]));
}

#[test]
fn the_web_server_is_plain_http_without_lifecycle_by_default() {
    let manifests = render(&[
        "--set",
        "serviceMonitor.enabled=true,podMonitor.enabled=true",
    ]);
    let agent = container(pod_spec(&manifests), "scrapelet");
    let args = strings(&agent["args"]);
    assert_eq!(flag(agent, "web.max-connections"), "512");
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--web.config.file") || a.starts_with("--web.enable-lifecycle")),
        "{args:?}"
    );
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert!(agent["livenessProbe"]["httpGet"].get("scheme").is_none());
    let own = &config(&manifests).scrape_configs[0];
    assert_eq!(own.scheme, scrapelet::config::Scheme::Http);
    assert!(own.http.basic_auth.is_none());
    for (kind, endpoints) in [
        ("ServiceMonitor", "endpoints"),
        ("PodMonitor", "podMetricsEndpoints"),
    ] {
        let endpoint = &manifest(&manifests, kind, "")["spec"][endpoints][0];
        for key in ["scheme", "tlsConfig", "basicAuth"] {
            assert!(endpoint.get(key).is_none(), "{kind}: {key}: {endpoint:#}");
        }
    }
}

#[test]
fn with_tls_and_basic_auth_the_agent_its_probes_and_the_monitors_still_reach_it() {
    let web = "web.configSecret.name=scrapelet-web,web.tls.enabled=true,\
               web.basicAuth.secret=scrape-creds,serviceMonitor.enabled=true,podMonitor.enabled=true";
    let manifests = render(&["--set", web]);
    let spec = pod_spec(&manifests);
    let agent = container(spec, "scrapelet");

    // The web config from its Secret, mounted whole (no subPath: rotations reach it).
    assert_eq!(
        flag(agent, "web.config.file"),
        "/etc/scrapelet/web/web-config.yml"
    );
    let mount = agent["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["mountPath"] == "/etc/scrapelet/web"))
        .unwrap_or_else(|| panic!("web config not mounted: {agent:#}"));
    assert!(mount.get("subPath").is_none());
    let volume = spec["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
        .expect("the web config volume");
    assert_eq!(volume["secret"]["secretName"], "scrapelet-web");

    // The probes over HTTPS (answered without basic auth).
    for (probe, path) in [
        ("livenessProbe", "/-/healthy"),
        ("readinessProbe", "/-/ready"),
    ] {
        assert_eq!(
            agent[probe]["httpGet"],
            json!({"path": path, "port": "http-metrics", "scheme": "HTTPS"})
        );
    }

    // The self-scrape: HTTPS to 127.0.0.1 (unverified without a CA), basic auth from the
    // mounted Secret.
    let own = &config(&manifests).scrape_configs[0];
    assert_eq!(own.scheme, scrapelet::config::Scheme::Https);
    assert!(own.http.tls_config.insecure_skip_verify);
    let basic = own.http.basic_auth.as_ref().expect("basic_auth");
    assert_eq!(
        basic.username_file.as_deref(),
        Some(Path::new("/etc/scrapelet/secrets/scrape-creds/username"))
    );
    assert_eq!(
        basic.password_file.as_deref(),
        Some(Path::new("/etc/scrapelet/secrets/scrape-creds/password"))
    );
    assert!(
        agent["volumeMounts"].as_array().is_some_and(|m| m
            .iter()
            .any(|m| m["mountPath"] == "/etc/scrapelet/secrets/scrape-creds")),
        "{agent:#}"
    );

    // The monitors: HTTPS, and the same credentials through the operator.
    for (kind, endpoints) in [
        ("ServiceMonitor", "endpoints"),
        ("PodMonitor", "podMetricsEndpoints"),
    ] {
        let endpoint = &manifest(&manifests, kind, "")["spec"][endpoints][0];
        assert_eq!(endpoint["scheme"], "https", "{kind}");
        assert_eq!(
            endpoint["tlsConfig"],
            json!({"insecureSkipVerify": true}),
            "{kind}"
        );
        assert_eq!(
            endpoint["basicAuth"],
            json!({"username": {"name": "scrape-creds", "key": "username"},
                   "password": {"name": "scrape-creds", "key": "password"}}),
            "{kind}"
        );
    }

    // With the CA and a name: verified, by the agent and the operator alike.
    let verified = render(&[
        "--set",
        web,
        "--set",
        "web.tls.caKey=ca.crt,web.tls.serverName=scrapelet.monitoring.svc",
    ]);
    let tls = &config(&verified).scrape_configs[0].http.tls_config;
    assert!(!tls.insecure_skip_verify);
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(Path::new("/etc/scrapelet/web/ca.crt"))
    );
    assert_eq!(tls.server_name.as_deref(), Some("scrapelet.monitoring.svc"));
    let endpoint = &manifest(&verified, "ServiceMonitor", "")["spec"]["endpoints"][0];
    assert_eq!(
        endpoint["tlsConfig"],
        json!({"ca": {"secret": {"name": "scrapelet-web", "key": "ca.crt"}},
               "serverName": "scrapelet.monitoring.svc"})
    );
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    let check = |args: &[&str], expected: &str| match helm_template(args) {
        Ok(out) => panic!("{args:?} rendered:\n{out}"),
        Err(e) => assert!(e.contains(expected), "{args:?}: {e:?} lacks {expected:?}"),
    };
    check(
        &["--set", "remoteWrit[0].url=http://a"],
        "'remoteWrit' not allowed",
    );
    check(
        &["--set", "podScraping.enabeld=false"],
        "'enabeld' not allowed",
    );
    check(
        &[
            "--set",
            "remoteWrite[0].url=http://a,remoteWrite[0].queueConfig.max_shard=3",
        ],
        "'max_shard' not allowed",
    );
    // Credentials are never inline.
    check(
        &[
            "--set",
            "remoteWrite[0].url=http://a,remoteWrite[0].basicAuth.username=u,remoteWrite[0].basicAuth.password=p",
        ],
        "'password' not allowed",
    );
    check(
        &[
            "--set",
            "remoteWrite[0].url=http://a,remoteWrite[0].bearerToken=t",
        ],
        "'bearerToken' not allowed",
    );
    check(&["--set", "remoteWrite[0].name=x"], "url");
    check(
        &["--set", "remoteWrite[0].url=mimir:9009"],
        "/remoteWrite/0/url",
    );
    check(&["--set-string", "scrape.interval=30"], "/scrape/interval");
    check(&["--set", "logFormat=text"], "/logFormat");
    check(&["--set", "buffer.volume=pvc"], "/buffer/volume");
    check(
        &[
            "--set",
            "remoteWrite[0].url=http://a,remoteWrite[0].bearerTokenSecret.name=s,remoteWrite[0].bearerTokenSecret.key=t,remoteWrite[0].basicAuth.username=u,remoteWrite[0].basicAuth.passwordSecret.name=s,remoteWrite[0].basicAuth.passwordSecret.key=p",
        ],
        "basicAuth and bearerTokenSecret exclude each other",
    );
    check(
        &[
            "--set",
            "remoteWrite[0].url=http://a,remoteWrite[0].basicAuth.username=u,remoteWrite[0].basicAuth.usernameSecret.name=s,remoteWrite[0].basicAuth.usernameSecret.key=k,remoteWrite[0].basicAuth.passwordSecret.name=s,remoteWrite[0].basicAuth.passwordSecret.key=p",
        ],
        "/remoteWrite/0/basicAuth",
    );
    check(&["--set", "buffer.maxSize=1gb"], "/buffer/maxSize");
    check(&["--set", "web.tls.enable=true"], "'enable' not allowed");
    check(&["--set", "web.maxConnections=-1"], "/web/maxConnections");
    check(
        &["--set", "web.tls.enabled=true"],
        "web.tls.enabled needs web.configSecret.name",
    );
    check(
        &["--set", "web.basicAuth.secret=s"],
        "web.basicAuth.secret needs web.configSecret.name",
    );
    check(
        &[
            "--set",
            "web.configSecret.name=w,web.tls.enabled=true,web.tls.clientCertKey=c",
        ],
        "web.tls.clientCertKey and web.tls.clientKeyKey go together",
    );
    check(&["--set", "buffer.maxAge=6 hours"], "/buffer/maxAge");
}

#[test]
fn buffer_caps_reach_the_agent_config() {
    let rendered = render(&[
        "--set",
        "buffer.maxSize=1GB,buffer.maxAge=6h,buffer.fsyncInterval=2s",
    ]);
    let config = config_value(&rendered);
    assert_eq!(config["agent"]["buffer"]["max_size"], "1GB");
    assert_eq!(config["agent"]["buffer"]["max_age"], "6h");
    assert_eq!(config["agent"]["buffer"]["fsync_interval"], "2s");
    assert!(
        config_value(&render(&[])).get("agent").is_none(),
        "defaults leave the agent's own defaults"
    );
}

#[test]
fn deploy_is_the_chart_rendered_with_default_values() {
    let rendered = helm_template(&[]).unwrap_or_else(|e| panic!("helm template: {e}"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEPLOY);
    let deployed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        deployed == rendered,
        "{DEPLOY} is not the chart rendered with default values; regenerate it with\n  \
         helm template scrapelet charts/scrapelet --namespace monitoring > {DEPLOY}"
    );
}
