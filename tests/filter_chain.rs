//! Filter chains through the real proxy: components loaded from a plugins
//! directory, configured per route, changing requests and responses,
//! answering locally, passing context along, choosing clusters, and a
//! trapping filter failing only its own request.

mod common;

use common::*;
use serde_json::Value;

const PROBE: (&str, &str) = ("probe-filter", "probe");

fn cluster(name: &str, addr: std::net::SocketAddr) -> String {
    format!("[[clusters]]\nname = \"{name}\"\nendpoints = [\"{addr}\"]\n\n")
}

/// Three filters: a probe that writes context and a header, the built-in
/// header-rewrite, and a probe that reads the first one's context value.
#[tokio::test]
async fn filter_chain_end_to_end() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[[routes]]
name = "chain"
cluster = "app"

[[routes.filters]]
plugin = "probe"
config = {{ set_context = {{ user = "alice" }}, request_headers = {{ "x-first" = "1" }}, tag = "first" }}

[[routes.filters]]
plugin = "header-rewrite"
config.request = {{ set = {{ "x-second" = "2" }}, remove = ["x-remove-me"] }}
config.response = {{ set = {{ "x-served-by" = "sluice" }} }}

[[routes.filters]]
plugin = "probe"
config = {{ context_to_header = {{ user = "x-user" }}, tag = "third" }}
"#,
        cluster("app", up.addr)
    );
    let proxy = start(&body, &[PROBE]).await;
    for (client, version) in [(h1(), reqwest::Version::HTTP_11), (h2(), reqwest::Version::HTTP_2)] {
        let resp = client
            .get(proxy.url("/hello?a=b"))
            .header("x-remove-me", "x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), version);
        assert_eq!(resp.headers()["x-served-by"], "sluice");
        // Response phases run in reverse chain order.
        let tags: Vec<_> = resp
            .headers()
            .get_all("x-probe-tag")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(tags, ["third", "first"]);
        let echo: Value = resp.json().await.unwrap();
        assert_eq!(echo["path"], "/hello?a=b");
        assert_eq!(echoed(&echo, "x-first"), ["1"]);
        assert_eq!(echoed(&echo, "x-second"), ["2"]);
        assert_eq!(
            echoed(&echo, "x-user"),
            ["alice"],
            "context from filter 1 reached filter 3"
        );
        assert!(echoed(&echo, "x-remove-me").is_empty());
    }
}

#[tokio::test]
async fn filter_short_circuits_with_403_and_earlier_filters_see_it() {
    // The cluster is unreachable: a forwarded request would get 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let body = format!(
        r#"{}
[[routes]]
cluster = "dead"

[[routes.filters]]
plugin = "header-rewrite"
config.response = {{ set = {{ "x-seen-by-rewrite" = "yes" }} }}

[[routes.filters]]
plugin = "probe"
config.respond = {{ status = 403, body = "forbidden by probe\n", headers = {{ "x-denied" = "1", "content-length" = "999" }} }}

[[routes.filters]]
plugin = "probe"
config = {{ tag = "never-runs" }}
"#,
        cluster("dead", dead)
    );
    let proxy = start(&body, &[PROBE]).await;
    for client in [h1(), h2()] {
        let resp = client.get(proxy.url("/secret")).send().await.unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.headers()["x-denied"], "1");
        assert_eq!(resp.headers()["x-seen-by-rewrite"], "yes");
        assert!(
            resp.headers().get("x-probe-tag").is_none(),
            "filter after the local response ran"
        );
        assert_eq!(
            resp.text().await.unwrap(),
            "forbidden by probe\n",
            "filter's bogus content-length must not be used"
        );
    }
}

#[tokio::test]
async fn each_route_gets_its_own_filter_config() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[[routes]]
name = "red"
path_prefix = "/red"
cluster = "app"
[[routes.filters]]
plugin = "probe"
config = {{ tag = "red" }}

[[routes]]
name = "blue"
path_prefix = "/blue"
cluster = "app"
[[routes.filters]]
plugin = "probe"
config = {{ tag = "blue" }}
"#,
        cluster("app", up.addr)
    );
    let proxy = start(&body, &[PROBE]).await;
    let client = h1();
    for _ in 0..3 {
        for tag in ["red", "blue"] {
            let resp = client.get(proxy.url(&format!("/{tag}"))).send().await.unwrap();
            assert_eq!(resp.headers()["x-probe-tag"], tag);
        }
    }
}

