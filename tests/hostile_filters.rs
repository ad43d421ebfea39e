//! A matrix of hostile filters (tests/filters/hostile), each under both
//! failure policies, on the real binary. For every mode: the hostile route
//! answers as its policy says, within the deadline plus a margin; a second
//! route served by a good filter keeps answering 200 *while* hostile
//! requests are in flight (an ordering, not a duration); the failure is
//! logged with the plugin name; and the proxy's memory returns to its
//! baseline afterwards.

mod common;

use common::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Margin over the deadline for an answer; absorbs a loaded CI box.
const ANSWER_MARGIN: Duration = Duration::from_secs(3);
/// RSS may sit this far above the baseline once the failures are over.
const RSS_SLACK_KIB: u64 = 24 * 1024;
/// Instances of the hostile filter per route.
const MAX_INSTANCES: u64 = 2;
/// What the hostile filter's instances may hold: two routes × instances ×
/// the 16 MiB cap.
const HOSTILE_CAP_KIB: u64 = 2 * MAX_INSTANCES * 16 * 1024;
/// Good-route requests that must complete while hostile ones are in flight.
const GOOD_DURING: usize = 20;
/// Hostile requests each policy sends at least.
const HOSTILE_MIN: usize = 3;

/// What the hostile route must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The call fails: fail_closed answers this status, fail_open skips the
    /// filter (200, its header change discarded).
    Fails(u16),
    /// The host refuses each call and the filter carries on: 200 under both
    /// policies, with the refusal the filter observed reported in
    /// `x-hostile-error`.
    Refused(&'static str),
    /// The call succeeds after growing the instance's memory (within its
    /// cap): 200 under both policies; the memory stays bounded by
    /// `max_instances × memory_limit` per route.
    Grows,
}

/// The CPU deadline of the hostile filter in `mode`. Modes that hammer the
/// host with refused calls get a long one, so that every build profile
/// (the unoptimised debug build included) reaches the refusals and the end
/// of the loop instead of the deadline.
fn deadline(mode: &str) -> Duration {
    match mode {
        "many_headers" | "shared_huge_keys" => Duration::from_secs(10),
        _ => Duration::from_millis(10),
    }
}

fn config(mode: &str, upstream: std::net::SocketAddr) -> String {
    let mut body = format!(
        "[[clusters]]\nname = \"app\"\nendpoints = [\"{upstream}\"]\n\n\
         [[routes]]\nname = \"good\"\npath_prefix = \"/good\"\ncluster = \"app\"\n\
         [[routes.filters]]\nplugin = \"header-rewrite\"\nconfig.request.set = {{ \"x-good\" = \"1\" }}\n\n"
    );
    let deadline = humantime::format_duration(deadline(mode));
    for policy in ["fail_closed", "fail_open"] {
        body += &format!(
            "[[routes]]\nname = \"{mode}-{policy}\"\npath_prefix = \"/{policy}\"\ncluster = \"app\"\n\
             [[routes.filters]]\nplugin = \"hostile\"\non_failure = \"{policy}\"\ndeadline = \"{deadline}\"\n\
             memory_limit = \"16MiB\"\nmax_instances = {MAX_INSTANCES}\nconfig = {{ mode = \"{mode}\" }}\n\n"
        );
    }
    body
}

/// One hostile request under `policy`, checked against `expect`.
async fn hostile_request(client: &reqwest::Client, url: &str, mode: &str, policy: &str, expect: Expect) {
    let started = Instant::now();
    let resp = client.get(url).send().await.unwrap();
    let took = started.elapsed();
    assert!(took < deadline(mode) + ANSWER_MARGIN, "{mode}/{policy} took {took:?}");
    let status = resp.status().as_u16();
    match (expect, policy) {
        (Expect::Fails(code), "fail_closed") => assert_eq!(status, code, "{mode}/{policy}"),
        (Expect::Fails(_), _) => {
            assert_eq!(status, 200, "{mode}/{policy}");
            let echo: Value = resp.json().await.unwrap();
            assert!(
                echoed(&echo, "x-hostile-touched").is_empty(),
                "fail_open kept the failed filter's change"
            );
        }
        (Expect::Grows, _) => {
            assert_eq!(status, 200, "{mode}/{policy}");
            let echo: Value = resp.json().await.unwrap();
            assert_eq!(echoed(&echo, "x-hostile-grew"), [(12 << 20).to_string()]);
        }
        (Expect::Refused(error), _) => {
            assert_eq!(status, 200, "{mode}/{policy}: the filter did not finish its loop");
            let echo: Value = resp.json().await.unwrap();
            assert_eq!(echoed(&echo, "x-hostile-touched"), ["yes"], "{mode}/{policy}");
            assert_eq!(echoed(&echo, "x-hostile-error"), [error], "{mode}/{policy}");
            let lines = echo["headers"].as_array().map_or(0, |h| h.len());
            assert!(lines <= 600, "{lines} header lines reached the upstream");
            if mode == "many_headers" {
                // The host's bound is 500 header lines in all.
                let accepted: usize = echoed(&echo, "x-hostile-accepted")[0].parse().unwrap();
                assert!((400..500).contains(&accepted), "{accepted} headers accepted");
            }
        }
    }
}

