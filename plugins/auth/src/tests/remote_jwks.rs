//! Keys from `jwt.jwks_uri`: the 503 before they arrive, rotation (by a new
//! document version and by the refresh an unknown kid triggers), the cache
//! forgetting tokens of rotated-out keys, invalid documents, configuration.

use super::*;
use sluice_sdk::LogLevel;

const URI: &str = "https://id.example.com/.well-known/jwks.json";

/// A `[jwt]` with only the remote JWKS, plus `extra` lines.
fn remote_config(extra: &str) -> String {
    format!("[jwt]\njwks_uri = \"{URI}\"\njwks_cluster = \"idp\"\n{extra}\n")
}

/// A host whose filter entry lists the `idp` cluster.
fn host_with(config: &str) -> MockHost {
    let host = MockHost::new().config_toml(config);
    host.clusters("app", &["app", "idp"]);
    host
}

/// A JWKS document with these keys of the fixture JWKS.
fn jwks(kids: &[&str]) -> String {
    let keys: Vec<Value> = kids.iter().map(|kid| fixture_jwk(kid)).collect();
    json!({ "keys": keys }).to_string()
}

/// A JWKS with the fixture keys `ec-1` and the RSA key `rsa-1` published
/// under the new kid `rsa-2`: what the issuer serves after rotating.
fn rotated() -> String {
    let mut rsa = fixture_jwk("rsa-1");
    rsa["kid"] = json!("rsa-2");
    json!({ "keys": [fixture_jwk("ec-1"), rsa] }).to_string()
}

fn rsa_token(sub: &str) -> String {
    sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa_key(),
        &claims(json!({ "sub": sub })),
    )
}

fn ec_token(sub: &str) -> String {
    sign(
        Algorithm::ES256,
        Some("ec-1"),
        &ec_key(),
        &claims(json!({ "sub": sub })),
    )
}

/// Assert the 503 of keys that have not arrived, with this reason.
#[track_caller]
fn assert_unavailable(action: Action, reason: &str) {
    let Action::Respond(r) = action else {
        panic!("expected a 503, got Continue")
    };
    let header = |name: &str| -> Vec<String> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    assert_eq!(r.status, 503);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("auth: signing keys are not available yet ({reason})\n")
    );
    assert_eq!(header("retry-after"), ["1"]);
    assert_eq!(header("cache-control"), ["no-store"]);
    assert!(header("www-authenticate").is_empty());
}

fn warnings(host: &MockHost) -> Vec<String> {
    host.logs()
        .into_iter()
        .filter(|(level, _)| *level == LogLevel::Warn)
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn keys_arrive_and_tokens_pass() {
    let host = host_with(&remote_config(""));
    host.document(URI, jwks(&["rsa-1", "ec-1"]));
    let mut f = filter(&host);
    assert_eq!(with_token(&host, &mut f, &rsa_token("alice")), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("alice"));
    assert_eq!(with_token(&host, &mut f, &ec_token("bob")), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("bob"));
    // Nothing changed: the second sight of a token comes from the cache.
    assert_eq!(with_token(&host, &mut f, &rsa_token("alice")), Action::Continue);
    assert_eq!(f.signature_verifications(), 2);
    // A kid the document lacks, with no newer version to fetch.
    let other = sign(Algorithm::RS256, Some("rsa-9"), &rsa_key(), &claims(json!({})));
    assert_invalid_token(with_token(&host, &mut f, &other), "unknown key id");
}

#[test]
fn unavailable_keys_are_a_503_until_they_arrive() {
    let host = host_with(&remote_config(""));
    let mut f = filter(&host);
    let token = rsa_token("alice");
    // Nothing fetched yet: the mock's reason, whatever it says.
    let Action::Respond(r) = with_token(&host, &mut f, &token) else {
        panic!("admitted without keys")
    };
    assert_eq!(r.status, 503);
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.starts_with("auth: signing keys are not available yet (") && body.ends_with(")\n"),
        "{body}"
    );
    host.document_error(URI, "connection refused");
    assert_unavailable(with_token(&host, &mut f, &token), "connection refused");
    assert_eq!(host.get_context("auth.subject"), None);
    // Requests without a token are unaffected.
    host.start_request();
    assert_eq!(reply(host.on_request_headers(&mut f)).status, 401);

    host.document(URI, jwks(&["rsa-1"]));
    assert_eq!(with_token(&host, &mut f, &token), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("alice"));
}

