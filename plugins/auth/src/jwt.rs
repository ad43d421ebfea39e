//! JWT bearer tokens: the protected header (no `crit`, an accepted `typ`),
//! the signature (jsonwebtoken, one algorithm per key), then the registered
//! claims against the host's clock, then the route's required scopes and
//! claims. Keys come from the configuration and, with `jwt.jwks_uri`, from
//! a JWKS the host keeps fresh (`remote`). Outcomes of verified tokens are
//! cached per instance, until they expire or the remote key set changes.

use crate::Identity;
use crate::cache::{Entry, Outcome, TokenCache};
use crate::challenge::Denial;
use crate::config::{self, JwtSettings, MAX_CACHE_SIZE, MAX_LEEWAY_SECONDS};
use crate::keys::{self, VerifyKey};
use crate::remote::{RemoteKeys, RemoteSettings};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use jsonwebtoken::errors::ErrorKind;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Longer bearer tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

type Claims = Map<String, Value>;

/// The denial for a token that does not even parse.
const MALFORMED: Denial = Denial::InvalidToken("malformed token");

pub(crate) struct Jwt {
    /// Keys from `jwt.keys` and `jwt.jwks`.
    keys: Vec<VerifyKey>,
    /// Keys from `jwt.jwks_uri`.
    remote: Option<RemoteKeys>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    /// Accepted `typ` values as full media types in lower case; empty
    /// accepts any `typ`, or none.
    types: Vec<String>,
    leeway: u64,
    required_scopes: Vec<String>,
    /// Claim name and the values it may have.
    required_claims: Vec<(String, Vec<Value>)>,
    /// Claim name and the request header it is forwarded as.
    forward: Vec<(String, String)>,
    context_claims: Vec<String>,
    cache: TokenCache,
    verifications: u64,
}

