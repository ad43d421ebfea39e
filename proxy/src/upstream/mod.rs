//! Upstream: clusters of endpoints, round-robin balancing, pooled keep-alive
//! clients (HTTP/1.1 or HTTP/2, cleartext or TLS), connect and response
//! timeouts. Connections are opened by the [`connector`].

pub mod connector;

use crate::body::RequestBody;
use crate::config::{Config, UpstreamProtocol};
use crate::error::{BadRequest, ProxyError};
use crate::metrics::{ClusterMetrics, Metrics};
use crate::tls::client::ClientTls;
use connector::Connector;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

type HttpClient = Client<Connector, RequestBody>;

/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One cluster: its endpoints and the clients that reach them.
pub struct Cluster {
    pub name: Arc<str>,
    endpoints: Vec<Authority>,
    next: AtomicUsize,
    protocol: UpstreamProtocol,
    /// `https` for TLS clusters.
    scheme: Scheme,
    default_connect_timeout: Duration,
    /// One pooled client per distinct connect timeout in use.
    clients: Vec<(Duration, HttpClient)>,
    metrics: ClusterMetrics,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// Every cluster of a configuration.
#[derive(Debug, Default)]
pub struct Upstreams {
    clusters: HashMap<Arc<str>, Arc<Cluster>>,
}

impl Upstreams {
    /// Build clients for every cluster; pools start empty. Fails if a
    /// cluster's TLS material is refused by rustls.
    pub fn new(config: &Config, metrics: &Metrics) -> Result<Upstreams, String> {
        let mut overrides: Vec<Duration> = config.routes.iter().filter_map(|r| r.connect_timeout).collect();
        overrides.sort();
        overrides.dedup();
        let clusters = config
            .clusters
            .iter()
            .map(|c| {
                let name: Arc<str> = c.name.as_str().into();
                let tls = match &c.tls {
                    Some(t) => Some(Arc::new(
                        ClientTls::build(t, c.protocol).map_err(|e| format!("clusters `{name}`: {e}"))?,
                    )),
                    None => None,
                };
                let mut timeouts = overrides.clone();
                timeouts.push(c.connect_timeout);
                timeouts.sort();
                timeouts.dedup();
                let clients = timeouts
                    .into_iter()
                    .map(|t| {
                        (
                            t,
                            build_client(c.protocol, Connector::new(name.clone(), t, tls.clone())),
                        )
                    })
                    .collect();
                let endpoints = c.endpoints.iter().filter_map(|e| e.parse().ok()).collect();
                let cluster = Cluster {
                    name: name.clone(),
                    endpoints,
                    next: AtomicUsize::new(0),
                    protocol: c.protocol,
                    scheme: if tls.is_some() { Scheme::HTTPS } else { Scheme::HTTP },
                    default_connect_timeout: c.connect_timeout,
                    clients,
                    metrics: metrics.cluster(&c.name),
                };
                Ok((name, Arc::new(cluster)))
            })
            .collect::<Result<_, String>>()?;
        Ok(Upstreams { clusters })
    }

    /// The cluster with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }
}

fn build_client(protocol: UpstreamProtocol, connector: Connector) -> HttpClient {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    if protocol == UpstreamProtocol::Http2 {
        builder
            .http2_only(true)
            .http2_keep_alive_interval(Some(Duration::from_secs(30)))
            .http2_adaptive_window(true);
    }
    builder.build(connector)
}

impl Cluster {
    /// The next endpoint, round robin.
    fn pick(&self) -> Option<&Authority> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints.get(i)
    }

    fn client(&self, connect_timeout: Option<Duration>) -> Option<&HttpClient> {
        let wanted = connect_timeout.unwrap_or(self.default_connect_timeout);
        self.clients.iter().find(|(t, _)| *t == wanted).map(|(_, c)| c)
    }

    /// Send `req` to one endpoint and wait up to `timeout` for the response
    /// headers. The body streams in both directions.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
        connect_timeout: Option<Duration>,
        timeout: Duration,
    ) -> Result<(Response<Incoming>, Authority), ProxyError> {
        let endpoint = self
            .pick()
            .ok_or_else(|| ProxyError::NoEndpoint(self.name.to_string()))?;
        let client = self
            .client(connect_timeout)
            .ok_or_else(|| ProxyError::NoEndpoint(self.name.to_string()))?;
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(endpoint.clone());
        parts.path_and_query = Some(path);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest(BadRequest::InvalidTarget))?;
        *req.version_mut() = match self.protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::Http2 => Version::HTTP_2,
        };
        let endpoint = endpoint.clone();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, client.request(req)).await;
        self.metrics.duration.observe(started.elapsed().as_secs_f64());
        match result {
            Err(_) => Err(ProxyError::UpstreamTimeout {
                endpoint: endpoint.to_string(),
                timeout,
            }),
            Ok(Ok(resp)) => Ok((resp, endpoint)),
            Ok(Err(e)) if is_timeout(&e) => {
                self.metrics.connect_errors.inc();
                Err(ProxyError::UpstreamConnectTimeout {
                    endpoint: endpoint.to_string(),
                })
            }
            Ok(Err(source)) if downstream_body_failed(&source) => {
                tracing::debug!(error = %source, "request body from the client was malformed or cut short");
                Err(ProxyError::BadRequest(BadRequest::MalformedBody))
            }
            Ok(Err(source)) => {
                if source.is_connect() {
                    self.metrics.connect_errors.inc();
                }
                Err(ProxyError::UpstreamUnreachable {
                    endpoint: endpoint.to_string(),
                    source,
                })
            }
        }
    }
}

/// Whether the upstream request failed because the client's request body
/// did (bad chunked framing, a client gone mid-upload): hyper reports a
/// failing request body as a "user" error.
fn downstream_body_failed(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && h.is_user()
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether a client error was a connect timeout.
fn is_timeout(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = err.source();
    }
    false
}