#[test]
fn static_keys_work_while_remote_keys_are_missing() {
    let config = remote_config(
        "keys = [{ kid = \"k1\", alg = \"HS256\", secret = \"hs256-test-secret-that-is-32-bytes-or-more\" }]",
    );
    let host = host_with(&config);
    host.document_error(URI, "status 500");
    let mut f = filter(&host);
    assert_eq!(with_token(&host, &mut f, &hs(&claims(json!({})))), Action::Continue);
    // A static key was tried and failed: the verdict stands.
    let forged = sign(
        Algorithm::HS256,
        Some("k1"),
        &EncodingKey::from_secret(b"another-secret-that-is-also-32-bytes-long"),
        &claims(json!({})),
    );
    assert_invalid_token(with_token(&host, &mut f, &forged), "invalid signature");
    // No static key fits: the remote one might.
    assert_unavailable(with_token(&host, &mut f, &rsa_token("alice")), "status 500");
    // Both sets are used once the document is there.
    host.document(URI, jwks(&["rsa-1"]));
    assert_eq!(with_token(&host, &mut f, &rsa_token("alice")), Action::Continue);
    assert_eq!(
        with_token(&host, &mut f, &hs(&claims(json!({"sub": "carol"})))),
        Action::Continue
    );
}

#[test]
fn rotation_by_a_new_version_drops_the_old_key_even_from_the_cache() {
    let host = host_with(&remote_config(""));
    host.document(URI, jwks(&["rsa-1"]));
    let mut f = filter(&host);
    let old = rsa_token("alice");
    assert_eq!(with_token(&host, &mut f, &old), Action::Continue);
    assert_eq!(with_token(&host, &mut f, &old), Action::Continue);
    assert_eq!(f.cached_tokens(), 1);
    // Before the rotation, neither new key verifies.
    let new = ec_token("bob");
    assert_invalid_token(with_token(&host, &mut f, &new), "algorithm not accepted");
    let renamed = sign(Algorithm::RS256, Some("rsa-2"), &rsa_key(), &claims(json!({})));
    assert_invalid_token(with_token(&host, &mut f, &renamed), "unknown key id");

    // The issuer rotates: ec-1 and rsa-2 in, rsa-1 out. The cached token
    // of rsa-1 is refused on the very next request.
    host.document(URI, rotated());
    assert_invalid_token(with_token(&host, &mut f, &old), "unknown key id");
    assert_eq!(f.cached_tokens(), 0);
    assert_eq!(with_token(&host, &mut f, &new), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("bob"));
    assert_eq!(with_token(&host, &mut f, &renamed), Action::Continue);
    assert_invalid_token(with_token(&host, &mut f, &old), "unknown key id");
}

#[test]
fn unknown_kid_refreshes_the_document_once() {
    let host = host_with(&remote_config(""));
    host.document(URI, jwks(&["rsa-1"]));
    let mut f = filter(&host);
    let old = rsa_token("alice");
    assert_eq!(with_token(&host, &mut f, &old), Action::Continue);
    assert_eq!(f.cached_tokens(), 1);

    // The new key is published but the host has not noticed yet: the token
    // naming it makes the filter ask for a fetch, and it passes.
    host.document_on_refresh(URI, rotated());
    let new = ec_token("bob");
    assert_eq!(with_token(&host, &mut f, &new), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("bob"));
    // rsa-1 is gone: its cached token no longer passes.
    assert_invalid_token(with_token(&host, &mut f, &old), "unknown key id");
    assert_eq!(with_token(&host, &mut f, &new), Action::Continue);
}

