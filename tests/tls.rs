//! TLS listeners end to end: certificates chosen by SNI, ALPN to HTTP/2 and
//! HTTP/1.1, TLS 1.2 and 1.3, resumption, client identities reaching
//! filters, rotation under load, and what bad input gets. Certificates are
//! made in each test (rcgen); clients are rustls, curl and `openssl
//! s_client`.

mod common;

use common::tls::*;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The value of one series in Prometheus text, 0 if absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn echo(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not an echo ({e}): {body}"))
}

/// Three certificates: `api.test` (exact), `*.wild.test`, and a default.
fn sni_certificates(dir: &Path, ca: &Ca) -> String {
    ca.issue(&Leaf::server("api", &["api.test"])).write(dir, "api");
    ca.issue(&Leaf::server("wild", &["*.wild.test"])).write(dir, "wild");
    ca.issue(&Leaf::server("default", &["default.test"]))
        .write(dir, "default");
    format!(
        r#"[listeners.tls]
client_auth = "optional"
client_ca = "{ca}"

[[listeners.tls.certificates]]
cert = "{d}/api.pem"
key = "{d}/api-key.pem"
server_names = ["api.test"]

[[listeners.tls.certificates]]
cert = "{d}/wild.pem"
key = "{d}/wild-key.pem"
server_names = ["*.wild.test"]

[[listeners.tls.certificates]]
cert = "{d}/default.pem"
key = "{d}/default-key.pem"
"#,
        ca = ca.write(dir).display(),
        d = dir.display()
    )
}

fn probe_route(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[[clusters]]
name = "app"
endpoints = ["{upstream}"]

[[routes]]
name = "all"
cluster = "app"

[[routes.filters]]
plugin = "probe"
[routes.filters.config]
connection_headers = true
"#
    )
}

