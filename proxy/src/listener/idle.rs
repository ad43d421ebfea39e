//! The downstream idle timeout: a connection with no request in flight for
//! `[limits] idle_timeout` is closed (HTTP/1.1) or sent GOAWAY (HTTP/2).
//! Requests count as in flight until their response body ends, so a long
//! download or a slow upload is never idle. One timer per connection, which
//! wakes about once per timeout period. It also tells the HTTP/1.1 server
//! when a connection may be parked ([`Activity::parkable`]).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Requests in flight on one connection, and since when there were none.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    active: AtomicUsize,
    /// Milliseconds after `start` when the last request ended.
    idle_since_ms: AtomicU64,
    /// Requests begun on the connection.
    begun: AtomicU64,
    /// Whether the last request begun came with a body.
    last_had_body: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            last_had_body: AtomicBool::new(false),
        })
    }

    /// A request started (`has_body`: its body was not known to be empty
    /// when it arrived); it ends when the guard drops.
    pub fn begin(self: &Arc<Self>, has_body: bool) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.last_had_body.store(has_body, Ordering::Relaxed);
        self.begun.fetch_add(1, Ordering::Relaxed);
        Active(self.clone())
    }

    /// Requests begun so far.
    pub fn begun(&self) -> u64 {
        self.begun.load(Ordering::Relaxed)
    }

    /// Whether an HTTP/1.1 connection that has begun a request since
    /// `begun` is between requests in a way its server can be taken down
    /// and rebuilt: nothing in flight, and the last request had no body (so
    /// none is left to read; after one with a body, the connection waits
    /// for the next request without one).
    pub fn parkable(&self, begun: u64) -> bool {
        self.begun() > begun && self.active.load(Ordering::Acquire) == 0 && !self.last_had_body.load(Ordering::Relaxed)
    }

    /// How long the connection has had nothing in flight, or `None`.
    fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.start.elapsed().saturating_sub(since))
    }

    /// Resolves once the connection has been idle for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let wait = match self.idle_for() {
                Some(idle) if idle >= timeout => return,
                Some(idle) => timeout - idle,
                None => timeout,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request in flight.
#[derive(Debug)]
pub struct Active(Arc<Activity>);

impl Drop for Active {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.start.elapsed().as_millis() as u64;
        a.idle_since_ms.store(now, Ordering::Release);
        a.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it ends.
#[derive(Debug)]
pub struct ActiveBody<B> {
    inner: B,
    _active: Active,
}

impl<B> ActiveBody<B> {
    pub fn new(inner: B, active: Active) -> Self {
        ActiveBody { inner, _active: active }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for ActiveBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_counts_time_with_nothing_in_flight() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let request = activity.begin(false);
        // A request in flight for longer than the timeout keeps it open.
        let idle = activity.idle(timeout);
        tokio::pin!(idle);
        assert!(tokio::time::timeout(Duration::from_secs(25), &mut idle).await.is_err());
        drop(request);
        let ended = Instant::now();
        idle.await;
        assert_eq!(ended.elapsed(), timeout, "idle from the end of the last request");
    }

    #[test]
    fn parkable_after_a_request_without_a_body_has_ended() {
        let activity = Activity::new();
        assert!(!activity.parkable(0), "no request yet");
        let get = activity.begin(false);
        assert!(!activity.parkable(0), "in flight");
        drop(get);
        assert!(activity.parkable(0));
        assert!(!activity.parkable(1), "no request since the last park");
        drop(activity.begin(true));
        assert!(!activity.parkable(1), "a body may be left to read");
        drop(activity.begin(false));
        assert!(activity.parkable(1));
    }
}
