//! Signing keys from `jwt.jwks_uri`. The host fetches the JWKS through
//! `jwt.jwks_cluster` in the background and keeps it fresh
//! (`sluice_sdk::document`); this module holds the key set parsed from the
//! newest version that parsed. Looking for a newer version is one host call
//! that copies nothing while the version is unchanged, so it runs on every
//! request that carries a token. A version that does not parse keeps the
//! previous key set and is logged once (its version and what is wrong,
//! never its content).

use crate::config::JwtSettings;
use crate::keys::{self, VerifyKey};
use sluice_sdk::document::{self, DocumentHandle, DocumentOptions};
use std::time::Duration;

/// `jwks_min_refresh_seconds` when not given.
const DEFAULT_MIN_REFRESH_SECONDS: u64 = 30;
/// `jwks_max_refresh_seconds` when not given.
const DEFAULT_MAX_REFRESH_SECONDS: u64 = 600;
/// `jwks_max_bytes` when not given.
const DEFAULT_MAX_BYTES: u32 = 256 * 1024;
/// Largest refresh interval accepted: a day.
const MAX_REFRESH_SECONDS: u64 = 86_400;
/// Largest document the host accepts.
const MAX_BYTES: u32 = 1024 * 1024;
/// Longest host reason repeated in a 503 body.
const MAX_REASON_CHARS: usize = 200;

/// The checked `jwt.jwks_*` settings, ready to subscribe with.
pub(crate) struct RemoteSettings {
    cluster: String,
    uri: String,
    options: DocumentOptions,
}

impl RemoteSettings {
    /// `None` without `jwt.jwks_uri`; then no other `jwks_*` key may be set.
    pub(crate) fn from_settings(s: &JwtSettings) -> Result<Option<Self>, String> {
        let Some(uri) = &s.jwks_uri else {
            let stray = [
                ("jwt.jwks_cluster", s.jwks_cluster.is_some()),
                ("jwt.jwks_min_refresh_seconds", s.jwks_min_refresh_seconds.is_some()),
                ("jwt.jwks_max_refresh_seconds", s.jwks_max_refresh_seconds.is_some()),
                ("jwt.jwks_max_bytes", s.jwks_max_bytes.is_some()),
            ];
            return match stray.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(format!("{key}: only meaningful with `jwt.jwks_uri`")),
                None => Ok(None),
            };
        };
        check_uri(uri)?;
        let cluster = match s.jwks_cluster.as_deref() {
            None => {
                return Err(
                    "jwt.jwks_cluster: required with `jwt.jwks_uri` (the cluster to fetch it through, \
                     also listed in the filter entry's `clusters`)"
                        .into(),
                );
            }
            Some("") => return Err("jwt.jwks_cluster: must not be empty".into()),
            Some(c) => c.to_string(),
        };
        let min = s.jwks_min_refresh_seconds.unwrap_or(DEFAULT_MIN_REFRESH_SECONDS);
        if !(1..=MAX_REFRESH_SECONDS).contains(&min) {
            return Err(format!("jwt.jwks_min_refresh_seconds: 1 to {MAX_REFRESH_SECONDS}"));
        }
        let max = s
            .jwks_max_refresh_seconds
            .unwrap_or(DEFAULT_MAX_REFRESH_SECONDS.max(min));
        if max < min {
            return Err(format!(
                "jwt.jwks_max_refresh_seconds: {max} is less than jwks_min_refresh_seconds ({min})"
            ));
        }
        if max > MAX_REFRESH_SECONDS {
            return Err(format!("jwt.jwks_max_refresh_seconds: at most {MAX_REFRESH_SECONDS}"));
        }
        let max_bytes = s.jwks_max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        if !(1..=MAX_BYTES).contains(&max_bytes) {
            return Err(format!("jwt.jwks_max_bytes: 1 to {MAX_BYTES}"));
        }
        Ok(Some(RemoteSettings {
            cluster,
            uri: uri.clone(),
            options: DocumentOptions {
                min_refresh: Duration::from_secs(min),
                max_refresh: Duration::from_secs(max),
                max_bytes,
            },
        }))
    }
}

