//! Host bindings generated from `wit/filter.wit`. Generated types stay in
//! the `wasm` module; the rest of the proxy speaks its own types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "filter",
    exports: { default: async },
});

pub use self::sluice::filter::types::{Action, HeaderLine, HostError, LogLevel, Phases};
