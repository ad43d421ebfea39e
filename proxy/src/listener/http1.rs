//! HTTP/1.1 connections that hold no buffers while idle. A hyper
//! connection keeps a read buffer (8 KiB, grown to 16 by the second
//! request) and a write buffer (8 KiB) for as long as it lives, idle or not.
//! Here a run of requests gets its own hyper connection, and between runs
//! the client connection is *parked*: once a request without a body has
//! been answered (after one with a body, the next one without), nothing has
//! been in flight for [`PARK_AFTER`] and every byte of the response has
//! been handed to the socket, the socket is taken back from hyper (with
//! whatever the client sent after the request) and held alone until the
//! client sends again; then a new hyper connection serves on. Building one
//! costs a few µs of CPU, so a busy connection, whose requests come closer
//! together than `PARK_AFTER`, keeps its own. The client sees one
//! keep-alive connection: pipelined bytes, header limits and timeouts,
//! upgrades and `Connection: close` are hyper's, as before. The gauge
//! `sluice_downstream_connections_parked` counts parked connections.

use super::detect::Rewind;
use super::idle::Activity;
use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How long an HTTP/1.1 connection must have had nothing in flight before
/// it is parked.
pub const PARK_AFTER: Duration = Duration::from_millis(100);

/// The most a parked connection reads at once when the client sends again
/// (on the stack, only while reading; hyper reads the rest of a longer
/// head itself).
const WAKE_READ: usize = 4096;

/// A client connection as its HTTP server sees it: bytes already read from
/// it come first ([`Rewind`]), and whether its last write or flush was left
/// pending (so bytes may still wait in a buffer above the socket) is kept
/// where the connection's task can see it.
pub struct Parkable<S> {
    inner: Rewind<S>,
    blocked: Arc<AtomicBool>,
}

impl<S> Parkable<S> {
    pub fn new(inner: S, prefix: Bytes) -> Parkable<S> {
        Parkable {
            inner: Rewind::new(prefix, inner),
            blocked: Arc::default(),
        }
    }

    /// Whether the unread bytes begin with `bytes`.
    pub fn starts_with(&self, bytes: &[u8]) -> bool {
        self.inner.prefix.starts_with(bytes)
    }

