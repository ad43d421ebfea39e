//! A mock host for native unit tests of a filter: set up the request,
//! response, context, shared state, clock and configuration, run a phase,
//! then inspect what the filter did. Available when not compiling to wasm.
//!
//! The state is thread-local, and `cargo test` runs each test on its own
//! thread, so tests do not see each other's state.
//!
//! The mock refuses what the sluice host refuses, with the same
//! [`HostError`](crate::HostError), including every bound of
//! [`crate::limits`]: header sizes and counts, context sizes and entries,
//! shared-state key and value sizes and this plugin's shared-state quota
//! (see [`MockHost::shared_quota`]). A local response the host would refuse
//! fails the phase call, as in production: see
//! [`MockHost::on_request_headers`].
//!
//! Body phases, outbound calls and remote documents (0.1.3) are in the
//! child modules: [`MockHost::on_request_body`], [`MockHost::outbound`],
//! [`MockHost::document`]; so is `shared-store` (0.1.4):
//! [`MockHost::store_unavailable`], [`MockHost::store_calls`].

use crate::limits::{MAX_HEADER_COUNT, MAX_LOCAL_BODY_BYTES};
use crate::sys::mock::{self as state, Phase, State, http_header_name, valid_value};
use crate::{Action, Config, Filter, LocalResponse, LogLevel, Request, Response};
use std::time::Duration;

