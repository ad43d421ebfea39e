//! The Kubernetes manifests of `examples/kubernetes`, loaded with
//! yaml-rust2, and typed accessors for what the checks read: documents,
//! workloads by their pod template, containers (ports, probes, security
//! context, the sluice command they run), the volume that holds a path of
//! a container, the files of ConfigMaps, and the pods a Service selects.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// Where the manifests are, from the workspace root.
pub const MANIFESTS: &str = "examples/kubernetes";

/// The trust domain of the SPIFFE IDs the manifests' certificates carry.
const TRUST_DOMAIN: &str = "cluster.local";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proxy/ is in the workspace")
        .to_path_buf()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn str_of(y: &Yaml) -> &str {
    y.as_str().unwrap_or_default()
}

pub fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or_default()
}

/// A key that is missing (yaml-rust2 indexes it as a bad value) or null.
pub fn absent(y: &Yaml) -> bool {
    y.is_badvalue() || y.is_null()
}

/// One YAML document of a manifest file.
pub struct Doc {
    file: String,
    pub y: Yaml,
}

impl Doc {
    pub fn kind(&self) -> &str {
        str_of(&self.y["kind"])
    }

    pub fn name(&self) -> &str {
        str_of(&self.y["metadata"]["name"])
    }

    pub fn namespace(&self) -> &str {
        self.y["metadata"]["namespace"].as_str().unwrap_or("default")
    }

    pub fn what(&self) -> String {
        format!("{}: {} {}/{}", self.file, self.kind(), self.namespace(), self.name())
    }

    /// `spec.ports` of a Service.
    pub fn service_ports(&self) -> &[Yaml] {
        list(&self.y["spec"]["ports"])
    }
}

/// Every document of every `examples/kubernetes/*.yaml`.
pub fn manifests() -> Vec<Doc> {
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
        // An empty document, as after a trailing `---`, is null.
        for y in parsed.into_iter().filter(|y| !y.is_null()) {
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

pub fn find<'d>(docs: &'d [Doc], kind: &str, namespace: &str, name: &str) -> Option<&'d Doc> {
    docs.iter()
        .find(|d| d.kind() == kind && d.namespace() == namespace && d.name() == name)
}

/// A Deployment, StatefulSet or DaemonSet, by its pod template.
pub struct Workload<'a> {
    pub doc: &'a Doc,
    /// `spec.template.spec`.
    pub pod: &'a Yaml,
}

impl<'a> Workload<'a> {
    pub fn all(docs: &'a [Doc]) -> Vec<Workload<'a>> {
        docs.iter()
            .filter(|d| ["Deployment", "StatefulSet", "DaemonSet"].contains(&d.kind()))
            .map(|doc| Workload {
                doc,
                pod: &doc.y["spec"]["template"]["spec"],
            })
            .collect()
    }

    pub fn what(&self) -> String {
        self.doc.what()
    }

    /// How the messages name container `c`.
    pub fn what_of(&self, c: Ctr<'_>) -> String {
        format!("{} container {}", self.what(), c.name())
    }

    /// Init containers first, in order, then the containers.
    pub fn containers(&self) -> Vec<Ctr<'a>> {
        let init = list(&self.pod["initContainers"]).iter().map(|y| Ctr { y, init: true });
        let main = list(&self.pod["containers"]).iter().map(|y| Ctr { y, init: false });
        init.chain(main).collect()
    }

    /// The application's containers: neither sluice nor an init container.
    pub fn apps(&self) -> Vec<Ctr<'a>> {
        self.containers()
            .into_iter()
            .filter(|c| !c.init && c.role().is_none())
            .collect()
    }

    /// `serviceAccountName`, empty when unset.
    pub fn service_account(&self) -> &'a str {
        str_of(&self.pod["serviceAccountName"])
    }

    /// `spiffe://cluster.local/ns/<namespace>/sa/<service account>`.
    pub fn spiffe_id(&self) -> String {
        let account = self.pod["serviceAccountName"].as_str().unwrap_or("default");
        format!("spiffe://{TRUST_DOMAIN}/ns/{}/sa/{account}", self.doc.namespace())
    }

    /// `securityContext.<key>` of container `c`, else of the pod.
    pub fn security(&self, c: Ctr<'a>, key: &str) -> &'a Yaml {
        let own = c.security(key);
        if absent(own) {
            &self.pod["securityContext"][key]
        } else {
            own
        }
    }

    /// Whether Service `svc` selects these pods.
    pub fn selected_by(&self, svc: &Doc) -> bool {
        let Some(selector) = svc.y["spec"]["selector"].as_hash() else {
            return false;
        };
        let labels = &self.doc.y["spec"]["template"]["metadata"]["labels"];
        svc.namespace() == self.doc.namespace()
            && !selector.is_empty()
            && selector.iter().all(|(k, v)| labels[str_of(k)] == *v)
    }

    /// The volume that holds `path` in container `c`: the deepest mount above it.
    pub fn source(&self, c: Ctr<'a>, path: &Path) -> Option<Source<'a>> {
        let mount = list(&c.y["volumeMounts"])
            .iter()
            .filter(|m| !str_of(&m["mountPath"]).is_empty() && path.starts_with(str_of(&m["mountPath"])))
            .max_by_key(|m| Path::new(str_of(&m["mountPath"])).components().count())?;
        let rest = path.strip_prefix(str_of(&mount["mountPath"])).ok()?;
        let sub = Path::new(str_of(&mount["subPath"]));
        // `join("")` would add a trailing slash.
        let rel = if rest.as_os_str().is_empty() {
            sub.to_path_buf()
        } else {
            sub.join(rest)
        };
        let name = str_of(&mount["name"]);
        let volume = list(&self.pod["volumes"]).iter().find(|v| str_of(&v["name"]) == name)?;
        Some(Source { volume, mount, rel })
    }

    /// The file of a ConfigMap of the manifests that container `c` reads at
    /// `path`: (`ConfigMap <name>/<key>`, its text).
    pub fn configmap_file(&self, docs: &[Doc], c: Ctr<'a>, path: &Path) -> Result<(String, String), String> {
        let src = self
            .source(c, path)
            .ok_or_else(|| format!("{} is on none of its volumeMounts", path.display()))?;
        let cm = src.configmap(docs, self.doc.namespace()).ok_or_else(|| {
            format!(
                "{} is on volume `{}`, which is no ConfigMap of these manifests",
                path.display(),
                src.volume_name()
            )
        })?;
        let key = src
            .key("configMap")
            .ok_or_else(|| format!("{}: no item of ConfigMap {} lands there", path.display(), cm.name()))?;
        let text = cm.y["data"][key.as_str()]
            .as_str()
            .ok_or_else(|| format!("ConfigMap {} has no data key `{key}` for {}", cm.name(), path.display()))?;
        Ok((format!("ConfigMap {}/{key}", cm.name()), text.to_string()))
    }
}

/// What a sluice container does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// `sluice run --config FILE`.
    Run,
    /// `sluice iptables --config FILE`.
    Iptables,
}

