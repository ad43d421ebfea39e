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

mod common;

use base64::Engine as _;
use common::tls::{Ca, Leaf};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use yaml_rust2::{Yaml, YamlLoader};

/// Where the manifests are, from the workspace root.
const MANIFESTS: &str = "examples/kubernetes";

/// The trust domain of the SPIFFE IDs the manifests' certificates carry.
const TRUST_DOMAIN: &str = "cluster.local";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proxy/ is in the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn str_of(y: &Yaml) -> &str {
    y.as_str().unwrap_or_default()
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or_default()
}

fn absent(y: &Yaml) -> bool {
    y.is_badvalue() || y.is_null()
}

/// One YAML document of a manifest file.
struct Doc {
    file: String,
    y: Yaml,
}

impl Doc {
    fn kind(&self) -> &str {
        str_of(&self.y["kind"])
    }

    fn name(&self) -> &str {
        str_of(&self.y["metadata"]["name"])
    }

    fn namespace(&self) -> &str {
        self.y["metadata"]["namespace"].as_str().unwrap_or("default")
    }

    fn what(&self) -> String {
        format!("{}: {} {}/{}", self.file, self.kind(), self.namespace(), self.name())
    }
}

/// Every document of every `examples/kubernetes/*.yaml`.
fn manifests() -> Vec<Doc> {
    let dir = workspace().join(MANIFESTS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("read the manifests directory").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.yaml in {}", dir.display());
    let mut docs = Vec::new();
    for path in files {
        let file = format!("{MANIFESTS}/{}", path.file_name().unwrap_or_default().to_string_lossy());
        let parsed = YamlLoader::load_from_str(&read(&path)).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
        for y in parsed {
            // An empty document, as after a trailing `---`.
            if y.is_null() {
                continue;
            }
            let doc = Doc { file: file.clone(), y };
            assert!(
                !doc.kind().is_empty() && !doc.name().is_empty(),
                "{file}: a document without `kind` or `metadata.name`"
            );
            docs.push(doc);
        }
    }
    docs
}

fn find<'d>(docs: &'d [Doc], kind: &str, namespace: &str, name: &str) -> Option<&'d Doc> {
    docs.iter()
        .find(|d| d.kind() == kind && d.namespace() == namespace && d.name() == name)
}

/// A Deployment, StatefulSet or DaemonSet, by its pod template.
struct Workload<'a> {
    doc: &'a Doc,
    pod: &'a Yaml,
}

impl<'a> Workload<'a> {
    fn all(docs: &'a [Doc]) -> Vec<Workload<'a>> {
        docs.iter()
            .filter(|d| ["Deployment", "StatefulSet", "DaemonSet"].contains(&d.kind()))
            .map(|doc| Workload {
                doc,
                pod: &doc.y["spec"]["template"]["spec"],
            })
            .collect()
    }

    fn labels(&self) -> &'a Yaml {
        &self.doc.y["spec"]["template"]["metadata"]["labels"]
    }

    /// Init containers first, in order, then the containers.
    fn containers(&self) -> Vec<Ctr<'a>> {
        let init = list(&self.pod["initContainers"]).iter().map(|y| Ctr { y, init: true });
        let main = list(&self.pod["containers"]).iter().map(|y| Ctr { y, init: false });
        init.chain(main).collect()
    }

    /// The application's containers: neither sluice nor an init container.
    fn apps(&self) -> Vec<Ctr<'a>> {
        self.containers()
            .into_iter()
            .filter(|c| !c.init && sluice_role(&c.argv()).is_none())
            .collect()
    }

    fn volume(&self, name: &str) -> Option<&'a Yaml> {
        list(&self.pod["volumes"]).iter().find(|v| str_of(&v["name"]) == name)
    }

    /// `spiffe://cluster.local/ns/<namespace>/sa/<service account>`.
    fn spiffe_id(&self) -> String {
        let account = self.pod["serviceAccountName"].as_str().unwrap_or("default");
        format!("spiffe://{TRUST_DOMAIN}/ns/{}/sa/{account}", self.doc.namespace())
    }
}

/// A container of a pod template; `init` when under `initContainers`.
#[derive(Clone, Copy)]
struct Ctr<'a> {
    y: &'a Yaml,
    init: bool,
}

impl<'a> Ctr<'a> {
    fn name(&self) -> &'a str {
        str_of(&self.y["name"])
    }

    /// `command` then `args`.
    fn argv(&self) -> Vec<String> {
        list(&self.y["command"])
            .iter()
            .chain(list(&self.y["args"]))
            .map(|a| str_of(a).to_string())
            .collect()
    }

    /// A native sidecar: an init container that keeps running.
    fn keeps_running(&self) -> bool {
        !self.init || str_of(&self.y["restartPolicy"]) == "Always"
    }

    /// `securityContext.capabilities.<which>`.
    fn capabilities(&self, which: &str) -> Vec<&'a str> {
        list(&self.y["securityContext"]["capabilities"][which])
            .iter()
            .map(str_of)
            .collect()
    }

    /// A probe's port (httpGet, tcpSocket or grpc), a name resolved
    /// through the container's ports. `None` for an exec probe.
    fn probe_port(&self, probe: &Yaml) -> Option<u16> {
        ["httpGet", "tcpSocket", "grpc"].iter().find_map(|kind| {
            let port = &probe[*kind]["port"];
            match port.as_i64() {
                Some(n) => u16::try_from(n).ok(),
                None => self.declared_port(port),
            }
        })
    }

    /// The containerPort `port` (a number or a port name) names, if the
    /// container declares it.
    fn declared_port(&self, port: &Yaml) -> Option<u16> {
        list(&self.y["ports"])
            .iter()
            .find(|p| match port.as_i64() {
                Some(n) => p["containerPort"].as_i64() == Some(n),
                None => !str_of(port).is_empty() && str_of(&p["name"]) == str_of(port),
            })
            .and_then(|p| p["containerPort"].as_i64())
            .and_then(|n| u16::try_from(n).ok())
    }

    fn ports(&self) -> BTreeSet<u16> {
        list(&self.y["ports"])
            .iter()
            .filter_map(|p| p["containerPort"].as_i64())
            .filter_map(|n| u16::try_from(n).ok())
            .collect()
    }
}

