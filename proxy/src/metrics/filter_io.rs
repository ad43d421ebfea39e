//! Metrics of what filters ask the host to do over the network: outbound
//! HTTP calls (per plugin, cluster and outcome, and how long they took) and
//! the remote documents the host fetches for them (per cluster and outcome).
//! Plugin and cluster names come from the configuration, outcomes are a
//! fixed set, so the series stay few.

use super::{HistogramFamily, register, request_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    plugin: String,
    cluster: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallTimeLabels {
    plugin: String,
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    cluster: String,
    outcome: &'static str,
}

/// Handles on the filter I/O series; cheap to clone.
#[derive(Debug, Clone)]
pub struct FilterIoMetrics {
    calls: Family<CallLabels, Counter>,
    call_duration: HistogramFamily<CallTimeLabels>,
    fetches: Family<FetchLabels, Counter>,
}

impl FilterIoMetrics {
    pub(super) fn register(r: &mut Registry) -> FilterIoMetrics {
        FilterIoMetrics {
            calls: register(
                r,
                "filter_outbound_calls",
                "HTTP calls filters made to clusters, by plugin, cluster and outcome (`ok` is any response; `timeout`, `too_large`, `failed`, `not_allowed`, `invalid`, `no_cluster`)",
                Family::default(),
            ),
            call_duration: register(
                r,
                "filter_outbound_call_duration_seconds",
                "How long filters' HTTP calls took, whole response read, by plugin and cluster",
                HistogramFamily::<CallTimeLabels>::new_with_constructor(request_buckets as fn() -> Histogram),
            ),
            fetches: register(
                r,
                "filter_document_fetches",
                "Fetches of remote documents kept for filters, by cluster and outcome (`changed`, `unchanged`, `failed`)",
                Family::default(),
            ),
        }
    }

    /// Count one outbound call (a call refused before it was sent has no
    /// duration).
    pub fn call(&self, plugin: &str, cluster: &str, outcome: &'static str, took: Option<Duration>) {
        self.calls
            .get_or_create(&CallLabels {
                plugin: plugin.to_string(),
                cluster: cluster.to_string(),
                outcome,
            })
            .inc();
        if let Some(took) = took {
            self.call_duration
                .get_or_create(&CallTimeLabels {
                    plugin: plugin.to_string(),
                    cluster: cluster.to_string(),
                })
                .observe(took.as_secs_f64());
        }
    }

    /// Count one document fetch.
    pub fn fetch(&self, cluster: &str, outcome: &'static str) {
        self.fetches
            .get_or_create(&FetchLabels {
                cluster: cluster.to_string(),
                outcome,
            })
            .inc();
    }
}
