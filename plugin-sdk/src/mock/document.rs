//! Remote documents on the mock host (WIT `remote-document`, 0.1.3): set
//! what each URI serves with [`MockHost::document`], a fetch failure with
//! [`MockHost::document_error`], and what the next
//! [`DocumentHandle::refresh`](crate::document::DocumentHandle::refresh)
//! fetches with [`MockHost::document_on_refresh`].
//!
//! The host's rules, which the mock applies (see `sys::mock::document`):
//! `subscribe` only in `create`; its cluster in a non-empty
//! [`MockHost::clusters`] list; an absolute `http://` or `https://` URI
//! with an authority and a path; `min_refresh` at least 1 s, `max_refresh`
//! at least `min_refresh`, `max_bytes` at most 1 MiB. `get` on an unknown
//! handle fails with "unknown document handle"; with no good copy it fails
//! with the fetch error or "not fetched yet"; with the current version
//! known it is `Ok(None)`. The version starts at 1 and grows by one each
//! time the content changes. Unlike the host, the mock runs a scripted
//! refresh whenever asked (no `min_refresh` spacing) and never refreshes
//! in the background: content changes when the test sets it.

use super::MockHost;
use crate::sys::mock as state;

impl MockHost {
    /// Serve `body` for `uri` from now on, as a successful fetch would. The
    /// version grows by one if the content differs from the current copy
    /// (the first copy is version 1).
    pub fn document(&self, uri: &str, body: impl Into<Vec<u8>>) -> &Self {
        let body = body.into();
        state::with(|s| s.documents.content.entry(uri.to_string()).or_default().install(body));
        self
    }

    /// Make fetching `uri` fail with `reason`: what `get` reports while
    /// there is no good copy (a good copy, once there, is kept).
    pub fn document_error(&self, uri: &str, reason: &str) -> &Self {
        state::with(|s| s.documents.content.entry(uri.to_string()).or_default().error = Some(reason.to_string()));
        self
    }

