//! The host side of the WIT imports: what a filter's calls do to the
//! request, response, context and shared state of the call in progress.
//! Every argument from the guest is validated here; a bad one is refused
//! with a `host-error`, never a panic or an invalid message.

use super::bindings::sluice::filter::{clock, context, log, random, request, response, types};
use super::bindings::{HeaderLine, HostError, LogLevel};
use super::budget::{CallBudget, SharedBudget};
use super::log_budget::LogBudget;
use super::memory::MemoryCap;
use super::pool::Phase;
use crate::config::SandboxConfig;
use crate::connection::ConnectionFacts;
use crate::limits;
use crate::normalize::PathPolicy;
use crate::outbound::Outbound;
use crate::outbound::documents::{Document, Documents};
use crate::shared_state::SharedState;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, StatusCode};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// One origin for `monotonic-nanos`, so values from different instances compare.
static MONOTONIC_ORIGIN: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

pub use super::context::Context;

/// The request as the chain sees it, before it goes upstream.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: http::request::Parts,
    /// `http` or `https`, as recorded for the upstream's forwarding headers.
    pub scheme: &'static str,
    /// The cluster the request will be sent to.
    pub cluster: Arc<str>,
    /// The name of the route that matched.
    pub route: Arc<str>,
    /// How a path a filter sets is normalized (the generation's `[paths]`).
    pub paths: PathPolicy,
}

impl RequestHead {
    /// What a store holds between request-phase calls: never seen by a
    /// filter (outside the request phase every request function answers
    /// `wrong-phase`).
    fn idle() -> RequestHead {
        RequestHead {
            parts: http::Request::new(()).into_parts().0,
            scheme: "http",
            cluster: Arc::from(""),
            route: Arc::from(""),
            paths: PathPolicy::default(),
        }
    }
}

/// The response as the chain sees it, on its way to the client.
pub type ResponseHead = http::response::Parts;

/// The message of a request-phase call: the request, the context and the
/// connection it arrived on.
#[derive(Debug)]
pub struct RequestExchange {
    pub head: RequestHead,
    pub context: Context,
    pub connection: Arc<ConnectionFacts>,
}

/// The message of a response-phase call: the response, the context the
/// request phase left, and the connection.
#[derive(Debug)]
pub struct ResponseExchange {
    pub head: ResponseHead,
    pub context: Context,
    pub connection: Arc<ConnectionFacts>,
}

/// A message phases work on. Moved into a filter's store for the length
/// of one call (swapped with what the store holds between calls) and
/// swapped back after it, whatever the call's outcome.
pub trait Message: sealed::Sealed + Send {
    /// The headers phase of this message (its body phase is the other).
    const HEADERS: Phase;
    /// Exchange this message with the store's copy (symmetric: the second
    /// swap takes the message back).
    #[doc(hidden)]
    fn swap_with(&mut self, call: &mut CallData);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::RequestExchange {}
    impl Sealed for super::ResponseExchange {}
}

impl Message for RequestExchange {
    const HEADERS: Phase = Phase::RequestHeaders;
    fn swap_with(&mut self, call: &mut CallData) {
        std::mem::swap(&mut self.head, &mut call.request);
        std::mem::swap(&mut self.context, &mut call.context);
        std::mem::swap(&mut self.connection, &mut call.connection);
    }
}

impl Message for ResponseExchange {
    const HEADERS: Phase = Phase::ResponseHeaders;
    fn swap_with(&mut self, call: &mut CallData) {
        std::mem::swap(&mut self.head, &mut call.response);
        std::mem::swap(&mut self.context, &mut call.context);
        std::mem::swap(&mut self.connection, &mut call.connection);
    }
}

/// What a store's host functions act on. Both heads are always there; which
/// one a filter may see is decided by `phase` (`None` in `init`).
#[doc(hidden)]
pub struct CallData {
    pub(super) phase: Option<Phase>,
    request: RequestHead,
    response: ResponseHead,
    context: Context,
    /// The connection of the message in the store (a placeholder between calls).
    pub(super) connection: Arc<ConnectionFacts>,
}

