//! Native backing of `remote-document`: the content a test sets up per URI
//! ([`MockHost::document`](crate::mock::MockHost::document) and friends),
//! the subscriptions a filter makes, and the host's rules for both
//! (`proxy/src/wasm/remote_document.rs`, `proxy/src/outbound/documents.rs`),
//! with the host's reasons where it gives one.

use super::{Phase, path_and_query, valid_authority, with};
use crate::document::{Document, DocumentOptions};
use std::collections::HashMap;

/// Largest `max_bytes` a subscription may ask for (WIT: "at most 1 MiB").
pub(crate) const MAX_DOCUMENT_BYTES: u32 = 1 << 20;
/// Smallest `min_refresh` in milliseconds (WIT: "at least 1000").
pub(crate) const MIN_REFRESH_MS: u64 = 1000;
/// Distinct subscriptions one instance may hold on the host. The mock
/// cannot tell instances apart and counts every subscription made on it.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 16;

/// What the mock serves for one URI.
#[derive(Debug, Default)]
pub(crate) struct Content {
    /// The good copy, if there has been one, and its version (0 before the
    /// first).
    pub body: Option<Vec<u8>>,
    pub version: u64,
    /// Why fetching fails, reported while there is no good copy.
    pub error: Option<String>,
    /// What the next `refresh` fetches.
    pub on_refresh: Option<Vec<u8>>,
}

impl Content {
    /// Make `body` the good copy; the version grows only if the content
    /// changed. Whether it did.
    pub fn install(&mut self, body: Vec<u8>) -> bool {
        if self.body.as_ref() == Some(&body) {
            return false;
        }
        self.body = Some(body);
        self.version += 1;
        true
    }
}

/// One `subscribe` that succeeded. The host keeps one document per
/// (cluster, URI, options), and an instance subscribing to it again gets
/// the same handle.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub cluster: String,
    pub uri: String,
    pub options: DocumentOptions,
}

/// The documents side of the mock's state.
#[derive(Debug, Default)]
pub(crate) struct Documents {
    /// Content by URI, as the test set it up.
    pub content: HashMap<String, Content>,
    /// Subscriptions in the order made; a handle is an index here.
    pub subscriptions: Vec<Subscription>,
}

/// Whether `uri` is one the host can fetch: absolute `http://` or
/// `https://`, an authority without user information, then a path (starting
/// with `/`) and query its HTTP library takes. `Err` names the problem.
///
/// The host also takes a URI without a path (and fetches `/`); the mock
/// asks for one, so a filter names the document it means.
fn check_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .ok_or_else(|| format!("`{uri}` must start with http:// or https://"))?;
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if !valid_authority(authority) {
        return Err(format!("`{uri}` needs a host (and no user information)"));
    }
    if !path.starts_with('/') {
        return Err(format!("`{uri}` has no path"));
    }
    if path_and_query(path).is_none() {
        return Err(format!("`{uri}` is not a valid URI"));
    }
    Ok(())
}

/// The host's bounds on the options, in milliseconds as sent.
fn check_options(options: &DocumentOptions) -> Result<(), String> {
    let min = DocumentOptions::ms(options.min_refresh);
    let max = DocumentOptions::ms(options.max_refresh);
    if min < MIN_REFRESH_MS {
        return Err(format!("min-refresh-ms must be at least {MIN_REFRESH_MS}"));
    }
    if max < min {
        return Err("max-refresh-ms must be at least min-refresh-ms".into());
    }
    if options.max_bytes == 0 || options.max_bytes > MAX_DOCUMENT_BYTES {
        return Err(format!("max-bytes must be 1 to {MAX_DOCUMENT_BYTES}"));
    }
    Ok(())
}

