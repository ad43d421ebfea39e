//! The body type that flows back to clients: either the upstream's body,
//! streamed untouched, or a body sluice made (errors, local responses); and
//! a byte-counting wrapper for the request body.

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// A response body: streamed from the upstream or produced locally.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

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

/// The request body as sent upstream.
pub type RequestBody = Counted<Incoming>;
