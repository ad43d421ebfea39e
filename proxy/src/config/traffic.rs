//! Traffic-control policy as plain data: how a cluster balances, checks and
//! ejects its endpoints, what it refuses when overloaded, how a route
//! retries, and how DNS names are refreshed. Parsed and validated here once;
//! `upstream` receives the result.

use super::ConfigError;
use super::raw::{
    RawCircuitBreakers, RawCluster, RawDns, RawHealthCheck, RawOutlierDetection, RawRetry, RawRetryBudget,
};
use super::validate::{Locator, parse_bytes};
use http::HeaderName;
use std::net::SocketAddr;
use std::time::Duration;
use toml::Spanned;

/// How a cluster picks an endpoint for each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbPolicy {
    /// In turn (the default).
    RoundRobin,
    /// Two endpoints at random, the one with fewer requests in flight.
    LeastRequest,
    /// Two endpoints at random, the one with the lower peak-EWMA latency
    /// times requests in flight (Linkerd's default).
    PeakEwma,
    /// Maglev consistent hashing on a request key: the same key reaches the
    /// same endpoint while the endpoint set is stable.
    Maglev(HashOn),
}

impl LbPolicy {
    /// The config spelling.
    pub fn name(&self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "round_robin",
            LbPolicy::LeastRequest => "least_request",
            LbPolicy::PeakEwma => "peak_ewma",
            LbPolicy::Maglev(_) => "maglev",
        }
    }
}

/// What a consistent hash is computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
}

/// `[clusters.health_check]`: active HTTP checks of every endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that make an unhealthy endpoint healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Inclusive status ranges that pass.
    pub expected_statuses: Vec<(u16, u16)>,
}

impl HealthCheck {
    pub fn passes(&self, status: u16) -> bool {
        self.expected_statuses
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

/// `[clusters.outlier_detection]`: passive ejection of failing endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive 5xx answers that eject an endpoint; 0 = never.
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors (502, 503, 504, no answer) that eject; 0 = never.
    pub consecutive_gateway_errors: u32,
    /// The n-th ejection of an endpoint lasts n × this...
    pub base_ejection_time: Duration,
    /// ...but never longer than this.
    pub max_ejection_time: Duration,
    /// At most this percentage of endpoints is ejected at once; at least one
    /// endpoint is always kept.
    pub max_ejection_percent: u8,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// `[clusters.circuit_breakers]`: what a cluster takes on at once; more is
/// answered 503 at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// Open upstream connections.
    pub max_connections: usize,
    /// Requests waiting for the response headers.
    pub max_pending_requests: usize,
    /// Requests in flight, until their response body ends.
    pub max_requests: usize,
    /// Retries in flight.
    pub max_retries: usize,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        CircuitBreakers {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 1024,
        }
    }
}

/// `[clusters.retry_budget]`: retries may add at most `ratio` of the
/// requests plus `min_per_second` per second, over a sliding `window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_per_second: u32,
    pub window: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// What a route retries (`retry_on`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOn {
    pub connect_failure: bool,
    pub refused_stream: bool,
    pub reset: bool,
    /// Any 5xx, or no answer at all.
    pub any_5xx: bool,
    /// 502, 503, 504, or no answer at all.
    pub gateway_error: bool,
    /// Listed status codes.
    pub statuses: Vec<u16>,
}

/// `[routes.retry]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub on: RetryOn,
    /// Retries after the first try.
    pub retries: u32,
    /// Time one try may take; each try also ends at the route's deadline.
    pub per_try_timeout: Option<Duration>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Request bodies up to this many bytes are kept for replay; longer
    /// ones are sent once.
    pub max_buffered_body: usize,
}

/// `[dns]`: how endpoint names are resolved and refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsConfig {
    /// Nameserver; `None` = the system's (`/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    pub retry_interval: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            resolver: None,
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(300),
            retry_interval: Duration::from_secs(5),
        }
    }
}

/// The traffic settings of one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterTraffic {
    pub lb: LbPolicy,
    /// How long a pooled upstream connection may sit idle.
    pub idle_timeout: Duration,
    /// Below this percentage of available endpoints, balance over all.
    pub panic_threshold: u8,
    pub ewma_decay: Duration,
    pub health_check: Option<HealthCheck>,
    pub outlier_detection: Option<OutlierDetection>,
    pub circuit_breakers: CircuitBreakers,
    pub retry_budget: RetryBudget,
}

