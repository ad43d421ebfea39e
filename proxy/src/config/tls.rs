//! TLS settings: a listener's `[listeners.tls]` (certificates chosen by SNI,
//! client authentication, handshake timeout, lowest version) and a
//! cluster's `[clusters.tls]` (trust, server name, client certificate,
//! expected identity). Files are read and checked here, so every problem
//! with them is a located config error.

use super::ConfigError;
use super::raw::{RawCertificate, RawListenerTls, RawUpstreamTls};
use super::validate::Locator;
use crate::connection::is_spiffe_id;
pub use crate::tls::pem::{KeyPair, PemError, TrustBundle};
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// Default time a client has to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS listener's settings. Reloadable: new connections use the
/// generation's settings; established ones keep theirs.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    /// Chosen by the client's SNI; at most one has no `server_names` and is
    /// the default for names nothing else matches (and for no SNI).
    pub certificates: Vec<ServerCertificate>,
    pub client_auth: ClientAuth,
    /// Trust anchors for client certificates (required unless
    /// `client_auth = "none"`).
    pub client_ca: Option<TrustBundle>,
    pub handshake_timeout: Duration,
    pub min_version: TlsVersion,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerCertificate {
    /// Lower-case names: `api.example.com` or `*.example.com` (one label).
    /// Empty: the default certificate.
    pub server_names: Vec<String>,
    pub pair: KeyPair,
}

/// Whether a listener asks clients for a certificate (`client_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asks.
    None,
    /// Asks; a client without one is served, one with an untrusted one is refused.
    Optional,
    /// Refuses clients without a certificate the trust bundle verifies.
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// TLS from sluice to a cluster's endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    /// Trust anchors for the endpoints' certificates; `None` = the system's.
    pub ca: Option<TrustBundle>,
    /// SNI and the name verified; `None` = the endpoint's host.
    pub server_name: Option<String>,
    /// A client certificate for mutual TLS.
    pub client_cert: Option<KeyPair>,
    /// Checked on every connection instead of the server name.
    pub identity: Option<ExpectedIdentity>,
}

/// The identity an upstream's certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedIdentity {
    /// This SPIFFE ID as a URI SAN.
    Spiffe(String),
    /// This DNS name, as a DNS SAN (wildcards per RFC 6125).
    Dns(String),
    /// Any SPIFFE ID in this trust domain (the mesh's default check).
    TrustDomain(String),
}

impl std::fmt::Display for ExpectedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedIdentity::Spiffe(id) | ExpectedIdentity::Dns(id) => f.write_str(id),
            ExpectedIdentity::TrustDomain(domain) => write!(f, "a SPIFFE ID in spiffe://{domain}"),
        }
    }
}

impl super::Config {
    /// Every certificate-and-key pair in use, with its owner
    /// (`listener/NAME` or `cluster/NAME`).
    pub fn key_pairs(&self) -> impl Iterator<Item = (String, &KeyPair)> {
        let listeners = self.listener_tls.iter().flat_map(|(name, t)| {
            t.certificates
                .iter()
                .map(move |c| (format!("listener/{name}"), &c.pair))
        });
        let clusters = self
            .clusters
            .iter()
            .filter_map(|c| Some((format!("cluster/{}", c.name), c.tls.as_ref()?.client_cert.as_ref()?)));
        let mesh = self.mesh.iter().map(|m| ("mesh".to_string(), &m.pair));
        listeners.chain(clusters).chain(mesh)
    }

    /// Every trust bundle in use (`client_ca`, clusters' `ca`).
    pub fn trust_bundles(&self) -> impl Iterator<Item = &TrustBundle> {
        let listeners = self.listener_tls.values().filter_map(|t| t.client_ca.as_ref());
        let clusters = self.clusters.iter().filter_map(|c| c.tls.as_ref()?.ca.as_ref());
        let mesh = self.mesh.iter().map(|m| &m.bundle);
        listeners.chain(clusters).chain(mesh)
    }

    /// Warnings about the TLS material in use (readable keys, certificates
    /// not valid now), logged when the configuration starts serving.
    pub fn tls_warnings(&self) -> Vec<String> {
        self.key_pairs().flat_map(|(_, pair)| pair.warnings()).collect()
    }
}

