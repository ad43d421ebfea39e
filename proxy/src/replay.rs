//! A request body that can be sent again (for retries), as Linkerd's replay
//! body: the first try streams the client's body as it arrives — nothing
//! waits for the whole body — while a copy of each frame is kept, up to a
//! cap. A later try replays the copy, then goes on reading the client's
//! body where the earlier try stopped. Once the body outgrows the cap the
//! copy is dropped and no further try can be made.

use crate::body::Counted;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An earlier try's body, still being sent after a later try began (an
/// upstream that answered before reading the whole body): it is cut off
/// rather than compete for the client's remaining bytes.
#[derive(Debug, thiserror::Error)]
#[error("request body superseded by a retry")]
pub struct Superseded;

/// One try's view of the shared body.
#[derive(Debug)]
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    /// Which try this view belongs to; only the latest reads the client.
    id: u64,
    /// Recorded data frames this view has sent.
    sent: usize,
    trailers_sent: bool,
    /// The original body's size hint: every try frames the body the same
    /// way (`Content-Length`, or chunked with trailers).
    hint: SizeHint,
}

#[derive(Debug)]
struct Shared {
    /// The client's body, read by whichever try is ahead.
    inner: Counted<Incoming>,
    recorded: Vec<Bytes>,
    recorded_len: usize,
    trailers: Option<HeaderMap>,
    /// The client's body has ended (all of it is recorded).
    complete: bool,
    /// The body outgrew the cap, or the client's body failed: no replay.
    spoiled: bool,
    cap: usize,
    /// The latest view's id.
    latest: u64,
}

impl ReplayBody {
    /// Record `inner` up to `cap` bytes.
    pub fn new(inner: Counted<Incoming>, cap: usize) -> ReplayBody {
        let hint = inner.size_hint();
        let complete = inner.is_end_stream();
        ReplayBody {
            shared: Arc::new(Mutex::new(Shared {
                inner,
                recorded: Vec::new(),
                recorded_len: 0,
                trailers: None,
                complete,
                // A body longer than the cap still gets another try if the
                // first never read it (a connect failure); it is spoiled
                // once read past the cap.
                spoiled: false,
                cap,
                latest: 0,
            })),
            id: 0,
            sent: 0,
            trailers_sent: false,
            hint,
        }
    }

    /// Where later tries get their bodies from.
    pub fn source(&self) -> ReplaySource {
        ReplaySource {
            shared: self.shared.clone(),
            hint: self.hint,
        }
    }
}

/// Makes the body of each later try.
#[derive(Debug)]
pub struct ReplaySource {
    shared: Arc<Mutex<Shared>>,
    hint: SizeHint,
}

impl ReplaySource {
    /// Whether another try can still get the whole body.
    pub fn replayable(&self) -> bool {
        !self.shared.lock().unwrap_or_else(|e| e.into_inner()).spoiled
    }

    /// The body for the next try, unless it can no longer be replayed.
    /// From now on only this one reads the client's body.
    pub fn next(&self) -> Option<ReplayBody> {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if shared.spoiled {
            return None;
        }
        shared.latest += 1;
        Some(ReplayBody {
            id: shared.latest,
            shared: self.shared.clone(),
            sent: 0,
            trailers_sent: false,
            hint: self.hint,
        })
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut shared = this.shared.lock().unwrap_or_else(|e| e.into_inner());
        let shared = &mut *shared;
        // First what earlier tries recorded...
        if !shared.spoiled
            && let Some(data) = shared.recorded.get(this.sent)
        {
            this.sent += 1;
            return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
        }
        if shared.complete {
            if !this.trailers_sent
                && let Some(trailers) = &shared.trailers
            {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
            }
            return Poll::Ready(None);
        }
        // ...then the client's body, recorded as it passes.
        if this.id != shared.latest {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        let polled = Pin::new(&mut shared.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    shared.recorded_len += data.len();
                    if shared.recorded_len > shared.cap {
                        shared.spoiled = true;
                        shared.recorded = Vec::new();
                    } else if !shared.spoiled {
                        shared.recorded.push(data.clone());
                        this.sent = shared.recorded.len();
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    shared.trailers = Some(trailers.clone());
                    this.trailers_sent = true;
                }
            }
            Poll::Ready(None) => shared.complete = true,
            Poll::Ready(Some(Err(_))) => shared.spoiled = true,
            Poll::Pending => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.complete && self.sent >= shared.recorded.len() && (self.trailers_sent || shared.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A real `Incoming` body: a request read by a hyper server from bytes
    /// written by a client over a socket pair.
    async fn incoming(chunks: &'static [&'static [u8]]) -> Counted<Incoming> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(req.into_body());
                }
                async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), service)
                .await;
        });
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut client = client;
            let mut head = b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for c in chunks {
                head.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                head.extend_from_slice(c);
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"0\r\n\r\n");
            let _ = client.write_all(&head).await;
            std::future::pending::<()>().await;
        });
        Counted::new(rx.await.unwrap(), None)
    }

    async fn read_all(body: &mut ReplayBody) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                out.extend_from_slice(&data);
            }
        }
        out
    }

    #[tokio::test]
    async fn a_later_try_replays_then_continues_where_the_first_stopped() {
        let mut first = ReplayBody::new(incoming(&[b"ab", b"cd", b"ef"]).await, 1024);
        let source = first.source();
        // The first try reads one chunk and fails.
        let chunk = first.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&chunk[..], b"ab");
        let mut second = source.next().unwrap();
        // The first try may not read the client's body any more.
        assert!(first.frame().await.unwrap().is_err(), "superseded");
        assert_eq!(read_all(&mut second).await, b"abcdef");
        let mut third = source.next().unwrap();
        assert_eq!(read_all(&mut third).await, b"abcdef");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_streams_once() {
        let mut first = ReplayBody::new(incoming(&[b"0123456789", b"abcdef"]).await, 12);
        let source = first.source();
        assert_eq!(read_all(&mut first).await, b"0123456789abcdef", "streamed whole");
        assert!(source.next().is_none(), "past the cap: no replay");
    }
}
