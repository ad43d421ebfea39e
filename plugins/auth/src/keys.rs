//! JWT verification keys: loaded from `jwt.keys` (a shared secret, a PEM
//! public key or an inline JWK) and `jwt.jwks`, each checked when the
//! configuration loads and bound to exactly one algorithm.

use crate::config::KeySpec;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, Header, Validation};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value};

/// Every algorithm a key may name, for error messages.
const SUPPORTED: &str = "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";
/// Smallest RSA modulus accepted.
const MIN_RSA_BITS: usize = 2048;

/// A key that verifies signatures of one algorithm.
pub(crate) struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl VerifyKey {
    fn new(kid: Option<String>, alg: Algorithm, key: DecodingKey) -> Self {
        // Only the signature and the algorithm are left to jsonwebtoken: it
        // would read the system clock for exp/nbf, so the filter checks the
        // registered claims itself against the host's clock.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        VerifyKey {
            kid,
            alg,
            key,
            validation,
        }
    }

    /// The algorithm this key verifies.
    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Whether this key may verify a token with this header: the algorithm
    /// must be the key's, and when both name a key id they must agree.
    pub(crate) fn accepts(&self, header: &Header) -> bool {
        self.alg == header.alg
            && match (&self.kid, &header.kid) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    }

    /// Check the signature and decode the claims (no claim is validated).
    pub(crate) fn verify(&self, token: &str) -> jsonwebtoken::errors::Result<Map<String, Value>> {
        jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation).map(|data| data.claims)
    }
}

/// Load `jwt.keys` and `jwt.jwks` (possibly no key: the caller decides
/// whether that is enough).
pub(crate) fn load(specs: &[KeySpec], jwks: Option<&Value>) -> Result<Vec<VerifyKey>, String> {
    let mut keys = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        keys.push(from_spec(spec, &format!("jwt.keys[{i}]"))?);
    }
    if let Some(jwks) = jwks {
        keys.extend(from_jwks(jwks)?);
    }
    Ok(keys)
}

fn parse_alg(path: &str, name: &str) -> Result<Algorithm, String> {
    name.parse()
        .map_err(|_| format!("{path}: unknown algorithm `{name}` (supported: {SUPPORTED})"))
}

fn from_spec(spec: &KeySpec, path: &str) -> Result<VerifyKey, String> {
    let alg = spec
        .alg
        .as_deref()
        .map(|name| parse_alg(&format!("{path}.alg"), name))
        .transpose()?;
    if spec.kid.as_deref() == Some("") {
        return Err(format!("{path}.kid: must not be empty"));
    }
    let kid = spec.kid.clone();
    match (&spec.secret, &spec.pem, &spec.jwk) {
        (Some(secret), None, None) => {
            let alg = alg.ok_or_else(|| format!("{path}.alg: required with `secret` (HS256, HS384 or HS512)"))?;
            if alg.family() != AlgorithmFamily::Hmac {
                return Err(format!(
                    "{path}.alg: {alg:?} needs a public key (`pem` or `jwk`), not a shared `secret`"
                ));
            }
            let key = DecodingKey::from_secret(secret.as_bytes());
            check_key(alg, &key, &format!("{path}.secret"))?;
            Ok(VerifyKey::new(kid, alg, key))
        }
        (None, Some(pem), None) => {
            let alg = alg.ok_or_else(|| format!("{path}.alg: required with `pem`"))?;
            let at = format!("{path}.pem");
            let key = match alg.family() {
                AlgorithmFamily::Hmac => {
                    return Err(format!(
                        "{path}.alg: {alg:?} is an HMAC algorithm: give a `secret`, not a `pem`"
                    ));
                }
                AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem.as_bytes()),
                AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem.as_bytes()),
                AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem.as_bytes()),
            }
            .map_err(|_| not_valid(&at, alg))?;
            check_key(alg, &key, &at)?;
            Ok(VerifyKey::new(kid, alg, key))
        }
        (None, None, Some(jwk)) => from_jwk(jwk, &format!("{path}.jwk"), kid.as_deref(), alg)?
            .ok_or_else(|| format!("{path}.jwk: an encryption key (`use` = \"enc\") cannot verify signatures")),
        _ => Err(format!("{path}: give exactly one of `secret`, `pem` or `jwk`")),
    }
}

