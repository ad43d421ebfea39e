//! Host services available in every phase and in `Filter::create`:
//! request context, shared state, logging, clocks and randomness.

/// Values attached to the current request, seen by every later filter of the
/// chain and by the response phases.
pub mod context {
    use crate::sys;
    use crate::types::HostError;

    /// The value under `key`, if set.
    pub fn get(key: &str) -> Option<String> {
        sys::context_get(key)
    }
    /// Store `value` under `key`.
    pub fn set(key: &str, value: &str) -> Result<(), HostError> {
        sys::context_set(key, value)
    }
    /// Remove `key`.
    pub fn remove(key: &str) {
        sys::context_remove(key)
    }
    /// Every key set, in no particular order.
    pub fn keys() -> Vec<String> {
        sys::context_keys()
    }
}

/// A key-value store shared by all instances of this plugin, with atomic
/// operations. Keys are namespaced per plugin by the host.
///
/// When the backend cannot answer (the Redis backend down or too slow),
/// these functions cannot say so: the call **traps**, and the entry's
/// `on_failure` policy decides the request. [`crate::store`] (0.1.4) has the
/// same operations on the same keys, returning
/// [`StoreError::Unavailable`](crate::store::StoreError::Unavailable)
/// instead.
pub mod shared {
    use crate::sys;
    use crate::types::HostError;
    use std::time::Duration;

    /// Whole milliseconds, rounded up: a TTL never ends early.
    pub(crate) fn ms(ttl: Option<Duration>) -> Option<u64> {
        ttl.map(|d| u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }

    /// The value under `key`, if present and not expired.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        sys::shared_get(key)
    }
    /// Store `value`, optionally expiring after `ttl`.
    pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), HostError> {
        sys::shared_set(key, value, ms(ttl))
    }
    /// Remove `key`; whether it was present.
    pub fn delete(key: &str) -> bool {
        sys::shared_delete(key)
    }
    /// Atomically add `delta` to the counter under `key` (absent = 0) and
    /// return the new value. `ttl` applies when the counter is created.
    pub fn increment(key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, HostError> {
        sys::shared_increment(key, delta, ms(ttl))
    }
    /// Atomically replace the value if it equals `expected` (`None` =
    /// absent); whether the swap happened.
    pub fn compare_and_swap(
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, HostError> {
        sys::shared_compare_and_swap(key, expected, new, ms(ttl))
    }
}

/// Logging into the host's log, tagged with the plugin name. The macros
/// [`crate::info!`] and friends format only when the level is enabled.
pub mod log {
    use crate::sys;
    pub use crate::types::LogLevel;

    /// Write `message` at `level`.
    pub fn log(level: LogLevel, message: &str) {
        sys::log(level, message)
    }
    /// Whether records at `level` are kept.
    pub fn enabled(level: LogLevel) -> bool {
        sys::log_enabled(level)
    }
}

/// Clocks.
pub mod clock {
    use crate::sys;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Wall-clock time.
    pub fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(sys::now_unix_nanos())
    }
    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos() -> u64 {
        sys::now_unix_nanos()
    }
    /// Seconds since the Unix epoch (handy for token expiry checks).
    pub fn unix_seconds() -> u64 {
        sys::now_unix_nanos() / 1_000_000_000
    }
    /// A monotonic instant, for measuring durations.
    pub fn monotonic() -> Duration {
        Duration::from_nanos(sys::monotonic_nanos())
    }
}

/// Randomness from the host's secure generator.
pub mod random {
    use crate::sys;

    /// A random `u64`.
    pub fn next_u64() -> u64 {
        sys::random_u64()
    }
    /// `len` random bytes (at most 65536).
    pub fn bytes(len: u32) -> Vec<u8> {
        sys::random_bytes(len)
    }
}

/// Log at a level with `format!` arguments, formatting only if enabled.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {{
        let level = $level;
        if $crate::log::enabled(level) {
            $crate::log::log(level, &::std::format!($($arg)+));
        }
    }};
}
/// Log at `debug`.
#[macro_export]
macro_rules! debug { ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Debug, $($arg)+) }; }
/// Log at `info`.
#[macro_export]
macro_rules! info { ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Info, $($arg)+) }; }
/// Log at `warn`.
#[macro_export]
macro_rules! warn { ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Warn, $($arg)+) }; }
/// Log at `error`.
#[macro_export]
macro_rules! error { ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Error, $($arg)+) }; }
