//! WebSocket and gRPC through sluice, driven by real Python clients and
//! upstreams (`websockets` and `grpcio`; the scripts are in tests/python/):
//! a 10 MB WebSocket echo with a clean close on a route with
//! `upgrades = ["websocket"]`, and no upgrade on a route without it;
//! WebSocket over HTTP/2 extended CONNECT (RFC 8441, by hand with h2); gRPC
//! statuses on the answers sluice makes itself (upstream down, filter
//! denial, no route), while the upstream's own statuses pass untouched.
//! Skipped (`skipped:`) when python3 cannot import the module, unless
//! `SLUICE_REQUIRE_ROOT_TESTS=1` (`.ci/run` installs both).

mod common;

use bytes::Bytes;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A script in tests/python/.
fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/python")
        .join(name)
}

/// `python3`, talking to loopback directly.
fn python() -> Command {
    let mut command = Command::new("python3");
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    command.env("PYTHONUNBUFFERED", "1");
    command
}

/// Whether python3 can import `module`; prints `skipped:` when it cannot
/// (and fails when the test is required).
fn have_python(test: &str, module: &str) -> bool {
    let ok = python()
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !common::tls::required(),
            "{test}: python3 with `{module}` is required (SLUICE_REQUIRE_ROOT_TESTS=1) but missing \
             (python3 -m pip install websockets grpcio)"
        );
        println!("skipped: {test}: python3 cannot import {module} (python3 -m pip install websockets grpcio)");
    }
    ok
}

/// A Python upstream from tests/python/ that prints `{"port": N}` once
/// listening; it exits when its stdin closes, and is killed when dropped.
struct PyServer {
    child: Child,
    port: u16,
}

