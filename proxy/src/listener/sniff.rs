//! A look at the first byte a client sends, without consuming it: a TLS
//! listener answers plaintext HTTP with a 400, a cleartext one answers a
//! TLS ClientHello with an alert. (Sidecar protocol detection grows here.)

use tokio::net::TcpStream;

/// The first byte of a TLS handshake record (a ClientHello).
pub const TLS_HANDSHAKE: u8 = 0x16;

/// A fatal `handshake_failure` alert, sent to a TLS client on a cleartext port.
pub const HANDSHAKE_FAILURE_ALERT: [u8; 7] = [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 40];

/// The first byte the client sent, once it arrives; `None` if the client
/// closed (or the socket failed) first. Callers bound the wait.
pub async fn first_byte(stream: &TcpStream) -> Option<u8> {
    let mut buf = [0u8; 1];
    match stream.peek(&mut buf).await {
        Ok(1) => Some(buf[0]),
        _ => None,
    }
}
