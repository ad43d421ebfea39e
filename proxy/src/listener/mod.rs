//! Listener: accepts TCP connections, completes the TLS handshake on a TLS
//! listener ([`tls`]), records the [`ConnectionFacts`], and serves HTTP/1.1
//! and HTTP/2 on each (told apart by the HTTP/2 connection preface: h2c
//! prior knowledge, or h2 after ALPN), handing every request to the proxy
//! with the generation current at the time it arrived. TLS settings and
//! client limits (`[limits]`) are the generation's at accept time:
//! connections per listener, requests per connection, header size, count
//! and read time, HTTP/2 streams and resets. On shutdown it stops accepting,
//! serves the connections already queued on the socket and closes it (new
//! connections are refused), asks every connection to finish gracefully
//! (HTTP/2 GOAWAY, HTTP/1.1 close after the in-flight response; a
//! connection that has not sent its first request yet still gets it
//! answered) and returns once they have. HTTP/1.1 connections idle between
//! requests are parked, holding only their socket ([`http1`]). An
//! interception listener (sidecar mode, [`intercept`]) first reads each
//! connection's original destination and detects its protocol; what is not
//! HTTP is relayed.

mod detect;
mod http1;
mod idle;
pub mod intercept;
mod sniff;
pub mod tls;

use crate::accept;
use crate::config::ListenerLimits;
use crate::connection::ConnectionFacts;
use crate::generation::Generation;
use crate::proxy;
use crate::telemetry::Telemetry;
use arc_swap::ArcSwap;
use hyper::body::Body;
use hyper::server::conn::{http1 as h1, http2 as h2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// The generation currently serving; swapped whole on reload.
pub type Current = Arc<ArcSwap<Generation>>;

/// Serve connections from `listener` (named `name` in the config) until
/// `stop` turns true, then drain: returns when every connection has
/// finished. Each new connection gets the TLS settings and client limits of
/// the generation current when it is accepted.
pub async fn serve(
    listener: TcpListener,
    name: Arc<str>,
    current: Current,
    telemetry: Arc<Telemetry>,
    intercept: Option<Arc<intercept::Interceptor>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut admission = Admission {
        settings: ServerSettings::new(current.load().config.limits),
        open: Arc::new(AtomicUsize::new(0)),
        local_fallback: listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        name,
        current,
        telemetry,
        intercept,
        stop: stop.clone(),
    };
    let mut connections = JoinSet::new();
    loop {
        let (stream, client) = tokio::select! {
            accepted = accept::next_connection(&listener) => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        admission.admit(&mut connections, stream, client);
    }
    for (stream, client) in accept::take_queued(listener) {
        admission.admit(&mut connections, stream, client);
    }
    while connections.join_next().await.is_some() {}
}

/// What a listener needs to start serving a connection it accepted.
struct Admission {
    settings: ServerSettings,
    /// Connections open on this listener, against `max_connections`.
    open: Arc<AtomicUsize>,
    /// The listener's address, for a connection whose own cannot be read.
    local_fallback: SocketAddr,
    name: Arc<str>,
    current: Current,
    telemetry: Arc<Telemetry>,
    intercept: Option<Arc<intercept::Interceptor>>,
    stop: watch::Receiver<bool>,
}

impl Admission {
    /// Serve `stream` in a task of `connections`, under the generation
    /// current now, or close it at once if the listener is at its
    /// connection limit. A connection accepted during a drain is served
    /// too: its handshake and first request complete (each under its own
    /// timeout), and it closes after that.
    fn admit(&mut self, connections: &mut JoinSet<()>, stream: TcpStream, client: SocketAddr) {
        let metrics = self.telemetry.metrics.clone();
        let generation = self.current.load();
        self.settings.follow(&generation.config.limits);
        let limits = self.settings.limits;
        let Some(slot) = OpenConnection::claim(&self.open, limits.max_connections, &metrics.open_connections) else {
            // Over the connection limit: close at once.
            metrics.rejected_connections.inc();
            tracing::debug!(%client, "connection limit reached; closing");
            return;
        };
        let _ = stream.set_nodelay(true);
        metrics.accepted_connections.inc();
        let tls = generation.listener_tls.get(&*self.name).cloned();
        drop(generation);
        let local = stream.local_addr().unwrap_or(self.local_fallback);
        let facts = ConnectionFacts::cleartext(self.name.clone(), client, local);
        let http = Http {
            current: self.current.clone(),
            builders: self.settings.builders.clone(),
            stop: self.stop.clone(),
            max_requests: limits.max_requests_per_connection,
            idle_timeout: limits.idle_timeout,
            header_read_timeout: limits.header_read_timeout,
            parked: metrics.parked_connections.clone(),
        };
        let intercept = self.intercept.clone();
        // The task holds the cleartext path inline; the TLS and interception
        // paths, whose futures are several times larger (a rustls session
        // inline), are boxed, as is each hyper connection, so an idle
        // cleartext connection's task is 2.2 KB (bench/README.md, idle
        // connections).
        connections.spawn(async move {
            if let Some(intercept) = intercept {
                Box::pin(intercept.serve(stream, facts, http)).await;
                drop(slot);
                return;
            }
            match tls {
                Some(tls) => Box::pin(serve_tls(stream, &tls, facts, http, &metrics)).await,
                None if refuse_tls(&stream, limits.header_read_timeout).await => {
                    metrics.tls.handshake_failed(&facts.listener, "tls_on_cleartext");
                    tracing::debug!(%client, listener = %facts.listener, "TLS ClientHello on a cleartext listener; sent an alert");
                    alert(stream).await;
                }
                None => http.serve(stream, facts).await,
            }
            drop(slot);
        });
    }
}

/// Complete the TLS handshake on `stream`, then serve HTTP on it.
async fn serve_tls(
    stream: TcpStream,
    tls: &crate::tls::server::ServerTls,
    facts: ConnectionFacts,
    http: Http,
    metrics: &crate::metrics::Metrics,
) {
    match tls::accept(stream, tls).await {
        Ok((stream, tls_facts)) => {
            metrics.tls.handshake(&facts.listener, &tls_facts);
            let facts = ConnectionFacts {
                tls: Some(tls_facts),
                ..facts
            };
            http.serve(stream, facts).await;
        }
        Err(failure) => {
            metrics.tls.handshake_failed(&facts.listener, failure.reason);
            tracing::debug!(client = %facts.client, listener = %facts.listener, reason = failure.reason, detail = %failure.detail, "TLS handshake failed");
        }
    }
}

/// Whether a client on a cleartext listener opened with a TLS ClientHello
/// (it gets an alert, not an HTTP 400 it cannot read). Waits at most
/// `timeout` for the first byte; a client that sends nothing is left to
/// the HTTP server's own header timeout.
async fn refuse_tls(stream: &TcpStream, timeout: std::time::Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sniff::first_byte(stream)).await,
        Ok(Some(sniff::TLS_HANDSHAKE))
    )
}

