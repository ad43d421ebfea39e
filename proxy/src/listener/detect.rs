//! Protocol detection on intercepted connections (sidecar mode): read the
//! client's first bytes and tell HTTP/1.x (a request line ending in
//! `HTTP/1.0` or `HTTP/1.1`) and HTTP/2 with prior knowledge (the
//! connection preface) from TLS (a handshake record) and anything else.
//! What was read is handed on, so nothing the client sent is lost: the
//! HTTP server reads it again through [`Rewind`], the TCP relay writes it
//! to the destination first.

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The most detection reads: a request line longer than this that still
/// looks like one is taken as HTTP/1 (the HTTP server then refuses it).
const MAX_PEEK: usize = 8 * 1024;

/// The longest ClientHello read to find the mesh's ALPN.
const MAX_HELLO: usize = 64 * 1024;

/// What an intercepted connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    /// A TLS handshake: the application's own TLS, relayed untouched.
    Tls,
    /// Anything else, relayed untouched.
    Opaque,
}

impl Protocol {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
            Protocol::Tls => "tls",
            Protocol::Opaque => "opaque",
        }
    }

    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http1 | Protocol::Http2)
    }
}

/// Why detection gave no protocol.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("the client closed before sending anything")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Read from `stream` until its protocol is known. Returns the protocol
/// and every byte read. A client that closes after sending a few bytes is
/// opaque (they are relayed). The caller bounds the wait.
pub async fn detect<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Protocol, Bytes), DetectError> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return match buf.is_empty() {
                true => Err(DetectError::Closed),
                false => Ok((Protocol::Opaque, buf.freeze())),
            };
        }
        if let Some(protocol) = classify(&buf) {
            return Ok((protocol, buf.freeze()));
        }
        buf.reserve(1024);
    }
}

/// Read on until `first` (the start of a TLS handshake) holds the whole
/// ClientHello, then say whether it asks for the mesh ([`MESH_ALPN`]).
/// Returns every byte read. A client that closes first is not the mesh.
///
/// [`MESH_ALPN`]: crate::tls::mesh::MESH_ALPN
pub async fn mesh_hello<S: AsyncRead + Unpin>(stream: &mut S, first: Bytes) -> io::Result<(bool, Bytes)> {
    let mut buf = BytesMut::from(first);
    loop {
        if let Some(mesh) = crate::tls::mesh::offers_mesh(&buf) {
            return Ok((mesh, buf.freeze()));
        }
        if buf.len() > MAX_HELLO {
            return Ok((false, buf.freeze()));
        }
        buf.reserve(2048);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok((false, buf.freeze()));
        }
    }
}

/// The protocol of a connection that began with `bytes`, or `None` when
/// more bytes are needed to tell.
pub fn classify(bytes: &[u8]) -> Option<Protocol> {
    let first = *bytes.first()?;
    if first == 0x16 {
        return Some(Protocol::Tls);
    }
    let common = bytes.len().min(H2_PREFACE.len());
    if bytes[..common] == H2_PREFACE[..common] {
        return (bytes.len() >= H2_PREFACE.len()).then_some(Protocol::Http2);
    }
    request_line(bytes)
}

/// HTTP/1 if `bytes` begin with `METHOD SP target SP HTTP/1.x CRLF`.
fn request_line(bytes: &[u8]) -> Option<Protocol> {
    let method_end = bytes.iter().position(|&b| !is_token(b));
    let Some(method_end) = method_end else {
        // All token characters so far: a method still arriving, unless it
        // is already too long to be one.
        return (bytes.len() > 32).then_some(Protocol::Opaque);
    };
    if method_end == 0 || bytes[method_end] != b' ' {
        return Some(Protocol::Opaque);
    }
    let Some(line_end) = bytes.iter().position(|&b| b == b'\n') else {
        let rest = &bytes[method_end + 1..];
        if rest.iter().any(|&b| b < 0x20 && b != b'\r' || b == 0x7f) {
            return Some(Protocol::Opaque);
        }
        return (bytes.len() >= MAX_PEEK).then_some(Protocol::Http1);
    };
    let line = bytes[..line_end].strip_suffix(b"\r").unwrap_or(&bytes[..line_end]);
    let http = line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0");
    Some(if http { Protocol::Http1 } else { Protocol::Opaque })
}

/// An RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A stream that first yields bytes already read from it.
pub struct Rewind<S> {
    pub(super) prefix: Bytes,
    pub(super) inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Bytes, inner: S) -> Rewind<S> {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Protocol::*;
    use tokio::net::TcpStream;

    #[test]
    fn tells_http1_from_its_request_line() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(Http1));
        assert_eq!(classify(b"POST /x?y=1 HTTP/1.0\r\n"), Some(Http1));
        assert_eq!(classify(b"GET / HTTP/1.1\n"), Some(Http1));
        // Still arriving.
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET /some/pa"), None);
        assert_eq!(classify(b"GET / HTTP/1.1\r"), None);
    }

    #[test]
    fn tells_h2_prior_knowledge_from_the_preface() {
        assert_eq!(classify(H2_PREFACE), Some(Http2));
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04"),
            Some(Http2)
        );
        assert_eq!(classify(b"PRI * HTTP/2"), None);
    }

    #[test]
    fn everything_else_is_opaque_or_tls() {
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00]), Some(Tls));
        // Redis, in RESP and inline.
        assert_eq!(classify(b"*1\r\n$4\r\nPING\r\n"), Some(Opaque));
        assert_eq!(classify(b"PING\r\n"), Some(Opaque));
        // A text line that is not a request line.
        assert_eq!(classify(b"hello world\n"), Some(Opaque));
        assert_eq!(classify(b"GET / HTTP/2.0\r\n"), Some(Opaque));
        assert_eq!(classify(b"\x00\x01binary"), Some(Opaque));
        assert_eq!(classify(b"GET /\x01"), Some(Opaque));
        assert_eq!(classify(&[b'A'; 40]), Some(Opaque));
        assert_eq!(classify(b""), None);
    }

    #[test]
    fn a_long_request_line_is_http1() {
        let mut line = b"GET /".to_vec();
        line.resize(MAX_PEEK, b'a');
        assert_eq!(classify(&line), Some(Http1));
        assert_eq!(classify(&line[..MAX_PEEK - 1]), None);
    }

    #[tokio::test]
    async fn detection_keeps_what_it_read_and_rewinds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            use tokio::io::AsyncWriteExt;
            s.write_all(b"GET /a HT").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(b"TP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            s
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let (protocol, read) = detect(&mut stream).await.unwrap();
        assert_eq!(protocol, Http1);
        let _client = client.await.unwrap();
        let mut rewound = Rewind::new(read, stream);
        let sent = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut all = vec![0u8; sent.len()];
        rewound.read_exact(&mut all).await.unwrap();
        assert_eq!(all, sent);
    }

    #[tokio::test]
    async fn a_client_that_closes_at_once_is_reported() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(TcpStream::connect(addr).await.unwrap());
        let (mut stream, _) = listener.accept().await.unwrap();
        assert!(matches!(detect(&mut stream).await, Err(DetectError::Closed)));
    }
}