async fn hostile_mode(mode: &str, expect: Expect) {
    let up = Upstream::start("app").await;
    let proxy = start_binary(&config(mode, up.addr), &[("hostile", "hostile")]);
    let pid = proxy.child.id();
    let client = h1();
    let url = |path: &str| format!("http://{}{path}", proxy.addr);
    // Warm up the good route, then take the baseline.
    for _ in 0..20 {
        assert_eq!(client.get(url("/good")).send().await.unwrap().status(), 200);
    }
    let baseline = proc_status_kib(pid, "VmRSS");

    // Hostile requests under both policies, back to back, until the good
    // route has done its part. `in_flight` counts hostile requests sent and
    // not yet answered.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(AtomicBool::new(false));
    let hostile: Vec<_> = ["fail_closed", "fail_open"]
        .into_iter()
        .map(|policy| {
            let (client, url, mode) = (h1(), url(&format!("/{policy}/x")), mode.to_string());
            let (enough, in_flight) = (enough.clone(), in_flight.clone());
            tokio::spawn(async move {
                let mut sent = 0;
                while sent < HOSTILE_MIN || !enough.load(Ordering::SeqCst) {
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    hostile_request(&client, &url, &mode, policy, expect).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    sent += 1;
                }
            })
        })
        .collect();

    // The good route, on its own connections (a filter spinning to its
    // deadline holds a worker thread, which an HTTP/2 connection shared with
    // it would feel; see the README's Sandbox notes): count the requests
    // that completed while hostile ones were still in flight.
    let good_client = h1();
    let mut during = 0;
    let ceiling = Instant::now() + Duration::from_secs(60);
    while during < GOOD_DURING && Instant::now() < ceiling {
        let resp = good_client.get(url("/good")).send().await.expect("good route");
        assert_eq!(resp.status(), 200, "the good route failed while a hostile filter ran");
        resp.bytes().await.expect("good route body");
        if in_flight.load(Ordering::SeqCst) > 0 {
            during += 1;
        }
    }
    enough.store(true, Ordering::SeqCst);
    for task in hostile {
        task.await.expect("hostile requests");
    }
    assert!(
        during >= GOOD_DURING,
        "{mode}: only {during} good requests completed while hostile ones were in flight"
    );

    if let Expect::Fails(_) = expect {
        let logged = proxy.log_lines_with("filter failed");
        assert!(
            logged
                .iter()
                .any(|l| l.contains("plugin=hostile") && l.contains("failed closed"))
                && logged
                    .iter()
                    .any(|l| l.contains("plugin=hostile") && l.contains("fail_open")),
            "failures not logged with the plugin name: {logged:?}"
        );
    }

    // Memory back to baseline: failed instances are dropped and their
    // memory returned to the pool. Instances that grew and succeeded stay
    // pooled (until idle for 30 s), bounded by their caps.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = proc_status_kib(pid, "VmRSS");
    let bound = match expect {
        Expect::Grows => baseline + HOSTILE_CAP_KIB + RSS_SLACK_KIB,
        _ => baseline + RSS_SLACK_KIB,
    };
    assert!(
        after <= bound,
        "{mode}: RSS {after} KiB after, baseline {baseline} KiB, bound {bound} KiB"
    );
    assert!(proxy.log_lines_with("panicked").is_empty(), "the host panicked");
}

#[tokio::test]
async fn infinite_loop_hits_the_deadline() {
    hostile_mode("loop", Expect::Fails(504)).await;
}

