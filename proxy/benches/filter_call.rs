//! Host-side cost of running filters, on the release build:
//! `cargo bench -p sluice --bench filter_call`.
//!
//! Measures a request-phase and a response-phase call of the built-in
//! header-rewrite filter on a pooled instance (11 request headers, like a
//! browser request), the whole one-filter chain (both phases), and creating
//! a fresh configured instance. Each figure is the median of 7 runs of
//! 20,000 iterations, with the range.

use sluice::config::SandboxConfig;
use sluice::filter_chain::FilterChain;
use sluice::wasm::Phase;
use sluice::wasm::{Exchange, FilterSlot, Plugin, PluginSource, RequestHead, WasmRuntime};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

const ITERATIONS: u32 = 20_000;
const RUNS: usize = 7;

fn request() -> RequestHead {
    request_with(&[])
}

fn request_with(extra: &[(&str, &str)]) -> RequestHead {
    let mut req = http::Request::get("/api/orders?limit=10");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    for (k, v) in [
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
    ] {
        req = req.header(k, v);
    }
    let (parts, ()) = req.body(()).expect("valid request").into_parts();
    RequestHead {
        parts,
        client: "10.1.2.3:40000".parse().expect("addr"),
        scheme: "http",
        cluster: "app".into(),
        route: "bench".into(),
    }
}

fn report(name: &str, mut per_op_ns: Vec<f64>) {
    per_op_ns.sort_by(f64::total_cmp);
    println!(
        "{name:<44} median {:8.2} µs   min {:8.2}   max {:8.2}",
        per_op_ns[RUNS / 2] / 1e3,
        per_op_ns[0] / 1e3,
        per_op_ns[RUNS - 1] / 1e3
    );
}

/// Run `$body` `$n` times per run, `RUNS` runs, and report per-op time.
macro_rules! measure {
    ($name:expr, $n:expr, $body:expr) => {{
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            for _ in 0..$n {
                $body;
            }
            runs.push(started.elapsed().as_nanos() as f64 / f64::from($n as u32));
        }
        report($name, runs);
    }};
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runtime = WasmRuntime::new(None).expect("engine");
    let bytes = sluice::builtin::get("header-rewrite").expect("built-in header-rewrite");
    let plugin = Arc::new(Plugin::load(&runtime, "header-rewrite", PluginSource::Builtin, bytes, 1).expect("load"));
    let config = r#"{"request":{"set":{"x-gateway":"sluice"},"remove":["x-internal"]},"response":{"set":{"x-served-by":"sluice"}}}"#;
    let clusters: Arc<HashSet<Arc<str>>> = Arc::new(["app".into(), "canary".into()].into_iter().collect());
    let slot = Arc::new(
        FilterSlot::new(
            runtime.clone(),
            plugin.clone(),
            config.into(),
            clusters.clone(),
            SandboxConfig::default(),
        )
        .await
        .expect("slot"),
    );

    let mut exchange = Exchange {
        request: Some(request()),
        ..Exchange::default()
    };
    measure!(
        "request phase, pooled instance",
        ITERATIONS,
        slot.call(Phase::RequestHeaders, &mut exchange).await.expect("call")
    );

    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(())
        .expect("response");
    let mut exchange = Exchange {
        response: Some(response.into_parts().0),
        ..Exchange::default()
    };
    measure!(
        "response phase, pooled instance",
        ITERATIONS,
        slot.call(Phase::ResponseHeaders, &mut exchange).await.expect("call")
    );

    let chain = FilterChain {
        slots: vec![slot.clone()],
    };
    measure!("one-filter chain, both phases (+ request copy)", ITERATIONS, {
        let mut exchange = Exchange {
            request: Some(request()),
            ..Exchange::default()
        };
        chain.on_request(&mut exchange).await.expect("request phase");
        exchange.request = None;
        exchange.response = Some(http::Response::new(()).into_parts().0);
        chain
            .on_response(1, &mut exchange, sluice::body::full(""))
            .await
            .expect("response phase");
    });
    measure!(
        "  baseline: building the request copy alone",
        ITERATIONS,
        std::hint::black_box(request())
    );
    measure!(
        "fresh instance + init (config parse)",
        500,
        FilterSlot::new(
            runtime.clone(),
            plugin.clone(),
            config.into(),
            clusters.clone(),
            SandboxConfig::default()
        )
        .await
        .expect("slot")
    );

    builtin_filters(&runtime, &clusters).await;
}

const SECRET: &str = "bench-secret-bench-secret-0123456789";

/// One request phase (and response phase where the filter has one) of each
/// built-in filter with a realistic configuration, then the four in a chain,
/// on a request carrying a JWT (verified once, then served from the cache).
async fn builtin_filters(runtime: &Arc<WasmRuntime>, clusters: &Arc<HashSet<Arc<str>>>) {
    let claims = serde_json::json!({"sub": "bench-user", "iss": "bench", "aud": "api", "exp": 4_000_000_000u64});
    let header = jsonwebtoken::Header {
        kid: Some("bench".into()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
    };
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token");
    let bearer = format!("Bearer {token}");
    let auth = format!(
        r#"{{"jwt":{{"issuers":["bench"],"audiences":["api"],"keys":[{{"kid":"bench","alg":"HS256","secret":"{SECRET}"}}]}}}}"#
    );
    let filters = [
        ("auth", auth.as_str()),
        (
            "rate-limit",
            r#"{"key":["client_ip"],"limits":[{"requests":1000000000,"per":"1s"}]}"#,
        ),
        (
            "header-rewrite",
            r#"{"request":{"set":{"x-caller":"${context.auth.subject}"},"remove":["x-internal"]},"response":{"set":{"x-served-by":"sluice"}}}"#,
        ),
        (
            "traffic-split",
            r#"{"clusters":[{"cluster":"app","weight":90},{"cluster":"canary","weight":10}]}"#,
        ),
    ];
    let mut slots = Vec::new();
    for (name, config) in filters {
        let bytes = sluice::builtin::get(name).expect("built-in");
        let plugin = Arc::new(Plugin::load(runtime, name, PluginSource::Builtin, bytes, 1).expect("load"));
        let slot = Arc::new(
            FilterSlot::new(
                runtime.clone(),
                plugin,
                config.into(),
                clusters.clone(),
                SandboxConfig::default(),
            )
            .await
            .expect("slot"),
        );
        let mut exchange = Exchange {
            request: Some(request_with(&[("authorization", &bearer)])),
            ..Exchange::default()
        };
        measure!(
            &format!("{name}: request phase"),
            ITERATIONS,
            slot.call(Phase::RequestHeaders, &mut exchange).await.expect("call")
        );
        slots.push(slot);
    }
    let chain = FilterChain { slots };
    measure!("four built-ins, both phases (+ request copy)", ITERATIONS, {
        let mut exchange = Exchange {
            request: Some(request_with(&[("authorization", &bearer)])),
            ..Exchange::default()
        };
        let outcome = chain.on_request(&mut exchange).await.expect("request phase");
        assert!(matches!(outcome, sluice::filter_chain::RequestOutcome::Forward));
        exchange.request = None;
        exchange.response = Some(http::Response::new(()).into_parts().0);
        chain
            .on_response(4, &mut exchange, sluice::body::full(""))
            .await
            .expect("response phase");
    });
}
