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
//! on_store_full = "allow"      # quota full: "allow" (unlimited) or "deny" (429)
//! on_store_unavailable = "allow"  # store down: "allow", "deny" (503) or "local"
//! [[routes.filters.config.limits]]
//! name = "burst"               # default "limit-<index>"
//! requests = 10
//! per = "1s"                   # "250ms", "1s", "10m", "1h", "1d" or whole seconds
//! burst = 20                   # default = requests
//! [[routes.filters.config.limits]]
//! name = "hourly"
//! requests = 1000
//! per = "1h"
//! # Only with on_store_unavailable = "local": what each replica enforces
//! # alone while the store is down (default: `limits`).
//! # [[routes.filters.config.local_limits]]
//! ```
//!
//! Buckets live in the plugin's shared store (`sluice_sdk::store`), so every
//! instance, every route using the same limit and key, and with the Redis
//! backend every replica, sees the same counts. Each request is one
//! `store::acquire` call carrying one bucket per limit: the host takes a
//! token from every bucket or, if any limit denies, from none, atomically.
//! The filter needs a 0.1.4 host (`shared-store`). The README has the
//! details.

mod config;
mod gcra;
mod headers;
mod key;
#[cfg(test)]
mod tests;

use config::{Limit, Settings, StoreFull, StoreUnavailable};
use gcra::Decision;
use sluice_sdk::store::{self, Bucket, RateDecision, StoreError};
use sluice_sdk::{Action, Config, Filter, LocalResponse, Phases, Request, Response, context};

/// The filter. Holds only the configuration: all counting state is shared.
pub struct RateLimit {
    settings: Settings,
    /// The `RateLimit-Policy` value of `limits`, the same for every response.
    policy: String,
    /// The `RateLimit-Policy` value of `local_limits`.
    local_policy: String,
    /// Where the request phase leaves the `RateLimit` value for the response
    /// phase (which may run on another instance). Includes a fingerprint of
    /// the configuration so two rate-limit filters on one route do not mix.
    context_key: String,
    /// The same for a decision made against `local_limits`.
    local_context_key: String,
}

/// Which limits a decision was made against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `limits`, in the shared store.
    Shared,
    /// `local_limits`, in this process's memory (the shared store is down).
    Local,
}

