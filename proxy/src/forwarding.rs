//! What a proxy must change on a message it forwards: hop-by-hop headers
//! out (RFC 9110 §7.6.1), `X-Forwarded-For`, `X-Forwarded-Proto`,
//! `Forwarded` (RFC 7239) and `Via` (RFC 9110 §7.6.3) in; and in a mesh,
//! the caller's verified identity as Envoy's `X-Forwarded-Client-Cert`.

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

/// Headers that describe one connection, never the message, and
/// `Transfer-Encoding` (hyper frames the body itself). `Connection` comes
/// first: `strip_hop_by_hop` reads it as bit 0.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Where `TE` sits in `HOP_BY_HOP`.
const TE_INDEX: usize = 5;

/// Envoy's header for the caller's client certificate.
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Replace any `X-Forwarded-Client-Cert` the client sent with the one this
/// hop vouches for: `By=<our SPIFFE ID>;Hash=<SHA-256 of the caller's
/// certificate>;URI=<the caller's SPIFFE ID>`, when the caller presented a
/// verified certificate with a SPIFFE ID; else none.
pub fn set_client_cert(headers: &mut HeaderMap, by: &str, peer: Option<&crate::connection::PeerIdentity>) {
    headers.remove(XFCC);
    let Some((peer, uri)) = peer.and_then(|p| Some((p, p.spiffe_id.as_deref()?))) else {
        return;
    };
    let value = format!("By={by};Hash={};URI={uri}", peer.cert_sha256);
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(XFCC, value);
    }
}

/// Remove hop-by-hop headers: the fixed list, `Transfer-Encoding` (hyper
/// frames the body itself) and every header the `Connection` header names.
/// `TE: trailers` survives, as gRPC over HTTP/2 needs it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (no hashing) finds which of the list are
    // there; only those are looked up again to go. Most requests carry
    // none; most upstream responses carry `Connection: keep-alive`, which
    // then costs two removals rather than a dozen.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection` is first in the list. Usually it lists only names of the
    // list (`keep-alive`, `close`), found on the borrowed values; only when
    // it names another are the values copied (a reference count each), so
    // those names can be removed by `&str`.
    if present & 1 != 0
        && names_beyond_the_list(headers.get_all(header::CONNECTION).iter())
            .next()
            .is_some()
    {
        let values: Vec<HeaderValue> = headers.get_all(header::CONNECTION).iter().cloned().collect();
        for name in names_beyond_the_list(values.iter()) {
            headers.remove(name);
        }
    }
    let te_trailers = present & (1 << TE_INDEX) != 0
        && headers.get_all(header::TE).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
        });
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The names `Connection` values list that are not in `HOP_BY_HOP`.
fn names_beyond_the_list<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> impl Iterator<Item = &'a str> {
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !HOP_BY_HOP.iter().any(|h| h.as_str().eq_ignore_ascii_case(t)))
}

/// The `Via` entry for a message received with `version`.
fn via_entry(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "1.0 sluice",
        Version::HTTP_2 => "2 sluice",
        Version::HTTP_3 => "3 sluice",
        _ => "1.1 sluice",
    }
}

/// Append this hop to `Via`.
pub fn append_via(headers: &mut HeaderMap, received: Version) {
    headers.append(header::VIA, HeaderValue::from_static(via_entry(received)));
}

/// Add the forwarding headers to a request about to go upstream.
/// `proto` is `http` or `https`; `host` the authority the client asked for.
/// Every request pays for this, so the values are written straight into
/// byte buffers rather than through `format!`.
pub fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr, proto: &'static str, host: Option<&str>) {
    let mut ip = Vec::with_capacity(40);
    write_ip(&mut ip, client.ip());
    let xff = match headers.get(X_FORWARDED_FOR).map(|v| v.as_bytes().trim_ascii()) {
        Some(prior) if !prior.is_empty() => HeaderValue::from_bytes(&[prior, b", ", &ip].concat()),
        _ => HeaderValue::from_bytes(&ip),
    };
    if let Ok(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    let proto_value = match proto {
        "http" => Ok(HeaderValue::from_static("http")),
        "https" => Ok(HeaderValue::from_static("https")),
        other => HeaderValue::from_str(other),
    };
    if let Ok(v) = proto_value {
        headers.insert(X_FORWARDED_PROTO, v);
    }
    let host = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"'));
    // RFC 7239: IPv6 addresses are quoted and bracketed.
    let (open, close): (&[u8], &[u8]) = if client.is_ipv6() { (b"\"[", b"]\"") } else { (b"", b"") };
    // Sized exactly, so the header value takes the buffer over as it is.
    let len = b"for=".len()
        + open.len()
        + ip.len()
        + close.len()
        + b";proto=".len()
        + proto.len()
        + host.map_or(0, |h| b";host=\"\"".len() + h.len());
    let mut element = Vec::with_capacity(len);
    element.extend_from_slice(b"for=");
    element.extend_from_slice(open);
    element.extend_from_slice(&ip);
    element.extend_from_slice(close);
    element.extend_from_slice(b";proto=");
    element.extend_from_slice(proto.as_bytes());
    if let Some(host) = host {
        element.extend_from_slice(b";host=\"");
        element.extend_from_slice(host.as_bytes());
        element.push(b'"');
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(element)) {
        headers.append(header::FORWARDED, v);
    }
}