#[tokio::test]
async fn tls_sni_and_alpn() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("sni test CA");
    let up = Upstream::start("app").await;
    // A second TLS listener with only an exact-name certificate: no default.
    ca.issue(&Leaf::server("strict", &["strict.test"]))
        .write(certs.path(), "strict");
    let strict = format!(
        r#"
[[listeners]]
name = "strict"
address = "127.0.0.1:0"
[listeners.tls]
[[listeners.tls.certificates]]
cert = "{d}/strict.pem"
key = "{d}/strict-key.pem"
server_names = ["strict.test"]
"#,
        d = certs.path().display()
    );
    let body = sni_certificates(certs.path(), &ca) + &strict + &probe_route(up.addr);
    let proxy = start(&body, &[("probe-filter", "probe")]).await;
    let addr = proxy.addr;
    let strict_addr = proxy.running.listeners[1].1;

    // SNI picks the certificate: exact, wildcard (one label deep only), default.
    let h2_and_h1 = client_config(&ca, None, &["h2", "http/1.1"], false);
    for (sni, subject) in [
        ("api.test", "CN=api"),
        ("API.Test", "CN=api"),
        ("a.wild.test", "CN=wild"),
        ("x.y.wild.test", "CN=default"),
        ("other.test", "CN=default"),
        ("127.0.0.1", "CN=default"),
    ] {
        // The default certificate does not name every SNI: check the choice
        // with a client that trusts the CA but skips the name check.
        let config = if subject == "CN=default" {
            client_config_any_name(&ca, &["h2", "http/1.1"])
        } else {
            h2_and_h1.clone()
        };
        let mut client = TlsClient::connect(addr, sni, config)
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(client.server_subject, subject, "SNI {sni}");
        assert_eq!(client.alpn.as_deref(), Some("h2"), "ALPN prefers h2");
        let (status, _, text) = client.get("/sni").await.unwrap();
        assert_eq!(status, 200, "{text}");
        let e = echo(&text);
        assert_eq!(
            e["version"], "HTTP/1.1",
            "upstream is HTTP/1.1 whatever the client spoke"
        );
        assert_eq!(echoed(&e, "x-forwarded-proto"), ["https"]);
        assert_eq!(echoed(&e, "x-probe-conn-scheme"), ["https"]);
        assert_eq!(echoed(&e, "x-probe-conn-alpn"), ["h2"]);
        assert_eq!(echoed(&e, "x-probe-conn-listener"), ["test"]);
        // A gateway listener: not intercepted.
        assert_eq!(echoed(&e, "x-probe-conn-direction"), ["none"]);
        assert_eq!(echoed(&e, "x-probe-conn-original-dst"), ["none"]);
        let expected_sni = if sni == "127.0.0.1" {
            "none".to_string()
        } else {
            sni.to_ascii_lowercase()
        };
        assert_eq!(echoed(&e, "x-probe-conn-sni"), [expected_sni]);
    }

    // HTTP/1.1 when the client offers only that; TLS 1.2 when it speaks
    // only 1.2.
    let mut h1 = TlsClient::connect(addr, "api.test", client_config(&ca, None, &["http/1.1"], false))
        .await
        .unwrap();
    assert_eq!(h1.alpn.as_deref(), Some("http/1.1"));
    let (status, _, text) = h1.get("/h1").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(echoed(&echo(&text), "x-probe-conn-tls"), ["TLSv1.3"]);
    let mut tls12 = TlsClient::connect(addr, "api.test", client_config(&ca, None, &["h2"], true))
        .await
        .unwrap();
    assert_eq!(tls12.version, Some(rustls::ProtocolVersion::TLSv1_2));
    let (_, _, text) = tls12.get("/tls12").await.unwrap();
    assert_eq!(echoed(&echo(&text), "x-probe-conn-tls"), ["TLSv1.2"]);

    // Resumption: the second connection with the same client config resumes.
    let resuming = client_config(&ca, None, &["h2"], false);
    let mut first = TlsClient::connect(addr, "api.test", resuming.clone()).await.unwrap();
    first.get("/first").await.unwrap();
    let second = TlsClient::connect(addr, "api.test", resuming).await.unwrap();
    assert!(second.resumed, "the second handshake resumed the first session");

    // No certificate for the name and no default: refused with an alert.
    let refused = TlsClient::connect(strict_addr, "nope.test", client_config(&ca, None, &["h2"], false)).await;
    let Err(error) = refused else {
        panic!("no certificate for nope.test, yet the handshake succeeded")
    };
    let error = error.to_string();
    assert!(error.contains("UnrecognisedName"), "{error}");
    assert!(
        TlsClient::connect(strict_addr, "strict.test", client_config(&ca, None, &["h2"], false))
            .await
            .is_ok()
    );

    // curl: HTTP/2 over TLS by ALPN, verifying against the CA.
    let ca_path = certs.path().join("ca.pem");
    let port = addr.port();
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--http2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
        .arg("--cacert")
        .arg(&ca_path)
        .args(["--resolve", &format!("api.test:{port}:127.0.0.1")])
        .arg(format!("https://api.test:{port}/curl"))
        .output()
        .await
        .expect("run curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // openssl s_client: the certificate by SNI, ALPN, and the alert.
    if have_openssl("tls_sni_and_alpn") {
        let out = s_client(addr, &["-servername", "a.wild.test", "-alpn", "h2"]).await;
        assert!(out.contains("ALPN protocol: h2"), "{out}");
        assert!(out.contains("CN = wild"), "{out}");
        let out = s_client(addr, &["-servername", "api.test", "-alpn", "http/1.1", "-tls1_2"]).await;
        assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
        assert!(out.contains("CN = api") && out.contains("TLSv1.2"), "{out}");
        let out = s_client(strict_addr, &["-servername", "nope.test"]).await;
        assert!(out.contains("unrecognized name"), "{out}");
    }
    let metrics = proxy.running.metrics.encode();
    assert!(
        metric(
            &metrics,
            "sluice_tls_handshakes_total{listener=\"test\",version=\"TLSv1.3\"}"
        ) >= 8.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "sluice_tls_handshakes_total{listener=\"test\",version=\"TLSv1.2\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &metrics,
            "sluice_tls_handshake_errors_total{listener=\"strict\",reason=\"no_certificate_for_name\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_tls_cert_expiry_seconds{owner=\"listener/test\""),
        "{metrics}"
    );
}

