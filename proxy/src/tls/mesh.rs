//! The mesh's TLS (sidecar mode, part 2): the rustls configurations a
//! sidecar uses on the hop to another sidecar, built once per generation
//! from [`MeshConfig`]. Both ends present the workload certificate and
//! check the other's chain against the trust bundle; the caller also checks
//! the callee's SPIFFE ID — the one `[[mesh.peers]]` expects of that
//! destination, else any in the workload's own trust domain. Mesh
//! connections offer one dedicated ALPN protocol, [`MESH_ALPN`], which is
//! how a receiving sidecar tells them from the application's own TLS
//! arriving on the same port (as Istio marks its connections with `istio-*`
//! values): whatever runs inside — HTTP/1, h2c, opaque bytes — is detected
//! again after the handshake.

use super::client::ClientTls;
use super::provider;
use crate::config::{ExpectedIdentity, MeshConfig, UpstreamProtocol, UpstreamTls};
use rustls::pki_types::ServerName;
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::{ClientConfig, ServerConfig};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The mesh settings of the generation being served, shared by what
/// outlives a generation (pooled clients, kept clusters): a reload stores
/// the new settings here, so new connections present the new certificate.
pub type MeshHandle = Arc<arc_swap::ArcSwapOption<MeshTls>>;

/// The ALPN protocol id of a mesh connection.
pub const MESH_ALPN: &[u8] = b"sluice-mesh";

/// The mesh's TLS settings for one generation.
#[derive(Debug)]
pub struct MeshTls {
    pub config: MeshConfig,
    /// Inbound: requires a client certificate that chains to the bundle.
    pub server: Arc<ServerConfig>,
    /// Outbound, by the SPIFFE ID expected of the destination (`None`: any
    /// in the trust domain); a handful, searched in order.
    clients: Vec<(Option<String>, Arc<ClientConfig>)>,
}

impl MeshTls {
    pub fn build(config: &MeshConfig) -> Result<MeshTls, String> {
        let roots = config.bundle.root_store().map_err(|e| e.to_string())?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("{}: {e}", config.bundle.path.display()))?;
        let key = config
            .pair
            .certified_key()
            .map_err(|e| format!("{}: {e}", config.pair.cert_path.display()))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
        server.alpn_protocols = vec![MESH_ALPN.to_vec()];
        let expectations = std::iter::once(None).chain(config.peers.iter().map(|p| Some(p.identity.clone())));
        let mut clients: Vec<(Option<String>, Arc<ClientConfig>)> = Vec::new();
        for expected in expectations {
            if clients.iter().any(|(e, _)| *e == expected) {
                continue;
            }
            let identity = match &expected {
                Some(id) => ExpectedIdentity::Spiffe(id.clone()),
                None => ExpectedIdentity::TrustDomain(config.trust_domain.clone()),
            };
            let tls = UpstreamTls {
                ca: Some(config.bundle.clone()),
                server_name: None,
                client_cert: Some(config.pair.clone()),
                identity: Some(identity),
            };
            let mut client = (*ClientTls::build(&tls, UpstreamProtocol::Http1)?.config).clone();
            client.alpn_protocols = vec![MESH_ALPN.to_vec()];
            clients.push((expected, Arc::new(client)));
        }
        Ok(MeshTls {
            config: config.clone(),
            server: Arc::new(server),
            clients,
        })
    }

    /// The client settings for `destination` (one was built for every
    /// identity `[[mesh.peers]]` names, and one for the trust domain).
    fn client_for(&self, destination: SocketAddr) -> Option<&Arc<ClientConfig>> {
        let expected = self.config.expected_identity(destination);
        self.clients
            .iter()
            .find(|(e, _)| e.as_deref() == expected)
            .map(|(_, client)| client)
    }

    /// Whether the hop to `destination` is mesh mTLS.
    pub fn is_meshed(&self, destination: SocketAddr) -> bool {
        self.config.is_meshed(destination)
    }

    /// The mesh handshake on `tcp`, connected to `destination`; `Ok(None)`
    /// when the destination is not meshed (the caller keeps `tcp` as it is
    /// — it is handed back).
    pub async fn connect(&self, tcp: TcpStream, destination: SocketAddr) -> Result<Meshed, io::Error> {
        if !self.config.is_meshed(destination) {
            return Ok(Meshed::No(tcp));
        }
        let Some(client) = self.client_for(destination) else {
            return Err(io::Error::other(format!("no mesh client settings for {destination}")));
        };
        let name = ServerName::IpAddress(destination.ip().into());
        let stream = tokio_rustls::TlsConnector::from(client.clone())
            .connect(name, tcp)
            .await?;
        Ok(Meshed::Yes(Box::new(stream)))
    }
}

/// A connection to a destination, upgraded to mesh mTLS or not.
pub enum Meshed {
    Yes(Box<TlsStream<TcpStream>>),
    No(TcpStream),
}

/// Whether the TLS ClientHello at the start of `bytes` offers
/// [`MESH_ALPN`]; `None` while the hello is incomplete. A malformed hello
/// is not a mesh one.
pub fn offers_mesh(bytes: &[u8]) -> Option<bool> {
    let mut acceptor = Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        if acceptor.read_tls(&mut rest).is_err() {
            return Some(false);
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Some(
            accepted
                .client_hello()
                .alpn()
                .is_some_and(|mut offered| offered.any(|p| p == MESH_ALPN)),
        ),
        Ok(None) => None,
        Err(_) => Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a rustls client sends first, offering `alpn`.
    fn client_hello(alpn: &[&[u8]]) -> Vec<u8> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("b.test").unwrap()).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn tells_mesh_hellos_from_application_tls() {
        let mesh = client_hello(&[MESH_ALPN]);
        assert_eq!(offers_mesh(&mesh), Some(true));
        assert_eq!(offers_mesh(&client_hello(&[b"h2", b"http/1.1"])), Some(false));
        assert_eq!(offers_mesh(&client_hello(&[])), Some(false));
        // Incomplete: wait for more.
        assert_eq!(offers_mesh(&mesh[..mesh.len() / 2]), None);
        assert_eq!(offers_mesh(b"\x16\x03\x01\x00\x05garbage"), Some(false));
    }
}
