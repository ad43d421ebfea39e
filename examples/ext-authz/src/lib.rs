//! Example filter: external authorization, like Envoy's `ext_authz` in HTTP
//! service mode. For every request it asks an authorization service (a
//! cluster) whether to let the request through, using an outbound call
//! (WIT `outbound-http`, sluice 0.1.3).
//!
//! ```toml
//! [[routes.filters]]
//! plugin = "ext-authz"
//! clusters = ["authz"]          # the filter may call this cluster
//! config = { cluster = "authz", path = "/check", timeout_ms = 200 }
//! ```
//!
//! The service gets `POST {path}` with an empty body and the headers
//! `x-ext-authz-method`, `x-ext-authz-path`, `x-ext-authz-client` plus the
//! request headers named in `forward_headers`. It answers:
//! - `200`: allow. The headers named in `allowed_upstream_headers` are
//!   copied from its answer onto the request (any the client sent are
//!   removed first: only the service sets them), and `x-auth-user` goes
//!   into the request context as `ext_authz.user`.
//! - any other status: deny, with that status if it is a 4xx (else 403)
//!   and the service's body (and its `content-type`, `www-authenticate`).
//! - no answer (timeout, unreachable, not allowed): deny with 503, or allow
//!   if `failure_mode_allow` is set.
//!
//! See README.md for the configuration and how to build and test it.

use serde::Deserialize;
use sluice_sdk::limits::MAX_LOCAL_BODY_BYTES;
use sluice_sdk::outbound::{OutboundRequest, OutboundResponse};
use sluice_sdk::{Action, Config, Filter, LocalResponse, Phases, RESERVED_HEADERS, Request, context, is_header_name};
use std::time::Duration;

/// The context key the service's `x-auth-user` is stored under.
pub const USER_KEY: &str = "ext_authz.user";
/// The body of the 503 sent when the service cannot be asked.
pub const UNAVAILABLE: &str = "ext_authz: authorization service unavailable\n";

/// Headers of a denial copied from the service's answer to the client.
const DENIAL_HEADERS: [&str; 2] = ["content-type", "www-authenticate"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    cluster: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u32,
    #[serde(default = "default_forward_headers")]
    forward_headers: Vec<String>,
    #[serde(default = "default_allowed_upstream_headers")]
    allowed_upstream_headers: Vec<String>,
    #[serde(default)]
    failure_mode_allow: bool,
}

fn default_path() -> String {
    "/check".into()
}

fn default_timeout_ms() -> u32 {
    200
}

fn default_forward_headers() -> Vec<String> {
    vec!["authorization".into()]
}

fn default_allowed_upstream_headers() -> Vec<String> {
    vec!["x-auth-user".into()]
}

/// Header names from the configuration, lower case: each must be a valid
/// name a filter may send or set (not a framing header, not `host`).
fn header_names(key: &str, names: Vec<String>) -> Result<Vec<String>, String> {
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let name = name.to_ascii_lowercase();
            if !is_header_name(&name) {
                return Err(format!("{key}[{i}]: {name:?} is not a valid header name"));
            }
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(format!("{key}[{i}]: {name} is managed by the host"));
            }
            Ok(name)
        })
        .collect()
}

/// The filter: its configuration, checked.
pub struct ExtAuthz {
    cluster: String,
    path: String,
    timeout: Duration,
    forward_headers: Vec<String>,
    allowed_upstream_headers: Vec<String>,
    failure_mode_allow: bool,
}

impl Filter for ExtAuthz {
    fn create(config: &Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        if s.cluster.is_empty() {
            return Err("cluster: must name the authorization service's cluster".into());
        }
        if !s.path.starts_with('/') {
            return Err(format!("path: {:?} must start with '/'", s.path));
        }
        if s.timeout_ms == 0 {
            return Err("timeout_ms: must be at least 1".into());
        }
        Ok(ExtAuthz {
            cluster: s.cluster,
            path: s.path,
            timeout: Duration::from_millis(u64::from(s.timeout_ms)),
            forward_headers: header_names("forward_headers", s.forward_headers)?,
            allowed_upstream_headers: header_names("allowed_upstream_headers", s.allowed_upstream_headers)?,
            failure_mode_allow: s.failure_mode_allow,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        let verdict = self.check_request(req).send();
        // Whatever the verdict, the upstream sees only what the service
        // says in these headers, never what the client sent.
        self.strip_upstream_headers(req);
        match verdict {
            Ok(answer) if answer.status == 200 => {
                self.allow(req, &answer);
                Action::Continue
            }
            Ok(answer) => deny(answer),
            Err(e) if self.failure_mode_allow => {
                sluice_sdk::warn!("ext_authz: {}: {e}; allowed (failure_mode_allow)", self.cluster);
                Action::Continue
            }
            Err(e) => {
                sluice_sdk::warn!("ext_authz: {}: {e}", self.cluster);
                Action::respond(503, UNAVAILABLE)
            }
        }
    }
}

impl ExtAuthz {
    /// The question for the service: `POST {path}`, empty body, what the
    /// request is and who sent it, and the forwarded headers.
    fn check_request(&self, req: &Request) -> OutboundRequest {
        let mut check = OutboundRequest::post(&self.cluster, &self.path)
            .timeout(self.timeout)
            .header("x-ext-authz-method", req.method())
            .header("x-ext-authz-path", req.path())
            .header("x-ext-authz-client", req.client_address());
        for name in &self.forward_headers {
            for value in req.header_all(name) {
                check = check.header(name, value);
            }
        }
        check
    }

    fn strip_upstream_headers(&self, req: &mut Request) {
        for name in &self.allowed_upstream_headers {
            if let Err(e) = req.remove_header(name) {
                sluice_sdk::warn!("ext_authz: cannot remove {name}: {e}");
            }
        }
    }

    /// Allowed: copy the service's headers named in
    /// `allowed_upstream_headers` and note the user in the context.
    fn allow(&self, req: &mut Request, answer: &OutboundResponse) {
        for (name, value) in &answer.headers {
            if self
                .allowed_upstream_headers
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name))
                && let Err(e) = req.append_header(name, value)
            {
                sluice_sdk::warn!("ext_authz: not forwarding {name} from the service: {e}");
            }
        }
        if let Some(user) = answer.header("x-auth-user").and_then(|v| std::str::from_utf8(v).ok())
            && let Err(e) = context::set(USER_KEY, user)
        {
            sluice_sdk::warn!("ext_authz: cannot record the user: {e}");
        }
    }
}

/// Denied: the service's status if it is a 4xx (else 403), its body and the
/// headers that explain a denial.
fn deny(answer: OutboundResponse) -> Action {
    let status = if (400..500).contains(&answer.status) {
        answer.status
    } else {
        403
    };
    sluice_sdk::debug!(
        "ext_authz: denied: service answered {}, sending {status}",
        answer.status
    );
    let mut local = LocalResponse::new(status);
    for name in DENIAL_HEADERS {
        if let Some(value) = answer.header(name) {
            local = local.header(name, value);
        }
    }
    // A body the host would refuse in a local response is dropped rather
    // than failing the call.
    if answer.body.len() <= MAX_LOCAL_BODY_BYTES {
        local = local.body(answer.body);
    }
    Action::Respond(local)
}

sluice_sdk::export_filter!(ExtAuthz);

#[cfg(test)]
mod tests;
