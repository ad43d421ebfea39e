//! Outbound HTTP calls (WIT `outbound-http`, added in 0.1.3): send a request
//! to one of the clusters the filter entry lists (`clusters = [...]`) and
//! wait for the whole response, as Envoy's `ext_authz` or an `httpCall`
//! does.
//!
//! Calls are available in every request, response and body phase, never in
//! [`Filter::create`](crate::Filter::create) (`init`): a slow service cannot
//! stall a reload. Waiting does not count against the filter's CPU
//! deadline but against the entry's `wait_limit` (default 1 s), the
//! wall-clock time one phase call may spend waiting on the host in total.
//! The call is never retried.
//!
//! ```no_run
//! use sluice_sdk::outbound::OutboundRequest;
//! use std::time::Duration;
//!
//! let answer = OutboundRequest::post("authz", "/check")
//!     .header("x-user", "alice")
//!     .body(r#"{"action":"read"}"#)
//!     .timeout(Duration::from_millis(200))
//!     .send();
//! match answer {
//!     Ok(resp) if resp.status == 200 => { /* allowed */ }
//!     Ok(resp) => { /* denied: resp.status, resp.body */ }
//!     Err(e) => { /* no response: e */ }
//! }
//! ```
//!
//! A filter that never calls [`send`] does not import `outbound-http`, so
//! it keeps loading in hosts older than 0.1.3.

use crate::sys;
use std::time::Duration;

/// A request to send to a cluster. Build one with [`OutboundRequest::new`]
/// (or [`get`](OutboundRequest::get) / [`post`](OutboundRequest::post)) and
/// the builder methods, then [`send`](OutboundRequest::send) it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// The cluster to send it to: one of the filter entry's `clusters`.
    pub cluster: String,
    /// The method, for example `POST`. Must be a valid HTTP token.
    pub method: String,
    /// The path with its query, starting with `/`.
    pub path: String,
    /// The authority sent as `host`; `None` sends the cluster's name.
    pub authority: Option<String>,
    /// Request headers, in order. Framing and connection headers (see
    /// [`RESERVED_HEADERS`](crate::RESERVED_HEADERS)) and `host` are
    /// refused; the host sets `content-length` from the body.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body; may be empty. At most 1 MiB.
    pub body: Vec<u8>,
    /// How long to wait for the whole response. `None` waits as long as
    /// the phase's remaining `wait_limit`; a longer value is cut to it.
    pub timeout: Option<Duration>,
}

impl OutboundRequest {
    /// A request with this method for `path` on `cluster`: no headers,
    /// empty body, the cluster's name as authority, no timeout of its own.
    pub fn new(method: &str, cluster: &str, path: &str) -> Self {
        OutboundRequest {
            cluster: cluster.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            authority: None,
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// A `GET` request.
    pub fn get(cluster: &str, path: &str) -> Self {
        Self::new("GET", cluster, path)
    }

    /// A `POST` request.
    pub fn post(cluster: &str, path: &str) -> Self {
        Self::new("POST", cluster, path)
    }

    /// Add a header line (keeping earlier ones of the same name).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Send this authority as `host` instead of the cluster's name.
    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = Some(authority.to_string());
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Wait at most this long for the whole response (sent in whole
    /// milliseconds, rounded up, at most `u32::MAX`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Send the request and wait for the whole response: [`send`].
    pub fn send(self) -> Result<OutboundResponse, CallError> {
        send(self)
    }

    /// The timeout as the host takes it: milliseconds, rounded up so a
    /// non-zero timeout never becomes zero, saturating at `u32::MAX`.
    // Natively only the tests use it: the mock keeps the `Duration`.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn timeout_ms(&self) -> Option<u32> {
        self.timeout
            .map(|d| u32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX))
    }
}

/// The whole response to an [`OutboundRequest`]. Any status is a response,
/// a 5xx included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    /// The status code.
    pub status: u16,
    /// Response headers, in order, names in lower case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, at most the entry's `max_response_bytes` (default 1 MiB).
    pub body: Vec<u8>,
}

impl OutboundResponse {
    /// A response with this status and body and no headers (for tests: a
    /// [`MockHost`](crate::mock::MockHost) responder returns these).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        OutboundResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Add a header line; the name is stored in lower case, as the host
    /// hands them over.
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// The first value of a header, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a call produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The cluster is not in the filter entry's `clusters` list (or no
    /// longer exists).
    NotAllowed,
    /// Called from `Filter::create`: calls are available only in phases.
    WrongPhase,
    /// The request is invalid; the text says what (bad method, path,
    /// authority or header, a reserved header, a body over 1 MiB).
    InvalidRequest(String),
    /// No whole response within the timeout, or the phase's `wait_limit`
    /// was already used up.
    Timeout,
    /// The response body was larger than the entry's `max_response_bytes`.
    ResponseTooLarge,
    /// The cluster could not answer (no healthy endpoint, connection
    /// refused or reset, TLS failure, circuit breaker open); the text says
    /// which.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotAllowed => f.write_str("cluster not allowed for this filter"),
            CallError::WrongPhase => f.write_str("outbound calls are not available in init"),
            CallError::InvalidRequest(why) => write!(f, "invalid outbound request: {why}"),
            CallError::Timeout => f.write_str("outbound call timed out"),
            CallError::ResponseTooLarge => f.write_str("outbound response too large"),
            CallError::Failed(why) => write!(f, "outbound call failed: {why}"),
        }
    }
}

impl std::error::Error for CallError {}

/// Send `request` and wait for the whole response. `Ok` for any status;
/// `Err` means there is no response.
pub fn send(request: OutboundRequest) -> Result<OutboundResponse, CallError> {
    sys::outbound_send(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_timeout() {
        let r = OutboundRequest::post("authz", "/check")
            .header("x-a", "1")
            .header("x-a", b"2")
            .authority("authz.internal")
            .body("{}")
            .timeout(Duration::from_micros(1500));
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.headers,
            vec![("x-a".into(), b"1".to_vec()), ("x-a".into(), b"2".to_vec())]
        );
        assert_eq!(r.authority.as_deref(), Some("authz.internal"));
        assert_eq!(r.body, b"{}");
        assert_eq!(r.timeout_ms(), Some(2), "rounded up");
        assert_eq!(OutboundRequest::get("c", "/").timeout_ms(), None);
        assert_eq!(
            OutboundRequest::get("c", "/")
                .timeout(Duration::from_secs(u64::MAX))
                .timeout_ms(),
            Some(u32::MAX)
        );
        assert_eq!(OutboundRequest::get("c", "/").method, "GET");
    }

    #[test]
    fn response_headers_are_case_insensitive() {
        let r = OutboundResponse::new(200, "ok").with_header("X-Auth-User", "alice");
        assert_eq!(r.header("x-auth-user"), Some(&b"alice"[..]));
        assert_eq!(r.header("X-AUTH-USER"), Some(&b"alice"[..]));
        assert_eq!(r.header("x-other"), None);
        assert_eq!(r.headers[0].0, "x-auth-user");
        assert_eq!(CallError::Timeout.to_string(), "outbound call timed out");
    }
}
