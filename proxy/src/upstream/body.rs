//! The upstream response body as the proxy streams it on: it holds the
//! request's places under the cluster's limits until it ends, ends with an
//! error at the route's `max_stream_duration`, sends data a body phase
//! read ahead first, and gives its HTTP/1.1 connection back to the pool
//! once read to the end.

use super::breaker::Slot;
use super::endpoint::InFlight;
use super::pool::Lease;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// An upstream response body. It holds the request's place in the
/// cluster's `max_requests` and its endpoint's in-flight count until it
/// ends, so both count the whole exchange, not just the headers.
/// With a route's `max_stream_duration` it fails at that deadline, so the
/// client sees the stream cut (connection closed, or RST_STREAM), never a
/// response that looks complete.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    held: Option<(Slot, InFlight)>,
    /// Data read ahead (a body phase that gave up buffering), sent first,
    /// in reverse order (the next chunk last).
    unread: Vec<Bytes>,
    /// The HTTP/1.1 connection it arrives on, given back when the body has
    /// been read to its end; dropped (the connection closed) otherwise.
    lease: Option<Lease>,
}

/// The body outlived the route's `max_stream_duration`.
#[derive(Debug, thiserror::Error)]
#[error("max_stream_duration reached")]
pub struct StreamDurationReached;

/// A request's place under `max_requests` and on its endpoint's in-flight
/// count, kept by an upgraded connection for as long as it lasts.
#[derive(Debug)]
pub struct Held(#[allow(dead_code)] Option<(Slot, InFlight)>);

impl UpstreamBody {
    pub(crate) fn new(inner: Incoming, held: Option<(Slot, InFlight)>, lease: Option<Lease>) -> UpstreamBody {
        UpstreamBody {
            inner,
            deadline: None,
            held,
            unread: Vec::new(),
            lease,
        }
    }

    /// Put data read from this body back in front of what is left.
    pub fn unread(&mut self, data: Vec<Bytes>) {
        self.unread.extend(data.into_iter().rev());
    }

    /// Take the request's places out of the body (an upgrade keeps them).
    /// The connection is the upgrade's now, never the pool's again.
    pub fn take_held(&mut self) -> Held {
        self.lease = None;
        Held(self.held.take())
    }

    /// End the body with an error at `at` if it has not ended by then.
    pub fn end_by(&mut self, at: tokio::time::Instant) {
        self.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(StreamDurationReached))));
        }
        if let Some(data) = this.unread.pop() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame
            && let Some(lease) = this.lease.take()
        {
            lease.release();
        }
        frame.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.unread.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let ahead: u64 = self.unread.iter().map(|d| d.len() as u64).sum();
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + ahead);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}

impl Drop for UpstreamBody {
    /// A body not polled to its end may still have arrived whole (hyper
    /// does not poll a body that says it has ended); its connection can
    /// serve again.
    fn drop(&mut self) {
        if self.inner.is_end_stream()
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }
}