impl Jwt {
    pub(crate) fn from_settings(s: &JwtSettings) -> Result<Self, String> {
        for (key, list) in [
            ("jwt.issuers", &s.issuers),
            ("jwt.audiences", &s.audiences),
            ("jwt.types", &s.types),
        ] {
            if let Some(i) = list.iter().position(String::is_empty) {
                return Err(format!("{key}[{i}]: must not be empty"));
            }
        }
        for (i, typ) in s.types.iter().enumerate() {
            if typ.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
                return Err(format!("jwt.types[{i}]: `{typ}` is not a media type"));
            }
        }
        if s.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(format!("jwt.leeway_seconds: at most {MAX_LEEWAY_SECONDS}"));
        }
        if s.cache_size > MAX_CACHE_SIZE {
            return Err(format!("jwt.cache_size: at most {MAX_CACHE_SIZE}"));
        }
        for (i, scope) in s.required_scopes.iter().enumerate() {
            config::scope_token(&format!("jwt.required_scopes[{i}]"), scope)?;
        }
        let mut required_claims = Vec::new();
        for (name, value) in &s.required_claims {
            let accepted = match value {
                Value::Array(items) if !items.is_empty() && items.iter().all(is_scalar) => items.clone(),
                v if is_scalar(v) => vec![v.clone()],
                _ => {
                    return Err(format!(
                        "jwt.required_claims.{name}: expected a string, number, boolean or a non-empty list of them"
                    ));
                }
            };
            required_claims.push((name.clone(), accepted));
        }
        let mut forward = Vec::new();
        for (claim, header) in &s.forward_claims {
            let key = format!("jwt.forward_claims.{claim}");
            let header = config::header_name(&key, header)?;
            if forward.iter().any(|(_, h)| *h == header) {
                return Err(format!("{key}: header `{header}` is already used by another claim"));
            }
            forward.push((claim.clone(), header));
        }
        for (i, name) in s.context_claims.iter().enumerate() {
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!("jwt.context_claims[{i}]: must be a non-empty claim name"));
            }
        }
        let static_keys = keys::load(&s.keys, s.jwks.as_ref())?;
        let remote = RemoteSettings::from_settings(s)?;
        if static_keys.is_empty() && remote.is_none() {
            return Err("jwt.keys: no verification keys: give `jwt.keys`, `jwt.jwks` or `jwt.jwks_uri`".into());
        }
        // Last, once everything else is known to be fine.
        let remote = remote.map(RemoteKeys::subscribe).transpose()?;
        Ok(Jwt {
            keys: static_keys,
            remote,
            issuers: s.issuers.clone(),
            audiences: s.audiences.clone(),
            types: s.types.iter().map(|t| media_type(t)).collect(),
            leeway: s.leeway_seconds,
            required_scopes: s.required_scopes.clone(),
            required_claims,
            forward,
            context_claims: s.context_claims.clone(),
            cache: TokenCache::new(s.cache_size),
            verifications: 0,
        })
    }

    pub(crate) fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }

    /// The headers claims are forwarded as: removed from every admitted
    /// request first, so a client cannot supply them itself.
    pub(crate) fn forward_headers(&self) -> impl Iterator<Item = &str> {
        self.forward.iter().map(|(_, header)| header.as_str())
    }

    /// Signature verifications done so far (each key tried counts once).
    pub(crate) fn verifications(&self) -> u64 {
        self.verifications
    }

    /// Verified tokens in the cache.
    pub(crate) fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Authenticate and authorize a bearer token at `now` (Unix seconds).
    pub(crate) fn authenticate(&mut self, token: &str, now: u64) -> Outcome {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Denial::InvalidToken("token too large"));
        }
        // Before the cache: a token signed by a key that was rotated out
        // must not be admitted from an entry made while it was in.
        if let Some(remote) = &mut self.remote
            && remote.sync()
        {
            self.cache.clear();
        }
        let fingerprint = self.cache.fingerprint(token);
        if let Some(entry) = self.cache.get(&fingerprint) {
            // The signature was checked when the entry was made; the clock
            // has moved since, so the validity window is checked again.
            return match check_time(entry.exp, entry.nbf, now, self.leeway) {
                Ok(()) => entry.outcome.clone(),
                Err(reason) => {
                    self.cache.remove(&fingerprint);
                    Err(Denial::InvalidToken(reason))
                }
            };
        }
        let claims = self.verify(token)?;
        let (exp, nbf) = self.validate(&claims, now).map_err(Denial::InvalidToken)?;
        let outcome = self.authorize(&claims).map(|()| Arc::new(self.identity(&claims)));
        self.cache.insert(
            fingerprint,
            Entry {
                exp,
                nbf,
                outcome: outcome.clone(),
            },
            now,
            self.leeway,
        );
        outcome
    }

    /// Check the header, find the keys that may have signed the token and
    /// check the signature.
    fn verify(&mut self, token: &str) -> Result<Claims, Denial> {
        let header = protected_header(token)?;
        if !self.type_accepted(header.typ.as_deref()) {
            return Err(Denial::InvalidToken("invalid token type"));
        }
        // A kid no key has: the issuer may have rotated its keys since the
        // host last fetched them. One refresh per request at most; the host
        // limits them to one per `jwks_min_refresh_seconds`.
        if header.kid.is_some() && !self.all_keys().any(|k| k.accepts(&header)) {
            self.refresh_remote();
        }
        let remote_keys = self.remote.as_ref().map_or(&[][..], RemoteKeys::keys);
        let mut result = None;
        let mut attempts = 0;
        for key in self.keys.iter().chain(remote_keys).filter(|k| k.accepts(&header)) {
            attempts += 1;
            match key.verify(token) {
                Ok(claims) => {
                    result = Some(Ok(claims));
                    break;
                }
                // Another key with the same algorithm (and no kid) may fit.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => {
                    result = Some(Err(Denial::InvalidToken(describe(e.kind()))));
                    break;
                }
            }
        }
        self.verifications += attempts;
        match result {
            Some(r) => r,
            None if attempts > 0 => Err(Denial::InvalidToken("invalid signature")),
            None => match self.remote.as_ref().and_then(RemoteKeys::unavailable) {
                // No key could be tried and the remote set is still missing:
                // the right key may well be in it.
                Some(reason) => Err(Denial::Unavailable(format!(
                    "signing keys are not available yet ({reason})"
                ))),
                None if self.all_keys().any(|k| k.alg() == header.alg) => Err(Denial::InvalidToken("unknown key id")),
                None => Err(Denial::InvalidToken("algorithm not accepted")),
            },
        }
    }

    /// The configured keys, then the remote ones.
    fn all_keys(&self) -> impl Iterator<Item = &VerifyKey> {
        let remote = self.remote.as_ref().map_or(&[][..], RemoteKeys::keys);
        self.keys.iter().chain(remote)
    }

    /// Have the host fetch the remote JWKS now, if there is one and it has
    /// been available (while it is not, the request gets 503 instead of
    /// waiting). A new key set empties the cache.
    fn refresh_remote(&mut self) {
        if let Some(remote) = &mut self.remote
            && remote.unavailable().is_none()
            && remote.refresh()
        {
            self.cache.clear();
        }
    }

    /// Explicit typing (RFC 8725 §3.11): with `jwt.types` set, a token of
    /// another kind (an ID token, say) is not taken for an access token even
    /// when the same issuer signed both with the same key.
    fn type_accepted(&self, typ: Option<&str>) -> bool {
        self.types.is_empty() || typ.is_some_and(|t| self.types.contains(&media_type(t)))
    }

    /// The registered claims: exp (required), nbf, iss, aud. Returns exp and nbf.
    fn validate(&self, claims: &Claims, now: u64) -> Result<(u64, Option<u64>), &'static str> {
        let exp = numeric(claims.get("exp").ok_or("missing exp claim")?).ok_or("invalid exp claim")?;
        let nbf = match claims.get("nbf") {
            Some(v) => Some(numeric(v).ok_or("invalid nbf claim")?),
            None => None,
        };
        check_time(exp, nbf, now, self.leeway)?;
        if !self.issuers.is_empty() {
            match claims.get("iss") {
                Some(Value::String(iss)) if self.issuers.contains(iss) => {}
                _ => return Err("invalid issuer"),
            }
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => self.audiences.contains(aud),
                Some(Value::Array(auds)) => auds
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|aud| self.audiences.iter().any(|a| a == aud)),
                _ => false,
            };
            if !ok {
                return Err("invalid audience");
            }
        }
        Ok((exp, nbf))
    }

    /// The route's required scopes and claims.
    fn authorize(&self, claims: &Claims) -> Result<(), Denial> {
        let granted = granted_scopes(claims);
        let missing: Vec<&str> = self
            .required_scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !granted.contains(s))
            .collect();
        if !missing.is_empty() {
            return Err(Denial::Forbidden(format!("missing scope {}", missing.join(" "))));
        }
        for (name, accepted) in &self.required_claims {
            let ok = match claims.get(name) {
                Some(Value::Array(items)) => items.iter().any(|item| accepted.iter().any(|a| same(item, a))),
                Some(value) => accepted.iter().any(|a| same(value, a)),
                None => false,
            };
            if !ok {
                return Err(Denial::Forbidden(format!("claim {name} not accepted")));
            }
        }
        Ok(())
    }

    fn identity(&self, claims: &Claims) -> Identity {
        let text = |name: &str| claims.get(name).and_then(claim_text);
        Identity {
            subject: text("sub"),
            headers: self
                .forward
                .iter()
                .filter_map(|(claim, header)| Some((header.clone(), text(claim)?)))
                .collect(),
            context: self
                .context_claims
                .iter()
                .flat_map(|name| context_entries(name, claims.get(name)))
                .collect(),
        }
    }
}

