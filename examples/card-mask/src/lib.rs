//! Example filter: mask payment card numbers in response bodies, using the
//! response-body phase (WIT `body-handler`, sluice 0.1.3).
//!
//! ```toml
//! [[routes.filters]]
//! plugin = "card-mask"
//! config = { content_types = ["application/json", "text/plain"] }
//! ```
//!
//! A card number is a run of 13–19 digits, optionally in groups separated
//! by single spaces or dashes, that passes the Luhn check. It is masked by
//! keeping its last four digits and replacing every other digit with `*`;
//! separators stay: `4111 1111 1111 1111` → `**** **** **** 1111`.
//!
//! Only bodies whose `content-type` media type (before `;`, any case) is
//! in `content_types` are scanned; compressed bodies (a `content-encoding`
//! other than `identity`) are passed on untouched. In JSON bodies a card
//! number written as a bare number becomes a string, so the body stays
//! valid JSON. The count of masked numbers goes into the request context
//! as `card_mask.masked`.
//!
//! See README.md for the configuration and how to build and test it.

mod scan;

use serde::Deserialize;
use sluice_sdk::{BodyAction, BodyPhases, Config, Filter, Phases, Response, context};

pub use scan::{luhn_valid, mask};

/// The context key the count of masked numbers is stored under.
pub const MASKED_KEY: &str = "card_mask.masked";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_content_types")]
    content_types: Vec<String>,
}

fn default_content_types() -> Vec<String> {
    ["application/json", "text/plain", "text/html"]
        .iter()
        .map(|t| t.to_string())
        .collect()
}

/// The media type of a `content-type` value: before any `;`, trimmed,
/// lower case.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a media type is JSON (`application/json` or `…+json`).
fn is_json(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

/// The filter: the media types it scans, lower case.
pub struct CardMask {
    content_types: Vec<String>,
}

impl Filter for CardMask {
    fn create(config: &Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        let mut content_types = Vec::with_capacity(s.content_types.len());
        for (i, t) in s.content_types.iter().enumerate() {
            let media = media_type(t);
            if media.is_empty() || !media.contains('/') {
                return Err(format!("content_types[{i}]: {t:?} is not a media type like text/plain"));
            }
            content_types.push(media);
        }
        Ok(CardMask { content_types })
    }

    /// No header phase: everything happens in the response-body phase.
    fn phases(&self) -> Phases {
        Phases::NONE
    }

    fn body_phases(&self) -> BodyPhases {
        BodyPhases::RESPONSE_BODY
    }

    fn on_response_body(&mut self, response: &mut Response, body: &[u8]) -> BodyAction {
        let Some(media) = response.header("content-type").map(|t| media_type(&t)) else {
            return BodyAction::Continue;
        };
        if !self.content_types.contains(&media) {
            return BodyAction::Continue;
        }
        if let Some(encoding) = response.header("content-encoding")
            && !encoding.trim().eq_ignore_ascii_case("identity")
        {
            sluice_sdk::debug!("card-mask: {encoding} body not scanned");
            return BodyAction::Continue;
        }
        let (masked, count) = mask(body, is_json(&media));
        if let Err(e) = context::set(MASKED_KEY, &count.to_string()) {
            sluice_sdk::warn!("card-mask: cannot record the count: {e}");
        }
        match masked {
            Some(body) => BodyAction::Replace(body),
            None => BodyAction::Continue,
        }
    }
}

sluice_sdk::export_filter!(CardMask);

#[cfg(test)]
mod tests;
