//! Reading the admin listener from tests: a GET, and one Prometheus series.

use std::net::SocketAddr;

/// `GET http://{admin}{path}`: status and body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let resp = super::h1()
        .get(format!("http://{admin}{path}"))
        .send()
        .await
        .expect("admin request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("admin body"))
}

/// The value of the series written exactly as `series` (name and labels,
/// e.g. `sluice_upstream_retries_total{cluster="app",reason="status"}`).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}
