//! GCRA (the generic cell rate algorithm), a token bucket kept as one number.
//!
//! With emission interval `T = per / requests` and tolerance `τ = burst × T`,
//! a bucket's whole state is its theoretical arrival time `TAT` (unix nanos):
//! the moment the bucket would be full again. A request at `now` is allowed
//! iff `max(TAT, now) + T - now <= τ`, and then `TAT` becomes
//! `max(TAT, now) + T`. So at one instant exactly `burst` requests pass, and
//! afterwards one more every `T`: the same as a bucket of `burst` tokens
//! refilled at one token per `T`.
//!
//! The host keeps the buckets and makes that decision for all of a request's
//! buckets at once (`sluice_sdk::store::acquire`); this module has the pure
//! arithmetic the filter needs to describe a decision in its headers: what
//! remains, and how long a denied request has to wait.

use crate::config::NANOS_PER_SEC;

/// T and τ of one limit, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub interval: u64,
    pub tolerance: u64,
}

/// The pure GCRA step for a bucket whose stored TAT is `stored` (`None`:
/// absent, a full bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Allowed; the new TAT to store.
    Allow { new_tat: u64 },
    /// Denied; the bucket's TAT, unchanged (`max(stored, now)`).
    Deny { tat: u64 },
}

impl Params {
    /// The step the host takes for one bucket and one token. The filter
    /// applies it to the TATs of a denial (`stored` = `Some(tat)`) to tell
    /// which buckets deny.
    pub fn decide(&self, stored: Option<u64>, now: u64) -> Decision {
        let tat = stored.unwrap_or(now).max(now);
        let new_tat = tat.saturating_add(self.interval);
        if new_tat - now <= self.tolerance {
            Decision::Allow { new_tat }
        } else {
            Decision::Deny { tat }
        }
    }

    /// Requests that would still pass right now with the bucket at `tat`:
    /// `floor((τ - (tat - now)) / T)`, at least 0.
    pub fn remaining(&self, tat: u64, now: u64) -> u64 {
        let used = tat.saturating_sub(now);
        self.tolerance.saturating_sub(used) / self.interval
    }

    /// Nanoseconds until a request denied with the bucket at `tat` would pass:
    /// the `now'` with `tat + T - now' = τ`.
    pub fn wait(&self, tat: u64, now: u64) -> u64 {
        tat.saturating_add(self.interval)
            .saturating_sub(self.tolerance)
            .saturating_sub(now)
    }
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const NOW: u64 = 1_767_225_600 * NANOS_PER_SEC;
    /// 10/s, burst 20.
    const P: Params = Params {
        interval: 100 * MS,
        tolerance: 2000 * MS,
    };

    #[test]
    fn burst_then_one_per_interval() {
        let mut tat = None;
        for i in 1..=20 {
            match P.decide(tat, NOW) {
                Decision::Allow { new_tat } => {
                    assert_eq!(new_tat, NOW + i * 100 * MS);
                    assert_eq!(P.remaining(new_tat, NOW), 20 - i);
                    tat = Some(new_tat);
                }
                Decision::Deny { .. } => panic!("request {i} denied"),
            }
        }
        assert_eq!(P.decide(tat, NOW), Decision::Deny { tat: NOW + 2000 * MS });
        assert_eq!(P.wait(NOW + 2000 * MS, NOW), 100 * MS);
        assert!(matches!(P.decide(tat, NOW + 100 * MS), Decision::Allow { .. }));
        assert!(matches!(P.decide(tat, NOW + 100 * MS - 1), Decision::Deny { .. }));
    }

    #[test]
    fn old_tat_counts_as_now() {
        assert_eq!(
            P.decide(Some(NOW - 3600 * NANOS_PER_SEC), NOW),
            Decision::Allow {
                new_tat: NOW + 100 * MS
            }
        );
        assert_eq!(P.remaining(NOW - 5 * NANOS_PER_SEC, NOW), 20);
        assert_eq!(P.remaining(NOW + 5 * NANOS_PER_SEC, NOW), 0);
    }

    #[test]
    fn helpers() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(NANOS_PER_SEC), 1);
        assert_eq!(ceil_secs(NANOS_PER_SEC + 1), 2);
    }
}
