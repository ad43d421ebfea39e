//! Errors on the request path and the one place they become HTTP responses.

use crate::body::{self, ProxyBody};
use crate::upstream::breaker::Limit;
use http::{Response, StatusCode, header};
use std::time::Duration;

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something unusable.
    Downstream,
    /// An upstream failed or could not be reached.
    Upstream,
    /// sluice itself: a filter, a limit, the configuration.
    Internal,
}

/// How an attempt on an upstream failed, before any response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamFailure {
    /// Connection refused or failed (TCP or TLS); nothing was sent.
    #[error("connect failed")]
    ConnectFailure,
    /// Connecting took longer than the connect timeout; nothing was sent.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The HTTP/2 upstream refused the stream (REFUSED_STREAM): not processed.
    #[error("stream refused")]
    RefusedStream,
    /// The connection closed or reset before the response headers.
    #[error("connection reset before a response")]
    Reset,
    /// No response headers within this time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

impl UpstreamFailure {
    /// The `reason` label of a retry after this failure.
    pub fn reason(self) -> &'static str {
        match self {
            UpstreamFailure::ConnectFailure | UpstreamFailure::ConnectTimeout => "connect_failure",
            UpstreamFailure::RefusedStream => "refused_stream",
            UpstreamFailure::Reset => "reset",
            UpstreamFailure::Timeout(_) => "timeout",
        }
    }

    /// Whether the upstream cannot have seen the request, so that even a
    /// non-idempotent request may go again.
    pub fn unsent(self) -> bool {
        matches!(
            self,
            UpstreamFailure::ConnectFailure | UpstreamFailure::ConnectTimeout | UpstreamFailure::RefusedStream
        )
    }
}

/// What is wrong with a malformed request (answered 400, connection closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRequest {
    #[error("no Host header and no authority in the request target")]
    MissingHost,
    #[error("the request target's authority is not a valid host[:port]")]
    InvalidAuthority,
    #[error("the Host header is not a valid host[:port]")]
    InvalidHost,
    #[error("more than one Host header line")]
    DuplicateHost,
    #[error("the Host header names another authority than :authority")]
    HostMismatch,
    #[error("invalid path: {0}")]
    InvalidPath(#[source] crate::normalize::PathError),
    #[error("the request target cannot be forwarded")]
    InvalidTarget,
    #[error("the request body was malformed or cut short")]
    MalformedBody,
}

impl BadRequest {
    /// The one-line body the client sees.
    fn body(self) -> &'static str {
        match self {
            BadRequest::MissingHost => "missing Host header\n",
            BadRequest::InvalidAuthority => "invalid authority\n",
            BadRequest::InvalidHost => "invalid Host\n",
            BadRequest::DuplicateHost => "more than one Host header\n",
            BadRequest::HostMismatch => "Host does not match :authority\n",
            BadRequest::InvalidPath(_) => "invalid path\n",
            BadRequest::InvalidTarget => "invalid request target\n",
            BadRequest::MalformedBody => "malformed request body\n",
        }
    }
}

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches host {host:?} and path {path:?}")]
    NoRoute { host: String, path: String },
    #[error("bad request: {0}")]
    BadRequest(#[from] BadRequest),
    #[error("CONNECT to {path:?} on a route that does not allow it")]
    ConnectNotAllowed { path: String },
    #[error("cluster {0} has no endpoints")]
    NoEndpoint(String),
    #[error("upstream {endpoint}: {failure}")]
    Upstream {
        endpoint: String,
        failure: UpstreamFailure,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("the upstream answered a WebSocket handshake with {status} instead of switching protocols")]
    UpgradeRefused { status: u16 },
    #[error("cluster {cluster} refused the request: {} reached", limit.name())]
    Overflow { cluster: String, limit: Limit },
    #[error("filter {plugin} failed: {reason}")]
    FilterFailed { plugin: String, reason: String },
    #[error("filter {plugin} exceeded its CPU deadline")]
    FilterTimedOut { plugin: String },
    #[error("filter {plugin} has no free instance: {reason}")]
    FilterUnavailable { plugin: String, reason: String },
    #[error("request body over the {limit} bytes a body filter buffers")]
    BodyTooLarge { limit: usize },
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("upstream response body failed: {0}")]
    UpstreamBody(String),
}

