//! Body phases: for the filters that asked, the whole body is buffered (up
//! to their `max_body_bytes`), handed to each in turn, and replaced by what
//! they return, with the framing fixed up (`content-length`; trailers are
//! not kept). A request body over the smallest limit of the filters that
//! want it is answered 413. A response body over a filter's limit is that
//! filter's failure: `fail_closed` fails the response, `fail_open` skips
//! the filter; when every such filter is fail-open and the body outgrew all
//! limits, it goes on to the client untouched, what was read included.
//! Chains where no filter asks never come here: bodies stream untouched.

use super::{Changed, RequestOutcome, failure_reason, run};
use crate::body::{Counted, ProxyBody};
use crate::config::FailurePolicy;
use crate::error::{BadRequest, ProxyError};
use crate::wasm::{FilterSlot, Phase, RequestExchange, ResponseExchange};
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HeaderValue};
use http::{HeaderMap, Response};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use std::sync::Arc;

/// How the request body phases ended.
#[derive(Debug)]
pub enum RequestBodyOutcome {
    /// Send this body upstream.
    Forward(Bytes),
    /// A filter answered; see [`RequestOutcome::Respond`].
    Respond(RequestOutcome),
}

/// Set `content-length` for a body of `len` bytes.
fn frame(headers: &mut HeaderMap, len: usize) {
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
}

/// Read the request body whole, then run the request body phase of every
/// filter that wants it, in chain order.
pub async fn on_request_body(
    slots: &[Arc<FilterSlot>],
    exchange: &mut RequestExchange,
    mut incoming: Counted<Incoming>,
) -> Result<RequestBodyOutcome, ProxyError> {
    let wanting = || slots.iter().filter(|s| s.wants(Phase::RequestBody));
    let limit = wanting().map(|s| s.sandbox().max_body_bytes).min().unwrap_or(0);
    let had_body = !incoming.is_end_stream() || exchange.head.parts.headers.contains_key(CONTENT_LENGTH);
    let mut data = BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|_| ProxyError::BadRequest(BadRequest::MalformedBody))?;
        if let Ok(chunk) = frame.into_data() {
            if data.len() + chunk.len() > limit {
                return Err(ProxyError::BodyTooLarge { limit });
            }
            data.extend_from_slice(&chunk);
        }
    }
    let mut body = data.freeze();
    for (i, slot) in slots.iter().enumerate() {
        if !slot.wants(Phase::RequestBody) {
            continue;
        }
        // An earlier filter's replacement is held to this one's limit too.
        let limit = slot.sandbox().max_body_bytes;
        if body.len() > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        match run(slot, Phase::RequestBody, exchange, Some(&body)).await? {
            Some(Changed::Respond(response)) => {
                return Ok(RequestBodyOutcome::Respond(RequestOutcome::Respond { response, by: i }));
            }
            Some(Changed::Body(replacement)) => body = replacement,
            None => {}
        }
    }
    // A request without content (a GET) keeps its framing unless a filter
    // gave it a body.
    if had_body || !body.is_empty() {
        frame(&mut exchange.head.parts.headers, body.len());
    }
    Ok(RequestBodyOutcome::Forward(body))
}

/// What reading a response body up to a limit found.
enum Read {
    Whole(Bytes),
    /// Over the limit: the body, with what was read put back in front.
    Over(ProxyBody),
}

/// Read `body` whole if it is at most `limit` bytes.
async fn read_up_to(body: ProxyBody, limit: usize) -> Result<Read, ProxyError> {
    match body {
        Either::Right(full) => {
            let data = full.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            Ok(if data.len() > limit {
                Read::Over(Either::Right(Full::new(data)))
            } else {
                Read::Whole(data)
            })
        }
        Either::Left(mut upstream) => {
            let mut chunks: Vec<Bytes> = Vec::new();
            let mut len = 0;
            while let Some(frame) = upstream.frame().await {
                let frame = frame.map_err(|e| ProxyError::UpstreamBody(e.to_string()))?;
                if let Ok(chunk) = frame.into_data() {
                    len += chunk.len();
                    chunks.push(chunk);
                    if len > limit {
                        upstream.unread(chunks);
                        return Ok(Read::Over(Either::Left(upstream)));
                    }
                }
            }
            if chunks.len() <= 1 {
                return Ok(Read::Whole(chunks.pop().unwrap_or_default()));
            }
            let mut data = BytesMut::with_capacity(len);
            chunks.iter().for_each(|c| data.extend_from_slice(c));
            Ok(Read::Whole(data.freeze()))
        }
    }
}

/// Run the response body phase of every filter of `ran` that wants it, in
/// reverse chain order.
pub async fn on_response_body(
    ran: &[Arc<FilterSlot>],
    mut exchange: ResponseExchange,
    body: ProxyBody,
) -> Result<Response<ProxyBody>, ProxyError> {
    let wanting = || ran.iter().rev().filter(|s| s.wants(Phase::ResponseBody));
    let most = wanting().map(|s| s.sandbox().max_body_bytes).max().unwrap_or(0);
    let mut body = match read_up_to(body, most).await? {
        Read::Whole(data) => data,
        Read::Over(body) => {
            // Over every filter's limit: each one's policy decides.
            for slot in wanting() {
                too_large(slot, most)?;
            }
            return Ok(Response::from_parts(exchange.head, body));
        }
    };
    for slot in wanting() {
        let limit = slot.sandbox().max_body_bytes;
        if body.len() > limit {
            too_large(slot, limit)?;
            continue;
        }
        match run(slot, Phase::ResponseBody, &mut exchange, Some(&body)).await? {
            Some(Changed::Respond(response)) => {
                let (head, replacement) = (*response).into_parts();
                exchange.head = head;
                body = match replacement {
                    Either::Right(full) => full.collect().await.map(|c| c.to_bytes()).unwrap_or_default(),
                    // Not reached: a local response is always in memory.
                    Either::Left(_) => Bytes::new(),
                };
            }
            Some(Changed::Body(replacement)) => body = replacement,
            None => {}
        }
    }
    frame(&mut exchange.head.headers, body.len());
    Ok(Response::from_parts(exchange.head, Either::Right(Full::new(body))))
}

/// A response body over `slot`'s limit: an error if it fails closed; a
/// warning if it fails open (the filter is skipped).
fn too_large(slot: &FilterSlot, limit: usize) -> Result<(), ProxyError> {
    let reason = format!("response body over its max_body_bytes ({limit} bytes)");
    if slot.sandbox().on_failure == FailurePolicy::FailOpen {
        tracing::warn!(plugin = %slot.plugin.name, %reason, "filter skipped (fail_open)");
        return Ok(());
    }
    tracing::warn!(plugin = %slot.plugin.name, %reason, "response failed closed");
    Err(failure_reason(slot, reason))
}
