//! One request's way through a cluster: claim its place under the circuit
//! breakers, try an endpoint, and — when the route's retry policy, the
//! cluster's budget and the request body allow it — try another after a
//! jittered exponential backoff. Every try ends by the route's deadline.
//! A response is never retried once handed on, so no byte of a discarded
//! answer reaches the client.

use super::{Answer, Cluster, UpstreamBody};
use crate::body::RequestBody;
use crate::config::RetryPolicy;
use crate::error::{BadRequest, ProxyError, UpstreamFailure};
use crate::metrics::ClusterMetrics;
use http::uri::Authority;
use http::{Request, Response};
use std::time::Duration;
use tokio::time::Instant;

/// What the request path asks of one upstream exchange.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// Overrides the cluster's connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Until the response headers, all tries and backoffs included.
    pub timeout: Duration,
    pub retry: Option<&'a RetryPolicy>,
    /// The request's consistent-hash key, when the cluster hashes.
    pub hash: Option<u64>,
}

/// A response on its way back, from the endpoint that gave it.
#[derive(Debug)]
pub struct Sent {
    pub response: Response<UpstreamBody>,
    pub endpoint: Authority,
}

/// Why the previous try is worth another: the `reason` label, or `None`.
fn retry_reason(policy: &RetryPolicy, result: &Result<u16, UpstreamFailure>) -> Option<&'static str> {
    let on = &policy.on;
    match result {
        Ok(status) => {
            let s = *status;
            let wanted =
                on.statuses.contains(&s) || (on.any_5xx && s >= 500) || (on.gateway_error && (502..=504).contains(&s));
            wanted.then_some("status")
        }
        Err(failure) => {
            let wanted = match failure {
                UpstreamFailure::ConnectFailure | UpstreamFailure::ConnectTimeout => on.connect_failure,
                UpstreamFailure::RefusedStream => on.refused_stream,
                UpstreamFailure::Reset => on.reset,
                UpstreamFailure::Timeout(_) => false,
            } || on.any_5xx
                || on.gateway_error;
            wanted.then(|| failure.reason())
        }
    }
}

