//! The Secrets that hold the certificates and keys of the sluice configs,
//! and the `kubectl create secret generic` commands of
//! `examples/kubernetes/README.md` that create them.

use crate::config::path_refs;
use crate::manifests::MANIFESTS;
use crate::pods::SluicePod;
use std::path::Path;

/// The README creates each Secret a certificate, key or bundle of the
/// config is on, with the key the file is at.
pub fn readme_creates_the_secrets_of(readme: &str, pod: &SluicePod<'_>) {
    for r in path_refs(&pod.table).into_iter().filter(|r| r.kind.is_pem()) {
        let Some(src) = pod.w.source(pod.run, Path::new(&r.value)) else {
            continue;
        };
        let Some(secret) = src.volume["secret"]["secretName"].as_str() else {
            continue;
        };
        let key = src.key("secret").expect("a file of the Secret");
        assert!(
            readme.contains(&format!("create secret generic {secret}")),
            "{MANIFESTS}/README.md: no `kubectl create secret generic {secret}` for {}",
            pod.what()
        );
        assert!(
            readme.contains(&format!("--from-file={key}=")),
            "{MANIFESTS}/README.md: Secret {secret} needs the key {key} (`{}` of {})",
            r.key,
            pod.origin
        );
    }
}
