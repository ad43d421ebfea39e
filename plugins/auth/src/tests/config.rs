//! Bad configurations are rejected when they load, naming the key.

use super::*;

const RSA_1024_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDXrWV3eVYLD3ekt154/YiamDBZ
b8mx4rjrCeYIDu5koUNTyzCJipCIAeqp8e9AMu8G2457CgJZZT+O7/765g52Wznb
4cPKn8HRS0kGR72kgMz11lSXxkyxsphaGhwAd7F9LtiI7TubQ2YvwUXIf0FtBsU8
7suxY9CBisPJavhnDwIDAQAB
-----END PUBLIC KEY-----
";

#[track_caller]
fn assert_rejected(toml: &str, expected: &str) {
    let err = rejected(toml);
    assert!(err.contains(expected), "expected {expected:?} in {err:?}");
}

const GOOD_HS: &str = "{ alg = \"HS256\", secret = \"hs256-test-secret-that-is-32-bytes-or-more\" }";

#[test]
fn needs_a_method() {
    let err = rejected("realm = \"sluice\"");
    assert!(err.contains("`api_keys`") && err.contains("`jwt`"), "{err}");
}

#[test]
fn unknown_keys_are_named() {
    assert_rejected(
        &format!("subjct_header = \"x\"\n[jwt]\nkeys = [{GOOD_HS}]"),
        "unknown field `subjct_header`",
    );
    assert_rejected(
        &format!("[jwt]\nleeway = 5\nkeys = [{GOOD_HS}]"),
        "jwt.leeway: unknown field `leeway`",
    );
    assert_rejected(
        &format!("[jwt]\nkeys = [{GOOD_HS}, {{ alg = \"HS256\", secrt = \"x\" }}]"),
        "jwt.keys[1].secrt: unknown field `secrt`",
    );
    assert_rejected(
        "[api_keys]\nkeys = [{ id = \"a\", key = \"k\", note = \"x\" }]",
        "api_keys.keys[0].note: unknown field `note`",
    );
    assert_rejected("[api_keys]\nkeys = [{ id = 5, key = \"k\" }]", "api_keys.keys[0].id");
}

#[test]
fn bad_pem_names_the_key() {
    let config = format!(
        "[jwt]\nkeys = [\n  {GOOD_HS},\n  {{ kid = \"r1\", alg = \"RS256\", pem = \"-----BEGIN PUBLIC KEY-----\\nnonsense\\n-----END PUBLIC KEY-----\\n\" }},\n]"
    );
    let err = rejected(&config);
    assert_eq!(err, "jwt.keys[1].pem: not a valid RSA public key");
    // An EC key where an RSA one is expected, and the other way round.
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ alg = \"RS256\", pem = {} }}]", lit(EC_PUBLIC)),
        "jwt.keys[0].pem: not a valid RSA public key",
    );
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ alg = \"ES256\", pem = {} }}]", lit(RSA_PUBLIC)),
        "jwt.keys[0].pem: not a valid P-256 public key",
    );
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ alg = \"EdDSA\", pem = {} }}]", lit(EC_PUBLIC)),
        "jwt.keys[0].pem: not a valid Ed25519 public key",
    );
    // A private key is not a public key.
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ alg = \"ES256\", pem = {} }}]", lit(EC_PRIVATE)),
        "jwt.keys[0].pem: not a valid P-256 public key",
    );
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ alg = \"RS256\", pem = {} }}]", lit(RSA_1024_PUBLIC)),
        "jwt.keys[0].pem: RSA key has 1024 bits; at least 2048 are required",
    );
}

#[test]
fn algorithms_are_checked() {
    assert_rejected(
        "[jwt]\nkeys = [{ alg = \"XS256\", secret = \"hs256-test-secret-that-is-32-bytes-or-more\" }]",
        "jwt.keys[0].alg: unknown algorithm `XS256`",
    );
    assert_rejected(
        "[jwt]\nkeys = [{ alg = \"none\", secret = \"hs256-test-secret-that-is-32-bytes-or-more\" }]",
        "jwt.keys[0].alg: unknown algorithm `none`",
    );
    assert_rejected(
        "[jwt]\nkeys = [{ secret = \"hs256-test-secret-that-is-32-bytes-or-more\" }]",
        "jwt.keys[0].alg: required with `secret`",
    );
    assert_rejected(
        "[jwt]\nkeys = [{ alg = \"RS256\", secret = \"hs256-test-secret-that-is-32-bytes-or-more\" }]",
        "jwt.keys[0].alg: RS256 needs a public key",
    );
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ alg = \"HS256\", pem = {} }}]", lit(RSA_PUBLIC)),
        "jwt.keys[0].alg: HS256 is an HMAC algorithm",
    );
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ pem = {} }}]", lit(RSA_PUBLIC)),
        "jwt.keys[0].alg: required with `pem`",
    );
}

