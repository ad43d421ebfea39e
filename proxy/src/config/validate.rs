//! Turns the raw TOML into a [`Config`], checking every cross-reference and
//! value once. Each check reports the file, line and key it is about.

use super::raw::{RawAccessLog, RawConfig, RawLimits, RawPaths, RawProtocol};
use super::*;
use std::collections::HashSet;
use toml::Spanned;

/// The longest duration any setting takes: deadlines computed from it
/// (`now + timeout`) must not overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Builds located errors for one file.
pub(super) struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    pub(super) fn err<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: String,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_path_buf(),
            line: span.map(|s| self.line(s.start)),
            key,
            message: message.into(),
        })
    }

    pub(super) fn at<T, V>(
        &self,
        value: &Spanned<V>,
        key: String,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        self.err(Some(value.span()), key, message)
    }

    pub(super) fn duration(&self, value: &Spanned<String>, key: String) -> Result<Duration, ConfigError> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) if d > MAX_DURATION => self.at(value, key, "must be at most 365 days"),
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => self.at(value, key, "must be greater than zero"),
            Err(e) => self.at(
                value,
                key,
                format!("`{}` is not a duration like `500ms` or `10s` ({e})", value.get_ref()),
            ),
        }
    }

    pub(super) fn socket_addr(&self, value: &Spanned<String>, key: String) -> Result<SocketAddr, ConfigError> {
        value.get_ref().parse().or_else(|_| {
            self.at(
                value,
                key,
                format!("`{}` is not an address like `127.0.0.1:8080`", value.get_ref()),
            )
        })
    }
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let loc = Locator { file: path, text };
    let raw: RawConfig = match toml::Deserializer::parse(text) {
        Err(e) => return loc.err(e.span(), String::new(), e.message().to_string()),
        Ok(de) => match serde_path_to_error::deserialize(de) {
            Ok(raw) => raw,
            Err(e) => {
                // `Spanned` fields add private segments to the path: drop them.
                let key = e.path().to_string();
                let key: Vec<&str> = key.split('.').filter(|k| !k.starts_with("$__serde_spanned")).collect();
                let key = if key == ["", ""] { String::new() } else { key.join(".") };
                let inner = e.into_inner();
                return loc.err(inner.span(), key, inner.message().to_string());
            }
        },
    };
    build(&loc, raw)
}

