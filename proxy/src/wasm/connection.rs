//! The host side of the WIT `connection` interface (0.1.1): the facts of
//! the downstream connection of the message in the store, in every phase.
//! In `init` there is no message: empty names and no TLS.

use super::bindings::sluice::filter::connection::{self, PeerIdentity, TlsInfo};
use super::host::HostState;
use crate::connection::ConnectionFacts;

impl HostState {
    /// The connection of the call in progress, if any.
    fn connection(&self) -> Option<&ConnectionFacts> {
        self.call.phase.map(|_| &*self.call.connection)
    }
}

impl connection::Host for HostState {
    fn listener(&mut self) -> String {
        self.connection().map(|c| c.listener.to_string()).unwrap_or_default()
    }

    fn local_address(&mut self) -> String {
        self.connection().map(|c| c.local.to_string()).unwrap_or_default()
    }

    fn tls(&mut self) -> Option<TlsInfo> {
        let tls = self.connection()?.tls.as_ref()?;
        Some(TlsInfo {
            version: tls.version.to_string(),
            cipher_suite: tls.cipher_suite.to_string(),
            server_name: tls.server_name.clone(),
            alpn: tls.alpn.clone(),
            peer: tls.peer.as_ref().map(|p| PeerIdentity {
                spiffe_id: p.spiffe_id.clone(),
                trust_domain: p.trust_domain().map(str::to_string),
                uris: p.uris.clone(),
                dns_names: p.dns_names.clone(),
                subject: p.subject.clone(),
            }),
        })
    }
}