/// A client config that verifies the chain but not the name, to see which
/// certificate a server chose for a name the certificate does not carry.
fn client_config_any_name(ca: &Ca, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);
    impl rustls::client::danger::ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &rustls::pki_types::CertificateDer<'_>,
            intermediates: &[rustls::pki_types::CertificateDer<'_>],
            _name: &rustls::pki_types::ServerName<'_>,
            ocsp: &[u8],
            now: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            let default = rustls::pki_types::ServerName::try_from("default.test").unwrap();
            self.0
                .verify_server_cert(end_entity, intermediates, &default, ocsp, now)
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(m, c, d)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(m, c, d)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

#[tokio::test]
async fn mtls_identity_reaches_filters() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh CA");
    let up = Upstream::start("app").await;
    let (cert, key) = ca
        .issue(&Leaf::server("gateway", &["gw.test"]))
        .write(certs.path(), "server");
    let web_id = "spiffe://example.org/ns/shop/sa/web";
    let web = ca.issue(&Leaf {
        cn: "web".into(),
        dns: vec!["web.shop.test".into()],
        uris: vec![web_id.into()],
        ..Leaf::default()
    });
    let (web_cert, web_key) = web.write(certs.path(), "web");
    let log = certs.path().join("access.log");
    let body = format!(
        r#"[listeners.tls]
cert = "{cert}"
key = "{key}"
client_auth = "required"
client_ca = "{ca}"

[access_log]
path = "{log}"
format = "json"
{routes}"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.write(certs.path()).display(),
        log = log.display(),
        routes = probe_route(up.addr),
    );
    let proxy = start(&body, &[("probe-filter", "probe")]).await;

    // HTTP/2 over mTLS: the filter sees the verified identity in both phases.
    let config = client_config(&ca, Some(&web), &["h2"], false);
    let (status, headers, text) = get_once(proxy.addr, "gw.test", config, "/who").await.unwrap();
    assert_eq!(status, 200, "{text}");
    let e = echo(&text);
    assert_eq!(echoed(&e, "x-probe-conn-peer"), [web_id]);
    assert_eq!(echoed(&e, "x-probe-conn-trust-domain"), ["example.org"]);
    assert_eq!(echoed(&e, "x-probe-conn-peer-dns"), ["web.shop.test"]);
    assert_eq!(echoed(&e, "x-probe-conn-peer-subject"), ["CN=web"]);
    assert_eq!(echoed(&e, "x-probe-conn-sni"), ["gw.test"]);
    assert_eq!(headers["x-probe-conn-peer"], web_id, "response phase sees it too");

    // curl with the client certificate, over HTTP/1.1.
    let port = proxy.addr.port();
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--http1.1", "--cacert"])
        .arg(certs.path().join("ca.pem"))
        .arg("--cert")
        .arg(&web_cert)
        .arg("--key")
        .arg(&web_key)
        .args(["--resolve", &format!("gw.test:{port}:127.0.0.1")])
        .arg(format!("https://gw.test:{port}/curl"))
        .output()
        .await
        .expect("run curl");
    let e = echo(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(echoed(&e, "x-probe-conn-peer"), [web_id]);
    assert_eq!(echoed(&e, "x-probe-conn-alpn"), ["http/1.1"]);

    // Without a certificate the handshake is refused (client_auth = required).
    let anonymous = client_config(&ca, None, &["h2"], false);
    let refused = get_once(proxy.addr, "gw.test", anonymous, "/anon").await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served: {refused:?}"
    );

    // The access log records the peer; metrics count it by trust domain.
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("\"/who\"")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no access log line for /who: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["peer"], web_id, "{line}");
    assert_eq!(entry["tls"], "TLSv1.3", "{line}");
    let metrics = proxy.running.metrics.encode();
    assert!(
        metric(
            &metrics,
            "sluice_tls_peer_identities_total{listener=\"test\",trust_domain=\"example.org\"}"
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "sluice_tls_handshake_errors_total{listener=\"test\",reason=\"client_cert_missing\"}"
        ) >= 1.0,
        "{metrics}"
    );
}