fn build(loc: &Locator<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
    let base = loc.file.parent().unwrap_or(Path::new("."));
    let plugins_dir = match &raw.plugins_dir {
        Some(dir) => base.join(dir.get_ref()),
        None => base.join("plugins"),
    };
    let cache_dir = match &raw.cache_dir {
        Some(dir) if dir.get_ref().is_empty() => None,
        Some(dir) => Some(base.join(dir.get_ref())),
        None => default_cache_dir(),
    };
    let admin = match &raw.admin {
        Some(a) => Some(loc.socket_addr(&a.address, "admin.address".into())?),
        None => None,
    };
    let log_level = match &raw.log {
        Some(l) => match tracing_subscriber::EnvFilter::try_new(l.level.get_ref()) {
            Ok(_) => Some(l.level.get_ref().clone()),
            Err(e) => return loc.at(&l.level, "log.level".into(), format!("not a log filter: {e}")),
        },
        None => None,
    };
    let access_log = match &raw.access_log {
        Some(a) => Some(access_log(loc, base, a)?),
        None => None,
    };
    let limits = match &raw.limits {
        Some(l) => listener_limits(loc, l)?,
        None => ListenerLimits::default(),
    };
    let paths = path_policy(loc, raw.paths.as_ref())?;
    let shared_state = super::shared_state::quotas(loc, raw.shared_state.as_ref())?;
    let shared_state_backend = super::shared_state::backend(loc, raw.shared_state.as_ref())?;
    let memory_budget = match raw.sandbox.as_ref().and_then(|s| s.memory_budget.as_ref()) {
        None => None,
        Some(b) => match parse_bytes(b.get_ref()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                return loc.at(
                    b,
                    "sandbox.memory_budget".into(),
                    format!("`{}` is not a size like `256MiB`", b.get_ref()),
                );
            }
        },
    };
    let shutdown_grace = match &raw.shutdown {
        Some(s) => loc.duration(&s.grace_period, "shutdown.grace_period".into())?,
        None => DEFAULT_SHUTDOWN_GRACE,
    };

    if raw.listeners.is_empty() {
        return loc.err(None, "listeners".into(), "at least one [[listeners]] entry is required");
    }
    let mut listeners = Vec::new();
    let mut listener_tls = std::collections::BTreeMap::new();
    let mut names = HashSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let address = loc.socket_addr(&l.address, format!("listeners[{i}].address"))?;
        let name = match &l.name {
            Some(n) => n.get_ref().clone(),
            None => format!("listener-{i}"),
        };
        if !names.insert(name.clone()) {
            return loc.at(
                &l.address,
                format!("listeners[{i}].name"),
                format!("duplicate listener name `{name}`"),
            );
        }
        let intercept = super::sidecar::intercept(loc, l, i)?;
        if let (Some(_), Some(t)) = (intercept, &l.tls) {
            return loc.at(
                t,
                format!("listeners[{i}].tls"),
                "an interception listener takes the application's traffic as it is; it cannot have `tls`",
            );
        }
        if let Some(t) = &l.tls {
            listener_tls.insert(
                name.clone(),
                tls::listener(loc, base, t, &format!("listeners[{i}].tls"))?,
            );
        }
        listeners.push(ListenerConfig {
            name,
            address,
            intercept,
        });
    }
    let sidecar = super::sidecar::build(loc, raw.sidecar.as_ref(), &listeners, admin.map(|a| a.port()))?;
    let mesh = match &raw.mesh {
        Some(m) => Some(super::mesh::build(loc, base, m)?),
        None => None,
    };
    super::sidecar::one_port_per_direction(loc, &raw.listeners, &listeners)?;

    let mut clusters = Vec::new();
    let mut names = HashSet::new();
    for (i, c) in raw.clusters.iter().enumerate() {
        let name = c.name.get_ref().clone();
        if name.is_empty() {
            return loc.at(&c.name, format!("clusters[{i}].name"), "must not be empty");
        }
        if name == ORIGINAL_DESTINATION {
            return loc.at(
                &c.name,
                format!("clusters[{i}].name"),
                format!("`{ORIGINAL_DESTINATION}` is reserved: it names where an intercepted request was going"),
            );
        }
        if !names.insert(name.clone()) {
            return loc.at(
                &c.name,
                format!("clusters[{i}].name"),
                format!("duplicate cluster name `{name}`"),
            );
        }
        if c.endpoints.get_ref().is_empty() {
            return loc.at(
                &c.endpoints,
                format!("clusters[{i}].endpoints"),
                "at least one endpoint is required",
            );
        }
        let mut endpoints = Vec::new();
        for (j, ep) in c.endpoints.get_ref().iter().enumerate() {
            let key = format!("clusters[{i}].endpoints[{j}]");
            let text = ep.get_ref();
            let authority: Option<http::uri::Authority> = text.parse().ok();
            match authority {
                Some(a) if a.port_u16().is_some() && !text.contains('@') => endpoints.push(text.clone()),
                _ => return loc.at(ep, key, format!("`{text}` is not an endpoint like `10.0.0.5:8080`")),
            }
        }
        let connect_timeout = match &c.connect_timeout {
            Some(t) => loc.duration(t, format!("clusters[{i}].connect_timeout"))?,
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        let protocol = match c.protocol.unwrap_or(RawProtocol::Http1) {
            RawProtocol::Http1 => UpstreamProtocol::Http1,
            RawProtocol::Http2 => UpstreamProtocol::Http2,
        };
        let tls = match &c.tls {
            Some(t) => Some(tls::upstream(loc, base, t, &format!("clusters[{i}].tls"))?),
            None => None,
        };
        clusters.push(ClusterConfig {
            name,
            endpoints,
            protocol,
            connect_timeout,
            tls,
            traffic: traffic::cluster(loc, c, i)?,
            claims: super::sidecar::claims(loc, c, i)?,
        });
        super::sidecar::unclaimed_before(loc, c, i, &clusters)?;
    }

    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        let name = match &r.name {
            Some(n) if n.get_ref().is_empty() => return loc.at(n, key("name"), "must not be empty"),
            Some(n) => n.get_ref().clone(),
            None => format!("route-{i}"),
        };
        let direction = super::sidecar::route_direction(loc, r, i, &listeners)?;
        let cluster = match (&r.cluster, direction) {
            (Some(c), _) => c.get_ref().clone(),
            (None, Some(_)) => ORIGINAL_DESTINATION.to_string(),
            (None, None) => {
                return loc.err(
                    r.name.as_ref().map(|n| n.span()),
                    key("cluster"),
                    "missing key `cluster`",
                );
            }
        };
        if !names.insert(name.clone()) {
            return loc.err(
                r.name.as_ref().map(|n| n.span()),
                key("name"),
                format!("duplicate route name `{name}`"),
            );
        }
        // `original-destination` exists only on the interception listeners.
        let known_cluster =
            |c: &str| clusters.iter().any(|k| k.name == c) || (c == ORIGINAL_DESTINATION && direction.is_some());
        if let Some(c) = r.cluster.as_ref().filter(|c| !known_cluster(c.get_ref())) {
            let known: Vec<_> = clusters.iter().map(|c| c.name.as_str()).collect();
            return loc.at(
                c,
                key("cluster"),
                format!("unknown cluster `{}` (defined: {})", c.get_ref(), list(&known)),
            );
        }
        let mut hosts = Vec::new();
        for (j, h) in r.hosts.iter().enumerate() {
            hosts.push(host_match(loc, h, format!("routes[{i}].hosts[{j}]"))?);
        }
        let string_prefix = match &r.prefix_match {
            None => false,
            Some(m) => match m.get_ref().as_str() {
                "segment" => false,
                "string" => true,
                other => {
                    return loc.at(
                        m,
                        key("prefix_match"),
                        format!("`{other}` is not `segment` or `string`"),
                    );
                }
            },
        };
        let path = match (&r.path_prefix, &r.path_exact) {
            (Some(_), Some(e)) => {
                return loc.at(
                    e,
                    key("path_exact"),
                    "give either `path_prefix` or `path_exact`, not both",
                );
            }
            (Some(p), None) if string_prefix => PathMatch::StringPrefix(path_value(loc, p, key("path_prefix"), paths)?),
            (Some(p), None) => PathMatch::Prefix(path_value(loc, p, key("path_prefix"), paths)?),
            (None, Some(e)) => PathMatch::Exact(path_value(loc, e, key("path_exact"), paths)?),
            (None, None) => PathMatch::Prefix("/".into()),
        };
        let timeout = match &r.timeout {
            Some(t) => loc.duration(t, key("timeout"))?,
            None => DEFAULT_ROUTE_TIMEOUT,
        };
        let connect_timeout = match &r.connect_timeout {
            Some(t) => Some(loc.duration(t, key("connect_timeout"))?),
            None => None,
        };
        let mut filters = Vec::new();
        for (j, f) in r.filters.iter().enumerate() {
            let plugin = f.plugin.get_ref();
            if plugin.is_empty() || !plugin.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return loc.at(
                    &f.plugin,
                    format!("routes[{i}].filters[{j}].plugin"),
                    format!("`{plugin}` is not a plugin name (letters, digits, `-`, `_`, `.`)"),
                );
            }
            let config_json = match &f.config {
                Some(table) => serde_json::to_string(table.get_ref()).or_else(|e| {
                    loc.at(
                        table,
                        format!("routes[{i}].filters[{j}].config"),
                        format!("cannot be passed to the filter: {e}"),
                    )
                })?,
                None => "{}".to_string(),
            };
            let mut allowed = Vec::new();
            for (k, c) in f.clusters.iter().enumerate() {
                if !known_cluster(c.get_ref()) {
                    let known: Vec<_> = clusters.iter().map(|c| c.name.as_str()).collect();
                    return loc.at(
                        c,
                        format!("routes[{i}].filters[{j}].clusters[{k}]"),
                        format!("unknown cluster `{}` (defined: {})", c.get_ref(), list(&known)),
                    );
                }
                if !allowed.contains(c.get_ref()) {
                    allowed.push(c.get_ref().clone());
                }
            }
            filters.push(FilterConfig {
                plugin: plugin.clone(),
                clusters: allowed,
                config_json,
                line: loc.line(f.plugin.span().start),
                sandbox: super::sandbox::sandbox(loc, f, &format!("routes[{i}].filters[{j}]"))?,
            });
        }
        let retry = match &r.retry {
            Some(policy) => Some(traffic::retry(loc, policy, i)?),
            None => None,
        };
        let max_stream_duration = match &r.max_stream_duration {
            Some(d) => Some(loc.duration(d, key("max_stream_duration"))?),
            None => None,
        };
        let upgrades = traffic::upgrades(loc, &r.upgrades, i)?;
        let http2 = clusters
            .iter()
            .any(|c| c.name == cluster && c.protocol == UpstreamProtocol::Http2);
        if let (Some(first), true) = (r.upgrades.first(), http2) {
            return loc.at(
                first,
                key("upgrades"),
                "the route's cluster speaks HTTP/2; upgrades go to HTTP/1.1 clusters",
            );
        }
        routes.push(RouteConfig {
            name,
            hosts,
            path,
            cluster,
            direction,
            timeout,
            connect_timeout,
            retry,
            max_stream_duration,
            upgrades,
            filters,
        });
    }

    Ok(Config {
        source: loc.file.to_path_buf(),
        bootstrap: Bootstrap {
            listeners,
            admin,
            cache_dir,
            sidecar,
            shared_state_backend,
        },
        plugins_dir,
        listener_tls,
        log_level,
        access_log,
        shutdown_grace,
        limits,
        watch: raw.reload.and_then(|r| r.watch).unwrap_or(true),
        paths,
        shared_state,
        memory_budget,
        mesh,
        dns: match &raw.dns {
            Some(d) => traffic::dns(loc, d)?,
            None => DnsConfig::default(),
        },
        clusters,
        routes,
    })
}

