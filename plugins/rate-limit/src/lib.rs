//! `rate-limit`: GCRA rate limiting (a token bucket kept as one timestamp),
//! with several limits per route, keyed by client IP, header, request context
//! value, route, or a combination. A denied request gets `429` with
//! `Retry-After` and the `RateLimit` / `RateLimit-Policy` headers of
//! draft-ietf-httpapi-ratelimit-headers-09.
//!
//! ```toml
//! [routes.filters.config]
//! key = ["client_ip"]          # parts: client_ip, route, header:<name>, context:<key>
//! headers_on_allowed = false   # also send RateLimit / RateLimit-Policy when allowed
//! [[routes.filters.config.limits]]
//! name = "burst"               # default "limit-<index>"
//! requests = 10
//! per = "1s"                   # "250ms", "1s", "10m", "1h", "1d" or whole seconds
//! burst = 20                   # default = requests
//! [[routes.filters.config.limits]]
//! name = "hourly"
//! requests = 1000
//! per = "1h"
//! ```
//!
//! Buckets live in the plugin's shared state, so every instance, and every
//! route using the same limit and key, sees the same counts; updates use
//! compare-and-swap (see [`gcra::acquire`]). The README has the details.

mod config;
mod gcra;
mod headers;
mod key;
#[cfg(test)]
mod tests;

use config::{Limit, Settings, StoreFull};
use gcra::{Acquired, Decision};
use sluice_sdk::{Action, Config, Filter, HostError, LocalResponse, Phases, Request, Response, clock, context};

/// The filter. Holds only the configuration: all counting state is shared.
pub struct RateLimit {
    settings: Settings,
    /// The `RateLimit-Policy` value, the same for every response.
    policy: String,
    /// Where the request phase leaves the `RateLimit` value for the response
    /// phase (which may run on another instance). Includes a fingerprint of
    /// the configuration so two rate-limit filters on one route do not mix.
    context_key: String,
}

impl Filter for RateLimit {
    fn create(config: &Config) -> Result<Self, String> {
        let settings = Settings::from_config(config)?;
        let policy = headers::policy(&settings.limits);
        let context_key = context_key(&settings);
        Ok(RateLimit {
            settings,
            policy,
            context_key,
        })
    }

    fn phases(&self) -> Phases {
        if self.settings.headers_on_allowed {
            Phases::ALL
        } else {
            Phases::REQUEST
        }
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        let now = clock::unix_nanos();
        let section = key::request_section(&self.settings.key, req);
        let limits = &self.settings.limits;
        // Keys of the buckets this request took a token from, and their TATs.
        let mut taken: Vec<String> = Vec::with_capacity(limits.len());
        let mut tats: Vec<u64> = Vec::with_capacity(limits.len());
        for (index, limit) in limits.iter().enumerate() {
            let key = format!("{}{section}", limit.key_prefix);
            match gcra::acquire(&key, now, &limit.params()) {
                Ok(Acquired::Allowed { tat }) => {
                    taken.push(key);
                    tats.push(tat);
                }
                Ok(Acquired::Denied { tat }) => {
                    sluice_sdk::debug!("denied by limit `{}` for key {key}", limit.name);
                    return self.deny(now, &section, &taken, index, tat);
                }
                Ok(Acquired::Contended) => {
                    sluice_sdk::warn!(
                        "limit `{}`: {} compare-and-swap attempts lost for key {key}; denying",
                        limit.name,
                        gcra::MAX_ATTEMPTS
                    );
                    let tat = gcra::peek(&key, now);
                    return self.deny(now, &section, &taken, index, tat);
                }
                Err(HostError::LimitExceeded) if self.settings.on_store_full == StoreFull::Allow => {
                    // The host counts the refusal (sluice_shared_state_refused_total).
                    sluice_sdk::warn!(
                        "limit `{}`: shared-state quota full, bucket {key} not stored; request allowed (on_store_full = \"allow\")",
                        limit.name
                    );
                    // For the RateLimit header: the bucket as if untouched.
                    tats.push(now);
                }
                Err(HostError::LimitExceeded) => {
                    sluice_sdk::warn!(
                        "limit `{}`: shared-state quota full, bucket {key} not stored; request denied (on_store_full = \"deny\")",
                        limit.name
                    );
                    self.give_back(&taken, now);
                    return Action::Respond(
                        LocalResponse::new(429)
                            .header("content-type", "text/plain; charset=utf-8")
                            .header("retry-after", "1")
                            .body("rate limit state full\n"),
                    );
                }
                Err(e) => {
                    sluice_sdk::error!("limit `{}`: shared state refused key {key}: {e}", limit.name);
                    self.give_back(&taken, now);
                    return Action::respond(500, format!("rate-limit: shared state error: {e}\n"));
                }
            }
        }
        if self.settings.headers_on_allowed {
            let value = headers::rate_limit(limits, &tats, now);
            if let Err(e) = context::set(&self.context_key, &value) {
                sluice_sdk::warn!("cannot keep the RateLimit header for the response: {e}");
            }
        }
        Action::Continue
    }