/// A container of a pod template; `init` when under `initContainers`.
#[derive(Clone, Copy)]
pub struct Ctr<'a> {
    pub y: &'a Yaml,
    pub init: bool,
}

impl<'a> Ctr<'a> {
    pub fn name(&self) -> &'a str {
        str_of(&self.y["name"])
    }

    /// `command` then `args`.
    pub fn argv(&self) -> Vec<String> {
        list(&self.y["command"])
            .iter()
            .chain(list(&self.y["args"]))
            .map(|a| str_of(a).to_string())
            .collect()
    }

    /// The value of `--config` (or `-c`).
    pub fn config_arg(&self) -> Option<PathBuf> {
        let argv = self.argv();
        argv.iter().enumerate().find_map(|(i, a)| match a.as_str() {
            "--config" | "-c" => argv.get(i + 1).map(PathBuf::from),
            _ => a.strip_prefix("--config=").map(PathBuf::from),
        })
    }

    /// The sluice command the container runs, if it runs one on a config.
    pub fn role(&self) -> Option<Role> {
        self.config_arg()?;
        let argv = self.argv();
        if argv.iter().any(|a| a == "iptables") {
            Some(Role::Iptables)
        } else if argv.iter().any(|a| a == "run") {
            Some(Role::Run)
        } else {
            None
        }
    }

    /// A native sidecar: an init container that keeps running.
    pub fn keeps_running(&self) -> bool {
        !self.init || str_of(&self.y["restartPolicy"]) == "Always"
    }

    /// The container's own `securityContext.<key>`.
    pub fn security(&self, key: &str) -> &'a Yaml {
        &self.y["securityContext"][key]
    }

    /// `securityContext.capabilities.<which>`.
    pub fn capabilities(&self, which: &str) -> Vec<&'a str> {
        list(&self.security("capabilities")[which]).iter().map(str_of).collect()
    }

    /// A probe's port (httpGet, tcpSocket or grpc), a name resolved
    /// through the container's ports. `None` for an exec probe.
    pub fn probe_port(&self, probe: &Yaml) -> Option<u16> {
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
    pub fn declared_port(&self, port: &Yaml) -> Option<u16> {
        let name = str_of(port);
        self.declared()
            .find(|(n, number)| match port.as_i64() {
                Some(wanted) => i64::from(*number) == wanted,
                None => !name.is_empty() && *n == name,
            })
            .map(|(_, number)| number)
    }

    pub fn ports(&self) -> BTreeSet<u16> {
        self.declared().map(|(_, number)| number).collect()
    }

    /// `(name, containerPort)` of each port the container declares.
    fn declared(&self) -> impl Iterator<Item = (&'a str, u16)> {
        list(&self.y["ports"])
            .iter()
            .filter_map(|p| Some((str_of(&p["name"]), u16::try_from(p["containerPort"].as_i64()?).ok()?)))
    }
}

/// Where a path of a container's filesystem comes from.
pub struct Source<'a> {
    /// The pod's volume.
    pub volume: &'a Yaml,
    /// The container's volumeMount.
    pub mount: &'a Yaml,
    /// The path inside the volume.
    pub rel: PathBuf,
}

impl Source<'_> {
    pub fn volume_name(&self) -> &str {
        str_of(&self.volume["name"])
    }

    /// The ConfigMap of the manifests that the volume projects.
    pub fn configmap<'d>(&self, docs: &'d [Doc], namespace: &str) -> Option<&'d Doc> {
        find(docs, "ConfigMap", namespace, self.volume["configMap"]["name"].as_str()?)
    }

    /// The key of the volume's `configMap` or `secret` that appears at the
    /// path: the path itself, unless `items` maps keys to paths.
    pub fn key(&self, projection: &str) -> Option<String> {
        let items = list(&self.volume[projection]["items"]);
        if items.is_empty() {
            self.rel.to_str().map(str::to_string)
        } else {
            items
                .iter()
                .find(|i| Path::new(str_of(&i["path"])) == self.rel)
                .map(|i| str_of(&i["key"]).to_string())
        }
    }
}
