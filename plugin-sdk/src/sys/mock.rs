//! Native backing store for host calls: the state a [`crate::mock::MockHost`]
//! sets up and inspects. It enforces the same rules as the real host (phase,
//! header syntax, cluster names) so a filter's tests see the same errors.

use super::Message;
use crate::http::{RESERVED_HEADERS, is_header_name};
use crate::types::{HostError, LogLevel};
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    None,
    Request,
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
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub cluster: String,
    /// Clusters `set_cluster` accepts; empty means "any".
    pub clusters: Vec<String>,
    pub status: u16,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub context: HashMap<String, String>,
    pub shared: HashMap<String, (Vec<u8>, Option<u64>)>,
    pub logs: Vec<(LogLevel, String)>,
    pub now_unix_nanos: u64,
    pub monotonic_nanos: u64,
    pub rng: u64,
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
            request_headers: Vec::new(),
            cluster: "default".into(),
            clusters: Vec::new(),
            status: 200,
            response_headers: Vec::new(),
            context: HashMap::new(),
            shared: HashMap::new(),
            logs: Vec::new(),
            // 2026-01-01T00:00:00Z
            now_unix_nanos: 1_767_225_600_000_000_000,
            monotonic_nanos: 1_000_000_000,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

thread_local! {
    pub(crate) static STATE: RefCell<State> = RefCell::new(State::default());
}

pub(crate) fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

pub(crate) fn valid_value(value: &[u8]) -> bool {
    !value.iter().any(|b| matches!(b, 0 | b'\r' | b'\n'))
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
pub(crate) fn set_path(p: &str) -> Result<(), HostError> {
    in_phase(Phase::Request)?;
    if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(HostError::InvalidArgument);
    }
    with(|s| s.path = p.to_string());
    Ok(())
}
pub(crate) fn authority() -> Option<String> {
    request_field(|s| s.authority.clone())
}
pub(crate) fn set_authority(a: &str) -> Result<(), HostError> {
    in_phase(Phase::Request)?;
    if a.is_empty() || a.bytes().any(|b| b <= b' ' || b"/?#@".contains(&b)) {
        return Err(HostError::InvalidArgument);
    }
    with(|s| s.authority = Some(a.to_string()));
    Ok(())
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
pub(crate) fn set_cluster(c: &str) -> Result<(), HostError> {
    in_phase(Phase::Request)?;
    with(|s| {
        if !s.clusters.is_empty() && !s.clusters.iter().any(|k| k == c) {
            return Err(HostError::UnknownCluster);
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
fn edit(m: Message, name: &str, value: Option<&[u8]>, replace: bool) -> Result<(), HostError> {
    if !is_header_name(name) {
        return Err(HostError::InvalidName);
    }
    if value.is_some_and(|v| !valid_value(v)) {
        return Err(HostError::InvalidValue);
    }
    let name = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(HostError::ReservedHeader);
    }
    with(|s| {
        let l = lines(s, m).ok_or(HostError::WrongPhase)?;
        if replace {
            l.retain(|(n, _)| *n != name);
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
    with(|s| s.context.insert(key.to_string(), value.to_string()));
    Ok(())
}
pub(crate) fn context_remove(key: &str) {
    with(|s| s.context.remove(key));
}
pub(crate) fn context_keys() -> Vec<String> {
    with(|s| s.context.keys().cloned().collect())
}

fn live(s: &mut State, key: &str) -> Option<Vec<u8>> {
    let now = s.monotonic_nanos;
    match s.shared.get(key) {
        Some((_, Some(expiry))) if *expiry <= now => {
            s.shared.remove(key);
            None
        }
        Some((v, _)) => Some(v.clone()),
        None => None,
    }
}
fn expiry(s: &State, ttl_ms: Option<u64>) -> Option<u64> {
    ttl_ms.map(|ms| s.monotonic_nanos.saturating_add(ms.saturating_mul(1_000_000)))
}
pub(crate) fn shared_get(key: &str) -> Option<Vec<u8>> {
    with(|s| live(s, key))
}
pub(crate) fn shared_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), HostError> {
    with(|s| {
        let e = expiry(s, ttl_ms);
        s.shared.insert(key.to_string(), (value.to_vec(), e));
    });
    Ok(())
}
pub(crate) fn shared_delete(key: &str) -> bool {
    with(|s| live(s, key).is_some() && s.shared.remove(key).is_some())
}
pub(crate) fn shared_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, HostError> {
    with(|s| {
        let (current, e) = match live(s, key) {
            Some(v) => {
                let bytes: [u8; 8] = v.try_into().map_err(|_| HostError::InvalidArgument)?;
                (i64::from_le_bytes(bytes), s.shared.get(key).and_then(|(_, e)| *e))
            }
            None => (0, expiry(s, ttl_ms)),
        };
        let next = current.wrapping_add(delta);
        s.shared.insert(key.to_string(), (next.to_le_bytes().to_vec(), e));
        Ok(next)
    })
}
pub(crate) fn shared_compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: &[u8],
    ttl_ms: Option<u64>,
) -> Result<bool, HostError> {
    with(|s| {
        if live(s, key).as_deref() != expected {
            return Ok(false);
        }
        let e = expiry(s, ttl_ms);
        s.shared.insert(key.to_string(), (new.to_vec(), e));
        Ok(true)
    })
}

pub(crate) fn log(level: LogLevel, message: &str) {
    with(|s| s.logs.push((level, message.to_string())));
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
pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    while out.len() < len as usize {
        out.extend_from_slice(&random_u64().to_le_bytes());
    }
    out.truncate(len as usize);
    out
}
