//! What traffic-control policies add to a request that does not fail:
//! `cargo bench -p sluice --bench traffic_policies`. `pick/*` is one
//! endpoint choice over three endpoints with the attempt's in-flight count
//! (round robin; P2C over peak EWMA, with its latency observation);
//! `retry/budget_deposit` is the retry budget's count of a request on a
//! route with a retry policy, and `retry/head_copy` the copy of a typical
//! request head such a route makes for each try. bench/policies.py measures the
//! same end to end; this isolates it from the noise of a whole request.

mod sampling;

use criterion::Criterion;
use sluice::config::LbPolicy;
use sluice::upstream::balancer::{Balancer, EndpointSet, Pick};
use sluice::upstream::budget::RetryBudget;
use sluice::upstream::clock::SystemClock;
use sluice::upstream::endpoint::Endpoint;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const DECAY: Duration = Duration::from_secs(10);

fn endpoints(policy: &LbPolicy) -> EndpointSet {
    let all = (0..3)
        .filter_map(|i| format!("10.0.0.{i}:8080").parse().ok())
        .map(|a| Arc::new(Endpoint::new(a)))
        .collect();
    EndpointSet::new(all, policy)
}

fn pick(c: &mut Criterion) {
    let clock = SystemClock::shared();
    let mut group = c.benchmark_group("pick");
    for policy in [LbPolicy::RoundRobin, LbPolicy::PeakEwma] {
        let set = endpoints(&policy);
        let balancer = Balancer::new(policy.clone(), DECAY, 50, false);
        let ewma = policy == LbPolicy::PeakEwma;
        group.bench_function(policy.name(), |b| {
            b.iter(|| {
                let now = clock.now();
                let pick = Pick {
                    now,
                    hash: None,
                    tried: &[],
                };
                let endpoint = balancer.pick(&set, &pick).expect("an endpoint");
                let in_flight = endpoint.start();
                if ewma {
                    endpoint.observe_rtt(clock.now(), Duration::from_micros(300), DECAY);
                }
                black_box(in_flight);
            })
        });
    }
    group.finish();
}

fn budget_deposit(c: &mut Criterion) {
    let budget = RetryBudget::new(sluice::config::traffic::RetryBudget::default(), SystemClock::shared());
    c.bench_function("retry/budget_deposit", |b| b.iter(|| budget.deposit()));
}

fn head_copy(c: &mut Criterion) {
    let request = http::Request::get("/api/orders/12345?limit=10")
        .header("host", "api.example.com")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json")
        .header("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x")
        .header("x-request-id", "6b0e3a2c-1f4d-4c55-9d0a-2f1c2b3a4d5e")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("via", "1.1 sluice")
        .body(())
        .expect("request");
    let (parts, ()) = request.into_parts();
    c.bench_function("retry/head_copy", |b| {
        b.iter(|| {
            let mut copy = http::Request::new(());
            *copy.method_mut() = parts.method.clone();
            *copy.uri_mut() = parts.uri.clone();
            *copy.headers_mut() = parts.headers.clone();
            black_box(copy)
        })
    });
}

criterion::criterion_group! {
    name = benches;
    config = sampling::config();
    targets = pick, budget_deposit, head_copy
}
criterion::criterion_main!(benches);
