//! A real HTTP/1.1 + h2c upstream on an ephemeral loopback port (or on a
//! listener made elsewhere: [`Upstream::from_std`]). It answers
//!
//! - `/slow/<ms>/…`: waits `ms` milliseconds, then echoes;
//! - `/download/<bytes>`: streams that many bytes (64 KiB chunks);
//! - `/pattern/<bytes>`: the same with byte `i` = `i % 251`, so order and
//!   loss show in the content;
//! - `/status/<code>`: an empty response with that status;
//! - anything else: a JSON echo of method, path (with query), version,
//!   `:authority` (HTTP/2), headers (every value, in order), body length and body SHA-256. The
//!   body is hashed as it streams in, never buffered.

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Infallible>;

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Start on `127.0.0.1:0`, naming itself `name` in echoes.
    pub async fn start(name: &str) -> Upstream {
        Upstream::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind upstream")
    }

    /// Start on `addr` (e.g. `127.0.0.3:<port>`), naming itself `name` in
    /// echoes; the bind error when the address is taken.
    pub async fn start_on(name: &str, addr: SocketAddr) -> std::io::Result<Upstream> {
        let listener = TcpListener::bind(addr).await?;
        Upstream::serve(name, listener)
    }

    /// Serve on a listener bound elsewhere, e.g. inside another network
    /// namespace (a socket stays in the namespace it was made in). Call
    /// from within a tokio runtime: the server runs on it.
    pub fn from_std(name: &str, listener: std::net::TcpListener) -> Upstream {
        listener.set_nonblocking(true).expect("nonblocking upstream listener");
        let listener = TcpListener::from_std(listener).expect("register upstream listener with tokio");
        Upstream::serve(name, listener).expect("upstream listener address")
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn serve(name: &str, listener: TcpListener) -> std::io::Result<Upstream> {
        let addr = listener.local_addr()?;
        let name = name.to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = sluice::accept::next_connection(&listener).await;
                count.fetch_add(1, Ordering::SeqCst);
                let name = name.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| respond(name.clone(), req));
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    // Room for every header line the proxy lets a filter add
                    // (hyper's default is 100), so tests see what arrived.
                    builder.http1().max_headers(1000);
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Upstream { addr, task, accepted })
    }
}

async fn respond(name: String, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some("slow"), Some(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            echo(name, req).await
        }
        (Some("download"), Some(n)) => {
            let chunk = Bytes::from(vec![b'x'; CHUNK]);
            Ok(streamed(n.parse().unwrap_or(0), move |start, end| {
                chunk.slice(..end - start)
            }))
        }
        (Some("pattern"), Some(n)) => Ok(streamed(n.parse().unwrap_or(0), |start, end| {
            (start..end).map(pattern_byte).collect::<Vec<u8>>().into()
        })),
        (Some("status"), Some(code)) => {
            let mut resp = Response::new(Full::new(Bytes::new()).boxed());
            *resp.status_mut() = code
                .parse()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
            Ok(resp)
        }
        _ => echo(name, req).await,
    }
}

/// Byte `i` of a `/pattern/` body.
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// Chunk size of `/download/` and `/pattern/` bodies.
const CHUNK: usize = 64 * 1024;

/// A body of `total` bytes streamed in chunks; `chunk(start, end)` makes
/// bytes `start..end`.
fn streamed(total: usize, chunk: impl Fn(usize, usize) -> Bytes + Send + Sync + 'static) -> Response<Body> {
    let frames = stream::iter((0..total.div_ceil(CHUNK)).map(move |i| {
        let start = i * CHUNK;
        Ok::<_, Infallible>(Frame::data(chunk(start, total.min(start + CHUNK))))
    }));
    let mut resp = Response::new(StreamBody::new(frames).boxed());
    resp.headers_mut().insert("content-length", total.into());
    resp
}

async fn echo(name: String, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut hasher = Sha256::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            hasher.update(data);
            len += data.len();
        }
    }
    let mut headers: Vec<serde_json::Value> = Vec::new();
    for (k, v) in parts.headers.iter() {
        headers.push(serde_json::json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]));
    }
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let reply = serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", parts.version),
        // HTTP/2's `:authority` (HTTP/1.1 requests arrive in origin form: null).
        "authority": parts.uri.authority().map(|a| a.as_str()),
        "headers": headers,
        "body_len": len,
        "body_sha256": digest,
    });
    let mut resp = Response::new(Full::new(Bytes::from(reply.to_string())).boxed());
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("static header"));
    resp.headers_mut().insert(
        "x-upstream",
        name.parse()
            .unwrap_or_else(|_| "upstream".parse().expect("static header")),
    );
    Ok(resp)
}