#[tokio::test]
async fn filter_chooses_the_cluster() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let body = format!(
        r#"{}{}
[[routes]]
cluster = "a"
[[routes.filters]]
plugin = "probe"
clusters = ["b"]
config = {{ cluster = "b" }}
"#,
        cluster("a", a.addr),
        cluster("b", b.addr)
    );
    let proxy = start(&body, &[PROBE]).await;
    let resp = h2().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.headers()["x-upstream"], "b");
}

/// A filter may send requests only to its route's cluster and the ones its
/// entry lists: `set-cluster` to any other is refused with `unknown-cluster`
/// (the probe answers 500 naming the error), and `/metrics` has request
/// series for exactly the clusters each route can reach.
#[tokio::test]
async fn filter_may_choose_only_listed_clusters() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let c = Upstream::start("c").await;
    let body = format!(
        r#"{}{}{}
[[routes]]
name = "listed"
path_prefix = "/listed"
cluster = "a"
[[routes.filters]]
plugin = "probe"
clusters = ["b"]
config = {{ cluster = "b" }}

[[routes]]
name = "unlisted"
cluster = "a"
[[routes.filters]]
plugin = "probe"
clusters = ["b"]
config = {{ cluster = "c" }}
"#,
        cluster("a", a.addr),
        cluster("b", b.addr),
        cluster("c", c.addr)
    );
    let proxy = start(&body, &[PROBE]).await;
    let resp = h1().get(proxy.url("/listed")).send().await.unwrap();
    assert_eq!(resp.headers()["x-upstream"], "b");
    let resp = h1().get(proxy.url("/other")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.text().await.unwrap(), "set_cluster c: unknown cluster");
    let metrics = proxy.running.metrics.encode();
    for route in ["listed", "unlisted"] {
        for (cluster, present) in [("a", true), ("b", true), ("c", false)] {
            let series = format!(r#"sluice_requests_total{{route="{route}",cluster="{cluster}",status="2xx"}}"#);
            assert_eq!(metrics.contains(&series), present, "{series}:\n{metrics}");
        }
    }
}

#[tokio::test]
async fn trapping_filter_fails_its_request_and_its_instance_is_replaced() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[[routes]]
cluster = "app"
[[routes.filters]]
plugin = "probe"
config = {{ panic_on_path = "/boom", count_key = "requests" }}
"#,
        cluster("app", up.addr)
    );
    let proxy = start(&body, &[PROBE]).await;
    let client = h1();
    let resp = client.get(proxy.url("/ok")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client.get(proxy.url("/boom")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.text().await.unwrap(), "filter failed\n");
    // The next request runs on a fresh instance; shared state outlives it
    // (the trapping request panicked before counting).
    let resp = client.get(proxy.url("/ok")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-probe-count"), ["2"]);
}

/// 100 concurrent requests on four worker threads through a filter whose
/// calls take 2 ms, with `max_instances = 2`: every request succeeds and is
/// counted once, calls overlapped (a second instance was needed) and the
/// pool never grew past its bound (no third instance was ever created).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_a_bounded_pool() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[[routes]]
cluster = "app"
[[routes.filters]]
plugin = "probe"
max_instances = 2
pool_wait = "30s"
deadline = "1s"
config = {{ count_key = "n", tag = "t", spin_ms = 2 }}
"#,
        cluster("app", up.addr)
    );
    let proxy = start(&body, &[PROBE]).await;
    let client = h2();
    let requests = (0..100).map(|_| {
        let client = client.clone();
        let url = proxy.url("/");
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
    });
    for r in futures_util::future::join_all(requests).await {
        assert_eq!(r.unwrap().unwrap(), 200);
    }
    // Every request was counted exactly once by an atomic increment.
    let resp = client.get(proxy.url("/")).send().await.unwrap();
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-probe-count"), ["101"]);
    let metrics = proxy.running.metrics.encode();
    let created = metric_value(&metrics, r#"sluice_filter_instances_created_total{plugin="probe"}"#);
    assert_eq!(
        created, 2.0,
        "instances created (bound 2, calls overlapping):\n{metrics}"
    );
}

/// The value of the series `name{labels}` in Prometheus text.
fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// The example custom filter from `examples/custom-filter`, end to end.
#[tokio::test]
async fn example_maintenance_filter() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[[routes]]
cluster = "app"
[[routes.filters]]
plugin = "maintenance"
config = {{ retry_after_secs = 30, message = "back soon\n", bypass_header = "x-ops" }}
"#,
        cluster("app", up.addr)
    );
    let proxy = start(&body, &[("maintenance", "maintenance")]).await;
    let resp = h1().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "30");
    assert_eq!(resp.text().await.unwrap(), "back soon\n");
    let resp = h2().get(proxy.url("/")).header("x-ops", "1").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "app");
}
