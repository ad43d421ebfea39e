//! Each sluice config run for real: written out as a container would see
//! it, with every file it names at a local path standing for its volume
//! (mesh certificates made here for the pod's SPIFFE ID, ConfigMap
//! plugins copied), then given to `sluice check` and, for a sidecar, to
//! the init container's `sluice iptables … --dry-run`.

use crate::common;
use crate::common::tls::{Ca, Leaf};
use crate::config::{PathKind, PathRef, admin_address, path_refs};
use crate::manifests::{Ctr, Doc, Role, Source, absent, list, str_of};
use crate::pods::SluicePod;
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `sluice check` accepts the config of the `sluice run` container, and
/// its plugins load.
pub fn passes_check(docs: &[Doc], pod: &SluicePod<'_>) {
    let what = pod.what();
    let files = materialize(docs, pod, pod.run, Role::Run);
    let (ok, report) = sluice(&["check"], &files.config);
    assert!(
        ok,
        "{what}: `sluice check` refuses {}:\n{report}\n--- as checked, with the mounted files at {}:\n{}",
        pod.origin,
        files.config.display(),
        files.text
    );
    assert!(
        !report.contains("NOT LOADED"),
        "{what}: a plugin of {} does not load:\n{report}",
        pod.origin
    );
}

/// The init container's own arguments, on the file as it sees it (the
/// config loads only if its certificates are mounted there too), plan
/// rules that let the sidecar's UID out and leave the admin port alone.
pub fn plans_rules(docs: &[Doc], pod: &SluicePod<'_>, init: Ctr<'_>) {
    let what = pod.what();
    let files = materialize(docs, pod, init, Role::Iptables);
    let argv = init.argv();
    let mut args: Vec<&str> = Vec::new();
    let mut rest = argv.iter().skip_while(|a| *a != "iptables");
    while let Some(a) = rest.next() {
        if a == "--config" || a == "-c" {
            rest.next();
        } else if !a.starts_with("--config=") {
            args.push(a);
        }
    }
    args.push("--dry-run");
    let (ok, plan) = sluice(&args, &files.config);
    assert!(ok, "{what}: `sluice {}` fails:\n{plan}", args.join(" "));
    let uid = pod.proxy_uid();
    let lets_out = [format!("--uid-owner {uid} "), format!("skuid {uid} ")];
    assert!(
        lets_out.iter().any(|rule| plan.contains(rule.as_str())),
        "{what}: the rules do not let UID {uid} out:\n{plan}"
    );
    let admin = admin_address(&pod.table).expect("a sidecar has an admin listener");
    assert!(
        plan.contains(&format!("--dport {} -j RETURN", admin.port())) || plan.contains("tcp dport {"),
        "{what}: the rules redirect the admin port {}, so the probes would not reach it:\n{plan}",
        admin.port()
    );
}

