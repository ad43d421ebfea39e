// Shared body of the `version-N` test filters (each defines `VERSION`).

use sluice_sdk::{Action, Config, Filter, Phases, Response};

pub struct Versioned;

impl Filter for Versioned {
    fn create(_config: &Config) -> Result<Self, String> {
        Ok(Versioned)
    }

    fn phases(&self) -> Phases {
        Phases::RESPONSE
    }

    fn on_response_headers(&mut self, resp: &mut Response) -> Action {
        match resp.set_header("x-filter-version", VERSION) {
            Ok(()) => Action::Continue,
            Err(e) => Action::respond(500, format!("{e}")),
        }
    }
}

sluice_sdk::export_filter!(Versioned);