fn resolve(base: &Path, p: &Spanned<String>) -> std::path::PathBuf {
    base.join(p.get_ref())
}

pub(super) fn key_pair(
    loc: &Locator<'_>,
    base: &Path,
    cert: &Spanned<String>,
    key: &Spanned<String>,
    at: &str,
) -> Result<KeyPair, ConfigError> {
    KeyPair::load(&resolve(base, cert), &resolve(base, key)).or_else(|e| match e {
        PemError::NoKey { .. } | PemError::KeyMismatch { .. } => loc.at(key, format!("{at}.key"), e.to_string()),
        PemError::Read { ref path, .. } if *path == resolve(base, key) => {
            loc.at(key, format!("{at}.key"), e.to_string())
        }
        _ => loc.at(cert, format!("{at}.cert"), e.to_string()),
    })
}

pub(super) fn bundle(
    loc: &Locator<'_>,
    base: &Path,
    path: &Spanned<String>,
    key: String,
) -> Result<TrustBundle, ConfigError> {
    TrustBundle::load(&resolve(base, path)).or_else(|e| loc.at(path, key, e.to_string()))
}

/// Check a configured server name: a DNS name or `*.` and one.
fn server_name(loc: &Locator<'_>, name: &Spanned<String>, key: String) -> Result<String, ConfigError> {
    let mut lower = name.get_ref().to_ascii_lowercase();
    // SNI never carries the root's trailing dot.
    if lower.ends_with('.') {
        lower.pop();
    }
    let host = lower.strip_prefix("*.").unwrap_or(&lower);
    let valid = !host.is_empty()
        && !host.contains('*')
        && rustls_pki_types::DnsName::try_from(host).is_ok()
        && host.parse::<std::net::IpAddr>().is_err();
    if !valid {
        return loc.at(
            name,
            key,
            format!(
                "`{}` is not a server name like `api.example.com` or `*.example.com`",
                name.get_ref()
            ),
        );
    }
    Ok(lower)
}

pub(super) fn listener(
    loc: &Locator<'_>,
    base: &Path,
    table: &Spanned<RawListenerTls>,
    at: &str,
) -> Result<ListenerTls, ConfigError> {
    let raw = table.get_ref();
    let mut certificates = Vec::new();
    match (&raw.cert, &raw.key) {
        (Some(cert), Some(key)) => certificates.push(ServerCertificate {
            server_names: Vec::new(),
            pair: key_pair(loc, base, cert, key, at)?,
        }),
        (Some(cert), None) => return loc.at(cert, format!("{at}.key"), "`cert` needs a `key`"),
        (None, Some(key)) => return loc.at(key, format!("{at}.cert"), "`key` needs a `cert`"),
        (None, None) => {}
    }
    for (i, c) in raw.certificates.iter().enumerate() {
        certificates.push(certificate(loc, base, c, &format!("{at}.certificates[{i}]"))?);
    }
    if certificates.is_empty() {
        return loc.at(
            table,
            format!("{at}.cert"),
            "a TLS listener needs a certificate: `cert` and `key`, or [[listeners.tls.certificates]]",
        );
    }
    let defaults = certificates.iter().filter(|c| c.server_names.is_empty()).count();
    if defaults > 1 {
        return loc.at(
            table,
            format!("{at}.certificates"),
            "more than one certificate without `server_names`: only one can be the default",
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in raw.certificates.iter().enumerate() {
        for (j, n) in c.server_names.iter().enumerate() {
            if !seen.insert(n.get_ref().to_ascii_lowercase().trim_end_matches('.').to_string()) {
                return loc.at(
                    n,
                    format!("{at}.certificates[{i}].server_names[{j}]"),
                    format!("`{}` is named by two certificates", n.get_ref()),
                );
            }
        }
    }
    let client_auth = match raw.client_auth.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "none")) => ClientAuth::None,
        Some((_, "optional")) => ClientAuth::Optional,
        Some((_, "required")) => ClientAuth::Required,
        Some((s, other)) => {
            return loc.at(
                s,
                format!("{at}.client_auth"),
                format!("`{other}` is not one of `none`, `optional`, `required`"),
            );
        }
    };
    let client_ca = match &raw.client_ca {
        Some(p) => Some(bundle(loc, base, p, format!("{at}.client_ca"))?),
        None => None,
    };
    if let (ClientAuth::None, Some(p)) = (client_auth, &raw.client_ca) {
        return loc.at(
            p,
            format!("{at}.client_auth"),
            "`client_ca` is set but `client_auth` is none, so client certificates would not be asked for: set `client_auth = \"optional\"` or `\"required\"`",
        );
    }
    if let (Some(s), None) = (&raw.client_auth, &client_ca)
        && client_auth != ClientAuth::None
    {
        return loc.at(
            s,
            format!("{at}.client_ca"),
            "client_auth needs `client_ca`, the trust bundle client certificates are verified against",
        );
    }
    let handshake_timeout = match &raw.handshake_timeout {
        Some(t) => loc.duration(t, format!("{at}.handshake_timeout"))?,
        None => DEFAULT_HANDSHAKE_TIMEOUT,
    };
    let min_version = match raw.min_version.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "1.2")) => TlsVersion::Tls12,
        Some((_, "1.3")) => TlsVersion::Tls13,
        Some((s, other)) => {
            return loc.at(
                s,
                format!("{at}.min_version"),
                format!("`{other}` is not `1.2` or `1.3`"),
            );
        }
    };
    Ok(ListenerTls {
        certificates,
        client_auth,
        client_ca,
        handshake_timeout,
        min_version,
    })
}