/// `jwt.jwks`: a JWKS document as a JSON string or a table. Encryption keys
/// and key types this filter cannot verify with are skipped; malformed
/// signature keys are errors.
fn from_jwks(jwks: &Value) -> Result<Vec<VerifyKey>, String> {
    let parsed;
    let doc = match jwks {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text).map_err(|e| format!("jwt.jwks: not valid JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    let entries = jwks_entries(doc).ok_or("jwt.jwks: expected a JWKS document: an object with a `keys` array")?;
    let keys = jwks_keys(entries, "jwt.jwks.", Source::Config)?;
    if keys.is_empty() {
        return Err("jwt.jwks: no usable signature verification key".into());
    }
    Ok(keys)
}

/// A JWKS document fetched from `jwt.jwks_uri` (`version` is the host's
/// document version, for the log). Unlike a configured JWKS, a malformed
/// entry is skipped with a warning rather than refusing the document (RFC
/// 7517 §5: ignore JWKs that are not understood or lack members), and so is
/// an `oct` entry: a shared secret has no place in a published document.
/// The error is a short description without document content.
pub(crate) fn from_remote_jwks(body: &[u8], version: u64) -> Result<Vec<VerifyKey>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not valid JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let entries = jwks_entries(&doc).ok_or("not a JWKS document (an object with a `keys` array)")?;
    let keys = jwks_keys(entries, "", Source::Remote(version))?;
    if keys.is_empty() {
        return Err("no usable signature verification key".into());
    }
    Ok(keys)
}

/// Where a JWKS comes from, which decides what a bad entry does.
#[derive(Clone, Copy)]
enum Source {
    /// `jwt.jwks`: a malformed entry is a configuration error.
    Config,
    /// `jwt.jwks_uri`, this document version: a malformed entry is skipped.
    Remote(u64),
}

/// The `keys` array of a JWKS document.
fn jwks_entries(doc: &Value) -> Option<&Vec<Value>> {
    doc.get("keys").and_then(Value::as_array)
}

/// The signature keys among JWKS entries; `prefix` goes before `keys[i]` in
/// messages. Entries not meant for this filter are skipped.
fn jwks_keys(entries: &[Value], prefix: &str, source: Source) -> Result<Vec<VerifyKey>, String> {
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("{prefix}keys[{i}]");
        let origin = match source {
            Source::Config => String::new(),
            Source::Remote(version) => format!("jwt.jwks_uri version {version}: "),
        };
        if let Some(why) = unusable(entry) {
            sluice_sdk::debug!("auth: {origin}{path}: skipped: {why}");
            continue;
        }
        if matches!(source, Source::Remote(_)) && entry.get("kty").and_then(Value::as_str) == Some("oct") {
            sluice_sdk::warn!("auth: {origin}{path}: skipped: a shared secret (`oct`) is not taken from a URI");
            continue;
        }
        match from_jwk(entry, &path, None, None) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(e) => match source {
                Source::Config => return Err(e),
                // The messages name members and algorithms, never values.
                Source::Remote(_) => sluice_sdk::warn!("auth: {origin}skipped: {e}"),
            },
        }
    }
    Ok(keys)
}

/// Why a JWKS entry is not for this filter, if it is not: a key type or
/// algorithm that is not a supported signature one.
fn unusable(jwk: &Value) -> Option<&'static str> {
    let alg = jwk.get("alg").and_then(Value::as_str);
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    if jwk.get("use").and_then(Value::as_str) == Some("enc") {
        return Some("encryption key");
    }
    if alg.is_some_and(|a| a.parse::<Algorithm>().is_err()) {
        return Some("unsupported algorithm");
    }
    match (kty, crv) {
        (Some("RSA" | "oct"), _) | (Some("EC"), Some("P-256" | "P-384")) | (Some("OKP"), Some("Ed25519")) => None,
        _ => Some("unsupported key type or curve"),
    }
}

fn field<'a>(jwk: &'a Map<String, Value>, name: &str, path: &str) -> Result<&'a str, String> {
    match jwk.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("{path}.{name}: expected a non-empty string")),
        None => Err(format!("{path}: missing `{name}`")),
    }
}

