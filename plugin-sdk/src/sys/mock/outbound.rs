//! Native backing of `outbound-http`: a call is checked as the host checks
//! it, recorded, and answered by the responder the test scripted with
//! [`MockHost::outbound`](crate::mock::MockHost::outbound).

use super::{Phase, State, http_header_name, path_and_query, valid_authority, valid_value, with};
use crate::http::{RESERVED_HEADERS, is_header_name};
use crate::limits::{MAX_HEADER_BYTES, MAX_HEADER_COUNT};
use crate::outbound::{CallError, OutboundRequest, OutboundResponse};

/// Largest outbound request body the host sends (WIT: "at most 1 MiB").
pub(crate) const MAX_OUTBOUND_BODY_BYTES: usize = 1 << 20;
/// Largest response body the host hands back: the default of the entry's
/// `max_response_bytes` (the mock has no per-entry setting).
pub(crate) const MAX_OUTBOUND_RESPONSE_BYTES: usize = 1 << 20;

/// What a test scripts: the answer to each call that passed the checks.
pub(crate) type Responder = Box<dyn FnMut(&OutboundRequest) -> Result<OutboundResponse, CallError>>;

/// The outbound side of the mock's state.
#[derive(Default)]
pub(crate) struct Outbound {
    /// The scripted responder; `None` answers every call
    /// `Failed("no response scripted")`.
    pub responder: Option<Responder>,
    /// Every request that passed the checks, in order: what was sent.
    pub sent: Vec<OutboundRequest>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("responder", &self.responder.as_ref().map(|_| "<fn>"))
            .field("sent", &self.sent)
            .finish()
    }
}

/// The host's rules for a call (`proxy/src/wasm/outbound_http.rs`), in its
/// order and with its reasons; the first broken one is the answer and
/// nothing is sent:
///
/// 1. Not in `init` (`Filter::create`): `WrongPhase`. Every phase may call,
///    body phases included. (Test code outside a phase may call too, as a
///    convenience: there is no such place on the host.)
/// 2. The cluster is one the filter entry lists: with a non-empty
///    [`MockHost::clusters`](crate::mock::MockHost::clusters) list it must
///    be in it, else `NotAllowed` (an empty list allows any, as for
///    `set_cluster`).
/// 3. The request is one the host can send, else `InvalidRequest` with the
///    reason: the method is a token; the path starts with `/` and is a
///    path-and-query the host's HTTP library takes (a fragment is dropped);
///    the authority (the cluster's name when `None`) parses and has no user
///    information; at most `MAX_HEADER_COUNT` header lines, each name valid
///    and not managed by the host ([`RESERVED_HEADERS`], `host` included),
///    each value valid and at most `MAX_HEADER_BYTES`; the body is at most
///    1 MiB.
///
/// Returns the path as sent (without a fragment).
fn check(s: &State, r: &OutboundRequest) -> Result<String, CallError> {
    if s.phase == Phase::Init {
        return Err(CallError::WrongPhase);
    }
    if !s.clusters.is_empty() && !s.clusters.contains(&r.cluster) {
        return Err(CallError::NotAllowed);
    }
    let invalid = |why: String| Err(CallError::InvalidRequest(why));
    if !is_header_name(&r.method) {
        return invalid(format!("invalid method {:?}", r.method));
    }
    if !r.path.starts_with('/') {
        return invalid("the path must start with `/`".into());
    }
    let Some(path) = path_and_query(&r.path) else {
        return invalid(format!("invalid path {:?}", r.path));
    };
    let authority = r.authority.as_deref().unwrap_or(&r.cluster);
    if !valid_authority(authority) {
        // The host's HTTP library parses user information, then the host
        // refuses it.
        let host_part = authority.rsplit_once('@').map(|(_, host)| host);
        if host_part.is_some_and(valid_authority) {
            return invalid("the authority must not carry user information".into());
        }
        return invalid(format!("invalid authority {authority:?}"));
    }
    if r.headers.len() > MAX_HEADER_COUNT {
        return invalid("too many headers".into());
    }
    for (name, value) in &r.headers {
        if name.len() > MAX_HEADER_BYTES || !http_header_name(name) {
            return invalid(format!("invalid header name {name:?}"));
        }
        let name = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&name.as_str()) || name == "host" {
            return invalid(format!("header `{name}` is set by the host"));
        }
        if value.len() > MAX_HEADER_BYTES || !valid_value(value) {
            return invalid(format!("invalid value for header `{name}`"));
        }
    }
    if r.body.len() > MAX_OUTBOUND_BODY_BYTES {
        return invalid(format!("the body is over {MAX_OUTBOUND_BODY_BYTES} bytes"));
    }
    Ok(path.to_string())
}

/// `outbound-http.send`: check, record, answer. The responder runs outside
/// the state's borrow, so it may use the mock host itself. Its answer is
/// handed over as the host hands one: header names in lower case, and a
/// body over `max_response_bytes` (default 1 MiB) is `ResponseTooLarge`.
pub(crate) fn outbound_send(mut request: OutboundRequest) -> Result<OutboundResponse, CallError> {
    let responder = with(|s| {
        request.path = check(s, &request)?;
        s.outbound.sent.push(request.clone());
        Ok(s.outbound.responder.take())
    })?;
    let Some(mut responder) = responder else {
        return Err(CallError::Failed("no response scripted".into()));
    };
    let answer = responder(&request);
    with(|s| {
        // Keep a responder the first one installed while it ran.
        if s.outbound.responder.is_none() {
            s.outbound.responder = Some(responder);
        }
    });
    let mut response = answer?;
    if response.body.len() > MAX_OUTBOUND_RESPONSE_BYTES {
        return Err(CallError::ResponseTooLarge);
    }
    for (name, _) in &mut response.headers {
        name.make_ascii_lowercase();
    }
    Ok(response)
}
