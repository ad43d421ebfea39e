//! HTTP/1.1 protocol upgrades (WebSocket and others a route lists): the
//! handshake goes through the router and the request filters like any
//! request; once the upstream answers 101, the two upgraded connections are
//! joined and bytes flow both ways until either side closes.

use http::HeaderMap;
use http::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// The `Upgrade` a request asks for, when its `Connection` header names it.
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    connection_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Whether `upgrade` (e.g. `websocket`, `h2c`) is one of `allowed`.
pub fn allowed(allowed: &[String], upgrade: &HeaderValue) -> bool {
    let Ok(text) = upgrade.to_str() else { return false };
    // One protocol, optionally with a version: `websocket`, `foo/2`.
    let protocol = text.split([',', '/']).next().unwrap_or("").trim();
    allowed.iter().any(|a| a.eq_ignore_ascii_case(protocol))
}

/// Put the upgrade headers back after hop-by-hop stripping.
pub fn restore(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// Join the client's and the upstream's upgraded connections in the
/// background, for at most `limit`.
pub fn tunnel(downstream: OnUpgrade, upstream: OnUpgrade, limit: Option<Duration>, route: std::sync::Arc<str>) {
    tokio::spawn(async move {
        let (client, server) = match tokio::try_join!(downstream, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(%route, error = %e, "upgrade did not complete");
                return;
            }
        };
        let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
        let result = match limit {
            Some(limit) => match tokio::time::timeout(limit, copy).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::debug!(%route, "upgraded connection closed at max_stream_duration");
                    return;
                }
            },
            None => copy.await,
        };
        match result {
            Ok((up, down)) => tracing::debug!(%route, bytes_up = up, bytes_down = down, "upgraded connection closed"),
            Err(e) => tracing::debug!(%route, error = %e, "upgraded connection failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_needs_connection_upgrade_and_an_allowed_protocol() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(requested(&h).is_none(), "no Connection: upgrade");
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        let up = requested(&h).unwrap();
        assert!(allowed(&["websocket".into()], &up));
        assert!(!allowed(&["h2c".into()], &up));
        assert!(allowed(&["foo".into()], &HeaderValue::from_static("Foo/2")));
    }
}
