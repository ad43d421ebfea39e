//! TLS for the end-to-end tests: certificates made in the test with rcgen
//! (a CA and leaves with DNS, IP and SPIFFE URI SANs, valid or expired), a
//! rustls client speaking HTTP/1.1 or HTTP/2 over TLS, and `openssl
//! s_client` (skipped when missing, unless `SLUICE_REQUIRE_ROOT_TESTS=1`).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;

/// A certificate authority for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// What a leaf certificate says.
#[derive(Default, Clone)]
pub struct Leaf {
    pub cn: String,
    pub dns: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
    pub uris: Vec<String>,
    /// Valid until yesterday.
    pub expired: bool,
}

impl Leaf {
    pub fn server(cn: &str, dns: &[&str]) -> Leaf {
        Leaf {
            cn: cn.into(),
            dns: dns.iter().map(|d| d.to_string()).collect(),
            ips: vec![[127, 0, 0, 1].into()],
            ..Leaf::default()
        }
    }

    pub fn spiffe(cn: &str, id: &str) -> Leaf {
        Leaf {
            cn: cn.into(),
            uris: vec![id.into()],
            ..Leaf::default()
        }
    }
}

/// A leaf certificate and its key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn issue(&self, leaf: &Leaf) -> Issued {
        let mut params = CertificateParams::new(leaf.dns.clone()).unwrap();
        params.distinguished_name.push(DnType::CommonName, leaf.cn.as_str());
        for ip in &leaf.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        for uri in &leaf.uris {
            params
                .subject_alt_names
                .push(SanType::URI(rcgen::string::Ia5String::try_from(uri.as_str()).unwrap()));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        if leaf.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Write `ca.pem` into `dir`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.pem()).unwrap();
        path
    }
}

impl Issued {
    /// Write `<stem>.pem` and `<stem>-key.pem` (mode 600) into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        (cert, key)
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

/// A rustls client config trusting `ca`, presenting `identity` if given,
/// offering `alpn`; `tls12_only` limits it to TLS 1.2.
pub fn client_config(ca: &Ca, identity: Option<&Issued>, alpn: &[&str], tls12_only: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain(), id.key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// One TLS connection to the proxy, speaking what ALPN chose.
pub struct TlsClient {
    sender: Sender,
    authority: String,
    /// The ALPN protocol agreed.
    pub alpn: Option<String>,
    /// The subject of the certificate the server presented (`CN=…`).
    pub server_subject: String,
    pub version: Option<rustls::ProtocolVersion>,
    /// Whether the handshake resumed an earlier session.
    pub resumed: bool,
}

/// A response: status, headers, body text.
pub type Answer = (u16, http::HeaderMap, String);

impl TlsClient {
    /// Connect to `addr`, sending `sni` as the server name (an IP address
    /// sends none).
    pub async fn connect(addr: SocketAddr, sni: &str, config: Arc<rustls::ClientConfig>) -> std::io::Result<TlsClient> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
        let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
        let (_, conn) = stream.get_ref();
        let alpn = conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
        let server_subject = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| sluice::connection::PeerIdentity::from_der(c))
            .map(|id| id.subject)
            .unwrap_or_default();
        let version = conn.protocol_version();
        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let io = TokioIo::new(stream);
        let sender = if alpn.as_deref() == Some("h2") {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(TlsClient {
            sender,
            authority: format!("{sni}:{}", addr.port()),
            alpn,
            server_subject,
            version,
            resumed,
        })
    }

    /// `GET path` on this connection.
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        let response = match &mut self.sender {
            Sender::H1(s) => {
                let req = http::Request::get(path)
                    .header("host", &self.authority)
                    .body(Empty::new())
                    .unwrap();
                s.ready().await.map_err(|e| chain(&e))?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                let req = http::Request::get(format!("https://{}{path}", self.authority))
                    .body(Empty::new())
                    .unwrap();
                s.ready().await.map_err(|e| chain(&e))?;
                s.send_request(req).await
            }
        }
        .map_err(|e| chain(&e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((
            parts.status.as_u16(),
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}

/// An error with its sources, so a test failure says what happened.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

/// One request on a new connection.
pub async fn get_once(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Answer, String> {
    let mut client = TlsClient::connect(addr, sni, config).await.map_err(|e| e.to_string())?;
    client.get(path).await
}

/// Whether tests that need a system tool must run (CI sets this).
pub fn required() -> bool {
    std::env::var("SLUICE_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1")
}

/// Whether the `openssl` command works; prints `skipped:` when it does not
/// (and fails when it is required).
pub fn have_openssl(test: &str) -> bool {
    let ok = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !required(),
            "{test}: openssl is required (SLUICE_REQUIRE_ROOT_TESTS=1) but not installed"
        );
        println!("skipped: {test}: openssl is not installed");
    }
    ok
}

/// `openssl s_client -connect addr <args>` with no input: everything it
/// printed (stdout and stderr).
pub async fn s_client(addr: SocketAddr, args: &[&str]) -> String {
    let mut command = std::process::Command::new("openssl");
    command
        .args(["s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(std::process::Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
