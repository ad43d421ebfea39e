//! Native backing of `shared-store` (0.1.4): the fallible shared-state
//! operations on the same values as [`super::shared`], and GCRA buckets,
//! computed exactly as the host computes them.
//!
//! The fleet buckets (`acquire`) and the local ones (`acquire-local`) are
//! two maps apart from each other and from the values. Fleet buckets count
//! against the plugin's shared-state quota together with its values; local
//! buckets, this process's own memory, against a quota of the same size of
//! their own (as with the host's Redis backend; with its memory backend the
//! three share one quota). A bucket is one entry of its key plus 8 bytes,
//! and expires (on the monotonic clock, as values do) `TAT − now + 1 s`
//! after the decision that stored it, that is once it is full again.
//!
//! A call that reaches the backend is one round trip, counted in
//! [`Store::calls`]; during a scripted outage ([`Store::unavailable`]) it
//! fails with `Unavailable` and changes nothing. Arguments are checked
//! first, without a round trip; `acquire-local` never makes one.

use super::shared::{self, is_live, live, put};
use super::{State, with};
use crate::limits::{MAX_SHARED_KEY_BYTES, MAX_SHARED_VALUE_BYTES, MAX_STORE_BUCKETS};
use crate::store::{Bucket, RateDecision, StoreError};
use crate::types::HostError;
use std::collections::{HashMap, HashSet};

/// How long a bucket's entry outlives the time it is full again.
const EXPIRY_MARGIN_NANOS: u64 = 1_000_000_000;

/// One stored bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Its TAT, Unix nanoseconds.
    pub tat: u64,
    /// When the entry vanishes, on the monotonic clock.
    pub expires: u64,
}

/// Buckets by key.
pub(crate) type Buckets = HashMap<String, Stored>;

/// The `shared-store` side of the mock's state.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// A scripted outage of the backend: its reason while it lasts.
    pub unavailable: Option<String>,
    /// Round trips to the backend so far.
    pub calls: usize,
    /// The buckets of `acquire`.
    pub fleet: Buckets,
    /// The buckets of `acquire-local`.
    pub local: Buckets,
}

/// Entries and bytes `buckets` holds, expired or not.
pub(super) fn held(buckets: &Buckets) -> (usize, usize) {
    (buckets.len(), buckets.keys().map(|k| k.len() + 8).sum())
}

/// Drop the buckets expired at monotonic time `now`.
pub(super) fn reclaim(buckets: &mut Buckets, now: u64) {
    buckets.retain(|_, b| b.expires > now);
}

fn key_arg(key: &str) -> Result<(), StoreError> {
    if key.len() > MAX_SHARED_KEY_BYTES {
        return Err(StoreError::InvalidArgument);
    }
    Ok(())
}

fn value_arg(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_SHARED_VALUE_BYTES {
        return Err(StoreError::InvalidArgument);
    }
    Ok(())
}

/// A `shared-state` refusal as `shared-store` reports it.
fn refused(e: HostError) -> StoreError {
    match e {
        HostError::LimitExceeded => StoreError::LimitExceeded,
        _ => StoreError::InvalidArgument,
    }
}

/// One round trip to the backend: counted, and `Unavailable` during an
/// outage.
fn round_trip(s: &mut State) -> Result<(), StoreError> {
    s.store.calls += 1;
    match &s.store.unavailable {
        Some(why) => Err(StoreError::Unavailable(why.clone())),
        None => Ok(()),
    }
}

pub(crate) fn store_get(key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    key_arg(key)?;
    with(|s| {
        round_trip(s)?;
        Ok(live(s, key))
    })
}

pub(crate) fn store_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), StoreError> {
    key_arg(key)?;
    value_arg(value)?;
    with(|s| {
        round_trip(s)?;
        let e = shared::expiry(s, ttl_ms);
        put(s, key, value.to_vec(), e).map_err(refused)
    })
}

pub(crate) fn store_delete(key: &str) -> Result<bool, StoreError> {
    key_arg(key)?;
    with(|s| {
        round_trip(s)?;
        Ok(shared::delete(s, key))
    })
}

pub(crate) fn store_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, StoreError> {
    key_arg(key)?;
    with(|s| {
        round_trip(s)?;
        shared::increment(s, key, delta, ttl_ms).map_err(refused)
    })
}

