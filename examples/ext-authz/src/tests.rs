//! The filter against the mock host, with the authorization service
//! scripted through `MockHost::outbound`.

use super::*;
use sluice_sdk::mock::MockHost;
use sluice_sdk::outbound::CallError;

fn host(config: &str) -> (MockHost, ExtAuthz) {
    let host = MockHost::new().config_toml(config);
    let filter = match host.create() {
        Ok(f) => f,
        Err(e) => panic!("config refused: {e}"),
    };
    (host, filter)
}

fn responded(action: Action) -> LocalResponse {
    match action {
        Action::Respond(r) => r,
        other => panic!("expected a local response, got {other:?}"),
    }
}

fn header<'a>(r: &'a LocalResponse, name: &str) -> Option<&'a [u8]> {
    r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
}

#[test]
fn the_service_sees_the_request() {
    let (host, mut f) = host(
        r#"cluster = "authz"
forward_headers = ["authorization", "X-Tenant"]"#,
    );
    host.outbound(|_| Ok(OutboundResponse::new(200, "")));
    host.method("DELETE")
        .path("/orders/7?force=1")
        .client_address("203.0.113.9:5555")
        .request_header("authorization", "Bearer a")
        .request_header("authorization", "Bearer b")
        .request_header("x-tenant", "acme")
        .request_header("cookie", "secret=1");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);

    let sent = host.outbound_requests();
    assert_eq!(sent.len(), 1);
    let check = &sent[0];
    assert_eq!((check.method.as_str(), check.cluster.as_str()), ("POST", "authz"));
    assert_eq!(check.path, "/check");
    assert_eq!(check.timeout, Some(Duration::from_millis(200)));
    assert!(check.body.is_empty());
    let expected: Vec<(String, Vec<u8>)> = [
        ("x-ext-authz-method", "DELETE"),
        ("x-ext-authz-path", "/orders/7?force=1"),
        ("x-ext-authz-client", "203.0.113.9:5555"),
        ("authorization", "Bearer a"),
        ("authorization", "Bearer b"),
        ("x-tenant", "acme"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
    .collect();
    assert_eq!(check.headers, expected, "no cookie: only forward_headers go");
}

#[test]
fn allowed_requests_get_the_service_headers_and_user() {
    let (host, mut f) = host(
        r#"cluster = "authz"
allowed_upstream_headers = ["x-auth-user", "x-auth-roles"]"#,
    );
    host.outbound(|_| {
        Ok(OutboundResponse::new(200, "ok")
            .with_header("X-Auth-User", "alice")
            .with_header("x-auth-roles", "admin")
            .with_header("x-auth-roles", "ops")
            .with_header("x-internal", "not copied"))
    });
    // The client's own claims are removed before the service's are added.
    host.request_header("x-auth-user", "mallory");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_request_header("x-auth-user").as_deref(), Some("alice"));
    let roles: Vec<_> = host
        .get_request_headers()
        .into_iter()
        .filter(|(n, _)| n == "x-auth-roles")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(roles, vec![b"admin".to_vec(), b"ops".to_vec()]);
    assert_eq!(host.get_request_header("x-internal"), None);
    assert_eq!(host.get_context(USER_KEY).as_deref(), Some("alice"));
}

#[test]
fn spoofed_headers_are_removed_when_the_service_sets_none() {
    let (host, mut f) = host(r#"cluster = "authz""#);
    host.outbound(|_| Ok(OutboundResponse::new(200, "")));
    host.request_header("x-auth-user", "admin");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_request_header("x-auth-user"), None);
    assert_eq!(host.get_context(USER_KEY), None);
}

