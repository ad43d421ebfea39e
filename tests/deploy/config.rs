//! Facts of a sluice config, read from its TOML: tables and arrays, the
//! listeners, the admin address, the sidecar's UID, the mesh mode and the
//! paths of files and directories it names.

use std::collections::BTreeSet;
use std::net::SocketAddr;

pub fn table<'t>(t: &'t toml::Table, key: &str) -> Option<&'t toml::Table> {
    t.get(key).and_then(toml::Value::as_table)
}

pub fn array<'t>(t: &'t toml::Table, key: &str) -> &'t [toml::Value] {
    t.get(key)
        .and_then(toml::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub fn text_at<'t>(t: &'t toml::Table, section: &str, key: &str) -> Option<&'t str> {
    table(t, section)?.get(key)?.as_str()
}

pub fn ports_at(t: &toml::Table, section: &str, key: &str) -> BTreeSet<u16> {
    table(t, section)
        .map(|s| array(s, key))
        .unwrap_or_default()
        .iter()
        .filter_map(toml::Value::as_integer)
        .filter_map(|n| u16::try_from(n).ok())
        .collect()
}

/// `[sidecar] proxy_uid`.
pub fn proxy_uid(t: &toml::Table) -> Option<i64> {
    table(t, "sidecar")?.get("proxy_uid")?.as_integer()
}

pub struct Listener {
    pub address: SocketAddr,
    pub intercept: Option<String>,
}

pub fn listeners(t: &toml::Table) -> Vec<Listener> {
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

/// The ports of the ordinary (not intercepting) listeners.
pub fn served_ports(t: &toml::Table) -> Vec<u16> {
    listeners(t)
        .iter()
        .filter(|l| l.intercept.is_none())
        .map(|l| l.address.port())
        .collect()
}

pub fn admin_address(t: &toml::Table) -> Option<SocketAddr> {
    text_at(t, "admin", "address").map(|a| a.parse().unwrap_or_else(|e| panic!("[admin] address {a:?}: {e}")))
}

pub fn strict_mtls(t: &toml::Table) -> bool {
    text_at(t, "mesh", "mtls") == Some("strict")
}

/// What a path in a config is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PathKind {
    PluginsDir,
    CacheDir,
    LogFile,
    Cert,
    Key,
    Bundle,
}

impl PathKind {
    /// A certificate, a key or a CA bundle: a file of a Secret.
    pub fn is_pem(self) -> bool {
        matches!(self, PathKind::Cert | PathKind::Key | PathKind::Bundle)
    }
}

/// A path a config names: its key, its value, what it is.
pub struct PathRef {
    pub key: String,
    pub value: String,
    pub kind: PathKind,
}

/// Every path the config names. Not `cache_dir = ""`, which turns the
/// cache off, nor an access log to stdout or stderr.
pub fn path_refs(t: &toml::Table) -> Vec<PathRef> {
    use PathKind::{Bundle, CacheDir, Cert, Key, LogFile, PluginsDir};
    let mut refs = Vec::new();
    let mut add = |prefix: &str, section: Option<&toml::Table>, fields: &[(&str, PathKind)]| {
        for &(field, kind) in fields {
            let Some(value) = section.and_then(|s| s.get(field)).and_then(toml::Value::as_str) else {
                continue;
            };
            let not_a_path = match kind {
                CacheDir => value.is_empty(),
                LogFile => value == "stdout" || value == "stderr",
                _ => false,
            };
            if !not_a_path {
                refs.push(PathRef {
                    key: format!("{prefix}{field}"),
                    value: value.to_string(),
                    kind,
                });
            }
        }
    };
    add("", Some(t), &[("plugins_dir", PluginsDir), ("cache_dir", CacheDir)]);
    add("access_log.", table(t, "access_log"), &[("path", LogFile)]);
    add(
        "mesh.",
        table(t, "mesh"),
        &[("cert", Cert), ("key", Key), ("trust_bundle", Bundle)],
    );
    for (i, l) in array(t, "listeners").iter().enumerate() {
        let tls = l.get("tls").and_then(toml::Value::as_table);
        let prefix = format!("listeners[{i}].tls.");
        add(&prefix, tls, &[("cert", Cert), ("key", Key), ("client_ca", Bundle)]);
        for (j, c) in tls
            .map(|tls| array(tls, "certificates"))
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            add(
                &format!("{prefix}certificates[{j}]."),
                c.as_table(),
                &[("cert", Cert), ("key", Key)],
            );
        }
    }
    for (i, c) in array(t, "clusters").iter().enumerate() {
        add(
            &format!("clusters[{i}].tls."),
            c.get("tls").and_then(toml::Value::as_table),
            &[("ca", Bundle), ("cert", Cert), ("key", Key)],
        );
    }
    refs
}