    /// Put `bytes` (a view into hyper's read buffer) before whatever is
    /// still unread. They are copied: even an empty view would keep hyper's
    /// whole buffer alive.
    fn unread(&mut self, bytes: Bytes) {
        let prefix = &mut self.inner.prefix;
        if !bytes.is_empty() {
            let mut joined = BytesMut::with_capacity(bytes.len() + prefix.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(prefix);
            *prefix = joined.freeze();
        }
    }

    fn track<T>(&self, polled: Poll<T>) -> Poll<T> {
        self.blocked.store(polled.is_pending(), Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Parkable<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Parkable<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the client sent next (`None`: it closed, or the read failed).
pub async fn next_bytes<S: AsyncRead + Unpin>(io: &mut S) -> Option<Bytes> {
    poll_fn(|cx| poll_next_bytes(Pin::new(&mut *io), cx)).await
}

/// Poll for what the client sent next. The buffer lives only during the
/// poll, so a parked connection's task does not carry it.
fn poll_next_bytes<S: AsyncRead>(io: Pin<&mut S>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); WAKE_READ];
    let mut read = ReadBuf::uninit(&mut buf);
    match ready!(io.poll_read(cx, &mut read)) {
        Ok(()) if !read.filled().is_empty() => Poll::Ready(Some(Bytes::copy_from_slice(read.filled()))),
        _ => Poll::Ready(None),
    }
}

/// How one hyper connection's run ended.
enum Run {
    /// The client closed, hyper closed or failed, or the connection upgraded.
    Done(hyper::Result<()>),
    /// Between requests with nothing left to write: park.
    Park,
    /// `closing` resolved while requests were served.
    Closing,
}

/// Serve HTTP/1.1 on `io` (its first bytes already in its prefix) until the
/// client closes, hyper closes, or `closing` resolves (then in-flight
/// requests finish, with `Connection: close`). `activity` is the one the
/// service begins its requests on; `parked` counts parked connections.
pub async fn serve<S, Svc>(
    builder: &http1::Builder,
    mut io: Parkable<S>,
    mut service: Svc,
    activity: &Activity,
    mut closing: Pin<&mut impl Future<Output = ()>>,
    parked: &Gauge,
) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: HttpService<Incoming> + Unpin,
    Svc::ResBody: 'static,
    <Svc::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    Svc::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let begun = activity.begun();
        let blocked = io.blocked.clone();
        // Boxed: a parked connection's task does not carry its size.
        let mut conn = Box::new(builder.serve_connection(TokioIo::new(io), service).with_upgrades());
        // Polled only while parkable: its timer wakes the task at most once
        // per PARK_AFTER while requests keep coming.
        let mut settled = std::pin::pin!(activity.idle(PARK_AFTER));
        let run = poll_fn(|cx| {
            if let Poll::Ready(result) = Pin::new(&mut *conn).poll(cx) {
                return Poll::Ready(Run::Done(result));
            }
            // The last request ended and its response left hyper within
            // that poll (hyper drops the response body, then writes and
            // flushes the end of the message).
            if activity.parkable(begun) && !blocked.load(Ordering::Relaxed) && settled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Run::Park);
            }
            match closing.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Run::Closing),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match run {
            Run::Done(result) => return result,
            Run::Closing => {
                Pin::new(&mut *conn).graceful_shutdown();
                return conn.await;
            }
            Run::Park => {}
        }
        let Some(parts) = conn.into_parts() else {
            return Ok(());
        };
        service = parts.service;
        io = parts.io.into_inner();
        io.unread(parts.read_buf);
        if !io.inner.prefix.is_empty() {
            continue; // the client sent on already
        }
        let _parked = Parked::count(parked);
        let next = poll_fn(|cx| {
            if closing.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Closing);
            }
            poll_next_bytes(Pin::new(&mut io.inner), cx).map(|read| read.map_or(Wake::Closed, Wake::Sent))
        })
        .await;
        match next {
            Wake::Sent(bytes) => io.inner.prefix = bytes,
            Wake::Closed => return Ok(()),
            Wake::Closing => {
                let _ = io.inner.shutdown().await;
                return Ok(());
            }
        }
    }
}

/// How a parked connection's wait ended.
enum Wake {
    /// The client sent these bytes.
    Sent(Bytes),
    /// The client closed (or the read failed).
    Closed,
    /// `closing` resolved.
    Closing,
}

/// One parked connection in the gauge, for as long as it lives (however
/// the connection's task ends).
struct Parked<'a>(&'a Gauge);

