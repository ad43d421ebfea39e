//! Native backing store for host calls: the state a [`crate::mock::MockHost`]
//! sets up and inspects. It enforces the same rules as the real host
//! (`proxy/src/wasm/host.rs`: phase, header syntax, reserved headers,
//! cluster names, and every bound of [`crate::limits`], in the same order)
//! so a filter's tests see the errors production would. The proxy's
//! `limits_parity` test runs the same calls against both and compares.
//! Outbound calls and remote documents (0.1.3) live in the child modules
//! [`outbound`] and [`document`]; shared state in [`shared`], and
//! `shared-store` (0.1.4) in [`store`].

use super::Message;
use crate::http::{RESERVED_HEADERS, is_header_name};
use crate::limits::*;
use crate::types::{HostError, LogLevel};
use std::cell::RefCell;
use std::collections::HashMap;

mod document;
mod outbound;
mod shared;
mod store;

pub(crate) use document::{document_get, document_refresh, document_subscribe};
pub(crate) use outbound::{Responder, outbound_send};
pub(crate) use shared::{shared_compare_and_swap, shared_delete, shared_get, shared_increment, shared_set};
pub(crate) use store::{
    store_acquire, store_acquire_local, store_compare_and_swap, store_delete, store_get, store_increment, store_set,
};

/// Longest header name the host's HTTP library accepts (`http`'s
/// `MAX_HEADER_NAME_LEN`): a name of `MAX_HEADER_BYTES` (65536) bytes passes
/// the host's size check but is then refused as `invalid-name`.
const HTTP_MAX_NAME_BYTES: usize = (1 << 16) - 1;
/// Longest path-and-query the host's HTTP library accepts (`http`'s
/// `MAX_LEN`), below the host's own `MAX_HEADER_BYTES` check.
const HTTP_MAX_PATH_BYTES: usize = u16::MAX as usize - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Outside any call: test code between phases.
    None,
    /// `Filter::create`, the host's `init`: no request, no connection.
    Init,
    /// The request-headers or request-body phase.
    Request,
    /// The response-headers or response-body phase.
    Response,
}

#[derive(Debug)]
pub(crate) struct State {
    pub phase: Phase,
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    pub scheme: String,
    pub client_address: String,
    pub route: String,
    pub listener: String,
    pub local_address: String,
    pub tls: Option<crate::connection::TlsInfo>,
    /// Direction and original destination of an intercepted connection.
    pub interception: Option<(crate::interception::Direction, String)>,
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub cluster: String,
    /// Clusters `set_cluster` accepts; empty means "any".
    pub clusters: Vec<String>,
    pub status: u16,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub context: HashMap<String, String>,
    pub shared: HashMap<String, (Vec<u8>, Option<u64>)>,
    /// This plugin's shared-state quota: live entries.
    pub shared_max_entries: usize,
    /// This plugin's shared-state quota: bytes of keys plus values.
    pub shared_max_bytes: usize,
    pub logs: Vec<(LogLevel, String)>,
    /// Log lines dropped for being over the log budget.
    pub logs_suppressed: u64,
    /// The log budget as the host keeps it (a GCRA token bucket): the
    /// monotonic time at which the bucket would be full again.
    pub log_tat: u64,
    pub now_unix_nanos: u64,
    pub monotonic_nanos: u64,
    pub rng: u64,
    /// Outbound calls: the test's responder and what was sent.
    pub outbound: outbound::Outbound,
    /// Remote documents: content by URI and the subscriptions made.
    pub documents: document::Documents,
    /// `shared-store`: rate-limit buckets, a scripted outage, calls made.
    pub store: store::Store,
}

impl Default for State {
    fn default() -> Self {
        State {
            phase: Phase::None,
            method: "GET".into(),
            path: "/".into(),
            authority: Some("example.com".into()),
            scheme: "http".into(),
            client_address: "127.0.0.1:40000".into(),
            route: "default".into(),
            listener: "main".into(),
            local_address: "127.0.0.1:8080".into(),
            tls: None,
            interception: None,
            request_headers: Vec::new(),
            cluster: "default".into(),
            clusters: Vec::new(),
            status: 200,
            response_headers: Vec::new(),
            context: HashMap::new(),
            shared: HashMap::new(),
            shared_max_entries: DEFAULT_SHARED_MAX_ENTRIES,
            shared_max_bytes: DEFAULT_SHARED_MAX_BYTES,
            logs: Vec::new(),
            logs_suppressed: 0,
            log_tat: 0,
            // 2026-01-01T00:00:00Z
            now_unix_nanos: 1_767_225_600_000_000_000,
            monotonic_nanos: 1_000_000_000,
            rng: 0x9E37_79B9_7F4A_7C15,
            outbound: outbound::Outbound::default(),
            documents: document::Documents::default(),
            store: store::Store::default(),
        }
    }
}