impl ProxyError {
    /// The status a client sees for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::ConnectNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NoEndpoint(_) | ProxyError::FilterUnavailable { .. } | ProxyError::Overflow { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::UpgradeRefused { .. } | ProxyError::UpstreamBody(_) => StatusCode::BAD_GATEWAY,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Upstream { failure, .. } => match failure {
                UpstreamFailure::ConnectTimeout | UpstreamFailure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            },
            ProxyError::FilterFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::FilterTimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Where the error came from.
    pub fn source_side(&self) -> ErrorSource {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::BadRequest(_)
            | ProxyError::ConnectNotAllowed { .. }
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::BodyTimeout(_) => ErrorSource::Downstream,
            ProxyError::NoEndpoint(_)
            | ProxyError::Upstream { .. }
            | ProxyError::UpgradeRefused { .. }
            | ProxyError::UpstreamBody(_) => ErrorSource::Upstream,
            ProxyError::Overflow { .. }
            | ProxyError::FilterFailed { .. }
            | ProxyError::FilterTimedOut { .. }
            | ProxyError::FilterUnavailable { .. } => ErrorSource::Internal,
        }
    }

    /// The upstream failure a retry policy may act on; `None` for errors a
    /// retry cannot help (bad requests, filters, limits).
    pub fn upstream_failure(&self) -> Option<UpstreamFailure> {
        match self {
            ProxyError::Upstream { failure, .. } => Some(*failure),
            _ => None,
        }
    }

    /// The short body a client sees: what happened, without internal detail.
    fn body(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no route for this host and path\n",
            ProxyError::BadRequest(why) => why.body(),
            ProxyError::ConnectNotAllowed { .. } => "CONNECT is not allowed on this route\n",
            ProxyError::NoEndpoint(_) => "no upstream endpoint available\n",
            ProxyError::Upstream { failure, .. } => match failure {
                UpstreamFailure::ConnectTimeout => "upstream connect timeout\n",
                UpstreamFailure::Timeout(_) => "upstream timeout\n",
                _ => "upstream unreachable\n",
            },
            ProxyError::UpgradeRefused { .. } => "upstream did not switch protocols\n",
            ProxyError::Overflow { limit, .. } => match limit {
                Limit::MaxConnections => "upstream overloaded: max_connections\n",
                Limit::MaxPendingRequests => "upstream overloaded: max_pending_requests\n",
                Limit::MaxRequests => "upstream overloaded: max_requests\n",
                Limit::MaxRetries => "upstream overloaded: max_retries\n",
            },
            ProxyError::FilterFailed { .. } => "filter failed\n",
            ProxyError::FilterTimedOut { .. } => "filter timed out\n",
            ProxyError::FilterUnavailable { .. } => "filter overloaded\n",
            ProxyError::BodyTooLarge { .. } => "request body too large\n",
            ProxyError::BodyTimeout(_) => "request body timeout\n",
            ProxyError::UpstreamBody(_) => "upstream response body failed\n",
        }
    }

    /// The response sent to the client.
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut resp = Response::new(body::full(self.body()));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let ProxyError::BadRequest(_) = self {
            // What follows a malformed request on this connection cannot be
            // trusted to be framed as the client meant (HTTP/1.1 closes after
            // this response; HTTP/2 drops the header).
            resp.headers_mut()
                .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log names the real cause of a 400, and the client gets its body.
    #[test]
    fn bad_requests_say_what_was_wrong() {
        let cases = [
            (
                BadRequest::DuplicateHost,
                "more than one Host header line",
                "more than one Host header\n",
            ),
            (
                BadRequest::MalformedBody,
                "the request body was malformed",
                "malformed request body\n",
            ),
            (BadRequest::MissingHost, "no Host header", "missing Host header\n"),
        ];
        for (why, logged, body) in cases {
            let e = ProxyError::from(why);
            assert!(e.to_string().contains(logged), "{e}");
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert_eq!(e.body(), body);
        }
    }
}
