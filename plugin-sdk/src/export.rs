//! The glue [`crate::export_filter!`] expands to: it turns the generated
//! `handler` and `body-handler` exports into calls on the author's
//! [`crate::Filter`]. Not part of the public API.

#[cfg(target_arch = "wasm32")]
pub use crate::bindings::exports::sluice::filter::body_handler::{
    BodyAction as WitBodyAction, BodyPhases as WitBodyPhases, Guest as BodyGuest,
};
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
    use super::{WitAction, WitBodyAction, WitBodyPhases, WitPhases};
    use crate::bindings::sluice::filter::types as wit;
    use crate::{Action, BodyAction, BodyPhases, Config, Filter, LocalResponse, Phases, Request, Response};
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

    fn body_phases(p: BodyPhases) -> WitBodyPhases {
        let mut bits = 0;
        if p.request_body() {
            bits |= WitBodyPhases::REQUEST_BODY.bits();
        }
        if p.response_body() {
            bits |= WitBodyPhases::RESPONSE_BODY.bits();
        }
        WitBodyPhases::from_bits_retain(bits)
    }

    fn local_response(r: LocalResponse) -> wit::LocalResponse {
        wit::LocalResponse {
            status: r.status,
            headers: r
                .headers
                .into_iter()
                .map(|(name, value)| wit::HeaderLine { name, value })
                .collect(),
            body: r.body,
        }
    }

    fn action(a: Action) -> WitAction {
        match a {
            Action::Continue => WitAction::Continue,
            Action::Respond(r) => WitAction::Respond(local_response(r)),
        }
    }

    fn body_action(a: BodyAction) -> WitBodyAction {
        match a {
            BodyAction::Continue => WitBodyAction::Continue,
            BodyAction::Replace(body) => WitBodyAction::Replace(body),
            BodyAction::Respond(r) => WitBodyAction::Respond(local_response(r)),
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

    /// `body-handler.requested-phases`: asked right after `init`
    /// succeeded; none before it.
    pub fn requested_phases<F: Filter>(slot: &RefCell<Option<F>>) -> WitBodyPhases {
        match slot.borrow().as_ref() {
            Some(f) => body_phases(f.body_phases()),
            None => WitBodyPhases::from_bits_retain(0),
        }
    }

    /// `body-handler.on-request-body`.
    pub fn on_request_body<F: Filter>(slot: &RefCell<Option<F>>, body: Vec<u8>) -> WitBodyAction {
        match slot.borrow_mut().as_mut() {
            Some(f) => body_action(f.on_request_body(&mut Request::new(), &body)),
            None => WitBodyAction::Continue,
        }
    }

    /// `body-handler.on-response-body`.
    pub fn on_response_body<F: Filter>(slot: &RefCell<Option<F>>, body: Vec<u8>) -> WitBodyAction {
        match slot.borrow_mut().as_mut() {
            Some(f) => body_action(f.on_response_body(&mut Response::new(), &body)),
            None => WitBodyAction::Continue,
        }
    }
}

#[cfg(target_arch = "wasm32")]
pub use glue::*;
