//! Admin listener, on its own address: liveness, readiness (unready while
//! draining), the effective configuration with secrets redacted, the loaded
//! plugins with their versions and last errors, every cluster's endpoints
//! with their health and ejections, the shared-state backend's state, and
//! metrics. Readiness does not depend on the shared-state backend: with
//! Redis down sluice still serves, and filters' failure policies apply.

use crate::body::{self, ProxyBody};
use crate::listener::Current;
use crate::metrics::Metrics;
use crate::wasm::PluginSource;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub current: Current,
    pub metrics: Arc<Metrics>,
    pub draining: Arc<AtomicBool>,
    pub shared_state: Arc<crate::shared_state::SharedState>,
}

/// Serve the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, state: AdminState) {
    loop {
        let (stream, _) = crate::accept::next_connection(&listener).await;
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, &req)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(state: &AdminState, req: &Request<Incoming>) -> Response<ProxyBody> {
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "text/plain", "live\n".into()),
        // A generation exists only once config and every plugin loaded.
        "/ready" if state.draining.load(Ordering::SeqCst) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n".into())
        }
        "/ready" => text(StatusCode::OK, "text/plain", "ready\n".into()),
        "/config" => text(
            StatusCode::OK,
            "application/json",
            crate::config::redacted_json(&state.current.load().config).to_string(),
        ),
        "/plugins" => text(StatusCode::OK, "application/json", plugins_json(state)),
        "/clusters" => text(StatusCode::OK, "application/json", clusters_json(state)),
        "/shared-state" => text(
            StatusCode::OK,
            "application/json",
            state.shared_state.status().to_string(),
        ),
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.encode(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Every plugin: name, hash, source, when and in which generation this
/// version was loaded, and the last error (a failed update or a removed file).
fn plugins_json(state: &AdminState) -> String {
    let generation = state.current.load();
    let plugins = &generation.plugins;
    let mut list: Vec<serde_json::Value> = plugins
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": &*p.name,
                "hash": p.hash,
                "source": match &p.source { PluginSource::Builtin => "built-in".to_string(), PluginSource::File(f) => f.display().to_string() },
                "size": p.size,
                "cached": p.cached,
                "load_ms": p.load_time.as_secs_f64() * 1e3,
                "loaded_at": unix_secs(p.loaded_at),
                "generation": p.generation,
                "last_error": plugins.errors.get(&*p.name).map(|e| e.message.clone()),
                "documents": documents(&generation, &p.name),
            })
        })
        .collect();
    for (name, e) in plugins.errors.iter().filter(|(name, _)| plugins.get(name).is_none()) {
        list.push(serde_json::json!({
            "name": name,
            "hash": null,
            "source": e.path.display().to_string(),
            "generation": null,
            "last_error": e.message,
        }));
    }
    serde_json::json!({ "generation": generation.id, "plugins": list }).to_string()
}

/// The remote documents the slots of `plugin` subscribed to, with the
/// routes using each: availability, version, last error (never content).
fn documents(generation: &crate::generation::Generation, plugin: &str) -> Vec<serde_json::Value> {
    let mut seen: Vec<(&std::sync::Arc<crate::outbound::documents::Document>, Vec<&str>)> = Vec::new();
    for route in &generation.routes {
        for slot in route.chain.slots.iter().filter(|s| &*s.plugin.name == plugin) {
            for doc in slot.documents() {
                match seen.iter_mut().find(|(d, _)| std::sync::Arc::ptr_eq(d, doc)) {
                    Some((_, routes)) => routes.push(&route.name),
                    None => seen.push((doc, vec![&route.name])),
                }
            }
        }
    }
    seen.into_iter()
        .map(|(doc, routes)| {
            let mut json = doc.admin_json();
            json["routes"] = serde_json::json!(routes);
            json
        })
        .collect()
}

/// Every cluster of the serving generation: balancer, endpoints (health,
/// ejection, load), DNS names and circuit-breaker occupancy.
fn clusters_json(state: &AdminState) -> String {
    let generation = state.current.load();
    let clusters: Vec<_> = generation.upstreams.iter().map(|c| c.admin_json()).collect();
    serde_json::json!({ "generation": generation.id, "clusters": clusters }).to_string()
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    resp
}
