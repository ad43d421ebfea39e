//! A look at the first byte a client sends, without consuming it: a TLS
//! listener answers plaintext HTTP with a 400, a cleartext one answers a
//! TLS ClientHello with an alert. (Sidecar protocol detection grows here.)

use tokio::net::TcpStream;

/// The first byte of a TLS handshake record (a ClientHello).
pub const TLS_HANDSHAKE: u8 = 0x16;

/// `handshake_failure`: sent to a TLS client on a cleartext port.
pub const HANDSHAKE_FAILURE: u8 = 40;
/// `unrecognized_name`: no certificate for the name the client asked for.
pub const UNRECOGNIZED_NAME: u8 = 112;

/// A fatal TLS alert record with this description, for a client whose
/// handshake sluice refuses before rustls has a connection to send it.
pub fn fatal_alert(description: u8) -> [u8; 7] {
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

/// The first byte the client sent, once it arrives; `None` if the client
/// closed (or the socket failed) first. Callers bound the wait.
pub async fn first_byte(stream: &TcpStream) -> Option<u8> {
    let mut buf = [0u8; 1];
    match stream.peek(&mut buf).await {
        Ok(1) => Some(buf[0]),
        _ => None,
    }
}
