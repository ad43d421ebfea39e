//! Hostile and malformed input at the edge, over real loopback sockets:
//! malformed HTTP/1.1 request lines and headers (400), oversized heads
//! (431), slow header senders (cut off after `header_read_timeout`),
//! request-smuggling shapes (400, never forwarded, nothing smuggled behind
//! them), abusive HTTP/2 clients (too many streams, rapid reset, ping
//! flood) and the per-connection limits of `[limits]`. A recording upstream
//! proves what was, and was not, forwarded.

// The recording upstream below stands in for common's echo `Upstream`.
#[allow(unused_imports)]
mod common;

use bytes::Bytes;
use common::h2_raw::*;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};

const SECOND: Duration = Duration::from_secs(1);

// A recording upstream: every request path in arrival order (recorded when
// the head arrives, before the body is read), and the peak number of
// `/slow/<ms>/…` requests in flight at once. Answers 200 "ok".

#[derive(Default)]
struct Seen {
    paths: Mutex<Vec<String>>,
    slow_in_flight: AtomicUsize,
    slow_max_in_flight: AtomicUsize,
}

impl Seen {
    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// Start the recording upstream; it lives as long as the test's runtime.
async fn recorder() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
    let addr = listener.local_addr().expect("recorder addr");
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = shared.clone();
            let service = hyper::service::service_fn(move |req| record(seen.clone(), req));
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, seen)
}

async fn record(seen: Arc<Seen>, req: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    seen.paths.lock().unwrap().push(path.clone());
    let slow = path
        .strip_prefix("/slow/")
        .and_then(|p| p.split('/').next()?.parse().ok());
    if let Some(ms) = slow {
        let now = seen.slow_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.slow_max_in_flight.fetch_max(now, Ordering::SeqCst);
        sleep(Duration::from_millis(ms)).await;
        seen.slow_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    let _ = req.into_body().collect().await;
    Ok(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// A recording upstream and sluice in front of it with `limits` as the
/// `[limits]` table and one catch-all route.
async fn proxy(limits: &str) -> (Arc<Seen>, TestProxy) {
    let (addr, seen) = recorder().await;
    let body = format!(
        "[limits]\n{limits}\n\n[[clusters]]\nname = \"app\"\nendpoints = [\"{addr}\"]\n\n[[routes]]\nname = \"all\"\ncluster = \"app\"\n"
    );
    (seen, start(&body, &[]).await)
}

/// Another client, on its own connection, is served meanwhile.
async fn assert_others_served(proxy: &TestProxy) {
    let resp = timeout(5 * SECOND, h1().get(proxy.url("/other")).send())
        .await
        .expect("another client was not answered within 5 s")
        .expect("another client's request failed");
    assert_eq!(resp.status(), 200, "another client");
}

// Raw HTTP/1.1.

/// A response's status and head (status line and header lines).
struct Resp {
    status: u16,
    head: String,
}

impl Resp {
    /// The first value of header `name`, lowercased.
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of the complete chunked body (no trailers) at the start of
/// `b`, or `None` while incomplete.
fn chunked_len(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = find(&b[at..], b"\r\n")?;
        let size = std::str::from_utf8(&b[at..at + line]).ok()?.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        at += line + 2 + size + 2;
        if b.len() < at {
            return None;
        }
        if size == 0 {
            return Some(at);
        }
    }
}

/// Remove one complete response from the front of `buf`, if there is one.
fn take_response(buf: &mut Vec<u8>) -> Option<Resp> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let resp = Resp { status, head };
    let body_len = if status == 204 || status == 304 {
        0
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|te| te.ends_with("chunked"))
    {
        chunked_len(&buf[head_end..])?
    } else {
        resp.header("content-length").map_or(Some(0), |n| n.parse().ok())?
    };
    if buf.len() < head_end + body_len {
        return None;
    }
    buf.drain(..head_end + body_len);
    Some(resp)
}

/// A raw client connection and the bytes it has read but not consumed.
struct Raw {
    conn: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let conn = TcpStream::connect(addr).await.expect("connect to sluice");
        Raw { conn, buf: Vec::new() }
    }

    /// Write `bytes`, ignoring errors: the proxy may have closed already.
    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.conn.write_all(bytes).await;
    }

    /// Read more bytes; false at EOF or on an error (e.g. a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.conn.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next complete response, or `None` when the connection ends first.
    async fn response(&mut self) -> Option<Resp> {
        let read = async {
            loop {
                if let Some(resp) = take_response(&mut self.buf) {
                    return Some(resp);
                }
                if !self.fill().await {
                    return None;
                }
            }
        };
        timeout(5 * SECOND, read)
            .await
            .expect("neither a response nor a close within 5 s")
    }

    /// Wait for the proxy to close the connection; the bytes that arrived
    /// (and were not consumed) before it did.
    async fn closed_within(&mut self, within: Duration) -> Vec<u8> {
        let drain = async { while self.fill().await {} };
        timeout(within, drain)
            .await
            .unwrap_or_else(|_| panic!("connection still open after {within:?}"));
        std::mem::take(&mut self.buf)
    }
}

