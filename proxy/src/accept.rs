//! Accept loops, shared by every listener sluice runs (the proxy listener,
//! the admin listener, the demo upstream and the test upstream).
//!
//! An accept error is one of two kinds. Most (`ECONNABORTED`, `EPROTO`,
//! `EPERM` from a firewall, the network errors Linux passes on from a
//! pending connection) concern one connection only: the next `accept` can
//! succeed at once, so pausing would only delay the clients queued behind
//! it. The others mean the process or the system is out of a resource
//! (`EMFILE`, `ENFILE`, `ENOMEM`, `ENOBUFS`): the pending connection stays
//! in the queue and `accept` fails again immediately, so retrying at once
//! would spin a core. [`next_connection`] retries the first kind at once and
//! backs off on the second, from [`BACKOFF_MIN`] doubling up to
//! [`BACKOFF_MAX`]; the back-off starts again from the minimum on each call,
//! that is after every accepted connection.
//!
//! [`next_connection`] is cancel-safe, so it can be one arm of a
//! `tokio::select!`: while it sleeps it holds no connection, and
//! [`TcpListener::accept`] is itself cancel-safe.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The first pause after a resource-exhaustion error.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause: consecutive exhaustion errors double the pause up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Something that accepts connections: [`TcpListener`], or a scripted fake
/// in tests.
pub trait Accept {
    /// An accepted connection.
    type Conn;
    /// Accept one connection. Must be cancel-safe.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    type Conn = TcpStream;

    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        // The inherent method, not this one.
        TcpListener::accept(self)
    }
}

/// Whether an accept error means the process or system ran out of a
/// resource (descriptors, memory, socket buffers), so that retrying at once
/// would fail again.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    ) || e.kind() == io::ErrorKind::OutOfMemory
}

/// Accept the next connection from `listener`, riding out errors: those of
/// one connection are logged at debug and retried at once; resource
/// exhaustion is logged as a warning (once per pause) and retried after a
/// growing pause. Never returns an error.
pub async fn next_connection<A: Accept>(listener: &A) -> (A::Conn, SocketAddr) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) if is_resource_exhaustion(&e) => {
                tracing::warn!(error = %e, pause = ?backoff, "accept failed: out of resources; pausing");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => tracing::debug!(error = %e, "accept failed for one connection; going on"),
        }
    }
}

