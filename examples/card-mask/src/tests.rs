//! The filter against the mock host's response-body phase.

use super::*;
use sluice_sdk::mock::MockHost;

fn filter(host: &MockHost) -> CardMask {
    match host.create() {
        Ok(f) => f,
        Err(e) => panic!("config refused: {e}"),
    }
}

fn replaced(action: BodyAction) -> Vec<u8> {
    match action {
        BodyAction::Replace(body) => body,
        other => panic!("expected a replaced body, got {other:?}"),
    }
}

#[test]
fn asks_only_for_the_response_body() {
    let host = MockHost::new();
    let f = filter(&host);
    assert_eq!(f.body_phases(), BodyPhases::RESPONSE_BODY);
    assert_eq!(f.phases(), Phases::NONE);
}

#[test]
fn luhn_valid_numbers_are_masked_and_counted() {
    let host = MockHost::new();
    let mut f = filter(&host);
    host.response_header("content-type", "text/plain; charset=utf-8");
    let body = "visa 4111111111111111, amex 378282246310005, short 4222222222222.\n";
    let out = replaced(host.on_response_body(&mut f, body.as_bytes()));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "visa ************1111, amex ***********0005, short *********2222.\n"
    );
    assert_eq!(host.get_context(MASKED_KEY).as_deref(), Some("3"));
}

#[test]
fn invalid_numbers_are_untouched() {
    let host = MockHost::new();
    let mut f = filter(&host);
    host.response_header("content-type", "text/plain");
    let body = b"order 4111111111111112, phone 555-0100, id 12345678901234567890123, ts 1767225600000";
    assert_eq!(host.on_response_body(&mut f, body), BodyAction::Continue);
    assert_eq!(host.get_context(MASKED_KEY).as_deref(), Some("0"));
}

#[test]
fn separators_are_kept() {
    let host = MockHost::new();
    let mut f = filter(&host);
    host.response_header("content-type", "text/html");
    let body = b"<p>4111 1111 1111 1111</p><p>5555-5555-5555-4444</p><p>3782 822463 10005</p>";
    let out = replaced(host.on_response_body(&mut f, body));
    assert_eq!(
        out,
        b"<p>**** **** **** 1111</p><p>****-****-****-4444</p><p>**** ****** *0005</p>".to_vec()
    );
    assert_eq!(host.get_context(MASKED_KEY).as_deref(), Some("3"));
}

#[test]
fn other_content_types_are_untouched() {
    let card = b"4111111111111111";
    for content_type in [
        Some("application/octet-stream"),
        Some("image/png"),
        Some("text/csv"),
        None,
    ] {
        let host = MockHost::new();
        let mut f = filter(&host);
        if let Some(t) = content_type {
            host.response_header("content-type", t);
        }
        assert_eq!(
            host.on_response_body(&mut f, card),
            BodyAction::Continue,
            "{content_type:?}"
        );
        assert_eq!(host.get_context(MASKED_KEY), None, "not scanned");
    }
}

#[test]
fn media_types_match_without_parameters_and_case() {
    let host = MockHost::new().config_toml(r#"content_types = ["Text/CSV"]"#);
    let mut f = filter(&host);
    host.response_header("content-type", "TEXT/csv ; header=present");
    let out = replaced(host.on_response_body(&mut f, b"name,card\nA,4111111111111111\n"));
    assert_eq!(out, b"name,card\nA,************1111\n".to_vec());
    // The configured list replaces the default one.
    host.start_request().response_header("content-type", "text/plain");
    assert_eq!(host.on_response_body(&mut f, b"4111111111111111"), BodyAction::Continue);
}

#[test]
fn compressed_bodies_are_untouched() {
    let host = MockHost::new();
    let mut f = filter(&host);
    host.response_header("content-type", "text/plain")
        .response_header("content-encoding", "gzip");
    assert_eq!(host.on_response_body(&mut f, b"4111111111111111"), BodyAction::Continue);
    host.start_request()
        .response_header("content-type", "text/plain")
        .response_header("content-encoding", "identity");
    assert!(matches!(
        host.on_response_body(&mut f, b"4111111111111111"),
        BodyAction::Replace(_)
    ));
}

#[test]
fn json_stays_valid_json() {
    let host = MockHost::new();
    let mut f = filter(&host);
    host.response_header("content-type", "application/json");
    let body = serde_json::json!({
        "customer": "Ada",
        "cards": [
            { "number": "4111 1111 1111 1111", "exp": "12/30" },
            { "number": 5555555555554444u64, "exp": "01/29" },
            { "number": "4111111111111112", "note": "invalid, kept" },
        ],
        "total": 1234.5,
        "negative": -4111111111111111i64,
    });
    let text = serde_json::to_vec(&body).unwrap();
    let out = replaced(host.on_response_body(&mut f, &text));
    let parsed: serde_json::Value = serde_json::from_slice(&out).expect("still valid JSON");
    assert_eq!(parsed["cards"][0]["number"], "**** **** **** 1111");
    assert_eq!(
        parsed["cards"][1]["number"], "************4444",
        "a bare number became a string"
    );
    assert_eq!(parsed["cards"][2]["number"], "4111111111111112");
    assert_eq!(parsed["customer"], "Ada");
    assert_eq!(parsed["total"], 1234.5);
    assert_eq!(parsed["negative"], -4111111111111111i64);
    assert_eq!(host.get_context(MASKED_KEY).as_deref(), Some("2"));
}

#[test]
fn bodies_that_are_not_utf8_are_masked_bytewise() {
    let host = MockHost::new();
    let mut f = filter(&host);
    host.response_header("content-type", "text/plain");
    let out = replaced(host.on_response_body(&mut f, b"\xff\xfe4111111111111111\x80"));
    assert_eq!(out, b"\xff\xfe************1111\x80".to_vec());
}

#[test]
fn bad_configurations_are_refused() {
    for (config, expected) in [
        (r#"content_types = ["json"]"#, "content_types[0]"),
        (r#"content_types = ["text/plain", ""]"#, "content_types[1]"),
        (r#"content_types = "text/plain""#, "content_types"),
        ("max_body_bytes = 10", "unknown field `max_body_bytes`"),
    ] {
        let host = MockHost::new().config_toml(config);
        let err = host.create::<CardMask>().err().unwrap_or_default();
        assert!(err.contains(expected), "{config}: {err:?}");
    }
}