/// `securityContext.<key>` of the container, else of the pod.
fn security<'a>(w: &Workload<'a>, c: Ctr<'a>, key: &str) -> &'a Yaml {
    let own = &c.y["securityContext"][key];
    if absent(own) {
        &w.pod["securityContext"][key]
    } else {
        own
    }
}

/// What a sluice container does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// `sluice run --config FILE`.
    Run,
    /// `sluice iptables --config FILE`.
    Iptables,
}

fn sluice_role(argv: &[String]) -> Option<Role> {
    config_arg(argv)?;
    if argv.iter().any(|a| a == "iptables") {
        Some(Role::Iptables)
    } else if argv.iter().any(|a| a == "run") {
        Some(Role::Run)
    } else {
        None
    }
}

/// The value of `--config` (or `-c`).
fn config_arg(argv: &[String]) -> Option<String> {
    argv.iter().enumerate().find_map(|(i, a)| match a.as_str() {
        "--config" | "-c" => argv.get(i + 1).cloned(),
        _ => a.strip_prefix("--config=").map(str::to_string),
    })
}

/// Where a path of a container's filesystem comes from.
struct Source<'a> {
    /// The pod's volume.
    volume: &'a Yaml,
    /// The container's volumeMount.
    mount: &'a Yaml,
    /// The path inside the volume.
    rel: PathBuf,
}

impl Source<'_> {
    fn volume_name(&self) -> &str {
        str_of(&self.volume["name"])
    }
}

/// The volume that holds `path` in container `c`: the deepest mount above it.
fn source<'a>(w: &Workload<'a>, c: Ctr<'a>, path: &Path) -> Option<Source<'a>> {
    let mount = list(&c.y["volumeMounts"])
        .iter()
        .filter(|m| !str_of(&m["mountPath"]).is_empty() && path.starts_with(str_of(&m["mountPath"])))
        .max_by_key(|m| Path::new(str_of(&m["mountPath"])).components().count())?;
    let rest = path.strip_prefix(str_of(&mount["mountPath"])).ok()?;
    let sub = Path::new(str_of(&mount["subPath"]));
    let rel = if rest.as_os_str().is_empty() {
        sub.to_path_buf()
    } else {
        sub.join(rest)
    };
    let volume = w.volume(str_of(&mount["name"]))?;
    Some(Source { volume, mount, rel })
}

/// The ConfigMap of the manifests that a volume projects.
fn configmap<'d>(docs: &'d [Doc], namespace: &str, volume: &Yaml) -> Option<&'d Doc> {
    find(docs, "ConfigMap", namespace, volume["configMap"]["name"].as_str()?)
}

/// The key of a ConfigMap (or Secret) volume that appears at `rel`.
fn key_at(projection: &Yaml, rel: &Path) -> Option<String> {
    let items = list(&projection["items"]);
    if items.is_empty() {
        rel.to_str().map(str::to_string)
    } else {
        items
            .iter()
            .find(|i| Path::new(str_of(&i["path"])) == rel)
            .map(|i| str_of(&i["key"]).to_string())
    }
}

/// The ConfigMap file container `c` reads at `path`: (where it is, text).
fn config_text(docs: &[Doc], w: &Workload<'_>, c: Ctr<'_>, path: &Path) -> Result<(String, String), String> {
    let src = source(w, c, path).ok_or_else(|| format!("{} is on none of its volumeMounts", path.display()))?;
    let cm = configmap(docs, w.doc.namespace(), src.volume).ok_or_else(|| {
        format!(
            "{} is on volume `{}`, which is no ConfigMap of these manifests",
            path.display(),
            src.volume_name()
        )
    })?;
    let key = key_at(&src.volume["configMap"], &src.rel)
        .ok_or_else(|| format!("{}: no item of ConfigMap {} lands there", path.display(), cm.name()))?;
    let text = cm.y["data"][key.as_str()]
        .as_str()
        .ok_or_else(|| format!("ConfigMap {} has no data key `{key}` for {}", cm.name(), path.display()))?;
    Ok((format!("ConfigMap {}/{key}", cm.name()), text.to_string()))
}

