//! Remote JWKS in the auth filter, fetched and kept fresh by the host
//! (WIT `remote-document`) through a cluster: down at start, then up,
//! rotated mid-test, then down again.

use crate::common::admin::admin_get;
use crate::common::service::{Service, reply, reserve_port};
use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const JWKS: &str = include_str!("../../plugins/auth/fixtures/jwks.json");
const RSA_PRIVATE: &str = include_str!("../../plugins/auth/fixtures/rsa-private.pem");
const EC_PRIVATE: &str = include_str!("../../plugins/auth/fixtures/ec-private.pem");

/// A JWKS with only the fixture key `kid`.
fn jwks_with(kid: &str) -> String {
    let all: Value = serde_json::from_str(JWKS).unwrap();
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] == kid)
        .cloned()
        .collect();
    assert_eq!(keys.len(), 1, "fixture key {kid}");
    json!({ "keys": keys }).to_string()
}

fn token(kid: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({ "sub": "ann", "iss": "https://id.test", "aud": "orders", "exp": now + 3600 });
    let (alg, key) = match kid {
        "rsa-1" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        ),
        _ => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        ),
    };
    let header = Header {
        kid: Some(kid.into()),
        ..Header::new(alg)
    };
    encode(&header, &claims, &key).unwrap()
}

/// The JWKS endpoint: serves whatever `doc` holds, cacheable for an hour
/// (so a change is only seen through a refetch the filter asks for).
async fn jwks_service(addr: std::net::SocketAddr, doc: Arc<Mutex<String>>) -> Service {
    Service::start(addr, move |(head, _)| {
        let doc = doc.lock().unwrap().clone();
        async move {
            if head.uri.path() == "/.well-known/jwks.json" {
                reply(
                    200,
                    &[("content-type", "application/json"), ("cache-control", "max-age=3600")],
                    doc,
                )
            } else {
                reply(404, &[], "")
            }
        }
    })
    .await
}

/// Poll `check` every 100 ms for up to 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The auth plugin's documents in `/plugins`.
async fn documents(admin: std::net::SocketAddr) -> Vec<Value> {
    let (_, body) = admin_get(admin, "/plugins").await;
    let plugins: Value = serde_json::from_str(&body).unwrap();
    plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "auth")
        .and_then(|p| p["documents"].as_array().cloned())
        .unwrap_or_default()
}

async fn status(client: &reqwest::Client, url: &str, kid: &str) -> (u16, String) {
    let resp = client.get(url).bearer_auth(token(kid)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The keys' endpoint is down when sluice starts: the configuration loads,
/// the route answers 503 with a clear body and `/plugins` says why; once
/// the endpoint comes up, the route recovers by itself. The keys then
/// rotate (RSA key out, EC key in) behind a one-hour `max-age`: the first
/// token naming the new key makes the filter ask for a refetch, and it is
/// admitted; the old key's tokens are refused. Refetches are rate-limited
/// (at most one a second here), so a stream of unknown keys does not
/// hammer the endpoint. Then the endpoint goes down: the last good keys
/// keep serving and `/plugins` reports the failing fetch. The document's
/// content never reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_jwks_rotation_and_outage() {
    let up = Upstream::start("app").await;
    let idp = reserve_port();
    let body = format!(
        r#"[admin]
address = "127.0.0.1:0"

[[clusters]]
name = "app"
endpoints = ["{}"]

[[clusters]]
name = "idp"
endpoints = ["{idp}"]

[[routes]]
name = "orders"
path_prefix = "/orders"
cluster = "app"

[[routes.filters]]
plugin = "auth"
clusters = ["idp"]
[routes.filters.config.jwt]
issuers = ["https://id.test"]
audiences = ["orders"]
jwks_uri = "http://idp.test/.well-known/jwks.json"
jwks_cluster = "idp"
jwks_min_refresh_seconds = 1
jwks_max_refresh_seconds = 3600
"#,
        up.addr
    );
    let proxy = start_binary(&body, &[]);
    let admin = proxy.admin.expect("admin listener");
    let client = h1();
    let url = format!("http://{}/orders/1", proxy.addr);

    // Down at start: 503 with a clear body; /plugins says why.
    let (code, text) = status(&client, &url, "rsa-1").await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("signing keys are not available yet"), "{text}");
    eventually("/plugins never reported the failed fetch", || async {
        let docs = documents(admin).await;
        docs.len() == 1
            && docs[0]["available"] == false
            && docs[0]["last_error"].as_str().is_some_and(|e| !e.is_empty())
            && docs[0]["routes"] == json!(["orders"])
    })
    .await;

    // The endpoint comes up: the route recovers by itself.
    let doc = Arc::new(Mutex::new(jwks_with("rsa-1")));
    let service = jwks_service(idp, doc.clone()).await;
    eventually("the route did not recover once the keys were reachable", || async {
        status(&client, &url, "rsa-1").await.0 == 200
    })
    .await;
    assert_eq!(documents(admin).await[0]["version"], 1);
    let seen = service.seen.lock().unwrap().clone();
    assert_eq!(
        seen[0].0.headers["host"], "idp.test",
        "fetched with the URI's authority"
    );

    // Rotation: the EC key replaces the RSA key. The copy is fresh for an
    // hour, so only the unknown `kid` brings the new keys (a refetch is
    // refused within a second of the last fetch: wait that out first).
    *doc.lock().unwrap() = jwks_with("ec-1");
    let fetched = service.requests();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, text) = status(&client, &url, "ec-1").await;
    assert_eq!(code, 200, "the unknown kid did not bring the new keys: {text}");
    assert_eq!(service.requests(), fetched + 1, "one refetch for the unknown kid");
    assert_eq!(documents(admin).await[0]["version"], 2);
    let (code, text) = status(&client, &url, "rsa-1").await;
    assert_eq!(code, 401, "a token signed by the rotated-out key: {text}");
    // Unknown keys in a burst: at most one refetch a second.
    let started = Instant::now();
    let burst = service.requests();
    for _ in 0..20 {
        assert_eq!(status(&client, &url, "rsa-1").await.0, 401);
    }
    let refetches = service.requests() - burst;
    assert!(
        refetches <= started.elapsed().as_secs() as usize + 1,
        "{refetches} refetches for 20 unknown keys in {:?}",
        started.elapsed()
    );

    // Outage: the last good keys keep serving while fetches fail (an
    // unknown key asks for one).
    drop(service);
    eventually("/plugins never reported the outage", || async {
        let _ = status(&client, &url, "rsa-1").await;
        let docs = documents(admin).await;
        docs[0]["available"] == true && docs[0]["last_error"].as_str().is_some_and(|e| !e.is_empty())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            status(&client, &url, "ec-1").await.0,
            200,
            "the last good keys stopped serving"
        );
    }

    // The keys never reach the log.
    let log = proxy.log.lock().unwrap().join("\n");
    let modulus = serde_json::from_str::<Value>(&jwks_with("rsa-1")).unwrap()["keys"][0]["n"].clone();
    let x = serde_json::from_str::<Value>(&jwks_with("ec-1")).unwrap()["keys"][0]["x"].clone();
    for secret in [modulus.as_str().unwrap(), x.as_str().unwrap()] {
        assert!(!log.contains(secret), "the document's content was logged");
    }
    assert!(log.contains("remote document updated"), "no update logged");
}
