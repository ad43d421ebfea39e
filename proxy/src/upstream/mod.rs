//! Upstream: clusters of endpoints and how a request reaches one of them.
//! Each concern is its own piece, as Pingora keeps them: [`discovery`]
//! (static addresses, DNS names) feeds the endpoint set, [`health`] and
//! [`outlier`] take endpoints out of it, the [`balancer`] picks one, the
//! [`connector`] opens connections (TCP, TLS) under the [`breaker`]'s
//! limits, [`pool`] keeps HTTP/1.1 ones open between requests, [`retry`]
//! drives the attempts of one request within its [`budget`], and [`body`]
//! streams the response on.

pub mod balancer;
mod body;
pub mod breaker;
pub mod budget;
mod claims;
pub mod clock;
pub mod connector;
mod discovery;
pub mod dns;
pub mod endpoint;
mod h2_connection;
mod health;
mod outlier;
pub mod passthrough;
mod pool;
pub mod retry;
pub mod tcp;

use crate::body::RequestBody;
use crate::config::{ClusterConfig, Config, UpstreamProtocol};
use crate::error::{BadRequest, ProxyError, UpstreamFailure};
use crate::metrics::{ClusterMetrics, Metrics, UpstreamMetrics};
use crate::names::NameMap;
use crate::tls::client::ClientTls;
use crate::tls::mesh::{MeshHandle, MeshTls};
use balancer::{Balancer, Pick};
pub use body::{Held, StreamDurationReached, UpstreamBody};
use breaker::Breakers;
use budget::RetryBudget;
use clock::{Clock, SystemClock};
use connector::Connector;
use discovery::Discovery;
use endpoint::{Endpoint, InFlight};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use outlier::{Outcome, OutlierDetector};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// One cluster: its endpoints, how they are chosen and kept healthy, the
/// connectors that reach them, and its limits.
pub struct Cluster {
    pub name: Arc<str>,
    /// What it was built from, to reuse it across reloads when unchanged.
    config: ClusterConfig,
    connect_timeouts: Vec<Duration>,
    /// The `[dns]` settings its names are resolved with.
    dns: crate::config::DnsConfig,
    discovery: Arc<Discovery>,
    balancer: Balancer,
    outlier: Option<OutlierDetector>,
    budget: RetryBudget,
    breakers: Breakers,
    clock: Arc<dyn Clock>,
    protocol: UpstreamProtocol,
    /// `https` for TLS clusters.
    scheme: Scheme,
    /// A connector per connect timeout in use, with which endpoints dial
    /// their connections (see `exchange`).
    connectors: Vec<(Duration, Connector)>,
    metrics: ClusterMetrics,
    upstream_metrics: UpstreamMetrics,
    /// Health checks and DNS refreshes; stopped with the cluster.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("name", &self.name).finish()
    }
}

/// Every cluster of a configuration.
#[derive(Debug, Default)]
pub struct Upstreams {
    clusters: NameMap<Arc<Cluster>>,
    /// Sidecar mode: where unclaimed intercepted requests go.
    passthrough: Option<Arc<passthrough::Passthrough>>,
    /// Sidecar mode: clusters that claim outbound destinations or services.
    claims: claims::Claims,
    /// `[mesh]`: the serving settings, in a handle shared with the
    /// previous generation's (kept clusters and pools read it).
    mesh: MeshHandle,
    /// This generation's `[mesh]` settings, put in `mesh` by
    /// [`Upstreams::commit_mesh`] when the generation starts serving.
    next_mesh: Option<Arc<MeshTls>>,
}