thread_local! {
    pub(crate) static STATE: RefCell<State> = RefCell::new(State::default());
}

pub(crate) fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

// ---- validation, as the host does it (`header_name`, `writable_name`,
// `header_value` in `proxy/src/wasm/host.rs`; `shared_key` and
// `shared_value` are in [`shared`]) ----

/// Whether the host's HTTP library takes `name` as a header name: an RFC
/// 9110 token of at most [`HTTP_MAX_NAME_BYTES`] bytes, any case.
pub(crate) fn http_header_name(name: &str) -> bool {
    name.len() <= HTTP_MAX_NAME_BYTES && is_header_name(name)
}

/// Whether the host's HTTP library takes `value` as a header value:
/// visible ASCII, space, tab and bytes from 0x80 (obs-text); no other
/// control byte and no DEL.
pub(crate) fn valid_value(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= b' ' && b != 0x7f) || b == b'\t')
}

/// A header name as the host reads one: over `MAX_HEADER_BYTES` is
/// `limit-exceeded`, anything else its HTTP library refuses is
/// `invalid-name`. Lower case, as the host stores it.
fn header_name(name: &str) -> Result<String, HostError> {
    if name.len() > MAX_HEADER_BYTES {
        return Err(HostError::LimitExceeded);
    }
    if !http_header_name(name) {
        return Err(HostError::InvalidName);
    }
    Ok(name.to_ascii_lowercase())
}

/// A header name a filter may change: also not one of [`RESERVED_HEADERS`].
fn writable_name(name: &str) -> Result<String, HostError> {
    let name = header_name(name)?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(HostError::ReservedHeader);
    }
    Ok(name)
}

fn header_value(value: &[u8]) -> Result<(), HostError> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(HostError::LimitExceeded);
    }
    if !valid_value(value) {
        return Err(HostError::InvalidValue);
    }
    Ok(())
}

fn in_phase(phase: Phase) -> Result<(), HostError> {
    if with(|s| s.phase) == phase {
        Ok(())
    } else {
        Err(HostError::WrongPhase)
    }
}

fn request_field<R: Default>(f: impl FnOnce(&State) -> R) -> R {
    with(|s| if s.phase == Phase::Request { f(s) } else { R::default() })
}

pub(crate) fn method() -> String {
    request_field(|s| s.method.clone())
}
/// Any token, of any length (the host sets no bound on a method).
pub(crate) fn set_method(m: &str) -> Result<(), HostError> {
    in_phase(Phase::Request)?;
    if !is_header_name(m) {
        return Err(HostError::InvalidArgument);
    }
    with(|s| s.method = m.to_string());
    Ok(())
}
pub(crate) fn path() -> String {
    request_field(|s| s.path.clone())
}
/// Refused as the host refuses it: not starting with `/`, over
/// `MAX_HEADER_BYTES`, or not a path-and-query its HTTP library parses.
/// The fragment is dropped, as there. Unlike the host, the mock does not
/// then normalize the path (dot segments, repeated or escaped slashes).
pub(crate) fn set_path(p: &str) -> Result<(), HostError> {
    in_phase(Phase::Request)?;
    if !p.starts_with('/') || p.len() > MAX_HEADER_BYTES {
        return Err(HostError::InvalidArgument);
    }
    let kept = path_and_query(p).ok_or(HostError::InvalidArgument)?;
    with(|s| s.path = kept.to_string());
    Ok(())
}

/// What the host's HTTP library keeps of a path-and-query starting with
/// `/` (all but the fragment), or `None` if it refuses it.
pub(crate) fn path_and_query(p: &str) -> Option<&str> {
    if p.len() > HTTP_MAX_PATH_BYTES {
        return None;
    }
    let mut in_query = false;
    for (i, b) in p.bytes().enumerate() {
        let valid = match b {
            b'#' => return Some(&p[..i]),
            b'?' if !in_query => {
                in_query = true;
                true
            }
            0x80..=0xff | b'!' | b'$'..=b';' | b'=' => true,
            _ if in_query => matches!(b, b'?'..=b'~'),
            _ => matches!(b, b'@'..=b'_' | b'a'..=b'z' | b'|' | b'~' | b'"' | b'{' | b'}'),
        };
        if !valid {
            return None;
        }
    }
    Some(p)
}

