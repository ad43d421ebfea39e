//! Endpoints by DNS name: a resolver that reports TTLs and a background
//! loop that re-resolves a name off the request path.
//!
//! Every IPv4 address of a name becomes an endpoint (a Kubernetes headless
//! Service answers with one address per pod); its IPv6 addresses do when it
//! has no A records. A successful answer
//! is re-resolved after its TTL, clamped to `[min_refresh, max_refresh]`; a
//! failed one is retried after `retry_interval`, and the caller keeps the
//! last good set. hickory's answer cache is disabled so every refresh asks
//! the nameserver.

use hickory_resolver::config::{LookupIpStrategy, NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The global `[dns]` settings, as configured.
pub type DnsSettings = crate::config::DnsConfig;

/// The addresses a name resolved to, and how long the answer is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Every address with the requested port; sorted, no duplicates.
    pub addrs: Vec<SocketAddr>,
    /// The smallest TTL in the answer.
    pub ttl: Duration,
}

/// The nameserver used when `/etc/resolv.conf` cannot be read: the local
/// one, as the C library does.
const FALLBACK_NAMESERVER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A DNS resolver (hickory on tokio) without an answer cache.
pub struct Resolver {
    inner: TokioResolver,
    /// Why the system configuration was not used, when it was not.
    system_conf_error: Option<String>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("name_servers", &self.inner.config().name_servers())
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver asking `settings.resolver` over UDP and TCP, or the
    /// nameservers of `/etc/resolv.conf`. When that file cannot be read the
    /// resolver asks `127.0.0.1:53` and the reason is logged and kept (see
    /// [`Resolver::system_conf_error`]).
    pub fn new(settings: &DnsSettings) -> Result<Resolver, String> {
        let (config, mut options, system_conf_error) = match settings.resolver {
            Some(addr) => {
                if addr.port() == 0 || addr.ip().is_unspecified() {
                    return Err(format!("dns resolver address {addr} is not usable"));
                }
                let servers = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                let config = ResolverConfig::from_parts(None, vec![], servers);
                (config, ResolverOpts::default(), None)
            }
            None => match hickory_resolver::system_conf::read_system_conf() {
                Ok((config, options)) => (config, options, None),
                Err(e) => {
                    let reason = format!("reading /etc/resolv.conf: {e}");
                    tracing::warn!(error = %reason, fallback = %FALLBACK_NAMESERVER, "dns: using the fallback nameserver");
                    let servers = NameServerConfigGroup::from_ips_clear(&[FALLBACK_NAMESERVER], 53, true);
                    let config = ResolverConfig::from_parts(None, vec![], servers);
                    (config, ResolverOpts::default(), Some(reason))
                }
            },
        };
        // No answer cache: a refresh must see what the nameserver says now.
        options.cache_size = 0;
        // Every IPv4 address of the name, or its IPv6 ones when it has no
        // A records (Envoy's V4_PREFERRED): a name with both, such as
        // `localhost`, would otherwise send half the requests to an address
        // the service may not listen on.
        options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        let inner = TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(options)
            .build();
        Ok(Resolver {
            inner,
            system_conf_error,
        })
    }

    /// Why `/etc/resolv.conf` was not used, when the fallback nameserver is.
    pub fn system_conf_error(&self) -> Option<&str> {
        self.system_conf_error.as_deref()
    }

    /// Resolve `host` to its A and AAAA addresses, each with `port`.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Resolved, String> {
        let lookup = self.inner.lookup_ip(host).await.map_err(|e| describe(host, &e))?;
        let ttl = lookup.valid_until().saturating_duration_since(Instant::now());
        let mut addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(format!("{host}: no addresses"));
        }
        Ok(Resolved { addrs, ttl })
    }
}

/// A short message for a failed lookup.
fn describe(host: &str, e: &ResolveError) -> String {
    if e.is_nx_domain() {
        format!("{host}: no such name (NXDOMAIN)")
    } else if e.is_no_records_found() {
        format!("{host}: no A or AAAA records")
    } else {
        format!("{host}: {e}")
    }
}

/// How long to wait before the next resolution: the answer's TTL clamped
/// to `[min_refresh, max_refresh]` after a success, `retry_interval` after
/// a failure.
pub fn next_refresh(settings: &DnsSettings, outcome: Result<Duration, ()>) -> Duration {
    match outcome {
        // Not `clamp`: it panics when min > max, and config may say so.
        Ok(ttl) => ttl.min(settings.max_refresh).max(settings.min_refresh),
        Err(()) => settings.retry_interval,
    }
}

/// Re-resolve `host` in the background, first as `first` (the outcome of
/// the resolution made at start: its TTL, clamped like any other, or a
/// failure, retried after `retry_interval`), then after each
/// answer's TTL. `on_update` gets every outcome: `Ok` with the (possibly
/// unchanged) addresses, or `Err` with a message, in which case the caller
/// keeps its last good set. Abort the handle to stop.
pub fn spawn_refresh(
    resolver: Arc<Resolver>,
    settings: DnsSettings,
    host: String,
    port: u16,
    first: Result<Duration, ()>,
    on_update: impl Fn(Result<Vec<SocketAddr>, String>) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = next_refresh(&settings, first);
        loop {
            tokio::time::sleep(wait).await;
            match resolver.resolve(&host, port).await {
                Ok(resolved) => {
                    wait = next_refresh(&settings, Ok(resolved.ttl));
                    on_update(Ok(resolved.addrs));
                }
                Err(e) => {
                    wait = next_refresh(&settings, Err(()));
                    on_update(Err(e));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DnsSettings {
        DnsSettings {
            resolver: None,
            min_refresh: Duration::from_secs(2),
            max_refresh: Duration::from_secs(60),
            retry_interval: Duration::from_secs(7),
        }
    }

    #[test]
    fn ttl_inside_bounds_is_used() {
        assert_eq!(
            next_refresh(&settings(), Ok(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn short_ttl_waits_min_refresh() {
        assert_eq!(next_refresh(&settings(), Ok(Duration::ZERO)), Duration::from_secs(2));
        assert_eq!(
            next_refresh(&settings(), Ok(Duration::from_millis(1999))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn long_ttl_waits_max_refresh() {
        assert_eq!(
            next_refresh(&settings(), Ok(Duration::from_secs(86_400))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn failure_waits_retry_interval() {
        assert_eq!(next_refresh(&settings(), Err(())), Duration::from_secs(7));
    }

    #[test]
    fn inverted_bounds_do_not_panic() {
        let s = DnsSettings {
            min_refresh: Duration::from_secs(10),
            max_refresh: Duration::from_secs(5),
            ..settings()
        };
        assert_eq!(next_refresh(&s, Ok(Duration::from_secs(1))), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn explicit_resolver_address_is_checked() {
        let bad = DnsSettings {
            resolver: Some("127.0.0.1:0".parse().unwrap()),
            ..DnsSettings::default()
        };
        assert!(Resolver::new(&bad).is_err());
        let good = DnsSettings {
            resolver: Some("127.0.0.1:5353".parse().unwrap()),
            ..DnsSettings::default()
        };
        assert!(Resolver::new(&good).is_ok());
    }

    #[tokio::test]
    async fn ip_literal_resolves_to_itself() {
        let resolver = Resolver::new(&DnsSettings {
            resolver: Some("127.0.0.1:9".parse().unwrap()),
            ..DnsSettings::default()
        })
        .unwrap();
        let r = resolver.resolve("127.0.0.7", 8080).await.unwrap();
        assert_eq!(r.addrs, vec!["127.0.0.7:8080".parse::<SocketAddr>().unwrap()]);
    }
}
