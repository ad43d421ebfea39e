//! Bounds on what a filter may ask of the host. A call past a bound is
//! refused with `limit-exceeded` (never a panic or an invalid HTTP message).
//! This file is the one place they are written: the sluice host compiles
//! it in (`proxy/src/limits.rs`), and the SDK's mock host enforces the same
//! values, so a filter's native tests see the refusals production would.

/// Header lines in one request or response after a filter's changes.
pub const MAX_HEADER_COUNT: usize = 500;
/// Bytes in one header name or value.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Entries in a request's context.
pub const MAX_CONTEXT_ENTRIES: usize = 256;
/// Bytes in one context key or value.
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// Bytes in one shared-state key.
pub const MAX_SHARED_KEY_BYTES: usize = 1024;
/// Bytes in one shared-state value.
pub const MAX_SHARED_VALUE_BYTES: usize = 64 * 1024;
/// Buckets in one `shared-store` `acquire` (or `acquire-local`) call.
pub const MAX_STORE_BUCKETS: usize = 16;
/// Default quota of one plugin's shared state: live entries. Sized for the
/// rate-limit filter keyed on client address on a busy gateway (one entry
/// per active client); raise it per plugin in `[shared_state.plugins.NAME]`.
pub const DEFAULT_SHARED_MAX_ENTRIES: usize = 100_000;
/// Default quota of one plugin's shared state: bytes of keys plus values.
pub const DEFAULT_SHARED_MAX_BYTES: usize = 16 << 20;
/// Bytes in a local response body.
pub const MAX_LOCAL_BODY_BYTES: usize = 1024 * 1024;
/// Bytes one `random.bytes` call returns.
pub const MAX_RANDOM_BYTES: u32 = 64 * 1024;
/// Bytes of one log message kept (longer ones are cut).
pub const MAX_LOG_BYTES: usize = 4096;
/// Log lines one plugin may write per second, on average (its token
/// bucket's refill rate); lines past the budget are dropped and counted.
pub const LOG_LINES_PER_SECOND: u32 = 100;
/// Log lines one plugin may write in a burst (its token bucket's size).
pub const LOG_BURST: u32 = 200;
