//! `authz`: allow or deny requests by who sent them and what they ask for,
//! in the spirit of Istio's `AuthorizationPolicy`.
//!
//! ```toml
//! [[routes.filters.config.rules]]
//! name = "deny-legacy"
//! action = "deny"
//! [routes.filters.config.rules.when]
//! principals = ["spiffe://example.org/ns/legacy/*"]
//! paths = ["/admin", "/admin/*"]
//!
//! [[routes.filters.config.rules]]
//! name = "frontend"
//! action = "allow"
//! [routes.filters.config.rules.when]
//! principals = ["spiffe://example.org/ns/shop/sa/frontend"]
//! methods = ["GET", "HEAD"]
//! ```
//!
//! A request matching any DENY rule is denied; otherwise, if there are ALLOW
//! rules, it must match one of them. Denied requests get `403 RBAC: access
//! denied`; the rule's name goes to the log (at info) and to the request
//! context (`authz.decision`, `authz.rule`), never to the client. Conditions
//! read the peer certificate (`sluice_sdk::connection`), the request line,
//! headers, and the `auth` filter's `auth.subject` / `auth.claim.<name>`
//! context values, each only when a rule needs it. See the README.

mod cidr;
mod config;
mod facts;
mod pattern;
mod rule;
#[cfg(test)]
mod tests;

use config::Policy;
use facts::Facts;
use rule::{Decision, Rule};
use sluice_sdk::{Action, Config, Filter, Phases, Request, context};

/// Context key of the outcome: `allow` or `deny`.
pub const DECISION_KEY: &str = "authz.decision";
/// Context key of the rule that decided, if one did.
pub const RULE_KEY: &str = "authz.rule";
/// The body of every denial.
pub const DENIED_BODY: &str = "RBAC: access denied\n";

/// The filter: the compiled rules of one route.
pub struct Authz {
    policy: Policy,
}

impl Filter for Authz {
    fn create(config: &Config) -> Result<Self, String> {
        Ok(Authz {
            policy: Policy::from_config(config)?,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        let policy = &self.policy;
        let facts = Facts::new(req, &policy.claim_keys, &policy.claim_list_keys, &policy.header_names);
        if let Some(rule) = first_match(&policy.deny, &facts) {
            sluice_sdk::info!("denied by rule {:?}: {} {}", rule.name, facts.method(), facts.path());
            record(Decision::Deny, Some(&rule.name));
            return denied();
        }
        if policy.allow.is_empty() {
            record(Decision::Allow, None);
            return Action::Continue;
        }
        match first_match(&policy.allow, &facts) {
            Some(rule) => {
                sluice_sdk::debug!("allowed by rule {:?}: {} {}", rule.name, facts.method(), facts.path());
                record(Decision::Allow, Some(&rule.name));
                Action::Continue
            }
            None => {
                sluice_sdk::info!("denied: no allow rule matched: {} {}", facts.method(), facts.path());
                record(Decision::Deny, None);
                denied()
            }
        }
    }
}

fn first_match<'r>(rules: &'r [Rule], facts: &Facts<'_>) -> Option<&'r Rule> {
    rules.iter().find(|rule| rule.matches(facts))
}

/// Leave the outcome in the request context for the access log and later
/// filters. A failure to record does not change the decision.
fn record(decision: Decision, rule: Option<&str>) {
    let result = context::set(DECISION_KEY, decision.as_str()).and_then(|()| match rule {
        Some(name) => context::set(RULE_KEY, name),
        None => {
            context::remove(RULE_KEY);
            Ok(())
        }
    });
    if let Err(e) = result {
        sluice_sdk::warn!("could not record the decision in the request context: {e}");
    }
}

fn denied() -> Action {
    Action::respond(403, DENIED_BODY)
}

sluice_sdk::export_filter!(Authz);
