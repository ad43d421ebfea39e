//! Rules on the request: context (`auth.subject`, claims), method, path,
//! host, headers, client address, their negations, and evaluation order.

use super::*;

#[test]
fn deny_rules_come_first() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "everyone"
        action = "allow"
        [[rules]]
        name = "deny-legacy"
        action = "deny"
        when = { paths = ["/legacy/*"] }
        "#,
    );
    host.path("/legacy/x");
    assert_eq!(run(&host, &mut f), 403, "a later deny rule still wins");
    assert_eq!(recorded(&host), (some("deny"), some("deny-legacy")));
    host.start_request().path("/new");
    assert_eq!(run(&host, &mut f), 200, "an empty `when` matches every request");
    assert_eq!(recorded(&host), (some("allow"), some("everyone")));
}

#[test]
fn allow_rules_deny_by_default_deny_rules_do_not() {
    let allow = r#"
        [[rules]]
        name = "reads"
        action = "allow"
        when = { methods = ["GET", "HEAD"] }
    "#;
    let (host, mut f) = setup(allow);
    host.method("HEAD");
    assert_eq!(run(&host, &mut f), 200);
    host.start_request().method("POST");
    assert_eq!(run(&host, &mut f), 403);
    host.start_request().method("get");
    assert_eq!(run(&host, &mut f), 403, "methods are case-sensitive");

    let (host, mut f) = setup(&allow.replace("allow", "deny").replace("reads", "no-reads"));
    host.method("POST");
    assert_eq!(run(&host, &mut f), 200);
    assert_eq!(recorded(&host), (some("allow"), None));
    host.start_request().method("GET");
    assert_eq!(run(&host, &mut f), 403);
}

#[test]
fn subjects_and_claims_come_from_the_context() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "people"
        action = "allow"
        when = { subjects = ["alice", "svc-*"], claims = { role = ["admin", "ops"] } }
        "#,
    );
    let request = |subject: Option<&str>, role: Option<&str>| {
        host.start_request();
        if let Some(s) = subject {
            host.context("auth.subject", s);
        }
        if let Some(r) = role {
            // As `auth` stores them: the text, and for an array its
            // elements as JSON.
            host.context("auth.claim.role", r);
            if let Some(list) = r.strip_prefix("list:") {
                let items: Vec<&str> = list.split('|').collect();
                host.context("auth.claim.role", &items.join(","));
                host.context("auth.claim_list.role", &serde_json::to_string(&items).unwrap());
            }
        }
    };
    for (subject, role, status) in [
        (Some("alice"), Some("admin"), 200),
        (Some("svc-billing"), Some("ops"), 200),
        (Some("svc-billing"), Some("list:dev|ops"), 200),
        // A string claim with a comma is one value, not a list.
        (Some("svc-billing"), Some("dev,ops"), 403),
        (Some("alice"), Some("dev"), 403),
        (Some("alice"), Some("admins"), 403),
        (Some("bob"), Some("admin"), 403),
        (None, Some("admin"), 403),
        (Some("alice"), None, 403),
    ] {
        request(subject, role);
        assert_eq!(run(&host, &mut f), status, "{subject:?} {role:?}");
    }
}

#[test]
fn paths_exact_prefix_and_suffix_without_the_query() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "paths"
        action = "allow"
        when = { paths = ["/admin", "/api/*", "*.json"] }
        "#,
    );
    for (path, status) in [
        ("/admin", 200),
        ("/admin?x=1", 200),
        ("/admin/", 403),
        ("/administrator", 403),
        ("/api/", 200),
        ("/api/v1/users?q=/admin", 200),
        ("/api", 403),
        ("/data/x.json", 200),
        ("/data?f=x.json", 403),
    ] {
        host.start_request().path(path);
        assert_eq!(run(&host, &mut f), status, "{path}");
    }
}

#[test]
fn hosts_ignore_port_and_case() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "hosts"
        action = "allow"
        when = { hosts = ["api.example.com", "*.Internal.Example.com", "[::1]"] }
        "#,
    );
    for (authority, status) in [
        ("api.example.com", 200),
        ("API.Example.COM:8443", 200),
        ("a.b.internal.example.com", 200),
        ("internal.example.com", 403),
        ("example.com", 403),
        ("api.example.com.evil", 403),
        ("[::1]:443", 200),
    ] {
        host.start_request().authority(Some(authority));
        assert_eq!(run(&host, &mut f), status, "{authority}");
    }
}

#[test]
fn headers_match_any_value() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "envs"
        action = "allow"
        when = { headers = { "X-Env" = ["prod", "stage-*", "*-canary"], "x-team" = ["*"] } }
        "#,
    );
    let request = |envs: &[&str], team: bool| {
        host.start_request();
        for env in envs {
            host.request_header("x-env", env);
        }
        if team {
            host.request_header("x-team", "");
        }
    };
    for (envs, team, status) in [
        (&["prod"][..], true, 200),
        (&["stage-2"], true, 200),
        (&["eu-canary"], true, 200),
        (&["dev", "prod"], true, 200),
        (&["production"], true, 403),
        (&["prod"], false, 403),
        (&[], true, 403),
    ] {
        request(envs, team);
        assert_eq!(run(&host, &mut f), status, "{envs:?} team={team}");
    }
}

