//! The TOML file as serde reads it: every field the user writes, with the
//! spans validation needs to point at a line. Nothing here is used past
//! validation; the rest of the proxy sees only `config::Config`.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub plugins_dir: Option<Spanned<String>>,
    pub cache_dir: Option<Spanned<String>>,
    pub admin: Option<RawAdmin>,
    pub reload: Option<RawReload>,
    pub log: Option<RawLog>,
    pub access_log: Option<RawAccessLog>,
    pub shutdown: Option<RawShutdown>,
    pub limits: Option<RawLimits>,
    pub paths: Option<RawPaths>,
    pub shared_state: Option<RawSharedState>,
    pub sandbox: Option<RawSandbox>,
    pub dns: Option<RawDns>,
    pub sidecar: Option<RawSidecar>,
    pub mesh: Option<RawMesh>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub clusters: Vec<RawCluster>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub address: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    pub watch: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    pub format: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub redact: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShutdown {
    pub grace_period: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub name: Option<Spanned<String>>,
    pub address: Spanned<String>,
    pub tls: Option<Spanned<RawListenerTls>>,
    pub intercept: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMesh {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    pub trust_bundle: Spanned<String>,
    pub mtls: Option<Spanned<String>>,
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    #[serde(default)]
    pub ports: Vec<Spanned<u32>>,
    #[serde(default)]
    pub peers: Vec<RawMeshPeer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeshPeer {
    pub destination: Spanned<String>,
    pub identity: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSidecar {
    pub mark: Option<Spanned<u32>>,
    pub proxy_uid: Option<u32>,
    pub proxy_gid: Option<u32>,
    #[serde(default)]
    pub opaque_ports: Vec<Spanned<u32>>,
    pub detect_timeout: Option<Spanned<String>>,
    pub tcp_idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub exclude_inbound_ports: Vec<Spanned<u32>>,
    #[serde(default)]
    pub exclude_outbound_ports: Vec<Spanned<u32>>,
    #[serde(default)]
    pub exclude_outbound_cidrs: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListenerTls {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    pub client_auth: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
    pub handshake_timeout: Option<Spanned<String>>,
    pub min_version: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    #[serde(default)]
    pub server_names: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    pub ca: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub identity: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawProtocol {
    Http1,
    Http2,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub name: Spanned<String>,
    pub endpoints: Spanned<Vec<Spanned<String>>>,
    pub protocol: Option<RawProtocol>,
    pub connect_timeout: Option<Spanned<String>>,
    pub tls: Option<RawUpstreamTls>,
    pub lb: Option<Spanned<String>>,
    pub hash_on: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub panic_threshold: Option<Spanned<u32>>,
    pub ewma_decay: Option<Spanned<String>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    pub outlier_detection: Option<Spanned<RawOutlierDetection>>,
    pub circuit_breakers: Option<RawCircuitBreakers>,
    pub retry_budget: Option<RawRetryBudget>,
    #[serde(default)]
    pub destinations: Vec<Spanned<String>>,
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    pub path: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub healthy_threshold: Option<Spanned<u32>>,
    pub unhealthy_threshold: Option<Spanned<u32>>,
    #[serde(default)]
    pub expected_statuses: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlierDetection {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    pub base_ejection_time: Option<Spanned<String>>,
    pub max_ejection_time: Option<Spanned<String>>,
    pub max_ejection_percent: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCircuitBreakers {
    pub max_connections: Option<Spanned<u32>>,
    pub max_pending_requests: Option<Spanned<u32>>,
    pub max_requests: Option<Spanned<u32>>,
    pub max_retries: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetryBudget {
    pub ratio: Option<Spanned<f64>>,
    pub min_retries_per_second: Option<u32>,
    pub window: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    #[serde(default)]
    pub retry_on: Vec<Spanned<String>>,
    pub retries: Option<Spanned<u32>>,
    pub per_try_timeout: Option<Spanned<String>>,
    pub backoff_base: Option<Spanned<String>>,
    pub backoff_max: Option<Spanned<String>>,
    pub max_buffered_body: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub resolver: Option<Spanned<String>>,
    pub min_refresh: Option<Spanned<String>>,
    pub max_refresh: Option<Spanned<String>>,
    pub retry_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub path_exact: Option<Spanned<String>>,
    pub prefix_match: Option<Spanned<String>>,
    pub cluster: Option<Spanned<String>>,
    pub direction: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub max_stream_duration: Option<Spanned<String>>,
    #[serde(default)]
    pub upgrades: Vec<Spanned<String>>,
    pub retry: Option<Spanned<RawRetry>>,
    #[serde(default)]
    pub filters: Vec<RawFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    pub plugin: Spanned<String>,
    #[serde(default)]
    pub clusters: Vec<Spanned<String>>,
    pub config: Option<Spanned<BTreeMap<String, toml::Value>>>,
    pub deadline: Option<Spanned<String>>,
    pub memory_limit: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<String>>,
    pub max_instances: Option<Spanned<u32>>,
    pub pool_wait: Option<Spanned<String>>,
    pub wait_limit: Option<Spanned<String>>,
    pub max_response_bytes: Option<Spanned<String>>,
    pub max_body_bytes: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_connections: Option<Spanned<u32>>,
    pub max_requests_per_connection: Option<u32>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_header_bytes: Option<Spanned<u32>>,
    pub max_headers: Option<Spanned<u32>>,
    pub h2_max_concurrent_streams: Option<Spanned<u32>>,
    pub h2_max_pending_reset_streams: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPaths {
    pub merge_slashes: Option<bool>,
    pub escaped_slashes: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSharedState {
    pub backend: Option<Spanned<String>>,
    pub redis: Option<Spanned<RawRedis>>,
    #[serde(flatten)]
    pub quota: RawQuota,
    #[serde(default)]
    pub plugins: BTreeMap<String, RawQuota>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub url: Option<Spanned<String>>,
    pub pool_size: Option<Spanned<u64>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub command_timeout: Option<Spanned<String>>,
    pub key_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    pub max_entries: Option<Spanned<u64>>,
    pub max_bytes: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSandbox {
    pub memory_budget: Option<Spanned<String>>,
}
