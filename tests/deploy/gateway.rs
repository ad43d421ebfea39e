//! The checks of a gateway's pod: replicated, serving on declared ports,
//! and reaching the mesh through Services of the manifests with a mesh
//! certificate when the pods behind them take only mesh mTLS.

use crate::config::{array, served_ports, strict_mtls};
use crate::manifests::{Doc, find};
use crate::pods::SluicePod;

pub fn runs_replicas(pod: &SluicePod<'_>) {
    assert!(
        pod.w.doc.y["spec"]["replicas"].as_i64().unwrap_or(1) >= 2,
        "{}: a gateway runs at least 2 replicas",
        pod.what()
    );
}

/// The ordinary listeners' ports are among the containerPorts.
pub fn serves_on_declared_ports(pod: &SluicePod<'_>) {
    let what = pod.what();
    let served = served_ports(&pod.table);
    assert!(!served.is_empty(), "{what}: {} has no ordinary listener", pod.origin);
    for port in &served {
        assert!(
            pod.run.ports().contains(port),
            "{what}: listener port {port} is not among the containerPorts"
        );
    }
}

/// A cluster endpoint named after a Service of the manifests
/// (`<name>.<namespace>.svc…`): that Service exists, has the port, and if
/// it selects pods whose sidecar takes only mesh mTLS, the gateway has a
/// mesh certificate.
pub fn endpoints_reach_services(docs: &[Doc], pods: &[SluicePod<'_>], pod: &SluicePod<'_>) {
    let what = pod.what();
    let clusters = array(&pod.table, "clusters");
    let endpoints = clusters
        .iter()
        .filter_map(|cluster| cluster.get("endpoints").and_then(toml::Value::as_array))
        .flatten()
        .filter_map(toml::Value::as_str);
    for endpoint in endpoints {
        let (host, port) = endpoint.rsplit_once(':').expect("an endpoint is host:port");
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() < 3 || labels[2] != "svc" {
            continue;
        }
        let svc = find(docs, "Service", labels[1], labels[0])
            .unwrap_or_else(|| panic!("{what}: endpoint {endpoint} names no Service of the manifests"));
        assert!(
            svc.service_ports()
                .iter()
                .any(|p| p["port"].as_i64().map(|n| n.to_string()).as_deref() == Some(port)),
            "{what}: endpoint {endpoint}: {} has no port {port}",
            svc.what()
        );
        let strict_behind = pods
            .iter()
            .any(|p| p.is_sidecar() && strict_mtls(&p.table) && p.w.selected_by(svc));
        assert!(
            !strict_behind || pod.table.contains_key("mesh"),
            "{what}: endpoint {endpoint} reaches pods whose sidecar takes only mesh mTLS, and {} has no [mesh]",
            pod.origin
        );
    }
}
