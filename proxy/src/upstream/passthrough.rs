//! The original-destination cluster (`original-destination`): in sidecar
//! mode, an intercepted request that no configured cluster claims goes
//! where the client was sending it. There is no endpoint list — the
//! destination comes with each request from the connection facts — and
//! one pooled client per protocol keys its connections by destination, so
//! each destination gets its own keep-alive pool. The protocol is the one
//! the client spoke: an application that opened h2c gets h2c onward.
//! Connections carry the sidecar's socket mark, so the iptables rules let
//! them out instead of redirecting them back.

use super::UpstreamBody;
use super::connector::Conn;
use super::retry;
use super::tcp::{Dialer, SocketOptions};
use crate::body::RequestBody;
use crate::config::ORIGINAL_DESTINATION;
use crate::error::{BadRequest, ProxyError, UpstreamFailure};
use crate::metrics::ClusterMetrics;
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Pooled connections stay open this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Clients for original destinations.
pub struct Passthrough {
    dialer: Dialer,
    connect_timeout: Duration,
    http1: Client<DirectConnector, RequestBody>,
    http2: Client<DirectConnector, RequestBody>,
    metrics: ClusterMetrics,
}

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passthrough")
            .field("socket", &self.dialer.socket)
            .finish()
    }
}

impl Passthrough {
    pub fn new(dialer: Dialer, connect_timeout: Duration, metrics: ClusterMetrics) -> Passthrough {
        let connector = DirectConnector {
            dialer: dialer.clone(),
            timeout: connect_timeout,
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        let http1 = builder.build(connector.clone());
        builder
            .http2_only(true)
            .http2_keep_alive_interval(Some(Duration::from_secs(30)))
            .http2_adaptive_window(true);
        let http2 = builder.build(connector);
        Passthrough {
            dialer,
            connect_timeout,
            http1,
            http2,
            metrics,
        }
    }

    /// Whether this passthrough was built with these settings (kept across
    /// reloads when so).
    pub fn built_with(&self, socket: SocketOptions, connect_timeout: Duration) -> bool {
        self.dialer.socket == socket && self.connect_timeout == connect_timeout
    }

    /// Send `req` to `destination` in the protocol it arrived in, waiting
    /// up to `timeout` for the response headers. The `Host` header is left
    /// as the client wrote it.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
        destination: SocketAddr,
        timeout: Duration,
    ) -> Result<retry::Sent, ProxyError> {
        let authority = Authority::try_from(destination.to_string().as_str())
            .map_err(|_| ProxyError::BadRequest(BadRequest::InvalidTarget))?;
        super::retarget(&mut req, Scheme::HTTP, authority.clone())?;
        // An upgrade (a WebSocket, even one that arrived over HTTP/2) is
        // an HTTP/1.1 handshake upstream.
        let upgrade = req.headers().contains_key(http::header::UPGRADE);
        let client = if req.version() == Version::HTTP_2 && !upgrade {
            &self.http2
        } else {
            *req.version_mut() = Version::HTTP_11;
            &self.http1
        };
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, client.request(req)).await;
        self.metrics.duration.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(response)) => Ok(retry::Sent {
                response: response.map(|inner| UpstreamBody::new(inner, None, None)),
                endpoint: authority,
            }),
            Ok(Err(e)) => Err(retry::classify(e, &authority, ORIGINAL_DESTINATION, &self.metrics)),
            Err(_) => Err(ProxyError::Upstream {
                endpoint: destination.to_string(),
                failure: UpstreamFailure::Timeout(timeout),
                source: None,
            }),
        }
    }
}

/// Connects to the request URI's own address (with mesh mTLS when it runs
/// a sidecar).
#[derive(Clone)]
struct DirectConnector {
    dialer: Dialer,
    timeout: Duration,
}

impl tower_service::Service<Uri> for DirectConnector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (dialer, timeout) = (self.dialer.clone(), self.timeout);
        Box::pin(async move {
            let host = uri.host().ok_or("no destination host")?;
            let port = uri.port_u16().ok_or("no destination port")?;
            let deadline = tokio::time::Instant::now() + timeout;
            let tcp = dialer.socket.connect_host(host, port, timeout).await?;
            // Pooled connections to original destinations are not limited.
            let slot = super::breaker::Gate::unlimited()
                .claim()
                .map_err(|limit| Box::new(super::breaker::LimitReached(limit)) as BoxError)?;
            super::connector::meshed(
                &dialer,
                tcp,
                deadline,
                slot,
                ORIGINAL_DESTINATION,
                format!("{host}:{port}"),
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_with_compares_socket_options_and_timeout() {
        let metrics = crate::metrics::Metrics::default();
        let through = Passthrough::new(
            Dialer::default(),
            Duration::from_secs(5),
            metrics.cluster(ORIGINAL_DESTINATION),
        );
        assert!(through.built_with(SocketOptions::default(), Duration::from_secs(5)));
        assert!(!through.built_with(SocketOptions { mark: Some(7) }, Duration::from_secs(5)));
        assert!(!through.built_with(SocketOptions::default(), Duration::from_secs(1)));
    }
}
