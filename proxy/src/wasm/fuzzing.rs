//! Entry point for the host-API fuzz target (`fuzz/fuzz_targets/host_calls.rs`):
//! run an arbitrary sequence of host calls with arbitrary arguments against
//! a real [`HostState`] holding a request, then a response, and check that
//! what the host kept is still a valid HTTP message within the limits. A
//! panic anywhere is a finding. Also home of [`outcomes`], what each call of
//! such a sequence answered (the `limits_parity` test compares it with the
//! SDK's mock host), and of [`header_lines`], a host internal the
//! `filter_call` benchmark times. Not used by the proxy itself.

use super::bindings::sluice::filter::{context, random, request, response, shared_state};
use super::bindings::{HeaderLine, HostError};
use super::host::{Context, HostState, RESERVED, RequestExchange, RequestHead, ResponseExchange, headers};
use crate::connection::ConnectionFacts;
use crate::limits;
use crate::shared_state::{Quota, Quotas, SharedState};
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
    SharedDelete(String),
    RandomBytes(u32),
    /// End the request phase: later calls see the response.
    StartResponse,
    SetStatus(u16),
    SetResponseHeader(String, Vec<u8>),
    AppendResponseHeader(String, Vec<u8>),
    RemoveResponseHeader(String),
}

/// Run `calls`, then check the invariants. Panics on a violation.
pub fn run(calls: &[HostCall]) {
    run_with(calls, Quota::default());
}

/// What each of `calls` answered, run as [`run`] runs them with `quota` as
/// the plugin's shared-state quota: `Ok`, `Ok(value)` or `Err(Variant)` for
/// a call that can fail, the value for one that cannot, `-` for one that
/// returns nothing; byte strings as [`render_bytes`] writes them. The
/// invariants are checked too.
pub fn outcomes(calls: &[HostCall], quota: Quota) -> Vec<String> {
    run_with(calls, quota)
}

/// A byte string as [`outcomes`] shows it: escaped if short, else its
/// length and a checksum.
pub fn render_bytes(bytes: &[u8]) -> String {
    if bytes.len() <= 64 {
        return format!("\"{}\"", bytes.escape_ascii());
    }
    let sum = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("<{} bytes, fnv {sum:016x}>", bytes.len())
}

fn run_with(calls: &[HostCall], quota: Quota) -> Vec<String> {
    let clusters: Arc<HashSet<Arc<str>>> = Arc::new(["app".into(), "canary".into()].into_iter().collect());
    let shared = SharedState::new(Default::default());
    shared.configure(&Quotas {
        default: quota,
        plugins: Default::default(),
    });
    let mut state = HostState::new(
        "fuzz".into(),
        Arc::new(shared),
        clusters,
        16 << 20,
        super::log_budget::LogBudget::detached(),
    );
    let parts = http::Request::get("/start?q=1")
        .header("host", "example.com")
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|_| http::Request::new(()).into_parts().0);
    let mut request = RequestExchange {
        head: RequestHead {
            parts,
            scheme: "http",
            cluster: "app".into(),
            route: "fuzz".into(),
            paths: crate::normalize::PathPolicy::default(),
        },
        context: Context::new(),
        connection: ConnectionFacts::unknown(),
    };
    // The request phase runs until `StartResponse`, the response phase after it.
    let split = calls
        .iter()
        .position(|c| matches!(c, HostCall::StartResponse))
        .unwrap_or(calls.len());
    let mut out = Vec::with_capacity(calls.len());
    state.enter(&mut request, super::Phase::RequestHeaders);
    for call in &calls[..split] {
        out.push(apply(&mut state, call.clone()));
    }
    state.leave(&mut request);
    check_request(&request);
    let mut response = ResponseExchange {
        head: http::Response::new(()).into_parts().0,
        context: std::mem::take(&mut request.context),
        connection: ConnectionFacts::unknown(),
    };
    state.enter(&mut response, super::Phase::ResponseHeaders);
    for call in calls.get(split..).unwrap_or_default() {
        out.push(apply(&mut state, call.clone()));
    }
    state.leave(&mut response);
    check_response(&response);
    out
}

