//! Kubernetes discovery end to end: the real agent, configured with the shipped
//! examples/kubernetes.yml, watches the fake API server (tests/support/kube_api.rs) for the
//! pods of its node, scrapes them over real HTTP (pod IPs are loopback addresses, container
//! ports the ports of targets served by the test) and sends the samples to a remote-write
//! receiver. Pods appear, change, restart, stop and go; the API server drops watches, answers
//! 410 Gone and goes away; through all of it every target has exactly one scrape loop.
//!
//! Every wait is a receiver or target signal, or a poll with a deadline. Absence ("no more
//! requests") is shown against another target that keeps being scraped, as a clock.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use scrapelet::Config;
use scrapelet::append::is_stale_nan;
use scrapelet::config;
use serde_json::Value;
use support::agent::TestAgent;
use support::kube_api::{KubeApi, PodBuilder};
use support::receiver::{ReceivedSample, Receiver};
use support::target::{Exposition, Target};
use tokio::time::Instant;

/// The agent's node.
const NODE: &str = "node-a";
/// The job of examples/kubernetes.yml.
const JOB: &str = "kubernetes-pods";
/// The scrape interval the tests put in place of the example's 30s.
const INTERVAL: Duration = Duration::from_millis(500);
/// Deadline of every wait for something that must happen eventually.
const WAIT: Duration = Duration::from_secs(20);
/// Deadline for the first scrape of a target after the pod event that made it: discovery's
/// coalescing window (100ms) plus the target's slot in the interval (under 500ms), with room
/// for a loaded machine.
const PROMPTLY: Duration = Duration::from_secs(4);

