//! Native tests against the SDK's mock host, which makes the host's GCRA
//! decisions exactly. The mock runs one thread, so these check the requests
//! the filter makes of the store, keys, headers and configuration; exactness
//! under concurrent instances is the host's (`store::acquire` is atomic).

use super::*;
use sluice_sdk::mock::MockHost;
use sluice_sdk::shared;
use std::time::Duration;

mod shared_store;

/// The mock's default wall clock: 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000_000_000;
const MS: u64 = 1_000_000;

/// 10/s with a burst of 20, and 1000/hour.
const BURST_AND_HOURLY: &str = r#"
    [[limits]]
    name = "burst"
    requests = 10
    per = "1s"
    burst = 20
    [[limits]]
    name = "hourly"
    requests = 1000
    per = "1h"
"#;

fn filter(host: &MockHost) -> RateLimit {
    match host.create::<RateLimit>() {
        Ok(f) => f,
        Err(e) => panic!("config rejected: {e}"),
    }
}

/// Run the request phase of a fresh request from `client` (`ip:port`).
fn hit(host: &MockHost, f: &mut RateLimit, client: &str) -> Action {
    host.start_request().client_address(client);
    host.on_request_headers(f)
}

fn status(action: &Action) -> u16 {
    match action {
        Action::Continue => 200,
        Action::Respond(r) => r.status,
        other => panic!("unexpected action {other:?}"),
    }
}

fn header(action: &Action, name: &str) -> Option<String> {
    match action {
        Action::Continue => None,
        Action::Respond(r) => r
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned()),
        other => panic!("unexpected action {other:?}"),
    }
}

fn allowed_times(host: &MockHost, f: &mut RateLimit, client: &str, max: usize) -> usize {
    (0..max).take_while(|_| status(&hit(host, f, client)) == 200).count()
}

const CLIENT: &str = "127.0.0.1:40000";

#[test]
fn exactly_burst_at_one_instant_then_429() {
    let host = MockHost::new().config_toml(BURST_AND_HOURLY);
    let mut f = filter(&host);
    assert_eq!(f.phases(), Phases::REQUEST);
    for i in 0..20 {
        assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200, "request {i}");
    }
    for _ in 0..5 {
        assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429);
    }
}

#[test]
fn refill_after_one_interval_allows_exactly_one_more() {
    let host = MockHost::new().config_toml(BURST_AND_HOURLY);
    let mut f = filter(&host);
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 100), 20);
    // T = 100ms: one nanosecond short is not enough ...
    host.advance(Duration::from_nanos(100 * MS - 1));
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429);
    // ... T is, for exactly one request (the denials above took nothing).
    host.advance(Duration::from_nanos(1));
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429);
    // A long idle period refills to the burst, not beyond.
    host.advance(Duration::from_secs(60));
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 100), 20);
}

#[test]
fn long_window_limit_is_enforced_too() {
    let host = MockHost::new().config_toml(
        r#"
        [[limits]]
        name = "burst"
        requests = 10
        per = "1s"
        burst = 20
        [[limits]]
        name = "hourly"
        requests = 30
        per = "1h"
        "#,
    );
    let mut f = filter(&host);
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 100), 20);
    host.advance(Duration::from_secs(1));
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 100), 10);
    // The burst limit has refilled by now; the hourly one (30 used) has not.
    host.advance(Duration::from_secs(1));
    let denied = hit(&host, &mut f, CLIENT);
    assert_eq!(status(&denied), 429);
    // hourly: T = 120s, TAT = T0 + 3600s; now = T0 + 2s.
    assert_eq!(header(&denied, "ratelimit").as_deref(), Some(r#""hourly";r=0;t=3598"#));
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("118"));
    // Hourly denied, so the burst bucket gave no token either.
    let burst_key = "rl:5:burst:100000000:2000000000:9:127.0.0.1";
    assert_eq!(host.get_bucket(burst_key), Some(T0 + 3000 * MS));
}