#[test]
fn key_entries_are_checked() {
    assert_rejected(
        &format!(
            "[jwt]\nkeys = [{{ alg = \"HS256\", secret = \"x\", pem = {} }}]",
            lit(RSA_PUBLIC)
        ),
        "jwt.keys[0]: give exactly one of `secret`, `pem` or `jwk`",
    );
    assert_rejected("[jwt]\nkeys = [{ alg = \"HS256\" }]", "jwt.keys[0]: give exactly one");
    assert_rejected(
        "[jwt]\nkeys = [{ alg = \"HS256\", secret = \"short\" }]",
        "jwt.keys[0].secret: too short for HS256: use at least 32 bytes",
    );
    assert_rejected(
        "[jwt]\nkeys = [{ alg = \"HS512\", secret = \"hs256-test-secret-that-is-32-bytes-or-more\" }]",
        "jwt.keys[0].secret: too short for HS512: use at least 64 bytes",
    );
    assert_rejected("[jwt]\nissuers = [\"x\"]", "jwt.keys: no verification keys");
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ kid = \"\", {} ]", &GOOD_HS[2..]),
        "jwt.keys[0].kid: must not be empty",
    );
}

#[test]
fn jwk_and_jwks_are_checked() {
    let ed = "{ kty = \"OKP\", crv = \"Ed25519\", x = \"AAAA\", kid = \"e1\" }";
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ jwk = {ed} }}]"),
        "jwt.keys[0].jwk: not a valid Ed25519 public key",
    );
    let x = fixture_jwk("ed-1")["x"].as_str().unwrap_or_default().to_string();
    assert_rejected(
        &format!(
            "[jwt]\nkeys = [{{ kid = \"a\", jwk = {{ kty = \"OKP\", crv = \"Ed25519\", x = \"{x}\", kid = \"b\" }} }}]"
        ),
        "jwt.keys[0].jwk.kid: `b` differs from the entry's kid `a`",
    );
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ alg = \"ES256\", jwk = {{ kty = \"OKP\", crv = \"Ed25519\", x = \"{x}\" }} }}]"),
        "jwt.keys[0].jwk.alg: ES256 does not fit an Ed25519 key",
    );
    assert_rejected(
        "[jwt]\nkeys = [{ jwk = { kty = \"OKP\", crv = \"X25519\", x = \"AAAA\" } }]",
        "jwt.keys[0].jwk.crv: unsupported curve `X25519`",
    );
    assert_rejected(
        "[jwt]\nkeys = [{ jwk = { kty = \"RSA\", e = \"AQAB\" } }]",
        "jwt.keys[0].jwk: missing `n`",
    );
    assert_rejected(
        "[jwt]\nkeys = [{ jwk = { kty = \"RSA\", n = \"AQAB\", e = \"AQAB\" } }]",
        "jwt.keys[0].jwk: not a valid RSA public key",
    );
    assert_rejected("[jwt]\njwks = '{\"keys\": [}'", "jwt.jwks: not valid JSON");
    assert_rejected("[jwt]\njwks = '{\"key\": []}'", "jwt.jwks: expected a JWKS document");
    assert_rejected(
        "[jwt]\njwks = '{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"kid\": \"x\", \"x\": \"AA\", \"y\": \"AA\"}]}'",
        "jwt.jwks.keys[0]: not a valid P-256 public key",
    );
    assert_rejected(
        "[jwt]\njwks = '{\"keys\": [{\"kty\": \"RSA\", \"use\": \"enc\", \"n\": \"AA\", \"e\": \"AQAB\"}]}'",
        "jwt.jwks: no usable signature verification key",
    );
}

#[test]
fn api_keys_are_checked() {
    assert_rejected(
        "[api_keys]\nkeys = [{ id = \"a\", key = \"k\" }, { id = \"b\", sha256 = \"abc\" }]",
        "api_keys.keys[1].sha256: expected 64 hexadecimal characters",
    );
    assert_rejected(
        &format!(
            "[api_keys]\nkeys = [{{ id = \"b\", sha256 = \"{}\" }}]",
            "zz".repeat(32)
        ),
        "api_keys.keys[0].sha256: expected 64 hexadecimal characters",
    );
    assert_rejected(
        &format!(
            "[api_keys]\nkeys = [{{ id = \"a\", key = \"k\", sha256 = \"{}\" }}]",
            "00".repeat(32)
        ),
        "api_keys.keys[0]: give exactly one of `key` or `sha256`",
    );
    assert_rejected("[api_keys]\nkeys = []", "api_keys.keys: no keys");
    assert_rejected("[api_keys]\nkeys = [{ id = \"\", key = \"k\" }]", "api_keys.keys[0].id");
    assert_rejected(
        "[api_keys]\nkeys = [{ id = \"a\", key = \"\" }]",
        "api_keys.keys[0].key: must not be empty",
    );
    assert_rejected(
        "[api_keys]\nkeys = [{ id = \"a\", key = \"k\" }, { id = \"b\", key = \"k\" }]",
        "api_keys.keys[1]: the same key is listed twice",
    );
    assert_rejected(
        "[api_keys]\nheader = \"x key\"\nkeys = [{ id = \"a\", key = \"k\" }]",
        "api_keys.header: `x key` is not a valid header name",
    );
    assert_rejected(
        "[api_keys]\nquery = \"a&b\"\nkeys = [{ id = \"a\", key = \"k\" }]",
        "api_keys.query",
    );
}