/// The fake API server, the receiver and the agent of `NODE`, set up with the example config.
struct Cluster {
    api: KubeApi,
    rx: Receiver,
    agent: TestAgent,
    _kubeconfig: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let api = KubeApi::start().await;
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, None);
        let agent = TestAgent::start_config(example_config(&kubeconfig, &rx), Some(NODE)).await;
        Cluster {
            api,
            rx,
            agent,
            _kubeconfig: dir,
        }
    }

    /// The example job's active and dropped targets from `/api/v1/targets`.
    async fn targets(&self) -> (Vec<Value>, Vec<Value>) {
        let json = self.agent.targets_json().await;
        let of_job = |key: &str| -> Vec<Value> {
            json["data"][key]
                .as_array()
                .unwrap_or_else(|| panic!("no {key} in {json}"))
                .iter()
                .filter(|t| t["scrapePool"] == JOB)
                .cloned()
                .collect()
        };
        (of_job("activeTargets"), of_job("droppedTargets"))
    }

    /// Polls `/api/v1/targets` until `done(active, dropped)` holds.
    async fn targets_when(
        &self,
        what: &str,
        done: impl Fn(&[Value], &[Value]) -> bool,
    ) -> (Vec<Value>, Vec<Value>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (active, dropped) = self.targets().await;
            if done(&active, &dropped) {
                return (active, dropped);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; active: {active:#?}\ndropped: {dropped:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the agent's `/metrics` until the sum of `name{labels}` satisfies `ok`.
    async fn metric_when(&self, name: &str, labels: &[(&str, &str)], ok: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.agent.metric_sum(name, labels).await;
            if ok(v) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {name}{labels:?}; it is {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.agent.metric_sum(name, labels).await
    }

    async fn shutdown(self) {
        self.agent.agent.shutdown().await;
    }
}

/// examples/kubernetes.yml as shipped, with what a test must change: the API server (a
/// kubeconfig for the fake one), a short interval, and a remote-write endpoint (the
/// receiver). Its relabel rules are the ones under test.
fn example_config(kubeconfig: &Path, rx: &Receiver) -> Config {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes.yml");
    let mut cfg = config::load(&example).unwrap_or_else(|e| panic!("{e}"));
    let [job] = cfg.scrape_configs.as_mut_slice() else {
        panic!("the example has one job");
    };
    assert_eq!(job.job_name, JOB);
    job.scrape_interval = INTERVAL;
    job.scrape_timeout = INTERVAL * 4 / 5;
    job.kubernetes_sd_configs[0].kubeconfig_file = Some(kubeconfig.to_owned());
    let remote = format!(
        "remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 100ms\n      min_backoff: 10ms\n      max_backoff: 50ms\n",
        rx.url()
    );
    cfg.remote_write = config::parse(&remote, "remote.yml")
        .unwrap_or_else(|e| panic!("{e}"))
        .remote_write;
    cfg
}

/// A Running, Ready pod in `prod` on `NODE` at `target`'s IP that asks to be scraped on
/// `target`'s port, declared by its one container `app`.
fn scraped_pod(name: &str, target: &Target) -> PodBuilder {
    scraped_pod_on(NODE, name, target)
}

/// [`scraped_pod`] on `node`.
fn scraped_pod_on(node: &str, name: &str, target: &Target) -> PodBuilder {
    let port = target.addr.port();
    PodBuilder::new("prod", name, node, &target.addr.ip().to_string())
        .annotation("prometheus.io/scrape", "true")
        .annotation("prometheus.io/port", &port.to_string())
        .container("app", "app:1", &[("metrics", port, "TCP")])
        .controller("ReplicaSet", &format!("{name}-5d8f7"))
}

/// A target answering one counter with `value`.
async fn app_target(value: u32) -> Target {
    Target::start(Exposition::text(&format!("app_requests_total {value}\n"))).await
}

fn instance(target: &Target) -> String {
    target.addr.to_string()
}

/// Accepted samples of `name` whose `instance` is `instance`, in arrival order.
fn series_of(samples: &[ReceivedSample], name: &str, instance: &str) -> Vec<ReceivedSample> {
    samples
        .iter()
        .filter(|s| s.name() == Some(name) && s.label("instance") == Some(instance))
        .cloned()
        .collect()
}

/// Waits for a sample (not a staleness marker) of `name` from `instance`; returns the first.
async fn wait_scraped(rx: &Receiver, name: &str, instance: &str) -> ReceivedSample {
    let found = |r: &Receiver| {
        series_of(&r.accepted(), name, instance)
            .into_iter()
            .find(|s| !is_stale_nan(s.value))
    };
    rx.wait_until(WAIT, &format!("{name} from {instance}"), |r| {
        found(r).is_some()
    })
    .await;
    found(rx).expect("found above")
}

/// The last value of every series from `instance`, by label set, in arrival order.
fn last_values(samples: &[ReceivedSample], instance: &str) -> BTreeMap<Vec<(String, String)>, f64> {
    samples
        .iter()
        .filter(|s| s.label("instance") == Some(instance))
        .map(|s| (s.labels.clone(), s.value))
        .collect()
}

/// Waits until every series scraped from `instance` ended with a staleness marker (its last
/// sample is the marker; the receiver gets each series in order); returns their names.
async fn wait_all_stale(rx: &Receiver, instance: &str) -> BTreeSet<String> {
    let ended = |r: &Receiver| {
        let last = last_values(&r.accepted(), instance);
        !last.is_empty() && last.values().all(|v| is_stale_nan(*v))
    };
    rx.wait_until(
        WAIT,
        &format!("staleness markers for every series of {instance}"),
        ended,
    )
    .await;
    let samples = rx.accepted();
    for s in samples
        .iter()
        .filter(|s| s.label("instance") == Some(instance))
    {
        if s.value.is_nan() {
            assert_eq!(s.value.to_bits(), 0x7ff0_0000_0000_0002, "{s:?}");
        }
    }
    last_values(&samples, instance)
        .keys()
        .filter_map(|labels| {
            labels
                .iter()
                .find(|(k, _)| k == "__name__")
                .map(|(_, v)| v.clone())
        })
        .collect()
}

/// Shows that `stopped` is no longer scraped: while `clock` is scraped `n` more times, the
/// request count of `stopped` does not move.
async fn assert_no_more_requests(stopped: &Target, clock: &Target, n: usize) {
    let before = stopped.requests();
    clock.wait_for_requests(clock.requests() + n, WAIT).await;
    assert_eq!(
        stopped.requests(),
        before,
        "{} is still scraped: {:?}",
        stopped.addr,
        stopped.uris()
    );
}

/// Shows that exactly one loop scrapes `target`. Loops tick on a fixed grid and skip missed
/// ticks (never early, never in bursts), so 8 requests of one loop span at least 7 intervals
/// from any moment before the first; two loops of one target (same slot, or any two slots)
/// make 8 requests within 5. A count bound: a slow machine only makes it hold more.
async fn assert_one_loop(target: &Target) {
    let from = Instant::now();
    let n = target.requests();
    target.wait_for_requests(n + 8, WAIT).await;
    let took = from.elapsed();
    assert!(
        took >= INTERVAL * 11 / 2,
        "{}: 8 requests in {took:?} at one per {INTERVAL:?}: more than one loop",
        target.addr
    );
}

fn discovered<'a>(target: &'a Value, name: &str) -> Option<&'a str> {
    target["discoveredLabels"][name].as_str()
}

fn labels(target: &Value) -> BTreeMap<String, String> {
    target["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn of_pod<'a>(targets: &'a [Value], pod: &str) -> Vec<&'a Value> {
    targets
        .iter()
        .filter(|t| discovered(t, "__meta_kubernetes_pod_name") == Some(pod))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_this_node_are_scraped_by_the_annotation_convention() {
    let c = Cluster::start().await;
    let web = app_target(7).await;
    // Declared by web's container, but not the annotated port: not scraped.
    let unused = app_target(0).await;
    let tls = app_target(0).await;
    let quiet = app_target(0).await;
    let elsewhere = app_target(0).await;
    let web_port = web.addr.port();
    c.api.apply_pod(
        &PodBuilder::new("prod", "web", NODE, "127.0.0.1")
            .label("app.kubernetes.io/name", "web")
            .annotation("prometheus.io/scrape", "true")
            .annotation("prometheus.io/port", &web_port.to_string())
            .annotation("prometheus.io/path", "/custom")
            .annotation("prometheus.io/param_format", "prometheus")
            .container(
                "app",
                "registry.example/web:1.4",
                &[
                    ("metrics", web_port, "TCP"),
                    ("http", unused.addr.port(), "TCP"),
                ],
            )
            .controller("ReplicaSet", "web-5d8f7"),
    );
    c.api
        .apply_pod(&scraped_pod("tls", &tls).annotation("prometheus.io/scheme", "https"));
    c.api
        .apply_pod(&scraped_pod("quiet", &quiet).without_annotation("prometheus.io/scrape"));
    let other_node = scraped_pod_on("node-b", "elsewhere", &elsewhere);
    c.api.apply_pod(&other_node);

    // Series carry the convention's labels, and nothing of discovery's own.
    let web_instance = instance(&web);
    let sample = wait_scraped(&c.rx, "app_requests_total", &web_instance).await;
    let expected: Vec<(String, String)> = [
        ("__name__", "app_requests_total"),
        ("container", "app"),
        ("instance", web_instance.as_str()),
        ("job", JOB),
        ("namespace", "prod"),
        ("node", NODE),
        ("pod", "web"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(sample.labels, expected);
    assert_eq!(sample.value, 7.0);
    let up = wait_scraped(&c.rx, "up", &web_instance).await;
    assert_eq!(up.value, 1.0);
    assert_eq!(up.label("pod"), Some("web"));
    // Path and params from the annotations.
    assert_eq!(web.uris()[0], "/custom?format=prometheus");

    // The targets API: what is scraped, from what was discovered, and what is not, and why.
    let (active, dropped) = c
        .targets_when("web up, tls down, two dropped", |active, dropped| {
            active.len() == 2
                && of_pod(active, "web")
                    .first()
                    .is_some_and(|t| t["health"] == "up")
                && of_pod(active, "tls")
                    .first()
                    .is_some_and(|t| t["health"] == "down")
                && dropped.len() == 2
        })
        .await;
    let web_target = of_pod(&active, "web")[0];
    assert_eq!(
        web_target["scrapeUrl"],
        format!("http://{web_instance}/custom?format=prometheus")
    );
    assert_eq!(
        labels(web_target),
        expected
            .iter()
            .filter(|(k, _)| k != "__name__")
            .cloned()
            .collect::<BTreeMap<_, _>>()
    );
    for (name, value) in [
        ("__address__", format!("127.0.0.1:{web_port}")),
        ("__meta_kubernetes_namespace", "prod".to_owned()),
        ("__meta_kubernetes_pod_name", "web".to_owned()),
        ("__meta_kubernetes_pod_ip", "127.0.0.1".to_owned()),
        ("__meta_kubernetes_pod_uid", "uid-prod-web".to_owned()),
        ("__meta_kubernetes_pod_node_name", NODE.to_owned()),
        ("__meta_kubernetes_pod_host_ip", "192.168.0.10".to_owned()),
        ("__meta_kubernetes_pod_phase", "Running".to_owned()),
        ("__meta_kubernetes_pod_ready", "true".to_owned()),
        (
            "__meta_kubernetes_pod_label_app_kubernetes_io_name",
            "web".to_owned(),
        ),
        (
            "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name",
            "true".to_owned(),
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_path",
            "/custom".to_owned(),
        ),
        (
            "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape",
            "true".to_owned(),
        ),
        ("__meta_kubernetes_pod_container_name", "app".to_owned()),
        (
            "__meta_kubernetes_pod_container_image",
            "registry.example/web:1.4".to_owned(),
        ),
        (
            "__meta_kubernetes_pod_container_id",
            "containerd://app-id".to_owned(),
        ),
        ("__meta_kubernetes_pod_container_init", "false".to_owned()),
        (
            "__meta_kubernetes_pod_container_port_name",
            "metrics".to_owned(),
        ),
        (
            "__meta_kubernetes_pod_container_port_number",
            web_port.to_string(),
        ),
        (
            "__meta_kubernetes_pod_container_port_protocol",
            "TCP".to_owned(),
        ),
        (
            "__meta_kubernetes_pod_controller_kind",
            "ReplicaSet".to_owned(),
        ),
        (
            "__meta_kubernetes_pod_controller_name",
            "web-5d8f7".to_owned(),
        ),
    ] {
        assert_eq!(
            discovered(web_target, name),
            Some(value.as_str()),
            "{name} in {web_target:#}"
        );
    }
    // The scheme annotation: https (which the plain-HTTP test target cannot speak).
    let tls_target = of_pod(&active, "tls")[0];
    assert_eq!(
        tls_target["scrapeUrl"],
        format!("https://{}/metrics", instance(&tls))
    );
    assert_ne!(tls_target["lastError"], "");
    // Dropped: web's other declared port, and the pod that does not ask to be scraped.
    let web_dropped = of_pod(&dropped, "web");
    assert_eq!(web_dropped.len(), 1, "{dropped:#?}");
    assert_eq!(
        discovered(
            web_dropped[0],
            "__meta_kubernetes_pod_container_port_number"
        ),
        Some(unused.addr.port().to_string().as_str())
    );
    let quiet_dropped = of_pod(&dropped, "quiet");
    assert_eq!(quiet_dropped.len(), 1, "{dropped:#?}");
    assert!(
        dropped.iter().all(|t| t["reason"] == "relabeling"),
        "{dropped:#?}"
    );
    assert!(of_pod(&active, "elsewhere").is_empty() && of_pod(&dropped, "elsewhere").is_empty());
    assert_eq!(
        c.metric("scrapelet_targets_dropped", &[("job", JOB)]).await,
        2.0
    );
    assert_eq!(c.metric("scrapelet_kubernetes_pods", &[]).await, 3.0);
    assert_eq!(
        c.metric(
            "scrapelet_kubernetes_watch_events_total",
            &[("resource", "pod"), ("event", "add")]
        )
        .await,
        3.0
    );

    // The pod on another node is never scraped, nor ever sent to this agent: every pod
    // request asks for this node's pods only; lists come from the watch cache.
    web.wait_for_requests(web.requests() + 2, WAIT).await;
    for t in [&elsewhere, &quiet, &unused] {
        assert_eq!(t.requests(), 0, "{} was scraped", t.addr);
    }
    let pod_requests: Vec<_> = c
        .api
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/pods"))
        .collect();
    assert!(c.api.pod_lists() >= 1 && c.api.pod_watches() >= 1);
    for r in &pod_requests {
        assert_eq!(
            r.query.get("fieldSelector").map(String::as_str),
            Some("spec.nodeName=node-a"),
            "{r:?}"
        );
        if !r.query.contains_key("watch") {
            assert_eq!(
                r.query.get("resourceVersion").map(String::as_str),
                Some("0"),
                "{r:?}"
            );
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_annotations_move_the_target_and_the_old_one_goes_stale() {
    let c = Cluster::start().await;
    let first = app_target(1).await;
    let second = app_target(2).await;
    let pod = PodBuilder::new("prod", "web", NODE, "127.0.0.1")
        .annotation("prometheus.io/scrape", "true")
        .container(
            "app",
            "app:1",
            &[
                ("first", first.addr.port(), "TCP"),
                ("second", second.addr.port(), "TCP"),
            ],
        );
    c.api.apply_pod(
        &pod.clone()
            .annotation("prometheus.io/port", &first.addr.port().to_string()),
    );
    wait_scraped(&c.rx, "app_requests_total", &instance(&first)).await;
    assert_eq!(second.requests(), 0);

    c.api.apply_pod(
        &pod.annotation("prometheus.io/port", &second.addr.port().to_string())
            .annotation("prometheus.io/path", "/other"),
    );
    second.wait_for_requests(1, PROMPTLY).await;
    assert_eq!(second.uris()[0], "/other");
    let new = wait_scraped(&c.rx, "app_requests_total", &instance(&second)).await;
    assert_eq!(new.value, 2.0);
    assert_eq!(new.label("pod"), Some("web"));

    let ended = wait_all_stale(&c.rx, &instance(&first)).await;
    assert!(
        ended.contains("app_requests_total") && ended.contains("up"),
        "{ended:?}"
    );
    assert_no_more_requests(&first, &second, 3).await;
    let (active, _) = c.targets().await;
    assert_eq!(active.len(), 1, "{active:#?}");
    assert_eq!(
        active[0]["scrapeUrl"],
        format!("http://{}/other", instance(&second))
    );
    assert_eq!(
        c.metric("scrapelet_targets", &[("job", JOB)]).await,
        1.0,
        "one loop left"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_pod_is_scraped_at_its_new_ip() {
    let c = Cluster::start().await;
    let before = app_target(1).await;
    // After the restart the container listens on the same port of a new pod IP: another
    // loopback address (all of 127.0.0.0/8 is loopback on Linux), elsewhere a new port.
    let exposition = Exposition::text("app_requests_total 2\n");
    let new_ip = SocketAddr::from(([127, 0, 0, 2], before.addr.port()));
    let after = match Target::start_at(new_ip, exposition.clone()).await {
        Ok(t) => t,
        Err(e) if cfg!(target_os = "linux") => panic!("bind {new_ip}: {e}"),
        Err(_) => Target::start(exposition).await,
    };
    c.api.apply_pod(&scraped_pod("web", &before));
    wait_scraped(&c.rx, "app_requests_total", &instance(&before)).await;

    c.api
        .apply_pod(&scraped_pod("web", &after).uid("uid-prod-web"));
    after.wait_for_requests(1, PROMPTLY).await;
    let new = wait_scraped(&c.rx, "app_requests_total", &instance(&after)).await;
    assert_eq!(new.label("pod"), Some("web"));
    wait_all_stale(&c.rx, &instance(&before)).await;
    assert_no_more_requests(&before, &after, 3).await;

    let (active, _) = c.targets().await;
    assert_eq!(active.len(), 1, "{active:#?}");
    assert_eq!(
        active[0]["scrapeUrl"],
        format!("http://{}/metrics", instance(&after))
    );
    assert_eq!(
        discovered(&active[0], "__meta_kubernetes_pod_ip"),
        Some(after.addr.ip().to_string().as_str())
    );
    assert_eq!(c.metric("scrapelet_targets", &[("job", JOB)]).await, 1.0);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_and_readiness_follow_the_example_rules() {
    let c = Cluster::start().await;
    let t = app_target(1).await;
    let inst = instance(&t);
    let pod = scraped_pod("web", &t);

    // Pending: dropped, and the targets API says so.
    c.api.apply_pod(&pod.clone().phase("Pending"));
    let (_, dropped) = c
        .targets_when("the pending pod dropped", |_, dropped| {
            of_pod(dropped, "web").len() == 1
        })
        .await;
    let pending = of_pod(&dropped, "web")[0];
    assert_eq!(
        discovered(pending, "__meta_kubernetes_pod_phase"),
        Some("Pending")
    );
    assert_eq!(pending["reason"], "relabeling");
    assert_eq!(t.requests(), 0);

    // Running: scraped.
    c.api.apply_pod(&pod);
    t.wait_for_requests(1, PROMPTLY).await;
    wait_scraped(&c.rx, "up", &inst).await;

    // Running but not ready: the example still scrapes it (readiness is not one of its
    // rules); the same loop goes on and the targets API shows the new readiness.
    c.api.apply_pod(&pod.clone().ready(false));
    c.targets_when("the target shows it is not ready", |active, _| {
        of_pod(active, "web")
            .first()
            .is_some_and(|t| discovered(t, "__meta_kubernetes_pod_ready") == Some("false"))
    })
    .await;
    t.wait_for_requests(t.requests() + 2, WAIT).await;
    assert!(
        series_of(&c.rx.accepted(), "up", &inst)
            .iter()
            .all(|s| s.value == 1.0),
        "not ready did not interrupt the series"
    );

    // Failed: the target stops, its series go stale, and it shows as dropped with its phase.
    c.api.apply_pod(&pod.clone().ready(false).phase("Failed"));
    wait_all_stale(&c.rx, &inst).await;
    let (active, dropped) = c
        .targets_when("the failed pod dropped", |active, dropped| {
            active.is_empty() && of_pod(dropped, "web").len() == 1
        })
        .await;
    assert!(active.is_empty());
    let failed = of_pod(&dropped, "web")[0];
    assert_eq!(
        discovered(failed, "__meta_kubernetes_pod_phase"),
        Some("Failed")
    );
    assert_eq!(failed["reason"], "relabeling");
    c.metric_when("scrapelet_targets", &[("job", JOB)], |v| v == 0.0)
        .await;
    assert_eq!(
        c.metric("scrapelet_targets_dropped", &[("job", JOB)]).await,
        1.0
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_goes_stale_and_its_loop_stops() {
    let c = Cluster::start().await;
    let keep = app_target(1).await;
    let gone = app_target(2).await;
    c.api.apply_pod(&scraped_pod("keep", &keep));
    c.api.apply_pod(&scraped_pod("gone", &gone));
    wait_scraped(&c.rx, "app_requests_total", &instance(&keep)).await;
    wait_scraped(&c.rx, "app_requests_total", &instance(&gone)).await;
    c.metric_when("scrapelet_targets", &[("job", JOB)], |v| v == 2.0)
        .await;

    assert!(c.api.delete_pod("prod", "gone"));
    let ended = wait_all_stale(&c.rx, &instance(&gone)).await;
    assert!(
        ended.contains("app_requests_total") && ended.contains("up"),
        "{ended:?}"
    );
    assert_no_more_requests(&gone, &keep, 3).await;
    let (active, dropped) = c.targets().await;
    assert_eq!(active.len(), 1, "{active:#?}");
    assert_eq!(of_pod(&active, "keep").len(), 1);
    assert!(of_pod(&dropped, "gone").is_empty(), "{dropped:#?}");
    assert_eq!(c.metric("scrapelet_targets", &[("job", JOB)]).await, 1.0);
    assert_eq!(c.metric("scrapelet_kubernetes_pods", &[]).await, 1.0);
    assert_eq!(
        c.metric(
            "scrapelet_kubernetes_watch_events_total",
            &[("resource", "pod"), ("event", "delete")]
        )
        .await,
        1.0
    );

    // The last pod goes too: the job has no loop left.
    assert!(c.api.delete_pod("prod", "keep"));
    wait_all_stale(&c.rx, &instance(&keep)).await;
    c.metric_when("scrapelet_targets", &[("job", JOB)], |v| v == 0.0)
        .await;
    let (active, _) = c.targets().await;
    assert!(active.is_empty(), "{active:#?}");
    assert_eq!(c.metric("scrapelet_kubernetes_pods", &[]).await, 0.0);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraping_goes_on_while_the_api_server_is_away() {
    let c = Cluster::start().await;
    let a = app_target(1).await;
    c.api.apply_pod(&scraped_pod("a", &a));
    wait_scraped(&c.rx, "app_requests_total", &instance(&a)).await;
    let healthy = [("resource", "pod")];
    c.metric_when("scrapelet_kubernetes_watch_healthy", &healthy, |v| v == 1.0)
        .await;
    let relists = c
        .metric("scrapelet_kubernetes_relists_total", &[("resource", "pod")])
        .await;
    let synced = c
        .metric(
            "scrapelet_kubernetes_last_sync_timestamp_seconds",
            &[("resource", "pod")],
        )
        .await;
    assert!(relists >= 1.0 && synced > 1.0e9, "{relists} {synced}");

    c.api.stop();
    c.metric_when("scrapelet_kubernetes_watch_healthy", &healthy, |v| v == 0.0)
        .await;
    c.metric_when(
        "scrapelet_kubernetes_watch_errors_total",
        &[("resource", "pod")],
        |v| v >= 1.0,
    )
    .await;
    // The last known pod is still scraped and delivered.
    let before = series_of(&c.rx.accepted(), "app_requests_total", &instance(&a)).len();
    c.rx.wait_until(WAIT, "a scraped while the API server is away", |r| {
        series_of(&r.accepted(), "app_requests_total", &instance(&a)).len() >= before + 3
    })
    .await;
    let (active, _) = c.targets().await;
    assert_eq!(of_pod(&active, "a").len(), 1, "{active:#?}");

    // Back on the same port: the agent relists and is healthy again.
    c.api.restart().await;
    c.metric_when("scrapelet_kubernetes_watch_healthy", &healthy, |v| v == 1.0)
        .await;
    assert!(
        c.metric("scrapelet_kubernetes_relists_total", &[("resource", "pod")])
            .await
            > relists
    );
    assert!(
        c.metric(
            "scrapelet_kubernetes_last_sync_timestamp_seconds",
            &[("resource", "pod")]
        )
        .await
            > synced
    );
    // A pod added after the recovery is scraped.
    let b = app_target(2).await;
    c.api.apply_pod(&scraped_pod("b", &b));
    b.wait_for_requests(1, PROMPTLY).await;
    wait_scraped(&c.rx, "app_requests_total", &instance(&b)).await;

    // a was never lost: no staleness marker, still exactly one loop.
    assert!(
        last_values(&c.rx.accepted(), &instance(&a))
            .values()
            .all(|v| !v.is_nan())
            && series_of(&c.rx.accepted(), "up", &instance(&a))
                .iter()
                .all(|s| s.value == 1.0)
    );
    assert_eq!(c.metric("scrapelet_targets", &[("job", JOB)]).await, 2.0);
    assert_one_loop(&a).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_and_dropped_watches_keep_one_loop_per_target() {
    let c = Cluster::start().await;
    let a = app_target(1).await;
    let b = app_target(2).await;
    c.api.apply_pod(&scraped_pod("a", &a));
    c.api.apply_pod(&scraped_pod("b", &b));
    wait_scraped(&c.rx, "app_requests_total", &instance(&a)).await;
    wait_scraped(&c.rx, "app_requests_total", &instance(&b)).await;
    let gone = [("resource", "pod"), ("kind", "gone")];

    // A dropped connection: the watch resumes.
    let watches = c.api.pod_watches();
    c.api.drop_watches();
    support::eventually(WAIT, "the watch resumed", || c.api.pod_watches() > watches).await;
    // A bookmark, then 410 Gone on the next watch: a relist.
    let lists = c.api.pod_lists();
    c.api.bookmark();
    c.api.fail_next_watch_with_gone();
    c.api.drop_watches();
    support::eventually(WAIT, "a relist after 410 Gone", || {
        c.api.pod_lists() > lists
    })
    .await;
    c.metric_when("scrapelet_kubernetes_watch_errors_total", &gone, |v| {
        v >= 1.0
    })
    .await;
    // A pod added around a dropped connection whose history is then compacted: found by
    // the resumed watch or by the relist after its 410, once either way.
    let cc = app_target(3).await;
    c.api.drop_watches();
    c.api.apply_pod(&scraped_pod("c", &cc));
    c.api.compact();
    c.api.drop_watches();
    wait_scraped(&c.rx, "app_requests_total", &instance(&cc)).await;

    let (active, _) = c.targets().await;
    let mut urls: Vec<&str> = active
        .iter()
        .filter_map(|t| t["scrapeUrl"].as_str())
        .collect();
    urls.sort_unstable();
    urls.dedup();
    assert_eq!((active.len(), urls.len()), (3, 3), "{active:#?}");
    assert_eq!(c.metric("scrapelet_targets", &[("job", JOB)]).await, 3.0);
    tokio::join!(
        assert_one_loop(&a),
        assert_one_loop(&b),
        assert_one_loop(&cc)
    );
    for t in [&a, &b] {
        assert!(
            last_values(&c.rx.accepted(), &instance(t))
                .values()
                .all(|v| !v.is_nan()),
            "{} lost its series",
            t.addr
        );
    }
    assert!(
        c.metric("scrapelet_kubernetes_relists_total", &[("resource", "pod")])
            .await
            >= 2.0
    );
    c.shutdown().await;
}

/// `/-/ready` means "scraping this node's pods": while the API server has not answered the
/// first pod list, 503 with the reason; once it has, 200, and the pod is already a target.
#[tokio::test]
async fn ready_only_once_the_first_list_of_pods_is_applied() {
    let api = KubeApi::start().await;
    let rx = Receiver::start().await;
    let target = app_target(1).await;
    api.apply_pod(&scraped_pod("web-1", &target));
    api.hold_lists();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, None);
    let agent = TestAgent::start_config(example_config(&kubeconfig, &rx), Some(NODE)).await;

    support::eventually(WAIT, "the first pod list request (held)", || {
        api.pod_lists() >= 1
    })
    .await;
    let (status, body) = agent.get("/-/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        format!(
            "not ready: waiting for the first list of pods from the Kubernetes API (jobs: {JOB})\n"
        )
    );
    // Liveness is not readiness.
    assert_eq!(agent.get("/-/healthy").await.0, 200);
    assert!(target.requests() == 0, "nothing is scraped before the list");

    api.release_lists();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = agent.get("/-/ready").await;
        if status == 200 {
            assert_eq!(body, "scrapelet is ready.\n");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "not ready in time: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Ready means the scrape manager has the pods: the pod is a target at that moment.
    let json = agent.targets_json().await;
    let active = json["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        active
            .iter()
            .any(|t| t["labels"]["instance"] == instance(&target).as_str()),
        "{json}"
    );
    wait_scraped(&rx, "app_requests_total", &instance(&target)).await;
    agent.agent.shutdown().await;
}

/// Without Kubernetes discovery the agent is ready as soon as it has started.
#[tokio::test]
async fn ready_at_once_with_static_configs_only() {
    let target = app_target(1).await;
    let agent = TestAgent::start(&format!(
        "scrape_configs:\n  - job_name: s\n    static_configs:\n      - targets: ['{}']\n",
        instance(&target)
    ))
    .await;
    assert_eq!(
        agent.get("/-/ready").await,
        (200, "scrapelet is ready.\n".to_owned())
    );
    agent.agent.shutdown().await;
}
