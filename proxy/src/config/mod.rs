//! Configuration: the TOML file parsed and validated once into plain data.
//! Every error names the file, the line and the key. I/O code receives a
//! [`Config`] and never parses policy itself.

mod mesh;
mod raw;
mod redact;
mod sandbox;
mod shared_state;
mod sidecar;
pub mod tls;
pub mod traffic;
mod validate;

pub use crate::normalize::{EscapedSlashes, PathPolicy};
pub use crate::shared_state::{Backend, Quota, Quotas, RedisSettings};
pub use mesh::{MeshConfig, MeshPeer, MtlsMode, PeerMatch};
pub use redact::redacted_json;
pub use sidecar::{DestinationClaims, Direction, ORIGINAL_DESTINATION, SidecarConfig};
pub use tls::{ClientAuth, ExpectedIdentity, KeyPair, ListenerTls, TlsVersion, TrustBundle, UpstreamTls};
pub use traffic::{ClusterTraffic, DnsConfig, LbPolicy, RetryPolicy};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default whole-request timeout (until the upstream's response headers).
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time in-flight requests get to finish after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Headers whose values never reach the access log.
pub const ALWAYS_REDACTED: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// A validated configuration.
///
/// Settings fall in two groups. [`Bootstrap`] ones are read once when the
/// process starts (they bind sockets or build the engine); a reload that
/// changes them keeps the running values, names them in its log line, and
/// they take effect on restart. Everything else is reloadable and applies
/// to the generation built from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from.
    pub source: PathBuf,
    /// Settings that need a restart to change.
    pub bootstrap: Bootstrap,
    /// Directory scanned for `*.wasm` plugins (relative paths resolved
    /// against the config file's directory). The watcher follows it.
    pub plugins_dir: PathBuf,
    /// `[listeners.tls]` by listener name. Unlike a listener's address,
    /// reloadable: new connections get the new certificates and settings
    /// (this is how certificates rotate), established ones keep theirs.
    pub listener_tls: std::collections::BTreeMap<String, ListenerTls>,
    /// `[log] level`: a tracing filter such as `info` or `sluice=debug`;
    /// `RUST_LOG` overrides it.
    pub log_level: Option<String>,
    /// `[access_log]`; `None` turns the access log off.
    pub access_log: Option<AccessLogConfig>,
    /// `[shutdown] grace_period`: how long in-flight requests may take to
    /// finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// `[limits]`: what clients may do; new connections get the limits of
    /// the generation current when they are accepted.
    pub limits: ListenerLimits,
    /// Reload when the config file or a plugin changes (`[reload] watch`,
    /// default true). SIGHUP reloads either way.
    pub watch: bool,
    /// `[paths]`: how request paths are normalized before routing.
    pub paths: PathPolicy,
    /// `[shared_state]`: per-plugin quotas.
    pub shared_state: Quotas,
    /// `[sandbox] memory_budget`: what all filter instances together may
    /// hold in the worst case; `None` = the cgroup's limit or physical memory.
    pub memory_budget: Option<usize>,
    /// `[dns]`: how endpoint names are resolved and refreshed.
    pub dns: DnsConfig,
    /// `[mesh]`: mutual TLS between sidecars (sidecar mode only).
    pub mesh: Option<MeshConfig>,
    pub clusters: Vec<ClusterConfig>,
    pub routes: Vec<RouteConfig>,
}

/// The settings read once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    pub listeners: Vec<ListenerConfig>,
    /// Admin listener address.
    pub admin: Option<SocketAddr>,
    /// Where compiled plugins are cached; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// `[sidecar]`, present when a listener intercepts.
    pub sidecar: Option<SidecarConfig>,
    /// `[shared_state] backend` and `[shared_state.redis]`.
    pub shared_state_backend: Backend,
}

impl Bootstrap {
    /// The settings of `self` that differ from `running`, by config key.
    pub fn differences(&self, running: &Bootstrap) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.listeners != running.listeners {
            changed.push("listeners");
        }
        if self.admin != running.admin {
            changed.push("admin.address");
        }
        if self.cache_dir != running.cache_dir {
            changed.push("cache_dir");
        }
        if self.sidecar != running.sidecar {
            changed.push("sidecar");
        }
        if self.shared_state_backend != running.shared_state_backend {
            changed.push("shared_state.backend");
        }
        changed
    }
}

/// How access log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `key=value` pairs on one line.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    pub format: AccessLogFormat,
    pub destination: LogDestination,
    /// Request headers logged with each line (lower case).
    pub headers: Vec<String>,
    /// Headers whose values are replaced by `[redacted]`: the configured
    /// ones plus [`ALWAYS_REDACTED`] (lower case).
    pub redact: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    /// `intercept`: takes connections redirected by iptables in this
    /// direction (sidecar mode).
    pub intercept: Option<Direction>,
}

/// How sluice speaks to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2: over TLS (ALPN `h2`) when the cluster has `tls`, else
    /// cleartext with prior knowledge (h2c).
    Http2,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    /// `host:port` of each endpoint.
    pub endpoints: Vec<String>,
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    /// `[clusters.tls]`: speak TLS to the endpoints.
    pub tls: Option<UpstreamTls>,
    /// Balancing, health, ejection, circuit breaking and the retry budget.
    pub traffic: ClusterTraffic,
    /// Sidecar mode: the outbound destinations this cluster serves.
    pub claims: DestinationClaims,
}

