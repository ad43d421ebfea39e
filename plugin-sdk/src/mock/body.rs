//! Body phases on the mock host (WIT `body-handler`, 0.1.3): run
//! `on_request_body` / `on_response_body` with a whole body, as the host
//! does once it has buffered it.
//!
//! The rules the host applies, and the mock with it:
//! - The request-body phase runs in the request phase: the request
//!   functions still work (headers can still change), the response ones
//!   answer `WrongPhase` / empty.
//! - The response-body phase runs in the response phase: the response
//!   functions work, the request ones do not.
//! - The request context is readable and writable in both, and outbound
//!   calls are available in both.
//! - A `Respond` is checked as a header phase's local response is (see
//!   [`MockHost::check_local_response`]); one the host would refuse fails
//!   the call.
//!
//! Like the header-phase runners, these call the filter whatever its
//! [`Filter::body_phases`] says: the host would skip a phase the filter did
//! not ask for, so assert on `body_phases` in a test that relies on it.
//! Nor does the mock know the entry's `max_body_bytes`: a body over it is
//! answered 413 (request) or fails the call (response) on the host without
//! calling the filter.

use super::MockHost;
use crate::sys::mock::{self as state, Phase};
use crate::{BodyAction, Filter, Request, Response};

impl MockHost {
    /// Run the request-body phase with `body`.
    ///
    /// # Panics
    ///
    /// If the filter answers with a local response the host would refuse,
    /// as [`MockHost::on_request_headers`]; use
    /// [`MockHost::try_on_request_body`] to test that case.
    #[track_caller]
    pub fn on_request_body<F: Filter>(&self, filter: &mut F, body: &[u8]) -> BodyAction {
        match self.try_on_request_body(filter, body) {
            Ok(action) => action,
            Err(reason) => panic!("the host would fail this call: {reason}"),
        }
    }

    /// Run the response-body phase with `body`.
    ///
    /// # Panics
    ///
    /// As [`MockHost::on_request_body`].
    #[track_caller]
    pub fn on_response_body<F: Filter>(&self, filter: &mut F, body: &[u8]) -> BodyAction {
        match self.try_on_response_body(filter, body) {
            Ok(action) => action,
            Err(reason) => panic!("the host would fail this call: {reason}"),
        }
    }

    /// Run the request-body phase; `Err` with the host's reason if the host
    /// would refuse the filter's answer.
    pub fn try_on_request_body<F: Filter>(&self, filter: &mut F, body: &[u8]) -> Result<BodyAction, String> {
        state::with(|s| s.phase = Phase::Request);
        let action = filter.on_request_body(&mut Request::new(), body);
        state::with(|s| s.phase = Phase::None);
        self.validate_body(&action).map(|()| action)
    }

    /// Run the response-body phase; `Err` as in
    /// [`MockHost::try_on_request_body`].
    pub fn try_on_response_body<F: Filter>(&self, filter: &mut F, body: &[u8]) -> Result<BodyAction, String> {
        state::with(|s| s.phase = Phase::Response);
        let action = filter.on_response_body(&mut Response::new(), body);
        state::with(|s| s.phase = Phase::None);
        self.validate_body(&action).map(|()| action)
    }

    /// Whether the host accepts what a body phase returned: `Continue` and
    /// `Replace` always, a local response if
    /// [`MockHost::check_local_response`] passes.
    pub fn validate_body(&self, action: &BodyAction) -> Result<(), String> {
        match action {
            BodyAction::Respond(response) => self.check_local_response(response),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BodyPhases, Config, HostError, LocalResponse, context};

    /// Records what each body phase could see and answers as told.
    struct Echo {
        answer: BodyAction,
        seen: Vec<String>,
    }

    impl Filter for Echo {
        fn create(_: &Config) -> Result<Self, String> {
            Ok(Echo {
                answer: BodyAction::Continue,
                seen: Vec::new(),
            })
        }
        fn body_phases(&self) -> BodyPhases {
            BodyPhases::ALL
        }
        fn on_request_body(&mut self, request: &mut Request, body: &[u8]) -> BodyAction {
            let set = request.set_header("x-body-len", body.len().to_string());
            let status = Response::new().set_status(500);
            self.seen.push(format!("request {} {set:?} {status:?}", request.path()));
            let _ = context::set("seen", "request");
            self.answer.clone()
        }
        fn on_response_body(&mut self, response: &mut Response, body: &[u8]) -> BodyAction {
            let set = Request::new().set_header("x-a", "1");
            self.seen.push(format!(
                "response {} {} {set:?} {:?}",
                response.status(),
                body.len(),
                context::get("seen")
            ));
            let _ = response.set_header("x-body-len", body.len().to_string());
            self.answer.clone()
        }
    }

    #[test]
    fn request_body_runs_in_the_request_phase() {
        let host = MockHost::new();
        let mut f: Echo = host.create().unwrap();
        host.path("/upload");
        assert_eq!(host.on_request_body(&mut f, b"hello"), BodyAction::Continue);
        assert_eq!(
            f.seen,
            vec![format!(
                "request /upload {:?} {:?}",
                Ok::<(), HostError>(()),
                Err::<(), _>(HostError::WrongPhase)
            )]
        );
        assert_eq!(host.get_request_header("x-body-len").as_deref(), Some("5"));
        assert_eq!(host.get_context("seen").as_deref(), Some("request"));
    }

    #[test]
    fn response_body_runs_in_the_response_phase() {
        let host = MockHost::new();
        let mut f: Echo = host.create().unwrap();
        host.response_status(201).context("seen", "request");
        f.answer = BodyAction::Replace(b"new".to_vec());
        assert_eq!(
            host.on_response_body(&mut f, b"abc"),
            BodyAction::Replace(b"new".to_vec())
        );
        assert_eq!(
            f.seen,
            vec![format!(
                "response 201 3 {:?} Some(\"request\")",
                Err::<(), _>(HostError::WrongPhase)
            )]
        );
        assert_eq!(host.get_response_header("x-body-len").as_deref(), Some("3"));
        assert_eq!(host.get_request_header("x-a"), None);
    }

    #[test]
    fn body_responses_are_checked() {
        let host = MockHost::new();
        let mut f: Echo = host.create().unwrap();
        f.answer = BodyAction::Respond(LocalResponse::new(99));
        assert!(host.try_on_request_body(&mut f, b"").is_err());
        assert!(host.try_on_response_body(&mut f, b"").is_err());
        f.answer = BodyAction::respond(413, "too big\n");
        assert!(matches!(host.on_request_body(&mut f, b""), BodyAction::Respond(r) if r.status == 413));
    }

    #[test]
    #[should_panic(expected = "the host would fail this call")]
    fn the_body_runner_panics_on_a_refused_local_response() {
        let host = MockHost::new();
        let mut f: Echo = host.create().unwrap();
        f.answer = BodyAction::Respond(LocalResponse::new(200).header("a b", "v"));
        host.on_response_body(&mut f, b"");
    }

    #[test]
    fn default_body_phases_do_nothing() {
        struct Plain;
        impl Filter for Plain {
            fn create(_: &Config) -> Result<Self, String> {
                Ok(Plain)
            }
        }
        let host = MockHost::new();
        let mut f: Plain = host.create().unwrap();
        assert_eq!(f.body_phases(), BodyPhases::NONE);
        assert_eq!(host.on_request_body(&mut f, b"x"), BodyAction::Continue);
        assert_eq!(host.on_response_body(&mut f, b"x"), BodyAction::Continue);
    }
}