impl Upstreams {
    /// Build every cluster: resolve DNS names, start health checks. A
    /// cluster whose settings (TLS material included) did not change since
    /// `previous` is kept as it is — pools, health, ejections, budget and
    /// all. A changed one starts from the previous one's DNS answers, in
    /// case the names do not resolve now. Fails if a cluster's TLS material
    /// is refused by rustls.
    pub async fn new(config: &Config, metrics: &Metrics, previous: Option<&Upstreams>) -> Result<Upstreams, String> {
        let mut overrides: Vec<Duration> = config.routes.iter().filter_map(|r| r.connect_timeout).collect();
        overrides.sort();
        overrides.dedup();
        let mut resolver: Option<Arc<dns::Resolver>> = None;
        let mut clusters = NameMap::default();
        let mesh = previous.map(|p| p.mesh.clone()).unwrap_or_default();
        let built = match (&config.mesh, mesh.load_full()) {
            (None, _) => None,
            (Some(m), Some(old)) if old.config == *m => Some(old),
            (Some(m), _) => Some(Arc::new(MeshTls::build(m).map_err(|e| format!("mesh: {e}"))?)),
        };
        let dialer = tcp::Dialer {
            socket: tcp::SocketOptions::of(config),
            mesh: mesh.clone(),
        };
        let mut claims = claims::Claims::default();
        for c in &config.clusters {
            let mut timeouts = overrides.clone();
            timeouts.push(c.connect_timeout);
            timeouts.sort();
            timeouts.dedup();
            let reusable = previous
                .and_then(|p| p.clusters.get(c.name.as_str()))
                // The config holds the loaded TLS material: rotated files
                // make it differ.
                .filter(|old| old.config == *c && old.connect_timeouts == timeouts)
                .filter(|old| !old.discovery.has_names() || old.dns == config.dns);
            let cluster = match reusable {
                Some(old) => old.clone(),
                None => {
                    let old = previous.and_then(|p| p.clusters.get(c.name.as_str()));
                    Arc::new(Cluster::build(c, timeouts, metrics, config, &mut resolver, old, &dialer).await?)
                }
            };
            claims.add(&cluster.name, &c.claims);
            clusters.insert(cluster.name.clone(), cluster);
        }
        let passthrough = config.bootstrap.sidecar.as_ref().map(|_| {
            let connect_timeout = crate::config::DEFAULT_CONNECT_TIMEOUT;
            match previous.and_then(|p| p.passthrough.as_ref()) {
                Some(old) if old.built_with(dialer.socket, connect_timeout) => old.clone(),
                _ => Arc::new(passthrough::Passthrough::new(
                    dialer.clone(),
                    connect_timeout,
                    metrics.cluster(crate::config::ORIGINAL_DESTINATION),
                )),
            }
        });
        Ok(Upstreams {
            clusters,
            passthrough,
            claims,
            mesh,
            next_mesh: built,
        })
    }

    /// The cluster with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }

    /// Make this generation's `[mesh]` settings the ones every connection
    /// uses from now on: called as the generation starts serving, never
    /// for one that fails to build (a rejected reload changes nothing).
    pub fn commit_mesh(&self) {
        self.mesh.store(self.next_mesh.clone());
    }

    /// `[mesh]`'s TLS settings, when configured.
    pub fn mesh(&self) -> Option<Arc<MeshTls>> {
        self.mesh.load_full()
    }

    /// The handle the mesh settings of every generation are stored in.
    pub fn mesh_handle(&self) -> MeshHandle {
        self.mesh.clone()
    }

    /// The original-destination passthrough (sidecar mode only).
    pub fn passthrough(&self) -> Option<&passthrough::Passthrough> {
        self.passthrough.as_deref()
    }

    /// The cluster that claims outbound traffic to `destination`, or else
    /// to `host` (port aside, any case): destinations first, then services.
    pub fn claimant(&self, destination: std::net::SocketAddr, host: Option<&str>) -> Option<&Arc<Cluster>> {
        self.clusters.get(self.claims.claimant(destination, host)?)
    }

    /// Every cluster, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        let mut all: Vec<_> = self.clusters.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.into_iter()
    }

    /// Handles the metrics collector reads the endpoints through.
    pub fn handles(&self) -> Vec<Weak<Cluster>> {
        self.iter().map(Arc::downgrade).collect()
    }
}

