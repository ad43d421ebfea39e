//! Metrics after known traffic, the JSON access log field by field, W3C
//! trace context to the upstream, `/config` with secrets redacted, `/ready`,
//! and `sigterm_drains_in_flight` (with
//! `connections_opened_before_the_drain_are_answered` and
//! `sigterm_right_after_start_exits_cleanly`) on the real binary.

mod common;

use common::*;
use futures_util::future::join_all;
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn cluster(name: &str, addr: SocketAddr) -> String {
    format!("[[clusters]]\nname = \"{name}\"\nendpoints = [\"{addr}\"]\n\n")
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let resp = h1().get(format!("http://{admin}{path}")).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Send the binary SIGTERM (it starts draining).
fn sigterm(proxy: &BinaryProxy) {
    let pid = proxy.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// The value of the series exactly named `series` (name and labels).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{metrics}"))
}

#[tokio::test]
async fn metrics_count_known_traffic() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}{}
[admin]
address = "127.0.0.1:0"

[[routes]]
name = "ok"
path_prefix = "/ok"
cluster = "app"
[[routes.filters]]
plugin = "header-rewrite"
config.request.set = {{ "x-a" = "1" }}

[[routes]]
name = "deny"
path_prefix = "/deny"
cluster = "app"
[[routes.filters]]
plugin = "probe"
config = {{ respond = {{ status = 403, body = "no" }} }}

