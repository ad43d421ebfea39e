//! HTTP/1.1 connections kept open to one endpoint between requests.
//!
//! A request takes the connection returned last that is still open, or
//! dials a new one; the connection comes back when its response body has
//! been read to the end (a body dropped early closes it). A connection
//! idle for the cluster's `idle_timeout` is closed by a sweeper task that
//! runs only while some connection is idle. The pool lives on its
//! endpoint, so finding it takes no lookup, and giving a connection back
//! takes no task: the per-request costs of hyper-util's pooled client
//! (hashing its pool key, a task per response to wait for the connection)
//! are gone. HTTP/2 clusters share one connection per endpoint instead
//! ([`super::h2_connection`]).

use super::connector::{Conn, Connector};
use super::endpoint::Endpoint;
use crate::body::RequestBody;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

type Sender = SendRequest<RequestBody>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The idle HTTP/1.1 connections of one endpoint.
#[derive(Default)]
pub struct Http1Pool {
    idle: Mutex<IdleList<Sender>>,
    /// A sweeper task is running. Read and written under `idle`'s lock.
    sweeping: AtomicBool,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool").finish_non_exhaustive()
    }
}

/// What can sit in an idle list: something that may close while it waits.
trait Reusable {
    fn is_open(&self) -> bool;
}

impl Reusable for Sender {
    fn is_open(&self) -> bool {
        !self.is_closed()
    }
}

/// Idle connections, oldest first, each with the time it came back.
struct IdleList<S> {
    entries: VecDeque<(S, Instant)>,
}

impl<S> Default for IdleList<S> {
    fn default() -> Self {
        IdleList {
            entries: VecDeque::new(),
        }
    }
}

impl<S: Reusable> IdleList<S> {
    fn put(&mut self, s: S, now: Instant) {
        self.entries.push_back((s, now));
    }

    /// The newest entry still open and idle for less than `timeout`. The
    /// closed and expired ones it passes are dropped.
    fn take(&mut self, now: Instant, timeout: Duration) -> Option<S> {
        while let Some((s, since)) = self.entries.pop_back() {
            if s.is_open() && now.saturating_duration_since(since) < timeout {
                return Some(s);
            }
        }
        None
    }

    /// Drop what has closed or been idle for `timeout`; when the oldest
    /// left will have, if any is left.
    fn sweep(&mut self, now: Instant, timeout: Duration) -> Option<Instant> {
        self.entries
            .retain(|(s, since)| s.is_open() && now.saturating_duration_since(*since) < timeout);
        self.entries.front().map(|(_, since)| *since + timeout)
    }
}

/// A connection lent to one request. [`Lease::release`] gives it back for
/// the next; dropping it closes the connection.
pub struct Lease {
    sender: Sender,
    endpoint: Arc<Endpoint>,
    idle_timeout: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("endpoint", &self.endpoint.authority)
            .finish()
    }
}

impl Lease {
    /// Put the connection back in its endpoint's pool (the response has
    /// been read whole), and start a sweeper if none runs. Outside a
    /// runtime, where no sweeper could run, the connection is closed.
    pub fn release(self) {
        let pool = &self.endpoint.h1;
        let Ok(mut idle) = pool.idle.lock() else {
            return;
        };
        if !pool.sweeping.load(Ordering::Relaxed) {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            runtime.spawn(sweep(Arc::downgrade(&self.endpoint), self.idle_timeout, close_idle));
            pool.sweeping.store(true, Ordering::Relaxed);
        }
        idle.put(self.sender, Instant::now());
    }
}

/// The sweeper task of an endpoint's connections, either protocol's: runs
/// `step` on the endpoint `timeout` from now, then again when `step` asks
/// (`Some(at)`), and ends when `step` finds nothing left to sweep (`None`)
/// or the endpoint is gone. It holds the endpoint weakly.
pub(super) async fn sweep(
    endpoint: Weak<Endpoint>,
    timeout: Duration,
    step: fn(&Endpoint, Duration) -> Option<Instant>,
) {
    let mut next = Instant::now() + timeout;
    loop {
        tokio::time::sleep_until(next.into()).await;
        let Some(endpoint) = endpoint.upgrade() else {
            return;
        };
        match step(&endpoint, timeout) {
            Some(at) => next = at,
            None => return,
        }
    }
}

/// Close the endpoint's connections that have been idle for `timeout`:
/// when to look again, or `None` (the sweeper stops) once none is idle.
fn close_idle(endpoint: &Endpoint, timeout: Duration) -> Option<Instant> {
    let pool = &endpoint.h1;
    let mut idle = pool.idle.lock().ok()?;
    let next = idle.sweep(Instant::now(), timeout);
    if next.is_none() {
        // Under the idle list's lock, as `Lease::release` starts it.
        pool.sweeping.store(false, Ordering::Relaxed);
    }
    next
}