mod body;
mod document;
mod outbound;
mod store;

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

    /// Create the filter as `init` would: `Filter::create` with the config,
    /// in the init phase (no request or connection; outbound calls refused;
    /// the only place documents may be subscribed).
    pub fn create<F: Filter>(&self) -> Result<F, String> {
        let config = Config::from_json(&self.config)?;
        state::with(|s| s.phase = Phase::Init);
        let created = F::create(&config);
        state::with(|s| s.phase = Phase::None);
        created
    }

    /// Start a new request: reset request, response and context to the
    /// defaults of [`MockHost::new`], keeping shared state, clock, logs and
    /// the connection (listener, addresses, TLS, interception).
    pub fn start_request(&self) -> &Self {
        let fresh = State::default();
        state::with(|s| {
            s.method = fresh.method;
            s.path = fresh.path;
            s.authority = fresh.authority;
            // Same connection: the scheme follows its TLS.
            s.scheme = if s.tls.is_some() { "https".into() } else { fresh.scheme };
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
    ///
    /// # Panics
    ///
    /// If the filter answers with a local response the host would refuse
    /// (see [`MockHost::validate`]): in production that call fails and the
    /// filter's `on_failure` policy applies. Use
    /// [`MockHost::try_on_request_headers`] to test that case.
    #[track_caller]
    pub fn on_request_headers<F: Filter>(&self, filter: &mut F) -> Action {
        match self.try_on_request_headers(filter) {
            Ok(action) => action,
            Err(reason) => panic!("the host would fail this call: {reason}"),
        }
    }

    /// Run the response-headers phase.
    ///
    /// # Panics
    ///
    /// As [`MockHost::on_request_headers`].
    #[track_caller]
    pub fn on_response_headers<F: Filter>(&self, filter: &mut F) -> Action {
        match self.try_on_response_headers(filter) {
            Ok(action) => action,
            Err(reason) => panic!("the host would fail this call: {reason}"),
        }
    }

    /// Run the request-headers phase; `Err` with the host's reason if the
    /// host would refuse the filter's answer (the call fails there).
    pub fn try_on_request_headers<F: Filter>(&self, filter: &mut F) -> Result<Action, String> {
        state::with(|s| s.phase = Phase::Request);
        let action = filter.on_request_headers(&mut Request::new());
        state::with(|s| s.phase = Phase::None);
        self.validate(&action).map(|()| action)
    }

    /// Run the response-headers phase; `Err` as in
    /// [`MockHost::try_on_request_headers`].
    pub fn try_on_response_headers<F: Filter>(&self, filter: &mut F) -> Result<Action, String> {
        state::with(|s| s.phase = Phase::Response);
        let action = filter.on_response_headers(&mut Response::new());
        state::with(|s| s.phase = Phase::None);
        self.validate(&action).map(|()| action)
    }

    /// Whether the host accepts what a phase returned: `Continue` always, a
    /// local response if [`MockHost::check_local_response`] passes.
    pub fn validate(&self, action: &Action) -> Result<(), String> {
        match action {
            Action::Respond(response) => self.check_local_response(response),
            _ => Ok(()),
        }
    }

    /// Check a local response as the host does before sending it: status
    /// 200–599, body at most `MAX_LOCAL_BODY_BYTES`, at most
    /// `MAX_HEADER_COUNT` headers, valid header names and values. `Err`
    /// has the host's reason. (Reserved headers are not refused: the host
    /// drops hop-by-hop headers and `content-length` and sets its own.)
    pub fn check_local_response(&self, response: &LocalResponse) -> Result<(), String> {
        if !(200..=599).contains(&response.status) {
            return Err(format!("local response status {} is not 200–599", response.status));
        }
        if response.body.len() > MAX_LOCAL_BODY_BYTES {
            return Err(format!(
                "local response body of {} bytes is over the limit",
                response.body.len()
            ));
        }
        if response.headers.len() > MAX_HEADER_COUNT {
            return Err("local response has too many headers".into());
        }
        for (name, value) in &response.headers {
            if !http_header_name(name) {
                return Err(format!("invalid header name {name:?}"));
            }
            if !valid_value(value) {
                return Err(format!("invalid value for header {}", name.to_ascii_lowercase()));
            }
        }
        Ok(())
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
    /// Set the name of the listener that accepted the connection (default
    /// `main`).
    pub fn listener(&self, name: &str) -> &Self {
        state::with(|s| s.listener = name.to_string());
        self
    }

    /// Set the address the connection was accepted on (`ip:port`).
    pub fn local_address(&self, addr: &str) -> &Self {
        state::with(|s| s.local_address = addr.to_string());
        self
    }

    /// Make the connection a TLS one with these facts (`None`: cleartext,
    /// the default). The scheme follows, as on the host.
    pub fn tls(&self, tls: Option<crate::TlsInfo>) -> &Self {
        state::with(|s| {
            s.scheme = if tls.is_some() { "https" } else { "http" }.into();
            s.tls = tls;
        });
        self
    }

    /// Make the connection an intercepted (sidecar) one: its direction and
    /// the `ip:port` the client connected to before iptables redirected it
    /// (IPv6 as `[ip]:port`). By default the connection came to a gateway
    /// listener, and [`crate::interception`] answers `None`, as it does in
    /// `create` whatever is set here.
    pub fn intercepted(&self, direction: crate::Direction, original_destination: &str) -> &Self {
        state::with(|s| s.interception = Some((direction, original_destination.to_string())));
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
    /// Set the route's cluster and the filter entry's `clusters` list: the
    /// clusters `set_cluster` accepts, outbound calls may go to and
    /// documents may be fetched through. An empty list (the default)
    /// allows any name.
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
    /// Set this plugin's shared-state quota (default
    /// [`DEFAULT_SHARED_MAX_ENTRIES`](crate::limits::DEFAULT_SHARED_MAX_ENTRIES)
    /// live entries and
    /// [`DEFAULT_SHARED_MAX_BYTES`](crate::limits::DEFAULT_SHARED_MAX_BYTES)
    /// bytes of keys plus values; production sets it per plugin in
    /// `[shared_state.plugins.NAME]`). A write that would take the plugin
    /// past either is `LimitExceeded` and changes nothing; expired entries
    /// do not count. What is stored already stays, even above the quota.
    /// The buckets of [`store::acquire`](crate::store::acquire) count too,
    /// one entry of the key plus 8 bytes each; those of
    /// [`store::acquire_local`](crate::store::acquire_local) count against
    /// a quota of the same size of their own (as with the host's Redis
    /// backend).
    pub fn shared_quota(&self, max_entries: usize, max_bytes: usize) -> &Self {
        state::with(|s| {
            s.shared_max_entries = max_entries;
            s.shared_max_bytes = max_bytes;
        });
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
    /// Every log record so far, as the host would write it (cut to
    /// `MAX_LOG_BYTES`; lines over the log budget are not there).
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        state::with(|s| s.logs.clone())
    }
    /// Log lines dropped so far for being over the plugin's log budget
    /// (`LOG_BURST` at once, refilled at `LOG_LINES_PER_SECOND`; move the
    /// clock with [`MockHost::advance`]).
    pub fn logs_suppressed(&self) -> u64 {
        state::with(|s| s.logs_suppressed)
    }
}

fn first(lines: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    lines
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

#[cfg(test)]
mod tests {
    //! The mock refuses what the host refuses. The proxy's `limits_parity`
    //! test compares the two call by call; these pin the mock's side.

    use super::*;
    use crate::limits::*;
    use crate::{HostError, context, log, random, shared};

    /// Run `f` inside the request phase, as a filter's code would.
    fn in_request<R>(f: impl FnOnce(&mut Request) -> R) -> R {
        state::with(|s| s.phase = Phase::Request);
        let out = f(&mut Request::new());
        state::with(|s| s.phase = Phase::None);
        out
    }

    fn in_response<R>(f: impl FnOnce(&mut Response) -> R) -> R {
        state::with(|s| s.phase = Phase::Response);
        let out = f(&mut Response::new());
        state::with(|s| s.phase = Phase::None);
        out
    }

    #[test]
    fn header_sizes() {
        let _host = MockHost::new();
        in_request(|req| {
            let at = vec![b'v'; MAX_HEADER_BYTES];
            let past = vec![b'v'; MAX_HEADER_BYTES + 1];
            assert_eq!(req.set_header("x-a", &at), Ok(()));
            assert_eq!(req.set_header("x-a", &past), Err(HostError::LimitExceeded));
            assert_eq!(req.append_header("x-a", &past), Err(HostError::LimitExceeded));
            assert_eq!(req.header_bytes("x-a"), Some(at), "a refused set changed nothing");
            // The host's HTTP library takes names up to 65535 bytes.
            let name = |n: usize| "n".repeat(n);
            assert_eq!(req.set_header(&name(MAX_HEADER_BYTES - 1), "v"), Ok(()));
            assert_eq!(
                req.set_header(&name(MAX_HEADER_BYTES), "v"),
                Err(HostError::InvalidName)
            );
            assert_eq!(
                req.set_header(&name(MAX_HEADER_BYTES + 1), "v"),
                Err(HostError::LimitExceeded)
            );
            assert_eq!(
                req.remove_header(&name(MAX_HEADER_BYTES + 1)),
                Err(HostError::LimitExceeded)
            );
        });
    }

    #[test]
    fn header_syntax_and_order_of_checks() {
        let _host = MockHost::new();
        in_request(|req| {
            for bad in [&b"a\x01b"[..], b"a\x7fb", b"a\rb", b"a\nb", b"a\0b"] {
                assert_eq!(req.set_header("x-a", bad), Err(HostError::InvalidValue), "{bad:?}");
            }
            assert_eq!(req.set_header("x-a", b"tab\there \x80\xff"), Ok(()));
            assert_eq!(req.set_header("bad name", "v"), Err(HostError::InvalidName));
            assert_eq!(req.set_header("", "v"), Err(HostError::InvalidName));
            assert_eq!(req.set_header("X-Upper", "v"), Ok(()));
            assert_eq!(req.header("x-upper").as_deref(), Some("v"));
            // Reserved is decided before the value is looked at.
            assert_eq!(req.set_header("Content-Length", "\n"), Err(HostError::ReservedHeader));
            assert_eq!(req.remove_header("host"), Err(HostError::ReservedHeader));
        });
        // The phase is checked first of all.
        assert_eq!(
            Request::new().set_header("bad name", vec![0; MAX_HEADER_BYTES + 1]),
            Err(HostError::WrongPhase)
        );
    }

    #[test]
    fn header_count_counts_the_authority_as_host() {
        let host = MockHost::new();
        host.request_header("x-one", "1");
        in_request(|req| {
            // `x-one` and the authority's `host` line are there already.
            for i in 2..MAX_HEADER_COUNT {
                assert_eq!(req.append_header("x-flood", i.to_string()), Ok(()), "line {i}");
            }
            assert_eq!(req.append_header("x-flood", "1"), Err(HostError::LimitExceeded));
            assert_eq!(req.set_header("x-new", "1"), Err(HostError::LimitExceeded));
            // Setting replaces every value of the name: room enough.
            assert_eq!(req.set_header("x-one", "2"), Ok(()));
            assert_eq!(req.set_header("x-flood", "one"), Ok(()));
            assert_eq!(req.headers().len(), 2);
        });
        // A request without an authority has one line more to spare.
        host.start_request().authority(None);
        in_request(|req| {
            for i in 0..MAX_HEADER_COUNT {
                assert_eq!(req.append_header("x-flood", i.to_string()), Ok(()), "line {i}");
            }
            assert_eq!(req.append_header("x-flood", "1"), Err(HostError::LimitExceeded));
        });
        in_response(|resp| {
            for i in 0..MAX_HEADER_COUNT {
                assert_eq!(resp.append_header("x-flood", i.to_string()), Ok(()), "line {i}");
            }
            assert_eq!(resp.append_header("x-more", "1"), Err(HostError::LimitExceeded));
            assert_eq!(resp.set_header("x-more", "1"), Err(HostError::LimitExceeded));
            assert_eq!(resp.remove_header("x-flood"), Ok(()));
        });
    }

    #[test]
    fn context_bounds() {
        let host = MockHost::new();
        let at = "k".repeat(MAX_CONTEXT_BYTES);
        let past = "k".repeat(MAX_CONTEXT_BYTES + 1);
        assert_eq!(context::set(&at, &at), Ok(()));
        assert_eq!(context::set(&past, "v"), Err(HostError::LimitExceeded));
        assert_eq!(context::set("k", &past), Err(HostError::LimitExceeded));
        for i in 1..MAX_CONTEXT_ENTRIES {
            assert_eq!(context::set(&i.to_string(), "v"), Ok(()), "entry {i}");
        }
        assert_eq!(context::set("one-more", "v"), Err(HostError::LimitExceeded));
        assert_eq!(context::set("1", "replaced"), Ok(()), "replacing adds no entry");
        assert_eq!(host.get_context("1").as_deref(), Some("replaced"));
        context::remove("1");
        assert_eq!(context::set("one-more", "v"), Ok(()));
    }

    #[test]
    fn shared_key_and_value_sizes() {
        let _host = MockHost::new();
        let key_at = "k".repeat(MAX_SHARED_KEY_BYTES);
        let key_past = "k".repeat(MAX_SHARED_KEY_BYTES + 1);
        let value_past = vec![0; MAX_SHARED_VALUE_BYTES + 1];
        assert_eq!(shared::set(&key_at, &vec![0; MAX_SHARED_VALUE_BYTES], None), Ok(()));
        assert_eq!(shared::set(&key_past, b"v", None), Err(HostError::LimitExceeded));
        assert_eq!(shared::set("k", &value_past, None), Err(HostError::LimitExceeded));
        assert_eq!(shared::increment(&key_past, 1, None), Err(HostError::LimitExceeded));
        assert_eq!(
            shared::compare_and_swap(&key_past, None, b"v", None),
            Err(HostError::LimitExceeded)
        );
        assert_eq!(
            shared::compare_and_swap("k", None, &value_past, None),
            Err(HostError::LimitExceeded)
        );
        // Reads and deletes of an over-long key are not errors: it is absent.
        assert_eq!(shared::get(&key_past), None);
        assert!(!shared::delete(&key_past));
        assert!(shared::delete(&key_at));
    }

    #[test]
    fn shared_entry_quota() {
        let host = MockHost::new();
        host.shared_quota(2, usize::MAX);
        assert_eq!(shared::set("a", b"1", None), Ok(()));
        assert_eq!(shared::increment("b", 1, None), Ok(1));
        assert_eq!(shared::set("c", b"1", None), Err(HostError::LimitExceeded));
        assert_eq!(shared::increment("c", 1, None), Err(HostError::LimitExceeded));
        assert_eq!(
            shared::compare_and_swap("c", None, b"1", None),
            Err(HostError::LimitExceeded)
        );
        assert_eq!(host.get_shared("c"), None, "a refused write changed nothing");
        // Changing an existing entry adds none.
        assert_eq!(shared::set("a", b"2", None), Ok(()));
        assert_eq!(shared::increment("b", 1, None), Ok(2));
        assert_eq!(shared::compare_and_swap("a", Some(b"2"), b"3", None), Ok(true));
        // A swap that does not happen writes nothing, so is not refused.
        assert_eq!(shared::compare_and_swap("c", Some(b"x"), b"1", None), Ok(false));
        assert!(shared::delete("a"));
        assert_eq!(shared::set("c", b"1", None), Ok(()));
    }

    #[test]
    fn shared_byte_quota() {
        let host = MockHost::new();
        // Keys plus values: "a"+"1234" and "b"+"1234" fill 10 bytes.
        host.shared_quota(usize::MAX, 10);
        assert_eq!(shared::set("a", b"1234", None), Ok(()));
        assert_eq!(shared::set("b", b"1234", None), Ok(()));
        assert_eq!(shared::set("c", b"", None), Err(HostError::LimitExceeded));
        assert_eq!(shared::set("a", b"12345", None), Err(HostError::LimitExceeded));
        assert_eq!(host.get_shared("a").as_deref(), Some(&b"1234"[..]));
        assert_eq!(shared::set("a", b"12", None), Ok(()), "shrinking fits");
        assert_eq!(shared::set("c", b"1", None), Ok(()), "exactly at the quota");
        assert_eq!(shared::set("c", b"12", None), Err(HostError::LimitExceeded));
        // A counter is 8 bytes.
        assert_eq!(shared::increment("n", 1, None), Err(HostError::LimitExceeded));
        // A lowered quota keeps what is stored and refuses growth only.
        host.shared_quota(usize::MAX, 4);
        assert_eq!(shared::set("a", b"1", None), Ok(()));
        assert_eq!(shared::set("a", b"12", None), Err(HostError::LimitExceeded));
        assert_eq!(host.get_shared("b").as_deref(), Some(&b"1234"[..]));
    }

    #[test]
    fn expired_entries_do_not_count() {
        let host = MockHost::new();
        host.shared_quota(2, usize::MAX);
        assert_eq!(shared::set("a", b"1", Some(Duration::from_secs(1))), Ok(()));
        assert_eq!(shared::increment("b", 1, Some(Duration::from_secs(2))), Ok(1));
        assert_eq!(shared::set("c", b"1", None), Err(HostError::LimitExceeded));
        host.advance(Duration::from_secs(1));
        assert_eq!(shared::set("c", b"1", None), Ok(()), "`a` expired");
        assert_eq!(shared::set("d", b"1", None), Err(HostError::LimitExceeded));
        assert_eq!(
            host.get_shared("b"),
            Some(1i64.to_le_bytes().to_vec()),
            "live entries stay"
        );
        host.advance(Duration::from_secs(1));
        assert_eq!(shared::increment("d", 5, None), Ok(5), "`b` expired");
    }

    #[test]
    fn log_and_random_are_bounded() {
        let host = MockHost::new();
        log::log(LogLevel::Info, &"é".repeat(MAX_LOG_BYTES));
        let (_, kept) = host.logs().remove(0);
        assert!(kept.ends_with('…'));
        assert!(kept.len() <= MAX_LOG_BYTES + '…'.len_utf8());
        assert_eq!(kept.trim_end_matches('…').len(), MAX_LOG_BYTES);
        assert_eq!(random::bytes(MAX_RANDOM_BYTES).len(), MAX_RANDOM_BYTES as usize);
        assert_eq!(random::bytes(MAX_RANDOM_BYTES + 1).len(), MAX_RANDOM_BYTES as usize);
        assert_eq!(random::bytes(u32::MAX).len(), MAX_RANDOM_BYTES as usize);
    }

    #[test]
    fn log_budget() {
        let host = MockHost::new();
        for i in 0..LOG_BURST + 5 {
            log::log(LogLevel::Info, &i.to_string());
        }
        assert_eq!(host.logs().len(), LOG_BURST as usize);
        assert_eq!(host.logs_suppressed(), 5);
        // One line's worth of time later, one more line.
        host.advance(Duration::from_secs(1) / LOG_LINES_PER_SECOND);
        log::log(LogLevel::Info, "a");
        log::log(LogLevel::Info, "b");
        assert_eq!(host.logs().last().map(|(_, m)| m.as_str()), Some("a"));
        assert_eq!(host.logs_suppressed(), 6);
        // After a long pause, a burst again, not more.
        host.advance(Duration::from_secs(3600));
        for _ in 0..2 * LOG_BURST {
            log::log(LogLevel::Info, "x");
        }
        assert_eq!(host.logs().len(), 2 * LOG_BURST as usize + 1);
    }

    #[test]
    fn request_line_arguments() {
        let host = MockHost::new();
        host.clusters("app", &["app", "canary"]);
        in_request(|req| {
            assert_eq!(req.set_path(&format!("/{}", "a".repeat(65533))), Ok(()));
            assert_eq!(
                req.set_path(&format!("/{}", "a".repeat(65534))),
                Err(HostError::InvalidArgument)
            );
            for bad in ["x", "/a b", "/a<b", "/a`b", "/?q=\"", "/\u{7f}"] {
                assert_eq!(req.set_path(bad), Err(HostError::InvalidArgument), "{bad}");
            }
            assert_eq!(req.set_path("/é/{\"a\"}?q=`|`#frag"), Ok(()));
            assert_eq!(req.path(), "/é/{\"a\"}?q=`|`");
            for good in ["example.com", "example.com:8080", "[::1]:443", "[fe80::1%25eth0]"] {
                assert_eq!(req.set_authority(good), Ok(()), "{good}");
            }
            for bad in [
                "",
                "user@example.com",
                "a:1:2",
                "[::1",
                "a/b",
                "ex ample",
                "a%20b",
                "é.com",
            ] {
                assert_eq!(req.set_authority(bad), Err(HostError::InvalidArgument), "{bad}");
            }
            assert_eq!(req.set_method(&"M".repeat(100_000)), Ok(()), "no bound on a method");
            assert_eq!(req.set_method("GET /"), Err(HostError::InvalidArgument));
        });
        // The cluster name is checked before the phase, as the host does.
        assert_eq!(Request::new().set_cluster("nope"), Err(HostError::UnknownCluster));
        assert_eq!(Request::new().set_cluster("canary"), Err(HostError::WrongPhase));
        in_response(|resp| {
            assert_eq!(resp.set_status(99), Err(HostError::InvalidArgument));
            assert_eq!(resp.set_status(600), Err(HostError::InvalidArgument));
            assert_eq!(resp.set_status(599), Ok(()));
        });
    }

    #[test]
    fn local_responses_are_checked_as_the_host_does() {
        let host = MockHost::new();
        let ok = LocalResponse::new(200)
            .header("X-Fine", "v")
            .body(vec![0; MAX_LOCAL_BODY_BYTES]);
        assert_eq!(host.check_local_response(&ok), Ok(()));
        assert_eq!(host.validate(&Action::Continue), Ok(()));
        let refused = [
            LocalResponse::new(199),
            LocalResponse::new(600),
            LocalResponse::new(200).body(vec![0; MAX_LOCAL_BODY_BYTES + 1]),
            (0..=MAX_HEADER_COUNT).fold(LocalResponse::new(200), |r, i| r.header("x-n", i.to_string())),
            LocalResponse::new(200).header("bad name", "v"),
            LocalResponse::new(200).header("x-a", "line\r\nbreak"),
        ];
        for r in refused {
            assert!(host.validate(&Action::Respond(r.clone())).is_err(), "{:?}", r.status);
        }
        let at_limit = (0..MAX_HEADER_COUNT).fold(LocalResponse::new(200), |r, i| r.header("x-n", i.to_string()));
        assert_eq!(host.check_local_response(&at_limit), Ok(()));
    }

    /// Answers with the local response it was given.
    struct Answer(LocalResponse);

    impl Filter for Answer {
        fn create(_: &Config) -> Result<Self, String> {
            Ok(Answer(LocalResponse::new(200)))
        }
        fn on_request_headers(&mut self, _: &mut Request) -> Action {
            Action::Respond(self.0.clone())
        }
        fn on_response_headers(&mut self, _: &mut Response) -> Action {
            Action::Respond(self.0.clone())
        }
    }

    #[test]
    fn a_refused_local_response_fails_the_call() {
        let host = MockHost::new();
        let mut filter = Answer(LocalResponse::new(700));
        let err = host.try_on_request_headers(&mut filter).unwrap_err();
        assert_eq!(err, "local response status 700 is not 200–599");
        assert!(host.try_on_response_headers(&mut filter).is_err());
        filter.0 = LocalResponse::new(204);
        assert_eq!(
            host.on_request_headers(&mut filter),
            Action::Respond(LocalResponse::new(204))
        );
    }

    /// The interception facts: `None` on a gateway listener (the default)
    /// and outside a phase, the same in both phases and across requests on
    /// the connection.
    #[test]
    fn interception_facts() {
        use crate::{Direction, interception};
        let host = MockHost::new();
        let read = || (interception::direction(), interception::original_destination());
        assert_eq!(in_request(|_| read()), (None, None), "gateway listener");
        host.intercepted(Direction::Outbound, "[2001:db8::7]:8443");
        assert_eq!(read(), (None, None), "no connection in create");
        let expected = (Some(Direction::Outbound), Some("[2001:db8::7]:8443".to_string()));
        assert_eq!(in_request(|_| read()), expected);
        assert_eq!(in_response(|_| read()), expected);
        host.start_request();
        assert_eq!(in_request(|_| read()), expected, "same connection");
        assert_eq!(Direction::Inbound.as_str(), "inbound");
    }

    #[test]
    #[should_panic(expected = "the host would fail this call: invalid header name")]
    fn the_phase_runner_panics_on_a_refused_local_response() {
        let host = MockHost::new();
        host.on_response_headers(&mut Answer(LocalResponse::new(200).header("a b", "v")));
    }
}