/// The protected header of a compact JWS (exactly three parts). Decoded here
/// rather than by jsonwebtoken alone because of `crit`; refusing before the
/// signature check also spares a token the filter must refuse anyway.
fn protected_header(token: &str) -> Result<Header, Denial> {
    let mut parts = token.split('.');
    let (Some(encoded), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(MALFORMED);
    };
    // The same base64url flavour jsonwebtoken decodes the header with.
    let json = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| MALFORMED)?;
    let header: Header = serde_json::from_slice(&json).map_err(|_| MALFORMED)?;
    // RFC 7515 §4.1.11: a JWS listing a critical extension the recipient does
    // not understand is invalid, and this filter understands none. A
    // malformed `crit` (empty, naming a standard parameter) is invalid too.
    // `Header` reads `"crit": null` as absent, so the raw JSON decides.
    let probe: CritProbe = serde_json::from_slice(&json).map_err(|_| MALFORMED)?;
    if probe.crit {
        return Err(Denial::InvalidToken("unsupported critical header"));
    }
    Ok(header)
}

/// Whether a JSON object has a `crit` member, whatever its value.
#[derive(Deserialize)]
struct CritProbe {
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// Called only for a member that is there; the value itself is skipped.
fn present<'de, D: Deserializer<'de>>(value: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(value).map(|_| true)
}

/// A `typ` value as a full media type in lower case: media types compare
/// case-insensitively, and `application/` is implied when there is no `/`
/// (RFC 7515 §4.1.9), so `at+jwt` and `application/AT+JWT` are the same.
fn media_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    if lower.contains('/') {
        lower
    } else {
        format!("application/{lower}")
    }
}