/// `remote-document.subscribe`, with the host's rules in its order:
///
/// 1. Only in `init` (`Filter::create`).
/// 2. The cluster is one the filter entry lists: with a non-empty
///    [`MockHost::clusters`](crate::mock::MockHost::clusters) list it must
///    be in it (an empty list allows any).
/// 3. The URI is fetchable (see `check_uri`). Unlike the host, the mock
///    does not know which clusters have `tls`, so an `https` URI is not
///    checked against the cluster (on the host that is a failed fetch).
/// 4. The options are within bounds: `min_refresh` at least 1 s,
///    `max_refresh` at least `min_refresh`, `max_bytes` 1 to 1 MiB.
/// 5. The same subscription again is the same handle; at most 16 distinct
///    ones.
///
/// As on the host, content that is not there yet does not fail it.
pub(crate) fn document_subscribe(cluster: &str, uri: &str, options: DocumentOptions) -> Result<u32, String> {
    with(|s| {
        if s.phase != Phase::Init {
            return Err("remote-document.subscribe is only available in init".to_string());
        }
        if !s.clusters.is_empty() && !s.clusters.iter().any(|c| c == cluster) {
            return Err(format!(
                "cluster `{cluster}` is not in the filter entry's `clusters` list"
            ));
        }
        check_uri(uri)?;
        check_options(&options)?;
        let wanted = Subscription {
            cluster: cluster.to_string(),
            uri: uri.to_string(),
            options,
        };
        let subs = &mut s.documents.subscriptions;
        let index = match subs.iter().position(|known| *known == wanted) {
            Some(i) => i,
            None if subs.len() >= MAX_SUBSCRIPTIONS => {
                return Err(format!("at most {MAX_SUBSCRIPTIONS} documents per filter"));
            }
            None => {
                subs.push(wanted);
                subs.len() - 1
            }
        };
        u32::try_from(index).map_err(|_| "too many subscriptions".to_string())
    })
}

/// `remote-document.get`: `Ok(None)` when `known` is the current version.
/// With no good copy, the reason set by
/// [`MockHost::document_error`](crate::mock::MockHost::document_error) or
/// "not fetched yet". Content over the subscription's `max_bytes` is a
/// failed fetch, as on the host (the mock keeps no older good copy then).
pub(crate) fn document_get(handle: u32, known: Option<u64>) -> Result<Option<Document>, String> {
    with(|s| {
        let sub = usize::try_from(handle)
            .ok()
            .and_then(|i| s.documents.subscriptions.get(i))
            .ok_or("unknown document handle")?;
        let content = s.documents.content.get(&sub.uri);
        let Some(content) = content.filter(|c| c.body.is_some()) else {
            let reason = content.and_then(|c| c.error.clone());
            return Err(reason.unwrap_or_else(|| "not fetched yet".into()));
        };
        let body = content.body.as_deref().unwrap_or_default();
        let max_bytes = sub.options.max_bytes;
        if body.len() > max_bytes as usize {
            return Err(format!(
                "the document is {} bytes, over max_bytes ({max_bytes})",
                body.len()
            ));
        }
        if known == Some(content.version) {
            return Ok(None);
        }
        Ok(Some(Document {
            version: content.version,
            body: body.to_vec(),
        }))
    })
}

/// `remote-document.refresh`: installs what
/// [`MockHost::document_on_refresh`](crate::mock::MockHost::document_on_refresh)
/// set up, if anything; whether the version changed. An unknown handle
/// changes nothing, and so does a refresh in `init` (the host fetches only
/// in phases). Unlike the host, the mock does not hold refreshes to one
/// per `min_refresh` (counted from the first, background fetch): each
/// scripted refresh happens when asked.
pub(crate) fn document_refresh(handle: u32) -> bool {
    with(|s| {
        if s.phase == Phase::Init {
            return false;
        }
        let Some(sub) = usize::try_from(handle)
            .ok()
            .and_then(|i| s.documents.subscriptions.get(i))
        else {
            return false;
        };
        let Some(content) = s.documents.content.get_mut(&sub.uri) else {
            return false;
        };
        match content.on_refresh.take() {
            Some(body) => content.install(body),
            None => false,
        }
    })
}
