//! # sluice — an HTTP proxy whose request path runs sandboxed Wasm filters
//!
//! ```text
//! listener (tcp accept, TLS handshake, h1/h2 → connection facts)
//!   →  router (host + path → route)
//!   →  filter chain (Wasm components, request phase)
//!   →  upstream (cluster, round robin, pooled keep-alive, timeouts;
//!                connector: TCP or TLS)
//!   →  filter chain (response phase, reverse order)  →  client
//! ```
//!
//! Modules follow that path: [`listener`] (which records each connection's
//! [`connection`] facts), [`router`], [`filter_chain`] (over the [`wasm`]
//! host), [`upstream`] (and its `connector`); [`proxy`] strings them
//! together. Around them: [`config`] (parsed and validated once), [`tls`]
//! (rustls material and settings, both directions), [`generation`] (one
//! immutable serving state), [`reload`] (watch, rebuild, swap), [`admin`],
//! and [`server`] which starts it all.

#![deny(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod body;
pub mod builtin;
pub mod config;
pub mod connection;
pub mod demo_upstream;
pub mod dev_certs;
pub mod error;
pub mod filter_chain;
pub mod forwarding;
pub mod generation;
pub mod grpc;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod names;
pub mod normalize;
pub mod outbound;
pub mod proxy;
pub mod reload;
pub mod replay;
pub mod router;
pub mod server;
pub mod shared_state;
pub mod sidecar;
pub mod target;
pub mod telemetry;
pub mod tls;
pub mod upgrade;
pub mod upstream;
pub mod wasm;
