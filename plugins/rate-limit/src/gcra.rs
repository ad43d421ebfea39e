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
//! The `TAT` lives in the plugin's shared state (8 bytes, little-endian),
//! shared by every instance of the plugin. An absent or expired entry means a
//! full bucket, so entries get a TTL of `TAT - now` plus a margin: an idle
//! bucket disappears once it is full again, and its expiry is harmless.

use crate::config::NANOS_PER_SEC;
use sluice_sdk::{HostError, shared};
use std::time::Duration;

/// Compare-and-swap attempts before giving up on a contended key.
pub(crate) const MAX_ATTEMPTS: usize = 100;
/// Added to `TAT - now` for the entry's TTL: covers rounding, and the time
/// between reading the clock here and the host applying the TTL.
const TTL_MARGIN: Duration = Duration::from_secs(1);

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

/// What [`acquire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The request took a token; the bucket's TAT is now `tat`.
    Allowed { tat: u64 },
    /// No token; the bucket's TAT is `tat` (unchanged).
    Denied { tat: u64 },
    /// Every attempt lost a race with another instance.
    Contended,
}

/// The TTL for an entry holding `tat`.
fn ttl(tat: u64, now: u64) -> Duration {
    Duration::from_nanos(tat.saturating_sub(now)) + TTL_MARGIN
}

/// A stored TAT; anything but 8 bytes is treated as absent (and overwritten).
fn decode(bytes: Option<&[u8]>) -> Option<u64> {
    let bytes: [u8; 8] = bytes?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Take one token from the bucket under `key`, if it has one.
///
/// Why this is exact under concurrency, by construction: each attempt reads
/// the stored bytes, decides from them alone, and writes with
/// `compare_and_swap(expected = exactly the bytes read)`. The host performs
/// each CAS atomically, so a write lands only if the bucket still holds the
/// value the decision was made on; otherwise another instance moved it
/// first and we retry from a fresh read. Every successful CAS is therefore
/// one step of the sequential algorithm applied to the current state, and the
/// successful CASes of all instances form one sequence: no two requests can
/// spend the same token. The state is the value and nothing else, so a value
/// that changed and came back (A→B→A, e.g. a take and a refund) is the same
/// state and the decision made on it is still right. A denial writes
/// nothing: it is correct as of the read. No instance-local state is used.
pub(crate) fn acquire(key: &str, now: u64, params: &Params) -> Result<Acquired, HostError> {
    for _ in 0..MAX_ATTEMPTS {
        let stored = shared::get(key);
        match params.decide(decode(stored.as_deref()), now) {
            Decision::Deny { tat } => return Ok(Acquired::Denied { tat }),
            Decision::Allow { new_tat } => {
                let swapped =
                    shared::compare_and_swap(key, stored.as_deref(), &new_tat.to_le_bytes(), Some(ttl(new_tat, now)))?;
                if swapped {
                    return Ok(Acquired::Allowed { tat: new_tat });
                }
            }
        }
    }
    Ok(Acquired::Contended)
}

/// Give back the token a request took from the bucket under `key`: subtract
/// T from the current TAT with the same CAS loop as [`acquire`] (tokens are
/// interchangeable, so it does not matter whether others took tokens since).
/// Returns the TAT left in the bucket (`now` if it is gone), or `None` if
/// every attempt lost a race (the bucket then stays one token short until it
/// refills: conservative, never over-admitting).
pub(crate) fn refund(key: &str, now: u64, params: &Params) -> Result<Option<u64>, HostError> {
    for _ in 0..MAX_ATTEMPTS {
        let stored = shared::get(key);
        let Some(tat) = decode(stored.as_deref()) else {
            // Gone (expired) or unreadable: the bucket is full, nothing to give back.
            return Ok(Some(now));
        };
        let back = tat.saturating_sub(params.interval);
        if shared::compare_and_swap(key, stored.as_deref(), &back.to_le_bytes(), Some(ttl(back, now)))? {
            return Ok(Some(back.max(now)));
        }
    }
    Ok(None)
}

/// The bucket's TAT as of now (`max(stored, now)`), read without changing it.
pub(crate) fn peek(key: &str, now: u64) -> u64 {
    decode(shared::get(key).as_deref()).unwrap_or(now).max(now)
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
        assert_eq!(decode(Some(&[1, 0, 0, 0, 0, 0, 0, 0])), Some(1));
        assert_eq!(decode(Some(b"abc")), None);
        assert_eq!(decode(None), None);
        assert_eq!(ttl(NOW + 250 * MS, NOW), Duration::from_millis(1250));
        assert_eq!(ttl(NOW - 1, NOW), TTL_MARGIN);
    }
}
