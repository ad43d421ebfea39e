//! Certificate rotation under load: the Kubernetes Secret `..data` symlink
//! swap changes the certificate new handshakes get, established
//! connections keep working, not one request fails, and a bad certificate
//! (a key that does not match) is refused while the good one keeps serving.

mod common;

use common::tls::*;
use common::*;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Publish `cert`/`key` as a Secret volume update: a new timestamped
/// directory, then `..data` swapped to it atomically (rename of a symlink).
fn publish(secret: &Path, version: &str, cert: &str, key: &str) {
    let dir = secret.join(format!("..{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    let tmp = secret.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, secret.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        let link = secret.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), &link).unwrap();
        }
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Requests on the connection opened before the rotation, after it.
    kept_after: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_rotation_under_load_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let secret = work.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    let ca = Ca::new("rotation CA");
    let first = ca.issue(&Leaf::server("first", &["gw.test"]));
    publish(&secret, "2026_11_30_a", &first.cert_pem, &first.key_pem);
    let up = Upstream::start("app").await;
    let body = format!(
        r#"[listeners.tls]
cert = "{s}/tls.crt"
key = "{s}/tls.key"

[[clusters]]
name = "app"
endpoints = ["{up}"]

[[routes]]
name = "all"
cluster = "app"
"#,
        s = secret.display(),
        up = up.addr
    );
    let proxy = start(&body, &[]).await;
    let addr = proxy.addr;
    let config = client_config(&ca, None, &["h2"], false);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let rotated = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    // New connections (full handshakes), and one kept-alive connection
    // opened before the rotation.
    for _ in 0..3 {
        let (tally, stop, config) = (tally.clone(), stop.clone(), config.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get_once(addr, "gw.test", config.clone(), "/fresh").await {
                    Ok((200, ..)) => tally.ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("fresh request failed: {other:?}");
                        tally.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let mut kept = TlsClient::connect(addr, "gw.test", config.clone()).await.unwrap();
    assert_eq!(kept.server_subject, "CN=first");
    {
        let (tally, stop, rotated) = (tally.clone(), stop.clone(), rotated.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match kept.get("/kept").await {
                    Ok((200, ..)) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        if rotated.load(Ordering::Relaxed) {
                            tally.kept_after.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    other => {
                        eprintln!("kept-alive request failed: {other:?}");
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Rotate to a new certificate; new handshakes soon present it.
    let second = ca.issue(&Leaf::server("second", &["gw.test"]));
    publish(&secret, "2026_11_30_b", &second.cert_pem, &second.key_pem);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A fresh client config: no session to resume, so a full handshake
        // and the certificate the server has now.
        let fresh = client_config(&ca, None, &["h2"], false);
        let client = TlsClient::connect(addr, "gw.test", fresh).await.unwrap();
        if client.server_subject == "CN=second" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new handshakes still get {}",
            client.server_subject
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rotated.store(true, Ordering::Relaxed);
    let expiry = proxy.running.metrics.encode();
    assert!(
        expiry.contains("sluice_tls_cert_expiry_seconds{owner=\"listener/test\""),
        "{expiry}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A broken update: a key that belongs to another certificate. The reload
    // is refused and the second certificate keeps serving.
    let failures_before = proxy.running.metrics.reloads("failure");
    let stranger = ca.issue(&Leaf::server("third", &["gw.test"]));
    publish(&secret, "2026_11_30_c", &stranger.cert_pem, &first.key_pem);
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.running.metrics.reloads("failure") == failures_before {
        assert!(Instant::now() < deadline, "the mismatched key was never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_bad = TlsClient::connect(addr, "gw.test", client_config(&ca, None, &["h2"], false))
        .await
        .unwrap();
    assert_eq!(
        after_bad.server_subject, "CN=second",
        "the good certificate keeps serving"
    );

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed, kept_after) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.kept_after.load(Ordering::Relaxed),
    );
    println!(
        "rotation under load: {ok} requests succeeded, {failed} failed, {kept_after} on the pre-rotation connection after it"
    );
    assert_eq!(failed, 0, "requests failed during rotation");
    assert!(ok > 50, "too little load to mean anything: {ok}");
    assert!(
        kept_after > 0,
        "the connection opened before the rotation served nothing after it"
    );
}

/// A session made when client certificates were optional must not resume
/// once they are required: a resumed handshake skips the certificate.
#[tokio::test]
async fn tls_resumption_does_not_outlive_a_stricter_client_auth() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("policy CA");
    let (cert, key) = ca
        .issue(&Leaf::server("gw", &["gw.test"]))
        .write(certs.path(), "server");
    let up = Upstream::start("app").await;
    let body = |client_auth: &str| {
        format!(
            "[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_auth = \"{client_auth}\"\nclient_ca = \"{}\"\n\n[reload]\nwatch = false\n\n[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"all\"\ncluster = \"app\"\n",
            cert.display(),
            key.display(),
            certs.path().join("ca.pem").display(),
            up.addr
        )
    };
    ca.write(certs.path());
    let proxy = start(&body("optional"), &[]).await;
    let anonymous = client_config(&ca, None, &["h2"], false);
    let (status, ..) = get_once(proxy.addr, "gw.test", anonymous.clone(), "/1").await.unwrap();
    assert_eq!(status, 200);
    let again = TlsClient::connect(proxy.addr, "gw.test", anonymous.clone())
        .await
        .unwrap();
    assert!(again.resumed, "resumption works while the policy is unchanged");

    // The same listener now requires a certificate; the header the work
    // directory wrote stays in front of the new body.
    let path = proxy.work.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let header = &text[..text.find("[listeners.tls]").unwrap()];
    std::fs::write(&path, format!("{header}{}", body("required"))).unwrap();
    let outcome = proxy.running.reloader.reload("test").await;
    assert!(
        matches!(outcome, Ok(sluice::reload::Outcome::Swapped(_))),
        "{outcome:?}"
    );
    let refused = get_once(proxy.addr, "gw.test", anonymous, "/2").await;
    assert!(
        refused.is_err(),
        "an anonymous session resumed past client_auth = required: {refused:?}"
    );
}

/// Listener addresses wait for a restart; a renamed listener's TLS must not
/// go to another socket, nor its socket lose TLS.
#[tokio::test]
async fn renamed_listener_keeps_its_tls_until_restart() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("rename CA");
    let (cert, key) = ca
        .issue(&Leaf::server("gw", &["gw.test"]))
        .write(certs.path(), "server");
    let up = Upstream::start("app").await;
    let body = format!(
        "[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[reload]\nwatch = false\n\n[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"all\"\ncluster = \"app\"\n",
        cert.display(),
        key.display(),
        up.addr
    );
    let proxy = start(&body, &[]).await;
    let config = client_config(&ca, None, &["h2"], false);
    assert_eq!(
        get_once(proxy.addr, "gw.test", config.clone(), "/1").await.map(|a| a.0),
        Ok(200)
    );
    let path = proxy.work.config_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("name = \"test\"", "name = \"renamed\"");
    std::fs::write(&path, text).unwrap();
    let _ = proxy.running.reloader.reload("test").await;
    assert_eq!(
        get_once(proxy.addr, "gw.test", config, "/2").await.map(|a| a.0),
        Ok(200),
        "the running socket still speaks TLS"
    );
}