pub(super) fn cluster(loc: &Locator<'_>, c: &RawCluster, i: usize) -> Result<ClusterTraffic, ConfigError> {
    let key = |k: &str| format!("clusters[{i}].{k}");
    let mut hash_on = match &c.hash_on {
        Some(h) => Some(hash_on(loc, h, key("hash_on"))?),
        None => None,
    };
    let lb = match c.lb.as_ref().map(|l| (l, l.get_ref().as_str())) {
        None | Some((_, "round_robin")) => LbPolicy::RoundRobin,
        Some((_, "least_request")) => LbPolicy::LeastRequest,
        Some((_, "peak_ewma")) => LbPolicy::PeakEwma,
        Some((l, "maglev")) => match hash_on.take() {
            Some(on) => LbPolicy::Maglev(on),
            None => return loc.at(l, key("lb"), "`maglev` needs `hash_on`"),
        },
        Some((l, other)) => {
            return loc.at(
                l,
                key("lb"),
                format!("`{other}` is not `round_robin`, `least_request`, `peak_ewma` or `maglev`"),
            );
        }
    };
    if let (Some(_), Some(h)) = (hash_on, &c.hash_on) {
        return loc.at(h, key("hash_on"), "`hash_on` applies only to `lb = \"maglev\"`");
    }
    let panic_threshold = match &c.panic_threshold {
        Some(p) => percent(loc, p, key("panic_threshold"))?,
        None => 50,
    };
    Ok(ClusterTraffic {
        lb,
        idle_timeout: optional_duration(loc, &c.idle_timeout, key("idle_timeout"), Duration::from_secs(90))?,
        panic_threshold,
        ewma_decay: optional_duration(loc, &c.ewma_decay, key("ewma_decay"), Duration::from_secs(10))?,
        health_check: match &c.health_check {
            Some(h) => Some(health_check(loc, h, &key("health_check"))?),
            None => None,
        },
        outlier_detection: match &c.outlier_detection {
            Some(o) => Some(outlier_detection(loc, o.get_ref(), &key("outlier_detection"))?),
            None => None,
        },
        circuit_breakers: match &c.circuit_breakers {
            Some(b) => circuit_breakers(loc, b, &key("circuit_breakers"))?,
            None => CircuitBreakers::default(),
        },
        retry_budget: match &c.retry_budget {
            Some(b) => retry_budget(loc, b, &key("retry_budget"))?,
            None => RetryBudget::default(),
        },
    })
}

fn hash_on(loc: &Locator<'_>, h: &Spanned<String>, key: String) -> Result<HashOn, ConfigError> {
    let text = h.get_ref();
    if text == "client_ip" {
        return Ok(HashOn::ClientIp);
    }
    if let Some(name) = text.strip_prefix("header:")
        && let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes())
    {
        return Ok(HashOn::Header(name));
    }
    if let Some(name) = text.strip_prefix("cookie:")
        && !name.trim().is_empty()
    {
        return Ok(HashOn::Cookie(name.trim().to_string()));
    }
    loc.at(
        h,
        key,
        format!("`{text}` is not `header:<name>`, `cookie:<name>` or `client_ip`"),
    )
}

fn optional_duration(
    loc: &Locator<'_>,
    value: &Option<Spanned<String>>,
    key: String,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        Some(v) => loc.duration(v, key),
        None => Ok(default),
    }
}

fn percent(loc: &Locator<'_>, v: &Spanned<u32>, key: String) -> Result<u8, ConfigError> {
    match u8::try_from(*v.get_ref()) {
        Ok(p) if p <= 100 => Ok(p),
        _ => loc.at(v, key, "must be a percentage from 0 to 100"),
    }
}

fn positive(loc: &Locator<'_>, v: &Spanned<u32>, key: String) -> Result<u32, ConfigError> {
    if *v.get_ref() == 0 {
        loc.at(v, key, "must be greater than zero")
    } else {
        Ok(*v.get_ref())
    }
}

