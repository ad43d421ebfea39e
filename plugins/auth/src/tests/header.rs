//! The JOSE header beyond `alg` and `kid`: `crit` (RFC 7515 §4.1.11) and
//! explicit typing with `typ` (RFC 8725 §3.11).

use super::*;

fn hs_host(config: &str) -> (MockHost, Auth) {
    let host = MockHost::new().config_toml(config);
    let f = filter(&host);
    (host, f)
}

/// A validly signed HS256 token (kid `k1`) whose header also carries every
/// member of `extra`, written as is (so `crit` may be any JSON value).
fn hs_with_header(extra: Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    if let Some(extra) = extra.as_object() {
        for (name, value) in extra {
            header.extras.insert(name.clone(), value.clone());
        }
    }
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    jsonwebtoken::encode(&header, &claims(json!({})), &key).expect("sign test token")
}

/// A header member `typ` with this value (or none).
fn hs_typed(typ: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    header.typ = typ.map(str::to_string);
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    jsonwebtoken::encode(&header, &claims(json!({})), &key).expect("sign test token")
}

#[test]
fn unknown_critical_extension_is_rejected() {
    let (host, mut f) = hs_host(HS_CONFIG);
    let token = hs_with_header(json!({"crit": ["exp-ext"], "exp-ext": 1}));
    assert_invalid_token(with_token(&host, &mut f, &token), "unsupported critical header");
    assert_eq!(host.get_context("auth.subject"), None);
    // Refused before any signature work, and never cached.
    assert_eq!(f.signature_verifications(), 0);
    assert_eq!(f.cached_tokens(), 0);
    // The same token again is refused again.
    assert_invalid_token(with_token(&host, &mut f, &token), "unsupported critical header");
    // The same claims and key without `crit` pass: only the header differs.
    assert_eq!(
        with_token(&host, &mut f, &hs_with_header(json!({"exp-ext": 1}))),
        Action::Continue
    );
}

#[test]
fn malformed_crit_is_rejected() {
    let (host, mut f) = hs_host(HS_CONFIG);
    // RFC 7515 §4.1.11: a non-empty array of extension names that are not
    // registered header parameters. None of these may pass.
    for crit in [json!([]), json!(["alg"]), json!(["kid", "exp-ext"]), json!(null)] {
        let token = hs_with_header(json!({ "crit": crit, "exp-ext": 1 }));
        assert_invalid_token(with_token(&host, &mut f, &token), "unsupported critical header");
    }
    // Not an array of strings: the header itself does not parse.
    for crit in [json!("exp-ext"), json!(1), json!({"exp-ext": 1}), json!([1])] {
        let token = hs_with_header(json!({ "crit": crit, "exp-ext": 1 }));
        assert_invalid_token(with_token(&host, &mut f, &token), "malformed token");
    }
    assert_eq!(f.signature_verifications(), 0);
    assert_eq!(f.cached_tokens(), 0);
}

#[test]
fn typ_is_not_checked_unless_configured() {
    let (host, mut f) = hs_host(HS_CONFIG);
    for typ in [Some("JWT"), Some("at+jwt"), Some("anything"), None] {
        assert_eq!(with_token(&host, &mut f, &hs_typed(typ)), Action::Continue, "{typ:?}");
    }
}

#[test]
fn configured_types_are_required() {
    let config = HS_CONFIG.replace("[jwt]", "[jwt]\ntypes = [\"at+jwt\"]");
    let (host, mut f) = hs_host(&config);
    // Media types compare case-insensitively, and `application/` may be
    // left out (RFC 7515 §4.1.9).
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"] {
        assert_eq!(
            with_token(&host, &mut f, &hs_typed(Some(typ))),
            Action::Continue,
            "{typ}"
        );
    }
    // An ID token or an untyped token is not an access token here.
    for typ in [
        Some("JWT"),
        Some("jwt"),
        Some("at+jwt2"),
        Some("text/at+jwt"),
        Some(""),
        None,
    ] {
        assert_invalid_token(with_token(&host, &mut f, &hs_typed(typ)), "invalid token type");
    }
    assert_eq!(f.signature_verifications(), 4, "refused types cost no signature check");
}

#[test]
fn types_are_checked_when_the_config_loads() {
    let jwt = "[jwt]\nkeys = [{ alg = \"HS256\", secret = \"hs256-test-secret-that-is-32-bytes-or-more\" }]\n";
    for (types, expected) in [
        ("[\"\"]", "jwt.types[0]: must not be empty"),
        ("[\"at+jwt\", \"a b\"]", "jwt.types[1]: `a b` is not a media type"),
        ("\"at+jwt\"", "jwt.types"),
    ] {
        let err = rejected(&format!("{jwt}types = {types}"));
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    filter(&MockHost::new().config_toml(&format!("{jwt}types = [\"JWT\", \"application/at+jwt\"]")));
}

/// A validly signed HS256 token whose header is exactly this JSON text.
fn hs_raw_header(header_json: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = claims(json!({})).to_string();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign test token");
    format!("{message}.{signature}")
}

#[test]
fn crit_is_found_however_it_is_spelled() {
    let (host, mut f) = hs_host(HS_CONFIG);
    let plain = hs_raw_header(r#"{"alg":"HS256","kid":"k1"}"#);
    assert_eq!(with_token(&host, &mut f, &plain), Action::Continue);
    // A JSON escape in the member name is still `crit`.
    let escaped = hs_raw_header(r#"{"alg":"HS256","kid":"k1","\u0063rit":["exp-ext"],"exp-ext":1}"#);
    assert_invalid_token(with_token(&host, &mut f, &escaped), "unsupported critical header");
    // A duplicate member cannot hide it behind a harmless first value: a
    // header with a duplicate member is refused outright (RFC 7515 §4).
    let twice = hs_raw_header(r#"{"alg":"HS256","kid":"k1","crit":null,"crit":["exp-ext"],"exp-ext":1}"#);
    assert_invalid_token(with_token(&host, &mut f, &twice), "malformed token");
}