/// Write the files a ConfigMap volume shows into `dir`.
fn write_configmap(cm: &Doc, projection: &Yaml, dir: &Path) {
    let items = list(&projection["items"]);
    for (field, binary) in [("data", false), ("binaryData", true)] {
        let Some(entries) = cm.y[field].as_hash() else {
            continue;
        };
        for (key, value) in entries {
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

/// A pod that runs sluice: its `sluice run` container, the config that
/// container reads, and the `sluice iptables` init container of a sidecar.
struct SluicePod<'a> {
    w: Workload<'a>,
    run: Ctr<'a>,
    /// Present in a sidecar's pod.
    init: Option<Ctr<'a>>,
    config_path: PathBuf,
    /// `ConfigMap <name>/<key>`.
    origin: String,
    table: toml::Table,
}

impl SluicePod<'_> {
    fn what(&self) -> String {
        format!("{} container {}", self.w.doc.what(), self.run.name())
    }
}

/// Every pod of the manifests that runs sluice.
fn sluice_pods(docs: &[Doc]) -> Vec<SluicePod<'_>> {
    let mut pods = Vec::new();
    for w in Workload::all(docs) {
        let mut runs = Vec::new();
        let mut inits = Vec::new();
        for c in w.containers() {
            match sluice_role(&c.argv()) {
                Some(Role::Run) => runs.push(c),
                Some(Role::Iptables) => inits.push(c),
                None => assert!(
                    !str_of(&c.y["image"]).contains("sluice"),
                    "{}: container {} runs a sluice image but neither `run --config FILE` nor `iptables --config FILE`",
                    w.doc.what(),
                    c.name()
                ),
            }
        }
        if runs.is_empty() {
            assert!(
                inits.is_empty(),
                "{}: `sluice iptables` with no sluice to redirect to",
                w.doc.what()
            );
            continue;
        }
        assert_eq!(runs.len(), 1, "{}: more than one `sluice run` in a pod", w.doc.what());
        assert!(inits.len() <= 1, "{}: more than one `sluice iptables`", w.doc.what());
        let run = runs[0];
        let config_path = PathBuf::from(config_arg(&run.argv()).expect("a sluice role has --config"));
        let (origin, text) = config_text(docs, &w, run, &config_path)
            .unwrap_or_else(|e| panic!("{} container {}: {e}", w.doc.what(), run.name()));
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{}: {origin} is not TOML: {e}", w.doc.what()));
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

// Facts of a config, read from its TOML.

fn table<'t>(t: &'t toml::Table, key: &str) -> Option<&'t toml::Table> {
    t.get(key).and_then(toml::Value::as_table)
}

fn array<'t>(t: &'t toml::Table, key: &str) -> &'t [toml::Value] {
    t.get(key)
        .and_then(toml::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn text_at<'t>(t: &'t toml::Table, section: &str, key: &str) -> Option<&'t str> {
    table(t, section)?.get(key)?.as_str()
}

fn ports_at(t: &toml::Table, section: &str, key: &str) -> BTreeSet<u16> {
    table(t, section)
        .map(|s| array(s, key))
        .unwrap_or_default()
        .iter()
        .filter_map(toml::Value::as_integer)
        .filter_map(|n| u16::try_from(n).ok())
        .collect()
}

struct Listener {
    address: SocketAddr,
    intercept: Option<String>,
}

fn listeners(t: &toml::Table) -> Vec<Listener> {
    array(t, "listeners")
        .iter()
        .map(|l| {
            let address = l.get("address").and_then(toml::Value::as_str).unwrap_or_default();
            Listener {
                address: address
                    .parse()
                    .unwrap_or_else(|e| panic!("listener address {address:?}: {e}")),
                intercept: l.get("intercept").and_then(toml::Value::as_str).map(str::to_string),
            }
        })
        .collect()
}

fn admin_address(t: &toml::Table) -> Option<SocketAddr> {
    text_at(t, "admin", "address").map(|a| a.parse().unwrap_or_else(|e| panic!("[admin] address {a:?}: {e}")))
}

