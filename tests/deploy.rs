//! The Kubernetes manifests of `examples/kubernetes` and the `Dockerfile`,
//! checked against sluice and against each other.
//!
//! - Every sluice config in a ConfigMap passes `sluice check`, with each
//!   file it names written where the pod's volumes would put it (mesh
//!   certificates made here for the pod's SPIFFE ID), and the init
//!   container's `sluice iptables` plans its rules from the same file.
//! - The sidecar runs as `[sidecar] proxy_uid` and the application as
//!   another UID; the init container is root with NET_ADMIN.
//! - Probes ask the admin port for paths the admin listener serves.
//! - Every path a config names is on a volume of the container.
//! - Services target the application's port (or the gateway's listener).
//! - The Dockerfile builds the binary and runs it as the sidecar's UID.
//!
//! The helpers are in `deploy/`: the manifests (`manifests`), the pods
//! that run sluice (`pods`) and what their configs say (`config`), the
//! configs run for real (`materialize`), and the checks of a sluice
//! container, a sidecar, a gateway, the Services, the Secrets and the
//! Dockerfile.

mod common;

#[path = "deploy/config.rs"]
mod config;
#[path = "deploy/container.rs"]
mod container;
#[path = "deploy/dockerfile.rs"]
mod dockerfile;
#[path = "deploy/gateway.rs"]
mod gateway;
#[path = "deploy/manifests.rs"]
mod manifests;
#[path = "deploy/materialize.rs"]
mod materialize;
#[path = "deploy/pods.rs"]
mod pods;
#[path = "deploy/secrets.rs"]
mod secrets;
#[path = "deploy/services.rs"]
mod services;
#[path = "deploy/sidecar.rs"]
mod sidecar;

use manifests::{MANIFESTS, Workload, manifests, read, workspace};
use pods::{sidecar_uids, sluice_pods};

#[test]
fn every_sluice_config_passes_check_and_plans_its_rules() {
    let docs = manifests();
    let pods = sluice_pods(&docs);
    assert!(
        pods.iter().any(|p| p.is_sidecar()),
        "{MANIFESTS} has no pod with the sluice sidecar and its `sluice iptables` init container"
    );
    assert!(
        pods.iter().any(|p| !p.is_sidecar()),
        "{MANIFESTS} has no sluice gateway"
    );
    for pod in &pods {
        materialize::passes_check(&docs, pod);
        if let Some(init) = pod.init {
            materialize::plans_rules(&docs, pod, init);
        }
    }
}

#[test]
fn sidecars_run_as_the_uid_their_rules_let_out() {
    let docs = manifests();
    for pod in sluice_pods(&docs).iter().filter(|p| p.is_sidecar()) {
        container::passes_common_checks(&docs, pod);
        sidecar::runs_as_proxy_uid(pod);
        sidecar::apps_run_as_another_uid(pod);
        let init = pod.init.expect("filtered on init");
        sidecar::init_container_sets_up_the_rules(&docs, pod, init);
        sidecar::intercepts_both_directions_on_declared_ports(pod);
        sidecar::app_probes_pass_strict_mtls(pod);
    }
}

#[test]
fn gateways_serve_on_their_service_and_reach_the_mesh() {
    let docs = manifests();
    let pods = sluice_pods(&docs);
    for pod in pods.iter().filter(|p| !p.is_sidecar()) {
        container::passes_common_checks(&docs, pod);
        gateway::runs_replicas(pod);
        gateway::serves_on_declared_ports(pod);
        gateway::endpoints_reach_services(&docs, &pods, pod);
    }
}

#[test]
fn services_target_the_application_or_the_gateway_listener() {
    let docs = manifests();
    let pods = sluice_pods(&docs);
    let workloads = Workload::all(&docs);
    for svc in docs.iter().filter(|d| d.kind() == "Service") {
        services::target_the_application_or_the_gateway_listener(svc, &workloads, &pods);
    }
}

#[test]
fn the_dockerfile_builds_what_the_manifests_run() {
    let stages = dockerfile::stages();
    dockerfile::builds_with_the_pinned_toolchain(&stages);
    let docs = manifests();
    dockerfile::runs_sluice_as_the_sidecars_uid(&stages, &sidecar_uids(&sluice_pods(&docs)));
    dockerfile::has_an_init_image_with_iptables(&stages);
    dockerfile::leaves_target_out_of_the_context();
}

#[test]
fn the_readme_creates_the_secrets_the_pods_mount() {
    let docs = manifests();
    let readme = read(&workspace().join(MANIFESTS).join("README.md"));
    for pod in sluice_pods(&docs) {
        secrets::readme_creates_the_secrets_of(&readme, &pod);
    }
}
