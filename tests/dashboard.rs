//! The Grafana dashboard (charts/scrapelet/dashboards/scrapelet.json) against the agent's real
//! metrics.
//!
//! - Always: every metric a panel or variable names is in the agent's `/metrics` (or, for the
//!   per-target series each scrape writes, in what it sends), and every label a panel groups
//!   or names its legend by is one those metrics carry. The agent runs in-process with the
//!   chart's self-scrape job, a Kubernetes pod job against the fake API server, a target that
//!   is down and two remote-write endpoints (one refuses), so that every family has series.
//! - With `--features e2e` (`cargo test --features e2e --test dashboard`): the built binary
//!   runs, a real Prometheus (Debian package) scrapes its `/metrics` as the chart's
//!   self-scrape would and receives its remote write, and every panel query, with the
//!   dashboard's variables substituted, is evaluated through Prometheus's HTTP API: each
//!   parses and returns data. The variables' own queries return the cluster and the node.
//!
//! Every query is checked, the buffer row's (`scrapelet_buffer_*`) like the others: the agent
//! always runs with its write-ahead buffer.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use scrapelet::agent::{Agent, Options};
use serde_json::Value;
use support::kube_api::{KubeApi, PodBuilder};
use support::receiver::{Receiver, Reply};
use support::target::{Exposition, Target};
use tokio::net::{TcpListener, TcpStream};

/// The longest any wait may take.
const WAIT: Duration = Duration::from_secs(60);

/// The node the agent runs on in these tests.
const NODE: &str = "dash-node";

