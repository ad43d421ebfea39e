//! TLS, with rustls: the crypto provider, material from PEM files
//! ([`pem`]), the server side of TLS listeners ([`server`]: certificates
//! chosen by SNI, ALPN, client authentication, session resumption) and the
//! client side for upstream clusters ([`client`]: trust, SNI, ALPN, client
//! certificates, identity checks). Configuration validation loads the
//! material; a generation builds the rustls configs from it; the listener
//! and the upstream connector use them.
//!
//! One crypto provider, aws-lc-rs, chosen on purpose: it is rustls's default
//! and best-tested provider, its handshakes (ECDSA P-256, X25519, RSA) cost
//! less CPU than ring's, it offers the post-quantum hybrid key exchange
//! rustls enables by default, and it has a FIPS-validated variant. It builds
//! here without cmake in about 70 s.

pub mod client;
pub mod mesh;
pub mod pem;
pub mod server;

use rustls::crypto::CryptoProvider;
use std::sync::{Arc, LazyLock};

static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));

/// The process's crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    PROVIDER.clone()
}

/// A negotiated protocol version as logged and shown to filters.
pub fn version_name(version: Option<rustls::ProtocolVersion>) -> &'static str {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    }
}