pub(crate) fn authority() -> Option<String> {
    request_field(|s| s.authority.clone())
}
/// Refused as the host refuses it: not an authority its HTTP library
/// parses, or with userinfo (`@`). No size bound: the host has none.
pub(crate) fn set_authority(a: &str) -> Result<(), HostError> {
    in_phase(Phase::Request)?;
    if !valid_authority(a) {
        return Err(HostError::InvalidArgument);
    }
    with(|s| s.authority = Some(a.to_string()));
    Ok(())
}

/// The `http` crate's authority grammar (`host[:port]`, an IP literal in
/// brackets with an optional `%` zone), without userinfo.
pub(crate) fn valid_authority(a: &str) -> bool {
    let (mut colons, mut open, mut close, mut percent) = (0u32, false, false, false);
    for b in a.bytes() {
        match b {
            b'%' => percent = true,
            b':' if colons >= 8 => return false,
            b':' => colons += 1,
            b'[' if percent || open => return false,
            b'[' => open = true,
            b']' if !open || close => return false,
            b']' => {
                close = true;
                colons = 0;
                percent = false;
            }
            b'!' | b'$' | b'&'..=b'.' | b'0'..=b'9' | b';' | b'=' | b'A'..=b'Z' | b'_' | b'a'..=b'z' | b'~' => {}
            _ => return false,
        }
    }
    !a.is_empty() && open == close && colons <= 1 && !percent
}

pub(crate) fn scheme() -> String {
    request_field(|s| s.scheme.clone())
}
pub(crate) fn set_scheme(v: &str) -> Result<(), HostError> {
    in_phase(Phase::Request)?;
    if v != "http" && v != "https" {
        return Err(HostError::InvalidArgument);
    }
    with(|s| s.scheme = v.to_string());
    Ok(())
}
pub(crate) fn client_address() -> String {
    request_field(|s| s.client_address.clone())
}

pub(crate) fn route() -> String {
    request_field(|s| s.route.clone())
}
pub(crate) fn cluster() -> String {
    request_field(|s| s.cluster.clone())
}
/// The name is checked before the phase, as the host does.
pub(crate) fn set_cluster(c: &str) -> Result<(), HostError> {
    with(|s| {
        if !s.clusters.is_empty() && !s.clusters.iter().any(|k| k == c) {
            return Err(HostError::UnknownCluster);
        }
        if s.phase != Phase::Request {
            return Err(HostError::WrongPhase);
        }
        s.cluster = c.to_string();
        Ok(())
    })
}
pub(crate) fn status() -> u16 {
    with(|s| if s.phase == Phase::Response { s.status } else { 0 })
}
pub(crate) fn set_status(code: u16) -> Result<(), HostError> {
    in_phase(Phase::Response)?;
    if !(100..=599).contains(&code) {
        return Err(HostError::InvalidArgument);
    }
    with(|s| s.status = code);
    Ok(())
}

fn lines(s: &mut State, m: Message) -> Option<&mut Vec<(String, Vec<u8>)>> {
    match (m, s.phase) {
        (Message::Request, Phase::Request) => Some(&mut s.request_headers),
        (Message::Response, Phase::Response) => Some(&mut s.response_headers),
        _ => None,
    }
}

/// Header lines of `m` as the host counts them against `MAX_HEADER_COUNT`:
/// there the request's authority is its `host` header.
pub(crate) fn line_count(s: &State, m: Message) -> usize {
    match m {
        Message::Request => {
            let host_line =
                s.authority.is_some() && !s.request_headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
            s.request_headers.len() + usize::from(host_line)
        }
        Message::Response => s.response_headers.len(),
    }
}

