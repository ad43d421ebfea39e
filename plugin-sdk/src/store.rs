//! The plugin's shared state with outages reported, and atomic rate-limit
//! decisions (WIT `shared-store`, added in 0.1.4).
//!
//! [`get`], [`set`], [`delete`], [`increment`] and [`compare_and_swap`] work
//! on the same keys as [`shared`](crate::shared), but every one of them can
//! fail, with [`StoreError::Unavailable`] among the reasons. Where the state
//! lives is the operator's choice (`[shared_state] backend`): in the sluice
//! process (`memory`, the default) or in Redis (`redis`), shared by every
//! replica using the same Redis and key prefix. When that backend cannot
//! answer (Redis down or reconnecting, or slower than `command_timeout` or
//! what is left of the entry's `wait_limit`), the [`shared`](crate::shared)
//! functions **trap**: the call fails, the entry's `on_failure` policy decides
//! the request, and the instance is replaced. These return
//! `Err(StoreError::Unavailable(..))` instead, so the filter decides.
//!
//! [`acquire`] makes a rate-limit decision where the state lives, atomically
//! and in one round trip whatever the backend: it takes `cost` tokens from
//! every [`Bucket`] given, or from none. A bucket is kept as GCRA (the
//! generic cell rate algorithm): a token bucket of `tolerance_ns /
//! interval_ns` tokens refilled at one token per `interval_ns`, stored as one
//! timestamp, its TAT (theoretical arrival time: when the bucket is full
//! again). For each bucket, at the store's clock `now`:
//!
//! ```text
//! tat = max(stored TAT or now, now)
//! new = tat + cost × T
//! allowed iff new − now ≤ τ for every bucket; then every bucket stores `new`
//! ```
//!
//! [`acquire_local`] does the same against this sluice process's own memory,
//! whatever the backend, and never fails with `Unavailable`: a fallback limit
//! for each replica while the shared backend is down.
//!
//! ```no_run
//! use sluice_sdk::store::{self, Bucket, StoreError};
//!
//! // 10 per second with bursts of 20, and 1000 per hour, for one client.
//! let buckets = [
//!     Bucket::new("second:203.0.113.7", 100_000_000, 2_000_000_000),
//!     Bucket::new("hour:203.0.113.7", 3_600_000_000, 3_600_000_000_000),
//! ];
//! match store::acquire(&buckets, 1) {
//!     Ok(decision) if decision.allowed => { /* pass */ }
//!     Ok(decision) => { /* 429: decision.tats tell when it would pass */ }
//!     Err(StoreError::Unavailable(_)) => {
//!         // Limit each replica on its own until the store is back.
//!         let _ = store::acquire_local(&buckets, 1);
//!     }
//!     Err(e) => { /* quota full or invalid bucket: e */ }
//! }
//! ```
//!
//! A filter that never calls a function of this module does not import
//! `shared-store`, so it keeps loading in hosts older than 0.1.4; one that
//! does needs a 0.1.4 or later host.

use crate::host::shared::ms;
use crate::sys;
use std::time::Duration;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend did not answer: Redis is down or reconnecting, or slower
    /// than `command_timeout` or what is left of the entry's `wait_limit`.
    /// The text says which (for logs; do not parse it). A write that timed
    /// out may or may not have been applied.
    Unavailable(String),
    /// The write would take the plugin past its shared-state quota
    /// (`[shared_state]` `max_entries`, `max_bytes`); nothing changed.
    LimitExceeded,
    /// A key longer than [`MAX_SHARED_KEY_BYTES`](crate::limits::MAX_SHARED_KEY_BYTES),
    /// a value larger than [`MAX_SHARED_VALUE_BYTES`](crate::limits::MAX_SHARED_VALUE_BYTES),
    /// [`increment`] on a value that is not an 8-byte counter, or for
    /// [`acquire`]: no bucket, more than
    /// [`MAX_STORE_BUCKETS`](crate::limits::MAX_STORE_BUCKETS), or a bucket
    /// with a zero interval.
    InvalidArgument,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "shared store unavailable: {why}"),
            StoreError::LimitExceeded => f.write_str("shared-state quota exceeded"),
            StoreError::InvalidArgument => f.write_str("invalid argument"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The value under `key`, if present and not expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    sys::store_get(key)
}

/// Store `value` under `key`, optionally expiring after `ttl` (rounded up to
/// whole milliseconds); `None` keeps it until deleted.
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
    sys::store_set(key, value, ms(ttl))
}