pub(crate) fn store_compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: &[u8],
    ttl_ms: Option<u64>,
) -> Result<bool, StoreError> {
    key_arg(key)?;
    value_arg(new)?;
    with(|s| {
        round_trip(s)?;
        shared::compare_and_swap(s, key, expected, new, ttl_ms).map_err(refused)
    })
}

/// 1 to `MAX_STORE_BUCKETS` buckets, each with its own key of at most
/// `MAX_SHARED_KEY_BYTES` and an interval of at least 1 ns.
fn buckets_arg(buckets: &[Bucket]) -> Result<(), StoreError> {
    if buckets.is_empty() || buckets.len() > MAX_STORE_BUCKETS {
        return Err(StoreError::InvalidArgument);
    }
    for (i, b) in buckets.iter().enumerate() {
        key_arg(&b.key)?;
        if b.interval_ns == 0 || buckets[..i].iter().any(|earlier| earlier.key == b.key) {
            return Err(StoreError::InvalidArgument);
        }
    }
    Ok(())
}

pub(crate) fn store_acquire(buckets: &[Bucket], cost: u32) -> Result<RateDecision, StoreError> {
    buckets_arg(buckets)?;
    with(|s| {
        round_trip(s)?;
        acquire(s, Scope::Fleet, buckets, cost)
    })
}

pub(crate) fn store_acquire_local(buckets: &[Bucket], cost: u32) -> Result<RateDecision, StoreError> {
    buckets_arg(buckets)?;
    with(|s| acquire(s, Scope::Local, buckets, cost))
}

/// Which buckets a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Fleet,
    Local,
}

fn map(s: &State, scope: Scope) -> &Buckets {
    match scope {
        Scope::Fleet => &s.store.fleet,
        Scope::Local => &s.store.local,
    }
}

/// The GCRA decision for every bucket at once (see `crate::store`): with
/// `tat = max(stored, now)` and `new = tat + cost × T`, allowed iff
/// `new − now ≤ τ` for every bucket. Only an allowed decision with a
/// non-zero cost writes, and only if every new bucket fits the quota.
fn acquire(s: &mut State, scope: Scope, buckets: &[Bucket], cost: u32) -> Result<RateDecision, StoreError> {
    let now = s.now_unix_nanos;
    let mono = s.monotonic_nanos;
    let stored = map(s, scope);
    let mut tats = Vec::with_capacity(buckets.len());
    let mut news = Vec::with_capacity(buckets.len());
    let mut allowed = true;
    for b in buckets {
        let tat = stored
            .get(&b.key)
            .filter(|e| is_live(Some(e.expires), mono))
            .map_or(now, |e| e.tat)
            .max(now);
        let new = tat.saturating_add(u64::from(cost).saturating_mul(b.interval_ns));
        allowed &= new - now <= b.tolerance_ns;
        tats.push(tat);
        news.push(new);
    }
    if !allowed || cost == 0 {
        return Ok(RateDecision {
            allowed,
            tats,
            now_ns: now,
        });
    }
    if !fits(s, scope, buckets) {
        match scope {
            Scope::Fleet => shared::reclaim(s),
            Scope::Local => reclaim(&mut s.store.local, mono),
        }
        if !fits(s, scope, buckets) {
            return Err(StoreError::LimitExceeded);
        }
    }
    let target = match scope {
        Scope::Fleet => &mut s.store.fleet,
        Scope::Local => &mut s.store.local,
    };
    for (b, &new) in buckets.iter().zip(&news) {
        let expires = mono.saturating_add(new - now).saturating_add(EXPIRY_MARGIN_NANOS);
        target.insert(b.key.clone(), Stored { tat: new, expires });
    }
    Ok(RateDecision {
        allowed: true,
        tats: news,
        now_ns: now,
    })
}

/// Whether storing `buckets` keeps their store within the quota. A bucket
/// already there (expired or not) is replaced by one of the same size, so
/// only new keys count.
fn fits(s: &State, scope: Scope, buckets: &[Bucket]) -> bool {
    let stored = map(s, scope);
    let added: HashSet<&str> = buckets
        .iter()
        .map(|b| b.key.as_str())
        .filter(|k| !stored.contains_key(*k))
        .collect();
    let bytes = added.iter().map(|k| k.len() + 8).sum();
    let held = match scope {
        Scope::Fleet => shared::held(s),
        Scope::Local => held(stored),
    };
    shared::within_quota(s, held, added.len(), 0, bytes)
}