fn access_log(loc: &Locator<'_>, base: &Path, a: &RawAccessLog) -> Result<AccessLogConfig, ConfigError> {
    let format = match a.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "text")) => AccessLogFormat::Text,
        Some((_, "json")) => AccessLogFormat::Json,
        Some((f, other)) => {
            return loc.at(
                f,
                "access_log.format".into(),
                format!("`{other}`: use `text` or `json`"),
            );
        }
    };
    let destination = match a.path.as_ref().map(|p| p.get_ref().as_str()) {
        None | Some("stdout") => LogDestination::Stdout,
        Some("stderr") => LogDestination::Stderr,
        Some(path) => LogDestination::File(base.join(path)),
    };
    let header_names = |list: &[Spanned<String>], key: &str| -> Result<Vec<String>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, h)| match http::HeaderName::from_bytes(h.get_ref().as_bytes()) {
                Ok(name) => Ok(name.as_str().to_string()),
                Err(_) => loc.at(
                    h,
                    format!("access_log.{key}[{i}]"),
                    format!("`{}` is not a header name", h.get_ref()),
                ),
            })
            .collect()
    };
    let headers = header_names(&a.headers, "headers")?;
    let mut redact = header_names(&a.redact, "redact")?;
    redact.extend(ALWAYS_REDACTED.iter().map(|h| h.to_string()));
    redact.sort();
    redact.dedup();
    Ok(AccessLogConfig {
        format,
        destination,
        headers,
        redact,
    })
}

