//! Connection facts: what sluice knows about one accepted downstream
//! connection — which listener took it, both addresses, and on a TLS
//! listener what the handshake established, including the client's verified
//! identity. One value per connection, built by the listener and handed
//! (shared) to every request on it: the request path reads the scheme,
//! filters see it through the WIT `connection` interface, the access log
//! records the peer. On an interception listener (sidecar mode) it also
//! holds the direction and the original destination. Tests construct it
//! directly.

use crate::config::Direction;
use std::net::SocketAddr;
use std::sync::Arc;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// One downstream connection, as the request path sees it.
#[derive(Debug, Clone)]
pub struct ConnectionFacts {
    /// The listener's configured name.
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub local: SocketAddr,
    /// `None` on a cleartext connection.
    pub tls: Option<TlsFacts>,
    /// `None` on a gateway listener.
    pub interception: Option<Interception>,
}

/// What sidecar mode knows of an intercepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interception {
    pub direction: Direction,
    /// Where the client was connecting before iptables redirected it.
    pub original_destination: SocketAddr,
}

impl ConnectionFacts {
    /// A cleartext connection.
    pub fn cleartext(listener: Arc<str>, client: SocketAddr, local: SocketAddr) -> ConnectionFacts {
        ConnectionFacts {
            listener,
            client,
            local,
            tls: None,
            interception: None,
        }
    }

    /// A placeholder for where no connection exists (between filter calls,
    /// in benchmarks): unspecified addresses, no listener, no TLS. Shared.
    pub fn unknown() -> Arc<ConnectionFacts> {
        static UNKNOWN: std::sync::LazyLock<Arc<ConnectionFacts>> = std::sync::LazyLock::new(|| {
            let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
            Arc::new(ConnectionFacts::cleartext(Arc::from(""), nowhere, nowhere))
        });
        UNKNOWN.clone()
    }

    /// `https` on a TLS connection, else `http`. An intercepted
    /// connection is always `http`: its TLS, if any, is the mesh's hop,
    /// not what the application spoke.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() && self.interception.is_none() {
            "https"
        } else {
            "http"
        }
    }

    /// The verified client identity, if the client presented a certificate.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.tls.as_ref().and_then(|t| t.peer.as_ref())
    }
}

/// What a TLS handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite's IANA name.
    pub cipher_suite: &'static str,
    /// The server name the client asked for, lower case.
    pub server_name: Option<String>,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<String>,
    pub peer: Option<PeerIdentity>,
}

/// A certificate's identity: its SPIFFE ID, SANs and subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The `spiffe://` URI SAN, if the certificate has one.
    pub spiffe_id: Option<String>,
    /// Every URI SAN, in certificate order.
    pub uris: Vec<String>,
    /// Every DNS SAN, in certificate order.
    pub dns_names: Vec<String>,
    /// The subject distinguished name (RFC 4514 order as x509-parser
    /// prints it), possibly empty.
    pub subject: String,
    /// The SHA-256 of the certificate (DER), lower-case hex: the `Hash` of
    /// `x-forwarded-client-cert`.
    pub cert_sha256: String,
}

impl PeerIdentity {
    /// Read the identity from a DER certificate; `None` if it, or its SAN
    /// extension, does not parse (then the identity cannot be told).
    pub fn from_der(der: &[u8]) -> Option<PeerIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        use sha2::Digest;
        let mut identity = PeerIdentity {
            subject: cert.subject().to_string(),
            cert_sha256: hex(&sha2::Sha256::digest(der)),
            ..PeerIdentity::default()
        };
        if let Some(san) = cert.subject_alternative_name().ok()? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => identity.uris.push((*uri).to_string()),
                    GeneralName::DNSName(dns) => identity.dns_names.push((*dns).to_string()),
                    _ => {}
                }
            }
        }
        identity.spiffe_id = identity.uris.iter().find(|u| is_spiffe_id(u)).cloned();
        Some(identity)
    }

    /// The SPIFFE ID's trust domain (`example.org` of
    /// `spiffe://example.org/ns/a/sa/b`).
    pub fn trust_domain(&self) -> Option<&str> {
        self.spiffe_id.as_deref().and_then(trust_domain)
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Whether `uri` is a SPIFFE ID: `spiffe://` and a non-empty trust domain.
pub fn is_spiffe_id(uri: &str) -> bool {
    trust_domain(uri).is_some()
}

/// The trust domain of a SPIFFE ID.
pub fn trust_domain(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("spiffe://")?;
    let domain = rest.split('/').next().unwrap_or_default();
    (!domain.is_empty()).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spiffe_id_sans_and_subject() {
        let mut params = rcgen::CertificateParams::new(vec!["web.example.test".into()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://example.org/ns/shop/sa/web").unwrap(),
        ));
        params.distinguished_name.push(rcgen::DnType::CommonName, "web");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = PeerIdentity::from_der(cert.der()).unwrap();
        assert_eq!(id.spiffe_id.as_deref(), Some("spiffe://example.org/ns/shop/sa/web"));
        assert_eq!(id.trust_domain(), Some("example.org"));
        assert_eq!(id.dns_names, ["web.example.test"]);
        assert_eq!(id.uris, ["spiffe://example.org/ns/shop/sa/web"]);
        assert_eq!(id.subject, "CN=web");
    }

    #[test]
    fn trust_domains() {
        assert_eq!(trust_domain("spiffe://td/ns/a"), Some("td"));
        assert_eq!(trust_domain("spiffe:///ns/a"), None);
        assert_eq!(trust_domain("https://td/"), None);
        assert!(PeerIdentity::from_der(b"not a certificate").is_none());
    }
}
