//! The HTTP/2 connection an endpoint of an HTTP/2 cluster shares among its
//! requests.
//!
//! One multiplexed connection per endpoint, opened on first use. Requests
//! that find none open wait for one dial instead of each dialing; if that
//! dial fails, they fail with it (as Envoy fails the requests pending on a
//! connection that could not be opened) rather than each dialing in turn,
//! one connect timeout after another. When the connection closes (GOAWAY,
//! an error, the upstream's idle close) the next request opens another; a
//! request the closing connection handed back unsent goes on the new one.
//! Once no request has started on it for the cluster's `idle_timeout`,
//! sluice lets it go: a sweeper task, running only while the endpoint has a
//! connection, drops sluice's handle, and the connection closes when its
//! last stream ends. Like the HTTP/1.1 pool ([`super::pool`]), it lives on
//! its endpoint, so a request finds it with no look-up and no hashing.

use super::endpoint::Endpoint;
use super::pool::{self, ConnectionSettings, SendError};
use crate::body::RequestBody;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Sender = SendRequest<RequestBody>;

/// Keep-alive pings on an HTTP/2 upstream connection, as hyper-util's
/// client was configured before.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// The shared HTTP/2 connection of one endpoint.
#[derive(Default)]
pub struct Http2Connection {
    current: Mutex<Current>,
    /// One dial at a time; requests that find no connection wait here.
    dial: tokio::sync::Mutex<()>,
}

impl Http2Connection {
    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Http2Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Connection").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Current {
    /// sluice's handle on the open connection, and when a request last
    /// started on it.
    open: Option<(Sender, Instant)>,
    /// A sweeper task is running.
    sweeping: bool,
    /// Dials that failed so far: a request that waited for a dial sees
    /// whether it failed.
    failed_dials: u64,
}

impl Current {
    /// A handle on the open connection, marked used at `now`.
    fn take_handle(&mut self, now: Instant) -> Option<Sender> {
        match &mut self.open {
            Some((sender, used)) if !sender.is_closed() => {
                *used = now;
                Some(sender.clone())
            }
            _ => {
                self.open = None;
                None
            }
        }
    }
}

/// When the connection last used at `used` has been idle for `timeout`:
/// `None` if it has by `now`, else the time it will have.
fn idle_until(used: Instant, now: Instant, timeout: Duration) -> Option<Instant> {
    let at = used + timeout;
    (now < at).then_some(at)
}

/// Send `req` (its URI absolute, for the `:scheme` and `:authority`) to
/// `endpoint` over its shared HTTP/2 connection, opening one if none is
/// open.
pub async fn send(
    endpoint: &Arc<Endpoint>,
    settings: ConnectionSettings<'_>,
    mut req: Request<RequestBody>,
) -> Result<Response<Incoming>, SendError> {
    let mut resent = false;
    loop {
        let handle = endpoint.h2.lock().take_handle(Instant::now());
        let (mut sender, reused) = match handle {
            Some(sender) => (sender, true),
            None => dial(endpoint, settings).await?,
        };
        match sender.try_send_request(req).await {
            Ok(response) => return Ok(response),
            // A connection in use before was closing and did not take the
            // request: it is closed now (the next look finds it so), and
            // the request goes once more, on another.
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused && !resent => {
                    resent = true;
                    req = unsent;
                }
                _ => return Err(SendError::Exchange(e.into_error())),
            },
        }
    }
}

/// The endpoint's connection, dialed here unless another request did it
/// while this one waited its turn (the flag: whether it was there
/// already), or the error if the dial it waited for failed.
async fn dial(endpoint: &Arc<Endpoint>, settings: ConnectionSettings<'_>) -> Result<(Sender, bool), SendError> {
    let shared = &endpoint.h2;
    let failed_before = shared.lock().failed_dials;
    let _turn = shared.dial.lock().await;
    {
        let mut current = shared.lock();
        if let Some(sender) = current.take_handle(Instant::now()) {
            return Ok((sender, true));
        }
        if current.failed_dials != failed_before {
            return Err(SendError::Connect(
                "the connection this request waited for could not be opened".into(),
            ));
        }
    }
    let sender = match connect(settings, endpoint).await {
        Ok(sender) => sender,
        Err(e) => {
            shared.lock().failed_dials += 1;
            return Err(e);
        }
    };
    let mut current = shared.lock();
    current.open = Some((sender.clone(), Instant::now()));
    if !current.sweeping
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        current.sweeping = true;
        runtime.spawn(pool::sweep(
            Arc::downgrade(endpoint),
            settings.idle_timeout,
            let_go_if_idle,
        ));
    }
    Ok((sender, false))
}

/// Let the endpoint's connection go once it has been idle for `timeout`,
/// or forget it once it has closed: when to look again, or `None` (the
/// sweeper stops) once it is gone.
fn let_go_if_idle(endpoint: &Endpoint, timeout: Duration) -> Option<Instant> {
    let mut current = endpoint.h2.lock();
    let wait = match &current.open {
        Some((sender, used)) if !sender.is_closed() => idle_until(*used, Instant::now(), timeout),
        _ => None,
    };
    if wait.is_none() {
        current.open = None;
        current.sweeping = false;
    }
    wait
}

/// A new HTTP/2 connection to the endpoint, driven by a task of its own.
async fn connect(settings: ConnectionSettings<'_>, endpoint: &Endpoint) -> Result<Sender, SendError> {
    let io = settings.dial(&endpoint.authority).await?;
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .adaptive_window(true)
        .handshake(io)
        .await
        .map_err(|e| SendError::Connect(Box::new(e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_a_timeout_after_its_last_request_started() {
        let used = Instant::now();
        let timeout = Duration::from_secs(90);
        assert_eq!(
            idle_until(used, used + Duration::from_secs(30), timeout),
            Some(used + timeout),
            "in use 30 s ago: check again at 90 s"
        );
        assert_eq!(idle_until(used, used + timeout, timeout), None, "idle for the timeout");
        assert_eq!(idle_until(used, used + Duration::from_secs(200), timeout), None);
    }
}
