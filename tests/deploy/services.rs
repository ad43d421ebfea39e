//! The Services of the manifests: each selects a workload and targets a
//! port a running container declares; in a sidecar's pod the
//! application's (which the rules send to sluice), in a gateway's a port
//! a sluice listener serves.

use crate::config::{ports_at, served_ports};
use crate::manifests::{Ctr, Doc, Workload, absent};
use crate::pods::SluicePod;

pub fn target_the_application_or_the_gateway_listener(svc: &Doc, workloads: &[Workload<'_>], pods: &[SluicePod<'_>]) {
    let selected: Vec<&Workload<'_>> = workloads.iter().filter(|w| w.selected_by(svc)).collect();
    assert!(
        !selected.is_empty(),
        "{}: selects no workload of the manifests",
        svc.what()
    );
    for w in selected {
        let pod = pods.iter().find(|p| std::ptr::eq(p.w.doc, w.doc));
        for port in svc.service_ports() {
            let target = if absent(&port["targetPort"]) {
                &port["port"]
            } else {
                &port["targetPort"]
            };
            let (c, number) = w
                .containers()
                .into_iter()
                .filter(Ctr::keeps_running)
                .find_map(|c| c.declared_port(target).map(|n| (c, n)))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: targetPort {target:?} is no containerPort of {}",
                        svc.what(),
                        w.what()
                    )
                });
            if let Some(pod) = pod {
                targets_past_sluice(svc, pod, c, number);
            }
        }
    }
}

/// In a sidecar's pod the Service targets the application, on a port the
/// rules redirect; in a gateway's, a port a listener of sluice serves.
fn targets_past_sluice(svc: &Doc, pod: &SluicePod<'_>, c: Ctr<'_>, number: u16) {
    let is_sluice = c.name() == pod.run.name();
    if pod.is_sidecar() {
        assert!(
            !is_sluice,
            "{}: targets sluice's port {number}; target the application's port, which the rules send to sluice",
            svc.what()
        );
        assert!(
            !ports_at(&pod.table, "sidecar", "exclude_inbound_ports").contains(&number),
            "{}: targets port {number}, which `exclude_inbound_ports` keeps out of the sidecar",
            svc.what()
        );
    } else {
        assert!(
            is_sluice && served_ports(&pod.table).contains(&number),
            "{}: targets port {number}, on which no listener of {} serves",
            svc.what(),
            pod.origin
        );
    }
}
