//! What the router, the filters and the upstream all see: the request's path
//! normalized per RFC 3986, and its host checked and put in one canonical
//! form, before anything routes on them. Without this, `/hello/../api`,
//! `/x/%2e%2e/api` or `//api` would take a route other than the one the
//! upstream finally serves (Envoy's CVE-2019-9901 class), and so would
//! `admin.example.com.` (the fully-qualified form of a host).
//!
//! Paths: percent-encoded unreserved characters are decoded (`%41` → `A`,
//! `%2e` → `.`) and other escapes upper-cased (§6.2.2); dot segments are
//! removed (§5.2.4; a path that climbs above the root stays at `/`); repeated
//! slashes are merged unless turned off. Refused (400): invalid escapes,
//! backslashes, NUL, `%2F`/`%5C` unless configured to keep or decode them,
//! a dot segment with `;` parameters (`..;`), which RFC 3986 treats as an
//! ordinary segment but Tomcat and Jetty resolve as `..`, and a segment that
//! is only parameters (`/;x/`), which those servers turn into an empty
//! segment and merge away. Other `;`
//! parameters are forwarded, but routes match the path without them (see
//! [`without_parameters`]).
//!
//! Hosts: `host[:port]` with a reg-name, IPv4 or bracketed IPv6 host and a
//! numeric port; one trailing dot is removed (`example.com.` and
//! `example.com` are one name to DNS and to virtual-host servers).

use std::borrow::Cow;
use std::net::Ipv6Addr;

/// What to do with `%2F` (`/`) and `%5C` (`\`) in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Answer 400 (the default): upstreams disagree on whether they separate.
    #[default]
    Reject,
    /// Forward them encoded; they are not separators for routing.
    Keep,
    /// Decode both to `/` before normalizing, so they separate everywhere.
    Decode,
}

/// How paths are normalized (`[paths]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathPolicy {
    /// Merge repeated slashes (`//api` → `/api`); on by default.
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Why a path cannot be normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with `/`")]
    NotAbsolute,
    #[error("the path has a `%` not followed by two hex digits")]
    InvalidEscape,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains an encoded NUL")]
    Nul,
    #[error("the path contains an encoded `/` or `\\`")]
    EscapedSlash,
    #[error("the path has a dot segment with `;` parameters")]
    DotSegmentWithParameters,
    #[error("the path has a segment that is only `;` parameters")]
    EmptySegmentWithParameters,
}

/// `path` (no query) in normalized form; borrowed when already normal, as
/// most paths are. `*` (the target of `OPTIONS *`) is left alone.
pub fn normalize_path(path: &str, policy: PathPolicy) -> Result<Cow<'_, str>, PathError> {
    if path == "*" {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(path.as_bytes(), policy.merge_slashes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path, policy.escaped_slashes)?;
    let normal = remove_dot_segments(&decoded, policy.merge_slashes)?;
    // Unchanged (`/.well-known/x`, `/a%20b`): the caller need not rebuild.
    Ok(if normal == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normal)
    })
}