#[tokio::test]
async fn host_call_loop_hits_the_deadline() {
    hostile_mode("host_call_loop", Expect::Fails(504)).await;
}

#[tokio::test]
async fn allocation_stops_at_the_memory_cap() {
    hostile_mode("allocate", Expect::Fails(500)).await;
}

#[tokio::test]
async fn panic_is_a_trap() {
    hostile_mode("panic", Expect::Fails(500)).await;
}

#[tokio::test]
async fn stack_overflow_is_a_trap() {
    hostile_mode("stack_overflow", Expect::Fails(500)).await;
}

#[tokio::test]
async fn hundred_megabyte_body_stops_at_the_memory_cap() {
    hostile_mode("huge_body", Expect::Fails(500)).await;
}

#[tokio::test]
async fn hundred_thousand_headers_are_refused_past_the_limit() {
    hostile_mode("many_headers", Expect::Refused("LimitExceeded")).await;
}

#[tokio::test]
async fn grown_instances_stay_within_their_caps() {
    hostile_mode("grow", Expect::Grows).await;
}

#[tokio::test]
async fn invalid_header_bytes_are_refused() {
    hostile_mode("invalid_headers", Expect::Refused("InvalidName")).await;
}

#[tokio::test]
async fn huge_shared_state_keys_are_refused() {
    hostile_mode("shared_huge_keys", Expect::Refused("LimitExceeded")).await;
}

/// Nothing outside the WIT API reaches a filter: no filesystem, no sockets
/// (even to a listening upstream), no environment, no host stdio.
#[tokio::test]
async fn capabilities_beyond_the_wit_api_are_denied() {
    let up = Upstream::start("app").await;
    // The access log goes to stdout: its line proves stdout is captured.
    let body = format!(
        "[access_log]\npath = \"stdout\"\n\n\
         [[clusters]]\nname = \"app\"\nendpoints = [\"{0}\"]\n\n[[routes]]\nname = \"caps\"\ncluster = \"app\"\n\
         [[routes.filters]]\nplugin = \"hostile\"\nconfig = {{ mode = \"capabilities\", target = \"{0}\" }}\n",
        up.addr
    );
    let proxy = start_binary(&body, &[("hostile", "hostile")]);
    let resp = h1().get(format!("http://{}/", proxy.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echoed(&echo, "x-cap-fs"), ["denied"]);
    assert_eq!(echoed(&echo, "x-cap-net"), ["denied"]);
    assert_eq!(echoed(&echo, "x-cap-env"), ["0"]);
    let ceiling = Instant::now() + Duration::from_secs(30);
    while proxy.stdout_lines_with("route=caps").is_empty() {
        assert!(Instant::now() < ceiling, "no access log line on stdout");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for marker in ["HOSTILE-STDERR-MARKER", "HOSTILE-STDOUT-MARKER"] {
        assert!(proxy.log_lines_with(marker).is_empty(), "{marker} reached stderr");
        assert!(proxy.stdout_lines_with(marker).is_empty(), "{marker} reached stdout");
    }
}

/// More concurrent requests than `max_instances`, each holding an instance
/// for its whole (long) deadline: the rest wait `pool_wait`, then get 503.
/// Nothing else: no panic, no other status.
#[tokio::test]
async fn pool_exhaustion_sheds_with_503() {
    let up = Upstream::start("app").await;
    let body = format!(
        "[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"busy\"\ncluster = \"app\"\n\
         [[routes.filters]]\nplugin = \"hostile\"\nmax_instances = 1\npool_wait = \"50ms\"\ndeadline = \"300ms\"\n\
         config = {{ mode = \"loop\" }}\n",
        up.addr
    );
    let proxy = start_binary(&body, &[("hostile", "hostile")]);
    let client = h2();
    let url = format!("http://{}/", proxy.addr);
    let sends = (0..12).map(|_| client.get(&url).send());
    let statuses: Vec<u16> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let shed = statuses.iter().filter(|s| **s == 503).count();
    let timed_out = statuses.iter().filter(|s| **s == 504).count();
    assert_eq!(shed + timed_out, statuses.len(), "{statuses:?}");
    assert!(shed >= 6, "expected most requests shed: {statuses:?}");
    assert!(timed_out >= 1, "{statuses:?}");
    assert!(proxy.log_lines_with("panicked").is_empty());
}