#[test]
fn denials_carry_the_service_answer() {
    let (host, mut f) = host(r#"cluster = "authz""#);
    host.outbound(
        |_| Ok(OutboundResponse::new(403, "no access to orders\n").with_header("content-type", "text/plain")),
    );
    let r = responded(host.on_request_headers(&mut f));
    assert_eq!(r.status, 403);
    assert_eq!(r.body, b"no access to orders\n");
    assert_eq!(header(&r, "content-type"), Some(&b"text/plain"[..]));

    host.start_request();
    host.outbound(|_| {
        Ok(OutboundResponse::new(401, "")
            .with_header("www-authenticate", "Bearer realm=\"api\"")
            .with_header("x-internal", "secret"))
    });
    let r = responded(host.on_request_headers(&mut f));
    assert_eq!(r.status, 401, "a 4xx is passed on");
    assert_eq!(header(&r, "www-authenticate"), Some(&b"Bearer realm=\"api\""[..]));
    assert_eq!(header(&r, "x-internal"), None);
}

#[test]
fn other_statuses_deny_with_403() {
    for status in [201, 204, 302, 500, 503] {
        let (host, mut f) = host(r#"cluster = "authz""#);
        host.outbound(move |_| Ok(OutboundResponse::new(status, "nope")));
        let r = responded(host.on_request_headers(&mut f));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (403, &b"nope"[..]),
            "service said {status}"
        );
    }
}

/// An entry's `max_response_bytes` may be above what a local response may
/// carry (the mock's is fixed at the 1 MiB default, so `deny` is called
/// directly).
#[test]
fn an_oversized_denial_body_is_dropped() {
    let r = responded(deny(OutboundResponse::new(403, vec![b'x'; MAX_LOCAL_BODY_BYTES + 1])));
    assert_eq!(r.status, 403);
    assert!(r.body.is_empty());
    let r = responded(deny(OutboundResponse::new(403, vec![b'x'; MAX_LOCAL_BODY_BYTES])));
    assert_eq!(r.body.len(), MAX_LOCAL_BODY_BYTES);
    assert_eq!(MockHost::new().check_local_response(&r), Ok(()));
}

#[test]
fn an_unreachable_service_denies_with_503() {
    for error in [
        CallError::Timeout,
        CallError::Failed("connection refused".into()),
        CallError::ResponseTooLarge,
    ] {
        let (host, mut f) = host(r#"cluster = "authz""#);
        let e = error.clone();
        host.outbound(move |_| Err(e.clone()));
        let r = responded(host.on_request_headers(&mut f));
        assert_eq!(r.status, 503, "{error}");
        assert_eq!(r.body, UNAVAILABLE.as_bytes());
        assert!(host.logs().iter().any(|(_, m)| m.contains(&error.to_string())));
    }
}

#[test]
fn a_cluster_the_entry_does_not_list_denies_with_503() {
    let (host, mut f) = host(r#"cluster = "authz""#);
    host.clusters("app", &["app"]);
    host.outbound(|_| Ok(OutboundResponse::new(200, "")));
    let r = responded(host.on_request_headers(&mut f));
    assert_eq!(r.status, 503);
    assert!(host.outbound_requests().is_empty(), "nothing was sent");
    assert!(host.logs().iter().any(|(_, m)| m.contains("not allowed")));
}

#[test]
fn failure_mode_allow_lets_requests_through() {
    let (host, mut f) = host(
        r#"cluster = "authz"
failure_mode_allow = true"#,
    );
    host.outbound(|_| Err(CallError::Timeout));
    host.request_header("x-auth-user", "mallory");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_request_header("x-auth-user"), None, "claims still removed");
    // A service that answers still decides.
    host.start_request();
    host.outbound(|_| Ok(OutboundResponse::new(403, "")));
    assert_eq!(responded(host.on_request_headers(&mut f)).status, 403);
}

#[test]
fn configured_path_and_timeout() {
    let (host, mut f) = host(
        r#"cluster = "authz"
path = "/v1/authorize?source=sluice"
timeout_ms = 75"#,
    );
    host.outbound(|_| Ok(OutboundResponse::new(200, "")));
    host.on_request_headers(&mut f);
    let check = &host.outbound_requests()[0];
    assert_eq!(check.path, "/v1/authorize?source=sluice");
    assert_eq!(check.timeout, Some(Duration::from_millis(75)));
    assert_eq!(f.phases(), Phases::REQUEST);
}

#[test]
fn bad_configurations_are_refused() {
    for (config, expected) in [
        ("", "missing field `cluster`"),
        (r#"cluster = """#, "cluster: must name"),
        (
            "cluster = \"a\"\npath = \"check\"",
            "path: \"check\" must start with '/'",
        ),
        ("cluster = \"a\"\ntimeout_ms = 0", "timeout_ms: must be at least 1"),
        ("cluster = \"a\"\ntimeout_ms = -1", "timeout_ms"),
        (
            "cluster = \"a\"\nforward_headers = [\"ok\", \"bad name\"]",
            "forward_headers[1]",
        ),
        (
            "cluster = \"a\"\nforward_headers = [\"Host\"]",
            "forward_headers[0]: host is managed",
        ),
        (
            "cluster = \"a\"\nallowed_upstream_headers = [\"content-length\"]",
            "allowed_upstream_headers[0]",
        ),
        ("cluster = \"a\"\nfailure_mode = true", "unknown field `failure_mode`"),
    ] {
        let host = MockHost::new().config_toml(config);
        let err = host.create::<ExtAuthz>().err().unwrap_or_default();
        assert!(err.contains(expected), "{config:?}: {err:?}");
    }
}
