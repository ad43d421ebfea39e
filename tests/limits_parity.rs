//! The SDK's mock host refuses what the sluice host refuses. Each case is a
//! sequence of host calls run twice: against a real `HostState` (through
//! `sluice::wasm::fuzzing::outcomes`) and by a filter running on
//! `sluice_sdk::mock::MockHost`; what every call answered must be the same.
//! The cases sit on the bounds of `sluice_sdk::limits` (exactly at each
//! one and one past it), plus the syntax checks that decide between
//! refusals, and the shared-state quota.

use sluice::shared_state::Quota;
use sluice::wasm::fuzzing::{HostCall, outcomes, render_bytes};
use sluice_sdk::limits::*;
use sluice_sdk::mock::MockHost;
use sluice_sdk::{Action, Config, Filter, HostError, RESERVED_HEADERS, Request, Response, context, random, shared};
use std::time::Duration;

use HostCall::*;

/// A filter that makes the calls of one case, in order: those before
/// `StartResponse` in the request phase, the rest in the response phase.
struct Replay {
    calls: Vec<HostCall>,
    out: Vec<String>,
}

impl Filter for Replay {
    fn create(_: &Config) -> Result<Self, String> {
        Ok(Replay {
            calls: Vec::new(),
            out: Vec::new(),
        })
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        let split = split(&self.calls);
        for call in &self.calls[..split] {
            let answer = call_mock(call, Phase::Request(req));
            self.out.push(answer);
        }
        Action::Continue
    }

    fn on_response_headers(&mut self, resp: &mut Response) -> Action {
        let split = split(&self.calls);
        for call in &self.calls[split..] {
            let answer = call_mock(call, Phase::Response(resp));
            self.out.push(answer);
        }
        Action::Continue
    }
}

fn split(calls: &[HostCall]) -> usize {
    calls
        .iter()
        .position(|c| matches!(c, StartResponse))
        .unwrap_or(calls.len())
}