/// The pause before retry `n` (1-based): full jitter over an exponential
/// ceiling, `base × 2^(n-1)` capped at `max`. `unit` is a uniform sample
/// in [0, 1).
pub fn backoff(policy: &RetryPolicy, n: u32, unit: f64) -> Duration {
    let ceiling = policy
        .backoff_base
        .saturating_mul(1u32 << (n.saturating_sub(1)).min(16))
        .min(policy.backoff_max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Send the request to `cluster`, retrying as the policy allows.
/// `attempts` counts the tries made, for the access log, however it ends.
pub async fn send(
    cluster: &Cluster,
    parts: http::request::Parts,
    body: RequestBody,
    exchange: Exchange<'_>,
    attempts: &mut u32,
) -> Result<Sent, ProxyError> {
    let overflow = |limit: super::breaker::Limit| {
        cluster.upstream_metrics.overflow(&cluster.name, limit.name());
        ProxyError::Overflow {
            cluster: cluster.name.to_string(),
            limit,
        }
    };
    let request_slot = cluster.breakers.requests.claim().map_err(overflow)?;
    if exchange.retry.is_some() {
        cluster.budget.deposit();
    }
    let deadline = Instant::now() + exchange.timeout;
    // Without a replayable body there is a single try, which takes the
    // request head as it is instead of a copy.
    let replay = exchange.retry.and_then(|_| body.replay_source());
    let idempotent = parts.method.is_idempotent();
    let mut head = Some(parts);
    let mut body = Some(body);
    let mut tried = Vec::new();
    // The first try's endpoint and place among the pending requests; a
    // retry claims its own before the previous answer is let go.
    let mut endpoint = cluster.pick(exchange.hash, &tried)?;
    let mut pending = cluster.breakers.pending.claim().map_err(overflow)?;
    // The place of a retry under `max_retries`, held while it runs.
    let mut retry_slot = None;
    loop {
        *attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let try_timeout = exchange
            .retry
            .and_then(|p| p.per_try_timeout)
            .map_or(remaining, |t| t.min(remaining));
        let request = match (body.take(), &head) {
            (Some(body), _) if replay.is_none() => match head.take() {
                Some(parts) => Request::from_parts(parts, body),
                None => return Err(ProxyError::BadRequest(BadRequest::MalformedBody)),
            },
            (Some(body), Some(parts)) => copy_head(parts, body),
            // Not reached: a retry is only made with a replayable body.
            _ => return Err(ProxyError::BadRequest(BadRequest::MalformedBody)),
        };
        let result = cluster
            .attempt(request, &endpoint, exchange.connect_timeout, try_timeout)
            .await;
        drop((pending, retry_slot.take()));
        let outcome = match &result {
            Ok(answer) => Ok(answer.response.status().as_u16()),
            Err(e) => match e.upstream_failure() {
                Some(f) => Err(f),
                None => return finish(result, request_slot, &endpoint.authority),
            },
        };
        let policy = exchange.retry.filter(|policy| {
            let more = *attempts <= policy.retries;
            // Non-idempotent requests go again only when never sent.
            more && (idempotent || matches!(outcome, Err(f) if f.unsent()))
        });
        let Some((policy, reason)) = policy.and_then(|p| Some((p, retry_reason(p, &outcome)?))) else {
            return finish(result, request_slot, &endpoint.authority);
        };
        // Everything the retry needs is claimed before this answer is let
        // go; whatever is missing, this answer stands.
        let resume = Instant::now() + backoff(policy, *attempts, rand::random::<f64>());
        let Some(source) = replay.as_ref().filter(|r| r.replayable()) else {
            return finish(result, request_slot, &endpoint.authority);
        };
        tried.push(endpoint.clone());
        let Ok(next) = cluster.pick(exchange.hash, &tried) else {
            return finish(result, request_slot, &endpoint.authority);
        };
        // A retry that could not start before the deadline would only turn
        // this answer into a timeout.
        if resume >= deadline {
            return finish(result, request_slot, &endpoint.authority);
        }
        let slots = cluster
            .breakers
            .retries
            .claim()
            .and_then(|r| Ok((r, cluster.breakers.pending.claim()?)));
        let (retry, next_pending) = match slots {
            Ok(slots) => slots,
            Err(limit) => {
                cluster.upstream_metrics.overflow(&cluster.name, limit.name());
                return finish(result, request_slot, &endpoint.authority);
            }
        };
        if !cluster.budget.withdraw() {
            cluster.upstream_metrics.budget_exhausted(&cluster.name);
            return finish(result, request_slot, &endpoint.authority);
        }
        // Taking the next body cuts this try's off the client's: only now.
        let Some(next_body) = source.next() else {
            return finish(result, request_slot, &endpoint.authority);
        };
        cluster.upstream_metrics.retry(&cluster.name, reason);
        tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.authority, reason, "retrying");
        // The discarded response's body is dropped unread.
        drop(result);
        (endpoint, pending, retry_slot, body) = (next, next_pending, Some(retry), Some(next_body));
        tokio::time::sleep_until(resume).await;
    }
}

/// A request for one try: a copy of the head, with `body`.
fn copy_head(parts: &http::request::Parts, body: RequestBody) -> Request<RequestBody> {
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.headers_mut() = parts.headers.clone();
    request
}

fn finish(
    result: Result<Answer, ProxyError>,
    request_slot: super::breaker::Slot,
    endpoint: &Authority,
) -> Result<Sent, ProxyError> {
    let Answer {
        response,
        in_flight,
        lease,
    } = result?;
    let (parts, inner) = response.into_parts();
    let body = UpstreamBody::new(inner, Some((request_slot, in_flight)), lease);
    Ok(Sent {
        response: Response::from_parts(parts, body),
        endpoint: endpoint.clone(),
    })
}

/// A client's error as [`classify`] reads it: whether it happened while
/// connecting, and the error with its chain of causes.
pub(super) struct ClientError {
    connect: bool,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl From<hyper_util::client::legacy::Error> for ClientError {
    fn from(e: hyper_util::client::legacy::Error) -> ClientError {
        ClientError {
            connect: e.is_connect(),
            error: Box::new(e),
        }
    }
}

impl From<super::pool::SendError> for ClientError {
    fn from(e: super::pool::SendError) -> ClientError {
        match e {
            super::pool::SendError::Connect(error) => ClientError { connect: true, error },
            super::pool::SendError::Exchange(e) => ClientError {
                connect: false,
                error: Box::new(e),
            },
        }
    }
}

/// Turn a client error into the failure it was: where it happened and
/// whether the request can have reached the upstream.
pub(super) fn classify(
    e: impl Into<ClientError>,
    endpoint: &Authority,
    cluster: &str,
    metrics: &ClusterMetrics,
) -> ProxyError {
    let ClientError { connect, error: e } = e.into();
    if let Some(limit) = find::<super::breaker::LimitReached>(&*e) {
        return ProxyError::Overflow {
            cluster: cluster.to_string(),
            limit: limit.0,
        };
    }
    // hyper reports a failing request body (bad chunked framing, a client
    // gone mid-upload) as a "user" error.
    if find::<hyper::Error>(&*e).is_some_and(|h| h.is_user()) {
        tracing::debug!(error = %e, "request body from the client was malformed or cut short");
        return ProxyError::BadRequest(BadRequest::MalformedBody);
    }
    let failure = if connect {
        metrics.connect_errors.inc();
        let timed_out = find::<std::io::Error>(&*e).is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if timed_out {
            UpstreamFailure::ConnectTimeout
        } else {
            UpstreamFailure::ConnectFailure
        }
    } else if find::<h2::Error>(&*e).is_some_and(|h| h.reason() == Some(h2::Reason::REFUSED_STREAM)) {
        UpstreamFailure::RefusedStream
    } else {
        UpstreamFailure::Reset
    };
    ProxyError::Upstream {
        endpoint: endpoint.to_string(),
        failure,
        source: Some(e),
    }
}

/// The first error of type `T` in `e`'s source chain, `e` included.
fn find<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + Send + Sync + 'static)) -> Option<&'a T> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        source = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::traffic::RetryOn;

    fn policy(on: RetryOn) -> RetryPolicy {
        RetryPolicy {
            on,
            retries: 2,
            per_try_timeout: None,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            max_buffered_body: 64 * 1024,
        }
    }

    #[test]
    fn retry_on_reads_the_failure() {
        let five = policy(RetryOn {
            any_5xx: true,
            ..RetryOn::default()
        });
        assert_eq!(retry_reason(&five, &Ok(503)), Some("status"));
        assert_eq!(retry_reason(&five, &Ok(404)), None);
        assert_eq!(retry_reason(&five, &Err(UpstreamFailure::Reset)), Some("reset"));
        assert_eq!(
            retry_reason(&five, &Err(UpstreamFailure::Timeout(Duration::from_secs(1)))),
            Some("timeout")
        );
        let connect = policy(RetryOn {
            connect_failure: true,
            statuses: vec![409],
            ..RetryOn::default()
        });
        assert_eq!(
            retry_reason(&connect, &Err(UpstreamFailure::ConnectTimeout)),
            Some("connect_failure")
        );
        assert_eq!(retry_reason(&connect, &Err(UpstreamFailure::Reset)), None);
        assert_eq!(retry_reason(&connect, &Ok(503)), None);
        assert_eq!(retry_reason(&connect, &Ok(409)), Some("status"));
        let gateway = policy(RetryOn {
            gateway_error: true,
            ..RetryOn::default()
        });
        assert_eq!(retry_reason(&gateway, &Ok(500)), None);
        assert_eq!(retry_reason(&gateway, &Ok(504)), Some("status"));
        assert_eq!(
            retry_reason(&gateway, &Err(UpstreamFailure::RefusedStream)),
            Some("refused_stream")
        );
    }

    #[test]
    fn backoff_grows_exponentially_under_its_cap_with_jitter() {
        let p = policy(RetryOn::default());
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_millis(25));
        assert_eq!(backoff(&p, 2, 1.0), Duration::from_millis(50));
        assert_eq!(backoff(&p, 3, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(&p, 5, 1.0), Duration::from_millis(250), "capped");
        assert_eq!(backoff(&p, 30, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(&p, 3, 0.5), Duration::from_millis(50));
        assert_eq!(backoff(&p, 3, 0.0), Duration::ZERO);
    }
}
