//! One upstream endpoint and what the balancer, health checks and outlier
//! detection know about it: requests in flight, a peak-EWMA latency
//! estimate, active health and ejection. All of it is lock-free to read on
//! the request path.

use super::clock::Clock;
use http::uri::Authority;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Latency assumed for an endpoint nothing has been measured on yet.
const DEFAULT_RTT: Duration = Duration::from_millis(1);

#[derive(Debug)]
pub struct Endpoint {
    /// `ip:port` (or `host:port` as configured) the connector dials.
    pub authority: Authority,
    in_flight: AtomicUsize,
    /// Attempts sent to this endpoint.
    requests: AtomicU64,
    /// Active health: false once `unhealthy_threshold` checks failed in a row.
    healthy: AtomicBool,
    /// Consecutive active-check passes and failures (the checker's state).
    pub(super) check_passes: AtomicU32,
    pub(super) check_failures: AtomicU32,
    /// Clock time (ns) the current ejection ends; 0 = not ejected.
    ejected_until: AtomicU64,
    /// Ejections so far (the next one lasts longer).
    pub(super) ejections: AtomicU32,
    pub(super) consecutive_5xx: AtomicU32,
    pub(super) consecutive_gateway: AtomicU32,
    ewma: Mutex<PeakEwma>,
    /// HTTP/1.1 clusters: this endpoint's idle connections.
    pub(super) h1: super::pool::Http1Pool,
    /// HTTP/2 clusters: this endpoint's shared connection.
    pub(super) h2: super::h2_connection::Http2Connection,
}

impl Endpoint {
    pub fn new(authority: Authority) -> Endpoint {
        Endpoint {
            authority,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            check_passes: AtomicU32::new(0),
            check_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            ewma: Mutex::new(PeakEwma::default()),
            h1: super::pool::Http1Pool::default(),
            h2: super::h2_connection::Http2Connection::default(),
        }
    }

    /// Count an attempt starting; the guard counts it ended.
    pub fn start(self: &std::sync::Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(super) fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Whether an ejection is in force at `now`.
    pub fn ejected(&self, now: Duration) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && (now.as_nanos() as u64) < until
    }

    /// When the last ejection ended (or ends); `None` if never ejected.
    pub(super) fn ejection_end(&self) -> Option<Duration> {
        match self.ejected_until.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    pub(super) fn eject_until(&self, until: Duration) {
        self.ejected_until
            .store((until.as_nanos() as u64).max(1), Ordering::Relaxed);
    }

    /// Whether the balancer may pick it at `now`.
    pub fn available(&self, now: Duration) -> bool {
        self.healthy() && !self.ejected(now)
    }

    /// Record a measured time to response headers.
    pub fn observe_rtt(&self, now: Duration, rtt: Duration, decay: Duration) {
        if let Ok(mut e) = self.ewma.lock() {
            e.observe(now, rtt, decay);
        }
    }

    /// The peak-EWMA cost, ns, weighted by the requests in flight.
    pub fn ewma_load(&self, now: Duration, decay: Duration) -> f64 {
        let rtt = self.ewma.lock().map(|e| e.estimate(now, decay)).unwrap_or(0.0);
        rtt * (self.in_flight() + 1) as f64
    }

    /// The current estimate in milliseconds (admin view).
    pub fn ewma_ms(&self, clock: &dyn Clock, decay: Duration) -> f64 {
        self.ewma.lock().map(|e| e.estimate(clock.now(), decay)).unwrap_or(0.0) / 1e6
    }
}

/// An attempt in flight on an endpoint, until dropped.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<Endpoint>);

impl InFlight {
    pub fn endpoint(&self) -> &std::sync::Arc<Endpoint> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Peak EWMA of latency (Finagle's, as Linkerd uses): a slower observation
/// replaces the estimate at once; faster ones pull it down with a weight
/// that grows with the time since the last update, and the estimate also
/// decays toward zero while nothing is observed, so a once-slow endpoint is
/// tried again.
#[derive(Debug, Default)]
struct PeakEwma {
    /// Estimate in ns; 0 = nothing observed yet.
    cost: f64,
    stamp: Duration,
}

impl PeakEwma {
    fn weight(&self, now: Duration, decay: Duration) -> f64 {
        let elapsed = now.saturating_sub(self.stamp).as_secs_f64();
        (-elapsed / decay.as_secs_f64().max(1e-9)).exp()
    }

    fn observe(&mut self, now: Duration, rtt: Duration, decay: Duration) {
        let rtt = rtt.as_nanos() as f64;
        self.cost = if self.cost == 0.0 || rtt > self.cost {
            rtt
        } else {
            let w = self.weight(now, decay);
            self.cost * w + rtt * (1.0 - w)
        };
        self.stamp = now;
    }

    fn estimate(&self, now: Duration, decay: Duration) -> f64 {
        if self.cost == 0.0 {
            return DEFAULT_RTT.as_nanos() as f64;
        }
        self.cost * self.weight(now, decay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: Duration = Duration::from_secs(10);

    #[test]
    fn peak_ewma_takes_peaks_at_once_and_decays_slowly() {
        let mut e = PeakEwma::default();
        assert_eq!(e.estimate(Duration::ZERO, DECAY), 1e6, "default before any observation");
        e.observe(Duration::ZERO, Duration::from_millis(50), DECAY);
        assert_eq!(e.estimate(Duration::ZERO, DECAY), 50e6);
        // A fast answer right after moves it little.
        e.observe(Duration::from_millis(10), Duration::from_millis(1), DECAY);
        let est = e.estimate(Duration::from_millis(10), DECAY);
        assert!(est > 49e6, "{est}");
        // One decay period later it has fallen to about 1/e.
        let later = e.estimate(Duration::from_millis(10) + DECAY, DECAY);
        assert!((later - est / std::f64::consts::E).abs() < 1e3, "{later}");
        // A new peak replaces it.
        e.observe(Duration::from_secs(20), Duration::from_millis(80), DECAY);
        assert_eq!(e.estimate(Duration::from_secs(20), DECAY), 80e6);
    }

    #[test]
    fn ejection_ends_on_time() {
        let ep = Endpoint::new("127.0.0.1:1".parse().unwrap());
        assert!(ep.available(Duration::ZERO));
        ep.eject_until(Duration::from_secs(5));
        assert!(ep.ejected(Duration::from_secs(4)));
        assert!(!ep.available(Duration::from_secs(4)));
        assert!(!ep.ejected(Duration::from_secs(5)));
        ep.set_healthy(false);
        assert!(!ep.available(Duration::from_secs(6)));
    }
}