/// Send `request` on a new connection: the connection and the first response.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (Raw, Option<Resp>) {
    let mut raw = Raw::connect(addr).await;
    raw.send(request).await;
    let resp = raw.response().await;
    (raw, resp)
}

/// `request` gets `status`, then the connection is closed with nothing more
/// on it (in particular no response to a request smuggled behind it).
async fn rejected_and_closed(addr: SocketAddr, what: &str, request: &[u8], status: u16) {
    let (mut raw, resp) = exchange(addr, request).await;
    assert_eq!(resp.as_ref().map(|r| r.status), Some(status), "{what}: first response");
    let rest = raw.closed_within(2 * SECOND).await;
    assert!(
        find(&rest, b"HTTP/1.").is_none(),
        "{what}: a second response followed: {:?}",
        text(&rest)
    );
}

/// The status of the first response to `request` on a new connection.
async fn status_of(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    exchange(addr, request).await.1.map(|r| r.status)
}

/// `GET path` with a Host header.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n")
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[tokio::test]
async fn malformed_request_lines_and_headers_get_400() {
    let (up, proxy) = proxy("").await;
    let cases: [(&str, &[u8]); 9] = [
        ("garbage request line", b"GARBAGE\r\n\r\n"),
        ("unknown version", b"GET / HTTP/9.9\r\nHost: a\r\n\r\n"),
        ("space in the target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("control byte in the target", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("header without colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-Broken\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-Name : v\r\n\r\n"),
        ("ctl byte in name", b"GET / HTTP/1.1\r\nHost: a\r\nX-\x01: v\r\n\r\n"),
        ("( in a name", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n b\r\n\r\n"),
    ];
    for (what, request) in cases {
        rejected_and_closed(proxy.addr, what, request, 400).await;
    }
    // sluice itself answers a missing Host (the connection may stay open).
    let status = status_of(proxy.addr, b"GET /no-host HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, Some(400), "HTTP/1.1 without Host");
    assert!(up.paths().is_empty(), "forwarded: {:?}", up.paths());
    assert_eq!(status_of(proxy.addr, get("/fine").as_bytes()).await, Some(200));
    assert_eq!(up.paths(), ["/fine"]);
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let (up, proxy) = proxy("max_header_bytes = 16384\nmax_headers = 20").await;
    let with_value =
        |path: &str, len: usize| format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "v".repeat(len));
    let with_count = |path: &str, n: usize| {
        let headers: String = (0..n).map(|i| format!("X-H{i}: {i}\r\n")).collect();
        format!("GET {path} HTTP/1.1\r\nHost: a\r\n{headers}\r\n")
    };
    let status = status_of(proxy.addr, with_value("/4k", 4096).as_bytes()).await;
    assert_eq!(status, Some(200), "a 4 KiB header is within 16 KiB");
    let big = with_value("/32k", 32 * 1024);
    rejected_and_closed(proxy.addr, "32 KiB header", big.as_bytes(), 431).await;
    let status = status_of(proxy.addr, with_count("/10", 10).as_bytes()).await;
    assert_eq!(status, Some(200), "11 headers are within 20");
    rejected_and_closed(proxy.addr, "31 headers", with_count("/30", 30).as_bytes(), 431).await;
    assert_eq!(up.paths(), ["/4k", "/10"]);
}

#[tokio::test]
async fn slow_header_sender_is_cut_off() {
    let (up, proxy) = proxy("header_read_timeout = \"500ms\"").await;
    // A head in two pieces that completes in time is served.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(b"GET /prompt HTTP/1.1\r\nHost: a\r\n").await;
    sleep(Duration::from_millis(100)).await;
    raw.send(b"\r\n").await;
    assert_eq!(raw.response().await.map(|r| r.status), Some(200));

    // A head that never completes is cut off: not early, not never.
    let mut slow = Raw::connect(proxy.addr).await;
    let begun = Instant::now();
    slow.send(b"GET /never HTTP/1.1\r\nHost: a\r\n").await;
    let got = slow.closed_within(5 * SECOND).await;
    let waited = begun.elapsed();
    assert!(waited >= Duration::from_millis(400), "cut off after only {waited:?}");
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "unexpected answer to an incomplete head: {:?}",
        text(&got)
    );
    assert_eq!(up.paths(), ["/prompt"]);
}

/// A request smuggled behind each rejected one.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

/// Each `(what, version, framing)` request, `POST /x` with `framing` header
/// lines and the body `0\r\n\r\n` + [`SMUGGLED`], gets 400, the connection
/// closes, and the upstream sees none of them.
async fn assert_smuggling_rejected(cases: &[(&str, &str, &str)]) {
    let (up, proxy) = proxy("").await;
    for (what, version, framing) in cases {
        let request = format!("POST /x HTTP/{version}\r\nHost: a\r\n{framing}\r\n\r\n0\r\n\r\n{SMUGGLED}");
        rejected_and_closed(proxy.addr, what, request.as_bytes(), 400).await;
    }
    // Anything forwarded would have reached the upstream by now.
    sleep(Duration::from_millis(300)).await;
    assert!(up.paths().is_empty(), "forwarded: {:?}", up.paths());
    assert_eq!(status_of(proxy.addr, get("/after").as_bytes()).await, Some(200));
    assert_eq!(up.paths(), ["/after"]);
}

#[tokio::test]
async fn ambiguous_framing_is_rejected_and_not_forwarded() {
    assert_smuggling_rejected(&[
        ("two Content-Lengths", "1.1", "Content-Length: 5\r\nContent-Length: 6"),
        ("Content-Length list", "1.1", "Content-Length: 5, 6"),
        ("signed Content-Length", "1.1", "Content-Length: +5"),
        ("TE gzip", "1.1", "Transfer-Encoding: gzip"),
        ("chunked not last", "1.1", "Transfer-Encoding: chunked, gzip"),
        ("TE xchunked", "1.1", "Transfer-Encoding: xchunked"),
        ("space before colon", "1.1", "Transfer-Encoding : chunked"),
        ("folded TE", "1.1", "Transfer-Encoding: gzip\r\n chunked"),
        ("TE in HTTP/1.0", "1.0", "Transfer-Encoding: chunked"),
    ])
    .await;
}

/// Both `Content-Length` and `Transfer-Encoding: chunked`: hyper applies
/// RFC 9112 §6.3 (chunked wins, the length is discarded, the connection is
/// closed after the response), so the request reaches the upstream once,
/// re-framed unambiguously, and the bytes after the chunked body are never
/// served as a second request.
#[tokio::test]
async fn content_length_with_chunked_is_never_forwarded_ambiguously() {
    let (up, proxy) = proxy("").await;
    for (what, framing) in [
        ("CL then TE", "Content-Length: 5\r\nTransfer-Encoding: chunked"),
        ("TE then CL", "Transfer-Encoding: chunked\r\nContent-Length: 5"),
    ] {
        let request = format!("POST /x HTTP/1.1\r\nHost: a\r\n{framing}\r\n\r\n0\r\n\r\n{SMUGGLED}");
        rejected_and_closed(proxy.addr, what, request.as_bytes(), 200).await;
    }
    sleep(Duration::from_millis(300)).await;
    assert_eq!(up.paths(), ["/x", "/x"], "the smuggled request was served");
}

#[tokio::test]
async fn invalid_chunk_size_is_rejected_and_not_forwarded() {
    let (up, proxy) = proxy("").await;
    let request = format!(
        "POST /bad-chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{SMUGGLED}"
    );
    rejected_and_closed(proxy.addr, "invalid chunk size", request.as_bytes(), 400).await;
    sleep(Duration::from_millis(300)).await;
    assert!(up.paths().is_empty(), "forwarded: {:?}", up.paths());
}

// Connection limits.

#[tokio::test]
async fn max_connections_refuses_the_excess() {
    let (up, proxy) = proxy("max_connections = 5").await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(Raw::connect(proxy.addr).await);
    }
    sleep(Duration::from_millis(200)).await;
    let mut sixth = Raw::connect(proxy.addr).await;
    sixth.send(get("/sixth").as_bytes()).await;
    let got = sixth.closed_within(2 * SECOND).await;
    assert!(
        find(&got, b" 200 ").is_none(),
        "the sixth connection was served: {:?}",
        text(&got)
    );
    for (i, raw) in held.iter_mut().enumerate() {
        raw.send(get(&format!("/held{i}")).as_bytes()).await;
        assert_eq!(raw.response().await.map(|r| r.status), Some(200), "held connection {i}");
    }
    drop(held);
    // The slots free up once the proxy has seen the closes.
    let deadline = Instant::now() + 5 * SECOND;
    loop {
        if status_of(proxy.addr, get("/again").as_bytes()).await == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new connection served 5 s after the others closed"
        );
        sleep(Duration::from_millis(50)).await;
    }
    assert!(!up.paths().iter().any(|p| p == "/sixth"), "forwarded: {:?}", up.paths());
}

