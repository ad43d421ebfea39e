//! Outbound calls on the mock host (WIT `outbound-http`, 0.1.3): script the
//! answers with [`MockHost::outbound`], inspect what was sent with
//! [`MockHost::outbound_requests`].
//!
//! A call is checked as the host checks it before the responder sees it
//! (see `sys::mock::outbound::check` for the list, in order): refused in
//! `create` (`WrongPhase`), to a cluster outside a non-empty
//! [`MockHost::clusters`] list (`NotAllowed`), and a request the host
//! cannot send (`InvalidRequest` with the reason: bad method, path,
//! authority, header name or value, a reserved header or `host`, a body
//! over 1 MiB). A refused call is not recorded. The answer is handed over
//! as the host hands one: header names in lower case, a body over 1 MiB
//! (the default `max_response_bytes`) is `ResponseTooLarge`.

use super::MockHost;
use crate::outbound::{CallError, OutboundRequest, OutboundResponse};
use crate::sys::mock as state;

impl MockHost {
    /// Answer every outbound call that passes the host's checks with
    /// `responder`, which sees the request as sent. Replaces an earlier
    /// responder. Without one, every call fails with
    /// `CallError::Failed("no response scripted")`. Return
    /// `Err(CallError::Timeout)` (or another error) to script a failure.
    ///
    /// ```
    /// use sluice_sdk::mock::MockHost;
    /// use sluice_sdk::outbound::{CallError, OutboundRequest, OutboundResponse};
    ///
    /// let host = MockHost::new();
    /// host.outbound(|req| match req.path.as_str() {
    ///     "/check" => Ok(OutboundResponse::new(200, "ok")),
    ///     _ => Err(CallError::Timeout),
    /// });
    /// assert_eq!(OutboundRequest::get("authz", "/check").send().map(|r| r.status), Ok(200));
    /// assert_eq!(OutboundRequest::get("authz", "/slow").send(), Err(CallError::Timeout));
    /// assert_eq!(host.outbound_requests().len(), 2);
    /// ```
    pub fn outbound(
        &self,
        responder: impl FnMut(&OutboundRequest) -> Result<OutboundResponse, CallError> + 'static,
    ) -> &Self {
        let responder: state::Responder = Box::new(responder);
        state::with(|s| s.outbound.responder = Some(responder));
        self
    }

