//! Native backing of `shared-state`: this plugin's values with their
//! expiry and quota, as the host keeps them (`proxy/src/shared_state`). The
//! quota also counts the fleet buckets of `shared-store` ([`super::store`]),
//! which reuses these operations. During a scripted outage every call that
//! reaches the backend panics, as the host traps.

use super::{State, with};
use crate::limits::{MAX_SHARED_KEY_BYTES, MAX_SHARED_VALUE_BYTES};
use crate::types::HostError;

pub(super) fn shared_key(key: &str) -> Result<(), HostError> {
    if key.len() > MAX_SHARED_KEY_BYTES {
        return Err(HostError::LimitExceeded);
    }
    Ok(())
}

pub(super) fn shared_value(value: &[u8]) -> Result<(), HostError> {
    if value.len() > MAX_SHARED_VALUE_BYTES {
        return Err(HostError::LimitExceeded);
    }
    Ok(())
}

pub(super) fn is_live(expiry: Option<u64>, now: u64) -> bool {
    expiry.is_none_or(|e| e > now)
}
/// The live value under `key`; an expired one is dropped.
pub(super) fn live(s: &mut State, key: &str) -> Option<Vec<u8>> {
    let now = s.monotonic_nanos;
    match s.shared.get(key) {
        Some((_, e)) if !is_live(*e, now) => {
            s.shared.remove(key);
            None
        }
        Some((v, _)) => Some(v.clone()),
        None => None,
    }
}
pub(super) fn expiry(s: &State, ttl_ms: Option<u64>) -> Option<u64> {
    ttl_ms.map(|ms| s.monotonic_nanos.saturating_add(ms.saturating_mul(1_000_000)))
}

/// Entries and bytes (of keys plus values) this plugin's shared state
/// holds, expired or not: its values, and its `shared-store` buckets (one
/// entry of the key plus 8 bytes each).
pub(super) fn held(s: &State) -> (usize, usize) {
    let bytes: usize = s.shared.iter().map(|(k, (v, _))| k.len() + v.len()).sum();
    let (bucket_entries, bucket_bytes) = super::store::held(&s.store.fleet);
    (s.shared.len() + bucket_entries, bytes + bucket_bytes)
}

/// Whether a write to a store holding `held` (entries, bytes) that adds
/// `added` entries and replaces `old` bytes with `new` keeps the plugin
/// within its quota. A change that does not grow a count always fits it.
pub(super) fn within_quota(s: &State, held: (usize, usize), added: usize, old: usize, new: usize) -> bool {
    let (entries, bytes) = held;
    let entries_fit = added == 0 || entries.saturating_add(added) <= s.shared_max_entries;
    let bytes_fit = new <= old || bytes - old + new <= s.shared_max_bytes;
    entries_fit && bytes_fit
}

/// Whether storing a value of `len` bytes under `key` (replacing what is
/// there, expired or not) keeps this plugin within its quota, counted as
/// the host counts: entries, and bytes of keys plus values.
fn fits(s: &State, key: &str, len: usize) -> bool {
    let old = s.shared.get(key).map(|(v, _)| key.len() + v.len());
    within_quota(
        s,
        held(s),
        usize::from(old.is_none()),
        old.unwrap_or(0),
        key.len() + len,
    )
}

/// Drop the expired values and buckets of this plugin's shared state.
pub(super) fn reclaim(s: &mut State) {
    let now = s.monotonic_nanos;
    s.shared.retain(|_, (_, e)| is_live(*e, now));
    super::store::reclaim(&mut s.store.fleet, now);
}

/// Store `value` under `key` within the quota. As on the host, a write that
/// does not fit first drops the expired entries and is tried once more;
/// if it still does not fit it is `limit-exceeded` and nothing changes.
/// (The host reclaims at most once a second; the mock every time.)
pub(super) fn put(s: &mut State, key: &str, value: Vec<u8>, expires: Option<u64>) -> Result<(), HostError> {
    if !fits(s, key, value.len()) {
        reclaim(s);
        if !fits(s, key, value.len()) {
            return Err(HostError::LimitExceeded);
        }
    }
    s.shared.insert(key.to_string(), (value, expires));
    Ok(())
}

/// Remove `key`; whether it was there and live.
pub(super) fn delete(s: &mut State, key: &str) -> bool {
    live(s, key).is_some() && s.shared.remove(key).is_some()
}
/// `increment` on a checked key.
pub(super) fn increment(s: &mut State, key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, HostError> {
    let now = s.monotonic_nanos;
    match s.shared.get_mut(key) {
        Some((v, e)) if is_live(*e, now) => {
            let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| HostError::InvalidArgument)?;
            let next = i64::from_le_bytes(bytes).wrapping_add(delta);
            *v = next.to_le_bytes().to_vec();
            Ok(next)
        }
        // Absent or expired: a new counter, within the quota.
        _ => {
            let e = expiry(s, ttl_ms);
            put(s, key, delta.to_le_bytes().to_vec(), e)?;
            Ok(delta)
        }
    }
}
/// `compare-and-swap` on a checked key and value.
pub(super) fn compare_and_swap(
    s: &mut State,
    key: &str,
    expected: Option<&[u8]>,
    new: &[u8],
    ttl_ms: Option<u64>,
) -> Result<bool, HostError> {
    let now = s.monotonic_nanos;
    let current = s
        .shared
        .get(key)
        .filter(|(_, e)| is_live(*e, now))
        .map(|(v, _)| v.as_slice());
    if current != expected {
        return Ok(false);
    }
    let e = expiry(s, ttl_ms);
    put(s, key, new.to_vec(), e)?;
    Ok(true)
}

/// What the host's trap looks like to a filter's test: during a scripted
/// outage ([`MockHost::store_unavailable`](crate::mock::MockHost::store_unavailable))
/// a `shared-state` call that reaches the backend panics.
fn trap_if_unavailable() {
    if let Some(why) = with(|s| s.store.unavailable.clone()) {
        panic!("trap: shared state unavailable: {why}");
    }
}

/// A key over `MAX_SHARED_KEY_BYTES` is absent, as on the host.
pub(crate) fn shared_get(key: &str) -> Option<Vec<u8>> {
    shared_key(key).ok()?;
    trap_if_unavailable();
    with(|s| live(s, key))
}
pub(crate) fn shared_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), HostError> {
    shared_value(value)?;
    shared_key(key)?;
    trap_if_unavailable();
    with(|s| {
        let e = expiry(s, ttl_ms);
        put(s, key, value.to_vec(), e)
    })
}
/// A key over `MAX_SHARED_KEY_BYTES` was never present, as on the host.
pub(crate) fn shared_delete(key: &str) -> bool {
    if shared_key(key).is_err() {
        return false;
    }
    trap_if_unavailable();
    with(|s| delete(s, key))
}
pub(crate) fn shared_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, HostError> {
    shared_key(key)?;
    trap_if_unavailable();
    with(|s| increment(s, key, delta, ttl_ms))
}
pub(crate) fn shared_compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: &[u8],
    ttl_ms: Option<u64>,
) -> Result<bool, HostError> {
    shared_value(new)?;
    shared_key(key)?;
    trap_if_unavailable();
    with(|s| compare_and_swap(s, key, expected, new, ttl_ms))
}
