//! Kubernetes pod discovery through the fake API server (tests/support/kube_api.rs) with the
//! real kube client: pods appear, change and go; the watch survives 410 Gone, dropped
//! connections and an API server that goes away; scrape configs share one watch.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use scrapelet::config::{self, ScrapeConfig};
use scrapelet::discovery::kubernetes::{Metrics, Options};
use scrapelet::discovery::{Manager, TargetGroup, Updates};
use support::kube_api::{KubeApi, PodBuilder};

const NODE: &str = "node-a";
const WAIT: Duration = Duration::from_secs(15);

/// A discovery manager for `NODE` with short backoffs, and its metrics registry.
struct Discovery {
    manager: Manager,
    /// Latest wins per job: an update replaced before it was taken is never seen.
    updates: Arc<Updates>,
    registry: Registry,
    /// The last update of each job.
    last: BTreeMap<String, Vec<TargetGroup>>,
}

impl Discovery {
    async fn start(configs: &[ScrapeConfig]) -> Discovery {
        let updates = Arc::new(Updates::new());
        let mut registry = Registry::default();
        let mut options = Options::new(NODE, Metrics::register(&mut registry));
        options.min_backoff = Duration::from_millis(20);
        options.max_backoff = Duration::from_millis(200);
        options.coalesce = Duration::from_millis(20);
        let mut manager = Manager::new(updates.clone()).with_kubernetes(Some(options));
        manager.start(configs).await.expect("start discovery");
        Discovery {
            manager,
            updates,
            registry,
            last: BTreeMap::new(),
        }
    }

    /// Receives updates until `job`'s groups satisfy `check`; returns them. Every update of
    /// the job on the way is passed to `each` (to assert what must hold throughout).
    async fn until_each(
        &mut self,
        job: &str,
        mut each: impl FnMut(&[TargetGroup]),
        check: impl Fn(&[TargetGroup]) -> bool,
    ) -> Vec<TargetGroup> {
        if let Some(groups) = self.last.get(job)
            && check(groups)
        {
            return groups.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let updates = tokio::time::timeout_at(deadline, self.updates.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no matching update for {job} in time; last: {:#?}",
                        self.last.get(job)
                    )
                });
            let mut of_job = None;
            for update in updates {
                if update.job == job {
                    of_job = Some(update.groups.clone());
                }
                self.last.insert(update.job, update.groups);
            }
            if let Some(groups) = of_job {
                each(&groups);
                if check(&groups) {
                    return groups;
                }
            }
        }
    }

    async fn until(
        &mut self,
        job: &str,
        check: impl Fn(&[TargetGroup]) -> bool,
    ) -> Vec<TargetGroup> {
        self.until_each(job, |_| {}, check).await
    }

    /// The sum of the metric lines that start with `prefix` (name and labels).
    fn metric(&self, prefix: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next())
            .filter_map(|v| v.parse::<f64>().ok())
            .sum()
    }

    /// Polls the metric until `ok` holds.
    async fn wait_metric(&self, prefix: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.metric(prefix);
            if ok(v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{prefix} stayed at {v}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A config with one job per `(job, extra kubernetes_sd_configs keys)`, all through the
/// kubeconfig at `kubeconfig`.
fn configs(kubeconfig: &Path, jobs: &[(&str, &str)]) -> Vec<ScrapeConfig> {
    let mut yaml = String::from("scrape_configs:\n");
    for (job, extra) in jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs: [{{targets: ['static:1']}}]\n    kubernetes_sd_configs:\n      - role: pod\n        kubeconfig_file: {}\n{extra}",
            kubeconfig.display()
        ));
    }
    config::parse(&yaml, "test.yml")
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .scrape_configs
}

fn group<'a>(groups: &'a [TargetGroup], source: &str) -> Option<&'a TargetGroup> {
    groups.iter().find(|g| g.source == source)
}

fn has_targets(groups: &[TargetGroup], source: &str) -> bool {
    group(groups, source).is_some_and(|g| !g.targets.is_empty())
}

