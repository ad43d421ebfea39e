//! Admin listener: liveness, readiness and the loaded plugins, on its own
//! address (loopback by default in the examples).

use crate::body::{self, ProxyBody};
use crate::listener::Current;
use crate::wasm::PluginSource;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::time::UNIX_EPOCH;
use tokio::net::TcpListener;

/// Serve the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, current: Current) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let current = current.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let current = current.clone();
                async move { Ok::<_, Infallible>(respond(&current, &req)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn respond(current: &Current, req: &Request<Incoming>) -> Response<ProxyBody> {
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n"),
        // A generation exists only once config and every plugin loaded.
        "/ready" => text(StatusCode::OK, "ready\n"),
        "/plugins" => {
            let generation = current.load();
            let mut list: Vec<serde_json::Value> = generation
                .plugins
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": &*p.name,
                        "hash": p.hash,
                        "source": match &p.source { PluginSource::Builtin => "built-in".to_string(), PluginSource::File(f) => f.display().to_string() },
                        "size": p.size,
                        "cached": p.cached,
                        "load_ms": p.load_time.as_secs_f64() * 1e3,
                        "loaded_at": p.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                        "generation": generation.id,
                        "last_error": null,
                    })
                })
                .collect();
            for (name, (path, error)) in &generation.plugins.failed {
                list.push(serde_json::json!({ "name": name, "source": path.display().to_string(), "last_error": error }));
            }
            let mut resp = Response::new(body::full(serde_json::Value::Array(list).to_string()));
            resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp
}
