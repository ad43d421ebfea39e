//! Bad configurations are rejected when they load, naming the key.

use super::*;

#[track_caller]
fn assert_rejected(toml: &str, expected: &str) {
    let err = rejected(toml);
    assert!(err.contains(expected), "expected {expected:?} in {err:?}");
}

/// One allow rule with this `when` body (inline table contents).
fn when(body: &str) -> String {
    format!("[[rules]]\nname = \"r\"\naction = \"allow\"\nwhen = {{ {body} }}\n")
}

#[test]
fn needs_rules() {
    assert_rejected("", "rules: at least one rule is required");
    assert_rejected("rules = []", "rules: at least one rule is required");
}

#[test]
fn unknown_keys_are_named() {
    assert_rejected(
        "deny_status = 401\n[[rules]]\nname = \"r\"\naction = \"deny\"",
        "unknown field `deny_status`",
    );
    assert_rejected(
        "[[rules]]\nname = \"r\"\naction = \"deny\"\nprincipals = [\"*\"]",
        "rules[0].principals: unknown field `principals`, expected one of `name`, `action`, `when`",
    );
    assert_rejected(
        &when("principal = [\"*\"]"),
        "rules[0].when.principal: unknown field `principal`",
    );
    assert_rejected(
        &when("principals = \"*\""),
        "rules[0].when.principals: invalid type: string",
    );
}

#[test]
fn names_are_required_and_unique() {
    assert_rejected("[[rules]]\naction = \"deny\"", "rules[0]: missing field `name`");
    assert_rejected(
        "[[rules]]\nname = \"\"\naction = \"deny\"",
        "rules[0].name: \"\" must be 1 to 128",
    );
    assert_eq!(
        rejected(
            "[[rules]]\nname = \"a\"\naction = \"deny\"\n[[rules]]\nname = \"b\"\naction = \"allow\"\n\
             [[rules]]\nname = \"a\"\naction = \"allow\""
        ),
        "rules[2].name: duplicate rule name \"a\""
    );
}

#[test]
fn actions_are_allow_or_deny() {
    assert_rejected(
        "[[rules]]\nname = \"r\"\naction = \"permit\"",
        "rules[0].action: unknown variant `permit`, expected `allow` or `deny`",
    );
    assert_rejected("[[rules]]\nname = \"r\"\naction = \"ALLOW\"", "rules[0].action");
    assert_rejected("[[rules]]\nname = \"r\"", "rules[0]: missing field `action`");
}

#[test]
fn a_bad_cidr_names_the_key() {
    let config = "[[rules]]\nname = \"a\"\naction = \"deny\"\n\
                  [[rules]]\nname = \"b\"\naction = \"deny\"\n\
                  [[rules]]\nname = \"c\"\naction = \"allow\"\n\
                  when = { source_ips = [\"10.0.0/8\", \"10.0.0.0/8\"] }";
    assert_eq!(
        rejected(config),
        "rules[2].when.source_ips[0]: invalid CIDR \"10.0.0/8\""
    );
    assert_eq!(
        rejected(&when("not_source_ips = [\"::1\", \"10.1.0.0/8\"]")),
        "rules[0].when.not_source_ips[1]: invalid CIDR \"10.1.0.0/8\": host bits are set (the network is 10.0.0.0/8)"
    );
    assert_rejected(&when("source_ips = [\"10.0.0.0/33\"]"), "source_ips[0]: invalid CIDR");
}

#[test]
fn empty_lists_are_mistakes() {
    assert_rejected(&when("paths = []"), "rules[0].when.paths: must not be empty");
    assert_rejected(
        &when("claims = { role = [] }"),
        "rules[0].when.claims.role: must not be empty",
    );
    assert_rejected(
        &when("headers = { x-env = [] }"),
        "rules[0].when.headers.x-env: must not be empty",
    );
}

#[test]
fn patterns_are_checked() {
    for (body, expected) in [
        (
            "subjects = [\"a*b\"]",
            "rules[0].when.subjects[0]: \"a*b\": `*` may only be",
        ),
        ("subjects = [\"*a*\"]", "rules[0].when.subjects[0]"),
        ("not_subjects = [\"\"]", "rules[0].when.not_subjects[0]: empty pattern"),
        (
            "principals = [\"*\", \"cluster.local/ns/a/sa/b\"]",
            "rules[0].when.principals[1]: \"cluster.local/ns/a/sa/b\" is not a SPIFFE ID",
        ),
        (
            "not_principals = [\"web.example.org\"]",
            "or match DNS SANs with `peer_dns_names`",
        ),
        (
            "paths = [\"api/*\"]",
            "rules[0].when.paths[0]: \"api/\" must start with `/`",
        ),
        (
            "not_paths = [\"/a?b=1\"]",
            "rules[0].when.not_paths[0]: \"/a?b=1\": the query is not part",
        ),
        (
            "hosts = [\"api.example.com:8443\"]",
            "rules[0].when.hosts[0]: \"api.example.com:8443\": ports are ignored",
        ),
        (
            "methods = [\"get\"]",
            "rules[0].when.methods[0]: \"get\": methods are case-sensitive, write \"GET\"",
        ),
        (
            "not_methods = [\"*\"]",
            "rules[0].when.not_methods[0]: \"*\": methods match exactly",
        ),
        (
            "methods = [\"GE T\"]",
            "rules[0].when.methods[0]: \"GE T\" is not a valid HTTP method",
        ),
        (
            "headers = { \"bad name\" = [\"x\"] }",
            "rules[0].when.headers.bad name: \"bad name\" is not a valid header name",
        ),
        (
            "headers = { Host = [\"x\"] }",
            "rules[0].when.headers.Host: match the host with `hosts`",
        ),
        (
            "claims = { \"\" = [\"x\"] }",
            "rules[0].when.claims.: \"\" is not a claim name",
        ),
        ("claims = { role = [\"a**\"] }", "rules[0].when.claims.role[0]"),
        (
            "claims = { \"auth.claim.role\" = [\"admin\"] }",
            "rules[0].when.claims.auth.claim.role: write the claim name without the `auth.claim.` prefix",
        ),
    ] {
        assert_rejected(&when(body), expected);
    }
}

#[test]
fn good_forms_are_accepted() {
    setup(&when(
        "principals = [\"spiffe://td/ns/a/sa/b\", \"spiffe://td/*\", \"*/sa/admin\", \"*\"], \
         peer_dns_names = [\"*.Example.org\"], subjects = [\"*\"], claims = { \"groups\" = [\"a\"] }, \
         methods = [\"GET\", \"PURGE\"], paths = [\"*\", \"/\", \"*.json\"], hosts = [\"*\", \"[::1]\"], \
         headers = { \"X-A\" = [\"*\"], \"x-a\" = [\"v\"] }, source_ips = [\"0.0.0.0/0\", \"::/0\", \"::ffff:10.0.0.0/104\"]",
    ));
}
