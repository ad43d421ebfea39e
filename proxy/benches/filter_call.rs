//! Host-side cost of running filters, on the release build:
//! `cargo bench -p sluice --bench filter_call`.
//!
//! Measures a request-phase and a response-phase call of the built-in
//! header-rewrite filter on a pooled instance (11 request headers, like a
//! browser request), the whole one-filter chain (both phases), and creating
//! a fresh configured instance. Each figure is the median of 7 runs of
//! 20,000 iterations, with the range.

use sluice::filter_chain::FilterChain;
use sluice::wasm::Phase;
use sluice::wasm::{Exchange, FilterSlot, Plugin, PluginSource, RequestHead, WasmRuntime};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

const ITERATIONS: u32 = 20_000;
const RUNS: usize = 7;

fn request() -> RequestHead {
    let mut req = http::Request::get("/api/orders?limit=10");
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
    let clusters: Arc<HashSet<Arc<str>>> = Arc::new(["app".into()].into_iter().collect());
    let slot = Arc::new(
        FilterSlot::new(runtime.clone(), plugin.clone(), config.into(), clusters.clone())
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
        FilterSlot::new(runtime.clone(), plugin.clone(), config.into(), clusters.clone())
            .await
            .expect("slot")
    );
}
