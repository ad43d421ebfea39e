//! Where a sticky key comes from, cookie lookup and the stable hash that
//! maps a key to a cluster the same way on every replica and every restart.

use sluice_sdk::{Request, context};

/// A request value to hash for sticky assignment.
#[derive(Debug, PartialEq)]
pub enum KeySource {
    ClientIp,
    Header(String),
    Cookie(String),
    Context(String),
}

impl KeySource {
    /// Parse `client_ip`, `header:<name>`, `cookie:<name>` or `context:<key>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let source = match text.split_once(':') {
            None if text == "client_ip" => KeySource::ClientIp,
            Some(("header", name)) if !name.is_empty() => KeySource::Header(name.to_ascii_lowercase()),
            Some(("cookie", name)) if !name.is_empty() => KeySource::Cookie(name.to_string()),
            Some(("context", key)) if !key.is_empty() => KeySource::Context(key.to_string()),
            _ => {
                return Err(format!(
                    "`{text}` is not a key: use client_ip, header:<name>, cookie:<name> or context:<key>"
                ));
            }
        };
        Ok(source)
    }

    /// The key's value for this request, if present.
    pub fn read(&self, req: &Request) -> Option<String> {
        match self {
            KeySource::ClientIp => Some(req.client_ip()),
            KeySource::Header(name) => req.header(name),
            KeySource::Cookie(name) => cookie(req, name),
            KeySource::Context(key) => context::get(key),
        }
    }
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub fn cookie(req: &Request, name: &str) -> Option<String> {
    req.header_all("cookie").iter().find_map(|line| {
        String::from_utf8_lossy(line).split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"').to_string())
        })
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV-1a (64 bit) followed by a finaliser that spreads the bits: fixed by
/// definition, so the same key lands on the same cluster everywhere.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = fnv1a(bytes);
    // splitmix64 finaliser: FNV's high bits are weak for short keys.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fixed() {
        // FNV-1a test vectors from the reference implementation.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        // Pinned: a change here would move every sticky user to another cluster.
        assert_eq!(stable_hash(b"alice"), 14_254_268_223_963_220_572);
        assert_ne!(stable_hash(b"alice"), stable_hash(b"bob"));
    }

    #[test]
    fn parses_sources() {
        assert_eq!(KeySource::parse("client_ip"), Ok(KeySource::ClientIp));
        assert_eq!(
            KeySource::parse("header:X-User"),
            Ok(KeySource::Header("x-user".into()))
        );
        assert!(KeySource::parse("header:").is_err());
        assert!(KeySource::parse("ip").is_err());
    }
}
