//! Filter tests against the SDK's mock host: `peer` for the mutual-TLS
//! identity, `request` for the request attributes and the evaluation order,
//! `config` for what a configuration is rejected with.

mod config;
mod peer;
mod request;

use crate::{Authz, DECISION_KEY, DENIED_BODY, RULE_KEY};
use sluice_sdk::mock::MockHost;
use sluice_sdk::{Action, LogLevel, PeerIdentity, TlsInfo};

pub(crate) const FRONTEND: &str = "spiffe://example.org/ns/shop/sa/frontend";
pub(crate) const BILLING: &str = "spiffe://example.org/ns/shop/sa/billing";
pub(crate) const OPS_ADMIN: &str = "spiffe://example.org/ns/ops/sa/admin";

/// A mock host with this configuration and the filter created from it.
pub(crate) fn setup(toml: &str) -> (MockHost, Authz) {
    let host = MockHost::new().config_toml(toml);
    match host.create::<Authz>() {
        Ok(filter) => (host, filter),
        Err(e) => panic!("config rejected: {e}\n{toml}"),
    }
}

/// The error a configuration is rejected with.
pub(crate) fn rejected(toml: &str) -> String {
    match MockHost::new().config_toml(toml).create::<Authz>() {
        Ok(_) => panic!("config accepted:\n{toml}"),
        Err(e) => e,
    }
}

/// Run the request phase; 200 for `Continue`, else the local status.
/// Checks that every denial is the same bare 403.
#[track_caller]
pub(crate) fn run(host: &MockHost, filter: &mut Authz) -> u16 {
    match host.on_request_headers(filter) {
        Action::Continue => 200,
        Action::Respond(r) => {
            assert_eq!(r.status, 403);
            assert_eq!(r.body, DENIED_BODY.as_bytes());
            let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["content-type"], "no rule name or other detail leaks");
            assert!(r.headers[0].1.starts_with(b"text/plain"));
            r.status
        }
        other => panic!("unexpected action {other:?}"),
    }
}

/// A new request on a connection with this peer certificate (`None`:
/// TLS without a client certificate).
pub(crate) fn with_peer(host: &MockHost, peer: Option<PeerIdentity>) -> &MockHost {
    let mut tls = TlsInfo::new();
    tls.peer = peer;
    host.start_request().tls(Some(tls))
}

/// A new request from a peer with this SPIFFE ID.
pub(crate) fn from_spiffe<'h>(host: &'h MockHost, id: &str) -> &'h MockHost {
    with_peer(host, Some(PeerIdentity::spiffe(id)))
}

/// A new cleartext request.
pub(crate) fn cleartext(host: &MockHost) -> &MockHost {
    host.start_request().tls(None)
}

/// The decision and rule the filter left in the context.
pub(crate) fn recorded(host: &MockHost) -> (Option<String>, Option<String>) {
    (host.get_context(DECISION_KEY), host.get_context(RULE_KEY))
}

/// The last log line at info or above.
pub(crate) fn last_info(host: &MockHost) -> Option<String> {
    host.logs()
        .into_iter()
        .filter(|(level, _)| *level >= LogLevel::Info)
        .map(|(_, message)| message)
        .next_back()
}

pub(crate) fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}
