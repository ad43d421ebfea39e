//! The filter and the store: one store call per request, every bucket or
//! none, and what a request gets when the store is full
//! (`on_store_full`) or unavailable (`on_store_unavailable`, with
//! `local_limits`).

use super::*;

#[test]
fn one_bucket_per_limit_under_its_key() {
    let host = MockHost::new().config_toml(BURST_AND_HOURLY);
    let mut f = filter(&host);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
    assert_eq!(
        host.get_bucket("rl:5:burst:100000000:2000000000:9:127.0.0.1"),
        Some(T0 + 100 * MS)
    );
    assert_eq!(
        host.get_bucket("rl:6:hourly:3600000000:3600000000000:9:127.0.0.1"),
        Some(T0 + 3600 * MS)
    );
    assert_eq!(
        host.get_local_bucket("rl:5:burst:100000000:2000000000:9:127.0.0.1"),
        None
    );
}

#[test]
fn values_under_a_bucket_key_do_not_interfere() {
    let host = MockHost::new().config_toml(ONE_PER_MINUTE);
    let key = "rl:7:limit-0:60000000000:60000000000:9:127.0.0.1";
    host.shared(key, b"junk");
    let mut f = filter(&host);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429);
    assert_eq!(shared::get(key), Some(b"junk".to_vec()));
    assert_eq!(host.get_bucket(key), Some(T0 + 60_000 * MS));
}

/// Every request is one round trip to the store, whatever the number of
/// limits and whether it passes; the response phase makes none.
#[test]
fn one_store_call_per_request() {
    let host = MockHost::new().config_toml(&format!("headers_on_allowed = true\n{BURST_AND_HOURLY}"));
    let mut f = filter(&host);
    for i in 1..=20 {
        assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
        assert_eq!(host.on_response_headers(&mut f), Action::Continue);
        assert_eq!(host.store_calls(), i);
    }
    for i in 21..=25 {
        assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429);
        assert_eq!(host.store_calls(), i);
    }
}

/// When the plugin's shared-state quota is full, a client whose bucket
/// cannot be stored is let through (`on_store_full = "allow"`, the default)
/// or denied with 429 (`"deny"`); clients with stored buckets are limited
/// as before, and the refusal is logged.
#[test]
fn a_full_store_allows_or_denies_as_configured() {
    for (setting, status_for_new_client) in [
        ("", 200),
        ("on_store_full = \"allow\"\n", 200),
        ("on_store_full = \"deny\"\n", 429),
    ] {
        let host = MockHost::new().config_toml(&format!("{setting}{ONE_PER_MINUTE}"));
        // Room for exactly one bucket.
        host.shared_quota(1, 1 << 20);
        let mut f = filter(&host);
        assert_eq!(status(&hit(&host, &mut f, "203.0.113.7:1")), 200, "{setting}");
        assert_eq!(
            status(&hit(&host, &mut f, "203.0.113.7:1")),
            429,
            "stored bucket still limits ({setting})"
        );
        for _ in 0..3 {
            let action = hit(&host, &mut f, "198.51.100.1:1");
            assert_eq!(status(&action), status_for_new_client, "{setting}");
            if status_for_new_client == 429 {
                assert_eq!(header(&action, "retry-after").as_deref(), Some("1"));
            }
        }
        assert!(
            host.logs().iter().any(|(_, l)| l.contains("shared-state quota full")),
            "{:?}",
            host.logs()
        );
    }
}

/// As many limits as one store call takes buckets, and no more.
#[test]
fn at_most_one_store_call_worth_of_limits() {
    let limits = |n: usize| {
        (0..n)
            .map(|i| format!("[[limits]]\nrequests = {}\nper = \"1s\"\n", i + 1))
            .collect::<String>()
    };
    let most = sluice_sdk::limits::MAX_STORE_BUCKETS;
    let host = MockHost::new().config_toml(&limits(most));
    let mut f = filter(&host);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429, "limit-0 allows 1 per second");
    let too_many = MockHost::new().config_toml(&limits(most + 1)).create::<RateLimit>();
    assert_eq!(too_many.err().as_deref(), Some("limits: at most 16 limits"));
}

/// `on_store_unavailable = "allow"` (the default): while the store is down
/// every request passes, with a warning; limits apply again afterwards.
#[test]
fn an_unavailable_store_allows_by_default() {
    for setting in ["", "on_store_unavailable = \"allow\"\n"] {
        let host = MockHost::new().config_toml(&format!("{setting}{ONE_PER_MINUTE}"));
        let mut f = filter(&host);
        assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
        host.store_unavailable(Some("redis: connection refused"));
        for _ in 0..5 {
            assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200, "{setting}");
        }
        assert!(
            host.logs().iter().any(|(level, l)| *level == sluice_sdk::LogLevel::Warn
                && l.contains("shared store unavailable (redis: connection refused)")),
            "{:?}",
            host.logs()
        );
        host.store_unavailable(None);
        assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429, "{setting}");
        assert_eq!(host.store_calls(), 7);
    }
}