[[routes]]
name = "dead"
path_prefix = "/dead"
cluster = "dead"
"#,
        cluster("app", up.addr),
        cluster("dead", dead_addr())
    );
    let proxy = start(&body, &[("probe-filter", "probe")]).await;
    let admin = proxy.running.admin.unwrap();
    for _ in 0..5 {
        assert_eq!(h1().get(proxy.url("/ok/1")).send().await.unwrap().status(), 200);
    }
    let h2 = h2();
    for _ in 0..3 {
        assert_eq!(h2.get(proxy.url("/ok/2")).send().await.unwrap().status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(h1().get(proxy.url("/deny")).send().await.unwrap().status(), 403);
    }
    assert_eq!(h1().get(proxy.url("/dead")).send().await.unwrap().status(), 502);
    assert_eq!(h1().get(proxy.url("/nothing")).send().await.unwrap().status(), 404);

    // Counted when each response body ends: give the last one a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, m) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&m, r#"sluice_requests_total{route="ok",cluster="app",status="2xx"}"#),
        8.0
    );
    assert_eq!(
        sample(&m, r#"sluice_requests_total{route="deny",cluster="",status="4xx"}"#),
        2.0
    );
    assert_eq!(
        sample(&m, r#"sluice_requests_total{route="dead",cluster="dead",status="5xx"}"#),
        1.0
    );
    assert_eq!(
        sample(&m, r#"sluice_requests_total{route="",cluster="",status="4xx"}"#),
        1.0
    );
    assert_eq!(sample(&m, r#"sluice_request_duration_seconds_count{route="ok"}"#), 8.0);
    assert!(sample(&m, r#"sluice_request_duration_seconds_sum{route="ok"}"#) > 0.0);
    assert_eq!(
        sample(&m, r#"sluice_upstream_request_duration_seconds_count{cluster="app"}"#),
        8.0
    );
    assert_eq!(
        sample(&m, r#"sluice_upstream_connect_errors_total{cluster="dead"}"#),
        1.0
    );
    assert_eq!(
        sample(&m, r#"sluice_upstream_connect_errors_total{cluster="app"}"#),
        0.0
    );
    assert_eq!(
        sample(
            &m,
            r#"sluice_filter_calls_total{plugin="header-rewrite",phase="request_headers",outcome="continue"}"#
        ),
        8.0
    );
    assert_eq!(
        sample(
            &m,
            r#"sluice_filter_calls_total{plugin="probe",phase="request_headers",outcome="local_response"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &m,
            r#"sluice_filter_call_duration_seconds_count{plugin="header-rewrite",phase="request_headers"}"#
        ),
        8.0
    );
    assert!(sample(&m, r#"sluice_filter_instances_created_total{plugin="probe"}"#) >= 1.0);
    assert!(sample(&m, r#"sluice_filter_idle_instances{plugin="header-rewrite"}"#) >= 1.0);
    // 5 + 2 + 1 + 1 HTTP/1.1 clients, 1 HTTP/2 client: at least 10 connections.
    assert!(sample(&m, "sluice_downstream_connections_accepted_total") >= 10.0);
}

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// Read the access log until it has `n` lines.
async fn log_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn json_access_log_and_trace_context() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[access_log]
format = "json"
path = "access.log"
headers = ["user-agent", "authorization", "x-team-secret"]
redact = ["x-team-secret"]

[[routes]]
name = "api"
cluster = "app"
"#,
        cluster("app", up.addr)
    );
    let proxy = start(&body, &[]).await;
    let log_path = proxy.work.dir.path().join("access.log");

    // 1. A traced POST with credentials and an id.
    let resp = h1()
        .post(proxy.url("/orders?id=7"))
        .header("user-agent", "obs-test/1")
        .header("authorization", "Bearer very-secret-token")
        .header("x-team-secret", "hunter2")
        .header("x-request-id", "rid-42")
        .header("traceparent", format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    let sent = echoed(&echo, "traceparent");
    assert_eq!(sent.len(), 1);
    let parts: Vec<&str> = sent[0].split('-').collect();
    assert_eq!(parts.len(), 4, "{sent:?}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", PARENT_TRACE, "01"), "same trace");
    assert_eq!(parts[2].len(), 16);
    assert_ne!(parts[2], PARENT_SPAN, "a new span id for this hop");
    assert_eq!(echoed(&echo, "tracestate"), ["vendor=abc"]);
    let response_len = echo.to_string().len() as u64;

    // 2. No traceparent: a new trace is started.
    let resp = h2().get(proxy.url("/x")).send().await.unwrap();
    let echo: Value = resp.json().await.unwrap();
    let started = echoed(&echo, "traceparent");
    let new_trace = started[0].split('-').nth(1).unwrap().to_string();
    assert_eq!(new_trace.len(), 32);
    assert_ne!(new_trace, "0".repeat(32));

    let lines = log_lines(&log_path, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let text = lines.join("\n");
    assert!(
        !text.contains("very-secret-token") && !text.contains("hunter2"),
        "secrets leaked: {text}"
    );

    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/orders?id=7");
    assert_eq!(first["authority"], proxy.addr.to_string());
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["route"], "api");
    assert_eq!(first["cluster"], "app");
    assert_eq!(first["upstream"], up.addr.to_string());
    assert_eq!(first["bytes_in"], 11);
    assert_eq!(first["bytes_out"], response_len);
    assert_eq!(first["request_id"], "rid-42");
    assert_eq!(first["trace_id"], PARENT_TRACE);
    assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["headers"]["user-agent"], "obs-test/1");
    assert_eq!(first["headers"]["authorization"], "[redacted]");
    assert_eq!(first["headers"]["x-team-secret"], "[redacted]");

    let second: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["protocol"], "HTTP/2");
    assert_eq!(second["trace_id"], new_trace.as_str());
    assert_eq!(second["bytes_in"], 0);
}

#[tokio::test]
async fn config_endpoint_redacts_secrets() {
    let body = format!(
        r#"{}
[admin]
address = "127.0.0.1:0"

[[routes]]
name = "api"
cluster = "app"
[[routes.filters]]
plugin = "auth"
[routes.filters.config]
api_keys = {{ keys = [{{ id = "ci", key = "plain-api-key-value" }}] }}
jwt = {{ keys = [{{ kid = "k", alg = "HS256", secret = "hs256-secret-value-of-32-bytes-or-more" }}] }}
"#,
        cluster("app", dead_addr())
    );
    let proxy = start(&body, &[]).await;
    let (status, text) = admin_get(proxy.running.admin.unwrap(), "/config").await;
    assert_eq!(status, 200);
    assert!(
        !text.contains("plain-api-key-value") && !text.contains("hs256-secret-value"),
        "{text}"
    );
    let config: Value = serde_json::from_str(&text).unwrap();
    let auth = &config["routes"][0]["filters"][0];
    assert_eq!(auth["plugin"], "auth");
    assert_eq!(auth["config"]["api_keys"]["keys"][0]["id"], "ci");
    assert_eq!(auth["config"]["api_keys"]["keys"][0]["key"], "[redacted]");
    assert_eq!(auth["config"]["jwt"]["keys"][0]["secret"], "[redacted]");
    assert_eq!(config["clusters"][0]["name"], "app");
}

/// Slow requests in flight when SIGTERM arrives all complete with 200, new
/// connections are refused, `/ready` turns 503, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[admin]
address = "127.0.0.1:0"

[shutdown]
grace_period = "20s"

[[routes]]
name = "api"
cluster = "app"
"#,
        cluster("app", up.addr)
    );
    let mut proxy = start_binary(&body, &[]);
    let admin = proxy.admin.expect("admin address");
    assert_eq!(admin_get(admin, "/ready").await, (200, "ready\n".to_string()));

    // Six HTTP/1.1 connections and six streams on one HTTP/2 connection,
    // each waiting 1.5 s upstream.
    let h2 = h2();
    let url = format!("http://{}/slow/1500/x", proxy.addr);
    let mut inflight = Vec::new();
    for _ in 0..6 {
        let (client, one) = (h1(), url.clone());
        inflight.push(tokio::spawn(async move {
            client.get(one).send().await.map(|r| r.status().as_u16())
        }));
        let (h2, other) = (h2.clone(), url.clone());
        inflight.push(tokio::spawn(async move {
            h2.get(other).send().await.map(|r| r.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    sigterm(&proxy);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Draining: unready, and the listening socket is closed.
    assert_eq!(admin_get(admin, "/ready").await.0, 503);
    assert!(
        TcpStream::connect_timeout(&proxy.addr, Duration::from_secs(1)).is_err(),
        "a new connection was accepted while draining"
    );

    for r in join_all(inflight).await {
        assert_eq!(r.unwrap().expect("in-flight request failed"), 200);
    }
    let status = proxy.exit_status(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
}

/// Connections accepted before SIGTERM whose first request comes only once
/// the drain has begun are answered, not closed unanswered: the HTTP/1.1
/// request gets its 200 with `Connection: close`, the HTTP/2 stream its 200
/// and then the connection ends. (Closing them would fail requests no
/// server saw, which a client cannot safely retry.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_before_the_drain_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("app").await;
    let body = format!(
        "{}[admin]\naddress = \"127.0.0.1:0\"\n\n[shutdown]\ngrace_period = \"20s\"\n\n\
         [[routes]]\nname = \"api\"\ncluster = \"app\"\n",
        cluster("app", up.addr)
    );
    let mut proxy = start_binary(&body, &[]);
    let admin = proxy.admin.expect("admin address");
    let mut h1_conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let h2_conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&admin_get(admin, "/metrics").await.1, "sluice_downstream_connections") < 2.0 {
        assert!(Instant::now() < deadline, "sluice did not accept both connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    sigterm(&proxy);
    loop {
        match h1().get(format!("http://{admin}/ready")).send().await {
            Ok(ready) if ready.status() == 503 => break,
            Ok(_) => {}
            Err(e) => panic!("sluice stopped before serving the connections it had accepted: {e}"),
        }
        assert!(Instant::now() < deadline, "sluice did not start draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Time for the connections' tasks to see the drain.
    tokio::time::sleep(Duration::from_millis(300)).await;

    h1_conn
        .write_all(b"GET /late/h1 HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), h1_conn.read_to_end(&mut answer)).await;
    read.expect("sluice neither answered nor closed").expect("read");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "HTTP/1.1 answer:\n{answer}");
    assert!(
        answer.contains("\r\nconnection: close\r\n"),
        "HTTP/1.1 answer:\n{answer}"
    );

    // HTTP/2 by hand, so that the request is in the same write as the
    // preface and the server reads it before its drain's GOAWAY dance.
    use common::h2_raw::*;
    let mut h2_conn = h2_conn;
    let mut opening = PREFACE.to_vec();
    opening.extend(frame(SETTINGS, 0, 0, &[]));
    opening.extend(get_frame(1, "/late/h2"));
    h2_conn.write_all(&opening).await.unwrap();
    let (mut status_block, mut goaway) = (None, None);
    let conversation = async {
        // The server's frames until it closes, answering its SETTINGS and PINGs.
        while let Some(f) = read_frame(&mut h2_conn).await {
            match f.kind {
                SETTINGS if f.flags & ACK == 0 => {
                    let _ = h2_conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                }
                PING if f.flags & ACK == 0 => {
                    let _ = h2_conn.write_all(&frame(PING, ACK, 0, &f.payload)).await;
                }
                HEADERS if f.stream == 1 => status_block = f.payload.first().copied(),
                GOAWAY => goaway = Some((f.last_stream_id(), f.code())),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), conversation)
        .await
        .expect("the h2 connection stayed open");
    // 0x88 is `:status: 200` from HPACK's static table.
    assert_eq!(status_block, Some(0x88), "no 200 on stream 1");
    assert_eq!(goaway, Some((1, 0)), "the last GOAWAY (last stream id, error code)");

    let status = proxy.exit_status(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
}

/// A SIGTERM as soon as the binary says it is listening drains and exits 0:
/// the signal is handled from before the listeners open, so it never falls
/// to the default action (the process killed).
#[tokio::test]
async fn sigterm_right_after_start_exits_cleanly() {
    let up = Upstream::start("app").await;
    let body = format!(
        "{}[[routes]]\nname = \"api\"\ncluster = \"app\"\n",
        cluster("app", up.addr)
    );
    for _ in 0..3 {
        let mut proxy = start_binary(&body, &[]);
        sigterm(&proxy);
        let status = proxy.exit_status(Duration::from_secs(15)).await;
        assert!(status.success(), "exit status {status}");
    }
}