/// Close `listener`, first taking the connections the kernel has already
/// completed and queued on it. Closing a socket resets those, failing any
/// request their clients already sent, so a draining listener serves them.
/// Stops at the first error other than one connection's own.
pub fn take_queued(listener: TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    // The socket itself, not the reactor's readiness, which may not have
    // seen the newest connections yet.
    let Ok(listener) = listener.into_std() else {
        return Vec::new();
    };
    let mut queued = Vec::new();
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let stream = stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream));
                match stream {
                    Ok(stream) => queued.push((stream, peer)),
                    Err(e) => tracing::debug!(error = %e, %peer, "a queued connection could not be served"),
                }
            }
            // One connection's own failure; the next may be fine.
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::debug!(error = %e, "taking queued connections stopped");
                }
                return queued;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// Yields a scripted sequence of results: `Err(errno)` or `Ok(conn)`.
    struct Script(Mutex<VecDeque<Result<u32, i32>>>);

    impl Script {
        fn new(steps: impl IntoIterator<Item = Result<u32, i32>>) -> Script {
            Script(Mutex::new(steps.into_iter().collect()))
        }

        fn remaining(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl Accept for Script {
        type Conn = u32;

        fn accept(&self) -> impl Future<Output = io::Result<(u32, SocketAddr)>> + Send {
            let step = self.0.lock().unwrap().pop_front().expect("script ran out");
            let addr = SocketAddr::from(([127, 0, 0, 1], 4000));
            std::future::ready(step.map(|conn| (conn, addr)).map_err(io::Error::from_raw_os_error))
        }
    }

    /// Run `next_connection` over `steps`; the connection and the time it took
    /// on the (paused) clock.
    async fn run(steps: impl IntoIterator<Item = Result<u32, i32>>) -> (u32, Duration) {
        let script = Script::new(steps);
        let start = Instant::now();
        let (conn, _) = next_connection(&script).await;
        assert_eq!(script.remaining(), 0, "stopped before the end of the script");
        (conn, start.elapsed())
    }

    #[test]
    fn classifies_errors() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert!(
                is_resource_exhaustion(&io::Error::from_raw_os_error(errno)),
                "errno {errno}"
            );
        }
        for errno in [
            libc::ECONNABORTED,
            libc::EPROTO,
            libc::EPERM,
            libc::EINTR,
            libc::ENETDOWN,
        ] {
            assert!(
                !is_resource_exhaustion(&io::Error::from_raw_os_error(errno)),
                "errno {errno}"
            );
        }
        assert!(is_resource_exhaustion(&io::ErrorKind::OutOfMemory.into()));
        assert!(!is_resource_exhaustion(&io::Error::other("something else")));
    }

    #[tokio::test(start_paused = true)]
    async fn connection_at_once_takes_no_time() {
        assert_eq!(run([Ok(1)]).await, (1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn per_connection_errors_are_retried_at_once() {
        let steps = [Err(libc::ECONNABORTED), Err(libc::EPROTO), Err(libc::EPERM), Ok(2)];
        assert_eq!(run(steps).await, (2, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn each_exhaustion_error_pauses() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert_eq!(run([Err(errno), Ok(3)]).await, (3, BACKOFF_MIN), "errno {errno}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pause_doubles_up_to_the_cap() {
        let steps = std::iter::repeat_n(Err(libc::EMFILE), 9).chain([Ok(4)]);
        // 10 + 20 + 40 + 80 + 160 + 320 + 640 + 1000 + 1000 ms.
        assert_eq!(run(steps).await, (4, Duration::from_millis(3270)));
    }

    #[tokio::test(start_paused = true)]
    async fn per_connection_error_neither_pauses_nor_resets_the_pause() {
        let steps = [Err(libc::EMFILE), Err(libc::ECONNABORTED), Err(libc::EMFILE), Ok(5)];
        assert_eq!(run(steps).await, (5, BACKOFF_MIN + 2 * BACKOFF_MIN));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_starts_over_after_a_connection() {
        let script = Script::new([Err(libc::EMFILE), Err(libc::EMFILE), Ok(6), Err(libc::EMFILE), Ok(7)]);
        let start = Instant::now();
        assert_eq!(next_connection(&script).await.0, 6);
        assert_eq!(start.elapsed(), BACKOFF_MIN * 3);
        let start = Instant::now();
        assert_eq!(next_connection(&script).await.0, 7);
        assert_eq!(start.elapsed(), BACKOFF_MIN);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_during_a_pause_loses_nothing() {
        let script = Script::new([Err(libc::EMFILE), Ok(8)]);
        let cancelled = tokio::time::timeout(BACKOFF_MIN / 2, next_connection(&script)).await;
        assert!(cancelled.is_err(), "returned during the pause");
        assert_eq!(script.remaining(), 1, "the connection was taken by the cancelled call");
        assert_eq!(next_connection(&script).await.0, 8);
    }

    #[tokio::test]
    async fn accepts_from_a_tcp_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(TcpStream::connect(addr));
        let (stream, peer) = next_connection(&listener).await;
        let client = client.await.unwrap().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(stream.local_addr().unwrap(), addr);
    }

    #[tokio::test]
    async fn takes_every_queued_connection_then_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Completed by the kernel, never accepted.
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let queued = take_queued(listener);
        let mut peers: Vec<_> = queued.iter().map(|(_, peer)| *peer).collect();
        let mut expected: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        peers.sort();
        expected.sort();
        assert_eq!(peers, expected);
        // The taken connections work under tokio.
        let (mut stream, _) = queued.into_iter().next().unwrap();
        let client = clients
            .iter_mut()
            .find(|c| Some(c.local_addr().unwrap()) == stream.peer_addr().ok());
        tokio::io::AsyncWriteExt::write_all(client.unwrap(), b"x")
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte)
            .await
            .unwrap();
        assert_eq!(&byte, b"x");
        // And the listening socket is closed.
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }
}
