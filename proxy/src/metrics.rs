//! Metrics in Prometheus text format (prometheus-client). One registry per
//! process; the admin listener serves it at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of a reload outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success`, `failure` or `unchanged`.
    pub outcome: &'static str,
}

/// Every metric sluice exports.
pub struct Metrics {
    registry: Registry,
    /// `sluice_reloads_total{outcome}`.
    pub reloads: Family<ReloadLabels, Counter>,
    /// `sluice_generation`: id of the generation serving requests.
    pub generation: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("reloads", "Reloads of config and plugins, by outcome", reloads.clone());
        let generation = Gauge::default();
        registry.register(
            "generation",
            "Id of the generation serving requests",
            generation.clone(),
        );
        Metrics {
            registry,
            reloads,
            generation,
        }
    }
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

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
