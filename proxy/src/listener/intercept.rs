//! Interception listeners (sidecar mode): each accepted connection was
//! redirected by iptables from where the client meant it to go. Read that
//! original destination, refuse connections addressed to sluice itself (a
//! loop, or a client reaching a sidecar port directly), then either relay
//! the bytes untouched (an opaque port, TLS, anything not HTTP) or serve
//! HTTP with the direction and the destination in the connection facts,
//! where routes and filters see them. A client that sends nothing within
//! the detection timeout is closed, so it cannot hold the sidecar's
//! resources. With `[mesh]`, an inbound TLS connection that offers the
//! mesh's ALPN is another sidecar: sluice completes the mutual TLS
//! handshake and serves what it carries with the caller's verified
//! identity in the facts; in strict mode nothing else gets in.

use super::Http;
use super::detect::{self, DetectError, Protocol, Rewind};
use crate::config::{Direction, MtlsMode, SidecarConfig};
use crate::connection::{ConnectionFacts, Interception};
use crate::metrics::Metrics;
use crate::sidecar::{self, relay};
use crate::tls::mesh::MeshTls;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// What an interception listener needs besides what every listener has.
#[derive(Clone)]
pub struct Interceptor {
    pub direction: Direction,
    pub sidecar: SidecarConfig,
    /// Every port sluice listens on (listeners and admin): a connection
    /// whose original destination is one of them, on this host, is refused.
    pub own_ports: Vec<u16>,
    pub relay: relay::RelaySettings,
    pub metrics: Arc<Metrics>,
}

impl Interceptor {
    /// Whether `destination` is sluice itself. Inbound destinations are
    /// always this pod; outbound ones only on a loopback address or the
    /// address the connection was accepted on.
    fn is_own(&self, destination: SocketAddr, local: SocketAddr) -> bool {
        let here = self.direction == Direction::Inbound
            || destination.ip().is_loopback()
            || destination.ip() == local.ip()
            || destination.ip().is_unspecified();
        here && self.own_ports.contains(&destination.port())
    }

    /// Serve one intercepted connection to the end.
    pub(super) async fn serve(&self, mut stream: TcpStream, facts: ConnectionFacts, http: Http) {
        let direction = self.direction.as_str();
        let listener = facts.listener.clone();
        let destination = match sidecar::original_destination(&stream) {
            Ok(destination) => destination,
            Err(e) => {
                tracing::warn!(client = %facts.client, error = %e, "cannot read the original destination; closing");
                return;
            }
        };
        if self.is_own(destination, facts.local) {
            self.metrics.sidecar.closed(&listener, direction, "loop");
            tracing::debug!(client = %facts.client, %destination, "connection addressed to sluice itself; refused");
            return;
        }
        let facts = ConnectionFacts {
            interception: Some(Interception {
                direction: self.direction,
                original_destination: destination,
            }),
            ..facts
        };
        let mesh = match self.direction {
            Direction::Inbound => http.current.load().upstreams.mesh(),
            Direction::Outbound => None,
        };
        let opaque = self.sidecar.is_opaque(destination.port());
        if opaque && mesh.is_none() {
            return self.forward(stream, Bytes::new(), Protocol::Opaque, facts, http).await;
        }
        let strict = mesh.as_ref().is_some_and(|m| m.config.mtls == MtlsMode::Strict);
        // One allowance for everything before serving: detection, and in a
        // mesh the ClientHello, the handshake and detection inside it.
        let deadline = tokio::time::Instant::now() + self.sidecar.detect_timeout;
        let (protocol, first) = match tokio::time::timeout_at(deadline, detect::detect(&mut stream)).await {
            Ok(Ok(found)) => found,
            Ok(Err(DetectError::Closed)) => return,
            Ok(Err(DetectError::Io(e))) => {
                tracing::debug!(client = %facts.client, error = %e, "connection failed during protocol detection");
                return;
            }
            // An opaque port's server may speak first: relay (unless only
            // the mesh may come in).
            Err(_) if opaque && !strict => (Protocol::Opaque, Bytes::new()),
            Err(_) => {
                self.metrics.sidecar.closed(&listener, direction, "detect_timeout");
                tracing::debug!(client = %facts.client, %destination, "no protocol detected in time; closing");
                return;
            }
        };
        let Some(mesh) = mesh else {
            return self.forward(stream, first, protocol, facts, http).await;
        };
        let (is_mesh, first) = match protocol {
            Protocol::Tls => match tokio::time::timeout_at(deadline, detect::mesh_hello(&mut stream, first)).await {
                Ok(Ok(read)) => read,
                Ok(Err(_)) => return,
                Err(_) => {
                    self.metrics.sidecar.closed(&listener, direction, "detect_timeout");
                    return;
                }
            },
            _ => (false, first),
        };
        if is_mesh {
            let stream = Rewind::new(first, stream);
            return self.serve_mesh(stream, &mesh, opaque, deadline, facts, http).await;
        }
        if strict {
            self.metrics.sidecar.closed(&listener, direction, "not_mesh");
            tracing::debug!(client = %facts.client, %destination, "not mesh mTLS, and `[mesh] mtls = \"strict\"`; closing");
            return;
        }
        // On an opaque port what was read is relayed, whatever it looked like.
        let protocol = if opaque { Protocol::Opaque } else { protocol };
        self.forward(stream, first, protocol, facts, http).await
    }

