//! The pods of the manifests that run sluice: the `sluice run` container,
//! the config it reads (a file of a ConfigMap, found through its
//! volumeMounts) and, in a sidecar's pod, the `sluice iptables` init
//! container.

use crate::config;
use crate::manifests::{Ctr, Doc, Role, Workload, str_of};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// A pod that runs sluice.
pub struct SluicePod<'a> {
    pub w: Workload<'a>,
    pub run: Ctr<'a>,
    /// Present in a sidecar's pod.
    pub init: Option<Ctr<'a>>,
    pub config_path: PathBuf,
    /// `ConfigMap <name>/<key>`.
    pub origin: String,
    pub table: toml::Table,
}

impl SluicePod<'_> {
    /// A sidecar (with its `sluice iptables` init container), else a gateway.
    pub fn is_sidecar(&self) -> bool {
        self.init.is_some()
    }

    pub fn what(&self) -> String {
        self.w.what_of(self.run)
    }

    /// `[sidecar] proxy_uid`, which a sidecar's config must set.
    pub fn proxy_uid(&self) -> i64 {
        config::proxy_uid(&self.table)
            .unwrap_or_else(|| panic!("{}: {} sets no `[sidecar] proxy_uid`", self.what(), self.origin))
    }
}

/// Every pod of the manifests that runs sluice.
pub fn sluice_pods(docs: &[Doc]) -> Vec<SluicePod<'_>> {
    let mut pods = Vec::new();
    for w in Workload::all(docs) {
        let what = w.what();
        let mut runs = Vec::new();
        let mut inits = Vec::new();
        for c in w.containers() {
            match c.role() {
                Some(Role::Run) => runs.push(c),
                Some(Role::Iptables) => inits.push(c),
                None => assert!(
                    !str_of(&c.y["image"]).contains("sluice"),
                    "{what}: container {} runs a sluice image but neither `run --config FILE` nor `iptables --config FILE`",
                    c.name()
                ),
            }
        }
        if runs.is_empty() {
            assert!(
                inits.is_empty(),
                "{what}: `sluice iptables` with no sluice to redirect to"
            );
            continue;
        }
        assert_eq!(runs.len(), 1, "{what}: more than one `sluice run` in a pod");
        assert!(inits.len() <= 1, "{what}: more than one `sluice iptables`");
        let run = runs[0];
        let config_path = run.config_arg().expect("a sluice role has --config");
        let (origin, text) = w
            .configmap_file(docs, run, &config_path)
            .unwrap_or_else(|e| panic!("{}: {e}", w.what_of(run)));
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{what}: {origin} is not TOML: {e}"));
        pods.push(SluicePod {
            init: inits.first().copied(),
            w,
            run,
            config_path,
            origin,
            table,
        });
    }
    pods
}

/// The sidecars' `[sidecar] proxy_uid`s.
pub fn sidecar_uids(pods: &[SluicePod<'_>]) -> BTreeSet<i64> {
    pods.iter()
        .filter(|p| p.is_sidecar())
        .filter_map(|p| config::proxy_uid(&p.table))
        .collect()
}