fn health_check(loc: &Locator<'_>, h: &Spanned<RawHealthCheck>, at: &str) -> Result<HealthCheck, ConfigError> {
    let key = |k: &str| format!("{at}.{k}");
    let raw = h.get_ref();
    let path = match &raw.path {
        Some(p) if p.get_ref().starts_with('/') && p.get_ref().parse::<http::uri::PathAndQuery>().is_ok() => {
            p.get_ref().clone()
        }
        Some(p) => return loc.at(p, key("path"), "must be a path starting with `/`"),
        None => return loc.at(h, key("path"), "a health check needs a `path`"),
    };
    let mut expected_statuses = Vec::new();
    for (j, s) in raw.expected_statuses.iter().enumerate() {
        match status_range(s.get_ref()) {
            Some(range) => expected_statuses.push(range),
            None => {
                return loc.at(
                    s,
                    key(&format!("expected_statuses[{j}]")),
                    format!("`{}` is not a status like `200` or a range like `200-299`", s.get_ref()),
                );
            }
        }
    }
    if expected_statuses.is_empty() {
        expected_statuses.push((200, 299));
    }
    let threshold = |v: &Option<Spanned<u32>>, k: &str, default: u32| match v {
        Some(v) => positive(loc, v, key(k)),
        None => Ok(default),
    };
    Ok(HealthCheck {
        path,
        interval: optional_duration(loc, &raw.interval, key("interval"), Duration::from_secs(5))?,
        timeout: optional_duration(loc, &raw.timeout, key("timeout"), Duration::from_secs(1))?,
        healthy_threshold: threshold(&raw.healthy_threshold, "healthy_threshold", 2)?,
        unhealthy_threshold: threshold(&raw.unhealthy_threshold, "unhealthy_threshold", 3)?,
        expected_statuses,
    })
}

fn status_range(text: &str) -> Option<(u16, u16)> {
    let code = |s: &str| s.trim().parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    match text.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (code(lo)?, code(hi)?);
            (lo <= hi).then_some((lo, hi))
        }
        None => code(text).map(|c| (c, c)),
    }
}

fn outlier_detection(loc: &Locator<'_>, o: &RawOutlierDetection, at: &str) -> Result<OutlierDetection, ConfigError> {
    let key = |k: &str| format!("{at}.{k}");
    let default = OutlierDetection::default();
    let mut out = OutlierDetection {
        consecutive_5xx: o.consecutive_5xx.unwrap_or(default.consecutive_5xx),
        consecutive_gateway_errors: o
            .consecutive_gateway_errors
            .unwrap_or(default.consecutive_gateway_errors),
        base_ejection_time: optional_duration(
            loc,
            &o.base_ejection_time,
            key("base_ejection_time"),
            default.base_ejection_time,
        )?,
        max_ejection_time: Duration::ZERO,
        max_ejection_percent: match &o.max_ejection_percent {
            Some(p) => percent(loc, p, key("max_ejection_percent"))?,
            None => default.max_ejection_percent,
        },
    };
    out.max_ejection_time = match &o.max_ejection_time {
        Some(m) => {
            let max = loc.duration(m, key("max_ejection_time"))?;
            if max < out.base_ejection_time {
                return loc.at(
                    m,
                    key("max_ejection_time"),
                    "must not be shorter than `base_ejection_time`",
                );
            }
            max
        }
        // The default cap never cuts a longer configured base time.
        None => default.max_ejection_time.max(out.base_ejection_time),
    };
    Ok(out)
}

fn circuit_breakers(loc: &Locator<'_>, b: &RawCircuitBreakers, at: &str) -> Result<CircuitBreakers, ConfigError> {
    let default = CircuitBreakers::default();
    let limit = |v: &Option<Spanned<u32>>, k: &str, default: usize| match v {
        Some(v) => positive(loc, v, format!("{at}.{k}")).map(|n| n as usize),
        None => Ok(default),
    };
    Ok(CircuitBreakers {
        max_connections: limit(&b.max_connections, "max_connections", default.max_connections)?,
        max_pending_requests: limit(
            &b.max_pending_requests,
            "max_pending_requests",
            default.max_pending_requests,
        )?,
        max_requests: limit(&b.max_requests, "max_requests", default.max_requests)?,
        max_retries: limit(&b.max_retries, "max_retries", default.max_retries)?,
    })
}

fn retry_budget(loc: &Locator<'_>, b: &RawRetryBudget, at: &str) -> Result<RetryBudget, ConfigError> {
    let default = RetryBudget::default();
    let ratio = match &b.ratio {
        Some(r) if (0.0..=1000.0).contains(r.get_ref()) => *r.get_ref(),
        Some(r) => return loc.at(r, format!("{at}.ratio"), "must be a fraction from 0 (e.g. 0.2 for 20%)"),
        None => default.ratio,
    };
    Ok(RetryBudget {
        ratio,
        min_per_second: b.min_retries_per_second.unwrap_or(default.min_per_second),
        window: optional_duration(loc, &b.window, format!("{at}.window"), default.window)?,
    })
}

