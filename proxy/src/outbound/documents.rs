//! Remote documents kept fresh for filters (WIT `remote-document`): a JWKS,
//! a policy bundle. One [`Document`] per (cluster, URI, options), shared by
//! every instance and filter slot that subscribed to it; a background task
//! fetches it, refreshes it when the server's `Cache-Control: max-age` says
//! (clamped to the subscription's minimum and maximum intervals), backs off
//! after failures, and keeps the last good copy when a fetch fails. A
//! filter may ask for a fetch now (an unknown key id), at most once per
//! minimum interval. The task ends when the last subscriber is gone.
//! Content is never logged, nor a URI's query (it may carry a key): only
//! the URI without its query, sizes, versions and failure reasons.
//!
//! When to fetch next is decided by [`Schedule`], from times passed in.

use super::{Outbound, OutboundError};
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, watch};

/// Longest a single fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry after a failed fetch; doubles up to the maximum interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Largest document any subscription may accept.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Smallest minimum refresh interval.
pub const MIN_REFRESH_FLOOR: Duration = Duration::from_secs(1);
/// Largest maximum refresh interval.
pub const MAX_REFRESH_CEILING: Duration = Duration::from_secs(86_400);
/// How long the first fetch waits for its cluster to start serving (the
/// generation that subscribed is built before it serves).
const FIRST_FETCH_WAIT: Duration = Duration::from_secs(5);

/// How a subscription wants its document kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    pub max_bytes: usize,
}

impl Options {
    /// Check the options a filter passed.
    pub fn new(min_refresh: Duration, max_refresh: Duration, max_bytes: usize) -> Result<Options, String> {
        if min_refresh < MIN_REFRESH_FLOOR {
            return Err(format!(
                "min-refresh-ms must be at least {}",
                MIN_REFRESH_FLOOR.as_millis()
            ));
        }
        if max_refresh < min_refresh {
            return Err("max-refresh-ms must be at least min-refresh-ms".into());
        }
        if max_refresh > MAX_REFRESH_CEILING {
            return Err(format!(
                "max-refresh-ms must be at most {}",
                MAX_REFRESH_CEILING.as_millis()
            ));
        }
        if max_bytes == 0 || max_bytes > MAX_DOCUMENT_BYTES {
            return Err(format!("max-bytes must be 1 to {MAX_DOCUMENT_BYTES}"));
        }
        Ok(Options {
            min_refresh,
            max_refresh,
            max_bytes,
        })
    }
}

/// When the next fetch is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub options: Options,
}

impl Schedule {
    /// After a good fetch whose response allowed caching for `max_age`.
    pub fn after_success(&self, max_age: Option<Duration>) -> Duration {
        let o = self.options;
        max_age.unwrap_or(o.max_refresh).clamp(o.min_refresh, o.max_refresh)
    }

    /// After the `failures`-th failed fetch in a row (1 for the first).
    pub fn after_failure(&self, failures: u32) -> Duration {
        let doubled = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        doubled.min(self.options.max_refresh)
    }

    /// Whether a fetch asked for now may start, the last having started at
    /// `last` (none yet: yes).
    pub fn may_fetch(&self, last: Option<Instant>, now: Instant) -> bool {
        last.is_none_or(|l| now.saturating_duration_since(l) >= self.options.min_refresh)
    }
}

/// `max-age` of a `Cache-Control` header; `no-cache` and `no-store` mean 0.
pub fn max_age(cache_control: &str) -> Option<Duration> {
    let mut found = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-cache" || directive == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = directive.strip_prefix("max-age=") {
            found = secs.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    found
}

/// One good copy.
#[derive(Debug)]
pub struct Copy {
    pub version: u64,
    pub body: Bytes,
}

/// What `/plugins` shows of a document, and the fetch counters.
#[derive(Debug, Default, Clone)]
struct Status {
    /// When the last fetch started (or was asked for), for the on-demand
    /// rate limit.
    last_attempt: Option<Instant>,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
    failures: u32,
    /// Fetches started.
    started: u64,
    /// The fetch an on-demand refresh asked for and waits on, until it ends.
    pending: Option<u64>,
}

/// A document and its state.
#[derive(Debug)]
pub struct Document {
    pub cluster: Arc<str>,
    pub uri: http::Uri,
    schedule: Schedule,
    copy: ArcSwapOption<Copy>,
    status: Mutex<Status>,
    /// Wakes the task: a refresh asked for a fetch, or the document is gone.
    wake: Arc<Notify>,
    /// Completed fetches, for waiters.
    done: watch::Sender<u64>,
}

impl Drop for Document {
    fn drop(&mut self) {
        // The task waits holding only a weak reference: let it see.
        self.wake.notify_one();
    }
}

