//! The request path, end to end: route → request filters → upstream →
//! response filters. Each step is a function call here; errors from any of
//! them become a response in one place (`ProxyError::into_response`, in
//! gRPC's form for gRPC requests).

use crate::body::{Counted, ProxyBody, RequestBody};
use crate::config::{Direction, ORIGINAL_DESTINATION};
use crate::connection::ConnectionFacts;
use crate::error::{BadRequest, ProxyError};
use crate::filter_chain::{RequestBodyOutcome, RequestOutcome};
use crate::forwarding;
use crate::generation::Generation;
use crate::grpc;
use crate::target;
use crate::telemetry::{ObservedBody, Record, TraceContext};
use crate::upgrade;
use crate::upstream::Cluster;
use crate::upstream::balancer::request_hash;
use crate::upstream::passthrough::Passthrough;
use crate::upstream::retry::{self, Exchange};
use crate::wasm::{Context, RequestExchange, RequestHead, ResponseExchange};
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use std::sync::Arc;

/// Proxy one request. Never fails: errors become their HTTP response. The
/// response body reports the request (metrics, access log) when it ends.
pub async fn handle(
    generation: Arc<Generation>,
    req: Request<Incoming>,
    connection: Arc<ConnectionFacts>,
) -> Response<ObservedBody> {
    let (parts, body) = req.into_parts();
    let mut record = Record::start(generation.access_log.as_ref(), &connection, &parts);
    let is_grpc = grpc::is_grpc(&parts.headers);
    // Boxed: the HTTP/1.1 server keeps the space of a request future per
    // connection, also while it is idle; this way that is a few hundred
    // bytes, and the 3.6 KB of the proxying exists only while it runs.
    let response = match Box::pin(proxy(&generation, parts, body, connection, &mut record)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            let response = e.into_response();
            if is_grpc { grpc::into_grpc(response) } else { response }
        }
    };
    if record.metrics.is_none() {
        record.metrics = Some(generation.unrouted.clone());
    }
    let (parts, body) = response.into_parts();
    let status = parts.status.as_u16();
    Response::from_parts(parts, ObservedBody::new(body, status, record))
}

