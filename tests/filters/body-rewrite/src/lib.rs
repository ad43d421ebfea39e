//! `body-rewrite`: a test filter for the request body phase. It upper-cases
//! the request body (ASCII), records the length it saw as the request
//! header `x-body-seen` (request headers can still change in the body
//! phase), and answers 422 itself when the body contains `deny`.

use sluice_sdk::{BodyAction, BodyPhases, Config, Filter, Phases, Request};

pub struct BodyRewrite;

impl Filter for BodyRewrite {
    fn create(_config: &Config) -> Result<Self, String> {
        Ok(BodyRewrite)
    }

    fn phases(&self) -> Phases {
        Phases::NONE
    }

    fn body_phases(&self) -> BodyPhases {
        BodyPhases::REQUEST_BODY
    }

    fn on_request_body(&mut self, request: &mut Request, body: &[u8]) -> BodyAction {
        if body.windows(4).any(|w| w == b"deny") {
            return BodyAction::respond(422, "denied by the body filter\n");
        }
        let _ = request.set_header("x-body-seen", body.len().to_string());
        BodyAction::Replace(body.to_ascii_uppercase())
    }
}

sluice_sdk::export_filter!(BodyRewrite);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::mock::MockHost;

    #[test]
    fn upper_cases_and_refuses() {
        let host = MockHost::new();
        let mut f: BodyRewrite = host.create().unwrap();
        assert_eq!(
            host.on_request_body(&mut f, b"hi there"),
            BodyAction::Replace(b"HI THERE".to_vec())
        );
        assert_eq!(host.get_request_header("x-body-seen").as_deref(), Some("8"));
        assert!(matches!(host.on_request_body(&mut f, b"pls deny"), BodyAction::Respond(r) if r.status == 422));
    }
}
