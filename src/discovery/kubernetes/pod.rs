//! Pods as the agent keeps them, and their target groups with Prometheus's `role: pod` meta
//! labels (discovery/kubernetes/pod.go).
//!
//! A [`PodInfo`] keeps only what the meta labels and the selectors need; everything else of
//! the API object (managedFields, most of spec and status, volumes, env ...) is dropped when it
//! arrives. Its group is built once per change and kept next to it, so a job's update is a
//! filter and a copy.
//!
//! Invariants of the groups built here (tests prove them against Prometheus's pod_test.go):
//! - source `pod/<namespace>/<name>`; no targets and no labels when the pod has no IP yet;
//! - one target per declared port of every container, init containers after the others
//!   (`_container_init` "true"), and one target with address = pod IP per container without
//!   ports (IPv6 in brackets);
//! - label and annotation names sanitised as Prometheus's `strutil.SanitizeLabelName`.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Node, Pod};

use super::super::TargetGroup;
use crate::config::PodFields;
use crate::labels::{ADDRESS, Labels, LabelsBuilder};

const PREFIX: &str = "__meta_kubernetes_";

/// What the agent keeps of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PodInfo {
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub node_name: Box<str>,
    pub phase: Box<str>,
    pub pod_ip: Box<str>,
    /// The pod's labels as written (for label selectors).
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// Its target group, built once.
    pub group: TargetGroup,
}

/// What the agent keeps of its node (`attach_metadata: {node: true}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NodeInfo {
    /// `__meta_kubernetes_node_name`, `_node_label_*`, `_node_annotation_*` (and `present`s).
    pub labels: Labels,
}

/// Prometheus's `strutil.SanitizeLabelName`: every character outside `[a-zA-Z0-9_]` becomes
/// `_` (one per character, not per byte).
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `pod/<namespace>/<name>`.
pub(super) fn source(namespace: &str, name: &str) -> String {
    format!("pod/{namespace}/{name}")
}

impl PodInfo {
    /// Keeps what is needed of `pod` and builds its group.
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        let status = pod.status.as_ref();
        let pod_ip = status.and_then(|s| s.pod_ip.as_deref()).unwrap_or_default();
        PodInfo {
            namespace: namespace.into(),
            name: name.into(),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default()
                .into(),
            phase: status
                .and_then(|s| s.phase.as_deref())
                .unwrap_or_default()
                .into(),
            pod_ip: pod_ip.into(),
            labels: meta
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            group: build_group(pod),
        }
    }

    /// The fields a field selector can name.
    pub fn fields(&self) -> PodFields<'_> {
        PodFields {
            name: &self.name,
            namespace: &self.namespace,
            node_name: &self.node_name,
            phase: &self.phase,
            pod_ip: &self.pod_ip,
        }
    }

    /// The value of the pod label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// Heap bytes held (an estimate: string and label bytes, vector slots).
    #[cfg(test)]
    pub fn heap_size(&self) -> usize {
        let strs = self.namespace.len()
            + self.name.len()
            + self.node_name.len()
            + self.phase.len()
            + self.pod_ip.len();
        let labels: usize = self
            .labels
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2 * std::mem::size_of::<Box<str>>())
            .sum();
        let group = self.group.source.capacity()
            + self.group.labels.encoded_len()
            + self
                .group
                .targets
                .iter()
                .map(|t| t.encoded_len() + std::mem::size_of::<Labels>())
                .sum::<usize>();
        strs + labels + group
    }
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let mut lb = LabelsBuilder::new();
        object_meta_labels(&mut lb, "node", &node.metadata);
        NodeInfo { labels: lb.build() }
    }
}