/// Remove `key`; whether it was present (and not expired).
pub fn delete(key: &str) -> Result<bool, StoreError> {
    sys::store_delete(key)
}

/// Atomically add `delta` to the signed 64-bit counter under `key` (absent
/// or expired counts as 0) and return the new value. `ttl` applies when the
/// counter is created. A counter is stored as its 8-byte little-endian
/// encoding; a present value of any other length is `InvalidArgument`.
pub fn increment(key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, StoreError> {
    sys::store_increment(key, delta, ms(ttl))
}

/// Atomically replace the value under `key` with `new` if the current value
/// equals `expected` (`None` = absent); whether the swap happened. `ttl`
/// applies to the stored value.
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: &[u8],
    ttl: Option<Duration>,
) -> Result<bool, StoreError> {
    sys::store_compare_and_swap(key, expected, new, ms(ttl))
}

/// One bucket of a rate limit, kept as GCRA.
///
/// Buckets live in their own key space: `key` never meets a key of [`get`]
/// or [`set`] (and [`acquire_local`]'s buckets are apart from
/// [`acquire`]'s). A bucket's entry counts against the plugin's quota as one
/// entry of `key.len() + 8` bytes, and expires once the bucket is full again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// Which bucket (for example the limit's name and the client); at most
    /// [`MAX_SHARED_KEY_BYTES`](crate::limits::MAX_SHARED_KEY_BYTES) bytes.
    pub key: String,
    /// T: nanoseconds per token, at least 1 (`per / requests`).
    pub interval_ns: u64,
    /// τ: how far ahead of now the TAT may run, in nanoseconds (`burst × T`).
    /// A request taking `cost` tokens passes iff
    /// `max(TAT, now) + cost × T − now ≤ τ`.
    pub tolerance_ns: u64,
}

impl Bucket {
    /// The bucket `key` with interval T and tolerance τ, in nanoseconds.
    pub fn new(key: impl Into<String>, interval_ns: u64, tolerance_ns: u64) -> Self {
        Bucket {
            key: key.into(),
            interval_ns,
            tolerance_ns,
        }
    }
}

/// What [`acquire`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether every bucket had room; only then were tokens taken.
    pub allowed: bool,
    /// Each bucket's TAT after the decision, in the order given, as Unix
    /// nanoseconds (`max(TAT, now)` for a bucket left unchanged). With the
    /// bucket's T and τ this gives what remains (`(τ − (TAT − now)) / T`)
    /// and, when denied, how long until it would pass
    /// (`TAT + cost × T − τ − now`).
    pub tats: Vec<u64>,
    /// The time the decision was made at, Unix nanoseconds, by the store's
    /// clock (Redis's, with the Redis backend, so replicas with skewed
    /// clocks still agree).
    pub now_ns: u64,
}

/// Take `cost` tokens from every bucket, or from none: atomically, if each
/// bucket has room for `cost` more tokens, all of them take them; otherwise
/// nothing changes (`allowed` is false). One round trip with the Redis
/// backend, whatever the number of buckets (1 to
/// [`MAX_STORE_BUCKETS`](crate::limits::MAX_STORE_BUCKETS)). `cost` 0 only
/// reads. `LimitExceeded` if storing the new TATs would take the plugin past
/// its quota (nothing changed then).
pub fn acquire(buckets: &[Bucket], cost: u32) -> Result<RateDecision, StoreError> {
    sys::store_acquire(buckets, cost)
}

/// [`acquire`] against this sluice process's own memory, whatever the
/// backend: for a fallback limit while the shared backend is unavailable.
/// Its buckets are apart from [`acquire`]'s, and it never fails with
/// `Unavailable`.
pub fn acquire_local(buckets: &[Bucket], cost: u32) -> Result<RateDecision, StoreError> {
    sys::store_acquire_local(buckets, cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display() {
        assert_eq!(
            StoreError::Unavailable("redis: connection refused".into()).to_string(),
            "shared store unavailable: redis: connection refused"
        );
        assert_eq!(StoreError::LimitExceeded.to_string(), "shared-state quota exceeded");
        assert_eq!(StoreError::InvalidArgument.to_string(), "invalid argument");
        let boxed: Box<dyn std::error::Error> = Box::new(StoreError::LimitExceeded);
        assert!(boxed.source().is_none());
        assert_eq!(
            Bucket::new("k", 1, 2),
            Bucket {
                key: "k".into(),
                interval_ns: 1,
                tolerance_ns: 2
            }
        );
    }
}
