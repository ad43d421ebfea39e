//! `probe`: a test filter driven by its route configuration, so one
//! component can play every part the end-to-end tests need: add headers,
//! answer locally, write and read request context, pick a cluster.

use serde::Deserialize;
use sluice_sdk::{
    Action, Config, Filter, LocalResponse, LogLevel, Request, Response, clock, connection, context, interception, log,
};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Request headers to set.
    #[serde(default)]
    request_headers: BTreeMap<String, String>,
    /// Response headers to set.
    #[serde(default)]
    response_headers: BTreeMap<String, String>,
    /// Context values to set in the request phase.
    #[serde(default)]
    set_context: BTreeMap<String, String>,
    /// Copy context values (key → request header name) in the request phase.
    #[serde(default)]
    context_to_header: BTreeMap<String, String>,
    /// Answer every request locally.
    respond: Option<Respond>,
    /// Send the request to this cluster.
    cluster: Option<String>,
    /// Echo the configuration's `tag` as `x-probe-tag` on the response.
    tag: Option<String>,
    /// Panic (a trap in Wasm) on requests whose path starts with this.
    panic_on_path: Option<String>,
    /// Count requests in shared state under this key and send the count
    /// upstream as `x-probe-count`.
    count_key: Option<String>,
    /// Busy-wait this long (host monotonic clock) in each request phase, so
    /// concurrent calls overlap and hold their instances.
    spin_ms: Option<u64>,
    /// Busy-wait this long in `init`, logging `init_log` (info) before and
    /// `init_log` + " done" after: a slow-to-configure filter.
    init_spin_ms: Option<u64>,
    init_log: Option<String>,
    /// Send the connection's facts upstream as `x-probe-conn-*` request
    /// headers, and the peer's SPIFFE ID as `x-probe-conn-peer`, the
    /// interception direction as `x-probe-conn-direction` and the original
    /// destination as `x-probe-conn-original-dst` on the response too (read
    /// again in the response phase).
    #[serde(default)]
    connection_headers: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Respond {
    status: u16,
    #[serde(default)]
    body: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

pub struct Probe {
    settings: Settings,
}

impl Filter for Probe {
    fn create(config: &Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if let Some(r) = &settings.respond
            && !(200..=599).contains(&r.status)
        {
            return Err(format!("respond.status: {} is not in 200..=599", r.status));
        }
        if let Some(ms) = settings.init_spin_ms {
            let label = settings.init_log.as_deref().unwrap_or("probe init");
            log::log(LogLevel::Info, label);
            spin(Duration::from_millis(ms));
            log::log(LogLevel::Info, &format!("{label} done"));
        }
        Ok(Probe { settings })
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        let s = &self.settings;
        if let Some(ms) = s.spin_ms {
            spin(Duration::from_millis(ms));
        }
        if let Some(prefix) = &s.panic_on_path
            && req.path().starts_with(prefix.as_str())
        {
            panic!("probe asked to panic on {prefix}");
        }
        if s.connection_headers {
            connection_headers(req);
        }
        if let Some(key) = &s.count_key {
            match sluice_sdk::shared::increment(key, 1, None) {
                Ok(n) => {
                    let _ = req.set_header("x-probe-count", n.to_string());
                }
                Err(e) => return Action::respond(500, format!("increment: {e}")),
            }
        }
        for (k, v) in &s.set_context {
            if context::set(k, v).is_err() {
                return Action::respond(500, "context refused");
            }
        }
        for (key, header) in &s.context_to_header {
            if let Some(v) = context::get(key) {
                let _ = req.set_header(header, v);
            }
        }
        for (k, v) in &s.request_headers {
            if let Err(e) = req.set_header(k, v) {
                return Action::respond(500, format!("set_header {k}: {e}"));
            }
        }
        if let Some(c) = &s.cluster
            && let Err(e) = req.set_cluster(c)
        {
            return Action::respond(500, format!("set_cluster {c}: {e}"));
        }
        if let Some(r) = &s.respond {
            let mut local = LocalResponse::new(r.status).body(r.body.as_bytes());
            for (k, v) in &r.headers {
                local = local.header(k, v);
            }
            return Action::Respond(local);
        }
        Action::Continue
    }

    fn on_response_headers(&mut self, resp: &mut Response) -> Action {
        if self.settings.connection_headers {
            let peer = connection::peer()
                .and_then(|p| p.spiffe_id)
                .unwrap_or_else(|| "none".into());
            let _ = resp.set_header("x-probe-conn-peer", &peer);
            for (name, value) in interception_facts() {
                let _ = resp.set_header(name, &value);
            }
        }
        for (k, v) in &self.settings.response_headers {
            let _ = resp.set_header(k, v);
        }
        if let Some(tag) = &self.settings.tag {
            let _ = resp.append_header("x-probe-tag", tag);
        }
        Action::Continue
    }
}

/// The connection's facts as request headers (`none` for absent values).
fn connection_headers(req: &mut Request) {
    let tls = connection::tls();
    let peer = tls.as_ref().and_then(|t| t.peer.clone());
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    let facts = [
        ("x-probe-conn-listener", connection::listener()),
        ("x-probe-conn-local", connection::local_address()),
        ("x-probe-conn-scheme", req.scheme()),
        ("x-probe-conn-tls", or_none(tls.as_ref().map(|t| t.version.clone()))),
        (
            "x-probe-conn-sni",
            or_none(tls.as_ref().and_then(|t| t.server_name.clone())),
        ),
        ("x-probe-conn-alpn", or_none(tls.as_ref().and_then(|t| t.alpn.clone()))),
        (
            "x-probe-conn-peer",
            or_none(peer.as_ref().and_then(|p| p.spiffe_id.clone())),
        ),
        (
            "x-probe-conn-trust-domain",
            or_none(peer.as_ref().and_then(|p| p.trust_domain.clone())),
        ),
        (
            "x-probe-conn-peer-subject",
            or_none(peer.as_ref().map(|p| p.subject.clone())),
        ),
        (
            "x-probe-conn-peer-dns",
            or_none(peer.as_ref().map(|p| p.dns_names.join(","))),
        ),
    ];
    for (name, value) in facts.into_iter().chain(interception_facts()) {
        let _ = req.set_header(name, &value);
    }
}

/// The interception facts as header lines: `inbound`/`outbound` and the
/// original `ip:port`, `none` on a gateway listener.
fn interception_facts() -> [(&'static str, String); 2] {
    [
        (
            "x-probe-conn-direction",
            interception::direction().map_or_else(|| "none".into(), |d| d.as_str().into()),
        ),
        (
            "x-probe-conn-original-dst",
            interception::original_destination().unwrap_or_else(|| "none".into()),
        ),
    ]
}

/// Keep the CPU busy for `how_long` of host monotonic time.
fn spin(how_long: Duration) {
    let until = clock::monotonic() + how_long;
    while clock::monotonic() < until {
        std::hint::spin_loop();
    }
}

sluice_sdk::export_filter!(Probe);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::mock::MockHost;

    #[test]
    fn sets_headers_and_context() {
        let host = MockHost::new().config_toml(
            r#"
            request_headers = { "x-a" = "1" }
            response_headers = { "x-b" = "2" }
            set_context = { user = "alice" }
            context_to_header = { user = "x-user" }
            "#,
        );
        let mut p: Probe = host.create().unwrap();
        assert_eq!(host.on_request_headers(&mut p), Action::Continue);
        assert_eq!(host.get_request_header("x-a").as_deref(), Some("1"));
        assert_eq!(host.get_request_header("x-user").as_deref(), Some("alice"));
        host.on_response_headers(&mut p);
        assert_eq!(host.get_response_header("x-b").as_deref(), Some("2"));
    }

    #[test]
    fn connection_facts_become_headers() {
        let host = MockHost::new().config_toml("connection_headers = true");
        let mut p: Probe = host.create().unwrap();
        host.on_request_headers(&mut p);
        assert_eq!(host.get_request_header("x-probe-conn-tls").as_deref(), Some("none"));
        assert_eq!(host.get_request_header("x-probe-conn-scheme").as_deref(), Some("http"));
        let mut tls = sluice_sdk::TlsInfo::new();
        tls.peer = Some(sluice_sdk::PeerIdentity::spiffe("spiffe://td/ns/a/sa/b"));
        host.tls(Some(tls));
        host.start_request();
        host.on_request_headers(&mut p);
        assert_eq!(
            host.get_request_header("x-probe-conn-peer").as_deref(),
            Some("spiffe://td/ns/a/sa/b")
        );
        assert_eq!(
            host.get_request_header("x-probe-conn-trust-domain").as_deref(),
            Some("td")
        );
        host.on_response_headers(&mut p);
        assert_eq!(
            host.get_response_header("x-probe-conn-peer").as_deref(),
            Some("spiffe://td/ns/a/sa/b")
        );
    }

    #[test]
    fn interception_facts_become_headers() {
        let host = MockHost::new().config_toml("connection_headers = true");
        let mut p: Probe = host.create().unwrap();
        host.on_request_headers(&mut p);
        assert_eq!(
            host.get_request_header("x-probe-conn-direction").as_deref(),
            Some("none")
        );
        assert_eq!(
            host.get_request_header("x-probe-conn-original-dst").as_deref(),
            Some("none")
        );
        host.intercepted(sluice_sdk::Direction::Inbound, "10.0.0.2:8080");
        host.start_request();
        host.on_request_headers(&mut p);
        assert_eq!(
            host.get_request_header("x-probe-conn-direction").as_deref(),
            Some("inbound")
        );
        assert_eq!(
            host.get_request_header("x-probe-conn-original-dst").as_deref(),
            Some("10.0.0.2:8080")
        );
        host.on_response_headers(&mut p);
        assert_eq!(
            host.get_response_header("x-probe-conn-direction").as_deref(),
            Some("inbound")
        );
        assert_eq!(
            host.get_response_header("x-probe-conn-original-dst").as_deref(),
            Some("10.0.0.2:8080")
        );
    }

    #[test]
    fn rejects_unknown_keys_by_name() {
        let host = MockHost::new().config_toml("bogus = 1");
        let err = host.create::<Probe>().err().unwrap();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn rejects_bad_status_and_names_key() {
        let host = MockHost::new().config_toml("respond = { status = 42 }");
        let err = host.create::<Probe>().err().unwrap();
        assert!(err.starts_with("respond.status"), "{err}");
    }
}
