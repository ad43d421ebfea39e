//! Traffic-control metrics: retries by reason, retry-budget and circuit
//! breaker refusals, ejections, health transitions and DNS resolutions as
//! counters; each endpoint's health, ejection and attempt count read from
//! the serving clusters at scrape time (no per-request label lookups).

use super::register;
use crate::upstream::Cluster;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex, Weak};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    cluster: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    cluster: String,
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    cluster: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    cluster: String,
    endpoint: String,
}

/// Handles on the traffic-control series; cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    retries: Family<ReasonLabels, Counter>,
    budget_exhausted: Family<ClusterLabel, Counter>,
    overflow: Family<LimitLabels, Counter>,
    ejections: Family<ClusterLabel, Counter>,
    health: Family<ResultLabels, Counter>,
    dns: Family<ResultLabels, Counter>,
    clusters: Arc<Mutex<Vec<Weak<Cluster>>>>,
}

impl UpstreamMetrics {
    pub(super) fn register(r: &mut Registry) -> UpstreamMetrics {
        let clusters = Arc::new(Mutex::new(Vec::new()));
        r.register_collector(Box::new(EndpointCollector(clusters.clone())));
        UpstreamMetrics {
            retries: register(
                r,
                "upstream_retries",
                "Retries sent, by cluster and the reason the previous try failed",
                Family::default(),
            ),
            budget_exhausted: register(
                r,
                "upstream_retry_budget_exhausted",
                "Retries not sent because the cluster's retry budget was spent",
                Family::default(),
            ),
            overflow: register(
                r,
                "upstream_overflow",
                "Requests refused by a circuit breaker, by cluster and limit",
                Family::default(),
            ),
            ejections: register(
                r,
                "upstream_ejections",
                "Endpoints ejected by outlier detection",
                Family::default(),
            ),
            health: register(
                r,
                "upstream_health_transitions",
                "Endpoints changing state by active health checks (result: healthy or unhealthy)",
                Family::default(),
            ),
            dns: register(
                r,
                "dns_resolutions",
                "DNS resolutions of cluster endpoint names, by result (ok or error)",
                Family::default(),
            ),
            clusters,
        }
    }

    pub fn retry(&self, cluster: &str, reason: &'static str) {
        self.retries
            .get_or_create(&ReasonLabels {
                cluster: cluster.to_string(),
                reason,
            })
            .inc();
    }

    pub fn budget_exhausted(&self, cluster: &str) {
        self.budget_exhausted
            .get_or_create(&ClusterLabel {
                cluster: cluster.to_string(),
            })
            .inc();
    }

    pub fn overflow(&self, cluster: &str, limit: &'static str) {
        self.overflow
            .get_or_create(&LimitLabels {
                cluster: cluster.to_string(),
                limit,
            })
            .inc();
    }

    pub fn ejection(&self, cluster: &str) {
        self.ejections
            .get_or_create(&ClusterLabel {
                cluster: cluster.to_string(),
            })
            .inc();
    }

    pub fn health_transition(&self, cluster: &str, healthy: bool) {
        let result = if healthy { "healthy" } else { "unhealthy" };
        self.health
            .get_or_create(&ResultLabels {
                cluster: cluster.to_string(),
                result,
            })
            .inc();
    }

    pub fn dns_resolution(&self, cluster: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.dns
            .get_or_create(&ResultLabels {
                cluster: cluster.to_string(),
                result,
            })
            .inc();
    }

    /// The clusters the per-endpoint series are read from: the serving
    /// generation's.
    pub fn set_clusters(&self, clusters: Vec<Weak<Cluster>>) {
        *self.clusters.lock().unwrap_or_else(|e| e.into_inner()) = clusters;
    }
}

#[derive(Debug)]
struct EndpointCollector(Arc<Mutex<Vec<Weak<Cluster>>>>);

impl Collector for EndpointCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let clusters: Vec<Arc<Cluster>> = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let states: Vec<_> = clusters
            .iter()
            .map(|c| (c.name.to_string(), c.endpoint_states()))
            .collect();
        let series: [(&str, &str, MetricType); 3] = [
            (
                "upstream_endpoint_healthy",
                "1 when the endpoint passes its active health checks (or has none)",
                MetricType::Gauge,
            ),
            (
                "upstream_endpoint_ejected",
                "1 while outlier detection has the endpoint ejected",
                MetricType::Gauge,
            ),
            (
                "upstream_endpoint_requests",
                "Attempts sent to the endpoint",
                MetricType::Counter,
            ),
        ];
        for (k, (name, help, kind)) in series.into_iter().enumerate() {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (cluster, endpoints) in &states {
                for e in endpoints {
                    let labels = EndpointLabels {
                        cluster: cluster.clone(),
                        endpoint: e.address.clone(),
                    };
                    let encoder = family.encode_family(&labels)?;
                    match k {
                        0 => ConstGauge::new(i64::from(e.healthy)).encode(encoder)?,
                        1 => ConstGauge::new(i64::from(e.ejected)).encode(encoder)?,
                        _ => ConstCounter::new(e.requests).encode(encoder)?,
                    }
                }
            }
        }
        Ok(())
    }
}
