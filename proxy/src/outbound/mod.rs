//! Requests the host sends on a filter's behalf: a filter's outbound HTTP
//! call (WIT `outbound-http`) and the fetches of the remote documents the
//! host keeps fresh for filters ([`documents`]). Both go through the
//! clusters of the serving generation, found by name here, so a call made
//! after a reload uses the reloaded cluster. A call is one try (no
//! retries), bounded by a timeout and a response size cap.

pub mod documents;

use crate::body::RequestBody;
use crate::error::{ProxyError, UpstreamFailure};
use crate::metrics::FilterIoMetrics;
use crate::upstream::retry::{self, Exchange};
use crate::upstream::{Cluster, Upstreams};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The serving generation's clusters, by name.
type Directory = Arc<HashMap<Arc<str>, Weak<Cluster>>>;

/// Why an outbound request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("cluster `{0}` is not serving")]
    NoCluster(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("response body over {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Failed(String),
}

impl OutboundError {
    /// The `outcome` label of the call.
    pub fn outcome(&self) -> &'static str {
        match self {
            OutboundError::NoCluster(_) => "no_cluster",
            OutboundError::Timeout(_) => "timeout",
            OutboundError::TooLarge(_) => "too_large",
            OutboundError::Failed(_) => "failed",
        }
    }
}

/// A whole response.
#[derive(Debug)]
pub struct OutboundResponse {
    pub head: http::response::Parts,
    pub body: Bytes,
}

/// The clusters filters' requests go through, and the metrics they count in.
#[derive(Debug)]
pub struct Outbound {
    clusters: watch::Sender<Directory>,
    pub metrics: FilterIoMetrics,
}

impl Outbound {
    pub fn new(metrics: FilterIoMetrics) -> Outbound {
        Outbound {
            clusters: watch::Sender::new(Arc::default()),
            metrics,
        }
    }

    /// The generation owning `upstreams` starts serving: requests go to its
    /// clusters from now on.
    pub fn commit(&self, upstreams: &Upstreams) {
        let directory: HashMap<Arc<str>, Weak<Cluster>> =
            upstreams.iter().map(|c| (c.name.clone(), Arc::downgrade(c))).collect();
        self.clusters.send_replace(Arc::new(directory));
    }

    /// The serving cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.clusters.borrow().get(name).and_then(Weak::upgrade)
    }

    /// Wakes when another generation's clusters start serving.
    pub fn watch(&self) -> watch::Receiver<Directory> {
        self.clusters.subscribe()
    }

    /// Send `head` with `body` to cluster `name` and read the whole
    /// response, within `timeout` and `max_response` bytes of body.
    pub async fn send(
        &self,
        name: &str,
        head: http::request::Parts,
        body: Bytes,
        timeout: Duration,
        max_response: usize,
    ) -> Result<OutboundResponse, OutboundError> {
        let cluster = self
            .cluster(name)
            .ok_or_else(|| OutboundError::NoCluster(name.to_string()))?;
        let deadline = Instant::now() + timeout;
        let exchange = Exchange {
            connect_timeout: None,
            timeout,
            retry: None,
            hash: None,
        };
        let whole = async {
            let mut attempts = 0;
            let sent = retry::send(&cluster, head, RequestBody::buffered(body), exchange, &mut attempts)
                .await
                .map_err(|e| match e {
                    ProxyError::Upstream {
                        failure: UpstreamFailure::Timeout(_) | UpstreamFailure::ConnectTimeout,
                        ..
                    } => OutboundError::Timeout(timeout),
                    other => OutboundError::Failed(other.to_string()),
                })?;
            let (head, body) = sent.response.into_parts();
            let body = Limited::new(body, max_response).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    OutboundError::TooLarge(max_response)
                } else {
                    OutboundError::Failed(format!("response body failed: {e}"))
                }
            })?;
            Ok(OutboundResponse {
                head,
                body: body.to_bytes(),
            })
        };
        match tokio::time::timeout_at(deadline.into(), whole).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Timeout(timeout)),
        }
    }
}
