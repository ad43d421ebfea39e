//! The downstream connection a request arrived on (WIT `connection`, added
//! in 0.1.1): the listener, the local address and, on a TLS listener, what
//! the handshake established — including the client's verified identity
//! under mutual TLS. Available in every phase; in `Filter::create` there is
//! no connection (empty names, no TLS).

use crate::sys;

/// A client certificate's verified identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The SPIFFE ID (`spiffe://trust-domain/ns/N/sa/S`), if the
    /// certificate has a `spiffe://` URI SAN.
    pub spiffe_id: Option<String>,
    /// The SPIFFE ID's trust domain.
    pub trust_domain: Option<String>,
    /// Every URI SAN, in certificate order.
    pub uris: Vec<String>,
    /// Every DNS SAN, in certificate order.
    pub dns_names: Vec<String>,
    /// The subject distinguished name (`CN=web,O=Example`), possibly empty.
    pub subject: String,
}

impl PeerIdentity {
    /// An identity with this SPIFFE ID as its only URI SAN (for tests).
    pub fn spiffe(id: &str) -> PeerIdentity {
        let trust_domain = id
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.split('/').next())
            .filter(|domain| !domain.is_empty())
            .map(str::to_string);
        PeerIdentity {
            spiffe_id: Some(id.to_string()),
            trust_domain,
            uris: vec![id.to_string()],
            ..PeerIdentity::default()
        }
    }

    /// An identity with these DNS SANs and subject (for tests).
    pub fn dns(names: &[&str], subject: &str) -> PeerIdentity {
        PeerIdentity {
            dns_names: names.iter().map(|n| n.to_string()).collect(),
            subject: subject.to_string(),
            ..PeerIdentity::default()
        }
    }
}

/// What a TLS handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The cipher suite's IANA name.
    pub cipher_suite: String,
    /// The server name the client asked for (SNI), lower case.
    pub server_name: Option<String>,
    /// The protocol agreed by ALPN (`h2`, `http/1.1`).
    pub alpn: Option<String>,
    /// The client's verified certificate identity, if it presented one.
    pub peer: Option<PeerIdentity>,
}

impl TlsInfo {
    /// A TLS 1.3 connection with no SNI, ALPN or client certificate (for
    /// tests; set the fields you need).
    pub fn new() -> TlsInfo {
        TlsInfo {
            version: "TLSv1.3".into(),
            cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
            server_name: None,
            alpn: None,
            peer: None,
        }
    }
}

impl Default for TlsInfo {
    fn default() -> Self {
        TlsInfo::new()
    }
}

/// The name of the listener that accepted the connection.
pub fn listener() -> String {
    sys::connection_listener()
}

/// The address the connection was accepted on, as `ip:port`.
pub fn local_address() -> String {
    sys::connection_local_address()
}

/// The connection's TLS facts; `None` on a cleartext connection.
pub fn tls() -> Option<TlsInfo> {
    sys::connection_tls()
}

/// The client's verified certificate identity: `None` on cleartext or when
/// the client presented no certificate.
pub fn peer() -> Option<PeerIdentity> {
    tls().and_then(|t| t.peer)
}
