//! Bounds on what a filter may ask of the host, shared with the SDK's mock
//! host from one file (see `plugin-sdk/src/limits.rs`).

#[path = "../../plugin-sdk/src/limits.rs"]
mod shared;

pub use shared::*;
