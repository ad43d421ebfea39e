//! Sidecar interception (WIT `interception`, added in 0.1.2): on a
//! connection iptables redirected to sluice, which way it goes and where
//! the client was connecting to. The same for every request on the
//! connection and available in every phase; `None` on a gateway
//! (non-intercepting) listener and in `Filter::create`.

use crate::sys;

/// Which way an intercepted connection goes, seen from the application
/// sluice runs beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Coming to the application from outside (redirected from
    /// `PREROUTING`).
    Inbound,
    /// The application's own connection going out (redirected from
    /// `OUTPUT`).
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The direction of the intercepted connection; `None` on a gateway
/// listener.
pub fn direction() -> Option<Direction> {
    sys::interception_direction()
}

/// The address the client connected to before iptables redirected it, as
/// `ip:port` (IPv6 as `[ip]:port`); `None` on a gateway listener.
pub fn original_destination() -> Option<String> {
    sys::interception_original_destination()
}