/// True when `path` needs no work: no escapes, no backslash, no segment
/// starting with `.`, and no empty segment when slashes are merged.
fn is_plain(path: &[u8], merge_slashes: bool) -> bool {
    let mut previous = 0u8;
    for &b in path {
        let after_slash = previous == b'/';
        if b == b'%' || b == b'\\' || (after_slash && (b == b'.' || b == b';' || (merge_slashes && b == b'/'))) {
            return false;
        }
        previous = b;
    }
    true
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decode escaped unreserved characters, upper-case the other escapes and
/// apply the escaped-slash policy; refuse what no upstream reads one way.
fn decode(path: &str, slashes: EscapedSlashes) -> Result<String, PathError> {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (hi, lo) = match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(hi), Some(lo)) => (hi, lo),
                    _ => return Err(PathError::InvalidEscape),
                };
                let value = hi << 4 | lo;
                match value {
                    0 => return Err(PathError::Nul),
                    b'/' | b'\\' => match slashes {
                        EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                        EscapedSlashes::Decode => out.push('/'),
                        EscapedSlashes::Keep => {
                            out.push('%');
                            out.push(char::from(UPPER[usize::from(hi)]));
                            out.push(char::from(UPPER[usize::from(lo)]));
                        }
                    },
                    v if is_unreserved(v) => out.push(char::from(v)),
                    _ => {
                        out.push('%');
                        out.push(char::from(UPPER[usize::from(hi)]));
                        out.push(char::from(UPPER[usize::from(lo)]));
                    }
                }
                i += 3;
            }
            _ => {
                // Copy the run up to the next special byte in one go
                // (keeps any non-ASCII UTF-8 whole).
                let end = bytes[i..]
                    .iter()
                    .position(|b| matches!(b, b'%' | b'\\'))
                    .map_or(bytes.len(), |n| i + n);
                out.push_str(&path[i..end]);
                i = end;
            }
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 over `/`-separated segments, optionally dropping empty
/// ones (merged slashes). The result starts with `/` and has no `.` or `..`
/// segment; it ends with `/` when the input's last segment was empty or a
/// dot segment.
fn remove_dot_segments(path: &str, merge_slashes: bool) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, segment) in segments.into_iter().enumerate() {
        let name = segment.split_once(';').map_or(segment, |(name, _)| name);
        if name != segment && (name == "." || name == "..") {
            return Err(PathError::DotSegmentWithParameters);
        }
        // `/;x/api`: routes match without parameters, where this would be an
        // empty segment (`//api`) that servers stripping parameters merge.
        if name.is_empty() && !segment.is_empty() {
            return Err(PathError::EmptySegmentWithParameters);
        }
        match segment {
            "." | ".." => {
                if segment == ".." {
                    kept.pop();
                }
                trailing_slash |= i == last;
            }
            "" if i == last => trailing_slash = true,
            "" if merge_slashes => {}
            _ => kept.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// `path` with each segment's `;` parameters removed (`/api;v=1/x` →
/// `/api/x`): what routes match against, so a request cannot leave its
/// route through parameters that Tomcat-style servers strip. Borrowed when
/// there are none.
pub fn without_parameters(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split_once(';').map_or(segment, |(name, _)| name));
    }
    Cow::Owned(out)
}

/// Why a `Host` (or `:authority`) cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid host[:port]")]
pub struct InvalidHost;

/// `authority` (`host[:port]`) checked, with one trailing dot removed from
/// its host; borrowed when unchanged.
pub fn normalize_host(authority: &str) -> Result<Cow<'_, str>, InvalidHost> {
    let (host, port) = split_port(authority)?;
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(InvalidHost);
    }
    if let Some(literal) = host.strip_prefix('[') {
        let inner = literal.strip_suffix(']').ok_or(InvalidHost)?;
        inner.parse::<Ipv6Addr>().map_err(|_| InvalidHost)?;
        return Ok(Cow::Borrowed(authority));
    }
    let reg_name = |b: u8| is_unreserved(b) || b"!$&'()*+,;=%".contains(&b);
    let bare = host.strip_suffix('.').unwrap_or(host);
    // No empty labels (`a..b`, `.a`, `a..`): no DNS name has one. One pass
    // over the bytes (this runs per request); a dot right after the start
    // or after another dot, or at the end, ends an empty label.
    let mut after_dot = true;
    for b in bare.bytes() {
        if !reg_name(b) || (b == b'.' && after_dot) {
            return Err(InvalidHost);
        }
        after_dot = b == b'.';
    }
    if after_dot {
        return Err(InvalidHost);
    }
    if bare.len() == host.len() {
        return Ok(Cow::Borrowed(authority));
    }
    Ok(Cow::Owned(match port {
        Some(port) => format!("{bare}:{port}"),
        None => bare.to_string(),
    }))
}

/// `host:port` → (`host`, `Some(port)`); an IPv6 literal keeps its brackets.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), InvalidHost> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or(InvalidHost)?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => rest.strip_prefix(':').map(|p| (host, Some(p))).ok_or(InvalidHost),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

#[cfg(test)]
mod tests;
