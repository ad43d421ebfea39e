//! The filter chain of one route: request phases in order, response phases
//! in reverse, local responses turned into real responses, and failures
//! handled by each filter's policy: `fail_closed` fails the request (trap or
//! memory cap → 500, deadline → 504, no free instance → 503; see
//! `ProxyError`), `fail_open` skips the filter and restores what it changed.
//! Body phases (`body_phase`) run after the header phases, only for filters
//! that asked for them.

mod body_phase;

pub use body_phase::RequestBodyOutcome;

use crate::body::{self, ProxyBody};
use crate::config::FailurePolicy;
use crate::error::ProxyError;
use crate::limits;
use crate::wasm::{CallError, FilterSlot, LocalResponse, Message, Phase, PhaseOutcome};
use crate::wasm::{RequestExchange, ResponseExchange};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use std::sync::Arc;

/// How the request phase ended.
#[derive(Debug)]
pub enum RequestOutcome {
    /// Every filter let the request through.
    Forward,
    /// Filter number `by` answered locally; filters before it have run.
    /// (Boxed: the common outcome is `Forward`.)
    Respond {
        response: Box<Response<ProxyBody>>,
        by: usize,
    },
}

/// The filters of one route, in configuration order.
#[derive(Debug, Default)]
pub struct FilterChain {
    /// Shared with later generations when plugin and config are unchanged.
    pub slots: Vec<Arc<FilterSlot>>,
}

impl FilterChain {
    /// Run the request phase of each filter in order.
    pub async fn on_request(&self, exchange: &mut RequestExchange) -> Result<RequestOutcome, ProxyError> {
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.wants(Phase::RequestHeaders) {
                continue;
            }
            if let Some(Changed::Respond(response)) = run(slot, Phase::RequestHeaders, exchange, None).await? {
                return Ok(RequestOutcome::Respond { response, by: i });
            }
        }
        Ok(RequestOutcome::Forward)
    }

    /// Run the response phase of the first `ran` filters in reverse order,
    /// then their response body phases (if any asked; `may_have_body` is
    /// false for responses that cannot have one: HEAD, 1xx, 204, 304).
    /// A local response from a filter replaces the response (its body is
    /// dropped) and the remaining filters see the replacement.
    pub async fn on_response(
        &self,
        ran: usize,
        mut exchange: ResponseExchange,
        mut body: ProxyBody,
        may_have_body: bool,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let ran = &self.slots[..ran.min(self.slots.len())];
        for slot in ran.iter().rev() {
            if !slot.wants(Phase::ResponseHeaders) {
                continue;
            }
            if let Some(Changed::Respond(response)) = run(slot, Phase::ResponseHeaders, &mut exchange, None).await? {
                let (parts, replacement) = (*response).into_parts();
                exchange.head = parts;
                body = replacement;
            }
        }
        if may_have_body && ran.iter().any(|s| s.wants(Phase::ResponseBody)) {
            return body_phase::on_response_body(ran, exchange, body).await;
        }
        Ok(Response::from_parts(exchange.head, body))
    }

    /// Whether the route has no filters.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether a filter asked for the request body.
    pub fn wants_request_body(&self) -> bool {
        self.slots.iter().any(|s| s.wants(Phase::RequestBody))
    }

    /// Run the request body phases; see [`body_phase::on_request_body`].
    pub async fn on_request_body(
        &self,
        exchange: &mut RequestExchange,
        body: crate::body::Counted<hyper::body::Incoming>,
    ) -> Result<RequestBodyOutcome, ProxyError> {
        body_phase::on_request_body(&self.slots, exchange, body).await
    }
}

/// What a phase changed beyond the message itself.
enum Changed {
    /// Boxed: rare, and the request's futures carry the enum.
    Respond(Box<Response<ProxyBody>>),
    Body(Bytes),
}

