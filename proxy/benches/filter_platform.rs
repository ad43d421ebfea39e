//! Cost of the filter platform's body phases and outbound calls, measured
//! with criterion on the release build:
//! `cargo bench -p sluice --bench filter_platform` (add a name filter such
//! as `-- outbound` to run one group; criterion compares each figure with
//! the previous run's, kept under `target/criterion/`). Groups:
//!
//! - `body/response/<KiB>`: one response-body-phase call of the `card-mask`
//!   example filter on a JSON body (`application/json`) of 1, 16, 64 and
//!   256 KiB holding no card number: it scans the body and answers
//!   Continue. `body/response-masking/<KiB>` is the same with one card
//!   number (`4111 1111 1111 1111`) per KiB, so it masks them all and
//!   replaces the body. `body/request/<KiB>` is one request-body-phase call
//!   of the `body-rewrite` test filter, which upper-cases the body and
//!   replaces it, at the same sizes. Each includes copying the body into
//!   the guest and, when replaced, the new body out of it.
//!
//!   Reading the figures: besides `time` (per call), criterion prints
//!   `thrpt`, body bytes per second in binary units (KiB/s = 1024 B/s,
//!   MiB/s = 1024 KiB/s). Time per KiB is `time` divided by the size in
//!   KiB, or equally 1 s / (thrpt in KiB/s): 100 MiB/s is 102 400 KiB/s,
//!   about 9.8 µs per KiB. Compare sizes to separate the per-call cost
//!   from the per-KiB cost.
//! - `outbound/round-trip`: one request-headers call of the `ext-authz`
//!   example filter, which makes one HTTP/1.1 call through the host's
//!   outbound path (cluster `authz`) to an authorization service on
//!   loopback started here, answering 200 with `x-auth-user: ann`.
//!   `outbound/direct` is the same call sent by the host
//!   (`Outbound::send`) without Wasm: the difference is the filter's part.
//!   Both reuse a pooled keep-alive connection.
//!
//! Compiling the plugins, creating the slots and building each call's
//! message happen outside the timing; each benchmark takes 50 samples over
//! 3 s after 1 s of warm-up. Everything, the service included, runs on one
//! current-thread Tokio runtime.

use bytes::Bytes;
use criterion::{BatchSize, Bencher, BenchmarkId, Criterion, Throughput};
use http::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sluice::config::{Config, SandboxConfig};
use sluice::connection::ConnectionFacts;
use sluice::wasm::{
    Context, FilterSlot, Message, Phase, PhaseOutcome, Plugin, PluginSource, RequestExchange, RequestHead,
    ResponseExchange, WasmRuntime,
};
use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::runtime::Runtime;

const SIZES_KIB: [usize; 4] = [1, 16, 64, 256];
const CARD: &str = "4111 1111 1111 1111";
const CARD_MASK: &str = r#"{"content_types":["application/json"]}"#;
const EXT_AUTHZ: &str = r#"{"cluster":"authz","timeout_ms":1000}"#;
const TIMEOUT: Duration = Duration::from_millis(1000);

