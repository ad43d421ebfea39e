//! `auth`: authenticate requests with API keys or JWT bearer tokens, and
//! authorize them by scope and claim, per route.
//!
//! ```toml
//! [routes.filters.config]
//! realm = "sluice"                   # WWW-Authenticate realm
//! strip_credentials = true           # drop the credentials before forwarding
//! subject_header = "x-auth-subject"  # forward the subject upstream
//!
//! [routes.filters.config.api_keys]
//! header = "x-api-key"
//! query = "api_key"
//! keys = [{ id = "ci", sha256 = "<64 hex>" }]
//!
//! [routes.filters.config.jwt]
//! issuers = ["https://id.example.com"]
//! audiences = ["orders"]
//! keys = [{ kid = "r1", alg = "RS256", pem = "-----BEGIN PUBLIC KEY-----…" }]
//! jwks_uri = "https://id.example.com/.well-known/jwks.json"  # kept fresh by the host
//! jwks_cluster = "idp"               # also listed in the entry's `clusters`
//! required_scopes = ["orders:read"]
//! forward_claims = { email = "x-auth-email" }
//! ```
//!
//! A bearer token (`Authorization: Bearer …`) decides when present and `jwt`
//! is configured; otherwise an API key does; otherwise the request gets 401
//! with a challenge per configured method. On success the identity goes into
//! the request context (`auth.subject`, `auth.method`, `auth.claim.<name>`)
//! for later filters. Verified tokens are cached per instance until they
//! expire. Credentials never reach the log or a response body. See the
//! README for the full reference.

mod api_key;
mod cache;
mod challenge;
mod config;
mod jwt;
mod keys;
mod remote;
#[cfg(test)]
mod tests;

use api_key::ApiKeys;
use challenge::{Challenges, Denial};
use config::Settings;
use jwt::Jwt;
use sluice_sdk::{Action, Config, Filter, HostError, Phases, Request, clock, context};
use std::sync::Arc;

/// Who the request is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// JWT `sub`, or the API key's id.
    subject: Option<String>,
    /// Forwarded claims: (request header, value).
    headers: Vec<(String, String)>,
    /// Context claims: (context key, value).
    context: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Jwt,
    ApiKey,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Jwt => "jwt",
            Method::ApiKey => "api-key",
        }
    }
}

/// The filter: one per route and instance.
pub struct Auth {
    strip_credentials: bool,
    subject_header: Option<String>,
    api_keys: Option<ApiKeys>,
    jwt: Option<Jwt>,
    challenges: Challenges,
}

impl Auth {
    /// How many JWT signature verifications this instance has done. Tokens
    /// served from the cache do not count.
    pub fn signature_verifications(&self) -> u64 {
        self.jwt.as_ref().map_or(0, Jwt::verifications)
    }

    /// How many verified tokens this instance has cached.
    pub fn cached_tokens(&self) -> usize {
        self.jwt.as_ref().map_or(0, Jwt::cached)
    }

    fn authenticate(&mut self, req: &Request) -> Result<(Method, Arc<Identity>), Denial> {
        if let Some(jwt) = self.jwt.as_mut() {
            match bearer_token(req) {
                Bearer::Token(token) => {
                    return jwt
                        .authenticate(&token, clock::unix_seconds())
                        .map(|identity| (Method::Jwt, identity));
                }
                Bearer::Malformed(reason) => return Err(Denial::BadRequest(reason)),
                Bearer::Absent => {}
            }
        }
        if let Some(keys) = &self.api_keys
            && let Some(presented) = keys.presented(req)
        {
            let id = keys.check(&presented).ok_or(Denial::InvalidApiKey)?;
            let identity = Arc::new(Identity {
                subject: Some(id),
                headers: Vec::new(),
                context: Vec::new(),
            });
            return Ok((Method::ApiKey, identity));
        }
        Err(Denial::NoCredentials)
    }

