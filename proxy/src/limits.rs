//! Bounds on what a filter may ask of the host in one request. A call past
//! a bound is refused with `limit-exceeded`, never a panic or an invalid
//! HTTP message.

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
/// Bytes in a local response body.
pub const MAX_LOCAL_BODY_BYTES: usize = 1024 * 1024;
/// Bytes one `random.bytes` call returns.
pub const MAX_RANDOM_BYTES: u32 = 64 * 1024;
/// Bytes of one log message kept (longer ones are cut).
pub const MAX_LOG_BYTES: usize = 4096;
