//! The glue [`crate::export_filter!`] expands to: it turns the generated
//! `handler` export into calls on the author's [`crate::Filter`].
//! Not part of the public API.

#[cfg(target_arch = "wasm32")]
pub use crate::bindings::exports::sluice::filter::handler::Guest;
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::sluice::filter::types::Action as WitAction;
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::sluice::filter::types::Phases as WitPhases;
pub use wit_bindgen;

#[cfg(target_arch = "wasm32")]
pub use crate::bindings::export;

#[cfg(target_arch = "wasm32")]
mod glue {
    use super::{WitAction, WitPhases};
    use crate::bindings::sluice::filter::types as wit;
    use crate::{Action, Config, Filter, Phases, Request, Response};
    use std::cell::RefCell;

    fn phases(p: Phases) -> WitPhases {
        let mut bits = 0;
        if p.request_headers() {
            bits |= WitPhases::REQUEST_HEADERS.bits();
        }
        if p.response_headers() {
            bits |= WitPhases::RESPONSE_HEADERS.bits();
        }
        WitPhases::from_bits_retain(bits)
    }

    fn action(a: Action) -> WitAction {
        match a {
            Action::Continue => WitAction::Continue,
            Action::Respond(r) => WitAction::Respond(wit::LocalResponse {
                status: r.status,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(name, value)| wit::HeaderLine { name, value })
                    .collect(),
                body: r.body,
            }),
        }
    }

    /// `handler.init`: build the filter from its configuration.
    pub fn init<F: Filter>(slot: &RefCell<Option<F>>, config: String) -> Result<WitPhases, String> {
        let config = Config::from_json(&config)?;
        let filter = F::create(&config)?;
        let wanted = phases(filter.phases());
        *slot.borrow_mut() = Some(filter);
        Ok(wanted)
    }

    /// `handler.on-request-headers`.
    pub fn on_request_headers<F: Filter>(slot: &RefCell<Option<F>>) -> WitAction {
        match slot.borrow_mut().as_mut() {
            Some(f) => action(f.on_request_headers(&mut Request::new())),
            None => action(Action::respond(500, "filter used before init")),
        }
    }

    /// `handler.on-response-headers`.
    pub fn on_response_headers<F: Filter>(slot: &RefCell<Option<F>>) -> WitAction {
        match slot.borrow_mut().as_mut() {
            Some(f) => action(f.on_response_headers(&mut Response::new())),
            None => WitAction::Continue,
        }
    }
}

#[cfg(target_arch = "wasm32")]
pub use glue::*;
