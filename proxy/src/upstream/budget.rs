//! The retry budget of a cluster (Linkerd's): over a sliding window, retries
//! may add at most `ratio` of the requests plus `min_per_second` per second,
//! so a failing cluster is never stormed by its own clients' retries. The
//! per-second allowance accrues from the first request (with one second's
//! worth at once), so a burst at start gets little more than time has
//! earned.

use super::clock::Clock;
use crate::config::traffic::RetryBudget as Policy;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Slots the window is divided into.
const SLOTS: u64 = 10;

#[derive(Debug)]
pub struct RetryBudget {
    policy: Policy,
    clock: Arc<dyn Clock>,
    slot_width: Duration,
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// Clock time of the first request.
    start: Option<Duration>,
    /// (slot number, requests, retries), indexed by slot number % SLOTS.
    slots: [(u64, u64, u64); SLOTS as usize],
}

impl RetryBudget {
    pub fn new(policy: Policy, clock: Arc<dyn Clock>) -> RetryBudget {
        RetryBudget {
            slot_width: (policy.window / SLOTS as u32).max(Duration::from_millis(1)),
            policy,
            clock,
            state: Mutex::new(Window::default()),
        }
    }

    fn slot_number(&self, now: Duration) -> u64 {
        (now.as_nanos() / self.slot_width.as_nanos()) as u64
    }

    /// Count one request (every request, retried or not).
    pub fn deposit(&self) {
        let now = self.clock.now();
        let n = self.slot_number(now);
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        w.start.get_or_insert(now);
        slot(&mut w, n).1 += 1;
    }

    /// Take one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        let now = self.clock.now();
        let n = self.slot_number(now);
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (requests, retries) = w
            .slots
            .iter()
            .filter(|s| s.0 + SLOTS > n && s.0 <= n)
            .fold((0, 0), |(q, r), s| (q + s.1, r + s.2));
        // One second's allowance at once, so the first failures after a
        // start are retried; then it accrues with time.
        let earned = now
            .saturating_sub(w.start.unwrap_or(now))
            .max(Duration::from_secs(1))
            .min(self.policy.window);
        let allowed =
            self.policy.ratio * requests as f64 + f64::from(self.policy.min_per_second) * earned.as_secs_f64();
        if (retries + 1) as f64 > allowed {
            return false;
        }
        slot(&mut w, n).2 += 1;
        true
    }
}

/// Slot `n` of the window, emptied first if it held an older slot's counts.
fn slot(w: &mut Window, n: u64) -> &mut (u64, u64, u64) {
    let s = &mut w.slots[(n % SLOTS) as usize];
    if s.0 != n {
        *s = (n, 0, 0);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::clock::ManualClock;

    fn budget() -> (Arc<ManualClock>, RetryBudget) {
        let clock = Arc::new(ManualClock::default());
        (clock.clone(), RetryBudget::new(Policy::default(), clock))
    }

    #[test]
    fn ratio_of_requests_plus_time_allowance() {
        let (clock, b) = budget();
        for _ in 0..100 {
            b.deposit();
        }
        // No time has passed: 20% of 100, plus one second's allowance.
        let granted = (0..100).filter(|_| b.withdraw()).count();
        assert_eq!(granted, 30);
        // The first second is already counted; half a second more earns five.
        clock.advance(Duration::from_millis(1500));
        assert_eq!((0..100).filter(|_| b.withdraw()).count(), 5);
    }

    #[test]
    fn old_requests_leave_the_window() {
        let (clock, b) = budget();
        for _ in 0..1000 {
            b.deposit();
        }
        clock.advance(Duration::from_secs(11));
        // The 1000 requests are out of the window; only the per-second
        // allowance (10/s over at most the 10 s window) remains.
        let granted = (0..1000).filter(|_| b.withdraw()).count();
        assert_eq!(granted, 100);
        assert!(!b.withdraw());
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            (0..1000).filter(|_| b.withdraw()).count(),
            100,
            "spent retries leave too"
        );
    }

    #[test]
    fn nothing_before_the_first_request() {
        let (clock, b) = budget();
        clock.advance(Duration::from_secs(60));
        b.deposit();
        // Idle time before the first request earns nothing beyond the
        // first second's allowance.
        assert_eq!((0..100).filter(|_| b.withdraw()).count(), 10);
        clock.advance(Duration::from_millis(1100));
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }
}