enum Phase<'a> {
    Request(&'a mut Request),
    Response(&'a mut Response),
}

// Rendered as `sluice::wasm::fuzzing::outcomes` renders the host's answers.
fn done(r: Result<(), HostError>) -> String {
    match r {
        Ok(()) => "Ok".into(),
        Err(e) => format!("Err({e:?})"),
    }
}

fn value<T: std::fmt::Display>(r: Result<T, HostError>) -> String {
    match r {
        Ok(v) => format!("Ok({v})"),
        Err(e) => format!("Err({e:?})"),
    }
}

fn found(v: Option<impl AsRef<[u8]>>) -> String {
    match v {
        Some(v) => format!("Some({})", render_bytes(v.as_ref())),
        None => "None".into(),
    }
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

/// Make `call` through the SDK, as a filter would.
fn call_mock(call: &HostCall, phase: Phase<'_>) -> String {
    match (call, phase) {
        (ContextSet(k, v), _) => done(context::set(k, v)),
        (ContextGet(k), _) => found(context::get(k)),
        (ContextRemove(k), _) => {
            context::remove(k);
            "-".into()
        }
        (SharedSet(k, v, t), _) => done(shared::set(k, v, ttl(*t))),
        (SharedGet(k), _) => found(shared::get(k)),
        (SharedIncrement(k, d, t), _) => value(shared::increment(k, *d, ttl(*t))),
        (SharedCompareAndSwap(k, e, n), _) => value(shared::compare_and_swap(k, e.as_deref(), n, None)),
        (SharedDelete(k), _) => shared::delete(k).to_string(),
        (RandomBytes(n), _) => random::bytes(*n).len().to_string(),
        (StartResponse, _) => "-".into(),
        (SetMethod(m), Phase::Request(r)) => done(r.set_method(m)),
        (SetPath(p), Phase::Request(r)) => done(r.set_path(p)),
        (SetAuthority(a), Phase::Request(r)) => done(r.set_authority(a)),
        (SetScheme(s), Phase::Request(r)) => done(r.set_scheme(s)),
        (RequestHeader(n), Phase::Request(r)) => found(r.header_bytes(n)),
        (SetRequestHeader(n, v), Phase::Request(r)) => done(r.set_header(n, v)),
        (AppendRequestHeader(n, v), Phase::Request(r)) => done(r.append_header(n, v)),
        (RemoveRequestHeader(n), Phase::Request(r)) => done(r.remove_header(n)),
        (SetCluster(c), Phase::Request(r)) => done(r.set_cluster(c)),
        (SetStatus(s), Phase::Response(r)) => done(r.set_status(*s)),
        (SetResponseHeader(n, v), Phase::Response(r)) => done(r.set_header(n, v)),
        (AppendResponseHeader(n, v), Phase::Response(r)) => done(r.append_header(n, v)),
        (RemoveResponseHeader(n), Phase::Response(r)) => done(r.remove_header(n)),
        (call, _) => panic!("a filter cannot make {call:?} in this phase"),
    }
}

/// What the SDK's mock answers to `calls`, set up as `outcomes` sets up the
/// host: `GET /start?q=1` for `example.com`, clusters `app` and `canary`,
/// an empty `200` response, and `quota`.
fn mock_outcomes(calls: &[HostCall], quota: Quota) -> Vec<String> {
    let host = MockHost::new();
    host.path("/start?q=1")
        .authority(Some("example.com"))
        .clusters("app", &["app", "canary"])
        .response_status(200)
        .shared_quota(quota.max_entries, quota.max_bytes);
    let mut replay: Replay = host.create().expect("replay filter");
    replay.calls = calls.to_vec();
    assert_eq!(host.on_request_headers(&mut replay), Action::Continue);
    assert_eq!(host.on_response_headers(&mut replay), Action::Continue);
    replay.out
}

fn bytes(n: usize) -> Vec<u8> {
    vec![b'v'; n]
}

fn text(n: usize) -> String {
    "k".repeat(n)
}

fn quota(max_entries: usize, max_bytes: usize) -> Quota {
    Quota { max_entries, max_bytes }
}

struct Case {
    name: &'static str,
    quota: Quota,
    calls: Vec<HostCall>,
}

fn case(name: &'static str, calls: Vec<HostCall>) -> Case {
    Case {
        name,
        quota: Quota::default(),
        calls,
    }
}

fn cases() -> Vec<Case> {
    let name = |n: usize| format!("x{}", "n".repeat(n - 1));
    let mut cases = vec![
        case(
            "request header value at and past MAX_HEADER_BYTES",
            vec![
                SetRequestHeader("x-a".into(), bytes(MAX_HEADER_BYTES)),
                SetRequestHeader("x-a".into(), bytes(MAX_HEADER_BYTES + 1)),
                AppendRequestHeader("x-a".into(), bytes(MAX_HEADER_BYTES + 1)),
                AppendRequestHeader("x-b".into(), bytes(MAX_HEADER_BYTES)),
                RequestHeader("x-a".into()),
            ],
        ),
        case(
            "response header value at and past MAX_HEADER_BYTES",
            vec![
                StartResponse,
                SetResponseHeader("x-a".into(), bytes(MAX_HEADER_BYTES)),
                SetResponseHeader("x-a".into(), bytes(MAX_HEADER_BYTES + 1)),
                AppendResponseHeader("x-a".into(), bytes(MAX_HEADER_BYTES + 1)),
            ],
        ),
        case(
            // The host's HTTP library stops at 65535 bytes, below the bound.
            "header name sizes",
            vec![
                SetRequestHeader(name(MAX_HEADER_BYTES - 1), b"v".to_vec()),
                SetRequestHeader(name(MAX_HEADER_BYTES), b"v".to_vec()),
                SetRequestHeader(name(MAX_HEADER_BYTES + 1), b"v".to_vec()),
                AppendRequestHeader(name(MAX_HEADER_BYTES + 1), b"v".to_vec()),
                RemoveRequestHeader(name(MAX_HEADER_BYTES + 1)),
                RequestHeader(name(MAX_HEADER_BYTES + 1)),
                RequestHeader(name(MAX_HEADER_BYTES - 1)),
                StartResponse,
                SetResponseHeader(name(MAX_HEADER_BYTES + 1), b"v".to_vec()),
                RemoveResponseHeader(name(MAX_HEADER_BYTES)),
            ],
        ),
        case(
            "invalid header names and values",
            vec![
                SetRequestHeader("bad name".into(), b"v".to_vec()),
                SetRequestHeader(String::new(), b"v".to_vec()),
                SetRequestHeader("x-\u{7f}".into(), b"v".to_vec()),
                SetRequestHeader("x-é".into(), b"v".to_vec()),
                SetRequestHeader("x:y".into(), b"v".to_vec()),
                SetRequestHeader("x-a".into(), b"line\r\nInjected: yes".to_vec()),
                SetRequestHeader("x-a".into(), b"a\0b".to_vec()),
                SetRequestHeader("x-a".into(), b"a\x01b".to_vec()),
                SetRequestHeader("x-a".into(), b"a\x7fb".to_vec()),
                AppendRequestHeader("x-a".into(), b"a\nb".to_vec()),
                SetRequestHeader("x-a".into(), b"tab\there, obs-text \x80\xff".to_vec()),
                SetRequestHeader("X-Upper".into(), b"v".to_vec()),
                RequestHeader("x-upper".into()),
                RequestHeader("x-a".into()),
                // Name checks come before value checks.
                SetRequestHeader("bad name".into(), bytes(MAX_HEADER_BYTES + 1)),
                SetRequestHeader(name(MAX_HEADER_BYTES + 1), b"\n".to_vec()),
                StartResponse,
                SetResponseHeader("x b".into(), b"v".to_vec()),
                SetResponseHeader("x-b".into(), b"\r".to_vec()),
            ],
        ),
        case("reserved headers", {
            let mut calls = Vec::new();
            for name in RESERVED_HEADERS {
                calls.push(SetRequestHeader(name.into(), b"1".to_vec()));
                calls.push(AppendRequestHeader(name.to_ascii_uppercase(), b"1".to_vec()));
                calls.push(RemoveRequestHeader(name.into()));
            }
            // Reserved is decided before the value is looked at.
            calls.push(SetRequestHeader("content-length".into(), b"\n".to_vec()));
            calls.push(SetRequestHeader("te".into(), bytes(MAX_HEADER_BYTES + 1)));
            calls.push(StartResponse);
            for name in RESERVED_HEADERS {
                calls.push(SetResponseHeader(name.into(), b"1".to_vec()));
                calls.push(RemoveResponseHeader(name.into()));
            }
            calls
        }),
        case("request header count via append: 499, 500, 501 lines", {
            // The request has one line already: `host`.
            let mut calls: Vec<HostCall> = (0..MAX_HEADER_COUNT - 2)
                .map(|i| AppendRequestHeader("x-flood".into(), i.to_string().into_bytes()))
                .collect();
            calls.extend([
                AppendRequestHeader("x-flood".into(), b"500th".to_vec()),
                AppendRequestHeader("x-flood".into(), b"501st".to_vec()),
                AppendRequestHeader("x-other".into(), b"501st".to_vec()),
                SetRequestHeader("x-other".into(), b"501st".to_vec()),
                // Setting replaces every value of the name.
                SetRequestHeader("x-flood".into(), b"one".to_vec()),
                AppendRequestHeader("x-other".into(), b"3rd".to_vec()),
                RequestHeader("x-flood".into()),
            ]);
            calls
        }),
        case("request header count via set: 499, 500, 501 lines", {
            let mut calls: Vec<HostCall> = (1..MAX_HEADER_COUNT - 1)
                .map(|i| SetRequestHeader(format!("x-{i}"), b"v".to_vec()))
                .collect();
            calls.extend([
                SetRequestHeader(format!("x-{}", MAX_HEADER_COUNT - 1), b"500th".to_vec()),
                SetRequestHeader("x-past".into(), b"501st".to_vec()),
                SetRequestHeader("x-1".into(), b"replaced".to_vec()),
                AppendRequestHeader("x-1".into(), b"501st".to_vec()),
                RemoveRequestHeader("x-2".into()),
                SetRequestHeader("x-past".into(), b"500th".to_vec()),
                SetRequestHeader("x-again".into(), b"501st".to_vec()),
            ]);
            calls
        }),
        case("response header count: 500 and 501 lines", {
            let mut calls = vec![StartResponse];
            calls.extend(
                (0..MAX_HEADER_COUNT - 1).map(|i| AppendResponseHeader("x-flood".into(), i.to_string().into_bytes())),
            );
            calls.extend([
                SetResponseHeader("x-last".into(), b"500th".to_vec()),
                AppendResponseHeader("x-flood".into(), b"501st".to_vec()),
                SetResponseHeader("x-new".into(), b"501st".to_vec()),
                SetResponseHeader("x-last".into(), b"replaced".to_vec()),
                RemoveResponseHeader("x-flood".into()),
                AppendResponseHeader("x-flood".into(), b"2nd".to_vec()),
            ]);
            calls
        }),
        case("context entries: 256 and 257", {
            let mut calls: Vec<HostCall> = (0..MAX_CONTEXT_ENTRIES)
                .map(|i| ContextSet(format!("k{i}"), "v".into()))
                .collect();
            calls.extend([
                ContextSet("one-more".into(), "v".into()),
                ContextGet("one-more".into()),
                ContextSet("k0".into(), "replaced".into()),
                ContextGet("k0".into()),
                ContextRemove("k1".into()),
                ContextSet("one-more".into(), "v".into()),
                ContextSet("two-more".into(), "v".into()),
                // The response phase sees the same context and bound.
                StartResponse,
                ContextSet("three-more".into(), "v".into()),
                ContextGet("one-more".into()),
            ]);
            calls
        }),
        case(
            "context key and value sizes",
            vec![
                ContextSet(text(MAX_CONTEXT_BYTES), "v".into()),
                ContextSet(text(MAX_CONTEXT_BYTES + 1), "v".into()),
                ContextSet("k".into(), text(MAX_CONTEXT_BYTES)),
                ContextSet("k".into(), text(MAX_CONTEXT_BYTES + 1)),
                ContextGet("k".into()),
                ContextGet(text(MAX_CONTEXT_BYTES)),
                ContextGet(text(MAX_CONTEXT_BYTES + 1)),
            ],
        ),
        case(
            "shared key sizes: 1024 and 1025 bytes",
            vec![
                SharedSet(text(MAX_SHARED_KEY_BYTES), b"v".to_vec(), None),
                SharedSet(text(MAX_SHARED_KEY_BYTES + 1), b"v".to_vec(), None),
                SharedGet(text(MAX_SHARED_KEY_BYTES)),
                SharedGet(text(MAX_SHARED_KEY_BYTES + 1)),
                SharedIncrement(text(MAX_SHARED_KEY_BYTES + 1), 1, None),
                SharedCompareAndSwap(text(MAX_SHARED_KEY_BYTES + 1), None, b"v".to_vec()),
                SharedDelete(text(MAX_SHARED_KEY_BYTES + 1)),
                SharedDelete(text(MAX_SHARED_KEY_BYTES)),
                SharedIncrement(text(MAX_SHARED_KEY_BYTES), 7, None),
                SharedCompareAndSwap(text(MAX_SHARED_KEY_BYTES), None, b"v".to_vec()),
                SharedGet(text(MAX_SHARED_KEY_BYTES)),
            ],
        ),
        case(
            "shared value sizes: 64 KiB and one byte more",
            vec![
                SharedSet("k".into(), bytes(MAX_SHARED_VALUE_BYTES), None),
                SharedSet("k".into(), bytes(MAX_SHARED_VALUE_BYTES + 1), None),
                SharedGet("k".into()),
                SharedCompareAndSwap(
                    "k".into(),
                    Some(bytes(MAX_SHARED_VALUE_BYTES)),
                    bytes(MAX_SHARED_VALUE_BYTES + 1),
                ),
                SharedCompareAndSwap("k".into(), Some(bytes(MAX_SHARED_VALUE_BYTES)), b"small".to_vec()),
                SharedIncrement("k".into(), 1, None),
                SharedGet("k".into()),
                // Value checks come before key checks; both are limits.
                SharedSet(text(MAX_SHARED_KEY_BYTES + 1), bytes(MAX_SHARED_VALUE_BYTES + 1), None),
            ],
        ),
        Case {
            name: "shared entry quota",
            quota: quota(3, usize::MAX),
            calls: vec![
                SharedSet("a".into(), b"1".to_vec(), None),
                SharedIncrement("b".into(), 1, None),
                SharedCompareAndSwap("c".into(), None, b"1".to_vec()),
                SharedSet("d".into(), b"1".to_vec(), None),
                SharedIncrement("d".into(), 1, None),
                SharedCompareAndSwap("d".into(), None, b"1".to_vec()),
                SharedGet("d".into()),
                // Changing what is there adds no entry.
                SharedSet("a".into(), b"2".to_vec(), None),
                SharedIncrement("b".into(), 1, None),
                SharedCompareAndSwap("c".into(), Some(b"1".to_vec()), b"2".to_vec()),
                // A swap that does not happen writes nothing.
                SharedCompareAndSwap("d".into(), Some(b"x".to_vec()), b"1".to_vec()),
                SharedDelete("a".into()),
                SharedSet("d".into(), b"1".to_vec(), None),
                SharedSet("e".into(), b"1".to_vec(), None),
                SharedGet("c".into()),
            ],
        },
        Case {
            // Keys plus values: "a"+9 and "b"+9 bytes fill 20.
            name: "shared byte quota",
            quota: quota(usize::MAX, 20),
            calls: vec![
                SharedSet("a".into(), bytes(9), None),
                SharedSet("b".into(), bytes(9), None),
                SharedSet("c".into(), Vec::new(), None),
                SharedSet("a".into(), bytes(10), None),
                SharedGet("a".into()),
                SharedSet("a".into(), bytes(1), None),
                SharedSet("c".into(), bytes(7), None),
                SharedSet("d".into(), Vec::new(), None),
                SharedIncrement("n".into(), 1, None),
                SharedCompareAndSwap("c".into(), Some(bytes(7)), bytes(8)),
                SharedCompareAndSwap("c".into(), Some(bytes(7)), bytes(6)),
                SharedDelete("b".into()),
                SharedIncrement("n".into(), 1, None),
                SharedIncrement("n".into(), 1, None),
                SharedSet("b".into(), bytes(2), None),
            ],
        },
        Case {
            name: "expired entries do not count against the quota",
            quota: quota(2, usize::MAX),
            calls: vec![
                SharedSet("a".into(), b"1".to_vec(), Some(0)),
                SharedIncrement("b".into(), 1, Some(0)),
                SharedSet("c".into(), b"1".to_vec(), None),
                SharedSet("d".into(), b"1".to_vec(), None),
                SharedSet("e".into(), b"1".to_vec(), None),
                SharedGet("a".into()),
                SharedGet("c".into()),
                SharedIncrement("b".into(), 5, None),
            ],
        },
        case(
            "shared counters",
            vec![
                SharedSet("s".into(), b"not a counter".to_vec(), None),
                SharedIncrement("s".into(), 1, None),
                SharedIncrement("n".into(), i64::MAX, None),
                SharedIncrement("n".into(), 1, None),
                SharedDelete("n".into()),
                SharedDelete("n".into()),
            ],
        ),
        case(
            "request line arguments",
            vec![
                SetPath(format!("/{}", "a".repeat(65533))),
                SetPath(format!("/{}", "a".repeat(65534))),
                SetPath(format!("/{}", "a".repeat(MAX_HEADER_BYTES - 1))),
                SetPath(format!("/{}", "a".repeat(MAX_HEADER_BYTES))),
                SetPath("relative".into()),
                SetPath("/a b".into()),
                SetPath("/a<b".into()),
                SetPath("/?q=\"x\"".into()),
                SetPath("/é/{\"a\"}?q=`|`#fragment".into()),
                SetAuthority("example.org:8080".into()),
                SetAuthority("[::1]:443".into()),
                SetAuthority(String::new()),
                SetAuthority("user@example.org".into()),
                SetAuthority("a:1:2".into()),
                SetAuthority("[::1".into()),
                SetAuthority("a/b".into()),
                SetAuthority("a%20b".into()),
                SetAuthority("é.example".into()),
                SetMethod("PURGE".into()),
                SetMethod("M".repeat(100_000)),
                SetMethod("GET /".into()),
                SetMethod(String::new()),
                SetScheme("https".into()),
                SetScheme("ftp".into()),
                SetCluster("canary".into()),
                SetCluster("nope".into()),
            ],
        ),
        case(
            "response status range",
            vec![
                StartResponse,
                SetStatus(99),
                SetStatus(100),
                SetStatus(599),
                SetStatus(600),
            ],
        ),
        case(
            "random bytes are capped",
            vec![
                RandomBytes(MAX_RANDOM_BYTES),
                RandomBytes(MAX_RANDOM_BYTES + 1),
                RandomBytes(u32::MAX),
            ],
        ),
    ];
    // Every reserved header, one past the value bound: still reserved.
    cases.push(case(
        "reserved names win over oversized values",
        RESERVED_HEADERS
            .iter()
            .map(|n| AppendRequestHeader(n.to_string(), bytes(MAX_HEADER_BYTES + 1)))
            .collect(),
    ));
    cases
}

#[test]
fn mock_host_refuses_exactly_as_the_host_does() {
    let cases = cases();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        let host = outcomes(&case.calls, case.quota);
        let mock = mock_outcomes(&case.calls, case.quota);
        assert_eq!(host.len(), case.calls.len(), "{}: one answer per call", case.name);
        assert_eq!(mock.len(), case.calls.len(), "{}: one answer per call", case.name);
        for (i, (h, m)) in host.iter().zip(&mock).enumerate() {
            if h != m {
                let call = format!("{:?}", case.calls[i]);
                let call: String = call.chars().take(120).collect();
                mismatches.push(format!("{}: call {i} {call}: host {h}, mock {m}", case.name));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "mock and host differ:\n{}",
        mismatches.join("\n")
    );
}

/// The cases do reach the bounds: each refusal the table is about happens.
#[test]
fn the_cases_hit_every_bound() {
    let answers: Vec<String> = cases().iter().flat_map(|c| outcomes(&c.calls, c.quota)).collect();
    for expected in [
        "Err(LimitExceeded)",
        "Err(InvalidName)",
        "Err(InvalidValue)",
        "Err(ReservedHeader)",
        "Err(InvalidArgument)",
        "Err(UnknownCluster)",
    ] {
        assert!(answers.iter().any(|a| a == expected), "no call answered {expected}");
    }
    assert!(answers.contains(&MAX_RANDOM_BYTES.to_string()));
}