/// `uri` without its query, for logs and the admin view.
fn shown(uri: &http::Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{}", uri.path()),
        _ => uri.path().to_string(),
    }
}

impl Document {
    /// The current good copy, or why there is none.
    pub fn current(&self) -> Result<Arc<Copy>, String> {
        if let Some(copy) = self.copy.load_full() {
            return Ok(copy);
        }
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        Err(match &status.last_error {
            Some(e) => format!(
                "fetching {} through cluster `{}` failed: {e}",
                shown(&self.uri),
                self.cluster
            ),
            None => format!("{} has not been fetched yet", shown(&self.uri)),
        })
    }

    /// The current version (0: none yet).
    pub fn version(&self) -> u64 {
        self.copy.load().as_ref().map_or(0, |c| c.version)
    }

    /// Whether this document is the one for `cluster`, `uri`, `options`.
    pub fn is(&self, cluster: &str, uri: &http::Uri, options: Options) -> bool {
        &*self.cluster == cluster && self.uri == *uri && self.schedule.options == options
    }

    /// Fetch now if the rate limit allows (or join a fetch another refresh
    /// asked for), and wait (up to `wait`) for it to complete. Whether the
    /// version changed. At most one fetch per minimum interval, however
    /// many ask.
    pub async fn refresh(&self, wait: Duration) -> bool {
        let before = self.version();
        let mut done = self.done.subscribe();
        let target = {
            let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
            match status.pending {
                Some(target) => target,
                None => {
                    let now = Instant::now();
                    if !self.schedule.may_fetch(status.last_attempt, now) {
                        return false;
                    }
                    // The next fetch to start; claimed now so that no other
                    // refresh starts one within the interval.
                    status.last_attempt = Some(now);
                    let target = status.started + 1;
                    status.pending = Some(target);
                    self.wake.notify_one();
                    target
                }
            }
        };
        let finished = tokio::time::timeout(wait, done.wait_for(|&n| n >= target)).await;
        finished.is_ok() && self.version() != before
    }

    /// The admin view: never the content.
    pub fn admin_json(&self) -> serde_json::Value {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let copy = self.copy.load_full();
        serde_json::json!({
            "cluster": &*self.cluster,
            "uri": shown(&self.uri),
            "available": copy.is_some(),
            "version": copy.as_ref().map_or(0, |c| c.version),
            "bytes": copy.as_ref().map_or(0, |c| c.body.len()),
            "last_success": status.last_success.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            "last_error": status.last_error,
            "consecutive_failures": status.failures,
        })
    }

    /// One fetch: the outcome label and, on success, the cache lifetime.
    async fn fetch(&self, outbound: &Outbound) -> Result<Option<Duration>, String> {
        let https = self.uri.scheme_str() == Some("https");
        let cluster = outbound
            .cluster(&self.cluster)
            .ok_or_else(|| OutboundError::NoCluster(self.cluster.to_string()).to_string())?;
        if https && !cluster.is_tls() {
            return Err(format!("the URI is https but cluster `{}` has no tls", self.cluster));
        }
        let mut request = http::Request::new(());
        *request.uri_mut() = self
            .uri
            .path_and_query()
            .map_or_else(|| http::Uri::from_static("/"), |pq| http::Uri::from(pq.clone()));
        if let Some(authority) = self.uri.authority()
            && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
        {
            request.headers_mut().insert(http::header::HOST, host);
        }
        let (head, ()) = request.into_parts();
        let response = outbound
            .send(
                &self.cluster,
                head,
                Bytes::new(),
                FETCH_TIMEOUT,
                self.schedule.options.max_bytes,
            )
            .await
            .map_err(|e| e.to_string())?;
        if response.head.status != http::StatusCode::OK {
            return Err(format!("answered {}", response.head.status));
        }
        let max_age = response
            .head
            .headers
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let changed = self.copy.load().as_ref().is_none_or(|c| c.body != response.body);
        if changed {
            let version = self.version() + 1;
            self.copy.store(Some(Arc::new(Copy {
                version,
                body: response.body,
            })));
            tracing::info!(cluster = %self.cluster, uri = %shown(&self.uri), version, "remote document updated");
        }
        outbound
            .metrics
            .fetch(&self.cluster, if changed { "changed" } else { "unchanged" });
        Ok(max_age)
    }
}

/// What identifies a subscription: cluster, URI and options.
type Key = (Arc<str>, String, Options);

/// Every document subscribed to, by what identifies it.
#[derive(Debug, Default)]
pub struct Documents {
    by_key: Mutex<HashMap<Key, Weak<Document>>>,
}