#[tokio::test]
async fn h1_max_requests_per_connection() {
    let (up, proxy) = proxy("max_requests_per_connection = 3").await;
    let mut raw = Raw::connect(proxy.addr).await;
    for i in 1..=3 {
        raw.send(get(&format!("/r{i}")).as_bytes()).await;
        let resp = raw
            .response()
            .await
            .unwrap_or_else(|| panic!("no response to request {i}"));
        assert_eq!(resp.status, 200, "request {i}");
        let close = resp.header("connection").is_some_and(|c| c.contains("close"));
        assert_eq!(
            close,
            i == 3,
            "request {i}: connection: close on the last only\n{}",
            resp.head
        );
    }
    let rest = raw.closed_within(2 * SECOND).await;
    assert!(rest.is_empty(), "bytes after the last response: {:?}", text(&rest));
    assert_eq!(up.paths(), ["/r1", "/r2", "/r3"]);
}

// HTTP/2 with the h2 crate.

type H2Send = h2::client::SendRequest<Bytes>;

async fn h2_handshake(addr: SocketAddr) -> (H2Send, h2::client::Connection<TcpStream, Bytes>) {
    let tcp = TcpStream::connect(addr).await.expect("connect to sluice");
    h2::client::handshake(tcp).await.expect("h2 handshake")
}

