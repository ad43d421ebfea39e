//! Path and host confusion against a gateway where one prefix (or host)
//! needs credentials and the rest is open: requests are sent as raw bytes
//! (HTTP clients normalize URLs themselves), and each must be refused or
//! routed by its normalized form, with the upstream seeing exactly that
//! form. Nothing reaches the protected upstream without credentials.

mod common;

use bytes::Bytes;
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "x-api-key: secret-key\r\n";

/// What a request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The protected route: 401 without credentials; with them, the
    /// protected upstream sees this path (and query).
    Protected(&'static str),
    /// The open route: its upstream sees this path, credentials or not.
    Open(&'static str),
    /// 400, credentials or not.
    Rejected,
}

/// A response read off a raw HTTP/1.1 connection (`Connection: close`).
struct Reply {
    status: u16,
    upstream: Option<String>,
    echo: Option<Value>,
}

async fn raw(addr: SocketAddr, request: String) -> Reply {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes).await.expect("read");
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let upstream = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-upstream: ").map(str::to_string));
    Reply {
        status,
        upstream,
        echo: serde_json::from_str(body).ok(),
    }
}

fn get(target: &str, host: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
}

async fn gateway(protect: &str) -> (TestProxy, Upstream, Upstream) {
    let protected = Upstream::start("protected").await;
    let open = Upstream::start("open").await;
    let body = format!(
        "[[clusters]]\nname = \"protected\"\nendpoints = [\"{}\"]\n\n[[clusters]]\nname = \"open\"\nendpoints = [\"{}\"]\n\n\
         [[routes]]\nname = \"protected\"\n{protect}\ncluster = \"protected\"\n[[routes.filters]]\nplugin = \"auth\"\n\
         config = {{ api_keys = {{ header = \"x-api-key\", keys = [{{ id = \"t\", key = \"secret-key\" }}] }} }}\n\n\
         [[routes]]\nname = \"open\"\npath_prefix = \"/\"\ncluster = \"open\"\n",
        protected.addr, open.addr
    );
    (start(&body, &[]).await, protected, open)
}

/// Check one request, without and with credentials.
async fn check(addr: SocketAddr, what: &str, without: String, with: String, expect: Expect) {
    let bare = raw(addr, without).await;
    let keyed = raw(addr, with).await;
    match expect {
        Expect::Rejected => {
            assert_eq!(bare.status, 400, "{what}: not refused");
            assert_eq!(keyed.status, 400, "{what}: not refused with credentials");
        }
        Expect::Protected(path) => {
            assert_eq!(
                bare.status, 401,
                "{what}: reached {:?} without credentials",
                bare.upstream
            );
            assert_eq!(keyed.status, 200, "{what}");
            assert_eq!(keyed.upstream.as_deref(), Some("protected"), "{what}");
            let echo = keyed.echo.expect("echo");
            assert_eq!(echo["path"], path, "{what}: the upstream saw another path");
        }
        Expect::Open(path) => {
            for reply in [bare, keyed] {
                assert_eq!(reply.status, 200, "{what}");
                assert_eq!(reply.upstream.as_deref(), Some("open"), "{what}");
                let echo = reply.echo.expect("echo");
                assert_eq!(echo["path"], path, "{what}: the upstream saw another path");
            }
        }
    }
}

#[tokio::test]
async fn path_confusion_cannot_bypass_a_route() {
    use Expect::*;
    let (proxy, _protected, _open) = gateway("path_prefix = \"/api\"").await;
    let cases = [
        ("/api/orders", Protected("/api/orders")),
        ("/api", Protected("/api")),
        ("/api/", Protected("/api/")),
        ("/apiary", Open("/apiary")),
        ("/hello/../api/orders", Protected("/api/orders")),
        ("/hello/./../api/./orders/.", Protected("/api/orders/")),
        ("/x/%2e%2e/api/orders", Protected("/api/orders")),
        ("/x/%2E%2E/api/orders", Protected("/api/orders")),
        ("/x/%2e%2E/api/orders", Protected("/api/orders")),
        ("/x/.%2e/api/orders", Protected("/api/orders")),
        ("/x/%2e./api/orders", Protected("/api/orders")),
        ("/hello/%2e/%2e%2e/api/orders", Protected("/api/orders")),
        ("/%61pi/orders", Protected("/api/orders")),
        ("/%61%70%69/orders", Protected("/api/orders")),
        ("//api/orders", Protected("/api/orders")),
        ("///api//orders", Protected("/api/orders")),
        ("/./api/orders", Protected("/api/orders")),
        ("/../api/orders", Protected("/api/orders")),
        ("/../../../api/orders", Protected("/api/orders")),
        ("/api/orders/../../hello", Open("/hello")),
        ("/api;jsessionid=1/orders", Protected("/api;jsessionid=1/orders")),
        ("/api/orders?next=/../x", Protected("/api/orders?next=/../x")),
        ("/API/orders", Open("/API/orders")),
        // Double encoding is decoded once, as upstreams do.
        ("/%2561pi/orders", Open("/%2561pi/orders")),
        ("/x/%252e%252e/api/orders", Open("/x/%252e%252e/api/orders")),
        ("/a%20b", Open("/a%20b")),
        ("/.well-known/x", Open("/.well-known/x")),
        ("/hello/..%2fapi/orders", Rejected),
        ("/hello/..%2Fapi/orders", Rejected),
        ("/hello/..%5capi/orders", Rejected),
        ("/api%2forders", Rejected),
        ("/x/..;/api/orders", Rejected),
        ("/;/api/orders", Rejected),
        ("/x/;y/api/orders", Rejected),
        ("/x/%2e%2e;/api/orders", Rejected),
        ("/api/..;/hello", Rejected),
        ("/hello\\..\\api\\orders", Rejected),
        ("/a%00/api", Rejected),
        ("/api/%zz", Rejected),
        ("/api/orders%", Rejected),
        ("/api/orders%2", Rejected),
    ];
    assert!(cases.len() >= 30);
    for (path, expect) in cases {
        let without = get(path, "gw.test", "");
        let with = get(path, "gw.test", KEY);
        check(proxy.addr, path, without, with, expect).await;
    }
}