#[test]
fn source_ips_v4_and_v6() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "nets"
        action = "allow"
        when = { source_ips = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "::1/128"] }
        "#,
    );
    for (client, status) in [
        ("10.1.2.3:5000", 200),
        ("10.255.255.255:1", 200),
        ("11.0.0.0:1", 403),
        ("[::ffff:10.9.9.9]:80", 200),
        ("192.0.2.7:443", 200),
        ("192.0.2.8:443", 403),
        ("[2001:db8:ffff::1]:443", 200),
        ("[2001:db9::1]:443", 403),
        ("[::1]:80", 200),
        ("127.0.0.1:80", 403),
        ("unix:/run/sluice.sock", 403),
    ] {
        host.start_request().client_address(client);
        assert_eq!(run(&host, &mut f), status, "{client}");
    }
}

#[test]
fn zero_prefixes_match_one_family_each() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "v4"
        action = "deny"
        when = { source_ips = ["0.0.0.0/0"] }
        "#,
    );
    host.client_address("203.0.113.9:1");
    assert_eq!(run(&host, &mut f), 403);
    host.start_request().client_address("[2001:db8::1]:1");
    assert_eq!(run(&host, &mut f), 200);

    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "v6"
        action = "deny"
        when = { source_ips = ["::/0"] }
        "#,
    );
    host.client_address("[2001:db8::1]:1");
    assert_eq!(run(&host, &mut f), 403);
    host.start_request().client_address("203.0.113.9:1");
    assert_eq!(run(&host, &mut f), 200);
}

#[test]
fn negations() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "outside"
        action = "deny"
        when = { paths = ["/internal/*"], not_source_ips = ["10.0.0.0/8"] }
        [[rules]]
        name = "writes"
        action = "deny"
        when = { not_methods = ["GET", "HEAD"], not_paths = ["/upload", "/upload/*"] }
        [[rules]]
        name = "foreign-host"
        action = "deny"
        when = { not_hosts = ["*.example.com"] }
        [[rules]]
        name = "not-bots"
        action = "deny"
        when = { paths = ["/me"], not_subjects = ["*"] }
        "#,
    );
    let request = |client: &str, method: &str, path: &str, authority: &str| {
        host.start_request()
            .client_address(client)
            .method(method)
            .path(path)
            .authority(Some(authority));
    };
    let inside = "10.0.0.5:1";
    let outside = "198.51.100.1:1";
    let cases = [
        (inside, "GET", "/internal/x", "a.example.com", 200, None),
        (outside, "GET", "/internal/x", "a.example.com", 403, Some("outside")),
        (outside, "POST", "/upload/1", "a.example.com", 200, None),
        (outside, "POST", "/orders", "a.example.com", 403, Some("writes")),
        (inside, "GET", "/", "example.org", 403, Some("foreign-host")),
        (inside, "GET", "/me", "a.example.com", 403, Some("not-bots")),
    ];
    for (client, method, path, authority, status, rule) in cases {
        request(client, method, path, authority);
        assert_eq!(run(&host, &mut f), status, "{method} {path} from {client}");
        assert_eq!(host.get_context(RULE_KEY).as_deref(), rule);
    }
    request(inside, "GET", "/me", "a.example.com");
    host.context("auth.subject", "alice");
    assert_eq!(run(&host, &mut f), 200);
}

#[test]
fn conditions_and_within_or_across() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "frontend-api-reads"
        action = "allow"
        [rules.when]
        principals = ["spiffe://example.org/ns/shop/sa/frontend"]
        methods = ["GET"]
        paths = ["/api/*"]
        "#,
    );
    from_spiffe(&host, FRONTEND).path("/api/x");
    assert_eq!(run(&host, &mut f), 200);
    from_spiffe(&host, FRONTEND).path("/api/x").method("DELETE");
    assert_eq!(run(&host, &mut f), 403);
    from_spiffe(&host, FRONTEND).path("/other");
    assert_eq!(run(&host, &mut f), 403);
    from_spiffe(&host, BILLING).path("/api/x");
    assert_eq!(run(&host, &mut f), 403);
}

#[test]
fn earlier_values_in_the_context_are_replaced() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "no-admin"
        action = "deny"
        when = { paths = ["/admin"] }
        "#,
    );
    host.context(RULE_KEY, "stale").context(DECISION_KEY, "deny");
    assert_eq!(run(&host, &mut f), 200);
    assert_eq!(recorded(&host), (some("allow"), None));
}
