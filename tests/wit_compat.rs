//! The WIT compatibility promise: a filter built against
//! `sluice:filter@0.1.0` keeps loading and working as the contract grows.
//!
//! `tests/fixtures/filter-0.1.0.wasm` is a committed component, built once
//! with plain `wit-bindgen` (no SDK) against a frozen copy of the 0.1.0 WIT;
//! its source and the exact build command are in
//! `tests/fixtures/filter-0.1.0/`. It is never rebuilt by the build, so this
//! test must keep passing, unchanged, in every later 0.1.x host. If it fails,
//! the change broke every filter already deployed: see "Compatibility" in
//! `wit/filter.wit` for how the contract may grow.

mod common;

use common::*;
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/filter-0.1.0.wasm");

#[tokio::test]
async fn wit_0_1_0_fixture_still_loads() {
    let up = Upstream::start("app").await;
    let body = format!(
        r#"[[clusters]]
name = "app"
endpoints = ["{}"]

[[routes]]
name = "compat"
cluster = "app"

[[routes.filters]]
plugin = "fixture"
"#,
        up.addr
    );
    let work = Workdir::new(&body, &[]);
    std::fs::copy(FIXTURE, work.dir.path().join("plugins/fixture.wasm")).expect("copy the 0.1.0 fixture");
    let proxy = start_workdir(work).await;

    for (n, client) in [h1(), h2()].into_iter().enumerate() {
        let resp = client.get(proxy.url("/compat?v=1")).send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        // Response phase: a response header, and the request context read back.
        assert_eq!(headers["x-fixture-0-1-0"], "response");
        assert_eq!(headers["x-fixture-context"], "/compat?v=1");
        // Request phase, as the upstream saw it: headers set, the path read,
        // and a shared-state counter shared by every instance of the plugin.
        let echo: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(echo["path"], "/compat?v=1");
        assert_eq!(echoed(&echo, "x-fixture-0-1-0"), ["request"]);
        assert_eq!(echoed(&echo, "x-fixture-path"), ["/compat?v=1"]);
        assert_eq!(echoed(&echo, "x-fixture-count"), [(n + 1).to_string()]);
    }
}
