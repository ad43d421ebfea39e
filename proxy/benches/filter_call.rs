//! Host-side cost of running filters, measured with criterion on the release
//! build: `cargo bench -p sluice --bench filter_call` (add a name filter such
//! as `-- marshalling` to run one group; criterion compares each figure with
//! the previous run's, kept under `target/criterion/`). Groups:
//!
//! - `builtin/<name>`: one request-phase call of each built-in filter on a
//!   pooled instance (`FilterSlot::call`): auth (an HS256 JWT, served from
//!   its token cache after the first call), rate-limit, header-rewrite,
//!   traffic-split; `builtin/<name>/response` for those that run in the
//!   response phase. Each call gets a fresh copy of a browser-like request
//!   (11 headers plus `Authorization`), made and dropped outside the timing.
//! - `chain/four-builtins`: the four in a `FilterChain`, both phases,
//!   including building the request copy; `chain/request-copy-baseline` is
//!   that copy alone, to subtract.
//! - `instance/create+init/<name>`: a fresh configured instance
//!   (`FilterSlot::new`: instantiate, `init` with the route's configuration,
//!   drop) of header-rewrite and of the larger auth module.
//! - `marshalling/header-rewrite/<n>`: header-rewrite's request phase on
//!   requests with 0, 11 and 50 headers. Filters read headers by name, so the
//!   map never crosses into the guest whole and this should stay nearly flat.
//!   `marshalling/lines/<n>` is the host side of a filter's `headers()` call
//!   (the map turned into the list; lowering it into guest memory is not
//!   included), for 11 and 50 headers.
//! - `crossing/<host call>/<n>`: the `probe` test filter's request phase
//!   making `n` calls of one host function: `context-get` (`context.get`
//!   of a key that is not there: a string in, `none` out, no allocation in
//!   the guest) and `set-header` (`request.set-header` of a new header).
//!   `n = 0` is the fixed cost of a call that does nothing; the slope is
//!   what each host call inside a phase adds.
//!
//! `SLUICE_BENCH_PLUGINS=<dir>` loads the four from `<dir>/<name>.wasm`
//! (`auth.wasm`, `rate_limit.wasm`, …, as cargo names them) instead of the
//! built-ins: an A/B of two builds of the filters on one bench binary.
//!
//! Compiling the plugins and creating the slots happen outside the timing;
//! each benchmark takes 50 samples over 3 s after 1 s of warm-up.

use criterion::{BatchSize, Bencher, BenchmarkId, Criterion, Throughput};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sluice::config::SandboxConfig;
use sluice::connection::ConnectionFacts;
use sluice::filter_chain::{FilterChain, RequestOutcome};
use sluice::wasm::{
    Context, FilterSlot, Message, Phase, PhaseOutcome, Plugin, PluginSource, RequestExchange, RequestHead,
    ResponseExchange, WasmRuntime,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

const SECRET: &str = "bench-secret-bench-secret-0123456789";
const RATE_LIMIT: &str = r#"{"key":["client_ip"],"limits":[{"requests":1000000000,"per":"1s"}]}"#;
const REWRITE: &str = r#"{"request":{"set":{"x-caller":"${context.auth.subject}"},"remove":["x-internal"]},
    "response":{"set":{"x-served-by":"sluice"}}}"#;
const SPLIT: &str = r#"{"clusters":[{"cluster":"app","weight":90},{"cluster":"canary","weight":10}]}"#;

