//! The host side of the WIT `remote-document` interface (0.1.3): a filter
//! subscribes in `init` to a document fetched through a cluster its entry
//! lists, and reads the host's copy in its phases. The copying, caching and
//! refreshing is [`crate::outbound::documents`]'; this module checks the
//! filter's arguments and keeps its handles.

use super::bindings::sluice::filter::remote_document::{self, Document, DocumentOptions};
use super::budget;
use super::host::HostState;
use crate::outbound::documents::{self, Options};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Subscriptions one instance may hold.
const MAX_SUBSCRIPTIONS: usize = 16;

/// An absolute `http` or `https` URI with an authority.
fn document_uri(uri: &str) -> Result<http::Uri, String> {
    let parsed: http::Uri = uri.parse().map_err(|_| format!("`{uri}` is not a valid URI"))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("`{uri}` must start with http:// or https://")),
    }
    match parsed.authority() {
        Some(a) if !a.as_str().contains('@') => Ok(parsed),
        _ => Err(format!("`{uri}` needs a host (and no user information)")),
    }
}

impl HostState {
    fn document(&self, handle: u32) -> Result<&Arc<documents::Document>, String> {
        self.documents()
            .get(handle as usize)
            .ok_or_else(|| "unknown document handle".to_string())
    }
}

impl remote_document::Host for HostState {
    fn subscribe(&mut self, cluster: String, uri: String, options: DocumentOptions) -> Result<u32, String> {
        if self.call.phase.is_some() {
            return Err("remote-document.subscribe is only available in init".into());
        }
        let cluster = self
            .allowed_cluster(&cluster)
            .ok_or_else(|| format!("cluster `{cluster}` is not in the filter entry's `clusters` list"))?;
        let uri = document_uri(&uri)?;
        let options = Options::new(
            Duration::from_millis(options.min_refresh_ms),
            Duration::from_millis(options.max_refresh_ms),
            options.max_bytes as usize,
        )?;
        let io = self
            .io
            .as_deref_mut()
            .ok_or_else(|| "remote documents are not available here".to_string())?;
        // Checked before anything is started: a refused subscription costs
        // no task.
        if let Some(i) = io.subscribed.iter().position(|d| d.is(&cluster, &uri, options)) {
            return Ok(i as u32);
        }
        if io.subscribed.len() >= MAX_SUBSCRIPTIONS {
            return Err(format!("at most {MAX_SUBSCRIPTIONS} documents per filter"));
        }
        let doc = io.documents.subscribe(&io.outbound, cluster, uri, options);
        io.subscribed.push(doc);
        Ok(io.subscribed.len() as u32 - 1)
    }

    fn get(&mut self, handle: u32, known_version: Option<u64>) -> Result<Option<Document>, String> {
        let copy = self.document(handle)?.current()?;
        if known_version == Some(copy.version) {
            return Ok(None);
        }
        Ok(Some(Document {
            version: copy.version,
            body: copy.body.to_vec(),
        }))
    }

    async fn refresh(&mut self, handle: u32) -> bool {
        if self.call.phase.is_none() {
            return false;
        }
        let Ok(doc) = self.document(handle).cloned() else {
            return false;
        };
        let wait_limit = self.io.as_deref().map_or(Duration::ZERO, |io| io.wait_limit);
        let remaining = wait_limit.saturating_sub(budget::lock(&self.budget).waited_so_far());
        if remaining.is_zero() {
            return false;
        }
        let started = Instant::now();
        let changed = doc.refresh(remaining).await;
        budget::lock(&self.budget).waited(started.elapsed());
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_uris_are_checked() {
        assert!(document_uri("https://idp.example.com/.well-known/jwks.json").is_ok());
        assert!(document_uri("http://127.0.0.1:9000/keys?v=2").is_ok());
        for bad in ["/jwks.json", "ftp://x/y", "https://user@idp/x", "not a uri"] {
            assert!(document_uri(bad).is_err(), "{bad}");
        }
    }
}