async fn proxy(
    generation: &Generation,
    mut parts: http::request::Parts,
    body: Incoming,
    connection: Arc<ConnectionFacts>,
    record: &mut Record,
) -> Result<Response<ProxyBody>, ProxyError> {
    let arrived = tokio::time::Instant::now();
    // Router: what it routes by is what the filters and the upstream will
    // see — the checked, normalized authority (from the request target or
    // the Host line; from here on the Host header carries it) and the
    // normalized path.
    let host = target::authority(&parts)?;
    target::normalize_path(&mut parts.uri, generation.config.paths)?;
    let logs = record.logs();
    if logs {
        record.authority = Some(host.clone());
    }
    let authority = host.to_str().map_err(|_| BadRequest::InvalidHost)?;
    let route = generation
        .route(&connection, authority, parts.uri.path())
        .ok_or_else(|| ProxyError::NoRoute {
            host: authority.to_string(),
            path: parts.uri.path().to_string(),
        })?;
    record.metrics = Some(route.metrics.clone());
    if logs {
        record.route = Some(route.name.clone());
    }
    parts.headers.insert(header::HOST, host);
    let upgrade = upgrade::take(&mut parts, &route.upgrades);
    // sluice is not a forward proxy: CONNECT only opens a route's WebSocket.
    if parts.method == http::Method::CONNECT && upgrade.is_none() {
        return Err(ProxyError::ConnectNotAllowed {
            path: parts.uri.path().to_string(),
        });
    }
    forwarding::strip_hop_by_hop(&mut parts.headers);
    // Inbound in a mesh the application learns who called, and only
    // from this hop.
    if connection
        .interception
        .is_some_and(|i| i.direction == Direction::Inbound)
        && let Some(mesh) = generation.upstreams.mesh()
    {
        forwarding::set_client_cert(&mut parts.headers, &mesh.config.identity, connection.peer());
    }
    if let Some(upgrade) = &upgrade {
        upgrade.prepare(&mut parts);
    }
    // The client's `Expect: 100-continue` was answered by this hop.
    parts.headers.remove(header::EXPECT);
    record.trace = Some(TraceContext::propagate(&mut parts.headers));
    let received = parts.version;

    // Filter chain, request phase.
    let mut exchange = RequestExchange {
        head: RequestHead {
            parts,
            scheme: connection.scheme(),
            cluster: route.cluster.clone(),
            route: route.name.clone(),
            paths: generation.config.paths,
        },
        context: Context::new(),
        connection,
    };
    // The chain's futures hold a Wasm call each and are 4-5 KB: they are
    // boxed, and skipped on a route without filters, so a request without
    // filters neither reserves nor moves their space.
    let mut outcome = match route.chain.is_empty() {
        true => RequestOutcome::Forward,
        false => Box::pin(route.chain.on_request(&mut exchange)).await?,
    };
    let mut incoming = Some(Counted::new(body, record.bytes_in.clone()));
    // Body phases: only when a filter asked; otherwise the body streams.
    let mut buffered = None;
    if matches!(outcome, RequestOutcome::Forward)
        && route.chain.wants_request_body()
        && let Some(body) = incoming.take()
    {
        // A body read whole is bounded by the route's timeout, as a
        // streamed one is by the upstream's.
        let read = tokio::time::timeout_at(
            arrived + route.timeout,
            Box::pin(route.chain.on_request_body(&mut exchange, body)),
        );
        match read.await.map_err(|_| ProxyError::BodyTimeout(route.timeout))?? {
            RequestBodyOutcome::Forward(body) => buffered = Some(body),
            RequestBodyOutcome::Respond(respond) => outcome = respond,
        }
    }
    let head_request = exchange.head.parts.method == http::Method::HEAD;
    let RequestExchange {
        mut head,
        context,
        connection,
    } = exchange;
    if logs {
        record.request_id = request_id(&context, &head.parts.headers);
    }
    if let RequestOutcome::Respond { response, by } = outcome {
        // A filter's answer to a gRPC client is a gRPC status.
        let response = if grpc::is_grpc(&head.parts.headers) && !grpc::is_grpc(response.headers()) {
            grpc::into_grpc(*response)
        } else {
            *response
        };
        let (parts, body) = response.into_parts();
        let exchange = ResponseExchange {
            head: parts,
            context,
            connection,
        };
        return Box::pin(route.chain.on_response(by, exchange, body, !head_request)).await;
    }

    // Upstream.
    let target = upstream_target(generation, &head, &connection)?;
    // A filter may have changed the authority: forward the current one.
    let host = head.parts.headers.get(header::HOST).cloned();
    forwarding::add_forwarded(
        &mut head.parts.headers,
        connection.client,
        head.scheme,
        host.as_ref().and_then(|h| h.to_str().ok()),
    );
    forwarding::append_via(&mut head.parts.headers, received);
    record.cluster = Some(match &target {
        Target::Cluster(cluster) => cluster.name.clone(),
        Target::OriginalDestination(..) => head.cluster.clone(),
    });
    if logs {
        record.note_forwarded(&head.parts.uri);
    }
    let body = match (buffered, incoming) {
        (Some(data), _) => RequestBody::buffered(data),
        (None, Some(body)) => match &route.retry {
            Some(policy) => RequestBody::Replay(crate::replay::ReplayBody::new(body, policy.max_buffered_body)),
            None => RequestBody::Streaming(body),
        },
        // Not reached: the body is either buffered or still to stream.
        (None, None) => RequestBody::buffered(bytes::Bytes::new()),
    };
    // A gRPC deadline shortens the route's timeout, never lengthens it.
    // (`is_grpc` first: most requests are not, and it is the cheaper look-up.)
    let grpc_timeout = grpc::is_grpc(&head.parts.headers)
        .then(|| grpc::timeout(&head.parts.headers))
        .flatten();
    let timeout = grpc_timeout.map_or(route.timeout, |t| t.min(route.timeout));
    let mut attempts = 0;
    let sent = match target {
        Target::Cluster(cluster) => {
            let exchange = Exchange {
                connect_timeout: route.connect_timeout,
                timeout,
                retry: route.retry.as_ref(),
                hash: cluster
                    .hash_on()
                    .and_then(|on| request_hash(on, &head.parts.headers, connection.client)),
            };
            retry::send(cluster, head.parts, body, exchange, &mut attempts).await
        }
        Target::OriginalDestination(passthrough, destination) => {
            attempts = 1;
            passthrough
                .send(Request::from_parts(head.parts, body), destination, timeout)
                .await
        }
    };
    record.attempts = attempts;
    let retry::Sent { mut response, endpoint } = sent?;
    tracing::trace!(%endpoint, status = response.status().as_u16(), "upstream answered");
    if logs {
        record.endpoint = Some(endpoint);
    }
    if let Some(limit) = route.max_stream_duration {
        response.body_mut().end_by(arrived + limit);
    }
    let switched = match upgrade {
        Some(u) => u.answer(
            &mut response,
            route.max_stream_duration.map(|d| arrived + d),
            route.name.clone(),
        )?,
        None => None,
    };

    // Filter chain, response phase.
    let (mut parts, body) = response.into_parts();
    let status = parts.status;
    let may_have_body = !head_request
        && !status.is_informational()
        && status != http::StatusCode::NO_CONTENT
        && status != http::StatusCode::NOT_MODIFIED;
    forwarding::strip_hop_by_hop(&mut parts.headers);
    if let Some(switched) = switched {
        switched.apply(&mut parts);
    }
    forwarding::append_via(&mut parts.headers, parts.version);
    parts.version = http::Version::default();
    if route.chain.is_empty() {
        return Ok(Response::from_parts(parts, Either::Left(body)));
    }
    let exchange = ResponseExchange {
        head: parts,
        context,
        connection,
    };
    let ran = route.chain.slots.len();
    Box::pin(
        route
            .chain
            .on_response(ran, exchange, Either::Left(body), may_have_body),
    )
    .await
}

