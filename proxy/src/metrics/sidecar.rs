//! Sidecar metrics: intercepted connections by the protocol detection
//! found, connections closed before serving (loops, detection timeouts),
//! and the opaque TCP relay's connections, open count, bytes and connect
//! failures. Labels are a direction and small fixed sets, so the series
//! stay few.

use super::register;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    listener: String,
    direction: &'static str,
    protocol: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    listener: String,
    direction: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    direction: &'static str,
    /// `client` or `destination`: who sent the bytes.
    from: &'static str,
}

/// Handles on the sidecar series; cheap to clone.
#[derive(Debug, Clone)]
pub struct SidecarMetrics {
    intercepted: Family<ProtocolLabels, Counter>,
    closed: Family<ClosedLabels, Counter>,
    relays: Family<DirectionLabel, Counter>,
    relays_open: Family<DirectionLabel, Gauge>,
    relay_bytes: Family<BytesLabels, Counter>,
    relay_connect_failures: Family<DirectionLabel, Counter>,
}

/// One relay's counters, looked up once per connection.
#[derive(Debug, Clone)]
pub struct RelayCounters {
    pub from_client: Counter,
    pub from_destination: Counter,
    pub open: Gauge,
}

impl SidecarMetrics {
    pub(super) fn register(r: &mut Registry) -> SidecarMetrics {
        SidecarMetrics {
            intercepted: register(
                r,
                "intercepted_connections",
                "Connections taken by an interception listener, by the protocol detected",
                Family::default(),
            ),
            closed: register(
                r,
                "intercept_closed",
                "Intercepted connections closed unserved: `loop` (addressed to sluice itself), `detect_timeout`, `not_mesh` (strict mesh mTLS)",
                Family::default(),
            ),
            relays: register(
                r,
                "tcp_relay_connections",
                "Opaque TCP connections relayed to their original destination",
                Family::default(),
            ),
            relays_open: register(
                r,
                "tcp_relay_open_connections",
                "Opaque TCP relays open now",
                Family::default(),
            ),
            relay_bytes: register(
                r,
                "tcp_relay_bytes",
                "Bytes relayed as opaque TCP, by who sent them",
                Family::default(),
            ),
            relay_connect_failures: register(
                r,
                "tcp_relay_connect_failures",
                "Opaque TCP connections whose original destination could not be reached",
                Family::default(),
            ),
        }
    }

    /// Count a connection whose protocol was found (or assumed).
    pub fn intercepted(&self, listener: &str, direction: &'static str, protocol: &'static str) {
        self.intercepted
            .get_or_create(&ProtocolLabels {
                listener: listener.to_string(),
                direction,
                protocol,
            })
            .inc();
    }

    /// Count a connection closed before it was served.
    pub fn closed(&self, listener: &str, direction: &'static str, reason: &'static str) {
        self.closed
            .get_or_create(&ClosedLabels {
                listener: listener.to_string(),
                direction,
                reason,
            })
            .inc();
    }

    /// Count a new relay and hand out its counters.
    pub fn relay(&self, direction: &'static str) -> RelayCounters {
        self.relays.get_or_create(&DirectionLabel { direction }).inc();
        let bytes = |from| self.relay_bytes.get_or_create(&BytesLabels { direction, from }).clone();
        RelayCounters {
            from_client: bytes("client"),
            from_destination: bytes("destination"),
            open: self.relays_open.get_or_create(&DirectionLabel { direction }).clone(),
        }
    }

    pub fn relay_connect_failed(&self, direction: &'static str) {
        self.relay_connect_failures
            .get_or_create(&DirectionLabel { direction })
            .inc();
    }
}