/// Series each scrape writes for its target (they reach the receivers, not `/metrics`).
const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Labels a target gives its series: the self-scrape's and the pod job's relabeling (see the
/// chart), `job` and `instance`, and the external `cluster`.
const TARGET_LABELS: [&str; 7] = [
    "cluster",
    "node",
    "job",
    "instance",
    "namespace",
    "pod",
    "container",
];

/// PromQL words that are never metric names.
const KEYWORDS: [&str; 22] = [
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The prefix of the write-ahead buffer's metrics (see the module doc).
const BUFFER_PREFIX: &str = "scrapelet_buffer_";

/// One query of the dashboard.
#[derive(Clone, Debug)]
struct Query {
    /// Panel title (or `variable <name>`).
    panel: String,
    expr: String,
    legend: String,
}

/// The dashboard's JSON.
fn dashboard() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/scrapelet/dashboards/scrapelet.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel's queries, rows' nested panels included.
fn panel_queries(dashboard: &Value) -> Vec<Query> {
    fn walk(panels: &Value, out: &mut Vec<Query>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(Query {
                    panel: title.clone(),
                    expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                    legend: target["legendFormat"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The `label_values(selector, label)` queries of the query variables: (variable, selector,
/// label).
fn variable_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let name = v["name"].as_str().unwrap_or("?").to_owned();
            let query = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap_or_default();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {query}"));
            let (selector, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("variable {name}: no label in {query}"));
            (name, selector.trim().to_owned(), label.trim().to_owned())
        })
        .collect()
}

/// `expr` with Grafana's variables replaced: `$name` / `${name}` from `vars`, and the
/// built-in intervals.
fn substitute(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m");
    for (name, value) in vars {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "unsubstituted variable in {out}");
    out
}

/// A PromQL expression's tokens of interest, outside strings, `{...}` and `[...]`.
#[derive(Debug, Default)]
struct Names {
    metrics: BTreeSet<String>,
    /// Label names in `by (...)`, `without (...)`, `on (...)` and the like.
    grouping: BTreeSet<String>,
}

/// The metric names and grouping labels of a PromQL expression (enough PromQL for the
/// dashboard's queries: identifiers not followed by `(` and not keywords are metric names).
fn names(expr: &str) -> Names {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Names::default();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // The index after the string literal that starts at `i`.
    let skip_string = |mut i: usize| {
        let quote = chars[i];
        i += 1;
        while i < chars.len() && chars[i] != quote {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(i),
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i = if matches!(chars[i], '"' | '\'' | '`') {
                        skip_string(i)
                    } else {
                        i + 1
                    };
                }
                i += 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number, exponent and all (1e6, 0.99).
                while i < chars.len() && (ident_char(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if ident_start(c) => {
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let paren = chars.get(next) == Some(&'(');
                if LABEL_LISTS.contains(&word.as_str()) && paren {
                    let close = chars[next..]
                        .iter()
                        .position(|&c| c == ')')
                        .map_or(chars.len(), |p| next + p);
                    let list: String = chars[next + 1..close].iter().collect();
                    names.grouping.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                    i = close + 1;
                } else if !paren && !KEYWORDS.contains(&word.as_str()) {
                    names.metrics.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The `{{label}}` names of a legend format.
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}").map(|(l, _)| l.trim().to_owned()))
        .collect()
}

/// Every family of an exposition (the name in `# TYPE`) and the label names of its samples;
/// a family is listed by its sample names too (`x_total`, `x_bucket`, `x_count`, `x_sum`).
fn families(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.split(' ').next())
        {
            out.entry(name.to_owned()).or_default();
        }
    }
    for (name, labels, _) in support::samples_in_text(text) {
        out.entry(name).or_default().extend(labels.into_keys());
    }
    out
}

/// The label names the dashboard may use on metric `name`: its own, those of the target that
/// scraped it, and `le` on histogram buckets.
fn labels_of(
    families: &BTreeMap<String, BTreeSet<String>>,
    sent: &BTreeMap<String, BTreeSet<String>>,
    name: &str,
) -> Option<BTreeSet<String>> {
    let mut labels: BTreeSet<String> = families
        .get(name)
        .or_else(|| sent.get(name))?
        .iter()
        .cloned()
        .collect();
    labels.extend(TARGET_LABELS.map(str::to_owned));
    Some(labels)
}

/// Forwards connections from `listener` to `to`: the agent's self-scrape target, whose
/// address must be in the config before the agent (on port 0) has one.
fn forward(listener: TcpListener, to: std::net::SocketAddr) {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

/// The Kubernetes pod job of examples/kubernetes.yml (the chart's), reading the fake API
/// server's kubeconfig.
fn pod_job(kubeconfig: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes.yml");
    let text = std::fs::read_to_string(&path).expect("examples/kubernetes.yml");
    let jobs = text
        .split_once("scrape_configs:\n")
        .map(|(_, jobs)| jobs)
        .expect("scrape_configs in the example");
    let role = "      - role: pod\n";
    assert!(jobs.contains(role), "the example's pod job changed shape");
    jobs.replace(
        role,
        &format!("{role}        kubeconfig_file: {}\n", kubeconfig.display()),
    )
}

/// The app's exposition.
const APP: &str = "# TYPE app_requests_total counter\napp_requests_total{path=\"/\"} 7\n\
                   # TYPE app_temperature gauge\napp_temperature 21.5\n";

/// A pod on [`NODE`] that asks to be scraped on `port` of 127.0.0.1.
fn app_pod(name: &str, port: u16) -> PodBuilder {
    PodBuilder::new("apps", name, NODE, "127.0.0.1")
        .annotation("prometheus.io/scrape", "true")
        .annotation("prometheus.io/port", &port.to_string())
        .container("app", "app:1", &[("metrics", port, "TCP")])
}

/// Everything the agent talks to: the fake API server with one scraped pod, the app, a target
/// that is down, a receiver that accepts and one that refuses.
struct World {
    kube: KubeApi,
    app: Target,
    down: Target,
    accepting: Receiver,
    refusing: Receiver,
    dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let kube = KubeApi::start().await;
        kube.write_kubeconfig(&dir.path().join("kubeconfig"), None);
        let app = Target::start(Exposition::text(APP)).await;
        kube.apply_pod(&app_pod("app-1", app.addr.port()));
        let down = Target::start(Exposition::text("")).await;
        down.stop();
        let accepting = Receiver::start().await;
        let refusing = Receiver::start().await;
        refusing.set_default(Reply::status(400).with_body("out of bounds"));
        World {
            kube,
            app,
            down,
            accepting,
            refusing,
            dir,
        }
    }

    /// A config with the chart's self-scrape job (to `self_target`) unless `None`, the pod
    /// job, the down target and `remote_write` entries (name, url).
    fn config(&self, self_target: Option<&str>, remote: &[(&str, String)]) -> String {
        let mut yaml = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels:\n    cluster: dash\n",
        );
        yaml.push_str("remote_write:\n");
        for (name, url) in remote {
            yaml.push_str(&format!(
                "  - url: {url}\n    name: {name}\n    queue_config:\n      batch_send_deadline: 200ms\n      \
                 min_backoff: 50ms\n      max_backoff: 200ms\n    metadata_config:\n      send_interval: 1s\n"
            ));
        }
        yaml.push_str("scrape_configs:\n");
        if let Some(target) = self_target {
            yaml.push_str(&format!(
                "  - job_name: scrapelet\n    honor_labels: true\n    static_configs:\n      \
                 - targets: ['{target}']\n        labels:\n          node: {NODE}\n"
            ));
        }
        yaml.push_str(&pod_job(&self.dir.path().join("kubeconfig")));
        yaml.push_str(&format!(
            "  - job_name: down\n    static_configs:\n      - targets: ['{}']\n",
            self.down.address()
        ));
        yaml
    }

    /// Makes the rarer series appear: a watch event (a second pod), and a watch failing with
    /// 410 Gone (an error and a relist).
    fn stir(&self) {
        self.kube.apply_pod(&app_pod("app-2", self.app.addr.port()));
        self.kube.fail_next_watch_with_gone();
        self.kube.drop_watches();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_label_the_dashboard_names_is_exported() {
    let dashboard = dashboard();
    let queries = panel_queries(&dashboard);
    assert!(queries.len() > 30, "only {} queries", queries.len());

    let world = World::start().await;
    let own = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let own_address = own.local_addr().expect("address").to_string();
    let text = world.config(
        Some(&own_address),
        &[
            ("accepting", world.accepting.url()),
            ("refusing", world.refusing.url()),
        ],
    );
    let config = scrapelet::config::parse(&text, "dashboard.yml")
        .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        listen_address: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().join("data"),
        shutdown_grace: Duration::from_secs(2),
        node_name: Some(NODE.to_owned()),
        ..Options::default()
    };
    let agent = Agent::start(config, options)
        .await
        .unwrap_or_else(|e| panic!("agent start: {e}"));
    forward(own, agent.local_addr());
    let metrics_url = format!("http://{}/metrics", agent.local_addr());

    // The rare families get series: a watch error, a refused write, a failed scrape.
    support::eventually_async(WAIT, "the first pod list", || async {
        world.kube.pod_lists() > 0
    })
    .await;
    world.stir();
    let deadline = tokio::time::Instant::now() + WAIT;
    let exposition = loop {
        let text = support::agent::get(&metrics_url).await.1;
        let has = |name: &str, labels: &[(&str, &str)]| {
            support::metric_in_text(&text, name, labels).is_some_and(|v| v > 0.0)
        };
        let ready = has(
            "scrapelet_kubernetes_watch_errors_total",
            &[("kind", "gone")],
        ) && has(
            "scrapelet_kubernetes_watch_events_total",
            &[("event", "add")],
        ) && has(
            "scrapelet_scrape_failures_total",
            &[("job", "down"), ("reason", "connection")],
        ) && has(
            "scrapelet_remote_samples_failed_total",
            &[("endpoint", "refusing"), ("reason", "rejected")],
        ) && has(
            "scrapelet_remote_samples_sent_total",
            &[("endpoint", "accepting")],
        ) && has(
            "scrapelet_targets",
            &[("job", "kubernetes-pods"), ("health", "up")],
        );
        if ready {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every family has series after {WAIT:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let families = families(&exposition);

    // The chart's self-scrape: the agent's own series arrive with its node and cluster, the
    // per-job `job` label kept (honor_labels), its process series under job="scrapelet".
    world
        .accepting
        .wait_until(WAIT, "the agent's own series", |r| {
            let samples = r.accepted();
            let own = |name: &str, job: &str| {
                samples.iter().any(|s| {
                    s.name() == Some(name)
                        && s.label("job") == Some(job)
                        && s.label("node") == Some(NODE)
                        && s.label("cluster") == Some("dash")
                })
            };
            own("scrapelet_targets", "kubernetes-pods")
                && own("process_cpu_seconds_total", "scrapelet")
                && own("scrape_duration_seconds", "kubernetes-pods")
        })
        .await;
    let mut sent: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for sample in world.accepting.accepted() {
        let name = sample.name().unwrap_or_default().to_owned();
        sent.entry(name)
            .or_default()
            .extend(sample.labels.iter().map(|(k, _)| k.clone()));
    }

    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    let variables = variable_queries(&dashboard);
    let all = queries
        .iter()
        .cloned()
        .chain(variables.iter().map(|(name, selector, label)| Query {
            panel: format!("variable {name}"),
            expr: selector.clone(),
            legend: format!("{{{{{label}}}}}"),
        }));
    assert!(
        families.keys().any(|k| k.starts_with(BUFFER_PREFIX)),
        "the agent exports no buffer metrics"
    );
    for q in all {
        let n = names(&q.expr);
        if n.metrics.is_empty() {
            problems.push(format!("{}: no metric in {}", q.panel, q.expr));
        }
        let mut usable = BTreeSet::new();
        for metric in &n.metrics {
            named.insert(metric.clone());
            let exported = families.contains_key(metric);
            let synthetic = SYNTHETIC.contains(&metric.as_str()) && sent.contains_key(metric);
            if !exported && !synthetic {
                problems.push(format!("{}: {metric} is not exported", q.panel));
            }
            if let Some(labels) = labels_of(&families, &sent, metric) {
                usable.extend(labels);
            }
            if metric.ends_with("_bucket") {
                usable.insert("le".to_owned());
            }
        }
        for label in n.grouping.iter().chain(&legend_labels(&q.legend)) {
            if !usable.contains(label) {
                problems.push(format!(
                    "{}: label {label} is on none of {:?} ({})",
                    q.panel, n.metrics, q.expr
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The extraction found what the dashboard is about.
    for expected in [
        "scrapelet_targets",
        "scrapelet_scrape_duration_seconds_bucket",
        "scrapelet_remote_samples_sent_total",
        "scrapelet_kubernetes_pods",
        "process_resident_memory_bytes",
        "scrape_duration_seconds",
    ] {
        assert!(
            named.contains(expected),
            "{expected} not found in {named:?}"
        );
    }
    agent.shutdown().await;
}

#[test]
fn promql_names_are_extracted() {
    let check = |expr: &str, metrics: &[&str], grouping: &[&str]| {
        let n = names(expr);
        assert_eq!(
            n.metrics.iter().map(String::as_str).collect::<Vec<_>>(),
            metrics,
            "{expr}"
        );
        assert_eq!(
            n.grouping.iter().map(String::as_str).collect::<Vec<_>>(),
            grouping,
            "{expr}"
        );
    };
    check(
        r#"sum by (job, le) (rate(a_bucket{x=~"$c", y="b(c)"}[$__rate_interval]))"#,
        &["a_bucket"],
        &["job", "le"],
    );
    check(
        r#"topk(10, max by (job) (up{a="1"})) or vector(0)"#,
        &["up"],
        &["job"],
    );
    check(
        "sum(rate(a_total[1m])) / (sum without(x) (b) > 0) * 1e6 + 0.5",
        &["a_total", "b"],
        &["x"],
    );
    check(
        "time() - (c_seconds{s=\"}\"} > 0) unless on(node) d",
        &["c_seconds", "d"],
        &["node"],
    );
    assert_eq!(legend_labels("p99 {{job}} {{ reason }}"), ["job", "reason"]);
    assert_eq!(
        substitute(
            r#"rate(x{c=~"$cluster", n=~"${node}"}[$__rate_interval])"#,
            &[("cluster", "a"), ("node", "b")]
        ),
        r#"rate(x{c=~"a", n=~"b"}[1m])"#
    );
}

/// The dashboard's queries through a real Prometheus.
#[cfg(feature = "e2e")]
mod prometheus {
    use super::*;
    use support::procs::{Prometheus, Scrapelet, encode, try_get};

    /// What the dashboard's variables are in this test.
    const CLUSTER: &str = "dash";

    /// Metrics whose series exist from the start but whose queries can legitimately be
    /// empty in a healthy run: none so far (the world above makes every family have series).
    const MAY_BE_EMPTY: [&str; 0] = [];

    /// An instant query: `Ok(result count)` or why it failed.
    async fn query(prometheus: &Prometheus, expr: &str) -> Result<usize, String> {
        let url = format!("{}/api/v1/query?query={}", prometheus.base(), encode(expr));
        let (status, body) = try_get(&url).await?;
        let json: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status}: not JSON ({e}): {body}"))?;
        if status != 200 || json["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        let result = &json["data"]["result"];
        Ok(match json["data"]["resultType"].as_str() {
            Some("vector" | "matrix") => result.as_array().map_or(0, Vec::len),
            _ => 1,
        })
    }

    /// Values of `label` on series matching `selector`.
    async fn label_values(prometheus: &Prometheus, selector: &str, label: &str) -> Vec<String> {
        let path = format!("/api/v1/label/{label}/values?match[]={}", encode(selector));
        prometheus
            .api(&path)
            .await
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_panel_query_returns_data_in_prometheus() {
        let dashboard = dashboard();
        let queries = panel_queries(&dashboard);
        let world = World::start().await;
        let prometheus = Prometheus::start().await;
        let config = world.config(
            None,
            &[
                ("prometheus", prometheus.write_url()),
                ("refusing", world.refusing.url()),
            ],
        );
        let agent = Scrapelet::start(&config, &["--node-name", NODE]).await;

        // Prometheus scrapes the agent as the chart's self-scrape does: job scrapelet,
        // honor_labels, the node and the cluster as target labels.
        let scrape = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
             - job_name: scrapelet\n    honor_labels: true\n    static_configs:\n      \
             - targets: ['{}']\n        labels:\n          cluster: {CLUSTER}\n          node: {NODE}\n",
            agent.listen
        );
        let file = prometheus.dir.path().join("prometheus.yml");
        std::fs::write(&file, scrape).expect("write prometheus.yml");
        prometheus.proc.signal("HUP");
        support::eventually_async(WAIT, "Prometheus to scrape the agent", || async {
            matches!(query(&prometheus, r#"up{job="scrapelet"} == 1"#).await, Ok(n) if n > 0)
        })
        .await;
        support::eventually_async(WAIT, "the first pod list", || async {
            world.kube.pod_lists() > 0
        })
        .await;
        world.stir();

        let vars = [("cluster", CLUSTER), ("node", NODE), ("job", "scrapelet")];
        let own = try_get(&format!("http://{}/metrics", agent.listen))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .1;
        assert!(
            families(&own).keys().any(|k| k.starts_with(BUFFER_PREFIX)),
            "the agent exports no buffer metrics:\n{own}"
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        let exposition = loop {
            let mut failures = Vec::new();
            for q in &queries {
                let expr = substitute(&q.expr, &vars);
                match query(&prometheus, &expr).await {
                    Ok(0) => {
                        let may_be_empty = names(&q.expr)
                            .metrics
                            .iter()
                            .all(|m| MAY_BE_EMPTY.contains(&m.as_str()));
                        if !may_be_empty {
                            failures.push(format!("{}: no data: {expr}", q.panel));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("{}: {expr}: Prometheus refused it: {e}", q.panel),
                }
            }
            if failures.is_empty() {
                break try_get(&format!("http://{}/metrics", agent.listen))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .1;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queries without data after {WAIT:?}:\n{}\nagent log:\n{}",
                failures.join("\n"),
                agent.proc.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        // Queries allowed to be empty still name exported metrics.
        let families = families(&exposition);
        for metric in MAY_BE_EMPTY {
            assert!(families.contains_key(metric), "{metric} not in /metrics");
        }

        for (name, selector, label) in variable_queries(&dashboard) {
            let selector = substitute(&selector, &vars);
            let values = label_values(&prometheus, &selector, &label).await;
            let expected = match label.as_str() {
                "cluster" => CLUSTER,
                "node" => NODE,
                other => panic!("variable {name}: unexpected label {other}"),
            };
            assert!(
                values.iter().any(|v| v == expected),
                "variable {name}: {values:?} lacks {expected}"
            );
        }
        prometheus.assert_clean().await;
    }
}
