//! `[mesh]`: mutual TLS between sidecars (sidecar mode, part 2). The
//! workload's certificate (a SPIFFE ID in a URI SAN) and the trust bundle
//! its peers are checked against, which outbound destinations run a sluice
//! sidecar (`networks`, `ports`), the identity expected of some of them
//! (`[[mesh.peers]]`), and whether inbound plaintext from outside the pod
//! is still accepted (`mtls`). Reloadable: new certificates apply to new
//! connections, which is how they rotate. A gateway may join the mesh too,
//! as a caller: its connections to meshed endpoints are then mutual TLS.

use super::raw::{RawMesh, RawMeshPeer};
use super::validate::Locator;
use super::{ConfigError, KeyPair, TrustBundle};
use crate::connection::{PeerIdentity, is_spiffe_id, trust_domain};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// Inbound: what a connection that is not mesh mTLS gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    /// Served as in part 1 (plaintext and application TLS pass).
    Permissive,
    /// Closed: only mesh mTLS is accepted from outside the pod.
    Strict,
}

/// Which destinations a `[[mesh.peers]]` entry is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMatch {
    /// One address and port.
    Address(SocketAddr),
    /// Any port of the addresses in a network (a single address is a /32 or /128).
    Network(IpNet),
}

impl PeerMatch {
    pub fn matches(&self, destination: SocketAddr) -> bool {
        match self {
            PeerMatch::Address(a) => *a == destination,
            PeerMatch::Network(n) => n.contains(&destination.ip()),
        }
    }
}

/// The identity a meshed destination must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshPeer {
    pub destination: PeerMatch,
    /// A SPIFFE ID.
    pub identity: String,
}

/// `[mesh]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshConfig {
    /// The workload's certificate, presented both ways.
    pub pair: KeyPair,
    /// What a peer's certificate must chain to.
    pub bundle: TrustBundle,
    /// The SPIFFE ID in `pair`'s certificate.
    pub identity: String,
    /// Its trust domain: a peer without a `[[mesh.peers]]` entry must be in it.
    pub trust_domain: String,
    pub mtls: MtlsMode,
    /// Outbound destinations in these networks run a sidecar.
    pub networks: Vec<IpNet>,
    /// Outbound destinations on these ports run a sidecar.
    pub ports: Vec<u16>,
    /// Identities expected of particular destinations, first match wins.
    pub peers: Vec<MeshPeer>,
}

impl MeshConfig {
    /// Whether `destination` runs a sidecar, so the hop is mutual TLS.
    pub fn is_meshed(&self, destination: SocketAddr) -> bool {
        self.ports.contains(&destination.port()) || self.networks.iter().any(|n| n.contains(&destination.ip()))
    }

    /// The identity `destination` must present, if one is configured.
    pub fn expected_identity(&self, destination: SocketAddr) -> Option<&str> {
        self.peers
            .iter()
            .find(|p| p.destination.matches(destination))
            .map(|p| p.identity.as_str())
    }
}

/// Validate `[mesh]`. A gateway may have one too: its connections to
/// meshed pods are then mutual TLS (it joins the mesh as a caller).
pub(super) fn build(loc: &Locator<'_>, base: &Path, raw: &RawMesh) -> Result<MeshConfig, ConfigError> {
    let pair = super::tls::key_pair(loc, base, &raw.cert, &raw.key, "mesh")?;
    let bundle = super::tls::bundle(loc, base, &raw.trust_bundle, "mesh.trust_bundle".into())?;
    let identity = pair
        .chain
        .first()
        .and_then(|leaf| PeerIdentity::from_der(leaf))
        .and_then(|id| id.spiffe_id);
    let Some(identity) = identity else {
        return loc.at(
            &raw.cert,
            "mesh.cert".into(),
            "the workload certificate has no SPIFFE ID (a `spiffe://` URI SAN)",
        );
    };
    let trust_domain = trust_domain(&identity).unwrap_or_default().to_string();
    let mtls = match raw.mtls.as_ref().map(|m| m.get_ref().as_str()) {
        None | Some("permissive") => MtlsMode::Permissive,
        Some("strict") => MtlsMode::Strict,
        Some(other) => {
            return loc.at(
                raw.mtls.as_ref().unwrap_or(&raw.cert),
                "mesh.mtls".into(),
                format!("`{other}` is not `strict` or `permissive`"),
            );
        }
    };
    let mut networks = Vec::new();
    for (i, n) in raw.networks.iter().enumerate() {
        match network(n.get_ref()) {
            Some(net) => networks.push(net),
            None => {
                return loc.at(
                    n,
                    format!("mesh.networks[{i}]"),
                    format!("`{}` is not a network like `10.0.0.0/8`", n.get_ref()),
                );
            }
        }
    }
    let mut ports = Vec::new();
    for (i, p) in raw.ports.iter().enumerate() {
        match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => ports.push(port),
            _ => return loc.at(p, format!("mesh.ports[{i}]"), "a port is 1 to 65535"),
        }
    }
    let mut peers = Vec::new();
    for (i, p) in raw.peers.iter().enumerate() {
        peers.push(peer(loc, p, i)?);
    }
    Ok(MeshConfig {
        pair,
        bundle,
        identity,
        trust_domain,
        mtls,
        networks,
        ports,
        peers,
    })
}