#[test]
fn invalid_documents_keep_the_previous_keys() {
    let host = host_with(&remote_config(""));
    host.document(URI, jwks(&["rsa-1"]));
    let mut f = filter(&host);
    assert_eq!(with_token(&host, &mut f, &rsa_token("alice")), Action::Continue);

    let marker = "do-not-log-this-document";
    for (i, bad) in [
        format!("{{\"keys\": [\"{marker}\""),
        format!("{{\"{marker}\": []}}"),
        json!({"keys": [{"kty": "RSA", "use": "enc", "kid": marker, "n": "AQAB", "e": "AQAB"}]}).to_string(),
    ]
    .iter()
    .enumerate()
    {
        host.document(URI, bad.as_str());
        // Fresh tokens, so the keys are really used rather than the cache.
        for n in 0..3 {
            let token = rsa_token(&format!("user-{i}-{n}"));
            assert_eq!(with_token(&host, &mut f, &token), Action::Continue, "{bad}");
        }
        // One warning per version, naming it.
        let version = i + 2;
        let about: Vec<String> = warnings(&host)
            .into_iter()
            .filter(|m| m.contains(&format!("version {version} ")))
            .collect();
        assert_eq!(about.len(), 1, "{about:?}");
        assert!(about[0].contains("keeping the previous keys"), "{about:?}");
    }
    let logs: String = host.logs().iter().map(|(_, m)| format!("{m}\n")).collect();
    assert!(!logs.contains(marker), "the document reached the log: {logs}");

    // A good version after bad ones is taken.
    host.document(URI, rotated());
    assert_eq!(with_token(&host, &mut f, &ec_token("bob")), Action::Continue);
    assert_invalid_token(with_token(&host, &mut f, &rsa_token("x")), "unknown key id");
}

#[test]
fn an_invalid_first_document_is_a_503() {
    let host = host_with(&remote_config(""));
    host.document(URI, "<html>not a JWKS</html>");
    let mut f = filter(&host);
    let Action::Respond(r) = with_token(&host, &mut f, &rsa_token("alice")) else {
        panic!("admitted without keys")
    };
    assert_eq!(r.status, 503);
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.starts_with("auth: signing keys are not available yet (the JWKS document is not valid: not valid JSON"),
        "{body}"
    );
    assert!(!body.contains("html"), "{body}");
    host.document(URI, jwks(&["rsa-1"]));
    assert_eq!(with_token(&host, &mut f, &rsa_token("alice")), Action::Continue);
}

#[test]
fn bad_entries_of_a_fetched_jwks_are_skipped() {
    // RFC 7517 §5: a JWK that is not understood is ignored, not fatal. A
    // shared secret in a published JWKS is not taken either.
    let host = host_with(&remote_config(""));
    let mut bad_ec = fixture_jwk("ec-1");
    bad_ec["y"] = json!("AA");
    let k = "aHMyNTYtdGVzdC1zZWNyZXQtdGhhdC1pcy0zMi1ieXRlcy1vci1tb3Jl"; // HS_SECRET
    let doc = json!({"keys": [
        bad_ec,
        {"kty": "oct", "kid": "k1", "k": k},
        fixture_jwk("rsa-1"),
    ]});
    host.document(URI, doc.to_string());
    let mut f = filter(&host);
    assert_eq!(with_token(&host, &mut f, &rsa_token("alice")), Action::Continue);
    // Neither skipped key is there: no ES256 or HS256 key at all.
    assert_invalid_token(with_token(&host, &mut f, &ec_token("bob")), "algorithm not accepted");
    assert_invalid_token(
        with_token(&host, &mut f, &hs(&claims(json!({})))),
        "algorithm not accepted",
    );
    let warned = warnings(&host).join("\n");
    assert!(warned.contains("keys[0]: not a valid P-256 public key"), "{warned}");
    assert!(warned.contains("keys[1]: skipped: a shared secret"), "{warned}");
    assert!(!warned.contains(k), "{warned}");
}

