//! What sluice tells operators about each request: metrics (counted when
//! the response body ends), the access log line, and W3C trace context.
//! [`Record`] collects the facts as the request moves through the proxy;
//! [`ObservedBody`] wraps the response body and reports the record when the
//! body has been sent or dropped, so durations and byte counts include the
//! body.

pub mod access_log;
pub mod log_filter;
pub mod trace_context;

use crate::body::ProxyBody;
use crate::connection::ConnectionFacts;
use crate::metrics::{Metrics, RouteMetrics};
use access_log::{AccessLog, Entry};
use bytes::Buf;
use http::header::HeaderValue;
use http::uri::Authority;
use http::{HeaderMap, Method, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
pub use trace_context::TraceContext;

/// Process-wide observability: the metrics registry. (The access log
/// belongs to the generation: its settings are reloadable.)
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
}

/// The request line and headers as they arrived, kept only when an access
/// log will print them.
struct Arrival {
    /// The log this request's line goes to: the one of the generation it
    /// started on.
    log: Arc<AccessLog>,
    connection: Arc<ConnectionFacts>,
    time: SystemTime,
    method: Method,
    uri: Uri,
    version: Version,
    /// Configured headers, values redacted where required.
    headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrival")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Facts about one request, filled in along the request path.
#[derive(Debug)]
pub struct Record {
    started: Instant,
    arrival: Option<Arrival>,
    /// The route's counters; `None` until routed (then the "no route" ones
    /// count the request).
    pub metrics: Option<Arc<RouteMetrics>>,
    pub route: Option<Arc<str>>,
    /// The authority the router saw (request target or Host), once known.
    pub authority: Option<HeaderValue>,
    /// The cluster the request was sent to.
    pub cluster: Option<Arc<str>>,
    pub endpoint: Option<Authority>,
    /// Tries sent upstream.
    pub attempts: u32,
    pub request_id: Option<HeaderValue>,
    pub trace: Option<TraceContext>,
    /// Request body bytes, counted as they stream upstream (only when an
    /// access log will print them).
    pub bytes_in: Option<Arc<AtomicU64>>,
    /// The path and query sent upstream, when it differs from the one
    /// received (normalization, a filter's rewrite).
    forwarded: Option<http::uri::PathAndQuery>,
}

impl Record {
    /// Start a record for a request that just arrived; `log` is the access
    /// log of the generation serving it.
    pub fn start(
        log: Option<&Arc<AccessLog>>,
        connection: &Arc<ConnectionFacts>,
        req: &http::request::Parts,
    ) -> Record {
        let arrival = log.map(|log| Arrival {
            log: log.clone(),
            connection: connection.clone(),
            time: SystemTime::now(),
            method: req.method.clone(),
            uri: req.uri.clone(),
            version: req.version,
            headers: logged_headers(log, &req.headers),
        });
        let bytes_in = arrival.is_some().then(|| Arc::new(AtomicU64::new(0)));
        Record {
            started: Instant::now(),
            arrival,
            metrics: None,
            route: None,
            authority: None,
            cluster: None,
            endpoint: None,
            attempts: 0,
            request_id: None,
            trace: None,
            bytes_in,
            forwarded: None,
        }
    }

    /// Note the target sent upstream, for the access log's `forwarded_path`
    /// (kept only when it differs from the one received).
    pub fn note_forwarded(&mut self, uri: &Uri) {
        if let Some(arrival) = &self.arrival
            && uri.path_and_query() != arrival.uri.path_and_query()
        {
            self.forwarded = uri.path_and_query().cloned();
        }
    }

    /// Whether an access log will print this record: fields only it reads
    /// (authority, route, request id, endpoint) need not be filled otherwise.
    pub fn logs(&self) -> bool {
        self.arrival.is_some()
    }
}

fn logged_headers(log: &AccessLog, headers: &HeaderMap) -> Vec<(String, String)> {
    log.headers()
        .iter()
        .filter_map(|name| {
            let value = headers.get(name.as_str())?;
            let text = if log.redacts(name) {
                "[redacted]".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            Some((name.clone(), text))
        })
        .collect()
}

/// The response body on its way to the client; reports the request when it
/// is done (sent in full, or dropped because the client went away).
pub struct ObservedBody {
    inner: ProxyBody,
    status: u16,
    bytes_out: u64,
    record: Box<Record>,
}

impl ObservedBody {
    pub fn new(inner: ProxyBody, status: u16, record: Record) -> Self {
        ObservedBody {
            inner,
            status,
            bytes_out: 0,
            record: Box::new(record),
        }
    }
}

impl Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = <ProxyBody as Body>::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.bytes_out += data.remaining() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        let r = &self.record;
        let elapsed = r.started.elapsed();
        if let Some(metrics) = &r.metrics {
            metrics.observe(r.cluster.as_deref(), self.status, elapsed);
        }
        let Some(a) = &r.arrival else {
            return;
        };
        let trace_id = r.trace.map(|t| t.trace_id_hex()).unwrap_or_default();
        let entry = Entry {
            time: Some(a.time),
            client: a.connection.client.to_string(),
            method: a.method.as_str(),
            authority: r.authority.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
            path: a.uri.path_and_query().map_or("/", |p| p.as_str()),
            forwarded_path: r.forwarded.as_ref().map(|p| p.as_str()),
            protocol: match a.version {
                Version::HTTP_2 => "HTTP/2",
                Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            tls: a.connection.tls.as_ref().map(|t| t.version),
            peer: a.connection.peer().map(|p| {
                p.spiffe_id
                    .as_deref()
                    .or(p.dns_names.first().map(String::as_str))
                    .unwrap_or(&p.subject)
            }),
            direction: a.connection.interception.map(|i| i.direction.as_str()),
            original_dst: a.connection.interception.map(|i| i.original_destination.to_string()),
            status: self.status,
            duration_ms: elapsed.as_secs_f64() * 1e3,
            route: r.route.as_deref().unwrap_or(""),
            cluster: r.cluster.as_deref().unwrap_or(""),
            upstream: r.endpoint.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            attempts: r.attempts,
            bytes_in: r.bytes_in.as_ref().map_or(0, |b| b.load(Ordering::Relaxed)),
            bytes_out: self.bytes_out,
            request_id: r.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
            trace_id: &trace_id,
            headers: a.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        };
        a.log.write(&entry);
    }
}
