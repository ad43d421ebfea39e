//! Sidecar mode: what sluice needs beside one application whose traffic
//! iptables redirects to it — reading where a redirected connection was
//! going ([`original_destination`]), relaying what is not HTTP as opaque
//! TCP ([`relay`]), and writing the redirection rules ([`iptables`]).
//! Which listeners intercept is their `intercept` key; how, is
//! `[sidecar]` in the config.

pub mod iptables;
pub mod relay;

use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Where `stream` was addressed before a `REDIRECT` rule sent it here
/// (`SO_ORIGINAL_DST`, or `IP6T_SO_ORIGINAL_DST` on IPv6). A connection
/// that was not redirected reports its own local address.
pub fn original_destination(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let socket = socket2::SockRef::from(stream);
    let local = stream.local_addr()?;
    let original = match local {
        SocketAddr::V4(_) => socket.original_dst_v4(),
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => socket.original_dst_v4(),
        SocketAddr::V6(_) => socket.original_dst_v6(),
    };
    match original {
        Ok(address) => address
            .as_socket()
            .ok_or_else(|| std::io::Error::other("the original destination is not an IP address")),
        // No NAT entry, or no connection tracking at all: not redirected.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOPROTOOPT)) => Ok(local),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_direct_connection_reports_its_own_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        // Without conntrack the call fails with ENOENT; with it, the entry
        // names this very address. Either way: the listener's address.
        assert_eq!(original_destination(&accepted).unwrap(), addr);
    }
}
