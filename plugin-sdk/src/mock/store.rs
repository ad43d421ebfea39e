//! `shared-store` on the mock host (WIT 0.1.4): script an outage of the
//! shared backend with [`MockHost::store_unavailable`], count the round
//! trips a filter makes with [`MockHost::store_calls`], inspect buckets with
//! [`MockHost::get_bucket`] and [`MockHost::get_local_bucket`].
//!
//! The store functions work on the same values as [`crate::shared`] and
//! refuse what the host refuses (`InvalidArgument` for a key over
//! `MAX_SHARED_KEY_BYTES`, a value over `MAX_SHARED_VALUE_BYTES`, a
//! non-counter `increment`, and for `acquire` no bucket, more than
//! `MAX_STORE_BUCKETS` or a zero interval; `LimitExceeded` past the quota
//! of [`MockHost::shared_quota`]). Decisions are the host's exact GCRA on
//! the mock's wall clock ([`MockHost::now_unix_nanos`],
//! [`MockHost::advance`]); see `crate::store`. Fleet buckets count against
//! the plugin's quota together with its values; `acquire_local`'s buckets
//! count against a quota of the same size of their own. That is the host
//! with the Redis backend (values and fleet buckets in Redis, local buckets
//! in the process), the setting in which outages happen; with the memory
//! backend all three share one quota.

use super::MockHost;
use crate::sys::mock as state;

impl MockHost {
    /// Script an outage of the shared backend (`Some(reason)`) or end it
    /// (`None`). While it lasts, every [`crate::store`] function but
    /// [`acquire_local`](crate::store::acquire_local) fails with
    /// `StoreError::Unavailable(reason)` and changes nothing, and a
    /// [`crate::shared`] call panics with `trap: shared state unavailable:
    /// <reason>`: on the host that call traps, the entry's `on_failure`
    /// policy decides the request and the instance is replaced.
    ///
    /// ```
    /// use sluice_sdk::mock::MockHost;
    /// use sluice_sdk::store::{self, Bucket, StoreError};
    ///
    /// let host = MockHost::new();
    /// host.store_unavailable(Some("redis: connection refused"));
    /// let buckets = [Bucket::new("client", 1_000_000_000, 1_000_000_000)];
    /// assert_eq!(
    ///     store::acquire(&buckets, 1),
    ///     Err(StoreError::Unavailable("redis: connection refused".into()))
    /// );
    /// assert!(store::acquire_local(&buckets, 1).is_ok_and(|d| d.allowed));
    /// host.store_unavailable(None);
    /// assert!(store::acquire(&buckets, 1).is_ok_and(|d| d.allowed));
    /// assert_eq!(host.store_calls(), 2);
    /// ```
    pub fn store_unavailable(&self, reason: Option<&str>) -> &Self {
        state::with(|s| s.store.unavailable = reason.map(str::to_string));
        self
    }

    /// Round trips to the shared backend so far: one per call of a
    /// [`crate::store`] function other than
    /// [`acquire_local`](crate::store::acquire_local) whose arguments
    /// passed the checks, answered or not (an `acquire` is one, whatever
    /// the number of buckets). Kept across [`MockHost::start_request`].
    pub fn store_calls(&self) -> usize {
        state::with(|s| s.store.calls)
    }

    /// The stored TAT (Unix nanoseconds) of the `acquire` bucket `key`,
    /// ignoring expiry; `None` if it was never stored.
    pub fn get_bucket(&self, key: &str) -> Option<u64> {
        state::with(|s| s.store.fleet.get(key).map(|b| b.tat))
    }

