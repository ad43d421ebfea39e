//! Entry point for the host-API fuzz target (`fuzz/fuzz_targets/host_calls.rs`):
//! run an arbitrary sequence of host calls with arbitrary arguments against
//! a real [`HostState`] holding a request, then a response, and check that
//! what the host kept is still a valid HTTP message within the limits. A
//! panic anywhere is a finding. Also home of [`header_lines`], a host
//! internal the `filter_call` benchmark times. Not used by the proxy itself.

use super::bindings::HeaderLine;
use super::bindings::sluice::filter::{context, request, response, shared_state};
use super::host::{Context, HostState, RESERVED, RequestExchange, RequestHead, ResponseExchange, headers};
use crate::limits;
use crate::shared_state::SharedState;
use std::collections::HashSet;
use std::sync::Arc;

/// One host call, with its arguments.
#[derive(Debug, Clone)]
pub enum HostCall {
    SetMethod(String),
    SetPath(String),
    SetAuthority(String),
    SetScheme(String),
    RequestHeader(String),
    SetRequestHeader(String, Vec<u8>),
    AppendRequestHeader(String, Vec<u8>),
    RemoveRequestHeader(String),
    SetCluster(String),
    ContextSet(String, String),
    ContextGet(String),
    ContextRemove(String),
    SharedSet(String, Vec<u8>, Option<u64>),
    SharedGet(String),
    SharedIncrement(String, i64, Option<u64>),
    SharedCompareAndSwap(String, Option<Vec<u8>>, Vec<u8>),
    /// End the request phase: later calls see the response.
    StartResponse,
    SetStatus(u16),
    SetResponseHeader(String, Vec<u8>),
    AppendResponseHeader(String, Vec<u8>),
    RemoveResponseHeader(String),
}

/// Run `calls`, then check the invariants. Panics on a violation.
pub fn run(calls: &[HostCall]) {
    let clusters: Arc<HashSet<Arc<str>>> = Arc::new(["app".into(), "canary".into()].into_iter().collect());
    let mut state = HostState::new("fuzz".into(), Arc::new(SharedState::default()), clusters, 16 << 20);
    let parts = http::Request::get("/start?q=1")
        .header("host", "example.com")
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|_| http::Request::new(()).into_parts().0);
    let mut request = RequestExchange {
        head: RequestHead {
            parts,
            client: ([127, 0, 0, 1], 40000).into(),
            scheme: "http",
            cluster: "app".into(),
            route: "fuzz".into(),
            paths: crate::normalize::PathPolicy::default(),
        },
        context: Context::new(),
    };
    // The request phase runs until `StartResponse`, the response phase after it.
    let split = calls
        .iter()
        .position(|c| matches!(c, HostCall::StartResponse))
        .unwrap_or(calls.len());
    state.enter(&mut request);
    for call in &calls[..split] {
        apply(&mut state, call.clone());
    }
    state.leave(&mut request);
    check_request(&request);
    let mut response = ResponseExchange {
        head: http::Response::new(()).into_parts().0,
        context: std::mem::take(&mut request.context),
    };
    state.enter(&mut response);
    for call in calls.get(split + 1..).unwrap_or_default() {
        apply(&mut state, call.clone());
    }
    state.leave(&mut response);
    check_response(&response);
}

/// The host side of a filter's `headers()` call: `map` turned into the
/// list that is then lowered into guest memory (not included). For the
/// `filter_call` benchmark's `marshalling/lines` group.
#[doc(hidden)]
pub fn header_lines(map: &http::HeaderMap) -> Vec<HeaderLine> {
    headers::lines(map)
}

fn apply(s: &mut HostState, call: HostCall) {
    use HostCall::*;
    match call {
        SetMethod(m) => drop(request::Host::set_method(s, m)),
        SetPath(p) => drop(request::Host::set_path(s, p)),
        SetAuthority(a) => drop(request::Host::set_authority(s, a)),
        SetScheme(x) => drop(request::Host::set_scheme(s, x)),
        RequestHeader(n) => drop(request::Host::header(s, n)),
        SetRequestHeader(n, v) => drop(request::Host::set_header(s, n, v)),
        AppendRequestHeader(n, v) => drop(request::Host::append_header(s, n, v)),
        RemoveRequestHeader(n) => drop(request::Host::remove_header(s, n)),
        SetCluster(c) => drop(request::Host::set_cluster(s, c)),
        ContextSet(k, v) => drop(context::Host::set(s, k, v)),
        ContextGet(k) => drop(context::Host::get(s, k)),
        ContextRemove(k) => context::Host::remove(s, k),
        SharedSet(k, v, ttl) => drop(shared_state::Host::set(s, k, v, ttl)),
        SharedGet(k) => drop(shared_state::Host::get(s, k)),
        SharedIncrement(k, d, ttl) => drop(shared_state::Host::increment(s, k, d, ttl)),
        SharedCompareAndSwap(k, e, n) => drop(shared_state::Host::compare_and_swap(s, k, e, n, None)),
        // Later calls go to the response phase (see `run`); a second
        // `StartResponse` does nothing.
        StartResponse => {}
        SetStatus(code) => drop(response::Host::set_status(s, code)),
        SetResponseHeader(n, v) => drop(response::Host::set_header(s, n, v)),
        AppendResponseHeader(n, v) => drop(response::Host::append_header(s, n, v)),
        RemoveResponseHeader(n) => drop(response::Host::remove_header(s, n)),
    }
}

fn check_request(exchange: &RequestExchange) {
    let r = &exchange.head;
    assert!(
        r.parts.headers.len() <= limits::MAX_HEADER_COUNT,
        "request header count over the limit"
    );
    assert!(r.parts.uri.path().starts_with('/'), "path lost its leading slash");
    assert!(r.parts.headers.contains_key(http::header::HOST), "Host header lost");
    // The host's own list; `host` is checked for presence instead.
    for name in RESERVED.iter().filter(|name| **name != "host") {
        assert!(
            !r.parts.headers.contains_key(*name),
            "filter set reserved header {name}"
        );
    }
    // Every header value is a valid field value (no CR, LF, NUL).
    for v in r.parts.headers.values() {
        assert!(!v.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
    }
    assert!(["app", "canary"].contains(&&*r.cluster), "unknown cluster accepted");
    check_context(&exchange.context);
}

fn check_response(exchange: &ResponseExchange) {
    let r = &exchange.head;
    assert!(
        r.headers.len() <= limits::MAX_HEADER_COUNT,
        "response header count over the limit"
    );
    assert!((100..=599).contains(&r.status.as_u16()));
    for name in RESERVED.iter().filter(|name| **name != "host") {
        assert!(!r.headers.contains_key(*name), "filter set reserved header {name}");
    }
    check_context(&exchange.context);
}

fn check_context(context: &Context) {
    assert!(
        context.len() <= limits::MAX_CONTEXT_ENTRIES,
        "context over its entry limit"
    );
}
