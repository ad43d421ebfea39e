//! Shared state in a real `redis-server` (started here on a free port):
//! the backend keeps the WIT contract (values, counters, compare-and-swap,
//! TTLs, quotas, rate decisions) and each plugin's keys apart; two sluice
//! processes share one rate limit exactly, with one round trip per
//! decision; and when Redis goes away each filter's policy applies, sluice
//! stays ready, and limits hold again once Redis is back.

mod common;

use common::admin::metric_value;
use common::redis::{self, RedisServer};
use common::*;
use futures_util::future::join_all;
use serde_json::Value;
use sluice::metrics::Metrics;
use sluice::shared_state::{Bucket, Quota, Quotas, RedisSettings, SharedError, SharedState};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(2);
const HOUR_NS: u64 = 3_600_000_000_000;

fn settings(redis: &RedisServer, prefix: &str) -> RedisSettings {
    RedisSettings {
        url: redis.url(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(1),
        key_prefix: prefix.into(),
    }
}

/// Poll `check` every 50 ms until it is true, for at most 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bucket(key: &str, burst: u64) -> Bucket {
    Bucket {
        key: key.into(),
        interval_ns: HOUR_NS,
        tolerance_ns: burst * HOUR_NS,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_keeps_the_contract() {
    if !redis::available("redis_backend_keeps_the_contract") {
        return;
    }
    let mut server = RedisServer::start();
    let store = SharedState::new(Arc::new(Metrics::default()));
    store.use_redis(settings(&server, "t:")).unwrap();
    let mut quotas = Quotas::default();
    quotas.plugins.insert(
        "small".into(),
        Quota {
            max_entries: 2,
            max_bytes: 1000,
        },
    );
    store.configure(&quotas);
    let (a, b, small): (Arc<str>, Arc<str>, Arc<str>) = ("alpha".into(), "beta".into(), "small".into());

    // Values, and each plugin's own.
    store.set(&a, b"k", b"v1".to_vec(), None, WAIT).await.unwrap();
    assert_eq!(store.get(&a, b"k", WAIT).await.unwrap(), Some(b"v1".to_vec()));
    assert_eq!(store.get(&b, b"k", WAIT).await.unwrap(), None);
    assert!(!store.delete(&b, b"k", WAIT).await.unwrap());
    // Counters: 8-byte little-endian, wrapping like an i64.
    assert_eq!(store.increment(&a, b"n", 5, None, WAIT).await.unwrap(), 5);
    assert_eq!(store.increment(&a, b"n", -7, None, WAIT).await.unwrap(), -2);
    let stored = store.get(&a, b"n", WAIT).await.unwrap();
    assert_eq!(stored, Some((-2i64).to_le_bytes().to_vec()));
    let max = i64::MAX.to_le_bytes().to_vec();
    store.set(&a, b"w", max, None, WAIT).await.unwrap();
    assert_eq!(store.increment(&a, b"w", 1, None, WAIT).await.unwrap(), i64::MIN);
    let delta = -(1i64 << 40) - 3;
    assert_eq!(store.increment(&a, b"big", delta, None, WAIT).await.unwrap(), delta);
    assert_eq!(
        store.increment(&a, b"big", 1 << 41, None, WAIT).await.unwrap(),
        delta + (1 << 41)
    );
    assert_eq!(
        store.increment(&a, b"k", 1, None, WAIT).await,
        Err(SharedError::NotACounter)
    );
    // Compare-and-swap, absence included.
    assert!(
        store
            .compare_and_swap(&a, b"c", None, b"x".to_vec(), None, WAIT)
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap(&a, b"c", None, b"y".to_vec(), None, WAIT)
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap(&a, b"c", Some(b"z"), b"y".to_vec(), None, WAIT)
            .await
            .unwrap()
    );
    assert!(
        store
            .compare_and_swap(&a, b"c", Some(b"x"), b"y".to_vec(), None, WAIT)
            .await
            .unwrap()
    );
    assert_eq!(store.get(&a, b"c", WAIT).await.unwrap(), Some(b"y".to_vec()));
    assert!(store.delete(&a, b"c", WAIT).await.unwrap());
    assert!(!store.delete(&a, b"c", WAIT).await.unwrap());
    // A TTL is a Redis expiry; 0 is gone at once.
    store.set(&a, b"t", b"v".to_vec(), Some(60_000), WAIT).await.unwrap();
    let ttl = server.cli(&["PTTL", "t:{alpha}:d:t"]).unwrap();
    assert!((1..=60_000).contains(&ttl.parse::<i64>().unwrap()), "PTTL {ttl}");
    store.set(&a, b"u", b"v".to_vec(), Some(100), WAIT).await.unwrap();
    eventually("the TTL'd value expires", || async {
        store.get(&a, b"u", WAIT).await.unwrap().is_none()
    })
    .await;
    store.set(&a, b"t", b"v".to_vec(), Some(0), WAIT).await.unwrap();
    assert_eq!(store.get(&a, b"t", WAIT).await.unwrap(), None);

    // The quota, enforced in Redis; expired entries are reclaimed for a write.
    store.set(&small, b"a", b"1".to_vec(), Some(1500), WAIT).await.unwrap();
    store.set(&small, b"b", b"1".to_vec(), None, WAIT).await.unwrap();
    assert_eq!(
        store.set(&small, b"c", b"1".to_vec(), None, WAIT).await,
        Err(SharedError::QuotaExceeded)
    );
    store.set(&small, b"b", b"2".to_vec(), None, WAIT).await.unwrap();
    assert_eq!(
        store.set(&small, b"big", vec![0; 2000], None, WAIT).await,
        Err(SharedError::QuotaExceeded),
        "bytes"
    );
    eventually("a write fits once the TTL'd entry expired", || async {
        store.set(&small, b"c", b"1".to_vec(), None, WAIT).await.is_ok()
    })
    .await;
    assert_eq!(server.cli(&["ZCARD", "t:{small}:i"]).as_deref(), Some("2"));
    assert_eq!(
        server.cli(&["GET", "t:{small}:b"]).as_deref(),
        Some("4"),
        "b=2 and c=1, key + value"
    );

    // Rate decisions: all or nothing, a read with cost 0, exact under
    // concurrency from two stores (two replicas) on one Redis.
    let two = [bucket("wide", 10), bucket("narrow", 1)];
    let first = store.acquire(&a, &two, 1, WAIT).await.unwrap();
    assert!(first.allowed);
    let second = store.acquire(&a, &two, 1, WAIT).await.unwrap();
    assert!(!second.allowed);
    let read = store.acquire(&a, &two[..1], 0, WAIT).await.unwrap();
    let left = (10 * HOUR_NS - (read.tats[0] - read.now_ns)) / HOUR_NS;
    assert_eq!(left, 9, "the denied decision took nothing from `wide`");
    let replica = Arc::new(SharedState::new(Arc::new(Metrics::default())));
    replica.use_redis(settings(&server, "t:")).unwrap();
    let store = Arc::new(store);
    let burst = [bucket("burst", 25)];
    let tries = (0..200).map(|i| {
        let s = if i % 2 == 0 { store.clone() } else { replica.clone() };
        let (a, burst) = (a.clone(), burst.clone());
        tokio::spawn(async move { s.acquire(&a, &burst, 1, WAIT).await.unwrap().allowed })
    });
    let allowed = join_all(tries)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(allowed, 25);
    assert!(server.keys().contains(&"t:{alpha}:r:burst".to_string()));

    // Redis frozen (a host that stops answering): calls time out, and
    // after a few timeouts in a row on each connection the backend is
    // taken for down, so calls fail at once instead of waiting.
    server.freeze(true);
    let short = Duration::from_millis(200);
    let mut errors = Vec::new();
    for _ in 0..8 {
        match store.get(&a, b"k", short).await {
            Err(SharedError::Unavailable(why)) => errors.push(why),
            other => panic!("a frozen redis answered {other:?}"),
        }
    }
    assert!(errors[0].contains("no answer within"), "{errors:?}");
    assert!(errors[7].contains("is down"), "{errors:?}");
    assert_eq!(store.status()["state"], "down");
    server.freeze(false);
    eventually("the store reconnects after the freeze", || async {
        store.get(&a, b"k", WAIT).await.is_ok()
    })
    .await;

    // Redis gone: calls say so quickly; back: calls work again.
    server.stop();
    let started = Instant::now();
    let down = store.get(&a, b"k", WAIT).await;
    assert!(matches!(down, Err(SharedError::Unavailable(_))), "{down:?}");
    assert!(started.elapsed() < WAIT, "bounded by the command timeout");
    assert_eq!(store.status()["state"], "down");
    server.restart();
    eventually("the store reconnects", || async {
        store.set(&a, b"k", b"v2".to_vec(), None, WAIT).await.is_ok()
    })
    .await;
    assert_eq!(store.status()["state"], "up");
}

/// The config of a sluice whose shared state is in `redis`.
fn redis_section(redis: &RedisServer, prefix: &str) -> String {
    format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n\n[shared_state]\nbackend = \"redis\"\n[shared_state.redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\ncommand_timeout = \"2s\"\n\n",
        redis.url()
    )
}

fn cluster(name: &str, addr: std::net::SocketAddr) -> String {
    format!("[[clusters]]\nname = \"{name}\"\nendpoints = [\"{addr}\"]\n\n")
}

/// The body of `GET <path>` on `proxy`'s admin listener.
async fn admin_text(proxy: &BinaryProxy, path: &str) -> String {
    common::admin::admin_get(proxy.admin.expect("admin listener"), path)
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_replicas_share_one_limit() {
    if !redis::available("redis_two_replicas_share_one_limit") {
        return;
    }
    const LIMIT: usize = 25;
    const REQUESTS: usize = 300;
    let server = RedisServer::start();
    let up = Upstream::start("app").await;
    // A window far longer than the test: no token comes back meanwhile.
    let body = format!(
        r#"{}{}[[routes]]
name = "limited"
cluster = "app"
[[routes.filters]]
plugin = "rate-limit"
[routes.filters.config]
key = ["route"]
limits = [{{ name = "fleet", requests = {LIMIT}, per = "1h" }}]
on_store_unavailable = "deny"
"#,
        redis_section(&server, "fleet:"),
        cluster("app", up.addr)
    );
    let replicas = [start_binary(&body, &[]), start_binary(&body, &[])];
    for proxy in &replicas {
        eventually("the replica is connected to redis", || async {
            let state: Value = serde_json::from_str(&admin_text(proxy, "/shared-state").await).unwrap();
            state["state"] == "up"
        })
        .await;
    }
    let scripts_before = server.calls("evalsha");
    let clients: Vec<reqwest::Client> = (0..16).map(|_| h1()).chain((0..2).map(|_| h2())).collect();
    let sends = (0..REQUESTS).map(|i| {
        let url = format!("http://{}/x", replicas[i % 2].addr);
        clients[i % clients.len()].get(url).send()
    });
    let mut statuses = [0usize; 2];
    for resp in join_all(sends).await {
        match resp.expect("request").status().as_u16() {
            200 => statuses[0] += 1,
            429 => statuses[1] += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        statuses,
        [LIMIT, REQUESTS - LIMIT],
        "[allowed, denied] across both replicas"
    );
    // One round trip per decision: Redis ran one script per request, and
    // each replica made one `acquire` call per request it served.
    assert_eq!(server.calls("evalsha") - scripts_before, REQUESTS as u64);
    assert_eq!(server.calls("eval"), 0);
    for proxy in &replicas {
        let metrics = admin_text(proxy, "/metrics").await;
        let round_trips = metric_value(
            &metrics,
            r#"sluice_shared_state_operation_duration_seconds_count{operation="acquire"}"#,
        );
        assert_eq!(round_trips, Some((REQUESTS / 2) as f64), "{metrics}");
        let state: Value = serde_json::from_str(&admin_text(proxy, "/shared-state").await).unwrap();
        assert_eq!(
            (state["backend"].as_str(), state["state"].as_str()),
            (Some("redis"), Some("up"))
        );
    }
    assert!(
        server.keys().iter().any(|k| k.starts_with("fleet:{rate-limit}:r:")),
        "{:?}",
        server.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_plugin_keys_are_isolated() {
    if !redis::available("redis_plugin_keys_are_isolated") {
        return;
    }
    let server = RedisServer::start();
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}{}[[routes]]
name = "a"
cluster = "app"
path_prefix = "/a"
[[routes.filters]]
plugin = "alpha"
config = {{ count_key = "hits" }}
[[routes]]
name = "b"
cluster = "app"
path_prefix = "/b"
[[routes.filters]]
plugin = "beta"
config = {{ count_key = "hits" }}
"#,
        redis_section(&server, "iso:"),
        cluster("app", up.addr)
    );
    let proxy = start_binary(&body, &[("probe-filter", "alpha"), ("probe-filter", "beta")]);
    let client = h1();
    let count = |path: &'static str| {
        let (client, url) = (client.clone(), format!("http://{}{path}", proxy.addr));
        async move {
            let resp = client.get(url).send().await.expect("request");
            assert_eq!(resp.status(), 200);
            let echo: Value = resp.json().await.expect("echo");
            echoed(&echo, "x-probe-count")
        }
    };
    for n in 1..=3 {
        assert_eq!(count("/a").await, [n.to_string()]);
    }
    assert_eq!(count("/b").await, ["1"], "beta's `hits` is not alpha's");
    let raw = |plugin: &str| {
        server
            .cli(&["--raw", "STRLEN", &format!("iso:{{{plugin}}}:d:hits")])
            .unwrap()
    };
    assert_eq!((raw("alpha"), raw("beta")), ("8".into(), "8".into()));
    let keys = server.keys();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("iso:{alpha}:") || k.starts_with("iso:{beta}:")),
        "{keys:?}"
    );
}

#[path = "shared_state_redis/outage.rs"]
mod outage;
