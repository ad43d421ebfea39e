//! The four built-in filters (auth, rate-limit, header-rewrite,
//! traffic-split) through the real proxy, one test each, and the whole chain
//! in `builtin_chain_end_to_end`.

mod common;

use common::*;
use futures_util::future::join_all;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

const HS_SECRET: &str = "e2e-shared-secret-of-reasonable-length";
const RSA_PRIVATE: &str = include_str!("../plugins/auth/fixtures/rsa-private.pem");
const JWKS: &str = include_str!("../plugins/auth/fixtures/jwks.json");

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn hs256(claims: Value) -> String {
    let header = Header {
        kid: Some("hs-1".into()),
        ..Header::new(Algorithm::HS256)
    };
    encode(&header, &claims, &EncodingKey::from_secret(HS_SECRET.as_bytes())).unwrap()
}

fn rs256(claims: Value) -> String {
    let header = Header {
        kid: Some("rsa-1".into()),
        ..Header::new(Algorithm::RS256)
    };
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims(sub: &str, scope: &str) -> Value {
    json!({ "sub": sub, "iss": "https://id.test", "aud": "orders", "exp": now() + 3600, "scope": scope })
}

fn clusters(list: &[(&str, std::net::SocketAddr)]) -> String {
    list.iter()
        .map(|(name, addr)| format!("[[clusters]]\nname = \"{name}\"\nendpoints = [\"{addr}\"]\n\n"))
        .collect()
}

/// The auth filter's `[jwt]` table: an HS256 secret and the RSA/EC/Ed25519
/// keys of the fixtures' JWKS.
fn jwt_config() -> String {
    format!(
        r#"issuers = ["https://id.test"]
audiences = ["orders"]
keys = [{{ kid = "hs-1", alg = "HS256", secret = "{HS_SECRET}" }}]
jwks = '''{JWKS}'''
"#
    )
}

#[tokio::test]
async fn auth_accepts_jwt_and_api_keys_and_refuses_the_rest() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[[routes]]
name = "orders"
cluster = "app"
path_prefix = "/orders"
[[routes.filters]]
plugin = "auth"
[routes.filters.config]
subject_header = "x-auth-subject"
[routes.filters.config.api_keys]
keys = [{{ id = "ci", sha256 = "{}" }}]
[routes.filters.config.jwt]
{}
required_scopes = ["orders:read"]
forward_claims = {{ scope = "x-auth-scope" }}
"#,
        clusters(&[("app", up.addr)]),
        sha256_hex("ci-key-123"),
        jwt_config()
    );
    let proxy = start(&body, &[]).await;
    let client = h1();
    let get = |auth: Option<String>, key: Option<&str>| {
        let mut req = client.get(proxy.url("/orders/1"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        req.send()
    };

    // No credentials: 401 with a challenge per method, no error code.
    let resp = get(None, None).await.unwrap();
    assert_eq!(resp.status(), 401);
    let challenges: Vec<_> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        challenges
            .iter()
            .any(|c| c.starts_with("Bearer realm=") && !c.contains("error=")),
        "{challenges:?}"
    );
    assert!(challenges.iter().any(|c| c.starts_with("ApiKey")), "{challenges:?}");

    // Good tokens, HS256 inline and RS256 from the JWKS: forwarded with the
    // identity, the Authorization header stripped.
    for token in [
        hs256(claims("alice", "orders:read")),
        rs256(claims("bob", "orders:read orders:write")),
    ] {
        let resp = get(Some(format!("Bearer {token}")), None).await.unwrap();
        assert_eq!(resp.status(), 200);
        let echo: Value = resp.json().await.unwrap();
        assert!(echoed(&echo, "authorization").is_empty(), "credentials are stripped");
        let subject = &echoed(&echo, "x-auth-subject")[0];
        assert!(subject == "alice" || subject == "bob");
        assert!(echoed(&echo, "x-auth-scope")[0].contains("orders:read"));
    }

    // Expired, wrong audience, bad signature: 401 invalid_token.
    let mut expired = claims("alice", "orders:read");
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims("alice", "orders:read");
    wrong_aud["aud"] = json!("billing");
    let good = hs256(claims("alice", "orders:read"));
    let tampered = format!("{}x", &good[..good.len() - 1]);
    for token in [hs256(expired), hs256(wrong_aud), tampered] {
        let resp = get(Some(format!("Bearer {token}")), None).await.unwrap();
        assert_eq!(resp.status(), 401);
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(&good[..20]), "no token text in the body");
    }

    // Authenticated without the scope: 403 insufficient_scope.
    let resp = get(Some(format!("Bearer {}", hs256(claims("carol", "orders:write")))), None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains(r#"error="insufficient_scope""#), "{challenge}");

    // API keys: the right one passes (stored only as its SHA-256), the
    // header is stripped; a wrong one is refused.
    let resp = get(None, Some("ci-key-123")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-auth-subject"), ["ci"]);
    assert!(echoed(&echo, "x-api-key").is_empty());
    assert_eq!(get(None, Some("ci-key-124")).await.unwrap().status(), 401);
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// N concurrent requests from many connections against a limit of L: exactly
/// L pass. The limit refills one request per 3 minutes, so the window covers
/// the whole test.
#[tokio::test]
async fn rate_limit_is_exact_under_concurrency() {
    const LIMIT: usize = 20;
    const REQUESTS: usize = 400;
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[[routes]]
name = "limited"
cluster = "app"
[[routes.filters]]
plugin = "rate-limit"
[routes.filters.config]
key = ["route"]
limits = [{{ name = "hourly", requests = {LIMIT}, per = "1h" }}]
"#,
        clusters(&[("app", up.addr)])
    );
    let proxy = start(&body, &[]).await;
    // Many connections: 20 HTTP/1.1 clients (each its own pool) and 2 HTTP/2.
    let clients: Vec<reqwest::Client> = (0..20).map(|_| h1()).chain((0..2).map(|_| h2())).collect();
    let sends = (0..REQUESTS).map(|i| clients[i % clients.len()].get(proxy.url("/x")).send());
    let mut allowed = 0;
    let mut denied = 0;
    for resp in join_all(sends).await {
        let resp = resp.unwrap();
        match resp.status().as_u16() {
            200 => allowed += 1,
            429 => {
                denied += 1;
                let h = resp.headers();
                let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=180).contains(&retry), "retry-after {retry}");
                assert_eq!(h["ratelimit-policy"], r#""hourly";q=20;w=3600"#);
                let state = h["ratelimit"].to_str().unwrap();
                assert!(state.starts_with(r#""hourly";r=0;t="#), "{state}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(allowed, LIMIT, "exactly the limit passes ({denied} denied)");
    assert_eq!(denied, REQUESTS - LIMIT);
}

#[tokio::test]
async fn header_rewrite_edits_paths_and_ids() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"{}
[[routes]]
name = "api"
cluster = "app"
path_prefix = "/api"
[[routes.filters]]
plugin = "header-rewrite"
[routes.filters.config]
request_id = {{}}
request.path = {{ strip_prefix = "/api" }}
request.set = {{ "x-client" = "${{client_ip}}", "x-was" = "${{method}} ${{path}}" }}
request.rename = {{ "x-user" = "x-legacy-user" }}
response.set = {{ "x-rid" = "${{request_id}}" }}
response.remove = ["x-upstream"]
"#,
        clusters(&[("app", up.addr)])
    );
    let proxy = start(&body, &[]).await;
    for client in [h1(), h2()] {
        let resp = client
            .get(proxy.url("/api/users/7?full=1"))
            .header("x-user", "u7")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(rid.len(), 36, "a UUID: {rid}");
        assert_eq!(resp.headers()["x-rid"], rid.as_str());
        assert!(resp.headers().get("x-upstream").is_none());
        let echo: Value = resp.json().await.unwrap();
        assert_eq!(echo["path"], "/users/7?full=1");
        assert_eq!(echoed(&echo, "x-request-id"), [rid.as_str()]);
        assert_eq!(echoed(&echo, "x-client"), ["127.0.0.1"]);
        assert_eq!(echoed(&echo, "x-was"), ["GET /api/users/7?full=1"]);
        assert_eq!(echoed(&echo, "x-legacy-user"), ["u7"]);
        assert!(echoed(&echo, "x-user").is_empty());
        // An incoming id is kept.
        let resp = client
            .get(proxy.url("/api/x"))
            .header("x-request-id", "given-1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-request-id"], "given-1");
    }
}

#[tokio::test]
async fn traffic_split_weights_overrides_and_stickiness() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let body = format!(
        r#"{}
[[routes]]
name = "web"
cluster = "stable"
[[routes.filters]]
plugin = "traffic-split"
clusters = ["stable", "canary"]
[routes.filters.config]
clusters = [{{ cluster = "stable", weight = 90 }}, {{ cluster = "canary", weight = 10 }}]
overrides = [{{ header = "x-canary", value = "always", cluster = "canary" }}]
sticky = "header:x-user"
"#,
        clusters(&[("stable", stable.addr), ("canary", canary.addr)])
    );
    let proxy = start(&body, &[]).await;
    let client = h2();
    // 10,000 requests without a sticky key: 90/10 within ±2 points.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for batch in 0..100 {
        let sends = (0..100).map(|_| client.get(proxy.url(&format!("/b{batch}"))).send());
        for resp in join_all(sends).await {
            let resp = resp.unwrap();
            assert_eq!(resp.status(), 200);
            *counts
                .entry(resp.headers()["x-upstream"].to_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let canary_share = counts.get("canary").copied().unwrap_or(0) as f64 / 100.0;
    assert!(
        (8.0..=12.0).contains(&canary_share),
        "canary share {canary_share}% ({counts:?})"
    );

    // The override header always wins.
    for _ in 0..20 {
        let resp = client
            .get(proxy.url("/"))
            .header("x-canary", "always")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-upstream"], "canary");
    }
    // Sticky: each user keeps one upstream over many requests.
    for user in 0..30 {
        let mut seen = Vec::new();
        for _ in 0..5 {
            let resp = client
                .get(proxy.url("/"))
                .header("x-user", format!("user-{user}"))
                .send()
                .await
                .unwrap();
            seen.push(resp.headers()["x-upstream"].to_str().unwrap().to_string());
        }
        seen.dedup();
        assert_eq!(seen.len(), 1, "user-{user} moved: {seen:?}");
    }
}

/// auth → rate-limit (per subject) → header-rewrite → traffic-split, two
/// clusters, over HTTP/1.1 and HTTP/2.
#[tokio::test]
async fn builtin_chain_end_to_end() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let body = format!(
        r#"{}
[[routes]]
name = "api"
cluster = "stable"
path_prefix = "/api"

[[routes.filters]]
plugin = "auth"
[routes.filters.config.api_keys]
keys = [{{ id = "team-a", key = "key-a" }}, {{ id = "team-b", key = "key-b" }}]
[routes.filters.config.jwt]
{}

[[routes.filters]]
plugin = "rate-limit"
[routes.filters.config]
key = ["context:auth.subject"]
limits = [{{ name = "per-subject", requests = 5, per = "1h" }}]

[[routes.filters]]
plugin = "header-rewrite"
[routes.filters.config]
request_id = {{}}
request.set = {{ "x-subject" = "${{context.auth.subject}}" }}
request.path = {{ strip_prefix = "/api" }}
response.set = {{ "x-served-by" = "sluice" }}

[[routes.filters]]
plugin = "traffic-split"
clusters = ["stable", "canary"]
[routes.filters.config]
clusters = [{{ cluster = "stable", weight = 100 }}, {{ cluster = "canary", weight = 0 }}]
overrides = [{{ header = "x-canary", value = "always", cluster = "canary" }}]
"#,
        clusters(&[("stable", stable.addr), ("canary", canary.addr)]),
        jwt_config()
    );
    let proxy = start(&body, &[]).await;
    for (client, user) in [(h1(), "team-a"), (h2(), "team-b")] {
        let key = if user == "team-a" { "key-a" } else { "key-b" };
        // No credentials: auth answers, later filters never run, but the
        // response phase of nothing else adds headers either.
        let resp = client.get(proxy.url("/api/items")).send().await.unwrap();
        assert_eq!(resp.status(), 401);

        // Authenticated: rewritten, identified, split by header.
        let resp = client
            .get(proxy.url("/api/items"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-served-by"], "sluice");
        assert_eq!(resp.headers()["x-upstream"], "stable");
        assert!(resp.headers().contains_key("x-request-id"));
        let echo: Value = resp.json().await.unwrap();
        assert_eq!(echo["path"], "/items");
        assert_eq!(echoed(&echo, "x-subject"), [user]);
        let resp = client
            .get(proxy.url("/api/items"))
            .header("x-api-key", key)
            .header("x-canary", "always")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-upstream"], "canary");

        // Three more pass (5 per subject), then 429 for this subject only.
        for _ in 0..3 {
            let resp = client
                .get(proxy.url("/api/items"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        let resp = client
            .get(proxy.url("/api/items"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
        assert!(resp.headers().contains_key("retry-after"));
    }
    // A JWT subject has its own budget.
    let token = hs256(json!({ "sub": "carol", "iss": "https://id.test", "aud": "orders", "exp": now() + 600 }));
    let resp = h1()
        .get(proxy.url("/api/items"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-subject"), ["carol"]);
}
