//! gRPC awareness for the responses sluice makes itself: recognising a gRPC
//! request, reading its `grpc-timeout`, and answering it with a
//! trailers-only gRPC response (HTTP 200, `grpc-status`, `grpc-message`, no
//! body) so a gRPC client sees a status code instead of a protocol error.

use crate::body::{self, ProxyBody};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use std::time::Duration;

/// The `grpc-status` header (or trailer).
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The `grpc-message` header (or trailer): a percent-encoded description.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The `grpc-timeout` request header: the client's deadline.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC status codes used here (see `grpc/doc/statuscodes.md`).
pub mod code {
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const NOT_FOUND: u32 = 5;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// Headers of a local response worth keeping in its gRPC form: they tell
/// the client how to authenticate or when to come back.
const KEPT_HEADERS: [HeaderName; 2] = [header::WWW_AUTHENTICATE, header::RETRY_AFTER];

/// Whether the request is gRPC: `content-type` is `application/grpc`, or
/// starts with `application/grpc+` (`+proto`, `+json`) or
/// `application/grpc;` (parameters), in any ASCII case. gRPC-Web
/// (`application/grpc-web`) is not.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    const BASE: &[u8] = b"application/grpc";
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let base = value
        .get(..BASE.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(BASE));
    base && matches!(value.get(BASE.len()), None | Some(b'+' | b';'))
}

/// The client's deadline from `grpc-timeout`: 1 to 8 ASCII digits then a
/// unit, `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u`
/// (microseconds) or `n` (nanoseconds). `None` when absent or malformed.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 8 digits: the value and every product below fit in a u64.
    let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    match unit {
        b'H' => Some(Duration::from_secs(n * 3600)),
        b'M' => Some(Duration::from_secs(n * 60)),
        b'S' => Some(Duration::from_secs(n)),
        b'm' => Some(Duration::from_millis(n)),
        b'u' => Some(Duration::from_micros(n)),
        b'n' => Some(Duration::from_nanos(n)),
        _ => None,
    }
}

/// The gRPC status for an HTTP status sluice answers with.
pub fn status_for(http: StatusCode) -> u32 {
    match http.as_u16() {
        400 | 500 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::NOT_FOUND,
        408 | 504 => code::DEADLINE_EXCEEDED,
        429 => code::RESOURCE_EXHAUSTED,
        502 | 503 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// `message` as a `grpc-message` value: bytes outside printable ASCII
/// (0x20..=0x7E), and `%` itself, become `%XX` (upper-case hex).
pub fn encode_message(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
    out
}

/// A trailers-only gRPC response for a local answer of `status`: HTTP 200,
/// `content-type: application/grpc`, `grpc-status` mapped by
/// [`status_for`], `grpc-message` percent-encoded, and an empty body (so
/// HTTP/2 sends it as one HEADERS frame ending the stream).
pub fn local_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(""));
    fill(resp.headers_mut(), status, message);
    resp
}