impl<'a> Parked<'a> {
    fn count(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Parked(gauge)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::idle::ActiveBody;
    use http_body_util::Full;
    use std::convert::Infallible;
    use tokio::io::{AsyncReadExt, DuplexStream};

    /// Serve `http1::serve` on one end of an in-memory connection of
    /// `capacity` bytes each way; every response is `body_len` bytes.
    /// Returns the client end and the parked gauge.
    fn serve_duplex(capacity: usize, body_len: usize) -> (Client, Gauge) {
        let (client, server) = tokio::io::duplex(capacity);
        let parked = Gauge::default();
        let gauge = parked.clone();
        tokio::spawn(async move {
            let activity = Activity::new();
            let in_service = activity.clone();
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                use hyper::body::Body;
                let active = in_service.begin(!req.body().is_end_stream());
                let body = ActiveBody::new(Full::new(Bytes::from(vec![b'x'; body_len])), active);
                async move { Ok::<_, Infallible>(http::Response::new(body)) }
            });
            let closing = std::pin::pin!(std::future::pending::<()>());
            let _ = serve(
                &http1::Builder::new(),
                Parkable::new(server, Bytes::new()),
                service,
                &activity,
                closing,
                &parked,
            )
            .await;
        });
        (
            Client {
                io: client,
                buf: Vec::new(),
            },
            gauge,
        )
    }

    /// The client end and what it read beyond the last response.
    struct Client {
        io: DuplexStream,
        buf: Vec<u8>,
    }

    impl Client {
        async fn send(&mut self, bytes: &[u8]) {
            self.io.write_all(bytes).await.expect("write");
        }

        /// Read one response with a `content-length` body; its body length.
        async fn response(&mut self) -> usize {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                    assert!(head.starts_with("http/1.1 200"), "{head}");
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .expect("content-length");
                    if self.buf.len() >= end + 4 + len {
                        self.buf.drain(..end + 4 + len);
                        return len;
                    }
                }
                let mut chunk = [0u8; 8192];
                let n = self.io.read(&mut chunk).await.expect("read");
                assert!(n > 0, "closed before a whole response");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn parks_between_requests_and_serves_on() {
        let (mut client, parked) = serve_duplex(64 * 1024, 5);
        client.send(GET).await;
        assert_eq!(client.response().await, 5);
        tokio::time::sleep(PARK_AFTER / 2).await;
        assert_eq!(parked.get(), 0, "parked before PARK_AFTER");
        tokio::time::sleep(PARK_AFTER).await;
        assert_eq!(parked.get(), 1, "not parked after PARK_AFTER idle");

        // A head split across the wake-up, then two pipelined requests.
        client.send(&GET[..10]).await;
        tokio::time::sleep(PARK_AFTER / 4).await;
        client.send(&GET[10..]).await;
        assert_eq!(client.response().await, 5);
        assert_eq!(parked.get(), 0);
        client.send(&[GET, GET].concat()).await;
        assert_eq!(client.response().await, 5);
        assert_eq!(client.response().await, 5);
        tokio::time::sleep(PARK_AFTER * 2).await;
        assert_eq!(parked.get(), 1);
        // Pipelined bytes that reached hyper with the request before the
        // park are served after it.
        client.send(&[GET, GET].concat()).await;
        assert_eq!(client.response().await, 5);
        assert_eq!(client.response().await, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_still_in_buffers_is_not_parked() {
        // 1 MiB answered into a 16 KiB pipe that the client does not read:
        // the request is over for the service, but hyper still holds most
        // of the response.
        let (mut client, parked) = serve_duplex(16 * 1024, 1 << 20);
        client.send(GET).await;
        tokio::time::sleep(PARK_AFTER * 5).await;
        assert_eq!(parked.get(), 0, "parked with the response unsent");
        assert_eq!(client.response().await, 1 << 20, "the whole response arrives");
        tokio::time::sleep(PARK_AFTER * 2).await;
        assert_eq!(parked.get(), 1);
        client.send(GET).await;
        assert_eq!(client.response().await, 1 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_request_with_a_body_it_waits_for_one_without() {
        let (mut client, parked) = serve_duplex(64 * 1024, 2);
        client
            .send(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc")
            .await;
        assert_eq!(client.response().await, 2);
        tokio::time::sleep(PARK_AFTER * 3).await;
        assert_eq!(parked.get(), 0, "parked after a request with a body");
        client.send(GET).await;
        assert_eq!(client.response().await, 2);
        tokio::time::sleep(PARK_AFTER * 3).await;
        assert_eq!(parked.get(), 1);
    }

    #[test]
    fn unread_bytes_come_first_and_are_copied() {
        let mut io = Parkable::new((), Bytes::from_static(b"later"));
        let big = Bytes::from(vec![b'a'; 8192]);
        io.unread(big.slice(8190..));
        assert_eq!(&io.inner.prefix[..], b"aalater");
        assert!(
            !big.as_ptr_range().contains(&io.inner.prefix.as_ptr()),
            "still a view into the big buffer"
        );
        io.unread(big.slice(0..0));
        assert_eq!(&io.inner.prefix[..], b"aalater");
        drop(big);
    }
}