/// The headers of a browser's page request.
const BROWSER: [(&str, &str); 11] = [
    ("host", "shop.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    ("referer", "https://shop.example.com/"),
    ("cookie", "session=8f1c2e; theme=dark"),
    ("x-request-id", "5b9f1d0e-3c44-4d6b-9a57-2f7d1b8e6c10"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-site", "same-origin"),
    ("upgrade-insecure-requests", "1"),
];

/// `count` request headers: the browser's first, then `x-extra-NN` padding.
fn headers(count: usize) -> HeaderMap {
    let mut map: HeaderMap = BROWSER
        .iter()
        .take(count)
        .map(|&(name, value)| (HeaderName::from_static(name), HeaderValue::from_static(value)))
        .collect();
    for i in BROWSER.len()..count {
        let name = HeaderName::try_from(format!("x-extra-{i:02}")).expect("header name");
        map.insert(name, HeaderValue::from_static("0123456789abcdef"));
    }
    map
}

/// A request head, copied into a fresh [`RequestExchange`] per call as the proxy
/// builds one per request.
struct RequestTemplate {
    parts: http::request::Parts,
    cluster: Arc<str>,
    route: Arc<str>,
}

impl RequestTemplate {
    fn new(headers: HeaderMap) -> Self {
        let (mut parts, ()) = http::Request::get("/api/orders?limit=10")
            .body(())
            .expect("valid request")
            .into_parts();
        parts.headers = headers;
        RequestTemplate {
            parts,
            cluster: "app".into(),
            route: "bench".into(),
        }
    }

    fn exchange(&self) -> RequestExchange {
        RequestExchange {
            head: RequestHead {
                parts: self.parts.clone(),
                scheme: "http",
                cluster: self.cluster.clone(),
                route: self.route.clone(),
                paths: sluice::config::PathPolicy::default(),
            },
            context: Context::new(),
            connection: ConnectionFacts::unknown(),
        }
    }
}

/// Compile the component at `path` as plugin `name`.
fn load_file(wasm: &WasmRuntime, name: &str, path: PathBuf) -> Plugin {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Plugin::load(wasm, name, PluginSource::File(path), &bytes, 1).expect("load")
}

/// What every benchmark shares: the Tokio runtime async calls run on, the
/// engine, the route's clusters and the four built-ins, compiled once.
struct Env {
    tokio: Runtime,
    wasm: Arc<WasmRuntime>,
    clusters: Arc<HashSet<Arc<str>>>,
    /// Name, plugin and route configuration, in chain order.
    filters: Vec<(&'static str, Arc<Plugin>, String)>,
    /// An `Authorization` value the auth configuration accepts.
    bearer: String,
}

impl Env {
    fn new() -> Env {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let wasm = WasmRuntime::new(None).expect("engine");
        let claims = serde_json::json!({"sub": "bench-user", "iss": "bench", "aud": "api", "exp": 4_000_000_000u64});
        let header = jsonwebtoken::Header {
            kid: Some("bench".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        };
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        let token = jsonwebtoken::encode(&header, &claims, &key).expect("token");
        let auth = format!(
            r#"{{"jwt":{{"issuers":["bench"],"audiences":["api"],"keys":[{{"kid":"bench","alg":"HS256","secret":"{SECRET}"}}]}}}}"#
        );
        let configs = [
            ("auth", auth),
            ("rate-limit", RATE_LIMIT.into()),
            ("header-rewrite", REWRITE.into()),
            ("traffic-split", SPLIT.into()),
        ];
        let filters = configs
            .into_iter()
            .map(|(name, config)| {
                let plugin = match std::env::var_os("SLUICE_BENCH_PLUGINS") {
                    Some(dir) => load_file(
                        &wasm,
                        name,
                        Path::new(&dir).join(format!("{}.wasm", name.replace('-', "_"))),
                    ),
                    None => {
                        let bytes = sluice::builtin::get(name).expect("built-in plugin");
                        Plugin::load(&wasm, name, PluginSource::Builtin, bytes, 1).expect("load")
                    }
                };
                (name, Arc::new(plugin), config)
            })
            .collect();
        Env {
            tokio,
            wasm,
            clusters: Arc::new(["app".into(), "canary".into()].into_iter().collect()),
            filters,
            bearer: format!("Bearer {token}"),
        }
    }

    /// A built-in's plugin and route configuration.
    fn filter(&self, name: &str) -> (&Arc<Plugin>, &str) {
        let (_, plugin, config) = self.filters.iter().find(|f| f.0 == name).expect("known filter");
        (plugin, config.as_str())
    }

    async fn new_slot(&self, plugin: &Arc<Plugin>, config: &str) -> FilterSlot {
        FilterSlot::new(
            self.wasm.clone(),
            plugin.clone(),
            config.to_owned(),
            self.clusters.clone(),
            SandboxConfig::default(),
        )
        .await
        .expect("slot")
    }

    fn slot(&self, name: &str) -> Arc<FilterSlot> {
        let (plugin, config) = self.filter(name);
        Arc::new(self.tokio.block_on(self.new_slot(plugin, config)))
    }

    /// One untimed call (warming caches such as auth's token cache) that
    /// must let the message through; returns the exchange it left.
    fn call_once<M: Message>(&self, slot: &FilterSlot, mut exchange: M) -> M {
        let outcome = self
            .tokio
            .block_on(slot.call(M::HEADERS, &mut exchange, None))
            .expect("call");
        assert!(
            matches!(outcome, PhaseOutcome::Continue),
            "{} answered locally: {outcome:?}",
            slot.plugin.name
        );
        exchange
    }
}

/// Time one `phase` call of `slot` per iteration, each on a fresh message
/// from `message`, made and dropped outside the timing.
fn bench_call<M: Message>(b: &mut Bencher<'_>, tokio: &Runtime, slot: &FilterSlot, message: impl Fn() -> M) {
    b.to_async(tokio).iter_batched(
        message,
        move |mut exchange| async move {
            slot.call(M::HEADERS, &mut exchange, None).await.expect("call");
            exchange
        },
        BatchSize::SmallInput,
    );
}

/// `builtin/*`; returns the four slots in chain order.
fn builtin(c: &mut Criterion, env: &Env, request: &RequestTemplate) -> Vec<Arc<FilterSlot>> {
    let mut response = http::Response::new(()).into_parts().0;
    response
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut group = c.benchmark_group("builtin");
    let mut slots = Vec::new();
    for &(name, ..) in &env.filters {
        let slot = env.slot(name);
        let after = env.call_once(&slot, request.exchange());
        group.bench_function(name, |b| bench_call(b, &env.tokio, &slot, || request.exchange()));
        if slot.wants(Phase::ResponseHeaders) {
            // The response phase sees the context its request phase left.
            let reply = || ResponseExchange {
                head: response.clone(),
                context: after.context.clone(),
                connection: ConnectionFacts::unknown(),
            };
            env.call_once(&slot, reply());
            group.bench_function(format!("{name}/response"), |b| bench_call(b, &env.tokio, &slot, reply));
        }
        slots.push(slot);
    }
    group.finish();
    slots
}

/// `chain/*`: the four built-ins in one chain, both phases.
fn chain(c: &mut Criterion, env: &Env, request: &RequestTemplate, slots: Vec<Arc<FilterSlot>>) {
    let chain = FilterChain { slots };
    let ran = chain.slots.len();
    let mut group = c.benchmark_group("chain");
    group.bench_function("four-builtins", |b| {
        let chain = &chain;
        b.to_async(&env.tokio).iter(move || async move {
            let mut exchange = request.exchange();
            let outcome = chain.on_request(&mut exchange).await.expect("request phase");
            assert!(matches!(outcome, RequestOutcome::Forward), "the chain answered locally");
            let reply = ResponseExchange {
                head: http::Response::new(()).into_parts().0,
                context: exchange.context,
                connection: exchange.connection,
            };
            chain
                .on_response(ran, reply, sluice::body::full(""), true)
                .await
                .expect("response phase")
        })
    });
    group.bench_function("request-copy-baseline", |b| b.iter(|| request.exchange()));
    group.finish();
}

/// `instance/create+init/*`: a new slot with its first configured instance.
fn instance(c: &mut Criterion, env: &Env) {
    let mut group = c.benchmark_group("instance");
    for name in ["header-rewrite", "auth"] {
        let (plugin, config) = env.filter(name);
        group.bench_function(BenchmarkId::new("create+init", name), |b| {
            b.to_async(&env.tokio).iter(move || env.new_slot(plugin, config))
        });
    }
    group.finish();
}

/// `crossing/*`: the fixed cost of a filter call, and what each host call
/// inside it adds.
fn crossing(c: &mut Criterion, env: &Env, request: &RequestTemplate) {
    let plugin = Arc::new(load_file(
        &env.wasm,
        "probe",
        sluice_test_support::test_filter("probe-filter"),
    ));
    let mut group = c.benchmark_group("crossing");
    for (call, setting) in [("context-get", "context_to_header"), ("set-header", "request_headers")] {
        for n in [0, 4, 16] {
            let map: serde_json::Map<String, serde_json::Value> = (0..n)
                .map(|i| (format!("x-probe-{i:02}"), "x-probe-value".into()))
                .collect();
            let config = serde_json::json!({ setting: map }).to_string();
            let slot = env.tokio.block_on(env.new_slot(&plugin, &config));
            env.call_once(&slot, request.exchange());
            group.bench_function(BenchmarkId::new(call, n), |b| {
                bench_call(b, &env.tokio, &slot, || request.exchange())
            });
        }
    }
    group.finish();
}

/// `marshalling/*`: how a call's cost grows with the request's headers.
fn marshalling(c: &mut Criterion, env: &Env) {
    let slot = env.slot("header-rewrite");
    let mut group = c.benchmark_group("marshalling");
    for count in [0, 11, 50] {
        let request = RequestTemplate::new(headers(count));
        env.call_once(&slot, request.exchange());
        group.bench_function(BenchmarkId::new("header-rewrite", count), |b| {
            bench_call(b, &env.tokio, &slot, || request.exchange())
        });
    }
    // Set last: the group's throughput applies to every benchmark after it.
    for count in [11, 50] {
        let map = headers(count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(BenchmarkId::new("lines", count), |b| {
            b.iter(|| sluice::wasm::fuzzing::header_lines(&map))
        });
    }
    group.finish();
}

fn main() {
    let env = Env::new();
    let mut c = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut browser = headers(BROWSER.len());
    browser.insert(AUTHORIZATION, HeaderValue::from_str(&env.bearer).expect("header value"));
    let request = RequestTemplate::new(browser);
    let slots = builtin(&mut c, &env, &request);
    chain(&mut c, &env, &request, slots);
    instance(&mut c, &env);
    crossing(&mut c, &env, &request);
    marshalling(&mut c, &env);
    c.final_summary();
}
