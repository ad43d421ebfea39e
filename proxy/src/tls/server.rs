//! The server side of a TLS listener, built once per generation from its
//! [`ListenerTls`]: one rustls `ServerConfig` per certificate, selected by
//! the client's SNI (exact name, then `*.` wildcard, then the default), each
//! offering ALPN `h2` and `http/1.1` and asking for client certificates as
//! `client_auth` says. Session caches and ticket keys belong to the listener,
//! not the generation, so resumption survives reloads and rotations — but
//! only while the client-authentication policy stays the same: a resumed
//! session skips the client certificate, so a session made under a weaker
//! policy must not resume under a stricter one.

use super::provider;
use crate::config::{ClientAuth, ListenerTls, TlsVersion};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier};
use rustls::{ServerConfig, SupportedProtocolVersion};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Sessions remembered per listener for resumption (TLS 1.2 ids and TLS 1.3
/// stateful tickets).
const SESSION_CACHE_SIZE: usize = 4096;

/// A TLS listener's handshake settings, selected per connection by SNI.
#[derive(Debug)]
pub struct ServerTls {
    exact: HashMap<String, Arc<ServerConfig>>,
    /// Keyed by the parent of `*.parent`.
    wildcard: HashMap<String, Arc<ServerConfig>>,
    default: Option<Arc<ServerConfig>>,
    pub handshake_timeout: Duration,
    /// `client_auth = "required"`: every connection must have a verified
    /// client certificate.
    pub client_cert_required: bool,
}

/// Session storage and ticket keys that outlive generations, for one
/// client-authentication policy.
#[derive(Clone)]
struct Resumption {
    /// Digest of `client_auth` and the `client_ca` anchors.
    policy: [u8; 32],
    sessions: Arc<dyn StoresServerSessions>,
    tickets: Option<Arc<dyn ProducesTickets>>,
}

static RESUMPTION: LazyLock<Mutex<HashMap<String, Resumption>>> = LazyLock::new(Default::default);

/// The listener's resumption state; fresh (old sessions and tickets no
/// longer accepted) when its client-authentication policy changed.
fn resumption(listener: &str, tls: &ListenerTls) -> Resumption {
    let policy = policy(tls);
    let mut all = RESUMPTION.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = all.get(listener).filter(|r| r.policy == policy) {
        return r.clone();
    }
    let fresh = Resumption {
        policy,
        sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
        tickets: match rustls::crypto::aws_lc_rs::Ticketer::new() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "TLS session tickets unavailable; resumption uses the session cache only");
                None
            }
        },
    };
    all.insert(listener.to_string(), fresh.clone());
    fresh
}

fn policy(tls: &ListenerTls) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!("{:?}", tls.client_auth));
    for anchor in tls.client_ca.iter().flat_map(|b| b.certs.iter()) {
        h.update((anchor.len() as u64).to_le_bytes());
        h.update(anchor);
    }
    h.finalize().into()
}

impl ServerTls {
    /// Build the listener's configs; fails only if rustls refuses material
    /// validation already accepted.
    pub fn build(listener: &str, tls: &ListenerTls) -> Result<ServerTls, String> {
        let verifier = client_verifier(tls)?;
        let versions: &[&SupportedProtocolVersion] = match tls.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let resumption = resumption(listener, tls);
        let mut out = ServerTls {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
            handshake_timeout: tls.handshake_timeout,
            client_cert_required: tls.client_auth == ClientAuth::Required,
        };
        for cert in &tls.certificates {
            let key = cert
                .pair
                .certified_key()
                .map_err(|e| format!("{}: {e}", cert.pair.cert_path.display()))?;
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(|e| e.to_string())?
                .with_client_cert_verifier(verifier.clone())
                .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            config.session_storage = resumption.sessions.clone();
            if let Some(t) = &resumption.tickets {
                config.ticketer = t.clone();
            }
            let config = Arc::new(config);
            if cert.server_names.is_empty() {
                out.default = Some(config.clone());
            }
            for name in &cert.server_names {
                match name.strip_prefix("*.") {
                    Some(parent) => out.wildcard.insert(parent.to_string(), config.clone()),
                    None => out.exact.insert(name.clone(), config.clone()),
                };
            }
        }
        Ok(out)
    }

    /// The config for a client that asked for `sni` (lower-cased here):
    /// an exact name, else a wildcard one label deep, else the default.
    /// `None`: no certificate for that name (the handshake is refused with
    /// `unrecognized_name`).
    pub fn select(&self, sni: Option<&str>) -> Option<&Arc<ServerConfig>> {
        let Some(sni) = sni else {
            return self.default.as_ref();
        };
        let sni = sni.to_ascii_lowercase();
        let sni = sni.strip_suffix('.').unwrap_or(&sni);
        self.exact
            .get(sni)
            .or_else(|| sni.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)))
            .or(self.default.as_ref())
    }
}

fn client_verifier(tls: &ListenerTls) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let bundle = match (&tls.client_auth, &tls.client_ca) {
        (ClientAuth::None, _) | (_, None) => return Ok(WebPkiClientVerifier::no_client_auth()),
        (_, Some(bundle)) => bundle,
    };
    let roots = bundle.root_store().map_err(|e| e.to_string())?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = match tls.client_auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder.build().map_err(|e| format!("{}: {e}", bundle.path.display()))
}
