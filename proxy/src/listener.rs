//! Listener: accepts TCP connections and serves HTTP/1.1 and HTTP/2 (h2c
//! with prior knowledge, detected from the connection preface) on each,
//! handing every request to the proxy with the generation current at the
//! time it arrived.

use crate::generation::Generation;
use crate::proxy::{self, Downstream};
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The generation currently serving; swapped whole on reload.
pub type Current = Arc<ArcSwap<Generation>>;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve connections from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, current: Current) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let builder = Arc::new(builder);
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let current = current.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let downstream = Downstream { client, scheme: "http" };
            let service = service_fn(move |req| {
                let generation = current.load_full();
                async move { Ok::<_, Infallible>(proxy::handle(generation, req, downstream).await) }
            });
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%client, error = %e, "connection ended with an error");
            }
        });
    }
}
