//! Remote documents (WIT `remote-document`, added in 0.1.3): the host
//! fetches a document (a JWKS, a policy bundle, an allow list) through a
//! cluster in the background, keeps it fresh as the server's
//! `Cache-Control: max-age` says (within the subscription's minimum and
//! maximum intervals), keeps the last good copy when a fetch fails, and
//! every instance of every filter with the same subscription reads the
//! host's one copy.
//!
//! Subscribe in [`Filter::create`](crate::Filter::create) and keep the
//! handle; read with [`DocumentHandle::get`], passing the version you hold
//! so nothing is copied while it is current:
//!
//! ```no_run
//! use sluice_sdk::document::{self, Document, DocumentHandle, DocumentOptions};
//!
//! struct Keys { handle: DocumentHandle, held: Option<Document> }
//!
//! impl Keys {
//!     fn new() -> Result<Keys, String> {
//!         let handle = document::subscribe(
//!             "idp",
//!             "https://idp.example.com/.well-known/jwks.json",
//!             DocumentOptions::default(),
//!         )?;
//!         Ok(Keys { handle, held: None })
//!     }
//!
//!     /// The current keys, or why there are none (answer 503 then).
//!     fn current(&mut self) -> Result<&[u8], String> {
//!         let known = self.held.as_ref().map(|d| d.version);
//!         if let Some(newer) = self.handle.get(known)? {
//!             self.held = Some(newer);
//!         }
//!         Ok(self.held.as_ref().map(|d| d.body.as_slice()).unwrap_or_default())
//!     }
//! }
//! ```
//!
//! A filter that never calls [`subscribe`] does not import
//! `remote-document`, so it keeps loading in hosts older than 0.1.3.

use crate::sys;
use std::time::Duration;

/// How the host keeps a document fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentOptions {
    /// Never fetch more often than this, whatever `max-age` says or how
    /// often [`DocumentHandle::refresh`] is called. At least 1 s.
    pub min_refresh: Duration,
    /// Fetch at least this often, even when `max-age` is longer or absent.
    /// At least `min_refresh`.
    pub max_refresh: Duration,
    /// The largest document accepted, in bytes (at most 1 MiB); a larger
    /// one is a failed fetch.
    pub max_bytes: u32,
}

impl Default for DocumentOptions {
    /// Refresh between every 30 s and every 10 min; at most 256 KiB.
    fn default() -> Self {
        DocumentOptions {
            min_refresh: Duration::from_secs(30),
            max_refresh: Duration::from_secs(600),
            max_bytes: 256 * 1024,
        }
    }
}

impl DocumentOptions {
    /// Whole milliseconds, rounded up, saturating: what the host is sent.
    pub(crate) fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// A copy of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Grows by one whenever the content changes; starts at 1.
    pub version: u64,
    /// The content, as the server sent it (a 200 response's body).
    pub body: Vec<u8>,
}

/// A subscription, from [`subscribe`]. Valid for the instance's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentHandle(u32);

/// Ask the host to fetch `uri` through `cluster` and keep it fresh. Only in
/// [`Filter::create`](crate::Filter::create); an `Err` names the problem
/// (unknown cluster, bad URI, scheme and cluster disagree, bad options) and
/// is meant to be returned from `create`. `uri` is absolute, `http://` or
/// `https://`: its path and query are requested from `cluster` (one of the
/// filter entry's `clusters`) with its authority as `host`; an `https` URI
/// needs a cluster with `tls`. The first fetch starts in the background: a
/// document that cannot be fetched yet does not fail `create`.
pub fn subscribe(cluster: &str, uri: &str, options: DocumentOptions) -> Result<DocumentHandle, String> {
    sys::document_subscribe(cluster, uri, options).map(DocumentHandle)
}

impl DocumentHandle {
    /// The current copy, unless its version is `known_version` (then
    /// `Ok(None)`: what the filter holds is current, nothing is copied).
    /// `Err` when there has never been a good copy, with the reason (the
    /// last fetch's failure, or "not fetched yet"); answer 503 then.
    pub fn get(&self, known_version: Option<u64>) -> Result<Option<Document>, String> {
        sys::document_get(self.0, known_version)
    }

    /// Fetch now (for example because a token names a key the filter does
    /// not have) and wait for the result; the wait counts against the
    /// entry's `wait_limit`. At most one fetch per `min_refresh`: within
    /// it, returns at once. Whether the version changed.
    pub fn refresh(&self) -> bool {
        sys::document_refresh(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options() {
        let o = DocumentOptions::default();
        assert_eq!(o.min_refresh, Duration::from_secs(30));
        assert_eq!(o.max_refresh, Duration::from_secs(10 * 60));
        assert_eq!(o.max_bytes, 256 * 1024);
        assert_eq!(DocumentOptions::ms(Duration::from_micros(1001)), 2);
        assert_eq!(DocumentOptions::ms(Duration::MAX), u64::MAX);
    }
}
