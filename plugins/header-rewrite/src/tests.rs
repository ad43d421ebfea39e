use super::*;
use sluice_sdk::mock::MockHost;

fn values(host: &MockHost, name: &str) -> Vec<String> {
    host.get_request_headers()
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| String::from_utf8(v).unwrap())
        .collect()
}

#[test]
fn edits_request_and_response() {
    let host = MockHost::new().config_toml(
        r#"
        [request]
        set = { "x-env" = "prod" }
        append = { "x-hop" = "gw" }
        remove = ["x-internal"]
        rename = { "x-old" = "x-new" }
        [response]
        set = { "x-served-by" = "sluice" }
        "#,
    );
    let mut f: HeaderRewrite = host.create().unwrap();
    assert_eq!(f.phases(), Phases::ALL);
    host.request_header("x-internal", "secret")
        .request_header("x-hop", "edge")
        .request_header("x-env", "dev")
        .request_header("x-old", "1")
        .request_header("x-old", "2")
        .request_header("x-new", "gone");
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    assert_eq!(host.get_request_header("x-internal"), None);
    assert_eq!(host.get_request_header("x-env").as_deref(), Some("prod"));
    assert_eq!(values(&host, "x-hop"), ["edge", "gw"]);
    assert_eq!(values(&host, "x-old"), Vec::<String>::new());
    assert_eq!(values(&host, "x-new"), ["1", "2"]);
    host.on_response_headers(&mut f);
    assert_eq!(host.get_response_header("x-served-by").as_deref(), Some("sluice"));
}

#[test]
fn values_use_variables() {
    let host = MockHost::new().config_toml(
        r#"
        [request]
        set = { "x-who" = "${client_ip} ${method} ${host}${path} ${header.x-team}/${context.auth.subject} $$5" }
        [response]
        set = { "x-subject" = "${context.auth.subject}" }
        "#,
    );
    let mut f: HeaderRewrite = host.create().unwrap();
    host.client_address("10.9.8.7:5555")
        .method("POST")
        .path("/orders?id=1")
        .request_header("x-team", "search")
        .context("auth.subject", "alice");
    host.on_request_headers(&mut f);
    assert_eq!(
        host.get_request_header("x-who").as_deref(),
        Some("10.9.8.7 POST example.com/orders?id=1 search/alice $5")
    );
    host.on_response_headers(&mut f);
    assert_eq!(host.get_response_header("x-subject").as_deref(), Some("alice"));
    // Missing values render empty.
    host.start_request();
    host.on_request_headers(&mut f);
    assert_eq!(
        host.get_request_header("x-who").as_deref(),
        Some("127.0.0.1 GET example.com/ / $5")
    );
}

#[test]
fn path_is_rewritten_and_variables_see_the_original() {
    let host = MockHost::new().config_toml(
        r#"
        [request]
        path = { regex = { pattern = '^/api/users/(\d+)$', replacement = "/users/$1/profile" } }
        set = { "x-original-path" = "${path}" }
        "#,
    );
    let mut f: HeaderRewrite = host.create().unwrap();
    assert_eq!(f.phases(), Phases::REQUEST);
    host.path("/api/users/42?full=1");
    host.on_request_headers(&mut f);
    assert_eq!(host.get_path(), "/users/42/profile?full=1");
    assert_eq!(
        host.get_request_header("x-original-path").as_deref(),
        Some("/api/users/42?full=1")
    );
    host.start_request().path("/api/teams/1");
    host.on_request_headers(&mut f);
    assert_eq!(
        host.get_path(),
        "/api/teams/1",
        "a path the rule does not match is left alone"
    );
}

#[test]
fn request_id_is_generated_kept_and_echoed() {
    let host = MockHost::new().config_toml(
        r#"
        [request_id]
        [request]
        set = { "x-trace" = "rid=${request_id}" }
        "#,
    );
    let mut f: HeaderRewrite = host.create().unwrap();
    host.on_request_headers(&mut f);
    let id = host.get_request_header("x-request-id").expect("generated");
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "version 4 UUID: {id}");
    assert_eq!(host.get_context("request_id").as_deref(), Some(id.as_str()));
    assert_eq!(host.get_request_header("x-trace"), Some(format!("rid={id}")));
    host.on_response_headers(&mut f);
    assert_eq!(host.get_response_header("x-request-id"), Some(id.clone()));

    host.start_request();
    host.on_request_headers(&mut f);
    assert_ne!(
        host.get_request_header("x-request-id"),
        Some(id),
        "each request gets its own id"
    );

    host.start_request().request_header("x-request-id", "abc-123");
    host.on_request_headers(&mut f);
    assert_eq!(host.get_request_header("x-request-id").as_deref(), Some("abc-123"));
    host.on_response_headers(&mut f);
    assert_eq!(host.get_response_header("x-request-id").as_deref(), Some("abc-123"));

    host.start_request().request_header("x-request-id", "has space");
    host.on_request_headers(&mut f);
    assert_eq!(host.get_request_header("x-request-id").map(|v| v.len()), Some(36));
}

#[test]
fn custom_request_id_header_without_echo() {
    let host = MockHost::new().config_toml(r#"request_id = { header = "X-Correlation-Id", echo = false }"#);
    let mut f: HeaderRewrite = host.create().unwrap();
    assert_eq!(f.phases(), Phases::REQUEST);
    host.on_request_headers(&mut f);
    assert!(host.get_request_header("x-correlation-id").is_some());
}

#[test]
fn bad_configs_name_the_key() {
    for (config, key) in [
        (r#"request = { set = { "bad name" = "x" } }"#, "request.set.bad name"),
        (r#"request = { sett = {} }"#, "request"),
        ("", "nothing to do"),
        (r#"request = { set = { "x" = "${nope}" } }"#, "request.set.x"),
        (r#"response = { set = { "x" = "${host}" } }"#, "response.set.x"),
        (r#"request = { remove = ["ok", "no way"] }"#, "request.remove[1]"),
        (r#"request = { rename = { "a" = "b c" } }"#, "request.rename.a"),
        (
            r#"request = { path = { strip_prefix = "nope" } }"#,
            "request.path: strip_prefix",
        ),
        (r#"response = { path = { strip_prefix = "/a" } }"#, "response.path"),
        (r#"request_id = { header = "a b" }"#, "request_id.header"),
    ] {
        let host = MockHost::new().config_toml(config);
        let err = host
            .create::<HeaderRewrite>()
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        assert!(err.starts_with(key), "{config}: {err}");
    }
}
