//! Traffic-control policies end to end, beside tests/traffic.rs: active
//! health checks take an endpoint out and bring it back, a per-try timeout
//! moves a request to another endpoint, Maglev keeps each key on one
//! endpoint, `grpc-timeout` shortens the route timeout, idle client
//! connections are closed (busy ones are not), and `max_stream_duration`
//! cuts a response that streams too long, and `max_connections` refuses a
//! request that would need one connection more. Waits poll under a ceiling.

mod common;

use bytes::Bytes;
use common::admin::{admin_get, metric_value};
use common::*;
use http_body_util::StreamBody;
use hyper::body::Frame;
use serde_json::Value;
use sluice_test_support::flaky::FlakyUpstream;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "[admin]\naddress = \"127.0.0.1:0\"\n\n";
const CEILING: Duration = Duration::from_secs(20);

fn cluster(endpoints: &[&FlakyUpstream], extra: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    format!(
        "[[clusters]]\nname = \"app\"\nendpoints = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// Poll `check` every 50 ms until it returns true; false after the ceiling.
async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + CEILING;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn endpoint(admin: SocketAddr, addr: SocketAddr) -> Value {
    let (_, text) = admin_get(admin, "/clusters").await;
    let all: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    all["clusters"][0]["endpoints"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["address"] == addr.to_string()))
        .cloned()
        .unwrap_or(Value::Null)
}

async fn get_text(url: &str) -> (u16, String) {
    let resp = h1().get(url).send().await.expect("request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_take_an_endpoint_out_and_back() {
    let (a, b) = (FlakyUpstream::start("a").await, FlakyUpstream::start("b").await);
    let body = format!(
        "{ADMIN}{}[[routes]]\ncluster = \"app\"\n",
        cluster(
            &[&a, &b],
            "panic_threshold = 0\n[clusters.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\n\
             timeout = \"500ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n"
        )
    );
    let proxy = start(&body, &[]).await;
    let admin = proxy.running.admin.expect("admin");
    assert!(
        eventually(|| async { b.health_checks() >= 2 }).await,
        "b is being checked"
    );

    b.set_health_status(503);
    assert!(
        eventually(|| async { endpoint(admin, b.addr).await["healthy"] == false }).await,
        "b marked unhealthy"
    );
    let before = b.requests();
    for _ in 0..20 {
        assert_eq!(get_text(&proxy.url("/")).await, (200, "a".to_string()));
    }
    assert_eq!(b.requests(), before, "no traffic to an unhealthy endpoint");

    b.set_health_status(200);
    assert!(
        eventually(|| async { endpoint(admin, b.addr).await["healthy"] == true }).await,
        "b healthy again"
    );
    let mut seen = HashSet::new();
    for _ in 0..10 {
        seen.insert(get_text(&proxy.url("/")).await.1);
    }
    assert!(seen.contains("b"), "b serves again: {seen:?}");
    let (_, metrics) = admin_get(admin, "/metrics").await;
    for result in ["unhealthy", "healthy"] {
        let series = format!("sluice_upstream_health_transitions_total{{cluster=\"app\",result=\"{result}\"}}");
        assert_eq!(metric_value(&metrics, &series), Some(1.0), "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_moves_a_request_to_another_endpoint() {
    let (slow, fast) = (FlakyUpstream::start("slow").await, FlakyUpstream::start("fast").await);
    slow.set_delay(Duration::from_secs(30));
    let body = format!(
        "{ADMIN}[access_log]\nformat = \"json\"\npath = \"access.log\"\n\n{}[[routes]]\ncluster = \"app\"\n\
         timeout = \"20s\"\n[routes.retry]\nretry_on = [\"gateway-error\"]\nretries = 1\n\
         per_try_timeout = \"200ms\"\nbackoff_base = \"1ms\"\n",
        cluster(&[&slow, &fast], "lb = \"round_robin\"\n")
    );
    let proxy = start(&body, &[]).await;
    for _ in 0..6 {
        assert_eq!(get_text(&proxy.url("/")).await, (200, "fast".to_string()));
    }
    assert!(slow.requests() >= 2, "round robin tried the slow endpoint too");
    let admin = proxy.running.admin.expect("admin");
    let (_, metrics) = admin_get(admin, "/metrics").await;
    let timeouts = metric_value(
        &metrics,
        "sluice_upstream_retries_total{cluster=\"app\",reason=\"timeout\"}",
    );
    assert_eq!(timeouts, Some(slow.requests() as f64), "{metrics}");
    // The access log counts the tries: two for the retried requests.
    let log = proxy.work.dir.path().join("access.log");
    let mut attempts = Vec::new();
    assert!(
        eventually(|| {
            attempts = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|v| v["attempts"].as_u64().unwrap_or(0))
                .collect();
            let done = attempts.len() == 6;
            async move { done }
        })
        .await,
        "six access log lines: {attempts:?}"
    );
    attempts.sort();
    let retried = slow.requests() as usize;
    assert!(attempts[6 - retried..].iter().all(|a| *a == 2), "{attempts:?}");
    assert!(attempts[..6 - retried].iter().all(|a| *a == 1), "{attempts:?}");
    // POST is not idempotent: a timed-out try may have been processed, so
    // it is not sent again; the client gets the 504.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let resp = h1().post(proxy.url("/")).body("x").send().await.expect("post");
        statuses.push(resp.status().as_u16());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 504],
        "one POST hit the slow endpoint and was not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_keeps_each_key_on_one_endpoint() {
    let ups = [
        FlakyUpstream::start("a").await,
        FlakyUpstream::start("b").await,
        FlakyUpstream::start("c").await,
    ];
    let body = format!(
        "{}[[routes]]\ncluster = \"app\"\n",
        cluster(
            &[&ups[0], &ups[1], &ups[2]],
            "lb = \"maglev\"\nhash_on = \"header:x-user\"\n"
        )
    );
    let proxy = start(&body, &[]).await;
    let client = h1();
    let mut owner: HashMap<String, String> = HashMap::new();
    for round in 0..4 {
        for user in 0..30 {
            let resp = client
                .get(proxy.url("/"))
                .header("x-user", format!("user-{user}"))
                .send()
                .await
                .expect("request");
            let who = resp.text().await.expect("body");
            let first = owner.entry(format!("user-{user}")).or_insert_with(|| who.clone());
            assert_eq!(*first, who, "user-{user} moved in round {round}");
        }
    }
    let used: HashSet<&String> = owner.values().collect();
    assert_eq!(used.len(), 3, "30 keys spread over all three endpoints: {owner:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_shortens_the_route_timeout() {
    let slow = FlakyUpstream::start("slow").await;
    slow.set_delay(Duration::from_secs(30));
    let body = format!(
        "{}[[routes]]\ncluster = \"app\"\ntimeout = \"20s\"\n",
        cluster(&[&slow], "protocol = \"http2\"\n")
    );
    let proxy = start(&body, &[]).await;
    let resp = h2()
        .post(proxy.url("/test.Echo/Say"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .body(Bytes::from_static(&[0, 0, 0, 0, 0]))
        .send()
        .await
        .expect("grpc request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["grpc-status"],
        "4",
        "DEADLINE_EXCEEDED: {:?}",
        resp.headers()
    );
    assert_eq!(slow.requests(), 1);
}

/// Read until the server closes the connection; false on the ceiling.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + CEILING;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed_busy_ones_are_not() {
    let up = FlakyUpstream::start("app").await;
    let body = format!(
        "[limits]\nidle_timeout = \"300ms\"\n\n{}[[routes]]\ncluster = \"app\"\n",
        cluster(&[&up], "")
    );
    let proxy = start(&body, &[]).await;
    // A request that takes three idle timeouts completes on its connection.
    up.set_delay(Duration::from_millis(900));
    let mut busy = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
    busy.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.ends_with(b"app") {
        let n = busy.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "closed while the request was in flight: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    // Once nothing is in flight, the connection is closed.
    assert!(closed_by_server(&mut busy).await, "idle connection left open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stream_duration_cuts_a_long_response() {
    // An upstream that streams a chunk every 50 ms for ever.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let ticks = futures_util::stream::unfold((), |()| async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Some((
                            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"tick\n"))),
                            (),
                        ))
                    });
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(StreamBody::new(ticks)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let body = format!(
        "[[clusters]]\nname = \"app\"\nendpoints = [\"{addr}\"]\n\n[[routes]]\ncluster = \"app\"\nmax_stream_duration = \"600ms\"\n"
    );
    let proxy = start(&body, &[]).await;
    let mut resp = h1().get(proxy.url("/")).send().await.expect("response headers");
    assert_eq!(resp.status(), 200);
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(CEILING, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => received += chunk.len(),
            Ok(Ok(None)) => break "a clean end",
            Ok(Err(_)) => break "an error",
            Err(_) => break "nothing (still streaming)",
        }
    };
    assert_eq!(ended, "an error", "the client must see the stream cut, not complete");
    assert!(
        received >= 5,
        "some of the stream came through first ({received} bytes)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_a_new_connection_at_once() {
    let up = FlakyUpstream::start("app").await;
    let body = format!(
        "{ADMIN}{}[[routes]]\ncluster = \"app\"\n",
        cluster(&[&up], "[clusters.circuit_breakers]\nmax_connections = 1\n")
    );
    let proxy = start(&body, &[]).await;
    // One request holds the only connection the cluster may open.
    let held = tokio::spawn(get_text_owned(proxy.url("/hold")));
    assert!(
        eventually(|| async { up.held() == 1 }).await,
        "the first request reached the upstream"
    );
    // The next needs a second connection: refused without contacting the upstream.
    let (status, body) = get_text(&proxy.url("/")).await;
    assert_eq!((status, body.as_str()), (503, "upstream overloaded: max_connections\n"));
    assert_eq!(up.requests(), 1);
    assert!(!held.is_finished(), "the held request is still in flight");
    up.release();
    assert_eq!(held.await.expect("held request"), (200, "app".to_string()));
    // With the connection free again, requests flow.
    assert_eq!(get_text(&proxy.url("/")).await, (200, "app".to_string()));
    let admin = proxy.running.admin.expect("admin");
    let (_, metrics) = admin_get(admin, "/metrics").await;
    let series = "sluice_upstream_overflow_total{cluster=\"app\",limit=\"max_connections\"}";
    assert_eq!(metric_value(&metrics, series), Some(1.0), "{metrics}");
}