/// The trailers-only gRPC form of a response sluice already built for an
/// ordinary client (a filter's denial, a [`ProxyError`](crate::error::ProxyError)
/// response). The message is the status's canonical reason (`Forbidden`);
/// the body is dropped; `www-authenticate` and `retry-after` are kept, and
/// so are the response's extensions and version.
pub fn into_grpc(resp: Response<ProxyBody>) -> Response<ProxyBody> {
    let (mut parts, _body) = resp.into_parts();
    let status = parts.status;
    let mut headers = HeaderMap::new();
    for name in KEPT_HEADERS {
        for value in parts.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    fill(&mut headers, status, status.canonical_reason().unwrap_or(""));
    parts.status = StatusCode::OK;
    parts.headers = headers;
    Response::from_parts(parts, body::full(""))
}

/// Set the trailers-only headers for a local answer of `status`.
fn fill(headers: &mut HeaderMap, status: StatusCode, message: &str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(status_for(status)));
    // Always valid: the encoding leaves only printable ASCII.
    if !message.is_empty()
        && let Ok(value) = HeaderValue::from_str(&encode_message(message))
    {
        headers.insert(GRPC_MESSAGE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;

    fn with(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn recognises_grpc_content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc; charset=utf-8",
            "Application/GRPC",
            "APPLICATION/GRPC+PROTO",
        ] {
            assert!(is_grpc(&with("content-type", yes)), "{yes}");
        }
        for no in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/json",
            "application/grp",
            "text/plain",
            "",
        ] {
            assert!(!is_grpc(&with("content-type", no)), "{no}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
        assert!(!is_grpc(&with("x-content-type", "application/grpc")));
    }

    #[test]
    fn parses_grpc_timeout() {
        let cases = [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("15S", Some(Duration::from_secs(15))),
            ("250m", Some(Duration::from_millis(250))),
            ("100u", Some(Duration::from_micros(100))),
            ("7n", Some(Duration::from_nanos(7))),
            ("0m", Some(Duration::ZERO)),
            ("00000001S", Some(Duration::from_secs(1))),
            ("99999999H", Some(Duration::from_secs(99_999_999 * 3600))),
            ("", None),
            ("S", None),
            ("10", None),
            ("10s", None),
            ("10x", None),
            ("123456789S", None),
            ("-1S", None),
            ("+1S", None),
            (" 1S", None),
            ("1 S", None),
            ("1.5S", None),
        ];
        for (value, want) in cases {
            assert_eq!(timeout(&with("grpc-timeout", value)), want, "{value:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn maps_http_statuses() {
        let cases = [
            (400, code::INTERNAL),
            (401, code::UNAUTHENTICATED),
            (403, code::PERMISSION_DENIED),
            (404, code::NOT_FOUND),
            (408, code::DEADLINE_EXCEEDED),
            (429, code::RESOURCE_EXHAUSTED),
            (500, code::INTERNAL),
            (502, code::UNAVAILABLE),
            (503, code::UNAVAILABLE),
            (504, code::DEADLINE_EXCEEDED),
            (200, code::UNKNOWN),
            (405, code::UNKNOWN),
            (413, code::UNKNOWN),
            (501, code::UNKNOWN),
        ];
        for (http, want) in cases {
            assert_eq!(status_for(StatusCode::from_u16(http).unwrap()), want, "{http}");
        }
    }

    #[test]
    fn percent_encodes_messages() {
        assert_eq!(encode_message("upstream unreachable"), "upstream unreachable");
        assert_eq!(encode_message("100% sure"), "100%25 sure");
        assert_eq!(encode_message("a\nb\t"), "a%0Ab%09");
        assert_eq!(encode_message("café"), "caf%C3%A9");
        assert_eq!(encode_message("~\u{7f}"), "~%7F");
        assert_eq!(encode_message(""), "");
    }

    #[test]
    fn local_response_is_trailers_only() {
        let resp = local_response(StatusCode::SERVICE_UNAVAILABLE, "upstream overloaded: 100%\n");
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "14");
        assert_eq!(h["grpc-message"], "upstream overloaded: 100%25%0A");
        assert!(resp.body().is_end_stream());
    }

    #[test]
    fn local_response_without_message_has_no_message_header() {
        let resp = local_response(StatusCode::NOT_FOUND, "");
        assert_eq!(resp.headers()["grpc-status"], "5");
        assert!(resp.headers().get("grpc-message").is_none());
    }

    #[test]
    fn converts_built_responses() {
        let mut built = Response::new(body::full("RBAC: access denied\n"));
        *built.status_mut() = StatusCode::UNAUTHORIZED;
        let h = built.headers_mut();
        h.insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
        h.insert("content-length", HeaderValue::from_static("20"));
        h.insert("www-authenticate", HeaderValue::from_static("Bearer realm=\"api\""));
        h.append("www-authenticate", HeaderValue::from_static("Basic"));
        h.insert("retry-after", HeaderValue::from_static("3"));
        h.insert("x-other", HeaderValue::from_static("dropped"));
        built.extensions_mut().insert(42u8);

        let resp = into_grpc(built);
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "16");
        assert_eq!(h["grpc-message"], "Unauthorized");
        let auth: Vec<_> = h.get_all("www-authenticate").iter().collect();
        assert_eq!(auth, ["Bearer realm=\"api\"", "Basic"]);
        assert_eq!(h["retry-after"], "3");
        assert!(h.get("content-length").is_none());
        assert!(h.get("x-other").is_none());
        assert_eq!(resp.extensions().get::<u8>(), Some(&42));
        assert!(resp.body().is_end_stream());
    }

    #[test]
    fn converts_denials_and_gateway_errors() {
        for (http, grpc, message) in [
            (403, "7", "Forbidden"),
            (502, "14", "Bad Gateway"),
            (503, "14", "Service Unavailable"),
            (504, "4", "Gateway Timeout"),
            (404, "5", "Not Found"),
        ] {
            let mut built = Response::new(body::full("x\n"));
            *built.status_mut() = StatusCode::from_u16(http).unwrap();
            let resp = into_grpc(built);
            assert_eq!(resp.status(), StatusCode::OK, "{http}");
            assert_eq!(resp.headers()["grpc-status"], grpc, "{http}");
            assert_eq!(resp.headers()["grpc-message"], message, "{http}");
        }
    }
}
