//! Redis killed under a running sluice: each filter's policy applies, the
//! admin listener shows the backend down while `/ready` stays ready, and
//! the limits work again once Redis is back.

use super::*;

/// Routes, each with a rate limit of 2 per hour keyed by route, and what
/// they do while the store is unavailable; and two `probe` routes that
/// count in shared state through the 0.1.0 interface (which traps).
fn routes(up: std::net::SocketAddr) -> String {
    let limited = |name: &str, extra: &str| {
        format!(
            r#"[[routes]]
name = "{name}"
path_prefix = "/{name}"
cluster = "app"
[[routes.filters]]
plugin = "rate-limit"
[routes.filters.config]
key = ["route"]
limits = [{{ name = "hourly", requests = 2, per = "1h" }}]
{extra}
"#
        )
    };
    let probe = |name: &str, policy: &str| {
        format!(
            r#"[[routes]]
name = "{name}"
path_prefix = "/{name}"
cluster = "app"
[[routes.filters]]
plugin = "probe"
on_failure = "{policy}"
config = {{ count_key = "n" }}
"#
        )
    };
    [
        cluster("app", up),
        limited("open", "on_store_unavailable = \"allow\""),
        limited("closed", "on_store_unavailable = \"deny\""),
        limited(
            "local",
            "on_store_unavailable = \"local\"\nlocal_limits = [{ name = \"replica\", requests = 3, per = \"1h\" }]",
        ),
        probe("trap-closed", "fail_closed"),
        probe("trap-open", "fail_open"),
    ]
    .concat()
}

async fn statuses(proxy: &BinaryProxy, path: &str, n: usize) -> Vec<u16> {
    let client = h1();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let resp = client
            .get(format!("http://{}{path}", proxy.addr))
            .send()
            .await
            .expect("request");
        out.push(resp.status().as_u16());
    }
    out
}

async fn status_of(proxy: &BinaryProxy, path: &str) -> u16 {
    statuses(proxy, path, 1).await[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_applies_policy() {
    if !redis::available("redis_outage_applies_policy") {
        return;
    }
    let mut server = RedisServer::start();
    let up = Upstream::start("app").await;
    let body = format!("{}{}", redis_section(&server, "outage:"), routes(up.addr));
    let proxy = start_binary(&body, &[("probe-filter", "probe")]);

    // With Redis: the limit holds.
    assert_eq!(statuses(&proxy, "/closed", 3).await, [200, 200, 429]);
    assert_eq!(statuses(&proxy, "/trap-closed", 1).await, [200]);

    server.stop();
    eventually("a deny route fails closed", || async {
        status_of(&proxy, "/closed").await == 503
    })
    .await;
    let resp = h1().get(format!("http://{}/closed", proxy.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.text().await.unwrap(), "rate limit store unavailable\n");
    // Allow lets everything through, past the limit.
    assert_eq!(statuses(&proxy, "/open", 4).await, [200; 4]);
    // Local: this replica's own limit of 3 per hour.
    assert_eq!(statuses(&proxy, "/local", 5).await, [200, 200, 200, 429, 429]);
    // The 0.1.0 interface traps: the entry's on_failure decides.
    assert_eq!(statuses(&proxy, "/trap-closed", 2).await, [500, 500]);
    assert_eq!(statuses(&proxy, "/trap-open", 2).await, [200, 200]);
    // Still ready; the admin listener says what is wrong.
    let admin = proxy.admin.expect("admin");
    let ready = h1().get(format!("http://{admin}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let state: Value = serde_json::from_str(&admin_text(&proxy, "/shared-state").await).unwrap();
    assert_eq!(state["state"], "down", "{state}");
    assert!(state["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{state}");
    let metrics = admin_text(&proxy, "/metrics").await;
    assert_eq!(metric_value(&metrics, "sluice_shared_state_backend_up"), Some(0.0));
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_shared_state_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(errors >= 10.0, "{errors} errors counted:\n{metrics}");

    // Redis is back (empty: no persistence): limits work again.
    server.restart();
    eventually("the deny route is served again", || async {
        status_of(&proxy, "/closed").await == 200
    })
    .await;
    assert_eq!(statuses(&proxy, "/closed", 2).await, [200, 429]);
    assert_eq!(statuses(&proxy, "/open", 3).await, [200, 200, 429]);
    let state: Value = serde_json::from_str(&admin_text(&proxy, "/shared-state").await).unwrap();
    assert_eq!(state["state"], "up", "{state}");
    assert_eq!(
        metric_value(&admin_text(&proxy, "/metrics").await, "sluice_shared_state_backend_up"),
        Some(1.0)
    );
}
