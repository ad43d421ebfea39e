//! The body types: what flows back to clients (the upstream's body,
//! streamed untouched, or a body sluice made: errors, local responses), a
//! byte-counting wrapper, and the request body as sent upstream — streamed,
//! or buffered so that a retry can send it again.

use crate::upstream::UpstreamBody;
use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
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

/// The request body as sent upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// Streamed from the client as it arrives; sent once.
    Streaming(Counted<Incoming>),
    /// Read whole (within the retry policy's cap); every try sends a copy.
    Buffered(Replay),
    /// Longer than the cap: what was read, then the rest streamed; sent once.
    Prefixed(Option<Bytes>, Counted<Incoming>),
}

/// A buffered body: data then trailers, each taken once per send.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl RequestBody {
    /// Read `body` up to `cap` bytes: buffered if it ends within them, else
    /// the bytes read followed by the rest. Waits for the client to send
    /// the body (only routes with a retry policy do this).
    pub async fn buffer(mut body: Counted<Incoming>, cap: usize) -> Result<RequestBody, hyper::Error> {
        if body.is_end_stream() {
            return Ok(RequestBody::Buffered(Replay::default()));
        }
        if body.size_hint().lower() > cap as u64 {
            return Ok(RequestBody::Streaming(body));
        }
        let mut data = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            match frame.into_data() {
                Ok(chunk) => {
                    data.extend_from_slice(&chunk);
                    if data.len() > cap {
                        return Ok(RequestBody::Prefixed(Some(data.freeze()), body));
                    }
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().ok();
                    return Ok(RequestBody::Buffered(Replay {
                        data: Some(data.freeze()).filter(|d| !d.is_empty()),
                        trailers,
                    }));
                }
            }
        }
        Ok(RequestBody::Buffered(Replay {
            data: Some(data.freeze()).filter(|d| !d.is_empty()),
            trailers: None,
        }))
    }

    /// A copy for another try, when the body is buffered.
    pub fn replayable(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Buffered(r) => Some(RequestBody::Buffered(r.clone())),
            _ => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Streaming(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Buffered(r) => Poll::Ready(match (r.data.take(), r.trailers.take()) {
                (Some(data), _) => Some(Ok(Frame::data(data))),
                (None, Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                (None, None) => None,
            }),
            RequestBody::Prefixed(head, rest) => match head.take() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(b) => b.is_end_stream(),
            RequestBody::Buffered(r) => r.data.is_none() && r.trailers.is_none(),
            RequestBody::Prefixed(head, rest) => head.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(b) => b.size_hint(),
            RequestBody::Buffered(r) => SizeHint::with_exact(r.data.as_ref().map_or(0, |d| d.len() as u64)),
            RequestBody::Prefixed(head, rest) => {
                let head = head.as_ref().map_or(0, |d| d.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + head);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + head);
                }
                hint
            }
        }
    }
}