/// The pod's target group, as Prometheus's `buildPod`.
pub(super) fn build_group(pod: &Pod) -> TargetGroup {
    let meta = &pod.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let mut group = TargetGroup {
        source: source(namespace, name),
        ..TargetGroup::default()
    };
    let status = pod.status.as_ref();
    let pod_ip = status.and_then(|s| s.pod_ip.as_deref()).unwrap_or_default();
    // No IP yet (starting) or any more (evicted): an empty group.
    if pod_ip.is_empty() {
        return group;
    }
    let spec = pod.spec.as_ref();

    let mut lb = LabelsBuilder::new();
    let set = |lb: &mut LabelsBuilder, name: &str, value: &str| {
        lb.set(&format!("{PREFIX}{name}"), value);
    };
    set(&mut lb, "namespace", namespace);
    set(&mut lb, "pod_ip", pod_ip);
    set(&mut lb, "pod_ready", &ready(pod));
    set(
        &mut lb,
        "pod_phase",
        status.and_then(|s| s.phase.as_deref()).unwrap_or_default(),
    );
    set(
        &mut lb,
        "pod_node_name",
        spec.and_then(|s| s.node_name.as_deref())
            .unwrap_or_default(),
    );
    set(
        &mut lb,
        "pod_host_ip",
        status
            .and_then(|s| s.host_ip.as_deref())
            .unwrap_or_default(),
    );
    set(&mut lb, "pod_uid", meta.uid.as_deref().unwrap_or_default());
    // The first IPv4 and the first IPv6 address of status.podIPs.
    let (mut v4, mut v6) = (false, false);
    for ip in status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
    {
        match ip.ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) if !v4 => {
                v4 = true;
                set(&mut lb, "pod_ipv4", &ip.ip);
            }
            Ok(IpAddr::V6(_)) if !v6 => {
                v6 = true;
                set(&mut lb, "pod_ipv6", &ip.ip);
            }
            _ => {}
        }
    }
    object_meta_labels(&mut lb, "pod", meta);
    if let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        set(&mut lb, "pod_controller_kind", &owner.kind);
        set(&mut lb, "pod_controller_name", &owner.name);
    }
    group.labels = lb.build();

    let empty = Vec::new();
    let containers = spec.map_or(&empty, |s| &s.containers);
    let init_containers = spec
        .and_then(|s| s.init_containers.as_ref())
        .unwrap_or(&empty);
    let no_statuses = Vec::new();
    let statuses = status
        .and_then(|s| s.container_statuses.as_ref())
        .unwrap_or(&no_statuses);
    let init_statuses = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .unwrap_or(&no_statuses);
    let all = containers
        .iter()
        .map(|c| (c, false, statuses))
        .chain(init_containers.iter().map(|c| (c, true, init_statuses)));
    for (container, is_init, statuses) in all {
        push_targets(&mut group.targets, pod_ip, container, is_init, statuses);
    }
    group
}

fn push_targets(
    targets: &mut Vec<Labels>,
    pod_ip: &str,
    c: &Container,
    is_init: bool,
    statuses: &[ContainerStatus],
) {
    let id = statuses
        .iter()
        .find(|s| s.name == c.name)
        .and_then(|s| s.container_id.as_deref())
        .unwrap_or_default();
    let common = |lb: &mut LabelsBuilder| {
        lb.set("__meta_kubernetes_pod_container_name", &c.name);
        lb.set("__meta_kubernetes_pod_container_id", id);
        lb.set(
            "__meta_kubernetes_pod_container_image",
            c.image.as_deref().unwrap_or_default(),
        );
        lb.set(
            "__meta_kubernetes_pod_container_init",
            if is_init { "true" } else { "false" },
        );
    };
    let ports = c.ports.as_deref().unwrap_or_default();
    if ports.is_empty() {
        let mut lb = LabelsBuilder::new();
        let address = match pod_ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => pod_ip.to_owned(),
        };
        lb.set(ADDRESS, &address);
        common(&mut lb);
        targets.push(lb.build());
        return;
    }
    for port in ports {
        let mut lb = LabelsBuilder::new();
        let number = port.container_port.to_string();
        let address = match pod_ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{pod_ip}]:{number}"),
            _ => format!("{pod_ip}:{number}"),
        };
        lb.set(ADDRESS, &address);
        common(&mut lb);
        lb.set("__meta_kubernetes_pod_container_port_number", &number);
        lb.set(
            "__meta_kubernetes_pod_container_port_name",
            port.name.as_deref().unwrap_or_default(),
        );
        lb.set(
            "__meta_kubernetes_pod_container_port_protocol",
            port.protocol.as_deref().unwrap_or_default(),
        );
        targets.push(lb.build());
    }
}

