//! A mock host for native unit tests of a filter: set up the request,
//! response, context, shared state, clock and configuration, run a phase,
//! then inspect what the filter did. Available when not compiling to wasm.
//!
//! The state is thread-local, and `cargo test` runs each test on its own
//! thread, so tests do not see each other's state.

use crate::sys::mock::{self as state, Phase, State};
use crate::{Action, Config, Filter, LogLevel, Request, Response};
use std::time::Duration;

/// The host a filter sees in native tests. Creating one resets the state.
#[derive(Debug)]
pub struct MockHost {
    config: String,
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHost {
    /// A fresh host: `GET /` for `example.com` from `127.0.0.1:40000`,
    /// response `200`, empty context and shared state, configuration `{}`.
    pub fn new() -> Self {
        state::with(|s| *s = State::default());
        MockHost { config: "{}".into() }
    }

    /// Set the filter configuration from TOML, as written in a route.
    pub fn config_toml(mut self, toml_text: &str) -> Self {
        let table: toml::Table = match toml::from_str(toml_text) {
            Ok(t) => t,
            Err(e) => panic!("mock config is not valid TOML: {e}"),
        };
        self.config = serde_json::to_string(&table).unwrap_or_else(|_| "{}".into());
        self
    }

    /// Set the filter configuration from JSON, as the host hands it over.
    pub fn config_json(mut self, json: &str) -> Self {
        self.config = json.to_string();
        self
    }

    /// Create the filter as `init` would: `Filter::create` with the config.
    pub fn create<F: Filter>(&self) -> Result<F, String> {
        let config = Config::from_json(&self.config)?;
        F::create(&config)
    }

    /// Start a new request: reset request, response and context to the
    /// defaults of [`MockHost::new`], keeping shared state, clock and logs.
    pub fn start_request(&self) -> &Self {
        let fresh = State::default();
        state::with(|s| {
            s.method = fresh.method;
            s.path = fresh.path;
            s.authority = fresh.authority;
            s.scheme = fresh.scheme;
            s.client_address = fresh.client_address;
            s.route = fresh.route;
            s.request_headers.clear();
            s.cluster = fresh.cluster;
            s.status = fresh.status;
            s.response_headers.clear();
            s.context.clear();
        });
        self
    }

    /// Run the request-headers phase.
    pub fn on_request_headers<F: Filter>(&self, filter: &mut F) -> Action {
        state::with(|s| s.phase = Phase::Request);
        let action = filter.on_request_headers(&mut Request::new());
        state::with(|s| s.phase = Phase::None);
        action
    }

    /// Run the response-headers phase.
    pub fn on_response_headers<F: Filter>(&self, filter: &mut F) -> Action {
        state::with(|s| s.phase = Phase::Response);
        let action = filter.on_response_headers(&mut Response::new());
        state::with(|s| s.phase = Phase::None);
        action
    }

    // ---- set up ----

    /// Set the request method.
    pub fn method(&self, method: &str) -> &Self {
        state::with(|s| s.method = method.into());
        self
    }
    /// Set the request path (with query).
    pub fn path(&self, path: &str) -> &Self {
        state::with(|s| s.path = path.into());
        self
    }
    /// Set the authority (`None` for a request without one).
    pub fn authority(&self, authority: Option<&str>) -> &Self {
        state::with(|s| s.authority = authority.map(str::to_string));
        self
    }
    /// Set the client address (`ip:port`).
    pub fn client_address(&self, addr: &str) -> &Self {
        state::with(|s| s.client_address = addr.into());
        self
    }
    /// Set the name of the matched route (default `default`).
    pub fn route(&self, name: &str) -> &Self {
        state::with(|s| s.route = name.into());
        self
    }
    /// Add a request header line.
    pub fn request_header(&self, name: &str, value: &str) -> &Self {
        state::with(|s| {
            s.request_headers
                .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()))
        });
        self
    }
    /// Set the route's cluster and the clusters `set_cluster` accepts.
    pub fn clusters(&self, current: &str, known: &[&str]) -> &Self {
        state::with(|s| {
            s.cluster = current.into();
            s.clusters = known.iter().map(|k| k.to_string()).collect();
        });
        self
    }
    /// Set the response status.
    pub fn response_status(&self, status: u16) -> &Self {
        state::with(|s| s.status = status);
        self
    }
    /// Add a response header line.
    pub fn response_header(&self, name: &str, value: &str) -> &Self {
        state::with(|s| {
            s.response_headers
                .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()))
        });
        self
    }
    /// Set a context value, as an earlier filter would.
    pub fn context(&self, key: &str, value: &str) -> &Self {
        state::with(|s| s.context.insert(key.into(), value.into()));
        self
    }
    /// Put a value into this plugin's shared state.
    pub fn shared(&self, key: &str, value: &[u8]) -> &Self {
        state::with(|s| s.shared.insert(key.into(), (value.to_vec(), None)));
        self
    }
    /// Set the wall clock (nanoseconds since the Unix epoch).
    pub fn now_unix_nanos(&self, nanos: u64) -> &Self {
        state::with(|s| s.now_unix_nanos = nanos);
        self
    }
    /// Move both clocks forward.
    pub fn advance(&self, by: Duration) -> &Self {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        state::with(|s| {
            s.now_unix_nanos = s.now_unix_nanos.saturating_add(nanos);
            s.monotonic_nanos = s.monotonic_nanos.saturating_add(nanos);
        });
        self
    }

    // ---- inspect ----

    /// The request method now.
    pub fn get_method(&self) -> String {
        state::with(|s| s.method.clone())
    }
    /// The request path now.
    pub fn get_path(&self) -> String {
        state::with(|s| s.path.clone())
    }
    /// The authority now.
    pub fn get_authority(&self) -> Option<String> {
        state::with(|s| s.authority.clone())
    }
    /// The cluster now.
    pub fn get_cluster(&self) -> String {
        state::with(|s| s.cluster.clone())
    }
    /// The first value of a request header, as text.
    pub fn get_request_header(&self, name: &str) -> Option<String> {
        state::with(|s| first(&s.request_headers, name))
    }
    /// Every request header line.
    pub fn get_request_headers(&self) -> Vec<(String, Vec<u8>)> {
        state::with(|s| s.request_headers.clone())
    }
    /// The response status now.
    pub fn get_response_status(&self) -> u16 {
        state::with(|s| s.status)
    }
    /// The first value of a response header, as text.
    pub fn get_response_header(&self, name: &str) -> Option<String> {
        state::with(|s| first(&s.response_headers, name))
    }
    /// A context value.
    pub fn get_context(&self, key: &str) -> Option<String> {
        state::with(|s| s.context.get(key).cloned())
    }
    /// A shared-state value (ignoring expiry).
    pub fn get_shared(&self, key: &str) -> Option<Vec<u8>> {
        state::with(|s| s.shared.get(key).map(|(v, _)| v.clone()))
    }
    /// Every log record so far.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        state::with(|s| s.logs.clone())
    }
}

fn first(lines: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    lines
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}
