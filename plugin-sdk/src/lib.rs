//! # sluice-sdk — write filters for the sluice proxy
//!
//! A filter is a type that implements [`Filter`] and is exported with
//! [`export_filter!`]. Build the crate as a `cdylib` for `wasm32-wasip2` and
//! drop the `.wasm` into sluice's plugins directory. The same crate's unit
//! tests run natively with `cargo test` against [`mock::MockHost`].
//!
//! ```text
//! client → router → [on_request_headers: 1 → 2 → …] → [on_request_body: 1 → 2 → …] → upstream
//! client ←──────── [on_response_body: 1 ← 2 ← …] ← [on_response_headers: 1 ← 2 ← …] ← upstream
//! ```
//!
//! The header phases are asked for with [`Filter::phases`]. The body phases
//! are opt-in with [`Filter::body_phases`]: only then does the host buffer
//! the whole body (up to the entry's `max_body_bytes`) and hand it over; the
//! filter keeps it ([`BodyAction::Continue`]), replaces it or answers
//! instead. Each body phase runs after every filter's header phase of the
//! same direction. Chains where no filter asks for a body phase stream
//! bodies untouched.
//!
//! Besides the request and response, a filter may call out and read:
//! - [`outbound`]: send an HTTP request to one of the entry's clusters and
//!   wait for the whole response (in phases, never in `create`);
//! - [`document`]: subscribe in `create` to a remote document (a JWKS, a
//!   policy) that the host fetches and keeps fresh, and read its current
//!   copy in phases;
//! - [`store`]: the plugin's shared state with outages reported as errors
//!   (where [`shared`] traps), and atomic multi-bucket rate-limit decisions
//!   (GCRA) made where the state lives;
//! - [`context`], [`shared`], [`log`](mod@log), [`clock`], [`random`],
//!   [`connection`], [`interception`].
//!
//! The WIT contract (`wit/filter.wit`) is the reference for what each call
//! does; this crate mirrors it with plain Rust types. It builds against the
//! world `body-filter`, so every filter exports `body-handler`; a filter
//! that does not call [`outbound`], [`document`] or [`store`] does not
//! import them (and keeps loading in hosts older than the version that
//! added them: 0.1.3, 0.1.3 and 0.1.4).
//!
//! ## Example
//!
//! A filter that denies requests without an `x-api-team` header and tells
//! later filters which team called:
//!
//! ```
//! use sluice_sdk::{Action, Config, Filter, Request, Response, context};
//!
//! #[derive(serde::Deserialize)]
//! struct Settings { header: String }
//!
//! struct TeamGate { header: String }
//!
//! impl Filter for TeamGate {
//!     fn create(config: &Config) -> Result<Self, String> {
//!         let s: Settings = config.parse()?;
//!         Ok(TeamGate { header: s.header })
//!     }
//!
//!     fn on_request_headers(&mut self, req: &mut Request) -> Action {
//!         match req.header(&self.header) {
//!             Some(team) => {
//!                 let _ = context::set("team", &team);
//!                 Action::Continue
//!             }
//!             None => Action::respond(403, "no team\n"),
//!         }
//!     }
//!
//!     fn on_response_headers(&mut self, resp: &mut Response) -> Action {
//!         if let Some(team) = context::get("team") {
//!             let _ = resp.set_header("x-served-team", team);
//!         }
//!         Action::Continue
//!     }
//! }
//!
//! sluice_sdk::export_filter!(TeamGate);
//!
//! // Native test against the mock host:
//! use sluice_sdk::mock::MockHost;
//! let host = MockHost::new().config_toml(r#"header = "x-api-team""#);
//! let mut gate: TeamGate = host.create().unwrap();
//!
//! host.request_header("x-api-team", "search");
//! assert_eq!(host.on_request_headers(&mut gate), Action::Continue);
//! assert_eq!(host.get_context("team").as_deref(), Some("search"));
//! host.on_response_headers(&mut gate);
//! assert_eq!(host.get_response_header("x-served-team").as_deref(), Some("search"));
//!
//! host.start_request();
//! assert!(matches!(host.on_request_headers(&mut gate), Action::Respond(r) if r.status == 403));
//! ```

// Lets generated code name this crate as `::sluice_sdk` from inside it too.
extern crate self as sluice_sdk;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "body-filter",
        pub_export_macro: true,
        default_bindings_module: "::sluice_sdk::bindings",
        runtime_path: "::sluice_sdk::__private::wit_bindgen::rt",
    });
}

mod config;
pub mod connection;
pub mod document;
#[doc(hidden)]
pub mod export;
mod host;
mod http;
pub mod interception;
pub mod limits;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock;
pub mod outbound;
pub mod store;
mod sys;
mod types;

