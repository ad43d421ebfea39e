//! Host bindings generated from `wit/filter.wit`. Generated types stay in
//! the `wasm` module; the rest of the proxy speaks its own types.
//!
//! Two worlds: `filter` (the `handler` export every component has, and
//! every host import) and `body-filter`, of which only the optional
//! `body-handler` export is used here: a plugin that exports it gets body
//! phases, one that does not works as before.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "filter",
    imports: {
        // These wait on the network: the filter is suspended, the worker is not.
        "sluice:filter/outbound-http.send": async,
        "sluice:filter/remote-document.refresh": async,
        // Shared state may live in Redis. `shared-state` has no error for
        // an unavailable backend, so it traps (see wasm/shared_store.rs).
        "sluice:filter/shared-state.get": async | trappable,
        "sluice:filter/shared-state.set": async | trappable,
        "sluice:filter/shared-state.delete": async | trappable,
        "sluice:filter/shared-state.increment": async | trappable,
        "sluice:filter/shared-state.compare-and-swap": async | trappable,
        "sluice:filter/shared-store.get": async,
        "sluice:filter/shared-store.set": async,
        "sluice:filter/shared-store.delete": async,
        "sluice:filter/shared-store.increment": async,
        "sluice:filter/shared-store.compare-and-swap": async,
        "sluice:filter/shared-store.acquire": async,
    },
    exports: { default: async },
});

pub use self::sluice::filter::types::{Action, HeaderLine, HostError, LogLevel, Phases};

/// The optional `body-handler` export.
pub mod body {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "body-filter",
        exports: { default: async },
        with: {
            "sluice:filter/types": super::sluice::filter::types,
            "sluice:filter/request": super::sluice::filter::request,
            "sluice:filter/response": super::sluice::filter::response,
            "sluice:filter/context": super::sluice::filter::context,
            "sluice:filter/shared-state": super::sluice::filter::shared_state,
            "sluice:filter/shared-store": super::sluice::filter::shared_store,
            "sluice:filter/log": super::sluice::filter::log,
            "sluice:filter/clock": super::sluice::filter::clock,
            "sluice:filter/random": super::sluice::filter::random,
            "sluice:filter/connection": super::sluice::filter::connection,
            "sluice:filter/interception": super::sluice::filter::interception,
            "sluice:filter/outbound-http": super::sluice::filter::outbound_http,
            "sluice:filter/remote-document": super::sluice::filter::remote_document,
        },
    });

    pub use self::exports::sluice::filter::body_handler::{
        BodyAction, BodyPhases, Guest as BodyHandler, GuestIndices as BodyHandlerIndices,
    };
}