/// `_name`, `_label_*`, `_labelpresent_*`, `_annotation_*`, `_annotationpresent_*` for `role`
/// (Prometheus's `addObjectMetaLabels`).
fn object_meta_labels(
    lb: &mut LabelsBuilder,
    role: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    lb.set(
        &format!("{PREFIX}{role}_name"),
        meta.name.as_deref().unwrap_or_default(),
    );
    for (kind, map) in [("label", &meta.labels), ("annotation", &meta.annotations)] {
        for (k, v) in map.iter().flatten() {
            let name = sanitize_label_name(k);
            lb.set(&format!("{PREFIX}{role}_{kind}_{name}"), v);
            lb.set(&format!("{PREFIX}{role}_{kind}present_{name}"), "true");
        }
    }
}

/// The status of the Ready condition, lower-cased; `unknown` without one.
fn ready(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map_or_else(|| "unknown".to_owned(), |c| c.status.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sanitize_as_prometheus() {
        for (input, expected) in [
            ("app", "app"),
            ("app.kubernetes.io/name", "app_kubernetes_io_name"),
            ("prometheus.io/scrape", "prometheus_io_scrape"),
            ("test/label", "test_label"),
            ("a-b", "a_b"),
            ("ünï", "_n_"),
            ("9lives", "9lives"),
            ("", ""),
        ] {
            assert_eq!(sanitize_label_name(input), expected, "{input}");
        }
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("pod JSON")
    }

    /// `check(pod, group labels, targets)`: the group as Prometheus's pod role builds it.
    fn check(pod: &Pod, labels: &[(&str, &str)], targets: &[&[(&str, &str)]]) {
        let group = build_group(pod);
        assert_eq!(group.labels, Labels::from_pairs(labels.iter().copied()));
        let expected: Vec<Labels> = targets
            .iter()
            .map(|t| Labels::from_pairs(t.iter().copied()))
            .collect();
        assert_eq!(group.targets, expected);
    }

    /// Prometheus's pod_test.go `makeMultiPortPods`.
    fn multi_port_pod() -> serde_json::Value {
        json!({
            "metadata": {
                "name": "testpod", "namespace": "default", "uid": "abc123",
                "labels": {"test/label": "testvalue"},
                "annotations": {"test/annotation": "testannotationvalue"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "testcontrollerkind",
                    "name": "testcontrollername", "uid": "x", "controller": true}],
            },
            "spec": {"nodeName": "testnode", "containers": [
                {"name": "testcontainer0", "image": "testcontainer0:latest", "ports": [
                    {"name": "testport0", "protocol": "TCP", "containerPort": 9000},
                    {"name": "testport1", "protocol": "UDP", "containerPort": 9001}]},
                {"name": "testcontainer1", "image": "testcontainer1:latest"}]},
            "status": {"podIP": "1.2.3.4", "hostIP": "2.3.4.5", "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "testcontainer0", "containerID": "docker://a1b2c3d4e5f6", "image": "", "imageID": "", "ready": true, "restartCount": 0},
                    {"name": "testcontainer1", "containerID": "containerd://6f5e4d3c2b1a", "image": "", "imageID": "", "ready": true, "restartCount": 0}]},
        })
    }

    const BASE: [(&str, &str); 8] = [
        ("__meta_kubernetes_pod_name", "testpod"),
        ("__meta_kubernetes_namespace", "default"),
        ("__meta_kubernetes_pod_node_name", "testnode"),
        ("__meta_kubernetes_pod_ip", "1.2.3.4"),
        ("__meta_kubernetes_pod_host_ip", "2.3.4.5"),
        ("__meta_kubernetes_pod_ready", "true"),
        ("__meta_kubernetes_pod_phase", "Running"),
        ("__meta_kubernetes_pod_uid", "abc123"),
    ];

    #[test]
    fn multi_port_pod_as_prometheus() {
        let mut labels = BASE.to_vec();
        labels.extend([
            ("__meta_kubernetes_pod_label_test_label", "testvalue"),
            ("__meta_kubernetes_pod_labelpresent_test_label", "true"),
            (
                "__meta_kubernetes_pod_annotation_test_annotation",
                "testannotationvalue",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_test_annotation",
                "true",
            ),
            (
                "__meta_kubernetes_pod_controller_kind",
                "testcontrollerkind",
            ),
            (
                "__meta_kubernetes_pod_controller_name",
                "testcontrollername",
            ),
        ]);
        check(
            &pod(multi_port_pod()),
            &labels,
            &[
                &[
                    ("__address__", "1.2.3.4:9000"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer0"),
                    (
                        "__meta_kubernetes_pod_container_image",
                        "testcontainer0:latest",
                    ),
                    ("__meta_kubernetes_pod_container_port_name", "testport0"),
                    ("__meta_kubernetes_pod_container_port_number", "9000"),
                    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    (
                        "__meta_kubernetes_pod_container_id",
                        "docker://a1b2c3d4e5f6",
                    ),
                ],
                &[
                    ("__address__", "1.2.3.4:9001"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer0"),
                    (
                        "__meta_kubernetes_pod_container_image",
                        "testcontainer0:latest",
                    ),
                    ("__meta_kubernetes_pod_container_port_name", "testport1"),
                    ("__meta_kubernetes_pod_container_port_number", "9001"),
                    ("__meta_kubernetes_pod_container_port_protocol", "UDP"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    (
                        "__meta_kubernetes_pod_container_id",
                        "docker://a1b2c3d4e5f6",
                    ),
                ],
                &[
                    ("__address__", "1.2.3.4"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer1"),
                    (
                        "__meta_kubernetes_pod_container_image",
                        "testcontainer1:latest",
                    ),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    (
                        "__meta_kubernetes_pod_container_id",
                        "containerd://6f5e4d3c2b1a",
                    ),
                ],
            ],
        );
        assert_eq!(
            build_group(&pod(multi_port_pod())).source,
            "pod/default/testpod"
        );
    }

    #[test]
    fn init_containers_come_last_and_are_marked() {
        // pod_test.go `makeInitContainerPods`.
        let p = pod(json!({
            "metadata": {"name": "testpod", "namespace": "default", "uid": "abc123"},
            "spec": {"nodeName": "testnode",
                "containers": [{"name": "testcontainer", "image": "testcontainer:latest",
                    "ports": [{"name": "testport", "protocol": "TCP", "containerPort": 9000}]}],
                "initContainers": [{"name": "initcontainer", "image": "initcontainer:latest"}]},
            "status": {"podIP": "1.2.3.4", "hostIP": "2.3.4.5", "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "testcontainer", "containerID": "docker://a1b2c3d4e5f6", "image": "", "imageID": "", "ready": false, "restartCount": 0}],
                "initContainerStatuses": [{"name": "initcontainer", "containerID": "containerd://6f5e4d3c2b1a", "image": "", "imageID": "", "ready": false, "restartCount": 0}]},
        }));
        let mut labels = BASE.to_vec();
        labels[5] = ("__meta_kubernetes_pod_ready", "false");
        labels[6] = ("__meta_kubernetes_pod_phase", "Pending");
        check(
            &p,
            &labels,
            &[
                &[
                    ("__address__", "1.2.3.4:9000"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer"),
                    (
                        "__meta_kubernetes_pod_container_image",
                        "testcontainer:latest",
                    ),
                    ("__meta_kubernetes_pod_container_port_name", "testport"),
                    ("__meta_kubernetes_pod_container_port_number", "9000"),
                    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    (
                        "__meta_kubernetes_pod_container_id",
                        "docker://a1b2c3d4e5f6",
                    ),
                ],
                &[
                    ("__address__", "1.2.3.4"),
                    ("__meta_kubernetes_pod_container_name", "initcontainer"),
                    (
                        "__meta_kubernetes_pod_container_image",
                        "initcontainer:latest",
                    ),
                    ("__meta_kubernetes_pod_container_init", "true"),
                    (
                        "__meta_kubernetes_pod_container_id",
                        "containerd://6f5e4d3c2b1a",
                    ),
                ],
            ],
        );
    }

    #[test]
    fn a_pod_without_ip_is_an_empty_group() {
        // pod_test.go `TestPodDiscoveryUpdateEmptyPodIP`.
        let mut v = multi_port_pod();
        v["status"]["podIP"] = json!("");
        let g = build_group(&pod(v));
        assert_eq!(g.source, "pod/default/testpod");
        assert!(g.targets.is_empty());
        assert!(g.labels.is_empty());
    }

    #[test]
    fn readiness_without_condition_is_unknown_and_no_controller_without_flag() {
        let mut v = multi_port_pod();
        v["status"]["conditions"] = json!([]);
        v["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        let g = build_group(&pod(v));
        assert_eq!(g.labels.get("__meta_kubernetes_pod_ready"), Some("unknown"));
        assert_eq!(g.labels.get("__meta_kubernetes_pod_controller_kind"), None);
    }

    #[test]
    fn dual_stack_and_ipv6_addresses() {
        let mut v = multi_port_pod();
        v["status"]["podIP"] = json!("2001:db8::1");
        v["status"]["podIPs"] =
            json!([{"ip": "2001:db8::1"}, {"ip": "10.1.2.3"}, {"ip": "10.9.9.9"}]);
        let g = build_group(&pod(v));
        assert_eq!(
            g.labels.get("__meta_kubernetes_pod_ipv6"),
            Some("2001:db8::1")
        );
        assert_eq!(g.labels.get("__meta_kubernetes_pod_ipv4"), Some("10.1.2.3"));
        assert_eq!(g.targets[0].get(ADDRESS), Some("[2001:db8::1]:9000"));
        assert_eq!(g.targets[2].get(ADDRESS), Some("[2001:db8::1]"));
    }

    #[test]
    fn kept_pods_are_small() {
        // A typical pod as the API server sends it: 6 labels, 4 annotations, managedFields,
        // volumes, env; the agent keeps its group and selector fields only.
        let mut v = multi_port_pod();
        for i in 0..6 {
            v["metadata"]["labels"][format!("app.kubernetes.io/l{i}")] = json!("value-of-label");
        }
        for i in 0..4 {
            v["metadata"]["annotations"][format!("prometheus.io/a{i}")] = json!("annotation-value");
        }
        v["metadata"]["managedFields"] = json!([{"manager": "kubelet", "operation": "Update",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}}}}]);
        v["spec"]["volumes"] = json!([{"name": "token", "projected": {"sources": []}}]);
        let full = serde_json::to_vec(&v).map_or(0, |b| b.len());
        let kept = PodInfo::from_pod(&pod(v));
        let size = kept.heap_size() + std::mem::size_of::<PodInfo>();
        // Measured: 3.6 KB for this pod (three targets; the prebuilt group's long meta label
        // names dominate), against 1.5 KB of JSON here and 5-20 KB for real API objects.
        assert!(size < 4096, "{size} bytes kept (JSON was {full})");
        assert_eq!(kept.label("app.kubernetes.io/l0"), Some("value-of-label"));
    }
}
