//! The upstream connector: opens one connection to one endpoint for the
//! pooled HTTP client — TCP, then TLS when the cluster has `tls` (SNI, ALPN,
//! client certificate and identity check from [`ClientTls`]). One connect
//! timeout covers both. This is where new transports plug in; balancing
//! and health sit above it and see only `Connector`.

use super::breaker::{Gate, LimitReached, Slot};
use super::tcp::Dialer;
use crate::tls::client::ClientTls;
use crate::tls::mesh::Meshed;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens connections to a cluster's endpoints.
#[derive(Clone)]
pub struct Connector {
    dialer: Dialer,
    tls: Option<Arc<ClientTls>>,
    connect_timeout: Duration,
    cluster: Arc<str>,
    /// The cluster's `max_connections`.
    connections: Gate,
}

impl Connector {
    pub fn new(
        cluster: Arc<str>,
        connect_timeout: Duration,
        tls: Option<Arc<ClientTls>>,
        connections: Gate,
        dialer: Dialer,
    ) -> Connector {
        Connector {
            dialer,
            tls,
            connect_timeout,
            cluster,
            connections,
        }
    }
}

/// An upstream connection: plain TCP or TLS over it.
/// Each holds its place under the cluster's `max_connections` until closed.
pub enum Conn {
    Plain(TokioIo<TcpStream>, Slot),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>, Slot),
}

/// The TLS handshake with an upstream did not complete.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {endpoint} failed: {detail}")]
pub struct UpstreamTlsError {
    pub endpoint: String,
    /// What went wrong, readable (an identity mismatch says both identities).
    pub detail: String,
    #[source]
    pub source: std::io::Error,
}

/// A handshake error as a reader wants it: rustls prints a certificate
/// check of ours with `Debug`; say its own message instead.
fn describe(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            format!("invalid peer certificate: {}", other.0)
        }
        _ => e.to_string(),
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        let tls = self.tls.clone();
        let (timeout, cluster) = (self.connect_timeout, self.cluster.clone());
        let slot = self.connections.claim();
        Box::pin(async move {
            let slot = slot.map_err(|limit| Box::new(LimitReached(limit)) as BoxError)?;
            // One connect timeout for TCP and TLS together.
            let deadline = tokio::time::Instant::now() + timeout;
            let host = uri.host().ok_or_else(|| format!("`{uri}` has no host"))?;
            let port = uri.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
            let tcp = dialer.socket.connect_host(host, port, timeout).await?;
            let endpoint = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let Some(tls) = tls else {
                // No TLS of its own: mesh mTLS if the endpoint runs a sidecar.
                return meshed(&dialer, tcp, deadline, slot, &cluster, endpoint).await;
            };
            let name = match &tls.server_name {
                Some(name) => name.clone(),
                None => host_name(&uri)?,
            };
            let handshake = TlsConnector::from(tls.config.clone()).connect(name, tcp);
            let result = match tokio::time::timeout_at(deadline, handshake).await {
                Ok(result) => result,
                Err(_) => Err(timed_out()),
            };
            match result {
                Ok(stream) => Ok(Conn::Tls(Box::new(TokioIo::new(stream)), slot)),
                Err(source) => Err(tls_failed(&cluster, endpoint, source)),
            }
        })
    }
}

/// `tcp` as a connection: mesh mTLS if its peer runs a sidecar, within
/// `deadline`; a failed handshake is logged as the cluster's.
pub(super) async fn meshed(
    dialer: &Dialer,
    tcp: TcpStream,
    deadline: tokio::time::Instant,
    slot: Slot,
    cluster: &str,
    endpoint: String,
) -> Result<Conn, BoxError> {
    match dialer.mesh_by(tcp, deadline).await {
        Ok(Meshed::No(tcp)) => Ok(Conn::Plain(TokioIo::new(tcp), slot)),
        Ok(Meshed::Yes(tls)) => Ok(Conn::Tls(Box::new(TokioIo::new(*tls)), slot)),
        Err(source) => Err(tls_failed(cluster, endpoint, source)),
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
}

/// A failed handshake with `endpoint`, logged, as the client's error.
fn tls_failed(cluster: &str, endpoint: String, source: std::io::Error) -> BoxError {
    let detail = describe(&source);
    tracing::warn!(%cluster, %endpoint, error = %detail, "upstream TLS handshake failed");
    Box::new(UpstreamTlsError {
        endpoint,
        detail,
        source,
    })
}

/// The endpoint's host as a TLS server name (DNS name or IP address).
fn host_name(uri: &Uri) -> Result<ServerName<'static>, BoxError> {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("`{host}` is not a TLS server name: {e}").into())
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Plain(io, _) => io.connected(),
            Conn::Tls(io, _) => {
                let (tcp, session) = io.inner().get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl Read for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io, _) => Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io, _) => Pin::new(io).poll_write(cx, buf),
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io, _) => Pin::new(io).poll_flush(cx),
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io, _) => Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(io, _) => io.is_write_vectored(),
            Conn::Tls(io, _) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io, _) => Pin::new(io).poll_write_vectored(cx, bufs),
            Conn::Tls(io, _) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}