/// Run one phase of one filter: what it changed beyond the message (a
/// local response, a new body), if anything. A failure is handled by the
/// filter's policy: fail closed → the error, fail open → the message as it
/// was before the call, and `None`.
async fn run<M: Message + Restorable>(
    slot: &FilterSlot,
    phase: Phase,
    message: &mut M,
    body: Option<&Bytes>,
) -> Result<Option<Changed>, ProxyError> {
    let fail_open = slot.sandbox().on_failure == FailurePolicy::FailOpen;
    let before = fail_open.then(|| message.snapshot());
    let result = match slot.call(phase, message, body).await {
        Ok(PhaseOutcome::Continue) => Ok(None),
        Ok(PhaseOutcome::Replace(body)) => Ok(Some(Changed::Body(body))),
        Ok(PhaseOutcome::Respond(local)) => local_response(slot, local).map(|r| Some(Changed::Respond(Box::new(r)))),
        Err(e) => Err(failure(slot, e)),
    };
    match (result, before) {
        (Err(e), Some(before)) => {
            tracing::warn!(plugin = %slot.plugin.name, ?phase, error = %e, "filter failed; skipped (fail_open), its changes discarded");
            message.restore(before);
            Ok(None)
        }
        (Err(e), None) => {
            tracing::warn!(plugin = %slot.plugin.name, ?phase, error = %e, "filter failed; request failed closed");
            Err(e)
        }
        (ok, _) => ok,
    }
}

/// A filter failure with `reason`, as a fail-closed filter reports it.
fn failure_reason(slot: &FilterSlot, reason: String) -> ProxyError {
    ProxyError::FilterFailed {
        plugin: slot.plugin.name.to_string(),
        reason,
    }
}

fn failure(slot: &FilterSlot, e: CallError) -> ProxyError {
    let plugin = slot.plugin.name.to_string();
    match e {
        CallError::Instantiate(reason) => ProxyError::FilterUnavailable { plugin, reason },
        CallError::Exhausted(wait) => ProxyError::FilterUnavailable {
            plugin,
            reason: format!("no instance free within {wait:?}"),
        },
        CallError::Deadline => ProxyError::FilterTimedOut { plugin },
        other => ProxyError::FilterFailed {
            plugin,
            reason: other.to_string(),
        },
    }
}

/// What a fail-open filter could change, copied before its call and put
/// back if the call fails.
trait Restorable {
    type Snapshot;
    fn snapshot(&self) -> Self::Snapshot;
    fn restore(&mut self, snapshot: Self::Snapshot);
}

impl Restorable for RequestExchange {
    type Snapshot = (
        http::Method,
        http::Uri,
        http::HeaderMap,
        Arc<str>,
        &'static str,
        crate::wasm::Context,
    );

    fn snapshot(&self) -> Self::Snapshot {
        let r = &self.head;
        (
            r.parts.method.clone(),
            r.parts.uri.clone(),
            r.parts.headers.clone(),
            r.cluster.clone(),
            r.scheme,
            self.context.clone(),
        )
    }

    fn restore(&mut self, (method, uri, headers, cluster, scheme, context): Self::Snapshot) {
        let r = &mut self.head;
        r.parts.method = method;
        r.parts.uri = uri;
        r.parts.headers = headers;
        r.cluster = cluster;
        r.scheme = scheme;
        self.context = context;
    }
}

impl Restorable for ResponseExchange {
    type Snapshot = (StatusCode, http::HeaderMap, crate::wasm::Context);

    fn snapshot(&self) -> Self::Snapshot {
        (self.head.status, self.head.headers.clone(), self.context.clone())
    }

    fn restore(&mut self, (status, headers, context): Self::Snapshot) {
        self.head.status = status;
        self.head.headers = headers;
        self.context = context;
    }
}

/// Turn a filter's local response into an HTTP response, refusing what
/// would make an invalid or ambiguous message.
fn local_response(slot: &FilterSlot, local: LocalResponse) -> Result<Response<ProxyBody>, ProxyError> {
    // `run` logs the failure (once) with the filter's policy.
    let invalid = |reason: String| ProxyError::FilterFailed {
        plugin: slot.plugin.name.to_string(),
        reason,
    };
    let status = StatusCode::from_u16(local.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| invalid(format!("local response status {} is not 200–599", local.status)))?;
    if local.body.len() > limits::MAX_LOCAL_BODY_BYTES {
        return Err(invalid(format!(
            "local response body of {} bytes is over the limit",
            local.body.len()
        )));
    }
    if local.headers.len() > limits::MAX_HEADER_COUNT {
        return Err(invalid("local response has too many headers".into()));
    }
    let mut response = Response::new(body::full(local.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in local.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_bytes(&value).map_err(|_| invalid(format!("invalid value for header {name}")))?;
        headers.append(name, value);
    }
    crate::forwarding::strip_hop_by_hop(headers);
    headers.remove(http::header::CONTENT_LENGTH);
    Ok(response)
}