impl CallData {
    fn idle() -> CallData {
        CallData {
            phase: None,
            request: RequestHead::idle(),
            response: http::Response::new(()).into_parts().0,
            context: Context::new(),
            connection: ConnectionFacts::unknown(),
        }
    }
}

/// What a filter may reach over the network: outbound calls, remote
/// documents, and the bounds on both.
pub struct Io {
    pub(super) outbound: Arc<Outbound>,
    pub(super) documents: Arc<Documents>,
    /// The documents this instance subscribed to; a handle is an index.
    pub(super) subscribed: Vec<Arc<Document>>,
    /// Wall-clock time one phase call may wait on the host.
    pub(super) wait_limit: Duration,
    pub(super) max_response_bytes: usize,
}

impl Io {
    pub fn new(outbound: Arc<Outbound>, documents: Arc<Documents>, sandbox: &SandboxConfig) -> Io {
        Io {
            outbound,
            documents,
            subscribed: Vec::new(),
            wait_limit: sandbox.wait_limit,
            max_response_bytes: sandbox.max_response_bytes,
        }
    }
}

/// The data of one filter instance's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    pub(super) plugin: Arc<str>,
    pub(super) shared: Arc<SharedState>,
    clusters: Arc<HashSet<Arc<str>>>,
    /// The plugin's log budget, shared by all its instances.
    log_budget: Arc<LogBudget>,
    pub(super) call: CallData,
    /// The CPU deadline of the call in progress, shared with the future
    /// that polls it.
    pub(super) budget: SharedBudget,
    /// Network capabilities; `None` where the store is not a filter slot's
    /// (unit tests, fuzzing).
    pub(super) io: Option<Box<Io>>,
}

impl HostState {
    pub fn new(
        plugin: Arc<str>,
        shared: Arc<SharedState>,
        clusters: Arc<HashSet<Arc<str>>>,
        memory_limit: usize,
        log_budget: Arc<LogBudget>,
    ) -> Self {
        HostState {
            // No preopens, no environment, no stdio: Rust's std links WASI, and
            // it gets nothing through it.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            memory: MemoryCap::new(memory_limit),
            plugin,
            shared,
            clusters,
            log_budget,
            call: CallData::idle(),
            budget: Arc::new(Mutex::new(CallBudget::new(super::INIT_DEADLINE))),
            io: None,
        }
    }

    /// Give the store's filter the network capabilities.
    pub(super) fn with_io(mut self, io: Io) -> Self {
        self.io = Some(Box::new(io));
        self
    }

    /// The documents this instance subscribed to.
    pub(super) fn documents(&self) -> &[Arc<Document>] {
        self.io.as_ref().map_or(&[], |io| &io.subscribed)
    }

    /// Whether `cluster` is one this filter entry may use, as the set's own
    /// name.
    pub(super) fn allowed_cluster(&self, cluster: &str) -> Option<Arc<str>> {
        self.clusters.get(cluster).cloned()
    }

    /// Move `message` into this store for a call of `phase`.
    pub(super) fn enter<M: Message>(&mut self, message: &mut M, phase: Phase) {
        message.swap_with(&mut self.call);
        self.call.phase = Some(phase);
    }

    /// Take `message` back after the call, whatever its outcome.
    pub(super) fn leave<M: Message>(&mut self, message: &mut M) {
        self.call.phase = None;
        message.swap_with(&mut self.call);
    }

    fn request(&mut self) -> Result<&mut RequestHead, HostError> {
        match self.call.phase {
            Some(p) if p.is_request() => Ok(&mut self.call.request),
            _ => Err(HostError::WrongPhase),
        }
    }

