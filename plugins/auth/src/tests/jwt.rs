//! Bearer tokens with an HS256 key: the request flow, the registered claims,
//! scopes and claims, the cache, and what reaches the log.

use super::*;
use sluice_sdk::{Filter, Phases};
use std::time::Duration;

fn hs_host() -> (MockHost, Auth) {
    let host = MockHost::new().config_toml(HS_CONFIG);
    let f = filter(&host);
    (host, f)
}

#[test]
fn good_token_admits_records_forwards_and_strips() {
    let (host, mut f) = hs_host();
    assert_eq!(f.phases(), Phases::REQUEST);
    let token = hs(&claims(json!({})));
    host.request_header("authorization", &format!("Bearer {token}"))
        // A client cannot supply the headers the filter owns.
        .request_header("x-auth-subject", "mallory")
        .request_header("x-auth-email", "mallory@example.com")
        .request_header("accept", "text/plain");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("alice"));
    assert_eq!(host.get_context("auth.method").as_deref(), Some("jwt"));
    assert_eq!(
        host.get_context("auth.claim.email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(host.get_context("auth.claim.tenant").as_deref(), Some("acme"));
    assert_eq!(host.get_request_header("x-auth-subject").as_deref(), Some("alice"));
    assert_eq!(
        host.get_request_header("x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(host.get_request_header("authorization"), None);
    assert_eq!(host.get_request_header("accept").as_deref(), Some("text/plain"));
    let emails = host
        .get_request_headers()
        .iter()
        .filter(|(n, _)| n == "x-auth-email")
        .count();
    assert_eq!(emails, 1);
}

#[test]
fn absent_claims_are_not_forwarded_and_spoofed_headers_are_dropped() {
    let (host, mut f) = hs_host();
    let token = hs(&claims(json!({"email": null, "tenant": ["a", "b"]})));
    host.request_header("authorization", &format!("Bearer {token}"))
        .request_header("x-auth-email", "mallory@example.com");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_request_header("x-auth-email"), None);
    assert_eq!(host.get_context("auth.claim.email"), None);
    assert_eq!(host.get_context("auth.claim.tenant").as_deref(), Some("a,b"));
    assert_eq!(
        host.get_context("auth.claim_list.tenant").as_deref(),
        Some(r#"["a","b"]"#),
        "an array claim is also kept unambiguously"
    );
}

#[test]
fn claim_that_cannot_be_a_header_value_is_left_out() {
    let (host, mut f) = hs_host();
    let token = hs(&claims(json!({"email": "a@b\r\nx-admin: 1"})));
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
    assert_eq!(host.get_request_header("x-auth-email"), None);
    assert_eq!(host.get_request_header("x-admin"), None);
}

#[test]
fn scheme_is_case_insensitive_and_keep_credentials_works() {
    let host = MockHost::new().config_toml(&format!("strip_credentials = false\n{HS_CONFIG}"));
    let mut f = filter(&host);
    let token = hs(&claims(json!({})));
    for scheme in ["bearer", "BEARER", "Bearer"] {
        host.start_request();
        host.request_header("authorization", &format!("{scheme}  {token}"));
        assert_eq!(host.on_request_headers(&mut f), Action::Continue, "{scheme}");
        assert!(host.get_request_header("authorization").is_some());
    }
}

#[test]
fn expired_token_is_rejected_even_from_the_cache() {
    let (host, mut f) = hs_host();
    let token = hs(&claims(json!({"exp": NOW + 60})));
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
    // Within the default 60 s of leeway after exp: still accepted.
    host.advance(Duration::from_secs(60 + 59));
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
    host.advance(Duration::from_secs(1));
    assert_invalid_token(with_token(&host, &mut f, &token), "token expired");
    // All three requests were served by one verification.
    assert_eq!(f.signature_verifications(), 1);
    assert_eq!(host.get_context("auth.subject"), None);

    // The clock is at NOW + 120: a token with exp = NOW + 59 is past its
    // leeway and is refused on first sight.
    let old = hs(&claims(json!({"exp": NOW + 59})));
    assert_invalid_token(with_token(&host, &mut f, &old), "token expired");
}

#[test]
fn leeway_is_configurable() {
    let host = MockHost::new().config_toml(&HS_CONFIG.replace("[jwt]", "[jwt]\nleeway_seconds = 0"));
    let mut f = filter(&host);
    assert_invalid_token(
        with_token(&host, &mut f, &hs(&claims(json!({"exp": NOW})))),
        "token expired",
    );
    assert_invalid_token(
        with_token(&host, &mut f, &hs(&claims(json!({"nbf": NOW + 1})))),
        "token not yet valid",
    );
    assert_eq!(
        with_token(&host, &mut f, &hs(&claims(json!({"nbf": NOW})))),
        Action::Continue
    );
}

#[test]
fn not_before_in_the_future_is_rejected() {
    let (host, mut f) = hs_host();
    let early = hs(&claims(json!({"nbf": NOW + 120})));
    assert_invalid_token(with_token(&host, &mut f, &early), "token not yet valid");
    // Within leeway of nbf: accepted.
    let skewed = hs(&claims(json!({"nbf": NOW + 30})));
    assert_eq!(with_token(&host, &mut f, &skewed), Action::Continue);
    // Once the clock reaches it, the early token passes too.
    host.advance(Duration::from_secs(60));
    assert_eq!(with_token(&host, &mut f, &early), Action::Continue);
}

#[test]
fn exp_is_required_and_must_be_numeric() {
    let (host, mut f) = hs_host();
    let token = hs(&claims(json!({"exp": null})));
    assert_invalid_token(with_token(&host, &mut f, &token), "missing exp claim");
    let token = hs(&claims(json!({"exp": "tomorrow"})));
    assert_invalid_token(with_token(&host, &mut f, &token), "invalid exp claim");
    let token = hs(&claims(json!({"nbf": -5})));
    assert_invalid_token(with_token(&host, &mut f, &token), "invalid nbf claim");
    let token = hs(&claims(json!({"exp": (NOW + 10) as f64 + 0.5})));
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
}

#[test]
fn wrong_issuer_is_rejected() {
    let (host, mut f) = hs_host();
    for iss in [
        json!("https://evil.example.com"),
        json!(null),
        json!(["https://id.example.com"]),
    ] {
        let token = hs(&claims(json!({ "iss": iss })));
        assert_invalid_token(with_token(&host, &mut f, &token), "invalid issuer");
    }
}

#[test]
fn wrong_audience_is_rejected() {
    let (host, mut f) = hs_host();
    for aud in [json!("billing"), json!(null), json!(["billing", "search"]), json!([])] {
        let token = hs(&claims(json!({ "aud": aud })));
        assert_invalid_token(with_token(&host, &mut f, &token), "invalid audience");
    }
    let token = hs(&claims(json!({"aud": ["billing", "orders"]})));
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
}

#[test]
fn bad_signature_is_rejected() {
    let (host, mut f) = hs_host();
    let other = EncodingKey::from_secret(b"another-secret-that-is-also-32-bytes-long");
    let forged = sign(Algorithm::HS256, Some("k1"), &other, &claims(json!({})));
    assert_invalid_token(with_token(&host, &mut f, &forged), "invalid signature");

    // A genuine signature over different claims.
    let genuine = hs(&claims(json!({})));
    let evil = hs(&claims(json!({"sub": "root"})));
    let g: Vec<&str> = genuine.split('.').collect();
    let e: Vec<&str> = evil.split('.').collect();
    let spliced = format!("{}.{}.{}", g[0], e[1], g[2]);
    assert_invalid_token(with_token(&host, &mut f, &spliced), "invalid signature");
    assert_eq!(f.cached_tokens(), 0, "rejected tokens are not cached");
}

#[test]
fn malformed_tokens_are_invalid() {
    let (host, mut f) = hs_host();
    assert_invalid_token(with_token(&host, &mut f, "not-a-jwt"), "malformed token");
    assert_invalid_token(with_token(&host, &mut f, "a.b.c"), "malformed token");
    // alg "none" is not an algorithm jsonwebtoken knows: never accepted.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let payload = hs(&claims(json!({})))
        .split('.')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_default();
    assert_invalid_token(
        with_token(&host, &mut f, &format!("{none_header}.{payload}.")),
        "malformed token",
    );
    assert_invalid_token(with_token(&host, &mut f, &"a".repeat(17 * 1024)), "token too large");
}

#[test]
fn malformed_authorization_is_a_bad_request() {
    let (host, mut f) = hs_host();
    for value in ["Bearer", "Bearer ", "Bearer a b"] {
        host.start_request();
        host.request_header("authorization", value);
        let r = reply(host.on_request_headers(&mut f));
        assert_eq!(r.status, 400, "{value:?}");
        assert!(
            r.challenges[0].starts_with("Bearer realm=\"sluice\", error=\"invalid_request\", error_description="),
            "{r:?}"
        );
        assert!(r.body.starts_with("bad request: "), "{r:?}");
    }
    let token = hs(&claims(json!({})));
    host.start_request();
    host.request_header("authorization", &format!("Bearer {token}"))
        .request_header("authorization", "Bearer other");
    assert_eq!(reply(host.on_request_headers(&mut f)).status, 400);
}

#[test]
fn missing_scope_is_forbidden() {
    let config = HS_CONFIG.replace("[jwt]", "[jwt]\nrequired_scopes = [\"orders:read\", \"orders:write\"]");
    let host = MockHost::new().config_toml(&config);
    let mut f = filter(&host);
    let token = hs(&claims(json!({"scope": "orders:read profile"})));
    let r = reply(with_token(&host, &mut f, &token));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.challenges,
        ["Bearer realm=\"sluice\", error=\"insufficient_scope\", scope=\"orders:read orders:write\""]
    );
    assert_eq!(r.body, "forbidden: missing scope orders:write\n");
    assert_eq!(r.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(host.get_context("auth.subject"), None);

    for granted in [
        json!({"scope": "orders:write orders:read"}),
        json!({"scp": ["orders:read", "orders:write"]}),
        json!({"scp": "orders:read orders:write"}),
        json!({"scope": "orders:read", "scp": ["orders:write"]}),
    ] {
        let token = hs(&claims(granted.clone()));
        assert_eq!(with_token(&host, &mut f, &token), Action::Continue, "{granted}");
    }
}

#[test]
fn required_claim_mismatch_is_forbidden() {
    let config = HS_CONFIG.replace(
        "[jwt]",
        "[jwt]\nrequired_claims = { tenant = \"acme\", level = [2, 3], admin = true }",
    );
    let host = MockHost::new().config_toml(&config);
    let mut f = filter(&host);
    let ok = json!({"level": 3, "admin": true});
    assert_eq!(with_token(&host, &mut f, &hs(&claims(ok))), Action::Continue);
    let ok = json!({"tenant": ["globex", "acme"], "level": 2.0, "admin": true});
    assert_eq!(with_token(&host, &mut f, &hs(&claims(ok))), Action::Continue);

    for (bad, claim) in [
        (json!({"tenant": "globex", "level": 3, "admin": true}), "tenant"),
        (json!({"tenant": null, "level": 3, "admin": true}), "tenant"),
        (json!({"level": 4, "admin": true}), "level"),
        (json!({"level": "3", "admin": true}), "level"),
        (json!({"level": 3, "admin": "true"}), "admin"),
    ] {
        let r = reply(with_token(&host, &mut f, &hs(&claims(bad.clone()))));
        assert_eq!(r.status, 403, "{bad}");
        assert_eq!(r.challenges, ["Bearer realm=\"sluice\", error=\"insufficient_scope\""]);
        assert_eq!(r.body, format!("forbidden: claim {claim} not accepted\n"));
    }
}

#[test]
fn cache_verifies_each_token_once() {
    let (host, mut f) = hs_host();
    let a = hs(&claims(json!({})));
    let b = hs(&claims(json!({"sub": "bob"})));
    assert_eq!(with_token(&host, &mut f, &a), Action::Continue);
    assert_eq!(f.signature_verifications(), 1);
    assert_eq!(with_token(&host, &mut f, &a), Action::Continue);
    // The cached identity is applied in full on a hit.
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("alice"));
    assert_eq!(
        host.get_request_header("x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(f.signature_verifications(), 1, "second request must not re-verify");
    assert_eq!(with_token(&host, &mut f, &b), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("bob"));
    assert_eq!(f.signature_verifications(), 2);
    assert_eq!(f.cached_tokens(), 2);

    // With the cache off, every request verifies.
    let host = MockHost::new().config_toml(&HS_CONFIG.replace("[jwt]", "[jwt]\ncache_size = 0"));
    let mut f = filter(&host);
    assert_eq!(with_token(&host, &mut f, &a), Action::Continue);
    assert_eq!(with_token(&host, &mut f, &a), Action::Continue);
    assert_eq!(f.signature_verifications(), 2);
}

#[test]
fn cache_keeps_forbidden_outcomes_and_stays_bounded() {
    let config = HS_CONFIG.replace("[jwt]", "[jwt]\ncache_size = 2\nrequired_scopes = [\"x\"]");
    let host = MockHost::new().config_toml(&config);
    let mut f = filter(&host);
    let denied = hs(&claims(json!({})));
    assert_eq!(reply(with_token(&host, &mut f, &denied)).status, 403);
    assert_eq!(reply(with_token(&host, &mut f, &denied)).status, 403);
    assert_eq!(f.signature_verifications(), 1);
    for i in 0..5 {
        let token = hs(&claims(json!({"scope": "x", "sub": format!("user-{i}")})));
        assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
        assert!(f.cached_tokens() <= 2);
    }
}

#[test]
fn key_is_chosen_by_kid() {
    let config = r#"
[jwt]
keys = [
  { kid = "k1", alg = "HS256", secret = "first-secret-of-thirty-two-bytes-or-more" },
  { kid = "k2", alg = "HS256", secret = "second-secret-of-thirty-two-bytes-or-more" },
]
"#;
    let host = MockHost::new().config_toml(config);
    let mut f = filter(&host);
    let k2 = EncodingKey::from_secret(b"second-secret-of-thirty-two-bytes-or-more");
    let token = sign(Algorithm::HS256, Some("k2"), &k2, &claims(json!({})));
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
    assert_eq!(f.signature_verifications(), 1, "only the key named by kid is tried");

    let token = sign(Algorithm::HS256, Some("k9"), &k2, &claims(json!({})));
    assert_invalid_token(with_token(&host, &mut f, &token), "unknown key id");
    // Without a kid, every key of the algorithm may be tried.
    let token = sign(Algorithm::HS256, None, &k2, &claims(json!({})));
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
    // Signed by k2 but claiming k1: k1 does not verify it.
    let token = sign(Algorithm::HS256, Some("k1"), &k2, &claims(json!({})));
    assert_invalid_token(with_token(&host, &mut f, &token), "invalid signature");
}

#[test]
fn secrets_never_reach_logs_or_bodies() {
    let config = format!(
        "{HS_CONFIG}required_scopes = [\"nope\"]\n[api_keys]\nkeys = [{{ id = \"ci\", key = \"plain-api-key-value\" }}]\n"
    );
    let host = MockHost::new().config_toml(&config);
    let mut f = filter(&host);
    let good = hs(&claims(json!({"scope": "nope"})));
    let forbidden = hs(&claims(json!({})));
    let expired = hs(&claims(json!({"exp": NOW - 3600, "scope": "nope"})));
    let forged = sign(
        Algorithm::HS256,
        Some("k1"),
        &EncodingKey::from_secret(b"another-secret-that-is-also-32-bytes-long"),
        &claims(json!({})),
    );
    let mut bodies = String::new();
    for token in [&good, &forbidden, &expired, &forged] {
        if let Action::Respond(r) = with_token(&host, &mut f, token) {
            bodies.push_str(&String::from_utf8_lossy(&r.body));
            for (_, v) in &r.headers {
                bodies.push_str(&String::from_utf8_lossy(v));
            }
        }
    }
    for key in ["plain-api-key-value", "wrong-api-key-value"] {
        host.start_request();
        host.request_header("x-api-key", key);
        if let Action::Respond(r) = host.on_request_headers(&mut f) {
            bodies.push_str(&String::from_utf8_lossy(&r.body));
        }
    }
    let logs: String = host.logs().iter().map(|(_, m)| format!("{m}\n")).collect();
    assert!(logs.contains("auth: 401"), "denials are logged: {logs}");
    for secret in [
        HS_SECRET,
        "plain-api-key-value",
        "wrong-api-key-value",
        &good,
        &forbidden,
        &expired,
        &forged,
    ] {
        assert!(!logs.contains(secret), "log leaks a secret: {logs}");
        assert!(!bodies.contains(secret), "response leaks a secret: {bodies}");
        // Not even a token's signature or payload part.
        for part in secret.split('.').filter(|p| p.len() > 16) {
            assert!(!logs.contains(part) && !bodies.contains(part));
        }
    }
}

/// Whitespace inside the bearer token (ASCII or not) is a malformed header,
/// answered with 400 before any signature work; a cached token still
/// admits on the requests after it.
#[test]
fn whitespace_inside_a_bearer_token_is_malformed() {
    let (host, mut f) = hs_host();
    let token = hs(&claims(json!({})));
    let (head, tail) = token.split_at(10);
    for gap in ["\u{b}", "\u{c}", "\r", "\u{a0}", "\u{2028}"] {
        let r = reply(with_token(&host, &mut f, &format!("{head}{gap}{tail}")));
        assert_eq!(r.status, 400, "a {gap:?} inside the token");
    }
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue, "from the cache");
    assert_eq!(f.signature_verifications(), 1);
}