/// Why a request could not be sent on the pool's connections.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened (dial, TLS, `max_connections`).
    #[error("connecting to the upstream failed")]
    Connect(#[source] BoxError),
    /// The exchange failed on an open connection.
    #[error(transparent)]
    Exchange(#[from] hyper::Error),
}

/// How an attempt opens and keeps an endpoint's connections, whichever
/// the protocol: the connector for its connect timeout, and the cluster's
/// scheme and `idle_timeout`.
#[derive(Clone, Copy)]
pub struct ConnectionSettings<'a> {
    pub connector: &'a Connector,
    pub scheme: &'a Scheme,
    pub idle_timeout: Duration,
}

impl ConnectionSettings<'_> {
    /// A new TCP (or TLS) connection to `authority`, for either protocol.
    pub(super) async fn dial(&self, authority: &Authority) -> Result<Conn, SendError> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| SendError::Connect(Box::new(e)))?;
        tower_service::Service::call(&mut self.connector.clone(), uri)
            .await
            .map_err(SendError::Connect)
    }
}

/// Send `req` to `endpoint` over HTTP/1.1, on an idle connection or a new
/// one. A request an idle connection closed before taking goes on another;
/// one the upstream may have seen is not sent again here (the retry policy
/// decides).
pub async fn send(
    endpoint: &Arc<Endpoint>,
    settings: ConnectionSettings<'_>,
    mut req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    let idle_timeout = settings.idle_timeout;
    origin_form(&mut req, &endpoint.authority);
    loop {
        let (mut sender, reused) = match take(&endpoint.h1, idle_timeout) {
            Some(sender) => (sender, true),
            None => (connect(settings, &endpoint.authority).await?, false),
        };
        // A connection given back has read its last response, but may not
        // yet have asked for the next request.
        if reused && !sender.is_ready() && sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(req).await {
            Ok(response) => {
                let lease = Lease {
                    sender,
                    endpoint: endpoint.clone(),
                    idle_timeout,
                };
                return Ok((response, lease));
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => req = unsent,
                _ => return Err(SendError::Exchange(e.into_error())),
            },
        }
    }
}

/// An idle connection of `pool`, if one is fit to serve.
fn take(pool: &Http1Pool, idle_timeout: Duration) -> Option<Sender> {
    pool.idle.lock().ok()?.take(Instant::now(), idle_timeout)
}

/// A new connection to `authority`, its dispatcher running as a task
/// (with upgrades, for WebSocket).
async fn connect(settings: ConnectionSettings<'_>, authority: &Authority) -> Result<Sender, SendError> {
    let io = settings.dial(authority).await?;
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| SendError::Connect(Box::new(e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended with an error");
        }
    });
    Ok(sender)
}

/// The request line's target as an origin server wants it (path and
/// query), and a `Host` naming the endpoint if a filter removed it.
fn origin_form(req: &mut Request<RequestBody>, authority: &Authority) {
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = None;
        parts.authority = None;
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    if !req.headers().contains_key(header::HOST)
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Conn(bool);

    impl Reusable for Conn {
        fn is_open(&self) -> bool {
            self.0
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(90);

    fn list(entries: &[(bool, u64)], start: Instant) -> IdleList<Conn> {
        let mut list = IdleList::default();
        for &(open, at) in entries {
            list.put(Conn(open), start + Duration::from_secs(at));
        }
        list
    }

    #[test]
    fn take_gives_the_newest_open_connection_and_drops_closed_ones_on_the_way() {
        let start = Instant::now();
        let mut idle = list(&[(true, 0), (true, 1), (false, 2)], start);
        let now = start + Duration::from_secs(3);
        let taken = idle.take(now, TIMEOUT).map(|c| c.0);
        assert_eq!(taken, Some(true));
        assert_eq!(idle.entries.len(), 1, "the closed one is gone and the oldest stays");
        assert_eq!(idle.entries[0].1, start);
    }

    #[test]
    fn take_passes_over_connections_idle_for_the_timeout() {
        let start = Instant::now();
        let mut idle = list(&[(true, 0), (true, 10)], start);
        assert!(
            idle.take(start + Duration::from_secs(100), TIMEOUT).is_none(),
            "both expired"
        );
        assert!(idle.entries.is_empty());
        let mut idle = list(&[(true, 0), (true, 10)], start);
        assert!(
            idle.take(start + Duration::from_secs(95), TIMEOUT).is_some(),
            "the newer is at 85 s"
        );
    }

    #[test]
    fn sweep_keeps_the_fresh_and_says_when_the_oldest_expires() {
        let start = Instant::now();
        let mut idle = list(&[(true, 0), (false, 20), (true, 30), (true, 40)], start);
        let next = idle.sweep(start + Duration::from_secs(95), TIMEOUT);
        assert_eq!(idle.entries.len(), 2, "expired and closed entries are dropped");
        assert_eq!(next, Some(start + Duration::from_secs(120)), "the one idle since 30 s");
        assert_eq!(idle.sweep(start + Duration::from_secs(130), TIMEOUT), None);
        assert!(idle.entries.is_empty());
    }
}