    fn on_response_headers(&mut self, resp: &mut Response) -> Action {
        // Present only if the request phase allowed the request (a denied one
        // is answered by this filter's own 429, which already has the headers).
        let Some(value) = context::get(&self.context_key) else {
            return Action::Continue;
        };
        let result = resp
            .set_header(headers::RATELIMIT, &value)
            .and_then(|()| resp.set_header(headers::RATELIMIT_POLICY, &self.policy));
        if let Err(e) = result {
            sluice_sdk::warn!("cannot set the RateLimit headers: {e}");
        }
        Action::Continue
    }
}

impl RateLimit {
    /// Answer 429 for a request denied by limit `denied` (bucket at
    /// `denied_tat`) after it took a token from each of the buckets in
    /// `taken` (the limits before `denied`).
    fn deny(&self, now: u64, section: &str, taken: &[String], denied: usize, denied_tat: u64) -> Action {
        let limits = &self.settings.limits;
        let mut tats = self.give_back(taken, now);
        tats.push(denied_tat);
        let mut wait = limits[denied].params().wait(denied_tat, now);
        // The later limits were not consulted: read them (without taking) so
        // Retry-After covers every limit that would deny, and RateLimit names
        // the most restrictive one.
        for limit in &limits[denied + 1..] {
            let params = limit.params();
            let tat = gcra::peek(&format!("{}{section}", limit.key_prefix), now);
            if let Decision::Deny { tat } = params.decide(Some(tat), now) {
                wait = wait.max(params.wait(tat, now));
            }
            tats.push(tat);
        }
        let response = LocalResponse::new(429)
            .header("content-type", "text/plain; charset=utf-8")
            .header(headers::RETRY_AFTER, headers::retry_after(wait).to_string())
            .header(headers::RATELIMIT_POLICY, &self.policy)
            .header(headers::RATELIMIT, headers::rate_limit(limits, &tats, now))
            .body("rate limit exceeded\n");
        Action::Respond(response)
    }

    /// Give back the token taken from each bucket in `taken` (the first
    /// `taken.len()` limits), so a denied request is not counted. Returns
    /// each bucket's TAT afterwards.
    fn give_back(&self, taken: &[String], now: u64) -> Vec<u64> {
        let mut tats = Vec::with_capacity(self.settings.limits.len());
        for (limit, key) in self.settings.limits.iter().zip(taken) {
            let params = limit.params();
            let tat = match gcra::refund(key, now, &params) {
                Ok(Some(tat)) => tat,
                Ok(None) => {
                    sluice_sdk::warn!(
                        "limit `{}`: could not give back a token for key {key} after {} attempts",
                        limit.name,
                        gcra::MAX_ATTEMPTS
                    );
                    gcra::peek(key, now)
                }
                Err(e) => {
                    sluice_sdk::error!("limit `{}`: shared state refused key {key}: {e}", limit.name);
                    gcra::peek(key, now)
                }
            };
            tats.push(tat);
        }
        tats
    }
}

/// `rate-limit.<hash of key parts and limits>`.
fn context_key(settings: &Settings) -> String {
    let mut description = String::new();
    for part in &settings.key {
        description.push_str(&part.describe());
        description.push('\n');
    }
    for Limit { key_prefix, .. } in &settings.limits {
        description.push_str(key_prefix);
        description.push('\n');
    }
    format!("rate-limit.{:016x}", key::fnv1a_128(description.as_bytes()) as u64)
}

sluice_sdk::export_filter!(RateLimit);