pub(crate) fn header(m: Message, name: &str) -> Option<Vec<u8>> {
    header_all(m, name).into_iter().next()
}
pub(crate) fn header_all(m: Message, name: &str) -> Vec<Vec<u8>> {
    with(|s| {
        lines(s, m)
            .map(|l| {
                l.iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    })
}
pub(crate) fn headers(m: Message) -> Vec<(String, Vec<u8>)> {
    with(|s| lines(s, m).map(|l| l.clone()).unwrap_or_default())
}

/// Replace (`replace`) or add to the values of a header, or remove it
/// (`value` `None`), checking in the host's order: phase, name (size,
/// syntax, reserved), value (size, syntax), then the header count after
/// the change.
fn edit(m: Message, name: &str, value: Option<&[u8]>, replace: bool) -> Result<(), HostError> {
    with(|s| {
        if lines(s, m).is_none() {
            return Err(HostError::WrongPhase);
        }
        let name = writable_name(name)?;
        if let Some(value) = value {
            header_value(value)?;
        }
        let count = line_count(s, m);
        let l = lines(s, m).ok_or(HostError::WrongPhase)?;
        if value.is_some() {
            let replaced = if replace {
                l.iter().filter(|(n, _)| n.eq_ignore_ascii_case(&name)).count()
            } else {
                0
            };
            if count - replaced + 1 > MAX_HEADER_COUNT {
                return Err(HostError::LimitExceeded);
            }
        }
        if replace {
            l.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        }
        if let Some(v) = value {
            l.push((name, v.to_vec()));
        }
        Ok(())
    })
}
pub(crate) fn set_header(m: Message, name: &str, value: &[u8]) -> Result<(), HostError> {
    edit(m, name, Some(value), true)
}
pub(crate) fn append_header(m: Message, name: &str, value: &[u8]) -> Result<(), HostError> {
    edit(m, name, Some(value), false)
}
pub(crate) fn remove_header(m: Message, name: &str) -> Result<(), HostError> {
    edit(m, name, None, true)
}

pub(crate) fn context_get(key: &str) -> Option<String> {
    with(|s| s.context.get(key).cloned())
}
pub(crate) fn context_set(key: &str, value: &str) -> Result<(), HostError> {
    if key.len() > MAX_CONTEXT_BYTES || value.len() > MAX_CONTEXT_BYTES {
        return Err(HostError::LimitExceeded);
    }
    with(|s| {
        if !s.context.contains_key(key) && s.context.len() >= MAX_CONTEXT_ENTRIES {
            return Err(HostError::LimitExceeded);
        }
        s.context.insert(key.to_string(), value.to_string());
        Ok(())
    })
}
pub(crate) fn context_remove(key: &str) {
    with(|s| s.context.remove(key));
}
pub(crate) fn context_keys() -> Vec<String> {
    with(|s| s.context.keys().cloned().collect())
}

/// Kept as the host keeps it: within the plugin's log budget
/// (`LOG_LINES_PER_SECOND` on average, bursts of `LOG_BURST`, on the mock's
/// monotonic clock; lines over it are dropped and counted), cut to
/// `MAX_LOG_BYTES` (at a character boundary) and marked with `…`.
pub(crate) fn log(level: LogLevel, message: &str) {
    if !with(take_log_budget) {
        return;
    }
    let mut message = message.to_string();
    if message.len() > MAX_LOG_BYTES {
        let mut cut = MAX_LOG_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    with(|s| s.logs.push((level, message)));
}
/// One line from the log budget, as the host's `LogBudget::take`.
fn take_log_budget(s: &mut State) -> bool {
    let emission = 1_000_000_000 / u64::from(LOG_LINES_PER_SECOND.max(1));
    let tolerance = emission * u64::from(LOG_BURST.max(1) - 1);
    let now = s.monotonic_nanos;
    let start = s.log_tat.max(now);
    if start - now > tolerance {
        s.logs_suppressed += 1;
        return false;
    }
    s.log_tat = start.saturating_add(emission);
    true
}
pub(crate) fn log_enabled(_level: LogLevel) -> bool {
    true
}

pub(crate) fn now_unix_nanos() -> u64 {
    with(|s| s.now_unix_nanos)
}
pub(crate) fn monotonic_nanos() -> u64 {
    with(|s| s.monotonic_nanos)
}

pub(crate) fn random_u64() -> u64 {
    // xorshift64*: deterministic, so tests that use randomness repeat.
    with(|s| {
        let mut x = s.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}
/// At most `MAX_RANDOM_BYTES`, as the host gives.
pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
    let len = len.min(MAX_RANDOM_BYTES) as usize;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&random_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The connection is the same in every phase; `create` (and test code
/// outside a phase) has none.
fn connection_field<T: Default>(f: impl FnOnce(&State) -> T) -> T {
    with(|s| {
        if matches!(s.phase, Phase::None | Phase::Init) {
            T::default()
        } else {
            f(s)
        }
    })
}
pub(crate) fn connection_listener() -> String {
    connection_field(|s| s.listener.clone())
}
pub(crate) fn connection_local_address() -> String {
    connection_field(|s| s.local_address.clone())
}
pub(crate) fn connection_tls() -> Option<crate::connection::TlsInfo> {
    connection_field(|s| s.tls.clone())
}
pub(crate) fn interception_direction() -> Option<crate::interception::Direction> {
    connection_field(|s| s.interception.as_ref().map(|(d, _)| *d))
}
pub(crate) fn interception_original_destination() -> Option<String> {
    connection_field(|s| s.interception.as_ref().map(|(_, addr)| addr.clone()))
}