impl Cluster {
    async fn build(
        c: &ClusterConfig,
        timeouts: Vec<Duration>,
        metrics: &Metrics,
        config: &Config,
        resolver: &mut Option<Arc<dns::Resolver>>,
        previous: Option<&Arc<Cluster>>,
        dialer: &tcp::Dialer,
    ) -> Result<Cluster, String> {
        let name: Arc<str> = c.name.as_str().into();
        let traffic = &c.traffic;
        let discovery = Arc::new(Discovery::new(
            name.clone(),
            &c.endpoints,
            &traffic.lb,
            previous.map(|p| &*p.discovery),
        ));
        let tls = match &c.tls {
            Some(t) => {
                let mut tls = ClientTls::build(t, c.protocol).map_err(|e| format!("clusters `{name}`: {e}"))?;
                // Resolved endpoints are addresses: verify (and send SNI
                // for) the configured name instead.
                if tls.server_name.is_none()
                    && let [status] = discovery.names().as_slice()
                {
                    tls.server_name = rustls::pki_types::ServerName::try_from(status.host.clone()).ok();
                }
                Some(Arc::new(tls))
            }
            None => None,
        };
        let breakers = Breakers::new(&traffic.circuit_breakers);
        let connector = |timeout| {
            Connector::new(
                name.clone(),
                timeout,
                tls.clone(),
                breakers.connections.clone(),
                dialer.clone(),
            )
        };
        let connectors: Vec<(Duration, Connector)> = timeouts.iter().map(|&t| (t, connector(t))).collect();
        let scheme = if tls.is_some() { Scheme::HTTPS } else { Scheme::HTTP };
        let clock = SystemClock::shared();
        let upstream_metrics = metrics.upstream.clone();
        let mut tasks = Vec::new();
        if discovery.has_names() {
            let resolver = match resolver {
                Some(r) => r.clone(),
                None => {
                    let r = Arc::new(dns::Resolver::new(&config.dns).map_err(|e| format!("dns: {e}"))?);
                    *resolver = Some(r.clone());
                    r
                }
            };
            tasks.extend(discovery.start(&resolver, config.dns, &upstream_metrics).await);
        }
        if let Some(check) = &traffic.health_check {
            tasks.push(health::spawn(
                name.clone(),
                discovery.set.clone(),
                check.clone(),
                Connector::new(
                    name.clone(),
                    c.connect_timeout,
                    tls.clone(),
                    breaker::Gate::unlimited(),
                    dialer.clone(),
                ),
                c.protocol,
                scheme.clone(),
                upstream_metrics.clone(),
            ));
        }
        Ok(Cluster {
            balancer: Balancer::new(
                traffic.lb.clone(),
                traffic.ewma_decay,
                traffic.panic_threshold,
                traffic.health_check.is_some() || traffic.outlier_detection.is_some(),
            ),
            outlier: traffic
                .outlier_detection
                .map(|o| OutlierDetector::new(o, clock.clone())),
            budget: RetryBudget::new(traffic.retry_budget, clock.clone()),
            breakers,
            clock,
            protocol: c.protocol,
            scheme,
            connectors,
            metrics: metrics.cluster(&c.name),
            upstream_metrics,
            tasks,
            discovery,
            config: c.clone(),
            connect_timeouts: timeouts,
            dns: config.dns,
            name,
        })
    }

    /// Whether the cluster speaks TLS to its endpoints.
    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// What the cluster's consistent hash is computed over, if it hashes.
    pub fn hash_on(&self) -> Option<&crate::config::traffic::HashOn> {
        match self.balancer.policy() {
            crate::config::LbPolicy::Maglev(on) => Some(on),
            _ => None,
        }
    }

    /// The connector for a route's connect timeout.
    fn connector(&self, connect_timeout: Option<Duration>) -> Result<&Connector, ProxyError> {
        self.by_timeout(&self.connectors, connect_timeout)
    }

