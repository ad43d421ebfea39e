//! The client side of TLS to a cluster's endpoints, built once per
//! generation from its [`UpstreamTls`]: trust anchors (a CA bundle or the
//! system's), ALPN from the cluster's protocol, an optional client
//! certificate, and a certificate check that verifies the chain and then
//! either the server name (the default) or the expected identity — a SPIFFE
//! ID in a URI SAN, or a DNS name — on every connection.

use super::provider;
use crate::config::{ExpectedIdentity, UpstreamProtocol, UpstreamTls};
use crate::connection::PeerIdentity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};
use std::sync::{Arc, LazyLock};

/// The system's trust anchors, read once (only when a cluster uses them).
static SYSTEM_ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "while reading the system's CA certificates");
    }
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system CA certificates loaded");
    Arc::new(store)
});

/// A cluster's TLS settings as the connector uses them.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    /// Sent as SNI and verified; `None` = the endpoint's host.
    pub server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    pub fn build(tls: &UpstreamTls, protocol: UpstreamProtocol) -> Result<ClientTls, String> {
        let roots = match &tls.ca {
            Some(bundle) => Arc::new(bundle.root_store().map_err(|e| e.to_string())?),
            None => SYSTEM_ROOTS.clone(),
        };
        let verifier = Arc::new(IdentityVerifier {
            roots,
            expected: tls.identity.clone(),
            algorithms: provider().signature_verification_algorithms,
        });
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &tls.client_cert {
            Some(pair) => {
                let (chain, key) = pair.parts();
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("{}: {e}", pair.cert_path.display()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let server_name = match &tls.server_name {
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|e| format!("server_name `{n}`: {e}"))?),
            None => None,
        };
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// Verifies an upstream's chain against the cluster's anchors, then its
/// identity: the expected one if configured, else the server name.
#[derive(Debug)]
struct IdentityVerifier {
    roots: Arc<RootCertStore>,
    expected: Option<ExpectedIdentity>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// An upstream presented a valid certificate for someone else.
#[derive(Debug)]
struct IdentityMismatch {
    expected: String,
    found: String,
}

impl std::fmt::Display for IdentityMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "upstream identity mismatch: expected {}, certificate has {}",
            self.expected, self.found
        )
    }
}

impl std::error::Error for IdentityMismatch {}

fn mismatch(expected: &ExpectedIdentity, end_entity: &CertificateDer<'_>) -> Error {
    let found = PeerIdentity::from_der(end_entity)
        .map(|id| {
            let names: Vec<&str> = id.uris.iter().chain(&id.dns_names).map(String::as_str).collect();
            if names.is_empty() {
                format!("no SANs (subject `{}`)", id.subject)
            } else {
                names.join(", ")
            }
        })
        .unwrap_or_else(|| "an unreadable certificate".into());
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(IdentityMismatch {
        expected: expected.to_string(),
        found,
    }))))
}

impl ServerCertVerifier for IdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(&cert, &self.roots, intermediates, now, self.algorithms.all)?;
        match &self.expected {
            None => verify_server_name(&cert, server_name)?,
            Some(expected @ ExpectedIdentity::Dns(name)) => {
                let name = ServerName::try_from(name.as_str()).map_err(|_| mismatch(expected, end_entity))?;
                verify_server_name(&cert, &name).map_err(|_| mismatch(expected, end_entity))?
            }
            Some(expected @ ExpectedIdentity::TrustDomain(domain)) => {
                let found = PeerIdentity::from_der(end_entity);
                if found.as_ref().and_then(|id| id.trust_domain()) != Some(domain.as_str()) {
                    return Err(mismatch(expected, end_entity));
                }
            }
            Some(expected @ ExpectedIdentity::Spiffe(id)) => {
                let has = PeerIdentity::from_der(end_entity).is_some_and(|found| found.uris.iter().any(|u| u == id));
                if !has {
                    return Err(mismatch(expected, end_entity));
                }
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
