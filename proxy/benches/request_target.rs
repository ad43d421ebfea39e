//! What putting a request's target in normal form costs on the request
//! path: `cargo bench -p sluice --bench request_target`. `target/*` runs
//! `target::authority` and `target::normalize_path` as the proxy does for
//! every request: on an already-normal target (the common case, borrowed
//! through), and on one with dot segments, escapes and a trailing-dot host
//! (rebuilt).

mod sampling;

use criterion::{BatchSize, Criterion};
use sluice::normalize::PathPolicy;
use sluice::target;

fn parts(uri: &str, host: &str) -> http::request::Parts {
    http::Request::get(uri)
        .header("host", host)
        .header("user-agent", "bench")
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|_| http::Request::new(()).into_parts().0)
}

fn request_target(c: &mut Criterion) {
    let mut group = c.benchmark_group("target");
    for (name, uri, host) in [
        ("normal", "/api/orders/12345?limit=10", "api.example.com"),
        (
            "rewritten",
            "/hello/../api/%6frders//12345/.?limit=10",
            "api.example.com.:8080",
        ),
    ] {
        let template = parts(uri, host);
        group.bench_function(name, |b| {
            b.iter_batched(
                || template.clone(),
                |mut p| {
                    let host = target::authority(&p).expect("valid host");
                    target::normalize_path(&mut p.uri, PathPolicy::default()).expect("valid path");
                    (host, p)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion::criterion_group! {
    name = benches;
    config = sampling::config();
    targets = request_target
}
criterion::criterion_main!(benches);