/// `16MiB`, `512KiB`, `1GiB` or a plain byte count.
pub(super) fn parse_bytes(text: &str) -> Option<usize> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: usize = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

fn listener_limits(loc: &Locator<'_>, l: &RawLimits) -> Result<ListenerLimits, ConfigError> {
    let mut out = ListenerLimits::default();
    let positive = |v: &Spanned<u32>, key: &str| -> Result<u32, ConfigError> {
        if *v.get_ref() == 0 {
            loc.at(v, format!("limits.{key}"), "must be greater than zero")
        } else {
            Ok(*v.get_ref())
        }
    };
    if let Some(v) = &l.max_connections {
        out.max_connections = positive(v, "max_connections")? as usize;
    }
    if let Some(v) = l.max_requests_per_connection {
        out.max_requests_per_connection = v;
    }
    if let Some(v) = &l.header_read_timeout {
        out.header_read_timeout = loc.duration(v, "limits.header_read_timeout".into())?;
    }
    if let Some(v) = &l.idle_timeout {
        out.idle_timeout = loc.duration(v, "limits.idle_timeout".into())?;
    }
    if let Some(v) = &l.max_header_bytes {
        if *v.get_ref() < 8192 {
            return loc.at(v, "limits.max_header_bytes".into(), "must be at least 8192");
        }
        out.max_header_bytes = *v.get_ref() as usize;
    }
    if let Some(v) = &l.max_headers {
        out.max_headers = positive(v, "max_headers")? as usize;
    }
    if let Some(v) = &l.h2_max_concurrent_streams {
        out.h2_max_concurrent_streams = positive(v, "h2_max_concurrent_streams")?;
    }
    if let Some(v) = &l.h2_max_pending_reset_streams {
        out.h2_max_pending_reset_streams = positive(v, "h2_max_pending_reset_streams")? as usize;
    }
    Ok(out)
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn host_match(loc: &Locator<'_>, h: &Spanned<String>, key: String) -> Result<HostMatch, ConfigError> {
    let text = h.get_ref().to_ascii_lowercase();
    let valid_label = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
    if let Some(suffix) = text.strip_prefix("*.") {
        if valid_label(suffix) {
            return Ok(HostMatch::Suffix(format!(".{suffix}")));
        }
    } else if valid_label(&text) {
        return Ok(HostMatch::Exact(text));
    }
    loc.at(
        h,
        key,
        format!(
            "`{}` is not a host like `api.example.com` or `*.example.com`",
            h.get_ref()
        ),
    )
}

/// A route's path: absolute, without query or spaces, and already in the
/// normalized form requests are routed by (else no request could match).
fn path_value(loc: &Locator<'_>, p: &Spanned<String>, key: String, paths: PathPolicy) -> Result<String, ConfigError> {
    let text = p.get_ref();
    if !text.starts_with('/') || text.contains(['?', '#']) || text.bytes().any(|b| b <= b' ') {
        return loc.at(
            p,
            key,
            format!("`{text}` must be a path starting with `/`, without query or spaces"),
        );
    }
    match crate::normalize::normalize_path(text, paths) {
        Ok(normal) if normal == text.as_str() => Ok(text.clone()),
        Ok(normal) => loc.at(
            p,
            key,
            format!(
                "`{text}` is not in normalized form (requests are routed by their normalized path; write `{normal}`)"
            ),
        ),
        Err(e) => loc.at(p, key, format!("`{text}` can never match a request: {e}")),
    }
}

fn path_policy(loc: &Locator<'_>, raw: Option<&RawPaths>) -> Result<PathPolicy, ConfigError> {
    let Some(raw) = raw else {
        return Ok(PathPolicy::default());
    };
    let escaped_slashes = match &raw.escaped_slashes {
        None => EscapedSlashes::default(),
        Some(v) => match v.get_ref().as_str() {
            "reject" => EscapedSlashes::Reject,
            "keep" => EscapedSlashes::Keep,
            "decode" => EscapedSlashes::Decode,
            other => {
                return loc.at(
                    v,
                    "paths.escaped_slashes".into(),
                    format!("`{other}` is not `reject`, `keep` or `decode`"),
                );
            }
        },
    };
    Ok(PathPolicy {
        merge_slashes: raw.merge_slashes.unwrap_or(true),
        escaped_slashes,
    })
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    Some(base.join("sluice"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> ConfigError {
        Config::parse(Path::new("gw.toml"), text).unwrap_err()
    }

    const BASE: &str = r#"
[[listeners]]
address = "127.0.0.1:8080"

[[clusters]]
name = "app"
endpoints = ["127.0.0.1:9000"]
"#;

    #[test]
    fn valid_config_parses() {
        let text = format!(
            "{BASE}\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\ncluster = \"app\"\ntimeout = \"2s\"\nhosts = [\"*.Example.com\"]\n[[routes.filters]]\nplugin = \"probe\"\nconfig = {{ tag = \"a\", n = 3 }}\n"
        );
        let c = Config::parse(Path::new("/etc/sluice/gw.toml"), &text).unwrap();
        assert_eq!(c.routes[0].hosts, vec![HostMatch::Suffix(".example.com".into())]);
        assert_eq!(c.routes[0].timeout, Duration::from_secs(2));
        assert_eq!(c.routes[0].filters[0].config_json, r#"{"n":3,"tag":"a"}"#);
        assert_eq!(c.plugins_dir, Path::new("/etc/sluice/plugins"));
    }

    #[test]
    fn unknown_cluster_names_line_and_key() {
        let text = format!("{BASE}\n[[routes]]\ncluster = \"nope\"\n");
        let e = parse_err(&text);
        assert_eq!(e.key, "routes[0].cluster");
        assert_eq!(e.line, Some(10));
        assert!(e.message.contains("unknown cluster `nope`"), "{e}");
        assert!(e.to_string().starts_with("gw.toml:10: routes[0].cluster:"), "{e}");
    }

    #[test]
    fn unknown_key_and_bad_types_are_located() {
        let e = parse_err(&format!(
            "{BASE}\n[[routes]]\ncluster = \"app\"\npath_prefixx = \"/\"\n"
        ));
        assert_eq!(e.line, Some(11), "{e}");
        assert!(e.message.contains("path_prefixx"), "{e}");
        let e = parse_err(&format!("{BASE}\n[[routes]]\ncluster = \"app\"\ntimeout = \"soon\"\n"));
        assert_eq!((e.key.as_str(), e.line), ("routes[0].timeout", Some(11)), "{e}");
        let e = parse_err("[[listeners]]\naddress = 8080\n");
        assert_eq!(e.key, "listeners[0].address", "{e}");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse_err("[[listeners]\naddress = \"x\"\n");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn bad_endpoint_and_protocol() {
        let e = parse_err(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[clusters]]\nname = \"a\"\nendpoints = [\"no-port\"]\n",
        );
        assert_eq!(e.key, "clusters[0].endpoints[0]", "{e}");
        let e = parse_err(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[clusters]]\nname = \"a\"\nendpoints = [\"h:1\"]\nprotocol = \"http3\"\n",
        );
        assert_eq!(e.key, "clusters[0].protocol", "{e}");
        assert_eq!(e.line, Some(6), "{e}");
    }

    #[test]
    fn filter_clusters_are_checked_and_reachable() {
        let e = parse_err(&format!(
            "{BASE}\n[[routes]]\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"p\"\nclusters = [\"app\", \"gone\"]\n"
        ));
        assert_eq!(e.key, "routes[0].filters[0].clusters[1]", "{e}");
        assert_eq!(e.line, Some(13), "{e}");
        assert!(e.message.contains("unknown cluster `gone`"), "{e}");

        let text = format!(
            "{BASE}\n[[clusters]]\nname = \"b\"\nendpoints = [\"127.0.0.1:9001\"]\n[[routes]]\ncluster = \"app\"\n\
             [[routes.filters]]\nplugin = \"p\"\nclusters = [\"b\", \"app\", \"b\"]\n[[routes.filters]]\nplugin = \"q\"\n"
        );
        let c = Config::parse(Path::new("gw.toml"), &text).unwrap();
        assert_eq!(c.routes[0].filters[0].clusters, ["b", "app"]);
        assert!(c.routes[0].filters[1].clusters.is_empty());
        assert_eq!(c.routes[0].reachable_clusters(), ["app", "b"]);
    }

    #[test]
    fn bootstrap_differences_name_their_keys() {
        let text = format!("{BASE}\n[[routes]]\ncluster = \"app\"\n");
        let a = Config::parse(Path::new("gw.toml"), &text).unwrap();
        let b = Config::parse(
            Path::new("gw.toml"),
            &format!(
                "cache_dir = \"/x\"\n[admin]\naddress = \"127.0.0.1:1\"\n{}",
                text.replace("8080", "8081")
            ),
        )
        .unwrap();
        assert!(a.bootstrap.differences(&a.bootstrap).is_empty());
        assert_eq!(
            b.bootstrap.differences(&a.bootstrap),
            ["listeners", "admin.address", "cache_dir"]
        );
    }

    #[test]
    fn traffic_settings_are_checked_where_written() {
        let cases = [
            (
                "[[clusters]]\nname = \"h2\"\nendpoints = [\"127.0.0.1:9001\"]\nprotocol = \"http2\"\n\
                 [[routes]]\ncluster = \"h2\"\nupgrades = [\"websocket\"]\n",
                "routes[0].upgrades",
                "HTTP/2",
            ),
            (
                "[[routes]]\ncluster = \"app\"\ntimeout = \"400d\"\n",
                "routes[0].timeout",
                "at most 365 days",
            ),
            (
                "[[routes]]\ncluster = \"app\"\n[routes.retry]\nretry_on = [\"sometimes\"]\n",
                "routes[0].retry.retry_on[0]",
                "not `connect-failure`",
            ),
            (
                "[[clusters]]\nname = \"m\"\nendpoints = [\"127.0.0.1:9001\"]\nlb = \"maglev\"\n",
                "clusters[1].lb",
                "needs `hash_on`",
            ),
        ];
        for (extra, key, message) in cases {
            let e = parse_err(&format!("{BASE}{extra}"));
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains(message), "{e}");
            assert!(e.line.is_some(), "{e}");
        }
    }
}
