//! The core proxy without filters: what reaches the upstream is exactly
//! what the client sent (plus the forwarding headers, minus hop-by-hop
//! ones), over every combination of HTTP/1.1 and HTTP/2 on either side,
//! and the error cases answer 404, 502 and 504 with short bodies.

mod common;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn cluster(name: &str, addr: std::net::SocketAddr, protocol: &str) -> String {
    format!("[[clusters]]\nname = \"{name}\"\nendpoints = [\"{addr}\"]\nprotocol = \"{protocol}\"\n\n")
}

async fn forwards_exactly(client: reqwest::Client, upstream_protocol: &str, expect_version: &str) {
    let up = Upstream::start("app").await;
    let body = format!(
        "{}[[routes]]\nname = \"all\"\ncluster = \"app\"\n",
        cluster("app", up.addr, upstream_protocol)
    );
    let proxy = start(&body, &[]).await;
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let resp = client
        .request(reqwest::Method::PATCH, proxy.url("/a/b%20c/?q=1&q=2&empty=&x=%2F"))
        .header("x-custom", "one")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .header("connection", "x-hop")
        .header("x-hop", "must-not-pass")
        .header("x-forwarded-for", "203.0.113.7")
        .body(payload.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "app");
    assert!(
        resp.headers()
            .get_all("via")
            .iter()
            .any(|v| v.to_str().unwrap().ends_with("sluice"))
    );
    let echo: Value = resp.json().await.expect("json");
    assert_eq!(echo["method"], "PATCH");
    assert_eq!(echo["path"], "/a/b%20c/?q=1&q=2&empty=&x=%2F");
    assert_eq!(echo["version"], expect_version);
    assert_eq!(echoed(&echo, "x-custom"), ["one"]);
    assert_eq!(echoed(&echo, "x-multi"), ["a", "b"]);
    assert!(echoed(&echo, "x-hop").is_empty(), "Connection-named header forwarded");
    assert!(echoed(&echo, "connection").is_empty());
    assert_eq!(echoed(&echo, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(echoed(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        echoed(&echo, "forwarded"),
        [format!("for=127.0.0.1;proto=http;host=\"{}\"", proxy.addr)]
    );
    if expect_version == "HTTP/2.0" {
        // `:authority` is the client's, not the endpoint's address, and
        // carries it alone: no `Host` besides (nginx before 1.25 refuses
        // both as a duplicate host).
        assert_eq!(echo["authority"], proxy.addr.to_string());
        assert!(echoed(&echo, "host").is_empty(), "Host sent besides :authority");
    } else {
        assert_eq!(echoed(&echo, "host"), [proxy.addr.to_string()]);
    }
    assert_eq!(echoed(&echo, "via").len(), 1);
    assert_eq!(echo["body_len"], payload.len());
    let digest: String = Sha256::digest(&payload).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(echo["body_sha256"], digest);
}

#[tokio::test]
async fn h1_client_to_h1_upstream() {
    forwards_exactly(h1(), "http1", "HTTP/1.1").await;
}

#[tokio::test]
async fn h2_client_to_h1_upstream() {
    forwards_exactly(h2(), "http1", "HTTP/1.1").await;
}

#[tokio::test]
async fn h1_client_to_h2_upstream() {
    forwards_exactly(h1(), "http2", "HTTP/2.0").await;
}

#[tokio::test]
async fn h2_client_to_h2_upstream() {
    forwards_exactly(h2(), "http2", "HTTP/2.0").await;
}

#[tokio::test]
async fn routes_by_host_and_path() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let c = Upstream::start("c").await;
    let body = format!(
        "{}{}{}\
[[routes]]\nname = \"exact\"\nhosts = [\"api.example.com\"]\npath_exact = \"/v1/ping\"\ncluster = \"a\"\n\n\
[[routes]]\nname = \"wild\"\nhosts = [\"*.example.com\"]\npath_prefix = \"/\"\ncluster = \"b\"\n\n\
[[routes]]\nname = \"static\"\npath_prefix = \"/static/\"\ncluster = \"c\"\n",
        cluster("a", a.addr, "http1"),
        cluster("b", b.addr, "http1"),
        cluster("c", c.addr, "http1"),
    );
    let proxy = start(&body, &[]).await;
    let client = h1();
    let get = |host: &'static str, path: &'static str| {
        let client = client.clone();
        let url = proxy.url(path);
        async move {
            let r = client.get(url).header("host", host).send().await.expect("request");
            (
                r.status().as_u16(),
                r.headers().get("x-upstream").map(|v| v.to_str().unwrap().to_string()),
            )
        }
    };
    assert_eq!(get("api.example.com", "/v1/ping").await, (200, Some("a".into())));
    assert_eq!(get("API.example.com:80", "/v1/ping").await, (200, Some("a".into())));
    assert_eq!(
        get("api.example.com", "/v1/ping/more").await.0,
        404,
        "exact host group has no prefix route"
    );
    assert_eq!(get("www.example.com", "/anything").await, (200, Some("b".into())));
    assert_eq!(get("other.test", "/static/app.js").await, (200, Some("c".into())));
    let resp = client
        .get(proxy.url("/nope"))
        .header("host", "other.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "no route for this host and path\n");
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // Bind and drop to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let body = format!("{}[[routes]]\ncluster = \"dead\"\n", cluster("dead", port, "http1"));
    let proxy = start(&body, &[]).await;
    for client in [h1(), h2()] {
        let resp = client.get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.text().await.unwrap(), "upstream unreachable\n");
    }
}

#[tokio::test]
async fn slow_upstream_is_504_after_route_timeout() {
    let up = Upstream::start("slow").await;
    let body = format!(
        "{}[[routes]]\nname = \"fast\"\npath_prefix = \"/slow/\"\ncluster = \"slow\"\ntimeout = \"300ms\"\n",
        cluster("slow", up.addr, "http1")
    );
    let proxy = start(&body, &[]).await;
    let started = std::time::Instant::now();
    let resp = h1().get(proxy.url("/slow/5000/x")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "timeout not applied"
    );
    assert_eq!(resp.text().await.unwrap(), "upstream timeout\n");
    // Within the timeout it answers.
    let resp = h2().get(proxy.url("/slow/10/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn upstream_status_and_round_robin() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let body = format!(
        "[[clusters]]\nname = \"pair\"\nendpoints = [\"{}\", \"{}\"]\n\n[[routes]]\ncluster = \"pair\"\n",
        a.addr, b.addr
    );
    let proxy = start(&body, &[]).await;
    let client = h1();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = client.get(proxy.url("/")).send().await.unwrap();
        seen.push(r.headers()["x-upstream"].to_str().unwrap().to_string());
    }
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b"]);
    let r = client.get(proxy.url("/status/418")).send().await.unwrap();
    assert_eq!(r.status(), 418);
}

/// One HTTP/1.1 connection left idle is parked (it holds only its socket;
/// the gauge counts it) and serves the client's next requests as the same
/// keep-alive connection.
#[tokio::test]
async fn idle_http1_connection_is_parked_and_served_on() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    let up = Upstream::start("app").await;
    let body = format!(
        "{}[[routes]]\nname = \"all\"\ncluster = \"app\"\n",
        cluster("app", up.addr, "http1")
    );
    let proxy = start(&body, &[]).await;
    let parked = &proxy.running.metrics.parked_connections;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let connection = tokio::spawn(connection);
    let until_parked = |want: i64| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while parked.get() != want {
            assert!(
                std::time::Instant::now() < deadline,
                "parked connections stayed at {}, not {want}",
                parked.get()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    for n in 0..3 {
        let request = http::Request::get(format!("/again/{n}"))
            .header("host", "a")
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = sender
            .send_request(request)
            .await
            .expect("response on the same connection");
        assert_eq!(resp.status(), 200);
        let echo: Value =
            serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes()).expect("json");
        assert_eq!(echo["path"], format!("/again/{n}"));
        until_parked(1).await;
    }
    drop(sender);
    connection
        .await
        .expect("client task")
        .expect("the connection ended cleanly");
    until_parked(0).await;
}

/// Requests one after another reuse one upstream HTTP/1.1 connection,
/// whatever the client speaks and whether the response has a length or is
/// chunked: the connection is back in the pool by the time the client
/// sends its next request.
#[tokio::test]
async fn upstream_connection_is_reused_across_requests() {
    let up = Upstream::start("app").await;
    let body = format!(
        "{}[[routes]]\nname = \"all\"\ncluster = \"app\"\n",
        cluster("app", up.addr, "http1")
    );
    let proxy = start(&body, &[]).await;
    for client in [h1(), h2()] {
        for path in ["/a", "/download/3", "/b"] {
            let resp = client.get(proxy.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            assert!(!resp.bytes().await.unwrap().is_empty(), "{path}");
        }
    }
    assert_eq!(up.connections(), 1);
}

/// An upstream that counts the connections it accepted and the ones that
/// have ended, so a test can see when sluice opens and closes them.
struct CountingUpstream {
    addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ended: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingUpstream {
    /// Accept on a loopback port and run `serve` on each connection.
    async fn start<F, Fut>(serve: F) -> CountingUpstream
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, e) = (accepted.clone(), ended.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, SeqCst);
                let (ended, connection) = (e.clone(), serve(stream));
                tokio::spawn(async move {
                    connection.await;
                    ended.fetch_add(1, SeqCst);
                });
            }
        });
        CountingUpstream { addr, accepted, ended }
    }

    /// HTTP/1.1 written by hand, so the test decides when connections
    /// close: with `close_after_each`, each ends right after one response,
    /// without announcing it (`Connection: close`).
    async fn http1(close_after_each: bool) -> CountingUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        CountingUpstream::start(move |mut stream| async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            'connection: loop {
                let head_end = loop {
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break 'connection,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                buf.drain(..head_end);
                let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(response).await.is_err() || close_after_each {
                    break;
                }
            }
        })
        .await
    }

    /// h2c (hyper's server). With `go_away_after_first`, each connection
    /// answers one request and then shuts down gracefully (GOAWAY): later
    /// requests must go on a new connection.
    async fn h2(go_away_after_first: bool) -> CountingUpstream {
        CountingUpstream::start(move |stream| async move {
            let answered = std::sync::Arc::new(tokio::sync::Notify::new());
            let signal = answered.clone();
            let service = hyper::service::service_fn(move |_req| {
                signal.notify_one();
                async {
                    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"ok"));
                    Ok::<_, std::convert::Infallible>(http::Response::new(body))
                }
            });
            let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            if go_away_after_first {
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = answered.notified() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            } else {
                let _ = conn.await;
            }
        })
        .await
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn ended(&self) -> usize {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A config with an admin listener, one cluster of `protocol` on this
    /// upstream (and `extra` settings), and a route to it.
    fn config(&self, protocol: &str, extra: &str) -> String {
        format!(
            "[admin]\naddress = \"127.0.0.1:0\"\n\n[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\nprotocol = \"{protocol}\"\n{extra}\n[[routes]]\ncluster = \"app\"\n",
            self.addr
        )
    }
}

