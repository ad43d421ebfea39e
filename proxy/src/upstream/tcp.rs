//! Opening TCP connections towards upstreams: the one place that sets
//! their socket options — no delay, keep-alive, and in sidecar mode the
//! `SO_MARK` that lets the iptables rules tell sluice's own connections
//! from the application's (which they redirect back to sluice) — and, in
//! a mesh, that upgrades a connection to another sidecar to mutual TLS
//! ([`Dialer`]). Cluster connectors, the original-destination passthrough
//! and the TCP relay all connect through here.

use crate::tls::mesh::{MeshHandle, Meshed};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// TCP keep-alive idle time on upstream connections.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// How sluice's upstream sockets are set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_MARK` for every upstream socket (`[sidecar] mark`).
    pub mark: Option<u32>,
}

impl SocketOptions {
    /// The options `config` asks for.
    pub fn of(config: &crate::config::Config) -> SocketOptions {
        SocketOptions {
            mark: config.bootstrap.sidecar.as_ref().and_then(|s| s.mark),
        }
    }

    /// Whether this process may set these options (a mark needs
    /// CAP_NET_ADMIN): checked at start, so a sidecar that cannot mark its
    /// connections says so instead of failing every request.
    pub fn check(self) -> io::Result<()> {
        if let Some(mark) = self.mark {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            socket.set_mark(mark)?;
        }
        Ok(())
    }

    /// Connect to `addr`, failing with `TimedOut` after `timeout`.
    pub async fn connect(self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        match tokio::time::timeout(timeout, self.connect_now(addr)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out"),
            )),
        }
    }

    /// Connect to `host:port` (an IP address or a name to resolve), trying
    /// each address in turn, all within `timeout`.
    pub async fn connect_host(self, host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
        let deadline = tokio::time::Instant::now() + timeout;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
                Ok(found) => found?.collect(),
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "name lookup timed out")),
            },
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("`{host}` has no address"));
        for addr in addrs {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.connect(addr, left).await {
                Ok(stream) => return Ok(stream),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn connect_now(self, addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_nodelay(true)?;
        let sock = socket2::SockRef::from(&socket);
        sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(KEEPALIVE))?;
        if let Some(mark) = self.mark {
            sock.set_mark(mark)?;
        }
        socket.connect(addr).await
    }
}

/// Socket options and the mesh: how every upstream connection is made.
#[derive(Clone, Default)]
pub struct Dialer {
    pub socket: SocketOptions,
    pub mesh: MeshHandle,
}

impl Dialer {
    /// Upgrade `tcp` to mesh mTLS if its peer runs a sidecar (`[mesh]`
    /// `networks` or `ports`); else hand it back. A connection to this
    /// host itself (loopback, or the address it leaves from — the pod's
    /// own application) is never meshed: that is the inbound side.
    pub async fn mesh(&self, tcp: TcpStream) -> io::Result<Meshed> {
        // Without `[mesh]` (a gateway, most often) nothing more to look at.
        if self.mesh.load().is_none() {
            return Ok(Meshed::No(tcp));
        }
        let (Some(mesh), Ok(peer), Ok(local)) = (self.mesh.load_full(), tcp.peer_addr(), tcp.local_addr()) else {
            return Ok(Meshed::No(tcp));
        };
        if peer.ip().is_loopback() || peer.ip() == local.ip() {
            return Ok(Meshed::No(tcp));
        }
        mesh.connect(tcp, peer).await
    }

    /// [`Dialer::mesh`], given up at `deadline` with a `TimedOut` error
    /// (one connect timeout covers TCP and the handshake).
    pub async fn mesh_by(&self, tcp: TcpStream, deadline: tokio::time::Instant) -> io::Result<Meshed> {
        match tokio::time::timeout_at(deadline, self.mesh(tcp)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_by_address_and_by_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = SocketOptions::default();
        let stream = options.connect(addr, Duration::from_secs(5)).await.unwrap();
        assert!(stream.nodelay().unwrap());
        options
            .connect_host("localhost", addr.port(), Duration::from_secs(5))
            .await
            .unwrap();
        options
            .connect_host("127.0.0.1", addr.port(), Duration::from_secs(5))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn refused_is_an_error_not_a_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = SocketOptions::default()
            .connect(addr, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
