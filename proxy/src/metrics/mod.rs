//! Metrics in Prometheus text format (prometheus-client). One registry per
//! process; the admin listener serves it at `GET /metrics`.
//!
//! Labels are bounded: route, cluster and plugin names come from the
//! configuration, status is a class (`2xx`), phases and outcomes are fixed
//! sets. The request path never looks a metric up by label: routes and
//! filter slots resolve their handles once, when a generation is built
//! ([`RouteMetrics`], [`FilterMetrics`]), and then only touch atomics.

use crate::names::NameMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::sync::Arc;
use std::time::Duration;

mod filter_io;
mod shared_state;
mod sidecar;
mod tls;
mod upstream;
pub use filter_io::FilterIoMetrics;
pub use shared_state::SharedStateBackendMetrics;
pub use sidecar::{RelayCounters, SidecarMetrics};
pub use tls::{CertExpiry, TlsMetrics};
pub use upstream::UpstreamMetrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success`, `failure` or `unchanged`.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    cluster: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterPhaseLabels {
    plugin: String,
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterCallLabels {
    plugin: String,
    phase: &'static str,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.25 ms … ~16 s: request and upstream durations.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

/// 1 µs … ~16 ms: one filter call.
fn filter_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_001, 2.0, 15))
}

/// Status classes, indexed by `status / 100 - 1`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The phases of a filter call, as labelled.
pub const PHASES: [&str; 4] = ["request_headers", "response_headers", "request_body", "response_body"];

/// How a filter call ended, as labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Continue,
    LocalResponse,
    Trap,
    Deadline,
    MemoryCap,
    Unavailable,
}

/// Label of each [`CallOutcome`], in the enum's order (indexed by it).
const OUTCOMES: [&str; 6] = [
    "continue",
    "local_response",
    "trap",
    "deadline",
    "memory_cap",
    "unavailable",
];

/// Every metric sluice exports.
pub struct Metrics {
    registry: Registry,
    reloads: Family<ReloadLabels, Counter>,
    /// `sluice_generation`: id of the generation serving requests.
    pub generation: Gauge,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    upstream_duration: HistogramFamily<ClusterLabels>,
    upstream_connect_errors: Family<ClusterLabels, Counter>,
    /// `sluice_downstream_connections`: open client connections.
    pub open_connections: Gauge,
    /// `sluice_downstream_connections_accepted_total`.
    pub accepted_connections: Counter,
    /// `sluice_downstream_connections_rejected_total`: over `max_connections`.
    pub rejected_connections: Counter,
    /// `sluice_downstream_connections_parked`: HTTP/1.1 client connections
    /// idle between requests, holding no buffers.
    pub parked_connections: Gauge,
    filter_calls: Family<FilterCallLabels, Counter>,
    filter_duration: HistogramFamily<FilterPhaseLabels>,
    filter_instances_created: Family<PluginLabels, Counter>,
    filter_idle_instances: Family<PluginLabels, Gauge>,
    filter_log_suppressed: Family<PluginLabels, Counter>,
    /// `sluice_access_log_dropped_total`: lines dropped because the writer
    /// fell behind.
    pub access_log_dropped: Counter,
    shared_state_entries: Family<PluginLabels, Gauge>,
    shared_state_bytes: Family<PluginLabels, Gauge>,
    shared_state_refused: Family<PluginLabels, Counter>,
    /// Handshakes, failures, peer identities, certificate expiry.
    pub tls: TlsMetrics,
    /// Retries, budgets, circuit breakers, ejections, health, DNS.
    pub upstream: UpstreamMetrics,
    /// Interception, protocol detection and the TCP relay.
    pub sidecar: SidecarMetrics,
    /// Filters' outbound calls and remote documents.
    pub filter_io: FilterIoMetrics,
    /// The shared-state backend's round trips, errors and health.
    pub shared_backend: SharedStateBackendMetrics,
}

/// One plugin's shared-state use and refusals.
#[derive(Debug, Clone)]
pub struct SharedStateMetrics {
    pub entries: Gauge,
    pub bytes: Gauge,
    pub refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("sluice");
        let reloads = register(
            &mut r,
            "reloads",
            "Reloads of config and plugins, by outcome",
            Family::<ReloadLabels, Counter>::default(),
        );
        let generation = register(
            &mut r,
            "generation",
            "Id of the generation serving requests",
            Gauge::default(),
        );
        let requests = register(
            &mut r,
            "requests",
            "Requests answered, by route, cluster and status class (route and cluster empty when no route matched)",
            Family::<RequestLabels, Counter>::default(),
        );
        let request_duration = register(
            &mut r,
            "request_duration_seconds",
            "Time from the request's arrival to the end of its response body, by route",
            HistogramFamily::<RouteLabels>::new_with_constructor(request_buckets as fn() -> _),
        );
        let upstream_duration = register(
            &mut r,
            "upstream_request_duration_seconds",
            "Time from sending a request upstream to its response headers, by cluster",
            HistogramFamily::<ClusterLabels>::new_with_constructor(request_buckets as fn() -> _),
        );
        let upstream_connect_errors = register(
            &mut r,
            "upstream_connect_errors",
            "Upstream requests that failed to connect or timed out connecting, by cluster",
            Family::<ClusterLabels, Counter>::default(),
        );
        let open_connections = register(
            &mut r,
            "downstream_connections",
            "Open client connections",
            Gauge::default(),
        );
        let accepted_connections = register(
            &mut r,
            "downstream_connections_accepted",
            "Client connections accepted",
            Counter::default(),
        );
        let rejected_connections = register(
            &mut r,
            "downstream_connections_rejected",
            "Client connections closed at once because the listener was at max_connections",
            Counter::default(),
        );
        let parked_connections = register(
            &mut r,
            "downstream_connections_parked",
            "HTTP/1.1 client connections idle between requests, holding no HTTP server buffers",
            Gauge::default(),
        );
        let filter_calls = register(
            &mut r,
            "filter_calls",
            "Filter calls by plugin, phase and outcome (continue, local_response, trap, deadline, memory_cap, unavailable)",
            Family::<FilterCallLabels, Counter>::default(),
        );
        let filter_duration = register(
            &mut r,
            "filter_call_duration_seconds",
            "Duration of one filter call, by plugin and phase",
            HistogramFamily::<FilterPhaseLabels>::new_with_constructor(filter_buckets as fn() -> _),
        );
        let filter_instances_created = register(
            &mut r,
            "filter_instances_created",
            "Filter instances created (at load and when every pooled instance was busy), by plugin",
            Family::<PluginLabels, Counter>::default(),
        );
        let filter_idle_instances = register(
            &mut r,
            "filter_idle_instances",
            "Configured filter instances waiting in pools, by plugin",
            Family::<PluginLabels, Gauge>::default(),
        );
        let filter_log_suppressed = register(
            &mut r,
            "filter_log_suppressed",
            "Filter log lines dropped because the plugin was over its log budget, by plugin",
            Family::<PluginLabels, Counter>::default(),
        );
        // Read from the process's log writer at each scrape (see
        // `LogDroppedLines`).
        r.register_collector(Box::new(LogDroppedLines));
        let access_log_dropped = register(
            &mut r,
            "access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            Counter::default(),
        );
        let shared_state_entries = register(
            &mut r,
            "shared_state_entries",
            "Entries a plugin holds in shared state",
            Family::<PluginLabels, Gauge>::default(),
        );
        let shared_state_bytes = register(
            &mut r,
            "shared_state_bytes",
            "Bytes of keys and values a plugin holds in shared state",
            Family::<PluginLabels, Gauge>::default(),
        );
        let shared_state_refused = register(
            &mut r,
            "shared_state_refused",
            "Shared-state writes refused because the plugin's quota was full",
            Family::<PluginLabels, Counter>::default(),
        );
        let tls = TlsMetrics::register(&mut r);
        let upstream = UpstreamMetrics::register(&mut r);
        let sidecar = SidecarMetrics::register(&mut r);
        let filter_io = FilterIoMetrics::register(&mut r);
        let shared_backend = SharedStateBackendMetrics::register(&mut r);
        shared_backend.set_up(true);
        Metrics {
            sidecar,
            filter_io,
            shared_backend,
            tls,
            upstream,
            shared_state_entries,
            shared_state_bytes,
            shared_state_refused,
            registry: r,
            reloads,
            generation,
            requests,
            request_duration,
            upstream_duration,
            upstream_connect_errors,
            open_connections,
            accepted_connections,
            rejected_connections,
            parked_connections,
            filter_calls,
            filter_duration,
            filter_instances_created,
            filter_idle_instances,
            filter_log_suppressed,
            access_log_dropped,
        }
    }
}

/// Register `metric` under `name` and hand it back.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Count one reload outcome.
    pub fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&ReloadLabels { outcome }).inc();
    }

    /// Reloads seen with this outcome.
    pub fn reloads(&self, outcome: &'static str) -> u64 {
        self.reloads.get_or_create(&ReloadLabels { outcome }).get()
    }

    /// Handles for one route (`""` for requests no route matched), with a
    /// status counter per cluster it may send to.
    pub fn route(&self, route: &str, clusters: &[&str]) -> RouteMetrics {
        let counters = |cluster: &str| {
            STATUS_CLASSES.map(|status| {
                self.requests
                    .get_or_create(&RequestLabels {
                        route: route.to_string(),
                        cluster: cluster.to_string(),
                        status,
                    })
                    .clone()
            })
        };
        RouteMetrics {
            duration: self
                .request_duration
                .get_or_create(&RouteLabels {
                    route: route.to_string(),
                })
                .clone(),
            unsent: counters(""),
            by_cluster: clusters.iter().map(|c| (Arc::from(*c), counters(c))).collect(),
        }
    }

    /// Handles for one cluster.
    pub fn cluster(&self, cluster: &str) -> ClusterMetrics {
        let labels = ClusterLabels {
            cluster: cluster.to_string(),
        };
        ClusterMetrics {
            duration: self.upstream_duration.get_or_create(&labels).clone(),
            connect_errors: self.upstream_connect_errors.get_or_create(&labels).clone(),
        }
    }

    /// Handles for one plugin's shared-state accounting.
    pub fn shared_state(&self, plugin: &str) -> SharedStateMetrics {
        let labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        SharedStateMetrics {
            entries: self.shared_state_entries.get_or_create(&labels).clone(),
            bytes: self.shared_state_bytes.get_or_create(&labels).clone(),
            refused: self.shared_state_refused.get_or_create(&labels).clone(),
        }
    }

    /// Handles for one plugin's filter calls.
    pub fn filter(&self, plugin: &str) -> FilterMetrics {
        let plugin_labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        FilterMetrics {
            calls: PHASES.map(|phase| {
                OUTCOMES.map(|outcome| {
                    self.filter_calls
                        .get_or_create(&FilterCallLabels {
                            plugin: plugin.to_string(),
                            phase,
                            outcome,
                        })
                        .clone()
                })
            }),
            duration: PHASES.map(|phase| {
                self.filter_duration
                    .get_or_create(&FilterPhaseLabels {
                        plugin: plugin.to_string(),
                        phase,
                    })
                    .clone()
            }),
            created: self.filter_instances_created.get_or_create(&plugin_labels).clone(),
            idle: self.filter_idle_instances.get_or_create(&plugin_labels).clone(),
        }
    }

    /// `sluice_filter_log_suppressed_total` of one plugin (its log budget
    /// holds the handle).
    pub fn filter_log_suppressed(&self, plugin: &str) -> Counter {
        self.filter_log_suppressed
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
            })
            .clone()
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// `sluice_log_dropped_lines_total`: process log lines the non-blocking
/// writer dropped because its output fell behind. The writer keeps the
/// count; this reads it at each scrape through the hook the binary installs
/// ([`crate::telemetry::log_filter::dropped_lines`]), so it is exact and a
/// true counter. Without a hook (sluice as a library) it stays 0: logs are
/// then written by whatever the embedder set up.
#[derive(Debug)]
struct LogDroppedLines;

impl Collector for LogDroppedLines {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(crate::telemetry::log_filter::dropped_lines());
        let metric = encoder.encode_descriptor(
            "log_dropped_lines",
            "Process log lines dropped because the log output fell behind (the writer never blocks).",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// One route's request counters and duration histogram.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    duration: Histogram,
    /// Requests answered before a cluster was chosen for good (local
    /// responses, filter failures).
    unsent: [Counter; 5],
    by_cluster: NameMap<[Counter; 5]>,
}

impl RouteMetrics {
    /// Count a finished request: its status, the cluster it went to (if
    /// any) and how long it took, body included.
    pub fn observe(&self, cluster: Option<&str>, status: u16, elapsed: Duration) {
        let counters = cluster.and_then(|c| self.by_cluster.get(c)).unwrap_or(&self.unsent);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        counters[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// One cluster's upstream timings and connect errors.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    pub duration: Histogram,
    pub connect_errors: Counter,
}

/// One plugin's call counters, call durations and instance counts.
#[derive(Debug, Clone)]
pub struct FilterMetrics {
    calls: [[Counter; 6]; 4],
    duration: [Histogram; 4],
    pub created: Counter,
    pub idle: Gauge,
}

impl FilterMetrics {
    /// Count one call of `phase` (index into [`PHASES`]).
    pub fn call(&self, phase: usize, outcome: CallOutcome, elapsed: Duration) {
        if let Some(counters) = self.calls.get(phase) {
            counters[outcome as usize].inc();
        }
        if let Some(h) = self.duration.get(phase) {
            h.observe(elapsed.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_the_registered_series() {
        let m = Metrics::default();
        let route = m.route("api", &["app"]);
        route.observe(Some("app"), 204, Duration::from_millis(3));
        route.observe(Some("app"), 503, Duration::from_millis(3));
        route.observe(None, 401, Duration::from_millis(1));
        m.filter("auth")
            .call(0, CallOutcome::Deadline, Duration::from_micros(5));
        let text = m.encode();
        for line in [
            r#"sluice_requests_total{route="api",cluster="app",status="2xx"} 1"#,
            r#"sluice_requests_total{route="api",cluster="app",status="5xx"} 1"#,
            r#"sluice_requests_total{route="api",cluster="",status="4xx"} 1"#,
            r#"sluice_request_duration_seconds_count{route="api"} 3"#,
            r#"sluice_filter_calls_total{plugin="auth",phase="request_headers",outcome="deadline"} 1"#,
            // No log writer hook in tests: the collector reports 0.
            "sluice_log_dropped_lines_total 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
