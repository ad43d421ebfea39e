//! TLS from sluice to a cluster: verification against the cluster's CA, SNI
//! and ALPN, a client certificate for mutual TLS, and the expected identity
//! (SPIFFE ID or DNS name) checked on every connection — a wrong one is
//! refused with 502 and a log line that says why.

mod common;

use common::tls::*;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BACKEND_ID: &str = "spiffe://example.org/ns/backend/sa/api";
const GATEWAY_ID: &str = "spiffe://example.org/ns/gateway/sa/sluice";

/// A TLS upstream that requires a client certificate from `ca` and answers
/// `peer=<client SPIFFE ID> sni=<server name> version=<HTTP version>`.
async fn mtls_upstream(ca: &Ca, server: &Issued) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server.chain(), server.key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let (_, conn) = stream.get_ref();
                let peer = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| sluice::connection::PeerIdentity::from_der(c))
                    .and_then(|id| id.spiffe_id)
                    .unwrap_or_else(|| "none".into());
                let sni = conn.server_name().unwrap_or("none").to_string();
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let text = format!("peer={peer} sni={sni} version={:?}", req.version());
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes::Bytes::from(text))))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn upstream_mtls_checks_identity() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let ca = Ca::new("mesh CA");
    let stranger = Ca::new("another CA");
    let backend = ca.issue(&Leaf {
        cn: "api".into(),
        dns: vec!["backend.test".into()],
        uris: vec![BACKEND_ID.into()],
        ..Leaf::default()
    });
    let (up, _task) = mtls_upstream(&ca, &backend).await;
    let (gw_cert, gw_key) = ca.issue(&Leaf::spiffe("sluice", GATEWAY_ID)).write(dir, "gateway");
    let ca_path = ca.write(dir);
    let stranger_path = dir.join("stranger.pem");
    std::fs::write(&stranger_path, stranger.pem()).unwrap();
    let tls = |extra: &str| {
        format!(
            "[clusters.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n",
            ca_path.display(),
            gw_cert.display(),
            gw_key.display()
        )
    };
    let cluster = |name: &str, protocol: &str, tls: String| {
        format!("[[clusters]]\nname = \"{name}\"\nendpoints = [\"{up}\"]\nprotocol = \"{protocol}\"\n{tls}\n")
    };
    let route =
        |name: &str| format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\ncluster = \"{name}\"\n\n");
    let mut body = String::new();
    for (name, protocol, tls) in [
        ("spiffe", "http1", tls(&format!("identity = \"{BACKEND_ID}\""))),
        ("h2", "http2", tls(&format!("identity = \"{BACKEND_ID}\""))),
        (
            "dns",
            "http1",
            tls("server_name = \"backend.test\"\nidentity = \"backend.test\""),
        ),
        (
            "wrong",
            "http1",
            tls("identity = \"spiffe://example.org/ns/backend/sa/impostor\""),
        ),
        (
            "noclient",
            "http1",
            format!(
                "[clusters.tls]\nca = \"{}\"\nidentity = \"{BACKEND_ID}\"\n",
                ca_path.display()
            ),
        ),
        (
            "untrusted",
            "http1",
            format!(
                "[clusters.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nidentity = \"{BACKEND_ID}\"\n",
                stranger_path.display(),
                gw_cert.display(),
                gw_key.display()
            ),
        ),
    ] {
        body += &cluster(name, protocol, tls);
    }
    for name in ["spiffe", "h2", "dns", "wrong", "noclient", "untrusted"] {
        body += &route(name);
    }
    let proxy = start_binary(&body, &[]);
    let client = h1();
    let get = |path: &str| {
        let url = format!("http://{}{path}", proxy.addr);
        let client = client.clone();
        async move {
            let resp = client.get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };

    // The right identity, with sluice's own certificate presented to the
    // upstream; ALPN h2 for an http2 cluster; SNI from the endpoint's IP
    // (none) or the configured server name.
    let (status, text) = get("/spiffe/a").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, format!("peer={GATEWAY_ID} sni=none version=HTTP/1.1"));
    let (status, text) = get("/h2/a").await;
    assert_eq!(
        (status, text.as_str()),
        (200, format!("peer={GATEWAY_ID} sni=none version=HTTP/2.0").as_str())
    );
    let (status, text) = get("/dns/a").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, format!("peer={GATEWAY_ID} sni=backend.test version=HTTP/1.1"));

    // A valid certificate for someone else: 502, and the log says why.
    let (status, _) = get("/wrong/a").await;
    assert_eq!(status, 502);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = proxy.log_lines_with("upstream identity mismatch");
        if let Some(line) = lines.first() {
            assert!(line.contains("spiffe://example.org/ns/backend/sa/impostor"), "{line}");
            assert!(line.contains(BACKEND_ID), "names what the certificate had: {line}");
            assert!(line.contains("cluster=wrong"), "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no log line for the identity mismatch: {:?}",
            proxy.log_lines_with("upstream")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No client certificate for an upstream that requires one, and an
    // upstream whose chain the cluster's CA does not sign: 502 as well.
    assert_eq!(get("/noclient/a").await.0, 502);
    assert_eq!(get("/untrusted/a").await.0, 502);
    // The good clusters still work (connections were pooled, or are made again).
    assert_eq!(get("/spiffe/b").await.0, 200);
}
