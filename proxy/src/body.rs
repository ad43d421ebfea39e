//! The body types: what flows back to clients (the upstream's body,
//! streamed untouched, or a body sluice made: errors, local responses), a
//! byte-counting wrapper, and the request body as sent upstream — streamed,
//! or recorded so that a retry can send it again ([`crate::replay`]).

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
}

impl RequestBody {
    /// Where retries get their copies of this body, if it is recorded.
    pub fn replay_source(&self) -> Option<crate::replay::ReplaySource> {
        match self {
            RequestBody::Replay(r) => Some(r.source()),
            RequestBody::Streaming(_) => None,
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(b) => b.is_end_stream(),
            RequestBody::Replay(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(b) => b.size_hint(),
            RequestBody::Replay(b) => b.size_hint(),
        }
    }
}