/// The host side of a filter's `headers()` call: `map` turned into the
/// list that is then lowered into guest memory (not included). For the
/// `filter_call` benchmark's `marshalling/lines` group.
#[doc(hidden)]
pub fn header_lines(map: &http::HeaderMap) -> Vec<HeaderLine> {
    headers::lines(map)
}

/// A `HostError` by its variant's name.
fn error(e: HostError) -> &'static str {
    match e {
        HostError::InvalidName => "InvalidName",
        HostError::InvalidValue => "InvalidValue",
        HostError::ReservedHeader => "ReservedHeader",
        HostError::InvalidArgument => "InvalidArgument",
        HostError::LimitExceeded => "LimitExceeded",
        HostError::WrongPhase => "WrongPhase",
        HostError::UnknownCluster => "UnknownCluster",
    }
}

fn done(r: Result<(), HostError>) -> String {
    match r {
        Ok(()) => "Ok".into(),
        Err(e) => format!("Err({})", error(e)),
    }
}

fn value<T: std::fmt::Display>(r: Result<T, HostError>) -> String {
    match r {
        Ok(v) => format!("Ok({v})"),
        Err(e) => format!("Err({})", error(e)),
    }
}

fn found(v: Option<impl AsRef<[u8]>>) -> String {
    match v {
        Some(v) => format!("Some({})", render_bytes(v.as_ref())),
        None => "None".into(),
    }
}

/// Make one call; what it answered, as [`outcomes`] shows it.
fn apply(s: &mut HostState, call: HostCall) -> String {
    use HostCall::*;
    match call {
        SetMethod(m) => done(request::Host::set_method(s, m)),
        SetPath(p) => done(request::Host::set_path(s, p)),
        SetAuthority(a) => done(request::Host::set_authority(s, a)),
        SetScheme(x) => done(request::Host::set_scheme(s, x)),
        RequestHeader(n) => found(request::Host::header(s, n)),
        SetRequestHeader(n, v) => done(request::Host::set_header(s, n, v)),
        AppendRequestHeader(n, v) => done(request::Host::append_header(s, n, v)),
        RemoveRequestHeader(n) => done(request::Host::remove_header(s, n)),
        SetCluster(c) => done(request::Host::set_cluster(s, c)),
        ContextSet(k, v) => done(context::Host::set(s, k, v)),
        ContextGet(k) => found(context::Host::get(s, k)),
        ContextRemove(k) => {
            context::Host::remove(s, k);
            "-".into()
        }
        SharedSet(k, v, ttl) => done(at_once(shared_state::Host::set(s, k, v, ttl))),
        SharedGet(k) => found(at_once(shared_state::Host::get(s, k))),
        SharedIncrement(k, d, ttl) => value(at_once(shared_state::Host::increment(s, k, d, ttl))),
        SharedCompareAndSwap(k, e, n) => value(at_once(shared_state::Host::compare_and_swap(s, k, e, n, None))),
        SharedDelete(k) => at_once(shared_state::Host::delete(s, k)).to_string(),
        RandomBytes(n) => random::Host::bytes(s, n).len().to_string(),
        // Later calls go to the response phase (see `run`); a second
        // `StartResponse` does nothing.
        StartResponse => "-".into(),
        SetStatus(code) => done(response::Host::set_status(s, code)),
        SetResponseHeader(n, v) => done(response::Host::set_header(s, n, v)),
        AppendResponseHeader(n, v) => done(response::Host::append_header(s, n, v)),
        RemoveResponseHeader(n) => done(response::Host::remove_header(s, n)),
    }
}

/// The answer of a shared-state call on the memory backend, which never
/// waits (nor fails: a trap here is an invariant violation).
fn at_once<T>(call: impl std::future::Future<Output = wasmtime::Result<T>>) -> T {
    let mut call = std::pin::pin!(call);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match call.as_mut().poll(&mut context) {
        std::task::Poll::Ready(Ok(answer)) => answer,
        std::task::Poll::Ready(Err(trap)) => panic!("the memory backend trapped: {trap}"),
        std::task::Poll::Pending => panic!("the memory backend waited"),
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
