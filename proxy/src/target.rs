//! The request's target as routing, filters and the upstream see it: the
//! authority (from the request target or the one `Host` line, checked and
//! normalized) and the path (normalized per `[paths]`). RFC 9112 §3.2: more
//! than one `Host` line, or an invalid one, is a 400; an absolute-form
//! target's authority wins over `Host`. RFC 9113 §8.3.1: over HTTP/2, a
//! `Host` that names another authority than `:authority` is malformed.

use crate::error::BadRequest;
use crate::normalize::{self, PathPolicy};
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use std::borrow::Cow;

/// The authority a request is routed and forwarded by, normalized, as the
/// `Host` value to send on.
pub fn authority(parts: &http::request::Parts) -> Result<HeaderValue, BadRequest> {
    let mut lines = parts.headers.get_all(header::HOST).iter();
    let host_line = lines.next();
    if lines.next().is_some() {
        return Err(BadRequest::DuplicateHost);
    }
    let host = match host_line {
        Some(value) => {
            let text = value.to_str().map_err(|_| BadRequest::InvalidHost)?;
            Some(normalize::normalize_host(text).map_err(|_| BadRequest::InvalidHost)?)
        }
        None => None,
    };
    let Some(target) = parts.uri.authority() else {
        // Origin form: the Host line names the authority.
        return match (host, host_line) {
            (Some(Cow::Borrowed(_)), Some(line)) => Ok(line.clone()),
            (Some(normal), _) => HeaderValue::from_str(&normal).map_err(|_| BadRequest::InvalidHost),
            (None, _) => Err(BadRequest::MissingHost),
        };
    };
    let target = normalize::normalize_host(target.as_str()).map_err(|_| BadRequest::InvalidAuthority)?;
    if parts.version == http::Version::HTTP_2
        && let Some(host) = &host
        && !host.eq_ignore_ascii_case(&target)
    {
        return Err(BadRequest::HostMismatch);
    }
    HeaderValue::from_str(&target).map_err(|_| BadRequest::InvalidAuthority)
}

/// Normalize the path of `uri` in place, keeping its query; the URI is
/// rebuilt only when the path changes. A target without a path (CONNECT's
/// authority form) is left alone.
pub fn normalize_path(uri: &mut Uri, policy: PathPolicy) -> Result<(), BadRequest> {
    let Some(path_and_query) = uri.path_and_query() else {
        return Ok(());
    };
    let normal = match normalize::normalize_path(path_and_query.path(), policy) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(normal)) => normal,
        Err(e) => return Err(BadRequest::InvalidPath(e)),
    };
    let rebuilt = match path_and_query.query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal,
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(rebuilt).map_err(|_| BadRequest::InvalidTarget)?);
    *uri = Uri::from_parts(parts).map_err(|_| BadRequest::InvalidTarget)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, version: http::Version, hosts: &[&str]) -> http::request::Parts {
        let mut builder = http::Request::get(uri).version(version);
        for h in hosts {
            builder = builder.header(header::HOST, *h);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_rules() {
        const HTTP_11: http::Version = http::Version::HTTP_11;
        const HTTP_2: http::Version = http::Version::HTTP_2;
        let ok = |uri, v, hosts: &[&str]| authority(&parts(uri, v, hosts)).map(|h| h.to_str().unwrap().to_string());
        assert_eq!(ok("/x", HTTP_11, &["a.example.com."]).as_deref(), Ok("a.example.com"));
        assert_eq!(
            ok("/x", HTTP_11, &["a.example.com.:8080"]).as_deref(),
            Ok("a.example.com:8080")
        );
        assert_eq!(ok("/x", HTTP_11, &["a", "b"]), Err(BadRequest::DuplicateHost));
        assert_eq!(ok("/x", HTTP_11, &["a b"]), Err(BadRequest::InvalidHost));
        assert_eq!(ok("/x", HTTP_11, &[]), Err(BadRequest::MissingHost));
        // Absolute form: the target's authority wins, but a bad Host is still refused.
        assert_eq!(
            ok("http://t.example./x", HTTP_11, &["other"]).as_deref(),
            Ok("t.example")
        );
        assert_eq!(
            ok("http://t.example/x", HTTP_11, &["bad host"]),
            Err(BadRequest::InvalidHost)
        );
        // HTTP/2: Host must name the :authority (after normalization, any case).
        assert_eq!(
            ok("http://t.example/x", HTTP_2, &["T.Example."]).as_deref(),
            Ok("t.example")
        );
        assert_eq!(
            ok("http://t.example/x", HTTP_2, &["other"]),
            Err(BadRequest::HostMismatch)
        );
    }

    #[test]
    fn path_is_normalized_and_query_kept() {
        let mut uri: Uri = "/a/../b//c?x=/../y".parse().unwrap();
        normalize_path(&mut uri, PathPolicy::default()).unwrap();
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/b/c?x=/../y");
        let mut uri: Uri = "http://h/a/%2e%2e/b".parse().unwrap();
        normalize_path(&mut uri, PathPolicy::default()).unwrap();
        assert_eq!(uri.to_string(), "http://h/b");
        let mut uri: Uri = "/a%2fb".parse().unwrap();
        assert!(matches!(
            normalize_path(&mut uri, PathPolicy::default()),
            Err(BadRequest::InvalidPath(_))
        ));
    }
}
