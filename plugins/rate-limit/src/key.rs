//! Bucket keys: what a request is keyed on, and the bucket key of a
//! (limit, request) pair (in the store's bucket key space, apart from its
//! values).
//!
//! A key is `rl:<limit prefix><request section>`:
//!
//! * the limit prefix is `<name length>:<name>:<T ns>:<τ ns>:`, so two limits
//!   that differ in name, rate or burst never share a bucket, while the same
//!   limit configured on two routes (without a `route` key part) does;
//! * the request section is each key part's value as `<byte length>:<value>`,
//!   joined with `|`. The length prefixes make it unambiguous whatever the
//!   values contain. A section longer than [`MAX_SECTION_BYTES`] or with bytes
//!   outside printable ASCII is replaced by `#` and a 128-bit FNV-1a hash in
//!   hex, so keys stay short (well under the host's 1 KiB key limit: at most
//!   about 250 bytes) and valid UTF-8.

use sluice_sdk::{Request, context};
use std::fmt::Write as _;

/// The longest request section kept literally; longer ones are hashed.
const MAX_SECTION_BYTES: usize = 128;

/// One part of the bucket key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyPart {
    /// The client's IP address, without the port.
    ClientIp,
    /// The name of the matched route.
    Route,
    /// The first value of a request header (lower-case name); empty if absent.
    Header(String),
    /// A request context value set by an earlier filter; empty if absent.
    Context(String),
}

impl KeyPart {
    /// Parse `client_ip`, `route`, `header:<name>` or `context:<key>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "client_ip" {
            return Ok(KeyPart::ClientIp);
        }
        if text == "route" {
            return Ok(KeyPart::Route);
        }
        if let Some(name) = text.strip_prefix("header:") {
            if !sluice_sdk::is_header_name(name) {
                return Err(format!("`{text}`: `{name}` is not a valid header name"));
            }
            return Ok(KeyPart::Header(name.to_ascii_lowercase()));
        }
        if let Some(key) = text.strip_prefix("context:") {
            if key.is_empty() {
                return Err(format!("`{text}`: the context key is empty"));
            }
            return Ok(KeyPart::Context(key.to_string()));
        }
        Err(format!(
            r#"unknown key part `{text}`: expected "client_ip", "route", "header:<name>" or "context:<key>""#
        ))
    }

    /// This part's value for the current request.
    fn value(&self, req: &Request) -> Vec<u8> {
        match self {
            KeyPart::ClientIp => req.client_ip().into_bytes(),
            KeyPart::Route => req.route().into_bytes(),
            KeyPart::Header(name) => req.header_bytes(name).unwrap_or_default(),
            KeyPart::Context(key) => context::get(key).unwrap_or_default().into_bytes(),
        }
    }

    /// A stable description, for the configuration fingerprint.
    pub fn describe(&self) -> String {
        match self {
            KeyPart::ClientIp => "client_ip".into(),
            KeyPart::Route => "route".into(),
            KeyPart::Header(name) => format!("header:{name}"),
            KeyPart::Context(key) => format!("context:{key}"),
        }
    }
}

/// The request section of the key: every part's value, length-prefixed.
pub(crate) fn request_section(parts: &[KeyPart], req: &Request) -> String {
    let mut raw = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            raw.push(b'|');
        }
        let value = part.value(req);
        push_decimal(&mut raw, value.len());
        raw.push(b':');
        raw.extend_from_slice(&value);
    }
    encode_section(raw)
}

/// Append `n` in decimal (what `to_string` writes, without the formatting
/// machinery and its allocation, on every request).
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Keep a short printable section as is; hash anything else. A literal section
/// is empty or starts with a digit, a hashed one with `#`: they never collide.
fn encode_section(raw: Vec<u8>) -> String {
    if raw.len() <= MAX_SECTION_BYTES && raw.iter().all(|b| matches!(b, b' '..=b'~')) {
        // Printable ASCII is valid UTF-8.
        return String::from_utf8(raw).unwrap_or_default();
    }
    format!("#{:032x}", fnv1a_128(&raw))
}

/// The start of the keys of one limit: `rl:<name length>:<name>:<T>:<τ>:`.
pub(crate) fn limit_prefix(name: &str, interval: u64, tolerance: u64) -> String {
    let mut prefix = String::with_capacity(16 + name.len() + 40);
    let _ = write!(prefix, "rl:{}:{name}:{interval}:{tolerance}:", name.len());
    prefix
}

/// 128-bit FNV-1a: stable across builds and instances, which is what a shared
/// key needs. It is not a cryptographic hash (see the README on keying).
pub(crate) fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes
        .iter()
        .fold(OFFSET, |hash, b| (hash ^ u128::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_lengths_match_to_string() {
        for n in [0, 7, 10, 99, 128, 1000, 65535, usize::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn key_parts_parse() {
        assert_eq!(KeyPart::parse("client_ip"), Ok(KeyPart::ClientIp));
        assert_eq!(KeyPart::parse("route"), Ok(KeyPart::Route));
        assert_eq!(
            KeyPart::parse("header:X-Api-Key"),
            Ok(KeyPart::Header("x-api-key".into()))
        );
        assert_eq!(
            KeyPart::parse("context:auth.subject"),
            Ok(KeyPart::Context("auth.subject".into()))
        );
        for bad in ["ip", "header:", "header:bad name", "context:", "Client_IP", ""] {
            assert!(KeyPart::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sections_are_unambiguous_and_bounded() {
        let a = encode_section(b"3:a|b|1:c".to_vec());
        let b = encode_section(b"1:a|3:b|c".to_vec());
        assert_ne!(a, b);
        assert_eq!(a, "3:a|b|1:c");
        let long = encode_section(vec![b'x'; 1000]);
        assert_eq!(long.len(), 33);
        assert!(long.starts_with('#'));
        assert_ne!(long, encode_section(vec![b'x'; 1001]));
        let binary = encode_section(vec![0xff, b'\n']);
        assert!(binary.starts_with('#'));
        let longest = limit_prefix(&"n".repeat(64), u64::MAX, u64::MAX);
        assert!(longest.len() + long.len().max(MAX_SECTION_BYTES) <= 256);
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        // Published FNV-1a 128-bit test vectors.
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }
}