pub use config::Config;
pub use connection::{PeerIdentity, TlsInfo};
pub use host::{clock, context, log, random, shared};
pub use http::{Headers, RESERVED_HEADERS, Request, Response, client_ip_of, is_header_name};
pub use interception::Direction;
pub use types::{Action, BodyAction, BodyPhases, HostError, LocalResponse, LogLevel, Phases};

#[doc(hidden)]
pub use export as __private;

/// A sluice filter. Implement `create` and the phases you need; the others
/// do nothing. One value lives in each Wasm instance, is created once with
/// the route's configuration and then serves many requests, one at a time.
pub trait Filter: Sized + 'static {
    /// Build the filter from the route's configuration. An `Err` rejects the
    /// configuration: sluice refuses to load it and reports the message with
    /// the route and plugin names. Name the offending key in the message
    /// ([`Config::parse`] does).
    fn create(config: &Config) -> Result<Self, String>;

    /// The phases the host should call, asked once after `create`. Narrow it
    /// to skip calls the filter does not need: each skipped phase saves a
    /// Wasm call per request.
    fn phases(&self) -> Phases {
        Phases::ALL
    }

    /// The request headers have arrived; the body has not been read.
    fn on_request_headers(&mut self, _request: &mut Request) -> Action {
        Action::Continue
    }

    /// The response headers have arrived (from the upstream or a local
    /// response).
    fn on_response_headers(&mut self, _response: &mut Response) -> Action {
        Action::Continue
    }

    /// The body phases the host should call, asked once after `create`.
    /// None by default: the host then streams bodies past the filter. Ask
    /// only for what the filter needs: each asked-for phase makes the host
    /// buffer that whole body (up to the entry's `max_body_bytes`).
    fn body_phases(&self) -> BodyPhases {
        BodyPhases::NONE
    }

    /// The whole request body, after every filter's `on_request_headers`
    /// and before the request goes upstream. The request functions still
    /// work (headers can still change). A body over `max_body_bytes` is
    /// answered 413 without calling the filter.
    fn on_request_body(&mut self, _request: &mut Request, _body: &[u8]) -> BodyAction {
        BodyAction::Continue
    }

    /// The whole response body, after every `on_response_headers` and
    /// before the response goes to the client. The response functions
    /// still work. A replaced body gets its `content-length` fixed by the
    /// host. A body over `max_body_bytes` is a filter failure: the entry's
    /// `on_failure` policy applies.
    ///
    /// The host does not promise that one request's phases run on the same
    /// instance: carry what a later phase needs in the request [`context`].
    fn on_response_body(&mut self, _response: &mut Response, _body: &[u8]) -> BodyAction {
        BodyAction::Continue
    }
}

/// Export a [`Filter`] type as the component's `handler` and
/// `body-handler`. Use it once per filter crate. On native targets it expands to nothing, so the crate's
/// tests build and run with plain `cargo test`.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static SLUICE_FILTER: ::std::cell::RefCell<::std::option::Option<$filter>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct SluiceExport;

            impl $crate::__private::Guest for SluiceExport {
                fn init(
                    config: ::std::string::String,
                ) -> ::std::result::Result<$crate::__private::WitPhases, ::std::string::String> {
                    SLUICE_FILTER.with(|slot| $crate::__private::init::<$filter>(slot, config))
                }
                fn on_request_headers() -> $crate::__private::WitAction {
                    SLUICE_FILTER.with(|slot| $crate::__private::on_request_headers::<$filter>(slot))
                }
                fn on_response_headers() -> $crate::__private::WitAction {
                    SLUICE_FILTER.with(|slot| $crate::__private::on_response_headers::<$filter>(slot))
                }
            }

            impl $crate::__private::BodyGuest for SluiceExport {
                fn requested_phases() -> $crate::__private::WitBodyPhases {
                    SLUICE_FILTER.with(|slot| $crate::__private::requested_phases::<$filter>(slot))
                }
                fn on_request_body(body: ::std::vec::Vec<u8>) -> $crate::__private::WitBodyAction {
                    SLUICE_FILTER.with(|slot| $crate::__private::on_request_body::<$filter>(slot, body))
                }
                fn on_response_body(body: ::std::vec::Vec<u8>) -> $crate::__private::WitBodyAction {
                    SLUICE_FILTER.with(|slot| $crate::__private::on_response_body::<$filter>(slot, body))
                }
            }

    $crate::__private::export!(SluiceExport with_types_in $crate::bindings);
        };
    };
}
