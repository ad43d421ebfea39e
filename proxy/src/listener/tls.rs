//! The TLS handshake on a TLS listener, bounded by the listener's
//! handshake timeout: plaintext HTTP gets a 400 that says to use https, the
//! ClientHello picks the certificate by SNI (no match and no default: an
//! `unrecognized_name` alert), rustls does the rest and sends its alerts
//! (untrusted or expired client certificate, no shared version or cipher,
//! a malformed hello). Every failure has a short reason for
//! `sluice_tls_handshake_errors_total`; success yields the stream and the
//! connection's [`TlsFacts`].

use super::sniff;
use crate::connection::{PeerIdentity, TlsFacts};
use crate::tls::server::ServerTls;
use rustls::server::Acceptor;
use std::io::ErrorKind;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

/// What a client that speaks plaintext HTTP to a TLS port is told.
const PLAINTEXT_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 51\r\nconnection: close\r\n\r\nThis port speaks TLS: send the request as https://\n";

/// Why a handshake failed: a metric label, and what happened for the log.
#[derive(Debug)]
pub struct Failure {
    pub reason: &'static str,
    pub detail: String,
}

impl Failure {
    fn new(reason: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
        }
    }
}

/// Complete the server side of a handshake within the listener's timeout.
pub async fn accept(stream: TcpStream, tls: &ServerTls) -> Result<(TlsStream<TcpStream>, TlsFacts), Failure> {
    match tokio::time::timeout(tls.handshake_timeout, handshake(stream, tls)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(
            "timeout",
            format!("no complete handshake within {:?}", tls.handshake_timeout),
        )),
    }
}

async fn handshake(mut stream: TcpStream, tls: &ServerTls) -> Result<(TlsStream<TcpStream>, TlsFacts), Failure> {
    match sniff::first_byte(&stream).await {
        None => return Err(Failure::new("closed", "the client closed before sending anything")),
        Some(sniff::TLS_HANDSHAKE) => {}
        Some(b) if b.is_ascii_uppercase() => {
            let _ = stream.write_all(PLAINTEXT_RESPONSE).await;
            let _ = stream.shutdown().await;
            return Err(Failure::new(
                "plaintext_http",
                "plaintext HTTP sent to a TLS port; answered 400",
            ));
        }
        Some(_) => {} // rustls refuses it with the right alert.
    }
    let start = LazyConfigAcceptor::new(Acceptor::default(), stream)
        .await
        .map_err(|e| classify(&e))?;
    let sni = start.client_hello().server_name().map(str::to_owned);
    let Some(config) = tls.select(sni.as_deref()).cloned() else {
        let mut io = start.io;
        let _ = io.write_all(&sniff::fatal_alert(sniff::UNRECOGNIZED_NAME)).await;
        let _ = io.shutdown().await;
        return Err(Failure::new(
            "no_certificate_for_name",
            format!("no certificate for server name {:?}", sni.unwrap_or_default()),
        ));
    };
    let stream = start.into_stream(config).await.map_err(|e| classify(&e))?;
    let facts = facts(stream.get_ref().1)?;
    if tls.client_cert_required && facts.peer.is_none() {
        // rustls refuses a full handshake without one; this also covers a
        // session resumed from before `client_auth` became required.
        return Err(Failure::new(
            "client_cert_missing",
            "client_auth is required and no certificate was presented",
        ));
    }
    Ok((stream, facts))
}

/// What the handshake established. A certificate rustls verified but whose
/// identity cannot be read fails the connection rather than passing for
/// no certificate.
pub(super) fn facts(conn: &rustls::ServerConnection) -> Result<TlsFacts, Failure> {
    let peer = match conn.peer_certificates().and_then(|chain| chain.first()) {
        None => None,
        Some(leaf) => Some(PeerIdentity::from_der(leaf).ok_or_else(|| {
            Failure::new(
                "client_cert_invalid",
                "the client certificate's identity cannot be read",
            )
        })?),
    };
    Ok(TlsFacts {
        version: crate::tls::version_name(conn.protocol_version()),
        cipher_suite: conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown"),
        server_name: conn.server_name().map(str::to_ascii_lowercase),
        alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
        peer,
    })
}

/// A short reason for a failed handshake.
pub(super) fn classify(e: &std::io::Error) -> Failure {
    use rustls::{CertificateError as C, Error as E};
    let detail = e.to_string();
    let reason = match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
        Some(E::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => "client_cert_expired",
        Some(E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. })) => "client_cert_not_yet_valid",
        Some(E::InvalidCertificate(C::UnknownIssuer | C::BadSignature | C::UnhandledCriticalExtension)) => {
            "client_cert_untrusted"
        }
        Some(E::InvalidCertificate(C::Revoked)) => "client_cert_revoked",
        Some(E::InvalidCertificate(_)) => "client_cert_invalid",
        Some(E::NoCertificatesPresented) => "client_cert_missing",
        Some(E::PeerIncompatible(_)) => "incompatible",
        Some(E::AlertReceived(_)) => "alert_received",
        Some(
            E::InvalidMessage(_)
            | E::PeerMisbehaved(_)
            | E::InappropriateHandshakeMessage { .. }
            | E::InappropriateMessage { .. },
        ) => "malformed",
        Some(_) => "other",
        None if matches!(
            e.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ) =>
        {
            "closed"
        }
        None => "io",
    };
    Failure { reason, detail }
}