    /// The entry of `list` for a route's connect timeout (the cluster's
    /// when the route sets none).
    fn by_timeout<'a, T>(
        &self,
        list: &'a [(Duration, T)],
        connect_timeout: Option<Duration>,
    ) -> Result<&'a T, ProxyError> {
        let wanted = connect_timeout.unwrap_or(self.config.connect_timeout);
        list.iter()
            .find(|(t, _)| *t == wanted)
            .map(|(_, item)| item)
            .ok_or_else(|| ProxyError::NoEndpoint(self.name.to_string()))
    }

    /// The endpoint for the next attempt, avoiding `tried` when it can.
    fn pick(&self, hash: Option<u64>, tried: &[Arc<Endpoint>]) -> Result<Arc<Endpoint>, ProxyError> {
        let set = self.discovery.set.load();
        let pick = Pick {
            now: self.clock.now(),
            hash,
            tried,
        };
        self.balancer
            .pick(&set, &pick)
            .ok_or_else(|| ProxyError::NoEndpoint(self.name.to_string()))
    }

    /// Send one attempt to `endpoint` and wait up to `timeout` for the
    /// response headers. The body streams in both directions.
    async fn attempt(
        &self,
        req: Request<RequestBody>,
        endpoint: &Arc<Endpoint>,
        connect_timeout: Option<Duration>,
        timeout: Duration,
    ) -> Result<Answer, ProxyError> {
        let in_flight = endpoint.start();
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, self.exchange(req, endpoint, connect_timeout)).await;
        let elapsed = started.elapsed();
        self.metrics.duration.observe(elapsed.as_secs_f64());
        let result = match result {
            Err(_) => Err(ProxyError::Upstream {
                endpoint: endpoint.authority.to_string(),
                failure: UpstreamFailure::Timeout(timeout),
                source: None,
            }),
            Ok(Ok(answer)) => {
                if matches!(self.balancer.policy(), crate::config::LbPolicy::PeakEwma) {
                    endpoint.observe_rtt(self.clock.now(), elapsed, self.config.traffic.ewma_decay);
                }
                Ok(answer)
            }
            Ok(Err(e)) => {
                if let ProxyError::Overflow { limit, .. } = &e {
                    self.upstream_metrics.overflow(&self.name, limit.name());
                }
                Err(e)
            }
        };
        if let Some(outlier) = &self.outlier {
            let outcome = match &result {
                Ok((response, _)) => Some(Outcome::Status(response.status().as_u16())),
                Err(e) if e.upstream_failure().is_some() => Some(Outcome::NoAnswer),
                Err(_) => None,
            };
            if let Some(outcome) = outcome
                && outlier.record(endpoint, &self.discovery.set.load(), outcome)
            {
                tracing::warn!(cluster = %self.name, endpoint = %endpoint.authority, "endpoint ejected by outlier detection");
                self.upstream_metrics.ejection(&self.name);
            }
        }
        result.map(|(response, lease)| Answer {
            response,
            in_flight,
            lease,
        })
    }

    /// One request to `endpoint` and its response headers, in the
    /// cluster's protocol: HTTP/1.1 on the endpoint's own pool, HTTP/2 on
    /// its shared connection.
    async fn exchange(
        &self,
        mut req: Request<RequestBody>,
        endpoint: &Arc<Endpoint>,
        connect_timeout: Option<Duration>,
    ) -> Result<(Response<Incoming>, Option<pool::Lease>), ProxyError> {
        let classify = |e: retry::ClientError| retry::classify(e, &endpoint.authority, &self.name, &self.metrics);
        let settings = pool::ConnectionSettings {
            connector: self.connector(connect_timeout)?,
            scheme: &self.scheme,
            idle_timeout: self.config.traffic.idle_timeout,
        };
        match self.protocol {
            UpstreamProtocol::Http1 => {
                *req.version_mut() = Version::HTTP_11;
                match pool::send(endpoint, settings, req).await {
                    Ok((response, lease)) => Ok((response, Some(lease))),
                    Err(e) => Err(classify(e.into())),
                }
            }
            UpstreamProtocol::Http2 => {
                // The request's host travels as `:authority`, which comes
                // from the URI (the endpoint's if a filter removed `Host`);
                // the connection dials the endpoint whatever the URI says.
                // `Host` is not sent besides it: nginx before 1.25 answers
                // 400 to a request with both ("duplicate host header"), and
                // Envoy does not send both either.
                let authority = req
                    .headers_mut()
                    .remove(http::header::HOST)
                    .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                    .unwrap_or_else(|| endpoint.authority.clone());
                retarget(&mut req, self.scheme.clone(), authority)?;
                *req.version_mut() = Version::HTTP_2;
                match h2_connection::send(endpoint, settings, req).await {
                    Ok(response) => Ok((response, None)),
                    Err(e) => Err(classify(e.into())),
                }
            }
        }
    }

    /// What admin and metrics show of each endpoint.
    pub fn endpoint_states(&self) -> Vec<EndpointState> {
        let now = self.clock.now();
        self.discovery
            .set
            .load()
            .endpoints
            .iter()
            .map(|e| EndpointState {
                address: e.authority.to_string(),
                healthy: e.healthy(),
                ejected: e.ejected(now),
                ejections: e.ejections.load(std::sync::atomic::Ordering::Relaxed),
                in_flight: e.in_flight(),
                requests: e.requests(),
                ewma_ms: e.ewma_ms(self.clock.as_ref(), self.config.traffic.ewma_decay),
            })
            .collect()
    }

    /// The admin view of this cluster.
    pub fn admin_json(&self) -> serde_json::Value {
        let endpoints: Vec<_> = self
            .endpoint_states()
            .into_iter()
            .map(|e| {
                serde_json::json!({
                    "address": e.address, "healthy": e.healthy, "ejected": e.ejected,
                    "ejections": e.ejections, "in_flight": e.in_flight, "requests": e.requests,
                    "ewma_ms": e.ewma_ms,
                })
            })
            .collect();
        let dns: Vec<_> = self
            .discovery
            .names()
            .into_iter()
            .map(|n| serde_json::json!({"host": n.host, "port": n.port, "last_error": n.last_error}))
            .collect();
        serde_json::json!({
            "name": &*self.name,
            "lb": self.balancer.policy().name(),
            "endpoints": endpoints,
            "dns": dns,
            "circuit_breakers": {
                "connections": self.breakers.connections.in_use(),
                "pending_requests": self.breakers.pending.in_use(),
                "requests": self.breakers.requests.in_use(),
                "retries": self.breakers.retries.in_use(),
            },
        })
    }
}

/// An attempt's answer: the response headers, the endpoint's in-flight
/// count held for the exchange, and the HTTP/1.1 connection it came on.
pub(crate) struct Answer {
    pub response: Response<Incoming>,
    pub in_flight: InFlight,
    pub lease: Option<pool::Lease>,
}

/// One endpoint as admin and metrics see it.
#[derive(Debug, Clone)]
pub struct EndpointState {
    pub address: String,
    pub healthy: bool,
    pub ejected: bool,
    pub ejections: u32,
    pub in_flight: usize,
    pub requests: u64,
    pub ewma_ms: f64,
}

/// Point `req` at `authority` over `scheme`, keeping its path and query:
/// the absolute form hyper's HTTP/2 client takes `:scheme` and
/// `:authority` from, and hyper-util's client (the sidecar's passthrough)
/// dials.
fn retarget<B>(req: &mut Request<B>, scheme: Scheme, authority: Authority) -> Result<(), ProxyError> {
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest(BadRequest::InvalidTarget))?;
    Ok(())
}
