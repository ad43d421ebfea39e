//! Errors on the request path and the one place they become HTTP responses.

use crate::body::{self, ProxyBody};
use http::{Response, StatusCode, header};

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
    #[error("cluster {0} has no endpoints")]
    NoEndpoint(String),
    #[error("upstream {endpoint} unreachable: {source}")]
    UpstreamUnreachable {
        endpoint: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("upstream {endpoint} connect timed out")]
    UpstreamConnectTimeout { endpoint: String },
    #[error("upstream {endpoint} did not answer within {timeout:?}")]
    UpstreamTimeout {
        endpoint: String,
        timeout: std::time::Duration,
    },
    #[error("filter {plugin} failed: {reason}")]
    FilterFailed { plugin: String, reason: String },
    #[error("filter {plugin} exceeded its CPU deadline")]
    FilterTimedOut { plugin: String },
    #[error("filter {plugin} has no free instance: {reason}")]
    FilterUnavailable { plugin: String, reason: String },
}

impl ProxyError {
    /// The status a client sees for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoEndpoint(_) | ProxyError::FilterUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamUnreachable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamConnectTimeout { .. } | ProxyError::UpstreamTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::FilterFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::FilterTimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The short body a client sees: what happened, without internal detail.
    fn body(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no route for this host and path\n",
            ProxyError::BadRequest(why) => why.body(),
            ProxyError::NoEndpoint(_) => "no upstream endpoint available\n",
            ProxyError::UpstreamUnreachable { .. } => "upstream unreachable\n",
            ProxyError::UpstreamConnectTimeout { .. } => "upstream connect timeout\n",
            ProxyError::UpstreamTimeout { .. } => "upstream timeout\n",
            ProxyError::FilterFailed { .. } => "filter failed\n",
            ProxyError::FilterTimedOut { .. } => "filter timed out\n",
            ProxyError::FilterUnavailable { .. } => "filter overloaded\n",
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