#[test]
fn denial_by_a_later_limit_does_not_consume_an_earlier_one() {
    let host = MockHost::new().config_toml(
        r#"
        [[limits]]
        name = "hourly"
        requests = 5
        per = "1h"
        [[limits]]
        name = "short"
        requests = 2
        per = "1s"
        "#,
    );
    let mut f = filter(&host);
    let hourly_key = "rl:6:hourly:720000000000:3600000000000:9:127.0.0.1";
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 10), 2);
    // The third request had room in "hourly" but was denied by "short":
    // hourly holds two requests' worth (2 × 720s), not three.
    assert_eq!(host.get_bucket(hourly_key), Some(T0 + 1440 * 1000 * MS));
    let denied = hit(&host, &mut f, CLIENT);
    assert_eq!(header(&denied, "ratelimit").as_deref(), Some(r#""short";r=0;t=1"#));
    for _ in 0..10 {
        hit(&host, &mut f, CLIENT);
    }
    // All five hourly requests are still available across later seconds.
    host.advance(Duration::from_secs(1));
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 10), 2);
    host.advance(Duration::from_secs(1));
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 10), 1);
    let denied = hit(&host, &mut f, CLIENT);
    assert_eq!(status(&denied), 429);
    assert!(header(&denied, "ratelimit").is_some_and(|v| v.starts_with(r#""hourly";r=0;"#)));
}

#[test]
fn denied_response_headers_for_a_known_state() {
    let host = MockHost::new().config_toml(BURST_AND_HOURLY);
    let mut f = filter(&host);
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 20), 20);
    let denied = hit(&host, &mut f, CLIENT);
    let Action::Respond(response) = &denied else {
        panic!("not denied");
    };
    assert_eq!(response.status, 429);
    assert_eq!(response.body, b"rate limit exceeded\n");
    assert_eq!(
        header(&denied, "ratelimit-policy").as_deref(),
        Some(r#""burst";q=10;w=1, "hourly";q=1000;w=3600"#)
    );
    // burst: TAT = T0 + 2s → r=0, t=2; next token in 100ms → Retry-After 1.
    assert_eq!(header(&denied, "ratelimit").as_deref(), Some(r#""burst";r=0;t=2"#));
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("1"));
}

#[test]
fn retry_after_rounds_the_wait_up() {
    let host = MockHost::new().config_toml("[[limits]]\nrequests = 1\nper = \"1m\"");
    let mut f = filter(&host);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
    let denied = hit(&host, &mut f, CLIENT);
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("60"));
    assert_eq!(header(&denied, "ratelimit").as_deref(), Some(r#""limit-0";r=0;t=60"#));
    assert_eq!(
        header(&denied, "ratelimit-policy").as_deref(),
        Some(r#""limit-0";q=1;w=60"#)
    );
    host.advance(Duration::from_millis(30_500));
    let denied = hit(&host, &mut f, CLIENT);
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("30"));
    assert_eq!(header(&denied, "ratelimit").as_deref(), Some(r#""limit-0";r=0;t=30"#));
}

#[test]
fn retry_after_covers_limits_after_the_denying_one() {
    let host = MockHost::new().config_toml(
        "[[limits]]\nname = \"a\"\nrequests = 1\nper = \"1s\"\n[[limits]]\nname = \"b\"\nrequests = 1\nper = \"1m\"",
    );
    let mut f = filter(&host);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
    // "a" denies (next token in 1s) and "b" would too (in 60s): waiting 1s
    // would only earn another 429.
    let denied = hit(&host, &mut f, CLIENT);
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("60"));
    // Both at r=0: the one that takes longer to refill is named.
    assert_eq!(header(&denied, "ratelimit").as_deref(), Some(r#""b";r=0;t=60"#));
    // The denial took nothing from "b".
    host.advance(Duration::from_secs(60));
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
}

#[test]
fn headers_on_allowed_responses_when_enabled() {
    let host = MockHost::new().config_toml(&format!("headers_on_allowed = true\n{BURST_AND_HOURLY}"));
    let mut request_instance = filter(&host);
    let mut response_instance = filter(&host);
    assert_eq!(request_instance.phases(), Phases::ALL);
    assert_eq!(host.on_request_headers(&mut request_instance), Action::Continue);
    // The response phase may run on another instance: the value travels in
    // the request context.
    assert_eq!(host.on_response_headers(&mut response_instance), Action::Continue);
    // burst: one of 20 used, full again in 100ms; hourly: 999 left.
    assert_eq!(
        host.get_response_header("ratelimit").as_deref(),
        Some(r#""burst";r=19;t=1"#)
    );
    assert_eq!(
        host.get_response_header("ratelimit-policy").as_deref(),
        Some(r#""burst";q=10;w=1, "hourly";q=1000;w=3600"#)
    );

    // 19 requests in all at T0, then one more 1.5s later.
    for _ in 0..18 {
        hit(&host, &mut request_instance, CLIENT);
    }
    host.advance(Duration::from_millis(1500));
    host.start_request();
    assert_eq!(host.on_request_headers(&mut request_instance), Action::Continue);
    host.on_response_headers(&mut response_instance);
    // burst TAT = T0 + 2s after it, now = T0 + 1.5s: r = (2s - 0.5s) / 100ms = 15.
    assert_eq!(
        host.get_response_header("ratelimit").as_deref(),
        Some(r#""burst";r=15;t=1"#)
    );

    // The filter's values replace an upstream's.
    host.start_request();
    host.on_request_headers(&mut request_instance);
    host.response_header("RateLimit", r#""upstream";r=1;t=1"#);
    host.on_response_headers(&mut response_instance);
    assert_eq!(
        host.get_response_header("ratelimit").as_deref(),
        Some(r#""burst";r=14;t=1"#)
    );

    // A denied request leaves nothing for a response phase (its 429 has the headers).
    for _ in 0..20 {
        hit(&host, &mut request_instance, CLIENT);
    }
    assert_eq!(status(&hit(&host, &mut request_instance, CLIENT)), 429);
    host.on_response_headers(&mut response_instance);
    assert_eq!(host.get_response_header("ratelimit"), None);

    // Another rate-limit filter on the same route keeps its own value.
    let other = filter(&host.config_toml("headers_on_allowed = true\n[[limits]]\nrequests = 1\nper = \"1s\""));
    assert_ne!(other.context_key, request_instance.context_key);
}

#[test]
fn no_headers_on_allowed_responses_by_default() {
    let host = MockHost::new().config_toml(BURST_AND_HOURLY);
    let mut f = filter(&host);
    assert_eq!(host.on_request_headers(&mut f), Action::Continue);
    host.on_response_headers(&mut f);
    assert_eq!(host.get_response_header("ratelimit"), None);
    assert_eq!(host.get_response_header("ratelimit-policy"), None);
}

const ONE_PER_MINUTE: &str = "[[limits]]\nrequests = 1\nper = \"1m\"";

#[test]
fn client_ips_have_separate_buckets_and_ports_do_not_matter() {
    let host = MockHost::new().config_toml(ONE_PER_MINUTE);
    let mut f = filter(&host);
    assert_eq!(status(&hit(&host, &mut f, "203.0.113.7:1000")), 200);
    assert_eq!(status(&hit(&host, &mut f, "203.0.113.7:2000")), 429);
    assert_eq!(status(&hit(&host, &mut f, "198.51.100.1:1000")), 200);
    assert_eq!(status(&hit(&host, &mut f, "[2001:db8::1]:1")), 200);
    assert_eq!(status(&hit(&host, &mut f, "[2001:DB8:0::1]:2")), 429);
    assert_eq!(status(&hit(&host, &mut f, "[::ffff:198.51.100.1]:3")), 429);
}

#[test]
fn header_key() {
    let host = MockHost::new().config_toml(&format!("key = [\"header:X-Api-Key\"]\n{ONE_PER_MINUTE}"));
    let mut f = filter(&host);
    let with_key = |f: &mut RateLimit, key: Option<&str>, client: &str| {
        host.start_request().client_address(client);
        if let Some(key) = key {
            host.request_header("x-api-key", key);
        }
        status(&host.on_request_headers(f))
    };
    assert_eq!(with_key(&mut f, Some("alpha"), "10.0.0.1:1"), 200);
    // Keyed on the header only: another client with the same value shares it.
    assert_eq!(with_key(&mut f, Some("alpha"), "10.0.0.2:1"), 429);
    assert_eq!(with_key(&mut f, Some("beta"), "10.0.0.1:1"), 200);
    // Requests without the header share one bucket (empty value).
    assert_eq!(with_key(&mut f, None, "10.0.0.1:1"), 200);
    assert_eq!(with_key(&mut f, None, "10.0.0.2:1"), 429);
    // Long values are hashed and still told apart.
    let long_a = format!("{}a", "k".repeat(500));
    let long_b = format!("{}b", "k".repeat(500));
    assert_eq!(with_key(&mut f, Some(&long_a), "10.0.0.1:1"), 200);
    assert_eq!(with_key(&mut f, Some(&long_a), "10.0.0.1:1"), 429);
    assert_eq!(with_key(&mut f, Some(&long_b), "10.0.0.1:1"), 200);
}

#[test]
fn context_key_and_combined_keys() {
    let host = MockHost::new().config_toml(&format!(
        "key = [\"context:auth.subject\", \"client_ip\"]\n{ONE_PER_MINUTE}"
    ));
    let mut f = filter(&host);
    let as_subject = |f: &mut RateLimit, subject: &str, client: &str| {
        host.start_request()
            .client_address(client)
            .context("auth.subject", subject);
        status(&host.on_request_headers(f))
    };
    assert_eq!(as_subject(&mut f, "alice", "10.0.0.1:1"), 200);
    assert_eq!(as_subject(&mut f, "alice", "10.0.0.1:2"), 429);
    assert_eq!(as_subject(&mut f, "bob", "10.0.0.1:1"), 200);
    assert_eq!(as_subject(&mut f, "alice", "10.0.0.9:1"), 200);
    // No subject: one shared (per client) bucket.
    assert_eq!(status(&hit(&host, &mut f, "10.0.0.1:1")), 200);
    assert_eq!(status(&hit(&host, &mut f, "10.0.0.1:1")), 429);
}

#[test]
fn route_key_part_separates_routes() {
    let host = MockHost::new().config_toml(&format!("key = [\"client_ip\", \"route\"]\n{ONE_PER_MINUTE}"));
    let (mut on_a, mut on_b) = (filter(&host), filter(&host));
    host.start_request().route("a");
    assert_eq!(status(&host.on_request_headers(&mut on_a)), 200);
    host.start_request().route("a");
    assert_eq!(status(&host.on_request_headers(&mut on_a)), 429);
    host.start_request().route("b");
    assert_eq!(status(&host.on_request_headers(&mut on_b)), 200);
}

#[test]
fn without_route_key_part_routes_share_the_bucket() {
    let host = MockHost::new().config_toml(ONE_PER_MINUTE);
    let (mut on_a, mut on_b) = (filter(&host), filter(&host));
    host.start_request().route("a");
    assert_eq!(status(&host.on_request_headers(&mut on_a)), 200);
    host.start_request().route("b");
    assert_eq!(status(&host.on_request_headers(&mut on_b)), 429);
}

#[test]
fn different_limits_never_share_a_bucket() {
    // Same name, different rate, burst or window; and a different name.
    let configs = [
        "[[limits]]\nname = \"l\"\nrequests = 1\nper = \"1m\"",
        "[[limits]]\nname = \"l\"\nrequests = 1\nper = \"1m\"\nburst = 2",
        "[[limits]]\nname = \"l\"\nrequests = 2\nper = \"1m\"\nburst = 1",
        "[[limits]]\nname = \"l\"\nrequests = 1\nper = \"2m\"",
        "[[limits]]\nname = \"m\"\nrequests = 1\nper = \"1m\"",
    ];
    // `config_toml` keeps the shared state; only `MockHost::new` resets it.
    let mut host = MockHost::new();
    for toml in configs {
        host = host.config_toml(toml);
        let mut f = filter(&host);
        // A fresh bucket, whatever the configurations before used up ...
        assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200, "{toml}");
        // ... and used up in turn.
        assert!(allowed_times(&host, &mut f, CLIENT, 10) < 10, "{toml}");
    }
}

#[test]
fn bad_configs_name_the_key() {
    let cases = [
        ("", "limits"),
        ("limits = []", "limits"),
        ("[[limits]]\nrequests = 0\nper = \"1s\"", "limits[0].requests"),
        ("[[limits]]\nrequests = -1\nper = \"1s\"", "limits[0].requests"),
        ("[[limits]]\nper = \"1s\"", "requests"),
        ("[[limits]]\nrequests = 1", "per"),
        ("[[limits]]\nrequests = 1\nper = \"0s\"", "limits[0].per"),
        ("[[limits]]\nrequests = 1\nper = 0", "limits[0].per"),
        ("[[limits]]\nrequests = 1\nper = \"fast\"", "limits[0].per"),
        ("[[limits]]\nrequests = 1\nper = \"1.5s\"", "limits[0].per"),
        ("[[limits]]\nrequests = 1\nper = 1.5", "limits[0].per"),
        ("[[limits]]\nrequests = 1\nper = \"400d\"", "limits[0].per"),
        ("[[limits]]\nrequests = 1\nper = \"1s\"\nburst = 0", "limits[0].burst"),
        ("[[limits]]\nrequests = 1\nper = \"1s\"\nrate = 3", "rate"),
        (
            "[[limits]]\nrequests = 1\nper = \"1s\"\nname = 'a\"b'",
            "limits[0].name",
        ),
        ("[[limits]]\nrequests = 1\nper = \"1s\"\nname = \"\"", "limits[0].name"),
        ("[[limits]]\nrequests = 2000000000\nper = \"1s\"", "limits[0].requests"),
        (
            "[[limits]]\nname = \"a\"\nrequests = 1\nper = \"1s\"\n[[limits]]\nname = \"a\"\nrequests = 2\nper = \"1m\"",
            "limits[1].name",
        ),
        (
            "[[limits]]\nname = \"limit-1\"\nrequests = 1\nper = \"1s\"\n[[limits]]\nrequests = 2\nper = \"1m\"",
            "limits[1].name",
        ),
        (
            "key = [\"client_ip\", \"ip\"]\n[[limits]]\nrequests = 1\nper = \"1s\"",
            "key[1]",
        ),
        ("key = [\"header:\"]\n[[limits]]\nrequests = 1\nper = \"1s\"", "key[0]"),
        ("key = [\"context:\"]\n[[limits]]\nrequests = 1\nper = \"1s\"", "key[0]"),
        ("key = \"client_ip\"\n[[limits]]\nrequests = 1\nper = \"1s\"", "key"),
        (
            "headers_on_allowed = 1\n[[limits]]\nrequests = 1\nper = \"1s\"",
            "headers_on_allowed",
        ),
        ("limit = []", "limit"),
        (
            "on_store_unavailable = \"maybe\"\n[[limits]]\nrequests = 1\nper = \"1s\"",
            "on_store_unavailable",
        ),
        (
            "on_store_full = \"local\"\n[[limits]]\nrequests = 1\nper = \"1s\"",
            "on_store_full",
        ),
        (
            "[[limits]]\nrequests = 1\nper = \"1s\"\n[[local_limits]]\nrequests = 1\nper = \"1s\"",
            "local_limits",
        ),
        (
            "on_store_unavailable = \"deny\"\nlocal_limits = [{ requests = 1, per = \"1s\" }]\n[[limits]]\nrequests = 1\nper = \"1s\"",
            "local_limits",
        ),
        (
            "on_store_unavailable = \"local\"\nlocal_limits = []\n[[limits]]\nrequests = 1\nper = \"1s\"",
            "local_limits",
        ),
        (
            "on_store_unavailable = \"local\"\nlocal_limits = [{ requests = 1, per = \"0s\" }]\n[[limits]]\nrequests = 1\nper = \"1s\"",
            "local_limits[0].per",
        ),
        (
            "on_store_unavailable = \"local\"\nlocal_limits = [{ requests = 1, per = \"1s\" }, { name = \"limit-0\", requests = 1, per = \"1m\" }]\n[[limits]]\nrequests = 1\nper = \"1s\"",
            "local_limits[1].name",
        ),
        (
            "on_store_unavailable = \"local\"\nlocal_limits = [{ requests = 1, per = \"1s\", rate = 2 }]\n[[limits]]\nrequests = 1\nper = \"1s\"",
            "rate",
        ),
    ];
    for (toml, expected) in cases {
        match MockHost::new().config_toml(toml).create::<RateLimit>() {
            Ok(_) => panic!("accepted: {toml}"),
            Err(e) => assert!(
                e.starts_with(expected) || e.contains(&format!("`{expected}`")),
                "{toml}\n→ {e}"
            ),
        }
    }
}

#[test]
fn good_configs() {
    for toml in [
        "[[limits]]\nrequests = 1\nper = 30",
        "[[limits]]\nrequests = 1\nper = \"30\"",
        "key = []\n[[limits]]\nrequests = 5\nper = \"250ms\"\nburst = 1",
        "key = [\"route\", \"header:x-tenant\", \"context:auth.subject\", \"client_ip\"]\nheaders_on_allowed = true\n[[limits]]\nrequests = 1\nper = \"1d\"",
        "on_store_unavailable = \"allow\"\non_store_full = \"deny\"\n[[limits]]\nrequests = 1\nper = \"1s\"",
        "on_store_unavailable = \"deny\"\n[[limits]]\nrequests = 1\nper = \"1s\"",
        "on_store_unavailable = \"local\"\n[[limits]]\nrequests = 1\nper = \"1s\"",
        // A local limit may share a name with a shared one: they are apart.
        "on_store_unavailable = \"local\"\nlocal_limits = [{ requests = 5, per = \"1s\" }]\n[[limits]]\nrequests = 1\nper = \"1s\"",
    ] {
        if let Err(e) = MockHost::new().config_toml(toml).create::<RateLimit>() {
            panic!("rejected: {toml}\n→ {e}");
        }
    }
}
