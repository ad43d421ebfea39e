//! What bad input gets on TLS and cleartext listeners: an untrusted or
//! expired client certificate, plaintext HTTP to a TLS port, TLS to a
//! cleartext port, a garbage or truncated ClientHello, a client that never
//! finishes. Each gets its alert (or a 400), is counted by reason, is cut
//! off by the handshake timeout, and other clients are served meanwhile.

mod common;

use common::tls::*;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Everything the server sends until it closes (at most 30 s).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn tls_bad_input_gets_alerts_and_leaves_others_alone() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("bad input CA");
    let stranger_ca = Ca::new("someone else's CA");
    let (cert, key) = ca
        .issue(&Leaf::server("gateway", &["gw.test"]))
        .write(certs.path(), "server");
    let up = Upstream::start("app").await;
    let body = format!(
        r#"[listeners.tls]
cert = "{cert}"
key = "{key}"
client_auth = "optional"
client_ca = "{ca}"
handshake_timeout = "3s"

[[listeners]]
name = "plain"
address = "127.0.0.1:0"

[[clusters]]
name = "app"
endpoints = ["{up}"]

[[routes]]
name = "all"
cluster = "app"
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.write(certs.path()).display(),
        up = up.addr
    );
    let proxy = start(&body, &[]).await;
    let (tls_addr, plain_addr) = (proxy.addr, proxy.running.listeners[1].1);

    // Clients that stall mid-handshake or send nothing, held open while a
    // good client is served: they must not hold it up.
    let mut stalled = Vec::new();
    for i in 0..10 {
        let mut s = TcpStream::connect(tls_addr).await.unwrap();
        if i % 2 == 0 {
            // A truncated ClientHello: a record header promising 256 bytes, then 5.
            s.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03])
                .await
                .unwrap();
        }
        stalled.push(s);
    }
    let good = get_once(tls_addr, "gw.test", client_config(&ca, None, &["h2"], false), "/ok").await;
    assert_eq!(good.map(|a| a.0), Ok(200), "a good client is served while others stall");
    for s in &stalled {
        let mut buf = [0u8; 1];
        let still_open = matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(
            still_open,
            "the stalled handshakes were still pending when the good client was served"
        );
    }
    // The stalled ones are cut off by the handshake timeout.
    for s in &mut stalled {
        let started = Instant::now();
        read_until_closed(s).await;
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "a stalled handshake was never closed"
        );
    }

    // An untrusted client certificate: `unknown_ca`. An expired one:
    // `certificate_expired`.
    let intruder = stranger_ca.issue(&Leaf::spiffe("intruder", "spiffe://evil.org/ns/x/sa/y"));
    let refused = get_once(
        tls_addr,
        "gw.test",
        client_config(&ca, Some(&intruder), &["h2"], false),
        "/x",
    )
    .await;
    let error = refused.expect_err("an untrusted certificate was accepted");
    assert!(error.contains("UnknownCA"), "{error}");
    let expired = ca.issue(&Leaf {
        expired: true,
        ..Leaf::spiffe("old", "spiffe://example.org/ns/a/sa/old")
    });
    let refused = get_once(
        tls_addr,
        "gw.test",
        client_config(&ca, Some(&expired), &["h2"], false),
        "/x",
    )
    .await;
    let error = refused.expect_err("an expired certificate was accepted");
    assert!(error.contains("CertificateExpired"), "{error}");

    // Plaintext HTTP to the TLS port: a readable 400.
    let mut s = TcpStream::connect(tls_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: gw.test\r\n\r\n").await.unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut s).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request"), "{answer}");
    assert!(answer.contains("send the request as https://"), "{answer}");

    // TLS to the cleartext port: a handshake_failure alert.
    let refused = get_once(plain_addr, "gw.test", client_config(&ca, None, &["h2"], false), "/x").await;
    let error = refused.expect_err("TLS on the cleartext port was answered");
    assert!(error.contains("HandshakeFailure"), "{error}");

    // A ClientHello that is garbage: an alert record, then close.
    let mut s = TcpStream::connect(tls_addr).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0xff, 0xff])
        .await
        .unwrap();
    let reply = read_until_closed(&mut s).await;
    assert_eq!(reply.first(), Some(&0x15), "expected an alert record, got {reply:?}");

    // The cleartext listener still serves HTTP.
    let resp = h1().get(format!("http://{plain_addr}/plain")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    if have_openssl("tls_bad_input") {
        let (c, k) = intruder.write(certs.path(), "intruder");
        let out = s_client(
            tls_addr,
            &[
                "-tls1_2",
                "-servername",
                "gw.test",
                "-cert",
                &c.display().to_string(),
                "-key",
                &k.display().to_string(),
            ],
        )
        .await;
        assert!(out.contains("unknown ca"), "{out}");
    }

    let metrics = proxy.running.metrics.encode();
    let count = |listener: &str, reason: &str| {
        metric(
            &metrics,
            &format!("sluice_tls_handshake_errors_total{{listener=\"{listener}\",reason=\"{reason}\"}}"),
        )
    };
    assert!(count("test", "timeout") >= 10.0, "{metrics}");
    assert!(count("test", "client_cert_untrusted") >= 1.0, "{metrics}");
    assert!(count("test", "client_cert_expired") >= 1.0, "{metrics}");
    assert!(count("test", "plaintext_http") >= 1.0, "{metrics}");
    assert!(count("test", "malformed") >= 1.0, "{metrics}");
    assert!(count("plain", "tls_on_cleartext") >= 1.0, "{metrics}");
}
