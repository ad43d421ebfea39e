//! Protocol upgrades a route lists (`upgrades = ["websocket"]`): HTTP/1.1
//! `Upgrade`, and WebSocket over HTTP/2 by extended CONNECT (RFC 8441),
//! which goes upstream as an HTTP/1.1 WebSocket handshake. The handshake
//! passes the router and the request filters like any request; once the
//! upstream answers 101, the two connections are joined and bytes flow both
//! ways until either side closes.

use crate::error::ProxyError;
use crate::upstream::{Held, UpstreamBody};
use base64::Engine;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use hyper::ext::Protocol;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::time::Instant;

/// A request switching protocols on a route that allows it.
#[derive(Debug)]
pub struct Pending {
    kind: Kind,
    downstream: OnUpgrade,
}

#[derive(Debug)]
enum Kind {
    /// HTTP/1.1 `Connection: upgrade` with this `Upgrade` value.
    Http1(HeaderValue),
    /// HTTP/2 extended CONNECT with `:protocol = websocket` (RFC 8441),
    /// sent upstream as an HTTP/1.1 WebSocket handshake.
    H2WebSocket,
}

/// How the response to a switched request must be fixed once hop-by-hop
/// headers are stripped from it.
#[derive(Debug)]
pub struct Switched(Kind);

/// The upgrade `parts` asks for, if `allowed` lists its protocol; takes
/// the client connection's upgrade handle out of the request.
pub fn take(parts: &mut http::request::Parts, allowed: &[String]) -> Option<Pending> {
    if allowed.is_empty() {
        return None;
    }
    let kind = if parts.method == Method::CONNECT {
        let protocol = parts.extensions.get::<Protocol>()?;
        if !(protocol.as_str().eq_ignore_ascii_case("websocket") && allowed.iter().any(|a| a == "websocket")) {
            return None;
        }
        Kind::H2WebSocket
    } else {
        let upgrade = requested(&parts.headers)?;
        if !is_allowed(allowed, &upgrade) {
            return None;
        }
        Kind::Http1(upgrade)
    };
    let downstream = parts.extensions.remove::<OnUpgrade>()?;
    Some(Pending { kind, downstream })
}

impl Pending {
    /// Make the (hop-by-hop stripped) request ask the upstream to switch:
    /// the client's `Upgrade` again, or for an HTTP/2 WebSocket the
    /// HTTP/1.1 handshake (RFC 6455 §4.1) in its place.
    pub fn prepare(&self, parts: &mut http::request::Parts) {
        let upgrade = match &self.kind {
            Kind::Http1(upgrade) => upgrade.clone(),
            Kind::H2WebSocket => {
                parts.method = Method::GET;
                parts.extensions.remove::<Protocol>();
                let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
                if let Ok(key) = HeaderValue::from_str(&key) {
                    parts.headers.insert(header::SEC_WEBSOCKET_KEY, key);
                }
                HeaderValue::from_static("websocket")
            }
        };
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, upgrade);
    }

    /// If the upstream switched (101), join the two connections in the
    /// background until `deadline`; the tunnel keeps the request's places
    /// under the cluster's limits. An HTTP/2 client must not see any other
    /// 2xx (hyper would take it as the tunnel opening), so an upstream
    /// that answers the WebSocket handshake with one is a bad gateway.
    pub fn answer(
        self,
        response: &mut Response<UpstreamBody>,
        deadline: Option<Instant>,
        route: Arc<str>,
    ) -> Result<Option<Switched>, ProxyError> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            if matches!(self.kind, Kind::H2WebSocket) && response.status().is_success() {
                return Err(ProxyError::UpgradeRefused {
                    status: response.status().as_u16(),
                });
            }
            return Ok(None);
        }
        let Some(upstream) = response.extensions_mut().remove::<OnUpgrade>() else {
            return Ok(None);
        };
        let held = response.body_mut().take_held();
        tunnel(self.downstream, upstream, deadline, route, held);
        Ok(Some(Switched(self.kind)))
    }
}

impl Switched {
    /// The client's view of the switch: `101` with `Upgrade` for HTTP/1.1;
    /// `200` for HTTP/2, which has no connection headers (RFC 8441 §5).
    pub fn apply(self, parts: &mut http::response::Parts) {
        match self.0 {
            Kind::Http1(upgrade) => {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                parts.headers.insert(header::UPGRADE, upgrade);
            }
            Kind::H2WebSocket => {
                parts.status = StatusCode::OK;
                parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            }
        }
    }
}

/// The `Upgrade` a request asks for, when its `Connection` header names it.
fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
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
fn is_allowed(allowed: &[String], upgrade: &HeaderValue) -> bool {
    let Ok(text) = upgrade.to_str() else { return false };
    // One protocol, optionally with a version: `websocket`, `foo/2`.
    let protocol = text.split([',', '/']).next().unwrap_or("").trim();
    allowed.iter().any(|a| a.eq_ignore_ascii_case(protocol))
}

/// Join the client's and the upstream's upgraded connections in the
/// background, for at most `limit`.
fn tunnel(downstream: OnUpgrade, upstream: OnUpgrade, deadline: Option<Instant>, route: Arc<str>, held: Held) {
    tokio::spawn(async move {
        let _held = held;
        let (client, server) = match tokio::try_join!(downstream, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(%route, error = %e, "upgrade did not complete");
                return;
            }
        };
        let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
        let result = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, copy).await {
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
        assert!(is_allowed(&["websocket".into()], &up));
        assert!(!is_allowed(&["h2c".into()], &up));
        assert!(is_allowed(&["foo".into()], &HeaderValue::from_static("Foo/2")));
    }
}
