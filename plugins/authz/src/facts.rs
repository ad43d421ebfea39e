//! What the rules look at, read from the host lazily: each attribute is
//! fetched on first use and kept for the rest of the request, so a request
//! costs only the host calls its rules actually need, once each.

use sluice_sdk::{PeerIdentity, Request, connection, context};
use std::cell::OnceCell;
use std::net::{IpAddr, SocketAddr};

/// The context key the `auth` filter stores the subject under.
pub(crate) const SUBJECT_KEY: &str = "auth.subject";

/// A claim's value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// A string, number or boolean claim, as text.
    Text(String),
    /// An array claim's elements.
    List(Vec<String>),
}

/// One request's attributes, each read at most once.
pub(crate) struct Facts<'a> {
    req: &'a Request,
    /// Context keys of the claims the rules use, by slot.
    claim_keys: &'a [String],
    /// Context keys of the same claims' array elements, by slot.
    claim_list_keys: &'a [String],
    /// Header names the rules use (lower case), by slot.
    header_names: &'a [String],
    method: OnceCell<String>,
    path: OnceCell<String>,
    authority: OnceCell<Option<String>>,
    client_ip: OnceCell<Option<IpAddr>>,
    peer: OnceCell<Option<PeerIdentity>>,
    subject: OnceCell<Option<String>>,
    claims: Vec<OnceCell<Option<Claim>>>,
    headers: Vec<OnceCell<Vec<Vec<u8>>>>,
}

impl<'a> Facts<'a> {
    pub(crate) fn new(
        req: &'a Request,
        claim_keys: &'a [String],
        claim_list_keys: &'a [String],
        header_names: &'a [String],
    ) -> Self {
        Facts {
            req,
            claim_keys,
            claim_list_keys,
            header_names,
            method: OnceCell::new(),
            path: OnceCell::new(),
            authority: OnceCell::new(),
            client_ip: OnceCell::new(),
            peer: OnceCell::new(),
            subject: OnceCell::new(),
            claims: claim_keys.iter().map(|_| OnceCell::new()).collect(),
            headers: header_names.iter().map(|_| OnceCell::new()).collect(),
        }
    }

    /// The method.
    pub(crate) fn method(&self) -> &str {
        self.method.get_or_init(|| self.req.method())
    }

    /// The normalized path, without the query.
    pub(crate) fn path(&self) -> &str {
        let full = self.path.get_or_init(|| self.req.path());
        full.split_once('?').map_or(full.as_str(), |(path, _)| path)
    }

    /// The host of the authority, without the port (case as sent).
    pub(crate) fn host(&self) -> Option<&str> {
        self.authority
            .get_or_init(|| self.req.authority())
            .as_deref()
            .map(host_part)
    }

    /// The client's IP address, canonical (IPv4-mapped IPv6 as IPv4);
    /// `None` if the host's client address is not an IP address.
    pub(crate) fn client_ip(&self) -> Option<IpAddr> {
        *self.client_ip.get_or_init(|| parse_ip(&self.req.client_address()))
    }

    /// The verified client certificate's identity (mutual TLS only).
    pub(crate) fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.get_or_init(connection::peer).as_ref()
    }

    /// `auth.subject` from the context.
    pub(crate) fn subject(&self) -> Option<&str> {
        self.subject.get_or_init(|| context::get(SUBJECT_KEY)).as_deref()
    }

    /// The claim in `slot`, as the `auth` filter left it in the context:
    /// its elements when it is an array (`auth.claim_list.<name>`, a JSON
    /// array), else its text (`auth.claim.<name>`).
    pub(crate) fn claim(&self, slot: usize) -> Option<&Claim> {
        let (cell, key) = (self.claims.get(slot)?, self.claim_keys.get(slot)?);
        let list_key = self.claim_list_keys.get(slot)?;
        cell.get_or_init(|| {
            let list = context::get(list_key).and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok());
            match list {
                Some(items) => Some(Claim::List(items)),
                None => context::get(key).map(Claim::Text),
            }
        })
        .as_ref()
    }

    /// Every value of the header in `slot`.
    pub(crate) fn header(&self, slot: usize) -> &[Vec<u8>] {
        match (self.headers.get(slot), self.header_names.get(slot)) {
            (Some(cell), Some(name)) => cell.get_or_init(|| self.req.header_all(name)),
            _ => &[],
        }
    }
}

/// The host of an authority: `api.example.com:8443` → `api.example.com`,
/// `[::1]:443` → `[::1]`.
pub(crate) fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// `ip:port` or a bare IP, canonical; `None` for anything else.
fn parse_ip(address: &str) -> Option<IpAddr> {
    let ip = match address.parse::<SocketAddr>() {
        Ok(socket) => socket.ip(),
        Err(_) => address.parse::<IpAddr>().ok()?,
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_part("api.example.com:8443"), "api.example.com");
        assert_eq!(host_part("api.example.com"), "api.example.com");
        assert_eq!(host_part("[::1]:443"), "[::1]");
        assert_eq!(host_part("[::1]"), "[::1]");
        assert_eq!(host_part("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(host_part("a:b"), "a:b");
    }

    #[test]
    fn client_addresses_parse_canonically() {
        assert_eq!(parse_ip("10.0.0.1:5000"), "10.0.0.1".parse().ok());
        assert_eq!(parse_ip("[::ffff:10.0.0.1]:5000"), "10.0.0.1".parse().ok());
        assert_eq!(parse_ip("[2001:db8::1]:443"), "2001:db8::1".parse().ok());
        assert_eq!(parse_ip("::1"), "::1".parse().ok());
        assert_eq!(parse_ip("unix:/tmp/sock"), None);
    }
}