    /// What the next `refresh` of a subscription to `uri` fetches: it
    /// installs `body` and returns `true` if that changed the content. A
    /// `refresh` with nothing scripted returns `false`.
    pub fn document_on_refresh(&self, uri: &str, body: impl Into<Vec<u8>>) -> &Self {
        let body = body.into();
        state::with(|s| s.documents.content.entry(uri.to_string()).or_default().on_refresh = Some(body));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{self, Document, DocumentHandle, DocumentOptions};
    use crate::{Action, Config, Filter, Request};
    use std::time::Duration;

    const JWKS: &str = "https://idp.example.com/.well-known/jwks.json";

    /// Subscribes in `create` to what its configuration names.
    struct Subscriber {
        handle: DocumentHandle,
        late: Option<Result<DocumentHandle, String>>,
    }

    impl Filter for Subscriber {
        fn create(config: &Config) -> Result<Self, String> {
            let cluster = config.get_str("cluster").unwrap_or("idp");
            let uri = config.get_str("uri").unwrap_or(JWKS);
            let handle = document::subscribe(cluster, uri, DocumentOptions::default())?;
            Ok(Subscriber { handle, late: None })
        }
        fn on_request_headers(&mut self, _: &mut Request) -> Action {
            self.late = Some(document::subscribe("idp", JWKS, DocumentOptions::default()));
            Action::Continue
        }
    }

    fn create(host: &MockHost) -> Result<Subscriber, String> {
        host.create::<Subscriber>()
    }

    fn subscribe_with(options: DocumentOptions) -> Result<DocumentHandle, String> {
        // Only in init: run it as `create` does.
        state::with(|s| s.phase = state::Phase::Init);
        let out = document::subscribe("idp", JWKS, options);
        state::with(|s| s.phase = state::Phase::None);
        out
    }

    #[test]
    fn versions_and_known_versions() {
        let host = MockHost::new();
        let f = create(&host).unwrap();
        assert_eq!(f.handle.get(None), Err("not fetched yet".to_string()));
        host.document_error(JWKS, "connection refused");
        assert_eq!(f.handle.get(None), Err("connection refused".to_string()));
        host.document(JWKS, "v1");
        let one = Document {
            version: 1,
            body: b"v1".to_vec(),
        };
        assert_eq!(
            f.handle.get(None),
            Ok(Some(one.clone())),
            "a good copy wins over the error"
        );
        assert_eq!(f.handle.get(Some(1)), Ok(None), "current: nothing copied");
        assert_eq!(f.handle.get(Some(7)), Ok(Some(one)));
        host.document(JWKS, "v1");
        assert_eq!(f.handle.get(Some(1)), Ok(None), "same content, same version");
        host.document(JWKS, "v2");
        assert_eq!(f.handle.get(Some(1)).map(|d| d.map(|d| d.version)), Ok(Some(2)));
    }

    #[test]
    fn refresh_installs_what_was_scripted() {
        let host = MockHost::new();
        host.document(JWKS, "old");
        let f = create(&host).unwrap();
        assert!(!f.handle.refresh(), "nothing scripted");
        host.document_on_refresh(JWKS, "old");
        assert!(!f.handle.refresh(), "same content: no change");
        host.document_on_refresh(JWKS, "new");
        assert_eq!(f.handle.get(Some(1)), Ok(None), "not before the refresh");
        assert!(f.handle.refresh());
        assert_eq!(
            f.handle.get(Some(1)),
            Ok(Some(Document {
                version: 2,
                body: b"new".to_vec()
            }))
        );
        assert!(!f.handle.refresh(), "used up");
    }

    #[test]
    fn refresh_fetches_a_first_copy() {
        let host = MockHost::new();
        let f = create(&host).unwrap();
        host.document_on_refresh(JWKS, "first");
        assert!(f.handle.refresh());
        assert_eq!(f.handle.get(None).map(|d| d.map(|d| d.version)), Ok(Some(1)));
    }

    /// Refreshes in `create`: the host fetches only in phases.
    struct RefreshesInCreate(bool);

    impl Filter for RefreshesInCreate {
        fn create(_: &Config) -> Result<Self, String> {
            let handle = document::subscribe("idp", JWKS, DocumentOptions::default())?;
            Ok(RefreshesInCreate(handle.refresh()))
        }
    }

    #[test]
    fn no_refresh_in_init() {
        let host = MockHost::new();
        host.document_on_refresh(JWKS, "keys");
        let f: RefreshesInCreate = host.create().unwrap();
        assert!(!f.0);
        let handle = create(&host).unwrap().handle;
        assert_eq!(handle.get(None), Err("not fetched yet".to_string()), "still scripted");
        assert!(handle.refresh(), "in a phase (or test code) it happens");
    }

    #[test]
    fn only_in_init() {
        let host = MockHost::new();
        let mut f = create(&host).unwrap();
        host.on_request_headers(&mut f);
        assert_eq!(
            f.late,
            Some(Err("remote-document.subscribe is only available in init".to_string()))
        );
        assert_eq!(
            document::subscribe("idp", JWKS, DocumentOptions::default()),
            Err("remote-document.subscribe is only available in init".to_string()),
            "nor outside a phase"
        );
    }

    #[test]
    fn subscriptions_share_the_content() {
        let host = MockHost::new();
        host.document(JWKS, "keys");
        let a = create(&host).unwrap();
        let b = create(&host).unwrap();
        assert_eq!(a.handle, b.handle, "the same subscription is the same handle");
        let other = subscribe_with(DocumentOptions {
            max_bytes: 1024,
            ..DocumentOptions::default()
        })
        .unwrap();
        assert_ne!(a.handle, other, "other options: another subscription");
        assert_eq!(a.handle.get(None), other.get(None), "of the same content");
    }

    #[test]
    fn at_most_16_subscriptions() {
        let _host = MockHost::new();
        let with_max = |bytes: u32| DocumentOptions {
            max_bytes: bytes,
            ..DocumentOptions::default()
        };
        for i in 1..=16 {
            assert!(subscribe_with(with_max(i)).is_ok(), "subscription {i}");
        }
        assert_eq!(
            subscribe_with(with_max(17)),
            Err("at most 16 documents per filter".to_string())
        );
        assert!(subscribe_with(with_max(16)).is_ok(), "an existing one is no new one");
    }

    #[test]
    fn cluster_and_uri_are_checked() {
        let host = MockHost::new().config_json(r#"{"cluster":"other"}"#);
        host.clusters("app", &["app", "idp"]);
        let err = create(&host).err().unwrap();
        assert_eq!(err, "cluster `other` is not in the filter entry's `clusters` list");
        let with_uri = |uri: &str| {
            let host = MockHost::new().config_json(&serde_json::json!({ "uri": uri }).to_string());
            create(&host).err()
        };
        assert_eq!(with_uri("http://idp/keys?x=1"), None);
        assert_eq!(with_uri("https://[::1]:8443/"), None);
        for (bad, why) in [
            ("ftp://idp/keys", "`ftp://idp/keys` must start with http:// or https://"),
            ("/keys", "must start with http:// or https://"),
            ("idp/keys", "must start with http:// or https://"),
            ("http://idp", "`http://idp` has no path"),
            ("https://idp?q=1", "has no path"),
            ("http:///keys", "needs a host (and no user information)"),
            ("http://user@idp/keys", "needs a host (and no user information)"),
            ("http://idp/a b", "`http://idp/a b` is not a valid URI"),
        ] {
            let err = with_uri(bad).unwrap_or_default();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn options_are_checked() {
        let _host = MockHost::new();
        let opts = |min: u64, max: u64, bytes: u32| DocumentOptions {
            min_refresh: Duration::from_millis(min),
            max_refresh: Duration::from_millis(max),
            max_bytes: bytes,
        };
        assert!(subscribe_with(opts(1000, 1000, 1 << 20)).is_ok(), "at the bounds");
        assert!(subscribe_with(opts(1000, 1000, 1)).is_ok(), "at the bounds");
        let refused = |o| subscribe_with(o).unwrap_err();
        assert_eq!(refused(opts(999, 5000, 1024)), "min-refresh-ms must be at least 1000");
        assert_eq!(
            refused(opts(2000, 1999, 1024)),
            "max-refresh-ms must be at least min-refresh-ms"
        );
        assert_eq!(
            refused(opts(1000, 1000, (1 << 20) + 1)),
            "max-bytes must be 1 to 1048576"
        );
        assert_eq!(refused(opts(1000, 1000, 0)), "max-bytes must be 1 to 1048576");
    }

    #[test]
    fn content_over_max_bytes_is_a_failed_fetch() {
        let host = MockHost::new();
        let small = DocumentOptions {
            max_bytes: 4,
            ..DocumentOptions::default()
        };
        let handle = subscribe_with(small).unwrap();
        host.document(JWKS, "12345");
        let err = handle.get(None).unwrap_err();
        assert!(err.contains("over max_bytes"), "{err}");
        host.document(JWKS, "1234");
        assert_eq!(handle.get(None).map(|d| d.map(|d| d.body)), Ok(Some(b"1234".to_vec())));
    }

    #[test]
    fn unknown_handles() {
        let host = MockHost::new();
        host.document(JWKS, "keys");
        let f = create(&host).unwrap();
        // A handle from another host (state reset): unknown here.
        let _fresh = MockHost::new();
        assert_eq!(f.handle.get(None), Err("unknown document handle".to_string()));
        assert!(!f.handle.refresh());
    }
}
