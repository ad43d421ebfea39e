//! API keys: taken from a header or a query parameter, compared by SHA-256
//! digest in constant time. Keys given in plain text are hashed when the
//! configuration loads; only digests are kept.

use crate::config::{self, ApiKeySettings};
use sha2::{Digest, Sha256};
use sluice_sdk::{HostError, Request};
use subtle::ConstantTimeEq;

pub(crate) struct ApiKeys {
    header: String,
    query: Option<String>,
    /// (SHA-256 of the key, id).
    keys: Vec<([u8; 32], String)>,
}

impl ApiKeys {
    pub(crate) fn from_settings(s: &ApiKeySettings) -> Result<Self, String> {
        let header = config::header_name("api_keys.header", &s.header)?;
        if let Some(q) = &s.query {
            config::quotable("api_keys.query", q)?;
            if q.bytes().any(|b| matches!(b, b'&' | b'=' | b'#' | b'%' | b'+' | b' ')) {
                return Err(format!("api_keys.query: `{q}` is not a plain query parameter name"));
            }
        }
        if s.keys.is_empty() {
            return Err("api_keys.keys: no keys".into());
        }
        let mut keys: Vec<([u8; 32], String)> = Vec::with_capacity(s.keys.len());
        for (i, entry) in s.keys.iter().enumerate() {
            let path = format!("api_keys.keys[{i}]");
            if entry.id.is_empty() || entry.id.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!("{path}.id: must be non-empty text without control characters"));
            }
            let digest = match (&entry.key, &entry.sha256) {
                (Some(key), None) if key.is_empty() => return Err(format!("{path}.key: must not be empty")),
                (Some(key), None) => sha256(key),
                (None, Some(hex)) => {
                    decode_hex32(hex).ok_or_else(|| format!("{path}.sha256: expected 64 hexadecimal characters"))?
                }
                _ => return Err(format!("{path}: give exactly one of `key` or `sha256`")),
            };
            if keys.iter().any(|(d, _)| *d == digest) {
                return Err(format!("{path}: the same key is listed twice"));
            }
            keys.push((digest, entry.id.clone()));
        }
        Ok(ApiKeys {
            header,
            query: s.query.clone(),
            keys,
        })
    }

    pub(crate) fn header(&self) -> &str {
        &self.header
    }

    pub(crate) fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The key the request presents: the header, else the query parameter.
    pub(crate) fn presented(&self, req: &Request) -> Option<String> {
        if let Some(value) = req.header(&self.header) {
            return Some(value);
        }
        let name = self.query.as_deref()?;
        query_value(&req.path(), name)
    }

    /// The id of the key, if it is one of ours. Every configured digest is
    /// compared, without stopping at a match.
    pub(crate) fn check(&self, presented: &str) -> Option<String> {
        let digest = sha256(presented);
        let mut found = None;
        for (candidate, id) in &self.keys {
            if bool::from(candidate.ct_eq(&digest)) {
                found = Some(id);
            }
        }
        found.cloned()
    }

    /// Remove the header and the query parameter before forwarding.
    pub(crate) fn strip(&self, req: &mut Request) -> Result<(), HostError> {
        req.remove_header(&self.header)?;
        if let Some(name) = &self.query
            && let Some(path) = strip_query_param(&req.path(), name)
        {
            req.set_path(&path)?;
        }
        Ok(())
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Decode `%XX` escapes; `+` stays `+` (API keys are often base64). Invalid
/// escapes are kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string of a path, if any.
fn query(path: &str) -> Option<(&str, &str)> {
    path.split_once('?')
}

fn pair_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(name, _)| name)
}

/// The first value of a query parameter.
fn query_value(path: &str, name: &str) -> Option<String> {
    let (_, q) = query(path)?;
    q.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// The path without any occurrence of the parameter, if it had one.
fn strip_query_param(path: &str, name: &str) -> Option<String> {
    let (base, q) = query(path)?;
    let kept: Vec<&str> = q
        .split('&')
        .filter(|pair| percent_decode(pair_name(pair)) != name)
        .collect();
    if kept.len() == q.split('&').count() {
        return None;
    }
    let kept: Vec<&str> = kept.into_iter().filter(|p| !p.is_empty()).collect();
    Some(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decoding() {
        let hex = "00ff".repeat(16);
        assert_eq!(decode_hex32(&hex).map(|d| d[1]), Some(0xff));
        assert_eq!(decode_hex32(&hex.to_uppercase()).map(|d| d[1]), Some(0xff));
        assert!(decode_hex32(&"0".repeat(63)).is_none());
        assert!(decode_hex32(&"g".repeat(64)).is_none());
        assert!(decode_hex32("é").is_none());
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            query_value("/a?x=1&api_key=s%2Fk+y", "api_key").as_deref(),
            Some("s/k+y")
        );
        assert_eq!(query_value("/a?api%5Fkey=v", "api_key").as_deref(), Some("v"));
        assert_eq!(query_value("/a?api_key", "api_key").as_deref(), Some(""));
        assert_eq!(query_value("/a?x=%zz", "x").as_deref(), Some("%zz"));
        assert_eq!(query_value("/a", "api_key"), None);
        assert_eq!(query_value("/a?api_keys=v", "api_key"), None);

        assert_eq!(
            strip_query_param("/a?x=1&api_key=s&y=2", "api_key").as_deref(),
            Some("/a?x=1&y=2")
        );
        assert_eq!(
            strip_query_param("/a?api_key=s&api_key=t", "api_key").as_deref(),
            Some("/a")
        );
        assert_eq!(strip_query_param("/a?x=1", "api_key"), None);
        assert_eq!(strip_query_param("/a", "api_key"), None);
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%4"), "a%4");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