fn web(name: &str, ip: &str) -> PodBuilder {
    PodBuilder::new("prod", name, NODE, ip)
        .label("app", "web")
        .annotation("prometheus.io/scrape", "true")
        .container("app", "web:1", &[("metrics", 8080, "TCP")])
}

struct Fixture {
    api: KubeApi,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

async fn fixture() -> Fixture {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, Some("t0ken"));
    api.require_token("t0ken");
    Fixture {
        api,
        _dir: dir,
        kubeconfig,
    }
}

#[tokio::test]
async fn pods_appear_with_prometheus_meta_labels() {
    let f = fixture().await;
    f.api.apply_pod(
        &web("web-1", "10.0.0.1")
            .container("sidecar", "envoy:1", &[])
            .controller("ReplicaSet", "web-abc"),
    );
    let mut d = Discovery::start(&configs(&f.kubeconfig, &[("pods", "")])).await;
    let groups = d.until("pods", |g| has_targets(g, "pod/prod/web-1")).await;
    assert_eq!(groups[0].source, "static/0", "static groups come first");
    let g = group(&groups, "pod/prod/web-1").expect("pod group");
    for (name, value) in [
        ("__meta_kubernetes_namespace", "prod"),
        ("__meta_kubernetes_pod_name", "web-1"),
        ("__meta_kubernetes_pod_ip", "10.0.0.1"),
        ("__meta_kubernetes_pod_uid", "uid-prod-web-1"),
        ("__meta_kubernetes_pod_node_name", NODE),
        ("__meta_kubernetes_pod_host_ip", "192.168.0.10"),
        ("__meta_kubernetes_pod_phase", "Running"),
        ("__meta_kubernetes_pod_ready", "true"),
        ("__meta_kubernetes_pod_label_app", "web"),
        ("__meta_kubernetes_pod_labelpresent_app", "true"),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true",
        ),
        (
            "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape",
            "true",
        ),
        ("__meta_kubernetes_pod_controller_kind", "ReplicaSet"),
        ("__meta_kubernetes_pod_controller_name", "web-abc"),
    ] {
        assert_eq!(g.labels.get(name), Some(value), "{name}");
    }
    assert_eq!(g.targets.len(), 2);
    let port = &g.targets[0];
    assert_eq!(port.get("__address__"), Some("10.0.0.1:8080"));
    assert_eq!(
        port.get("__meta_kubernetes_pod_container_port_name"),
        Some("metrics")
    );
    assert_eq!(
        port.get("__meta_kubernetes_pod_container_id"),
        Some("containerd://app-id")
    );
    let portless = &g.targets[1];
    assert_eq!(portless.get("__address__"), Some("10.0.0.1"));
    assert_eq!(
        portless.get("__meta_kubernetes_pod_container_name"),
        Some("sidecar")
    );
    assert_eq!(d.metric("scrapelet_kubernetes_pods "), 1.0);
}

