//! Endpoint discovery: a cluster's configured entries become its endpoint
//! set. Address literals are used as they are; DNS names are resolved at
//! start and re-resolved in the background (see [`dns`](super::dns)), every
//! address becoming an endpoint. A failed resolution keeps the last good
//! set and is reported. Endpoints that stay across a change keep their
//! state (health, ejection, latency).

use super::balancer::EndpointSet;
use super::dns::{self, DnsSettings, Resolver};
use super::endpoint::Endpoint;
use crate::config::LbPolicy;
use crate::metrics::UpstreamMetrics;
use arc_swap::ArcSwap;
use http::uri::Authority;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// One configured endpoint entry.
#[derive(Debug, Clone)]
enum Source {
    Address(Authority),
    Name { host: String, port: u16 },
}

/// What admin shows of a DNS entry.
#[derive(Debug, Clone)]
pub struct NameStatus {
    pub host: String,
    pub port: u16,
    pub last_error: Option<String>,
}

#[derive(Debug)]
pub struct Discovery {
    cluster: Arc<str>,
    sources: Vec<Source>,
    /// The current addresses of each source, by index.
    current: Mutex<Vec<Vec<Authority>>>,
    errors: Mutex<Vec<Option<String>>>,
    policy: LbPolicy,
    /// Where the balancer reads the endpoints from.
    pub set: Arc<ArcSwap<EndpointSet>>,
}

impl Discovery {
    /// Discovery over the configured `entries` (`host:port`, validated). A
    /// name that `previous` (the same cluster before a reload) resolved
    /// starts with those addresses, kept if it cannot be resolved now.
    pub fn new(cluster: Arc<str>, entries: &[String], policy: &LbPolicy, previous: Option<&Discovery>) -> Discovery {
        let sources: Vec<Source> = entries
            .iter()
            .filter_map(|e| e.parse::<Authority>().ok())
            .map(|a| {
                let host = a.host().trim_start_matches('[').trim_end_matches(']');
                match (host.parse::<IpAddr>(), a.port_u16()) {
                    (Err(_), Some(port)) => Source::Name {
                        host: host.to_string(),
                        port,
                    },
                    _ => Source::Address(a),
                }
            })
            .collect();
        let current = sources
            .iter()
            .map(|s| match s {
                Source::Address(a) => vec![a.clone()],
                Source::Name { host, port } => previous.map(|p| p.resolved(host, *port)).unwrap_or_default(),
            })
            .collect();
        let discovery = Discovery {
            cluster,
            errors: Mutex::new(vec![None; sources.len()]),
            sources,
            current: Mutex::new(current),
            policy: policy.clone(),
            set: Arc::new(ArcSwap::from_pointee(EndpointSet::default())),
        };
        discovery.publish();
        discovery
    }

    /// The addresses `host:port` currently resolves to here.
    fn resolved(&self, host: &str, port: u16) -> Vec<Authority> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        self.sources
            .iter()
            .zip(current.iter())
            .find(|(s, _)| matches!(s, Source::Name { host: h, port: p } if h == host && *p == port))
            .map(|(_, addrs)| addrs.clone())
            .unwrap_or_default()
    }

    /// Whether any entry is a DNS name.
    pub fn has_names(&self) -> bool {
        self.sources.iter().any(|s| matches!(s, Source::Name { .. }))
    }

    /// The DNS entries and their last errors.
    pub fn names(&self) -> Vec<NameStatus> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        self.sources
            .iter()
            .zip(errors.iter())
            .filter_map(|(s, e)| match s {
                Source::Name { host, port } => Some(NameStatus {
                    host: host.clone(),
                    port: *port,
                    last_error: e.clone(),
                }),
                Source::Address(_) => None,
            })
            .collect()
    }

    /// Resolve every name once (the generation waits for it), then keep
    /// each fresh in the background; the handles stop the refreshes.
    pub async fn start(
        self: &Arc<Self>,
        resolver: &Arc<Resolver>,
        settings: DnsSettings,
        metrics: &UpstreamMetrics,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let Source::Name { host, port } = source else { continue };
            let first = resolver.resolve(host, *port).await;
            let first = match first {
                Ok(r) => {
                    self.update(i, Ok(r.addrs), metrics);
                    Ok(r.ttl)
                }
                Err(e) => {
                    self.update(i, Err(e), metrics);
                    Err(())
                }
            };
            let (me, metrics) = (Arc::downgrade(self), metrics.clone());
            tasks.push(dns::spawn_refresh(
                resolver.clone(),
                settings,
                host.clone(),
                *port,
                first,
                move |outcome| {
                    if let Some(me) = me.upgrade() {
                        me.update(i, outcome, &metrics);
                    }
                },
            ));
        }
        tasks
    }

    /// Take a resolution of source `i`.
    fn update(&self, i: usize, outcome: Result<Vec<SocketAddr>, String>, metrics: &UpstreamMetrics) {
        metrics.dns_resolution(&self.cluster, outcome.is_ok());
        let addrs = match outcome {
            Ok(addrs) => addrs,
            Err(e) => {
                tracing::warn!(cluster = %self.cluster, error = %e, "DNS resolution failed; keeping the last good endpoints");
                if let Some(slot) = self.errors.lock().unwrap_or_else(|e| e.into_inner()).get_mut(i) {
                    *slot = Some(e);
                }
                return;
            }
        };
        if let Some(slot) = self.errors.lock().unwrap_or_else(|e| e.into_inner()).get_mut(i) {
            *slot = None;
        }
        let authorities: Vec<Authority> = addrs.iter().filter_map(|a| a.to_string().parse().ok()).collect();
        {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            match current.get_mut(i) {
                Some(slot) if *slot != authorities => *slot = authorities,
                _ => return,
            }
        }
        tracing::info!(cluster = %self.cluster, addresses = ?addrs, "DNS endpoints changed");
        self.publish();
    }

    /// Build the endpoint set from every source's addresses, reusing the
    /// endpoints that stay.
    fn publish(&self) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.set.load();
        let mut endpoints: Vec<Arc<Endpoint>> = Vec::new();
        for authority in current.iter().flatten() {
            if endpoints.iter().any(|e| e.authority == *authority) {
                continue;
            }
            let kept = old.endpoints.iter().find(|e| e.authority == *authority).cloned();
            endpoints.push(kept.unwrap_or_else(|| Arc::new(Endpoint::new(authority.clone()))));
        }
        self.set.store(Arc::new(EndpointSet::new(endpoints, &self.policy)));
    }
}