#[test]
fn an_unavailable_store_denies_when_asked() {
    let host = MockHost::new().config_toml(&format!("on_store_unavailable = \"deny\"\n{ONE_PER_MINUTE}"));
    let mut f = filter(&host);
    host.store_unavailable(Some("redis: timed out"));
    let action = hit(&host, &mut f, CLIENT);
    let Action::Respond(response) = &action else {
        panic!("not denied: {action:?}");
    };
    assert_eq!(response.status, 503);
    assert_eq!(response.body, b"rate limit store unavailable\n");
    assert_eq!(header(&action, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        header(&action, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(&action, "ratelimit"), None);
    host.store_unavailable(None);
    assert_eq!(
        status(&hit(&host, &mut f, CLIENT)),
        200,
        "nothing was taken during the outage"
    );
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429);
}

/// `on_store_unavailable = "local"`: while the store is down each replica
/// enforces `local_limits` from its own memory, with their headers; once
/// the store is back, the shared limits apply again where they were.
#[test]
fn an_unavailable_store_limits_locally() {
    let host = MockHost::new().config_toml(
        r#"
        on_store_unavailable = "local"
        headers_on_allowed = true
        [[limits]]
        name = "fleet"
        requests = 1
        per = "1m"
        [[local_limits]]
        name = "replica"
        requests = 2
        per = "1m"
        [[local_limits]]
        name = "replica-hourly"
        requests = 100
        per = "1h"
        "#,
    );
    let mut f = filter(&host);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429);

    host.store_unavailable(Some("redis: connection refused"));
    for i in 0..2 {
        assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200, "local request {i}");
    }
    host.on_response_headers(&mut f);
    assert_eq!(
        host.get_response_header("ratelimit-policy").as_deref(),
        Some(r#""replica";q=2;w=60, "replica-hourly";q=100;w=3600"#)
    );
    assert_eq!(
        host.get_response_header("ratelimit").as_deref(),
        Some(r#""replica";r=0;t=60"#)
    );
    let denied = hit(&host, &mut f, CLIENT);
    assert_eq!(status(&denied), 429);
    assert_eq!(header(&denied, "retry-after").as_deref(), Some("30"));
    assert_eq!(
        header(&denied, "ratelimit-policy").as_deref(),
        Some(r#""replica";q=2;w=60, "replica-hourly";q=100;w=3600"#)
    );
    assert_eq!(
        host.get_local_bucket("rl:7:replica:30000000000:60000000000:9:127.0.0.1"),
        Some(T0 + 60_000 * MS)
    );
    assert!(
        host.logs()
            .iter()
            .any(|(_, l)| l.contains("limiting this replica alone")),
        "{:?}",
        host.logs()
    );
    // One failed round trip per request; the local decision is none.
    assert_eq!(host.store_calls(), 5);

    host.store_unavailable(None);
    let denied = hit(&host, &mut f, CLIENT);
    assert_eq!(status(&denied), 429, "the shared bucket is still empty");
    assert_eq!(
        header(&denied, "ratelimit-policy").as_deref(),
        Some(r#""fleet";q=1;w=60"#)
    );
    host.advance(Duration::from_secs(60));
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 200);
    host.on_response_headers(&mut f);
    assert_eq!(
        host.get_response_header("ratelimit").as_deref(),
        Some(r#""fleet";r=0;t=60"#)
    );
    assert_eq!(status(&hit(&host, &mut f, CLIENT)), 429);
}

/// Without `local_limits`, a replica enforces `limits` alone.
#[test]
fn local_limits_default_to_the_limits() {
    let host = MockHost::new().config_toml(&format!("on_store_unavailable = \"local\"\n{BURST_AND_HOURLY}"));
    let mut f = filter(&host);
    host.store_unavailable(Some("down"));
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 100), 20);
    let denied = hit(&host, &mut f, CLIENT);
    assert_eq!(header(&denied, "ratelimit").as_deref(), Some(r#""burst";r=0;t=2"#));
    assert_eq!(
        header(&denied, "ratelimit-policy").as_deref(),
        Some(r#""burst";q=10;w=1, "hourly";q=1000;w=3600"#)
    );
    // The shared buckets were not touched.
    host.store_unavailable(None);
    assert_eq!(allowed_times(&host, &mut f, CLIENT, 100), 20);
}

/// A full local store follows `on_store_full` as the shared one does.
#[test]
fn a_full_local_store_follows_on_store_full() {
    let host = MockHost::new().config_toml(&format!(
        "on_store_unavailable = \"local\"\non_store_full = \"deny\"\n{ONE_PER_MINUTE}"
    ));
    host.shared_quota(1, 1 << 20);
    let mut f = filter(&host);
    host.store_unavailable(Some("down"));
    assert_eq!(status(&hit(&host, &mut f, "203.0.113.7:1")), 200);
    let action = hit(&host, &mut f, "198.51.100.1:1");
    assert_eq!(status(&action), 429);
    assert!(matches!(&action, Action::Respond(r) if r.body == b"rate limit state full\n"));
}
