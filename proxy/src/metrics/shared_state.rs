//! Metrics of the shared-state backend (Redis): how long each operation's
//! round trip took, which failed and why, and whether the backend is up.
//! Operations and reasons are fixed sets, so the series stay few. The
//! memory backend answers in well under a microsecond and is not timed;
//! its per-plugin entries, bytes and refusals are in the parent module.

use super::{HistogramFamily, register};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    operation: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// 50 µs … ~1.6 s: one round trip to Redis.
fn round_trip_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Handles on the backend series; cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedStateBackendMetrics {
    errors: Family<ErrorLabels, Counter>,
    duration: HistogramFamily<OperationLabels>,
    up: Gauge,
}

impl SharedStateBackendMetrics {
    pub(super) fn register(r: &mut Registry) -> SharedStateBackendMetrics {
        SharedStateBackendMetrics {
            errors: register(
                r,
                "shared_state_errors",
                "Shared-state operations the backend did not answer, by operation and reason (`unavailable`: no open connection, `connection`: the connection broke under the command, `timeout`: no answer within command_timeout or the filter's wait_limit, `command`: Redis answered with an error)",
                Family::default(),
            ),
            duration: register(
                r,
                "shared_state_operation_duration_seconds",
                "Round trips to the shared-state backend (Redis), by operation (`get`, `set`, `delete`, `increment`, `compare_and_swap`, `acquire`)",
                HistogramFamily::<OperationLabels>::new_with_constructor(round_trip_buckets as fn() -> Histogram),
            ),
            up: register(
                r,
                "shared_state_backend_up",
                "1 while the shared-state backend answers (always 1 for memory), 0 from its first failure until it answers again",
                Gauge::default(),
            ),
        }
    }

    pub fn error(&self, operation: &'static str, reason: &'static str) {
        self.errors.get_or_create(&ErrorLabels { operation, reason }).inc();
    }

    pub fn observe(&self, operation: &'static str, took: Duration) {
        self.duration
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }
}