impl Filter for RateLimit {
    fn create(config: &Config) -> Result<Self, String> {
        let settings = Settings::from_config(config)?;
        let policy = headers::policy(&settings.limits);
        let local_policy = headers::policy(&settings.local_limits);
        let context_key = context_key(&settings);
        let local_context_key = format!("{context_key}.local");
        Ok(RateLimit {
            settings,
            policy,
            local_policy,
            context_key,
            local_context_key,
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
        let section = key::request_section(&self.settings.key, req);
        match store::acquire(&buckets(&self.settings.limits, &section), 1) {
            Ok(decision) => self.decided(Scope::Shared, &section, &decision),
            Err(StoreError::Unavailable(why)) => self.unavailable(&section, &why),
            Err(e) => self.refused(Scope::Shared, &section, e),
        }
    }

    fn on_response_headers(&mut self, resp: &mut Response) -> Action {
        // Present only if the request phase allowed the request (a denied one
        // is answered by this filter's own 429, which already has the headers).
        let found = match context::get(&self.context_key) {
            Some(value) => Some((value, &self.policy)),
            None if self.settings.on_store_unavailable == StoreUnavailable::Local => {
                context::get(&self.local_context_key).map(|value| (value, &self.local_policy))
            }
            None => None,
        };
        let Some((value, policy)) = found else {
            return Action::Continue;
        };
        let result = resp
            .set_header(headers::RATELIMIT, &value)
            .and_then(|()| resp.set_header(headers::RATELIMIT_POLICY, policy));
        if let Err(e) = result {
            sluice_sdk::warn!("cannot set the RateLimit headers: {e}");
        }
        Action::Continue
    }
}

impl RateLimit {
    /// The limits, policy and context key of `scope`.
    fn scope(&self, scope: Scope) -> (&[Limit], &str, &str) {
        match scope {
            Scope::Shared => (&self.settings.limits, &self.policy, &self.context_key),
            Scope::Local => (&self.settings.local_limits, &self.local_policy, &self.local_context_key),
        }
    }

    /// Act on the store's decision for the buckets of `scope`'s limits.
    fn decided(&self, scope: Scope, section: &str, decision: &RateDecision) -> Action {
        let (limits, policy, context_key) = self.scope(scope);
        let (tats, now) = (&decision.tats, decision.now_ns);
        if decision.allowed {
            if self.settings.headers_on_allowed {
                let value = headers::rate_limit(limits, tats, now);
                if let Err(e) = context::set(context_key, &value) {
                    sluice_sdk::warn!("cannot keep the RateLimit header for the response: {e}");
                }
            }
            return Action::Continue;
        }
        // Retry-After covers every limit that denies: waiting for the first
        // one only would earn another 429.
        let mut wait = 0;
        for (limit, &tat) in limits.iter().zip(tats) {
            let params = limit.params();
            if let Decision::Deny { tat } = params.decide(Some(tat), now) {
                sluice_sdk::debug!("denied by limit `{}` for key {}{section}", limit.name, limit.key_prefix);
                wait = wait.max(params.wait(tat, now));
            }
        }
        let response = LocalResponse::new(429)
            .header("content-type", "text/plain; charset=utf-8")
            .header(headers::RETRY_AFTER, headers::retry_after(wait).to_string())
            .header(headers::RATELIMIT_POLICY, policy)
            .header(headers::RATELIMIT, headers::rate_limit(limits, tats, now))
            .body("rate limit exceeded\n");
        Action::Respond(response)
    }

    /// The shared store did not answer: `on_store_unavailable` decides.
    fn unavailable(&self, section: &str, why: &str) -> Action {
        match self.settings.on_store_unavailable {
            StoreUnavailable::Allow => {
                sluice_sdk::warn!(
                    "shared store unavailable ({why}); request allowed unlimited (on_store_unavailable = \"allow\")"
                );
                Action::Continue
            }
            StoreUnavailable::Deny => {
                sluice_sdk::warn!("shared store unavailable ({why}); request denied (on_store_unavailable = \"deny\")");
                store_unavailable()
            }
            StoreUnavailable::Local => {
                sluice_sdk::warn!(
                    "shared store unavailable ({why}); limiting this replica alone (on_store_unavailable = \"local\")"
                );
                match store::acquire_local(&buckets(&self.settings.local_limits, section), 1) {
                    Ok(decision) => self.decided(Scope::Local, section, &decision),
                    Err(e) => self.refused(Scope::Local, section, e),
                }
            }
        }
    }

    /// The store refused the decision for the buckets of `scope`.
    fn refused(&self, scope: Scope, section: &str, e: StoreError) -> Action {
        let store = match scope {
            Scope::Shared => "shared store",
            Scope::Local => "local store",
        };
        match e {
            StoreError::LimitExceeded if self.settings.on_store_full == StoreFull::Allow => {
                // The host counts the refusal (sluice_shared_state_refused_total).
                sluice_sdk::warn!(
                    "shared-state quota full, {store} kept no bucket for key {section}; request allowed (on_store_full = \"allow\")"
                );
                Action::Continue
            }
            StoreError::LimitExceeded => {
                sluice_sdk::warn!(
                    "shared-state quota full, {store} kept no bucket for key {section}; request denied (on_store_full = \"deny\")"
                );
                Action::Respond(
                    LocalResponse::new(429)
                        .header("content-type", "text/plain; charset=utf-8")
                        .header(headers::RETRY_AFTER, "1")
                        .body("rate limit state full\n"),
                )
            }
            // `acquire-local` never reports this; answer as for a shared outage.
            StoreError::Unavailable(why) => {
                sluice_sdk::error!("{store} unavailable: {why}");
                store_unavailable()
            }
            StoreError::InvalidArgument => {
                sluice_sdk::error!("{store} refused the buckets for key {section}: {e}");
                Action::respond(500, format!("rate-limit: shared state error: {e}\n"))
            }
        }
    }
}

/// One bucket per limit for the request `section`, in configuration order.
fn buckets(limits: &[Limit], section: &str) -> Vec<Bucket> {
    limits
        .iter()
        .map(|limit| {
            let mut key = String::with_capacity(limit.key_prefix.len() + section.len());
            key.push_str(&limit.key_prefix);
            key.push_str(section);
            Bucket::new(key, limit.interval, limit.tolerance)
        })
        .collect()
}

/// The answer when the shared store is unavailable and
/// `on_store_unavailable = "deny"`.
fn store_unavailable() -> Action {
    Action::Respond(
        LocalResponse::new(503)
            .header("content-type", "text/plain; charset=utf-8")
            .header(headers::RETRY_AFTER, "1")
            .body("rate limit store unavailable\n"),
    )
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
    if settings.on_store_unavailable == StoreUnavailable::Local {
        description.push_str("local\n");
        for Limit { key_prefix, .. } in &settings.local_limits {
            description.push_str(key_prefix);
            description.push('\n');
        }
    }
    format!("rate-limit.{:016x}", key::fnv1a_128(description.as_bytes()) as u64)
}

sluice_sdk::export_filter!(RateLimit);