    /// Strip the credentials, forward the identity, record it in the context.
    fn admit(&self, req: &mut Request, method: Method, identity: &Identity) -> Result<(), HostError> {
        if self.strip_credentials {
            if method == Method::Jwt {
                req.remove_header("authorization")?;
            }
            if let Some(keys) = &self.api_keys {
                keys.strip(req)?;
            }
        }
        // Headers this filter owns are never taken from the client.
        if let Some(name) = &self.subject_header {
            req.remove_header(name)?;
            if let Some(subject) = &identity.subject {
                set_claim_header(req, name, subject)?;
            }
        }
        if let Some(jwt) = &self.jwt {
            for name in jwt.forward_headers() {
                req.remove_header(name)?;
            }
        }
        for (name, value) in &identity.headers {
            set_claim_header(req, name, value)?;
        }
        context::set("auth.method", method.name())?;
        if let Some(subject) = &identity.subject {
            context::set("auth.subject", subject)?;
        }
        for (key, value) in &identity.context {
            context::set(key, value)?;
        }
        Ok(())
    }
}

/// Set a header from a claim; a value that cannot be a header value (CR,
/// LF, NUL) is left out rather than failing the request.
fn set_claim_header(req: &mut Request, name: &str, value: &str) -> Result<(), HostError> {
    match req.set_header(name, value) {
        Err(HostError::InvalidValue) => {
            sluice_sdk::warn!("auth: not forwarding {name}: the value is not a valid header value");
            Ok(())
        }
        other => other,
    }
}

enum Bearer {
    Absent,
    Token(String),
    Malformed(&'static str),
}

/// The bearer token of `Authorization`, if the header uses that scheme
/// (case-insensitive). Other schemes count as absent.
fn bearer_token(req: &Request) -> Bearer {
    let values = req.header_all("authorization");
    let Some(first) = values.first() else {
        return Bearer::Absent;
    };
    // The checked conversion validates ASCII a word at a time; only an
    // invalid value pays for the lossy one (whose byte-wise pass was a
    // measurable share of this filter's time).
    let text = match std::str::from_utf8(first) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(first),
    };
    let text = text.trim();
    let (scheme, token) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Bearer::Absent;
    }
    let token = token.trim();
    if values.len() > 1 {
        Bearer::Malformed("more than one Authorization header")
    } else if token.is_empty() {
        Bearer::Malformed("empty bearer token")
    } else if contains_whitespace(token) {
        Bearer::Malformed("malformed Authorization header")
    } else {
        Bearer::Token(token.to_string())
    }
}

/// Whether `text` has whitespace in it (`char::is_whitespace`). A token is
/// ASCII, so its bytes are checked as they are; decoding every character
/// was the largest part of this filter's request phase.
fn contains_whitespace(text: &str) -> bool {
    if text.is_ascii() {
        // The ASCII characters `char::is_whitespace` accepts: TAB, LF, VT,
        // FF, CR and space.
        text.bytes().any(|b| matches!(b, b'\t'..=b'\r' | b' '))
    } else {
        text.contains(char::is_whitespace)
    }
}

impl Filter for Auth {
    fn create(config: &Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        config::quotable("realm", &settings.realm)?;
        let subject_header = settings
            .subject_header
            .as_deref()
            .map(|name| config::header_name("subject_header", name))
            .transpose()?;
        let api_keys = settings.api_keys.as_ref().map(ApiKeys::from_settings).transpose()?;
        let jwt = settings.jwt.as_ref().map(Jwt::from_settings).transpose()?;
        if let (Some(subject), Some(jwt)) = (&subject_header, &jwt)
            && jwt.forward_headers().any(|h| h == subject)
        {
            return Err(format!(
                "jwt.forward_claims: header `{subject}` is already the subject_header"
            ));
        }
        if api_keys.is_none() && jwt.is_none() {
            return Err("nothing to check: configure `api_keys`, `jwt` or both".into());
        }
        let challenges = Challenges::new(
            &settings.realm,
            jwt.is_some(),
            api_keys.as_ref().map(|k| (k.header(), k.query())),
            jwt.as_ref().map_or(&[], |j| j.required_scopes()),
        );
        Ok(Auth {
            strip_credentials: settings.strip_credentials,
            subject_header,
            api_keys,
            jwt,
            challenges,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        let denial = match self.authenticate(req) {
            Ok((method, identity)) => match self.admit(req, method, &identity) {
                Ok(()) => return Action::Continue,
                Err(e) => {
                    sluice_sdk::warn!("auth: could not apply the identity: {e}");
                    Denial::Internal
                }
            },
            Err(denial) => denial,
        };
        sluice_sdk::debug!("auth: {} {}", denial.status(), denial.reason());
        self.challenges.respond(&denial)
    }
}

sluice_sdk::export_filter!(Auth);
