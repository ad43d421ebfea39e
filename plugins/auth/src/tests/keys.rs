//! RS256, ES256 and EdDSA from PEM, inline JWK and JWKS; algorithm confusion.

use super::*;

fn pem_config() -> String {
    format!(
        "[jwt]\nkeys = [\n  {{ kid = \"r1\", alg = \"RS256\", pem = {} }},\n  {{ alg = \"ES256\", pem = {} }},\n  {{ kid = \"e1\", alg = \"EdDSA\", pem = {} }},\n]\n",
        lit(RSA_PUBLIC),
        lit(EC_PUBLIC),
        lit(ED_PUBLIC)
    )
}

#[test]
fn rs256_es256_and_eddsa_from_pem() {
    let host = MockHost::new().config_toml(&pem_config());
    let mut f = filter(&host);
    let c = claims(json!({}));
    for (alg, kid, key) in [
        (Algorithm::RS256, Some("r1"), rsa_key()),
        (Algorithm::RS256, None, rsa_key()),
        (Algorithm::ES256, None, ec_key()),
        // The ES256 key has no kid: it matches any ES256 token.
        (Algorithm::ES256, Some("whatever"), ec_key()),
        (Algorithm::EdDSA, Some("e1"), ed_key()),
    ] {
        let token = sign(alg, kid, &key, &c);
        assert_eq!(with_token(&host, &mut f, &token), Action::Continue, "{alg:?} {kid:?}");
        assert_eq!(host.get_context("auth.subject").as_deref(), Some("alice"));
    }
    assert_eq!(f.signature_verifications(), 5);
}

#[test]
fn key_must_fit_both_kid_and_algorithm() {
    let host = MockHost::new().config_toml(&pem_config());
    let mut f = filter(&host);
    let c = claims(json!({}));
    // An RS256 token naming the Ed25519 key's kid: no key accepts it.
    let token = sign(Algorithm::RS256, Some("e1"), &rsa_key(), &c);
    assert_invalid_token(with_token(&host, &mut f, &token), "unknown key id");
    // ES256 signature swapped onto an EdDSA header.
    let es = sign(Algorithm::ES256, None, &ec_key(), &c);
    let ed = sign(Algorithm::EdDSA, Some("e1"), &ed_key(), &c);
    let es_sig = es.rsplit('.').next().unwrap_or_default();
    let (ed_msg, _) = ed.rsplit_once('.').unwrap_or_default();
    assert_invalid_token(
        with_token(&host, &mut f, &format!("{ed_msg}.{es_sig}")),
        "invalid signature",
    );
}

#[test]
fn hmac_token_signed_with_the_rsa_public_key_is_rejected() {
    // The classic confusion attack: an HS256 token whose "secret" is the
    // RSA public key text the verifier holds.
    let confused = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
    let c = claims(json!({}));
    let host = MockHost::new().config_toml(&pem_config());
    let mut f = filter(&host);
    for kid in [Some("r1"), None] {
        let token = sign(Algorithm::HS256, kid, &confused, &c);
        assert_invalid_token(with_token(&host, &mut f, &token), "algorithm not accepted");
    }
    // Also with an HMAC key configured beside the RSA one.
    let config = format!(
        "{}\n",
        pem_config().replace(
            "keys = [\n",
            "keys = [\n  { kid = \"h1\", alg = \"HS256\", secret = \"an-hmac-secret-of-thirty-two-bytes!!\" },\n"
        )
    );
    let host = MockHost::new().config_toml(&config);
    let mut f = filter(&host);
    let token = sign(Algorithm::HS256, Some("r1"), &confused, &c);
    assert_invalid_token(with_token(&host, &mut f, &token), "unknown key id");
    let token = sign(Algorithm::HS256, None, &confused, &c);
    assert_invalid_token(with_token(&host, &mut f, &token), "invalid signature");
    assert_eq!(f.signature_verifications(), 1, "only the HMAC key was tried");
}