/// An absolute `http://` or `https://` URI with a host, no credentials, no
/// fragment, no spaces. The host checks it again when subscribing.
fn check_uri(uri: &str) -> Result<(), String> {
    let scheme_len = ["https://", "http://"]
        .iter()
        .find(|scheme| uri.get(..scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme)))
        .map(|scheme| scheme.len());
    let Some(rest) = scheme_len.and_then(|n| uri.get(n..)) else {
        return Err("jwt.jwks_uri: expected an absolute http:// or https:// URI".into());
    };
    if uri.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("jwt.jwks_uri: must not contain spaces or control characters".into());
    }
    if uri.contains('#') {
        return Err("jwt.jwks_uri: must not have a fragment (`#…`)".into());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("jwt.jwks_uri: has no host".into());
    }
    if authority.contains('@') {
        return Err("jwt.jwks_uri: credentials in the URI are not supported".into());
    }
    Ok(())
}

/// The remote key set of one filter instance.
pub(crate) struct RemoteKeys {
    handle: DocumentHandle,
    /// The last version looked at, installed or refused: `get` with it
    /// copies nothing until the host has a newer one.
    version: Option<u64>,
    /// The keys of the newest version that parsed; `None` before one has.
    keys: Option<Vec<VerifyKey>>,
    /// Why `keys` is `None`: the host's reason or the parse failure.
    missing: String,
}

impl RemoteKeys {
    /// Subscribe to the document; only in `Filter::create`. The first fetch
    /// runs in the background, so a document not fetched yet is no error.
    pub(crate) fn subscribe(settings: RemoteSettings) -> Result<Self, String> {
        let handle = document::subscribe(&settings.cluster, &settings.uri, settings.options)
            .map_err(|e| format!("jwt.jwks_uri: {e}"))?;
        Ok(RemoteKeys {
            handle,
            version: None,
            keys: None,
            missing: "not fetched yet".into(),
        })
    }

    /// The installed keys (none before a document parsed).
    pub(crate) fn keys(&self) -> &[VerifyKey] {
        self.keys.as_deref().unwrap_or_default()
    }

    /// Why there is no remote key set yet, while there is none.
    pub(crate) fn unavailable(&self) -> Option<&str> {
        self.keys.is_none().then_some(self.missing.as_str())
    }

    /// Catch up with the host's copy. Returns whether a new key set was
    /// installed (then tokens verified with the old one must be forgotten).
    pub(crate) fn sync(&mut self) -> bool {
        match self.handle.get(self.version) {
            Ok(None) => false,
            Ok(Some(doc)) => {
                self.version = Some(doc.version);
                match keys::from_remote_jwks(&doc.body, doc.version) {
                    Ok(keys) => {
                        sluice_sdk::debug!(
                            "auth: jwt.jwks_uri: version {} installed ({} keys)",
                            doc.version,
                            keys.len()
                        );
                        self.keys = Some(keys);
                        true
                    }
                    Err(why) => {
                        let kept = if self.keys.is_some() {
                            "keeping the previous keys"
                        } else {
                            "no keys yet"
                        };
                        sluice_sdk::warn!("auth: jwt.jwks_uri: version {} not used ({kept}): {why}", doc.version);
                        if self.keys.is_none() {
                            self.missing = format!("the JWKS document is not valid: {why}");
                        }
                        false
                    }
                }
            }
            Err(reason) => {
                // Only while the host never had a good copy; keys already
                // installed (which cannot happen then) would be kept.
                if self.keys.is_none() {
                    self.missing = printable(&reason);
                }
                false
            }
        }
    }

    /// The token names a key the filter lacks: ask the host to fetch now
    /// (it waits, at most once per `jwks_min_refresh_seconds`). Returns
    /// whether a new key set was installed.
    pub(crate) fn refresh(&mut self) -> bool {
        self.handle.refresh() && self.sync()
    }
}

/// The host's reason as one line of bounded length for a response body.
fn printable(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_checked() {
        for ok in [
            "https://id.example.com/.well-known/jwks.json",
            "HTTP://id.example.com:8080/keys?x=1",
            "http://10.0.0.1/keys",
        ] {
            assert_eq!(check_uri(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("id.example.com/jwks", "absolute http"),
            ("ftp://id.example.com/jwks", "absolute http"),
            ("https://", "no host"),
            ("https:///jwks", "no host"),
            ("https://a b/jwks", "spaces"),
            ("https://id.example.com/jwks#k", "fragment"),
            ("https://user:pw@id.example.com/jwks", "credentials"),
        ] {
            let err = check_uri(bad).err().unwrap_or_default();
            assert!(err.starts_with("jwt.jwks_uri: ") && err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn host_reasons_become_one_bounded_line() {
        assert_eq!(printable("connect\r\nrefused"), "connect  refused");
        assert_eq!(printable(&"x".repeat(500)).len(), MAX_REASON_CHARS);
    }
}