async fn alert(mut stream: TcpStream) {
    let _ = stream.write_all(&sniff::fatal_alert(sniff::HANDSHAKE_FAILURE)).await;
    let _ = stream.shutdown().await;
}

/// What serving HTTP on one connection needs.
struct Http {
    current: Current,
    builders: Arc<Builders>,
    stop: watch::Receiver<bool>,
    max_requests: u32,
    idle_timeout: std::time::Duration,
    header_read_timeout: std::time::Duration,
    /// The parked HTTP/1.1 connections gauge.
    parked: Gauge,
}

impl Http {
    /// Serve requests on `io` until the client closes, the request limit is
    /// reached or the listener drains. The first bytes tell HTTP/2 (its
    /// connection preface: h2c prior knowledge, or ALPN h2) from HTTP/1.1.
    async fn serve<S>(self, mut io: S, facts: ConnectionFacts)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Http {
            current,
            builders,
            mut stop,
            max_requests,
            idle_timeout,
            header_read_timeout,
            parked,
        } = self;
        let activity = idle::Activity::new();
        let in_service = activity.clone();
        let client = facts.client;
        let facts = Arc::new(facts);
        // Requests seen on this connection; the closure owns it.
        let count = AtomicU32::new(0);
        let limit_reached = Arc::new(Notify::new());
        let reached = limit_reached.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let generation = current.load_full();
            if max_requests > 0 && count.fetch_add(1, Ordering::Relaxed) + 1 >= max_requests {
                // The last one: finish it, then close (HTTP/1.1
                // `Connection: close`, HTTP/2 GOAWAY).
                reached.notify_one();
            }
            let facts = facts.clone();
            let active = in_service.begin(!req.body().is_end_stream());
            async move {
                let response = proxy::handle(generation, req, facts).await;
                Ok::<_, Infallible>(response.map(|body| idle::ActiveBody::new(body, active)))
            }
        });
        let quiet = async {
            tokio::select! {
                _ = limit_reached.notified() => {}
                _ = activity.idle(idle_timeout) => {
                    tracing::debug!(%client, "closing an idle connection");
                }
            }
        };
        tokio::pin!(quiet);
        // A drain does not cut this wait short: the client of a connection
        // accepted before the drain may have sent its request already, and
        // closing unanswered would fail a request no server saw. It is served
        // below in closing mode (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY
        // after what the client sent first).
        let first = tokio::select! {
            first = tokio::time::timeout(header_read_timeout, opening(&mut io)) => first.ok().flatten(),
            _ = quiet.as_mut() => None,
        };
        let Some(first) = first else {
            return;
        };
        let closing = async {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => {}
                _ = quiet => {}
            }
        };
        tokio::pin!(closing);
        let io = http1::Parkable::new(io, first);
        let result = if io.starts_with(H2_PREFACE) {
            let connection = builders.h2.serve_connection(TokioIo::new(io), service);
            // Boxed like HTTP/1.1's: the task stays small.
            let mut connection = Box::pin(connection);
            tokio::select! {
                result = connection.as_mut() => result,
                _ = closing => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        } else {
            http1::serve(&builders.h1, io, service, &activity, closing, &parked).await
        };
        if let Err(e) = result {
            tracing::debug!(%client, error = %e, "connection ended with an error");
        }
    }
}