#[test]
fn other_settings_are_checked() {
    let jwt = format!("[jwt]\nkeys = [{GOOD_HS}]\n");
    assert_rejected(
        &format!("realm = 'a\"b'\n{jwt}"),
        "realm: `a\"b` must be printable ASCII",
    );
    assert_rejected(
        &format!("subject_header = \"content-length\"\n{jwt}"),
        "subject_header:",
    );
    assert_rejected(&format!("{jwt}required_scopes = [\"a b\"]"), "jwt.required_scopes[0]");
    assert_rejected(
        &format!("{jwt}required_claims = {{ tenant = {{ a = 1 }} }}"),
        "jwt.required_claims.tenant: expected a string, number, boolean",
    );
    assert_rejected(
        &format!("{jwt}required_claims = {{ tenant = [] }}"),
        "jwt.required_claims.tenant",
    );
    assert_rejected(
        &format!("{jwt}forward_claims = {{ email = \"bad header\" }}"),
        "jwt.forward_claims.email: `bad header` is not a valid header name",
    );
    assert_rejected(
        &format!("{jwt}forward_claims = {{ email = \"x-a\", mail = \"X-A\" }}"),
        "jwt.forward_claims.mail: header `x-a` is already used by another claim",
    );
    assert_rejected(
        &format!("subject_header = \"x-who\"\n{jwt}forward_claims = {{ sub = \"x-who\" }}"),
        "jwt.forward_claims: header `x-who` is already the subject_header",
    );
    assert_rejected(&format!("{jwt}context_claims = [\"\"]"), "jwt.context_claims[0]");
    assert_rejected(&format!("{jwt}issuers = [\"\"]"), "jwt.issuers[0]: must not be empty");
    assert_rejected(
        &format!("{jwt}leeway_seconds = 100000"),
        "jwt.leeway_seconds: at most 86400",
    );
    assert_rejected(&format!("{jwt}leeway_seconds = -1"), "jwt.leeway_seconds");
    assert_rejected(&format!("{jwt}cache_size = 100000000"), "jwt.cache_size: at most");
}

#[test]
fn defaults_and_full_example_load() {
    let host = MockHost::new().config_toml(&format!("[jwt]\nkeys = [{GOOD_HS}]"));
    let f = filter(&host);
    assert_eq!(f.cached_tokens(), 0);
    let full = format!(
        r#"
realm = "sluice"
strip_credentials = true
subject_header = "x-auth-subject"
[api_keys]
header = "x-api-key"
query = "api_key"
keys = [{{ id = "ci", key = "plain-secret" }}, {{ id = "team-a", sha256 = "{}" }}]
[jwt]
issuers = ["https://id.example.com"]
audiences = ["orders"]
leeway_seconds = 60
keys = [
  {{ kid = "k1", alg = "HS256", secret = "hs256-test-secret-that-is-32-bytes-or-more" }},
  {{ kid = "r1", alg = "RS256", pem = {} }},
  {{ alg = "ES256", pem = {} }},
  {{ jwk = {} }},
]
jwks = {}
required_scopes = ["orders:read"]
required_claims = {{ tenant = "acme" }}
forward_claims = {{ email = "x-auth-email" }}
context_claims = ["email"]
cache_size = 1024
"#,
        "ab".repeat(32),
        lit(RSA_PUBLIC),
        lit(EC_PUBLIC),
        inline_table(&fixture_jwk("ed-1")),
        lit(JWKS),
    );
    filter(&MockHost::new().config_toml(&full));
}

#[test]
fn off_curve_ec_points_and_short_oct_keys_are_rejected() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // RFC 8725 §3.4: a point that is not on the curve is refused when the
    // configuration loads. Flipping one bit of y moves the fixture key off
    // P-256 while keeping the encoding well-formed.
    let mut ec = fixture_jwk("ec-1");
    let mut y = URL_SAFE_NO_PAD
        .decode(ec["y"].as_str().unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(y.len(), 32);
    y[31] ^= 1;
    ec["y"] = json!(URL_SAFE_NO_PAD.encode(&y));
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ jwk = {} }}]", inline_table(&ec)),
        "jwt.keys[0].jwk: not a valid P-256 public key",
    );
    // RFC 8725 §3.5: an `oct` JWK is held to the same minimum length as a
    // `secret` (31 bytes here).
    let k = URL_SAFE_NO_PAD.encode([7u8; 31]);
    assert_rejected(
        &format!("[jwt]\nkeys = [{{ jwk = {{ kty = \"oct\", k = \"{k}\" }} }}]"),
        "jwt.keys[0].jwk: too short for HS256: use at least 32 bytes",
    );
}