/// One JWK. `kid` and `alg` from the surrounding `jwt.keys` entry, if any,
/// must agree with the JWK's own. `Ok(None)` for an encryption key.
fn from_jwk(
    jwk: &Value,
    path: &str,
    spec_kid: Option<&str>,
    spec_alg: Option<Algorithm>,
) -> Result<Option<VerifyKey>, String> {
    let obj = jwk
        .as_object()
        .ok_or_else(|| format!("{path}: expected a JWK object"))?;
    if obj.get("use").and_then(Value::as_str) == Some("enc") {
        return Ok(None);
    }
    let jwk_kid = match obj.get("kid") {
        None => None,
        Some(_) => Some(field(obj, "kid", path)?),
    };
    let kid = match (spec_kid, jwk_kid) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!("{path}.kid: `{b}` differs from the entry's kid `{a}`"));
        }
        (a, b) => a.or(b).map(str::to_string),
    };
    let jwk_alg = match obj.get("alg") {
        None => None,
        Some(_) => Some(parse_alg(&format!("{path}.alg"), field(obj, "alg", path)?)?),
    };
    if let (Some(a), Some(b)) = (spec_alg, jwk_alg)
        && a != b
    {
        return Err(format!("{path}.alg: {b:?} differs from the entry's alg {a:?}"));
    }
    let named = spec_alg.or(jwk_alg);
    let kty = field(obj, "kty", path)?;
    let (alg, key) = match kty {
        "RSA" => {
            let alg = named.unwrap_or(Algorithm::RS256);
            let key = DecodingKey::from_rsa_components(field(obj, "n", path)?, field(obj, "e", path)?)
                .map_err(|_| not_valid(path, alg))?;
            (alg, key)
        }
        "EC" => {
            let alg = match field(obj, "crv", path)? {
                "P-256" => Algorithm::ES256,
                "P-384" => Algorithm::ES384,
                other => return Err(format!("{path}.crv: unsupported curve `{other}` (P-256 or P-384)")),
            };
            if let Some(n) = named
                && n != alg
            {
                return Err(format!("{path}.alg: {n:?} does not fit the key's curve (use {alg:?})"));
            }
            let key = DecodingKey::from_ec_components(field(obj, "x", path)?, field(obj, "y", path)?)
                .map_err(|_| not_valid(path, alg))?;
            (alg, key)
        }
        "OKP" => {
            let crv = field(obj, "crv", path)?;
            if crv != "Ed25519" {
                return Err(format!("{path}.crv: unsupported curve `{crv}` (Ed25519)"));
            }
            let alg = Algorithm::EdDSA;
            if let Some(n) = named
                && n != alg
            {
                return Err(format!("{path}.alg: {n:?} does not fit an Ed25519 key (use EdDSA)"));
            }
            let key = DecodingKey::from_ed_components(field(obj, "x", path)?).map_err(|_| not_valid(path, alg))?;
            (alg, key)
        }
        "oct" => {
            let alg = named.unwrap_or(Algorithm::HS256);
            let k = field(obj, "k", path)?;
            let secret = URL_SAFE_NO_PAD
                .decode(k.trim_end_matches('='))
                .map_err(|_| format!("{path}.k: not valid base64url"))?;
            (alg, DecodingKey::from_secret(&secret))
        }
        other => {
            return Err(format!(
                "{path}.kty: unsupported key type `{other}` (RSA, EC, OKP or oct)"
            ));
        }
    };
    if key.family() != alg.family() {
        return Err(format!("{path}.alg: {alg:?} does not fit a key of type `{kty}`"));
    }
    check_key(alg, &key, path)?;
    Ok(Some(VerifyKey::new(kid, alg, key)))
}

fn not_valid(path: &str, alg: Algorithm) -> String {
    let what = match alg {
        Algorithm::ES256 => "P-256 public key",
        Algorithm::ES384 => "P-384 public key",
        Algorithm::EdDSA => "Ed25519 public key",
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "HMAC secret",
        _ => "RSA public key",
    };
    format!("{path}: not a valid {what}")
}

/// Check the key material now, so a bad key fails the configuration rather
/// than every request.
fn check_key(alg: Algorithm, key: &DecodingKey, path: &str) -> Result<(), String> {
    match alg.family() {
        AlgorithmFamily::Hmac => {
            let min = match alg {
                Algorithm::HS384 => 48,
                Algorithm::HS512 => 64,
                _ => 32,
            };
            let len = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
            if len < min {
                // RFC 7518 §3.2: the key must be at least as long as the hash.
                return Err(format!("{path}: too short for {alg:?}: use at least {min} bytes"));
            }
        }
        AlgorithmFamily::Rsa => {
            // jsonwebtoken parses RSA keys lazily, on every verification.
            let parsed = match key.kind() {
                DecodingKeyKind::SecretOrDer(der) => rsa::RsaPublicKey::from_pkcs1_der(der).ok(),
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(n), rsa::BigUint::from_bytes_be(e)).ok()
                }
            };
            let bits = parsed.ok_or_else(|| not_valid(path, alg))?.n().bits();
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "{path}: RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
                ));
            }
        }
        AlgorithmFamily::Ec | AlgorithmFamily::Ed => {
            // jsonwebtoken slices Ed25519 keys to 32 bytes without checking
            // the length first (a shorter key panics, a longer one is cut).
            let len = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
            if alg.family() == AlgorithmFamily::Ed && len != 32 {
                return Err(not_valid(path, alg));
            }
            // The verifier parses the point when it is built.
            (DEFAULT_PROVIDER.verifier_factory)(&alg, key).map_err(|_| not_valid(path, alg))?;
        }
    }
    Ok(())
}
