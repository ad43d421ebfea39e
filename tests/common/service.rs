//! A small scriptable HTTP/1.1 service for tests: an authorization service,
//! a JWKS endpoint. Dropping it closes its listener and its connections. Each request is answered by an async handler; every
//! request seen is recorded. It can start on a listener bound earlier, so
//! a test can reserve a port, leave it closed (the service "down"), and
//! bring the service up later on the same port.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// What a handler gets: the request head and its whole body.
pub type Seen = (http::request::Parts, Bytes);
type Reply = Pin<Box<dyn Future<Output = http::Response<Full<Bytes>>> + Send>>;
type Handler = Arc<dyn Fn(Seen) -> Reply + Send + Sync>;

/// A running service; stops when dropped.
pub struct Service {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port on loopback, free now (nothing listens on it until a service
/// starts there).
pub fn reserve_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A response with `status`, `body` and extra headers.
pub fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(body.into()));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
    for (name, value) in headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            http::HeaderValue::from_str(value).expect("value"),
        );
    }
    response
}

impl Service {
    /// Serve on `addr` (for example one from [`reserve_port`]) with
    /// `handler`.
    pub async fn start<F, Fut>(addr: SocketAddr, handler: F) -> Service
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind service");
        let addr = listener.local_addr().expect("addr");
        let handler: Handler = Arc::new(move |seen| Box::pin(handler(seen)));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            // Dropped with this task: stopping the service closes its
            // connections too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let (handler, record) = (handler.clone(), record.clone());
                connections.spawn(async move {
                    let service = service_fn(move |request: http::Request<Incoming>| {
                        let (handler, record) = (handler.clone(), record.clone());
                        async move {
                            let (head, body) = request.into_parts();
                            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            record.lock().unwrap().push((head.clone(), body.clone()));
                            Ok::<_, std::convert::Infallible>(handler((head, body)).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Service { addr, seen, task }
    }

    /// How many requests it has answered (or is answering).
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}
