//! API keys, precedence between the methods, and the no-credentials challenge.

use super::*;

/// SHA-256 of `team-a-secret`.
const TEAM_A_SHA256: &str = "9a437339f86986f3de68d17a40511c2e61588bb30f4c5e01ab5c4991a2a4dc41";

fn config(extra: &str) -> String {
    format!(
        r#"subject_header = "x-auth-subject"
{extra}
[api_keys]
query = "api_key"
keys = [{{ id = "ci", key = "plain-secret" }}, {{ id = "team-a", sha256 = "{TEAM_A_SHA256}" }}]
"#
    )
}

fn host_with(extra: &str) -> (MockHost, Auth) {
    let host = MockHost::new().config_toml(&config(extra));
    let f = filter(&host);
    (host, f)
}

#[test]
fn plain_key_in_header() {
    let (host, mut f) = host_with("");
    host.request_header("x-api-key", "plain-secret")
        .request_header("x-auth-subject", "mallory");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("ci"));
    assert_eq!(host.get_context("auth.method").as_deref(), Some("api-key"));
    assert_eq!(host.get_request_header("x-auth-subject").as_deref(), Some("ci"));
    assert_eq!(host.get_request_header("x-api-key"), None);
}

#[test]
fn sha256_key_in_header() {
    let (host, mut f) = host_with("");
    host.request_header("X-Api-Key", "team-a-secret");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("team-a"));
    assert_eq!(host.get_request_header("x-api-key"), None);
}

#[test]
fn key_in_query_is_stripped_from_the_path() {
    let (host, mut f) = host_with("");
    host.path("/orders?limit=2&api_key=team-a-secret&sort=asc");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("team-a"));
    assert_eq!(host.get_path(), "/orders?limit=2&sort=asc");

    host.start_request();
    host.path("/orders?api_key=plain%2Dsecret");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_context("auth.subject").as_deref(), Some("ci"));
    assert_eq!(host.get_path(), "/orders");
}

#[test]
fn header_wins_over_query_and_both_are_stripped() {
    let (host, mut f) = host_with("");
    host.path("/orders?api_key=wrong")
        .request_header("x-api-key", "plain-secret");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_path(), "/orders");
    assert_eq!(host.get_request_header("x-api-key"), None);
}

#[test]
fn credentials_are_kept_when_strip_is_off() {
    let (host, mut f) = host_with("strip_credentials = false");
    host.path("/orders?api_key=plain-secret");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_path(), "/orders?api_key=plain-secret");
    host.start_request();
    host.request_header("x-api-key", "plain-secret");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_request_header("x-api-key").as_deref(), Some("plain-secret"));
}

#[test]
fn wrong_key_gets_the_api_key_challenge() {
    let (host, mut f) = host_with("");
    for (header, path) in [(Some("plain-secreT"), "/"), (Some(""), "/"), (None, "/?api_key=nope")] {
        host.start_request();
        host.path(path);
        if let Some(key) = header {
            host.request_header("x-api-key", key);
        }
        let r = reply(host.on_request_headers(&mut f));
        assert_eq!(r.status, 401);
        assert_eq!(
            r.challenges,
            ["ApiKey realm=\"sluice\", header=\"x-api-key\", query=\"api_key\""]
        );
        assert_eq!(r.body, "unauthorized: invalid API key\n");
        assert_eq!(host.get_context("auth.subject"), None);
    }
}

#[test]
fn no_credentials_gets_both_challenges() {
    let config = format!(
        "[api_keys]\nkeys = [{{ id = \"ci\", key = \"plain-secret\" }}]\n{}",
        HS_CONFIG.replace("subject_header = \"x-auth-subject\"", "")
    );
    let host = MockHost::new().config_toml(&config);
    let mut f = filter(&host);
    // An Authorization header of another scheme is not a credential here.
    for authorization in [None, Some("Basic dXNlcjpwYXNz")] {
        host.start_request();
        if let Some(value) = authorization {
            host.request_header("authorization", value);
        }
        let r = reply(host.on_request_headers(&mut f));
        assert_eq!(r.status, 401);
        assert_eq!(
            r.challenges,
            [
                "Bearer realm=\"sluice\"",
                "ApiKey realm=\"sluice\", header=\"x-api-key\""
            ]
        );
        assert_eq!(r.body, "unauthorized: credentials required\n");
        assert_eq!(r.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    }
}

#[test]
fn bearer_token_decides_before_an_api_key() {
    let config = format!(
        "realm = \"api\"\n[api_keys]\nkeys = [{{ id = \"ci\", key = \"plain-secret\" }}]\n{}",
        HS_CONFIG.replace("subject_header = \"x-auth-subject\"", "")
    );
    let host = MockHost::new().config_toml(&config);
    let mut f = filter(&host);
    // A valid API key does not rescue an invalid token.
    host.request_header("authorization", "Bearer not-a-jwt")
        .request_header("x-api-key", "plain-secret");
    let r = reply(host.on_request_headers(&mut f));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.challenges,
        ["Bearer realm=\"api\", error=\"invalid_token\", error_description=\"malformed token\""]
    );

    // A valid token wins, and the API key is stripped as well.
    host.start_request();
    let token = hs(&claims(json!({})));
    host.request_header("authorization", &format!("Bearer {token}"))
        .request_header("x-api-key", "plain-secret");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_context("auth.method").as_deref(), Some("jwt"));
    assert_eq!(host.get_request_header("x-api-key"), None);

    // Basic credentials are left alone for the upstream.
    host.start_request();
    host.request_header("authorization", "Basic dXNlcjpwYXNz")
        .request_header("x-api-key", "plain-secret");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_context("auth.method").as_deref(), Some("api-key"));
    assert_eq!(
        host.get_request_header("authorization").as_deref(),
        Some("Basic dXNlcjpwYXNz")
    );
}

#[test]
fn bearer_is_ignored_without_jwt() {
    let (host, mut f) = host_with("");
    host.request_header("authorization", "Bearer something");
    let r = reply(host.on_request_headers(&mut f));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.challenges,
        ["ApiKey realm=\"sluice\", header=\"x-api-key\", query=\"api_key\""]
    );
    host.start_request();
    host.request_header("authorization", "Bearer something")
        .request_header("x-api-key", "plain-secret");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(
        host.get_request_header("authorization").as_deref(),
        Some("Bearer something")
    );
}

#[test]
fn custom_header_name() {
    let host = MockHost::new()
        .config_toml("[api_keys]\nheader = \"X-Team-Key\"\nkeys = [{ id = \"ci\", key = \"plain-secret\" }]");
    let mut f = filter(&host);
    host.request_header("x-team-key", "plain-secret");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    host.start_request();
    let r = reply(host.on_request_headers(&mut f));
    assert_eq!(r.challenges, ["ApiKey realm=\"sluice\", header=\"x-team-key\""]);
}
