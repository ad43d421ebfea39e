//! The checks of a sidecar's pod: sluice runs as `[sidecar] proxy_uid`
//! (the UID the rules let out) and the application as another; the
//! `sluice iptables` init container is root with NET_ADMIN, on the same
//! config, before sluice; the interception ports are declared; and under
//! strict mTLS the application's probes go to ports the rules leave alone.

use crate::config::{Listener, admin_address, listeners, ports_at, strict_mtls, table};
use crate::manifests::{Ctr, Doc};
use crate::pods::SluicePod;

/// The sidecar: the UID the rules let out, no capability unless a mark
/// needs NET_ADMIN.
pub fn runs_as_proxy_uid(pod: &SluicePod<'_>) {
    let what = pod.what();
    let sidecar = table(&pod.table, "sidecar").unwrap_or_else(|| {
        panic!(
            "{what}: {} has no [sidecar] table: without `proxy_uid` sluice's own connections are redirected back to it",
            pod.origin
        )
    });
    assert_eq!(
        pod.w.security(pod.run, "runAsUser").as_i64(),
        Some(pod.proxy_uid()),
        "{what}: runAsUser must be `[sidecar] proxy_uid` of {}: the OUTPUT rules let that UID's connections out",
        pod.origin
    );
    if let Some(gid) = proxy_gid(pod) {
        assert_eq!(
            pod.w.security(pod.run, "runAsGroup").as_i64(),
            Some(gid),
            "{what}: runAsGroup must be `[sidecar] proxy_gid`"
        );
    }
    let added = pod.run.capabilities("add");
    if sidecar.contains_key("mark") {
        assert!(
            added.contains(&"NET_ADMIN"),
            "{what}: `[sidecar] mark` needs NET_ADMIN in the sidecar"
        );
    } else {
        assert!(
            added.is_empty(),
            "{what}: the sidecar needs no capability, adds {added:?}"
        );
    }
}

fn proxy_gid(pod: &SluicePod<'_>) -> Option<i64> {
    table(&pod.table, "sidecar")?.get("proxy_gid")?.as_integer()
}

/// The application: another UID, or its traffic escapes sluice.
pub fn apps_run_as_another_uid(pod: &SluicePod<'_>) {
    let uid = pod.proxy_uid();
    let apps = pod.w.apps();
    assert!(!apps.is_empty(), "{}: no application container", pod.w.what());
    for app in apps {
        let app_uid = pod.w.security(app, "runAsUser").as_i64().unwrap_or_else(|| {
            panic!(
                "{}: container {} sets no runAsUser, so nothing shows it is not {uid}, whose connections the rules let out",
                pod.w.what(),
                app.name()
            )
        });
        assert_ne!(
            app_uid,
            uid,
            "{}: container {} runs as `[sidecar] proxy_uid`: its traffic would bypass sluice",
            pod.w.what(),
            app.name()
        );
        if let Some(gid) = proxy_gid(pod) {
            assert_ne!(
                pod.w.security(app, "runAsGroup").as_i64(),
                Some(gid),
                "{}: container {} runs as `[sidecar] proxy_gid`",
                pod.w.what(),
                app.name()
            );
        }
    }
}

/// The init container: root with NET_ADMIN, on the same file, before
/// sluice, with `--no-ipv6` exactly when nothing intercepts IPv6.
pub fn init_container_sets_up_the_rules(docs: &[Doc], pod: &SluicePod<'_>, init: Ctr<'_>) {
    let what = pod.w.what_of(init);
    assert!(
        init.init && !init.keeps_running(),
        "{what}: `sluice iptables` runs once, as an init container, before the application starts"
    );
    assert_eq!(
        init.config_arg().as_ref(),
        Some(&pod.config_path),
        "{what}: `--config` must be the file the sidecar reads"
    );
    let (origin, _) = pod
        .w
        .configmap_file(docs, init, &pod.config_path)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(origin, pod.origin, "{what}: reads another config than the sidecar");
    let added = init.capabilities("add");
    assert!(
        added.contains(&"NET_ADMIN") && added.contains(&"NET_RAW"),
        "{what}: iptables needs NET_ADMIN and NET_RAW, adds {added:?}"
    );
    assert_eq!(
        pod.w.security(init, "runAsUser").as_i64(),
        Some(0),
        "{what}: runs iptables as root (runAsUser: 0)"
    );
    assert_eq!(
        init.security("runAsNonRoot").as_bool(),
        Some(false),
        "{what}: runAsNonRoot: false (the pod may say otherwise for the other containers)"
    );
    if pod.run.init {
        let order: Vec<&str> = pod.w.containers().iter().map(|c| c.name()).collect();
        let at = |name: &str| order.iter().position(|n| *n == name);
        assert!(
            at(init.name()) < at(pod.run.name()),
            "{what}: must come before the sidecar among the init containers"
        );
    }
    let ipv6 = intercepting(pod).iter().any(|l| l.address.is_ipv6());
    let no_ipv6 = init.argv().iter().any(|a| a == "--no-ipv6");
    assert!(
        ipv6 != no_ipv6,
        "{what}: pass `--no-ipv6` exactly when {} has no IPv6 interception listener",
        pod.origin
    );
}

fn intercepting(pod: &SluicePod<'_>) -> Vec<Listener> {
    listeners(&pod.table)
        .into_iter()
        .filter(|l| l.intercept.is_some())
        .collect()
}

/// Ports: every interception listener's, in the sidecar's containerPorts;
/// both directions intercepted.
pub fn intercepts_both_directions_on_declared_ports(pod: &SluicePod<'_>) {
    let what = pod.what();
    let intercepting = intercepting(pod);
    for l in &intercepting {
        assert!(
            pod.run.ports().contains(&l.address.port()),
            "{what}: the interception port {} is not among the containerPorts",
            l.address.port()
        );
    }
    let intercepts = |direction: &str| intercepting.iter().any(|l| l.intercept.as_deref() == Some(direction));
    assert!(
        intercepts("inbound") && intercepts("outbound"),
        "{what}: a sidecar intercepts both directions"
    );
}

/// Strict mTLS refuses the kubelet's plaintext probes: the application's
/// probes must go to ports the rules leave alone.
pub fn app_probes_pass_strict_mtls(pod: &SluicePod<'_>) {
    let t = &pod.table;
    if !strict_mtls(t) {
        return;
    }
    let admin = admin_address(t).expect("checked above");
    let mut left_alone = ports_at(t, "sidecar", "exclude_inbound_ports");
    left_alone.insert(admin.port());
    for app in pod.w.apps() {
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            let Some(port) = app.probe_port(&app.y[probe]) else {
                continue;
            };
            assert!(
                left_alone.contains(&port),
                "{}: container {}'s {probe} on port {port} comes in plaintext from the kubelet, which `mtls = \"strict\"` closes: list the port in `[sidecar] exclude_inbound_ports`",
                pod.w.what(),
                app.name()
            );
        }
    }
}