    fn response(&mut self) -> Result<&mut ResponseHead, HostError> {
        match self.call.phase {
            Some(p) if !p.is_request() => Ok(&mut self.call.response),
            _ => Err(HostError::WrongPhase),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Headers only the host may change.
pub(super) const RESERVED: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "host",
];

pub(super) fn header_name(name: &str) -> Result<HeaderName, HostError> {
    if name.len() > limits::MAX_HEADER_BYTES {
        return Err(HostError::LimitExceeded);
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| HostError::InvalidName)
}

pub(super) fn writable_name(name: &str) -> Result<HeaderName, HostError> {
    let name = header_name(name)?;
    if RESERVED.contains(&name.as_str()) {
        return Err(HostError::ReservedHeader);
    }
    Ok(name)
}

/// A header value from the bytes a filter passed, which it takes over
/// (validated in place, not copied).
pub(super) fn header_value(value: Vec<u8>) -> Result<HeaderValue, HostError> {
    if value.len() > limits::MAX_HEADER_BYTES {
        return Err(HostError::LimitExceeded);
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).map_err(|_| HostError::InvalidValue)
}

/// Header operations shared by the request and the response.
pub(super) mod headers {
    use super::*;

    pub fn get(map: &HeaderMap, name: &str) -> Option<Vec<u8>> {
        let name = header_name(name).ok()?;
        map.get(name).map(|v| v.as_bytes().to_vec())
    }

    pub fn get_all(map: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
        match header_name(name) {
            Ok(name) => map.get_all(name).iter().map(|v| v.as_bytes().to_vec()).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn lines(map: &HeaderMap) -> Vec<HeaderLine> {
        map.iter()
            .map(|(n, v)| HeaderLine {
                name: n.as_str().to_string(),
                value: v.as_bytes().to_vec(),
            })
            .collect()
    }

    pub fn set(map: &mut HeaderMap, name: &str, value: Vec<u8>) -> Result<(), HostError> {
        let name = writable_name(name)?;
        let value = header_value(value)?;
        let existing = map.get_all(&name).iter().count();
        if map.len() - existing + 1 > limits::MAX_HEADER_COUNT {
            return Err(HostError::LimitExceeded);
        }
        map.insert(name, value);
        Ok(())
    }

    pub fn append(map: &mut HeaderMap, name: &str, value: Vec<u8>) -> Result<(), HostError> {
        let name = writable_name(name)?;
        let value = header_value(value)?;
        if map.len() + 1 > limits::MAX_HEADER_COUNT {
            return Err(HostError::LimitExceeded);
        }
        map.append(name, value);
        Ok(())
    }

    pub fn remove(map: &mut HeaderMap, name: &str) -> Result<(), HostError> {
        let name = writable_name(name)?;
        map.remove(name);
        Ok(())
    }
}

impl types::Host for HostState {}

impl request::Host for HostState {
    fn method(&mut self) -> String {
        self.request()
            .map(|r| r.parts.method.as_str().to_string())
            .unwrap_or_default()
    }

    fn set_method(&mut self, method: String) -> Result<(), HostError> {
        let req = self.request()?;
        req.parts.method = Method::from_bytes(method.as_bytes()).map_err(|_| HostError::InvalidArgument)?;
        Ok(())
    }

    fn path(&mut self) -> String {
        self.request()
            .map(|r| {
                r.parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
                    .to_string()
            })
            .unwrap_or_default()
    }

    fn set_path(&mut self, path: String) -> Result<(), HostError> {
        let req = self.request()?;
        if !path.starts_with('/') || path.len() > limits::MAX_HEADER_BYTES {
            return Err(HostError::InvalidArgument);
        }
        // Validate first, then normalize as a request's path is, so a filter
        // cannot reintroduce what routing removed.
        let pq = PathAndQuery::try_from(path).map_err(|_| HostError::InvalidArgument)?;
        let mut uri = http::Uri::from(pq);
        crate::target::normalize_path(&mut uri, req.paths).map_err(|_| HostError::InvalidArgument)?;
        let mut parts = std::mem::take(&mut req.parts.uri).into_parts();
        parts.path_and_query = uri.into_parts().path_and_query;
        req.parts.uri = http::Uri::from_parts(parts).map_err(|_| HostError::InvalidArgument)?;
        Ok(())
    }

    fn authority(&mut self) -> Option<String> {
        let req = self.request().ok()?;
        let host = req.parts.headers.get(http::header::HOST)?;
        host.to_str().ok().map(str::to_string)
    }

    fn set_authority(&mut self, authority: String) -> Result<(), HostError> {
        let req = self.request()?;
        let parsed = Authority::try_from(authority.as_str()).map_err(|_| HostError::InvalidArgument)?;
        if authority.contains('@') {
            return Err(HostError::InvalidArgument);
        }
        let value = HeaderValue::from_str(parsed.as_str()).map_err(|_| HostError::InvalidArgument)?;
        req.parts.headers.insert(http::header::HOST, value);
        Ok(())
    }

    fn scheme(&mut self) -> String {
        self.request().map(|r| r.scheme.to_string()).unwrap_or_default()
    }

    fn set_scheme(&mut self, scheme: String) -> Result<(), HostError> {
        let req = self.request()?;
        req.scheme = match scheme.as_str() {
            "http" => "http",
            "https" => "https",
            _ => return Err(HostError::InvalidArgument),
        };
        Ok(())
    }

    fn client_address(&mut self) -> String {
        match self.call.phase {
            Some(p) if p.is_request() => self.call.connection.client.to_string(),
            _ => String::new(),
        }
    }

    fn route(&mut self) -> String {
        self.request().map(|r| r.route.to_string()).unwrap_or_default()
    }

    fn header(&mut self, name: String) -> Option<Vec<u8>> {
        headers::get(&self.request().ok()?.parts.headers, &name)
    }

    fn header_all(&mut self, name: String) -> Vec<Vec<u8>> {
        self.request()
            .map(|r| headers::get_all(&r.parts.headers, &name))
            .unwrap_or_default()
    }

    fn headers(&mut self) -> Vec<HeaderLine> {
        self.request()
            .map(|r| headers::lines(&r.parts.headers))
            .unwrap_or_default()
    }

    fn set_header(&mut self, name: String, value: Vec<u8>) -> Result<(), HostError> {
        headers::set(&mut self.request()?.parts.headers, &name, value)
    }

    fn append_header(&mut self, name: String, value: Vec<u8>) -> Result<(), HostError> {
        headers::append(&mut self.request()?.parts.headers, &name, value)
    }

    fn remove_header(&mut self, name: String) -> Result<(), HostError> {
        headers::remove(&mut self.request()?.parts.headers, &name)
    }

    fn cluster(&mut self) -> String {
        self.request().map(|r| r.cluster.to_string()).unwrap_or_default()
    }

    fn set_cluster(&mut self, name: String) -> Result<(), HostError> {
        let cluster = self
            .clusters
            .get(name.as_str())
            .cloned()
            .ok_or(HostError::UnknownCluster)?;
        self.request()?.cluster = cluster;
        Ok(())
    }
}

impl response::Host for HostState {
    fn status(&mut self) -> u16 {
        self.response().map(|r| r.status.as_u16()).unwrap_or(0)
    }

    fn set_status(&mut self, status: u16) -> Result<(), HostError> {
        let resp = self.response()?;
        if !(100..=599).contains(&status) {
            return Err(HostError::InvalidArgument);
        }
        resp.status = StatusCode::from_u16(status).map_err(|_| HostError::InvalidArgument)?;
        Ok(())
    }

    fn header(&mut self, name: String) -> Option<Vec<u8>> {
        headers::get(&self.response().ok()?.headers, &name)
    }

    fn header_all(&mut self, name: String) -> Vec<Vec<u8>> {
        self.response()
            .map(|r| headers::get_all(&r.headers, &name))
            .unwrap_or_default()
    }

    fn headers(&mut self) -> Vec<HeaderLine> {
        self.response().map(|r| headers::lines(&r.headers)).unwrap_or_default()
    }

    fn set_header(&mut self, name: String, value: Vec<u8>) -> Result<(), HostError> {
        headers::set(&mut self.response()?.headers, &name, value)
    }

    fn append_header(&mut self, name: String, value: Vec<u8>) -> Result<(), HostError> {
        headers::append(&mut self.response()?.headers, &name, value)
    }

    fn remove_header(&mut self, name: String) -> Result<(), HostError> {
        headers::remove(&mut self.response()?.headers, &name)
    }
}

impl context::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.call.context.get(&key).map(str::to_owned)
    }

    fn set(&mut self, key: String, value: String) -> Result<(), HostError> {
        let ctx = &mut self.call.context;
        if key.len() > limits::MAX_CONTEXT_BYTES || value.len() > limits::MAX_CONTEXT_BYTES {
            return Err(HostError::LimitExceeded);
        }
        if !ctx.contains_key(&key) && ctx.len() >= limits::MAX_CONTEXT_ENTRIES {
            return Err(HostError::LimitExceeded);
        }
        ctx.insert(key, value);
        Ok(())
    }

    fn remove(&mut self, key: String) {
        self.call.context.remove(&key);
    }

    fn keys(&mut self) -> Vec<String> {
        self.call.context.keys().map(str::to_owned).collect()
    }
}

fn tracing_level(level: LogLevel) -> tracing::Level {
    match level {
        LogLevel::Trace => tracing::Level::TRACE,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: LogLevel, mut message: String) {
        // Lines the log filter would discard cost no budget.
        if !log::Host::enabled(self, level) {
            return;
        }
        let admit = self.log_budget.admit(Instant::now());
        let plugin = &*self.plugin;
        if admit.report_suppressed > 0 {
            tracing::warn!(
                plugin,
                suppressed = admit.report_suppressed,
                "filter log lines suppressed (over the plugin's log budget)"
            );
        }
        if !admit.write {
            return;
        }
        if message.len() > limits::MAX_LOG_BYTES {
            let mut cut = limits::MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        match tracing_level(level) {
            tracing::Level::TRACE => tracing::trace!(target: "sluice::filter", plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: "sluice::filter", plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "sluice::filter", plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "sluice::filter", plugin, "{message}"),
            _ => tracing::error!(target: "sluice::filter", plugin, "{message}"),
        }
    }

    fn enabled(&mut self, level: LogLevel) -> bool {
        match tracing_level(level) {
            tracing::Level::TRACE => tracing::enabled!(target: "sluice::filter", tracing::Level::TRACE),
            tracing::Level::DEBUG => tracing::enabled!(target: "sluice::filter", tracing::Level::DEBUG),
            tracing::Level::INFO => tracing::enabled!(target: "sluice::filter", tracing::Level::INFO),
            tracing::Level::WARN => tracing::enabled!(target: "sluice::filter", tracing::Level::WARN),
            _ => tracing::enabled!(target: "sluice::filter", tracing::Level::ERROR),
        }
    }
}

impl clock::Host for HostState {
    fn now_unix_nanos(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn monotonic_nanos(&mut self) -> u64 {
        u64::try_from(MONOTONIC_ORIGIN.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl random::Host for HostState {
    fn next_u64(&mut self) -> u64 {
        rand::random()
    }

    fn bytes(&mut self, len: u32) -> Vec<u8> {
        let mut out = vec![0u8; len.min(limits::MAX_RANDOM_BYTES) as usize];
        rand::fill(&mut out[..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `set-path` normalizes as routing does and refuses what a request
    /// would be refused for, so a filter cannot reintroduce a bypass.
    #[test]
    fn set_path_is_normalized_or_refused() {
        let mut state = HostState::new(
            "t".into(),
            Arc::new(SharedState::new(Default::default())),
            Arc::default(),
            1 << 20,
            LogBudget::detached(),
        );
        let mut message = RequestExchange {
            head: RequestHead::idle(),
            context: Context::new(),
            connection: ConnectionFacts::unknown(),
        };
        state.enter(&mut message, Phase::RequestHeaders);
        use request::Host as _;
        assert_eq!(state.set_path("/x/../y//z?q=/../k".into()), Ok(()));
        assert_eq!(state.path(), "/y/z?q=/../k");
        for bad in ["/a/..%2fb", "/x/..;/y", "/a%zz", "relative"] {
            assert_eq!(state.set_path(bad.into()), Err(HostError::InvalidArgument), "{bad}");
        }
        assert_eq!(state.path(), "/y/z?q=/../k", "a refused path changed nothing");
        state.leave(&mut message);
        assert_eq!(message.head.parts.uri, "/y/z?q=/../k");
    }
}