    /// Every outbound request sent so far (those that passed the checks),
    /// in order. Kept across [`MockHost::start_request`].
    pub fn outbound_requests(&self) -> Vec<OutboundRequest> {
        state::with(|s| s.outbound.sent.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::RESERVED_HEADERS;
    use crate::limits::MAX_HEADER_COUNT;
    use crate::outbound::send;
    use crate::{Action, Config, Filter, Request};

    fn invalid(r: OutboundRequest) -> String {
        match send(r) {
            Err(CallError::InvalidRequest(why)) => why,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn without_a_responder_calls_fail() {
        let host = MockHost::new();
        assert_eq!(
            send(OutboundRequest::get("authz", "/")),
            Err(CallError::Failed("no response scripted".into()))
        );
        assert_eq!(host.outbound_requests(), vec![OutboundRequest::get("authz", "/")]);
    }

    #[test]
    fn the_responder_sees_the_request_and_answers() {
        let host = MockHost::new();
        host.outbound(|req| {
            Ok(OutboundResponse::new(201, req.body.clone())
                .with_header("X-Echo", &req.method)
                .with_header("x-seen", crate::context::get("k").unwrap_or_default()))
        });
        host.context("k", "1");
        let sent = OutboundRequest::post("authz", "/check?x=1")
            .header("x-user", "alice")
            .authority("authz.internal:8443")
            .body("payload");
        let resp = sent.clone().send().unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.body, b"payload");
        assert_eq!(resp.header("x-echo"), Some(&b"POST"[..]));
        // The responder ran outside the state's borrow: it could use the host.
        assert_eq!(resp.header("x-seen"), Some(&b"1"[..]));
        assert_eq!(host.outbound_requests(), vec![sent]);
        // Names come back in lower case, as from the host.
        host.outbound(|_| {
            let mut r = OutboundResponse::new(200, "");
            r.headers.push(("X-Upper".into(), b"v".to_vec()));
            Ok(r)
        });
        let resp = OutboundRequest::get("authz", "/").send().unwrap();
        assert_eq!(resp.headers, vec![("x-upper".to_string(), b"v".to_vec())]);
        host.start_request();
        assert_eq!(host.outbound_requests().len(), 2, "kept across requests");
    }

    #[test]
    fn scripted_failures_and_too_large_responses() {
        let host = MockHost::new();
        let mut calls = 0;
        host.outbound(move |_| {
            calls += 1;
            match calls {
                1 => Err(CallError::Timeout),
                2 => Ok(OutboundResponse::new(200, vec![0; (1 << 20) + 1])),
                _ => Ok(OutboundResponse::new(200, vec![0; 1 << 20])),
            }
        });
        assert_eq!(send(OutboundRequest::get("a", "/")), Err(CallError::Timeout));
        assert_eq!(send(OutboundRequest::get("a", "/")), Err(CallError::ResponseTooLarge));
        assert_eq!(send(OutboundRequest::get("a", "/")).map(|r| r.body.len()), Ok(1 << 20));
    }

    #[test]
    fn clusters_outside_the_list_are_not_allowed() {
        let host = MockHost::new();
        host.outbound(|_| Ok(OutboundResponse::new(204, "")));
        assert!(send(OutboundRequest::get("anything", "/")).is_ok(), "no list: any");
        host.clusters("app", &["app", "authz"]);
        assert!(send(OutboundRequest::get("authz", "/")).is_ok());
        assert_eq!(send(OutboundRequest::get("other", "/")), Err(CallError::NotAllowed));
        // Checked before the request itself.
        assert_eq!(send(OutboundRequest::get("other", "nope")), Err(CallError::NotAllowed));
        assert_eq!(host.outbound_requests().len(), 2, "refused calls are not sent");
    }

    #[test]
    fn invalid_requests_are_refused_with_the_host_reason() {
        let host = MockHost::new();
        host.outbound(|_| Ok(OutboundResponse::new(200, "")));
        let get = |path: &str| OutboundRequest::get("c", path);
        assert_eq!(
            invalid(OutboundRequest::new("GET /", "c", "/")),
            "invalid method \"GET /\""
        );
        assert_eq!(invalid(OutboundRequest::new("", "c", "/")), "invalid method \"\"");
        assert_eq!(invalid(get("check")), "the path must start with `/`");
        assert_eq!(invalid(get("/a b")), "invalid path \"/a b\"");
        assert_eq!(
            invalid(get("/").authority("user@host")),
            "the authority must not carry user information"
        );
        assert_eq!(invalid(get("/").authority("a/b")), "invalid authority \"a/b\"");
        // Without an authority the cluster's name is sent as `host`.
        assert_eq!(
            invalid(OutboundRequest::get("bad cluster", "/")),
            "invalid authority \"bad cluster\""
        );
        assert_eq!(
            invalid(get("/").header("bad name", "v")),
            "invalid header name \"bad name\""
        );
        assert_eq!(
            invalid(get("/").header("X-A", "line\nbreak")),
            "invalid value for header `x-a`"
        );
        for reserved in RESERVED_HEADERS.iter().chain(&["host", "Host", "Content-Length"]) {
            let why = invalid(get("/").header(reserved, "v"));
            let lower = reserved.to_ascii_lowercase();
            assert_eq!(why, format!("header `{lower}` is set by the host"));
        }
        let many = (0..=MAX_HEADER_COUNT).fold(get("/"), |r, i| r.header("x-n", i.to_string()));
        assert_eq!(invalid(many), "too many headers");
        assert_eq!(
            invalid(get("/").body(vec![0; (1 << 20) + 1])),
            "the body is over 1048576 bytes"
        );
        assert!(host.outbound_requests().is_empty());
        // At the bounds: fine.
        let at = (1..MAX_HEADER_COUNT).fold(get("/é?q=`x`"), |r, i| r.header("x-n", i.to_string()));
        assert!(send(at.body(vec![0; 1 << 20]).header("X-Fine", "tab\tok")).is_ok());
        assert!(send(get("/").authority("[::1]:8080")).is_ok());
    }

    #[test]
    fn a_fragment_is_not_sent() {
        let host = MockHost::new();
        host.outbound(|req| Ok(OutboundResponse::new(200, req.path.clone())));
        let resp = send(OutboundRequest::get("c", "/keys?v=1#top")).unwrap();
        assert_eq!(resp.body, b"/keys?v=1");
        assert_eq!(host.outbound_requests()[0].path, "/keys?v=1");
    }

    /// Calls from `create`.
    struct CallsInCreate(Result<OutboundResponse, CallError>);

    impl Filter for CallsInCreate {
        fn create(_: &Config) -> Result<Self, String> {
            Ok(CallsInCreate(send(OutboundRequest::get("authz", "/"))))
        }
        fn on_request_headers(&mut self, _: &mut Request) -> Action {
            self.0 = send(OutboundRequest::get("authz", "/"));
            Action::Continue
        }
    }

    #[test]
    fn not_in_init() {
        let host = MockHost::new();
        host.outbound(|_| Ok(OutboundResponse::new(200, "")));
        let mut f: CallsInCreate = host.create().unwrap();
        assert_eq!(f.0, Err(CallError::WrongPhase));
        assert!(host.outbound_requests().is_empty());
        host.on_request_headers(&mut f);
        assert_eq!(f.0.as_ref().map(|r| r.status), Ok(200), "every phase may call");
    }
}