/// Poll `done` every 20 ms for at most 10 s; panic with `what` if it never holds.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "{what}, after 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A pooled upstream connection left idle for the cluster's `idle_timeout`
/// is closed by sluice (the upstream here never closes one), and the next
/// request opens a new one.
#[tokio::test]
async fn idle_upstream_connection_is_closed_at_the_cluster_idle_timeout() {
    idle_connection_is_closed_at_the_idle_timeout(CountingUpstream::http1(false).await, "http1").await;
}

/// Three requests share one upstream connection; sluice closes it at the
/// cluster's 300 ms `idle_timeout` (the upstream never does), and the next
/// request opens another.
async fn idle_connection_is_closed_at_the_idle_timeout(up: CountingUpstream, protocol: &str) {
    let proxy = start(&up.config(protocol, "idle_timeout = \"300ms\""), &[]).await;
    let client = h1();
    for _ in 0..3 {
        let resp = client.get(proxy.url("/")).send().await.expect("response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), "ok");
    }
    assert_eq!(up.accepted(), 1, "the three requests shared one connection");
    eventually("the idle upstream connection is still open", || async {
        up.ended() == 1
    })
    .await;
    let resp = client.get(proxy.url("/")).send().await.expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(up.accepted(), 2, "a new connection after the idle one was closed");
}

/// An upstream that closes its keep-alive connections after every
/// response, without saying so, costs no request an error: a connection
/// the upstream closed while idle is never used again.
#[tokio::test]
async fn connection_the_upstream_closed_while_idle_is_not_used_again() {
    closed_connection_is_not_used_again(CountingUpstream::http1(true).await, "http1").await;
}

/// Four requests, each answered on a new connection (the upstream closes
/// each after one response); before the next, sluice has seen it end: the
/// cluster counts no open connection.
async fn closed_connection_is_not_used_again(up: CountingUpstream, protocol: &str) {
    let proxy = start(&up.config(protocol, ""), &[]).await;
    let admin = proxy.running.admin.expect("admin listener");
    let client = h1();
    for n in 1..=4 {
        let resp = client.get(proxy.url("/")).send().await.expect("response");
        assert_eq!(resp.status(), 200, "request {n}");
        assert_eq!(resp.text().await.expect("body"), "ok");
        assert_eq!(up.accepted(), n);
        eventually("sluice still counts the closed connection as open", || async {
            let (_, text) = common::admin::admin_get(admin, "/clusters").await;
            let all: Value = serde_json::from_str(&text).expect("/clusters is JSON");
            all["clusters"][0]["circuit_breakers"]["connections"] == 0
        })
        .await;
    }
}

/// Requests to an HTTP/2 cluster share one connection per endpoint, also
/// when they all arrive before it is open: they wait for one dial.
#[tokio::test]
async fn http2_cluster_requests_share_one_upstream_connection() {
    let up = CountingUpstream::h2(false).await;
    let proxy = start(&up.config("http2", ""), &[]).await;
    let requests = (0..12).map(|_| {
        // A client each: twelve client connections, twelve requests at once.
        let client = h1();
        let url = proxy.url("/");
        async move {
            let resp = client.get(url).send().await.expect("response");
            (resp.status(), resp.text().await.expect("body"))
        }
    });
    for (status, body) in futures_util::future::join_all(requests).await {
        assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    }
    assert_eq!(up.accepted(), 1, "twelve requests, one upstream connection");
}

/// sluice lets an HTTP/2 upstream connection go once no request has
/// started on it for the cluster's `idle_timeout`; the next request opens
/// a new one.
#[tokio::test]
async fn idle_http2_upstream_connection_is_closed_at_the_cluster_idle_timeout() {
    idle_connection_is_closed_at_the_idle_timeout(CountingUpstream::h2(false).await, "http2").await;
}

/// An HTTP/2 upstream connection that went away (GOAWAY after its first
/// response) is not used again: each request goes on a new one and none
/// gets an error.
#[tokio::test]
async fn http2_upstream_connection_that_went_away_is_not_used_again() {
    closed_connection_is_not_used_again(CountingUpstream::h2(true).await, "http2").await;
}

/// Requests that wait for an HTTP/2 connection which then cannot be opened
/// fail with its dial rather than each dialing in turn (one connect timeout
/// after another). The upstream takes TLS and never answers the first
/// handshake until the test lets it close the connection; twelve requests
/// arrive meanwhile, and all get 502 from that one dial. The next request
/// dials again.
#[tokio::test]
async fn http2_requests_waiting_for_a_dial_that_fails_fail_with_it() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let certs = tempfile::tempdir().expect("temporary directory");
    let ca = common::tls::Ca::new("test CA").write(certs.path());
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let first = std::sync::Arc::new(AtomicBool::new(true));
    let hold = release.clone();
    let up = CountingUpstream::start(move |stream| {
        let held = first.swap(false, SeqCst).then(|| hold.clone());
        async move {
            if let Some(release) = held {
                release.notified().await;
            }
            drop(stream);
        }
    })
    .await;
    let config = format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n\n[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\
         protocol = \"http2\"\nconnect_timeout = \"60s\"\n[clusters.tls]\nca = \"{}\"\n\n\
         [[routes]]\ncluster = \"app\"\ntimeout = \"60s\"\n",
        up.addr,
        ca.display()
    );
    let proxy = start(&config, &[]).await;
    let admin = proxy.running.admin.expect("admin listener");
    let requests = futures_util::future::join_all((0..12).map(|_| {
        let client = h1();
        let url = proxy.url("/");
        async move { client.get(url).send().await.expect("response").status() }
    }));
    let requests = tokio::spawn(requests);
    eventually("twelve requests are not all waiting at the cluster", || async {
        let (_, text) = common::admin::admin_get(admin, "/clusters").await;
        let all: Value = serde_json::from_str(&text).expect("/clusters is JSON");
        all["clusters"][0]["circuit_breakers"]["requests"] == 12
    })
    .await;
    eventually("the first dial has not reached the upstream", || async {
        up.accepted() == 1
    })
    .await;
    release.notify_one();
    for status in requests.await.expect("requests") {
        assert_eq!(status, 502);
    }
    assert_eq!(up.accepted(), 1, "the waiting requests failed with the one dial");
    let resp = h1().get(proxy.url("/")).send().await.expect("response");
    assert_eq!(resp.status(), 502);
    assert_eq!(up.accepted(), 2, "a later request dials again");
}
