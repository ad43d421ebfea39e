//! The one place the SDK reaches the host. On `wasm32` every function calls
//! the WIT import of the same name; natively it reads and writes the
//! thread-local state of the [`crate::mock::MockHost`].

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::*;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod mock;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use mock::*;

/// Which message a header call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    Request,
    Response,
}