fn strict_mtls(t: &toml::Table) -> bool {
    text_at(t, "mesh", "mtls") == Some("strict")
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
    scaled(
        text,
        &[("", 1), ("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)],
    )
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

/// What a path in a config is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PathKind {
    PluginsDir,
    CacheDir,
    LogFile,
    Cert,
    Key,
    Bundle,
}

/// A path a config names: its key, its value, what it is.
struct PathRef {
    key: String,
    value: String,
    kind: PathKind,
}

fn path_refs(t: &toml::Table) -> Vec<PathRef> {
    let mut refs = Vec::new();
    let mut add = |key: String, value: Option<&toml::Value>, kind: PathKind| {
        if let Some(value) = value.and_then(toml::Value::as_str) {
            refs.push(PathRef {
                key,
                value: value.to_string(),
                kind,
            });
        }
    };
    add("plugins_dir".into(), t.get("plugins_dir"), PathKind::PluginsDir);
    add("cache_dir".into(), t.get("cache_dir"), PathKind::CacheDir);
    let log = table(t, "access_log").and_then(|a| a.get("path"));
    if !matches!(log.and_then(toml::Value::as_str), None | Some("stdout" | "stderr")) {
        add("access_log.path".into(), log, PathKind::LogFile);
    }
    if let Some(mesh) = table(t, "mesh") {
        add("mesh.cert".into(), mesh.get("cert"), PathKind::Cert);
        add("mesh.key".into(), mesh.get("key"), PathKind::Key);
        add("mesh.trust_bundle".into(), mesh.get("trust_bundle"), PathKind::Bundle);
    }
    for (i, l) in array(t, "listeners").iter().enumerate() {
        let Some(tls) = l.get("tls") else { continue };
        add(format!("listeners[{i}].tls.cert"), tls.get("cert"), PathKind::Cert);
        add(format!("listeners[{i}].tls.key"), tls.get("key"), PathKind::Key);
        add(
            format!("listeners[{i}].tls.client_ca"),
            tls.get("client_ca"),
            PathKind::Bundle,
        );
        let certificates = tls.get("certificates").and_then(toml::Value::as_array);
        for (j, c) in certificates.into_iter().flatten().enumerate() {
            add(
                format!("listeners[{i}].tls.certificates[{j}].cert"),
                c.get("cert"),
                PathKind::Cert,
            );
            add(
                format!("listeners[{i}].tls.certificates[{j}].key"),
                c.get("key"),
                PathKind::Key,
            );
        }
    }
    for (i, c) in array(t, "clusters").iter().enumerate() {
        let Some(tls) = c.get("tls") else { continue };
        add(format!("clusters[{i}].tls.ca"), tls.get("ca"), PathKind::Bundle);
        add(format!("clusters[{i}].tls.cert"), tls.get("cert"), PathKind::Cert);
        add(format!("clusters[{i}].tls.key"), tls.get("key"), PathKind::Key);
    }
    refs
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
    role == Role::Run || matches!(kind, PathKind::Cert | PathKind::Key | PathKind::Bundle)
}

/// Write the config that container `c` of `pod` reads, and the files it
/// names that `role` reads, where the container's volumes put them.
fn materialize(docs: &[Doc], pod: &SluicePod<'_>, c: Ctr<'_>, role: Role) -> Materialized {
    let what = format!("{} container {}", pod.w.doc.what(), c.name());
    let dir = tempfile::tempdir().expect("tempdir");
    let volumes = dir.path().join("volumes");
    let local = |src: &Source<'_>| volumes.join(src.volume_name()).join(&src.rel);
    let ca = Ca::new("deploy test mesh CA");
    let leaf = ca.issue(&Leaf::spiffe(pod.w.doc.name(), &pod.w.spiffe_id()));
    let (origin, mut text) = config_text(docs, &pod.w, c, &pod.config_path).unwrap_or_else(|e| panic!("{what}: {e}"));
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{what}: {origin} is not TOML: {e}"));
    let mut expected = Vec::new();
    for r in path_refs(&table) {
        // `cache_dir = ""` turns the cache off.
        if !reads(role, r.kind) || (r.kind == PathKind::CacheDir && r.value.is_empty()) {
            continue;
        }
        let key = &r.key;
        assert!(
            Path::new(&r.value).is_absolute(),
            "{what}: `{key}` = {:?} in {origin}: write absolute paths in a mounted config (a relative one resolves against the ConfigMap's mount)",
            r.value
        );
        let src = source(&pod.w, c, Path::new(&r.value)).unwrap_or_else(|| {
            panic!(
                "{what}: `{key}` = {:?} in {origin} is on none of the container's volumeMounts",
                r.value
            )
        });
        let volume = src.volume_name();
        let path = local(&src);
        let read_only = src.mount["readOnly"].as_bool() == Some(true);
        match r.kind {
            PathKind::PluginsDir => {
                std::fs::create_dir_all(&path).expect("create the plugins directory");
                if let Some(cm) = configmap(docs, pod.w.doc.namespace(), src.volume) {
                    write_configmap(cm, &src.volume["configMap"], &volumes.join(volume));
                }
            }
            PathKind::CacheDir | PathKind::LogFile => {
                assert!(
                    !absent(&src.volume["emptyDir"]) && !read_only,
                    "{what}: `{key}` = {:?} is on volume `{volume}`, which is not a writable emptyDir (the root filesystem is read-only)",
                    r.value
                );
                if r.kind == PathKind::CacheDir {
                    assert!(
                        !src.rel.as_os_str().is_empty(),
                        "{what}: `cache_dir` = {:?} is the root of emptyDir `{volume}`, which Kubernetes makes world-writable: sluice refuses to trust it as a cache; name a subdirectory (sluice creates it 0700)",
                        r.value
                    );
                }
                std::fs::create_dir_all(volumes.join(volume)).expect("create the emptyDir");
            }
            PathKind::Cert | PathKind::Key | PathKind::Bundle => {
                assert!(
                    ["secret", "csi", "projected"].iter().any(|k| !absent(&src.volume[*k])),
                    "{what}: `{key}` = {:?} is on volume `{volume}`: certificates and keys come from a Secret (or a CSI driver), not a ConfigMap",
                    r.value
                );
                std::fs::create_dir_all(path.parent().expect("a file in a volume"))
                    .expect("create the certs directory");
                let pem = match r.kind {
                    PathKind::Cert => leaf.cert_pem.clone(),
                    PathKind::Key => leaf.key_pem.clone(),
                    _ => ca.pem(),
                };
                std::fs::write(&path, pem).expect("write a certificate file");
                if r.kind == PathKind::Key {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod the key");
                }
            }
        }
        let path = path.to_str().expect("a UTF-8 temporary path").to_string();
        for quote in ['"', '\''] {
            text = text.replace(&format!("{quote}{}{quote}", r.value), &format!("{quote}{path}{quote}"));
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
    let src = source(&pod.w, c, &pod.config_path).expect("the config was read through a mount");
    let config = local(&src);
    std::fs::create_dir_all(config.parent().expect("a file in a volume")).expect("create the config directory");
    std::fs::write(&config, &text).expect("write the config");
    Materialized {
        _dir: dir,
        config,
        text,
    }
}

fn run(args: &[&str], config: &Path) -> (bool, String) {
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

#[test]
fn every_sluice_config_passes_check_and_plans_its_rules() {
    let docs = manifests();
    let pods = sluice_pods(&docs);
    assert!(
        pods.iter().any(|p| p.init.is_some()),
        "{MANIFESTS} has no pod with the sluice sidecar and its `sluice iptables` init container"
    );
    assert!(
        pods.iter().any(|p| p.init.is_none()),
        "{MANIFESTS} has no sluice gateway"
    );
    for pod in &pods {
        let what = pod.what();
        let files = materialize(&docs, pod, pod.run, Role::Run);
        let (ok, report) = run(&["check"], &files.config);
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
        let Some(init) = pod.init else { continue };
        // The init container's own arguments, on the file as it sees it
        // (the config loads only if its certificates are mounted there too),
        // printed.
        let files = materialize(&docs, pod, init, Role::Iptables);
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
        let (ok, plan) = run(&args, &files.config);
        assert!(ok, "{what}: `sluice {}` fails:\n{plan}", args.join(" "));
        let uid = table(&pod.table, "sidecar")
            .and_then(|s| s.get("proxy_uid"))
            .and_then(toml::Value::as_integer)
            .unwrap_or_else(|| panic!("{what}: {} sets no `[sidecar] proxy_uid`", pod.origin));
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
}

/// The checks every sluice container passes, sidecar or gateway.
fn check_container(docs: &[Doc], pod: &SluicePod<'_>) {
    let what = pod.what();
    let c = pod.run;
    let t = &pod.table;
    let sec = |key: &str| security(&pod.w, c, key);
    assert_eq!(sec("runAsNonRoot").as_bool(), Some(true), "{what}: runAsNonRoot: true");
    assert!(
        sec("runAsUser").as_i64().is_some_and(|uid| uid != 0),
        "{what}: runAsUser must be a UID other than 0"
    );
    assert_eq!(
        c.y["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "{what}: readOnlyRootFilesystem: true"
    );
    assert_eq!(
        c.y["securityContext"]["allowPrivilegeEscalation"].as_bool(),
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

    // Probes: on the admin port, for what the admin listener serves.
    let admin = admin_address(t).unwrap_or_else(|| {
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

    // Memory: the filters' worst case fits in the container.
    let limit = quantity(&c.y["resources"]["limits"]["memory"])
        .unwrap_or_else(|| panic!("{what}: no resources.limits.memory (sluice sizes its filters' budget by it)"));
    if let Some(budget) = text_at(t, "sandbox", "memory_budget") {
        let bytes = size(budget).unwrap_or_else(|| panic!("{what}: `[sandbox] memory_budget` {budget:?}"));
        assert!(
            bytes <= limit,
            "{what}: `[sandbox] memory_budget` {budget} is over the container's memory limit"
        );
    }

    // Shutdown: sluice's grace period ends before the kubelet's SIGKILL.
    let grace = text_at(t, "shutdown", "grace_period")
        .map(|g| humantime::parse_duration(g).unwrap_or_else(|e| panic!("{what}: grace_period {g:?}: {e}")))
        .unwrap_or(Duration::from_secs(30));
    let termination = pod.w.pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    assert!(
        grace < Duration::from_secs(u64::try_from(termination).unwrap_or(0)),
        "{what}: `[shutdown] grace_period` ({grace:?}) must be shorter than terminationGracePeriodSeconds ({termination})"
    );

    // The config file, plugins, cache and certificates are all mounted
    // (materialize asserts each path is on a fitting volume).
    for r in path_refs(t) {
        if r.kind == PathKind::CacheDir && r.value.is_empty() {
            continue;
        }
        assert!(
            source(&pod.w, c, Path::new(&r.value)).is_some(),
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

    // A mesh identity is the pod's service account: it must exist.
    if t.contains_key("mesh") {
        let account = str_of(&pod.w.pod["serviceAccountName"]);
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
}

#[test]
fn sidecars_run_as_the_uid_their_rules_let_out() {
    let docs = manifests();
    let pods = sluice_pods(&docs);
    for pod in pods.iter().filter(|p| p.init.is_some()) {
        check_container(&docs, pod);
        let what = pod.what();
        let t = &pod.table;
        let sidecar = table(t, "sidecar").unwrap_or_else(|| {
            panic!(
                "{what}: {} has no [sidecar] table: without `proxy_uid` sluice's own connections are redirected back to it",
                pod.origin
            )
        });
        let uid = sidecar
            .get("proxy_uid")
            .and_then(toml::Value::as_integer)
            .unwrap_or_else(|| panic!("{what}: {} sets no `[sidecar] proxy_uid`", pod.origin));
        let gid = sidecar.get("proxy_gid").and_then(toml::Value::as_integer);

        // The sidecar: the UID the rules let out, no capability unless a mark needs NET_ADMIN.
        assert_eq!(
            security(&pod.w, pod.run, "runAsUser").as_i64(),
            Some(uid),
            "{what}: runAsUser must be `[sidecar] proxy_uid` of {}: the OUTPUT rules let that UID's connections out",
            pod.origin
        );
        if let Some(gid) = gid {
            assert_eq!(
                security(&pod.w, pod.run, "runAsGroup").as_i64(),
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

        // The application: another UID, or its traffic escapes sluice.
        let apps = pod.w.apps();
        assert!(!apps.is_empty(), "{}: no application container", pod.w.doc.what());
        for app in &apps {
            let app_uid = security(&pod.w, *app, "runAsUser").as_i64().unwrap_or_else(|| {
                panic!(
                    "{}: container {} sets no runAsUser, so nothing shows it is not {uid}, whose connections the rules let out",
                    pod.w.doc.what(),
                    app.name()
                )
            });
            assert_ne!(
                app_uid,
                uid,
                "{}: container {} runs as `[sidecar] proxy_uid`: its traffic would bypass sluice",
                pod.w.doc.what(),
                app.name()
            );
            if let Some(gid) = gid {
                assert_ne!(
                    security(&pod.w, *app, "runAsGroup").as_i64(),
                    Some(gid),
                    "{}: container {} runs as `[sidecar] proxy_gid`",
                    pod.w.doc.what(),
                    app.name()
                );
            }
        }

        // The init container: root with NET_ADMIN, on the same file, before sluice.
        let init = pod.init.expect("filtered on init");
        let init_what = format!("{} container {}", pod.w.doc.what(), init.name());
        assert!(
            init.init && !init.keeps_running(),
            "{init_what}: `sluice iptables` runs once, as an init container, before the application starts"
        );
        assert_eq!(
            config_arg(&init.argv()).map(PathBuf::from).as_ref(),
            Some(&pod.config_path),
            "{init_what}: `--config` must be the file the sidecar reads"
        );
        let (origin, _) =
            config_text(&docs, &pod.w, init, &pod.config_path).unwrap_or_else(|e| panic!("{init_what}: {e}"));
        assert_eq!(origin, pod.origin, "{init_what}: reads another config than the sidecar");
        let added = init.capabilities("add");
        assert!(
            added.contains(&"NET_ADMIN") && added.contains(&"NET_RAW"),
            "{init_what}: iptables needs NET_ADMIN and NET_RAW, adds {added:?}"
        );
        assert_eq!(
            security(&pod.w, init, "runAsUser").as_i64(),
            Some(0),
            "{init_what}: runs iptables as root (runAsUser: 0)"
        );
        assert_eq!(
            init.y["securityContext"]["runAsNonRoot"].as_bool(),
            Some(false),
            "{init_what}: runAsNonRoot: false (the pod may say otherwise for the other containers)"
        );
        if pod.run.init {
            let order: Vec<&str> = pod.w.containers().iter().map(|c| c.name()).collect();
            let at = |name: &str| order.iter().position(|n| *n == name);
            assert!(
                at(init.name()) < at(pod.run.name()),
                "{init_what}: must come before the sidecar among the init containers"
            );
        }
        let intercepting: Vec<Listener> = listeners(t).into_iter().filter(|l| l.intercept.is_some()).collect();
        let ipv6 = intercepting.iter().any(|l| l.address.is_ipv6());
        let no_ipv6 = init.argv().iter().any(|a| a == "--no-ipv6");
        assert!(
            ipv6 != no_ipv6,
            "{init_what}: pass `--no-ipv6` exactly when {} has no IPv6 interception listener",
            pod.origin
        );

        // Ports: every interception listener's, in the sidecar's containerPorts.
        for l in &intercepting {
            assert!(
                pod.run.ports().contains(&l.address.port()),
                "{what}: the interception port {} is not among the containerPorts",
                l.address.port()
            );
        }
        assert!(
            intercepting.iter().any(|l| l.intercept.as_deref() == Some("inbound"))
                && intercepting.iter().any(|l| l.intercept.as_deref() == Some("outbound")),
            "{what}: a sidecar intercepts both directions"
        );

        // Strict mTLS refuses the kubelet's plaintext probes: the
        // application's probes must go to ports the rules leave alone.
        if strict_mtls(t) {
            let admin = admin_address(t).expect("checked above");
            let mut left_alone = ports_at(t, "sidecar", "exclude_inbound_ports");
            left_alone.insert(admin.port());
            for app in &apps {
                for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                    let Some(port) = app.probe_port(&app.y[probe]) else {
                        continue;
                    };
                    assert!(
                        left_alone.contains(&port),
                        "{}: container {}'s {probe} on port {port} comes in plaintext from the kubelet, which `mtls = \"strict\"` closes: list the port in `[sidecar] exclude_inbound_ports`",
                        pod.w.doc.what(),
                        app.name()
                    );
                }
            }
        }
    }
}

#[test]
fn gateways_serve_on_their_service_and_reach_the_mesh() {
    let docs = manifests();
    let pods = sluice_pods(&docs);
    for pod in pods.iter().filter(|p| p.init.is_none()) {
        check_container(&docs, pod);
        let what = pod.what();
        let t = &pod.table;
        assert!(
            pod.w.doc.y["spec"]["replicas"].as_i64().unwrap_or(1) >= 2,
            "{what}: a gateway runs at least 2 replicas"
        );
        let served: Vec<u16> = listeners(t)
            .iter()
            .filter(|l| l.intercept.is_none())
            .map(|l| l.address.port())
            .collect();
        assert!(!served.is_empty(), "{what}: {} has no ordinary listener", pod.origin);
        for port in &served {
            assert!(
                pod.run.ports().contains(port),
                "{what}: listener port {port} is not among the containerPorts"
            );
        }
        // A cluster endpoint named after a Service of the manifests: that
        // Service exists, has the port, and if it selects pods whose
        // sidecar takes only mesh mTLS, the gateway has a mesh certificate.
        for cluster in array(t, "clusters") {
            let endpoints = cluster.get("endpoints").and_then(toml::Value::as_array);
            for endpoint in endpoints.into_iter().flatten().filter_map(toml::Value::as_str) {
                let (host, port) = endpoint.rsplit_once(':').expect("an endpoint is host:port");
                let labels: Vec<&str> = host.split('.').collect();
                if labels.len() < 3 || labels[2] != "svc" {
                    continue;
                }
                let svc = find(&docs, "Service", labels[1], labels[0])
                    .unwrap_or_else(|| panic!("{what}: endpoint {endpoint} names no Service of the manifests"));
                assert!(
                    list(&svc.y["spec"]["ports"])
                        .iter()
                        .any(|p| p["port"].as_i64().map(|n| n.to_string()).as_deref() == Some(port)),
                    "{what}: endpoint {endpoint}: {} has no port {port}",
                    svc.what()
                );
                let strict_behind = pods
                    .iter()
                    .any(|p| p.init.is_some() && strict_mtls(&p.table) && selects(svc, &p.w));
                assert!(
                    !strict_behind || t.contains_key("mesh"),
                    "{what}: endpoint {endpoint} reaches pods whose sidecar takes only mesh mTLS, and {} has no [mesh]",
                    pod.origin
                );
            }
        }
    }
}

/// Whether Service `svc` selects the pods of `w`.
fn selects(svc: &Doc, w: &Workload<'_>) -> bool {
    let Some(selector) = svc.y["spec"]["selector"].as_hash() else {
        return false;
    };
    svc.namespace() == w.doc.namespace()
        && !selector.is_empty()
        && selector.iter().all(|(k, v)| w.labels()[str_of(k)] == *v)
}

#[test]
fn services_target_the_application_or_the_gateway_listener() {
    let docs = manifests();
    let pods = sluice_pods(&docs);
    let workloads = Workload::all(&docs);
    for svc in docs.iter().filter(|d| d.kind() == "Service") {
        let selected: Vec<&Workload<'_>> = workloads.iter().filter(|w| selects(svc, w)).collect();
        assert!(
            !selected.is_empty(),
            "{}: selects no workload of the manifests",
            svc.what()
        );
        for w in selected {
            let pod = pods.iter().find(|p| p.w.doc.what() == w.doc.what());
            for port in list(&svc.y["spec"]["ports"]) {
                let target = if absent(&port["targetPort"]) {
                    &port["port"]
                } else {
                    &port["targetPort"]
                };
                let owner = w
                    .containers()
                    .into_iter()
                    .filter(Ctr::keeps_running)
                    .find_map(|c| c.declared_port(target).map(|n| (c, n)));
                let (c, number) = owner.unwrap_or_else(|| {
                    panic!(
                        "{}: targetPort {target:?} is no containerPort of {}",
                        svc.what(),
                        w.doc.what()
                    )
                });
                let Some(pod) = pod else { continue };
                let is_sluice = c.name() == pod.run.name();
                if pod.init.is_some() {
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
                    let listens = listeners(&pod.table)
                        .iter()
                        .any(|l| l.intercept.is_none() && l.address.port() == number);
                    assert!(
                        is_sluice && listens,
                        "{}: targets port {number}, on which no listener of {} serves",
                        svc.what(),
                        pod.origin
                    );
                }
            }
        }
    }
}

/// One stage of the Dockerfile: its base image (ARGs substituted) and its
/// instructions as (INSTRUCTION, arguments).
struct Stage {
    from: String,
    lines: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, instruction: &str) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |(i, _)| i == instruction)
            .map(|(_, rest)| rest.as_str())
    }

    fn last(&self, instruction: &str) -> Option<&str> {
        self.all(instruction).last()
    }
}

fn dockerfile() -> Vec<Stage> {
    let text = read(&workspace().join("Dockerfile"));
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comments and blank lines, also inside a continued instruction.
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut args: Vec<(String, String)> = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in instructions {
        let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line.as_str(), ""));
        let (instruction, rest) = (instruction.to_ascii_uppercase(), rest.trim().to_string());
        if instruction == "FROM" {
            let mut from = rest.split_whitespace().next().unwrap_or_default().to_string();
            for (name, value) in &args {
                from = from
                    .replace(&format!("${{{name}}}"), value)
                    .replace(&format!("${name}"), value);
            }
            stages.push(Stage {
                from,
                lines: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.lines.push((instruction, rest));
        } else if instruction == "ARG" {
            let (name, value) = rest.split_once('=').unwrap_or((rest.as_str(), ""));
            args.push((name.to_string(), value.trim_matches('"').to_string()));
        }
    }
    stages
}

#[test]
fn the_dockerfile_builds_what_the_manifests_run() {
    let stages = dockerfile();
    assert!(
        stages.len() >= 2,
        "Dockerfile: a build stage and a runtime stage, found {}",
        stages.len()
    );

    // The build: the pinned toolchain, the wasm target, the release binary.
    let builder = stages
        .iter()
        .find(|s| s.all("RUN").any(|r| r.contains("cargo build")))
        .expect("Dockerfile: no stage runs `cargo build`");
    let toolchain = read(&workspace().join("rust-toolchain.toml"));
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|l| l.split('"').nth(1))
        .expect("rust-toolchain.toml has a channel");
    let minor: String = channel.split('.').take(2).collect::<Vec<_>>().join(".");
    let tag = builder.from.strip_prefix("rust:").unwrap_or_else(|| {
        panic!(
            "Dockerfile: the build stage starts from {}, not the official rust image",
            builder.from
        )
    });
    assert!(
        tag.starts_with(&format!("{channel}-")) || tag.starts_with(&format!("{minor}-")) || tag == channel,
        "Dockerfile: the build image rust:{tag} is not rust-toolchain.toml's channel {channel}"
    );
    let build = builder
        .all("RUN")
        .find(|r| r.contains("cargo build"))
        .expect("found above");
    for flag in ["--release", "-p sluice", "--locked"] {
        assert!(
            build.contains(flag),
            "Dockerfile: `cargo build` without `{flag}`: {build}"
        );
    }
    let target_at = builder
        .lines
        .iter()
        .position(|(i, r)| i == "RUN" && r.contains("rustup target add") && r.contains("wasm32-wasip2"));
    let build_at = builder
        .lines
        .iter()
        .position(|(i, r)| i == "RUN" && r.contains("cargo build"));
    assert!(
        target_at.is_some() && target_at < build_at,
        "Dockerfile: `rustup target add wasm32-wasip2` before `cargo build` (proxy/build.rs builds the built-in plugins for it)"
    );

    // The image the manifests run: the sidecar's UID, sluice as entrypoint.
    let docs = manifests();
    let uids: BTreeSet<i64> = sluice_pods(&docs)
        .iter()
        .filter(|p| p.init.is_some())
        .filter_map(|p| table(&p.table, "sidecar")?.get("proxy_uid")?.as_integer())
        .collect();
    assert_eq!(
        uids.len(),
        1,
        "{MANIFESTS}: the sidecars' `proxy_uid`s {uids:?} should be one UID, the image's USER"
    );
    let runtime = stages.last().expect("two stages");
    let user = runtime
        .last("USER")
        .expect("Dockerfile: the runtime stage sets no USER");
    let uid: i64 = user.split(':').next().unwrap_or_default().parse().unwrap_or_else(|e| {
        panic!("Dockerfile: USER {user}: give a numeric UID ({e}), which Kubernetes' runAsNonRoot can verify")
    });
    assert_ne!(uid, 0, "Dockerfile: USER is root");
    assert!(
        uids.contains(&uid),
        "Dockerfile: USER {uid} is not the sidecars' `[sidecar] proxy_uid` {uids:?}"
    );
    let entrypoint = |stage: &Stage| -> Option<String> {
        let argv: Vec<String> = serde_json::from_str(stage.last("ENTRYPOINT")?).ok()?;
        argv.into_iter().next()
    };
    let binary = entrypoint(runtime).expect("Dockerfile: the runtime stage has no exec-form ENTRYPOINT");
    assert!(
        Path::new(&binary).file_name().is_some_and(|f| f == "sluice"),
        "Dockerfile: ENTRYPOINT {binary} is not the sluice binary"
    );
    assert!(
        runtime.all("COPY").any(|c| c.contains(&binary)),
        "Dockerfile: nothing is copied to {binary} in the runtime stage"
    );

    // The init container's image: iptables and nft beside the same binary.
    assert!(
        stages.iter().any(|s| {
            s.all("RUN").any(|r| r.contains("install") && r.contains("iptables"))
                && entrypoint(s).is_some_and(|b| Path::new(&b).file_name().is_some_and(|f| f == "sluice"))
        }),
        "Dockerfile: no stage has iptables for `sluice iptables` (the init container)"
    );
    let ignore = read(&workspace().join(".dockerignore"));
    assert!(
        ignore.lines().any(|l| l.trim().trim_matches('/') == "target"),
        ".dockerignore: leave target/ out of the build context"
    );
}

#[test]
fn the_readme_creates_the_secrets_the_pods_mount() {
    let docs = manifests();
    let readme = read(&workspace().join(MANIFESTS).join("README.md"));
    for pod in sluice_pods(&docs) {
        for r in path_refs(&pod.table) {
            if !matches!(r.kind, PathKind::Cert | PathKind::Key | PathKind::Bundle) {
                continue;
            }
            let Some(src) = source(&pod.w, pod.run, Path::new(&r.value)) else {
                continue;
            };
            let Some(secret) = src.volume["secret"]["secretName"].as_str() else {
                continue;
            };
            let key = key_at(&src.volume["secret"], &src.rel).expect("a file of the Secret");
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
}
