//! The request path, end to end: route → request filters → upstream →
//! response filters. Each step is a function call here; errors from any of
//! them become a response in one place (`ProxyError::into_response`).

use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::filter_chain::RequestOutcome;
use crate::forwarding;
use crate::generation::Generation;
use crate::wasm::{Exchange, RequestHead};
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Facts about the downstream connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    pub client: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// Proxy one request. Never fails: errors become their HTTP response.
pub async fn handle(
    generation: Arc<Generation>,
    req: Request<Incoming>,
    downstream: Downstream,
) -> Response<ProxyBody> {
    // Only pay for the request line's copy when it will be logged.
    let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| (req.method().clone(), req.uri().path().to_string()));
    let started = Instant::now();
    let response = match proxy(&generation, req, downstream).await {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            e.into_response()
        }
    };
    if let Some((method, path)) = logged {
        tracing::debug!(
            %method,
            %path,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            generation = generation.id,
            "request"
        );
    }
    response
}

async fn proxy(
    generation: &Generation,
    req: Request<Incoming>,
    downstream: Downstream,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();

    // Router: the authority comes from the request target (HTTP/2, absolute
    // form) or the Host header; from here on the Host header carries it.
    let host = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::BadRequest("invalid authority\n"))?,
        None => parts
            .headers
            .get(header::HOST)
            .cloned()
            .ok_or(ProxyError::BadRequest("missing Host header\n"))?,
    };
    let authority = host.to_str().map_err(|_| ProxyError::BadRequest("invalid Host\n"))?;
    let route = generation
        .router
        .route(authority, parts.uri.path())
        .cloned()
        .ok_or_else(|| ProxyError::NoRoute {
            host: authority.to_string(),
            path: parts.uri.path().to_string(),
        })?;
    parts.headers.insert(header::HOST, host);
    forwarding::strip_hop_by_hop(&mut parts.headers);
    // The client's `Expect: 100-continue` was answered by this hop.
    parts.headers.remove(header::EXPECT);
    let received = parts.version;

    // Filter chain, request phase.
    let mut exchange = Exchange {
        request: Some(RequestHead {
            parts,
            client: downstream.client,
            scheme: downstream.scheme,
            cluster: route.cluster.clone(),
            route: route.name.clone(),
        }),
        ..Exchange::default()
    };
    let outcome = route.chain.on_request(&mut exchange).await?;
    let mut head = exchange
        .request
        .take()
        .ok_or(ProxyError::BadRequest("request lost\n"))?;
    if let RequestOutcome::Respond { response, by } = outcome {
        let (parts, body) = response.into_parts();
        exchange.response = Some(parts);
        return route.chain.on_response(by, &mut exchange, body).await;
    }

    // Upstream.
    let cluster = generation
        .upstreams
        .get(&head.cluster)
        .ok_or_else(|| ProxyError::NoEndpoint(head.cluster.to_string()))?;
    // A filter may have changed the authority: forward the current one.
    let host = head.parts.headers.get(header::HOST).cloned();
    forwarding::add_forwarded(
        &mut head.parts.headers,
        head.client,
        head.scheme,
        host.as_ref().and_then(|h| h.to_str().ok()),
    );
    forwarding::append_via(&mut head.parts.headers, received);
    let upstream_request = Request::from_parts(head.parts, body);
    let (response, endpoint) = cluster
        .send(upstream_request, route.connect_timeout, route.timeout)
        .await?;
    tracing::trace!(%endpoint, status = response.status().as_u16(), "upstream answered");

    // Filter chain, response phase.
    let (mut parts, body) = response.into_parts();
    forwarding::strip_hop_by_hop(&mut parts.headers);
    forwarding::append_via(&mut parts.headers, parts.version);
    parts.version = http::Version::default();
    exchange.response = Some(parts);
    route
        .chain
        .on_response(route.chain.slots.len(), &mut exchange, Either::Left(body))
        .await
}
