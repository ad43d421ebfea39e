//! The configuration as written in a route, and the checks shared by the
//! sections. Each section turns its settings into its runtime form in its own
//! module (`api_key`, `keys`, `jwt`); every error names the offending key.

use serde::Deserialize;
use sluice_sdk::{RESERVED_HEADERS, is_header_name};
use std::collections::BTreeMap;

/// The filter's table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// `realm` of every `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Remove the credentials this filter read before forwarding.
    #[serde(default = "default_true")]
    pub strip_credentials: bool,
    /// Forward the subject as this request header.
    #[serde(default)]
    pub subject_header: Option<String>,
    #[serde(default)]
    pub api_keys: Option<ApiKeySettings>,
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
}

/// `[api_keys]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeySettings {
    #[serde(default = "default_api_key_header")]
    pub header: String,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub keys: Vec<ApiKeyEntry>,
}

/// One entry of `api_keys.keys`: an id and either the key or its SHA-256.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyEntry {
    pub id: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// `[jwt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtSettings {
    #[serde(default)]
    pub issuers: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    /// A JWKS document: a JSON string or a table.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// A JWKS document the host fetches and keeps fresh (see `remote`).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The cluster `jwks_uri` is fetched through; required with it.
    #[serde(default)]
    pub jwks_cluster: Option<String>,
    /// Options only with `jwks_uri`; `None` takes the default.
    #[serde(default)]
    pub jwks_min_refresh_seconds: Option<u64>,
    #[serde(default)]
    pub jwks_max_refresh_seconds: Option<u64>,
    #[serde(default)]
    pub jwks_max_bytes: Option<u32>,
    #[serde(default)]
    pub required_scopes: Vec<String>,
    #[serde(default)]
    pub required_claims: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    #[serde(default)]
    pub context_claims: Vec<String>,
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// Accepted `typ` header values (RFC 8725 §3.11); empty accepts any.
    #[serde(default)]
    pub types: Vec<String>,
}

/// One entry of `jwt.keys`: exactly one of `secret`, `pem` or `jwk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeySpec {
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub pem: Option<String>,
    #[serde(default)]
    pub jwk: Option<serde_json::Value>,
}

fn default_realm() -> String {
    "sluice".into()
}
fn default_true() -> bool {
    true
}
fn default_api_key_header() -> String {
    "x-api-key".into()
}
fn default_leeway() -> u64 {
    60
}
fn default_cache_size() -> usize {
    1024
}

/// Largest accepted `leeway_seconds`: a day of clock skew is already absurd.
pub(crate) const MAX_LEEWAY_SECONDS: u64 = 86_400;
/// Largest accepted `cache_size`.
pub(crate) const MAX_CACHE_SIZE: usize = 1 << 20;

/// Check a header name the filter reads or writes; returns it in lower case.
pub(crate) fn header_name(key: &str, name: &str) -> Result<String, String> {
    if !is_header_name(name) {
        return Err(format!("{key}: `{name}` is not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(format!("{key}: `{name}` is managed by the proxy and cannot be set"));
    }
    Ok(lower)
}

/// Text that goes inside a quoted-string of `WWW-Authenticate`: printable
/// ASCII without `"` or `\`, so it needs no escaping.
pub(crate) fn quotable(key: &str, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("{key}: must not be empty"));
    }
    if !text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(format!(
            "{key}: `{text}` must be printable ASCII without quotes or backslashes"
        ));
    }
    Ok(())
}

/// An OAuth scope token (RFC 6749 §3.3): printable ASCII, no space, `"` or `\`.
pub(crate) fn scope_token(key: &str, scope: &str) -> Result<(), String> {
    if scope.is_empty() || !scope.bytes().all(|b| b > 0x20 && b < 0x7f && b != b'"' && b != b'\\') {
        return Err(format!(
            "{key}: `{scope}` is not a valid scope (printable ASCII, no spaces, quotes or backslashes)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_checked_and_lowered() {
        assert_eq!(header_name("k", "X-Auth-Subject").as_deref(), Ok("x-auth-subject"));
        assert!(header_name("k", "bad name").unwrap_err().contains("k: `bad name`"));
        assert!(header_name("k", "Host").unwrap_err().contains("managed by the proxy"));
        assert!(header_name("k", "").is_err());
    }

    #[test]
    fn quoted_text_and_scopes() {
        assert!(quotable("realm", "my realm").is_ok());
        assert!(quotable("realm", "a\"b").is_err());
        assert!(quotable("realm", "").is_err());
        assert!(scope_token("s", "orders:read").is_ok());
        assert!(scope_token("s", "a b").is_err());
        assert!(scope_token("s", "a\\b").is_err());
    }
}
