//! Circuit breaking: what a cluster takes on at once — connections,
//! requests waiting for response headers, requests in flight, retries in
//! flight. Over a limit the request is refused at once (503) instead of
//! queueing behind a struggling upstream.

use crate::config::traffic::CircuitBreakers;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MaxConnections,
    MaxPendingRequests,
    MaxRequests,
    MaxRetries,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::MaxPendingRequests => "max_pending_requests",
            Limit::MaxRequests => "max_requests",
            Limit::MaxRetries => "max_retries",
        }
    }
}

/// A limit reached where only an error can carry it (the connector).
#[derive(Debug, thiserror::Error)]
#[error("circuit breaker: {} reached", .0.name())]
pub struct LimitReached(pub Limit);

/// One counted resource and its limit.
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<AtomicUsize>,
    max: usize,
    limit: Limit,
}

impl Gate {
    fn new(max: usize, limit: Limit) -> Gate {
        Gate {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            limit,
        }
    }

    /// A gate that never refuses (health checks: they must not fail because
    /// traffic filled `max_connections`).
    pub fn unlimited() -> Gate {
        Gate::new(usize::MAX, Limit::MaxConnections)
    }

    /// Take one unit, or say which limit is reached.
    pub fn claim(&self) -> Result<Slot, Limit> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .map(|_| Slot(self.open.clone()))
            .map_err(|_| self.limit)
    }

    pub fn in_use(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// A unit held until dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A cluster's four gates.
#[derive(Debug, Clone)]
pub struct Breakers {
    pub connections: Gate,
    pub pending: Gate,
    pub requests: Gate,
    pub retries: Gate,
}

impl Breakers {
    pub fn new(limits: &CircuitBreakers) -> Breakers {
        Breakers {
            connections: Gate::new(limits.max_connections, Limit::MaxConnections),
            pending: Gate::new(limits.max_pending_requests, Limit::MaxPendingRequests),
            requests: Gate::new(limits.max_requests, Limit::MaxRequests),
            retries: Gate::new(limits.max_retries, Limit::MaxRetries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_refuses_past_its_limit_and_frees_on_drop() {
        let g = Gate::new(2, Limit::MaxRequests);
        let a = g.claim().unwrap();
        let _b = g.claim().unwrap();
        assert_eq!(g.claim().unwrap_err(), Limit::MaxRequests);
        drop(a);
        assert!(g.claim().is_ok());
        assert_eq!(Limit::MaxPendingRequests.name(), "max_pending_requests");
    }
}