#[track_caller]
fn assert_rejected(host: &MockHost, expected: &str) {
    match host.create::<Auth>() {
        Ok(_) => panic!("config accepted, expected {expected:?}"),
        Err(e) => assert!(e.contains(expected), "expected {expected:?} in {e:?}"),
    }
}

#[test]
fn configuration_is_checked() {
    let bad = |config: &str, expected: &str| assert_rejected(&host_with(config), expected);
    bad(
        &format!("[jwt]\njwks_uri = \"{URI}\""),
        "jwt.jwks_cluster: required with `jwt.jwks_uri`",
    );
    bad(
        &remote_config("jwks_cluster = \"\"").replace("jwks_cluster = \"idp\"\n", ""),
        "jwt.jwks_cluster: must not be empty",
    );
    bad(
        &remote_config("jwks_min_refresh_seconds = 0"),
        "jwt.jwks_min_refresh_seconds: 1 to 86400",
    );
    bad(
        &remote_config("jwks_min_refresh_seconds = -5"),
        "jwt.jwks_min_refresh_seconds",
    );
    bad(
        &remote_config("jwks_min_refresh_seconds = 60\njwks_max_refresh_seconds = 30"),
        "jwt.jwks_max_refresh_seconds: 30 is less than jwks_min_refresh_seconds (60)",
    );
    bad(
        &remote_config("jwks_max_refresh_seconds = 10"),
        "jwt.jwks_max_refresh_seconds: 10 is less than",
    );
    bad(
        &remote_config("jwks_max_refresh_seconds = 100000"),
        "jwt.jwks_max_refresh_seconds: at most 86400",
    );
    bad(&remote_config("jwks_max_bytes = 0"), "jwt.jwks_max_bytes: 1 to 1048576");
    bad(
        &remote_config("jwks_max_bytes = 2000000"),
        "jwt.jwks_max_bytes: 1 to 1048576",
    );
    bad(&remote_config("jwks_max_bytes = \"big\""), "jwt.jwks_max_bytes");
    bad(
        &remote_config("").replace(URI, "ftp://id.example.com/jwks"),
        "jwt.jwks_uri: expected an absolute http:// or https:// URI",
    );
    bad(&remote_config("jwks_refresh = 5"), "jwt.jwks_refresh: unknown field");
    for key in [
        "jwks_cluster = \"idp\"",
        "jwks_min_refresh_seconds = 5",
        "jwks_max_refresh_seconds = 5",
        "jwks_max_bytes = 5",
    ] {
        let name = key.split(' ').next().unwrap_or_default();
        bad(
            &format!("[jwt]\njwks = {}\n{key}", lit(JWKS)),
            &format!("jwt.{name}: only meaningful with `jwt.jwks_uri`"),
        );
    }
    // Without jwks_uri a key is still required.
    bad("[jwt]\nissuers = [\"x\"]", "jwt.keys: no verification keys");

    // The cluster must be one the filter entry lists: the host refuses.
    let host = MockHost::new().config_toml(&remote_config(""));
    host.clusters("app", &["app"]);
    let err = host.create::<Auth>().err().unwrap_or_default();
    assert!(err.starts_with("jwt.jwks_uri: "), "{err}");
}

#[test]
fn defaults_and_options_load() {
    // No static key is needed with jwks_uri.
    filter(&host_with(&remote_config("")));
    filter(&host_with(&remote_config(
        "jwks_min_refresh_seconds = 1\njwks_max_refresh_seconds = 1\njwks_max_bytes = 1048576",
    )));
    // A minimum above the default maximum raises the maximum with it.
    filter(&host_with(&remote_config("jwks_min_refresh_seconds = 900")));
    filter(&host_with(&format!(
        "{}jwks = {}\n",
        remote_config("jwks_max_refresh_seconds = 3600"),
        lit(JWKS)
    )));
}
