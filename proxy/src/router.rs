//! Router: picks the route for a request from its host and path.
//!
//! Hosts are matched like Envoy's virtual hosts: an exact host beats the
//! longest matching `*.suffix`, which beats routes without hosts. Within
//! the chosen host group, routes are tried in configuration order and the
//! first path match wins. If that group has no path match the request gets
//! 404; less specific host groups are not consulted.

use crate::config::{HostMatch, PathMatch};
use crate::names::NameHasher;
use std::collections::HashMap;
use std::sync::Arc;

/// The routes of one host pattern, in configuration order.
type HostGroup<R> = Vec<(PathMatch, Arc<R>)>;

/// A routing table over routes of type `R`.
#[derive(Debug)]
pub struct Router<R> {
    /// A client picks the host it looks up, never one that is inserted, so
    /// the configured names' hash ([`NameHasher`]) serves.
    exact: HashMap<String, HostGroup<R>, NameHasher>,
    /// Suffixes with a leading dot, longest first.
    suffix: Vec<(String, HostGroup<R>)>,
    any: HostGroup<R>,
}

impl<R> Router<R> {
    /// Build from routes in configuration order.
    pub fn new(routes: impl IntoIterator<Item = (Vec<HostMatch>, PathMatch, Arc<R>)>) -> Self {
        let mut router = Router {
            exact: HashMap::default(),
            suffix: Vec::new(),
            any: Vec::new(),
        };
        for (hosts, path, route) in routes {
            if hosts.is_empty() {
                router.any.push((path.clone(), route.clone()));
            }
            for host in hosts {
                let entry = (path.clone(), route.clone());
                match host {
                    HostMatch::Exact(h) => router.exact.entry(h).or_default().push(entry),
                    HostMatch::Suffix(s) => match router.suffix.iter_mut().find(|(k, _)| *k == s) {
                        Some((_, v)) => v.push(entry),
                        None => router.suffix.push((s, vec![entry])),
                    },
                }
            }
        }
        router.suffix.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        router
    }

    /// The route for `host` (any case, port allowed) and `path` (normalized,
    /// no query). Paths match without their segments' `;` parameters.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<R>> {
        let path = crate::normalize::without_parameters(path);
        let path = path.as_ref();
        let host = strip_port(host);
        // Lower-case only when needed: most clients already send lower case.
        let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            host.to_ascii_lowercase().into()
        } else {
            host.into()
        };
        let group = self
            .exact
            .get(host.as_ref())
            .or_else(|| {
                self.suffix
                    .iter()
                    .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
                    .map(|(_, routes)| routes)
            })
            .unwrap_or(&self.any);
        group.iter().find(|(m, _)| m.matches(path)).map(|(_, r)| r)
    }
}

/// `host:port` → `host`; `[::1]:80` → `[::1]`.
pub fn strip_port(authority: &str) -> &str {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        let exact = |h: &str| HostMatch::Exact(h.into());
        let suffix = |s: &str| HostMatch::Suffix(s.into());
        let prefix = |p: &str| PathMatch::Prefix(p.into());
        Router::new(vec![
            (
                vec![exact("api.example.com")],
                PathMatch::Exact("/health".into()),
                Arc::new("api-health"),
            ),
            (vec![exact("api.example.com")], prefix("/v1"), Arc::new("api-v1")),
            (vec![suffix(".example.com")], prefix("/"), Arc::new("wild")),
            (vec![suffix(".eu.example.com")], prefix("/"), Arc::new("wild-eu")),
            (vec![], prefix("/static"), Arc::new("any-static")),
            (vec![], prefix("/"), Arc::new("any")),
        ])
    }

    fn pick(host: &str, path: &str) -> Option<&'static str> {
        router().route(host, path).map(|r| **r)
    }

    #[test]
    fn exact_beats_suffix_beats_any() {
        assert_eq!(pick("api.example.com", "/v1/users"), Some("api-v1"));
        assert_eq!(pick("API.Example.com:8443", "/health"), Some("api-health"));
        assert_eq!(pick("www.example.com", "/x"), Some("wild"));
        assert_eq!(pick("a.eu.example.com", "/x"), Some("wild-eu"));
        assert_eq!(pick("other.org", "/static/a.css"), Some("any-static"));
        assert_eq!(pick("other.org", "/"), Some("any"));
        assert_eq!(pick("[::1]:8080", "/"), Some("any"));
    }

    #[test]
    fn chosen_host_group_without_path_match_is_404() {
        assert_eq!(pick("api.example.com", "/health/deep"), None);
        assert_eq!(pick("example.com", "/x"), Some("any"), "suffix needs a label before it");
    }
}
