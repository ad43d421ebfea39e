//! Rules on the client certificate: `principals` (SPIFFE ID) and
//! `peer_dns_names`, their negations, and requests without a peer.

use super::*;
use sluice_sdk::{Filter, Phases};

const ALLOW_FRONTEND: &str = r#"
    [[rules]]
    name = "frontend"
    action = "allow"
    when = { principals = ["spiffe://example.org/ns/shop/sa/frontend"] }
"#;

#[test]
fn allows_one_spiffe_id_and_denies_another() {
    let (host, mut f) = setup(ALLOW_FRONTEND);
    assert_eq!(f.phases(), Phases::REQUEST);

    from_spiffe(&host, FRONTEND).path("/api/orders?id=7");
    assert_eq!(run(&host, &mut f), 200);
    assert_eq!(recorded(&host), (some("allow"), some("frontend")));

    from_spiffe(&host, BILLING).path("/api/orders?id=7");
    assert_eq!(run(&host, &mut f), 403);
    assert_eq!(recorded(&host), (some("deny"), None));
    assert_eq!(
        last_info(&host).as_deref(),
        Some("denied: no allow rule matched: GET /api/orders"),
        "the query stays out of the log"
    );
}

#[test]
fn prefix_and_suffix_principals() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "ops-and-admins"
        action = "allow"
        when = { principals = ["spiffe://example.org/ns/ops/*", "*/sa/admin"] }
        "#,
    );
    for (id, status) in [
        (OPS_ADMIN, 200),
        ("spiffe://example.org/ns/ops/sa/deployer", 200),
        ("spiffe://other.org/ns/dev/sa/admin", 200),
        ("spiffe://example.org/ns/opsx/sa/deployer", 403),
        ("spiffe://example.org/ns/dev/sa/admins", 403),
        (FRONTEND, 403),
    ] {
        from_spiffe(&host, id);
        assert_eq!(run(&host, &mut f), status, "{id}");
    }
}

#[test]
fn cleartext_and_certificateless_requests_have_no_principal() {
    let (host, mut f) = setup(ALLOW_FRONTEND);
    cleartext(&host);
    assert_eq!(run(&host, &mut f), 403);
    with_peer(&host, None);
    assert_eq!(run(&host, &mut f), 403, "TLS without a client certificate");

    // A deny rule on a principal does not catch requests without one.
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "no-billing"
        action = "deny"
        when = { principals = ["spiffe://example.org/ns/shop/sa/billing"] }
        "#,
    );
    cleartext(&host);
    assert_eq!(run(&host, &mut f), 200);
    assert_eq!(recorded(&host), (some("allow"), None));
    from_spiffe(&host, BILLING);
    assert_eq!(run(&host, &mut f), 403);
    assert_eq!(recorded(&host), (some("deny"), some("no-billing")));
    assert_eq!(
        last_info(&host).as_deref(),
        Some(r#"denied by rule "no-billing": GET /"#)
    );
}

#[test]
fn star_is_any_verified_peer() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "mtls-only"
        action = "allow"
        when = { principals = ["*"] }
        "#,
    );
    from_spiffe(&host, FRONTEND);
    assert_eq!(run(&host, &mut f), 200);
    with_peer(&host, Some(PeerIdentity::dns(&["web.example.org"], "CN=web")));
    assert_eq!(run(&host, &mut f), 200, "a verified peer without a SPIFFE ID");
    with_peer(&host, None);
    assert_eq!(run(&host, &mut f), 403);
    cleartext(&host);
    assert_eq!(run(&host, &mut f), 403);
}

#[test]
fn not_principals_deny_everyone_else_including_cleartext() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "admin-is-ops-only"
        action = "deny"
        [rules.when]
        paths = ["/admin", "/admin/*"]
        not_principals = ["spiffe://example.org/ns/ops/*"]
        "#,
    );
    from_spiffe(&host, OPS_ADMIN).path("/admin/users");
    assert_eq!(run(&host, &mut f), 200);
    from_spiffe(&host, FRONTEND).path("/admin/users");
    assert_eq!(run(&host, &mut f), 403);
    cleartext(&host).path("/admin");
    assert_eq!(run(&host, &mut f), 403, "no peer is not an ops peer");
    cleartext(&host).path("/public");
    assert_eq!(run(&host, &mut f), 200);
}

#[test]
fn peer_dns_names_ignore_case_and_match_any_san() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "internal"
        action = "allow"
        when = { peer_dns_names = ["*.internal.example.org", "gateway.example.org"] }
        [[rules]]
        name = "not-legacy"
        action = "deny"
        when = { peer_dns_names = ["*"], not_peer_dns_names = ["*.internal.example.org"] }
        "#,
    );
    let peer = |names: &[&str]| Some(PeerIdentity::dns(names, "CN=x"));
    with_peer(&host, peer(&["other.test", "API.Internal.Example.ORG"]));
    assert_eq!(run(&host, &mut f), 200);
    assert_eq!(recorded(&host), (some("allow"), some("internal")));
    with_peer(&host, peer(&["gateway.example.org"]));
    assert_eq!(run(&host, &mut f), 403, "denied: a DNS SAN outside internal");
    assert_eq!(recorded(&host), (some("deny"), some("not-legacy")));
    with_peer(&host, peer(&["internal.example.org"]));
    assert_eq!(run(&host, &mut f), 403, "the suffix needs the dot");
    from_spiffe(&host, FRONTEND);
    assert_eq!(run(&host, &mut f), 403, "no DNS SAN at all");
    assert_eq!(recorded(&host), (some("deny"), None));
}

#[test]
fn spiffe_id_and_dns_names_together() {
    let (host, mut f) = setup(
        r#"
        [[rules]]
        name = "both"
        action = "allow"
        when = { principals = ["spiffe://example.org/*"], peer_dns_names = ["web.example.org"] }
        "#,
    );
    let mut peer = PeerIdentity::spiffe(FRONTEND);
    peer.dns_names = vec!["web.example.org".into()];
    with_peer(&host, Some(peer));
    assert_eq!(run(&host, &mut f), 200);
    from_spiffe(&host, FRONTEND);
    assert_eq!(run(&host, &mut f), 403, "every condition must hold");
}