fn peer(loc: &Locator<'_>, p: &RawMeshPeer, i: usize) -> Result<MeshPeer, ConfigError> {
    let text = p.destination.get_ref();
    let destination = match text.parse::<SocketAddr>() {
        Ok(addr) => PeerMatch::Address(addr),
        Err(_) => match network(text) {
            Some(net) => PeerMatch::Network(net),
            None => {
                return loc.at(
                    &p.destination,
                    format!("mesh.peers[{i}].destination"),
                    format!("`{text}` is not an address (`10.1.0.2:8080`, `10.1.0.2`) or a network (`10.1.0.0/24`)"),
                );
            }
        },
    };
    if !is_spiffe_id(p.identity.get_ref()) {
        return loc.at(
            &p.identity,
            format!("mesh.peers[{i}].identity"),
            format!(
                "`{}` is not a SPIFFE ID like `spiffe://example.org/ns/shop/sa/web`",
                p.identity.get_ref()
            ),
        );
    }
    Ok(MeshPeer {
        destination,
        identity: p.identity.get_ref().clone(),
    })
}

/// `10.0.0.0/8`, or a bare address as a one-host network.
fn network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A CA and a workload certificate (with `uri`, if given) written to
    /// `dir` as `ca.pem`, `w.pem`, `w-key.pem`.
    fn certificates(dir: &Path, uri: Option<&str>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        if let Some(uri) = uri {
            leaf.subject_alt_names
                .push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from(uri).unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        std::fs::write(dir.join("w.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("w-key.pem"), key.serialize_pem()).unwrap();
    }

    const LISTENER: &str = "[[listeners]]\naddress = \"0.0.0.0:15006\"\nintercept = \"inbound\"\n";
    const MESH: &str = "[mesh]\ncert = \"w.pem\"\nkey = \"w-key.pem\"\ntrust_bundle = \"ca.pem\"\n";

    fn parse(dir: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse(&dir.join("pod.toml"), text)
    }

    #[test]
    fn a_mesh_config_parses() {
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path(), Some("spiffe://example.org/ns/shop/sa/web"));
        let text = format!(
            "{LISTENER}{MESH}mtls = \"strict\"\nnetworks = [\"10.244.0.0/16\", \"fd00::1\"]\nports = [8080]\n\
             [[mesh.peers]]\ndestination = \"10.244.1.7:9080\"\nidentity = \"spiffe://example.org/ns/shop/sa/reviews\"\n\
             [[mesh.peers]]\ndestination = \"10.244.2.0/24\"\nidentity = \"spiffe://example.org/ns/shop/sa/db\"\n"
        );
        let mesh = parse(dir.path(), &text).unwrap().mesh.unwrap();
        assert_eq!(mesh.identity, "spiffe://example.org/ns/shop/sa/web");
        assert_eq!(mesh.trust_domain, "example.org");
        assert_eq!(mesh.mtls, MtlsMode::Strict);
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(mesh.is_meshed(addr("10.244.3.3:80")));
        assert!(mesh.is_meshed(addr("[fd00::1]:80")));
        assert!(mesh.is_meshed(addr("192.168.0.1:8080")), "by port");
        assert!(!mesh.is_meshed(addr("192.168.0.1:80")));
        assert_eq!(
            mesh.expected_identity(addr("10.244.1.7:9080")),
            Some("spiffe://example.org/ns/shop/sa/reviews")
        );
        assert_eq!(mesh.expected_identity(addr("10.244.1.7:9081")), None);
        assert_eq!(
            mesh.expected_identity(addr("10.244.2.9:5432")),
            Some("spiffe://example.org/ns/shop/sa/db")
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path(), Some("spiffe://example.org/ns/shop/sa/web"));
        let cases = [
            (format!("{LISTENER}{MESH}mtls = \"sometimes\"\n"), "mesh.mtls"),
            (
                format!("{LISTENER}{MESH}networks = [\"10.0.0/8\"]\n"),
                "mesh.networks[0]",
            ),
            (format!("{LISTENER}{MESH}ports = [0]\n"), "mesh.ports[0]"),
            (
                format!("{LISTENER}{MESH}[[mesh.peers]]\ndestination = \"here\"\nidentity = \"spiffe://e/x\"\n"),
                "mesh.peers[0].destination",
            ),
            (
                format!("{LISTENER}{MESH}[[mesh.peers]]\ndestination = \"10.0.0.1\"\nidentity = \"web\"\n"),
                "mesh.peers[0].identity",
            ),
        ];
        for (text, key) in cases {
            let e = parse(dir.path(), &text).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.line.is_some(), "{e}");
        }
    }

    #[test]
    fn a_gateway_joins_the_mesh_as_a_caller() {
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path(), Some("spiffe://example.org/ns/edge/sa/gateway"));
        let text = format!("[[listeners]]\naddress = \"127.0.0.1:1\"\n{MESH}networks = [\"10.244.0.0/16\"]\n");
        let config = parse(dir.path(), &text).unwrap();
        assert!(config.bootstrap.sidecar.is_none());
        assert_eq!(config.mesh.unwrap().identity, "spiffe://example.org/ns/edge/sa/gateway");
    }

    #[test]
    fn the_workload_certificate_needs_a_spiffe_id() {
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path(), None);
        let e = parse(dir.path(), &format!("{LISTENER}{MESH}")).unwrap_err();
        assert_eq!(e.key, "mesh.cert", "{e}");
        assert!(e.message.contains("SPIFFE"), "{e}");
    }
}