/// GET `url` on `send`'s connection: the status, once the body has ended.
async fn h2_get(send: &H2Send, url: &str) -> Result<u16, h2::Error> {
    let mut send = send.clone().ready().await?;
    let request = http::Request::get(url).body(()).expect("request");
    let (response, _) = send.send_request(request, true)?;
    let response = timeout(5 * SECOND, response)
        .await
        .expect("no h2 response within 5 s")?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(status)
}

#[tokio::test]
async fn h2_max_requests_per_connection_sends_goaway() {
    let (up, proxy) = proxy("max_requests_per_connection = 3").await;
    let (send, connection) = h2_handshake(proxy.addr).await;
    let connection = tokio::spawn(connection);
    for i in 1..=3 {
        let status = h2_get(&send, &proxy.url(&format!("/r{i}"))).await;
        assert_eq!(status.expect("request"), 200, "request {i}");
    }
    // The GOAWAY follows the third request, or at the latest answers a fourth,
    // which is then not served on this connection.
    let deadline = Instant::now() + 3 * SECOND;
    let err = loop {
        match send.clone().ready().await {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => sleep(Duration::from_millis(50)).await,
            Ok(_) => match h2_get(&send, &proxy.url("/r4")).await {
                Ok(status) => panic!("a fourth request was served on the same connection: {status}"),
                Err(e) => break e,
            },
        }
    };
    assert!(
        err.is_go_away() || err.reason() == Some(h2::Reason::REFUSED_STREAM),
        "expected a GOAWAY, got {err:?}"
    );
    let _ = timeout(5 * SECOND, connection)
        .await
        .expect("connection still open 5 s after the GOAWAY")
        .expect("connection task");
    assert_eq!(up.paths(), ["/r1", "/r2", "/r3"]);
}

/// An h2c connection (preface and empty SETTINGS sent), split.
async fn h2_raw(addr: SocketAddr) -> (OwnedReadHalf, OwnedWriteHalf) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to sluice");
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    tcp.write_all(&hello).await.expect("h2 preface");
    tcp.into_split()
}

/// Write `bytes` from a task that then keeps the write half open (the proxy
/// may stop reading, and a close would end the connection on its own).
fn write_behind(mut wr: OwnedWriteHalf, bytes: Vec<u8>) -> tokio::task::JoinHandle<OwnedWriteHalf> {
    tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    })
}

