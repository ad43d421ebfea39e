//! The body type that flows back to clients: either the upstream's body,
//! streamed untouched, or a body sluice made (errors, local responses).

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// A response body: streamed from the upstream or produced locally.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// A body sluice produced itself.
pub fn full(data: impl Into<Bytes>) -> ProxyBody {
    Either::Right(Full::new(data.into()))
}
