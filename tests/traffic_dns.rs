//! Endpoints by DNS name: a cluster whose endpoint is a name follows the
//! name's addresses as they change (a DNS server on loopback inside the
//! test, upstreams on 127.0.0.2 and 127.0.0.3), and keeps its last good set
//! when the name stops resolving.

mod common;

use common::admin::admin_get;
use common::dns::DnsServer;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const NAME: &str = "orders.test.";
const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const CEILING: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// Upstreams "a" on 127.0.0.2 and "b" on 127.0.0.3, on the same port.
async fn upstream_pair() -> (Upstream, Upstream) {
    for _ in 0..20 {
        let a = Upstream::start_on("a", SocketAddr::from((A, 0)))
            .await
            .expect("bind 127.0.0.2");
        if let Ok(b) = Upstream::start_on("b", SocketAddr::from((B, a.addr.port()))).await {
            return (a, b);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// Which upstream answered a GET, or why the request failed.
async fn who(proxy: &TestProxy) -> Result<String, String> {
    let resp = h1().get(proxy.url("/")).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    let echo: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    echo["upstream"].as_str().map(str::to_string).ok_or(text)
}

/// Whether `metrics` has the series `name` with every one of `labels`
/// (whatever their order) and a value of at least 1.
fn counted(metrics: &str, name: &str, labels: &[&str]) -> bool {
    metrics.lines().any(|l| {
        let Some(rest) = l.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            return false;
        };
        let Some((series, value)) = rest.rsplit_once("} ") else {
            return false;
        };
        labels.iter().all(|label| series.split(',').any(|s| s == *label))
            && value.trim().parse::<f64>().is_ok_and(|v| v >= 1.0)
    })
}

/// Poll `check` every 100 ms until it holds, failing after 20 s with
/// `what` and the last value seen.
async fn eventually<T: std::fmt::Debug, F: std::future::Future<Output = (bool, T)>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + CEILING;
    loop {
        let (done, last) = check().await;
        if done {
            return last;
        }
        assert!(Instant::now() < deadline, "{what} within {CEILING:?}; last: {last:?}");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn dns_endpoints_follow_changes() {
    let (a, b) = upstream_pair().await;
    let port = a.addr.port();
    assert_eq!(b.addr.port(), port);
    let dns = DnsServer::start(1).await;
    dns.set(NAME, vec![A]);
    let body = format!(
        r#"[dns]
resolver = "{dns}"
min_refresh = "200ms"
retry_interval = "200ms"

[admin]
address = "127.0.0.1:0"

[[clusters]]
name = "orders"
endpoints = ["orders.test:{port}"]

[[routes]]
cluster = "orders"
"#,
        dns = dns.addr(),
    );
    let proxy = start(&body, &[]).await;
    let admin = proxy.running.admin.expect("admin address");
    let proxy = &proxy;

    // Resolved at start: only 127.0.0.2 is an endpoint.
    for _ in 0..10 {
        assert_eq!(who(proxy).await, Ok("a".to_string()));
    }

    // The name gains an address: "b" starts receiving traffic.
    dns.set(NAME, vec![A, B]);
    let first_b = eventually("a response from the added address", || async move {
        let answer = who(proxy).await;
        (answer.as_deref() == Ok("b"), answer)
    })
    .await;
    assert_eq!(first_b, Ok("b".to_string()));
    // Both addresses are endpoints now.
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        seen.insert(who(proxy).await.expect("request with both endpoints"));
    }
    assert_eq!(seen, BTreeSet::from(["a".to_string(), "b".to_string()]));

    // The name stops resolving (NXDOMAIN): the failure is reported...
    let queries_before = dns.queries();
    dns.remove(NAME);
    let metrics = eventually("a failed resolution in /metrics", || async move {
        let (status, m) = admin_get(admin, "/metrics").await;
        let failed = status == 200
            && counted(
                &m,
                "sluice_dns_resolutions_total",
                &[r#"cluster="orders""#, r#"result="error""#],
            );
        (failed, m)
    })
    .await;
    assert!(
        counted(
            &metrics,
            "sluice_dns_resolutions_total",
            &[r#"cluster="orders""#, r#"result="ok""#]
        ),
        "{metrics}"
    );
    assert!(dns.queries() > queries_before, "the resolver asked again");
    let clusters = eventually("the DNS error in /clusters", || async move {
        let (status, text) = admin_get(admin, "/clusters").await;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let orders = json["clusters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "orders"))
            .cloned()
            .unwrap_or(Value::Null);
        let reported = status == 200 && orders["dns"][0]["last_error"].is_string();
        (reported, orders)
    })
    .await;
    assert_eq!(clusters["dns"][0]["host"], "orders.test", "{clusters}");

    // ...and the last good set is kept: both upstreams still answer.
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        seen.insert(who(proxy).await.expect("request after the name stopped resolving"));
    }
    assert_eq!(seen, BTreeSet::from(["a".to_string(), "b".to_string()]));
    let addresses: BTreeSet<String> = clusters["endpoints"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| e["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        addresses,
        BTreeSet::from([format!("{A}:{port}"), format!("{B}:{port}")]),
        "{clusters}"
    );
}
