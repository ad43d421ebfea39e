//! Passive outlier detection: endpoints that answer with runs of 5xx or
//! gateway errors are ejected from balancing for a while — longer each time
//! — never more than `max_ejection_percent` of the cluster and never the
//! last endpoint. An ejection ends by time alone (checked when picking), so
//! there is no timer to run.

use super::balancer::EndpointSet;
use super::clock::Clock;
use super::endpoint::Endpoint;
use crate::config::traffic::OutlierDetection;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// What one attempt's outcome tells about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// No response: connect failure, reset, timeout.
    NoAnswer,
}

#[derive(Debug)]
pub struct OutlierDetector {
    policy: OutlierDetection,
    clock: Arc<dyn Clock>,
    /// Held while deciding an ejection, so two endpoints ejected at once
    /// cannot both slip under the percentage.
    deciding: Mutex<()>,
}

impl OutlierDetector {
    pub fn new(policy: OutlierDetection, clock: Arc<dyn Clock>) -> OutlierDetector {
        OutlierDetector {
            policy,
            clock,
            deciding: Mutex::new(()),
        }
    }

    /// Record `outcome` for `endpoint` (a member of `set`); true when this
    /// ejected it.
    pub fn record(&self, endpoint: &Endpoint, set: &EndpointSet, outcome: Outcome) -> bool {
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Status(s) if s >= 500 => (true, matches!(s, 502..=504)),
            Outcome::Status(_) => (false, false),
            Outcome::NoAnswer => (true, true),
        };
        if !is_5xx {
            self.success(endpoint);
            return false;
        }
        let c5 = endpoint.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let cg = if is_gateway {
            endpoint.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            endpoint.consecutive_gateway.store(0, Ordering::Relaxed);
            0
        };
        let p = &self.policy;
        let tripped = (p.consecutive_5xx > 0 && c5 >= p.consecutive_5xx)
            || (p.consecutive_gateway_errors > 0 && cg >= p.consecutive_gateway_errors);
        tripped && self.eject(endpoint, set)
    }

    fn success(&self, endpoint: &Endpoint) {
        // An endpoint that has behaved for `max_ejection_time` since its
        // last ejection ended starts over at the base ejection time.
        if endpoint.ejections.load(Ordering::Relaxed) != 0
            && let Some(end) = endpoint.ejection_end()
            && self.clock.now() >= end + self.policy.max_ejection_time
        {
            endpoint.ejections.store(0, Ordering::Relaxed);
        }
        if endpoint.consecutive_5xx.load(Ordering::Relaxed) != 0 {
            endpoint.consecutive_5xx.store(0, Ordering::Relaxed);
        }
        if endpoint.consecutive_gateway.load(Ordering::Relaxed) != 0 {
            endpoint.consecutive_gateway.store(0, Ordering::Relaxed);
        }
    }

    fn eject(&self, endpoint: &Endpoint, set: &EndpointSet) -> bool {
        let _deciding = self.deciding.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        if endpoint.ejected(now) {
            return false;
        }
        let n = set.endpoints.len();
        let ejected = set.endpoints.iter().filter(|e| e.ejected(now)).count();
        // At least one may always be ejected, and one is always kept.
        let allowed = (n * usize::from(self.policy.max_ejection_percent) / 100)
            .max(1)
            .min(n.saturating_sub(1));
        if ejected >= allowed {
            return false;
        }
        let times = endpoint.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let duration = self
            .policy
            .base_ejection_time
            .saturating_mul(times)
            .min(self.policy.max_ejection_time);
        endpoint.eject_until(now + duration);
        endpoint.consecutive_5xx.store(0, Ordering::Relaxed);
        endpoint.consecutive_gateway.store(0, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::traffic::LbPolicy;
    use crate::upstream::clock::ManualClock;
    use std::time::Duration;

    fn setup(n: usize, policy: OutlierDetection) -> (Arc<ManualClock>, OutlierDetector, EndpointSet) {
        let clock = Arc::new(ManualClock::default());
        let detector = OutlierDetector::new(policy, clock.clone());
        let eps = (0..n)
            .map(|i| Arc::new(Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap())))
            .collect();
        (clock, detector, EndpointSet::new(eps, &LbPolicy::RoundRobin))
    }

    fn policy() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: 3,
            consecutive_gateway_errors: 0,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn consecutive_5xx_eject_and_the_ejection_grows() {
        let (clock, d, set) = setup(3, policy());
        let ep = &set.endpoints[0];
        assert!(!d.record(ep, &set, Outcome::Status(500)));
        assert!(!d.record(ep, &set, Outcome::Status(503)));
        // A success in between resets the run.
        assert!(!d.record(ep, &set, Outcome::Status(200)));
        assert!(!d.record(ep, &set, Outcome::Status(500)));
        assert!(!d.record(ep, &set, Outcome::NoAnswer));
        assert!(d.record(ep, &set, Outcome::Status(500)), "third in a row ejects");
        assert!(ep.ejected(clock.now()));
        clock.advance(Duration::from_secs(10));
        assert!(!ep.ejected(clock.now()), "first ejection: base time");
        for _ in 0..3 {
            d.record(ep, &set, Outcome::Status(502));
        }
        clock.advance(Duration::from_secs(19));
        assert!(ep.ejected(clock.now()), "second ejection: twice the base");
        clock.advance(Duration::from_secs(1));
        assert!(!ep.ejected(clock.now()));
        for _ in 0..3 {
            d.record(ep, &set, Outcome::Status(502));
        }
        clock.advance(Duration::from_secs(24));
        assert!(ep.ejected(clock.now()), "third: capped at max_ejection_time");
        clock.advance(Duration::from_secs(1));
        assert!(!ep.ejected(clock.now()));
        // Successes for max_ejection_time after that: back to the base time.
        clock.advance(Duration::from_secs(25));
        d.record(ep, &set, Outcome::Status(200));
        for _ in 0..3 {
            d.record(ep, &set, Outcome::Status(500));
        }
        clock.advance(Duration::from_secs(10));
        assert!(!ep.ejected(clock.now()), "the multiplier was reset");
    }

    #[test]
    fn gateway_errors_count_only_502_to_504_and_no_answer() {
        let mut p = policy();
        p.consecutive_5xx = 0;
        p.consecutive_gateway_errors = 2;
        let (_clock, d, set) = setup(3, p);
        let ep = &set.endpoints[1];
        assert!(!d.record(ep, &set, Outcome::Status(504)));
        assert!(!d.record(ep, &set, Outcome::Status(500)), "500 breaks the run");
        assert!(!d.record(ep, &set, Outcome::NoAnswer));
        assert!(d.record(ep, &set, Outcome::Status(503)));
    }

    #[test]
    fn never_more_than_the_percentage_and_never_the_last() {
        let (_clock, d, set) = setup(4, policy());
        let eject = |i: usize| (0..3).any(|_| d.record(&set.endpoints[i], &set, Outcome::Status(500)));
        assert!(eject(0));
        assert!(eject(1));
        assert!(!eject(2), "50% of four are out already");
        let (_clock, d, set) = setup(1, policy());
        assert!(
            !(0..5).any(|_| d.record(&set.endpoints[0], &set, Outcome::Status(500))),
            "the last endpoint stays"
        );
        // A low percentage still lets one go.
        let mut p = policy();
        p.max_ejection_percent = 10;
        let (_clock, d, set) = setup(3, p);
        assert!((0..3).any(|_| d.record(&set.endpoints[2], &set, Outcome::Status(500))));
    }
}