impl Documents {
    /// The document for this subscription, started if new.
    pub fn subscribe(
        &self,
        outbound: &Arc<Outbound>,
        cluster: Arc<str>,
        uri: http::Uri,
        options: Options,
    ) -> Arc<Document> {
        let mut by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        by_key.retain(|_, d| d.strong_count() > 0);
        let key = (cluster.clone(), uri.to_string(), options);
        if let Some(doc) = by_key.get(&key).and_then(Weak::upgrade) {
            return doc;
        }
        let doc = Arc::new(Document {
            cluster,
            uri,
            schedule: Schedule { options },
            copy: ArcSwapOption::empty(),
            status: Mutex::new(Status::default()),
            wake: Arc::new(Notify::new()),
            done: watch::Sender::new(0),
        });
        by_key.insert(key, Arc::downgrade(&doc));
        tokio::spawn(keep_fresh(Arc::downgrade(&doc), outbound.clone()));
        doc
    }
}

/// The document's task: fetch, wait until due (or asked, or the clusters
/// changed while there is no good copy), again, while anyone subscribes.
/// Between fetches it holds only a weak reference: the document's drop
/// wakes it to end.
async fn keep_fresh(doc: Weak<Document>, outbound: Arc<Outbound>) {
    let mut clusters = outbound.watch();
    // The generation that subscribed starts serving after it is built.
    if let Some(document) = doc.upgrade()
        && outbound.cluster(&document.cluster).is_none()
    {
        drop(document);
        let _ = tokio::time::timeout(FIRST_FETCH_WAIT, clusters.changed()).await;
    }
    loop {
        let Some(document) = doc.upgrade() else { return };
        let started = Instant::now();
        {
            let mut status = document.status.lock().unwrap_or_else(|e| e.into_inner());
            status.last_attempt = Some(started);
            status.started += 1;
        }
        let result = document.fetch(&outbound).await;
        let (delay, completed) = {
            let mut status = document.status.lock().unwrap_or_else(|e| e.into_inner());
            let completed = status.started;
            if status.pending.is_some_and(|p| p <= completed) {
                status.pending = None;
            }
            let delay = match result {
                Ok(max_age) => {
                    status.failures = 0;
                    status.last_error = None;
                    status.last_success = Some(SystemTime::now());
                    document.schedule.after_success(max_age)
                }
                Err(e) => {
                    status.failures += 1;
                    tracing::warn!(cluster = %document.cluster, uri = %shown(&document.uri), error = %e, failures = status.failures, "remote document fetch failed; keeping the last good copy");
                    outbound.metrics.fetch(&document.cluster, "failed");
                    status.last_error = Some(e);
                    document.schedule.after_failure(status.failures)
                }
            };
            (delay, completed)
        };
        document.done.send_replace(completed);
        let due = tokio::time::Instant::from_std(started + delay);
        // Without a good copy, a reload that brings the cluster is worth
        // trying at once.
        let failing = document.copy.load().is_none();
        let wake = document.wake.clone();
        drop(document);
        tokio::select! {
            // A refresh that its rate limit allowed, or the document's drop.
            _ = wake.notified() => {}
            _ = clusters.changed(), if failing => {}
            _ = tokio::time::sleep_until(due) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(min: u64, max: u64) -> Schedule {
        Schedule {
            options: Options::new(Duration::from_secs(min), Duration::from_secs(max), 1024).unwrap(),
        }
    }

    #[test]
    fn max_age_is_clamped_to_the_subscription() {
        let s = schedule(5, 60);
        assert_eq!(s.after_success(Some(Duration::from_secs(30))), Duration::from_secs(30));
        assert_eq!(s.after_success(Some(Duration::from_secs(1))), Duration::from_secs(5));
        assert_eq!(
            s.after_success(Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        assert_eq!(s.after_success(None), Duration::from_secs(60));
    }

    #[test]
    fn failures_back_off_up_to_the_maximum() {
        let s = schedule(5, 20);
        let delays: Vec<u64> = (1..=7).map(|n| s.after_failure(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 20, 20]);
    }

    #[test]
    fn on_demand_fetches_are_rate_limited() {
        let s = schedule(10, 60);
        let t0 = Instant::now();
        assert!(s.may_fetch(None, t0));
        assert!(!s.may_fetch(Some(t0), t0 + Duration::from_secs(9)));
        assert!(s.may_fetch(Some(t0), t0 + Duration::from_secs(10)));
    }

    #[test]
    fn cache_control_parsing() {
        assert_eq!(max_age("public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(
            max_age("max-age=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn options_are_checked() {
        let s = Duration::from_secs;
        assert!(Options::new(Duration::from_millis(500), s(10), 10).is_err());
        assert!(Options::new(s(10), s(5), 10).is_err());
        assert!(Options::new(s(1), s(5), MAX_DOCUMENT_BYTES + 1).is_err());
        assert!(Options::new(s(1), s(1), MAX_DOCUMENT_BYTES).is_ok());
        assert!(Options::new(s(1), MAX_REFRESH_CEILING + s(1), 10).is_err());
    }
}
