//! Traffic control end to end against upstreams the test controls, failing
//! on a fixed pattern rather than by chance: retries with a budget keep a
//! flaky endpoint invisible to clients, the budget caps retries when every
//! endpoint fails, outlier detection ejects a failing endpoint and lets it
//! back, P2C over peak EWMA starves a slow endpoint, and the circuit
//! breaker answers overflow 503 without contacting the upstream. Every
//! wait polls for its outcome under a generous ceiling.

mod common;

use common::admin::{admin_get, metric_value};
use common::*;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use sluice_test_support::flaky::FlakyUpstream;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const ADMIN: &str = "[admin]\naddress = \"127.0.0.1:0\"\n\n";

/// A cluster `name` over `endpoints`, then `extra` (keys, then sub-tables).
fn cluster(name: &str, endpoints: &[FlakyUpstream], extra: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    format!(
        "[[clusters]]\nname = \"{name}\"\nendpoints = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// A catch-all route to cluster `app`, then `extra` (sub-tables).
fn route(extra: &str) -> String {
    format!("[[routes]]\nname = \"all\"\ncluster = \"app\"\n{extra}")
}

async fn upstreams(names: &[&str]) -> Vec<FlakyUpstream> {
    let mut ups = Vec::new();
    for name in names {
        ups.push(FlakyUpstream::start(name).await);
    }
    ups
}

/// Requests seen by all of `ups` (health checks excluded).
fn total_requests(ups: &[FlakyUpstream]) -> u64 {
    ups.iter().map(FlakyUpstream::requests).sum()
}

/// Retries seen upstream: attempts beyond one per client request.
fn retries(attempts: u64, requests: u64) -> u64 {
    attempts.checked_sub(requests).unwrap_or_else(|| {
        panic!("{attempts} upstream attempts for {requests} requests: some never reached an upstream")
    })
}

/// The admin listener's answer to `GET path`, which must be 200.
async fn admin_text(admin: SocketAddr, path: &str) -> String {
    let (status, text) = admin_get(admin, path).await;
    assert_eq!(status, 200, "admin {path}");
    text
}

/// Poll `/metrics` until `series` (absent counts as 0) satisfies `ok`, for
/// at most 10 s; its last value.
async fn metric_until(admin: SocketAddr, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric_value(&admin_text(admin, "/metrics").await, series).unwrap_or(0.0);
        if ok(value) || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /clusters`' entry for the endpoint at `addr` of `cluster`.
async fn endpoint_state(admin: SocketAddr, cluster: &str, addr: SocketAddr) -> Value {
    let text = admin_text(admin, "/clusters").await;
    let all: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("/clusters is not JSON ({e}): {text}"));
    all["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == cluster))
        .and_then(|c| c["endpoints"].as_array())
        .and_then(|es| es.iter().find(|e| e["address"] == addr.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("no endpoint {addr} of cluster {cluster} in /clusters: {text}"))
}

async fn ejected(admin: SocketAddr, addr: SocketAddr) -> bool {
    let state = endpoint_state(admin, "app", addr).await;
    state["ejected"]
        .as_bool()
        .unwrap_or_else(|| panic!("no boolean `ejected` in {state}"))
}

/// One GET: status and body.
async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let resp = client.get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("response body"))
}

/// `total` GETs of `path` over HTTP/1.1, `concurrency` at a time.
async fn send_many(proxy: &TestProxy, path: &str, total: usize, concurrency: usize) -> Vec<(u16, String)> {
    let client = h1();
    let url = proxy.url(path);
    stream::iter(0..total)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move { get(&client, &url).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_budget_survive_flaky_endpoint() {
    const REQUESTS: usize = 2000;
    let ups = upstreams(&["a", "b", "c"]).await;
    ups[1].set_failure_pattern(3, 10);
    let body = format!(
        "{ADMIN}{}{}",
        cluster("app", &ups, "lb = \"round_robin\"\n"),
        route("[routes.retry]\nretry_on = [\"5xx\"]\nretries = 2\n")
    );
    let proxy = start(&body, &[]).await;
    let admin = proxy.running.admin.expect("admin listener");

    let results = send_many(&proxy, "/", REQUESTS, 16).await;
    let ok = results.iter().filter(|(status, _)| *status == 200).count();
    for (status, body) in &results {
        if *status == 200 {
            assert!(["a", "b", "c"].contains(&body.as_str()), "200 from nowhere: {body:?}");
        }
    }
    let attempts = total_requests(&ups);
    let per_request = attempts as f64 / REQUESTS as f64;
    eprintln!(
        "flaky endpoint: {ok} of {REQUESTS} succeeded, {attempts} attempts ({per_request:.3} per request), {} upstream 503s",
        ups[1].failures()
    );
    assert!(ups[1].failures() > 0, "the flaky endpoint never failed");
    assert!(
        ok as f64 >= 0.995 * REQUESTS as f64,
        "only {ok} of {REQUESTS} succeeded ({} upstream failures, {attempts} attempts)",
        ups[1].failures()
    );
    assert!(
        per_request <= 1.3,
        "{per_request:.3} attempts per request ({attempts} for {REQUESTS})"
    );
    let retries = retries(attempts, REQUESTS as u64);
    assert!(retries > 0, "no request was retried");
    let series = r#"sluice_upstream_retries_total{cluster="app",reason="status"}"#;
    let counted = metric_until(admin, series, |v| v == retries as f64).await;
    assert_eq!(counted, retries as f64, "{series} against retries seen upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_caps_retries() {
    const CLIENTS: usize = 8;
    const RUN_FOR: Duration = Duration::from_millis(2500);
    let ups = upstreams(&["a", "b", "c"]).await;
    for up in &ups {
        up.set_always(503);
    }
    let body = format!(
        "{ADMIN}{}{}",
        cluster(
            "app",
            &ups,
            "[clusters.retry_budget]\nratio = 0.2\nmin_retries_per_second = 10\nwindow = \"10s\"\n"
        ),
        route("[routes.retry]\nretry_on = [\"5xx\"]\nretries = 3\n")
    );
    let proxy = start(&body, &[]).await;
    let admin = proxy.running.admin.expect("admin listener");

    let began = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let client = h1();
            let url = proxy.url("/");
            tokio::spawn(async move {
                let mut sent = 0u64;
                while began.elapsed() < RUN_FOR {
                    let (status, body) = get(&client, &url).await;
                    assert_eq!(status, 503, "every endpoint fails, yet: {body:?}");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut requests = 0u64;
    for client in clients {
        requests += client.await.expect("client task");
    }
    let elapsed = began.elapsed().as_secs_f64();

    let attempts = total_requests(&ups);
    let retries = retries(attempts, requests);
    let cap = 0.2 * requests as f64 + 10.0 * elapsed + 5.0;
    eprintln!(
        "all failing: {requests} requests, {retries} retries in {elapsed:.2} s (budget bound {cap:.1} incl. slack 5)"
    );
    assert!(retries > 0, "the budget allowed no retry at all ({requests} requests)");
    assert!(
        retries as f64 <= cap,
        "{retries} retries for {requests} requests in {elapsed:.2} s; the budget allows {cap:.1}"
    );
    let series = r#"sluice_upstream_retries_total{cluster="app",reason="status"}"#;
    let counted = metric_until(admin, series, |v| v == retries as f64).await;
    assert_eq!(counted, retries as f64, "{series} against retries seen upstream");
    let series = r#"sluice_upstream_retry_budget_exhausted_total{cluster="app"}"#;
    assert!(
        metric_until(admin, series, |v| v > 0.0).await > 0.0,
        "{series} stayed 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_ejection_and_return() {
    let ups = upstreams(&["a", "b", "c"]).await;
    let body = format!(
        "{ADMIN}{}{}",
        cluster(
            "app",
            &ups,
            "[clusters.outlier_detection]\nconsecutive_5xx = 3\nbase_ejection_time = \"2s\"\nmax_ejection_percent = 50\n"
        ),
        route("")
    );
    let proxy = start(&body, &[]).await;
    let admin = proxy.running.admin.expect("admin listener");
    let client = h1();
    let url = proxy.url("/");
    let b = &ups[1];
    assert!(!ejected(admin, b.addr).await, "ejected before any traffic");

    // B starts failing: requests until /clusters shows it ejected.
    b.set_always(503);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ejected(admin, b.addr).await {
        assert!(
            Instant::now() < deadline,
            "B not ejected after {} requests to it, {} failed",
            b.requests(),
            b.failures()
        );
        get(&client, &url).await;
    }
    assert!(b.failures() >= 3, "ejected after only {} failures", b.failures());

    // While ejected, B gets nothing and every request succeeds elsewhere.
    let b_before = b.requests();
    let others_before = ups[0].requests() + ups[2].requests();
    for _ in 0..30 {
        let (status, body) = get(&client, &url).await;
        assert_eq!(status, 200, "while B is ejected: {body:?}");
        assert_ne!(body, "b", "an ejected endpoint answered");
    }
    assert_eq!(b.requests(), b_before, "an ejected endpoint received requests");
    assert_eq!(ups[0].requests() + ups[2].requests(), others_before + 30);

    // B recovers: once the ejection lapses it receives traffic again.
    b.set_healthy();
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.requests() == b_before {
        assert!(Instant::now() < deadline, "B never received traffic again");
        let (status, body) = get(&client, &url).await;
        assert_eq!(status, 200, "after B recovered: {body:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while ejected(admin, b.addr).await {
        assert!(Instant::now() < deadline, "/clusters still shows B ejected");
        get(&client, &url).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let series = r#"sluice_upstream_ejections_total{cluster="app"}"#;
    assert_eq!(metric_until(admin, series, |v| v == 1.0).await, 1.0, "{series}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_avoids_slow_endpoint() {
    const REQUESTS: usize = 600;
    let ups = upstreams(&["fast-a", "slow", "fast-c"]).await;
    ups[1].set_delay(Duration::from_millis(50));
    let body = format!("{}{}", cluster("app", &ups, "lb = \"peak_ewma\"\n"), route(""));
    let proxy = start(&body, &[]).await;

    let results = send_many(&proxy, "/", REQUESTS, 8).await;
    assert!(
        results.iter().all(|(status, _)| *status == 200),
        "not all 200: {:?}",
        results.iter().filter(|(s, _)| *s != 200).take(5).collect::<Vec<_>>()
    );
    assert_eq!(total_requests(&ups), REQUESTS as u64, "requests were repeated");
    let slow = ups[1].requests();
    eprintln!("p2c/ewma: the slow endpoint got {slow} of {REQUESTS}");
    let answered_slow = results.iter().filter(|(_, body)| body == "slow").count() as u64;
    assert_eq!(answered_slow, slow);
    assert!(
        slow * 10 < REQUESTS as u64,
        "the slow endpoint got {slow} of {REQUESTS} (fast ones: {} and {})",
        ups[0].requests(),
        ups[2].requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_overflow_503() {
    let ups = upstreams(&["app"]).await;
    let up = &ups[0];
    let body = format!(
        "{ADMIN}{}{}",
        cluster("app", &ups, "[clusters.circuit_breakers]\nmax_requests = 2\n"),
        route("")
    );
    let proxy = start(&body, &[]).await;
    let admin = proxy.running.admin.expect("admin listener");
    let client = h1();

    // Two requests the upstream holds: the cluster is at its limit.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            let url = proxy.url("/hold");
            tokio::spawn(async move { get(&client, &url).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.held() < 2 {
        assert!(
            Instant::now() < deadline,
            "only {} requests reached the upstream",
            up.held()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(up.requests(), 2);

    // The third overflows: answered by sluice while the two are still held.
    let (status, body) = get(&client, &proxy.url("/third")).await;
    assert_eq!(status, 503, "overflow answered {status}: {body:?}");
    assert!(
        body.starts_with("upstream overloaded") && body.contains("max_requests"),
        "overflow body {body:?}"
    );
    assert_eq!(up.requests(), 2, "the overflowing request reached the upstream");
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "a held request finished before the overflow answer"
    );

    // Released, the held ones complete normally and the breaker closes.
    up.release();
    for h in held {
        let (status, body) = tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .expect("held request completes after release")
            .expect("held request task");
        assert_eq!((status, body.as_str()), (200, "app"));
    }
    assert_eq!(get(&client, &proxy.url("/after")).await, (200, "app".to_string()));
    let series = r#"sluice_upstream_overflow_total{cluster="app",limit="max_requests"}"#;
    assert_eq!(metric_until(admin, series, |v| v == 1.0).await, 1.0, "{series}");
}