fn jwks_tokens() -> Vec<(String, String)> {
    let c = claims(json!({}));
    vec![
        ("rsa-1".into(), sign(Algorithm::RS256, Some("rsa-1"), &rsa_key(), &c)),
        ("ec-1".into(), sign(Algorithm::ES256, Some("ec-1"), &ec_key(), &c)),
        ("ed-1".into(), sign(Algorithm::EdDSA, Some("ed-1"), &ed_key(), &c)),
        ("no kid".into(), sign(Algorithm::RS256, None, &rsa_key(), &c)),
    ]
}

#[test]
fn rs256_es256_and_eddsa_from_jwks_string() {
    let host = MockHost::new().config_toml(&format!("[jwt]\njwks = {}\n", lit(JWKS)));
    let mut f = filter(&host);
    for (what, token) in jwks_tokens() {
        assert_eq!(with_token(&host, &mut f, &token), Action::Continue, "{what}");
    }
    // A kid the JWKS lacks.
    let token = sign(Algorithm::ES256, Some("ec-2"), &ec_key(), &claims(json!({})));
    assert_invalid_token(with_token(&host, &mut f, &token), "unknown key id");
}

#[test]
fn jwks_as_a_table_skips_encryption_keys() {
    let mut jwks: Value = serde_json::from_str(JWKS).unwrap_or_default();
    if let Some(keys) = jwks["keys"].as_array_mut() {
        keys.push(json!({"kty": "RSA", "use": "enc", "kid": "enc-1", "n": "AQAB", "e": "AQAB"}));
        keys.push(json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}));
    }
    let config = json!({"jwt": {"jwks": jwks}}).to_string();
    let host = MockHost::new().config_json(&config);
    let mut f = filter(&host);
    for (what, token) in jwks_tokens() {
        assert_eq!(with_token(&host, &mut f, &token), Action::Continue, "{what}");
    }
}

#[test]
fn inline_jwk_keys() {
    let rsa = fixture_jwk("rsa-1");
    let ec = fixture_jwk("ec-1");
    let mut ed = fixture_jwk("ed-1");
    // Without `alg` the algorithm follows from the key type and curve.
    if let Some(obj) = ed.as_object_mut() {
        obj.remove("alg");
        obj.insert("kid".into(), json!("e1"));
    }
    let config = format!(
        "[jwt]\nkeys = [\n  {{ jwk = {} }},\n  {{ kid = \"ec-1\", alg = \"ES256\", jwk = {} }},\n  {{ jwk = {} }},\n]\n",
        inline_table(&rsa),
        inline_table(&ec),
        inline_table(&ed)
    );
    let host = MockHost::new().config_toml(&config);
    let mut f = filter(&host);
    let c = claims(json!({}));
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-1", rsa_key()),
        (Algorithm::ES256, "ec-1", ec_key()),
        (Algorithm::EdDSA, "e1", ed_key()),
    ] {
        let token = sign(alg, Some(kid), &key, &c);
        assert_eq!(with_token(&host, &mut f, &token), Action::Continue, "{alg:?}");
    }
    // The RSA JWK says RS256: a PS256 token with the same key is refused.
    let token = sign(Algorithm::PS256, Some("rsa-1"), &rsa_key(), &c);
    assert_invalid_token(with_token(&host, &mut f, &token), "algorithm not accepted");
}

#[test]
fn oct_jwk_is_an_hmac_key() {
    // base64url of HS_SECRET.
    let k = "aHMyNTYtdGVzdC1zZWNyZXQtdGhhdC1pcy0zMi1ieXRlcy1vci1tb3Jl";
    let host = MockHost::new().config_toml(&format!(
        "[jwt]\nkeys = [{{ jwk = {{ kty = \"oct\", kid = \"k1\", k = \"{k}\" }} }}]\n"
    ));
    let mut f = filter(&host);
    assert_eq!(with_token(&host, &mut f, &hs(&claims(json!({})))), Action::Continue);
}