impl PyServer {
    fn start(name: &str) -> PyServer {
        let mut child = python()
            .arg(script(name))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn python3 {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{name} did not print its port within 60s"));
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("{name} printed {line:?} instead of {{\"port\": N}}"));
        PyServer { child, port }
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a client script from tests/python/ and parse the JSON object it
/// prints last.
async fn run_client(name: &str, args: &[String]) -> Value {
    let mut command = tokio::process::Command::from(python());
    command.arg(script(name)).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .unwrap_or_else(|_| panic!("{name} {args:?} did not finish within 180s"))
        .unwrap_or_else(|e| panic!("run python3 {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("{name} {args:?} printed no JSON ({}):\n{stdout}\n{stderr}", out.status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_sluice() {
    const TEST: &str = "websocket_through_sluice";
    const SIZE: usize = 10 * 1024 * 1024;
    if !have_python(TEST, "websockets") {
        return;
    }
    let upstream = PyServer::start("ws_echo_server.py");
    let body = format!(
        r#"[[clusters]]
name = "ws"
endpoints = ["127.0.0.1:{port}"]

[[routes]]
name = "ws"
path_prefix = "/ws"
cluster = "ws"
upgrades = ["websocket"]

[[routes]]
name = "plain"
path_prefix = "/plain"
cluster = "ws"
"#,
        port = upstream.port
    );
    let proxy = start(&body, &[]).await;

    // A text message, then 10 MB in one binary message, echoed intact; the
    // client's close (1000) is answered with 1000.
    let got = run_client(
        "ws_client.py",
        &[format!("ws://{}/ws/echo", proxy.addr), SIZE.to_string()],
    )
    .await;
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["text_equal"], true, "{got}");
    assert_eq!(got["binary"], true, "{got}");
    assert_eq!(got["size"], SIZE, "{got}");
    assert_eq!(got["equal"], true, "{got}");
    assert_eq!(got["sent_sha256"], got["received_sha256"], "{got}");
    assert_eq!(got["close_code"], 1000, "{got}");

    // A route without `upgrades` strips Upgrade: the upstream sees a plain
    // GET and answers 426, so the handshake fails.
    let got = run_client(
        "ws_client.py",
        &[format!("ws://{}/plain/echo", proxy.addr), "16".into()],
    )
    .await;
    assert_eq!(got["ok"], false, "{got}");
    assert_eq!(got["status"], 426, "{got}");
}

/// A masked client WebSocket frame (RFC 6455 §5.2) with a short payload.
fn client_frame(opcode: u8, payload: &[u8]) -> Bytes {
    assert!(payload.len() < 126);
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    Bytes::from(frame)
}

/// Read from `body` until `want` bytes have arrived.
async fn read_exactly(body: &mut h2::RecvStream, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.data())
            .await
            .expect("no data within 30s")
            .expect("stream ended early")
            .expect("stream error");
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_extended_connect() {
    const TEST: &str = "websocket_over_http2_extended_connect";
    if !have_python(TEST, "websockets") {
        return;
    }
    let upstream = PyServer::start("ws_echo_server.py");
    let echo = Upstream::start("echo").await;
    let body = format!(
        "[[clusters]]\nname = \"ws\"\nendpoints = [\"127.0.0.1:{}\"]\n\n[[clusters]]\nname = \"echo\"\n\
         endpoints = [\"{}\"]\n\n[[routes]]\nname = \"ws\"\npath_prefix = \"/ws\"\ncluster = \"ws\"\n\
         upgrades = [\"websocket\"]\n\n[[routes]]\nname = \"not-ws\"\npath_prefix = \"/echo\"\ncluster = \"echo\"\n\
         upgrades = [\"websocket\"]\n\n[[routes]]\nname = \"plain\"\ncluster = \"ws\"\n",
        upstream.port, echo.addr
    );
    let proxy = start(&body, &[]).await;
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut send = send.ready().await.expect("h2 ready");
    // The server's SETTINGS must allow extended CONNECT (RFC 8441 §3).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !send.is_extended_connect_protocol_enabled() {
        assert!(
            std::time::Instant::now() < deadline,
            "sluice never enabled extended CONNECT"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect = |path: &str| {
        let mut request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("http://{}{path}", proxy.addr))
            .header("sec-websocket-version", "13")
            .body(())
            .expect("request");
        request.extensions_mut().insert(h2::ext::Protocol::from("websocket"));
        request
    };

    let (response, mut stream) = send.send_request(connect("/ws/echo"), false).expect("send CONNECT");
    let response = tokio::time::timeout(Duration::from_secs(30), response)
        .await
        .expect("no response within 30s")
        .expect("response");
    assert_eq!(response.status(), 200, "{response:?}");
    assert!(!response.headers().contains_key("sec-websocket-accept"), "{response:?}");
    let mut body = response.into_body();
    // A text message comes back unmasked, byte for byte.
    stream
        .send_data(client_frame(0x1, b"hello over h2"), false)
        .expect("send frame");
    let echoed = read_exactly(&mut body, 2 + 13).await;
    assert_eq!(echoed[..2], [0x81, 13]);
    assert_eq!(&echoed[2..], b"hello over h2");
    // A clean close: 1000 answered with 1000.
    stream
        .send_data(client_frame(0x8, &1000u16.to_be_bytes()), false)
        .expect("send close");
    let closed = read_exactly(&mut body, 4).await;
    assert_eq!(closed, [0x88, 0x02, 0x03, 0xe8]);

    // An upstream that answers the handshake 200 without switching: the
    // client must not see a 2xx (it would take the stream for a tunnel).
    let (response, _stream) = send.send_request(connect("/echo/x"), false).expect("send CONNECT");
    let response = tokio::time::timeout(Duration::from_secs(30), response)
        .await
        .expect("no response within 30s")
        .expect("response");
    assert_eq!(response.status(), 502, "{response:?}");

    // A route without `upgrades` refuses extended CONNECT.
    let (response, _stream) = send.send_request(connect("/plain"), false).expect("send CONNECT");
    let response = tokio::time::timeout(Duration::from_secs(30), response)
        .await
        .expect("no response within 30s")
        .expect("response");
    assert_eq!(response.status(), 405, "{response:?}");
    connection.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_on_local_responses() {
    const TEST: &str = "grpc_status_on_local_responses";
    if !have_python(TEST, "grpc") {
        return;
    }
    let upstream = PyServer::start("grpc_echo_server.py");
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local addr")
    };
    let body = format!(
        r#"[[clusters]]
name = "grpc"
endpoints = ["127.0.0.1:{port}"]
protocol = "http2"

[[clusters]]
name = "down"
endpoints = ["{closed}"]
protocol = "http2"
connect_timeout = "2s"

[[routes]]
name = "down"
path_prefix = "/test.Down"
cluster = "down"

[[routes]]
name = "denied"
path_prefix = "/test.Denied"
cluster = "grpc"

[[routes.filters]]
plugin = "authz"

[[routes.filters.config.rules]]
name = "deny-all"
action = "deny"

[[routes]]
name = "echo"
path_prefix = "/test.Echo"
cluster = "grpc"
"#,
        port = upstream.port
    );
    let proxy = start(&body, &[]).await;

    let methods = [
        "/test.Echo/Say",
        "/test.Echo/Fail",
        "/test.Down/Say",
        "/test.Denied/Say",
        "/other.Missing/Say",
    ];
    let mut args = vec![proxy.addr.to_string()];
    args.extend(methods.iter().map(|m| m.to_string()));
    let got = run_client("grpc_client.py", &args).await;
    assert_eq!(got["ready"], true, "the gRPC client could not reach sluice: {got}");
    let results = got["results"].as_array().unwrap_or_else(|| panic!("no results: {got}"));
    let code = |method: &str| result_of(results, method);

    // Through sluice to a real gRPC upstream: the answer, and the upstream's
    // own status with its message, untouched.
    assert_eq!(code("/test.Echo/Say")["code"], "OK", "{got}");
    assert_eq!(code("/test.Echo/Say")["response"], "ping", "{got}");
    assert_eq!(code("/test.Echo/Fail")["code"], "INVALID_ARGUMENT", "{got}");
    assert_eq!(code("/test.Echo/Fail")["details"], "bad input", "{got}");

    // Answers sluice makes itself carry a gRPC status, not a protocol error.
    for (method, want) in [
        ("/test.Down/Say", "UNAVAILABLE"),
        ("/test.Denied/Say", "PERMISSION_DENIED"),
        ("/other.Missing/Say", "NOT_FOUND"),
    ] {
        let result = code(method);
        assert_eq!(result["code"], want, "{method}: {got}");
        let details = result["details"].as_str().unwrap_or_default();
        assert!(!details.is_empty(), "{method}: no grpc-message: {got}");
        assert!(
            !details.contains("failed to connect") && !details.contains("protocol error"),
            "{method}: the client's own error, not sluice's answer: {got}"
        );
    }

    // On the wire: trailers-only, HTTP 200, one HEADERS frame ending the stream.
    for (path, status) in [
        ("/test.Denied/Say", "7"),
        ("/other.Missing/Say", "5"),
        ("/test.Down/Say", "14"),
    ] {
        let (http, headers, ended) = grpc_raw(proxy.addr, path).await;
        assert_eq!(http, 200, "{path}");
        assert_eq!(
            headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/grpc"[..]),
            "{path}"
        );
        assert_eq!(
            headers.get("grpc-status").map(|v| v.as_bytes()),
            Some(status.as_bytes()),
            "{path}"
        );
        assert!(headers.contains_key("grpc-message"), "{path}: {headers:?}");
        assert!(ended, "{path}: the response has a body: {headers:?}");
    }

    // A request that is not gRPC gets the ordinary answer.
    let resp = h1().get(proxy.url("/test.Denied/Say")).send().await.expect("request");
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.text().await.expect("body"), "RBAC: access denied\n");
}

/// The client's result for `method`.
fn result_of<'a>(results: &'a [Value], method: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["method"] == method)
        .unwrap_or_else(|| panic!("no result for {method}: {results:?}"))
}

/// A unary gRPC request over h2c by hand: the HTTP status, the response
/// headers, and whether the stream ended with them (trailers-only).
async fn grpc_raw(addr: SocketAddr, path: &str) -> (u16, http::HeaderMap, bool) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut send = send.ready().await.expect("h2 ready");
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut stream) = send.send_request(request, false).expect("send request");
    // One length-prefixed message: uncompressed, 4 bytes, "ping". sluice may
    // answer (and end the stream) before reading it.
    let _ = stream.send_data(Bytes::from_static(b"\0\0\0\0\x04ping"), true);
    let response = tokio::time::timeout(Duration::from_secs(30), response)
        .await
        .expect("no h2 response within 30s")
        .expect("h2 response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let ended = response.body().is_end_stream();
    drop(send);
    connection.abort();
    (status, headers, ended)
}
