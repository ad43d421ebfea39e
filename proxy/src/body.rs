//! The body types: what flows back to clients (the upstream's body,
//! streamed untouched, or a body sluice made: errors, local responses), a
//! byte-counting wrapper, and the request body as sent upstream — streamed,
//! recorded so that a retry can send it again ([`crate::replay`]), or whole
//! in memory (a body a filter read or replaced, a filter's outbound call).

use crate::upstream::UpstreamBody;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// A response body: streamed from the upstream or produced locally.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// A body sluice produced itself.
pub fn full(data: impl Into<Bytes>) -> ProxyBody {
    Either::Right(Full::new(data.into()))
}

/// A body that counts the data bytes passing through it into a shared
/// counter, if given one (the request body, read by the access log when the
/// response ends).
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    bytes: Option<Arc<AtomicU64>>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, bytes: Option<Arc<AtomicU64>>) -> Self {
        Counted { inner, bytes }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(bytes) = &this.bytes
            && let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            bytes.fetch_add(data.remaining() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body as sent upstream: streamed once, or (on routes with a
/// retry policy) recorded as it streams so another try can send it again.
#[derive(Debug)]
pub enum RequestBody {
    Streaming(Counted<Incoming>),
    Replay(crate::replay::ReplayBody),
    /// Whole in memory; `None` once sent.
    Buffered(Option<Bytes>),
}

impl RequestBody {
    /// A body held whole in memory.
    pub fn buffered(data: Bytes) -> RequestBody {
        RequestBody::Buffered(Some(data))
    }

    /// Where retries get their copies of this body, if it can be sent again.
    pub fn replay_source(&self) -> Option<BodySource> {
        match self {
            RequestBody::Replay(r) => Some(BodySource::Recorded(r.source())),
            RequestBody::Buffered(data) => Some(BodySource::Buffered(data.clone().unwrap_or_default())),
            RequestBody::Streaming(_) => None,
        }
    }
}

/// Makes the body of each later try of a request.
#[derive(Debug)]
pub enum BodySource {
    Recorded(crate::replay::ReplaySource),
    Buffered(Bytes),
}

impl BodySource {
    /// Whether another try can still get the whole body.
    pub fn replayable(&self) -> bool {
        match self {
            BodySource::Recorded(r) => r.replayable(),
            BodySource::Buffered(_) => true,
        }
    }

    /// The body for the next try, unless it can no longer be replayed.
    pub fn next(&self) -> Option<RequestBody> {
        match self {
            BodySource::Recorded(r) => r.next().map(RequestBody::Replay),
            BodySource::Buffered(data) => Some(RequestBody::buffered(data.clone())),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            RequestBody::Streaming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            RequestBody::Replay(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Buffered(data) => {
                Poll::Ready(data.take().filter(|d| !d.is_empty()).map(|d| Ok(Frame::data(d))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(b) => b.is_end_stream(),
            RequestBody::Replay(b) => b.is_end_stream(),
            RequestBody::Buffered(data) => data.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(b) => b.size_hint(),
            RequestBody::Replay(b) => b.size_hint(),
            RequestBody::Buffered(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