#[tokio::test]
async fn a_pod_on_another_node_is_never_seen() {
    let f = fixture().await;
    f.api.apply_pod(
        &PodBuilder::new("prod", "elsewhere-1", "node-b", "10.9.0.1").container(
            "c",
            "i",
            &[("", 80, "TCP")],
        ),
    );
    f.api.apply_pod(&web("here-1", "10.0.0.1"));
    let mut d = Discovery::start(&configs(&f.kubeconfig, &[("pods", "")])).await;
    let mut saw_other = false;
    d.until_each(
        "pods",
        |g| saw_other |= g.iter().any(|g| g.source.contains("elsewhere")),
        |g| has_targets(g, "pod/prod/here-1"),
    )
    .await;
    // Changes on the other node while watching: still invisible; one here arrives.
    f.api.apply_pod(&PodBuilder::new(
        "prod",
        "elsewhere-2",
        "node-b",
        "10.9.0.2",
    ));
    f.api.apply_pod(&web("here-2", "10.0.0.2"));
    d.until_each(
        "pods",
        |g| saw_other |= g.iter().any(|g| g.source.contains("elsewhere")),
        |g| has_targets(g, "pod/prod/here-2"),
    )
    .await;
    assert!(!saw_other, "a pod of another node reached discovery");
    // The API server filtered: every pod request carried the node's field selector.
    let pod_requests: Vec<_> = f
        .api
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/pods"))
        .collect();
    assert!(pod_requests.len() >= 2, "{pod_requests:?}");
    for r in &pod_requests {
        assert_eq!(
            r.query.get("fieldSelector").map(String::as_str),
            Some("spec.nodeName=node-a"),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn modified_pods_update_their_group() {
    let f = fixture().await;
    f.api.apply_pod(&web("web-1", "10.0.0.1"));
    let mut d = Discovery::start(&configs(&f.kubeconfig, &[("pods", "")])).await;
    d.until("pods", |g| has_targets(g, "pod/prod/web-1")).await;

    // Restarted with a new IP.
    f.api.apply_pod(&web("web-1", "10.0.0.99"));
    let groups = d
        .until("pods", |g| {
            group(g, "pod/prod/web-1")
                .is_some_and(|g| g.targets[0].get("__address__") == Some("10.0.0.99:8080"))
        })
        .await;
    assert_eq!(
        group(&groups, "pod/prod/web-1").and_then(|g| g.labels.get("__meta_kubernetes_pod_ip")),
        Some("10.0.0.99")
    );

    // Annotation edited, readiness lost.
    f.api.apply_pod(
        &web("web-1", "10.0.0.99")
            .annotation("prometheus.io/path", "/custom")
            .ready(false),
    );
    let groups = d
        .until("pods", |g| {
            group(g, "pod/prod/web-1")
                .is_some_and(|g| g.labels.get("__meta_kubernetes_pod_ready") == Some("false"))
        })
        .await;
    let g = group(&groups, "pod/prod/web-1").expect("group");
    assert_eq!(
        g.labels
            .get("__meta_kubernetes_pod_annotation_prometheus_io_path"),
        Some("/custom")
    );

    // IP gone (evicted): an empty group, as Prometheus sends it.
    f.api.apply_pod(&web("web-1", ""));
    let groups = d
        .until("pods", |g| {
            group(g, "pod/prod/web-1").is_some_and(|g| g.targets.is_empty())
        })
        .await;
    assert!(group(&groups, "pod/prod/web-1").is_some_and(|g| g.labels.is_empty()));
}

#[tokio::test]
async fn deleted_pods_send_an_empty_group_then_vanish() {
    let f = fixture().await;
    f.api.apply_pod(&web("web-1", "10.0.0.1"));
    f.api.apply_pod(&web("web-2", "10.0.0.2"));
    let mut d = Discovery::start(&configs(&f.kubeconfig, &[("pods", "")])).await;
    d.until("pods", |g| has_targets(g, "pod/prod/web-2")).await;
    assert!(f.api.delete_pod("prod", "web-1"));
    let groups = d
        .until("pods", |g| {
            group(g, "pod/prod/web-1").is_some_and(|g| g.targets.is_empty())
        })
        .await;
    assert!(has_targets(&groups, "pod/prod/web-2"));
    // The next update no longer carries it at all.
    f.api.apply_pod(&web("web-3", "10.0.0.3"));
    let groups = d.until("pods", |g| has_targets(g, "pod/prod/web-3")).await;
    assert!(group(&groups, "pod/prod/web-1").is_none());
    d.wait_metric(
        "scrapelet_kubernetes_watch_events_total{resource=\"pod\",event=\"delete\"}",
        |v| v >= 1.0,
    )
    .await;
}

#[tokio::test]
async fn gone_relists_without_losing_state() {
    let f = fixture().await;
    f.api.apply_pod(&web("web-1", "10.0.0.1"));
    let mut d = Discovery::start(&configs(&f.kubeconfig, &[("pods", "")])).await;
    d.until("pods", |g| has_targets(g, "pod/prod/web-1")).await;
    assert_eq!(f.api.pod_lists(), 1);

    // The history is compacted while the watch is away: the resume gets 410 and relists.
    f.api.compact();
    f.api.fail_next_watch_with_gone();
    f.api.drop_watches();
    f.api.apply_pod(&web("web-2", "10.0.0.2"));
    let mut lost = false;
    d.until_each(
        "pods",
        |g| lost |= !has_targets(g, "pod/prod/web-1"),
        |g| has_targets(g, "pod/prod/web-2"),
    )
    .await;
    assert!(!lost, "web-1 disappeared during the relist");
    assert!(f.api.pod_lists() >= 2, "no relist after 410");
    d.wait_metric(
        "scrapelet_kubernetes_watch_errors_total{resource=\"pod\",kind=\"gone\"}",
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(
        d.metric("scrapelet_kubernetes_watch_healthy{resource=\"pod\"}"),
        1.0
    );
}

#[tokio::test]
async fn dropped_connections_resume_without_relisting() {
    let f = fixture().await;
    f.api.apply_pod(&web("web-1", "10.0.0.1"));
    let mut d = Discovery::start(&configs(&f.kubeconfig, &[("pods", "")])).await;
    d.until("pods", |g| has_targets(g, "pod/prod/web-1")).await;
    for i in 2..5 {
        let watches = f.api.pod_watches();
        f.api.drop_watches();
        // Wait for the client to come back before changing anything.
        let deadline = tokio::time::Instant::now() + WAIT;
        while f.api.pod_watches() == watches {
            assert!(tokio::time::Instant::now() < deadline, "no new watch");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        f.api
            .apply_pod(&web(&format!("web-{i}"), &format!("10.0.0.{i}")));
        let source = format!("pod/prod/web-{i}");
        d.until("pods", |g| has_targets(g, &source)).await;
    }
    assert_eq!(f.api.pod_lists(), 1, "a dropped watch was relisted");

    // A bookmark moves the version on (here past a change on another node, which this watch
    // never sees): the next resume starts from it.
    f.api
        .apply_pod(&PodBuilder::new("prod", "elsewhere", "node-b", "10.9.0.1"));
    f.api.bookmark();
    let bookmark = f.api.resource_version().to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // The bookmark may race the drop: send both until a watch resumes from the bookmark.
        let watches = f.api.pod_watches();
        f.api.drop_watches();
        while f.api.pod_watches() == watches {
            assert!(tokio::time::Instant::now() < deadline, "no new watch");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let last = f
            .api
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.query.contains_key("watch"));
        if last.and_then(|r| r.query.get("resourceVersion").cloned()) == Some(bookmark.clone()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no watch resumed from the bookmark"
        );
        f.api.bookmark();
    }
    // Resumed watches continue from the last seen version.
    let resumed: Vec<_> = f
        .api
        .requests()
        .into_iter()
        .filter(|r| r.query.contains_key("watch"))
        .collect();
    assert!(
        resumed
            .iter()
            .all(|r| r.query.get("resourceVersion").is_some_and(|v| v != "0"))
    );
}

#[tokio::test]
async fn api_server_down_keeps_the_last_groups_and_recovers() {
    let f = fixture().await;
    f.api.apply_pod(&web("web-1", "10.0.0.1"));
    let mut d = Discovery::start(&configs(&f.kubeconfig, &[("pods", "")])).await;
    d.until("pods", |g| has_targets(g, "pod/prod/web-1")).await;

    f.api.stop();
    d.wait_metric(
        "scrapelet_kubernetes_watch_healthy{resource=\"pod\"}",
        |v| v == 0.0,
    )
    .await;
    let errors = d
        .wait_metric(
            "scrapelet_kubernetes_watch_errors_total{resource=\"pod\"",
            |v| v >= 2.0,
        )
        .await;
    // Nothing was sent that lost the pod while the server was away.
    for update in d.updates.try_take() {
        assert!(has_targets(&update.groups, "pod/prod/web-1"), "{update:?}");
    }
    // Meanwhile the pod changed; the agent learns it on recovery.
    f.api.apply_pod(&web("web-1", "10.0.0.7"));
    f.api.restart().await;
    d.until("pods", |g| {
        group(g, "pod/prod/web-1")
            .is_some_and(|g| g.labels.get("__meta_kubernetes_pod_ip") == Some("10.0.0.7"))
    })
    .await;
    d.wait_metric(
        "scrapelet_kubernetes_watch_healthy{resource=\"pod\"}",
        |v| v == 1.0,
    )
    .await;
    assert!(errors >= 2.0);
    assert!(d.metric("scrapelet_kubernetes_last_sync_timestamp_seconds{resource=\"pod\"}") > 1.0e9);
}

#[tokio::test]
async fn scrape_configs_on_one_connection_share_one_watch() {
    let f = fixture().await;
    f.api.apply_pod(&web("web-1", "10.0.0.1"));
    f.api.apply_pod(
        &PodBuilder::new("kube-system", "dns-1", NODE, "10.0.0.53")
            .label("app", "dns")
            .container("dns", "coredns", &[("metrics", 9153, "TCP")]),
    );
    let jobs = [
        ("all", ""),
        (
            "prod-web",
            "        namespaces: {names: [prod]}\n        selectors: [{role: pod, label: 'app in (web)', field: 'status.phase=Running'}]\n",
        ),
        ("system", "        namespaces: {names: [kube-system]}\n"),
    ];
    let mut d = Discovery::start(&configs(&f.kubeconfig, &jobs)).await;
    let all = d
        .until("all", |g| {
            has_targets(g, "pod/prod/web-1") && has_targets(g, "pod/kube-system/dns-1")
        })
        .await;
    assert_eq!(all.len(), 3);
    let prod = d
        .until("prod-web", |g| has_targets(g, "pod/prod/web-1"))
        .await;
    assert!(group(&prod, "pod/kube-system/dns-1").is_none());
    let system = d
        .until("system", |g| has_targets(g, "pod/kube-system/dns-1"))
        .await;
    assert!(group(&system, "pod/prod/web-1").is_none());
    assert_eq!(d.manager.kubernetes_connections(), 1);
    assert_eq!(f.api.pod_lists(), 1);
    assert_eq!(f.api.pod_watches(), 1);

    // A pod that stops matching a job's selector leaves that job (an empty group once).
    f.api
        .apply_pod(&web("web-1", "10.0.0.1").phase("Succeeded"));
    d.until("prod-web", |g| {
        group(g, "pod/prod/web-1").is_some_and(|g| g.targets.is_empty())
    })
    .await;

    // A reload with the same connection keeps the watch.
    d.manager
        .start(&configs(&f.kubeconfig, &jobs[..1]))
        .await
        .expect("reload");
    d.until("all", |g| has_targets(g, "pod/prod/web-1")).await;
    assert_eq!(f.api.pod_lists(), 1, "the reload restarted the watch");
}

#[tokio::test]
async fn node_metadata_is_attached_when_asked() {
    let f = fixture().await;
    f.api
        .apply_node(NODE, &[("topology.kubernetes.io/zone", "z1")]);
    f.api
        .apply_node("node-b", &[("topology.kubernetes.io/zone", "z2")]);
    f.api.apply_pod(&web("web-1", "10.0.0.1"));
    let jobs = [("pods", "        attach_metadata: {node: true}\n")];
    let mut d = Discovery::start(&configs(&f.kubeconfig, &jobs)).await;
    let groups = d
        .until("pods", |g| {
            group(g, "pod/prod/web-1")
                .is_some_and(|g| g.labels.get("__meta_kubernetes_node_name").is_some())
        })
        .await;
    let g = group(&groups, "pod/prod/web-1").expect("group");
    assert_eq!(g.labels.get("__meta_kubernetes_node_name"), Some(NODE));
    assert_eq!(
        g.labels
            .get("__meta_kubernetes_node_label_topology_kubernetes_io_zone"),
        Some("z1")
    );
    // Node labels change: the pods' groups follow.
    f.api
        .apply_node(NODE, &[("topology.kubernetes.io/zone", "z9")]);
    d.until("pods", |g| {
        group(g, "pod/prod/web-1").is_some_and(|g| {
            g.labels
                .get("__meta_kubernetes_node_label_topology_kubernetes_io_zone")
                == Some("z9")
        })
    })
    .await;
}

#[tokio::test]
async fn kubernetes_configs_without_a_node_name_fail_to_start() {
    let f = fixture().await;
    let mut manager = Manager::new(Arc::new(Updates::new())).with_kubernetes(None);
    let err = manager
        .start(&configs(&f.kubeconfig, &[("pods", "")]))
        .await
        .expect_err("no node name");
    assert!(err.to_string().contains("--node-name"), "{err}");
    assert!(err.to_string().contains("NODE_NAME"), "{err}");
    assert_eq!(f.api.requests().len(), 0);
}

#[tokio::test]
async fn api_server_and_token_from_the_config() {
    let f = fixture().await;
    f.api.apply_pod(&web("web-1", "10.0.0.1"));
    let yaml = format!(
        "scrape_configs:\n  - job_name: pods\n    kubernetes_sd_configs:\n      - role: pod\n        api_server: {}\n        authorization: {{credentials: t0ken}}\n",
        f.api.url()
    );
    let configs = config::parse(&yaml, "t.yml")
        .expect("config")
        .scrape_configs;
    let mut d = Discovery::start(&configs).await;
    d.until("pods", |g| has_targets(g, "pod/prod/web-1")).await;
}

/// The fake server on its own, through the kube client: paging, label and field selectors.
#[tokio::test]
async fn fake_server_pages_and_selects() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let f = fixture().await;
    for i in 0..7 {
        let node = if i % 2 == 0 { NODE } else { "node-b" };
        let app = if i < 4 { "web" } else { "db" };
        f.api.apply_pod(
            &PodBuilder::new("prod", &format!("p{i}"), node, &format!("10.0.1.{i}"))
                .label("app", app)
                .phase(if i == 6 { "Pending" } else { "Running" }),
        );
    }
    let kubeconfig = kube::config::Kubeconfig::read_from(&f.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let pods: Api<Pod> = Api::all(client);
    let names = |list: kube::core::ObjectList<Pod>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    };
    let check = |selector: (&str, &str), expected: &[&str]| {
        let pods = pods.clone();
        let (field, label) = (selector.0.to_owned(), selector.1.to_owned());
        let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        async move {
            let lp = ListParams::default().fields(&field).labels(&label);
            let got = names(pods.list(&lp).await.expect("list"));
            assert_eq!(got, expected, "fields {field:?} labels {label:?}");
        }
    };
    check(("spec.nodeName=node-a", ""), &["p0", "p2", "p4", "p6"]).await;
    check(("spec.nodeName!=node-a", ""), &["p1", "p3", "p5"]).await;
    check(("status.phase=Pending", ""), &["p6"]).await;
    check(("metadata.name=p3,metadata.namespace=prod", ""), &["p3"]).await;
    check(("", "app=db"), &["p4", "p5", "p6"]).await;
    check(("", "app!=db"), &["p0", "p1", "p2", "p3"]).await;
    check(("", "app in (db,x)"), &["p4", "p5", "p6"]).await;
    check(("", "app notin (web)"), &["p4", "p5", "p6"]).await;
    check(("", "app"), &["p0", "p1", "p2", "p3", "p4", "p5", "p6"]).await;
    check(("", "!app"), &[]).await;
    check(("spec.nodeName=node-a", "app=web"), &["p0", "p2"]).await;

    // Paging: limit 3 gives three pages chained by continue tokens.
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let list = pods.list(&lp).await.expect("page");
        pages += 1;
        let token = list.metadata.continue_.clone();
        assert_eq!(
            list.metadata.resource_version,
            Some(f.api.resource_version().to_string())
        );
        seen.extend(names(list));
        match token {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
}

/// examples/kubernetes.yml's relabel rules over the meta labels of real discovered pods.
#[tokio::test]
async fn example_config_implements_the_annotation_convention() {
    use scrapelet::labels::LabelsBuilder;
    use scrapelet::relabel::Relabeler;

    let f = fixture().await;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes.yml");
    let mut cfg = config::load(&example).expect("example config");
    let job = &mut cfg.scrape_configs[0];
    job.kubernetes_sd_configs[0].kubeconfig_file = Some(f.kubeconfig.clone());

    let scrape = |p: PodBuilder| p.annotation("prometheus.io/scrape", "true");
    f.api.apply_pod(
        &scrape(PodBuilder::new("prod", "full", NODE, "10.0.0.1"))
            .annotation("prometheus.io/scheme", "https")
            .annotation("prometheus.io/path", "/custom")
            .annotation("prometheus.io/param_format", "prometheus")
            .container("app", "app:1", &[("http", 8080, "TCP")]),
    );
    f.api.apply_pod(
        &scrape(PodBuilder::new("prod", "annotated-port", NODE, "10.0.0.2"))
            .annotation("prometheus.io/port", "9102")
            .container("app", "app:1", &[("http", 8080, "TCP")])
            .container("exporter", "exporter:1", &[]),
    );
    f.api.apply_pod(
        &scrape(PodBuilder::new("prod", "declared-port", NODE, "10.0.0.3"))
            .annotation("prometheus.io/port", "9102")
            .container(
                "app",
                "app:1",
                &[("http", 8080, "TCP"), ("metrics", 9102, "TCP")],
            ),
    );
    f.api.apply_pod(
        &scrape(PodBuilder::new("prod", "v6", NODE, "2001:db8::5")).container(
            "app",
            "app:1",
            &[("http", 8080, "TCP")],
        ),
    );
    f.api.apply_pod(
        &PodBuilder::new("prod", "not-asked", NODE, "10.0.0.6").container(
            "app",
            "app:1",
            &[("http", 8080, "TCP")],
        ),
    );
    f.api.apply_pod(
        &scrape(PodBuilder::new("prod", "pending", NODE, "10.0.0.7"))
            .phase("Pending")
            .container("app", "app:1", &[("http", 8080, "TCP")]),
    );

    let configs = cfg.scrape_configs.clone();
    let mut d = Discovery::start(&configs).await;
    let groups = d
        .until("kubernetes-pods", |g| {
            g.iter().filter(|g| !g.targets.is_empty()).count() == 6
        })
        .await;

    // Each target as scrape's target building starts it: group labels under target labels,
    // then the job's defaults, then relabeling.
    let relabeler = Relabeler::new(&configs[0].relabel_configs);
    let mut kept: Vec<BTreeMap<String, String>> = Vec::new();
    for g in &groups {
        for t in &g.targets {
            let mut lb: LabelsBuilder = t.to_builder();
            for l in g.labels.iter() {
                if lb.get(l.name).is_none() {
                    lb.set(l.name, l.value);
                }
            }
            for (name, value) in [
                ("job", "kubernetes-pods"),
                ("__scheme__", "http"),
                ("__metrics_path__", "/metrics"),
            ] {
                if lb.get(name).is_none() {
                    lb.set(name, value);
                }
            }
            if relabeler.process(&mut lb) {
                kept.push(
                    lb.build()
                        .iter()
                        .filter(|l| !l.name.starts_with("__meta_") && !l.name.starts_with("__tmp"))
                        .map(|l| (l.name.to_owned(), l.value.to_owned()))
                        .collect(),
                );
            }
        }
    }
    kept.sort_by(|a, b| a["__address__"].cmp(&b["__address__"]));
    let target = |address: &str, scheme: &str, path: &str, pod: &str, container: &str| {
        BTreeMap::from(
            [
                ("__address__", address),
                ("__scheme__", scheme),
                ("__metrics_path__", path),
                ("job", "kubernetes-pods"),
                ("namespace", "prod"),
                ("pod", pod),
                ("container", container),
                ("node", NODE),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
    };
    let mut full = target("10.0.0.1:8080", "https", "/custom", "full", "app");
    full.insert("__param_format".to_owned(), "prometheus".to_owned());
    let expected = vec![
        full,
        target(
            "10.0.0.2:9102",
            "http",
            "/metrics",
            "annotated-port",
            "exporter",
        ),
        target("10.0.0.3:9102", "http", "/metrics", "declared-port", "app"),
        target("[2001:db8::5]:8080", "http", "/metrics", "v6", "app"),
    ];
    assert_eq!(kept, expected);
}
