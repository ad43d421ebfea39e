//! Active health checks: every `interval`, an HTTP GET of the configured
//! path on every endpoint; `unhealthy_threshold` failures in a row take an
//! endpoint out of balancing, `healthy_threshold` passes in a row bring it
//! back. The checks run in one task per cluster, off the request path.

use super::balancer::EndpointSet;
use super::connector::Connector;
use super::endpoint::Endpoint;
use crate::config::UpstreamProtocol;
use crate::config::traffic::HealthCheck;
use crate::metrics::UpstreamMetrics;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Scheme, Uri};
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Bytes of a check's response body read so its connection can be reused.
const MAX_DRAIN: usize = 64 * 1024;

/// Record one check's result; `Some(healthy)` when the endpoint changed state.
pub fn record(endpoint: &Endpoint, policy: &HealthCheck, passed: bool) -> Option<bool> {
    if passed {
        endpoint.check_failures.store(0, Ordering::Relaxed);
        let passes = endpoint.check_passes.fetch_add(1, Ordering::Relaxed) + 1;
        if !endpoint.healthy() && passes >= policy.healthy_threshold {
            endpoint.set_healthy(true);
            return Some(true);
        }
    } else {
        endpoint.check_passes.store(0, Ordering::Relaxed);
        let failures = endpoint.check_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if endpoint.healthy() && failures >= policy.unhealthy_threshold {
            endpoint.set_healthy(false);
            return Some(false);
        }
    }
    None
}

/// Check every endpoint of `endpoints` every `policy.interval`, until the
/// task is aborted (the cluster dropped).
pub fn spawn(
    cluster: Arc<str>,
    endpoints: Arc<ArcSwap<EndpointSet>>,
    policy: HealthCheck,
    connector: Connector,
    protocol: UpstreamProtocol,
    scheme: Scheme,
    metrics: UpstreamMetrics,
) -> tokio::task::JoinHandle<()> {
    // Checks speak the cluster's protocol: an h2c-only endpoint would fail
    // every HTTP/1.1 check.
    let client: Client<Connector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(1)
        .http2_only(protocol == UpstreamProtocol::Http2)
        .build(connector);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(policy.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let set = endpoints.load_full();
            let mut checks = tokio::task::JoinSet::new();
            for endpoint in set.endpoints.iter().cloned() {
                let (client, policy, scheme) = (client.clone(), policy.clone(), scheme.clone());
                checks.spawn(async move {
                    let passed = check(&client, &endpoint, &policy, scheme).await;
                    (endpoint, passed)
                });
            }
            while let Some(Ok((endpoint, passed))) = checks.join_next().await {
                if let Some(healthy) = record(&endpoint, &policy, passed) {
                    let endpoint_name = endpoint.authority.as_str();
                    if healthy {
                        tracing::info!(%cluster, endpoint = endpoint_name, "endpoint passed its health checks");
                    } else {
                        tracing::warn!(%cluster, endpoint = endpoint_name, "endpoint failed its health checks");
                    }
                    metrics.health_transition(&cluster, healthy);
                }
            }
        }
    })
}

async fn check(
    client: &Client<Connector, Empty<Bytes>>,
    endpoint: &Endpoint,
    policy: &HealthCheck,
    scheme: Scheme,
) -> bool {
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(endpoint.authority.clone())
        .path_and_query(policy.path.as_str())
        .build();
    let Ok(uri) = uri else { return false };
    let request = Request::get(uri)
        .header(header::USER_AGENT, "sluice-health-check")
        .body(Empty::new());
    let Ok(request) = request else { return false };
    match tokio::time::timeout(policy.timeout, client.request(request)).await {
        Ok(Ok(response)) => {
            let passed = policy.passes(response.status().as_u16());
            // Read a short body to the end so the connection is reused.
            let mut body = response.into_body();
            let mut read = 0;
            while read < MAX_DRAIN
                && let Ok(Some(Ok(frame))) = tokio::time::timeout(policy.timeout, body.frame()).await
            {
                read += frame.data_ref().map_or(0, |d| d.len());
            }
            passed
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn thresholds_move_an_endpoint_out_and_back() {
        let policy = HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: vec![(200, 299)],
        };
        let ep = Endpoint::new("10.0.0.1:80".parse().unwrap());
        assert_eq!(record(&ep, &policy, false), None);
        assert_eq!(record(&ep, &policy, false), None);
        assert_eq!(record(&ep, &policy, true), None, "a pass breaks the run");
        assert_eq!(record(&ep, &policy, false), None);
        assert_eq!(record(&ep, &policy, false), None);
        assert_eq!(record(&ep, &policy, false), Some(false));
        assert!(!ep.healthy());
        assert_eq!(record(&ep, &policy, false), None);
        assert_eq!(record(&ep, &policy, true), None);
        assert_eq!(record(&ep, &policy, true), Some(true));
        assert!(ep.healthy());
        assert!(policy.passes(204) && !policy.passes(301));
    }
}