/// Frames until a GOAWAY (its error code) or the end of the connection (`None`).
async fn until_goaway(rd: &mut OwnedReadHalf) -> Option<u32> {
    while let Some(f) = read_frame(rd).await {
        if f.kind == GOAWAY {
            return Some(f.code());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_over_the_limit_are_refused_or_queued() {
    let (up, proxy) = proxy("h2_max_concurrent_streams = 10").await;
    let (mut rd, mut wr) = h2_raw(proxy.addr).await;
    // 50 slow requests at once, without waiting for the proxy's SETTINGS.
    let burst: Vec<u8> = (0..50).flat_map(|i| get_frame(2 * i + 1, "/slow/500/x")).collect();
    wr.write_all(&burst).await.expect("write requests");
    let others = async {
        sleep(Duration::from_millis(100)).await;
        assert_others_served(&proxy).await;
    };
    let (mut ok, mut refused, mut done) = (HashSet::new(), HashSet::new(), HashSet::new());
    let outcomes = async {
        while done.len() < 50 {
            let f = read_frame(&mut rd)
                .await
                .expect("connection closed before every stream ended");
            match f.kind {
                // :status 200 is HPACK static index 8.
                HEADERS if f.payload.first() == Some(&0x88) => {
                    ok.insert(f.stream);
                }
                RST_STREAM if f.code() == REFUSED_STREAM => {
                    refused.insert(f.stream);
                }
                RST_STREAM => panic!("stream {} reset with code {}", f.stream, f.code()),
                GOAWAY => panic!("GOAWAY with code {}", f.code()),
                _ => {}
            }
            let ended = matches!(f.kind, HEADERS | DATA) && f.flags & END_STREAM != 0;
            if ended || f.kind == RST_STREAM {
                done.insert(f.stream);
            }
        }
    };
    let (finished, ()) = tokio::join!(timeout(20 * SECOND, outcomes), others);
    finished.expect("not every stream ended within 20 s");
    assert!(ok.is_disjoint(&refused), "streams both answered and refused");
    let (ok, refused) = (ok.len(), refused.len());
    assert_eq!(ok + refused, 50, "{ok} answered 200, {refused} refused");
    assert!(ok >= 10, "only {ok} streams served");
    let peak = up.slow_max_in_flight.load(Ordering::SeqCst);
    assert!((1..=10).contains(&peak), "{peak} requests in flight upstream at once");
    drop(wr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_is_bounded() {
    let (up, proxy) = proxy("h2_max_pending_reset_streams = 20").await;
    let (mut rd, wr) = h2_raw(proxy.addr).await;
    let burst: Vec<u8> = (0..1000u32)
        .flat_map(|i| [get_frame(2 * i + 1, "/reset"), rst_frame(2 * i + 1, CANCEL)].concat())
        .collect();
    let writer = write_behind(wr, burst);
    let goaway = timeout(10 * SECOND, until_goaway(&mut rd))
        .await
        .expect("neither a GOAWAY nor a close within 10 s of 1000 rapid resets");
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "GOAWAY code (None: closed without one)"
    );
    assert_others_served(&proxy).await;
    let forwarded = up.paths().iter().filter(|p| *p == "/reset").count();
    assert!(forwarded < 1000, "all {forwarded} reset streams were forwarded");
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_ping_flood_is_bounded() {
    const PINGS: usize = 10_000;
    let (_up, proxy) = proxy("").await;
    let (mut rd, wr) = h2_raw(proxy.addr).await;
    let burst: Vec<u8> = (0..PINGS as u64)
        .flat_map(|i| frame(PING, 0, 0, &i.to_be_bytes()))
        .collect();
    let writer = write_behind(wr, burst);
    // Every PING is answered, or the proxy gives up on the connection with a GOAWAY.
    let reader = tokio::spawn(async move {
        let (mut acks, mut goaway) = (0, None);
        while let Some(f) = read_frame(&mut rd).await {
            match f.kind {
                PING if f.flags & ACK != 0 => acks += 1,
                GOAWAY => goaway = Some(f.code()),
                _ => {}
            }
            if acks == PINGS || goaway.is_some() {
                break;
            }
        }
        (acks, goaway)
    });
    assert_others_served(&proxy).await;
    let (acks, goaway) = timeout(20 * SECOND, reader)
        .await
        .expect("ping flood neither answered nor cut off within 20 s")
        .expect("reader task");
    assert!(
        acks == PINGS || goaway.is_some(),
        "{acks} of {PINGS} PINGs answered, no GOAWAY"
    );
    writer.abort();

    // A client pinging politely on its own connection is answered, and served.
    let (send, mut connection) = h2_handshake(proxy.addr).await;
    let mut ping_pong = connection.ping_pong().expect("ping_pong");
    tokio::spawn(connection);
    for _ in 0..100 {
        timeout(5 * SECOND, ping_pong.ping(h2::Ping::opaque()))
            .await
            .expect("no PONG within 5 s")
            .expect("ping");
    }
    assert_eq!(h2_get(&send, &proxy.url("/after-pings")).await.expect("request"), 200);
}