#[tokio::test]
async fn escaped_slashes_and_merging_follow_the_settings() {
    let protected = Upstream::start("protected").await;
    let body = format!(
        "[paths]\nmerge_slashes = false\nescaped_slashes = \"keep\"\n\n\
         [[clusters]]\nname = \"protected\"\nendpoints = [\"{}\"]\n\n[[routes]]\ncluster = \"protected\"\n",
        protected.addr
    );
    let proxy = start(&body, &[]).await;
    for (target, seen) in [("//a//b", "//a//b"), ("/a%2fb", "/a%2Fb"), ("/a/./b", "/a/b")] {
        let reply = raw(proxy.addr, get(target, "gw.test", "")).await;
        assert_eq!(reply.status, 200, "{target}");
        assert_eq!(reply.echo.expect("echo")["path"], seen, "{target}");
    }
}

#[tokio::test]
async fn host_confusion_cannot_bypass_a_route() {
    use Expect::*;
    let (proxy, _protected, _open) = gateway("hosts = [\"admin.example.com\"]").await;
    // (request line target, Host lines, expectation)
    let cases: &[(&str, &[&str], Expect)] = &[
        ("/x", &["admin.example.com"], Protected("/x")),
        ("/x", &["ADMIN.Example.com"], Protected("/x")),
        ("/x", &["admin.example.com."], Protected("/x")),
        ("/x", &["admin.example.com:8080"], Protected("/x")),
        ("/x", &["admin.example.com.:8080"], Protected("/x")),
        ("/x", &["other.example.com"], Open("/x")),
        ("/x", &["other.example.com", "admin.example.com"], Rejected),
        ("/x", &["admin.example.com", "admin.example.com"], Rejected),
        ("/x", &["admin.example.com evil"], Rejected),
        ("/x", &["admin.example.com/x"], Rejected),
        ("/x", &["evil@admin.example.com"], Rejected),
        ("/x", &["admin.example.com.."], Rejected),
        ("/x", &["admin.example.com:80x"], Rejected),
        ("/x", &[], Rejected),
        // Absolute form: the target's authority wins (RFC 9112 §3.2.2).
        ("http://admin.example.com./x", &["other.example.com"], Protected("/x")),
        ("http://other.example.com/x", &["admin.example.com"], Open("/x")),
        ("http://admin.example.com/x", &["bad host"], Rejected),
    ];
    for (target, hosts, expect) in cases {
        let what = format!("{target} with Host {hosts:?}");
        let request = |extra: &str| {
            let mut r = format!("GET {target} HTTP/1.1\r\n");
            for h in *hosts {
                r += &format!("Host: {h}\r\n");
            }
            r + extra + "Connection: close\r\n\r\n"
        };
        check(proxy.addr, &what, request(""), request(KEY), *expect).await;
    }
    // The upstream sees the host without its trailing dot.
    let reply = raw(proxy.addr, get("/x", "admin.example.com.:8080", KEY)).await;
    let echo = reply.echo.expect("echo");
    assert_eq!(echoed(&echo, "host"), ["admin.example.com:8080"]);

    // HTTP/2: a Host header naming another authority than :authority is
    // malformed; a matching one (any case, trailing dot) routes as usual.
    for (host, status) in [("other.example.com", 400), ("Admin.Example.com.", 401), ("", 401)] {
        assert_eq!(h2_status(proxy.addr, host).await, status, "Host {host:?} over h2");
    }
}

/// GET `http://admin.example.com/x` over HTTP/2 (`:authority`), with a
/// `Host` header unless `host` is empty: the response status.
async fn h2_status(addr: SocketAddr, host: &str) -> u16 {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut send = send.ready().await.expect("h2 ready");
    let mut request = http::Request::get("http://admin.example.com/x");
    if !host.is_empty() {
        request = request.header("host", host);
    }
    let (response, _) = send
        .send_request(request.body(()).expect("request"), true)
        .expect("send");
    let response = response.await.expect("h2 response");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk: Bytes = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    status
}
