//! The checks every `sluice run` container passes, sidecar or gateway: a
//! locked-down security context, probes on the admin port for paths the
//! admin listener serves, memory and shutdown settings that fit the pod,
//! every path of the config mounted, and the mesh identity's service
//! account.

use crate::config::{admin_address, path_refs, text_at};
use crate::manifests::{Doc, MANIFESTS, absent, find, read, str_of};
use crate::pods::SluicePod;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use yaml_rust2::Yaml;

/// Every check of this module.
pub fn passes_common_checks(docs: &[Doc], pod: &SluicePod<'_>) {
    is_locked_down(pod);
    probes_ask_the_admin_port(pod);
    memory_budget_fits_the_limit(pod);
    shuts_down_before_sigkill(pod);
    mounts_every_path(pod);
    mesh_identity_has_a_service_account(docs, pod);
}

/// Not root, no privilege, a read-only root filesystem, no capability.
fn is_locked_down(pod: &SluicePod<'_>) {
    let what = pod.what();
    let c = pod.run;
    let sec = |key: &str| pod.w.security(c, key);
    assert_eq!(sec("runAsNonRoot").as_bool(), Some(true), "{what}: runAsNonRoot: true");
    assert!(
        sec("runAsUser").as_i64().is_some_and(|uid| uid != 0),
        "{what}: runAsUser must be a UID other than 0"
    );
    assert_eq!(
        c.security("readOnlyRootFilesystem").as_bool(),
        Some(true),
        "{what}: readOnlyRootFilesystem: true"
    );
    assert_eq!(
        c.security("allowPrivilegeEscalation").as_bool(),
        Some(false),
        "{what}: allowPrivilegeEscalation: false"
    );
    assert!(
        c.capabilities("drop").contains(&"ALL"),
        "{what}: capabilities must drop ALL"
    );
    assert!(
        c.keeps_running(),
        "{what}: an init container that serves needs restartPolicy: Always"
    );
}

/// Probes: on the admin port, for what the admin listener serves.
fn probes_ask_the_admin_port(pod: &SluicePod<'_>) {
    let what = pod.what();
    let c = pod.run;
    let admin = admin_address(&pod.table).unwrap_or_else(|| {
        panic!(
            "{what}: {} has no `[admin] address`: the probes need /ready and /live",
            pod.origin
        )
    });
    assert!(
        admin.ip().is_unspecified(),
        "{what}: `[admin] address` {admin} must listen on the pod address (0.0.0.0 or [::]) for the kubelet's probes"
    );
    assert!(
        c.ports().contains(&admin.port()),
        "{what}: the admin port {} is not among the containerPorts",
        admin.port()
    );
    let served = admin_paths();
    for (probe, wanted) in [
        ("readinessProbe", Some("/ready")),
        ("livenessProbe", Some("/live")),
        ("startupProbe", None),
    ] {
        let p = &c.y[probe];
        if absent(p) {
            assert!(wanted.is_none(), "{what}: no {probe}");
            continue;
        }
        let path = str_of(&p["httpGet"]["path"]);
        assert!(
            served.contains(path),
            "{what}: {probe} asks for {path:?}, which the admin listener does not serve ({served:?}, from proxy/src/admin.rs)"
        );
        if let Some(wanted) = wanted {
            assert_eq!(path, wanted, "{what}: {probe} path");
        }
        assert_eq!(
            c.probe_port(p),
            Some(admin.port()),
            "{what}: {probe} must ask the admin port {}",
            admin.port()
        );
    }
}

/// The paths the admin listener answers, read from the match arms of
/// `proxy/src/admin.rs` (`"/ready" => …`).
fn admin_paths() -> BTreeSet<String> {
    let code = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin.rs"));
    let paths: BTreeSet<String> = code
        .lines()
        .filter_map(|line| {
            let (path, after) = line.trim_start().strip_prefix("\"/")?.split_once('"')?;
            let after = after.trim_start();
            (after.starts_with("=>") || after.starts_with("if ")).then(|| format!("/{path}"))
        })
        .collect();
    assert!(
        paths.contains("/ready") && paths.contains("/live"),
        "proxy/src/admin.rs no longer answers /ready and /live ({paths:?}): the probes of {MANIFESTS} use them"
    );
    paths
}

