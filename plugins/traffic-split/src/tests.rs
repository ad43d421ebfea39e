use super::*;
use sluice_sdk::mock::MockHost;

fn split(host: &MockHost) -> TrafficSplit {
    host.clusters("stable", &["stable", "canary", "beta"]);
    host.create().unwrap()
}

const CANARY: &str = r#"
clusters = [{ cluster = "stable", weight = 90 }, { cluster = "canary", weight = 10 }]
overrides = [
  { header = "x-canary", value = "always", cluster = "canary" },
  { cookie = "beta", cluster = "beta" },
]
"#;

#[test]
fn weighted_split_is_close_to_the_weights() {
    let host = MockHost::new().config_toml(CANARY);
    let mut f = split(&host);
    let mut canary = 0;
    for _ in 0..10_000 {
        host.start_request();
        assert_eq!(host.on_request_headers(&mut f), Action::Continue);
        if host.get_cluster() == "canary" {
            canary += 1;
        }
    }
    assert!((800..=1200).contains(&canary), "canary got {canary} of 10000");
}

#[test]
fn overrides_win_over_weights() {
    let host = MockHost::new().config_toml(CANARY);
    let mut f = split(&host);
    for _ in 0..50 {
        host.start_request().request_header("x-canary", "always");
        host.on_request_headers(&mut f);
        assert_eq!(host.get_cluster(), "canary");
    }
    host.start_request().request_header("cookie", "a=1; beta=yes");
    host.on_request_headers(&mut f);
    assert_eq!(host.get_cluster(), "beta");
    // A different value does not match.
    let mut seen_stable = false;
    for _ in 0..50 {
        host.start_request().request_header("x-canary", "never");
        host.on_request_headers(&mut f);
        seen_stable |= host.get_cluster() == "stable";
    }
    assert!(seen_stable);
}

#[test]
fn sticky_key_keeps_a_user_on_one_cluster() {
    let host = MockHost::new().config_toml(
        r#"
        clusters = [{ cluster = "stable", weight = 50 }, { cluster = "canary", weight = 50 }]
        sticky = "header:x-user"
        response_header = "x-cluster"
        "#,
    );
    let mut f = split(&host);
    let mut per_user = std::collections::HashMap::new();
    for round in 0..5 {
        for user in 0..40 {
            host.start_request().request_header("x-user", &format!("user-{user}"));
            host.on_request_headers(&mut f);
            let cluster = host.get_cluster();
            let first = per_user.entry(user).or_insert_with(|| cluster.clone());
            assert_eq!(*first, cluster, "user-{user} moved in round {round}");
            host.on_response_headers(&mut f);
            assert_eq!(host.get_response_header("x-cluster"), Some(cluster));
        }
    }
    // Both clusters get users.
    let canary = per_user.values().filter(|c| *c == "canary").count();
    assert!((5..=35).contains(&canary), "{canary} of 40 users on canary");
}

#[test]
fn unknown_cluster_is_a_500_not_a_panic() {
    let host = MockHost::new().config_toml(r#"clusters = [{ cluster = "nope", weight = 1 }]"#);
    let mut f = split(&host);
    assert!(matches!(host.on_request_headers(&mut f), Action::Respond(r) if r.status == 500));
    assert!(host.logs().iter().any(|(_, m)| m.contains("nope")));
}

#[test]
fn bad_configs_name_the_key() {
    for (config, key) in [
        ("clusters = []", "clusters"),
        (r#"clusters = [{ cluster = "a", weight = 0 }]"#, "clusters"),
        (
            r#"clusters = [{ cluster = "a", weight = 1 }, { cluster = "a", weight = 1 }]"#,
            "clusters[1].cluster",
        ),
        (r#"clusters = [{ cluster = "a", weight = -1 }]"#, "clusters[0].weight"),
        (
            r#"clusters = [{ cluster = "a", weight = 1 }]
               overrides = [{ cluster = "a" }]"#,
            "overrides[0]",
        ),
        (
            r#"clusters = [{ cluster = "a", weight = 1 }]
               overrides = [{ header = "bad name", cluster = "a" }]"#,
            "overrides[0].header",
        ),
        (
            r#"clusters = [{ cluster = "a", weight = 1 }]
            sticky = "ip""#,
            "sticky",
        ),
        (
            r#"clusters = [{ cluster = "a", weight = 1, extra = 2 }]"#,
            "clusters[0]",
        ),
    ] {
        let host = MockHost::new().config_toml(config);
        let err = host
            .create::<TrafficSplit>()
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.starts_with(key), "{config}: {err}");
    }
}