/// How a route matches the request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `api.example.com` (compared case-insensitively, port ignored).
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com`. Stored as the
    /// suffix including its leading dot.
    Suffix(String),
}

/// How a route matches the request's (normalized) path, query excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// This prefix ending on a segment boundary (the default): `/api`
    /// matches `/api`, `/api/` and `/api/x`, not `/apiary`.
    Prefix(String),
    /// Any path starting with this string (`prefix_match = "string"`):
    /// `/api` also matches `/apiary`.
    StringPrefix(String),
    /// Exactly this path.
    Exact(String),
}

impl PathMatch {
    /// Whether `path` (normalized, no query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::StringPrefix(p) => path.starts_with(p.as_str()),
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (p.ends_with('/') || path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Empty means any host.
    pub hosts: Vec<HostMatch>,
    pub path: PathMatch,
    pub cluster: String,
    /// Sidecar mode: the interception listeners this route serves; `None`
    /// = the ordinary listeners.
    pub direction: Option<Direction>,
    /// Time allowed from sending the request upstream to its response headers.
    pub timeout: Duration,
    /// Overrides the cluster's connect timeout for this route.
    pub connect_timeout: Option<Duration>,
    /// `[routes.retry]`; `None` = no retries.
    pub retry: Option<RetryPolicy>,
    /// Longest a whole exchange may last, bodies and upgraded tunnels included.
    pub max_stream_duration: Option<Duration>,
    /// HTTP/1.1 `Upgrade` protocols proxied on this route (lower case).
    pub upgrades: Vec<String>,
    pub filters: Vec<FilterConfig>,
}

impl RouteConfig {
    /// Every cluster a request on this route can go to: the route's own and
    /// those its filters may choose, without repeats, the route's first.
    pub fn reachable_clusters(&self) -> Vec<&str> {
        let mut out = vec![self.cluster.as_str()];
        for c in self.filters.iter().flat_map(|f| &f.clusters) {
            if !out.contains(&c.as_str()) {
                out.push(c);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    /// Plugin name: a `.wasm` file stem in the plugins directory or a built-in.
    pub plugin: String,
    /// Clusters this filter may send the request to (`clusters = [...]`),
    /// besides the route's own. `set-cluster` to any other is refused.
    pub clusters: Vec<String>,
    /// The filter's table as JSON, as handed to the filter's `init`.
    pub config_json: String,
    /// Line of the filter entry, for errors found when loading the plugin.
    pub line: usize,
    pub sandbox: SandboxConfig,
}

/// What happens to a request when its filter fails (trap, deadline, memory
/// cap, no instance available).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The request is answered with an error status (the default).
    FailClosed,
    /// The filter is skipped and whatever it changed is discarded.
    FailOpen,
}

/// Per-filter sandbox settings (`deadline`, `memory_limit`, `on_failure`,
/// `max_instances`, `pool_wait` in a `[[routes.filters]]` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxConfig {
    /// CPU time one call may use.
    pub deadline: Duration,
    /// Linear-memory cap of one instance, in bytes.
    pub memory_limit: usize,
    pub on_failure: FailurePolicy,
    /// Instances of this filter on this route busy at once.
    pub max_instances: usize,
    /// How long a request waits for a free instance before 503.
    pub pool_wait: Duration,
    /// Wall-clock time one phase call may spend waiting on the host
    /// (outbound calls, document refreshes), not counted as CPU.
    pub wait_limit: Duration,
    /// Largest response body an outbound call reads.
    pub max_response_bytes: usize,
    /// Largest body a body phase buffers.
    pub max_body_bytes: usize,
}

/// Default CPU deadline of one filter call.
pub const DEFAULT_FILTER_DEADLINE: Duration = Duration::from_millis(10);
/// Default linear-memory cap of one filter instance.
pub const DEFAULT_MEMORY_LIMIT: usize = 8 << 20;
/// Largest memory cap a filter may be given (the pool's reservation per instance).
pub const MAX_MEMORY_LIMIT: usize = 64 << 20;
/// Default bound on busy instances per (route, filter).
pub const DEFAULT_MAX_INSTANCES: usize = 8;
/// Default wait for a free instance.
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_millis(100);
/// Default time one phase call may wait on the host.
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(1);
/// Default cap on an outbound call's response body and on a buffered body.
pub const DEFAULT_BODY_BYTES: usize = 1 << 20;

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            deadline: DEFAULT_FILTER_DEADLINE,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            on_failure: FailurePolicy::FailClosed,
            max_instances: DEFAULT_MAX_INSTANCES,
            pool_wait: DEFAULT_POOL_WAIT,
            wait_limit: DEFAULT_WAIT_LIMIT,
            max_response_bytes: DEFAULT_BODY_BYTES,
            max_body_bytes: DEFAULT_BODY_BYTES,
        }
    }
}

/// Bounds on what clients may do (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Concurrent connections per listener; more are closed at once.
    pub max_connections: usize,
    /// Requests served on one connection before it is closed; 0 = no limit.
    pub max_requests_per_connection: u32,
    /// Time an HTTP/1.1 client has to send a request head.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head (HTTP/1.1) or header list (HTTP/2), bytes.
    pub max_header_bytes: usize,
    /// Most header lines in an HTTP/1.1 request.
    pub max_headers: usize,
    pub h2_max_concurrent_streams: u32,
    /// Bound on streams a client resets before the proxy accepts them
    /// (HTTP/2 rapid reset).
    pub h2_max_pending_reset_streams: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 10_000,
            max_requests_per_connection: 0,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 256,
            h2_max_pending_reset_streams: 20,
        }
    }
}

/// A configuration error, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `routes[0].cluster`.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parse and validate config text that came from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        validate::parse(path, text)
    }
}