fn certificate(loc: &Locator<'_>, base: &Path, c: &RawCertificate, at: &str) -> Result<ServerCertificate, ConfigError> {
    let mut server_names = Vec::new();
    for (j, n) in c.server_names.iter().enumerate() {
        server_names.push(server_name(loc, n, format!("{at}.server_names[{j}]"))?);
    }
    Ok(ServerCertificate {
        server_names,
        pair: key_pair(loc, base, &c.cert, &c.key, at)?,
    })
}

pub(super) fn upstream(
    loc: &Locator<'_>,
    base: &Path,
    raw: &RawUpstreamTls,
    at: &str,
) -> Result<UpstreamTls, ConfigError> {
    let ca = match &raw.ca {
        Some(p) => Some(bundle(loc, base, p, format!("{at}.ca"))?),
        None => None,
    };
    let server_name = match &raw.server_name {
        Some(n) => {
            let name = n.get_ref().to_ascii_lowercase();
            if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                return loc.at(
                    n,
                    format!("{at}.server_name"),
                    format!("`{}` is not a DNS name or IP address", n.get_ref()),
                );
            }
            Some(name)
        }
        None => None,
    };
    let client_cert = match (&raw.cert, &raw.key) {
        (Some(cert), Some(key)) => Some(key_pair(loc, base, cert, key, at)?),
        (Some(cert), None) => return loc.at(cert, format!("{at}.key"), "`cert` needs a `key`"),
        (None, Some(key)) => return loc.at(key, format!("{at}.cert"), "`key` needs a `cert`"),
        (None, None) => None,
    };
    let identity = match &raw.identity {
        Some(id) if id.get_ref().starts_with("spiffe://") => {
            if !is_spiffe_id(id.get_ref()) {
                return loc.at(
                    id,
                    format!("{at}.identity"),
                    format!("`{}` has no trust domain", id.get_ref()),
                );
            }
            Some(ExpectedIdentity::Spiffe(id.get_ref().clone()))
        }
        Some(id) => {
            let name = id.get_ref().to_ascii_lowercase();
            if rustls_pki_types::DnsName::try_from(name.as_str()).is_err() {
                return loc.at(
                    id,
                    format!("{at}.identity"),
                    format!(
                        "`{}` is neither a SPIFFE ID (`spiffe://…`) nor a DNS name",
                        id.get_ref()
                    ),
                );
            }
            Some(ExpectedIdentity::Dns(name))
        }
        None => None,
    };
    Ok(UpstreamTls {
        ca,
        server_name,
        client_cert,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    /// A directory with a good pair (`good.pem`/`good-key.pem`), another
    /// key, garbage, and a CA.
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("good.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("good-key.pem"), key.serialize_pem()).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("other-key.pem"), other.serialize_pem()).unwrap();
        std::fs::write(
            dir.path().join("garbage.pem"),
            "-----BEGIN CERTIFICATE-----\nnot base64\n",
        )
        .unwrap();
        dir
    }

    fn parse(dir: &Path, tls: &str) -> Result<Config, ConfigError> {
        let text = format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n[listeners.tls]\n{tls}");
        Config::parse(&dir.join("gw.toml"), &text)
    }

    #[test]
    fn good_material_loads() {
        let dir = files();
        let config = parse(dir.path(), "cert = \"good.pem\"\nkey = \"good-key.pem\"\n").unwrap();
        let tls = &config.listener_tls["listener-0"];
        assert_eq!(tls.certificates.len(), 1);
        assert_eq!(tls.client_auth, super::ClientAuth::None);
    }

    #[test]
    fn bad_material_names_file_line_and_key() {
        let dir = files();
        let e = parse(dir.path(), "cert = \"missing.pem\"\nkey = \"good-key.pem\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("listeners[0].tls.cert", Some(4)), "{e}");
        assert!(e.message.contains("missing.pem"), "{e}");
        let e = parse(dir.path(), "cert = \"good.pem\"\nkey = \"other-key.pem\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("listeners[0].tls.key", Some(5)), "{e}");
        assert!(e.message.contains("does not match"), "{e}");
        let e = parse(dir.path(), "cert = \"garbage.pem\"\nkey = \"good-key.pem\"\n").unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.cert", "{e}");
        let e = parse(dir.path(), "cert = \"good.pem\"\nkey = \"garbage.pem\"\n").unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.key", "{e}");
        assert!(
            e.to_string()
                .starts_with(&dir.path().join("gw.toml").display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn settings_are_checked() {
        let dir = files();
        let pair = "cert = \"good.pem\"\nkey = \"good-key.pem\"\n";
        let e = parse(dir.path(), &format!("{pair}client_auth = \"required\"\n")).unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.client_ca", "{e}");
        let e = parse(dir.path(), &format!("{pair}client_auth = \"maybe\"\n")).unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.client_auth", "{e}");
        let e = parse(dir.path(), &format!("{pair}client_ca = \"good.pem\"\n")).unwrap_err();
        assert_eq!(
            e.key, "listeners[0].tls.client_auth",
            "client_ca without client_auth: {e}"
        );
        let e = parse(dir.path(), &format!("{pair}min_version = \"1.1\"\n")).unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.min_version", "{e}");
        let e = parse(dir.path(), "client_auth = \"none\"\n").unwrap_err();
        assert!(e.message.contains("needs a certificate"), "{e}");
        let e = parse(
            dir.path(),
            "[[listeners.tls.certificates]]\ncert = \"good.pem\"\nkey = \"good-key.pem\"\nserver_names = [\"*.*.test\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.certificates[0].server_names[0]", "{e}");
        let two_defaults = "[[listeners.tls.certificates]]\ncert = \"good.pem\"\nkey = \"good-key.pem\"\n".repeat(2);
        let e = parse(dir.path(), &two_defaults).unwrap_err();
        assert!(e.message.contains("only one can be the default"), "{e}");
    }

    #[test]
    fn upstream_identity_is_checked() {
        let dir = files();
        let cluster = |tls: &str| {
            let text = format!(
                "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[clusters]]\nname = \"a\"\nendpoints = [\"h:1\"]\n[clusters.tls]\n{tls}"
            );
            Config::parse(&dir.path().join("gw.toml"), &text)
        };
        let c = cluster("identity = \"spiffe://td/ns/a/sa/b\"\n").unwrap();
        let tls = c.clusters[0].tls.as_ref().unwrap();
        assert_eq!(
            tls.identity,
            Some(super::ExpectedIdentity::Spiffe("spiffe://td/ns/a/sa/b".into()))
        );
        assert!(tls.ca.is_none(), "no ca: the system's roots");
        let e = cluster("identity = \"spiffe:///ns/a\"\n").unwrap_err();
        assert_eq!(e.key, "clusters[0].tls.identity", "{e}");
        let e = cluster("identity = \"not a name\"\n").unwrap_err();
        assert_eq!(e.key, "clusters[0].tls.identity", "{e}");
        let e = cluster("cert = \"good.pem\"\n").unwrap_err();
        assert_eq!(e.key, "clusters[0].tls.key", "{e}");
        let e = cluster("ca = \"nope.pem\"\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("clusters[0].tls.ca", Some(7)), "{e}");
    }
}