/// Where a request goes once the filters are done.
enum Target<'a> {
    Cluster(&'a Arc<Cluster>),
    /// Sidecar mode: the intercepted connection's original destination.
    OriginalDestination(&'a Passthrough, std::net::SocketAddr),
}

/// Resolve the request's cluster. `original-destination` on an intercepted
/// connection is, outbound, the cluster that claims the destination or the
/// `Host` if one does, and otherwise the destination itself.
fn upstream_target<'a>(
    generation: &'a Generation,
    head: &RequestHead,
    connection: &ConnectionFacts,
) -> Result<Target<'a>, ProxyError> {
    let upstreams = &generation.upstreams;
    let no_endpoint = || ProxyError::NoEndpoint(head.cluster.to_string());
    if &*head.cluster != ORIGINAL_DESTINATION {
        return upstreams
            .get(&head.cluster)
            .map(Target::Cluster)
            .ok_or_else(no_endpoint);
    }
    let (Some(interception), Some(passthrough)) = (connection.interception, upstreams.passthrough()) else {
        return Err(no_endpoint());
    };
    let destination = interception.original_destination;
    if interception.direction == Direction::Outbound {
        let host = head.parts.headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if let Some(cluster) = upstreams.claimant(destination, host) {
            return Ok(Target::Cluster(cluster));
        }
    }
    Ok(Target::OriginalDestination(passthrough, destination))
}

/// The request id a filter recorded in the context (`request_id`, as the
/// header-rewrite filter does), else the `x-request-id` header.
fn request_id(context: &Context, headers: &http::HeaderMap) -> Option<HeaderValue> {
    match context.get("request_id") {
        Some(id) => HeaderValue::from_str(id).ok(),
        None => headers.get("x-request-id").cloned(),
    }
}