/// Whether a token with these times is valid at `now`, allowing `leeway`
/// seconds of clock skew either way.
fn check_time(exp: u64, nbf: Option<u64>, now: u64, leeway: u64) -> Result<(), &'static str> {
    if now >= exp.saturating_add(leeway) {
        return Err("token expired");
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err("token not yet valid");
    }
    Ok(())
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm not accepted",
        ErrorKind::InvalidSignature => "invalid signature",
        _ => "malformed token",
    }
}

/// A NumericDate: whole or fractional seconds, not negative.
fn numeric(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// Equality that treats `5` and `5.0` alike.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// Scopes from `scope` (space separated) and `scp` (string or array).
fn granted_scopes(claims: &Claims) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// The context entries for one claim: `auth.claim.<name>` as text and, for
/// an array, also `auth.claim_list.<name>` as a JSON array of its elements'
/// texts, so a reader can tell `["a", "b"]` from the string `"a,b"`.
fn context_entries(name: &str, value: Option<&Value>) -> Vec<(String, String)> {
    let Some(value) = value else { return Vec::new() };
    let Some(text) = claim_text(value) else {
        return Vec::new();
    };
    let mut out = vec![(format!("auth.claim.{name}"), text)];
    if let Value::Array(items) = value {
        let texts: Vec<String> = items.iter().filter_map(claim_text).collect();
        if let Ok(json) = serde_json::to_string(&texts) {
            out.push((format!("auth.claim_list.{name}"), json));
        }
    }
    out
}

/// A claim as text for a header or the context: strings as they are,
/// numbers and booleans as JSON text, lists of those joined with `,`.
fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => items
            .iter()
            .map(|item| if item.is_array() { None } else { claim_text(item) })
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.join(",")),
        Value::Null | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_window() {
        assert_eq!(check_time(100, None, 99, 0), Ok(()));
        assert_eq!(check_time(100, None, 100, 0), Err("token expired"));
        assert_eq!(check_time(100, None, 159, 60), Ok(()));
        assert_eq!(check_time(100, None, 160, 60), Err("token expired"));
        assert_eq!(check_time(1000, Some(200), 139, 60), Err("token not yet valid"));
        assert_eq!(check_time(1000, Some(200), 140, 60), Ok(()));
        assert_eq!(check_time(u64::MAX, None, u64::MAX - 1, 60), Ok(()));
    }

    #[test]
    fn claim_helpers() {
        assert_eq!(numeric(&json!(5)), Some(5));
        assert_eq!(numeric(&json!(5.9)), Some(5));
        assert_eq!(numeric(&json!(-1)), None);
        assert_eq!(numeric(&json!("5")), None);
        assert!(same(&json!(5), &json!(5.0)));
        assert!(!same(&json!(5), &json!("5")));
        assert_eq!(claim_text(&json!(["a", 1, true])).as_deref(), Some("a,1,true"));
        assert_eq!(claim_text(&json!({"a": 1})), None);
        assert_eq!(claim_text(&json!([["a"]])), None);
        let claims = json!({"scope": "a b", "scp": ["c"]});
        assert_eq!(granted_scopes(claims.as_object().unwrap()), ["a", "b", "c"]);
    }
}