/// Run the sluice binary on `config`: (success, stdout and stderr).
fn sluice(args: &[&str], config: &Path) -> (bool, String) {
    let out = Command::new(common::binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run sluice");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A sluice config written out as a container would see it: every file
/// it names at a local path standing for its volume, the config pointing
/// there.
struct Materialized {
    _dir: tempfile::TempDir,
    config: PathBuf,
    text: String,
}

/// Whether a sluice command reads a path of its config: `run` (and
/// `check`) all of them; `iptables` loads the config, which reads every
/// certificate and key, and nothing else.
fn reads(role: Role, kind: PathKind) -> bool {
    role == Role::Run || kind.is_pem()
}

/// Write the config that container `c` of `pod` reads, and the files it
/// names that `role` reads, where the container's volumes put them.
fn materialize(docs: &[Doc], pod: &SluicePod<'_>, c: Ctr<'_>, role: Role) -> Materialized {
    let what = pod.w.what_of(c);
    let dir = tempfile::tempdir().expect("tempdir");
    let volumes = dir.path().join("volumes");
    let local = |src: &Source<'_>| volumes.join(src.volume_name()).join(&src.rel);
    let ca = Ca::new("deploy test mesh CA");
    let leaf = ca.issue(&Leaf::spiffe(pod.w.doc.name(), &pod.w.spiffe_id()));
    let (origin, mut text) = pod
        .w
        .configmap_file(docs, c, &pod.config_path)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{what}: {origin} is not TOML: {e}"));
    let mut expected = Vec::new();
    for r in path_refs(&table).into_iter().filter(|r| reads(role, r.kind)) {
        let (key, value) = (&r.key, &r.value);
        assert!(
            Path::new(value).is_absolute(),
            "{what}: `{key}` = {value:?} in {origin}: write absolute paths in a mounted config (a relative one resolves against the ConfigMap's mount)"
        );
        let src = pod.w.source(c, Path::new(value)).unwrap_or_else(|| {
            panic!("{what}: `{key}` = {value:?} in {origin} is on none of the container's volumeMounts")
        });
        let path = local(&src);
        match r.kind {
            PathKind::PluginsDir => {
                std::fs::create_dir_all(&path).expect("create the plugins directory");
                if let Some(cm) = src.configmap(docs, pod.w.doc.namespace()) {
                    write_configmap(cm, &src.volume["configMap"], &volumes.join(src.volume_name()));
                }
            }
            PathKind::CacheDir | PathKind::LogFile => {
                check_writable(&what, &r, &src);
                std::fs::create_dir_all(volumes.join(src.volume_name())).expect("create the emptyDir");
            }
            PathKind::Cert | PathKind::Key | PathKind::Bundle => {
                let volume = src.volume_name();
                assert!(
                    ["secret", "csi", "projected"].iter().any(|k| !absent(&src.volume[*k])),
                    "{what}: `{key}` = {value:?} is on volume `{volume}`: certificates and keys come from a Secret (or a CSI driver), not a ConfigMap"
                );
                let pem = match r.kind {
                    PathKind::Cert => leaf.cert_pem.clone(),
                    PathKind::Key => leaf.key_pem.clone(),
                    _ => ca.pem(),
                };
                write_pem(&path, &pem, r.kind == PathKind::Key);
            }
        }
        let path = path.to_str().expect("a UTF-8 temporary path").to_string();
        for quote in ['"', '\''] {
            text = text.replace(&format!("{quote}{value}{quote}"), &format!("{quote}{path}{quote}"));
        }
        expected.push((r.key, path));
    }
    // The paths were replaced where they are values, nowhere else.
    let rewritten: toml::Table = text.parse().expect("the rewritten config is TOML");
    for r in path_refs(&rewritten) {
        if let Some((_, path)) = expected.iter().find(|(key, _)| *key == r.key) {
            assert_eq!(
                &r.value, path,
                "{what}: could not point `{}` at the test's files; write it as a quoted string",
                r.key
            );
        }
    }
    let src = pod
        .w
        .source(c, &pod.config_path)
        .expect("the config was read through a mount");
    let config = local(&src);
    std::fs::create_dir_all(config.parent().expect("a file in a volume")).expect("create the config directory");
    std::fs::write(&config, &text).expect("write the config");
    Materialized {
        _dir: dir,
        config,
        text,
    }
}

/// The cache and the access log are on a writable emptyDir (the root
/// filesystem is read-only); the cache in a subdirectory of it.
fn check_writable(what: &str, r: &PathRef, src: &Source<'_>) {
    let (key, value, volume) = (&r.key, &r.value, src.volume_name());
    let read_only = src.mount["readOnly"].as_bool() == Some(true);
    assert!(
        !absent(&src.volume["emptyDir"]) && !read_only,
        "{what}: `{key}` = {value:?} is on volume `{volume}`, which is not a writable emptyDir (the root filesystem is read-only)"
    );
    if r.kind == PathKind::CacheDir {
        assert!(
            !src.rel.as_os_str().is_empty(),
            "{what}: `cache_dir` = {value:?} is the root of emptyDir `{volume}`, which Kubernetes makes world-writable: sluice refuses to trust it as a cache; name a subdirectory (sluice creates it 0700)"
        );
    }
}

/// Write a certificate, a bundle or (owner-only) a key.
fn write_pem(path: &Path, pem: &str, secret: bool) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("a file in a volume")).expect("create the certs directory");
    std::fs::write(path, pem).expect("write a certificate file");
    if secret {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod the key");
    }
}

/// Write the files a ConfigMap volume shows into `dir`: every key, or
/// the keys its `items` list at their paths.
fn write_configmap(cm: &Doc, projection: &yaml_rust2::Yaml, dir: &Path) {
    let items = list(&projection["items"]);
    for (field, binary) in [("data", false), ("binaryData", true)] {
        for (key, value) in cm.y[field].as_hash().into_iter().flatten() {
            let key = str_of(key);
            let path = if items.is_empty() {
                Some(key)
            } else {
                items
                    .iter()
                    .find(|i| str_of(&i["key"]) == key)
                    .map(|i| str_of(&i["path"]))
            };
            let Some(path) = path else { continue };
            let bytes = if binary {
                let text: String = str_of(value).split_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap_or_else(|e| panic!("ConfigMap {}: binaryData `{key}`: {e}", cm.name()))
            } else {
                str_of(value).as_bytes().to_vec()
            };
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap_or(dir)).expect("create a ConfigMap directory");
            std::fs::write(file, bytes).expect("write a ConfigMap file");
        }
    }
}
