//! The opaque TCP relay: an intercepted connection that is not HTTP (the
//! application's own TLS, a database protocol, anything detection cannot
//! tell, or a port listed in `opaque_ports`) is copied byte for byte to its
//! original destination, both ways. A side that finishes sending has its
//! end shut down on the other connection (half-close), so request/response
//! protocols that signal the end of a request by closing keep working. The
//! relay ends when both directions have finished, either side fails, or
//! neither sends a byte for the idle timeout. The client side may be a
//! mesh connection sluice terminated; the destination side is mesh mTLS
//! when the destination runs a sidecar ([`Dialer`]).

use crate::metrics::RelayCounters;
use crate::tls::mesh::Meshed;
use crate::upstream::tcp::Dialer;
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Each direction's copy buffer.
const BUFFER: usize = 16 * 1024;

/// How relays connect and when they give up.
#[derive(Clone)]
pub struct RelaySettings {
    pub dialer: Dialer,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Why a relay ended early.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot reach {destination}: {source}")]
    Connect { destination: SocketAddr, source: io::Error },
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("idle for {0:?}")]
    Idle(Duration),
}

/// Either end of a relay.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connect to `destination`, with mesh mTLS when it runs a sidecar.
async fn connect(destination: SocketAddr, settings: &RelaySettings) -> Result<Box<dyn Io>, RelayError> {
    let failed = |source| RelayError::Connect { destination, source };
    let deadline = Instant::now() + settings.connect_timeout;
    let tcp = settings
        .dialer
        .socket
        .connect(destination, settings.connect_timeout)
        .await
        .map_err(failed)?;
    match settings.dialer.mesh_by(tcp, deadline).await.map_err(failed)? {
        Meshed::No(tcp) => Ok(Box::new(tcp)),
        Meshed::Yes(tls) => Ok(tls),
    }
}

/// Relay `client` to `destination`: `first` (what detection read) goes
/// first, then everything either side sends, until both are done.
pub async fn relay(
    client: impl Io,
    first: Bytes,
    destination: SocketAddr,
    settings: &RelaySettings,
    counters: &RelayCounters,
) -> Result<(), RelayError> {
    let mut upstream = connect(destination, settings).await?;
    counters.open.inc();
    let _open = scopeguard(|| {
        counters.open.dec();
    });
    let activity = Activity::new();
    let copy = async {
        // What detection read goes first, under the idle timeout too.
        if !first.is_empty() {
            upstream.write_all(&first).await?;
            counters.from_client.inc_by(first.len() as u64);
            activity.touch();
        }
        let (client_read, client_write) = tokio::io::split(client);
        let (upstream_read, upstream_write) = tokio::io::split(upstream);
        tokio::try_join!(
            pipe(client_read, upstream_write, &activity, &counters.from_client),
            pipe(upstream_read, client_write, &activity, &counters.from_destination),
        )
    };
    tokio::select! {
        done = copy => done.map(|_| ()).map_err(RelayError::Io),
        _ = activity.idle(settings.idle_timeout) => Err(RelayError::Idle(settings.idle_timeout)),
    }
}

/// Copy `from` to `to` until `from` ends, then shut `to` down for writing.
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    activity: &Activity,
    bytes: &prometheus_client::metrics::counter::Counter,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        bytes.inc_by(n as u64);
        activity.touch();
    }
}

/// When either direction last moved a byte.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let due = last + timeout;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    fn counters() -> RelayCounters {
        RelayCounters {
            from_client: Default::default(),
            from_destination: Default::default(),
            open: Default::default(),
        }
    }

    fn settings(idle_timeout: Duration) -> RelaySettings {
        RelaySettings {
            dialer: Dialer::default(),
            connect_timeout: Duration::from_secs(5),
            idle_timeout,
        }
    }

    /// A relay from a fresh client connection to `destination`; the
    /// client's end and the relay task.
    async fn start(
        destination: SocketAddr,
        first: &'static [u8],
        idle: Duration,
        counters: RelayCounters,
    ) -> (TcpStream, tokio::task::JoinHandle<Result<(), RelayError>>) {
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(front.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = front.accept().await.unwrap();
        let task = tokio::spawn(async move {
            relay(
                accepted,
                Bytes::from_static(first),
                destination,
                &settings(idle),
                &counters,
            )
            .await
        });
        (client, task)
    }

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        // An echo server that answers after the client has finished.
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let destination = server.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            s.write_all(&all).await.unwrap();
        });
        let counters = counters();
        let (mut client, task) = start(destination, b"first ", Duration::from_secs(60), counters.clone()).await;
        client.write_all(b"and the rest").await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"first and the rest");
        task.await.unwrap().unwrap();
        assert_eq!(counters.from_client.get(), 18);
        assert_eq!(counters.from_destination.get(), 18);
        assert_eq!(counters.open.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_silence_since_the_last_byte() {
        let activity = Activity::new();
        tokio::time::sleep(Duration::from_secs(20)).await;
        activity.touch();
        // 30 s after the last byte, not after the start.
        let idle = activity.idle(Duration::from_secs(30));
        tokio::pin!(idle);
        assert!(
            tokio::time::timeout(Duration::from_secs(29), idle.as_mut())
                .await
                .is_err(),
            "idle before 30 s of silence"
        );
        assert!(
            tokio::time::timeout(Duration::from_secs(2), idle).await.is_ok(),
            "not idle after 30 s of silence"
        );
    }

    #[tokio::test]
    async fn ends_when_idle() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let destination = server.local_addr().unwrap();
        let held = tokio::spawn(async move { server.accept().await.unwrap() });
        let idle = Duration::from_millis(100);
        let (_client, task) = start(destination, b"", idle, counters()).await;
        let _server_side = held.await.unwrap();
        match task.await.unwrap() {
            Err(RelayError::Idle(d)) => assert_eq!(d, idle),
            other => panic!("expected an idle end, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unreachable_destination_is_a_connect_error() {
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let destination = gone.local_addr().unwrap();
        drop(gone);
        let (_client, task) = start(destination, b"x", Duration::from_secs(60), counters()).await;
        assert!(matches!(task.await.unwrap(), Err(RelayError::Connect { .. })));
    }
}
