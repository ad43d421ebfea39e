//! The built-in `authz` filter over mutual TLS: allow rules by SPIFFE ID,
//! deny rules first, default deny when allow rules exist, 403 with a short
//! body, and the deciding rule's name in the log.

mod common;

use common::tls::*;
use common::*;
use std::time::{Duration, Instant};

const WEB: &str = "spiffe://example.org/ns/shop/sa/web";
const BATCH: &str = "spiffe://example.org/ns/batch/sa/report";

#[tokio::test]
async fn authz_allows_and_denies_by_identity() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let ca = Ca::new("mesh CA");
    let (cert, key) = ca.issue(&Leaf::server("gateway", &["gw.test"])).write(dir, "server");
    // A key others can read still loads, with a warning.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let web = ca.issue(&Leaf::spiffe("web", WEB));
    let batch = ca.issue(&Leaf::spiffe("batch", BATCH));
    let up = Upstream::start("app").await;
    let body = format!(
        r#"[listeners.tls]
cert = "{cert}"
key = "{key}"
client_auth = "optional"
client_ca = "{ca}"

[admin]
address = "127.0.0.1:0"

[[clusters]]
name = "app"
endpoints = ["{up}"]

[[routes]]
name = "api"
path_prefix = "/api"
cluster = "app"

[[routes.filters]]
plugin = "authz"

[[routes.filters.config.rules]]
name = "no-admin-from-shop"
action = "deny"
[routes.filters.config.rules.when]
principals = ["spiffe://example.org/ns/shop/*"]
paths = ["/api/admin", "/api/admin/*"]

[[routes.filters.config.rules]]
name = "web-reads"
action = "allow"
[routes.filters.config.rules.when]
principals = ["{WEB}"]
methods = ["GET"]
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.write(dir).display(),
        up = up.addr,
    );
    let proxy = start_binary(&body, &[]);
    let as_web = client_config(&ca, Some(&web), &["h2"], false);
    let as_batch = client_config(&ca, Some(&batch), &["h2"], false);
    let anonymous = client_config(&ca, None, &["h2"], false);

    // The allowed identity reaches the upstream.
    let (status, _, text) = get_once(proxy.addr, "gw.test", as_web.clone(), "/api/orders")
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"upstream\":\"app\""), "{text}");

    // Another verified identity, and no certificate at all: no allow rule
    // matches, so 403.
    for (who, config) in [("batch", as_batch), ("anonymous", anonymous)] {
        let (status, _, text) = get_once(proxy.addr, "gw.test", config, "/api/orders").await.unwrap();
        assert_eq!((status, text.as_str()), (403, "RBAC: access denied\n"), "{who}");
    }
    // A deny rule wins over the allow rule that also matches.
    let (status, _, _) = get_once(proxy.addr, "gw.test", as_web, "/api/admin/users")
        .await
        .unwrap();
    assert_eq!(status, 403);

    // The log names the rule that denied, or says none allowed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.log_lines_with("denied by rule \"no-admin-from-shop\"").is_empty()
        || proxy.log_lines_with("no allow rule matched").len() < 2
    {
        assert!(
            Instant::now() < deadline,
            "log lines missing: {:?}",
            proxy.log_lines_with("denied")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = &proxy.log_lines_with("denied by rule")[0];
    assert!(line.contains("plugin=authz") || line.contains("authz"), "{line}");
    assert!(line.contains("/api/admin/users"), "{line}");

    let warning = proxy.log_lines_with("readable by other users");
    assert!(warning.iter().any(|l| l.contains("server-key.pem")), "{warning:?}");
    // /config shows the TLS settings, never key material.
    let admin = proxy.admin.expect("admin listener");
    let config = h1()
        .get(format!("http://{admin}/config"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(config.contains("\"client_auth\":\"optional\""), "{config}");
    assert!(config.contains("CN=gateway"), "{config}");
    assert!(!config.contains("PRIVATE KEY") && !config.contains("BEGIN"), "{config}");
}
