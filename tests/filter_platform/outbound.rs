//! Outbound HTTP calls from filters end to end: the `ext-authz` example
//! asks an authorization service (a small HTTP server here) through a
//! cluster its entry lists, and allows or denies on the answer.

use crate::common::admin::{admin_get, metric_value};
use crate::common::service::{Service, reply};
use crate::common::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long the service thinks about `Bearer slow`.
const SLOW: Duration = Duration::from_secs(3);

fn config(upstream: std::net::SocketAddr, authz: std::net::SocketAddr) -> String {
    format!(
        r#"[admin]
address = "127.0.0.1:0"

[[clusters]]
name = "app"
endpoints = ["{upstream}"]

[[clusters]]
name = "authz"
endpoints = ["{authz}"]

[[routes]]
name = "guarded"
path_prefix = "/guarded"
cluster = "app"
[[routes.filters]]
plugin = "ext-authz"
clusters = ["authz"]
config = {{ cluster = "authz", timeout_ms = 300 }}

[[routes]]
name = "unlisted"
path_prefix = "/unlisted"
cluster = "app"
[[routes.filters]]
plugin = "ext-authz"
config = {{ cluster = "authz" }}

[[routes]]
name = "lenient"
path_prefix = "/lenient"
cluster = "app"
[[routes.filters]]
plugin = "ext-authz"
clusters = ["authz"]
wait_limit = "200ms"
config = {{ cluster = "authz", timeout_ms = 1000, failure_mode_allow = true }}
"#
    )
}

/// The authorization service admits `Bearer good` as `ann`, thinks for 3 s
/// about `Bearer slow`, and refuses anything else with 403.
async fn authz_service(slow_done: Arc<AtomicBool>) -> Service {
    Service::start("127.0.0.1:0".parse().unwrap(), move |(head, _)| {
        let slow_done = slow_done.clone();
        async move {
            let auth = head
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or("").to_string());
            match auth.as_deref() {
                Some("Bearer good") => reply(200, &[("x-auth-user", "ann")], ""),
                Some("Bearer slow") => {
                    tokio::time::sleep(SLOW).await;
                    slow_done.store(true, Ordering::SeqCst);
                    reply(200, &[("x-auth-user", "late")], "")
                }
                _ => reply(403, &[("content-type", "text/plain")], "nope\n"),
            }
        }
    })
    .await
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let resp = client.get(url).bearer_auth(token).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A filter may call only the clusters its entry lists, and a call waits
/// without blocking: the service's answer allows (200, the service's
/// `x-auth-user` reaches the upstream) or denies (its 403 and body, the
/// upstream never asked); a call to a cluster the entry does not list is
/// refused before anything is sent (503, the service never sees it,
/// counted `not_allowed`); a call that outlives its timeout ends while the
/// service is still thinking (503, counted `timeout`), or, under
/// `failure_mode_allow`, lets the request through once the entry's
/// `wait_limit` is spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_outbound_call_allow_list() {
    let up = Upstream::start("app").await;
    let slow_done = Arc::new(AtomicBool::new(false));
    let service = authz_service(slow_done.clone()).await;
    let proxy = start_binary(&config(up.addr, service.addr), &[("ext-authz", "ext-authz")]);
    let admin = proxy.admin.expect("admin listener");
    let client = h1();
    let url = |path: &str| format!("http://{}{path}", proxy.addr);

    // Allowed: the upstream sees the service's verdict header.
    let (code, text) = get(&client, &url("/guarded/orders?id=7"), "good").await;
    assert_eq!(code, 200, "{text}");
    let echo: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(echoed(&echo, "x-auth-user"), ["ann"]);
    let seen = service.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0.method, "POST");
    assert_eq!(seen[0].0.headers["x-ext-authz-path"], "/guarded/orders?id=7");
    assert_eq!(seen[0].0.headers["authorization"], "Bearer good");

    // Denied: the service's status and body; the upstream is not asked.
    let (code, text) = get(&client, &url("/guarded/orders"), "bad").await;
    assert_eq!((code, text.as_str()), (403, "nope\n"));

    // Not on the allow list: refused before sending.
    let before = service.requests();
    let (code, text) = get(&client, &url("/unlisted/x"), "good").await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("authorization service unavailable"), "{text}");
    assert_eq!(service.requests(), before, "a call to an unlisted cluster was sent");

    // Timeout: answered while the service is still thinking.
    let (code, _) = get(&client, &url("/guarded/slow"), "slow").await;
    assert_eq!(code, 503);
    assert!(
        !slow_done.load(Ordering::SeqCst),
        "the proxy waited for the slow service"
    );
    // failure_mode_allow: the wait_limit (200 ms) cuts the 1 s timeout.
    let (code, text) = get(&client, &url("/lenient/slow"), "slow").await;
    assert_eq!(code, 200, "{text}");
    assert!(!slow_done.load(Ordering::SeqCst), "the wait_limit did not cut the call");

    // Metrics per plugin, cluster and outcome.
    let (_, metrics) = admin_get(admin, "/metrics").await;
    let calls = |cluster: &str, outcome: &str| {
        metric_value(
            &metrics,
            &format!(
                "sluice_filter_outbound_calls_total{{plugin=\"ext-authz\",cluster=\"{cluster}\",outcome=\"{outcome}\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(calls("authz", "ok"), 2.0, "{metrics}");
    assert_eq!(calls("", "not_allowed"), 1.0);
    assert_eq!(calls("authz", "timeout"), 2.0);
    assert!(
        metric_value(
            &metrics,
            "sluice_filter_outbound_call_duration_seconds_count{plugin=\"ext-authz\",cluster=\"authz\"}"
        )
        .is_some_and(|n| n >= 4.0),
        "no call durations"
    );
}
