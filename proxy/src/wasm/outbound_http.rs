//! The host side of the WIT `outbound-http` interface (0.1.3): a filter's
//! HTTP call to a cluster its entry lists. The request is checked here
//! (cluster allowed, method, path, authority, headers, body size), sent
//! through [`crate::outbound::Outbound`], and waited for without holding a
//! worker: the filter's call is suspended meanwhile. The wait is bounded by
//! the request's timeout and what is left of the phase's `wait_limit`, and
//! it is counted as waiting, not CPU.

use super::bindings::HeaderLine;
use super::bindings::sluice::filter::outbound_http::{self, CallError, OutboundRequest, OutboundResponse};
use super::budget;
use super::host::{HostState, RESERVED, header_name, header_value};
use crate::outbound::OutboundError;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use std::time::{Duration, Instant};

/// Largest request body a filter may send.
pub const MAX_REQUEST_BODY: usize = 1 << 20;

/// The request head a filter asked for, or why it is invalid.
fn head(request: &OutboundRequest, cluster: &str) -> Result<http::request::Parts, String> {
    let mut built = http::Request::new(());
    *built.method_mut() = http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", request.method))?;
    if !request.path.starts_with('/') {
        return Err("the path must start with `/`".into());
    }
    let path = PathAndQuery::try_from(request.path.as_str()).map_err(|_| format!("invalid path {:?}", request.path))?;
    *built.uri_mut() = http::Uri::from(path);
    let authority = request.authority.as_deref().unwrap_or(cluster);
    let parsed = Authority::try_from(authority).map_err(|_| format!("invalid authority {authority:?}"))?;
    if authority.contains('@') {
        return Err("the authority must not carry user information".into());
    }
    let host = http::HeaderValue::from_str(parsed.as_str()).map_err(|_| format!("invalid authority {authority:?}"))?;
    let headers = built.headers_mut();
    headers.insert(http::header::HOST, host);
    if request.headers.len() > crate::limits::MAX_HEADER_COUNT {
        return Err("too many headers".into());
    }
    for HeaderLine { name, value } in &request.headers {
        let name = header_name(name).map_err(|_| format!("invalid header name {name:?}"))?;
        // Framing and connection headers, and `host` (use `authority`).
        if RESERVED.contains(&name.as_str()) {
            return Err(format!("header `{name}` is set by the host"));
        }
        let value = header_value(value.clone()).map_err(|_| format!("invalid value for header `{name}`"))?;
        headers.append(name, value);
    }
    if request.body.len() > MAX_REQUEST_BODY {
        return Err(format!("the body is over {MAX_REQUEST_BODY} bytes"));
    }
    Ok(built.into_parts().0)
}

fn response(r: crate::outbound::OutboundResponse) -> OutboundResponse {
    OutboundResponse {
        status: r.head.status.as_u16(),
        headers: super::host::headers::lines(&r.head.headers),
        body: r.body.to_vec(),
    }
}

impl outbound_http::Host for HostState {
    async fn send(&mut self, request: OutboundRequest) -> Result<OutboundResponse, CallError> {
        if self.call.phase.is_none() {
            return Err(CallError::WrongPhase);
        }
        let plugin = self.plugin.clone();
        let Some(io) = self.io.as_deref() else {
            return Err(CallError::Failed("outbound calls are not available here".into()));
        };
        let metrics = &io.outbound.metrics;
        let Some(cluster) = self.allowed_cluster(&request.cluster) else {
            metrics.call(&plugin, "", "not_allowed", None);
            return Err(CallError::NotAllowed);
        };
        let head = match head(&request, &cluster) {
            Ok(head) => head,
            Err(reason) => {
                metrics.call(&plugin, &cluster, "invalid", None);
                return Err(CallError::InvalidRequest(reason));
            }
        };
        let waited = budget::lock(&self.budget).waited_so_far();
        let remaining = io.wait_limit.saturating_sub(waited);
        if remaining.is_zero() {
            metrics.call(&plugin, &cluster, "timeout", None);
            return Err(CallError::Timeout);
        }
        let timeout = request
            .timeout_ms
            .map_or(remaining, |ms| Duration::from_millis(ms.into()).min(remaining));
        let started = Instant::now();
        let result = io
            .outbound
            .send(
                &cluster,
                head,
                Bytes::from(request.body),
                timeout,
                io.max_response_bytes,
            )
            .await;
        let took = started.elapsed();
        budget::lock(&self.budget).waited(took);
        let outcome = result.as_ref().map_or_else(OutboundError::outcome, |_| "ok");
        metrics.call(&plugin, &cluster, outcome, Some(took));
        result.map(response).map_err(|e| match e {
            OutboundError::NoCluster(_) => CallError::NotAllowed,
            OutboundError::Timeout(_) => CallError::Timeout,
            OutboundError::TooLarge(_) => CallError::ResponseTooLarge,
            OutboundError::Failed(reason) => CallError::Failed(reason),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_state::SharedState;
    use crate::wasm::log_budget::LogBudget;
    use std::sync::Arc;

    /// `init` cannot call out: a slow service must not stall a reload.
    #[tokio::test]
    async fn not_available_in_init() {
        use outbound_http::Host as _;
        let mut state = HostState::new(
            "t".into(),
            Arc::new(SharedState::new(Default::default())),
            Arc::new(["authz".into()].into_iter().collect()),
            1 << 20,
            LogBudget::detached(),
        );
        assert!(matches!(state.send(request()).await, Err(CallError::WrongPhase)));
    }

    fn request() -> OutboundRequest {
        OutboundRequest {
            cluster: "authz".into(),
            method: "POST".into(),
            path: "/check?x=1".into(),
            authority: None,
            headers: vec![HeaderLine {
                name: "x-user".into(),
                value: b"ann".to_vec(),
            }],
            body: Vec::new(),
            timeout_ms: None,
        }
    }

    #[test]
    fn a_valid_request_gets_the_cluster_as_host() {
        let head = head(&request(), "authz").unwrap();
        assert_eq!(head.method, http::Method::POST);
        assert_eq!(head.uri, "/check?x=1");
        assert_eq!(head.headers["host"], "authz");
        assert_eq!(head.headers["x-user"], "ann");
    }

    #[test]
    fn invalid_requests_are_refused_with_a_reason() {
        type Change = Box<dyn Fn(&mut OutboundRequest)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|r| r.method = "GE T".into()), "invalid method"),
            (Box::new(|r| r.path = "check".into()), "must start with"),
            (Box::new(|r| r.authority = Some("user@evil".into())), "user information"),
            (
                Box::new(|r| {
                    r.headers.push(HeaderLine {
                        name: "content-length".into(),
                        value: b"5".to_vec(),
                    })
                }),
                "set by the host",
            ),
            (
                Box::new(|r| {
                    r.headers.push(HeaderLine {
                        name: "host".into(),
                        value: b"x".to_vec(),
                    })
                }),
                "set by the host",
            ),
            (
                Box::new(|r| {
                    r.headers.push(HeaderLine {
                        name: "x".into(),
                        value: b"a\nb".to_vec(),
                    })
                }),
                "invalid value",
            ),
            (Box::new(|r| r.body = vec![0; MAX_REQUEST_BODY + 1]), "over"),
        ];
        for (change, expected) in cases {
            let mut r = request();
            change(&mut r);
            let err = head(&r, "authz").unwrap_err();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }
}