    /// Terminate a mesh connection: the handshake (the caller's certificate
    /// checked against the trust bundle), then whatever it carries, seen
    /// with the caller's identity in the connection facts.
    async fn serve_mesh(
        &self,
        stream: Rewind<TcpStream>,
        mesh: &MeshTls,
        opaque: bool,
        deadline: tokio::time::Instant,
        facts: ConnectionFacts,
        http: Http,
    ) {
        let listener = facts.listener.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(mesh.server.clone());
        let mut tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                let failure = super::tls::classify(&e);
                self.metrics.tls.handshake_failed(&listener, failure.reason);
                tracing::debug!(client = %facts.client, reason = failure.reason, detail = %failure.detail, "mesh handshake failed");
                return;
            }
            Err(_) => {
                self.metrics.tls.handshake_failed(&listener, "timeout");
                return;
            }
        };
        let tls_facts = match super::tls::facts(tls.get_ref().1) {
            Ok(found) => found,
            Err(failure) => {
                self.metrics.tls.handshake_failed(&listener, failure.reason);
                return;
            }
        };
        self.metrics.tls.handshake(&listener, &tls_facts);
        let facts = ConnectionFacts {
            tls: Some(tls_facts),
            ..facts
        };
        if opaque {
            return self.forward(tls, Bytes::new(), Protocol::Opaque, facts, http).await;
        }
        match tokio::time::timeout_at(deadline, detect::detect(&mut tls)).await {
            Ok(Ok((protocol, first))) => self.forward(tls, first, protocol, facts, http).await,
            Ok(Err(_)) => {}
            Err(_) => {
                let direction = self.direction.as_str();
                self.metrics.sidecar.closed(&listener, direction, "detect_timeout");
            }
        }
    }

    /// Serve HTTP on `stream` (after `first`, the bytes detection read), or
    /// relay it to the original destination.
    async fn forward<S: relay::Io + 'static>(
        &self,
        stream: S,
        first: Bytes,
        protocol: Protocol,
        facts: ConnectionFacts,
        http: Http,
    ) {
        let direction = self.direction.as_str();
        self.metrics
            .sidecar
            .intercepted(&facts.listener, direction, protocol.label());
        if protocol.is_http() {
            http.serve(Rewind::new(first, stream), facts).await;
            return;
        }
        let Some(destination) = facts.interception.map(|i| i.original_destination) else {
            return;
        };
        let counters = self.metrics.sidecar.relay(direction);
        if let Err(e) = relay::relay(stream, first, destination, &self.relay, &counters).await {
            if matches!(e, relay::RelayError::Connect { .. }) {
                self.metrics.sidecar.relay_connect_failed(direction);
            }
            tracing::debug!(client = %facts.client, %destination, error = %e, "TCP relay ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interceptor(direction: Direction) -> Interceptor {
        let config = crate::config::Config::parse(
            std::path::Path::new("pod.toml"),
            "[[listeners]]\naddress = \"0.0.0.0:15006\"\nintercept = \"inbound\"\n",
        )
        .unwrap();
        Interceptor {
            direction,
            sidecar: config.bootstrap.sidecar.unwrap(),
            own_ports: vec![15006, 15001, 15020],
            relay: relay::RelaySettings {
                dialer: Default::default(),
                connect_timeout: std::time::Duration::from_secs(1),
                idle_timeout: std::time::Duration::from_secs(1),
            },
            metrics: Arc::new(Metrics::default()),
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn refuses_connections_to_sluice_itself() {
        let inbound = interceptor(Direction::Inbound);
        let local = addr("10.0.0.2:15006");
        // Inbound: any address of this pod on a sidecar port.
        assert!(inbound.is_own(addr("10.0.0.2:15006"), local));
        assert!(inbound.is_own(addr("10.0.0.2:15020"), local));
        assert!(!inbound.is_own(addr("10.0.0.2:8080"), local));
        let outbound = interceptor(Direction::Outbound);
        let local = addr("127.0.0.1:15001");
        assert!(outbound.is_own(addr("127.0.0.1:15001"), local));
        assert!(outbound.is_own(addr("[::1]:15020"), addr("[::1]:15001")));
        // Another pod's sidecar port is just a destination.
        assert!(!outbound.is_own(addr("10.0.0.3:15006"), local));
        assert!(!outbound.is_own(addr("127.0.0.1:8080"), local));
    }
}