/// `ip` in its usual text form: IPv4 digit by digit (the common case, and
/// several times cheaper than `Display`), IPv6 through `Display`.
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_header_is_this_hops_own() {
        let peer = crate::connection::PeerIdentity {
            spiffe_id: Some("spiffe://td/ns/a/sa/a".into()),
            cert_sha256: "ab12".into(),
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.append(XFCC, HeaderValue::from_static("By=evil;URI=spiffe://td/ns/x/sa/x"));
        h.append(XFCC, HeaderValue::from_static("By=more"));
        set_client_cert(&mut h, "spiffe://td/ns/b/sa/b", Some(&peer));
        let all: Vec<_> = h.get_all(XFCC).iter().collect();
        assert_eq!(all, ["By=spiffe://td/ns/b/sa/b;Hash=ab12;URI=spiffe://td/ns/a/sa/a"]);
        // No verified caller (plaintext, permissive): none at all.
        set_client_cert(&mut h, "spiffe://td/ns/b/sa/b", None);
        assert!(h.get(XFCC).is_none());
        let no_spiffe = crate::connection::PeerIdentity::default();
        h.append(XFCC, HeaderValue::from_static("By=evil"));
        set_client_cert(&mut h, "spiffe://td/ns/b/sa/b", Some(&no_spiffe));
        assert!(h.get(XFCC).is_none());
    }

    #[test]
    fn strips_listed_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep", "te"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn forwarded_headers_append() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        add_forwarded(
            &mut h,
            "[2001:db8::1]:5000".parse().unwrap(),
            "http",
            Some("api.example.com"),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 2001:db8::1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["forwarded"],
            "for=\"[2001:db8::1]\";proto=http;host=\"api.example.com\""
        );
        append_via(&mut h, Version::HTTP_2);
        assert_eq!(h["via"], "2 sluice");
    }

    #[test]
    fn forwarded_headers_for_ipv4_without_prior_hops() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("  "));
        add_forwarded(&mut h, "10.0.255.7:41000".parse().unwrap(), "https", Some("bad\"host"));
        assert_eq!(h["x-forwarded-for"], "10.0.255.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        // A host that cannot be quoted is left out.
        assert_eq!(h["forwarded"], "for=10.0.255.7;proto=https");
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.99.100.255",
            "192.168.0.10",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn message_without_hop_by_hop_headers_is_untouched() {
        let mut h = HeaderMap::new();
        h.insert("te-not", HeaderValue::from_static("x"));
        h.append("x-keep", HeaderValue::from_static("1"));
        h.append("x-keep", HeaderValue::from_static("2"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
        // A lone Transfer-Encoding still goes.
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn connection_named_headers_go_whatever_their_case_and_te_trailers_stays() {
        assert_eq!(HOP_BY_HOP[0], header::CONNECTION);
        assert_eq!(HOP_BY_HOP[TE_INDEX], header::TE);
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static(" X-Hop-One ,TE, close,"));
        h.append("connection", HeaderValue::from_static("x-hop-two, not a name"));
        h.insert("x-hop-one", HeaderValue::from_static("1"));
        h.insert("x-hop-two", HeaderValue::from_static("2"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("close", HeaderValue::from_static("a header named close is listed too"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep", "te"]);
        assert_eq!(h["te"], "trailers");
        // Without `trailers`, TE goes whole.
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("te").is_none());
        assert_eq!(h.len(), 1);
    }
}
