//! TLS metrics: handshakes by listener and version, handshake failures by
//! listener and reason, verified client identities by trust domain, and
//! how long each loaded certificate has left (computed at scrape time from
//! the serving generation's certificates).

use super::register;
use crate::connection::TlsFacts;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    listener: String,
    version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    listener: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    listener: String,
    /// The SPIFFE trust domain; empty for a certificate without a SPIFFE ID.
    trust_domain: String,
}

/// A loaded certificate: who uses it and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    /// `listener/<name>` or `cluster/<name>`.
    pub owner: String,
    /// The certificate file.
    pub cert: String,
    /// `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExpiryLabels {
    owner: String,
    cert: String,
}

/// Every TLS metric.
#[derive(Debug)]
pub struct TlsMetrics {
    handshakes: Family<HandshakeLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    peers: Family<PeerLabels, Counter>,
    certificates: Arc<Mutex<Vec<CertExpiry>>>,
}

impl TlsMetrics {
    pub(super) fn register(r: &mut Registry) -> TlsMetrics {
        let certificates = Arc::new(Mutex::new(Vec::new()));
        r.register_collector(Box::new(ExpiryCollector(certificates.clone())));
        TlsMetrics {
            handshakes: register(
                r,
                "tls_handshakes",
                "Completed TLS handshakes, by listener and TLS version",
                Family::default(),
            ),
            failures: register(
                r,
                "tls_handshake_errors",
                "TLS handshakes that failed, by listener and reason (timeout, plaintext_http, tls_on_cleartext, no_certificate_for_name, client_cert_untrusted, client_cert_expired, client_cert_missing, malformed, incompatible, alert_received, closed, ...)",
                Family::default(),
            ),
            peers: register(
                r,
                "tls_peer_identities",
                "TLS connections whose client presented a verified certificate, by listener and SPIFFE trust domain (empty: no SPIFFE ID)",
                Family::default(),
            ),
            certificates,
        }
    }

    /// Count a completed handshake (and its verified client, if any).
    pub fn handshake(&self, listener: &str, facts: &TlsFacts) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                listener: listener.to_string(),
                version: facts.version,
            })
            .inc();
        if let Some(peer) = &facts.peer {
            self.peers
                .get_or_create(&PeerLabels {
                    listener: listener.to_string(),
                    trust_domain: peer.trust_domain().unwrap_or_default().to_string(),
                })
                .inc();
        }
    }

    /// Count a failed handshake.
    pub fn handshake_failed(&self, listener: &str, reason: &'static str) {
        self.failures
            .get_or_create(&FailureLabels {
                listener: listener.to_string(),
                reason,
            })
            .inc();
    }

    /// Failed handshakes seen with this reason.
    pub fn handshake_failures(&self, listener: &str, reason: &'static str) -> u64 {
        self.failures
            .get_or_create(&FailureLabels {
                listener: listener.to_string(),
                reason,
            })
            .get()
    }

    /// The certificates the serving generation uses (replacing the last set).
    pub fn set_certificates(&self, certificates: Vec<CertExpiry>) {
        *self.certificates.lock().unwrap_or_else(|e| e.into_inner()) = certificates;
    }
}

/// `sluice_tls_cert_expiry_seconds`: seconds until each loaded certificate
/// expires (negative once it has), as of the scrape.
#[derive(Debug)]
struct ExpiryCollector(Arc<Mutex<Vec<CertExpiry>>>);

impl Collector for ExpiryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let certificates = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut family = encoder.encode_descriptor(
            "tls_cert_expiry_seconds",
            "Seconds until each loaded certificate expires (negative: expired), by owner (listener/NAME, cluster/NAME or mesh) and file",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for c in certificates {
            let labels = ExpiryLabels {
                owner: c.owner,
                cert: c.cert,
            };
            let gauge = ConstGauge::new(c.not_after.saturating_sub(now));
            gauge.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