/// Memory: the filters' worst case fits in the container.
fn memory_budget_fits_the_limit(pod: &SluicePod<'_>) {
    let what = pod.what();
    let limit = quantity(&pod.run.y["resources"]["limits"]["memory"])
        .unwrap_or_else(|| panic!("{what}: no resources.limits.memory (sluice sizes its filters' budget by it)"));
    if let Some(budget) = text_at(&pod.table, "sandbox", "memory_budget") {
        let bytes = size(budget).unwrap_or_else(|| panic!("{what}: `[sandbox] memory_budget` {budget:?}"));
        assert!(
            bytes <= limit,
            "{what}: `[sandbox] memory_budget` {budget} is over the container's memory limit"
        );
    }
}

/// `1234`, `64Ki`, `256Mi`, `1Gi`, `1G`… in bytes, with `units` the
/// suffixes and their scale.
fn scaled(text: &str, units: &[(&str, u64)]) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let scale = units.iter().find(|(u, _)| *u == unit.trim())?.1;
    number.parse::<u64>().ok()?.checked_mul(scale)
}

/// A Kubernetes memory quantity in bytes.
fn quantity(y: &Yaml) -> Option<u64> {
    if let Some(n) = y.as_i64() {
        return u64::try_from(n).ok();
    }
    let units = [
        ("", 1),
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    scaled(y.as_str()?, &units)
}

/// A sluice size (`96MiB`) in bytes.
fn size(text: &str) -> Option<u64> {
    let units = [("", 1), ("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)];
    scaled(text, &units)
}

/// Shutdown: sluice's grace period ends before the kubelet's SIGKILL.
fn shuts_down_before_sigkill(pod: &SluicePod<'_>) {
    let what = pod.what();
    let grace = text_at(&pod.table, "shutdown", "grace_period")
        .map(|g| humantime::parse_duration(g).unwrap_or_else(|e| panic!("{what}: grace_period {g:?}: {e}")))
        .unwrap_or(Duration::from_secs(30));
    let termination = pod.w.pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    assert!(
        grace < Duration::from_secs(u64::try_from(termination).unwrap_or(0)),
        "{what}: `[shutdown] grace_period` ({grace:?}) must be shorter than terminationGracePeriodSeconds ({termination})"
    );
}

/// The config file, plugins, cache and certificates are all mounted
/// (`materialize` checks each path is on a fitting volume).
fn mounts_every_path(pod: &SluicePod<'_>) {
    let what = pod.what();
    let t = &pod.table;
    for r in path_refs(t) {
        assert!(
            pod.w.source(pod.run, Path::new(&r.value)).is_some(),
            "{what}: `{}` = {:?} is on none of the container's volumeMounts",
            r.key,
            r.value
        );
    }
    assert!(
        t.contains_key("plugins_dir"),
        "{what}: set `plugins_dir` (the default, `plugins` beside the config, is inside the ConfigMap's mount)"
    );
    assert!(
        t.contains_key("cache_dir"),
        "{what}: set `cache_dir` to a writable emptyDir (the default, ~/.cache/sluice, is on the read-only root filesystem), or to \"\""
    );
}

/// A mesh identity is the pod's service account: it must exist.
fn mesh_identity_has_a_service_account(docs: &[Doc], pod: &SluicePod<'_>) {
    if !pod.table.contains_key("mesh") {
        return;
    }
    let what = pod.what();
    let account = pod.w.service_account();
    assert!(
        !account.is_empty(),
        "{what}: the mesh certificate names the pod's service account ({}): set serviceAccountName",
        pod.w.spiffe_id()
    );
    assert!(
        find(docs, "ServiceAccount", pod.w.doc.namespace(), account).is_some(),
        "{what}: ServiceAccount {account} is not in the manifests"
    );
}