async fn get_text_owned(url: String) -> (u16, String) {
    get_text(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_carries_its_whole_body() {
    use sha2::{Digest, Sha256};
    let live = Upstream::start("live").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let body = format!(
        "[[clusters]]\nname = \"app\"\nendpoints = [\"{dead}\", \"{}\"]\n\n[[routes]]\ncluster = \"app\"\n\
         [routes.retry]\nretry_on = [\"connect-failure\"]\nretries = 1\nbackoff_base = \"1ms\"\n",
        live.addr
    );
    let proxy = start(&body, &[]).await;
    // Round robin sends every other request to the closed port first: the
    // retry must send the body again, whole, to the live endpoint. The
    // second body is larger than the 64 KiB replay cap, which does not
    // matter when the first try never read it.
    for size in [10_000usize, 200_000] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let digest: String = Sha256::digest(&payload).iter().map(|b| format!("{b:02x}")).collect();
        for _ in 0..4 {
            let resp = h1()
                .post(proxy.url("/upload"))
                .body(payload.clone())
                .send()
                .await
                .expect("post");
            assert_eq!(resp.status(), 200);
            let echo: Value = resp.json().await.expect("echo");
            assert_eq!(echo["body_len"], size);
            assert_eq!(echo["body_sha256"], digest.as_str());
        }
    }
}
