//! Rate-limit decisions over GCRA buckets (the generic cell rate algorithm:
//! a token bucket kept as one timestamp, its TAT, the time it is full
//! again), as the WIT `shared-store.acquire` defines them. Pure functions of
//! the stored TATs and the time: the memory backend calls [`decide`]; the
//! Redis backend runs the same arithmetic in Lua (`redis/acquire.lua`), and
//! the tests hold both to it.

use super::SharedError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most buckets one decision may take.
pub const MAX_BUCKETS: usize = 16;

/// How long a bucket outlives the moment it is full again: covers rounding,
/// and the time between deciding and the store applying the expiry.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(1);

/// One bucket of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    /// T: nanoseconds per token.
    pub interval_ns: u64,
    /// τ: how far ahead of now the TAT may run.
    pub tolerance_ns: u64,
}

/// What a decision found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether every bucket had room (and so took the tokens).
    pub allowed: bool,
    /// Each bucket's TAT after the decision (`max(TAT, now)` if unchanged).
    pub tats: Vec<u64>,
    /// When the decision was made, Unix nanoseconds.
    pub now_ns: u64,
}

/// Refuse what no decision can be made on: no buckets or too many, a zero
/// interval, a key past the size limit, a key named twice.
pub fn validate(buckets: &[Bucket]) -> Result<(), SharedError> {
    let fine = (1..=MAX_BUCKETS).contains(&buckets.len())
        && buckets.iter().enumerate().all(|(i, b)| {
            b.interval_ns > 0
                && b.key.len() <= crate::limits::MAX_SHARED_KEY_BYTES
                && buckets[..i].iter().all(|earlier| earlier.key != b.key)
        });
    if fine {
        Ok(())
    } else {
        Err(SharedError::InvalidArgument)
    }
}

/// Take `cost` tokens from every bucket or none: with `stored` each
/// bucket's TAT (`None`: absent, a full bucket), every bucket moves to
/// `max(TAT, now) + cost × T` if for all of them that is at most τ ahead of
/// `now`; otherwise nothing moves.
pub fn decide(buckets: &[Bucket], stored: &[Option<u64>], now: u64, cost: u32) -> RateDecision {
    let after = |b: &Bucket, tat: u64| tat.saturating_add(b.interval_ns.saturating_mul(u64::from(cost)));
    let mut tats: Vec<u64> = stored.iter().map(|tat| tat.unwrap_or(now).max(now)).collect();
    let allowed = buckets
        .iter()
        .zip(&tats)
        .all(|(b, &tat)| after(b, tat) - now <= b.tolerance_ns);
    if allowed {
        for (tat, b) in tats.iter_mut().zip(buckets) {
            *tat = after(b, *tat);
        }
    }
    RateDecision {
        allowed,
        tats,
        now_ns: now,
    }
}

/// How long a bucket at `tat` is kept: until it is full again, plus the
/// margin (at most the longest TTL honoured).
pub fn time_to_full(tat: u64, now: u64) -> Duration {
    let max = Duration::from_millis(super::MAX_TTL_MS);
    (Duration::from_nanos(tat.saturating_sub(now)) + EXPIRY_MARGIN).min(max)
}

/// The wall clock, Unix nanoseconds.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const NOW: u64 = 1_767_225_600_000_000_000;

    fn bucket(key: &str, per_ms: u64, burst: u64) -> Bucket {
        Bucket {
            key: key.into(),
            interval_ns: per_ms * MS,
            tolerance_ns: burst * per_ms * MS,
        }
    }

    #[test]
    fn exactly_burst_at_one_instant_then_one_per_interval() {
        let b = [bucket("a", 100, 5)];
        let mut tat = None;
        for i in 1..=5 {
            let d = decide(&b, &[tat], NOW, 1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.tats, vec![NOW + i * 100 * MS]);
            tat = Some(d.tats[0]);
        }
        let denied = decide(&b, &[tat], NOW, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.tats, vec![NOW + 500 * MS], "unchanged when denied");
        assert!(!decide(&b, &[tat], NOW + 100 * MS - 1, 1).allowed);
        assert!(decide(&b, &[tat], NOW + 100 * MS, 1).allowed);
    }

    #[test]
    fn all_or_nothing() {
        let b = [bucket("wide", 100, 10), bucket("narrow", 1000, 1)];
        let first = decide(&b, &[None, None], NOW, 1);
        assert!(first.allowed);
        let second = decide(&b, &[Some(first.tats[0]), Some(first.tats[1])], NOW, 1);
        assert!(!second.allowed);
        assert_eq!(second.tats, first.tats, "the wide bucket kept its token");
    }

    #[test]
    fn cost_zero_reads_and_cost_counts_tokens() {
        let b = [bucket("a", 100, 5)];
        let read = decide(&b, &[Some(NOW - 1)], NOW, 0);
        assert!(read.allowed);
        assert_eq!(read.tats, vec![NOW], "an old TAT counts as now");
        assert!(decide(&b, &[None], NOW, 5).allowed);
        assert!(!decide(&b, &[None], NOW, 6).allowed);
        // Past the tolerance already: even a read reports the bucket empty.
        assert!(!decide(&b, &[Some(NOW + 600 * MS)], NOW, 0).allowed);
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let b = [Bucket {
            key: "a".into(),
            interval_ns: u64::MAX,
            tolerance_ns: u64::MAX,
        }];
        let d = decide(&b, &[None], NOW, u32::MAX);
        assert_eq!(d.tats, vec![u64::MAX]);
    }

    #[test]
    fn validation() {
        assert_eq!(validate(&[]), Err(SharedError::InvalidArgument));
        assert!(validate(&[bucket("a", 1, 1)]).is_ok());
        let zero = Bucket {
            key: "a".into(),
            interval_ns: 0,
            tolerance_ns: 1,
        };
        assert_eq!(validate(&[zero]), Err(SharedError::InvalidArgument));
        let many: Vec<Bucket> = (0..=MAX_BUCKETS).map(|i| bucket(&i.to_string(), 1, 1)).collect();
        assert_eq!(validate(&many), Err(SharedError::InvalidArgument));
        assert!(validate(&many[..MAX_BUCKETS]).is_ok());
        assert_eq!(
            validate(&[bucket("a", 1, 1), bucket("a", 2, 2)]),
            Err(SharedError::InvalidArgument),
            "a key twice"
        );
        let long = bucket(&"k".repeat(crate::limits::MAX_SHARED_KEY_BYTES + 1), 1, 1);
        assert_eq!(validate(&[long]), Err(SharedError::InvalidArgument));
    }

    #[test]
    fn expiry_is_when_full_plus_margin() {
        assert_eq!(time_to_full(NOW + 250 * MS, NOW), Duration::from_millis(1250));
        assert_eq!(time_to_full(NOW - 1, NOW), EXPIRY_MARGIN);
    }
}
