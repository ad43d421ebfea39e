//! Filter tests against the SDK's mock host. Tokens are minted natively with
//! jsonwebtoken from the keys in `fixtures/`.

mod api_key;
mod config;
mod header;
mod jwt;
mod keys;
mod remote_jwks;

use crate::Auth;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sluice_sdk::Action;
use sluice_sdk::mock::MockHost;

/// The mock host's clock at start: 2026-01-01T00:00:00Z.
pub(crate) const NOW: u64 = 1_767_225_600;

pub(crate) const HS_SECRET: &str = "hs256-test-secret-that-is-32-bytes-or-more";
pub(crate) const RSA_PRIVATE: &str = include_str!("../../fixtures/rsa-private.pem");
pub(crate) const RSA_PUBLIC: &str = include_str!("../../fixtures/rsa-public.pem");
pub(crate) const EC_PRIVATE: &str = include_str!("../../fixtures/ec-private.pem");
pub(crate) const EC_PUBLIC: &str = include_str!("../../fixtures/ec-public.pem");
pub(crate) const ED_PRIVATE: &str = include_str!("../../fixtures/ed25519-private.pem");
pub(crate) const ED_PUBLIC: &str = include_str!("../../fixtures/ed25519-public.pem");
pub(crate) const JWKS: &str = include_str!("../../fixtures/jwks.json");

/// A JWT config with one HS256 key and every optional feature used.
pub(crate) const HS_CONFIG: &str = r#"
subject_header = "x-auth-subject"
[jwt]
issuers = ["https://id.example.com"]
audiences = ["orders"]
keys = [{ kid = "k1", alg = "HS256", secret = "hs256-test-secret-that-is-32-bytes-or-more" }]
forward_claims = { email = "x-auth-email" }
context_claims = ["email", "tenant"]
"#;

/// Claims that pass `HS_CONFIG`, with `extra` merged over them (a `null`
/// removes a claim).
pub(crate) fn claims(extra: Value) -> Value {
    let mut base = json!({
        "sub": "alice",
        "iss": "https://id.example.com",
        "aud": "orders",
        "iat": NOW,
        "exp": NOW + 3600,
        "email": "alice@example.com",
        "tenant": "acme",
    });
    if let (Some(map), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

pub(crate) fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).expect("sign test token")
}

/// An HS256 token with kid `k1` signed with `HS_SECRET`.
pub(crate) fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        Some("k1"),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
        claims,
    )
}

pub(crate) fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa fixture")
}
pub(crate) fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec fixture")
}
pub(crate) fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).expect("ed fixture")
}

pub(crate) fn filter(host: &MockHost) -> Auth {
    match host.create::<Auth>() {
        Ok(f) => f,
        Err(e) => panic!("config rejected: {e}"),
    }
}

/// The error a config is rejected with.
pub(crate) fn rejected(toml: &str) -> String {
    match MockHost::new().config_toml(toml).create::<Auth>() {
        Ok(_) => panic!("config accepted:\n{toml}"),
        Err(e) => e,
    }
}

/// Start a new request carrying `Authorization: Bearer <token>` and run it.
pub(crate) fn with_token(host: &MockHost, f: &mut Auth, token: &str) -> Action {
    host.start_request();
    host.request_header("authorization", &format!("Bearer {token}"));
    host.on_request_headers(f)
}

/// A local response, taken apart.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub challenges: Vec<String>,
    pub body: String,
    pub content_type: Option<String>,
}

pub(crate) fn reply(action: Action) -> Reply {
    let Action::Respond(r) = action else {
        panic!("expected a local response, got Continue")
    };
    let values = |name: &str| -> Vec<String> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    Reply {
        status: r.status,
        challenges: values("www-authenticate"),
        content_type: values("content-type").into_iter().next(),
        body: String::from_utf8_lossy(&r.body).into_owned(),
    }
}

/// Assert a 401 `invalid_token` with this description.
#[track_caller]
pub(crate) fn assert_invalid_token(action: Action, description: &str) {
    let r = reply(action);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.challenges,
        [format!(
            "Bearer realm=\"sluice\", error=\"invalid_token\", error_description=\"{description}\""
        )]
    );
    assert_eq!(r.body, format!("unauthorized: {description}\n"));
}

/// A PEM or JSON document as a TOML literal string.
pub(crate) fn lit(text: &str) -> String {
    format!("'''\n{text}'''")
}

/// One JWK of the fixture JWKS, by kid, as JSON.
pub(crate) fn fixture_jwk(kid: &str) -> Value {
    let jwks: Value = serde_json::from_str(JWKS).expect("jwks fixture");
    jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .cloned()
        .expect("kid in fixture")
}

/// A JSON object as a TOML inline table (flat, string values only).
pub(crate) fn inline_table(value: &Value) -> String {
    let fields: Vec<String> = value
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    format!("{{ {} }}", fields.join(", "))
}
