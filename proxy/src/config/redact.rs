//! The effective configuration as JSON for `GET /config`, with secrets
//! replaced by `"[redacted]"`: any filter-config value under a key that
//! names a credential (`secret`, `key`, `password`, `token`, `pem`,
//! `sha256`, …), at any depth.

use super::tls::KeyPair;
use super::{
    Backend, Config, HostMatch, ListenerLimits, ListenerTls, LogDestination, PathMatch, TlsVersion, UpstreamTls,
};
use serde_json::{Value, json};

/// Keys whose values are never shown, and suffixes that mark one.
const SECRET_KEYS: [&str; 9] = [
    "secret",
    "key",
    "password",
    "token",
    "pem",
    "sha256",
    "credentials",
    "private_key",
    "api_key",
];
const SECRET_SUFFIXES: [&str; 4] = ["_secret", "_password", "_token", "_key"];

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.contains(&key.as_str()) || SECRET_SUFFIXES.iter().any(|s| key.ends_with(s))
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret(k) && !v.is_null() {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// `config` as JSON, secrets redacted.
pub fn redacted_json(config: &Config) -> Value {
    let routes: Vec<Value> = config
        .routes
        .iter()
        .map(|r| {
            let filters: Vec<Value> = r
                .filters
                .iter()
                .map(|f| {
                    let mut cfg = serde_json::from_str(&f.config_json).unwrap_or(Value::Null);
                    redact(&mut cfg);
                    json!({ "plugin": f.plugin, "clusters": f.clusters, "config": cfg })
                })
                .collect();
            let hosts: Vec<String> = r
                .hosts
                .iter()
                .map(|h| match h {
                    HostMatch::Exact(e) => e.clone(),
                    HostMatch::Suffix(s) => format!("*{s}"),
                })
                .collect();
            let (path_kind, path, prefix_match) = match &r.path {
                PathMatch::Prefix(p) => ("path_prefix", p, Some("segment")),
                PathMatch::StringPrefix(p) => ("path_prefix", p, Some("string")),
                PathMatch::Exact(p) => ("path_exact", p, None),
            };
            json!({
                "name": r.name,
                "hosts": hosts,
                path_kind: path,
                "prefix_match": prefix_match,
                "cluster": r.cluster,
                "direction": r.direction.map(|d| d.as_str()),
                "timeout_seconds": secs(r.timeout),
                "connect_timeout_seconds": r.connect_timeout.map(secs),
                "filters": filters,
            })
        })
        .collect();
    json!({
        "source": config.source.display().to_string(),
        "plugins_dir": config.plugins_dir.display().to_string(),
        "cache_dir": config.bootstrap.cache_dir.as_ref().map(|d| d.display().to_string()),
        "admin": config.bootstrap.admin.map(|a| a.to_string()),
        "log_level": config.log_level,
        "access_log": config.access_log.as_ref().map(|a| json!({
            "format": format!("{:?}", a.format).to_ascii_lowercase(),
            "path": match &a.destination {
                LogDestination::Stdout => "stdout".to_string(),
                LogDestination::Stderr => "stderr".to_string(),
                LogDestination::File(p) => p.display().to_string(),
            },
            "headers": a.headers,
            "redact": a.redact,
        })),
        "shutdown_grace_seconds": secs(config.shutdown_grace),
        "watch": config.watch,
        "limits": limits_json(&config.limits),
        "shared_state": json!({
            "backend": match &config.bootstrap.shared_state_backend {
                Backend::Memory => json!("memory"),
                Backend::Redis(r) => json!({
                    "redis": {
                        "url": r.display_url(),
                        "pool_size": r.pool_size,
                        "connect_timeout_seconds": secs(r.connect_timeout),
                        "command_timeout_seconds": secs(r.command_timeout),
                        "key_prefix": r.key_prefix,
                    }
                }),
            },
            "max_entries": config.shared_state.default.max_entries,
            "max_bytes": config.shared_state.default.max_bytes,
            "plugins": config.shared_state.plugins.iter().map(|(name, q)| (name.clone(), json!({
                "max_entries": q.max_entries,
                "max_bytes": q.max_bytes,
            }))).collect::<serde_json::Map<String, Value>>(),
        }),
        "paths": json!({
            "merge_slashes": config.paths.merge_slashes,
            "escaped_slashes": format!("{:?}", config.paths.escaped_slashes).to_ascii_lowercase(),
        }),
        "listeners": config.bootstrap.listeners.iter().map(|l| json!({
            "name": l.name,
            "address": l.address.to_string(),
            "tls": config.listener_tls.get(&l.name).map(listener_tls_json),
            "intercept": l.intercept.map(|d| d.as_str()),
        })).collect::<Vec<_>>(),
        "sidecar": config.bootstrap.sidecar.as_ref().map(|s| json!({
            "mark": s.mark,
            "proxy_uid": s.proxy_uid,
            "proxy_gid": s.proxy_gid,
            "opaque_ports": s.opaque_ports,
            "detect_timeout_seconds": secs(s.detect_timeout),
            "tcp_idle_timeout_seconds": secs(s.tcp_idle_timeout),
            "exclude_inbound_ports": s.exclude_inbound_ports,
            "exclude_outbound_ports": s.exclude_outbound_ports,
            "exclude_outbound_cidrs": s.exclude_outbound_cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        })),
        "clusters": config.clusters.iter().map(|c| json!({
            "name": c.name,
            "endpoints": c.endpoints,
            "protocol": format!("{:?}", c.protocol).to_ascii_lowercase(),
            "connect_timeout_seconds": secs(c.connect_timeout),
            "tls": c.tls.as_ref().map(upstream_tls_json),
            "destinations": c.claims.destinations.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "services": c.claims.services,
        })).collect::<Vec<_>>(),
        "mesh": config.mesh.as_ref().map(|m| json!({
            "identity": m.identity,
            "certificate": pair_json(&m.pair),
            "trust_bundle": m.bundle.path.display().to_string(),
            "mtls": format!("{:?}", m.mtls).to_ascii_lowercase(),
            "networks": m.networks.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "ports": m.ports,
            "peers": m.peers.iter().map(|p| json!({
                "destination": match &p.destination {
                    crate::config::PeerMatch::Address(a) => a.to_string(),
                    crate::config::PeerMatch::Network(n) => n.to_string(),
                },
                "identity": p.identity,
            })).collect::<Vec<_>>(),
        })),
        "routes": routes,
    })
}

/// A certificate by its files and what it says (never the key itself).
fn pair_json(p: &KeyPair) -> Value {
    json!({
        "cert": p.cert_path.display().to_string(),
        "key_file": p.key_path.display().to_string(),
        "subject": p.subject,
        "not_after_unix": p.not_after,
    })
}

fn listener_tls_json(t: &ListenerTls) -> Value {
    json!({
        "certificates": t.certificates.iter().map(|c| {
            let mut v = pair_json(&c.pair);
            v["server_names"] = json!(c.server_names);
            v
        }).collect::<Vec<_>>(),
        "client_auth": format!("{:?}", t.client_auth).to_ascii_lowercase(),
        "client_ca": t.client_ca.as_ref().map(|b| b.path.display().to_string()),
        "handshake_timeout_seconds": secs(t.handshake_timeout),
        "min_version": match t.min_version {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        },
    })
}

fn upstream_tls_json(t: &UpstreamTls) -> Value {
    json!({
        "ca": t.ca.as_ref().map_or("system".to_string(), |b| b.path.display().to_string()),
        "server_name": t.server_name,
        "client_certificate": t.client_cert.as_ref().map(pair_json),
        "identity": t.identity.as_ref().map(|i| i.to_string()),
    })
}

fn limits_json(l: &ListenerLimits) -> Value {
    json!({
        "max_connections": l.max_connections,
        "max_requests_per_connection": l.max_requests_per_connection,
        "header_read_timeout_seconds": secs(l.header_read_timeout),
        "max_header_bytes": l.max_header_bytes,
        "max_headers": l.max_headers,
        "h2_max_concurrent_streams": l.h2_max_concurrent_streams,
        "h2_max_pending_reset_streams": l.h2_max_pending_reset_streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut v = json!({
            "realm": "x",
            "api_keys": { "header": "x-api-key", "keys": [{ "id": "ci", "key": "plain" }, { "id": "b", "sha256": "ab" }] },
            "jwt": { "keys": [{ "kid": "k", "alg": "HS256", "secret": "s3cr3t" }], "issuers": ["i"] },
            "client_secret": "cs-value",
        });
        redact(&mut v);
        let text = v.to_string();
        for secret in ["plain", "\"ab\"", "s3cr3t", "cs-value"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["api_keys"]["header"], "x-api-key");
        assert_eq!(v["api_keys"]["keys"][0]["id"], "ci");
        assert_eq!(v["jwt"]["keys"][0]["kid"], "k");
        assert_eq!(v["realm"], "x");
    }
}