/// `[routes.retry]` of route `i`.
pub(super) fn retry(loc: &Locator<'_>, r: &Spanned<RawRetry>, i: usize) -> Result<RetryPolicy, ConfigError> {
    let key = |k: &str| format!("routes[{i}].retry.{k}");
    let raw = r.get_ref();
    let mut on = RetryOn::default();
    for (j, cond) in raw.retry_on.iter().enumerate() {
        match cond.get_ref().as_str() {
            "connect-failure" => on.connect_failure = true,
            "refused-stream" => on.refused_stream = true,
            "reset" => on.reset = true,
            "5xx" => on.any_5xx = true,
            "gateway-error" => on.gateway_error = true,
            code => match code.parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => on.statuses.push(c),
                _ => {
                    return loc.at(
                        cond,
                        key(&format!("retry_on[{j}]")),
                        format!(
                            "`{code}` is not `connect-failure`, `refused-stream`, `reset`, `5xx`, `gateway-error` \
                             or a status code"
                        ),
                    );
                }
            },
        }
    }
    if on == RetryOn::default() {
        return loc.at(r, key("retry_on"), "name at least one condition to retry on");
    }
    let backoff_base = optional_duration(loc, &raw.backoff_base, key("backoff_base"), Duration::from_millis(25))?;
    let backoff_max = optional_duration(loc, &raw.backoff_max, key("backoff_max"), Duration::from_millis(250))?;
    if backoff_max < backoff_base
        && let Some(m) = &raw.backoff_max
    {
        return loc.at(m, key("backoff_max"), "must not be shorter than `backoff_base`");
    }
    let max_buffered_body = match &raw.max_buffered_body {
        Some(b) => match parse_bytes(b.get_ref()) {
            Some(n) => n,
            None => return loc.at(b, key("max_buffered_body"), "not a size like `64KiB`"),
        },
        None => 64 * 1024,
    };
    Ok(RetryPolicy {
        on,
        retries: match &raw.retries {
            Some(n) if *n.get_ref() > 10 => return loc.at(n, key("retries"), "at most 10"),
            Some(n) => *n.get_ref(),
            None => 1,
        },
        per_try_timeout: match &raw.per_try_timeout {
            Some(t) => Some(loc.duration(t, key("per_try_timeout"))?),
            None => None,
        },
        backoff_base,
        backoff_max,
        max_buffered_body,
    })
}

/// `[dns]`.
pub(super) fn dns(loc: &Locator<'_>, d: &RawDns) -> Result<DnsConfig, ConfigError> {
    let default = DnsConfig::default();
    let resolver = match &d.resolver {
        Some(r) => Some(loc.socket_addr(r, "dns.resolver".into())?),
        None => None,
    };
    let out = DnsConfig {
        resolver,
        min_refresh: optional_duration(loc, &d.min_refresh, "dns.min_refresh".into(), default.min_refresh)?,
        max_refresh: optional_duration(loc, &d.max_refresh, "dns.max_refresh".into(), default.max_refresh)?,
        retry_interval: optional_duration(
            loc,
            &d.retry_interval,
            "dns.retry_interval".into(),
            default.retry_interval,
        )?,
    };
    if out.max_refresh < out.min_refresh
        && let Some(m) = &d.max_refresh
    {
        return loc.at(m, "dns.max_refresh".into(), "must not be shorter than `min_refresh`");
    }
    Ok(out)
}

/// A route's `upgrades` list, lower-cased.
pub(super) fn upgrades(loc: &Locator<'_>, list: &[Spanned<String>], i: usize) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for (j, u) in list.iter().enumerate() {
        let token = u.get_ref().to_ascii_lowercase();
        let valid = !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !valid {
            return loc.at(
                u,
                format!("routes[{i}].upgrades[{j}]"),
                "not a protocol token like `websocket`",
            );
        }
        if !out.contains(&token) {
            out.push(token);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("204"), Some((204, 204)));
        assert_eq!(status_range("200-399"), Some((200, 399)));
        assert_eq!(status_range("300-200"), None);
        assert_eq!(status_range("abc"), None);
        assert_eq!(status_range("99"), None);
    }
}
