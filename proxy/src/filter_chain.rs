//! The filter chain of one route: request phases in order, response phases
//! in reverse, local responses turned into real responses, failures mapped
//! to errors (fail closed: a filter that traps or overruns its deadline
//! fails the request; see `ProxyError::FilterFailed`).

use crate::body::{self, ProxyBody};
use crate::error::ProxyError;
use crate::limits;
use crate::wasm::Phase;
use crate::wasm::{Exchange, FilterSlot, LocalResponse, PhaseOutcome};
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use std::sync::Arc;

/// How the request phase ended.
#[derive(Debug)]
pub enum RequestOutcome {
    /// Every filter let the request through.
    Forward,
    /// Filter number `by` answered locally; filters before it have run.
    Respond { response: Response<ProxyBody>, by: usize },
}

/// The filters of one route, in configuration order.
#[derive(Debug, Default)]
pub struct FilterChain {
    /// Shared with later generations when plugin and config are unchanged.
    pub slots: Vec<Arc<FilterSlot>>,
}

impl FilterChain {
    /// Run the request phase of each filter in order.
    pub async fn on_request(&self, exchange: &mut Exchange) -> Result<RequestOutcome, ProxyError> {
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.wants(Phase::RequestHeaders) {
                continue;
            }
            match call(slot, Phase::RequestHeaders, exchange).await? {
                PhaseOutcome::Continue => {}
                PhaseOutcome::Respond(local) => {
                    let response = local_response(slot, local)?;
                    return Ok(RequestOutcome::Respond { response, by: i });
                }
            }
        }
        Ok(RequestOutcome::Forward)
    }

    /// Run the response phase of the first `ran` filters in reverse order.
    /// A local response from a filter replaces the response (its body is
    /// dropped) and the remaining filters see the replacement.
    pub async fn on_response(
        &self,
        ran: usize,
        exchange: &mut Exchange,
        mut body: ProxyBody,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        for slot in self.slots[..ran.min(self.slots.len())].iter().rev() {
            if !slot.wants(Phase::ResponseHeaders) {
                continue;
            }
            if let PhaseOutcome::Respond(local) = call(slot, Phase::ResponseHeaders, exchange).await? {
                let (parts, replacement) = local_response(slot, local)?.into_parts();
                exchange.response = Some(parts);
                body = replacement;
            }
        }
        let parts = exchange.response.take().ok_or_else(|| ProxyError::FilterFailed {
            plugin: String::new(),
            reason: "response lost".into(),
        })?;
        Ok(Response::from_parts(parts, body))
    }
}

async fn call(slot: &FilterSlot, phase: Phase, exchange: &mut Exchange) -> Result<PhaseOutcome, ProxyError> {
    slot.call(phase, exchange).await.map_err(|e| {
        tracing::warn!(plugin = %slot.plugin.name, phase = ?phase, error = %e, "filter failed; request failed closed");
        match e {
            crate::wasm::CallError::Instantiate(reason) => ProxyError::FilterUnavailable {
                plugin: slot.plugin.name.to_string(),
                reason,
            },
            other => ProxyError::FilterFailed {
                plugin: slot.plugin.name.to_string(),
                reason: other.to_string(),
            },
        }
    })
}

/// Turn a filter's local response into an HTTP response, refusing what
/// would make an invalid or ambiguous message.
fn local_response(slot: &FilterSlot, local: LocalResponse) -> Result<Response<ProxyBody>, ProxyError> {
    let invalid = |reason: String| {
        tracing::warn!(plugin = %slot.plugin.name, %reason, "filter produced an invalid local response");
        ProxyError::FilterFailed {
            plugin: slot.plugin.name.to_string(),
            reason,
        }
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