/// A JSON array of `kib` records of exactly 1 KiB each (brackets and commas
/// included), each with a card number when `cards`, else none.
fn json_body(kib: usize, cards: bool) -> Bytes {
    let mut out = String::with_capacity(kib * 1024);
    for i in 0..kib {
        let open = if i == 0 { "[" } else { "" };
        let close = if i + 1 == kib { "]" } else { "," };
        let card = if cards { CARD } else { "not on file" };
        let head = format!(r#"{open}{{"id":{i},"card":"{card}","note":""#);
        let tail = format!(r#""}}{close}"#);
        let pad = 1024 - head.len() - tail.len();
        out.push_str(&head);
        out.extend("lorem ipsum dolor sit amet ".chars().cycle().take(pad));
        out.push_str(&tail);
    }
    assert_eq!(out.len(), kib * 1024);
    Bytes::from(out)
}

fn request_exchange() -> RequestExchange {
    let (parts, ()) = http::Request::post("/api/orders")
        .header("host", "shop.example.com")
        .header("authorization", "Bearer bench-token")
        .header(CONTENT_TYPE, "application/json")
        .body(())
        .expect("valid request")
        .into_parts();
    RequestExchange {
        head: RequestHead {
            parts,
            scheme: "http",
            cluster: "app".into(),
            route: "bench".into(),
            paths: sluice::config::PathPolicy::default(),
        },
        context: Context::new(),
        connection: ConnectionFacts::unknown(),
    }
}

fn json_response() -> ResponseExchange {
    let mut head = http::Response::new(()).into_parts().0;
    head.headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    ResponseExchange {
        head,
        context: Context::new(),
        connection: ConnectionFacts::unknown(),
    }
}

/// The authorization service: HTTP/1.1 on loopback, 200 with
/// `x-auth-user: ann` to everything. Counts the connections it accepted.
async fn authz_service(accepted: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind service");
    let addr = listener.local_addr().expect("service address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    let answer = http::Response::builder()
                        .header("x-auth-user", "ann")
                        .body(http_body_util::Empty::<Bytes>::new())
                        .expect("valid response");
                    Ok::<_, Infallible>(answer)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Env {
    tokio: Runtime,
    wasm: Arc<WasmRuntime>,
}

impl Env {
    /// A slot of test filter `name` with `config`, allowed to call `clusters`.
    fn slot(&self, name: &str, config: &str, clusters: &[&str]) -> FilterSlot {
        let path = sluice_test_support::test_filter(name);
        let bytes = std::fs::read(&path).expect("read the filter");
        let plugin = Plugin::load(&self.wasm, name, PluginSource::File(path), &bytes, 1).expect("load");
        let clusters = Arc::new(clusters.iter().map(|&c| Arc::from(c)).collect::<HashSet<_>>());
        let new = FilterSlot::new(
            self.wasm.clone(),
            Arc::new(plugin),
            config.to_owned(),
            clusters,
            SandboxConfig::default(),
        );
        self.tokio.block_on(new).expect("slot")
    }

    /// One untimed `phase` call, returning the outcome and the message.
    fn call_once<M: Message>(
        &self,
        slot: &FilterSlot,
        phase: Phase,
        mut message: M,
        body: Option<&Bytes>,
    ) -> (PhaseOutcome, M) {
        let outcome = self.tokio.block_on(slot.call(phase, &mut message, body)).expect("call");
        (outcome, message)
    }
}

/// Time one `phase` call of `slot` (with `body`, for a body phase) per
/// iteration, each on a fresh message from `message`, made and dropped
/// outside the timing.
fn bench_call<M: Message>(
    b: &mut Bencher<'_>,
    tokio: &Runtime,
    slot: &FilterSlot,
    phase: Phase,
    body: Option<&Bytes>,
    message: fn() -> M,
) {
    b.to_async(tokio).iter_batched(
        message,
        |mut message| async move {
            let outcome = slot.call(phase, &mut message, body).await.expect("call");
            (outcome, message)
        },
        BatchSize::SmallInput,
    );
}

/// `body/*`: body phases by body size, one series after the other.
fn body(c: &mut Criterion, env: &Env) {
    let card_mask = env.slot("card-mask", CARD_MASK, &[]);
    let rewrite = env.slot("body-rewrite", "{}", &[]);
    let bodies: Vec<(usize, Bytes, Bytes)> = SIZES_KIB
        .iter()
        .map(|&kib| (kib, json_body(kib, false), json_body(kib, true)))
        .collect();
    let series = [
        ("response", &card_mask, Phase::ResponseBody, false),
        ("response-masking", &card_mask, Phase::ResponseBody, true),
        ("request", &rewrite, Phase::RequestBody, false),
    ];
    let mut group = c.benchmark_group("body");
    for (name, slot, phase, with_cards) in series {
        for (kib, plain, cards) in &bodies {
            let (kib, data) = (*kib, if with_cards { cards } else { plain });
            let outcome = if phase.is_request() {
                env.call_once(slot, phase, request_exchange(), Some(data)).0
            } else {
                env.call_once(slot, phase, json_response(), Some(data)).0
            };
            match (name, &outcome) {
                ("response", PhaseOutcome::Continue) => {}
                ("response-masking", PhaseOutcome::Replace(b)) => {
                    let masked = String::from_utf8_lossy(b);
                    assert_eq!(masked.matches("**** **** **** 1111").count(), kib, "every card masked");
                    assert!(!masked.contains(CARD), "a card left unmasked");
                }
                ("request", PhaseOutcome::Replace(b)) => assert_eq!(b, &data.to_ascii_uppercase()),
                _ => panic!("{name}/{kib}: unexpected outcome {outcome:?}"),
            }
            group.throughput(Throughput::Bytes(data.len() as u64));
            group.bench_function(BenchmarkId::new(name, kib), |b| {
                if phase.is_request() {
                    bench_call(b, &env.tokio, slot, phase, Some(data), request_exchange);
                } else {
                    bench_call(b, &env.tokio, slot, phase, Some(data), json_response);
                }
            });
        }
    }
    group.finish();
}

/// `outbound/*`: a filter's outbound call, and the same call without Wasm.
fn outbound(c: &mut Criterion, env: &Env) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let addr = env.tokio.block_on(authz_service(accepted.clone()));
    let text = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[[clusters]]\nname = \"authz\"\nendpoints = [\"{addr}\"]\n"
    );
    let config = Config::parse(Path::new("filter_platform.toml"), &text).expect("config");
    // Kept alive for the whole group: the runtime's outbound path only
    // holds weak references to its clusters.
    let upstreams = env
        .tokio
        .block_on(sluice::upstream::Upstreams::new(&config, &env.wasm.metrics, None))
        .expect("upstreams");
    env.wasm.outbound.commit(&upstreams);

    let slot = env.slot("ext-authz", EXT_AUTHZ, &["authz"]);
    let (outcome, allowed) = env.call_once(&slot, Phase::RequestHeaders, request_exchange(), None);
    assert!(
        matches!(outcome, PhaseOutcome::Continue),
        "ext-authz refused: {outcome:?}"
    );
    let user = allowed.head.parts.headers.get("x-auth-user");
    assert_eq!(
        user.map(HeaderValue::as_bytes),
        Some(&b"ann"[..]),
        "the service's user on the request"
    );

    // What ext-authz sends, built by hand.
    let (check, ()) = http::Request::post("/check")
        .header("host", "authz")
        .header("x-ext-authz-method", "POST")
        .header("x-ext-authz-path", "/api/orders")
        .header("x-ext-authz-client", "0.0.0.0")
        .header("authorization", "Bearer bench-token")
        .body(())
        .expect("valid request")
        .into_parts();
    let direct = || {
        env.wasm
            .outbound
            .send("authz", check.clone(), Bytes::new(), TIMEOUT, 1 << 20)
    };
    let answer = env.tokio.block_on(direct()).expect("direct call");
    assert_eq!(answer.head.status, 200);
    assert_eq!(answer.head.headers["x-auth-user"], "ann");

    let mut group = c.benchmark_group("outbound");
    group.bench_function("round-trip", |b| {
        bench_call(b, &env.tokio, &slot, Phase::RequestHeaders, None, request_exchange)
    });
    group.bench_function("direct", |b| {
        b.to_async(&env.tokio)
            .iter(|| async { direct().await.expect("direct call") })
    });
    group.finish();
    eprintln!(
        "authz service: {} connection(s) accepted",
        accepted.load(Ordering::Relaxed)
    );
    drop(upstreams);
}

fn main() {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let env = Env {
        tokio,
        wasm: WasmRuntime::new(None).expect("engine"),
    };
    let mut c = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    body(&mut c, &env);
    outbound(&mut c, &env);
    c.final_summary();
}