    /// The stored TAT of the `acquire_local` bucket `key`, as
    /// [`MockHost::get_bucket`].
    pub fn get_local_bucket(&self, key: &str) -> Option<u64> {
        state::with(|s| s.store.local.get(key).map(|b| b.tat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::*;
    use crate::store::{self, Bucket, RateDecision, StoreError};
    use crate::{HostError, shared};
    use std::time::Duration;

    /// The mock's default wall clock.
    const NOW: u64 = 1_767_225_600_000_000_000;
    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    /// 10 per second, burst 20.
    fn per_second(key: &str) -> Bucket {
        Bucket::new(key, 100 * MS, 2 * SEC)
    }

    fn allowed(buckets: &[Bucket]) -> bool {
        match store::acquire(buckets, 1) {
            Ok(d) => d.allowed,
            Err(e) => panic!("acquire failed: {e}"),
        }
    }

    #[test]
    fn exactly_the_burst_at_one_instant() {
        let host = MockHost::new();
        let b = [per_second("client")];
        for i in 1..=20 {
            let d = store::acquire(&b, 1);
            assert_eq!(
                d,
                Ok(RateDecision {
                    allowed: true,
                    tats: vec![NOW + i * 100 * MS],
                    now_ns: NOW
                }),
                "request {i}"
            );
        }
        // Denied: the TAT is reported unchanged, and stays so.
        let denied = RateDecision {
            allowed: false,
            tats: vec![NOW + 2 * SEC],
            now_ns: NOW,
        };
        assert_eq!(store::acquire(&b, 1), Ok(denied.clone()));
        assert_eq!(store::acquire(&b, 1), Ok(denied));
        assert_eq!(host.get_bucket("client"), Some(NOW + 2 * SEC));
        assert_eq!(host.store_calls(), 22);
    }

    #[test]
    fn one_token_per_interval_then_full_again() {
        let host = MockHost::new();
        let b = [per_second("client")];
        assert_eq!((0..30).filter(|_| allowed(&b)).count(), 20);
        host.advance(Duration::from_nanos(100 * MS - 1));
        assert!(!allowed(&b));
        host.advance(Duration::from_nanos(1));
        assert!(allowed(&b));
        assert!(!allowed(&b));
        // Idle: full again, to the burst and no more.
        host.advance(Duration::from_secs(60));
        assert_eq!((0..30).filter(|_| allowed(&b)).count(), 20);
        // A cost of several tokens at once: all of them or none.
        host.advance(Duration::from_secs(60));
        assert_eq!(store::acquire(&b, 21).map(|d| d.allowed), Ok(false));
        assert_eq!(host.get_bucket("client"), Some(NOW + 62_100 * MS), "unchanged");
        let d = store::acquire(&b, 20);
        assert_eq!(d.map(|d| (d.allowed, d.tats)), Ok((true, vec![NOW + 122_100 * MS])));
        // A huge cost saturates instead of wrapping.
        let d = store::acquire(&[Bucket::new("big", u64::MAX / 2, 0)], u32::MAX);
        assert_eq!(d.map(|d| (d.allowed, d.tats)), Ok((false, vec![NOW + 120_100 * MS])));
    }

    #[test]
    fn all_buckets_or_none() {
        let host = MockHost::new();
        let first = per_second("a");
        let second = Bucket::new("b", 60 * SEC, 60 * SEC);
        assert!(allowed(&[first.clone(), second.clone()]));
        // "b" has no token left: "a" keeps its 19.
        let d = store::acquire(&[first.clone(), second.clone()], 1);
        assert_eq!(
            d,
            Ok(RateDecision {
                allowed: false,
                tats: vec![NOW + 100 * MS, NOW + 60 * SEC],
                now_ns: NOW
            })
        );
        assert_eq!(host.get_bucket("a"), Some(NOW + 100 * MS));
        assert_eq!((0..30).filter(|_| allowed(std::slice::from_ref(&first))).count(), 19);
    }

    #[test]
    fn cost_zero_only_reads() {
        let host = MockHost::new();
        let b = [per_second("client")];
        let read = store::acquire(&b, 0);
        assert_eq!(read.map(|d| (d.allowed, d.tats)), Ok((true, vec![NOW])));
        assert_eq!(host.get_bucket("client"), None, "nothing written");
        for _ in 0..20 {
            assert!(allowed(&b));
        }
        // Empty, but not past τ: a read still passes.
        let read = store::acquire(&b, 0);
        assert_eq!(read.map(|d| (d.allowed, d.tats)), Ok((true, vec![NOW + 2 * SEC])));
        // With a smaller τ the same TAT is past it.
        let read = store::acquire(&[Bucket::new("client", 100 * MS, SEC)], 0);
        assert_eq!(read.map(|d| (d.allowed, d.tats)), Ok((false, vec![NOW + 2 * SEC])));
        assert_eq!(host.get_bucket("client"), Some(NOW + 2 * SEC));
    }

    #[test]
    fn buckets_expire_once_full_again() {
        let host = MockHost::new();
        let b = [per_second("client")];
        assert!(allowed(&b));
        host.shared_quota(1, usize::MAX);
        // TAT − now = 100 ms; the entry lives 1 s longer.
        host.advance(Duration::from_millis(1099));
        assert_eq!(
            store::acquire(&[per_second("other")], 1),
            Err(StoreError::LimitExceeded)
        );
        host.advance(Duration::from_millis(1));
        assert!(allowed(&[per_second("other")]), "the expired bucket was dropped");
        assert_eq!(host.get_bucket("client"), None);
    }

    #[test]
    fn key_spaces_are_apart() {
        let host = MockHost::new();
        let b = [Bucket::new("k", 60 * SEC, 60 * SEC)];
        assert_eq!(shared::set("k", b"value", None), Ok(()));
        assert!(allowed(&b));
        assert!(!allowed(&b));
        assert_eq!(store::get("k"), Ok(Some(b"value".to_vec())));
        // The local buckets are apart from the fleet's.
        assert_eq!(store::acquire_local(&b, 1).map(|d| d.allowed), Ok(true));
        assert_eq!(store::acquire_local(&b, 1).map(|d| d.allowed), Ok(false));
        assert_eq!(host.get_local_bucket("k"), Some(NOW + 60 * SEC));
        assert_eq!(host.store_calls(), 3, "acquire_local is no round trip");
        // The fallible operations see the values of `shared`.
        assert_eq!(store::set("n", &5i64.to_le_bytes(), None), Ok(()));
        assert_eq!(store::increment("n", 2, None), Ok(7));
        assert_eq!(shared::increment("n", 1, None), Ok(8));
        assert_eq!(store::compare_and_swap("k", Some(b"value"), b"v2", None), Ok(true));
        assert_eq!(store::compare_and_swap("k", Some(b"value"), b"v3", None), Ok(false));
        assert_eq!(store::delete("k"), Ok(true));
        assert_eq!(store::delete("k"), Ok(false));
        assert_eq!(shared::get("k"), None);
        assert_eq!(host.get_bucket("k"), Some(NOW + 60 * SEC), "the bucket stays");
        let ttl = Some(Duration::from_millis(10));
        assert_eq!(store::set("t", b"1", ttl), Ok(()));
        host.advance(Duration::from_millis(10));
        assert_eq!(store::get("t"), Ok(None));
    }

    #[test]
    fn invalid_arguments() {
        let host = MockHost::new();
        let long = "k".repeat(MAX_SHARED_KEY_BYTES + 1);
        let at = "k".repeat(MAX_SHARED_KEY_BYTES);
        let big = vec![0; MAX_SHARED_VALUE_BYTES + 1];
        let invalid = StoreError::InvalidArgument;
        assert_eq!(store::get(&long), Err(invalid.clone()));
        assert_eq!(store::set(&long, b"v", None), Err(invalid.clone()));
        assert_eq!(store::set("k", &big, None), Err(invalid.clone()));
        assert_eq!(store::delete(&long), Err(invalid.clone()));
        assert_eq!(store::increment(&long, 1, None), Err(invalid.clone()));
        assert_eq!(store::compare_and_swap(&long, None, b"v", None), Err(invalid.clone()));
        assert_eq!(store::compare_and_swap("k", None, &big, None), Err(invalid.clone()));
        assert_eq!(host.store_calls(), 0, "refused arguments make no round trip");
        assert_eq!(store::set("k", &vec![0; MAX_SHARED_VALUE_BYTES], None), Ok(()));
        assert_eq!(store::increment("k", 1, None), Err(invalid), "not a counter");
        let ok = per_second("ok");
        let refused = [
            vec![],
            vec![ok.clone(); MAX_STORE_BUCKETS + 1],
            vec![ok.clone(), Bucket::new("zero", 0, SEC)],
            vec![Bucket::new(long.clone(), MS, SEC)],
        ];
        for buckets in refused {
            assert_eq!(store::acquire(&buckets, 1), Err(StoreError::InvalidArgument));
            assert_eq!(store::acquire_local(&buckets, 1), Err(StoreError::InvalidArgument));
        }
        assert_eq!(host.get_bucket("ok"), None);
        assert_eq!(host.store_calls(), 2);
        let twice = [ok.clone(), ok.clone()];
        assert_eq!(
            store::acquire(&twice, 1),
            Err(StoreError::InvalidArgument),
            "a key twice"
        );
        let longest = [Bucket::new(at, MS, SEC)];
        assert_eq!(store::acquire(&longest, 1).map(|d| d.tats.len()), Ok(1));
        let most: Vec<Bucket> = (0..MAX_STORE_BUCKETS)
            .map(|i| Bucket::new(i.to_string(), MS, SEC))
            .collect();
        assert_eq!(store::acquire(&most, 1).map(|d| d.tats.len()), Ok(MAX_STORE_BUCKETS));
    }

    #[test]
    fn buckets_count_against_the_quota() {
        let host = MockHost::new();
        // One value and one bucket: "v"+"1" and "b"+8.
        host.shared_quota(2, 11);
        assert_eq!(shared::set("v", b"1", None), Ok(()));
        let both = [per_second("a"), per_second("b")];
        let (a, b) = (&both[..1], &both[1..]);
        // Two new buckets do not fit: neither is stored.
        assert_eq!(store::acquire(&both, 1), Err(StoreError::LimitExceeded));
        assert_eq!((host.get_bucket("a"), host.get_bucket("b")), (None, None));
        assert!(allowed(b));
        // Replacing a bucket adds nothing; a read writes nothing.
        assert!(allowed(b));
        assert_eq!(store::acquire(a, 0).map(|d| d.allowed), Ok(true));
        assert_eq!(store::acquire(a, 1), Err(StoreError::LimitExceeded));
        // A denial writes nothing, so it is not refused.
        let full = Bucket::new("a", SEC, 0);
        assert_eq!(store::acquire(&[full], 1).map(|d| d.allowed), Ok(false));
        // The values see the buckets too.
        assert_eq!(shared::set("w", b"", None), Err(HostError::LimitExceeded));
        assert_eq!(store::set("w", b"", None), Err(StoreError::LimitExceeded));
        // The local buckets have a quota of their own (of the same size).
        assert_eq!(store::acquire_local(a, 1).map(|d| d.allowed), Ok(true));
        assert_eq!(store::acquire_local(&both, 1), Err(StoreError::LimitExceeded));
        assert_eq!(host.get_local_bucket("a"), Some(NOW + 100 * MS));
        assert_eq!(host.get_local_bucket("b"), None);
    }

    #[test]
    fn an_outage() {
        let host = MockHost::new();
        let b = [per_second("client")];
        assert!(allowed(&b));
        assert_eq!(store::set("k", b"v", None), Ok(()));
        host.store_unavailable(Some("redis: timed out"));
        let down = StoreError::Unavailable("redis: timed out".into());
        assert_eq!(store::acquire(&b, 1), Err(down.clone()));
        assert_eq!(store::get("k"), Err(down.clone()));
        assert_eq!(store::set("k", b"w", None), Err(down.clone()));
        assert_eq!(store::delete("k"), Err(down.clone()));
        assert_eq!(store::increment("n", 1, None), Err(down.clone()));
        assert_eq!(store::compare_and_swap("k", None, b"w", None), Err(down));
        assert_eq!(host.get_bucket("client"), Some(NOW + 100 * MS), "nothing changed");
        assert_eq!(host.get_shared("k"), Some(b"v".to_vec()));
        // This process's memory still answers.
        assert_eq!(store::acquire_local(&b, 1).map(|d| d.allowed), Ok(true));
        assert_eq!(host.store_calls(), 8);
        host.store_unavailable(None);
        assert!(allowed(&b));
        assert_eq!(host.get_bucket("client"), Some(NOW + 200 * MS));
        assert_eq!(shared::get("k"), Some(b"v".to_vec()));
    }

    #[test]
    #[should_panic(expected = "trap: shared state unavailable: redis: connection refused")]
    fn shared_state_traps_in_an_outage() {
        let host = MockHost::new();
        host.store_unavailable(Some("redis: connection refused"));
        shared::get("k");
    }

    #[test]
    fn every_shared_state_call_traps_in_an_outage() {
        let host = MockHost::new();
        host.store_unavailable(Some("down"));
        let calls: [fn(); 5] = [
            || {
                let _ = shared::get("k");
            },
            || {
                let _ = shared::set("k", b"v", None);
            },
            || {
                let _ = shared::delete("k");
            },
            || {
                let _ = shared::increment("k", 1, None);
            },
            || {
                let _ = shared::compare_and_swap("k", None, b"v", None);
            },
        ];
        for call in calls {
            let panic = std::panic::catch_unwind(call).err();
            let message = panic.as_ref().and_then(|p| p.downcast_ref::<String>());
            assert_eq!(
                message.map(String::as_str),
                Some("trap: shared state unavailable: down")
            );
        }
    }
}