/// HTTP/2's connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The client's first bytes: read on while they could still be the start
/// of the HTTP/2 preface. `None` if it closed first.
async fn opening<S: AsyncRead + Unpin>(io: &mut S) -> Option<bytes::Bytes> {
    let mut first = http1::next_bytes(io).await?;
    while first.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&first) {
        let more = http1::next_bytes(io).await?;
        first = [first, more].concat().into();
    }
    Some(first)
}

/// One connection counted against `max_connections` and in the open
/// connections gauge, until dropped (however its task ends).
struct OpenConnection(Arc<AtomicUsize>, Gauge);

impl OpenConnection {
    /// Count a new connection, unless `max` are open already.
    fn claim(open: &Arc<AtomicUsize>, max: usize, gauge: &Gauge) -> Option<OpenConnection> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()?;
        gauge.inc();
        Some(OpenConnection(open.clone(), gauge.clone()))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.dec();
    }
}

/// The HTTP/1.1 and HTTP/2 server settings for some limits.
struct Builders {
    h1: h1::Builder,
    h2: h2::Builder<TokioExecutor>,
}

/// The server settings built from the limits in force, rebuilt when a
/// reload changes them.
struct ServerSettings {
    limits: ListenerLimits,
    builders: Arc<Builders>,
}

impl ServerSettings {
    fn new(limits: ListenerLimits) -> Self {
        ServerSettings {
            builders: Arc::new(builders(&limits)),
            limits,
        }
    }

    /// Take `limits` if they differ from the ones in use.
    fn follow(&mut self, limits: &ListenerLimits) {
        if *limits != self.limits {
            *self = ServerSettings::new(*limits);
        }
    }
}

/// The HTTP/1.1 + HTTP/2 server settings for `limits`.
fn builders(limits: &ListenerLimits) -> Builders {
    let mut h1 = h1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    let mut h2 = h2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
        // WebSocket over HTTP/2 (RFC 8441), for routes that allow it.
        .enable_connect_protocol();
    Builders { h1, h2 }
}
