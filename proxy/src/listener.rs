//! Listener: accepts TCP connections and serves HTTP/1.1 and HTTP/2 (h2c
//! with prior knowledge, detected from the connection preface) on each,
//! handing every request to the proxy with the generation current at the
//! time it arrived. On shutdown it stops accepting, closes the socket (new
//! connections are refused), asks every connection to finish gracefully
//! (HTTP/2 GOAWAY, HTTP/1.1 close after the in-flight response) and returns
//! once they have.

use crate::generation::Generation;
use crate::proxy::{self, Downstream};
use crate::telemetry::Telemetry;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The generation currently serving; swapped whole on reload.
pub type Current = Arc<ArcSwap<Generation>>;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve connections from `listener` until `stop` turns true, then drain:
/// returns when every connection has finished.
pub async fn serve(
    listener: TcpListener,
    current: Current,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let metrics = telemetry.metrics.clone();
        metrics.accepted_connections.inc();
        metrics.open_connections.inc();
        let current = current.clone();
        let builder = builder.clone();
        let telemetry = telemetry.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let downstream = Downstream { client, scheme: "http" };
            let service = service_fn(move |req| {
                let generation = current.load_full();
                let telemetry = telemetry.clone();
                async move { Ok::<_, Infallible>(proxy::handle(generation, req, downstream, &telemetry).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%client, error = %e, "connection ended with an error");
            }
            metrics.open_connections.dec();
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
